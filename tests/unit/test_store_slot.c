/* st_slot against a real RocksDB: the track position (the slowest counted
 * consumer; a consumer at the end counts as the durable LSN), force_resync
 * by lag and by a stalled consumer (marked NEEDS_SNAPSHOT, no longer
 * counted, cleared by a set offset), the stall observed kept across a
 * reopen of the store (an injected monotonic clock; the store's downtime
 * never counts), when and why a consumer was marked (the N note, deleted by
 * SetOffset and DropOffset with the stall timer), a mark only at the
 * offset it was decided on, and the zone with its time to live and its
 * changes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../../services/store/st_slot.h"
#include "stdb_fixture.h"

/* The machine's wall clock as this process sees it: clock_gettime is
 * replaced here (the store's code and its libraries call this one), and
 * CLOCK_REALTIME is moved by wall_step_s (a step of the clock, as NTP makes
 * one); the other clocks are the real ones. */
static _Atomic long wall_step_s;

int clock_gettime(clockid_t id, struct timespec *ts)
{
    long rc = syscall(SYS_clock_gettime, id, ts);
    if (rc == 0 && id == CLOCK_REALTIME)
        ts->tv_sec += wall_step_s;
    return (int)rc;
}

typedef struct fx {
    char dir[64];
    st_db *db;
    st_slot *slot;
    uint64_t clock; /* the stall timers' monotonic clock, ms */
} fx;

static uint64_t fx_clock(void *arg)
{
    return ((fx *)arg)->clock;
}

static const st_db_opts OPTS = {.offset_sync_wait_us = 2000, .wal_zero_ahead_bytes = 1 << 20};

static void fx_open(fx *f)
{
    char err[WH_ERRLEN];
    stdb_fx_open(&f->db, f->dir, &OPTS);
    assert_int_equal(st_slot_new(&f->slot, f->db, err, sizeof(err)), WH_OK);
    st_slot_set_clock(f->slot, fx_clock, f);
}

