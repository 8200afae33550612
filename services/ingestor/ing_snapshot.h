/* ing_snapshot: initial snapshot and on-demand backfills of tables that
 * already hold rows, as `read` events.
 *
 * The initial snapshot (source.snapshot = initial, a slot walhook creates):
 * the slot is created with EXPORT_SNAPSHOT, and before START_REPLICATION
 * every published table is read, chunked by key, in that exported snapshot
 * (one REPEATABLE READ transaction on a second connection, SET TRANSACTION
 * SNAPSHOT): the rows as of the slot's consistent point, stored at
 * positions (consistent point - 2, 0..n) before every change the stream
 * sends (commit LSNs at or after the consistent point; a non-transactional
 * message at L is stored at L - 1): no gap, no overlap. The exported
 * snapshot lives only while the replication connection stays idle, so
 * when the ingestor dies (or the source connection fails) part way, the
 * tables and rows left are read by watermark chunks once streaming (below),
 * after the last key stored.
 *
 * Backfills, and what an exported snapshot left: DBLog watermark chunks
 * (the method of Debezium's incremental snapshots).
 *
 * One chunk of a table with a key (its primary key, or its replica identity
 * index): on an ordinary connection to the source (session options as the
 * stream's, so values have the same text), (1) a low watermark (a
 * transactional logical message, prefix walhook.wm, content naming the
 * chunk), (2) SELECT of the next rows after the last key done, in key
 * order, LIMIT source.snapshot_chunk_rows, (3) a high watermark. In the
 * replication stream, the keys of that table's changes between the low and
 * the high watermark are recorded; at the high watermark the chunk's rows
 * minus those keys become events with op "read" at (the high watermark's
 * commit LSN, seq...): a row changed meanwhile comes from the stream, never
 * stale after it. A streamed transaction's commit or a truncate of the
 * table inside the window, or a change whose key cannot be read, discards
 * the chunk (read again with new watermarks).
 *
 * The chunk's events and the tenant's progress document (wh_snapprog:
 * per table the last key done and rows done) go to the store in one
 * AppendBatch (snapshot_progress), written in one WriteBatch: after a
 * SIGKILL the ingestor reads the progress back (TenantInfo) and goes on
 * after the last chunk stored; a chunk not acked is read again.
 *
 * source.snapshot = initial: before walhook creates the slot, "initial
 * planned" is stored (ing_snapshot_plan); once streaming, every table of
 * the publication becomes a job. Backfills (ing_snapshot_backfill) add one
 * job each. Tables without a key are refused (state refused, logged).
 *
 * Owned by ing_repl, one per source; everything runs on the replication
 * thread, so the snapshot connection's statements are bounded
 * (lock_timeout, and a statement_timeout below the source's
 * wal_sender_timeout): a chunk that waits for a lock on its table is read
 * again later while the stream goes on. Logs never carry row values. */
#ifndef ING_SNAPSHOT_H
#define ING_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "ing_batch.h"
#include "ing_catalog.h"
#include "ing_event.h"
#include "ing_pgoutput.h"
#include "ing_schema.h"
#include "ing_stats.h"
#include "wh_config.h"

/* The prefix of the watermark messages: consumed, never events. */
#define ING_SNAPSHOT_PREFIX "walhook.wm"

typedef struct ing_snapshot ing_snapshot;

int ing_snapshot_new(ing_snapshot **out, const wh_config *cfg, ing_batcher *bt, ing_stats *st,
                     char *err, size_t errlen);
void ing_snapshot_free(ing_snapshot *s);

/* The tenant's schema registry (ing_repl's): read events carry their
 * table's schema_version, and a version new to the tenant gets its schema
 * event before the first of them, registered with them. */
void ing_snapshot_set_schema(ing_snapshot *s, ing_schema *schema);

/* source.snapshot_chunk_rows (a runtime setting; any thread). */
void ing_snapshot_set_chunk_rows(int rows);

/* Before walhook creates the slot: with source.snapshot = initial and no
 * progress stored yet, stores "initial planned" and waits for the store to
 * confirm it. WH_ERR (err): not stored; the slot must not be created. */
