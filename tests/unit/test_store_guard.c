/* Unit tests of st_guard, the store's isolation guard (store.isolation_
 * target_pct), on made-up times: a tenant alone is never held back, light
 * or big, and stays the protected one; another tenant's big appends are
 * held back once the light tenant's appends take more than the target (and
 * at least 200 us more than the quiet time) with them on, at once and by
 * how much the light ones were over it, from what the floods appended
 * (nothing known yet: not yet); light appends queued behind their own
 * tenant's big one are not measured; the rate climbs back while the light
 * appends keep within the target; nothing is held back once the light
 * tenant or the flood is gone, or the guard is off; a flood's small
 * batches do not make it the protected tenant and two floods are both
 * held back; times seen out of order neither refill the bucket nor let an
 * append slip through; only what was charged is refunded. That it keeps a
 * light tenant's p99 with a real flood is bench/tenants.sh's figure; that
 * the store answers "slow down" for it is test_store_server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../services/store/st_guard.h"

#define BIG (512u << 10)

static int A, B, C; /* tenants: their addresses */

static int admit(st_guard *g, uint64_t now, const void *t, uint64_t bytes)
{
    uint32_t retry;
    uint64_t charged;
    int ok = st_guard_admit(g, now, t, bytes, &retry, &charged);
    if (ok) {
        assert_int_equal(retry, 0);
    } else {
        assert_true(retry > 0 && retry <= ST_GUARD_RETRY_MAX_MS);
        assert_int_equal(charged, 0);
    }
    return ok;
}

/* Tenant t's light appends every 10 ms for ms milliseconds from *now, each
 * taking took us; with big != NULL, tenant big's 512 KiB appends (when
 * admitted) in between. Returns the big appends refused. */
static int run(st_guard *g, uint64_t *now, int ms, const void *t, uint64_t took, const void *big)
{
    int refused = 0;
    for (int i = 0; i < ms / 10; i++) {
        st_guard_observe(g, *now, t, ST_GUARD_LIGHT, 4096, took);
        if (big != NULL) {
            if (admit(g, *now + 5000, big, BIG))
                st_guard_observe(g, *now + 5000, big, ST_GUARD_BIG, BIG, 3000);
            else
                refused++;
        }
        *now += 10000;
    }
    return refused;
}

/* A's quiet time (500 us), then B floods while A's appends take 4 ms: B
 * held back down to the floor. */
static void held(st_guard *g, uint64_t *now)
{
    run(g, now, 2000, &A, 500, NULL);
    assert_true(run(g, now, 1000, &A, 4000, &B) > 50);
    assert_int_equal(atomic_load(&g->rate_gauge), ST_GUARD_MIN_RATE);
}

static void test_alone_never_held(void **state)
{
    (void)state;
    st_guard g;
    st_guard_init(&g, 200);
    uint64_t now = 1000000;
    run(&g, &now, 2000, &A, 500, NULL);
    /* its own big appends between slow light ones: never held back */
    assert_int_equal(run(&g, &now, 2000, &A, 5000, &A), 0);
    assert_int_equal(atomic_load(&g.rate_gauge), 0);
    assert_int_equal(atomic_load(&g.slowed), 0);
    /* and it is still the protected one, not a flood: when B floods, B is
     * held back for it (its quiet time is now about 5 ms) */
    assert_true(run(&g, &now, 1000, &A, 20000, &B) > 0);
    st_guard_destroy(&g);
}

