/* Unit tests of st_db when RocksDB cannot create a tenant's column family:
 * the call fails with an error naming it, the store is "write-failing"
 * until a write succeeds, no later read or write uses a handle without a
 * column family behind it (RocksDB's C API returns one when the create
 * failed: with it, the next read aborts the process), and the next use
 * creates the column family again.
 *
 * The create is made to fail for real: a column family of the name it
 * takes is created first, beside the store's back (RocksDB answers
 * "Invalid argument: Column family already exists"); dropping that one
 * lets the store's next create succeed.
 *
 * A create can also fail after the column family was created (newer
 * RocksDB by default, fail_if_options_file_error: its OPTIONS file could
 * not be written): the handle then has a column family behind it and must
 * be kept, or every next create answers "already exists" until a restart.
 * Made to happen for real with the store's test hook
 * WH_TEST_STORE_FAIL_IF_OPTIONS_FILE_ERROR and directories in the way of
 * the OPTIONS-NNNNNN.dbtmp files RocksDB writes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <rocksdb/c.h>

#include "../../services/store/st_db_int.h"
#include "stdb_fixture.h"

typedef stdb_fx fx;

static int setup(void **state)
{
    static const st_db_opts o = {.offset_sync_wait_us = 2000};
    fx *f = stdb_fx_new("test_store_cf", &o);
    st_db_set_toast_bytes(f->db, 1 << 20);
    *state = f;
    return 0;
}

/* setup with the test hook WH_TEST_STORE_FAIL_IF_OPTIONS_FILE_ERROR */
static int setup_fofe(void **state)
{
    setenv("WH_TEST_STORE_FAIL_IF_OPTIONS_FILE_ERROR", "1", 1);
    int rc = setup(state);
    unsetenv("WH_TEST_STORE_FAIL_IF_OPTIONS_FILE_ERROR");
    return rc;
}

/* Takes the name the store's create of tenant's column family of kind
 * needs: the store's create fails until squat_end. */
static rocksdb_column_family_handle_t *squat(fx *f, char kind, const char *tenant)
{
    char name[ST_NAME_MAX + 3];
    st_dbi_cf_name(name, sizeof(name), kind, tenant);
    char *e = NULL;
    rocksdb_column_family_handle_t *h =
        rocksdb_create_column_family(f->db->rdb, f->db->opts, name, &e);
    if (e != NULL)
        fail_msg("create %s: %s", name, e);
    return h;
}

static void squat_end(fx *f, rocksdb_column_family_handle_t *h)
{
    char *e = NULL;
    rocksdb_drop_column_family(f->db->rdb, h, &e);
    if (e != NULL)
        fail_msg("drop: %s", e);
    rocksdb_column_family_handle_destroy(h);
}

/* err names the column family and RocksDB's reason, and so does the
 * store's write health */
static void expect_cf_error(fx *f, const char *err, const char *cf)
{
    if (strstr(err, "create column family") == NULL || strstr(err, cf) == NULL ||
        strstr(err, "already exists") == NULL)
        fail_msg("error \"%s\" does not name the create of %s and its reason", err, cf);
    char why[512];
    assert_int_equal(st_db_write_health(f->db, why, sizeof(why)), WH_ERR);
    if (strstr(why, cf) == NULL)
        fail_msg("write health \"%s\" does not name %s", why, cf);
}

static void expect_healthy(fx *f)
{
    char why[512] = "";
    if (st_db_write_health(f->db, why, sizeof(why)) != WH_OK)
        fail_msg("still write-failing: %s", why);
}

static int append(fx *f, const char *tenant, uint64_t lsn, char *err, size_t errlen)
{
    st_event ev = {lsn, 0, 1, "{}", 2};
    uint64_t d = 0;
    return st_db_append(f->db, tenant, &ev, 1, lsn, &d, err, errlen);
}

