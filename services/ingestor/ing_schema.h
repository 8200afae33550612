/* ing_schema: schema versions (registry, fingerprints) and DDL capture.
 *
 * A table's shape (schema and table name, replica identity, key columns,
 * and each column's name, type OID and type modifier, in order) is
 * described once per Relation message as a canonical JSON object
 * (ing_schema_describe); its fingerprint is the FNV-1a 64-bit hash of those
 * bytes, shown as 16 lowercase hex digits: the same shape gives the same
 * fingerprint on every run and machine. The relation cache keeps it
 * (ing_relation.version*), so an event's "schema_version" costs a copy.
 *
 * The registry: every version the tenant registered in the store (loaded
 * once, ing_schema_load) plus those this process announced since, each with
 * the transaction that first used it. The first change of a relation's
 * version (ing_schema_announce) gets a `schema` event before it when the
 * version is new, and again when this is the replay of the transaction that
 * first used it (after a crash PostgreSQL sends it again: the same events
 * at the same positions, so a change never moves to another seq), once per
 * transaction and connection; the
 * registration (AppendBatch.schemas) travels in the same batch as that
 * event.
 *
 * Starts: the first change of a relation after each of its Relation
 * messages registers its version again with a start (its commit LSN, or
 * its streamed transaction's xid), with the description, so the store
 * knows when each version was last (re)started and can prune the registry
 * (st_db_schema.c, "schema registry"), and a version the store pruned is written
 * again when a table returns to it. Once per Relation message, never per
 * event.
 *
 * DDL capture (source.ddl): event triggers in the source database emit
 * each DDL command as a transactional logical message with prefix
 * ING_SCHEMA_DDL_PREFIX; ing_event_ddl renders it; ing_ddl installs and
 * releases them. */
#ifndef ING_SCHEMA_H
#define ING_SCHEMA_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "ing_pgoutput.h"
#include "wh_buf.h"
#include "wh_config.h"

#define ING_SCHEMA_DDL_PREFIX "walhook.ddl"

/* The canonical description of r, appended to b:
 * {"schema":"s","table":"t","replica_identity":"default|nothing|full|index",
 *  "key_columns":["a",...],"columns":[{"name":"a","type_oid":23,"typmod":-1},...]}
 * key_columns: the events' key (the primary key of a REPLICA IDENTITY FULL
 * table when it was found, else the replica identity columns). */
int ing_schema_describe(wh_buf *b, const ing_relation *r);
/* The registry's table name of r, "schema.table", into buf (cap bytes;
 * ING_SCHEMA_TABLE_MAX holds any two PostgreSQL identifiers). Every path
 * that names a version's table goes through here, so they cannot differ. */
#define ING_SCHEMA_TABLE_MAX (2 * 64 + 2)
const char *ing_schema_table(const ing_relation *r, char *buf, size_t cap);
/* FNV-1a, 64 bits. */
uint64_t ing_schema_hash(const void *p, size_t n);
/* Sets r->version and version_hex from its description (scratch: a
 * reusable buffer), and clears version_done. WH_ERR: out of memory (r then
 * has no version). */
int ing_schema_version(ing_relation *r, wh_buf *scratch);
/* "replica identity" letter ('d','n','f','i') as the description names it. */
const char *ing_schema_identity_name(char replident);

typedef struct ing_schema ing_schema;

int ing_schema_new(ing_schema **out, char *err, size_t errlen);
void ing_schema_free(ing_schema *s);

/* Loads the tenant's registered versions from the store (once: later
 * calls return WH_OK at once). WH_ERR (err says why) when the store cannot
 * be asked. */
int ing_schema_load(ing_schema *s, const wh_config *cfg, char *err, size_t errlen);
/* Adds a known version (the store's list; tests). */
int ing_schema_known(ing_schema *s, uint64_t fp, uint64_t first_lsn, uint32_t first_xid);
/* Versions known. */
size_t ing_schema_count(const ing_schema *s);

/* Pending announcements. A version first used by a streamed transaction X
 * that is still open is not announced for good: X may abort (or be dropped
 * at a reconnect). Another transaction that uses the version meanwhile
 * announces it too (a schema event of its own):
 * - one decoded whole (committed before X, as it is decoded at its commit)
 *   takes the first use over (ING_SCHEMA_TAKES: ing_schema_take, its
 *   registration with first_use_moves), and the schema events that open
 *   streamed transactions staged for the version are dropped from their
 *   staging (the store numbers staged events at the commit, so no seq is
 *   lost): sent again, they are decoded after the new first use and
 *   announce nothing;
 * - another streamed one stages its own (ING_SCHEMA_PENDING: the caller
 *   notes it with ing_schema_staged_add); the first of them to commit
 *   takes the first use over (ing_schema_commit_xid).
 * So whichever transaction commits first carries the schema event, and a
 * transaction sent again (whole or streamed) announces what it did. */

