/* Unit test of an event sent again after a restart of the store
 * (PostgreSQL resends from the confirmed flush LSN): the store compared a
 * resent event with the stored one only at positions the running process
 * had written itself (st_tenant.newest_*), so after a restart an append
 * with other bytes (an ingestor upgraded meanwhile, an unchanged TOAST
 * value rendered again) silently replaced the stored event, which may have
 * been delivered already and whose id names one content. At or below the
 * tenant's last event when the store opened (st_tenant.open_end) a resend
 * is now what it is in the process that wrote it: the same bytes are not
 * written again, other bytes keep the stored event and are counted in
 * walhook_store_resends_differ_total, an event no longer stored (collected)
 * is written. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rocksdb/c.h>

#include "../../services/store/st_db_int.h"
#include "stdb_fixture.h"

typedef stdb_fx fx;

static int setup(void **state)
{
    static const st_db_opts o = {.offset_sync_wait_us = 2000};
    *state = stdb_fx_new("test_store_resend", &o);
    return 0;
}

/* Appends (lsn, 0) for lsn in [from, to] with the given JSON, in one
 * append (as the ingestor sends a transaction) */
static void append_json(fx *f, uint64_t from, uint64_t to, const char *json)
{
    char err[WH_ERRLEN];
    st_event ev[64];
    size_t n = 0;
    assert_true(to - from < 64);
    for (uint64_t lsn = from; lsn <= to; lsn++)
        ev[n++] = (st_event){lsn, 0, (int64_t)lsn, json, strlen(json)};
    uint64_t d;
    if (st_db_append(f->db, "t", ev, n, 0, &d, err, sizeof(err)) != WH_OK)
        fail_msg("append: %s", err);
}

/* Entries in the memtable of the tenant's events: what the last appends
 * wrote since the last flush */
static uint64_t memtable_entries(fx *f)
{
    st_tenant *t = st_dbi_tenant_find(f->db, "t", 0);
    assert_non_null(t);
    uint64_t n = 0;
    if (!rocksdb_property_int_cf(f->db->rdb, t->ev, "rocksdb.num-entries-active-mem-table", &n))
        return n;
    fail_msg("no property rocksdb.num-entries-active-mem-table");
    return 0;
}

/* Events 1..20 stored and flushed by one process; the next one sends them
 * again with other bytes, and 21..25 after them: the stored ones stay, the
 * 20 are counted, the new ones are written. */
static void test_restart_resend_other_bytes(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    append_json(f, 1, 20, "{\"a\":1}");
    assert_int_equal(st_db_flush(f->db, err, sizeof(err)), WH_OK);
    stdb_fx_reopen(f);
    assert_int_equal(st_db_resends_differ(f->db), 0);
    append_json(f, 1, 25, "{\"a\":2}");
    assert_int_equal(st_db_resends_differ(f->db), 20);
    assert_int_equal(memtable_entries(f), 5); /* 21..25 only */
    stdb_fx_seen s;
    stdb_fx_read_all(f->db, "t", &s);
    for (int i = 1; i <= 25; i++)
        if (s.v[i] != (i <= 20 ? '1' : '2'))
            fail_msg("event %d read as {\"a\":%c}", i, s.v[i] ? s.v[i] : '-');
    /* the same again: the stored ones compared (20 more), 21..25 written
     * by this process are compared as before the fix, the same bytes */
    append_json(f, 1, 25, "{\"a\":2}");
    assert_int_equal(st_db_resends_differ(f->db), 40);
    assert_int_equal(memtable_entries(f), 5);
    /* and after another restart, with the memtable flushed at close or
     * not: still the first bytes */
    stdb_fx_reopen(f);
    stdb_fx_read_all(f->db, "t", &s);
    for (int i = 1; i <= 25; i++)
        assert_int_equal(s.v[i], i <= 20 ? '1' : '2');
}

/* The same bytes sent again after a restart: nothing counted, nothing
 * written again. */