/* The metadata CF: created with the events CF by a tenant's first append. */
static void test_meta_create_fails(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    rocksdb_column_family_handle_t *h = squat(f, ST_CF_META, "tm");
    assert_int_equal(append(f, "tm", 100, err, sizeof(err)), WH_ERR);
    expect_cf_error(f, err, "m:tm");
    /* reads see a tenant without data (before the fix: an abort here) */
    uint64_t lsn = 1;
    assert_int_equal(st_db_get_durable(f->db, "tm", &lsn, err, sizeof(err)), WH_OK);
    assert_int_equal(lsn, 0);
    assert_int_equal(st_db_tenant_exists(f->db, "tm"), 0);
    /* the next append tries the create again: the same clean error */
    assert_int_equal(append(f, "tm", 100, err, sizeof(err)), WH_ERR);
    expect_cf_error(f, err, "m:tm");
    squat_end(f, h);
    if (append(f, "tm", 100, err, sizeof(err)) != WH_OK)
        fail_msg("append after the name is free: %s", err);
    expect_healthy(f);
    assert_int_equal(st_db_get_durable(f->db, "tm", &lsn, err, sizeof(err)), WH_OK);
    assert_int_equal(lsn, 100);
}

/* The TOAST cache CF: created by the first append with TOAST ops. */
static void test_toast_create_fails(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    if (append(f, "tt", 100, err, sizeof(err)) != WH_OK)
        fail_msg("append: %s", err);
    rocksdb_column_family_handle_t *h = squat(f, ST_CF_TOAST, "tt");
    st_toast_op op = {ST_TOAST_PUT, 1, "{\"id\":1}", 8, "doc", 3, "\"v\"", 3, 200, 77};
    st_event ev = {200, 0, 1, "{}", 2};
    uint64_t d = 0;
    assert_int_equal(
        st_db_append_toast(f->db, "tt", &ev, 1, 200, NULL, 0, &op, 1, 0, 0, &d, err, sizeof(err)),
        WH_ERR);
    expect_cf_error(f, err, "t:tt");
    /* a lookup and the stats find nothing (before the fix: an abort) */
    char *v = NULL;
    size_t vl = 0;
    uint64_t lsn = 0;
    assert_int_equal(st_db_toast_get(f->db, "tt", 1, "{\"id\":1}", 8, "doc", 1000, &v, &vl, &lsn,
                                     err, sizeof(err)),
                     0);
    st_toast_stats ts;
    assert_int_equal(st_db_toast_stats(f->db, "tt", &ts), 0);
    /* an append without TOAST ops still works, and ends the failing state */
    if (append(f, "tt", 150, err, sizeof(err)) != WH_OK)
        fail_msg("append: %s", err);
    expect_healthy(f);
    squat_end(f, h);
    if (st_db_append_toast(f->db, "tt", &ev, 1, 200, NULL, 0, &op, 1, 0, 0, &d, err, sizeof(err)) !=
        WH_OK)
        fail_msg("append with TOAST ops after the name is free: %s", err);
    assert_int_equal(st_db_toast_get(f->db, "tt", 1, "{\"id\":1}", 8, "doc", 1000, &v, &vl, &lsn,
                                     err, sizeof(err)),
                     1);
    assert_memory_equal(v, "\"v\"", 3);
    free(v);
}

/* The staging CF: created by the first staged event of a streamed
 * transaction. */
static void test_stage_create_fails(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    if (append(f, "ts", 100, err, sizeof(err)) != WH_OK)
        fail_msg("append: %s", err);
    rocksdb_column_family_handle_t *h = squat(f, ST_CF_STAGE, "ts");
    st_staged sv = {1, 7, "{}", 2};
    assert_int_equal(st_db_stage_put(f->db, "ts", 7, 1, &sv, 1, err, sizeof(err)), WH_ERR);
    expect_cf_error(f, err, "s:ts");
    /* nothing staged, and a commit's scan and an abort find nothing
     * (before the fix: an abort) */
    uint64_t n = 1;
    assert_int_equal(st_db_stage_count(f->db, "ts", 7, 10, &n, err, sizeof(err)), WH_OK);
    assert_int_equal(n, 0);
    st_stage_abort ab = {7, 7, 0, 0};
    assert_int_equal(st_db_stage_abort(f->db, "ts", &ab, 1, err, sizeof(err)), WH_OK);
    squat_end(f, h);
    if (st_db_stage_put(f->db, "ts", 7, 1, &sv, 1, err, sizeof(err)) != WH_OK)
        fail_msg("stage after the name is free: %s", err);
    expect_healthy(f);
    assert_int_equal(st_db_stage_count(f->db, "ts", 7, 10, &n, err, sizeof(err)), WH_OK);
    assert_int_equal(n, 1);
}

