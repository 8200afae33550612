/* st_toast: the store-backed level of the TOAST value cache (issue 9).
 *
 * The ingestor keeps the last value of TOASTed columns in memory
 * (services/ingestor/ing_toast.h) to fill updates that leave them unchanged
 * (pgoutput kind 'u'). After an ingestor restart that memory is empty; this
 * module keeps the same entries per tenant in the column family
 * "t:<tenant>" (made at the first entry, dropped with the tenant), so the
 * ingestor can ask for a value it does not hold (ToastGet).
 *
 * Keys of the CF:
 *   'E' rel(4) keylen(4) key col -> epoch(8) gen(8) lsn(8) wseq(8) value
 *   'Q' wseq(8)                  -> size(8) + the E key (eviction order)
 *   'G' rel(4)                   -> gen(8) fingerprint(8) {len(2) col}...
 *   'M'                          -> bytes(8) entries(8) wseq(8) evictions(8) epoch(8)
 *                                   sender(8) serial(8)
 * (integers big-endian). rel is the table's OID, key the event's "key"
 * JSON, col the column name, value the column's rendered JSON, lsn the
 * commit LSN of the transaction that wrote it.
 *
 * Writes (ToastOp, AppendBatch.toast_ops) are applied in the WriteBatch
 * that stores the request's last events and its ack position (D), so the
 * stored entries are never ahead of the stored events and never behind the
 * acknowledged position (the flush LSN PostgreSQL resends from): whatever
 * PostgreSQL resends after a crash brings its ops again. Ops are applied
 * by the group commit's leader only (one writer); lookups read the CF.
 * Events are idempotent by position, ops are not (a late copy of a put
 * could bring back a value a later request deleted): each request names
 * its sender (random per ingestor process) and the serial of its last op,
 * and a copy whose serial is not above the last applied one of the same
 * sender is not applied again.
 *
 * Validity of an entry (st_toast_get): its epoch is the tenant's (CLEAR: a
 * new source bumps it), its gen is its table's current generation (TABLE
 * bumps it: a Relation message that may mean changes were not sent, a
 * truncate, a change skipped for its origin; old entries are not deleted
 * one by one, they age out through eviction), and its lsn is before the
 * commit LSN of the change being decoded: after a restart PostgreSQL
 * resends from the confirmed flush LSN, and an entry written by a
 * transaction at or after the change being decoded again is its future (a
 * value that the change may not have had yet). Deletes, key changes and
 * values too small to keep delete entries (DEL, DEL_ROW). What the
 * ingestor has sent and the store not yet made durable is the ingestor's
 * to know (ing_tstore: it never asks for a key with an op in flight).
 *
 * Bounded size: store.toast_cache_bytes per tenant (runtime); the oldest
 * written entries go first (the Q index, deleted in the same batch), so
 * the CF holds at most the bound plus one batch. Entries of old
 * generations (a table changed or dropped) are counted until evicted. */
#ifndef ST_TOAST_H
#define ST_TOAST_H

#include <rocksdb/c.h>
#include <stddef.h>
#include <stdint.h>

enum { ST_TOAST_PUT = 1, ST_TOAST_DEL, ST_TOAST_DEL_ROW, ST_TOAST_TABLE, ST_TOAST_CLEAR };

typedef struct st_toast_op {
    int kind; /* ST_TOAST_* */
    uint32_t rel;
    const char *key;
    size_t keylen;
    const char *col;
    size_t collen;
    const char *val;
    size_t vallen;
    uint64_t lsn;
    uint64_t fingerprint;
} st_toast_op;

/* One table with entries (st_toast_tables). */
typedef struct st_toast_table {
    uint32_t rel;
    uint64_t fingerprint;
    char **cols;
    size_t ncols;
} st_toast_table;

typedef struct st_toast_stats {
    uint64_t entries, bytes, evictions, puts, lookups, found;
} st_toast_stats;

typedef struct st_toast st_toast; /* one tenant's */

st_toast *st_toast_new(void);
void st_toast_free(st_toast *t);
/* The tenant's CF went away (dropped): the state is read again. */
void st_toast_reset(st_toast *t);

/* Puts the ops into wb (one group of the commit queue: calls for the same
 * wb see each other's writes), evicting down to max_bytes (0: every entry
 * goes). Then st_toast_end once wb was written (ok) or not. */
/* sender, serial: AppendBatch.toast_sender and toast_serial; a request of
 * the same sender whose serial is not above the last applied one is a late
 * copy: nothing is applied (serial 0: always applied). */
int st_toast_apply(st_toast *t, rocksdb_t *rdb, rocksdb_column_family_handle_t *cf,
                   rocksdb_writebatch_t *wb, const st_toast_op *ops, size_t n, uint64_t sender,
                   uint64_t serial, uint64_t max_bytes, char *err, size_t errlen);
void st_toast_end(st_toast *t, int ok);

/* The valid entry of (rel, key, col) written before before_lsn: 1 found
 * (*val malloc'd, *lsn), 0 none, -1 error (err). cf may be NULL (none). */
int st_toast_get(st_toast *t, rocksdb_t *rdb, rocksdb_column_family_handle_t *cf, uint32_t rel,
                 const char *key, size_t keylen, const char *col, uint64_t before_lsn, char **val,
                 size_t *vallen, uint64_t *lsn, char *err, size_t errlen);
/* The tables with entries (free with st_toast_tables_free). */
int st_toast_tables(st_toast *t, rocksdb_t *rdb, rocksdb_column_family_handle_t *cf,
                    st_toast_table **out, size_t *n, char *err, size_t errlen);
void st_toast_tables_free(st_toast_table *tabs, size_t n);
void st_toast_get_stats(st_toast *t, rocksdb_t *rdb, rocksdb_column_family_handle_t *cf,
                        st_toast_stats *out);

#endif
