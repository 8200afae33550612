/* st_db: the store's RocksDB wrapper (C API).
 *
 * Data lives in <data_dir>/rocksdb. Each tenant has two column families of
 * its own, created when the tenant appears (first write, or the runtime
 * state names it) and dropped with it (st_db_tenant_drop), so compaction,
 * GC and deletion of one tenant never touch another's files:
 *   "e:<tenant>"  'E' tenant '\0' commit_lsn(8, BE) seq(4, BE) -> commit_ts_us(8, BE) json
 *   "m:<tenant>"  'O' tenant '\0' consumer -> lsn(8) seq(4) epoch(8) [flags(1): 1 = NEEDS_SNAPSHOT]
 *                                            (12-byte values of older stores: epoch 0)
 *                 'D' tenant               -> durable ack_lsn(8, BE)
 *                 'W' tenant               -> GC watermark lsn(8) seq(4)
 *                 'Q'/'R'/'L' ...          -> dead letters, replay queue, leases (below)
 *                 'V' tenant '\0' table '\0' fp(8) -> schema versions (below)
 *                 'Z' tenant               -> 1: a state removing the tenant is being
 *                                            written (st_db_tenant_mark_removal)
 *                 'N' tenant '\0' consumer -> since_ms(8) kind(1): when and why it was
 *                                            marked NEEDS_SNAPSHOT (ST_NS_*)
 *                 'T' tenant '\0' consumer -> elapsed_ms(8) lsn(8) seq(4) 1: st_slot's
 *                                            stall timer (st_db_stall_put)
 *   "s:<tenant>"  'X' ...                  -> staged streamed transactions (below)
 *   "default"     'S' "state"              -> version(8, BE) + state document
 * Keys keep their tenant prefix inside the tenant's CFs (one key format in
 * every place). A data directory of an older store (every key in the
 * default CF) is migrated at open: tenant keys are copied into the
 * tenants' CFs in synced batches, then removed from the default CF.
 *
 * Offsets are kept in memory in a hash table; each consumer has its own
 * writer lock held across its synced put, so commits of different consumers
 * do not wait for each other's fsync, and readers never wait for one.
 * Epochs: SetOffset bumps the consumer's epoch; a commit carrying another
 * epoch is refused (ST_DB_STALE), so an offset moved by an operator is never
 * overwritten by a batch read before the move. DropOffset deletes the stored
 * offset and leaves an in-memory tombstone (until restart): the consumer
 * reads nothing and its commits are refused until SetOffset, or until
 * st_db_undrop (the consumer became a target again).
 *
 * Every write uses WriteOptions sync=true and the call returns only after
 * RocksDB returned. Appends are idempotent: a position written again is
 * overwritten with the same bytes. Offsets never move backwards.
 *
 * GC: each tenant's events CF has its own compaction filter; it drops E
 * keys below the tenant's watermark, taken when a compaction starts, and
 * the key at it when it is the consumers' minimum (an offset is the last
 * event its consumer passed) and not the tenant's newest event. The
 * watermark is the minimum committed offset of the tenant's
 * consumers (its consumer registry), never moves back (kept in memory and
 * in the W key), and is (0,0), dropping nothing, while the tenant has no
 * consumer. A maintenance thread (every ST_MAINT_MS) applies the retention
 * caps (st_db_set_limits): the events past the caps are put below a floor
 * the watermark cannot stay under, and consumers behind it are marked
 * NEEDS_SNAPSHOT (they no longer hold GC; SetOffset clears the mark).
 * When the bytes below a watermark pass one memtable's size, it compacts
 * that key range only (never the whole DB, never a range delete): event
 * keys arrive in key order, so RocksDB moves flushed files down without
 * rewriting them (trivial moves run no filter), and SuggestCompactRange
 * does not mark files of the last level. These GC compactions are shared
 * fairly between tenants: slices of at most ST_GC_SLICE_BUFFERS memtables
 * of SST bytes, one per tenant per round, round-robin (st_db_maintain).
 * RocksDB's own compactions take turns per column family, each job bounded
 * by ST_MAX_COMPACTION_BYTES, on store.background_jobs threads; compaction
 * writes of all tenants together are bounded by RocksDB's rate limiter
 * (store.io_rate_bytes; flushes, and any job while writes stall, pass:
 * st_bgio). It also computes each tenant's figures
 * (st_db_tenant_stats).
 *
 * All functions are thread-safe. Appends go through the store's group
 * commit (below): concurrent appends of all tenants are written by one
 * leader at a time, in synced groups; a tenant's appends in arrival order.
 *
 * Write health: the outcome of the last synced write (append or offset
 * commit) is kept, so the store can say it cannot write (e.g. "No space left
 * on device") until a write succeeds again. RocksDB itself resumes writing
 * after such an error once space is back (its SstFileManager polls).
 */
#ifndef ST_DB_H
#define ST_DB_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "st_bgio.h"
#include "st_toast.h"

#include "wh_budget.h"
#include "wh_buf.h"
#include "wh_metrics.h"

#define ST_NAME_MAX 63 /* max bytes of a tenant or consumer name */
/* memtables per column family; this many write buffers is also the cap of
 * all column families together (db_write_buffer_size) */
#define ST_MAX_WRITE_BUFFERS WH_BUDGET_ST_MAX_WRITE_BUFFERS
/* one automatic compaction job, at most (tenants take turns) */
#define ST_MAX_COMPACTION_BYTES (64LL * 1024 * 1024)
/* a GC compaction covers at most this many memtables of SST bytes */
#define ST_GC_SLICE_BUFFERS 4
/* GC compactions per maintenance pass, all tenants */
#define ST_GC_PASS_SLICES 64
#define ST_MAX_CONSUMERS 65536 /* offset table entries, all tenants */
#define ST_MAX_TENANTS 256     /* tenants with column families (a write of one more is refused) */
/* tenant names a store process keeps an entry for (a few KiB each): those
 * with column families and those dropped or only looked up since it
 * started, which it forgets when it restarts. An entry is never freed or
 * given to another name while the process runs (readers, offsets and
 * RocksDB's GC filter hold pointers to it); a new name past this many is
 * refused, naming the limit. */
#define ST_MAX_TENANT_NAMES 4096

#define ST_OWNER_MAX 127  /* bytes of a lease owner id */
#define ST_OWNERS_MAX 256 /* lease owners remembered (replicas) */
/* ms: the longest request timeout a lease holder may tell (the maximum of
 * dispatcher.http_timeout_ms); more is refused, and a stored value above it
 * (corrupt) is read as it */
#define ST_LEASE_REQ_TIMEOUT_MAX 600000
#define ST_DLQ_EXCERPT 1024 /* bytes of a response body kept in a dead letter */

#define ST_DB_STALE 1 /* st_db_commit_epoch: epoch mismatch or dropped consumer (409) */
#define ST_DB_SLOW 2  /* st_db_admit: over the tenant's write budget (429) */
#define ST_DB_GUARD 3 /* st_db_admit: held back by the isolation guard (429) */