static void test_flood_held_for_light(void **state)
{
    (void)state;
    st_guard g;
    st_guard_init(&g, 200);
    uint64_t now = 1000000;
    run(&g, &now, 2000, &A, 500, NULL); /* A alone: its quiet time, 500 us */
    assert_int_equal(atomic_load(&g.quiet_gauge), 500);
    /* B floods and A's appends take 900 us (within 200 %): B goes as it likes */
    assert_int_equal(run(&g, &now, 1000, &A, 900, &B), 0);
    assert_int_equal(atomic_load(&g.rate_gauge), 0);
    /* one queued behind A's own big append takes 4 ms: not B's doing */
    st_guard_observe(&g, now, &A, ST_GUARD_LIGHT_BEHIND, 4096, 4000);
    assert_int_equal(atomic_load(&g.rate_gauge), 0);
    /* one takes 4 ms: B is held back at once, to a quarter (1 ms / 4 ms) of
     * what it appended, 512 KiB every 10 ms */
    st_guard_observe(&g, now, &A, ST_GUARD_LIGHT, 4096, 4000);
    double used = (double)BIG * 100;
    int64_t first = atomic_load(&g.rate_gauge);
    assert_true(first > used / 4 * 0.9 && first < used / 4 * 1.1);
    /* they go on taking 4 ms: down a window at a time, to the floor */
    now += 10000;
    int refused = run(&g, &now, 1000, &A, 4000, &B);
    assert_true(refused > 50);
    int64_t low = atomic_load(&g.rate_gauge);
    assert_int_equal(low, ST_GUARD_MIN_RATE);
    assert_int_equal(atomic_load(&g.slowed), (uint64_t)refused);
    assert_int_equal(admit(&g, now, &B, BIG), 0);
    /* A's own big appends pass: it is the tenant being protected; B's
     * small batches neither make B the protected tenant nor count */
    st_guard_observe(&g, now, &B, ST_GUARD_LIGHT, 4096, 50000);
    assert_ptr_equal(g.light_t, &A);
    assert_int_equal(admit(&g, now, &A, BIG), 1);
    assert_int_equal(admit(&g, now, &B, BIG), 0);
    /* back within the target: the rate climbs, B gets appends through */
    int r2 = run(&g, &now, 3000, &A, 600, &B);
    assert_true(atomic_load(&g.rate_gauge) > 4 * low);
    assert_true(300 - r2 >= 3);
    st_guard_destroy(&g);
}

/* The first cut goes from what the floods appended: this window's rate
 * once it is 10 ms old (the last window had none), and nothing known, not
 * yet. */
static void test_first_cut(void **state)
{
    (void)state;
    st_guard g;
    st_guard_init(&g, 200);
    uint64_t now = 1000000;
    run(&g, &now, 2000, &A, 500, NULL);
    now = g.win_us + ST_GUARD_WINDOW_US; /* a window begins */
    st_guard_observe(&g, now, &A, ST_GUARD_LIGHT, 4096, 500);
    /* B tries (a flood now) but nothing of it was appended: no cut yet */
    assert_int_equal(admit(&g, now + 1000, &B, BIG), 1);
    st_guard_observe(&g, now + 2000, &A, ST_GUARD_LIGHT, 4096, 4000);
    assert_int_equal(atomic_load(&g.rate_gauge), 0);
    /* 1 MiB appended in this window's first 20 ms: 50 MiB/s, cut to a quarter */
    st_guard_observe(&g, now + 10000, &B, ST_GUARD_BIG, 1 << 20, 3000);
    st_guard_observe(&g, now + 20000, &A, ST_GUARD_LIGHT, 4096, 4000);
    double want = (double)(1 << 20) / 0.02 / 4;
    int64_t r = atomic_load(&g.rate_gauge);
    assert_true(r > want * 0.9 && r < want * 1.1);
    st_guard_destroy(&g);
}

/* The target is at least 200 us over the quiet time: with a quiet time of
 * 100 us and 150 %, 250 us is within it and 350 us is not. */
static void test_slack(void **state)
{
    (void)state;
    st_guard g;
    st_guard_init(&g, 150);
    uint64_t now = 1000000;
    run(&g, &now, 2000, &A, 100, NULL);
    assert_int_equal(run(&g, &now, 1000, &A, 250, &B), 0);
    assert_int_equal(atomic_load(&g.rate_gauge), 0);
    assert_true(run(&g, &now, 1000, &A, 350, &B) > 0);
    st_guard_destroy(&g);
}

static void test_gone(void **state)
{
    (void)state;
    st_guard g;
    st_guard_init(&g, 200);
    uint64_t now = 1000000;
    held(&g, &now);
    /* B pauses while A goes on: a second later nothing is limited, and B
     * starts again at its own speed */
    run(&g, &now, 1200, &A, 500, NULL);
    assert_int_equal(atomic_load(&g.rate_gauge), 0);
    assert_int_equal(admit(&g, now, &B, BIG), 1);
    /* held back again; then A stops: a second later B goes */
    assert_true(run(&g, &now, 1000, &A, 4000, &B) > 0);
    now += 1100000;
    st_guard_observe(&g, now, &B, ST_GUARD_BIG, BIG, 3000);
    assert_int_equal(admit(&g, now, &B, BIG), 1);
    assert_int_equal(atomic_load(&g.rate_gauge), 0);
    st_guard_destroy(&g);
}

/* A flood that waits out the longest retry delay (and 100 ms for its round
 * trip) is still a flood when it comes back: the limiting does not lapse. */
