/* wh_slotcfg: a tenant's own source settings (slot safety; snapshot,
 * snapshot_chunk_rows and ddl) in the state document (parse, render, the
 * effective config of its ingestor), in the file's tenants list, and the
 * errors that name the field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
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

/* The capture keys: a tenant's snapshot, snapshot_chunk_rows and ddl over
 * the daemon's (file, env, and the state's runtime setting
 * source.snapshot_chunk_rows); absent or null inherits; they are no
 * slot-safety settings (wh_slotcfg_differs). */
static const char *CAPDOC =
    "{\"version\":1,\"settings\":{\"source.snapshot_chunk_rows\":700},"
    "\"tenants\":[{\"name\":\"a\",\"source\":{\"dsn\":\"dbname=a\",\"slot\":\"sa\","
    "\"snapshot\":\"initial\",\"snapshot_chunk_rows\":300,\"ddl\":true}},"
    "{\"name\":\"b\",\"source\":{\"dsn\":\"dbname=a\",\"slot\":\"sb\",\"ddl\":null}}]}";

static void test_capture_doc(void **state)
{
    (void)state;
    char err[WH_ERRLEN];
    wh_config base;
    assert_int_equal(wh_config_load(&base, NULL, err, sizeof(err)), WH_OK);
    wh_state *s = NULL;
    if (wh_state_parse(&s, CAPDOC, strlen(CAPDOC), &base, err, sizeof(err)) != WH_OK)
        fail_msg("parse: %s", err);
    wh_config eff;
    wh_state_effective(&eff, &base, s, "a");
    assert_string_equal(eff.snapshot, "initial");
    assert_int_equal(eff.snapshot_chunk_rows, 300); /* over the runtime setting */
    assert_int_equal(eff.ddl, 1);
    assert_false(wh_slotcfg_differs(&eff, &base)); /* no slot-safety key */
    wh_state_effective(&eff, &base, s, "b");
    assert_string_equal(eff.snapshot, "never");
    assert_int_equal(eff.snapshot_chunk_rows, 700); /* the state's runtime setting */
    assert_int_equal(eff.ddl, 0);
    assert_int_equal(s->tenants[1].slotcfg.set, 0); /* null: not set */
    /* the ingestor's copy of its source takes them */
    wh_config run = base;
    wh_state_effective(&eff, &base, s, "a");
    wh_slotcfg_copy(&run, &eff);
    assert_string_equal(run.snapshot, "initial");
    assert_int_equal(run.ddl, 1);
    /* rendered back: given keys with their JSON types, and only those */
    wh_buf b;
    wh_buf_init(&b, 0);
    assert_int_equal(wh_state_render(s, &b, 0), WH_OK);
    wh_buf_putc(&b, '\0');
    assert_non_null(strstr(b.data, "\"ddl\":true"));
    assert_non_null(strstr(b.data, "\"snapshot\":\"initial\""));
    assert_non_null(strstr(b.data, "\"snapshot_chunk_rows\":300"));
    wh_state *s2 = NULL;
    if (wh_state_parse(&s2, b.data, strlen(b.data), &base, err, sizeof(err)) != WH_OK)
        fail_msg("parse of the rendering: %s", err);
    assert_int_equal(s2->tenants[0].slotcfg.set, s->tenants[0].slotcfg.set);
    assert_int_equal(s2->tenants[1].slotcfg.set, 0);
    wh_config eff2;
    wh_state_effective(&eff2, &base, s2, "a");
    assert_int_equal(eff2.ddl, 1);
    assert_int_equal(eff2.snapshot_chunk_rows, 300);
    /* a clone keeps them; false is a value, not "absent" */
    wh_state *c = NULL;
    assert_int_equal(wh_state_clone(&c, s2), WH_OK);
    char e2[WH_ERRLEN];
    json_t *f = json_false();
    assert_int_equal(wh_slotcfg_set_json(&c->tenants[0].slotcfg, "ddl", f, "ddl", e2, sizeof(e2)),
                     WH_OK);
    json_decref(f);
    base.ddl = 1;
    wh_state_effective(&eff2, &base, c, "a");
    assert_int_equal(eff2.ddl, 0);
    json_t *n = json_null();
    assert_int_equal(
        wh_slotcfg_set_json(&c->tenants[0].slotcfg, "snapshot", n, "snapshot", e2, sizeof(e2)),
        WH_OK);
    json_decref(n);
    wh_state_effective(&eff2, &base, c, "a");
    assert_string_equal(eff2.snapshot, "never"); /* inherited again */
    assert_int_equal(eff2.snapshot_chunk_rows, 300);
    wh_state_unref(c);
    wh_buf_free(&b);
    wh_state_unref(s2);
    wh_state_unref(s);
}