#define ST_MAINT_MS 1000 /* maintenance pass period */

/* Group commit (st_db_append): appends queue per tenant; one appender at
 * a time (the leader) writes groups of them with one synced WriteBatch,
 * taken round-robin from the tenants' queues. While a tenant makes light
 * appends (at most store.commit_share_bytes, default ST_COMMIT_SHARE_BYTES),
 * the other tenants' appends go in slices of that size, and a group ends
 * once it holds that much: a light append waits for at most one short
 * group and is synced in the next, never behind another tenant's
 * megabytes. Tenants alone, or all appending big batches, get their whole
 * queue in one group (up to ST_COMMIT_MAX_BYTES). A leader whose own append
 * is done hands the lead to a queued light append first, which then writes
 * its own group (no wake-up after its write). An append is acknowledged
 * once its last event's group is synced; a group that fails fails every
 * append in it and the rest of their tenants' queues. */
#define ST_COMMIT_SHARE_BYTES (128 << 10)
#define ST_COMMIT_MAX_BYTES (4u << 20)
#define ST_COMMIT_LIGHT_MS 1000     /* a light append this recent slices the others */
#define ST_ISOLATION_TARGET_PCT 150 /* store.isolation_target_pct's default */

typedef struct st_db st_db;

/* Runtime limits, 0 = none (the store.* runtime settings). Retention caps
 * apply to each tenant's events at or after its watermark. */
typedef struct st_db_limits {
    int64_t retention_bytes;
    int64_t retention_age_ms;
    int64_t rate_bytes_per_s; /* per-tenant write token bucket */
    int64_t rate_events_per_s;
    int64_t rate_burst_ms;        /* bucket size in ms of the rates (0 = 1000) */
    int64_t commit_share_bytes;   /* group commit slice while tenants share (0 = default) */
    int64_t io_rate_bytes;        /* RocksDB rate limiter, compaction bytes/s (0 = as is) */
    int64_t isolation_target_pct; /* st_guard: light appends' time with floods, % (0 = off) */
} st_db_limits;

/* A tenant's figures from the last maintenance pass. */
typedef struct st_tenant_stats {
    char tenant[ST_NAME_MAX + 1];
    uint64_t bytes;      /* SST files + memtables of its CFs (staging included) */
    uint64_t live_bytes; /* approximate on-disk bytes of events at/after the watermark */
    uint64_t end_lsn;
    uint32_t end_seq;
    uint64_t wm_lsn; /* GC watermark */
    uint32_t wm_seq;
    uint64_t wm_lag_bytes;   /* end_lsn - wm_lsn (WAL bytes) */
    int64_t oldest_age_ms;   /* commit age of the oldest event at/after the watermark; -1 none */
    uint32_t needs_snapshot; /* consumers marked NEEDS_SNAPSHOT */
    uint64_t gc_dropped;     /* events the filter dropped since open */
    uint64_t gc_compactions; /* GC slices compacted since open */
    uint64_t compactions;    /* RocksDB compactions of its column families since open */
    int end_unread;          /* the last pass could not read its last event: end_* are older */
} st_tenant_stats;

/* A consumer's offset as returned by the offset calls. */
typedef struct st_offset {
    uint64_t lsn;
    uint32_t seq;
    uint64_t epoch;
    int dropped; /* tombstone: DropOffset and not set since */
} st_offset;

typedef struct st_db_opts {
    const char *data_dir;       /* the DB lives in <data_dir>/rocksdb */
    int64_t cache_bytes;        /* block cache */
    int64_t write_buffer_bytes; /* per memtable */
    int read_only;              /* open for read only (--dump) */
    int background_jobs;        /* RocksDB flushes + compactions (0 = 2) */
    int64_t io_rate_bytes;      /* rate limiter, compaction bytes/s (0 = 128 MiB/s) */
    /* an offset commit is written without sync and replied to once a synced
     * write that began after it returned (the next group of appends, which
     * syncs the WAL before it), or after this long its own WAL sync
     * (0 = every offset commit syncs at once) */
    int64_t offset_sync_wait_us;
    /* WAL files zero-filled this far ahead of their end (st_walfs.h; 0 = off) */
    int64_t wal_zero_ahead_bytes;
} st_db_opts;

typedef struct st_event {
    uint64_t lsn;
    uint32_t seq;
    int64_t commit_ts_us;
    const void *json;
    size_t json_len;
} st_event;

/* Called per event by st_db_read(); json points into RocksDB memory that is
 * valid only during the call. Return 0 to continue, non-zero to stop. */
typedef int (*st_read_fn)(void *arg, uint64_t lsn, uint32_t seq, int64_t commit_ts_us,
                          const void *json, size_t json_len);

/* Checks a tenant or consumer name: 1..ST_NAME_MAX bytes. `what` names the
 * field in the message. */
int st_db_check_name(const char *name, const char *what, char *err, size_t errlen);

int st_db_open(st_db **out, const st_db_opts *o, char *err, size_t errlen);
void st_db_close(st_db *db);

/* One WriteBatch holding all events and D = max(old, ack_lsn), written,
 * then the WAL synced: returns once the sync covers it. The events are
 * readable from the write on (st_append_extra's `written` is told then,
 * before the sync): a reader may see them before they are durable, never
 * an acknowledgement. *durable_lsn receives the stored D value. */
int st_db_append(st_db *db, const char *tenant, const st_event *ev, size_t n, uint64_t ack_lsn,
                 uint64_t *durable_lsn, char *err, size_t errlen);
/* st_db_append that also puts the tenant's snapshot progress (an opaque
 * document of the ingestor, AppendBatch.snapshot_progress) in the same
 * WriteBatch: such an append is never split across group writes. */
int st_db_append_progress(st_db *db, const char *tenant, const st_event *ev, size_t n,
                          uint64_t ack_lsn, const void *prog, size_t prog_len,
                          uint64_t *durable_lsn, char *err, size_t errlen);
/* The tenant's snapshot progress: *out (malloc'd, NUL-terminated; NULL and
 * *len 0 when none was stored). */
int st_db_get_progress(st_db *db, const char *tenant, char **out, size_t *len, char *err,
                       size_t errlen);

/* ---- schema registry ----
 * A tenant's schema versions (the ingestor's ing_schema), in its meta CF:
 * one per (table, fingerprint), written once (registering a known version
 * leaves it as it is), with the commit LSNs at which it was (re)started
 * (a registration's started_lsn / started_xid). The maintenance pass
 * prunes versions no event at or above the tenant's stored GC watermark
 * can carry (the rule: st_db_schema.c, "schema registry"): a pruned version
 * keeps a tombstone (its first use, no description), listed with pruned
 * set; a registration with a start writes its description again. */
