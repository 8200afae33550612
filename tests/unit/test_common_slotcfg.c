/* wh_slotcfg: a tenant's own slot-safety settings in the state document
 * (parse, render, the effective config of its ingestor), in the file's
 * tenants list, and the errors that name the field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wh_buf.h"
#include "wh_config.h"
#include "wh_slotcfg.h"
#include "wh_state.h"
#include "wh_util.h"

static const char *DOC =
    "{\"version\":1,\"tenants\":[{\"name\":\"shop\",\"source\":{\"dsn\":\"dbname=shop\","
    "\"slot\":\"s1\",\"slot_policy\":\"track\",\"lag_warn_bytes\":1048576,"
    "\"lag_max_action\":\"force_resync\",\"disconnected_resync_after_s\":600}},"
    "{\"name\":\"crm\",\"source\":{\"dsn\":\"dbname=crm\",\"slot\":\"s2\"}}]}";

static void test_doc(void **state)
{
    (void)state;
    char err[WH_ERRLEN];
    wh_state *s = NULL;
    if (wh_state_parse(&s, DOC, strlen(DOC), NULL, err, sizeof(err)) != WH_OK)
        fail_msg("parse: %s", err);
    wh_config base;
    assert_int_equal(wh_config_load(&base, NULL, err, sizeof(err)), WH_OK);
    base.lag_max_bytes = 8 << 20;
    wh_config eff;
    wh_state_effective(&eff, &base, s, "shop");
    assert_string_equal(eff.slot_policy, "track");
    assert_int_equal(eff.lag_warn_bytes, 1048576);
    assert_string_equal(eff.lag_max_action, "force_resync");
    assert_int_equal(eff.disconnected_resync_after_s, 600);
    assert_int_equal(eff.lag_max_bytes, 8 << 20); /* not given: the daemon's */
    assert_true(wh_slotcfg_differs(&eff, &base));
    wh_config eff2;
    wh_state_effective(&eff2, &base, s, "crm"); /* nothing given: all inherited */
    assert_string_equal(eff2.slot_policy, "independent");
    assert_false(wh_slotcfg_differs(&eff2, &base));
    /* rendered back with the keys given, and only those */
    wh_buf b;
    wh_buf_init(&b, 0);
    assert_int_equal(wh_state_render(s, &b, 0), WH_OK);
    wh_buf_putc(&b, '\0');
    assert_non_null(strstr(b.data, "\"slot_policy\""));
    assert_non_null(strstr(b.data, "disconnected_resync_after_s"));
    assert_null(strstr(b.data, "safety_lag_bytes"));
    wh_state *s2 = NULL;
    if (wh_state_parse(&s2, b.data, strlen(b.data), NULL, err, sizeof(err)) != WH_OK)
        fail_msg("parse of the rendering: %s", err);
    assert_int_equal(s2->tenants[0].slotcfg.set, s->tenants[0].slotcfg.set);
    wh_buf_free(&b);
    wh_state_unref(s2);
    wh_state_unref(s);
}

static void test_doc_errors(void **state)
{
    (void)state;
    static const struct {
        const char *src, *want;
    } cases[] = {
        {"\"slot_policy\":\"trak\"",
         "tenants[0].source.slot_policy: 'trak' is not independent or track"},
        {"\"slot_policy\":1", "tenants[0].source.slot_policy: expected a string"},
        {"\"lag_warn_bytes\":-1", "tenants[0].source.lag_warn_bytes: -1 is out of range"},
        {"\"lag_max_action\":\"drop\"", "'drop' is not independent, force_resync or none"},
        {"\"slot_check_ms\":5", "tenants[0].source.slot_check_ms: 5 is out of range"},
        {"\"slot_check_ms\":\"5\"", "expected an integer"},
        {"\"slot_polcy\":\"track\"", "tenants[0].source.slot_polcy: unknown field"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char doc[512], err[WH_ERRLEN] = "";
        snprintf(doc, sizeof(doc),
                 "{\"version\":1,\"tenants\":[{\"name\":\"a\",\"source\":{\"dsn\":\"dbname=a\","
                 "%s}}]}",
                 cases[i].src);
        wh_state *s = NULL;
        if (wh_state_parse(&s, doc, strlen(doc), NULL, err, sizeof(err)) == WH_OK)
            fail_msg("case %zu accepted", i);
        if (strstr(err, cases[i].want) == NULL)
            fail_msg("case %zu: '%s' does not say '%s'", i, err, cases[i].want);
    }
}

static void test_file(void **state)
{
    (void)state;
    char p[64], err[WH_ERRLEN];
    snprintf(p, sizeof(p), "%s/wh_slotcfg_test_%d.conf", P_tmpdir, (int)getpid());
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("tenants = (\n"
          "  { name = \"a\"; source = { dsn = \"dbname=a\"; slot = \"a_slot\"; slot_policy = "
          "\"track\"; lag_warn_bytes = 2097152; lag_warn_action = \"none\"; }; },\n"
          "  { name = \"b\"; source = { dsn = \"dbname=b\"; slot = \"b_slot\"; }; }\n"
          ");\n",
          f);
    fclose(f);
    wh_config cfg;
    if (wh_config_load(&cfg, p, err, sizeof(err)) != WH_OK)
        fail_msg("load: %s", err);
    wh_state *s = NULL;
    if (wh_state_from_config(&s, &cfg, p, err, sizeof(err)) != WH_OK)
        fail_msg("from_config: %s", err);
    wh_config eff;
    wh_state_effective(&eff, &cfg, s, "a");
    assert_string_equal(eff.slot_policy, "track");
    assert_int_equal(eff.lag_warn_bytes, 2097152);
    assert_string_equal(eff.lag_warn_action, "none");
    wh_state_effective(&eff, &cfg, s, "b");
    assert_string_equal(eff.slot_policy, "independent");
    wh_state_unref(s);
    /* a bad value names the setting and its line */
    f = fopen(p, "w");
    assert_non_null(f);
    fputs("tenants = ( { name = \"a\"; source = { dsn = \"dbname=a\";\n"
          "  slot_policy = \"sometimes\"; }; } );\n",
          f);
    fclose(f);
    assert_int_equal(wh_config_load(&cfg, p, err, sizeof(err)), WH_OK);
    s = NULL;
    assert_int_not_equal(wh_state_from_config(&s, &cfg, p, err, sizeof(err)), WH_OK);
    assert_non_null(strstr(err, "slot_policy"));
    assert_non_null(strstr(err, "sometimes"));
    unlink(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doc),
        cmocka_unit_test(test_doc_errors),
        cmocka_unit_test(test_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
