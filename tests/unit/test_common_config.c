/* Unit tests: configuration table, file errors, environment, validation. */
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
#include "wh_dsn.h"
#include "wh_util.h"

static char path[64];

static const char *write_conf(const char *text)
{
    snprintf(path, sizeof(path), "/tmp/wh_cfg_test_%d.conf", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static int load_text(wh_config *c, const char *text, char *err, size_t errlen)
{
    int rc = wh_config_load(c, write_conf(text), err, errlen);
    unlink(path);
    return rc;
}

static void test_defaults(void **state)
{
    wh_config c;
    char err[WH_ERRLEN];
    assert_int_equal(wh_config_load(&c, NULL, err, sizeof(err)), WH_OK);
    assert_string_equal(c.tenant, "default");
    assert_true(c.flush_bytes == 4 * 1024 * 1024);
    assert_true(c.flush_age_us == 500);
    assert_string_equal(c.store_endpoint, "ipc://./var/store.sock");
}

static void test_full_file(void **state)
{
    wh_config c;
    char err[WH_ERRLEN];
    int rc = load_text(
        &c,
        "tenant = \"shop\";\n"
        "data_dir = \"/tmp/whx\";\n"
        "source = { dsn = \"postgresql://u@127.0.0.1:5432/db\"; create_slot = false; };\n"
        "ingestor = { flush_bytes = 1048576; flush_age_us = 1000L; };\n"
        "targets = ( { name = \"a\"; url = \"http://127.0.0.1:9000/x\"; },\n"
        "            { url = \"https://example.invalid/y\"; secret = \"whsec_abc\"; } );\n",
        err, sizeof(err));
    assert_int_equal(rc, WH_OK);
    assert_string_equal(c.tenant, "shop");
    assert_int_equal(c.create_slot, 0);
    assert_true(c.flush_bytes == 1048576);
    assert_true(c.flush_age_us == 1000);
    assert_int_equal(c.ntargets, 2);
    assert_string_equal(c.targets[0].name, "a");
    assert_string_equal(c.targets[1].name, "t1");
    assert_string_equal(c.targets[1].secret, "whsec_abc");
    assert_string_equal(c.store_endpoint, "ipc:///tmp/whx/store.sock");
}

static void expect_error(const char *text, const char *needle)
{
    wh_config c;
    char err[WH_ERRLEN] = "";
    assert_int_equal(load_text(&c, text, err, sizeof(err)), WH_ERR);
    if (strstr(err, needle) == NULL)
        fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void test_errors(void **state)
{
    expect_error("bogus = 1;\n", "unknown setting 'bogus'");
    expect_error("source = { dns = \"x\"; };\n", "unknown setting 'source.dns'");
    expect_error("ingestor = { flush_bytes = \"big\"; };\n",
                 "'ingestor.flush_bytes' (line 1): expected an integer");
    expect_error("tenant = 5;\n", "'tenant' (line 1): expected a string");
    expect_error("source = { create_slot = 1; };\n", "expected true or false");
    expect_error("ingestor = { flush_bytes = 1; };\n", "out of range");
    expect_error("source = { dsn = \"postgresql://u@h:notaport/db\"; };\n", "source.dsn");
    expect_error("source = { dsn = \"host=x port=99999\"; };\n", "invalid port");
    expect_error("source = { dsn = \"host=x bogus=1\"; };\n", "source.dsn");
    expect_error("targets = ( { url = \"ftp://x\"; } );\n", "http://");
    expect_error("targets = ( { url = \"http://x\"; colour = \"red\"; } );\n", "targets[0].colour");
    expect_error("tenant = \"a\"\n x", "line");
    expect_error("log_level = \"loud\";\n", "log_level");
    expect_error("source = { slot = \"Bad-Slot\"; };\n", "source.slot");

    wh_config c;
    char err[WH_ERRLEN];
    assert_int_equal(wh_config_load(&c, "/nonexistent/walhook.conf", err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "/nonexistent/walhook.conf"));
}

static void test_env_overrides(void **state)
{
    wh_config c;
    char err[WH_ERRLEN];
    setenv("WALHOOK_INGESTOR_FLUSH_BYTES", "2M", 1);
    setenv("WALHOOK_TARGETS", "http://127.0.0.1:1/a, b=http://127.0.0.1:2/b", 1);
    setenv("WALHOOK_SOURCE_CREATE_SLOT", "off", 1);
    int rc = load_text(&c, "ingestor = { flush_bytes = 1048576; };\n", err, sizeof(err));
    unsetenv("WALHOOK_INGESTOR_FLUSH_BYTES");
    unsetenv("WALHOOK_TARGETS");
    unsetenv("WALHOOK_SOURCE_CREATE_SLOT");
    assert_int_equal(rc, WH_OK);
    assert_true(c.flush_bytes == 2 * 1024 * 1024);
    assert_int_equal(c.create_slot, 0);
    assert_int_equal(c.ntargets, 2);
    assert_string_equal(c.targets[0].name, "t0");
    assert_string_equal(c.targets[1].name, "b");
    assert_string_equal(c.targets[1].url, "http://127.0.0.1:2/b");

    setenv("WALHOOK_STORE_WORKERS", "many", 1);
    rc = wh_config_load(&c, NULL, err, sizeof(err));
    unsetenv("WALHOOK_STORE_WORKERS");
    assert_int_equal(rc, WH_ERR);
    assert_non_null(strstr(err, "WALHOOK_STORE_WORKERS"));
}

static void test_static_diff_and_json(void **state)
{
    wh_config a, b;
    char err[WH_ERRLEN];
    assert_int_equal(wh_config_load(&a, NULL, err, sizeof(err)), WH_OK);
    b = a;
    b.flush_bytes = 12345;
    assert_null(wh_config_static_diff(&a, &b));
    wh_strlcpy(b.slot, "other", sizeof(b.slot));
    assert_string_equal(wh_config_static_diff(&a, &b), "source.slot");

    wh_strlcpy(a.source_dsn, "postgresql://bob:hunter2@db:5432/x", sizeof(a.source_dsn));
    wh_buf j;
    wh_buf_init(&j, 0);
    assert_int_equal(wh_config_to_json(&a, &j), WH_OK);
    wh_buf_cstr(&j);
    assert_null(strstr(j.data, "hunter2"));
    assert_non_null(strstr(j.data, "\"source.dsn\":\"postgresql://bob:****@db:5432/x\""));
    wh_buf_free(&j);
}

static void test_dsn_syntax(void **state)
{
    char err[WH_ERRLEN];
    const char *good[] = {
        "postgresql://u@127.0.0.1:5432/db",
        "postgres://u:p%40ss@h1:5432,h2:5433/db?sslmode=require&application_name=x",
        "postgresql://[::1]:5432/db",
        "postgresql:///db?host=/tmp",
        "host=127.0.0.1 port=5432 dbname=x user=u",
        "host='a b' password='it\\'s' port = 5432",
        "",
        NULL};
    for (int i = 0; good[i]; i++)
        if (wh_dsn_check(good[i], err, sizeof(err)) != WH_OK)
            fail_msg("'%s' rejected: %s", good[i], err);
    struct {
        const char *dsn, *needle;
    } bad[] = {
        {"postgresql://u@h:notaport/db", "port"},
        {"postgresql://u@h:0/db", "port"},
        {"postgresql://u@h:70000/db", "port"},
        {"postgresql://h/db?colour=red", "unknown URI parameter at offset 18"},
        {"postgresql://h/db?sslmode", "no '='"},
        {"mysql://h/db", "postgresql://"},
        {"host=x bogus=1", "unknown keyword at offset 7"},
        {"host=x port=99999", "port"},
        {"host", "missing '='"},
        {"host='x", "unterminated"},
        {"postgresql://[::1/db", "IPv6"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (wh_dsn_check(bad[i].dsn, err, sizeof(err)) != WH_ERR)
            fail_msg("'%s' accepted", bad[i].dsn);
        if (strstr(err, bad[i].needle) == NULL)
            fail_msg("'%s': error '%s' does not mention '%s'", bad[i].dsn, err, bad[i].needle);
    }
}

static void test_dsn_redact(void **state)
{
    struct {
        const char *in, *out;
    } cases[] = {
        {"postgresql://bob:hunter2@db:5432/x", "postgresql://bob:****@db:5432/x"},
        {"postgresql://bob@db/x?password=hunter2&sslmode=require",
         "postgresql://bob@db/x?password=****&sslmode=require"},
        {"host=db password = s3cret user=x", "host=db password=**** user=x"},
        {"host=db password='my secret' user=x", "host=db password=**** user=x"},
        {"host=db sslpassword=k3y", "host=db sslpassword=****"},
        {"host=db password=my secret", "host=db password=**** ..."},
    };
    char out[256], err[WH_ERRLEN];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wh_dsn_redact(cases[i].in, out, sizeof(out));
        assert_string_equal(out, cases[i].out);
    }
    /* errors never quote a value */
    const char *leaky[] = {"postgresql://u:ab/cd@db/x", "host=db password=my secret",
                           "host=db password=my secret=x"};
    for (size_t i = 0; i < sizeof(leaky) / sizeof(leaky[0]); i++) {
        assert_int_equal(wh_dsn_check(leaky[i], err, sizeof(err)), WH_ERR);
        if (strstr(err, "ab") || strstr(err, "secret"))
            fail_msg("error for '%s' quotes a value: %s", leaky[i], err);
    }
    wh_dsn_redact("host=x", out, 4);
    assert_string_equal(out, "hos");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_env_overrides),
        cmocka_unit_test(test_static_diff_and_json),
        cmocka_unit_test(test_dsn_syntax),
        cmocka_unit_test(test_dsn_redact),
    };
    return cmocka_run_group_tests_name("common_config", tests, NULL, NULL);
}