#define ST_SCHEMA_TABLE_MAX 300 /* "schema.table" bytes */
typedef struct st_schema {
    const char *table; /* "schema.table" */
    uint64_t fp;
    uint64_t first_lsn; /* commit LSN of the transaction that first used it (0: streamed) */
    uint32_t first_xid;
    const char *desc; /* canonical JSON description */
    size_t desc_len;
    /* Registration: the commit LSN of a transaction (decoded whole) whose
     * change used the version first after a Relation message (0: none), or
     * the xid of a streamed one (its commit LSN not known yet: a pending
     * start, resolved by st_db_schema_commit_xid; 0: none).
     * Listing: started_lsn the highest start stored (0: none), proven_lsn
     * the highest start of a transaction decoded whole (or first_lsn),
     * pending the streamed transactions' starts not resolved yet. */
    uint64_t started_lsn;
    uint32_t started_xid;
    uint64_t proven_lsn;
    uint32_t pending;
    /* Listing: a pruned version's tombstone (table, fp, first_lsn,
     * first_xid; no description, no start). */
    int pruned;
    /* Registration: started_lsn protects the version only, proves nothing
     * (a snapshot chunk's position: its description may not be the
     * stream's). */
    int start_unproven;
    /* Registration: a stored first use of a streamed transaction (first_lsn
     * 0) moves to (first_lsn, first_xid): that one announced the version
     * while the streamed one was still open, and committed first. */
    int first_use_moves;
} st_schema;

/* st_db_append, and the versions sv[0..nsv) not yet registered are written
 * in the synced WriteBatch that holds the append's first events (so they
 * are durable no later than any of them). */
int st_db_append_schemas(st_db *db, const char *tenant, const st_event *ev, size_t n,
                         uint64_t ack_lsn, const st_schema *sv, size_t nsv, uint64_t *durable_lsn,
                         char *err, size_t errlen);
/* Called once an append's last events are written (readable), before the
 * WAL sync that makes them durable: on the thread writing its group
 * (maybe not the appender's own), outside the commit queue's lock, while
 * the appender waits. Must not call into st_db's append path. */
typedef void (*st_written_fn)(void *arg);
/* What an append may carry besides its events (st_db_append_ext): the
 * snapshot progress (as st_db_append_progress), schema versions (as
 * st_db_append_schemas), and a hook for when it is written. */
typedef struct st_append_extra {
    const char *prog; /* NULL: none */
    size_t prog_len;
    const st_schema *sv;
    size_t nsv;
    const st_toast_op *tops; /* TOAST cache ops (st_toast), with the last events */
    size_t ntops;
    uint64_t tsender, tserial;
    st_written_fn written; /* NULL: none */
    void *written_arg;
    /* a stage commit's chunk (ref_gen > 0): event i is stored as a
     * reference to the staged event at ref_pos[i] of staging generation
     * ref_gen (its staging index; ref_file: its offset in the gen's staging
     * file: st_db_stage_txn_pos), which its json is what it resolves to
     * (head(seq) + staged json: st_db_stage_render); the first chunk
     * carries the commit record (cval: written with its first events) */
    uint64_t ref_gen;
    const uint64_t *ref_pos;
    int ref_file;
    const char *cval;
    size_t cval_len;
} st_append_extra;
int st_db_append_ext(st_db *db, const char *tenant, const st_event *ev, size_t n, uint64_t ack_lsn,
                     const st_append_extra *x, uint64_t *durable_lsn, char *err, size_t errlen);
/* The same versions alone, in one synced write. */
int st_db_schema_put(st_db *db, const char *tenant, const st_schema *sv, size_t n, char *err,
                     size_t errlen);
/* Deletes the versions whose first use was the streamed transaction xid
 * (first_lsn 0): it is dropped whole (a StageAbort of xid). *n: how many. */
int st_db_schema_drop_xid(st_db *db, const char *tenant, uint32_t xid, size_t *n, char *err,
                          size_t errlen);
/* The streamed transaction xid committed at commit_lsn (a StageCommit,
 * before its events are stored): its pending starts become starts at
 * commit_lsn, in one synced write. *n: how many. */
int st_db_schema_commit_xid(st_db *db, const char *tenant, uint32_t xid, uint64_t commit_lsn,
                            size_t *n, char *err, size_t errlen);
/* Prunes the versions of the tenant no stored event at or above wm_lsn
 * can carry (the maintenance pass calls it with the tenant's stored GC
 * watermark) to tombstones, and drops starts that no longer count; one
 * synced write. *n: versions pruned. */
int st_db_schema_prune(st_db *db, const char *tenant, uint64_t wm_lsn, size_t *n, char *err,
                       size_t errlen);
/* store.schema_prune: 0 stops the maintenance pass's prunes (default 1). */
void st_db_set_schema_prune(st_db *db, int on);
/* Calls fn for each registered version of the tenant (by table, then
 * fingerprint), tombstones too (sv->pruned); sv's pointers are valid
 * during the call only. Non-zero from fn stops. */
typedef int (*st_schema_fn)(void *arg, const st_schema *sv);
int st_db_schema_list(st_db *db, const char *tenant, st_schema_fn fn, void *arg, char *err,
                      size_t errlen);

/* ---- staged (streamed) transactions ----
 * PostgreSQL streams a big transaction before its commit LSN is known; its
 * changes are staged in the tenant's third column family "s:<tenant>"
 * (made at its first staging, dropped with the tenant), apart from the
 * events and from the meta CF (whose point reads, e.g. the D key of every
 * append, would otherwise walk the staging's range tombstones), under a
 * staging generation (gen) that the xid maps to while it is staged:
 *   'X' tenant \0 gen(8, BE) 'e' idx(4, BE) -> subxid(4, BE) + json
 *   'X' tenant \0 gen(8, BE) 'a' subxid(4, BE) -> "" (subtransaction aborted)
 *   'G' tenant \0 xid(4, BE) -> gen(8, BE): the xid's staging
 *   'C' tenant \0 gen(8, BE) -> the commit record (st_db_stage_cval)
 *   'N' tenant \0 -> the next gen (8, BE)
 * A stage commit writes each staged event as a reference (st_event
 * ref_gen, ref_idx) to its staging, with the gen's commit record in its
 * first chunk, and drops the xid's G key with its last: the staging stays
 * as the events' bytes (a read resolves each reference) until no event of
 * the transaction is left (the maintenance pass: st_dbi_stage_gc). */
typedef struct st_staged {
    uint32_t idx; /* staging index (Event.seq of a staged batch) */
    uint32_t subxid;
    const void *json;
    size_t json_len;
} st_staged;

typedef struct st_stage_abort {
    uint32_t xid, subxid; /* subxid == xid: the whole transaction */
    int one_event;        /* only the staged event at index (subxid == xid) */
    uint32_t index;
} st_stage_abort;

/* One synced WriteBatch: with reset, everything staged under xid is
 * dropped first (a committed generation is kept: the xid gets a new one);
 * then the events are put (idempotent: same index, same bytes). */
int st_db_stage_put(st_db *db, const char *tenant, uint32_t xid, int reset, const st_staged *ev,
                    size_t n, char *err, size_t errlen);
/* One synced WriteBatch: per entry, subxid == xid drops all of xid's
 * staging (xid == subxid == 0: all of the tenant's staging but what
 * committed transactions' events refer to); otherwise
 * subxid is noted as aborted (its events are skipped by the commit, and
 * dropped with the xid); one_event drops only xid's staged event at index. */
