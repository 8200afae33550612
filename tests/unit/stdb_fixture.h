/* The store unit tests' fixture: a temporary directory with a RocksDB
 * (st_db) opened in it, small caches, and everything removed at the end.
 * Include after cmocka.h. */
#ifndef WH_TEST_STDB_FIXTURE_H
#define WH_TEST_STDB_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/store/st_db.h"
#include "rmtree.h"
#include "wh_util.h"

/* Makes a new directory <name>.XXXXXX in P_tmpdir, its path into dir
 * (size bytes). */
static inline void stdb_fx_mkdtemp(char *dir, size_t size, const char *name)
{
    snprintf(dir, size, "%s/%s.XXXXXX", P_tmpdir, name);
    assert_non_null(mkdtemp(dir));
}

/* Opens *db in dir with o's options (o->data_dir is ignored; a cache or
 * memtable size of 0 is 1 MiB), or fails the test naming why. */
static inline void stdb_fx_open(st_db **db, const char *dir, const st_db_opts *o)
{
    char err[WH_ERRLEN];
    st_db_opts d = *o;
    d.data_dir = dir;
    if (d.cache_bytes == 0)
        d.cache_bytes = 1 << 20;
    if (d.write_buffer_bytes == 0)
        d.write_buffer_bytes = 1 << 20;
    if (st_db_open(db, &d, err, sizeof(err)) != WH_OK)
        fail_msg("open %s: %s", dir, err);
}

/* Closes db (NULL: none) and removes dir with everything below it. */
static inline void stdb_fx_remove(st_db *db, const char *dir)
{
    if (db != NULL)
        st_db_close(db);
    wh_test_rmtree(dir);
}

/* The plain fixture: a directory and the database in it, opened with o. */
typedef struct stdb_fx {
    char dir[64];
    st_db *db;
    st_db_opts o;
} stdb_fx;

static inline void stdb_fx_reopen(stdb_fx *f)
{
    if (f->db != NULL)
        st_db_close(f->db);
    f->db = NULL;
    stdb_fx_open(&f->db, f->dir, &f->o);
}

/* A new fixture in a new directory <name>.XXXXXX (for a cmocka setup). */
static inline stdb_fx *stdb_fx_new(const char *name, const st_db_opts *o)
{
    stdb_fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->o = *o;
    stdb_fx_mkdtemp(f->dir, sizeof(f->dir), name);
    stdb_fx_open(&f->db, f->dir, &f->o);
    return f;
}

/* Closes and removes what stdb_fx_new made. */
static inline void stdb_fx_free(stdb_fx *f)
{
    stdb_fx_remove(f->db, f->dir);
    free(f);
}

/* The cmocka teardown of a setup that put a stdb_fx_new fixture in
 * *state. */
static inline int stdb_fx_teardown(void **state)
{
    stdb_fx_free(*state);
    return 0;
}

/* What a read of a tenant from its start returns (stdb_fx_read_all): per
 * LSN below 256 (seq 0), the JSON's last character before the closing
 * brace (0: not returned), and how many events came. */
typedef struct stdb_fx_seen {
    char v[256];
    size_t n;
} stdb_fx_seen;

static inline int stdb_fx_seen_step(void *arg, uint64_t lsn, uint32_t seq, int64_t ts,
                                    const void *json, size_t len)
{
    (void)seq;
    (void)ts;
    stdb_fx_seen *s = arg;
    if (lsn < sizeof(s->v) && len >= 2)
        s->v[lsn] = ((const char *)json)[len - 2];
    s->n++;
    return 0;
}

static inline void stdb_fx_read_all(st_db *db, const char *tenant, stdb_fx_seen *s)
{
    char err[WH_ERRLEN];
    memset(s, 0, sizeof(*s));
    size_t n = 0;
    if (st_db_read(db, tenant, 0, 0, 1000, SIZE_MAX, stdb_fx_seen_step, s, &n, err, sizeof(err)) !=
        WH_OK)
        fail_msg("read: %s", err);
}

#endif
