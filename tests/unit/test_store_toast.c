/* Unit tests of the store-backed TOAST value cache (st_toast, through
 * st_db) against a real RocksDB in a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "stdb_fixture.h"

typedef stdb_fx fx;

static int setup(void **state)
{
    static const st_db_opts o = {.offset_sync_wait_us = 2000};
    fx *f = stdb_fx_new("test_store_toast", &o);
    st_db_set_toast_bytes(f->db, 1 << 20);
    *state = f;
    return 0;
}

static void reopen(fx *f)
{
    stdb_fx_reopen(f);
    st_db_set_toast_bytes(f->db, 1 << 20);
}

static st_toast_op put(uint32_t rel, const char *key, const char *col, const char *val,
                       uint64_t lsn)
{
    return (st_toast_op){ST_TOAST_PUT, rel, key,         strlen(key), col,
                         strlen(col),  val, strlen(val), lsn,         77};
}

static st_toast_op op_of(int kind, uint32_t rel, const char *key, const char *col, uint64_t fp)
{
    return (st_toast_op){kind, rel, key, key ? strlen(key) : 0, col, col ? strlen(col) : 0, NULL,
                         0,    0,   fp};
}

/* One append of one event at lsn carrying ops. */
static void apply(fx *f, uint64_t lsn, const st_toast_op *ops, size_t n)
{
    char err[WH_ERRLEN];
    st_event ev = {lsn, 0, 1, "{}", 2};
    uint64_t d = 0;
    if (st_db_append_toast(f->db, "t1", &ev, 1, lsn + 1, NULL, 0, ops, n, 0, 0, &d, err,
                           sizeof(err)) != WH_OK)
        fail_msg("append: %s", err);
    assert_int_equal(d, lsn + 1);
}

/* The value found for (rel, key, col) before `before`, or NULL (caller
 * frees). */
static char *get(fx *f, uint32_t rel, const char *key, const char *col, uint64_t before)
{
    char err[WH_ERRLEN], *v = NULL;
    size_t vl = 0;
    uint64_t lsn = 0;
    int r = st_db_toast_get(f->db, "t1", rel, key, strlen(key), col, before, &v, &vl, &lsn, err,
                            sizeof(err));
    if (r < 0)
        fail_msg("get: %s", err);
    if (r == 0)
        return NULL;
    assert_int_equal(vl, strlen(v));
    return v;
}

static void expect(fx *f, uint32_t rel, const char *key, const char *col, uint64_t before,
                   const char *want)
{
    char *v = get(f, rel, key, col, before);
    if (want == NULL) {
        if (v != NULL)
            fail_msg("(%u, %s, %s) before %llu: found %s, none expected", rel, key, col,
                     (unsigned long long)before, v);
    } else {
        if (v == NULL)
            fail_msg("(%u, %s, %s) before %llu: none found, %s expected", rel, key, col,
                     (unsigned long long)before, want);
        assert_string_equal(v, want);
    }
    free(v);
}

/* A put is found by a change after its transaction, never by one at or
 * before it (a change PostgreSQL resends is before the entry's writer). */
static void test_put_lookup_lsn(void **state)
{
    fx *f = *state;
    expect(f, 1, "{\"id\":1}", "doc", 1000, NULL); /* no tenant CF yet */
    st_toast_op o[] = {put(1, "{\"id\":1}", "doc", "\"v1\"", 100)};
    apply(f, 100, o, 1);
    expect(f, 1, "{\"id\":1}", "doc", 101, "\"v1\"");
    expect(f, 1, "{\"id\":1}", "doc", 100, NULL);
    expect(f, 1, "{\"id\":1}", "doc", 50, NULL);
    expect(f, 1, "{\"id\":2}", "doc", 101, NULL);
    expect(f, 1, "{\"id\":1}", "other", 101, NULL);
    expect(f, 2, "{\"id\":1}", "doc", 101, NULL);
    /* a replacement: the newer value, and only for changes after it */
    st_toast_op o2[] = {put(1, "{\"id\":1}", "doc", "\"v2\"", 200)};
    apply(f, 200, o2, 1);
    expect(f, 1, "{\"id\":1}", "doc", 201, "\"v2\"");
    expect(f, 1, "{\"id\":1}", "doc", 150, NULL);
    st_toast_stats st;
    assert_int_equal(st_db_toast_stats(f->db, "t1", &st), 1);
    assert_int_equal(st.entries, 1);
    reopen(f);
    expect(f, 1, "{\"id\":1}", "doc", 201, "\"v2\"");
    assert_int_equal(st_db_toast_stats(f->db, "t1", &st), 1);
    assert_int_equal(st.entries, 1);
}

/* DEL drops one column's entry, DEL_ROW every column of the row; a put
 * and a delete in one batch: the last wins. */
