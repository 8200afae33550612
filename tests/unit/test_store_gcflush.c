/* Unit test of the GC filter at flush (st_gcfilter): a flush drops the
 * events its readers have delivered without writing a deletion marker for
 * each. RocksDB turns a compaction filter's kRemove into a tombstone in
 * any output but the last level, so a memtable whose events had all been
 * delivered still became a level-0 file of their keys, and each such file
 * cost a compaction later (on the wide backlog of bench/run.sh about 50
 * compactions per 100,000 events). The table properties RocksDB keeps for
 * the events column family count those markers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rocksdb/c.h>

#include "../../services/store/st_db_int.h"
#include "stdb_fixture.h"

typedef stdb_fx fx;

static int setup(void **state)
{
    static const st_db_opts o = {.offset_sync_wait_us = 2000};
    *state = stdb_fx_new("test_store_gcflush", &o);
    return 0;
}

/* A number from the events column family's aggregated table properties
 * ("# entries=N; # deletions=N; ..."): -1 when it is not there */
static long table_prop(fx *f, const char *tenant, const char *name)
{
    st_tenant *t = st_dbi_tenant_find(f->db, tenant, 0);
    assert_non_null(t);
    char *v = rocksdb_property_value_cf(f->db->rdb, t->ev, "rocksdb.aggregated-table-properties");
    assert_non_null(v);
    long n = -1;
    char key[64];
    snprintf(key, sizeof(key), "# %s=", name);
    const char *p = strstr(v, key);
    if (p != NULL)
        n = strtol(p + strlen(key), NULL, 10);
    rocksdb_free(v);
    return n;
}

static void append_n(fx *f, uint64_t from, uint64_t to)
{
    char err[WH_ERRLEN];
    for (uint64_t lsn = from; lsn <= to; lsn++) {
        st_event e = {lsn, 0, (int64_t)lsn, "{\"a\":1}", 7};
        uint64_t d;
        if (st_db_append(f->db, "t", &e, 1, 0, &d, err, sizeof(err)) != WH_OK)
            fail_msg("append: %s", err);
    }
}

/* 50 events, the consumer past 40 of them: the flush keeps the 10 it has
 * not delivered and writes nothing for the 40 it drops */
