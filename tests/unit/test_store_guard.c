/* Unit tests of st_guard, the store's isolation guard (store.isolation_
 * target_pct), on made-up times: a tenant alone is never held back, light
 * or big; another tenant's big appends are, once the light tenant's appends
 * take more than the target with them on, and by how much the light ones
 * were over it; the rate climbs back while the light appends keep within
 * the target, and nothing is held back once the light tenant is gone or
 * the guard is off. That it keeps a light tenant's p99 with a real flood is
 * bench/tenants.sh's figure; that the store answers "slow down" for it is
 * test_store_server. */
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
    /* they take 4 ms: B held back at once, by the overshoot (to 1/4 .. 1/8) */
    int refused = run(&g, &now, 1000, &A, 4000, &B);
    assert_true(refused > 50);
    int64_t low = atomic_load(&g.rate_gauge);
    assert_true(low > 0);
    assert_true(low < (int64_t)BIG * 100 / 4);
    assert_int_equal(atomic_load(&g.slowed), (uint64_t)refused);
    /* A's own big appends pass: it is the tenant being protected; B's
     * small batches neither make B the protected tenant nor count */
    uint32_t retry;
    st_guard_observe(&g, now, &B, 1, 4096, 50000);
    assert_int_equal(st_guard_admit(&g, now, &A, 0, BIG, &retry), 1);
    assert_int_equal(st_guard_admit(&g, now, &B, 0, BIG, &retry), 0);
    /* back within the target: the rate climbs, B gets more through */
    int r2 = run(&g, &now, 3000, &A, 600, &B);
    assert_true(atomic_load(&g.rate_gauge) > low);
    assert_true(r2 < 300);
    /* A stops: a second later nothing holds B back */
    now += 1100000;
    st_guard_observe(&g, now, &B, 0, BIG, 3000);
    assert_int_equal(st_guard_admit(&g, now, &B, 0, BIG, &retry), 1);
    assert_int_equal(retry, 0);
    assert_int_equal(atomic_load(&g.rate_gauge), 0);
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
    st_guard_set_pct(&g, 0); /* at runtime: off from the next window */
    now += ST_GUARD_WINDOW_US;
    assert_int_equal(run(&g, &now, 2000, &A, 5000, &B), 0);
    assert_int_equal(atomic_load(&g.rate_gauge), 0);
    st_guard_destroy(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alone_never_held),
        cmocka_unit_test(test_flood_held_for_light),
        cmocka_unit_test(test_no_quiet_time),
        cmocka_unit_test(test_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