static void test_delete(void **state)
{
    fx *f = *state;
    st_toast_op o[] = {put(1, "{\"id\":1}", "a", "\"a1\"", 100),
                       put(1, "{\"id\":1}", "b", "\"b1\"", 100),
                       put(1, "{\"id\":2}", "a", "\"a2\"", 100)};
    apply(f, 100, o, 3);
    st_toast_op d[] = {op_of(ST_TOAST_DEL, 1, "{\"id\":1}", "a", 0)};
    apply(f, 110, d, 1);
    expect(f, 1, "{\"id\":1}", "a", 1000, NULL);
    expect(f, 1, "{\"id\":1}", "b", 1000, "\"b1\"");
    st_toast_op r[] = {op_of(ST_TOAST_DEL_ROW, 1, "{\"id\":1}", NULL, 0)};
    apply(f, 120, r, 1);
    expect(f, 1, "{\"id\":1}", "b", 1000, NULL);
    expect(f, 1, "{\"id\":2}", "a", 1000, "\"a2\"");
    /* a delete and a reinsert of the same key in one batch */
    st_toast_op m[] = {put(1, "{\"id\":2}", "a", "\"x\"", 130),
                       op_of(ST_TOAST_DEL_ROW, 1, "{\"id\":2}", NULL, 0),
                       put(1, "{\"id\":2}", "b", "\"y\"", 130)};
    apply(f, 130, m, 3);
    expect(f, 1, "{\"id\":2}", "a", 1000, NULL);
    expect(f, 1, "{\"id\":2}", "b", 1000, "\"y\"");
    st_toast_stats st;
    st_db_toast_stats(f->db, "t1", &st);
    assert_int_equal(st.entries, 1);
    reopen(f);
    expect(f, 1, "{\"id\":2}", "b", 1000, "\"y\"");
    st_db_toast_stats(f->db, "t1", &st);
    assert_int_equal(st.entries, 1);
}

/* TABLE: the table's entries are no longer valid (others' are), across a
 * reopen; its fingerprint is listed; a put after it is. CLEAR: none is. */
static void test_generation(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    st_toast_op o[] = {put(1, "{\"id\":1}", "a", "\"a1\"", 100),
                       put(2, "{\"id\":1}", "a", "\"b1\"", 100)};
    apply(f, 100, o, 2);
    st_toast_op t[] = {op_of(ST_TOAST_TABLE, 1, NULL, NULL, 99)};
    apply(f, 110, t, 1);
    expect(f, 1, "{\"id\":1}", "a", 1000, NULL);
    expect(f, 2, "{\"id\":1}", "a", 1000, "\"b1\"");
    st_toast_table *tabs;
    size_t n;
    assert_int_equal(st_db_toast_tables(f->db, "t1", &tabs, &n, err, sizeof(err)), WH_OK);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        if (tabs[i].rel == 1) {
            assert_int_equal(tabs[i].fingerprint, 99);
            assert_int_equal(tabs[i].ncols, 0);
        } else {
            assert_int_equal(tabs[i].fingerprint, 77);
            assert_int_equal(tabs[i].ncols, 1);
            assert_string_equal(tabs[i].cols[0], "a");
        }
    }
    st_toast_tables_free(tabs, n);
    reopen(f);
    expect(f, 1, "{\"id\":1}", "a", 1000, NULL);
    expect(f, 2, "{\"id\":1}", "a", 1000, "\"b1\"");
    /* another row's put brings the column back: the old entry stays invalid */
    st_toast_op q[] = {put(1, "{\"id\":9}", "a", "\"a9\"", 115)};
    apply(f, 115, q, 1);
    expect(f, 1, "{\"id\":9}", "a", 1000, "\"a9\"");
    expect(f, 1, "{\"id\":1}", "a", 1000, NULL);
    reopen(f);
    expect(f, 1, "{\"id\":1}", "a", 1000, NULL);
    st_toast_op p[] = {put(1, "{\"id\":1}", "a", "\"a2\"", 120)};
    apply(f, 120, p, 1);
    expect(f, 1, "{\"id\":1}", "a", 1000, "\"a2\"");
    st_toast_op c[] = {op_of(ST_TOAST_CLEAR, 0, NULL, NULL, 0)};
    apply(f, 130, c, 1);
    expect(f, 1, "{\"id\":1}", "a", 1000, NULL);
    expect(f, 2, "{\"id\":1}", "a", 1000, NULL);
    reopen(f);
    expect(f, 2, "{\"id\":1}", "a", 1000, NULL);
    assert_int_equal(st_db_toast_tables(f->db, "t1", &tabs, &n, err, sizeof(err)), WH_OK);
    assert_int_equal(n, 0);
    st_toast_tables_free(tabs, n);
}

/* store.toast_cache_bytes: the oldest written go first, the bytes never
 * exceed the bound after a batch, and the figures survive a reopen. */
