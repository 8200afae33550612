/* ing_slot: backpressure zones and their hysteresis, the effective slot
 * policy (track falling back to independent and coming back), and the
 * flush LSN each policy allows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../services/ingestor/ing_slot.h"
#include "wh_util.h"

#define KB 1024u
enum { G = ING_ZONE_GREEN, Y = ING_ZONE_YELLOW, R = ING_ZONE_RED };

/* warn 100 KiB, max 400 KiB: a walk up and down through every band */
static void test_zone_walk(void **state)
{
    (void)state;
    const uint64_t w = 100 * KB, m = 400 * KB;
    struct {
        uint64_t lag;
        int want;
    } steps[] = {
        {0, G},        {99 * KB, G},  {100 * KB, Y}, /* up at warn */
        {60 * KB, Y},  {50 * KB, Y},                 /* hysteresis: stays down to warn/2 */
        {49 * KB, G},  {399 * KB, Y}, {400 * KB, R}, /* up at max */
        {300 * KB, R}, {100 * KB, R},                /* red holds down to warn */
        {99 * KB, Y},  {100 * KB, Y},                /* then yellow, not red again */
        {450 * KB, R}, {10 * KB, G},                 /* red straight to green below warn/2 */
        {500 * KB, R},                               /* green straight to red at max */
    };
    int z = G;
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        z = ing_zone_next(z, steps[i].lag, w, m);
        if (z != steps[i].want)
            fail_msg("step %zu: lag %llu KiB gives %s, want %s", i,
                     (unsigned long long)(steps[i].lag / KB), ing_zone_name(z),
                     ing_zone_name(steps[i].want));
    }
}

static void test_zone_thresholds_off(void **state)
{
    (void)state;
    /* no warn: green or red only; red leaves below max/2 */
    assert_int_equal(ing_zone_next(G, 1u << 30, 0, 400 * KB), R);
    assert_int_equal(ing_zone_next(R, 300 * KB, 0, 400 * KB), R);
    assert_int_equal(ing_zone_next(R, 199 * KB, 0, 400 * KB), G);
    assert_int_equal(ing_zone_next(G, 399 * KB, 0, 400 * KB), G);
    /* no max: never red */
    assert_int_equal(ing_zone_next(G, UINT64_MAX, 100 * KB, 0), Y);
    assert_int_equal(ing_zone_next(Y, UINT64_MAX, 100 * KB, 0), Y);
    /* both off: always green */
    assert_int_equal(ing_zone_next(Y, UINT64_MAX, 0, 0), G);
    assert_string_equal(ing_zone_name(R), "red");
    assert_string_equal(ing_zone_name(Y), "yellow");
    assert_string_equal(ing_zone_name(G), "green");
}

static void test_policy(void **state)
{
    (void)state;
    const char *why;
    enum { I = ING_POLICY_INDEPENDENT, T = ING_POLICY_TRACK };
    ing_slot_limits ind = {.track = 0, .warn = 100 * KB, .max = 400 * KB, 1, 1};
    assert_int_equal(ing_policy_next(T, UINT64_MAX, UINT64_MAX, &ind, &why), I);

    ing_slot_limits l = {
        .track = 1, .warn = 100 * KB, .max = 400 * KB, .warn_independent = 1, .max_independent = 1};
    assert_int_equal(ing_policy_next(T, 99 * KB, 99 * KB, &l, &why), T);
    assert_null(why);
    assert_int_equal(ing_policy_next(T, 100 * KB, 100 * KB, &l, &why), I);
    assert_non_null(why);
    assert_non_null(strstr(why, "lag_warn_bytes"));
    /* fallen back: the slot lag is small now, the track lag decides */
    assert_int_equal(ing_policy_next(I, 0, 60 * KB, &l, &why), I);
    assert_int_equal(ing_policy_next(I, 0, 50 * KB, &l, &why), I); /* not below warn/2 */
    assert_int_equal(ing_policy_next(I, 0, 49 * KB, &l, &why), T);
    assert_non_null(why);

    /* warn action none: track holds until the hard cap */
    l.warn_independent = 0;
    assert_int_equal(ing_policy_next(T, 399 * KB, 399 * KB, &l, &why), T);
    assert_int_equal(ing_policy_next(T, 400 * KB, 400 * KB, &l, &why), I);
    assert_non_null(strstr(why, "lag_max_bytes"));
    assert_int_equal(ing_policy_next(I, 0, 200 * KB, &l, &why), I);
    assert_int_equal(ing_policy_next(I, 0, 199 * KB, &l, &why), T);

    /* no independent action at all (lag_max_action force_resync / none) */
    l.max_independent = 0;
    assert_int_equal(ing_policy_next(T, UINT64_MAX, UINT64_MAX, &l, &why), T);
    assert_string_equal(ing_policy_name(T), "track");
    assert_string_equal(ing_policy_name(I), "independent");
}

