/* Unit tests of st_db against a real RocksDB in a temporary directory. */
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <rocksdb/c.h>

#include "stdb_fixture.h"

typedef stdb_fx fx;

typedef struct got {
    size_t n;
    uint64_t lsn[256];
    uint32_t seq[256];
    int64_t ts[256];
    char json[256][64];
} got;

static void open_db(fx *f, int read_only)
{
    st_db_opts o = f->o;
    o.read_only = read_only;
    stdb_fx_open(&f->db, f->dir, &o);
}

static int setup(void **state)
{
    static const st_db_opts o = {.offset_sync_wait_us = 2000, .wal_zero_ahead_bytes = 1 << 20};
    *state = stdb_fx_new("test_store_db", &o);
    return 0;
}

static int collect(void *arg, uint64_t lsn, uint32_t seq, int64_t ts, const void *json, size_t len)
{
    got *g = arg;
    if (g->n >= 256)
        return 1;
    g->lsn[g->n] = lsn;
    g->seq[g->n] = seq;
    g->ts[g->n] = ts;
    size_t l = len < 63 ? len : 63;
    memcpy(g->json[g->n], json, l);
    g->json[g->n][l] = '\0';
    g->n++;
    return 0;
}

static size_t read_all(st_db *db, const char *tenant, uint64_t lsn, uint32_t seq, got *g)
{
    char err[WH_ERRLEN];
    size_t n = 0;
    memset(g, 0, sizeof(*g));
    int rc = st_db_read(db, tenant, lsn, seq, 1000, 1 << 20, collect, g, &n, err, sizeof(err));
    if (rc != WH_OK)
        fail_msg("read: %s", err);
    assert_int_equal(n, g->n);
    return n;
}

static void append1(st_db *db, const char *tenant, uint64_t lsn, uint32_t seq, const char *json,
                    uint64_t ack)
{
    char err[WH_ERRLEN];
    st_event e = {lsn, seq, (int64_t)lsn * 10, json, strlen(json)};
    uint64_t d;
    if (st_db_append(db, tenant, &e, 1, ack, &d, err, sizeof(err)) != WH_OK)
        fail_msg("append: %s", err);
}

static void test_round_trip(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    st_event ev[3] = {
        {0x1000, 0, 111, "{\"a\":0}", 7},
        {0x1000, 1, 111, "{\"a\":1}", 7},
        {0x2000, 0, 222, "{\"b\":2}", 7},
    };
    uint64_t durable = 0;
    assert_int_equal(st_db_append(f->db, "t1", ev, 3, 0x2010, &durable, err, sizeof(err)), WH_OK);
    assert_int_equal(durable, 0x2010);
    got g;
    assert_int_equal(read_all(f->db, "t1", 0, 0, &g), 3);
    assert_int_equal(g.lsn[0], 0x1000);
    assert_int_equal(g.seq[0], 0);
    assert_int_equal(g.ts[0], 111);
    assert_string_equal(g.json[0], "{\"a\":0}");
    assert_int_equal(g.seq[1], 1);
    assert_string_equal(g.json[2], "{\"b\":2}");
    assert_int_equal(g.ts[2], 222);
    /* from is exclusive */
    assert_int_equal(read_all(f->db, "t1", 0x1000, 0, &g), 2);
    assert_int_equal(g.seq[0], 1);
    assert_int_equal(read_all(f->db, "t1", 0x2000, 0, &g), 0);
    /* durable only moves forward, even with ack 0 and with an empty batch */
    assert_int_equal(st_db_append(f->db, "t1", NULL, 0, 0x100, &durable, err, sizeof(err)), WH_OK);
    assert_int_equal(durable, 0x2010);
    assert_int_equal(st_db_append(f->db, "t1", NULL, 0, 0x3000, &durable, err, sizeof(err)), WH_OK);
    assert_int_equal(durable, 0x3000);
    uint64_t d2;
    assert_int_equal(st_db_get_durable(f->db, "t1", &d2, err, sizeof(err)), WH_OK);
    assert_int_equal(d2, 0x3000);
    assert_int_equal(st_db_get_durable(f->db, "other", &d2, err, sizeof(err)), WH_OK);
    assert_int_equal(d2, 0);
}

/* st_append_extra.written: called once per append, after its last events
 * are written and before st_db_append returns; the events are readable
 * then (the store publishes them to the dispatchers from there, while the
 * WAL syncs). An append of events all stored already still syncs and tells. */
typedef struct written_probe {
    st_db *db;
    int calls;
    size_t seen; /* events of t1 readable at the call */
} written_probe;

static void written_hook(void *arg)
{
    written_probe *p = arg;
    got g;
    p->calls++;
    p->seen = read_all(p->db, "t1", 0, 0, &g);
}

static void test_append_written(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    st_event ev[2] = {{0x1000, 0, 1, "{\"a\":0}", 7}, {0x1000, 1, 1, "{\"a\":1}", 7}};
    written_probe p = {f->db, 0, 0};
    st_append_extra x = {.written = written_hook, .written_arg = &p};
    uint64_t d = 0;
    assert_int_equal(st_db_append_ext(f->db, "t1", ev, 2, 0x1010, &x, &d, err, sizeof(err)), WH_OK);
    assert_int_equal(p.calls, 1);
    assert_int_equal(p.seen, 2);
    assert_int_equal(d, 0x1010);
    /* sent again: nothing new to write, still told */
    assert_int_equal(st_db_append_ext(f->db, "t1", ev, 2, 0x1010, &x, &d, err, sizeof(err)), WH_OK);
    assert_int_equal(p.calls, 2);
    assert_int_equal(p.seen, 2);
    /* the last chunk of a stage commit tells too */
    st_event c = {0x2000, 0, 2, "{\"c\":0}", 7};
    assert_int_equal(
        st_db_append_stage_end(f->db, "t1", &c, 1, 0x2010, 9, &x, &d, err, sizeof(err)), WH_OK);
    assert_int_equal(p.calls, 3);
    assert_int_equal(p.seen, 3);
}

/* AppendBatch.snapshot_progress: put with the events, the last one kept,
 * read back after a reopen; none for a tenant that never stored one. */
static void test_snapshot_progress(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    char *p = NULL;
    size_t pl = 7;
    assert_int_equal(st_db_get_progress(f->db, "t1", &p, &pl, err, sizeof(err)), WH_OK);
    assert_null(p);
    assert_int_equal(pl, 0);
    st_event ev[2] = {{0x1000, 0, 1, "{\"a\":0}", 7}, {0x1000, 1, 1, "{\"a\":1}", 7}};
    uint64_t d = 0;
    assert_int_equal(
        st_db_append_progress(f->db, "t1", ev, 2, 0x1010, "one", 3, &d, err, sizeof(err)), WH_OK);
    assert_int_equal(d, 0x1010);
    assert_int_equal(
        st_db_append_progress(f->db, "t1", NULL, 0, 0, "two\0x", 5, &d, err, sizeof(err)), WH_OK);
    append1(f->db, "t1", 0x2000, 0, "{}", 0); /* a plain append keeps it */
    st_db_close(f->db);
    open_db(f, 0);
    assert_int_equal(st_db_get_progress(f->db, "t1", &p, &pl, err, sizeof(err)), WH_OK);
    assert_non_null(p);
    assert_int_equal(pl, 5);
    assert_memory_equal(p, "two\0x", 5);
    free(p);
    got g;
    assert_int_equal(read_all(f->db, "t1", 0, 0, &g), 3);
    assert_int_equal(st_db_get_progress(f->db, "t2", &p, &pl, err, sizeof(err)), WH_OK);
    assert_null(p);
}