int st_db_stage_abort(st_db *db, const char *tenant, const st_stage_abort *ab, size_t n, char *err,
                      size_t errlen);
/* The aborted subxids of xid, ascending (*subs malloc'ed, free it; NULL
 * when none). */
int st_db_stage_aborted(st_db *db, const char *tenant, uint32_t xid, uint32_t **subs, size_t *n,
                        char *err, size_t errlen);
/* Called per staged event in index order; json is valid only during the
 * call. Non-zero: stop, the event is not taken (*stopped = 1). */
typedef int (*st_stage_fn)(void *arg, uint32_t idx, uint32_t subxid, const void *json,
                           size_t json_len);
/* Staged events of xid from index from_idx on (aborted ones included). */
int st_db_stage_scan(st_db *db, const char *tenant, uint32_t xid, uint32_t from_idx, st_stage_fn fn,
                     void *arg, int *stopped, char *err, size_t errlen);
/* Staged events of xid, counted up to cap (tests, tools). */
int st_db_stage_count(st_db *db, const char *tenant, uint32_t xid, uint64_t cap, uint64_t *n,
                      char *err, size_t errlen);
/* Committed transactions whose staging is kept (their events refer to
 * it), counted up to cap (tests, tools). */
int st_db_stage_committed(st_db *db, const char *tenant, uint64_t cap, uint64_t *n, char *err,
                          size_t errlen);
/* A stage commit of xid (st_db_stage_begin .. st_db_stage_end) holds the
 * tenant's staging lock: no other staging request of the tenant runs
 * meanwhile. *gen: the xid's staging generation, 0 when nothing is staged
 * (a commit sent again after it completed). */
typedef struct st_stage_txn st_stage_txn;
int st_db_stage_begin(st_db *db, const char *tenant, uint32_t xid, st_stage_txn **out,
                      uint64_t *gen, char *err, size_t errlen);
int st_db_stage_txn_aborted(st_stage_txn *h, uint32_t **subs, size_t *n, char *err, size_t errlen);
int st_db_stage_txn_scan(st_stage_txn *h, uint32_t from_idx, st_stage_fn fn, void *arg,
                         int *stopped, char *err, size_t errlen);
/* During st_db_stage_txn_scan's fn: where the event passed is staged (its
 * index, or its offset in the gen's staging file when
 * st_db_stage_txn_file), for st_append_extra.ref_pos. */
uint64_t st_db_stage_txn_pos(const st_stage_txn *h);
/* The staging files (all tenants) and their bytes (a directory scan: for
 * metrics; 0 when it cannot be read). */
void st_db_staging_files(st_db *db, uint64_t *files, uint64_t *bytes);
int st_db_stage_txn_file(const st_stage_txn *h);
void st_db_stage_end(st_stage_txn *h);
/* The xid's staging is not this commit's (a commit at another LSN cut
 * short): scans find nothing. */
void st_db_stage_txn_forget(st_stage_txn *h);
/* The gen's stored commit record, if any (*found), appended to out. */
int st_db_stage_txn_cval(st_stage_txn *h, wh_buf *out, int *found, char *err, size_t errlen);
/* The commit record of a stage commit (appended to out): xid, commit LSN
 * and the head parts that head(seq) joins with seq in decimal. */
int st_db_stage_cval(wh_buf *out, uint32_t xid, uint64_t commit_lsn, const void *const *part,
                     const size_t *part_len, size_t nparts);
/* 1 when the commit record cval names commit_lsn. */
int st_db_stage_cval_lsn_is(const char *cval, size_t cval_len, uint64_t commit_lsn);
/* Appends head(seq) + json to out: a committed staged event's bytes, as a
 * read resolves its reference. WH_ERR: cval malformed, or out of memory. */
int st_db_stage_render(wh_buf *out, const char *cval, size_t cval_len, uint64_t seq,
                       const void *json, size_t json_len);
/* st_db_append whose write also ends the stage commit of xid (its last
 * chunk: its events, ack_lsn and the xid's G key dropped in one
 * WriteBatch); x (may be NULL) as st_db_append_ext's. */
int st_db_append_stage_end(st_db *db, const char *tenant, const st_event *ev, size_t n,
                           uint64_t ack_lsn, uint32_t xid, const st_append_extra *x,
                           uint64_t *durable_lsn, char *err, size_t errlen);

/* Events of tenant strictly after (from_lsn, from_seq) in position order, at
 * most max_events, and stopping before max_bytes of json would be exceeded
 * (at least one event is always returned when one exists). *nread receives
 * the number of events passed to fn. */
int st_db_read(st_db *db, const char *tenant, uint64_t from_lsn, uint32_t from_seq,
               uint32_t max_events, size_t max_bytes, st_read_fn fn, void *arg, size_t *nread,
               char *err, size_t errlen);

/* A reader's cursor: (tenant, consumer) with the consumer's offset entry
 * found once (its reads never look it up in the offsets table, whose lock
 * is global) and a tailing iterator reused by every read (it sees what is
 * written after it was made; remade when the tenant's column families are
 * dropped or made again). Used by one thread at a time; closed before
 * st_db_close. An open cursor pins the RocksDB files and memtables its
 * iterator last saw until its next read: the server closes idle ones.
 * consumer may be NULL (reads from explicit positions only). */
typedef struct st_reader st_reader;
int st_db_reader_open(st_db *db, const char *tenant, const char *consumer, st_reader **out,
                      char *err, size_t errlen);
/* st_db_register through the cursor (its consumer). */
int st_db_reader_register(st_reader *r, st_offset *out, char *err, size_t errlen);
/* st_db_needs_snapshot through the cursor. */
int st_db_reader_needs_snapshot(const st_reader *r);
/* st_db_read through the cursor's iterator. */
int st_db_reader_read(st_reader *r, uint64_t from_lsn, uint32_t from_seq, uint32_t max_events,
                      size_t max_bytes, st_read_fn fn, void *arg, size_t *nread, char *err,
                      size_t errlen);
void st_db_reader_close(st_reader *r);

/* Moves the consumer's offset to (lsn, seq) unless it is already there or
 * beyond; *out_* receive the resulting offset. */
int st_db_commit(st_db *db, const char *tenant, const char *consumer, uint64_t lsn, uint32_t seq,
                 uint64_t *out_lsn, uint32_t *out_seq, char *err, size_t errlen);

/* Commit with an epoch: WH_OK (moved forward, or already there or beyond),
 * ST_DB_STALE when epoch is not the consumer's current epoch or the
 * consumer was dropped (err says which), WH_ERR on failure. *out receives
 * the consumer's offset after the call. st_db_commit is the epoch-0 form. */
int st_db_commit_epoch(st_db *db, const char *tenant, const char *consumer, uint64_t lsn,
                       uint32_t seq, uint64_t epoch, st_offset *out, char *err, size_t errlen);

/* Commit with an epoch and the sender's lease epoch (fencing): refused
 * (ST_DB_STALE) when the target has a lease and lease_epoch is not its
 * current epoch; lease_epoch 0 passes only while no live lease exists. */
