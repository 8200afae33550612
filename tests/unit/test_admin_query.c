/* Unit tests of the admin's pure logic: listen address parsing, readiness
 * verdict from Stats replies, Prometheus text merging. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "../../services/admin/adm_query.h"
#include "../../services/admin/adm_slot.h"
#include "wh_buf.h"
#include "wh_util.h"

static void test_parse_listen(void **state)
{
    char host[64], err[WH_ERRLEN];
    uint16_t port = 0;
    assert_int_equal(
        adm_parse_listen("127.0.0.1:8080", host, sizeof(host), &port, err, sizeof(err)), WH_OK);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8080);
    assert_int_equal(adm_parse_listen("[::1]:9", host, sizeof(host), &port, err, sizeof(err)),
                     WH_OK);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 9);
    assert_int_equal(adm_parse_listen("localhost:0", host, sizeof(host), &port, err, sizeof(err)),
                     WH_OK);
    assert_int_equal(port, 0);

    const char *bad[] = {
        "",       "8080",    ":8080",       "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:80x",
        "::1:80", "[::1]80", "127.0.0.1:-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(adm_parse_listen(bad[i], host, sizeof(host), &port, err, sizeof(err)),
                         WH_ERR);
        assert_non_null(strstr(err, "admin.listen"));
    }
    /* host longer than the buffer */
    char small[4];
    assert_int_equal(
        adm_parse_listen("example.com:1", small, sizeof(small), &port, err, sizeof(err)), WH_ERR);
}

/* Builds an adm_stat from a real Stats reply, as the query path does. */
static void stat_from(adm_stat *st, const char *name, const char *state, int ready,
                      const char *metrics)
{
    memset(st, 0, sizeof(*st));
    wh_strlcpy(st->name, name, sizeof(st->name));
    Walhook__Reply rep = WALHOOK__REPLY__INIT;
    Walhook__StatsReply s = WALHOOK__STATS_REPLY__INIT;
    s.daemon = (char *)name;
    s.state = (char *)state;
    s.ready = ready;
    s.metrics_text = (char *)(metrics ? metrics : "");
    rep.body_case = WALHOOK__REPLY__BODY_STATS;
    rep.stats = &s;
    adm_stat_from_reply(st, &rep);
}

static void stat_down(adm_stat *st, const char *name, const char *why)
{
    memset(st, 0, sizeof(*st));
    wh_strlcpy(st->name, name, sizeof(st->name));
    wh_strlcpy(st->error, why, sizeof(st->error));
}

static int readiness(adm_stat *st, wh_buf *b)
{
    wh_buf_reset(b);
    int r = adm_readiness(st, ADM_NDAEMONS, b);
    assert_int_equal(wh_buf_cstr(b), WH_OK);
    return r;
}