static void test_idempotent(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    st_event ev[2] = {{0x10, 0, 1, "x", 1}, {0x10, 1, 1, "y", 1}};
    uint64_t d;
    for (int i = 0; i < 3; i++)
        assert_int_equal(st_db_append(f->db, "t", ev, 2, 0, &d, err, sizeof(err)), WH_OK);
    /* a batch overlapping the previous one plus one new event */
    st_event ev2[3] = {{0x10, 1, 1, "y", 1}, {0x20, 0, 1, "z", 1}, {0x20, 0, 1, "z", 1}};
    assert_int_equal(st_db_append(f->db, "t", ev2, 3, 0, &d, err, sizeof(err)), WH_OK);
    got g;
    assert_int_equal(read_all(f->db, "t", 0, 0, &g), 3);
    assert_string_equal(g.json[0], "x");
    assert_string_equal(g.json[1], "y");
    assert_string_equal(g.json[2], "z");
    assert_int_equal(st_db_resends_differ(f->db), 0);
    /* sent again with other bytes (or another commit time): counted, the
     * stored ones kept (the id names what may have been delivered) */
    st_event ev3[3] = {{0x10, 0, 1, "x", 1}, {0x10, 1, 1, "Y", 1}, {0x20, 0, 2, "z", 1}};
    assert_int_equal(st_db_append(f->db, "t", ev3, 3, 0, &d, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_resends_differ(f->db), 2);
    assert_int_equal(read_all(f->db, "t", 0, 0, &g), 3);
    assert_string_equal(g.json[1], "y");
    assert_int_equal(g.ts[2], 1);
    /* a group that fails after the resend check (here: a TOAST op of no
     * known kind) counts nothing: the ingestor sends it again, and the
     * retry that is written counts it once */
    st_event ev4[1] = {{0x10, 1, 1, "Y2", 2}};
    st_toast_op bad = {.kind = 99, .rel = 1, .key = "{}", .keylen = 2};
    assert_int_not_equal(
        st_db_append_toast(f->db, "t", ev4, 1, 0, NULL, 0, &bad, 1, 0, 0, &d, err, sizeof(err)),
        WH_OK);
    assert_int_equal(st_db_resends_differ(f->db), 2);
    assert_int_equal(st_db_append(f->db, "t", ev4, 1, 0, &d, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_resends_differ(f->db), 3);
}

static void test_order(void **state)
{
    fx *f = *state;
    /* values whose little-endian bytes would sort differently */
    append1(f->db, "t", 0x100000000ULL, 0, "e", 0);
    append1(f->db, "t", 0x1FF, 0x10000, "c", 0);
    append1(f->db, "t", 0x2, 0, "a", 0);
    append1(f->db, "t", 0x1FF, 1, "b", 0);
    append1(f->db, "t", 0x200, 0, "d", 0);
    append1(f->db, "t", 0x2, 0x100, "a2", 0);
    got g;
    assert_int_equal(read_all(f->db, "t", 0, 0, &g), 6);
    const char *want[] = {"a", "a2", "b", "c", "d", "e"};
    for (int i = 0; i < 6; i++)
        assert_string_equal(g.json[i], want[i]);
    for (size_t i = 1; i < g.n; i++)
        assert_true(g.lsn[i - 1] < g.lsn[i] ||
                    (g.lsn[i - 1] == g.lsn[i] && g.seq[i - 1] < g.seq[i]));
}

static void test_limits(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    for (uint32_t i = 0; i < 10; i++)
        append1(f->db, "t", 0x50, i, "0123456789", 0);
    got g;
    size_t n;
    memset(&g, 0, sizeof(g));
    assert_int_equal(st_db_read(f->db, "t", 0, 0, 4, 1 << 20, collect, &g, &n, err, sizeof(err)),
                     WH_OK);
    assert_int_equal(n, 4);
    memset(&g, 0, sizeof(g));
    assert_int_equal(st_db_read(f->db, "t", 0, 0, 100, 25, collect, &g, &n, err, sizeof(err)),
                     WH_OK);
    assert_int_equal(n, 2);
    /* at least one event even when it alone exceeds max_bytes */
    memset(&g, 0, sizeof(g));
    assert_int_equal(st_db_read(f->db, "t", 0x50, 8, 100, 1, collect, &g, &n, err, sizeof(err)),
                     WH_OK);
    assert_int_equal(n, 1);
    assert_int_equal(g.seq[0], 9);
}

static void test_offsets(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    uint64_t l;
    uint32_t s;
    assert_int_equal(st_db_get_offset(f->db, "t", "c1", &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(l, 0);
    assert_int_equal(s, 0);
    assert_int_equal(st_db_commit(f->db, "t", "c1", 0x500, 2, &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(l, 0x500);
    assert_int_equal(s, 2);
    /* backwards: ignored, reply carries the current offset */
    assert_int_equal(st_db_commit(f->db, "t", "c1", 0x400, 9, &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(l, 0x500);
    assert_int_equal(s, 2);
    assert_int_equal(st_db_commit(f->db, "t", "c1", 0x500, 1, &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(s, 2);
    assert_int_equal(st_db_commit(f->db, "t", "c1", 0x500, 3, &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(s, 3);
    assert_int_equal(st_db_commit(f->db, "t", "c2", 0x10, 0, &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_commit(f->db, "u", "c1", 0x99, 0, &l, &s, err, sizeof(err)), WH_OK);
    stdb_fx_reopen(f);
    assert_int_equal(st_db_get_offset(f->db, "t", "c1", &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(l, 0x500);
    assert_int_equal(s, 3);
    assert_int_equal(st_db_get_offset(f->db, "t", "c2", &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(l, 0x10);
    assert_int_equal(st_db_get_offset(f->db, "u", "c1", &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(l, 0x99);
    assert_int_equal(st_db_commit(f->db, "t", "c1", 0x1, 0, &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(l, 0x500);
}

static void test_tenant_isolation(void **state)
{
    fx *f = *state;
    append1(f->db, "a", 0x10, 0, "a-ev", 0);
    append1(f->db, "ab", 0x5, 0, "ab-ev", 0);
    append1(f->db, "ab", 0x20, 0, "ab-ev2", 0);
    append1(f->db, "`", 0x30, 0, "backtick", 0); /* sorts just before 'a' */
    append1(f->db, "b", 0x1, 0, "b-ev", 0);
    got g;
    assert_int_equal(read_all(f->db, "a", 0, 0, &g), 1);
    assert_string_equal(g.json[0], "a-ev");
    assert_int_equal(read_all(f->db, "a", 0x10, 0, &g), 0);
    assert_int_equal(read_all(f->db, "ab", 0, 0, &g), 2);
    assert_string_equal(g.json[1], "ab-ev2");
    assert_int_equal(read_all(f->db, "b", 0, 0, &g), 1);
    assert_int_equal(read_all(f->db, "nobody", 0, 0, &g), 0);
}

static void test_reopen_and_dump(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    append1(f->db, "t", 0x16B374D848ULL, 0, "{}", 0x16B374D900ULL);
    append1(f->db, "t", 0x16B374D848ULL, 1, "{}", 0);
    append1(f->db, "s", 0x1, 7, "{}", 0);
    stdb_fx_reopen(f);
    got g;
    assert_int_equal(read_all(f->db, "t", 0, 0, &g), 2);
    uint64_t d;
    assert_int_equal(st_db_get_durable(f->db, "t", &d, err, sizeof(err)), WH_OK);
    assert_int_equal(d, 0x16B374D900ULL);
    /* a read-only open (as --dump does) while the writer is closed */
    st_db_close(f->db);
    f->db = NULL;
    open_db(f, 1);
    char *buf = NULL;
    size_t len = 0;
    FILE *mf = open_memstream(&buf, &len);
    assert_int_equal(st_db_dump(f->db, mf, err, sizeof(err)), WH_OK);
    fclose(mf);
    assert_string_equal(buf, "s 0/1 7\nt 16/B374D848 0\nt 16/B374D848 1\n");
    free(buf);
    /* writes are refused read-only */
    st_event e = {1, 0, 0, "x", 1};
    assert_int_equal(st_db_append(f->db, "t", &e, 1, 0, &d, err, sizeof(err)), WH_ERR);
}

static void test_gc(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    uint64_t l;
    uint32_t s;
    for (uint64_t lsn = 1; lsn <= 10; lsn++) {
        append1(f->db, "t", lsn, 0, "ev", 0);
        append1(f->db, "t", lsn, 1, "ev", 0);
        append1(f->db, "free", lsn, 0, "ev", 0); /* no consumer: never dropped */
    }
    assert_int_equal(st_db_commit(f->db, "t", "fast", 9, 1, &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_commit(f->db, "t", "slow", 4, 1, &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_compact(f->db, err, sizeof(err)), WH_OK);
    got g;
    /* keys up to (4,1), the slower consumer's last, are gone: (1,0)..(4,1)
     * = 8 keys */
    assert_int_equal(read_all(f->db, "t", 0, 0, &g), 12);
    assert_int_equal(g.lsn[0], 5);
    assert_int_equal(g.seq[0], 0);
    assert_int_equal(st_db_gc_dropped(f->db), 8);
    assert_int_equal(read_all(f->db, "free", 0, 0, &g), 10);
    /* reads from the committed offset are unaffected */
    assert_int_equal(read_all(f->db, "t", 4, 1, &g), 12);
}

/* Column families of the DB in dir, as "name,name,..." */
static void cf_list(const char *dir, char *out, size_t len)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/rocksdb", dir);
    rocksdb_options_t *o = rocksdb_options_create();
    size_t n = 0;
    char *e = NULL;
    char **names = rocksdb_list_column_families(o, path, &n, &e);
    assert_null(e);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        strncat(out, names[i], len - strlen(out) - 2);
        strcat(out, ",");
    }
    rocksdb_list_column_families_destroy(names, n);
    rocksdb_options_destroy(o);
}

static void test_tenant_drop(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN], cfs[512];
    uint64_t l;
    uint32_t s;
    for (uint64_t lsn = 1; lsn <= 20; lsn++) {
        append1(f->db, "a", lsn, 0, "a-ev", lsn);
        append1(f->db, "b", lsn, 0, "b-ev", lsn);
    }
    assert_int_equal(st_db_commit(f->db, "a", "c", 5, 0, &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_commit(f->db, "b", "c", 7, 0, &l, &s, err, sizeof(err)), WH_OK);
    assert_true(st_db_tenant_exists(f->db, "a"));
    cf_list(f->dir, cfs, sizeof(cfs));
    assert_non_null(strstr(cfs, "e:a,"));
    assert_non_null(strstr(cfs, "m:b,"));

    assert_int_equal(st_db_tenant_drop(f->db, "a", err, sizeof(err)), WH_OK);
    assert_false(st_db_tenant_exists(f->db, "a"));
    got g;
    assert_int_equal(read_all(f->db, "a", 0, 0, &g), 0);
    assert_int_equal(st_db_get_offset(f->db, "a", "c", &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(l, 0);
    /* the other tenant is untouched */
    assert_int_equal(read_all(f->db, "b", 0, 0, &g), 20);
    assert_string_equal(g.json[19], "b-ev");
    assert_int_equal(st_db_get_offset(f->db, "b", "c", &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(l, 7);
    uint64_t d;
    assert_int_equal(st_db_get_durable(f->db, "b", &d, err, sizeof(err)), WH_OK);
    assert_int_equal(d, 20);
    assert_int_equal(st_db_get_durable(f->db, "a", &d, err, sizeof(err)), WH_OK);
    assert_int_equal(d, 0);
    /* dropping twice, or an unknown tenant, is fine */
    assert_int_equal(st_db_tenant_drop(f->db, "a", err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_tenant_drop(f->db, "nobody", err, sizeof(err)), WH_OK);

    stdb_fx_reopen(f);
    cf_list(f->dir, cfs, sizeof(cfs));
    assert_null(strstr(cfs, "e:a,"));
    assert_null(strstr(cfs, "m:a,"));
    assert_non_null(strstr(cfs, "e:b,"));
    assert_int_equal(read_all(f->db, "a", 0, 0, &g), 0);
    assert_int_equal(read_all(f->db, "b", 0, 0, &g), 20);
    assert_int_equal(st_db_get_offset(f->db, "b", "c", &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(l, 7);
    /* the tenant can come back: new column families, empty */
    append1(f->db, "a", 100, 0, "again", 0);
    assert_int_equal(read_all(f->db, "a", 0, 0, &g), 1);
    assert_string_equal(g.json[0], "again");
}

static size_t reader_read(st_reader *r, uint64_t lsn, uint32_t seq, got *g)
{
    char err[WH_ERRLEN];
    size_t n = 0;
    memset(g, 0, sizeof(*g));
    if (st_db_reader_read(r, lsn, seq, 1000, 1 << 20, collect, g, &n, err, sizeof(err)) != WH_OK)
        fail_msg("reader read: %s", err);
    assert_int_equal(n, g->n);
    return n;
}

/* A reader's cursor: one iterator for every read, which sees what is
 * appended after it was made (tailing) and from any position; register
 * through it; a dropped tenant reads nothing, a late Append or commit of it
 * is refused (its column families would never be collected), and a tenant
 * made again is read from its new column families. */
static void test_reader_cursor(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    st_reader *r = NULL;
    got g;
    assert_int_equal(st_db_reader_open(f->db, "a", "c", &r, err, sizeof(err)), WH_OK);
    assert_int_equal(reader_read(r, 0, 0, &g), 0); /* no column families yet */
    st_offset off;
    assert_int_equal(st_db_reader_register(r, &off, err, sizeof(err)), WH_OK);
    assert_int_equal(off.lsn, 0);
    assert_false(off.dropped);
    for (uint64_t lsn = 1; lsn <= 5; lsn++)
        append1(f->db, "a", lsn, 0, "a-ev", lsn);
    append1(f->db, "b", 3, 0, "b-ev", 3);
    assert_int_equal(reader_read(r, 0, 0, &g), 5);
    assert_int_equal(g.lsn[4], 5);
    append1(f->db, "a", 6, 0, "six", 6); /* after the iterator was made */
    assert_int_equal(reader_read(r, 5, 0, &g), 1);
    assert_string_equal(g.json[0], "six");
    assert_int_equal(reader_read(r, 2, 0, &g), 4); /* backwards too */
    assert_int_equal(g.lsn[0], 3);
    uint64_t l;
    uint32_t s;
    assert_int_equal(st_db_commit(f->db, "a", "c", 4, 0, &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_reader_register(r, &off, err, sizeof(err)), WH_OK);
    assert_int_equal(off.lsn, 4);

    assert_int_equal(st_db_tenant_drop(f->db, "a", err, sizeof(err)), WH_OK);
    assert_int_equal(reader_read(r, 0, 0, &g), 0);
    /* a late Append does not bring it back; a create (a state that lists
     * it again) does */
    st_event late = {100, 0, 0, "late", 4};
    uint64_t d;
    assert_int_equal(st_db_append(f->db, "a", &late, 1, 100, &d, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "tenant a was removed"));
    assert_false(st_db_tenant_exists(f->db, "a"));
    /* its consumer's late commit: refused as a dropped consumer's */
    st_offset co;
    assert_int_equal(st_db_commit_epoch(f->db, "a", "c", 100, 0, 0, &co, err, sizeof(err)),
                     ST_DB_STALE);
    assert_true(co.dropped);
    assert_non_null(strstr(err, "was dropped"));
    assert_false(st_db_tenant_exists(f->db, "a"));
    assert_int_equal(st_db_tenant_create(f->db, "a", err, sizeof(err)), WH_OK);
    append1(f->db, "a", 100, 0, "again", 0);
    assert_int_equal(reader_read(r, 0, 0, &g), 1);
    assert_string_equal(g.json[0], "again");
    st_db_reader_close(r);
}

/* A data directory of a store before per-tenant column families: every key
 * in the default CF. It opens, its keys move to the tenants' CFs. */
static void test_migrate_single_cf(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN], path[128];
    st_db_close(f->db);
    f->db = NULL;
    wh_test_rmtree(f->dir);
    mkdir(f->dir, 0700);
    snprintf(path, sizeof(path), "%s/rocksdb", f->dir);
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(o, 1);
    char *e = NULL;
    rocksdb_t *r = rocksdb_open(o, path, &e);
    assert_null(e);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    for (int i = 1; i <= 3; i++) { /* E old \0 lsn seq -> ts json */
        char k[32] = "Eold", v[16] = {0};
        uint8_t *p = (uint8_t *)k + 5;
        memset(p, 0, 12);
        p[7] = (uint8_t)i;
        memcpy(v + 8, "{}", 2);
        rocksdb_put(r, wo, k, 5 + 12, v, 10, &e);
        assert_null(e);
    }
    char ok[] = "Oold\0c1", ov[20] = {0};
    ov[7] = 2; /* offset (2, 0), epoch 0 */
    rocksdb_put(r, wo, ok, sizeof(ok) - 1, ov, sizeof(ov), &e);
    char dv[8] = {0};
    dv[7] = 3;
    rocksdb_put(r, wo, "Dold", 4, dv, 8, &e);
    rocksdb_put(r, wo, "Sstate", 6, "\0\0\0\0\0\0\0\1{}", 10, &e);
    assert_null(e);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_close(r);

    open_db(f, 0);
    got g;
    assert_int_equal(read_all(f->db, "old", 0, 0, &g), 3);
    assert_int_equal(g.lsn[2], 3);
    uint64_t l, d;
    uint32_t s;
    assert_int_equal(st_db_get_offset(f->db, "old", "c1", &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(l, 2);
    assert_int_equal(st_db_get_durable(f->db, "old", &d, err, sizeof(err)), WH_OK);
    assert_int_equal(d, 3);
    uint64_t v;
    char *doc;
    size_t dl;
    assert_int_equal(st_db_state_get(f->db, &v, &doc, &dl, err, sizeof(err)), WH_OK);
    assert_int_equal(v, 1);
    free(doc);
    st_db_close(f->db);
    f->db = NULL;

    /* the default CF holds the state key only */
    char cfs[512];
    cf_list(f->dir, cfs, sizeof(cfs));
    assert_non_null(strstr(cfs, "e:old,"));
    const char *names[1] = {"default"};
    const rocksdb_options_t *opts[1] = {o};
    rocksdb_column_family_handle_t *h[1];
    r = rocksdb_open_for_read_only_column_families(o, path, 1, names, opts, h, 0, &e);
    assert_null(e);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(r, ro, h[0]);
    int n = 0;
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl;
        const char *k = rocksdb_iter_key(it, &kl);
        assert_int_equal(k[0], 'S');
        n++;
    }
    assert_int_equal(n, 1);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    rocksdb_column_family_handle_destroy(h[0]);
    rocksdb_close(r);
    rocksdb_options_destroy(o);
    open_db(f, 0); /* a second open finds nothing to move */
    assert_int_equal(read_all(f->db, "old", 0, 0, &g), 3);
}

static int count_cb(void *arg, uint64_t lsn, uint32_t seq, int64_t ts, const void *json, size_t len)
{
    (void)lsn, (void)seq, (void)ts, (void)json, (void)len;
    (*(size_t *)arg)++;
    return 0;
}

/* Events of the tenant still stored (from the very start). */
static size_t live_events(st_db *db, const char *tenant)
{
    char err[WH_ERRLEN];
    size_t n = 0, got_n = 0;
    assert_int_equal(
        st_db_read(db, tenant, 0, 0, 1000000, SIZE_MAX, count_cb, &n, &got_n, err, sizeof(err)),
        WH_OK);
    return n;
}

static uint64_t tenant_bytes(st_db *db, const char *tenant)
{
    st_tenant_stats ts[8];
    st_db_maintain(db);
    size_t n = st_db_tenant_stats(db, ts, 8);
    for (size_t i = 0; i < n; i++)
        if (strcmp(ts[i].tenant, tenant) == 0)
            return ts[i].bytes;
    fail_msg("no stats for %s", tenant);
    return 0;
}

#define GC_EVENTS 4000
#define GC_BATCH 100

/* Appends GC_EVENTS events of ~600 bytes to tenant g; commit_as_we_go: the
 * consumer c commits each batch right after it. */
static void gc_fill(st_db *db, int commit_as_we_go)
{
    char err[WH_ERRLEN], json[600];
    memset(json, 'x', sizeof(json));
    json[0] = '{';
    json[sizeof(json) - 1] = '}';
    st_event ev[GC_BATCH];
    uint64_t d, l;
    uint32_t s;
    for (uint64_t b = 0; b < GC_EVENTS / GC_BATCH; b++) {
        for (int i = 0; i < GC_BATCH; i++)
            ev[i] = (st_event){b + 1, (uint32_t)i, 1, json, sizeof(json)};
        assert_int_equal(st_db_append(db, "g", ev, GC_BATCH, b + 1, &d, err, sizeof(err)), WH_OK);
        if (commit_as_we_go)
            assert_int_equal(
                st_db_commit(db, "g", "c", b + 1, GC_BATCH - 1, &l, &s, err, sizeof(err)), WH_OK);
    }
}

static void open_small(fx *f)
{
    st_db_close(f->db);
    f->db = NULL;
    static const st_db_opts o = {.write_buffer_bytes = 64 << 10}; /* many flushes */
    stdb_fx_open(&f->db, f->dir, &o);
}

/* A consumer that keeps up: the events it passed die in the compactions
 * RocksDB runs on its own (no st_db_compact). */
static void test_gc_natural_compaction(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    open_small(f);
    uint64_t l;
    uint32_t s;
    assert_int_equal(st_db_commit(f->db, "g", "c", 0, 0, &l, &s, err, sizeof(err)), WH_OK);
    gc_fill(f->db, 1);
    for (int i = 0; i < 300 && live_events(f->db, "g") > GC_EVENTS / 2; i++)
        wh_sleep_ms(50);
    assert_true(st_db_gc_dropped(f->db) >= GC_EVENTS / 2);
    assert_true(live_events(f->db, "g") <= GC_EVENTS / 2);
    /* the consumer still reads from its offset: nothing it needs is gone */
    got g;
    assert_int_equal(read_all(f->db, "g", GC_EVENTS / GC_BATCH, GC_BATCH - 2, &g), 1);
}

/* A backlog that reached the lower levels: once the consumer commits past
 * it, the maintenance pass marks the range for compaction and the
 * background compaction removes it; the tenant's bytes fall. */
static void test_gc_backlog_released(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    open_small(f);
    uint64_t l;
    uint32_t s;
    assert_int_equal(st_db_commit(f->db, "g", "c", 0, 0, &l, &s, err, sizeof(err)), WH_OK);
    gc_fill(f->db, 0);
    wh_sleep_ms(500); /* flushes and compactions of the fill settle */
    assert_int_equal(live_events(f->db, "g"), GC_EVENTS);
    uint64_t before = tenant_bytes(f->db, "g");
    assert_true(before > 1000000);
    assert_int_equal(
        st_db_commit(f->db, "g", "c", GC_EVENTS / GC_BATCH, GC_BATCH - 1, &l, &s, err, sizeof(err)),
        WH_OK);
    uint64_t after = before;
    /* GC compacts in slices (fair between tenants): wait for the last, up
     * to 60 s (the ASan build once still had live events after 15 s, its
     * bytes already down; a GC that never ends still fails) */
    for (int i = 0; i < 1200 && ((after = tenant_bytes(f->db, "g")) > before / 4 ||
                                 live_events(f->db, "g") > 1);
         i++)
        wh_sleep_ms(50);
    assert_true(after <= before / 4);
    assert_true(live_events(f->db, "g") <= 1);
    assert_true(st_db_gc_dropped(f->db) >= GC_EVENTS - 1);
}

/* Tenant t: n one-event transactions at LSNs 1..n, its consumer c
 * committed at (at, 0). */
static void gc_fill_commit(st_db *db, uint64_t n, uint64_t at)
{
    char err[WH_ERRLEN];
    uint64_t l;
    uint32_t s;
    for (uint64_t lsn = 1; lsn <= n; lsn++)
        append1(db, "t", lsn, 0, "{\"a\":1}", lsn);
    assert_int_equal(st_db_commit(db, "t", "c", at, 0, &l, &s, err, sizeof(err)), WH_OK);
}

/* A memtable flushed after its consumer committed past its events writes
 * none of them: the GC filter runs at flush (st_gcfilter), not only at
 * compaction. One flush, no compaction: the old factory dropped nothing. */
static void test_gc_at_flush(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    uint64_t l;
    uint32_t s;
    gc_fill_commit(f->db, 50, 40);
    assert_int_equal(st_db_gc_dropped(f->db), 0);
    assert_int_equal(st_db_flush(f->db, err, sizeof(err)), WH_OK);
    /* up to (40,0), the consumer's last: 40 events never reach a table
     * file, the one at the offset included (a memtable its readers have
     * delivered to its last key writes nothing) */
    assert_int_equal(st_db_gc_dropped(f->db), 40);
    got g;
    assert_int_equal(read_all(f->db, "t", 0, 0, &g), 10);
    assert_int_equal(g.lsn[0], 41);
    /* the consumer reads on from its offset; a reopen reads the same */
    assert_int_equal(read_all(f->db, "t", 40, 0, &g), 10);
    stdb_fx_reopen(f);
    assert_int_equal(read_all(f->db, "t", 0, 0, &g), 10);
    /* delivered to the last event: that one stays (it says where the
     * tenant ends) until a later one is written */
    assert_int_equal(st_db_commit(f->db, "t", "c", 50, 0, &l, &s, err, sizeof(err)), WH_OK);
    append1(f->db, "t", 51, 0, "{\"a\":1}", 51);
    append1(f->db, "t", 51, 1, "{\"a\":1}", 51);
    assert_int_equal(st_db_commit(f->db, "t", "c", 51, 1, &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_compact(f->db, err, sizeof(err)), WH_OK);
    assert_int_equal(read_all(f->db, "t", 0, 0, &g), 1);
    assert_true(g.lsn[0] == 51 && g.seq[0] == 1);
    uint64_t el;
    uint32_t es;
    assert_int_equal(st_db_tenant_end(f->db, "t", &el, &es, err, sizeof(err)), WH_OK);
    assert_true(el == 51 && es == 1);
    append1(f->db, "t", 52, 0, "{\"a\":1}", 52);
    assert_int_equal(st_db_compact(f->db, err, sizeof(err)), WH_OK);
    assert_int_equal(read_all(f->db, "t", 0, 0, &g), 1);
    assert_true(g.lsn[0] == 52);
    /* inside one transaction (one commit LSN) a later seq is later too */
    append1(f->db, "t", 60, 0, "{\"a\":1}", 60);
    append1(f->db, "t", 60, 1, "{\"a\":1}", 60);
    append1(f->db, "t", 60, 2, "{\"a\":1}", 60);
    assert_int_equal(st_db_commit(f->db, "t", "c", 60, 1, &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_compact(f->db, err, sizeof(err)), WH_OK);
    assert_int_equal(read_all(f->db, "t", 0, 0, &g), 1);
    assert_true(g.lsn[0] == 60 && g.seq[0] == 2);
}

/* A rest of garbage under the threshold (one memtable) that a compaction
 * with an older watermark left goes once the watermark stayed put for
 * ST_GC_IDLE_MS (the idle sweep), not only when more garbage comes. */
static void test_gc_idle_sweep(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    uint64_t l;
    uint32_t s;
    gc_fill_commit(f->db, 20, 10);
    assert_int_equal(st_db_compact(f->db, err, sizeof(err)), WH_OK);
    assert_int_equal(live_events(f->db, "t"), 10);
    /* 11..15 delivered: a few hundred bytes of garbage, far under the
     * threshold; left while the watermark moved less than ST_GC_IDLE_MS
     * ago, swept once it stayed put that long (here 0) */
    assert_int_equal(st_db_commit(f->db, "t", "c", 15, 0, &l, &s, err, sizeof(err)), WH_OK);
    st_db_maintain(f->db);
    assert_int_equal(live_events(f->db, "t"), 10);
    st_db_set_gc_idle_ms(f->db, 0);
    st_db_maintain(f->db);
    assert_int_equal(live_events(f->db, "t"), 5);
}

/* The watermark is the consumers' minimum and never moves back: not when
 * an offset is set back, not when a new consumer appears. */
static void test_watermark_monotonic(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    uint64_t l, wl;
    uint32_t s, ws;
    for (uint64_t lsn = 1; lsn <= 10; lsn++)
        append1(f->db, "w", lsn, 0, "ev", lsn);
    assert_int_equal(st_db_watermark(f->db, "w", &wl, &ws), WH_OK);
    assert_true(wl == 0 && ws == 0); /* no consumer: nothing is garbage */
    assert_int_equal(st_db_commit(f->db, "w", "a", 6, 0, &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_commit(f->db, "w", "b", 4, 0, &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_watermark(f->db, "w", &wl, &ws), WH_OK);
    assert_int_equal(wl, 4);
    assert_int_equal(st_db_commit(f->db, "w", "b", 8, 0, &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_watermark(f->db, "w", &wl, &ws), WH_OK);
    assert_int_equal(wl, 6);
    /* b set back to 2, a new consumer at (0,0): the watermark stays */
    assert_int_equal(st_db_set_offset(f->db, "w", "b", 2, 0, NULL, NULL, err, sizeof(err)), WH_OK);
    st_offset o;
    assert_int_equal(st_db_register(f->db, "w", "new", &o, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_watermark(f->db, "w", &wl, &ws), WH_OK);
    assert_int_equal(wl, 6);
    /* and across a restart (the W key) */
    st_db_maintain(f->db);
    stdb_fx_reopen(f);
    assert_int_equal(st_db_watermark(f->db, "w", &wl, &ws), WH_OK);
    assert_int_equal(wl, 6);
    assert_int_equal(st_db_compact(f->db, err, sizeof(err)), WH_OK);
    got g;
    assert_int_equal(read_all(f->db, "w", 0, 0, &g), 5); /* 6..10 */
}

static const st_tenant_stats *stats_of(st_db *db, const char *tenant, st_tenant_stats *buf)
{
    size_t n = st_db_tenant_stats(db, buf, 8);
    for (size_t i = 0; i < n; i++)
        if (strcmp(buf[i].tenant, tenant) == 0)
            return &buf[i];
    fail_msg("no stats for %s", tenant);
    return NULL;
}

/* Age cap: events older than it go even though a target has not read
 * them; that target is marked NEEDS_SNAPSHOT instead of pinning the disk;
 * a set offset clears the mark. */
static void test_retention_age(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    uint64_t l, d;
    uint32_t s;
    int64_t now = wh_wallclock_us();
    st_offset o;
    assert_int_equal(st_db_register(f->db, "r", "slow", &o, err, sizeof(err)), WH_OK);
    for (uint64_t lsn = 1; lsn <= 100; lsn++) {
        /* 1..50 are two hours old, 51..100 fresh */
        st_event e = {lsn, 0, lsn <= 50 ? now - 7200LL * 1000000 : now, "{}", 2};
        assert_int_equal(st_db_append(f->db, "r", &e, 1, lsn, &d, err, sizeof(err)), WH_OK);
    }
    st_tenant_stats buf[8];
    st_db_maintain(f->db);
    const st_tenant_stats *ts = stats_of(f->db, "r", buf);
    assert_true(ts->oldest_age_ms >= 7200 * 1000 - 60000);
    assert_int_equal(ts->needs_snapshot, 0);
    assert_false(st_db_needs_snapshot(f->db, "r", "slow"));

    st_db_limits lim = {0, 3600 * 1000, 0, 0, 0, 0, 0, 0}; /* one hour */
    st_db_set_limits(f->db, &lim);
    st_db_maintain(f->db);
    assert_true(st_db_needs_snapshot(f->db, "r", "slow"));
    uint64_t wl;
    uint32_t ws;
    assert_int_equal(st_db_watermark(f->db, "r", &wl, &ws), WH_OK);
    assert_int_equal(wl, 51); /* the first event within the cap */
    ts = stats_of(f->db, "r", buf);
    assert_int_equal(ts->needs_snapshot, 1);
    assert_true(ts->oldest_age_ms >= 0 && ts->oldest_age_ms < 600 * 1000);
    assert_int_equal(st_db_compact(f->db, err, sizeof(err)), WH_OK);
    assert_int_equal(live_events(f->db, "r"), 50);
    /* the mark survives a restart; a set offset clears it */
    stdb_fx_reopen(f);
    assert_true(st_db_needs_snapshot(f->db, "r", "slow"));
    assert_int_equal(st_db_watermark(f->db, "r", &wl, &ws), WH_OK);
    assert_int_equal(wl, 51);
    assert_int_equal(st_db_set_offset(f->db, "r", "slow", 100, 0, NULL, NULL, err, sizeof(err)),
                     WH_OK);
    assert_false(st_db_needs_snapshot(f->db, "r", "slow"));
    stdb_fx_reopen(f);
    assert_false(st_db_needs_snapshot(f->db, "r", "slow"));
    /* a consumer ahead of the floor is not marked */
    assert_int_equal(st_db_commit(f->db, "r", "fast", 90, 0, &l, &s, err, sizeof(err)), WH_OK);
    st_db_set_limits(f->db, &lim);
    st_db_maintain(f->db);
    assert_false(st_db_needs_snapshot(f->db, "r", "fast"));
}

/* The marks come before the floor: when a retention floor is published
 * (from then on every flush and compaction drops below it), each target
 * behind it is NEEDS_SNAPSHOT already, so none can read across the hole and
 * commit past it unmarked; and a mark moves st_db_offset_moves, so a reader
 * fed by pushed events Reads again and gets the mark. */
typedef struct floor_seen {
    pthread_mutex_t mu;
    st_db *db;
    int calls;
    uint64_t lsn;
    int slow_marked, fast_marked;
} floor_seen;

static void floor_hook(void *arg, const char *tenant, uint64_t lsn, uint32_t seq)
{
    floor_seen *fs = arg;
    (void)seq;
    if (strcmp(tenant, "r") != 0)
        return;
    int sm = st_db_needs_snapshot(fs->db, "r", "slow");
    int fm = st_db_needs_snapshot(fs->db, "r", "fast");
    pthread_mutex_lock(&fs->mu);
    if (fs->calls++ == 0) {
        fs->lsn = lsn;
        fs->slow_marked = sm;
        fs->fast_marked = fm;
    }
    pthread_mutex_unlock(&fs->mu);
}

static void test_retention_marks_first(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    uint64_t l, d;
    uint32_t s;
    int64_t now = wh_wallclock_us();
    st_offset o;
    assert_int_equal(st_db_register(f->db, "r", "slow", &o, err, sizeof(err)), WH_OK);
    for (uint64_t lsn = 1; lsn <= 100; lsn++) {
        /* 1..50 are two hours old, 51..100 fresh */
        st_event e = {lsn, 0, lsn <= 50 ? now - 7200LL * 1000000 : now, "{}", 2};
        assert_int_equal(st_db_append(f->db, "r", &e, 1, lsn, &d, err, sizeof(err)), WH_OK);
    }
    assert_int_equal(st_db_commit(f->db, "r", "slow", 10, 0, &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_commit(f->db, "r", "fast", 60, 0, &l, &s, err, sizeof(err)), WH_OK);
    floor_seen fs = {.db = f->db};
    pthread_mutex_init(&fs.mu, NULL);
    st_db_set_floor_hook(f->db, floor_hook, &fs);
    uint64_t moves = st_db_offset_moves(f->db);
    st_db_limits lim = {0, 3600 * 1000, 0, 0, 0, 0, 0, 0}; /* one hour */
    st_db_set_limits(f->db, &lim);
    st_db_maintain(f->db);
    /* the store's own maintenance thread may have published it: wait for
     * that pass to reach the hook */
    for (int i = 0; i < 1000; i++) {
        pthread_mutex_lock(&fs.mu);
        int calls = fs.calls;
        pthread_mutex_unlock(&fs.mu);
        if (calls > 0)
            break;
        usleep(10000);
    }
    st_db_set_floor_hook(f->db, NULL, NULL);
    pthread_mutex_lock(&fs.mu);
    assert_int_equal(fs.calls, 1);
    assert_int_equal(fs.lsn, 51);
    assert_int_equal(fs.slow_marked, 1); /* marked before the floor existed */
    assert_int_equal(fs.fast_marked, 0);
    pthread_mutex_unlock(&fs.mu);
    pthread_mutex_destroy(&fs.mu);
    assert_true(st_db_offset_moves(f->db) != moves);
    /* a pass that marks nothing new leaves the count alone */
    moves = st_db_offset_moves(f->db);
    st_db_maintain(f->db);
    assert_int_equal(st_db_offset_moves(f->db), moves);
    assert_false(st_db_needs_snapshot(f->db, "r", "fast"));
}

/* Bytes cap: a target far behind does not keep more than the cap. */
static void test_retention_bytes(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    open_small(f);
    st_offset o;
    assert_int_equal(st_db_register(f->db, "g", "slow", &o, err, sizeof(err)), WH_OK);
    gc_fill(f->db, 0); /* ~2.4 MB, nothing read */
    assert_int_equal(st_db_compact(f->db, err, sizeof(err)), WH_OK);
    st_tenant_stats buf[8];
    st_db_maintain(f->db);
    const st_tenant_stats *ts = stats_of(f->db, "g", buf);
    assert_true(ts->live_bytes > 2000000);
    assert_false(st_db_needs_snapshot(f->db, "g", "slow"));
    st_db_limits lim = {500 * 1024, 0, 0, 0, 0, 0, 0, 0};
    st_db_set_limits(f->db, &lim);
    for (int i = 0; i < 5; i++)
        st_db_maintain(f->db);
    assert_true(st_db_needs_snapshot(f->db, "g", "slow"));
    assert_int_equal(st_db_compact(f->db, err, sizeof(err)), WH_OK);
    st_db_maintain(f->db);
    ts = stats_of(f->db, "g", buf);
    assert_true(ts->live_bytes <= 500 * 1024 * 3 / 2);
    assert_true(ts->bytes < 1500 * 1024);
    size_t n = live_events(f->db, "g");
    assert_true(n > 0 && n < GC_EVENTS / 2);
}

static void test_bad_names(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    char big[80];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    uint64_t d, l;
    uint32_t s;
    st_event e = {1, 0, 0, "x", 1};
    assert_int_equal(st_db_append(f->db, "", &e, 1, 0, &d, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "tenant"));
    assert_int_equal(st_db_append(f->db, big, &e, 1, 0, &d, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "tenant"));
    assert_int_equal(st_db_commit(f->db, "t", "", 1, 0, &l, &s, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "consumer"));
    assert_int_equal(st_db_get_offset(f->db, NULL, "c", &l, &s, err, sizeof(err)), WH_ERR);
    big[63] = '\0'; /* exactly 63 bytes is fine */
    assert_int_equal(st_db_append(f->db, big, &e, 1, 0, &d, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_commit(f->db, big, big, 1, 0, &l, &s, err, sizeof(err)), WH_OK);
    stdb_fx_reopen(f);
    assert_int_equal(st_db_get_offset(f->db, big, big, &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(l, 1);
}

/* Offset commits racing with appends of the same tenant: every commit is
 * acknowledged in order, and the last one survives a reopen. */
typedef struct ride_arg {
    st_db *db;
    int n;
    int failures;
} ride_arg;

static void *ride_appender(void *p)
{
    ride_arg *a = p;
    char err[WH_ERRLEN];
    for (int i = 0; i < a->n; i++) {
        st_event e = {(uint64_t)(0x1000 + i), 0, 1, "{\"x\":1}", 7};
        uint64_t d;
        if (st_db_append(a->db, "t", &e, 1, (uint64_t)(0x1000 + i), &d, err, sizeof(err)) != WH_OK)
            a->failures++;
    }
    return NULL;
}

static void *ride_committer(void *p)
{
    ride_arg *a = p;
    char err[WH_ERRLEN];
    for (int i = 0; i < a->n; i++) {
        uint64_t l;
        uint32_t s;
        if (st_db_commit(a->db, "t", "c", (uint64_t)(0x1000 + i), 0, &l, &s, err, sizeof(err)) !=
                WH_OK ||
            l != (uint64_t)(0x1000 + i))
            a->failures++;
    }
    return NULL;
}

static void test_commit_with_appends(void **state)
{
    fx *f = *state;
    ride_arg ap = {f->db, 300, 0}, cm = {f->db, 300, 0};
    pthread_t ta, tc;
    assert_int_equal(pthread_create(&ta, NULL, ride_appender, &ap), 0);
    assert_int_equal(pthread_create(&tc, NULL, ride_committer, &cm), 0);
    pthread_join(ta, NULL);
    pthread_join(tc, NULL);
    assert_int_equal(ap.failures, 0);
    assert_int_equal(cm.failures, 0);
    char err[WH_ERRLEN];
    uint64_t l;
    uint32_t s;
    assert_int_equal(st_db_commit(f->db, "t", "c", 0x5000, 0, &l, &s, err, sizeof(err)), WH_OK);
    stdb_fx_reopen(f);
    assert_int_equal(st_db_get_offset(f->db, "t", "c", &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(l, 0x5000);
}

/* ~600 bytes of JSON that does not compress (LZ4 from level 2 on) */
static void noise_json(char *json, size_t len, uint64_t seed)
{
    for (size_t i = 0; i < len; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        json[i] = (char)('a' + (seed >> 59) % 26);
    }
    json[0] = '{';
    json[len - 1] = '}';
}

static void fill_tenant(st_db *db, const char *tenant, int events)
{
    char err[WH_ERRLEN], json[GC_BATCH][600];
    st_event ev[GC_BATCH];
    uint64_t d;
    for (int b = 0; b < events / GC_BATCH; b++) {
        for (int i = 0; i < GC_BATCH; i++) {
            noise_json(json[i], sizeof(json[i]), (uint64_t)b * GC_BATCH + (uint64_t)i + 1);
            ev[i] = (st_event){(uint64_t)b + 1, (uint32_t)i, 1, json[i], sizeof(json[i])};
        }
        assert_int_equal(
            st_db_append(db, tenant, ev, GC_BATCH, (uint64_t)b + 1, &d, err, sizeof(err)), WH_OK);
    }
}

typedef struct gc_trace {
    pthread_mutex_t mu;
    char tenant[256];
    size_t n;
} gc_trace;

static void trace_gc(void *arg, const char *tenant, uint64_t bytes)
{
    (void)bytes;
    gc_trace *t = arg;
    pthread_mutex_lock(&t->mu);
    if (t->n < sizeof(t->tenant))
        t->tenant[t->n++] = tenant[0];
    pthread_mutex_unlock(&t->mu);
}

/* Compaction shared fairly: tenant a has ~20 slices of garbage, tenant b
 * one; the maintenance pass compacts a slice of each in turn, so b's
 * garbage goes in the first round instead of after all of a's, and a's
 * backlog is compacted in bounded slices, not one job. */
static void test_gc_fair_between_tenants(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    open_small(f); /* 64 KiB memtables: 256 KiB slices */
    uint64_t l;
    uint32_t s;
    assert_int_equal(st_db_commit(f->db, "a", "c", 0, 0, &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_commit(f->db, "b", "c", 0, 0, &l, &s, err, sizeof(err)), WH_OK);
    fill_tenant(f->db, "a", 8000);
    fill_tenant(f->db, "b", 600);
    wh_sleep_ms(500); /* flushes settle */
    assert_int_equal(live_events(f->db, "a"), 8000);
    assert_int_equal(live_events(f->db, "b"), 600);
    static gc_trace tr = {PTHREAD_MUTEX_INITIALIZER, {0}, 0};
    st_db_set_gc_hook(f->db, trace_gc, &tr);
    /* b first: a pass that sees a's garbage sees b's */
    assert_int_equal(
        st_db_commit(f->db, "b", "c", 600 / GC_BATCH, GC_BATCH - 1, &l, &s, err, sizeof(err)),
        WH_OK);
    assert_int_equal(
        st_db_commit(f->db, "a", "c", 8000 / GC_BATCH, GC_BATCH - 1, &l, &s, err, sizeof(err)),
        WH_OK);
    for (int i = 0; i < 3; i++)
        st_db_maintain(f->db);
    st_db_set_gc_hook(f->db, NULL, NULL);
    pthread_mutex_lock(&tr.mu);
    size_t na = 0, first_b = SIZE_MAX;
    for (size_t i = 0; i < tr.n; i++) {
        if (tr.tenant[i] == 'a')
            na++;
        else if (tr.tenant[i] == 'b' && first_b == SIZE_MAX)
            first_b = i;
    }
    print_message("GC slices in order: %.*s\n", (int)tr.n, tr.tenant);
    pthread_mutex_unlock(&tr.mu);
    assert_true(first_b <= 1); /* b is served in the first round */
    assert_true(na >= 4);      /* a's backlog went in bounded slices */
    /* what stays is below one memtable of garbage (the threshold) */
    assert_true(live_events(f->db, "a") <= 800);
    assert_true(live_events(f->db, "b") <= 300);
    st_tenant_stats ts[8];
    size_t n = st_db_tenant_stats(f->db, ts, 8);
    for (size_t i = 0; i < n; i++)
        if (strcmp(ts[i].tenant, "a") == 0)
            assert_true(ts[i].gc_compactions >= 4);
}

/* What flushes and compactions asked the rate limiter for since the last
 * call with the same base (st_db_io_bytes). */
typedef struct io_base {
    uint64_t limited, passed;
} io_base;

static void io_delta(st_db *db, io_base *b, uint64_t *limited, uint64_t *passed)
{
    uint64_t l, p;
    st_db_io_bytes(db, &l, &p);
    *limited = l - b->limited;
    *passed = p - b->passed;
    b->limited = l;
    b->passed = p;
}

/* RocksDB's rate limiter bounds compaction writes (store.io_rate_bytes):
 * at 1 MiB/s, 2 MiB of events are flushed at once (a flush is not
 * limited: writes stop while memtables wait for it) and rewriting them in
 * a full compaction, all of it limited, cannot take less than about 1.8 s
 * (its bytes over the rate, less one 100 ms refill; asserted: 1 s);
 * unlimited it takes well under 1 s here. */
static void check_io_limited(fx *f, const char *what)
{
    char err[WH_ERRLEN];
    uint64_t limited, passed;
    io_base base = {0, 0};
    io_delta(f->db, &base, &limited, &passed);
    fill_tenant(f->db, "r", 3500); /* ~2 MiB */
    assert_int_equal(st_db_flush(f->db, err, sizeof(err)), WH_OK);
    io_delta(f->db, &base, &limited, &passed);
    print_message("%s: flushes passed %llu bytes at once, %llu limited\n", what,
                  (unsigned long long)passed, (unsigned long long)limited);
    assert_true(passed >= (3u << 19)); /* the flushes: not limited */
    /* no compaction yet: the events come in key order, in fewer level-0
     * files than the compaction trigger (WH_BUDGET_ST_L0_TRIGGER) */
    assert_true(limited < (1u << 19));
    uint64_t t0 = wh_now_ms();
    assert_int_equal(st_db_compact(f->db, err, sizeof(err)), WH_OK);
    uint64_t ms = wh_now_ms() - t0;
    io_delta(f->db, &base, &limited, &passed);
    print_message("%s: the compaction wrote %llu bytes limited, %llu passed, in %llu ms\n", what,
                  (unsigned long long)limited, (unsigned long long)passed, (unsigned long long)ms);
    assert_true(limited >= (3u << 19));
    assert_true(ms >= 1000);
    assert_int_equal(live_events(f->db, "r"), 3500);
}

static void test_io_rate_limited(void **state)
{
    fx *f = *state;
    st_db_close(f->db);
    f->db = NULL;
    static const st_db_opts o = {.background_jobs = 2, .io_rate_bytes = 1 << 20};
    stdb_fx_open(&f->db, f->dir, &o);
    check_io_limited(f, "store.io_rate_bytes = 1 MiB/s");
}

/* store.io_rate_bytes is a runtime setting: opened at 64 MiB/s, lowered
 * to 1 MiB/s through st_db_set_limits (as a state change does), the running
 * limiter reads back 1 MiB/s and limits the compaction as above. Before
 * st_bgio the limiter's rate was fixed at open: this took well under 1 s. */
static void test_io_rate_runtime(void **state)
{
    fx *f = *state;
    st_db_close(f->db);
    f->db = NULL;
    static const st_db_opts o = {.background_jobs = 2, .io_rate_bytes = 64 << 20};
    stdb_fx_open(&f->db, f->dir, &o);
    assert_int_equal(st_db_io_rate(f->db), 64 << 20);
    st_db_limits lim = {0, 0, 0, 0, 0, 0, 1 << 20, 0};
    st_db_set_limits(f->db, &lim);
    assert_int_equal(st_db_io_rate(f->db), 1 << 20);
    check_io_limited(f, "store.io_rate_bytes from 64 to 1 MiB/s at runtime");
    /* back up; 0 leaves the rate as it is */
    lim.io_rate_bytes = 64 << 20;
    st_db_set_limits(f->db, &lim);
    assert_int_equal(st_db_io_rate(f->db), 64 << 20);
    lim.io_rate_bytes = 0;
    st_db_set_limits(f->db, &lim);
    assert_int_equal(st_db_io_rate(f->db), 64 << 20);
}

/* Tenant a keeps rewriting the same 1000 events (overlapping level-0
 * files: every flush of its events CF needs a real compaction), paced so
 * that its compactions, slowed by the rate limiter, run back to back. */
typedef struct flood {
    st_db *db;
    atomic_int stop;
    atomic_size_t rounds;
} flood;

static void *flood_main(void *arg)
{
    flood *fl = arg;
    char err[WH_ERRLEN], json[GC_BATCH][600];
    st_event ev[GC_BATCH];
    uint64_t d;
    while (!atomic_load(&fl->stop)) {
        for (int b = 0; b < 10 && !atomic_load(&fl->stop); b++) {
            for (int i = 0; i < GC_BATCH; i++) {
                noise_json(json[i], sizeof(json[i]), atomic_load(&fl->rounds) * 7919 + (uint64_t)i);
                ev[i] = (st_event){(uint64_t)b + 1, (uint32_t)i, 1, json[i], sizeof(json[i])};
            }
            if (st_db_append(fl->db, "a", ev, GC_BATCH, (uint64_t)b + 1, &d, err, sizeof(err)) !=
                WH_OK)
                return NULL;
            wh_sleep_ms(100);
        }
        atomic_fetch_add(&fl->rounds, 1);
    }
    return NULL;
}

static int is_compaction(const st_bgio_rec *r, const char *cf)
{
    return !r->flush && strcmp(r->cf, cf) == 0;
}

/* RocksDB's automatic compactions take turns between tenants: one
 * compaction thread (store.background_jobs = 2), tenant a with a backlog
 * of compactions that keeps coming (flood_main), tenant b that then needs
 * one (4 level-0 files). RocksDB queues the column families that need a
 * compaction and puts one back at the tail after picking a job, so b's
 * first compaction begins after at most the one a's job running when b
 * became due and one of a's already queued ahead of b; not after a's
 * backlog is done (a still needs compactions when b's begins). b is due
 * once its fourth flush completes (the listener logs flushes too).
 * Measured (2 cores, 512 KiB/s, 3 runs): the thread busy with a's jobs
 * 87-100% of the time before b's turn; 0 or 1 of a's jobs began between b
 * due and b's first, which began 0-6 ms after a's job before it ended
 * (0.4-2.9 s after b was due: the rest of a's running job). */
static void test_compactions_alternate(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    st_db_close(f->db);
    f->db = NULL;
    static const st_db_opts o = {
        .write_buffer_bytes = 64 << 10, .background_jobs = 2, .io_rate_bytes = 64 << 20};
    stdb_fx_open(&f->db, f->dir, &o);
    st_db_limits lim = {0, 0, 0, 0, 0, 0, 512 << 10, 0}; /* a's compactions take ~1 s */
    st_db_set_limits(f->db, &lim);
    st_db_set_resend_overwrite(f->db, 1); /* the rewrites make the compactions */
    st_db_compaction_log_start(f->db);
    static flood fl;
    memset(&fl, 0, sizeof(fl));
    fl.db = f->db;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, flood_main, &fl), 0);
    static st_bgio_rec log[ST_BGIO_LOG_MAX];
    /* a's backlog: its first round's files moved down (trivial moves), a
     * few compactions of its rewrites have run */
    size_t n = 0, from = SIZE_MAX;
    for (int i = 0; i < 400; i++) {
        n = st_db_compaction_log(f->db, log, ST_BGIO_LOG_MAX);
        if (from == SIZE_MAX && atomic_load(&fl.rounds) >= 2)
            from = n;
        size_t na = 0;
        for (size_t k = from == SIZE_MAX ? n : from; k < n; k++)
            na += is_compaction(&log[k], "e:a");
        if (na >= 3)
            break;
        wh_sleep_ms(50);
    }
    assert_true(from != SIZE_MAX);
    /* b: four overlapping level-0 files (the trigger) */
    char json[GC_BATCH][600];
    st_event ev[GC_BATCH];
    uint64_t d;
    for (int r = 0; r < 4; r++) {
        for (int i = 0; i < GC_BATCH; i++) {
            noise_json(json[i], sizeof(json[i]), (uint64_t)r * 1000 + (uint64_t)i);
            ev[i] = (st_event){1, (uint32_t)i, 1, json[i], sizeof(json[i])};
        }
        assert_int_equal(st_db_append(f->db, "b", ev, GC_BATCH, 1, &d, err, sizeof(err)), WH_OK);
        assert_int_equal(st_db_flush(f->db, err, sizeof(err)), WH_OK);
    }
    /* due: b's fourth flush completed; then b's first compaction */
    size_t due = SIZE_MAX, first_b = SIZE_MAX;
    for (int i = 0; i < 400 && (due == SIZE_MAX || first_b == SIZE_MAX); i++) {
        n = st_db_compaction_log(f->db, log, ST_BGIO_LOG_MAX);
        int flushes = 0;
        for (size_t k = 0; k < n && k < ST_BGIO_LOG_MAX; k++) {
            if (log[k].flush && strcmp(log[k].cf, "e:b") == 0 && ++flushes == 4)
                due = k;
            if (first_b == SIZE_MAX && is_compaction(&log[k], "e:b"))
                first_b = k;
        }
        if (due == SIZE_MAX || first_b == SIZE_MAX)
            wh_sleep_ms(50);
    }
    /* a's backlog goes on after b's turn */
    size_t a_after = 0;
    for (int i = 0; i < 400 && first_b != SIZE_MAX; i++) {
        n = st_db_compaction_log(f->db, log, ST_BGIO_LOG_MAX);
        a_after = 0;
        for (size_t k = first_b + 1; k < n && k < ST_BGIO_LOG_MAX; k++)
            a_after += is_compaction(&log[k], "e:a");
        if (a_after >= 2)
            break;
        wh_sleep_ms(50);
    }
    atomic_store(&fl.stop, 1);
    pthread_join(th, NULL);
    assert_true(due != SIZE_MAX);
    assert_true(first_b != SIZE_MAX);
    n = st_db_compaction_log(f->db, log, ST_BGIO_LOG_MAX);
    static char order[ST_BGIO_LOG_MAX + 1];
    size_t no = 0, a_before = 0, a_total = 0;
    for (size_t k = 0; k < n && k < ST_BGIO_LOG_MAX; k++) {
        int is_a = is_compaction(&log[k], "e:a");
        if (k == due)
            order[no++] = '|';
        else if (is_a)
            order[no++] = log[k].manual ? 'A' : 'a';
        else if (is_compaction(&log[k], "e:b"))
            order[no++] = 'b';
        else if (!log[k].flush)
            order[no++] = '.';
        a_total += is_a;
        if (is_a && k > due && k < first_b)
            a_before++;
    }
    order[no] = '\0';
    print_message("compactions in order (a, b; .: other column families; |: b's fourth flush "
                  "done): %s\n",
                  order);
    /* the compaction thread's time on a's jobs from a's third round to b's
     * first job: a's backlog kept it busy */
    int64_t busy = 0, t0 = 0, prev_end = 0;
    for (size_t k = from; k < first_b; k++)
        if (is_compaction(&log[k], "e:a") && log[k].end_us > 0) {
            if (t0 == 0)
                t0 = log[k].begin_us;
            busy += log[k].end_us - log[k].begin_us;
            prev_end = log[k].end_us;
        }
    print_message("compaction thread busy with a's jobs before b's turn: %lld of %lld ms; b's "
                  "first began %lld ms after b was due, %lld ms after a's last job before it "
                  "ended\n",
                  (long long)busy / 1000, (long long)(log[first_b].begin_us - t0) / 1000,
                  (long long)(log[first_b].begin_us - log[due].begin_us) / 1000,
                  (long long)(log[first_b].begin_us - prev_end) / 1000);
    print_message("a's compactions begun between b due and b's first: %zu; a's after b's first: "
                  "%zu; a's in all: %zu (%zu rounds of a)\n",
                  a_before, a_after, a_total, atomic_load(&fl.rounds));
    assert_true(a_before <= 2);
    assert_true(a_after >= 2); /* b's turn came while a still had a backlog */
    st_tenant_stats ts[8];
    st_db_maintain(f->db);
    size_t nt = st_db_tenant_stats(f->db, ts, 8);
    for (size_t i = 0; i < nt; i++)
        assert_true(ts[i].compactions >= 1);
}

/* ---- group commit ---- */

typedef struct cq_trace {
    pthread_mutex_t mu;
    size_t groups, sliced;
    uint64_t max_bytes, max_sliced_bytes;
} cq_trace;

static void trace_commit(void *arg, size_t parts, uint64_t bytes, int sliced)
{
    cq_trace *tr = arg;
    (void)parts;
    pthread_mutex_lock(&tr->mu);
    tr->groups++;
    if (bytes > tr->max_bytes)
        tr->max_bytes = bytes;
    if (sliced) {
        tr->sliced++;
        if (bytes > tr->max_sliced_bytes)
            tr->max_sliced_bytes = bytes;
    }
    pthread_mutex_unlock(&tr->mu);
}

#define BIG_EVENTS 512
#define BIG_JSON 2000

/* n events of about 2 KB at lsn from..from+n-1 (json in buf). */
static void big_events(st_event *ev, size_t n, uint64_t from, char *buf)
{
    memset(buf, 'x', BIG_JSON);
    buf[0] = '"';
    buf[BIG_JSON - 1] = '"';
    for (size_t i = 0; i < n; i++)
        ev[i] = (st_event){from + i, 0, 1, buf, BIG_JSON};
}

/* While another tenant makes light appends, a big append (1 MiB) is synced
 * in slices of store.commit_share_bytes; alone it is one synced write. Its
 * events all land, and its durable position comes with its last slice. */
static void test_commit_slices(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN], *buf = malloc(BIG_JSON);
    st_event *ev = calloc(BIG_EVENTS, sizeof(*ev));
    cq_trace tr = {.mu = PTHREAD_MUTEX_INITIALIZER};
    uint64_t d = 0, l;
    uint32_t sq;
    assert_non_null(buf);
    assert_non_null(ev);
    st_db_set_commit_hook(f->db, trace_commit, &tr);
    st_event small = {1, 0, 1, "{}", 2};
    assert_int_equal(st_db_append(f->db, "small", &small, 1, 1, &d, err, sizeof(err)), WH_OK);
    assert_int_equal(tr.groups, 1);
    assert_int_equal(tr.sliced, 0); /* nobody else appends: not sliced */

    big_events(ev, BIG_EVENTS, 1, buf);
    assert_int_equal(st_db_append(f->db, "big", ev, BIG_EVENTS, 9999, &d, err, sizeof(err)), WH_OK);
    assert_int_equal(d, 9999);
    size_t groups = tr.groups - 1;
    /* 1 MiB in slices of at most 128 KiB (ST_COMMIT_SHARE_BYTES) */
    assert_true(groups >= (BIG_EVENTS * BIG_JSON) / ST_COMMIT_SHARE_BYTES);
    assert_int_equal(tr.sliced, groups);
    assert_true(tr.max_sliced_bytes <= ST_COMMIT_SHARE_BYTES);
    assert_int_equal(st_db_tenant_end(f->db, "big", &l, &sq, err, sizeof(err)), WH_OK);
    assert_int_equal(l, BIG_EVENTS);
    assert_int_equal(st_db_get_durable(f->db, "big", &d, err, sizeof(err)), WH_OK);
    assert_int_equal(d, 9999);
    st_append_stats as;
    st_db_append_stats(f->db, &as);
    assert_int_equal(as.groups, tr.groups);
    assert_int_equal(as.shared_groups, tr.sliced);

    /* the same append alone (a store that saw no light append): one write */
    st_db_set_commit_hook(f->db, NULL, NULL);
    stdb_fx_reopen(f);
    memset(&tr, 0, sizeof(tr));
    pthread_mutex_init(&tr.mu, NULL);
    st_db_set_commit_hook(f->db, trace_commit, &tr);
    big_events(ev, BIG_EVENTS, BIG_EVENTS + 1, buf);
    assert_int_equal(st_db_append(f->db, "big", ev, BIG_EVENTS, 19999, &d, err, sizeof(err)),
                     WH_OK);
    assert_int_equal(tr.groups, 1);
    assert_int_equal(tr.sliced, 0);
    assert_int_equal(d, 19999);
    /* a light append of another tenant slices the next big one */
    assert_int_equal(st_db_append(f->db, "small", &small, 1, 1, &d, err, sizeof(err)), WH_OK);
    big_events(ev, BIG_EVENTS, 2 * BIG_EVENTS + 1, buf);
    assert_int_equal(st_db_append(f->db, "big", ev, BIG_EVENTS, 29999, &d, err, sizeof(err)),
                     WH_OK);
    assert_true(tr.sliced >= 4);
    st_db_set_commit_hook(f->db, NULL, NULL);
    free(ev);
    free(buf);
}

/* The slice size (store.commit_share_bytes) is a runtime
 * setting: raised to 4 MiB, the big append goes in one write again. */
static void test_commit_share_setting(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN], *buf = malloc(BIG_JSON);
    st_event *ev = calloc(BIG_EVENTS, sizeof(*ev));
    cq_trace tr = {.mu = PTHREAD_MUTEX_INITIALIZER};
    uint64_t d = 0;
    assert_non_null(buf);
    assert_non_null(ev);
    st_db_limits lim = {0, 0, 0, 0, 0, 4 << 20, 0, 0};
    st_db_set_limits(f->db, &lim);
    st_db_set_commit_hook(f->db, trace_commit, &tr);
    st_event small = {1, 0, 1, "{}", 2};
    assert_int_equal(st_db_append(f->db, "small", &small, 1, 1, &d, err, sizeof(err)), WH_OK);
    big_events(ev, BIG_EVENTS, 1, buf);
    assert_int_equal(st_db_append(f->db, "big", ev, BIG_EVENTS, 9999, &d, err, sizeof(err)), WH_OK);
    assert_int_equal(tr.groups, 2);
    st_db_set_commit_hook(f->db, NULL, NULL);
    free(ev);
    free(buf);
}

/* After the big append's first group, the leader starts the light append
 * and waits (bounded) until it is queued, so the next group is formed with
 * both queued. */
typedef struct cq_jump {
    st_db *db;
    pthread_mutex_t mu;
    pthread_t th;
    int started;
    size_t groups;
    uint64_t bytes[64];
    size_t parts[64];
} cq_jump;

static void *small_appender(void *p)
{
    cq_jump *j = p;
    char err[WH_ERRLEN];
    st_event e = {2, 0, 1, "{}", 2};
    uint64_t d = 0;
    if (st_db_append(j->db, "small", &e, 1, 2, &d, err, sizeof(err)) != WH_OK || d != 2)
        return (void *)1;
    return NULL;
}

static void jump_hook(void *arg, size_t parts, uint64_t bytes, int sliced)
{
    cq_jump *j = arg;
    (void)sliced;
    pthread_mutex_lock(&j->mu);
    size_t g = j->groups++;
    if (g < 64) {
        j->bytes[g] = bytes;
        j->parts[g] = parts;
    }
    pthread_mutex_unlock(&j->mu);
    if (g == 0 && pthread_create(&j->th, NULL, small_appender, j) == 0) {
        j->started = 1;
        for (int i = 0; i < 10000 && st_db_commit_queued(j->db, "small") == 0; i++)
            wh_sleep_ms(1);
    }
}

/* A light append queued behind a big one's slices jumps ahead: the next
 * group holds it alone; the group after that is the big one's again. */
static void test_commit_jump_ahead(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN], *buf = malloc(BIG_JSON);
    st_event *ev = calloc(BIG_EVENTS, sizeof(*ev));
    cq_jump j = {.db = f->db, .mu = PTHREAD_MUTEX_INITIALIZER};
    uint64_t d = 0;
    assert_non_null(buf);
    assert_non_null(ev);
    st_event small = {1, 0, 1, "{}", 2};
    assert_int_equal(st_db_append(f->db, "small", &small, 1, 1, &d, err, sizeof(err)), WH_OK);
    st_db_set_commit_hook(f->db, jump_hook, &j);
    big_events(ev, BIG_EVENTS, 1, buf);
    assert_int_equal(st_db_append(f->db, "big", ev, BIG_EVENTS, 9999, &d, err, sizeof(err)), WH_OK);
    assert_true(j.started);
    void *rv;
    pthread_join(j.th, &rv);
    assert_null(rv);
    st_db_set_commit_hook(f->db, NULL, NULL);
    assert_true(j.groups >= 4);
    assert_true(j.bytes[0] > ST_COMMIT_SHARE_BYTES / 2); /* a slice of the big one */
    assert_int_equal(j.parts[1], 1);                     /* the light one alone */
    assert_true(j.bytes[1] < 1024);
    assert_true(j.bytes[2] > ST_COMMIT_SHARE_BYTES / 2); /* then the big one's turn */
    for (size_t g = 0; g < j.groups && g < 64; g++)
        assert_true(j.bytes[g] <= ST_COMMIT_SHARE_BYTES);
    assert_int_equal(st_db_get_durable(f->db, "small", &d, err, sizeof(err)), WH_OK);
    assert_int_equal(d, 2);
    free(ev);
    free(buf);
}

typedef struct cq_big {
    st_db *db;
    _Atomic int stop;
    int failed;
    uint64_t next;
} cq_big;

static void *big_appender(void *p)
{
    cq_big *b = p;
    char err[WH_ERRLEN], buf[BIG_JSON];
    st_event ev[128];
    while (!atomic_load(&b->stop)) {
        big_events(ev, 128, b->next, buf);
        uint64_t d = 0;
        if (st_db_append(b->db, "big", ev, 128, b->next + 127, &d, err, sizeof(err)) != WH_OK ||
            d != b->next + 127) {
            b->failed = 1;
            break;
        }
        b->next += 128;
    }
    return NULL;
}

/* A tenant appending small batches while another floods: both go through
 * the group commit concurrently; every append returns its own durable
 * position and every event of both tenants is stored. */
static void test_commit_concurrent(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    cq_trace tr = {.mu = PTHREAD_MUTEX_INITIALIZER};
    st_db_set_commit_hook(f->db, trace_commit, &tr);
    cq_big b = {.db = f->db, .next = 1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, big_appender, &b), 0);
    for (uint64_t i = 1; i <= 40; i++) {
        st_event e[2] = {{2 * i - 1, 0, 1, "{}", 2}, {2 * i, 0, 1, "{}", 2}};
        uint64_t d = 0;
        assert_int_equal(st_db_append(f->db, "small", e, 2, 2 * i, &d, err, sizeof(err)), WH_OK);
        assert_int_equal(d, 2 * i);
        wh_sleep_ms(5);
    }
    atomic_store(&b.stop, 1);
    pthread_join(th, NULL);
    st_db_set_commit_hook(f->db, NULL, NULL);
    assert_false(b.failed);
    uint64_t l;
    uint32_t sq;
    assert_int_equal(st_db_tenant_end(f->db, "small", &l, &sq, err, sizeof(err)), WH_OK);
    assert_int_equal(l, 80);
    assert_int_equal(st_db_tenant_end(f->db, "big", &l, &sq, err, sizeof(err)), WH_OK);
    assert_int_equal(l, b.next - 1);
    assert_true(tr.sliced > 0);
}

/* The lead goes to a queued light append when the leader's own append is
 * done: "big" is written in one group; meanwhile "big2" then "small" queue
 * (in that order). The group of "small" is written by small's own thread
 * (no second wake-up after its write), not by big2's. */
typedef struct cq_hand {
    st_db *db;
    pthread_mutex_t mu;
    size_t groups;
    pthread_t small_th, big2_th;
    int started;
    _Atomic int small_self; /* small's group was written on small's thread */
    _Atomic int small_seen;
    st_event *ev2;
    char *buf2;
} cq_hand;

static __thread int tl_small; /* this thread appends "small" */

static void *hand_small(void *p)
{
    cq_hand *h = p;
    char err[WH_ERRLEN];
    st_event e = {1, 0, 1, "{}", 2};
    uint64_t d = 0;
    tl_small = 1;
    if (st_db_append(h->db, "small", &e, 1, 1, &d, err, sizeof(err)) != WH_OK || d != 1)
        return (void *)1;
    return NULL;
}

static void *hand_big2(void *p)
{
    cq_hand *h = p;
    char err[WH_ERRLEN];
    uint64_t d = 0;
    if (st_db_append(h->db, "big2", h->ev2, 100, 100, &d, err, sizeof(err)) != WH_OK || d != 100)
        return (void *)1;
    return NULL;
}

static void hand_hook(void *arg, size_t parts, uint64_t bytes, int sliced)
{
    cq_hand *h = arg;
    (void)sliced;
    pthread_mutex_lock(&h->mu);
    size_t g = h->groups++;
    pthread_mutex_unlock(&h->mu);
    if (parts == 1 && bytes < 1024) { /* small's group */
        atomic_store(&h->small_seen, 1);
        atomic_store(&h->small_self, tl_small);
    }
    if (g != 0)
        return;
    /* big's only group is written: big2, then small, queue behind it */
    if (pthread_create(&h->big2_th, NULL, hand_big2, h) != 0)
        return;
    for (int i = 0; i < 10000 && st_db_commit_queued(h->db, "big2") == 0; i++)
        wh_sleep_ms(1);
    if (pthread_create(&h->small_th, NULL, hand_small, h) != 0)
        return;
    h->started = 1;
    for (int i = 0; i < 10000 && st_db_commit_queued(h->db, "small") == 0; i++)
        wh_sleep_ms(1);
}

static void test_commit_handoff_light(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN], *buf = malloc(BIG_JSON);
    st_event *ev = calloc(BIG_EVENTS, sizeof(*ev)), *ev2 = calloc(100, sizeof(*ev2));
    cq_hand h = {.db = f->db, .mu = PTHREAD_MUTEX_INITIALIZER, .ev2 = ev2};
    uint64_t d = 0;
    assert_non_null(buf);
    assert_non_null(ev);
    assert_non_null(ev2);
    big_events(ev, 100, 1, buf); /* about 200 KB: not light, one group */
    big_events(ev2, 100, 1, buf);
    st_db_set_commit_hook(f->db, hand_hook, &h);
    assert_int_equal(st_db_append(f->db, "big", ev, 100, 100, &d, err, sizeof(err)), WH_OK);
    assert_true(h.started);
    void *rv1, *rv2;
    pthread_join(h.small_th, &rv1);
    pthread_join(h.big2_th, &rv2);
    st_db_set_commit_hook(f->db, NULL, NULL);
    assert_null(rv1);
    assert_null(rv2);
    assert_true(atomic_load(&h.small_seen));
    assert_true(atomic_load(&h.small_self));
    free(ev);
    free(ev2);
    free(buf);
}

/* The WAL zero-filled ahead (store.wal_zero_ahead_bytes) and offset commits
 * written without sync (store.offset_sync_wait_us) after a SIGKILL: a child
 * process (this program again, TEST_STORE_CRASH_DIR set) appends, commits
 * an offset and kills itself with the WAL's zeros after its data; the store
 * reopened holds every acknowledged event and the offset, once. */
#define CRASH_BATCHES 50
#define CRASH_PER 4

static void crash_child(const char *dir)
{
    char err[WH_ERRLEN];
    st_db *db = NULL;
    st_db_opts o = {dir, 1 << 20, 1 << 20, 0, 0, 0, 2000, 1 << 20};
    if (st_db_open(&db, &o, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "crash child: open: %s\n", err);
        _exit(2);
    }
    char json[CRASH_PER][100];
    st_event ev[CRASH_PER];
    uint64_t d;
    for (int b = 0; b < CRASH_BATCHES; b++) {
        for (int i = 0; i < CRASH_PER; i++) {
            snprintf(json[i], sizeof(json[i]), "{\"b\":%d,\"i\":%d}", b, i);
            ev[i] = (st_event){(uint64_t)b + 1, (uint32_t)i, 7, json[i], strlen(json[i])};
        }
        if (st_db_append(db, "t", ev, CRASH_PER, (uint64_t)b + 1, &d, err, sizeof(err)) != WH_OK) {
            fprintf(stderr, "crash child: append: %s\n", err);
            _exit(2);
        }
    }
    uint64_t l;
    uint32_t sq;
    if (st_db_commit(db, "t", "c", 30, 2, &l, &sq, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "crash child: commit: %s\n", err);
        _exit(2);
    }
    kill(getpid(), SIGKILL);
    _exit(3);
}

/* size of the largest *.log (WAL) in dir/rocksdb */
static off_t wal_size(const char *dir)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/rocksdb", dir);
    DIR *d = opendir(p);
    assert_non_null(d);
    off_t max = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".log") != 0)
            continue;
        char f[1024];
        snprintf(f, sizeof(f), "%s/%s", p, e->d_name);
        struct stat st;
        if (stat(f, &st) == 0 && st.st_size > max)
            max = st.st_size;
    }
    closedir(d);
    return max;
}

static void test_crash_zeroed_wal(void **state)
{
    fx *f = *state;
    char dir[128], err[WH_ERRLEN];
    snprintf(dir, sizeof(dir), "%s/crash", f->dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("TEST_STORE_CRASH_DIR", dir, 1);
        execl("/proc/self/exe", "test_store_db", (char *)NULL);
        _exit(4);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGKILL);
    /* the WAL was zero-filled past its data (a few KiB) when the store died */
    assert_true(wal_size(dir) >= (1 << 20));
    st_db *db = NULL;
    static const st_db_opts o = {.offset_sync_wait_us = 2000, .wal_zero_ahead_bytes = 1 << 20};
    stdb_fx_open(&db, dir, &o); /* as the child did */
    got g;
    assert_int_equal(read_all(db, "t", 0, 0, &g), CRASH_BATCHES * CRASH_PER);
    for (size_t k = 0; k < g.n; k++) {
        assert_int_equal(g.lsn[k], k / CRASH_PER + 1);
        assert_int_equal(g.seq[k], k % CRASH_PER);
    }
    uint64_t l;
    uint32_t sq;
    assert_int_equal(st_db_get_offset(db, "t", "c", &l, &sq, err, sizeof(err)), WH_OK);
    assert_int_equal(l, 30);
    assert_int_equal(sq, 2);
    assert_int_equal(st_db_get_durable(db, "t", &l, err, sizeof(err)), WH_OK);
    assert_int_equal(l, CRASH_BATCHES);
    st_db_close(db);
}

typedef struct staged_got {
    size_t n;
    uint32_t idx[64];
    uint32_t sub[64];
    char json[64][32];
} staged_got;

static int staged_step(void *arg, uint32_t idx, uint32_t subxid, const void *json, size_t len)
{
    staged_got *g = arg;
    if (g->n == 64)
        return 1;
    g->idx[g->n] = idx;
    g->sub[g->n] = subxid;
    size_t l = len < 31 ? len : 31;
    memcpy(g->json[g->n], json, l);
    g->json[g->n][l] = '\0';
    g->n++;
    return 0;
}

/* Staged events live apart from events: a scan returns them in staging
 * order, they are invisible to Read, the tenant's end, the dump and GC
 * (a watermark past everything and a full compaction keep them), and a
 * whole-xid abort or the commit's last append drops exactly that xid. */
static void test_stage_keys(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    st_staged s[3] = {{2, 7, "two", 3}, {0, 7, "zero", 4}, {1, 8, "one", 3}};
    assert_int_equal(st_db_stage_put(f->db, "t", 7, 0, s, 3, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_stage_put(f->db, "t", 9, 0, s, 1, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_stage_put(f->db, "u", 7, 0, s, 1, err, sizeof(err)), WH_OK);
    st_event ev = {0x100, 0, 1, "{}", 2};
    uint64_t d;
    assert_int_equal(st_db_append(f->db, "t", &ev, 1, 0, &d, err, sizeof(err)), WH_OK);
    st_stage_abort ab = {7, 8, 0, 0};
    assert_int_equal(st_db_stage_abort(f->db, "t", &ab, 1, err, sizeof(err)), WH_OK);

    uint64_t el;
    uint32_t es;
    assert_int_equal(st_db_tenant_end(f->db, "t", &el, &es, err, sizeof(err)), WH_OK);
    assert_true(el == 0x100 && es == 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *mf = open_memstream(&buf, &len);
    assert_int_equal(st_db_dump(f->db, mf, err, sizeof(err)), WH_OK);
    fclose(mf);
    assert_string_equal(buf, "t 0/100 0\n");
    free(buf);

    /* GC: a consumer past everything, then a full compaction */
    uint64_t ol;
    uint32_t os;
    assert_int_equal(st_db_commit(f->db, "t", "c", 0x999, 0, &ol, &os, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_compact(f->db, err, sizeof(err)), WH_OK);
    stdb_fx_reopen(f);

    staged_got g = {0};
    int stopped = 1;
    assert_int_equal(
        st_db_stage_scan(f->db, "t", 7, 0, staged_step, &g, &stopped, err, sizeof(err)), WH_OK);
    assert_false(stopped);
    assert_int_equal(g.n, 3);
    assert_int_equal(g.idx[0], 0);
    assert_string_equal(g.json[0], "zero");
    assert_int_equal(g.idx[2], 2);
    assert_int_equal(g.sub[1], 8);
    memset(&g, 0, sizeof(g));
    assert_int_equal(
        st_db_stage_scan(f->db, "t", 7, 1, staged_step, &g, &stopped, err, sizeof(err)), WH_OK);
    assert_int_equal(g.n, 2); /* from index 1 on */
    uint32_t *subs = NULL;
    size_t ns = 0;
    assert_int_equal(st_db_stage_aborted(f->db, "t", 7, &subs, &ns, err, sizeof(err)), WH_OK);
    assert_int_equal(ns, 1);
    assert_int_equal(subs[0], 8);
    free(subs);

    /* GC ran: the event below the watermark is gone, the staging is not */
    assert_int_equal(st_db_tenant_end(f->db, "t", &el, &es, err, sizeof(err)), WH_OK);
    assert_true(el == 0 && es == 0);
    /* the commit's last append drops xid 7 of t only */
    st_event c = {0x200, 0, 1, "{\"x\":0}", 7};
    assert_int_equal(
        st_db_append_stage_end(f->db, "t", &c, 1, 0x250, 7, NULL, &d, err, sizeof(err)), WH_OK);
    assert_true(d == 0x250);
    uint64_t n;
    assert_int_equal(st_db_stage_count(f->db, "t", 7, 100, &n, err, sizeof(err)), WH_OK);
    assert_int_equal(n, 0);
    assert_int_equal(st_db_stage_aborted(f->db, "t", 7, &subs, &ns, err, sizeof(err)), WH_OK);
    assert_int_equal(ns, 0);
    assert_int_equal(st_db_stage_count(f->db, "t", 9, 100, &n, err, sizeof(err)), WH_OK);
    assert_int_equal(n, 1);
    assert_int_equal(st_db_stage_count(f->db, "u", 7, 100, &n, err, sizeof(err)), WH_OK);
    assert_int_equal(n, 1);
    /* a whole abort; then the tenant's drop takes the rest */
    ab = (st_stage_abort){9, 9, 0, 0};
    assert_int_equal(st_db_stage_abort(f->db, "t", &ab, 1, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_stage_count(f->db, "t", 9, 100, &n, err, sizeof(err)), WH_OK);
    assert_int_equal(n, 0);
    assert_int_equal(st_db_tenant_drop(f->db, "u", err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_stage_count(f->db, "u", 7, 100, &n, err, sizeof(err)), WH_OK);
    assert_int_equal(n, 0);
    /* bad input */
    assert_int_equal(st_db_stage_put(f->db, "t", 0, 0, s, 1, err, sizeof(err)), WH_ERR);
    ab = (st_stage_abort){0, 1, 0, 0};
    assert_int_equal(st_db_stage_abort(f->db, "t", &ab, 1, err, sizeof(err)), WH_ERR);
    ab = (st_stage_abort){1, 0, 0, 0};
    assert_int_equal(st_db_stage_abort(f->db, "t", &ab, 1, err, sizeof(err)), WH_ERR);
    /* {0, 0}: all of one tenant's staging, none of another's */
    assert_int_equal(st_db_stage_put(f->db, "t", 11, 0, s, 2, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_stage_put(f->db, "t", 0xffffffffu, 0, s, 1, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_stage_put(f->db, "t2", 11, 0, s, 1, err, sizeof(err)), WH_OK);
    ab = (st_stage_abort){0, 0, 0, 0};
    assert_int_equal(st_db_stage_abort(f->db, "t", &ab, 1, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_stage_count(f->db, "t", 11, 100, &n, err, sizeof(err)), WH_OK);
    assert_int_equal(n, 0);
    assert_int_equal(st_db_stage_count(f->db, "t", 0xffffffffu, 100, &n, err, sizeof(err)), WH_OK);
    assert_int_equal(n, 0);
    assert_int_equal(st_db_stage_count(f->db, "t2", 11, 100, &n, err, sizeof(err)), WH_OK);
    assert_int_equal(n, 1);
    char *dump = NULL;
    size_t blen = 0;
    FILE *mem = open_memstream(&dump, &blen);
    assert_non_null(mem);
    assert_int_equal(st_db_dump_staged(f->db, mem, err, sizeof(err)), WH_OK);
    fclose(mem);
    assert_string_equal(dump, "t2 11 1\n");
    free(dump);
}

/* Schema versions: written with the events (durable across a reopen),
 * listed per tenant by table, a version registered again keeps its first
 * registration, another tenant sees none; a streamed transaction's
 * versions are written alone. */
typedef struct sv_got {
    int n;
    char table[8][32];
    uint64_t fp[8], lsn[8];
    uint32_t xid[8];
    char desc[8][32];
} sv_got;

static int sv_collect(void *arg, const st_schema *v)
{
    sv_got *g = arg;
    if (g->n >= 8)
        return 1;
    snprintf(g->table[g->n], sizeof(g->table[0]), "%s", v->table);
    g->fp[g->n] = v->fp;
    g->lsn[g->n] = v->first_lsn;
    g->xid[g->n] = v->first_xid;
    snprintf(g->desc[g->n], sizeof(g->desc[0]), "%.*s", (int)v->desc_len, v->desc);
    g->n++;
    return 0;
}

static void test_schema_registry(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    st_event ev[2] = {{0x1000, 0, 1, "{\"op\":\"schema\"}", 15}, {0x1000, 1, 1, "{\"a\":1}", 7}};
    st_schema sv[2] = {{"public.t", 0xabc, 0x1000, 7, "{\"v\":1}", 7, 0, 0, 0, 0, 0, 0, 0},
                       {"public.a", 0x123, 0x1000, 7, "{\"v\":2}", 7, 0, 0, 0, 0, 0, 0, 0}};
    uint64_t d = 0;
    assert_int_equal(st_db_append_schemas(f->db, "t1", ev, 2, 0x1010, sv, 2, &d, err, sizeof(err)),
                     WH_OK);
    /* again (a resend), with another first use: the first stays */
    st_schema again = {"public.t", 0xabc, 0x9000, 9, "{\"v\":9}", 7, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(
        st_db_append_schemas(f->db, "t1", ev, 2, 0x1010, &again, 1, &d, err, sizeof(err)), WH_OK);
    /* a streamed one: alone */
    st_schema streamed = {"public.t", 0xdef, 0, 11, "{\"v\":3}", 7, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(st_db_schema_put(f->db, "t1", &streamed, 1, err, sizeof(err)), WH_OK);
    stdb_fx_reopen(f);
    sv_got g;
    memset(&g, 0, sizeof(g));
    assert_int_equal(st_db_schema_list(f->db, "t1", sv_collect, &g, err, sizeof(err)), WH_OK);
    assert_int_equal(g.n, 3);
    assert_string_equal(g.table[0], "public.a"); /* by table, then fingerprint */
    assert_string_equal(g.table[1], "public.t");
    assert_true(g.fp[1] == 0xabc);
    assert_true(g.lsn[1] == 0x1000);
    assert_int_equal(g.xid[1], 7);
    assert_string_equal(g.desc[1], "{\"v\":1}");
    assert_true(g.fp[2] == 0xdef);
    assert_true(g.lsn[2] == 0);
    got e;
    assert_int_equal(read_all(f->db, "t1", 0, 0, &e), 2);
    memset(&g, 0, sizeof(g));
    assert_int_equal(st_db_schema_list(f->db, "t2", sv_collect, &g, err, sizeof(err)), WH_OK);
    assert_int_equal(g.n, 0);
    /* the streamed transaction 11 dropped whole: its first use goes */
    size_t nd = 0;
    assert_int_equal(st_db_schema_drop_xid(f->db, "t1", 7, &nd, err, sizeof(err)), WH_OK);
    assert_int_equal(nd, 0); /* 7's first use was committed (first_lsn set) */
    assert_int_equal(st_db_schema_drop_xid(f->db, "t1", 11, &nd, err, sizeof(err)), WH_OK);
    assert_int_equal(nd, 1);
    assert_int_equal(st_db_schema_drop_xid(f->db, "nosuch", 11, &nd, err, sizeof(err)), WH_OK);
    memset(&g, 0, sizeof(g));
    assert_int_equal(st_db_schema_list(f->db, "t1", sv_collect, &g, err, sizeof(err)), WH_OK);
    assert_int_equal(g.n, 2);
    /* a streamed transaction's first use (21) taken over by one that
     * committed first (22, first_use_moves): 21 dropped whole leaves it */
    st_schema pend = {"public.t", 0xfee, 0, 21, "{\"v\":4}", 7, 0, 21, 0, 0, 0, 0, 0};
    assert_int_equal(st_db_schema_put(f->db, "t1", &pend, 1, err, sizeof(err)), WH_OK);
    st_schema moved = {"public.t", 0xfee, 0x7000, 22, "{\"v\":4}", 7, 0x7000, 0, 0, 0, 0, 0, 1};
    st_schema late = {"public.t", 0xfee, 0x7100, 23, "{\"v\":4}", 7, 0x7100, 0, 0, 0, 0, 0, 1};
    assert_int_equal(st_db_schema_put(f->db, "t1", &moved, 1, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_schema_put(f->db, "t1", &late, 1, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_schema_drop_xid(f->db, "t1", 21, &nd, err, sizeof(err)), WH_OK);
    assert_int_equal(nd, 0);
    memset(&g, 0, sizeof(g));
    assert_int_equal(st_db_schema_list(f->db, "t1", sv_collect, &g, err, sizeof(err)), WH_OK);
    assert_int_equal(g.n, 3);
    assert_true(g.fp[2] == 0xfee);
    assert_true(g.lsn[2] == 0x7000); /* moved once: a committed first use stays */
    assert_int_equal(g.xid[2], 22);
    assert_string_equal(g.desc[2], "{\"v\":4}");
    /* malformed: no table */
    st_schema bad = {"", 1, 1, 1, "{}", 2, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(st_db_schema_put(f->db, "t1", &bad, 1, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "table"));
}

/* ---- schema registry pruning (st_db_schema.c, "schema registry": the rule) ---- */

/* Registers version fp of table tbl with its event at (lsn, 0): first use
 * first (0: none new), a start at lsn, or a pending start in sxid (then
 * staged: no event). */
static void sv_reg(fx *f, const char *tbl, uint64_t fp, uint64_t first, uint64_t lsn, uint32_t sxid)
{
    char err[WH_ERRLEN];
    st_schema v = {tbl, fp, first, sxid ? sxid : 7, "{\"c\":1}", 7, sxid ? 0 : lsn, sxid, 0, 0,
                   0,   0,  0};
    if (sxid != 0) {
        if (st_db_schema_put(f->db, "p", &v, 1, err, sizeof(err)) != WH_OK)
            fail_msg("schema put: %s", err);
        return;
    }
    st_event e = {lsn, 0, 1, "{\"a\":1}", 7};
    uint64_t d;
    if (st_db_append_schemas(f->db, "p", &e, 1, lsn, &v, 1, &d, err, sizeof(err)) != WH_OK)
        fail_msg("append: %s", err);
}

/* The same with a snapshot chunk's start (start_unproven): its first use
 * first, its start and event at lsn. */
static void sv_reg_chunk(fx *f, const char *tbl, uint64_t fp, uint64_t first, uint64_t lsn)
{
    char err[WH_ERRLEN];
    st_schema v = {tbl, fp, first, 7, "{\"c\":1}", 7, lsn, 0, 0, 0, 0, 1, 0};
    st_event e = {lsn, 0, 1, "{\"a\":1}", 7};
    uint64_t d;
    if (st_db_append_schemas(f->db, "p", &e, 1, lsn, &v, 1, &d, err, sizeof(err)) != WH_OK)
        fail_msg("append: %s", err);
}

typedef struct sv_find {
    uint64_t fp;
    int found; /* 1: listed, 2: listed as a tombstone */
    st_schema got;
    char desc[32];
    int n, ntomb; /* versions listed, tombstones among them */
} sv_find;

static int sv_find_step(void *arg, const st_schema *v)
{
    sv_find *s = arg;
    s->n++;
    s->ntomb += v->pruned != 0;
    if (v->fp == s->fp) {
        s->found = v->pruned ? 2 : 1;
        s->got = *v;
        s->got.table = NULL;
        s->got.desc = NULL;
        snprintf(s->desc, sizeof(s->desc), "%.*s", (int)v->desc_len, v->desc);
    }
    return 0;
}

static sv_find sv_list(fx *f, uint64_t fp)
{
    char err[WH_ERRLEN];
    sv_find s = {.fp = fp};
    assert_int_equal(st_db_schema_list(f->db, "p", sv_find_step, &s, err, sizeof(err)), WH_OK);
    return s;
}

/* 1 when tenant p lists version fp, not pruned (*out: it) */
static int sv_has(fx *f, uint64_t fp, st_schema *out)
{
    sv_find s = sv_list(f, fp);
    if (out != NULL)
        *out = s.got;
    return s.found == 1;
}

/* 1 when tenant p lists version fp as a tombstone (*out: it) */
static int sv_tomb(fx *f, uint64_t fp, st_schema *out)
{
    sv_find s = sv_list(f, fp);
    if (out != NULL)
        *out = s.got;
    return s.found == 2;
}

/* versions listed, tombstones not counted */
static int sv_count(fx *f)
{
    sv_find s = sv_list(f, 0);
    return s.n - s.ntomb;
}

/* The tenant's only consumer commits (lsn, 0); a maintenance pass stores
 * the watermark and prunes at it. */
static void sv_wm(fx *f, uint64_t lsn)
{
    char err[WH_ERRLEN];
    uint64_t l;
    uint32_t s;
    assert_int_equal(st_db_commit(f->db, "p", "c1", lsn, 0, &l, &s, err, sizeof(err)), WH_OK);
    st_db_maintain(f->db);
}

/* A table returns to an older shape: the old version stays while an event
 * of its new run is at or above the watermark; versions go once a later
 * version is proven below the watermark; the current one never goes. */
static void test_schema_prune_return(void **state)
{
    fx *f = *state;
    /* public.t: V1 at 0x100, V2 at 0x200 (a column added), V1 again at
     * 0x300 (dropped again: its first use stays 0x100), V3 at 0x400 */
    sv_reg(f, "public.t", 0x1, 0x100, 0x100, 0);
    sv_reg(f, "public.t", 0x1, 0x100, 0x110, 0); /* a reconnect: a start again, same run */
    sv_reg(f, "public.t", 0x2, 0x200, 0x200, 0);
    sv_reg(f, "public.t", 0x1, 0x100, 0x300, 0);
    sv_reg(f, "public.t", 0x3, 0x400, 0x400, 0);
    sv_reg(f, "public.u", 0x9, 0x150, 0x150, 0); /* another table: never pruned by t's */
    st_schema v;
    assert_true(sv_has(f, 0x1, &v));
    assert_true(v.started_lsn == 0x300);
    assert_true(v.proven_lsn == 0x300);
    assert_true(v.first_lsn == 0x100);
    assert_int_equal(sv_count(f), 4);
    /* wm 0x250: V1's events at 0x300 are stored, V2's at 0x200 too */
    sv_wm(f, 0x250);
    assert_int_equal(sv_count(f), 4);
    /* wm exactly at V1's return: V2's last event may be at 0x300 (a change
     * before the ALTER in V1's transaction): kept */
    sv_wm(f, 0x300);
    assert_true(sv_has(f, 0x2, NULL));
    /* wm past 0x300: V2 goes (all its events are below 0x300); V1, used
     * again since 0x300, stays though its first use 0x100 is far below */
    sv_wm(f, 0x301);
    assert_false(sv_has(f, 0x2, NULL));
    assert_true(sv_tomb(f, 0x2, NULL)); /* its tombstone */
    assert_true(sv_has(f, 0x1, NULL));
    assert_true(sv_has(f, 0x3, NULL));
    assert_true(sv_has(f, 0x9, NULL));
    /* the pruned state is durable; the watermark stays */
    stdb_fx_reopen(f);
    assert_false(sv_has(f, 0x2, NULL));
    assert_int_equal(sv_count(f), 3);
    /* wm past 0x400: V1 goes; V3 (current) and u's only version stay */
    sv_wm(f, 0x401);
    assert_false(sv_has(f, 0x1, NULL));
    assert_true(sv_has(f, 0x3, NULL));
    assert_true(sv_has(f, 0x9, NULL));
    /* even far past: the current version of each table stays */
    sv_wm(f, 0x9000);
    assert_int_equal(sv_count(f), 2);
    /* the table returns to V2 (pruned): registered again with its start */
    sv_reg(f, "public.t", 0x2, 0x200, 0x9100, 0);
    assert_true(sv_has(f, 0x2, &v));
    assert_true(v.started_lsn == 0x9100);
    sv_wm(f, 0x9100); /* V3's events may be at 0x9100 still */
    assert_true(sv_has(f, 0x3, NULL));
    sv_wm(f, 0x9200); /* V2 proven at 0x9100 < wm: V3 goes, V2 is current */
    assert_true(sv_has(f, 0x2, NULL));
    assert_false(sv_has(f, 0x3, NULL));
    assert_int_equal(sv_count(f), 2);
}

/* Starts of one transaction, streamed starts (pending, then protecting
 * only) and versions without a recorded start are kept. */
static void test_schema_prune_kept(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    /* A and B started in one transaction (0x100): neither drops the other */
    sv_reg(f, "public.a", 0xa1, 0x100, 0x100, 0);
    sv_reg(f, "public.a", 0xa2, 0x100, 0x100, 0);
    /* a version registered before starts were recorded: no start */
    st_schema old = {"public.a", 0xa0, 0x50, 3, "{\"c\":1}", 7, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(st_db_schema_put(f->db, "p", &old, 1, err, sizeof(err)), WH_OK);
    /* s: S1 at 0x100, then S2 in streamed transaction 77 (pending) */
    sv_reg(f, "public.s", 0x51, 0x100, 0x100, 0);
    sv_reg(f, "public.s", 0x52, 0, 0, 77);
    st_schema v;
    assert_true(sv_has(f, 0x52, &v));
    assert_int_equal(v.pending, 1);
    sv_wm(f, 0x1000);
    assert_int_equal(sv_count(f), 5);
    /* 77 commits at 0x2000: S2's start protects it, proves nothing: S1,
     * whose events are all below 0x2000, stays until a proven start */
    size_t n = 0;
    assert_int_equal(st_db_schema_commit_xid(f->db, "p", 77, 0x2000, &n, err, sizeof(err)), WH_OK);
    assert_int_equal(n, 1);
    assert_true(sv_has(f, 0x52, &v));
    assert_int_equal(v.pending, 0);
    assert_true(v.started_lsn == 0x2000);
    assert_true(v.proven_lsn == 0);
    sv_wm(f, 0x3000);
    assert_true(sv_has(f, 0x51, NULL));
    /* a change of S2 decoded whole at 0x3100 (a reconnect): proven */
    sv_reg(f, "public.s", 0x52, 0, 0x3100, 0);
    sv_wm(f, 0x3200);
    assert_false(sv_has(f, 0x51, NULL));
    assert_true(sv_has(f, 0x52, NULL));
    /* a third in a new table: a's versions all stay (equal starts; the old
     * one has no start) */
    assert_true(sv_has(f, 0xa0, NULL));
    assert_true(sv_has(f, 0xa1, NULL));
    assert_true(sv_has(f, 0xa2, NULL));
    /* a streamed transaction dropped whole: its pending start goes too */
    sv_reg(f, "public.s", 0x53, 0, 0, 88);
    sv_reg(f, "public.s", 0x52, 0, 0, 88);
    assert_int_equal(st_db_schema_drop_xid(f->db, "p", 88, &n, err, sizeof(err)), WH_OK);
    assert_int_equal(n, 1); /* 0x53: first used by 88 */
    assert_false(sv_has(f, 0x53, NULL));
    assert_true(sv_has(f, 0x52, &v));
    assert_int_equal(v.pending, 0);
    /* bad commits are refused */
    assert_int_equal(st_db_schema_commit_xid(f->db, "p", 0, 5, &n, err, sizeof(err)), WH_ERR);
}

/* A pruned version leaves a tombstone: listed (pruned, its first use, no
 * description, no start), durable, pruned once; a registration without a
 * start leaves it; one with a start (or a pending one) brings its
 * description back under its first use; a description is never empty. */
static void test_schema_tombstone(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    sv_reg(f, "public.t", 0x1, 0x100, 0x100, 0);
    sv_reg(f, "public.t", 0x2, 0x200, 0x200, 0);
    sv_reg(f, "public.u", 0x5, 0x110, 0x110, 0);
    sv_reg(f, "public.u", 0x6, 0x210, 0x210, 0);
    sv_wm(f, 0x300);
    st_schema v;
    assert_true(sv_tomb(f, 0x1, &v));
    assert_true(v.first_lsn == 0x100);
    assert_int_equal(v.first_xid, 7);
    assert_int_equal(v.desc_len, 0);
    assert_true(v.started_lsn == 0 && v.proven_lsn == 0);
    assert_int_equal(v.pending, 0);
    assert_true(sv_tomb(f, 0x5, NULL));
    assert_true(sv_has(f, 0x2, NULL));
    assert_int_equal(sv_list(f, 0).n, 4);
    assert_int_equal(sv_list(f, 0).ntomb, 2);
    stdb_fx_reopen(f);
    assert_true(sv_tomb(f, 0x1, NULL));
    /* pruned once: a later prune finds nothing to do */
    size_t n = 9;
    assert_int_equal(st_db_schema_prune(f->db, "p", 0x9000, &n, err, sizeof(err)), WH_OK);
    assert_int_equal(n, 0);
    assert_true(sv_tomb(f, 0x1, NULL));
    /* known again without a start (a first-use registration resent): stays
     * a tombstone */
    st_schema again = {"public.t", 0x1, 0x100, 7, "{\"c\":9}", 7, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(st_db_schema_put(f->db, "p", &again, 1, err, sizeof(err)), WH_OK);
    assert_true(sv_tomb(f, 0x1, NULL));
    /* the table back to V1: a start brings the description back, its first
     * use stays */
    again.first_lsn = 0x999;
    again.first_xid = 99;
    again.started_lsn = 0x400;
    uint64_t d;
    st_event e = {0x400, 0, 1, "{\"a\":1}", 7};
    assert_int_equal(
        st_db_append_schemas(f->db, "p", &e, 1, 0x400, &again, 1, &d, err, sizeof(err)), WH_OK);
    sv_find g = sv_list(f, 0x1);
    assert_int_equal(g.found, 1);
    assert_string_equal(g.desc, "{\"c\":9}");
    assert_true(g.got.first_lsn == 0x100);
    assert_int_equal(g.got.first_xid, 7);
    assert_true(g.got.started_lsn == 0x400 && g.got.proven_lsn == 0x400);
    /* a pending start (streamed) brings one back too */
    sv_reg(f, "public.u", 0x5, 0, 0, 50);
    assert_true(sv_has(f, 0x5, &v));
    assert_int_equal(v.pending, 1);
    assert_true(v.first_lsn == 0x110);
    /* V1 proven at 0x400: V2 (started 0x200) goes to a tombstone */
    sv_wm(f, 0x401);
    assert_true(sv_has(f, 0x1, NULL));
    assert_true(sv_tomb(f, 0x2, NULL));
    assert_true(sv_has(f, 0x5, NULL)); /* its pending start */
    /* ... whose transaction is dropped whole: no event of it stored, the
     * version is pruned again (not kept as if registered before starts) */
    assert_int_equal(st_db_schema_drop_xid(f->db, "p", 50, &n, err, sizeof(err)), WH_OK);
    assert_true(sv_has(f, 0x5, &v));
    assert_int_equal(v.pending, 0);
    sv_wm(f, 0x402);
    assert_true(sv_tomb(f, 0x5, NULL));
    assert_true(sv_has(f, 0x6, NULL));
    /* an empty description is refused (a tombstone has none) */
    st_schema bad = {"public.t", 0x7, 0x500, 7, "", 0, 0x500, 0, 0, 0, 0, 0, 0};
    assert_int_equal(st_db_schema_put(f->db, "p", &bad, 1, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "description"));
    assert_int_equal(sv_list(f, 0x7).found, 0);
}

/* A snapshot chunk's start (start_unproven) protects its version and
 * proves nothing: neither its start nor the first use it set prunes
 * another version; a proven start does. */
static void test_schema_unproven(void **state)
{
    fx *f = *state;
    /* t: V1 streamed (proven at 0x100); V2 first used by a chunk at 0x200
     * whose description was not the stream's */
    sv_reg(f, "public.t", 0x1, 0x100, 0x100, 0);
    sv_reg_chunk(f, "public.t", 0x2, 0x200, 0x200);
    st_schema v;
    assert_true(sv_has(f, 0x2, &v));
    assert_true(v.started_lsn == 0x200);
    assert_true(v.proven_lsn == 0);
    /* u: the same with the chunk's start proven (the old behaviour): U1
     * goes */
    sv_reg(f, "public.u", 0x11, 0x100, 0x100, 0);
    sv_reg(f, "public.u", 0x12, 0x200, 0x200, 0);
    sv_wm(f, 0x300);
    assert_true(sv_tomb(f, 0x11, NULL));
    /* V1, whose live events may be above the watermark, stays */
    assert_true(sv_has(f, 0x1, NULL));
    assert_true(sv_has(f, 0x2, NULL));
    /* the stream starts V1 again at 0x350 (a reconnect), a chunk of V2 at
     * 0x360: V2's start protects it from V1's proof */
    sv_reg(f, "public.t", 0x1, 0x100, 0x350, 0);
    sv_reg_chunk(f, "public.t", 0x2, 0x200, 0x360);
    sv_wm(f, 0x400);
    assert_true(sv_has(f, 0x1, NULL));
    assert_true(sv_has(f, 0x2, &v));
    assert_true(v.started_lsn == 0x360 && v.proven_lsn == 0);
    /* V1 proven after V2's last chunk: V2 goes */
    sv_reg(f, "public.t", 0x1, 0x100, 0x500, 0);
    sv_wm(f, 0x501);
    assert_true(sv_has(f, 0x1, NULL));
    assert_true(sv_tomb(f, 0x2, NULL));
}

int main(void)
{
    wh_log_init("test", WH_LOG_WARN);
    if (getenv("TEST_STORE_CRASH_DIR"))
        crash_child(getenv("TEST_STORE_CRASH_DIR"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_append_written, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_progress, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_idempotent, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_order, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_offsets, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_tenant_isolation, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_reopen_and_dump, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_gc, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_gc_at_flush, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_gc_idle_sweep, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_bad_names, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_commit_with_appends, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_tenant_drop, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_reader_cursor, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_gc_natural_compaction, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_gc_backlog_released, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_watermark_monotonic, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_retention_age, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_retention_marks_first, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_retention_bytes, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_migrate_single_cf, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_gc_fair_between_tenants, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_io_rate_limited, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_io_rate_runtime, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_compactions_alternate, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_commit_slices, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_commit_share_setting, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_commit_concurrent, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_commit_handoff_light, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_commit_jump_ahead, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_crash_zeroed_wal, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_stage_keys, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_schema_registry, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_schema_prune_return, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_schema_prune_kept, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_schema_tombstone, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_schema_unproven, setup, stdb_fx_teardown),
    };
    if (getenv("TEST_FILTER"))
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