static void test_capture_errors(void **state)
{
    (void)state;
    static const struct {
        const char *src, *want;
    } cases[] = {
        {"\"snapshot\":\"always\"", "tenants[0].source.snapshot: 'always' is not never or initial"},
        {"\"snapshot\":true", "tenants[0].source.snapshot: expected a string"},
        {"\"snapshot_chunk_rows\":0", "tenants[0].source.snapshot_chunk_rows: 0 is out of range"},
        {"\"snapshot_chunk_rows\":100001",
         "tenants[0].source.snapshot_chunk_rows: 100001 is out of range [1, 100000]"},
        {"\"snapshot_chunk_rows\":\"500\"",
         "tenants[0].source.snapshot_chunk_rows: expected an integer"},
        {"\"ddl\":1", "tenants[0].source.ddl: expected true or false"},
        {"\"ddl\":\"on\"", "tenants[0].source.ddl: expected true or false"},
        {"\"dll\":true", "tenants[0].source.dll: unknown field"},
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

/* The file's tenants list takes them too; a bad one names the setting and
 * its line. */
static void test_capture_file(void **state)
{
    (void)state;
    char p[64], err[WH_ERRLEN];
    snprintf(p, sizeof(p), "%s/wh_slotcfg_cap_%d.conf", P_tmpdir, (int)getpid());
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("tenants = (\n"
          "  { name = \"a\"; source = { dsn = \"dbname=a\"; slot = \"a_slot\"; ddl = true;\n"
          "    snapshot = \"initial\"; snapshot_chunk_rows = 64; }; },\n"
          "  { name = \"b\"; source = { dsn = \"dbname=a\"; slot = \"b_slot\"; }; }\n"
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
    assert_int_equal(eff.ddl, 1);
    assert_string_equal(eff.snapshot, "initial");
    assert_int_equal(eff.snapshot_chunk_rows, 64);
    wh_state_effective(&eff, &cfg, s, "b");
    assert_int_equal(eff.ddl, 0);
    assert_string_equal(eff.snapshot, "never");
    assert_int_equal(eff.snapshot_chunk_rows, 2048);
    wh_state_unref(s);
    static const struct {
        const char *line, *want;
    } bad[] = {
        {"ddl = 1;", "tenants[0].source.ddl (line 2): expected true or false"},
        {"snapshot = \"sometimes\";", "'sometimes' is not never or initial"},
        {"snapshot_chunk_rows = 0;", "0 is out of range [1, 100000]"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        f = fopen(p, "w");
        assert_non_null(f);
        fprintf(f, "tenants = ( { name = \"a\"; source = { dsn = \"dbname=a\";\n  %s }; } );\n",
                bad[i].line);
        fclose(f);
        assert_int_equal(wh_config_load(&cfg, p, err, sizeof(err)), WH_OK);
        s = NULL;
        assert_int_not_equal(wh_state_from_config(&s, &cfg, p, err, sizeof(err)), WH_OK);
        if (strstr(err, bad[i].want) == NULL)
            fail_msg("case %zu: '%s' does not say '%s'", i, err, bad[i].want);
    }
    unlink(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doc),
        cmocka_unit_test(test_doc_errors),
        cmocka_unit_test(test_file),
        cmocka_unit_test(test_capture_doc),
        cmocka_unit_test(test_capture_errors),
        cmocka_unit_test(test_capture_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
