/* Unit tests of st_db against a real RocksDB in a temporary directory. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define _XOPEN_SOURCE_EXTENDED 1
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../services/store/st_db.h"
#include "wh_util.h"

typedef struct fx {
    char dir[64];
    st_db *db;
} fx;

typedef struct got {
    size_t n;
    uint64_t lsn[256];
    uint32_t seq[256];
    int64_t ts[256];
    char json[256][64];
} got;

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void open_db(fx *f, int read_only)
{
    char err[WH_ERRLEN];
    st_db_opts o = {f->dir, 1 << 20, 1 << 20, read_only};
    int rc = st_db_open(&f->db, &o, err, sizeof(err));
    if (rc != WH_OK)
        fail_msg("open: %s", err);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/test_store_db.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    open_db(f, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    st_db_close(f->db);
    nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void reopen(fx *f)
{
    st_db_close(f->db);
    f->db = NULL;
    open_db(f, 0);
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
    reopen(f);
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
    reopen(f);
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
    /* keys strictly below (4,1) are gone: (1,0)..(4,0) = 7 keys */
    assert_int_equal(read_all(f->db, "t", 0, 0, &g), 13);
    assert_int_equal(g.lsn[0], 4);
    assert_int_equal(g.seq[0], 1);
    assert_int_equal(st_db_gc_dropped(f->db), 7);
    assert_int_equal(read_all(f->db, "free", 0, 0, &g), 10);
    /* reads from the committed offset are unaffected */
    assert_int_equal(read_all(f->db, "t", 4, 1, &g), 12);
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
    reopen(f);
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
    reopen(f);
    assert_int_equal(st_db_get_offset(f->db, "t", "c", &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(l, 0x5000);
}

static void test_memory_need(void **state)
{
    (void)state;
    assert_int_equal(st_db_memory_need(8 << 20, 4 << 20),
                     (8 << 20) + ST_MAX_WRITE_BUFFERS * (4 << 20));
}

int main(void)
{
    wh_log_init("test", WH_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offsets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenant_isolation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_and_dump, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_with_appends, setup, teardown),
        cmocka_unit_test(test_memory_need),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