/* a restart of the store: everything in memory is gone */
static void fx_reopen(fx *f)
{
    st_slot_free(f->slot);
    st_db_close(f->db);
    fx_open(f);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    stdb_fx_mkdtemp(f->dir, sizeof(f->dir), "test_store_slot");
    f->clock = 1700000000000ull;
    fx_open(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    st_slot_free(f->slot);
    stdb_fx_remove(f->db, f->dir);
    free(f);
    return 0;
}

/* three transactions: commit LSNs 0x100, 0x200, 0x300, ends 0x150.. */
static void fill(st_db *db)
{
    char err[WH_ERRLEN];
    uint64_t d;
    for (uint64_t l = 0x100; l <= 0x300; l += 0x100) {
        st_event e = {l, 0, 1, "{}", 2};
        if (st_db_append(db, "t", &e, 1, l + 0x50, &d, err, sizeof(err)) != WH_OK)
            fail_msg("append: %s", err);
    }
}

static void commit(st_db *db, const char *c, uint64_t lsn)
{
    char err[WH_ERRLEN];
    uint64_t l;
    uint32_t s;
    if (st_db_commit(db, "t", c, lsn, 0, &l, &s, err, sizeof(err)) != WH_OK)
        fail_msg("commit: %s", err);
}

static int last_zone_changed;

static Walhook__SlotReply report(fx *f, uint64_t wal, uint32_t zone, uint64_t lag_cap,
                                 uint64_t after_ms, char *slowest)
{
    char err[WH_ERRLEN];
    Walhook__SlotReport r = WALHOOK__SLOT_REPORT__INIT;
    r.tenant = "t";
    r.wal_lsn = wal;
    r.zone = zone;
    r.resync_lag_bytes = lag_cap;
    r.resync_after_ms = after_ms;
    r.zone_ttl_ms = 1000;
    Walhook__SlotReply out = WALHOOK__SLOT_REPLY__INIT;
    if (st_slot_report(f->slot, &r, &out, slowest, 64, &last_zone_changed, err, sizeof(err)) !=
        WH_OK)
        fail_msg("report: %s", err);
    return out;
}

static void test_track(void **state)
{
    fx *f = *state;
    char slowest[64];
    fill(f->db);
    /* no consumer: the durable LSN, caught up */
    Walhook__SlotReply r = report(f, 0x400, 0, 0, 0, slowest);
    assert_int_equal(r.track_lsn, 0x350);
    assert_true(r.caught_up);
    assert_int_equal(r.targets, 0);
    commit(f->db, "fast", 0x300);
    commit(f->db, "slow", 0x100);
    r = report(f, 0x400, 0, 0, 0, slowest);
    assert_int_equal(r.track_lsn, 0x100);
    assert_false(r.caught_up);
    assert_int_equal(r.targets, 2);
    assert_string_equal(slowest, "slow");
    commit(f->db, "slow", 0x200);
    r = report(f, 0x400, 0, 0, 0, slowest);
    assert_int_equal(r.track_lsn, 0x200);
    commit(f->db, "slow", 0x300);
    r = report(f, 0x400, 0, 0, 0, slowest);
    assert_int_equal(r.track_lsn, 0x350); /* both at the end: the durable LSN */
    assert_true(r.caught_up);
    assert_int_equal(r.end_lsn, 0x300); /* the end it was decided on */
    assert_int_equal(r.marked, 0);
}

static void test_resync_lag(void **state)
{
    fx *f = *state;
    char slowest[64], err[WH_ERRLEN];
    fill(f->db);
    commit(f->db, "a", 0x300);
    commit(f->db, "b", 0x100);
    /* a new consumer at (0,0) is behind by what is stored (from 0x100),
     * not by the whole WAL */
    st_offset no;
    assert_int_equal(st_db_register(f->db, "t", "new", &no, err, sizeof(err)), WH_OK);
    /* b is 0x300 behind the source's WAL: over a cap of 0x2ff */
    Walhook__SlotReply r = report(f, 0x400, 0, 0x300, 0, slowest);
    assert_int_equal(r.marked, 0); /* not over 0x300 */
    assert_int_equal(r.targets, 3);
    assert_int_equal(r.track_lsn, 0);
    r = report(f, 0x400, 0, 0x2ff, 0, slowest);
    assert_int_equal(r.marked, 2);
    assert_true(st_db_needs_snapshot(f->db, "t", "new"));
    assert_true(st_db_needs_snapshot(f->db, "t", "b"));
    assert_false(st_db_needs_snapshot(f->db, "t", "a"));
    assert_int_equal(r.track_lsn, 0x350); /* b no longer counts */
    assert_true(r.caught_up);
    assert_int_equal(r.targets, 1);
    r = report(f, 0x400, 0, 0x2ff, 0, slowest);
    assert_int_equal(r.marked, 0); /* marked once */
    /* the GC watermark no longer waits for b */
    uint64_t wl;
    uint32_t ws;
    st_db_watermark(f->db, "t", &wl, &ws);
    assert_int_equal(wl, 0x300);
    /* a set offset (a snapshot, an operator) resumes it */
    assert_int_equal(st_db_set_offset(f->db, "t", "b", 0x300, 0, NULL, NULL, err, sizeof(err)),
                     WH_OK);
    assert_false(st_db_needs_snapshot(f->db, "t", "b"));
    r = report(f, 0x400, 0, 0x2ff, 0, slowest);
    assert_int_equal(r.targets, 2);
}

static void test_resync_stalled(void **state)
{
    fx *f = *state;
    char slowest[64];
    fill(f->db);
    commit(f->db, "dead", 0x100);
    commit(f->db, "slow", 0x100);
    commit(f->db, "idle", 0x300); /* nothing to deliver: never stalled */
    Walhook__SlotReply r = report(f, 0x400, 0, 0, 1000, slowest); /* the timers start */
    assert_int_equal(r.marked, 0);
    f->clock += 999;
    r = report(f, 0x400, 0, 0, 1000, slowest);
    assert_int_equal(r.marked, 0); /* not yet */
    f->clock += 1;
    commit(f->db, "slow", 0x200); /* progress since the last report: its timer starts again */
    r = report(f, 0x400, 0, 0, 1000, slowest);
    assert_int_equal(r.marked, 1);
    assert_true(st_db_needs_snapshot(f->db, "t", "dead"));
    assert_false(st_db_needs_snapshot(f->db, "t", "slow"));
    assert_false(st_db_needs_snapshot(f->db, "t", "idle"));
    assert_int_equal(r.track_lsn, 0x200);
    assert_string_equal(slowest, "slow");
}

typedef struct ns_seen {
    int n;
    char consumer[64];
    int64_t since_ms;
    char reason[64];
} ns_seen;

static void ns_cb(void *arg, const char *tenant, const char *consumer, int64_t since_ms,
                  const char *reason)
{
    ns_seen *s = arg;
    (void)tenant;
    s->n++;
    snprintf(s->consumer, sizeof(s->consumer), "%s", consumer);
    s->since_ms = since_ms;
    snprintf(s->reason, sizeof(s->reason), "%s", reason);
}

/* disconnected_resync_after across store restarts: the stall observed
 * before a restart is kept and goes on from the store's open, the store's
 * own downtime is not counted (however far its monotonic clock jumped, or
 * went back after a reboot), the mark comes after a full limit of observed
 * stall, and the mark's reason and time survive a restart too */
static void test_resync_stalled_restart(void **state)
{
    fx *f = *state;
    char slowest[64];
    uint64_t elapsed, lsn;
    uint32_t seq;
    char err[WH_ERRLEN];
    fill(f->db);
    commit(f->db, "dead", 0x100);
    commit(f->db, "busy", 0x100);
    uint64_t t0 = f->clock;
    Walhook__SlotReply r = report(f, 0x400, 0, 0, 10000, slowest); /* the timers start at t0 */
    assert_int_equal(r.marked, 0);
    /* seen stalled at one report only: nothing stored yet */
    assert_int_equal(st_db_stall_get(f->db, "t", "dead", &elapsed, &lsn, &seq, err, sizeof(err)),
                     0);
    f->clock = t0 + 2000;
    commit(f->db, "busy", 0x200); /* busy delivers between reports: never stored */
    r = report(f, 0x400, 0, 0, 10000, slowest);
    assert_int_equal(r.marked, 0);
    assert_int_equal(st_db_stall_get(f->db, "t", "dead", &elapsed, &lsn, &seq, err, sizeof(err)),
                     1);
    assert_true(elapsed == 2000); /* the stall observed, not a time of day */
    assert_true(lsn == 0x100);
    assert_int_equal(st_db_stall_get(f->db, "t", "busy", &elapsed, &lsn, &seq, err, sizeof(err)),
                     0);
    f->clock = t0 + 3000;
    r = report(f, 0x400, 0, 0, 10000, slowest); /* kept up to date at every report */
    assert_int_equal(st_db_stall_get(f->db, "t", "dead", &elapsed, &lsn, &seq, err, sizeof(err)),
                     1);
    assert_true(elapsed == 3000);

    /* the store is down for a day (its clock jumped far past the limit):
     * the downtime alone does not mark, the stall goes on from 3 s */
    f->clock += 86400000ull;
    fx_reopen(f);
    r = report(f, 0x400, 0, 0, 10000, slowest);
    assert_int_equal(r.marked, 0);
    assert_false(st_db_needs_snapshot(f->db, "t", "dead"));
    f->clock += 4000;
    r = report(f, 0x400, 0, 0, 10000, slowest);
    assert_int_equal(r.marked, 0); /* 7 s observed */
    /* a reboot: the monotonic clock starts again far lower */
    f->clock = 5000;
    fx_reopen(f);
    f->clock += 2999;
    r = report(f, 0x400, 0, 0, 10000, slowest);
    assert_int_equal(r.marked, 0); /* 9.999 s observed, the time since the open included */
    assert_false(st_db_needs_snapshot(f->db, "t", "dead"));
    f->clock += 1;
    r = report(f, 0x400, 0, 0, 10000, slowest);
    assert_int_equal(r.marked, 1); /* 10 s observed over three runs of the store */
    assert_true(st_db_needs_snapshot(f->db, "t", "dead"));
    assert_false(st_db_needs_snapshot(f->db, "t", "busy"));
    ns_seen ns = {0};
    st_db_needs_snapshot_each(f->db, ns_cb, &ns);
    assert_int_equal(ns.n, 1);
    assert_string_equal(ns.consumer, "dead");
    assert_string_equal(ns.reason, "force_resync_disconnected");
    int64_t marked_at = ns.since_ms;
    assert_true(marked_at > 0);
    /* a marked consumer's timer is dropped with the mark */
    assert_int_equal(st_db_stall_get(f->db, "t", "dead", &elapsed, &lsn, &seq, err, sizeof(err)),
                     0);

    fx_reopen(f);
    memset(&ns, 0, sizeof(ns));
    st_db_needs_snapshot_each(f->db, ns_cb, &ns);
    assert_int_equal(ns.n, 1);
    assert_string_equal(ns.reason, "force_resync_disconnected");
    assert_true(ns.since_ms == marked_at);

    /* a set offset clears the mark; a later mark by lag says so */
    assert_int_equal(st_db_set_offset(f->db, "t", "dead", 0x100, 0, NULL, NULL, err, sizeof(err)),
                     WH_OK);
    memset(&ns, 0, sizeof(ns));
    st_db_needs_snapshot_each(f->db, ns_cb, &ns);
    assert_int_equal(ns.n, 0);
    r = report(f, 0x400, 0, 0x2ff, 0, slowest);
    assert_int_equal(r.marked, 1);
    st_db_needs_snapshot_each(f->db, ns_cb, &ns);
    assert_int_equal(ns.n, 1);
    assert_string_equal(ns.reason, "force_resync_lag");
}

/* the real clocks (no injected one): a step of the wall clock by a day
 * marks nothing, restored or not */
static void test_resync_stalled_wall_step(void **state)
{
    fx *f = *state;
    char slowest[64];
    st_slot_set_clock(f->slot, NULL, NULL);
    fill(f->db);
    commit(f->db, "c", 0x100);
    int64_t before = wh_wallclock_us();
    Walhook__SlotReply r = report(f, 0x400, 0, 0, 60000, slowest);
    usleep(20 * 1000);
    r = report(f, 0x400, 0, 0, 60000, slowest); /* stalled, stored */
    wall_step_s = 86400;
    assert_true(wh_wallclock_us() - before >= 86400ll * 1000000); /* the step is seen */
    usleep(20 * 1000);
    r = report(f, 0x400, 0, 0, 60000, slowest);
    assert_int_equal(r.marked, 0);
    st_slot_free(f->slot);
    st_db_close(f->db);
    wall_step_s = 2 * 86400;
    char err[WH_ERRLEN];
    stdb_fx_open(&f->db, f->dir, &OPTS);
    assert_int_equal(st_slot_new(&f->slot, f->db, err, sizeof(err)), WH_OK);
    r = report(f, 0x400, 0, 0, 60000, slowest);
    assert_int_equal(r.marked, 0);
    assert_false(st_db_needs_snapshot(f->db, "t", "c"));
    wall_step_s = 0;
}

/* a stalled consumer whose offset moved while the store was down starts
 * its timer again */
static void test_resync_stalled_moved_while_down(void **state)
{
    fx *f = *state;
    char slowest[64];
    fill(f->db);
    commit(f->db, "c", 0x100);
    report(f, 0x400, 0, 0, 10000, slowest);
    f->clock += 9000;
    report(f, 0x400, 0, 0, 10000, slowest); /* 9 s stored */
    fx_reopen(f);
    commit(f->db, "c", 0x200);
    f->clock += 5000;
    Walhook__SlotReply r = report(f, 0x400, 0, 0, 10000, slowest);
    assert_int_equal(r.marked, 0);
    f->clock += 9999;
    r = report(f, 0x400, 0, 0, 10000, slowest);
    assert_int_equal(r.marked, 0);
    f->clock += 1;
    r = report(f, 0x400, 0, 0, 10000, slowest);
    assert_int_equal(r.marked, 1);
}

/* SetOffset deletes the N note; DropOffset the N note and the stall
 * timer: a new target of the same name inherits neither */
static void test_keys_cleaned(void **state)
{
    fx *f = *state;
    char slowest[64], err[WH_ERRLEN];
    int64_t since;
    int kind;
    uint64_t elapsed, lsn;
    uint32_t seq;
    fill(f->db);
    commit(f->db, "x", 0x100);
    commit(f->db, "y", 0x100);
    Walhook__SlotReply r = report(f, 0x400, 0, 0, 10000, slowest);
    f->clock += 1000;
    r = report(f, 0x400, 0, 0, 10000, slowest);
    assert_int_equal(r.marked, 0);
    assert_int_equal(st_db_stall_get(f->db, "t", "y", &elapsed, &lsn, &seq, err, sizeof(err)), 1);
    assert_int_equal(st_db_mark_needs_snapshot(f->db, "t", "x", 0x100, 0, ST_NS_LAG, "test"), 1);
    assert_int_equal(st_db_mark_needs_snapshot(f->db, "t", "y", 0x100, 0, ST_NS_LAG, "test"), 1);
    assert_int_equal(st_db_ns_note_get(f->db, "t", "x", &since, &kind, err, sizeof(err)), 1);
    assert_int_equal(kind, ST_NS_LAG);
    assert_int_equal(st_db_ns_note_get(f->db, "t", "y", &since, &kind, err, sizeof(err)), 1);
    assert_int_equal(st_db_stall_get(f->db, "t", "y", &elapsed, &lsn, &seq, err, sizeof(err)), 1);
    assert_int_equal(st_db_set_offset(f->db, "t", "x", 0x300, 0, NULL, NULL, err, sizeof(err)),
                     WH_OK);
    assert_int_equal(st_db_ns_note_get(f->db, "t", "x", &since, &kind, err, sizeof(err)), 0);
    assert_int_equal(st_db_drop_offset(f->db, "t", "y", NULL, err, sizeof(err)), WH_OK);
    assert_int_equal(st_db_ns_note_get(f->db, "t", "y", &since, &kind, err, sizeof(err)), 0);
    assert_int_equal(st_db_stall_get(f->db, "t", "y", &elapsed, &lsn, &seq, err, sizeof(err)), 0);
    /* a new y at the old position after a restart starts from nothing */
    fx_reopen(f);
    st_db_undrop(f->db, "t", "y");
    commit(f->db, "y", 0x100);
    f->clock += 100000;
    r = report(f, 0x400, 0, 0, 10000, slowest);
    assert_int_equal(r.marked, 0);
    assert_false(st_db_needs_snapshot(f->db, "t", "y"));
}

/* An automatic resync's note (end and backfill id) is kept with the mark
 * across a restart, and goes with the mark when the offset is set; an
 * unmarked consumer gets none */
static void test_resync_note(void **state)
{
    fx *f = *state;
    char err[WH_ERRLEN];
    uint64_t lsn = 0, bf = 0;
    uint32_t seq = 0;
    int64_t since;
    int kind;
    fill(f->db);
    commit(f->db, "x", 0x100);
    assert_int_equal(st_db_resync_note(f->db, "t", "x", 0x300, 2, 7, err, sizeof(err)), 0);
    assert_int_equal(st_db_resync_noted(f->db, "t", "x", &lsn, &seq, &bf), 0);
    assert_int_equal(st_db_mark_needs_snapshot(f->db, "t", "x", 0x100, 0, ST_NS_RETENTION, "test"),
                     1);
    assert_int_equal(st_db_resync_noted(f->db, "t", "x", &lsn, &seq, &bf), 0);
    assert_int_equal(st_db_resync_note(f->db, "t", "x", 0x300, 2, 7, err, sizeof(err)), 1);
    fx_reopen(f);
    assert_true(st_db_needs_snapshot(f->db, "t", "x"));
    assert_int_equal(st_db_resync_noted(f->db, "t", "x", &lsn, &seq, &bf), 1);
    assert_int_equal(lsn, 0x300);
    assert_int_equal(seq, 2);
    assert_int_equal(bf, 7);
    assert_int_equal(st_db_ns_note_get(f->db, "t", "x", &since, &kind, err, sizeof(err)), 1);
    assert_int_equal(kind, ST_NS_RETENTION);
    assert_int_equal(
        st_db_resync_offset(f->db, "t", "x", lsn, seq, &(st_offset){0}, err, sizeof(err)), 1);
    assert_false(st_db_needs_snapshot(f->db, "t", "x"));
    assert_int_equal(st_db_resync_noted(f->db, "t", "x", &lsn, &seq, &bf), 0);
    fx_reopen(f);
    assert_int_equal(st_db_resync_noted(f->db, "t", "x", &lsn, &seq, &bf), 0);
    assert_int_equal(st_db_ns_note_get(f->db, "t", "x", &since, &kind, err, sizeof(err)), 0);
}

/* force_resync marks at the offset it was decided on only: a commit in
 * between wins */
static void test_mark_checks_offset(void **state)
{
    fx *f = *state;
    fill(f->db);
    commit(f->db, "z", 0x100);
    commit(f->db, "z", 0x200);
    assert_int_equal(st_db_mark_needs_snapshot(f->db, "t", "z", 0x100, 0, ST_NS_DISCONNECTED, "t"),
                     0);
    assert_false(st_db_needs_snapshot(f->db, "t", "z"));
    assert_int_equal(st_db_mark_needs_snapshot(f->db, "t", "z", 0x200, 0, ST_NS_DISCONNECTED, "t"),
                     1);
    assert_true(st_db_needs_snapshot(f->db, "t", "z"));
}

/* zone_changed: only when the zone Reads answer changes (a zone note to
 * the dispatchers goes with it) */
static void test_zone_changed(void **state)
{
    fx *f = *state;
    char slowest[64];
    report(f, 0x400, 0, 0, 0, slowest);
    assert_false(last_zone_changed); /* green, as before any report */
    report(f, 0x400, 1, 0, 0, slowest);
    assert_true(last_zone_changed);
    report(f, 0x400, 1, 0, 0, slowest);
    assert_false(last_zone_changed);
    report(f, 0x400, 2, 0, 0, slowest);
    assert_true(last_zone_changed);
    report(f, 0x400, 9, 0, 0, slowest); /* out of range: red, no change */
    assert_false(last_zone_changed);
    report(f, 0x400, 0, 0, 0, slowest);
    assert_true(last_zone_changed);
    assert_int_equal(st_slot_zone(f->slot, "t"), 0);
}

static void test_zone(void **state)
{
    fx *f = *state;
    char slowest[64];
    assert_int_equal(st_slot_zone(f->slot, "t"), 0);
    report(f, 0x400, 2, 0, 0, slowest);
    assert_int_equal(st_slot_zone(f->slot, "t"), 2);
    assert_int_equal(st_slot_zone(f->slot, "other"), 0);
    usleep(1100 * 1000); /* past zone_ttl_ms (1000): no current report */
    assert_int_equal(st_slot_zone(f->slot, "t"), 0);
    report(f, 0x400, 7, 0, 0, slowest); /* out of range: red */
    assert_int_equal(st_slot_zone(f->slot, "t"), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_track, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resync_lag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resync_stalled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resync_stalled_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resync_stalled_moved_while_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resync_stalled_wall_step, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_cleaned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mark_checks_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resync_note, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zone_changed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