static void test_restart_resend_same_bytes(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    append_json(f, 1, 20, "{\"a\":1}");
    assert_int_equal(st_db_flush(f->db, err, sizeof(err)), WH_OK);
    stdb_fx_reopen(f);
    assert_int_equal(memtable_entries(f), 0);
    append_json(f, 1, 20, "{\"a\":1}");
    assert_int_equal(st_db_resends_differ(f->db), 0);
    assert_int_equal(memtable_entries(f), 0);
    stdb_fx_seen s;
    stdb_fx_read_all(f->db, "t", &s);
    for (int i = 1; i <= 20; i++)
        assert_int_equal(s.v[i], '1');
}

/* st_db_set_resend_overwrite (the compaction tests rewrite the same keys)
 * still writes over a copy an earlier process stored, and counts it. */
static void test_restart_resend_overwrite(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    append_json(f, 1, 10, "{\"a\":1}");
    assert_int_equal(st_db_flush(f->db, err, sizeof(err)), WH_OK);
    stdb_fx_reopen(f);
    st_db_set_resend_overwrite(f->db, 1);
    append_json(f, 1, 10, "{\"a\":2}");
    assert_int_equal(st_db_resends_differ(f->db), 10);
    assert_int_equal(memtable_entries(f), 10);
    stdb_fx_seen s;
    stdb_fx_read_all(f->db, "t", &s);
    for (int i = 1; i <= 10; i++)
        assert_int_equal(s.v[i], '2');
}

/* What a resend of 1..20 with other bytes leaves, after the consumer
 * passed 15 and a flush collected 1..15; restart: with a restart of the
 * store between the flush and the resend. */
typedef struct outcome {
    uint64_t differ, written;
    stdb_fx_seen s;
} outcome;

