/* st_gcfilter: the events column family's garbage filter, applied when a
 * memtable is flushed as well as when files are compacted.
 *
 * RocksDB's C API builds a CompactionFilterFactory whose
 * ShouldFilterTableFileCreation keeps the default (compactions only), so
 * every event a memtable held was written to a level-0 file at flush even
 * when every consumer had delivered it milliseconds after it was synced,
 * and a garbage compaction read it back later only to drop it. With this
 * factory, a flush drops the events below the tenant's watermark at once
 * (the same rule as a compaction: up to the minimum committed offset of
 * the tenant's live consumers, never moving back), so a store
 * whose readers keep up writes almost nothing but its WAL. What a flush
 * drops leaves no deletion marker either (see FilterV2 in st_gcfilter.cc).
 *
 * The filter is the caller's C function; this module only adapts it. It is
 * C++ for RocksDB's classes, and it reaches the C++ Options behind a
 * rocksdb_options_t (RocksDB's c.cc wraps them as its only member). That
 * layout is checked when the filter is installed; when the check fails the
 * caller falls back to the C API's factory (compactions only). */
#ifndef ST_GCFILTER_H
#define ST_GCFILTER_H

#include <rocksdb/c.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_gcfilter_ops {
    /* A snapshot of the drop rule, taken when a flush (flush 1) or a
     * compaction starts; NULL: drop nothing in that job. */
    void *(*snap)(void *state, int flush);
    void (*snap_free)(void *snap);
    /* 0: keep this key; 1: drop it (the snapshot's rule), and no older
     * copy of it can lie below this job's output; 2: drop it, and an older
     * copy may lie below (a flush leaves a deletion marker) */
    int (*drop)(void *snap, const char *key, size_t klen);
} st_gcfilter_ops;

/* 1 when o's C++ view (rocksdb_options_t below) is the layout this file
 * was built for (two settings written through the C API read back through
 * it); st_bgio.cc and st_walfs.cc use it too. */
int st_rocks_layout_ok(rocksdb_options_t *o);

/* Sets on o a compaction filter factory applied at flush and compaction,
 * calling ops with state. WH_ERR (err names why) when o's layout is not
 * the one this file was built for; o is then unchanged. ops must outlive o
 * and every DB opened with it. */
int st_gcfilter_install(rocksdb_options_t *o, void *state, const st_gcfilter_ops *ops, char *err,
                        size_t errlen);

#ifdef __cplusplus
}

#include <rocksdb/options.h>

/* RocksDB's c.cc: `struct rocksdb_options_t { Options rep; };`. Declared
 * the same here, once for the store's C++ bridges (st_gcfilter.cc,
 * st_bgio.cc, st_walfs.cc), to reach the C++ options; checked by
 * st_rocks_layout_ok(). */
struct rocksdb_options_t {
    rocksdb::Options rep;
};
#endif
#endif
