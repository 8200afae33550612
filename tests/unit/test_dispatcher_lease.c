/* Unit tests for what a dispatcher replica announces in the store's leases:
 * the control endpoint at which the admin reaches it, and the request
 * timeout it tells with Acquire and Renew when a target's timeout changes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../services/dispatcher/dsp_lease.h"
#include "wh_util.h"

static void test_advertise(void **state)
{
    (void)state;
    char host[256], want[512], out[512];
    assert_int_equal(gethostname(host, sizeof(host)), 0);
    host[sizeof(host) - 1] = '\0';
    /* an endpoint the admin can dial as it is */
    const char *same[] = {"ipc:///var/lib/walhook/dispatcher-d1.sock", "tcp://10.1.2.3:7003",
                          "tls+tcp://dispatcher-0.walhook:7002", "tcp://[fd00::5]:7003"};
    for (size_t i = 0; i < WH_ARRAY_LEN(same); i++) {
        assert_int_equal(dsp_lease_advertise(out, sizeof(out), same[i]), WH_OK);
        assert_string_equal(out, same[i]);
    }
    /* a wildcard listen address: this host's name instead */
    const char *wild[][2] = {{"tcp://0.0.0.0:7003", "tcp://"},
                             {"tls+tcp://0.0.0.0:7002", "tls+tcp://"},
                             {"tcp://*:7003", "tcp://"},
                             {"tcp://[::]:7003", "tcp://"},
                             {"tcp://:7003", "tcp://"}};
    for (size_t i = 0; i < WH_ARRAY_LEN(wild); i++) {
        const char *port = strrchr(wild[i][0], ':');
        snprintf(want, sizeof(want), "%s%s%s", wild[i][1], host, port);
        assert_int_equal(dsp_lease_advertise(out, sizeof(out), wild[i][0]), WH_OK);
        assert_string_equal(out, want);
    }
    /* does not fit: an error, never a cut endpoint */
    assert_int_equal(dsp_lease_advertise(out, 8, "tcp://0.0.0.0:7003"), WH_ERR);
    assert_int_equal(dsp_lease_advertise(out, 8, "ipc:///a/long/path.sock"), WH_ERR);
}

/* A lease thread with no store to answer (its calls fail, which changes
 * nothing in what these tests read) */
static dsp_lease *lease_nostore(void)
{
    char err[WH_ERRLEN];
    dsp_lease_opts o = {
        "ipc:///nonexistent/walhook-test-lease.sock", 200, 1 << 20, "u1", 60000, NULL};
    dsp_lease *l = NULL;
    assert_int_equal(dsp_lease_start(&l, &o, err, sizeof(err)), WH_OK);
    return l;
}

/* A lowered timeout keeps counting as the old one for as long as the old
 * one after the change (requests started under it may run that long); a
 * raised one counts at once. No store answers: the thread's calls fail,
 * which changes nothing here. */
static void test_request_timeout_lowered(void **state)
{
    (void)state;
    dsp_lease *l = lease_nostore();
    const char *tenants[] = {"t"}, *names[] = {"a"};
    assert_int_equal(dsp_lease_request_timeout(l, "t", "a"), -1);
    int q = 30000;
    assert_int_equal(dsp_lease_set_targets(l, tenants, names, &q, 1), WH_OK);
    assert_int_equal(dsp_lease_request_timeout(l, "t", "a"), 30000);
    q = 5000; /* lowered: 30 s still count */
    assert_int_equal(dsp_lease_set_targets(l, tenants, names, &q, 1), WH_OK);
    assert_int_equal(dsp_lease_request_timeout(l, "t", "a"), 30000);
    q = 40000; /* raised: at once */
    assert_int_equal(dsp_lease_set_targets(l, tenants, names, &q, 1), WH_OK);
    assert_int_equal(dsp_lease_request_timeout(l, "t", "a"), 40000);
    /* lowered twice: the longest still counts */
    q = 300;
    assert_int_equal(dsp_lease_set_targets(l, tenants, names, &q, 1), WH_OK);
    q = 100;
    assert_int_equal(dsp_lease_set_targets(l, tenants, names, &q, 1), WH_OK);
    assert_int_equal(dsp_lease_request_timeout(l, "t", "a"), 40000);
    /* a short one lowered: the new one counts once the old one has passed */
    q = 300;
    dsp_lease_stop(l);
    l = lease_nostore();
    assert_int_equal(dsp_lease_set_targets(l, tenants, names, &q, 1), WH_OK);
    q = 100;
    assert_int_equal(dsp_lease_set_targets(l, tenants, names, &q, 1), WH_OK);
    int t0 = dsp_lease_request_timeout(l, "t", "a");
    assert_true(t0 == 300 || t0 == 100);
    /* waited for with a deadline: 300 ms after the change, 100 */
    for (int i = 0; i < 500 && dsp_lease_request_timeout(l, "t", "a") != 100; i++)
        wh_sleep_ms(10);
    assert_int_equal(dsp_lease_request_timeout(l, "t", "a"), 100);
    /* no longer listed */
    assert_int_equal(dsp_lease_set_targets(l, NULL, NULL, NULL, 0), WH_OK);
    assert_int_equal(dsp_lease_request_timeout(l, "t", "a"), -1);
    dsp_lease_stop(l);
}

/* Every state version lists the targets again (dsp_state apply_leased),
 * with their timeouts unchanged: that is no lowering, and must not move
 * the end of the window a real lowering opened. With the window re-armed
 * by each listing, a lowered timeout never took effect while the state
 * changed more often than the old timeout's length. */
static void test_request_timeout_relisted(void **state)
{
    (void)state;
    dsp_lease *l = lease_nostore();
    const char *tenants[] = {"t"}, *names[] = {"a"};
    int q = 300;
    assert_int_equal(dsp_lease_set_targets(l, tenants, names, &q, 1), WH_OK);
    q = 100; /* lowered: 300 ms still count */
    assert_int_equal(dsp_lease_set_targets(l, tenants, names, &q, 1), WH_OK);
    /* listed again (other state versions) every 10 ms, the timeout the
     * same: 300 ms after the change, 100 counts (deadline: 5 s) */
    int got = -1;
    for (int i = 0; i < 500; i++) {
        assert_int_equal(dsp_lease_set_targets(l, tenants, names, &q, 1), WH_OK);
        got = dsp_lease_request_timeout(l, "t", "a");
        if (got == 100)
            break;
        wh_sleep_ms(10);
    }
    assert_int_equal(got, 100);
    dsp_lease_stop(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_advertise),
        cmocka_unit_test(test_request_timeout_lowered),
        cmocka_unit_test(test_request_timeout_relisted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
