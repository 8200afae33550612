/* ing_toast: the last seen value of TOASTed columns, so an update that
 * leaves such a column unchanged (pgoutput sends kind 'u', no value) can
 * still carry it.
 *
 * Entries are keyed by (relation OID, the event's key JSON, column name) and
 * hold the column's rendered JSON value. A value is kept when it is at least
 * ING_TOAST_MIN_VALUE bytes of text (the size where PostgreSQL starts moving
 * a value out of line) or when its column was seen unchanged before (a
 * smaller value can be stored out of line in a wide row). The cache is
 * bounded in bytes (least recently used entries go first) and lives in the
 * ingestor's memory: after a restart a row's value is known again from its
 * next insert or update that carries it.
 *
 * Every entry remembers the commit LSN of the transaction that wrote it, so
 * a stream that starts again at an earlier LSN (a reconnect replays what the
 * store has not acknowledged) never reads a value from its own future
 * (ing_toast_rewind). Every Relation message of a table drops its entries
 * (PostgreSQL sends one again after anything that may have changed what it
 * sends of the table). One thread. */
#ifndef ING_TOAST_H
#define ING_TOAST_H

#include <stddef.h>
#include <stdint.h>

#include "ing_batch.h"
#include "ing_pgoutput.h"
#include "wh_buf.h"
#include "wh_metrics.h"

#define ING_TOAST_MIN_VALUE 2000
#define ING_TOAST_MAX_COLS 1664         /* PostgreSQL's MaxTupleAttributeNumber */
#define ING_TOAST_MAX_KEY (1024 * 1024) /* the longest key text kept */

enum { ING_TOAST_HIT, ING_TOAST_FROM_OLD, ING_TOAST_MISS, ING_TOAST_STORE };

typedef struct ing_toast_stats {
    wh_counter hits;     /* unchanged values filled from the cache */
    wh_counter from_old; /* unchanged values filled from a REPLICA IDENTITY FULL old row */
    wh_counter misses;   /* unchanged values listed as "unchanged" */
    wh_counter evicted;  /* entries dropped to stay within the bound */
    wh_gauge bytes;      /* bytes held (entries and their values) */
    wh_gauge entries;
    wh_counter from_store;   /* unchanged values filled from the store (ing_tstore) */
    wh_counter store_failed; /* lookups the store did not answer in time (listed instead) */
} ing_toast_stats;

typedef struct ing_toast ing_toast;

/* A cache of at most max_bytes (0: nothing is kept, lookups miss). st may
 * be NULL. */
int ing_toast_new(ing_toast **out, size_t max_bytes, ing_toast_stats *st, char *err, size_t errlen);
void ing_toast_free(ing_toast *c);

/* 1 when a value of column col of rel (len bytes of text) should be kept:
 * large enough to be stored out of line, or of a column seen unchanged. */
int ing_toast_wanted(const ing_toast *c, const ing_relation *rel, int col, size_t len);
/* Keeps (replaces) the rendered value json of (rel, key, col), written by
 * the transaction that commits at lsn. WH_ERR only when out of memory. */
int ing_toast_put(ing_toast *c, const ing_relation *rel, const char *key, size_t keylen, int col,
                  const char *json, size_t jsonlen, uint64_t lsn);
/* The kept value of (rel, key, col), or NULL (*len its length). Marks the
 * column as one whose values are kept from now on. */
const char *ing_toast_get(ing_toast *c, const ing_relation *rel, const char *key, size_t keylen,
                          int col, size_t *len);
/* Drops the kept value of (rel, key, col), if any (a value too small to
 * keep replaced it). */
void ing_toast_forget(ing_toast *c, const ing_relation *rel, const char *key, size_t keylen,
                      int col);
/* Counts an unchanged value: ING_TOAST_HIT, _FROM_OLD or _MISS (c may be
 * NULL: not counted). */
void ing_toast_note(ing_toast *c, int what);
/* Drops every column of the row (a delete). */
void ing_toast_forget_row(ing_toast *c, const ing_relation *rel, const char *key, size_t keylen);
/* Drops every entry of a relation OID (truncate, a skipped change). */
void ing_toast_forget_rel(ing_toast *c, uint32_t oid);
/* A Relation message: the relation's entries are dropped, and its marks
 * when its column names or types differ from the last one seen. */
void ing_toast_relation(ing_toast *c, const ing_relation *rel);
/* A stream starts (again) at lsn: entries written by a transaction that
 * commits at or after it (PostgreSQL sends those again) are dropped. */
void ing_toast_rewind(ing_toast *c, uint64_t lsn);
/* Drops everything (a new source). */
void ing_toast_clear(ing_toast *c);
/* An emptied scratch buffer for a key's text (at most ING_TOAST_MAX_KEY
 * bytes), owned by the cache; NULL when c is NULL. */
wh_buf *ing_toast_keybuf(ing_toast *c);
/* 1 when the cache holds no entry, nor may the store's level (a cheap test
 * for the hot path). */
int ing_toast_empty(const ing_toast *c);

/* The store-backed level (ing_tstore.h): every change to the entries is
 * sent to the store too (through bt), and ing_toast_get_at asks the store
 * on a miss. WH_ERR: the store client could not be made. */
int ing_toast_attach_store(ing_toast *c, const wh_config *cfg, ing_batcher *bt, char *err,
                           size_t errlen);
/* ing_toast_get for a change committing at lsn, then (on a miss) the
 * store's entry written before lsn, kept in memory again (*from_store 1). */
const char *ing_toast_get_at(ing_toast *c, const ing_relation *rel, const char *key, size_t keylen,
                             int col, uint64_t lsn, size_t *len, int *from_store);

#endif