int st_db_commit_fenced(st_db *db, const char *tenant, const char *consumer, uint64_t lsn,
                        uint32_t seq, uint64_t epoch, uint64_t lease_epoch, st_offset *out,
                        char *err, size_t errlen);

/* Read with a consumer: a consumer seen for the first time is stored at
 * (0,0) (so GC waits for it); *out receives its offset and epoch; a dropped
 * one is reported (out->dropped) and not registered again. */
int st_db_register(st_db *db, const char *tenant, const char *consumer, st_offset *out, char *err,
                   size_t errlen);

/* Moves the offset anywhere (backwards too) and bumps the epoch; *prev and
 * *now (may be NULL) receive the offsets before and after. */
int st_db_set_offset(st_db *db, const char *tenant, const char *consumer, uint64_t lsn,
                     uint32_t seq, st_offset *prev, st_offset *now, char *err, size_t errlen);

/* st_db_set_offset for st_resync: only when the consumer's offset is live
 * and still marked NEEDS_SNAPSHOT (an operator or a commit since the scan
 * wins), and never creating a tenant or an offset. Returns 1 when moved
 * (*prev the offset before), 0 when not (no longer marked, dropped, no
 * such tenant), WH_ERR when the write failed. */
int st_db_resync_offset(st_db *db, const char *tenant, const char *consumer, uint64_t lsn,
                        uint32_t seq, st_offset *prev, char *err, size_t errlen);

/* Deletes the stored offset (no longer holds GC back) and leaves a
 * tombstone with the epoch bumped. Dropping an unknown consumer is WH_OK. */
int st_db_drop_offset(st_db *db, const char *tenant, const char *consumer, st_offset *prev,
                      char *err, size_t errlen);

/* A dropped consumer becomes new again (epoch bumped): its next Read
 * registers it. No-op for others. */
int st_db_undrop(st_db *db, const char *tenant, const char *consumer);

/* 1 when the consumer's offset is live (set, registered or committed and
 * not dropped since), else 0. */
int st_db_offset_live(st_db *db, const char *tenant, const char *consumer);

/* The consumer's offset and epoch without registering it. */
int st_db_offset_info(st_db *db, const char *tenant, const char *consumer, st_offset *out,
                      char *err, size_t errlen);

/* Consumers in the offset table (tombstones included). */
size_t st_db_consumer_count(st_db *db);

/* The offset-move count: changes before and after every SetOffset,
 * DropOffset, undrop and tenant drop, and starts at the open's
 * wall clock (a restarted store has another). A reader that noted it before
 * its Read of an offset knows that no offset moved since that Read while the
 * count is the same: a move racing with the Read leaves the count it saw
 * behind (the durability notification's pushed events rely on it). */
uint64_t st_db_offset_moves(st_db *db);
/* 1 when an offset may have moved since a Read noted `since`
 * (st_db_offset_moves, before it read the offset): the count changed, or a
 * SetOffset, resync or DropOffset is under way. Such a move clears the
 * mark before its synced write and shows the new epoch only after it, so a
 * Read inside that write sees the old epoch, no mark and the same count;
 * the consumer's offset and mark read under its write lock then are the
 * move's (st_db_offset_and_mark). */
int st_db_offset_moved(st_db *db, uint64_t since);

/* The tenant's last stored position, (0,0) when it has no events. */
int st_db_tenant_end(st_db *db, const char *tenant, uint64_t *lsn, uint32_t *seq, char *err,
                     size_t errlen);

/* The state document: *doc (malloc'ed, NUL-terminated, free it) and its
 * version; version 0 and doc NULL when none is stored. */
int st_db_state_get(st_db *db, uint64_t *version, char **doc, size_t *len, char *err,
                    size_t errlen);
/* Stores version + doc with sync. */
int st_db_state_put(st_db *db, uint64_t version, const char *doc, size_t len, char *err,
                    size_t errlen);

/* The consumer's offset, (0, 0) when it never committed. */
int st_db_get_offset(st_db *db, const char *tenant, const char *consumer, uint64_t *lsn,
                     uint32_t *seq, char *err, size_t errlen);

/* Returns once everything written before the call is synced (an append's
 * sync that began after it, or a WAL sync of its own): for answers that
 * hand stored state to a client that acts on it as durable (an ingestor's
 * schema registry), since appends are readable before their sync. */
int st_db_wal_synced(st_db *db, char *err, size_t errlen);

/* The durable ack_lsn of the tenant (0 when none). */
int st_db_get_durable(st_db *db, const char *tenant, uint64_t *lsn, char *err, size_t errlen);

/* Prints "tenant X/X seq" per E key in key order. */
int st_db_dump(st_db *db, FILE *out, char *err, size_t errlen);
/* Prints "tenant xid n" per streamed transaction with n staged events
 * (walhook-store --dump-staged). */
int st_db_dump_staged(st_db *db, FILE *out, char *err, size_t errlen);

/* Flush and full manual compaction (runs the GC filter); for tests/tools. */
int st_db_compact(st_db *db, char *err, size_t errlen);
/* Flush of every tenant's memtables, waited for (the GC filter runs at
 * flush too: st_gcfilter.h); for tests/tools. */
int st_db_flush(st_db *db, char *err, size_t errlen);

/* E keys dropped by the GC filter since open. */
uint64_t st_db_gc_dropped(st_db *db);
/* Schema versions the registry prunes dropped since open, all tenants. */
uint64_t st_db_schema_pruned(st_db *db);
/* Events sent again with other bytes than stored (kept as stored). */
uint64_t st_db_resends_differ(st_db *db);
/* Counts n more in walhook_store_resends_differ_total (a stage commit sent
 * again with another head than its first attempt counts once). */
void st_db_resends_differ_add(st_db *db, uint64_t n);
/* Appended events compared with a stored copy since open (resend_check:
 * one RocksDB Get each): those at or below the tenant's newest event
 * written since open or its last event when the store opened. */
uint64_t st_db_resend_checks(st_db *db);
/* Tests: an event sent again at a stored position is written again (the
 * compaction tests rewrite the same keys); by default the stored one stays. */
void st_db_set_resend_overwrite(st_db *db, int on);
/* Compactions of a garbage range (below a watermark) since open. */
uint64_t st_db_gc_compactions(st_db *db);

/* The rate of RocksDB's limiter of compaction writes now
 * (store.io_rate_bytes, retuned by st_db_set_limits), bytes/s; 0 read-only.
 * Flushes are not limited (st_bgio), unless st_bgio could not be installed
 * (then RocksDB's C API limiter takes flushes and compactions alike). */
int64_t st_db_io_rate(st_db *db);
/* Bytes background writes asked the limiter for since open: limited
 * (compactions) and passed at once (flushes); both 0 without st_bgio. */
void st_db_io_bytes(st_db *db, uint64_t *limited, uint64_t *passed);

/* The compactions RocksDB began and the flushes it completed since open, in
 * order (st_bgio_log): fills
 * out with at most max, returns how many were logged; 0 when st_bgio could
 * not be installed. */
