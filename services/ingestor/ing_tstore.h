/* ing_tstore: the ingestor's side of the store-backed TOAST value cache
 * (services/store/st_toast.h). ing_toast calls it; one thread (the
 * replication thread).
 *
 * Writes: every change ing_toast makes to its entries becomes a ToastOp
 * for the store (ing_batcher_toast_add), so the store holds what the
 * memory would if it were never evicted or restarted: PUT for a value kept
 * (only values ing_toast keeps: TOASTed ones), DEL / DEL_ROW for a value
 * dropped (a smaller or NULL value, a key change, a delete), TABLE for a
 * table whose entries are no longer valid, CLEAR for a new source. Ops
 * are sent only for tables the store may hold entries of (and DEL only for
 * its columns with entries): nothing per ordinary event.
 *
 * Relation messages. In memory every Relation message drops the table's
 * entries (PostgreSQL sends one again after anything that may have changed
 * what it sends of the table, e.g. a publication that stopped and resumed
 * publishing updates: changes not sent may have replaced kept values).
 * In the store, a table's generation is bumped (TABLE) by every Relation
 * message of a table after its first one in a session, and by a first one
 * whose fingerprint (column names, types, modifiers, replica identity and
 * its columns) differs from the one the store holds. The first Relation
 * message of a session with the same fingerprint keeps the entries: that
 * is what makes them useful after a restart (PostgreSQL sends every
 * table's Relation message again in a new session). The gap this leaves,
 * said plainly: a change that PostgreSQL did not send (a publication that
 * stopped publishing the table's updates and started again) lying between
 * the restart position and the table's first change after a restart is
 * not seen, so the store may keep a value such a change replaced.
 * Schema changes (a new fingerprint), truncates, deletes, key changes and
 * skipped changes are always seen.
 *
 * Reads (ing_tstore_get): on a memory miss for an unchanged column, when
 * the store may hold an entry (its table and column are listed), and no
 * op for that entry, row or table is still on its way (not durable yet: a
 * small table of serials by hash, conservative on collisions), the store
 * is asked for the entry written before the change's commit LSN, waiting
 * at most ING_TSTORE_TIMEOUT_MS; a timeout or an error lists the column as
 * unchanged (and lookups pause for ING_TSTORE_PAUSE_MS, so a store that is
 * down costs one timeout per pause, not one per update). */
#ifndef ING_TSTORE_H
#define ING_TSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "ing_batch.h"
#include "ing_pgoutput.h"
#include "wh_config.h"

#define ING_TSTORE_TIMEOUT_MS 500
#define ING_TSTORE_PAUSE_MS 2000
/* No store copy of a value larger than ipc.max_msg_bytes / this (its event
 * is as large: the request carrying both would not fit), nor of one that
 * would bring the ops waiting for a batch past ipc.max_msg_bytes / the
 * other; the entry is deleted instead (a later unchanged value of it is
 * listed as unchanged unless the memory cache has it). */
#define ING_TSTORE_MAX_VALUE_DIV 4
#define ING_TSTORE_MAX_CARRY_DIV 2

typedef struct ing_tstore ing_tstore;

int ing_tstore_new(ing_tstore **out, const wh_config *cfg, ing_batcher *bt, char *err,
                   size_t errlen);
void ing_tstore_free(ing_tstore *ts);

/* A stream starts (again): Relation messages are first ones once more;
 * the first call reads the tables the store holds entries of. */
void ing_tstore_session(ing_tstore *ts);
void ing_tstore_put(ing_tstore *ts, const ing_relation *rel, const char *key, size_t keylen,
                    int col, const char *json, size_t jsonlen, uint64_t lsn);
void ing_tstore_forget(ing_tstore *ts, const ing_relation *rel, const char *key, size_t keylen,
                       int col);
void ing_tstore_forget_row(ing_tstore *ts, const ing_relation *rel, const char *key, size_t keylen);
void ing_tstore_forget_rel(ing_tstore *ts, uint32_t oid);
void ing_tstore_relation(ing_tstore *ts, const ing_relation *rel);
void ing_tstore_clear(ing_tstore *ts);
/* 1 when the store may hold entries of some table (ts may be NULL). */
int ing_tstore_may_hold(const ing_tstore *ts);
/* The store's value of (rel, key, col) written before lsn, or NULL (*len
 * its length, *at the commit LSN that wrote it; valid until the next
 * call). *failed: 1 when the store did not answer (timeout, error). */
const char *ing_tstore_get(ing_tstore *ts, const ing_relation *rel, const char *key, size_t keylen,
                           int col, uint64_t lsn, size_t *len, uint64_t *at, int *failed);

#endif