int ing_snapshot_plan(ing_snapshot *s, char *err, size_t errlen);

/* After ing_snapshot_plan: 1 when the slot about to be created should
 * export its snapshot for ing_snapshot_export (an initial snapshot planned
 * and no table listed yet). */
int ing_snapshot_wants_export(const ing_snapshot *s);

/* Right after CREATE_REPLICATION_SLOT ... EXPORT_SNAPSHOT, before any other
 * command on the replication connection: reads every published table in
 * the exported snapshot `name` (after_import(arg) runs once it is imported:
 * the replication connection may be used again from then) and stores its
 * rows as read events at
 * (consistent_lsn - 2, seq), chunk by chunk with the progress, and waits
 * until the store has them all. Never fails: what it could not read (the
 * source or the store failed, a stop was requested) is left to the
 * watermark chunks of ing_snapshot_tick, logged. */
void ing_snapshot_export(ing_snapshot *s, ing_catalog *cat, const char *name,
                         uint64_t consistent_lsn, void (*after_import)(void *arg), void *arg);

/* The tenant's backfill requests from the runtime state
 * (wh_state_tenant.backfills; any thread): each id not known yet becomes a
 * job at the next tick. */
void ing_snapshot_requests(const char *list);

/* A backfill request of table "schema.table" with id (runtime state): a
 * job unless one with that id is known. */
int ing_snapshot_backfill(ing_snapshot *s, const char *id, const char *table);

/* A new stream (reconnect): a chunk in progress is dropped. */
void ing_snapshot_reset(ing_snapshot *s);

/* From the stream loop: starts the next chunk when none is in progress
 * (catalog: for the column types; dsn: the source). */
void ing_snapshot_tick(ing_snapshot *s, ing_catalog *cat);

/* Stream hooks: an Insert/Update/Delete decoded (of transaction xid); a
 * Truncate; a streamed transaction's commit.
 *
 * Commit order is not visibility order: a transaction whose commit record
 * precedes the low watermark may still be invisible to the chunk's SELECT
 * (its backend had not left the proc array yet, e.g. waiting for a
 * synchronous standby), so its change would come before the window and the
 * chunk's row would be older. The chunk is read in a REPEATABLE READ
 * transaction whose snapshot (pg_current_snapshot) lists the transactions
 * in progress; the xids of the stream's transactions that changed rows (or
 * streamed transactions that committed) are kept whether or not a job runs
 * (at each chunk those its snapshot sees are dropped; bounded), and a chunk
 * whose snapshot has one of them in progress (listed, or at or after its
 * xmax) at its low watermark is read again. What committed before that
 * history started (a previous process decoded it, the slot confirmed it)
 * is unknown: the first chunk's snapshot after the history started makes
 * every xid it lists in progress a suspect until the stream decodes it or a
 * snapshot no longer lists it, and a chunk whose snapshot lists a suspect
 * is read again. */
void ing_snapshot_change(ing_snapshot *s, const ing_msg *m, uint32_t xid);
void ing_snapshot_truncate(ing_snapshot *s, const ing_msg *m);
void ing_snapshot_stream_commit(ing_snapshot *s, uint32_t xid);

/* A watermark message inside a stream block (PostgreSQL streamed its
 * transaction, protocol 2): its chunk, if it is this one's, is read again
 * (its position is not known before the commit). */
void ing_snapshot_streamed_watermark(ing_snapshot *s, const ing_msg *m);

/* 1 when m is a watermark message (prefix ING_SNAPSHOT_PREFIX). */
int ing_snapshot_is_watermark(const ing_msg *m);
/* A watermark message inside transaction t, whose next event seq is *seq:
 * at this chunk's high watermark the chunk's read events are queued (with
 * the progress) at t's commit LSN and *seq advances. */
int ing_snapshot_message(ing_snapshot *s, const ing_msg *m, const ing_txn *t, uint32_t *seq,
                         char *err, size_t errlen);

#endif