size_t st_db_compaction_log(st_db *db, st_bgio_rec *out, size_t max);
/* Starts that log (tests; off by default: compactions are only counted). */
void st_db_compaction_log_start(st_db *db);

/* WH_OK when the last synced write succeeded (or none was made yet); WH_ERR
 * while writes fail, with why = "cannot write for N s: <RocksDB's error>". */
int st_db_write_health(st_db *db, char *why, size_t whylen);
/* Synced writes that failed since open. */
uint64_t st_db_write_errors(st_db *db);
/* How long the oldest write or sync still in progress has waited for the
 * disk, ms (0: none in progress); *what names it ("append write", "WAL
 * sync", ...) when not NULL. Takes no lock: a hung disk cannot block it. */
uint64_t st_db_write_pending_ms(st_db *db, const char **what);
/* WH_ERR when a write or sync has waited longer than the bound of
 * st_db_set_write_stall_ms, with why = "a write has waited N s for the disk
 * (<what>)"; else WH_OK. */
int st_db_write_stall(st_db *db, char *why, size_t whylen);
/* store.write_stall_ms (0: never reported; default ST_WRITE_STALL_MS). */
void st_db_set_write_stall_ms(st_db *db, int64_t ms);

/* ---- dead-letter queue ----
 * Keys 'Q' tenant \0 consumer \0 lsn(8) seq(4) -> a dead letter (the
 * serialized DlqRecord, opaque here); the replay queue 'R' has the same key
 * shape and value. A dead letter holds its own copy of the event, so the GC
 * of E keys does not wait for it; removing the target (st_db_dlq_drop)
 * drops its Q and R keys (its lease stays with its holder). Mutations of
 * a consumer's queues take its writer lock, like its commits. */
typedef struct st_dlq_item {
    uint64_t lsn;
    uint32_t seq;
    const void *val;
    size_t len;
} st_dlq_item;

typedef int (*st_dlq_fn)(void *arg, uint64_t lsn, uint32_t seq, const void *val, size_t len);

/* One synced WriteBatch: the records (Q), the offset moved to (lsn, seq)
 * when has_pos (never backwards), and the replay entries up to (ack_lsn,
 * ack_seq) removed when has_ack (as st_db_replay_ack with ack_gen). Offset
 * epoch and lease epoch checked as in st_db_commit_fenced (ST_DB_STALE).
 * *out: the offset after the call. */
int st_db_dlq_write(st_db *db, const char *tenant, const char *consumer, const st_dlq_item *items,
                    size_t n, int has_pos, uint64_t lsn, uint32_t seq, uint64_t epoch,
                    uint64_t lease_epoch, int has_ack, uint64_t ack_lsn, uint32_t ack_seq,
                    uint64_t ack_gen, st_offset *out, char *err, size_t errlen);
/* Entries of queue kind 'Q' (dead letters) or 'R' (replay) strictly after
 * (lsn, seq) when has_after, in position order: at most limit, stopping
 * before max_bytes (one at least); *more says whether more follow. */
int st_db_dlq_list(st_db *db, const char *tenant, const char *consumer, char kind, int has_after,
                   uint64_t lsn, uint32_t seq, uint32_t limit, size_t max_bytes, st_dlq_fn fn,
                   void *arg, int *more, char *err, size_t errlen);
/* The dead letter at (lsn, seq): fn called once when found (*found = 1). */
int st_db_dlq_get(st_db *db, const char *tenant, const char *consumer, uint64_t lsn, uint32_t seq,
                  st_dlq_fn fn, void *arg, int *found, char *err, size_t errlen);
/* Entries in queue kind ('Q' or 'R'), counted up to cap. */
int st_db_dlq_count(st_db *db, const char *tenant, const char *consumer, char kind, uint64_t cap,
                    uint64_t *n, char *err, size_t errlen);
/* Moves dead letters (all, or those at the n positions) to the replay
 * queue; *moved counts them. Positions without a dead letter are skipped. */
int st_db_dlq_replay(st_db *db, const char *tenant, const char *consumer, int all,
                     const uint64_t *lsns, const uint32_t *seqs, size_t n, uint32_t *moved,
                     char *err, size_t errlen);
/* Deletes dead letters (all, or those at the positions); *deleted. */
int st_db_dlq_purge(st_db *db, const char *tenant, const char *consumer, int all,
                    const uint64_t *lsns, const uint32_t *seqs, size_t n, uint32_t *deleted,
                    char *err, size_t errlen);
/* The consumer's replay generation: moved by every st_db_dlq_replay that
 * queues entries, after their write (0: no such consumer). A ReplayRead
 * takes it before it reads the entries. */
uint64_t st_db_replay_gen(st_db *db, const char *tenant, const char *consumer);
/* Removes replay entries up to (lsn, seq) inclusive (delivered); lease
 * epoch checked (ST_DB_STALE). gen: the generation taken before the read
 * that returned them; when a replay queued entries since, the entries up
 * to (lsn, seq) are not all ones that read returned, and only the one at
 * (lsn, seq) goes (the others are read and delivered again, never lost).
 * gen 0: all up to (lsn, seq). */
int st_db_replay_ack(st_db *db, const char *tenant, const char *consumer, uint64_t lsn,
                     uint32_t seq, uint64_t lease_epoch, uint64_t gen, uint32_t *deleted, char *err,
                     size_t errlen);
/* A removed target: deletes its dead letters and replay queue. Its lease
 * stays with its holder, which releases it (a target deleted and created
 * again keeps its holder: no other dispatcher posts to it while a request
 * of the old one may still be at the receiver). */
int st_db_dlq_drop(st_db *db, const char *tenant, const char *consumer, char *err, size_t errlen);

/* ---- dispatcher leases ----
 * 'L' tenant \0 consumer -> epoch(8) ttl_ms(4) owner [\0 flags(1)
 * req_timeout_ms(4)]: the owner is printable, so the optional tail after a
 * NUL tells a value written before it existed (no tail: not abandoned,
 * timeout 0). flags bit 0: released with requests abandoned; bit 1: held,
 * granted as a takeover its holder has not renewed yet. Acquire/Release
 * are stored with sync; renewals only in memory, unless they raise the
 * request timeout or are the first since a takeover. After a restart a
 * stored lease is live for its TTL again, so its owner can renew before
 * anyone takes it; one released with requests abandoned is a takeover for
 * its next holder, lapsed at the load, and one taken over and not renewed
 * yet is one for its holder's next Acquire, lapsed at the load too. */
typedef struct st_lease {
    int granted;
    uint64_t epoch;
    char owner[ST_OWNER_MAX + 1];
    int64_t expires_in_ms; /* <= 0: expired or free */
    /* acquire: granted by taking over a lease its holder let expire (not
     * released) or released with requests abandoned, expired_ms_ago before
     * the grant; told again to the same holder's Acquire until it renews
     * the lease (the reply that told it first may have been lost) */
    int taken_over;
    int64_t expired_ms_ago;
    /* acquire, taken_over: the longest request timeout the lease's holders
     * told since it was last granted with nothing left at the target (0:
     * none told) */
    uint32_t request_timeout_ms;
} st_lease;

