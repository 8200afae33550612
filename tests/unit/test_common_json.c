/* Unit tests for common/wh_json. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wh_json.h"
#include "wh_util.h"

static wh_json *parse_ok(const char *s)
{
    wh_json *j = NULL;
    char err[WH_ERRLEN] = "";
    int rc = wh_json_parse(s, strlen(s), &j, err, sizeof err);
    if (rc != WH_OK)
        fail_msg("parse of '%s' failed: %s", s, err);
    assert_non_null(j);
    return j;
}

static void parse_bad(const char *s, size_t len, const char *expect_in_err)
{
    wh_json *j = (wh_json *)0x1;
    char err[WH_ERRLEN] = "";
    int rc = wh_json_parse(s, len, &j, err, sizeof err);
    assert_int_equal(rc, WH_ERR);
    assert_null(j);
    assert_non_null(strstr(err, "offset "));
    if (expect_in_err && !strstr(err, expect_in_err))
        fail_msg("error '%s' does not contain '%s'", err, expect_in_err);
}

static void test_scalars(void **state)
{
    (void)state;
    wh_json *j = parse_ok("null");
    assert_int_equal(j->type, WH_JSON_NULL);
    wh_json_free(j);
    j = parse_ok(" true ");
    assert_int_equal(j->type, WH_JSON_BOOL);
    assert_int_equal(j->boolean, 1);
    wh_json_free(j);
    j = parse_ok("false");
    assert_int_equal(j->boolean, 0);
    wh_json_free(j);
    j = parse_ok("-12.5e2");
    assert_int_equal(j->type, WH_JSON_NUMBER);
    assert_true(j->num == -1250.0);
    assert_string_equal(j->str, "-12.5e2");
    wh_json_free(j);
    j = parse_ok("0");
    assert_true(j->num == 0.0);
    wh_json_free(j);
    j = parse_ok("9007199254740993");
    assert_string_equal(j->str, "9007199254740993"); /* text kept exactly */
    wh_json_free(j);
}