/* The first change of r's version in a transaction (commit LSN, xid;
 * mode: how it is decoded): ING_SCHEMA_EMIT when a schema event goes
 * before it (and its registration with the batch), with ING_SCHEMA_TAKES
 * or ING_SCHEMA_PENDING as above; else 0. Marks r->version_done. */
#define ING_SCHEMA_EMIT 1
#define ING_SCHEMA_TAKES 2
#define ING_SCHEMA_PENDING 4
#define ING_SCHEMA_WHOLE 0    /* a transaction decoded whole, at its commit */
#define ING_SCHEMA_STAGED 1   /* a streamed one (its commit LSN not known yet) */
#define ING_SCHEMA_SNAPSHOT 2 /* a snapshot chunk: as whole, never takes over */
int ing_schema_announce(ing_schema *s, ing_relation *r, uint64_t commit_lsn, uint32_t xid,
                        int mode);
/* A streamed transaction's schema event of version fp (ING_SCHEMA_EMIT,
 * staged), at staging index idx in its (sub)transaction subxid: pending
 * (ING_SCHEMA_PENDING) or not; table ("schema.table") and desc are copied
 * for its registration at the commit. Every one is noted: a
 * subtransaction's abort drops its schema events with its changes
 * (ing_schema_forget_sub), and the transaction then announces the version
 * again at its next change of that shape, as it does when sent whole.
 * WH_ERR: out of memory. */
int ing_schema_staged_add(ing_schema *s, uint64_t fp, uint32_t xid, uint32_t subxid, uint32_t idx,
                          int pending, const char *table, const char *desc, size_t dlen);
/* Called for each staged schema event to drop (xid's at staging index idx). */
typedef int (*ing_schema_drop_fn)(void *arg, uint32_t xid, uint32_t idx);
/* Version fp's first use becomes (lsn, xid): the pending announcements of
 * it go (drop for each). */
int ing_schema_take(ing_schema *s, uint64_t fp, uint64_t lsn, uint32_t xid, ing_schema_drop_fn drop,
                    void *arg);
/* Called for each version a committing streamed transaction takes over. */
typedef int (*ing_schema_reg_fn)(void *arg, const char *table, uint64_t fp, const char *desc,
                                 size_t dlen);
/* Stream Commit of xid at lsn: every version it has a pending announcement
 * of is taken over by it (reg, then ing_schema_take). */
int ing_schema_commit_xid(ing_schema *s, uint32_t xid, uint64_t lsn, ing_schema_drop_fn drop,
                          ing_schema_reg_fn reg, void *arg);
/* A new replication connection (PostgreSQL sends each transaction again
 * from its start): a version is announced once per transaction and
 * connection, at its first change in it. */
void ing_schema_new_connection(ing_schema *s);
/* The streamed transaction xid is dropped whole (Stream Abort, or staged
 * again from its start): its pending announcements go; a version it first
 * used passes to another open one that announced it, or is unknown again,
 * as the store forgets it at the same StageAbort (st_db_schema_drop_xid).
 * Returns how many are unknown again; the caller makes the relations check
 * again (ing_parser_versions_reset). */
size_t ing_schema_forget_xid(ing_schema *s, uint32_t xid);
/* Subtransaction subxid of the streamed transaction xid aborted: the
 * schema events staged in it are dropped with it, so xid's first use of
 * their versions too (as ing_schema_forget_xid). Returns how many were
 * noted; the caller makes the relations check again
 * (ing_parser_versions_reset). */
size_t ing_schema_forget_sub(ing_schema *s, uint32_t xid, uint32_t subxid);
/* The first use (commit LSN, 0 when streamed; xid) of a known version:
 * 1, or 0 when it is not known. */
int ing_schema_first_use(const ing_schema *s, uint64_t fp, uint64_t *first_lsn,
                         uint32_t *first_xid);
/* The registration of r's version as an AppendBatch.schemas field (tag,
 * length, SchemaVersion), appended to out; desc: its description. A start
 * (the first change after a Relation message, for the store's pruning):
 * started_lsn its commit LSN, or started_xid its streamed transaction
 * (0, 0: none). */
int ing_schema_field(wh_buf *out, const ing_relation *r, const char *desc, size_t dlen,
                     uint64_t first_lsn, uint32_t first_xid, uint64_t started_lsn,
                     uint32_t started_xid, int first_use_moves);

#endif