static void test_eviction(void **state)
{
    fx *f = *state;
    char val[1001], key[32];
    memset(val, 'x', 1000);
    val[0] = val[999] = '"';
    val[1000] = '\0';
    st_db_set_toast_bytes(f->db, 5000); /* four entries of about 1100 bytes */
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "{\"id\":%d}", i);
        st_toast_op o[] = {put(1, key, "doc", val, 100 + (uint64_t)i)};
        apply(f, 100 + (uint64_t)i, o, 1);
        st_toast_stats st;
        st_db_toast_stats(f->db, "t1", &st);
        assert_true(st.bytes <= 5000);
    }
    st_toast_stats st;
    st_db_toast_stats(f->db, "t1", &st);
    assert_int_equal(st.entries, 4);
    assert_int_equal(st.evictions, 6);
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "{\"id\":%d}", i);
        expect(f, 1, key, "doc", 1000, i >= 6 ? val : NULL);
    }
    /* a touched entry is written again: it is the newest */
    st_toast_op t[] = {put(1, "{\"id\":6}", "doc", val, 200)};
    apply(f, 200, t, 1);
    st_toast_op u[] = {put(1, "{\"id\":10}", "doc", val, 201)};
    apply(f, 201, u, 1);
    expect(f, 1, "{\"id\":6}", "doc", 1000, val);
    expect(f, 1, "{\"id\":7}", "doc", 1000, NULL);
    reopen(f);
    st_db_set_toast_bytes(f->db, 5000);
    st_toast_stats st2;
    st_db_toast_stats(f->db, "t1", &st2);
    assert_int_equal(st2.entries, 4);
    assert_int_equal(st2.evictions, 7);
    /* one batch of many: over the bound by at most that batch before
     * eviction, within it after */
    st_toast_op many[12];
    char keys[12][32];
    for (int i = 0; i < 12; i++) {
        snprintf(keys[i], sizeof(keys[i]), "{\"k\":%d}", i);
        many[i] = put(1, keys[i], "doc", val, 300);
    }
    apply(f, 300, many, 12);
    st_db_toast_stats(f->db, "t1", &st2);
    assert_true(st2.bytes <= 5000);
    assert_int_equal(st2.entries, 4);
    expect(f, 1, keys[11], "doc", 1000, val);
    expect(f, 1, keys[0], "doc", 1000, NULL);
    expect(f, 1, "{\"id\":10}", "doc", 1000, NULL);
    /* a bound of 0 keeps nothing */
    st_db_set_toast_bytes(f->db, 0);
    st_toast_op z[] = {put(1, "{\"z\":1}", "doc", val, 400)};
    apply(f, 400, z, 1);
    expect(f, 1, "{\"z\":1}", "doc", 1000, NULL);
    st_db_toast_stats(f->db, "t1", &st2);
    assert_int_equal(st2.entries, 0);
    assert_int_equal(st2.bytes, 0);
}

/* A late copy of a request (resent, applied before) is not applied again:
 * its put must not bring back a value a later request deleted. */
static void test_late_copy(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    st_event ev = {100, 0, 1, "{}", 2};
    uint64_t d;
    st_toast_op p[] = {put(1, "{\"id\":1}", "a", "\"v1\"", 100)};
    st_toast_op x[] = {op_of(ST_TOAST_DEL, 1, "{\"id\":1}", "a", 0)};
    assert_int_equal(
        st_db_append_toast(f->db, "t1", &ev, 1, 101, NULL, 0, p, 1, 42, 5, &d, err, sizeof(err)),
        WH_OK);
    ev.lsn = 110;
    assert_int_equal(
        st_db_append_toast(f->db, "t1", &ev, 1, 111, NULL, 0, x, 1, 42, 6, &d, err, sizeof(err)),
        WH_OK);
    ev.lsn = 100;
    assert_int_equal(
        st_db_append_toast(f->db, "t1", &ev, 1, 101, NULL, 0, p, 1, 42, 5, &d, err, sizeof(err)),
        WH_OK);
    expect(f, 1, "{\"id\":1}", "a", 1000, NULL);
    reopen(f);
    assert_int_equal(
        st_db_append_toast(f->db, "t1", &ev, 1, 101, NULL, 0, p, 1, 42, 6, &d, err, sizeof(err)),
        WH_OK);
    expect(f, 1, "{\"id\":1}", "a", 1000, NULL);
    /* another sender (a new ingestor process) starts its own count */
    assert_int_equal(
        st_db_append_toast(f->db, "t1", &ev, 1, 101, NULL, 0, p, 1, 43, 1, &d, err, sizeof(err)),
        WH_OK);
    expect(f, 1, "{\"id\":1}", "a", 1000, "\"v1\"");
}

/* Dropping the tenant drops its cache. */
static void test_tenant_drop(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    st_toast_op o[] = {put(1, "{\"id\":1}", "a", "\"a1\"", 100)};
    apply(f, 100, o, 1);
    assert_int_equal(st_db_tenant_drop(f->db, "t1", err, sizeof(err)), WH_OK);
    expect(f, 1, "{\"id\":1}", "a", 1000, NULL);
    assert_int_equal(st_db_tenant_create(f->db, "t1", err, sizeof(err)), WH_OK); /* back */
    st_toast_op p[] = {put(1, "{\"id\":2}", "a", "\"a2\"", 100)};
    apply(f, 100, p, 1);
    expect(f, 1, "{\"id\":2}", "a", 1000, "\"a2\"");
    expect(f, 1, "{\"id\":1}", "a", 1000, NULL);
    reopen(f);
    expect(f, 1, "{\"id\":2}", "a", 1000, "\"a2\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_lookup_lsn, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_generation, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_eviction, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_tenant_drop, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_late_copy, setup, stdb_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