static void test_effective_lag(void **state)
{
    (void)state;
    const uint64_t m = 400 * KB;
    /* safe_wal_size unknown (-1: max_slot_wal_keep_size unlimited) or no cap */
    assert_int_equal(ing_slot_effective_lag(10 * KB, -1, m), 10 * KB);
    assert_int_equal(ing_slot_effective_lag(10 * KB, 0, 0), 10 * KB);
    /* plenty left: the slot lag */
    assert_int_equal(ing_slot_effective_lag(10 * KB, 1u << 30, m), 10 * KB);
    /* PostgreSQL invalidates in 100 KiB: the hard cap is 100 KiB away */
    assert_int_equal(ing_slot_effective_lag(10 * KB, 100 * KB, m), 300 * KB);
    assert_int_equal(ing_slot_effective_lag(350 * KB, 100 * KB, m), 350 * KB);
    /* nothing left: at the cap, so its action comes first */
    assert_int_equal(ing_zone_next(ING_ZONE_GREEN, ing_slot_effective_lag(0, 0, m), 100 * KB, m),
                     ING_ZONE_RED);
}

static void test_cap(void **state)
{
    (void)state;
    char err[WH_ERRLEN];
    ing_slot *s = NULL;
    assert_int_equal(ing_slot_new(&s, "t", err, sizeof(err)), WH_OK);
    /* independent: what the store fsynced, minus the safety lag */
    ing_slot_set(s, ING_POLICY_INDEPENDENT, 0, 0, 0, 0, 0);
    assert_int_equal(ing_slot_cap(s, 0x5000, 0x5000, 0x4f00), 0x5000);
    ing_slot_set(s, ING_POLICY_INDEPENDENT, 0, 0, 0, 0, 0x1000);
    assert_int_equal(ing_slot_cap(s, 0x5000, 0x5000, 0x4f00), 0x4000);
    assert_int_equal(ing_slot_cap(s, 0x800, 0x800, 0x700), 0);
    /* track before the store answered: nothing */
    ing_slot_set(s, ING_POLICY_TRACK, 0, 0, 0, 0, 0x1000);
    assert_int_equal(ing_slot_cap(s, 0x5000, 0x5000, 0x4f00), 0);
    /* track: the slowest target's position */
    ing_slot_set(s, ING_POLICY_TRACK, 1, 0x3000, 0, 0x4f00, 0);
    assert_int_equal(ing_slot_cap(s, 0x5000, 0x5000, 0x4f00), 0x3000);
    assert_int_equal(ing_slot_cap(s, 0x2000, 0x2000, 0x1f00), 0x2000);
    /* every target delivered all that is stored (up to the event at
     * 0x4f00, commit end 0x5000), and that covers what the ingestor got
     * acked and rendered: an idle position past it may go too */
    ing_slot_set(s, ING_POLICY_TRACK, 1, 0x5000, 1, 0x4f00, 0);
    assert_int_equal(ing_slot_cap(s, 0x9000, 0x5000, 0x4f00), 0x9000);
    /* ...but not when the ingestor got a newer commit acked since */
    assert_int_equal(ing_slot_cap(s, 0x9000, 0x6000, 0x4f00), 0x5000);
    /* ...nor when it rendered a newer event (stored after the answer, its
     * commit not acknowledged yet: the acked LSN alone does not show it) */
    assert_int_equal(ing_slot_cap(s, 0x9000, 0x5000, 0x5f00), 0x5000);
    ing_slot_free(s);
    /* no slot: the candidate unchanged */
    assert_int_equal(ing_slot_cap(NULL, 0x42, 0x42, 0x41), 0x42);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zone_walk), cmocka_unit_test(test_zone_thresholds_off),
        cmocka_unit_test(test_policy),    cmocka_unit_test(test_effective_lag),
        cmocka_unit_test(test_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
