/* Unit tests of st_guard, the store's isolation guard (store.isolation_
 * target_pct), on made-up times: a tenant alone is never held back, light
 * or big; another tenant's big appends are, once the light tenant's appends
 * take more than the target with them on, at once and by how much the light
 * ones were over it; the rate climbs back while the light appends keep
 * within the target; nothing is held back once the light tenant or the
 * flood is gone, or the guard is off; a flood's small batches do not make
 * it the protected tenant (two floods are both held back); times seen out
 * of order neither refill the bucket nor let an append slip through; a
 * refund gives back what was charged. That it keeps a light tenant's p99
 * with a real flood is bench/tenants.sh's figure; that the store answers
 * "slow down" for it is test_store_server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../services/store/st_guard.h"

#define BIG (512u << 10)

static int A, B; /* two tenants: their addresses */

/* Tenant t's light appends every 10 ms for ms milliseconds from *now, each
 * taking took us; with big != NULL, tenant big's 512 KiB appends (when
 * admitted) in between. Returns the big appends refused. */
static int run(st_guard *g, uint64_t *now, int ms, const void *t, uint64_t took, const void *big)
{
    int refused = 0;
    for (int i = 0; i < ms / 10; i++) {
        uint32_t retry;
        assert_int_equal(st_guard_admit(g, *now, t, 1, 4096, &retry), 1);
        st_guard_observe(g, *now, t, 1, 4096, took);
        if (big != NULL) {
            if (st_guard_admit(g, *now + 5000, big, 0, BIG, &retry)) {
                st_guard_observe(g, *now + 5000, big, 0, BIG, 3000);
            } else {
                assert_true(retry > 0);
                refused++;
            }
        }
        *now += 10000;
    }
    return refused;
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
    /* one takes 4 ms: B is held back at once, to a quarter (1 ms / 4 ms) of
     * what it appended, 512 KiB every 10 ms */
    uint32_t retry;
    st_guard_observe(&g, now, &A, 1, 4096, 4000);
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
    assert_true(st_guard_admit(&g, now, &B, 0, BIG, &retry) == 0);
    assert_true(retry > 0 && retry <= ST_GUARD_RETRY_MAX_MS);
    /* A's own big appends pass: it is the tenant being protected; B's
     * small batches neither make B the protected tenant nor count */
    st_guard_observe(&g, now, &B, 1, 4096, 50000);
    assert_int_equal(st_guard_admit(&g, now, &A, 0, BIG, &retry), 1);
    assert_int_equal(st_guard_admit(&g, now, &B, 0, BIG, &retry), 0);
    /* back within the target: the rate climbs, B gets appends through */
    int r2 = run(&g, &now, 3000, &A, 600, &B);
    assert_true(atomic_load(&g.rate_gauge) > 4 * low);
    assert_true(300 - r2 >= 3);
    st_guard_destroy(&g);
}

static void test_gone(void **state)
{
    (void)state;
    st_guard g;
    st_guard_init(&g, 200);
    uint64_t now = 1000000;
    uint32_t retry;
    run(&g, &now, 2000, &A, 500, NULL);
    assert_true(run(&g, &now, 1000, &A, 4000, &B) > 0);
    /* B pauses while A goes on: a second later nothing is limited, and B
     * starts again at its own speed */
    run(&g, &now, 1200, &A, 500, NULL);
    assert_int_equal(atomic_load(&g.rate_gauge), 0);
    assert_int_equal(st_guard_admit(&g, now, &B, 0, BIG, &retry), 1);
    /* held back again; then A stops: a second later B goes */
    assert_true(run(&g, &now, 1000, &A, 4000, &B) > 0);
    now += 1100000;
    st_guard_observe(&g, now, &B, 0, BIG, 3000);
    assert_int_equal(st_guard_admit(&g, now, &B, 0, BIG, &retry), 1);
    assert_int_equal(retry, 0);
    assert_int_equal(atomic_load(&g.rate_gauge), 0);
    st_guard_destroy(&g);
}

static int C;

static void test_two_floods(void **state)
{
    (void)state;
    st_guard g;
    st_guard_init(&g, 200);
    uint64_t now = 1000000;
    uint32_t retry;
    run(&g, &now, 2000, &A, 500, NULL);
    assert_true(run(&g, &now, 1000, &A, 4000, &B) > 0);
    /* C floods too, and sends a small batch: it is not the protected one */
    (void)st_guard_admit(&g, now, &C, 0, BIG, &retry); /* C tries: a flood */
    st_guard_observe(&g, now + 1, &C, 1, 4096, 50000);
    int held_b = 0, held_c = 0;
    for (int i = 0; i < 50; i++, now += 10000) {
        st_guard_observe(&g, now, &A, 1, 4096, 4000);
        held_b += !st_guard_admit(&g, now + 2000, &B, 0, BIG, &retry);
        held_c += !st_guard_admit(&g, now + 4000, &C, 0, BIG, &retry);
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
    run(&g, &now, 2000, &A, 500, NULL);
    assert_true(run(&g, &now, 1000, &A, 4000, &B) > 0);
    assert_int_equal(atomic_load(&g.rate_gauge), ST_GUARD_MIN_RATE);
    /* an empty bucket (as when the limiting began): one append goes, and
     * its debt holds the next back */
    st_guard_observe(&g, now, &A, 1, 4096, 4000);
    g.tokens = 0;
    g.tok_us = now;
    assert_int_equal(st_guard_admit(&g, now, &B, 0, 4096, &retry), 1);
    assert_int_equal(st_guard_admit(&g, now, &B, 0, 4096, &retry), 0);
    /* a time from before (another thread read its clock first): no refill */
    assert_int_equal(st_guard_admit(&g, now - 50000, &B, 0, 4096, &retry), 0);
    assert_int_equal(st_guard_admit(&g, now, &B, 0, 4096, &retry), 0);
    /* the one admitted was refused by the budget after all: given back */
    st_guard_refund(&g, 4096);
    assert_int_equal(st_guard_admit(&g, now, &B, 0, 4096, &retry), 1);
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
    run(&g, &now, 2000, &A, 500, NULL);
    assert_true(run(&g, &now, 1000, &A, 5000, &B) > 0);
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
        cmocka_unit_test(test_gone),
        cmocka_unit_test(test_two_floods),
        cmocka_unit_test(test_clock_order_refund),
        cmocka_unit_test(test_no_quiet_time),
        cmocka_unit_test(test_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