/* req_timeout_ms: the longest a request the owner starts to the target may
 * run (0: not told; over ST_LEASE_REQ_TIMEOUT_MAX: refused). The store keeps the longest told since
 * the lease was last granted with nothing left at the target, and returns it with a takeover
 * (st_lease.request_timeout_ms). */
int st_db_lease_acquire(st_db *db, const char *tenant, const char *consumer, const char *owner,
                        uint32_t ttl_ms, uint32_t req_timeout_ms, st_lease *out, char *err,
                        size_t errlen);
int st_db_lease_renew(st_db *db, const char *tenant, const char *consumer, const char *owner,
                      uint64_t epoch, uint32_t ttl_ms, uint32_t req_timeout_ms, st_lease *out,
                      char *err, size_t errlen);
/* abandoned: the holder stops with requests at the target unanswered (the
 * next grant is told taken_over, as after an expiry). */
int st_db_lease_release(st_db *db, const char *tenant, const char *consumer, const char *owner,
                        uint64_t epoch, int abandoned, st_lease *out, char *err, size_t errlen);
/* Calls fn for every (tenant, consumer) that was ever leased. */
typedef int (*st_lease_fn)(void *arg, const char *tenant, const char *consumer, const st_lease *l);
int st_db_lease_each(st_db *db, st_lease_fn fn, void *arg);
/* Notes owner as live for ttl_ms (and its announced control endpoint,
 * unless control is NULL: kept as it was); calls fn for each owner still
 * live with its control endpoint ("" when none was announced). */
int st_db_owners_live(st_db *db, const char *owner, const char *control, uint32_t ttl_ms,
                      void (*fn)(void *arg, const char *owner, const char *control), void *arg);
/* Checks a lease owner id: 1..ST_OWNER_MAX printable bytes. */
int st_db_check_owner(const char *owner, char *err, size_t errlen);

/* ---- tenants, GC, retention ---- */

/* Creates the tenant's column families (no-op when they exist). */
int st_db_tenant_create(st_db *db, const char *tenant, char *err, size_t errlen);
/* Drops the tenant's column families (its events, offsets, dead letters,
 * leases); its consumers become tombstones (as DropOffset) until
 * st_db_undrop. Unknown tenant: WH_OK. */
int st_db_tenant_drop(st_db *db, const char *tenant, char *err, size_t errlen);
/* 1 when the tenant has column families. */
int st_db_tenant_exists(st_db *db, const char *tenant);
/* A synced marker in the tenant's own data (on = 1; removed with on = 0)
 * that a state removing it is being written: a store that stops between
 * that write and the drop of the tenant's data finds it at open
 * (st_state_sweep) and drops the data, whatever the configuration file
 * names. Nothing to do for a tenant without data. */
int st_db_tenant_mark_removal(st_db *db, const char *tenant, int on, char *err, size_t errlen);
int st_db_tenant_removal_marked(st_db *db, const char *tenant);
/* Calls fn(arg, name) for every tenant that has a column family now (on
 * disk at open, or created since), in name order; fn may drop it. */
void st_db_tenant_each(st_db *db, void (*fn)(void *arg, const char *tenant), void *arg);
void st_db_set_limits(st_db *db, const st_db_limits *l);
/* One maintenance pass now (the thread runs one every ST_MAINT_MS). */
void st_db_maintain(st_db *db);
/* Observer of the GC compactions (tests): called on the maintenance thread
 * before each slice with the tenant and the SST bytes of the slice. */
typedef void (*st_gc_hook)(void *arg, const char *tenant, uint64_t bytes);
void st_db_set_gc_hook(st_db *db, st_gc_hook fn, void *arg);
/* Observer of the retention floors (tests): called on the maintenance
 * thread right after a tenant's floor moves up, when every flush and
 * compaction may drop the events below it; the targets behind it are
 * NEEDS_SNAPSHOT by then. */
typedef void (*st_floor_hook)(void *arg, const char *tenant, uint64_t lsn, uint32_t seq);
void st_db_set_floor_hook(st_db *db, st_floor_hook fn, void *arg);
/* How long a tenant's watermark stays put before its rest of garbage under
 * one memtable is compacted once (the idle sweep; ST_GC_IDLE_MS, tests
 * set less). */
#define ST_GC_IDLE_MS 30000
void st_db_set_gc_idle_ms(st_db *db, int64_t ms);
/* Up to max tenants' figures (tenants with column families), by name. */
size_t st_db_tenant_stats(st_db *db, st_tenant_stats *out, size_t max);
/* The tenant's GC watermark, moved forward to its consumers' minimum now. */
int st_db_watermark(st_db *db, const char *tenant, uint64_t *lsn, uint32_t *seq);
/* 1 when the consumer is marked NEEDS_SNAPSHOT. */
int st_db_needs_snapshot(st_db *db, const char *tenant, const char *consumer);
/* The consumer's offset (as st_db_offset_info) and its mark together, under
 * its write lock: an offset move (st_db_set_offset, st_db_resync_offset)
 * clears the mark before its synced write and shows the new epoch only
 * after it, so a lock-free look at both may pair the old epoch with the
 * cleared mark. */
void st_db_offset_and_mark(st_db *db, const char *tenant, const char *consumer, st_offset *out,
                           int *needs_snapshot);
/* An automatic resync of a marked consumer, noted in its N note before its
 * backfill request is written: the tenant's end (lsn, seq) its offset moves
 * to and the backfill's id bf. Written without a sync of its own: the
 * request's synced state write, next in the same WAL, makes it durable
 * first. A store that stops between that request and the move finds both
 * here (st_db_resync_noted) and moves the offset instead of requesting a
 * second backfill. 1 noted, 0 not marked (nothing written), WH_ERR (err).
 * The note goes with the mark. */
int st_db_resync_note(st_db *db, const char *tenant, const char *consumer, uint64_t lsn,
                      uint32_t seq, uint64_t bf, char *err, size_t errlen);
/* 1 and what st_db_resync_note stored while the consumer is still marked,
 * else 0. */
int st_db_resync_noted(st_db *db, const char *tenant, const char *consumer, uint64_t *lsn,
                       uint32_t *seq, uint64_t *bf);
/* The tenant's write token bucket (store.tenant_rate_bytes/_events,
 * store.tenant_burst_ms): WH_OK charges the append; ST_DB_SLOW refuses it
 * with *retry_ms, the time until the bucket has paid its debt back. A
 * batch bigger than the bucket passes when the bucket is full. Unlimited
 * when both rates are 0. Before it, for a big append, the isolation guard
 * (st_guard.h): ST_DB_GUARD with *retry_ms when it holds it back (the
 * budget is then not charged; what the guard charged is given back when
 * the budget refuses). */