static outcome collected_resend(int restart)
{
    fx *f = stdb_fx_new("test_store_resend", &(st_db_opts){.offset_sync_wait_us = 2000});
    char err[WH_ERRLEN];
    uint64_t l;
    uint32_t q;
    append_json(f, 1, 20, "{\"a\":1}");
    assert_int_equal(st_db_commit(f->db, "t", "c", 15, 0, &l, &q, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_flush(f->db, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_gc_dropped(f->db), 15);
    if (restart)
        stdb_fx_reopen(f);
    uint64_t m0 = memtable_entries(f);
    append_json(f, 1, 20, "{\"a\":2}");
    outcome o = {st_db_resends_differ(f->db), memtable_entries(f) - m0, {{0}, 0}};
    stdb_fx_read_all(f->db, "t", &o.s);
    stdb_fx_free(f);
    return o;
}

/* An event collected (delivered, dropped by the GC) before the restart and
 * sent again: what the process that wrote it does (it is written again,
 * below the watermark, dropped by the next flush), nothing more; those
 * still stored are kept and counted. */
static void test_restart_resend_collected(void **state)
{
    (void)state;
    outcome same = collected_resend(0), restarted = collected_resend(1);
    assert_int_equal(same.differ, 5);
    assert_int_equal(same.written, 15);
    for (int i = 1; i <= 20; i++)
        assert_int_equal(same.s.v[i], i <= 15 ? '2' : '1');
    assert_int_equal(restarted.differ, same.differ);
    assert_int_equal(restarted.written, same.written);
    assert_memory_equal(restarted.s.v, same.s.v, sizeof(same.s.v));
}

/* The table file of tenant "t"'s events: its path into path (the test
 * expects exactly one) */
static void events_table_file(fx *f, char *path, size_t len)
{
    char cf[ST_NAME_MAX + 3];
    st_dbi_cf_name(cf, sizeof(cf), ST_CF_EVENTS, "t");
    const rocksdb_livefiles_t *lf = rocksdb_livefiles(f->db->rdb);
    int found = 0;
    for (int i = 0; i < rocksdb_livefiles_count(lf); i++) {
        if (strcmp(rocksdb_livefiles_column_family_name(lf, i), cf) != 0)
            continue;
        /* the name is relative to the RocksDB directory, with its '/' */
        snprintf(path, len, "%s/rocksdb%s", f->dir, rocksdb_livefiles_name(lf, i));
        found++;
    }
    rocksdb_livefiles_destroy(lf);
    assert_int_equal(found, 1);
}

/* The tenant's last event cannot be read when the store opens (a data
 * block of its table file fails its checksum: the footer and index read
 * at open are intact): it gets the highest position as open_end, so every
 * event appended is compared with a stored copy (one Get each) and every
 * event a flush drops keeps a deletion marker. Once the block reads again
 * (restored in place here; a transient I/O error in the field), the next
 * maintenance pass reads the end and takes it as open_end: an event above
 * it is written without a Get again, and a resend at or below it is still
 * compared (the stored copies kept). Before, the highest position stayed
 * for the life of the process. */
static void test_open_end_read_again(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    append_json(f, 1, 20, "{\"a\":1}");
    assert_int_equal(st_db_flush(f->db, err, sizeof(err)), WH_OK);
    char path[sizeof(f->dir) + 64];
    events_table_file(f, path, sizeof(path));
    st_db_close(f->db);
    f->db = NULL;

    /* 20 small events: one data block, at the start of the file */
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    char keep[64], junk[sizeof(keep)];
    assert_int_equal(pread(fd, keep, sizeof(keep), 0), sizeof(keep));
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)(keep[i] ^ 0x5a);
    assert_int_equal(pwrite(fd, junk, sizeof(junk), 0), sizeof(junk));
    stdb_fx_open(&f->db, f->dir, &f->o); /* "tenant t: tenant end: ... Corruption" */
    uint64_t l;
    uint32_t q;
    assert_int_not_equal(st_db_tenant_end(f->db, "t", &l, &q, err, sizeof(err)), WH_OK);

    /* an event above every stored one is compared while the end is not
     * known, a maintenance pass that cannot read it changes nothing */
    uint64_t c0 = st_db_resend_checks(f->db);
    append_json(f, 21, 21, "{\"a\":1}");
    assert_int_equal(st_db_resend_checks(f->db), c0 + 1);
    st_db_maintain(f->db);
    append_json(f, 22, 22, "{\"a\":1}");
    assert_int_equal(st_db_resend_checks(f->db), c0 + 2);
    /* the figures say the end is not known, not "end 0, lag 0" */
    st_tenant_stats ts;
    assert_int_equal(st_db_tenant_stats(f->db, &ts, 1), 1);
    assert_int_equal(ts.end_unread, 1);

    /* the block reads again (the same file, the same inode) */
    assert_int_equal(pwrite(fd, keep, sizeof(keep), 0), sizeof(keep));
    close(fd);
    assert_int_equal(st_db_tenant_end(f->db, "t", &l, &q, err, sizeof(err)), WH_OK);
    assert_int_equal(l, 22);
    st_db_maintain(f->db);
    assert_int_equal(st_db_tenant_stats(f->db, &ts, 1), 1);
    assert_int_equal(ts.end_unread, 0);
    assert_int_equal(ts.end_lsn, 22);
    append_json(f, 23, 23, "{\"a\":1}");
    assert_int_equal(st_db_resend_checks(f->db), c0 + 2);
    /* at or below the end: compared, the stored copies kept */
    append_json(f, 1, 23, "{\"a\":2}");
    assert_int_equal(st_db_resend_checks(f->db), c0 + 2 + 23);
    assert_int_equal(st_db_resends_differ(f->db), 23);
    stdb_fx_seen s;
    stdb_fx_read_all(f->db, "t", &s);
    assert_int_equal(s.n, 23);
    for (int i = 1; i <= 23; i++)
        assert_int_equal(s.v[i], '1');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_restart_resend_other_bytes, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_restart_resend_same_bytes, setup, stdb_fx_teardown),
        cmocka_unit_test_setup_teardown(test_restart_resend_overwrite, setup, stdb_fx_teardown),
        cmocka_unit_test(test_restart_resend_collected),
        cmocka_unit_test_setup_teardown(test_open_end_read_again, setup, stdb_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