static void test_retry_within_memory(void **state)
{
    (void)state;
    st_guard g;
    st_guard_init(&g, 200);
    uint64_t now = 1000000;
    held(&g, &now);
    for (int i = 0; i < 30; i++) { /* B tries 100 ms after each longest delay */
        uint64_t next = now + (uint64_t)ST_GUARD_RETRY_MAX_MS * 1000 + 100000;
        for (; now < next; now += 10000)
            st_guard_observe(&g, now, &A, ST_GUARD_LIGHT, 4096, 4000);
        if (admit(&g, now, &B, BIG))
            st_guard_observe(&g, now, &B, ST_GUARD_BIG, BIG, 3000);
        assert_true(atomic_load(&g.rate_gauge) > 0);
    }
    st_guard_destroy(&g);
}

static void test_two_floods(void **state)
{
    (void)state;
    st_guard g;
    st_guard_init(&g, 200);
    uint64_t now = 1000000;
    held(&g, &now);
    /* C floods too; B tries again; then C sends a small batch: C is not
     * made the protected one (both are remembered as floods) */
    (void)admit(&g, now, &C, BIG);
    (void)admit(&g, now + 1, &B, BIG);
    st_guard_observe(&g, now + 2, &C, ST_GUARD_LIGHT, 4096, 50000);
    assert_ptr_equal(g.light_t, &A);
    int held_b = 0, held_c = 0;
    for (int i = 0; i < 50; i++, now += 10000) {
        st_guard_observe(&g, now + 3, &A, ST_GUARD_LIGHT, 4096, 4000);
        held_b += !admit(&g, now + 2000, &B, BIG);
        held_c += !admit(&g, now + 4000, &C, BIG);
    }
    assert_true(held_b > 40);
    assert_true(held_c > 40);
    st_guard_destroy(&g);
}

static void test_clock_order_refund(void **state)
{
    (void)state;
    st_guard g;
    st_guard_init(&g, 200);
    uint64_t now = 1000000;
    uint32_t retry;
    uint64_t charged;
    held(&g, &now);
    /* an empty bucket (as when the limiting began): one append goes and
     * is charged, and its debt holds the next back */
    st_guard_observe(&g, now, &A, ST_GUARD_LIGHT, 4096, 4000);
    g.bucket.tokens = 0;
    g.bucket.last_us = now;
    assert_int_equal(st_guard_admit(&g, now, &B, 4096, &retry, &charged), 1);
    assert_int_equal(charged, 4096);
    assert_int_equal(admit(&g, now, &B, 4096), 0);
    /* a time from before (another thread read its clock first): no refill */
    assert_int_equal(admit(&g, now - 50000, &B, 4096), 0);
    assert_int_equal(admit(&g, now, &B, 4096), 0);
    /* the protected tenant's big append is not charged: nothing to give back */
    assert_int_equal(st_guard_admit(&g, now, &A, BIG, &retry, &charged), 1);
    assert_int_equal(charged, 0);
    st_guard_refund(&g, charged);
    assert_int_equal(admit(&g, now, &B, 4096), 0);
    /* B's one admitted was refused by the budget after all: given back */
    st_guard_refund(&g, 4096);
    assert_int_equal(admit(&g, now, &B, 4096), 1);
    st_guard_destroy(&g);
}

static void test_no_quiet_time(void **state)
{
    (void)state;
    st_guard g;
    st_guard_init(&g, 200);
    uint64_t now = 1000000;
    /* both from the start: the lowest window's time stands in for the quiet one */
    assert_int_equal(run(&g, &now, 1000, &A, 600, &B), 0);
    assert_true(run(&g, &now, 1000, &A, 5000, &B) > 0);
    assert_true(atomic_load(&g.rate_gauge) > 0);
    st_guard_destroy(&g);
}

static void test_off(void **state)
{
    (void)state;
    st_guard g;
    st_guard_init(&g, 200);
    uint64_t now = 1000000;
    held(&g, &now);
    st_guard_set_pct(&g, 0); /* at runtime: off at once */
    assert_int_equal(run(&g, &now, 2000, &A, 5000, &B), 0);
    assert_int_equal(atomic_load(&g.rate_gauge), 0);
    st_guard_destroy(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alone_never_held),
        cmocka_unit_test(test_flood_held_for_light),
        cmocka_unit_test(test_first_cut),
        cmocka_unit_test(test_slack),
        cmocka_unit_test(test_gone),
        cmocka_unit_test(test_retry_within_memory),
        cmocka_unit_test(test_two_floods),
        cmocka_unit_test(test_clock_order_refund),
        cmocka_unit_test(test_no_quiet_time),
        cmocka_unit_test(test_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