int st_db_admit(st_db *db, const char *tenant, uint64_t bytes, uint64_t events, uint32_t *retry_ms);
/* The isolation guard's figures. */
typedef struct st_guard_stats {
    int64_t rate_bytes; /* bytes/s admitted to floods now, 0 = not limiting */
    int64_t quiet_us;   /* light appends' quiet time it compares with (0 = none yet) */
    uint64_t slowed;    /* big appends it refused with "slow down" */
} st_guard_stats;
void st_db_guard_stats(st_db *db, st_guard_stats *out);
/* The guard itself and the key it knows tenant by (tests feed it times). */
struct st_guard *st_db_guard(st_db *db);
const void *st_db_tenant_key(st_db *db, const char *tenant);
/* Charges the bucket without refusing (a stage commit's chunks, admitted
 * once as a whole: a commit refused half-way would start again). */
void st_db_charge(st_db *db, const char *tenant, uint64_t bytes, uint64_t events);
/* RocksDB's cumulative write figures since open: synced writes (appends,
 * commits...), the commit groups they were coalesced into (one WAL write
 * and one sync each: concurrent appends of several tenants share one), and
 * WAL syncs. Parsed from "rocksdb.dbstats" (K/M rounded). */
int st_db_write_groups(st_db *db, uint64_t *writes, uint64_t *groups, uint64_t *syncs);
/* The group commit's figures: groups written, those sliced because a
 * tenant makes light appends, and per append the time of each stage:
 * queued until the write of the group with its last event began
 * (ST_APPEND_QUEUE), that write with its sync (ST_APPEND_WRITE), the
 * hand-back to its thread (ST_APPEND_WAKE); light appends (at most
 * store.commit_share_bytes: st_db_append_light) in stage[0], the others in
 * stage[1]. The histograms are the db's (valid until st_db_close). */
enum { ST_APPEND_QUEUE, ST_APPEND_WRITE, ST_APPEND_WAKE, ST_APPEND_STAGES };
typedef struct st_append_stats {
    uint64_t groups, shared_groups;
    const wh_histogram *stage[2][ST_APPEND_STAGES];
} st_append_stats;
/* 1 when the append of these events is light (the group commit's slices). */
int st_db_append_light(st_db *db, const st_event *ev, size_t n);
void st_db_append_stats(st_db *db, st_append_stats *out);
/* Observer of the group commit (tests): called by the leader after each
 * group's write with the appends' parts in it, its bytes (about: values and
 * keys) and whether it was sliced (tenants sharing). */
typedef void (*st_commit_hook)(void *arg, size_t parts, uint64_t bytes, int sliced);
void st_db_set_commit_hook(st_db *db, st_commit_hook fn, void *arg);
/* Bytes of the tenant's appends queued and not in a group yet (tests). */
uint64_t st_db_commit_queued(st_db *db, const char *tenant);
/* Calls fn for every consumer marked NEEDS_SNAPSHOT (under the offsets
 * table's read lock: fn must not call st_db), with when it was marked
 * (wall clock ms, 0 unknown: marked by an older store) and why
 * (st_db_ns_kind_name). */
typedef void (*st_consumer_fn)(void *arg, const char *tenant, const char *consumer,
                               int64_t since_ms, const char *reason);
void st_db_needs_snapshot_each(st_db *db, st_consumer_fn fn, void *arg);
/* The stored (live) consumers of tenant with their offsets and marks, under
 * the offset table's read lock (fn must not call st_db). */
typedef void (*st_offset_fn)(void *arg, const char *consumer, uint64_t lsn, uint32_t seq,
                             int needs_snapshot);
void st_db_offsets_each(st_db *db, const char *tenant, st_offset_fn fn, void *arg);
/* Why a consumer is marked NEEDS_SNAPSHOT. */
enum { ST_NS_UNKNOWN = 0, ST_NS_RETENTION = 1, ST_NS_LAG = 2, ST_NS_DISCONNECTED = 3 };
/* "retention_cap", "force_resync_lag", "force_resync_disconnected", "unknown" */
const char *st_db_ns_kind_name(int kind);
/* force_resync (st_slot): marks a live consumer NEEDS_SNAPSHOT like the
 * retention cap does (stored with the offset; SetOffset clears it), notes
 * kind (ST_NS_*) and the time, and logs `why`, only while its offset is
 * still (lsn, seq), the position the mark was decided on (checked under
 * the offset's write lock: a commit meanwhile wins). 1 when it was marked
 * now. */
int st_db_mark_needs_snapshot(st_db *db, const char *tenant, const char *consumer, uint64_t lsn,
                              uint32_t seq, int kind, const char *why);
/* st_slot's stall timer of a consumer, kept across restarts: elapsed_ms of
 * stall already observed while its offset was (lsn, seq) (the store's own
 * downtime not included). Written without sync (the store's next synced
 * write makes it durable: no fsync of its own); elapsed_ms 0 deletes it.
 * No tenant: WH_OK, nothing kept. SetOffset deletes the N note, DropOffset
 * the N note and the stall timer. */
int st_db_stall_put(st_db *db, const char *tenant, const char *consumer, uint64_t elapsed_ms,
                    uint64_t lsn, uint32_t seq, char *err, size_t errlen);
/* 1 and the values when the N note (when and why a consumer was marked)
 * is stored, 0 when none, -1 (err). */
int st_db_ns_note_get(st_db *db, const char *tenant, const char *consumer, int64_t *since_ms,
                      int *kind, char *err, size_t errlen);
/* 1 and the values when a stall timer is stored, 0 when none, -1 (err). */
int st_db_stall_get(st_db *db, const char *tenant, const char *consumer, uint64_t *elapsed_ms,
                    uint64_t *lsn, uint32_t *seq, char *err, size_t errlen);

/* ---- the TOAST value cache (st_toast.h) ----
 * st_db_append with TOAST cache ops, applied in the WriteBatch of the
 * append's last events (the tenant's CF "t:<tenant>" is made first);
 * prog: snapshot progress as st_db_append_progress (NULL: none); sender,
 * serial: see st_toast_apply. */
int st_db_append_toast(st_db *db, const char *tenant, const st_event *ev, size_t n,
                       uint64_t ack_lsn, const void *prog, size_t prog_len, const st_toast_op *ops,
                       size_t nops, uint64_t sender, uint64_t serial, uint64_t *durable_lsn,
                       char *err, size_t errlen);
/* store.toast_cache_bytes: the bound of each tenant's entries (runtime). */
void st_db_set_toast_bytes(st_db *db, int64_t bytes);
/* st_toast_get for the tenant: 1 found (*val malloc'd), 0 none, -1 error. */
int st_db_toast_get(st_db *db, const char *tenant, uint32_t rel, const char *key, size_t keylen,
                    const char *col, uint64_t before_lsn, char **val, size_t *vallen, uint64_t *lsn,
                    char *err, size_t errlen);
int st_db_toast_tables(st_db *db, const char *tenant, st_toast_table **out, size_t *n, char *err,
                       size_t errlen);
/* The tenant's figures; 0 when it has no TOAST cache CF. */
int st_db_toast_stats(st_db *db, const char *tenant, st_toast_stats *out);

#endif
