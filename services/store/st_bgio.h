/* st_bgio: the store's background I/O through RocksDB's C++ classes: the
 * rate limiter of compaction writes (flushes pass), which the store can retune
 * at runtime (store.io_rate_bytes; RocksDB's C API has no setter), and a
 * listener that counts and logs the compactions RocksDB runs per column
 * family (the C API has no listener).
 *
 * Like st_gcfilter, it reaches the C++ Options behind a rocksdb_options_t
 * and checks that layout first; when the check fails the caller keeps the
 * C API's limiter (fixed rate) and has no compaction counts. */
#ifndef ST_BGIO_H
#define ST_BGIO_H

#include <rocksdb/c.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_bgio st_bgio;

/* One compaction as RocksDB began it, or a flush as it completed
 * (st_bgio_log). */
typedef struct st_bgio_rec {
    char cf[80];      /* column family name (truncated) */
    int flush;        /* a flush completed (begin_us = end_us), not a compaction */
    int manual;       /* CompactRange (the store's GC slices, st_db_compact) */
    int output_level; /* the level it writes */
    int job_id;
    int64_t begin_us, end_us; /* steady clock; end_us 0 while it runs */
} st_bgio_rec;

#define ST_BGIO_LOG_MAX 4096 /* records logged; later compactions are only counted */

/* Starts the log (tests): until then compactions are only counted, so the
 * log costs no memory in a running store. */
void st_bgio_log_start(st_bgio *b);

/* Sets on o a generic rate limiter of compaction writes at rate bytes/s
 * (100 ms refill, fairness 10: RocksDB's C API's parameters; flushes, and
 * a compaction while writes are stopped or delayed, are not limited: see
 * CompactionLimiter in st_bgio.cc) and the compaction listener. NULL (err
 * names why) when o's layout is not the one this file was built for, or
 * out of memory; o is then unchanged. The handle shares the limiter and
 * listener with o (and with every copy of o and every DB opened with
 * them): free it in any order. */
st_bgio *st_bgio_install(rocksdb_options_t *o, int64_t rate, char *err, size_t errlen);
void st_bgio_free(st_bgio *b);

/* The limiter's rate now (RateLimiter::SetBytesPerSecond, effective from
 * its next refill), and as read back (GetBytesPerSecond). */
void st_bgio_set_rate(st_bgio *b, int64_t rate);
int64_t st_bgio_rate(const st_bgio *b);

/* Bytes written through the limiter since install: limited (compactions)
 * and passed at once (flushes); both 0 for NULL. */
void st_bgio_bytes(const st_bgio *b, uint64_t *limited, uint64_t *passed);

/* Compactions begun on column family cf since install (0: none or unknown). */
uint64_t st_bgio_compactions(const st_bgio *b, const char *cf);

/* Copies the first min(max, logged) records (compactions as they began,
 * flushes as they completed, in that order) into out; returns how many
 * were logged (at most ST_BGIO_LOG_MAX). */
size_t st_bgio_log(const st_bgio *b, st_bgio_rec *out, size_t max);

#ifdef __cplusplus
}
#endif
#endif