static void test_readiness(void **state)
{
    adm_stat st[ADM_NDAEMONS];
    wh_buf b;
    wh_buf_init(&b, 0);

    stat_from(&st[0], "store", "running", 1, NULL);
    stat_from(&st[1], "ingestor", "streaming", 1, NULL);
    stat_from(&st[2], "dispatcher", "running", 1, NULL);
    assert_int_equal(readiness(st, &b), 1);
    assert_non_null(strstr(b.data, "\"ready\":true"));
    assert_null(strstr(b.data, "not_ready"));
    adm_stats_free(st, ADM_NDAEMONS);

    /* ingestor answers but is not streaming */
    stat_from(&st[1], "ingestor", "connecting", 0, NULL);
    assert_int_equal(readiness(st, &b), 0);
    assert_non_null(strstr(b.data, "\"ready\":false"));
    assert_non_null(strstr(b.data, "\"not_ready\":\"ingestor\""));
    assert_non_null(strstr(b.data, "connecting"));
    adm_stats_free(st, ADM_NDAEMONS);

    /* store down: named first, with its reason */
    stat_down(&st[0], "store", "no stats reply: timed out");
    stat_from(&st[1], "ingestor", "streaming", 1, NULL);
    assert_int_equal(readiness(st, &b), 0);
    assert_non_null(strstr(b.data, "\"not_ready\":\"store\""));
    assert_non_null(strstr(b.data, "timed out"));
    adm_stats_free(st, ADM_NDAEMONS);

    /* issue 5, defect 5: a store that answers but cannot write is not
     * ready, and /readyz gives its own reason */
    Walhook__Reply srep = WALHOOK__REPLY__INIT;
    Walhook__StatsReply ss = WALHOOK__STATS_REPLY__INIT;
    ss.daemon = "store";
    ss.state = "write-failing";
    ss.ready = 0;
    ss.reason = "cannot write for 2.0 s: IO error: No space left on device";
    srep.body_case = WALHOOK__REPLY__BODY_STATS;
    srep.stats = &ss;
    memset(&st[0], 0, sizeof(st[0]));
    wh_strlcpy(st[0].name, "store", sizeof(st[0].name));
    adm_stat_from_reply(&st[0], &srep);
    assert_int_equal(readiness(st, &b), 0);
    assert_non_null(strstr(b.data, "\"not_ready\":\"store\",\"reason\":\"cannot write for 2.0 s: "
                                   "IO error: No space left on device\""));
    assert_non_null(strstr(b.data, "\"state\":\"write-failing\""));
    adm_stats_free(st, ADM_NDAEMONS);
    /* a long reason (a libpq message after the DSN) reaches /readyz whole:
     * it used to be cut at 255 bytes, before its useful end */
    char longr[700];
    memset(longr, 'x', sizeof(longr));
    memcpy(longr + sizeof(longr) - 40, " exceeds max_wal_senders (currently 2)", 39);
    ss.reason = longr;
    memset(&st[0], 0, sizeof(st[0]));
    wh_strlcpy(st[0].name, "store", sizeof(st[0].name));
    adm_stat_from_reply(&st[0], &srep);
    assert_int_equal(readiness(st, &b), 0);
    assert_non_null(strstr(b.data, "xxx exceeds max_wal_senders (currently 2)\",\"daemons\""));
    adm_stats_free(st, ADM_NDAEMONS);
    /* ... and without a reason its state is named */
    stat_from(&st[0], "store", "write-failing", 0, NULL);
    assert_int_equal(readiness(st, &b), 0);
    assert_non_null(strstr(b.data, "\"reason\":\"not ready (state write-failing)\""));
    adm_stats_free(st, ADM_NDAEMONS);

    /* dispatcher's ready flag is informational; answering is what counts */
    stat_from(&st[0], "store", "running", 1, NULL);
    stat_from(&st[2], "dispatcher", "running", 0, NULL);
    assert_int_equal(readiness(st, &b), 1);
    adm_stats_free(st, ADM_NDAEMONS);

    /* a reply without a stats body counts as down */
    Walhook__Reply rep = WALHOOK__REPLY__INIT;
    adm_stat x;
    memset(&x, 0, sizeof(x));
    wh_strlcpy(x.name, "dispatcher", sizeof(x.name));
    adm_stat_from_reply(&x, &rep);
    assert_int_equal(x.up, 0);
    assert_true(x.error[0] != '\0');
    st[2] = x;
    assert_int_equal(readiness(st, &b), 0);
    assert_non_null(strstr(b.data, "\"not_ready\":\"dispatcher\""));
    adm_stats_free(st, ADM_NDAEMONS);
    wh_buf_free(&b);
}

/* Counts occurrences of needle in hay. */
static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* Two replicas' expositions, each labelled, merge into one family with a
 * series per replica: no two samples with the same labels. */
static void test_label_replicas(void **state)
{
    (void)state;
    const char *r = "# HELP d_total delivered\n# TYPE d_total counter\n"
                    "d_total{tenant=\"t\",target=\"a\"} 5\nd_up 1\nd_empty{} 2\n"
                    "lat_bucket{le=\"+Inf\"} 2";
    wh_buf one, two, out;
    wh_buf_init(&one, 0);
    wh_buf_init(&two, 0);
    wh_buf_init(&out, 0);
    assert_int_equal(adm_metrics_label(r, "replica", "d1#0000abcd", NULL, &one), WH_OK);
    assert_int_equal(adm_metrics_label(r, "replica", "odd\"\\id\n", "d_up", &two), WH_OK);
    assert_int_equal(wh_buf_cstr(&one), WH_OK);
    assert_int_equal(wh_buf_cstr(&two), WH_OK);
    assert_non_null(strstr(one.data, "# TYPE d_total counter\n"));
    assert_non_null(
        strstr(one.data, "d_total{replica=\"d1#0000abcd\",tenant=\"t\",target=\"a\"} 5\n"));
    assert_non_null(strstr(one.data, "d_up{replica=\"d1#0000abcd\"} 1\n"));
    assert_non_null(strstr(one.data, "d_empty{replica=\"d1#0000abcd\"} 2\n"));
    assert_non_null(strstr(one.data, "lat_bucket{replica=\"d1#0000abcd\",le=\"+Inf\"} 2\n"));
    assert_non_null(strstr(one.data, "d_up{replica=\"d1#0000abcd\"} 1\n"));
    /* a dropped family: none of its samples */
    assert_null(strstr(two.data, "d_up"));
    assert_non_null(strstr(two.data, "d_empty{replica=\"odd\\\"\\\\id\\n\"} 2\n"));
    const char *texts[] = {one.data, two.data};
    assert_int_equal(adm_metrics_merge(texts, 2, &out), WH_OK);
    assert_int_equal(wh_buf_cstr(&out), WH_OK);
    assert_int_equal(count(out.data, "# TYPE d_total counter\n"), 1);
    assert_int_equal(count(out.data, "d_total{replica="), 2);
    wh_buf_free(&one);
    wh_buf_free(&two);
    wh_buf_free(&out);
}