static void test_strings(void **state)
{
    (void)state;
    wh_json *j = parse_ok("\"a\\\"b\\\\c\\/d\\n\\t\"");
    assert_int_equal(j->type, WH_JSON_STRING);
    assert_string_equal(j->str, "a\"b\\c/d\n\t");
    assert_int_equal(j->len, 9);
    wh_json_free(j);
    j = parse_ok("\"\\u00e9\\u20ac\\ud83d\\ude00\"");
    assert_string_equal(j->str, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    wh_json_free(j);
    /* embedded NUL via \u0000: len counts it */
    j = parse_ok("\"a\\u0000b\"");
    assert_int_equal(j->len, 3);
    assert_memory_equal(j->str, "a\0b", 3);
    wh_json_free(j);
    /* lone surrogate becomes U+FFFD */
    j = parse_ok("\"\\ud800x\"");
    assert_string_equal(j->str, "\xef\xbf\xbdx");
    wh_json_free(j);
    /* raw UTF-8 passes through */
    j = parse_ok("\"h\xc3\xa9llo\"");
    assert_string_equal(j->str, "h\xc3\xa9llo");
    wh_json_free(j);
}

static void test_containers(void **state)
{
    (void)state;
    wh_json *j = parse_ok("{\"a\":1,\"b\":[true,null,\"x\",{}],\"c\":{\"d\":-0.5},\"a\":2}");
    assert_int_equal(j->type, WH_JSON_OBJECT);
    assert_int_equal(j->count, 4);
    const wh_json *a = wh_json_get(j, "a");
    assert_non_null(a);
    assert_true(a->num == 1.0); /* first match */
    const wh_json *b = wh_json_get(j, "b");
    assert_int_equal(b->type, WH_JSON_ARRAY);
    assert_int_equal(b->count, 4);
    assert_int_equal(wh_json_at(b, 0)->type, WH_JSON_BOOL);
    assert_int_equal(wh_json_at(b, 1)->type, WH_JSON_NULL);
    assert_string_equal(wh_json_at(b, 2)->str, "x");
    assert_int_equal(wh_json_at(b, 3)->type, WH_JSON_OBJECT);
    assert_int_equal(wh_json_at(b, 3)->count, 0);
    assert_null(wh_json_at(b, 4));
    assert_true(wh_json_get(wh_json_get(j, "c"), "d")->num == -0.5);
    assert_null(wh_json_get(j, "zz"));
    assert_null(wh_json_get(b, "a")); /* not an object */
    assert_null(wh_json_at(j, 0));    /* not an array */
    assert_null(wh_json_get(NULL, "a"));
    wh_json_free(j);
    j = parse_ok("[]");
    assert_int_equal(j->count, 0);
    assert_null(j->child);
    wh_json_free(j);
    wh_json_free(NULL);
}

static void test_envelope(void **state)
{
    (void)state;
    const char *s =
        "[{\"id\":\"default:0/1A2B3C8:0\",\"tenant\":\"default\",\"lsn\":\"0/1A2B3C8\",\"seq\":0,"
        "\"xid\":735,\"commit_ts\":\"2026-11-22T01:02:03.123456Z\",\"op\":\"insert\","
        "\"schema\":\"public\",\"table\":\"orders\",\"key\":{\"id\":1},\"before\":null,"
        "\"after\":{\"id\":1,\"note\":\"x\"}}]";
    wh_json *j = parse_ok(s);
    const wh_json *e = wh_json_at(j, 0);
    assert_string_equal(wh_json_get(e, "op")->str, "insert");
    assert_int_equal(wh_json_get(e, "before")->type, WH_JSON_NULL);
    assert_string_equal(wh_json_get(wh_json_get(e, "after"), "note")->str, "x");
    wh_json_free(j);
}

static void test_errors(void **state)
{
    (void)state;
    parse_bad("", 0, "value expected");
    parse_bad("   ", 3, "value expected");
    parse_bad("[1,2", 4, "unterminated");
    parse_bad("[1,]", 4, NULL);
    parse_bad("{\"a\" 1}", 7, "':' expected");
    parse_bad("{a:1}", 5, "member name");
    parse_bad("\"abc", 4, "unterminated string");
    parse_bad("\"a\\qb\"", 6, "bad escape");
    parse_bad("\"a\\u12\"", 7, NULL);
    parse_bad("\"a\nb\"", 5, "control character");
    parse_bad("\"\xff\"", 3, "UTF-8");
    parse_bad("\"\xc0\x80\"", 4, "UTF-8"); /* overlong */
    parse_bad("01", 2, "trailing");
    parse_bad("1.", 2, "decimal point");
    parse_bad("1e", 2, "exponent");
    parse_bad("-", 1, "bad number");
    parse_bad("tru", 3, "literal");
    parse_bad("nul", 3, "literal");
    parse_bad("[1] x", 5, "trailing");
    parse_bad("{\"a\":1,}", 8, "member name");
    /* the error names the offset */
    wh_json *j;
    char err[WH_ERRLEN];
    assert_int_equal(wh_json_parse("[1, @]", 6, &j, err, sizeof err), WH_ERR);
    assert_non_null(strstr(err, "offset 4"));
    /* errlen 0 is allowed */
    assert_int_equal(wh_json_parse("[", 1, &j, NULL, 0), WH_ERR);
    /* the length bounds the input: no read past len */
    assert_int_equal(wh_json_parse("[1]garbage", 3, &j, err, sizeof err), WH_OK);
    wh_json_free(j);
}

static void test_depth(void **state)
{
    (void)state;
    size_t n = 100000;
    char *s = malloc(2 * n);
    memset(s, '[', n);
    memset(s + n, ']', n);
    wh_json *j;
    char err[WH_ERRLEN];
    assert_int_equal(wh_json_parse(s, 2 * n, &j, err, sizeof err), WH_ERR);
    assert_non_null(strstr(err, "too deep"));
    /* moderate depth is fine */
    assert_int_equal(wh_json_parse(s + n - 100, 200, &j, err, sizeof err), WH_OK);
    wh_json_free(j);
    free(s);
}

static void test_big_array(void **state)
{
    (void)state;
    size_t n = 200000;
    char *s = malloc(n * 2 + 2);
    size_t k = 0;
    s[k++] = '[';
    for (size_t i = 0; i < n; i++) {
        s[k++] = '7';
        s[k++] = ',';
    }
    s[k - 1] = ']';
    wh_json *j;
    char err[WH_ERRLEN];
    assert_int_equal(wh_json_parse(s, k, &j, err, sizeof err), WH_OK);
    assert_int_equal(j->count, n);
    size_t cnt = 0;
    for (const wh_json *c = j->child; c; c = c->next)
        cnt++;
    assert_int_equal(cnt, n);
    wh_json_free(j);
    free(s);
}

/* wh_json_span_strcmp_span: two string spans, escapes decoded on both
 * sides, any length. */
static int span_cmp(const char *x, const char *y)
{
    wh_json_span a, b;
    assert_int_equal(wh_json_span_value(x, strlen(x), &a), WH_OK);
    assert_int_equal(wh_json_span_value(y, strlen(y), &b), WH_OK);
    return wh_json_span_strcmp_span(&a, &b);
}

static void test_span_strcmp_span(void **state)
{
    (void)state;
    assert_int_equal(span_cmp("\"abc\"", "\"abc\""), 0);
    assert_int_equal(span_cmp("\"abc\"", "\"abd\""), -1);
    assert_int_equal(span_cmp("\"abcd\"", "\"abc\""), 1);
    assert_int_equal(span_cmp("\"a\\u0062c\"", "\"abc\""), 0);
    assert_int_equal(span_cmp("\"abc\"", "\"a\\u0062\""), 1);
    assert_int_equal(span_cmp("\"caf\\u00e9\"", "\"caf\xc3\xa9\""), 0);
    assert_int_equal(span_cmp("\"\\n\"", "\"\\u000a\""), 0);
    assert_int_equal(span_cmp("\"\"", "\"\\t\""), -1);
    assert_int_equal(span_cmp("\"x\"", "1"), 2);
    char *big = malloc(4010);
    big[0] = '"';
    memset(big + 1, 'q', 4000);
    strcpy(big + 4001, "\\u0071\"");
    char *big2 = malloc(4010);
    big2[0] = '"';
    memset(big2 + 1, 'q', 4001);
    strcpy(big2 + 4002, "\"");
    assert_int_equal(span_cmp(big, big2), 0);
    big2[4001] = 'r';
    assert_int_equal(span_cmp(big, big2), -1);
    free(big);
    free(big2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),    cmocka_unit_test(test_strings),
        cmocka_unit_test(test_containers), cmocka_unit_test(test_envelope),
        cmocka_unit_test(test_errors),     cmocka_unit_test(test_depth),
        cmocka_unit_test(test_big_array),  cmocka_unit_test(test_span_strcmp_span),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