/* st_dbi_cf_handle_live reads the linked librocksdb's handle right: a
 * created handle is live, the one a refused create returns is not. */
static void test_handle_live(void **state)
{
    fx *f = *state;
    char *e = NULL;
    rocksdb_column_family_handle_t *h =
        rocksdb_create_column_family(f->db->rdb, f->db->opts, "probe", &e);
    if (e != NULL)
        fail_msg("create probe: %s", e);
    assert_int_equal(st_dbi_cf_handle_live(h), 1);
    rocksdb_column_family_handle_t *h2 =
        rocksdb_create_column_family(f->db->rdb, f->db->opts, "probe", &e);
    assert_non_null(e);
    assert_non_null(strstr(e, "already exists"));
    rocksdb_free(e);
    assert_int_equal(st_dbi_cf_handle_live(h2), 0);
    rocksdb_column_family_handle_destroy(h2);
    squat_end(f, h);
}

/* Directories where RocksDB writes its next OPTIONS files (on = 1), or
 * none (on = 0): the OPTIONS file write fails with "Is a directory". */
static void options_blocked(fx *f, int on)
{
    for (int i = 1; i <= 2000; i++) {
        char p[128];
        snprintf(p, sizeof(p), "%s/rocksdb/OPTIONS-%06d.dbtmp", f->dir, i);
        if (on)
            mkdir(p, 0700);
        else
            rmdir(p);
    }
}

/* A TOAST cache CF whose create fails after it was created (its OPTIONS
 * file not written): the store keeps the handle, the append succeeds, the
 * value is there, and after a reopen too. Before: the append failed, and
 * every retry "Column family already exists" until a restart. */
static void test_create_fails_after_created(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    if (append(f, "tp", 100, err, sizeof(err)) != WH_OK)
        fail_msg("append: %s", err);
    st_toast_op op = {ST_TOAST_PUT, 1, "{\"id\":1}", 8, "doc", 3, "\"v\"", 3, 200, 77};
    st_event ev = {200, 0, 1, "{}", 2};
    uint64_t d = 0;
    options_blocked(f, 1);
    int rc =
        st_db_append_toast(f->db, "tp", &ev, 1, 200, NULL, 0, &op, 1, 0, 0, &d, err, sizeof(err));
    if (rc != WH_OK) {
        /* the old code: the retry cannot succeed, even with the way clear */
        options_blocked(f, 0);
        char err2[WH_ERRLEN];
        if (st_db_append_toast(f->db, "tp", &ev, 1, 200, NULL, 0, &op, 1, 0, 0, &d, err2,
                               sizeof(err2)) != WH_OK)
            fail_msg("append with TOAST ops: %s; its retry: %s", err, err2);
        fail_msg("append with TOAST ops: %s", err);
    }
    options_blocked(f, 0);
    expect_healthy(f);
    char *v = NULL;
    size_t vl = 0;
    uint64_t lsn = 0;
    assert_int_equal(st_db_toast_get(f->db, "tp", 1, "{\"id\":1}", 8, "doc", 1000, &v, &vl, &lsn,
                                     err, sizeof(err)),
                     1);
    assert_memory_equal(v, "\"v\"", 3);
    free(v);
    /* the column family is in the MANIFEST: a reopen opens it */
    stdb_fx_reopen(f);
    st_db_set_toast_bytes(f->db, 1 << 20);
    v = NULL;
    assert_int_equal(st_db_toast_get(f->db, "tp", 1, "{\"id\":1}", 8, "doc", 1000, &v, &vl, &lsn,
                                     err, sizeof(err)),
                     1);
    assert_memory_equal(v, "\"v\"", 3);
    free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_meta_create_fails, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_toast_create_fails, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_stage_create_fails, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_handle_live, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_create_fails_after_created, setup_fofe,
                                        stdb_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