static void test_merge(void **state)
{
    const char *a =
        "# HELP walhook_up up\n# TYPE walhook_up gauge\nwalhook_up{daemon=\"store\"} 1\n"
        "# HELP lat latency\n# TYPE lat histogram\nlat_bucket{le=\"1\"} 1\n"
        "lat_bucket{le=\"+Inf\"} 2\nlat_sum 3\nlat_count 2\n";
    const char *b = "# some comment\n\n# HELP walhook_up up again\n# TYPE walhook_up gauge\r\n"
                    "walhook_up{daemon=\"ingestor\"} 1\nother_total 5"; /* no final newline */
    const char *texts[] = {a, NULL, b};
    wh_buf out;
    wh_buf_init(&out, 0);
    assert_int_equal(adm_metrics_merge(texts, 3, &out), WH_OK);
    assert_int_equal(wh_buf_cstr(&out), WH_OK);
    const char *s = out.data;
    assert_int_equal(count(s, "# TYPE walhook_up gauge\n"), 1);
    assert_int_equal(count(s, "# HELP walhook_up"), 1);
    assert_null(strstr(s, "up again"));
    assert_null(strstr(s, "some comment"));
    assert_null(strstr(s, "\r"));
    /* both walhook_up samples follow the one TYPE line, before any other family */
    const char *t = strstr(s, "# TYPE walhook_up");
    const char *s1 = strstr(s, "walhook_up{daemon=\"store\"} 1\n");
    const char *s2 = strstr(s, "walhook_up{daemon=\"ingestor\"} 1\n");
    const char *h = strstr(s, "# HELP lat ");
    assert_non_null(t);
    assert_non_null(s1);
    assert_non_null(s2);
    assert_non_null(h);
    assert_true(t < s1 && s1 < s2 && s2 < h);
    /* histogram series stay in their family */
    assert_true(strstr(s, "lat_count 2\n") > h);
    assert_int_equal(count(s, "# TYPE lat_"), 0);
    assert_non_null(strstr(s, "other_total 5\n"));
    assert_int_equal(s[out.len - 1], '\n');
    wh_buf_free(&out);
}

static void test_render(void **state)
{
    adm_stat st[ADM_NDAEMONS];
    stat_from(&st[0], "store", "running", 1,
              "# HELP walhook_up up\n# TYPE walhook_up gauge\nwalhook_up{daemon=\"store\"} 1\n"
              "walhook_events_stored_total 42\n");
    stat_down(&st[1], "ingestor", "timed out");
    stat_from(&st[2], "dispatcher", "running", 1, "walhook_up{daemon=\"dispatcher\"} 1\n");
    wh_buf out;
    wh_buf_init(&out, 0);
    assert_int_equal(adm_metrics_render(st, ADM_NDAEMONS, &out), WH_OK);
    assert_int_equal(wh_buf_cstr(&out), WH_OK);
    const char *s = out.data;
    assert_non_null(strstr(s, "walhook_up{daemon=\"admin\"} 1\n"));
    assert_non_null(strstr(s, "walhook_up{daemon=\"store\"} 1\n"));
    assert_non_null(strstr(s, "walhook_up{daemon=\"dispatcher\"} 1\n"));
    assert_non_null(strstr(s, "walhook_daemon_up{daemon=\"store\"} 1\n"));
    assert_non_null(strstr(s, "walhook_daemon_up{daemon=\"ingestor\"} 0\n"));
    assert_non_null(strstr(s, "walhook_daemon_up{daemon=\"dispatcher\"} 1\n"));
    assert_non_null(strstr(s, "walhook_events_stored_total 42\n"));
    assert_int_equal(count(s, "# TYPE walhook_up "), 1);
    adm_stats_free(st, ADM_NDAEMONS);
    wh_buf_free(&out);
}

/* A stored target whose filter does not compile (written before filters
 * were checked on write) shows as refused, with the reason. */
static void test_target_refused(void **state)
{
    (void)state;
    adm_stat st[ADM_NDAEMONS];
    memset(st, 0, sizeof(st));
    json_t *o = json_pack("{s:s,s:s,s:s}", "name", "t0", "url", "http://h/x", "filter_expr",
                          "after.amount => 5");
    adm_slot_target_json(o, st, "default");
    assert_string_equal(json_string_value(json_object_get(o, "state")), "refused");
    const char *why = json_string_value(json_object_get(o, "config_error"));
    assert_non_null(why);
    if (strncmp(why, "filter_expr: position", 21) != 0)
        fail_msg("config_error: %s", why);
    json_decref(o);
    o = json_pack("{s:s,s:s,s:s}", "name", "t1", "url", "http://h/x", "filter_ops", "insert,read");
    adm_slot_target_json(o, st, "default");
    assert_string_not_equal(json_string_value(json_object_get(o, "state")), "refused");
    assert_null(json_object_get(o, "config_error"));
    json_decref(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_listen),   cmocka_unit_test(test_readiness),
        cmocka_unit_test(test_merge),          cmocka_unit_test(test_render),
        cmocka_unit_test(test_label_replicas), cmocka_unit_test(test_target_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
