/* Unit tests for what a dispatcher replica announces in the store's leases:
 * the control endpoint at which the admin reaches it. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_advertise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