static void test_flush_drops_without_markers(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    uint64_t l;
    uint32_t s;
    append_n(f, 1, 50);
    assert_int_equal(st_db_commit(f->db, "t", "c", 40, 0, &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_flush(f->db, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_gc_dropped(f->db), 40);
    assert_int_equal(table_prop(f, "t", "entries"), 10);
    assert_int_equal(table_prop(f, "t", "deletions"), 0);
    /* every event delivered but the newest (which says where the tenant
     * ends): a flush of the next 20 writes that one only */
    append_n(f, 51, 70);
    assert_int_equal(st_db_commit(f->db, "t", "c", 70, 0, &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_flush(f->db, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_gc_dropped(f->db), 40 + 19);
    assert_int_equal(table_prop(f, "t", "entries"), 11);
    assert_int_equal(table_prop(f, "t", "deletions"), 0);
    /* the reads are those of a filter that leaves markers */
    uint64_t el;
    uint32_t es;
    assert_int_equal(st_db_tenant_end(f->db, "t", &el, &es, err, sizeof(err)), WH_OK);
    assert_true(el == 70 && es == 0);
}

/* Appends (lsn, 0) for lsn in [from, to] with the given JSON */
static void append_json(fx *f, uint64_t from, uint64_t to, const char *json)
{
    char err[WH_ERRLEN];
    for (uint64_t lsn = from; lsn <= to; lsn++) {
        st_event e = {lsn, 0, (int64_t)lsn, json, strlen(json)};
        uint64_t d;
        if (st_db_append(f->db, "t", &e, 1, 0, &d, err, sizeof(err)) != WH_OK)
            fail_msg("append: %s", err);
    }
}

/* An event stored, flushed, and written again after a restart of the store
 * with other bytes: the second copy shadows the first (only with
 * st_db_set_resend_overwrite now: a resend at or below the tenant's end at
 * open otherwise keeps the stored copy, test_store_resend; an upgraded
 * ingestor or a TOAST value rendered again did this before). When the
 * consumer has passed it, the flush that drops the second copy must not
 * bring the first back: a reader below the watermark (a new target at the
 * start, an offset moved back) got the second copy's bytes before the
 * flush; after it, it gets either those or nothing, never the first
 * copy's. And the resend after that (the ingestor restarted too, the
 * override off) is not an event "sent again with other bytes". */
static void test_flush_drop_hides_older_copy(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    uint64_t l;
    uint32_t s;
    append_json(f, 1, 50, "{\"a\":1}");
    assert_int_equal(st_db_flush(f->db, err, sizeof(err)), WH_OK); /* no consumer: all stay */
    assert_int_equal(table_prop(f, "t", "entries"), 50);
    stdb_fx_reopen(f);
    st_db_set_resend_overwrite(f->db, 1);
    append_json(f, 1, 50, "{\"a\":2}");
    uint64_t differ = st_db_resends_differ(f->db);
    assert_int_equal(differ, 50); /* written, and counted */
    stdb_fx_seen before, after;
    stdb_fx_read_all(f->db, "t", &before);
    assert_int_equal(before.n, 50);
    for (int i = 1; i <= 50; i++)
        assert_int_equal(before.v[i], '2');
    st_db_set_resend_overwrite(f->db, 0); /* (every key dropped would keep its marker) */
    assert_int_equal(st_db_commit(f->db, "t", "c", 40, 0, &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_flush(f->db, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_gc_dropped(f->db), 40);
    stdb_fx_read_all(f->db, "t", &after);
    for (int i = 1; i <= 50; i++)
        if (after.v[i] != 0 && after.v[i] != before.v[i])
            fail_msg("event %d read as {\"a\":%c} after the flush, {\"a\":%c} before", i,
                     after.v[i], before.v[i]);
    for (int i = 41; i <= 50; i++)
        assert_int_equal(after.v[i], '2');
    /* those 40 keep a deletion marker each; the events after the stored
     * end go without one again */
    assert_int_equal(table_prop(f, "t", "deletions"), 40);
    append_json(f, 51, 70, "{\"a\":2}");
    assert_int_equal(st_db_commit(f->db, "t", "c", 70, 0, &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_flush(f->db, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_gc_dropped(f->db), 40 + 19);
    assert_int_equal(table_prop(f, "t", "deletions"), 40);
    append_json(f, 1, 50, "{\"a\":2}");
    assert_int_equal(st_db_resends_differ(f->db), differ);
}

/* The same, with the first copy's bytes sent again (PostgreSQL resending
 * after a crash): what a reader gets of an event never changes. */
static void test_flush_drop_same_bytes(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    uint64_t l;
    uint32_t s;
    append_json(f, 1, 50, "{\"a\":1}");
    assert_int_equal(st_db_flush(f->db, err, sizeof(err)), WH_OK);
    stdb_fx_reopen(f);
    append_json(f, 1, 60, "{\"a\":1}");
    assert_int_equal(st_db_commit(f->db, "t", "c", 60, 0, &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_flush(f->db, err, sizeof(err)), WH_OK);
    stdb_fx_seen after;
    stdb_fx_read_all(f->db, "t", &after);
    for (int i = 1; i <= 60; i++)
        if (after.v[i] != 0)
            assert_int_equal(after.v[i], '1');
    assert_int_equal(after.v[60], '1'); /* the tenant's end stays */
    uint64_t el;
    uint32_t es;
    assert_int_equal(st_db_tenant_end(f->db, "t", &el, &es, err, sizeof(err)), WH_OK);
    assert_true(el == 60 && es == 0);
    append_json(f, 1, 60, "{\"a\":1}");
    assert_int_equal(st_db_resends_differ(f->db), 0);
}

/* An append whose positions are not in order ([10, 5]): the store must
 * know that it wrote 10, or a resend of 10 with other bytes is written
 * over the stored copy without being compared (newest_* was the part's
 * last event, 5), and the flush that drops it brings the first copy back. */
static void test_flush_drop_unordered_append(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    uint64_t l, d;
    uint32_t s;
    st_event two[2] = {{10, 0, 10, "{\"a\":1}", 7}, {5, 0, 5, "{\"a\":1}", 7}};
    assert_int_equal(st_db_append(f->db, "t", two, 2, 0, &d, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_flush(f->db, err, sizeof(err)), WH_OK); /* no consumer: all stay */
    append_json(f, 10, 10, "{\"a\":2}");
    stdb_fx_seen before, after;
    stdb_fx_read_all(f->db, "t", &before);
    append_json(f, 11, 20, "{\"a\":2}");
    assert_int_equal(st_db_commit(f->db, "t", "c", 20, 0, &l, &s, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_flush(f->db, err, sizeof(err)), WH_OK);
    stdb_fx_read_all(f->db, "t", &after);
    if (after.v[10] != 0 && after.v[10] != before.v[10])
        fail_msg("event 10 read as {\"a\":%c} after the flush, {\"a\":%c} before", after.v[10],
                 before.v[10]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_flush_drops_without_markers, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_flush_drop_hides_older_copy, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_flush_drop_same_bytes, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_flush_drop_unordered_append, setup, stdb_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
