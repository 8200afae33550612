/* Unit tests: the least-privilege SQL (wh_pg_setup_sql, wh_pg_ident), JSON
 * log lines (wh_log with WH_LOG_JSON: escaping, field names, severity
 * numbers) and the process metrics every daemon exports. */
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
#include "wh_daemon.h"
#include "wh_pgcheck.h"
#include "wh_util.h"

static void test_ident(void **state)
{
    const char *in[] = {"walhook", "Orders", "a b", "9x", "we\"ird", "_ok_1", NULL};
    const char *out[] = {"walhook", "\"Orders\"", "\"a b\"", "\"9x\"", "\"we\"\"ird\"", "_ok_1"};
    for (int i = 0; in[i]; i++) {
        wh_buf b;
        wh_buf_init(&b, 0);
        assert_int_equal(wh_pg_ident(&b, in[i]), WH_OK);
        assert_int_equal(wh_buf_cstr(&b), WH_OK);
        assert_string_equal(b.data, out[i]);
        wh_buf_free(&b);
    }
}

static void test_setup_sql(void **state)
{
    wh_pg_source src = {.dsn = "postgresql://app_user:s3cret@db.example:5432/Shop",
                        .slot = "wh_slot",
                        .publication = "wh_pub",
                        .tables = " public.orders , Sales.Items,plain ",
                        .create = 1};
    wh_buf b;
    wh_buf_init(&b, 0);
    char err[WH_ERRLEN];
    assert_int_equal(wh_pg_setup_sql(&src, NULL, &b, err, sizeof(err)), WH_OK);
    assert_int_equal(wh_buf_cstr(&b), WH_OK);
    assert_non_null(strstr(b.data, "CREATE ROLE app_user WITH LOGIN REPLICATION;\n"));
    assert_non_null(strstr(b.data, "GRANT CONNECT ON DATABASE \"Shop\" TO app_user;\n"));
    assert_non_null(strstr(
        b.data,
        "CREATE PUBLICATION wh_pub FOR TABLE public.orders, \"Sales\".\"Items\", public.plain;"));
    assert_non_null(strstr(b.data, "pg_create_logical_replication_slot('wh_slot', 'pgoutput')"));
    assert_null(strstr(b.data, "s3cret")); /* never the password */
    wh_buf_reset(&b);
    src.tables = "";
    assert_int_equal(wh_pg_setup_sql(&src, "other", &b, err, sizeof(err)), WH_OK);
    assert_int_equal(wh_buf_cstr(&b), WH_OK);
    assert_non_null(strstr(b.data, "CREATE ROLE other WITH LOGIN REPLICATION;"));
    assert_non_null(strstr(b.data, "CREATE PUBLICATION wh_pub FOR ALL TABLES;"));
    wh_buf_reset(&b);
    src.tables = "a.";
    assert_int_equal(wh_pg_setup_sql(&src, NULL, &b, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "source.tables"));
    wh_buf_free(&b);
}

/* Runs wh_log with stderr redirected into a file; returns the text. */
static char *capture_log(int level, const char *msg)
{
    char path[] = "/tmp/wh-test-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    wh_log(level, "%s", msg);
    dup2(saved, STDERR_FILENO);
    close(saved);
    static char buf[8192];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    unlink(path);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static void test_json_log(void **state)
{
    wh_log_init("store", WH_LOG_DEBUG);
    assert_int_equal(wh_log_format_parse("json"), WH_LOG_JSON);
    assert_int_equal(wh_log_format_parse("text"), WH_LOG_TEXT);
    assert_int_equal(wh_log_format_parse("xml"), -1);
    wh_log_set_format(WH_LOG_JSON);
    const char *msg =
        "quote \" backslash \\ tab \t newline \n ctl \x01 utf8 \xc3\xa9 stray \xff end";
    char *line = capture_log(WH_LOG_WARN, msg);
    size_t len = strlen(line);
    assert_true(len > 0 && line[len - 1] == '\n');
    assert_null(memchr(line, '\n', len - 1)); /* one line */
    json_error_t je;
    json_t *o = json_loads(line, 0, &je);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "severity_text")), "WARN");
    assert_int_equal(json_integer_value(json_object_get(o, "severity_number")), 13);
    assert_string_equal(json_string_value(json_object_get(o, "service.name")), "walhook-store");
    assert_string_equal(
        json_string_value(json_object_get(o, "body")),
        "quote \" backslash \\ tab \t newline \n ctl \x01 utf8 \xc3\xa9 stray ? end");
    const char *ts = json_string_value(json_object_get(o, "timestamp"));
    assert_non_null(ts);
    assert_int_equal(strlen(ts), strlen("2026-11-22T01:02:03.123456Z"));
    json_t *attrs = json_object_get(o, "attributes");
    assert_string_equal(json_string_value(json_object_get(attrs, "walhook.daemon")), "store");
    assert_int_equal(json_integer_value(json_object_get(attrs, "process.pid")), getpid());
    json_decref(o);
    /* a very long message stays one valid line */
    char big[6000];
    memset(big, '"', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    line = capture_log(WH_LOG_ERROR, big);
    o = json_loads(line, 0, &je);
    assert_non_null(o);
    assert_int_equal(json_integer_value(json_object_get(o, "severity_number")), 17);
    json_decref(o);
    wh_log_set_format(WH_LOG_TEXT);
    line = capture_log(WH_LOG_INFO, "plain");
    assert_non_null(strstr(line, " store INFO plain\n"));
}

static void test_process_metrics(void **state)
{
    wh_buf b;
    wh_buf_init(&b, 0);
    assert_int_equal(wh_metric_process(&b, "store"), WH_OK);
    assert_int_equal(wh_buf_cstr(&b), WH_OK);
    const char *names[] = {"walhook_up{daemon=\"store\"} 1",
                           "walhook_build_info{daemon=\"store\",version=\"",
                           "process_cpu_seconds_total{daemon=\"store\"} ",
                           "process_resident_memory_bytes{daemon=\"store\"} ",
                           "process_open_fds{daemon=\"store\"} ",
                           "process_start_time_seconds{daemon=\"store\"} ",
                           "# TYPE process_cpu_seconds_total counter"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        assert_non_null(strstr(b.data, names[i]));
    assert_true(strlen(wh_build_version) > 0 && strlen(wh_build_revision) > 0);
    wh_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ident),
        cmocka_unit_test(test_setup_sql),
        cmocka_unit_test(test_json_log),
        cmocka_unit_test(test_process_metrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
