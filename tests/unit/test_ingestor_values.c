/* Value decoding per type (docs/INTERNALS.md "Values"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "../../services/ingestor/ing_values.h"
#include "wh_buf.h"
#include "wh_json.h"
#include "wh_util.h"

static void check(uint32_t oid, const char *in, const char *want)
{
    wh_buf b;
    wh_buf_init(&b, 0);
    assert_int_equal(ing_value_json(&b, oid, in, strlen(in)), WH_OK);
    assert_int_equal(wh_buf_cstr(&b), WH_OK);
    if (strcmp(b.data, want) != 0)
        fail_msg("type %u, input [%s]: got [%s], want [%s]", oid, in, b.data, want);
    /* always valid JSON */
    wh_json *j = NULL;
    char err[WH_ERRLEN];
    if (wh_json_parse(b.data, b.len, &j, err, sizeof(err)) != WH_OK)
        fail_msg("invalid JSON [%s]: %s", b.data, err);
    wh_json_free(j);
    wh_buf_free(&b);
}

static void test_numbers(void **state)
{
    check(ING_INT2OID, "-32768", "-32768");
    check(ING_INT4OID, "42", "42");
    check(ING_INT8OID, "-9223372036854775808", "-9223372036854775808");
    check(ING_OIDOID, "4294967295", "4294967295");
    check(ING_FLOAT8OID, "1.5e-07", "1.5e-07");
    check(ING_FLOAT8OID, "1e+300", "1e+300");
    check(ING_FLOAT8OID, "-0", "-0");
    check(ING_FLOAT4OID, "3.14", "3.14");
    check(ING_FLOAT8OID, "NaN", "\"NaN\"");
    check(ING_FLOAT8OID, "Infinity", "\"Infinity\"");
    check(ING_FLOAT4OID, "-Infinity", "\"-Infinity\"");
    check(ING_NUMERICOID, "12.50", "\"12.50\"");
    check(ING_NUMERICOID, "NaN", "\"NaN\"");
    assert_true(ing_is_json_number("0.5", 3));
    assert_false(ing_is_json_number("01", 2));
    assert_false(ing_is_json_number(".5", 2));
    assert_false(ing_is_json_number("1.", 2));
    assert_false(ing_is_json_number("1e", 2));
    assert_false(ing_is_json_number("", 0));
    assert_false(ing_is_json_number("-", 1));
}

static void test_bool_json(void **state)
{
    check(ING_BOOLOID, "t", "true");
    check(ING_BOOLOID, "f", "false");
    check(ING_JSONBOID, "{\"a\": [1, 2]}", "{\"a\": [1, 2]}");
    check(ING_JSONOID, "[1,\n 2]", "[1,\n 2]");
    check(ING_JSONBOID, "\"s\"", "\"s\"");
}

static void test_strings(void **state)
{
    check(ING_TEXTOID, "h\xc3\xa9 \"q\"\n", "\"h\xc3\xa9 \\\"q\\\"\\n\"");
    check(ING_VARCHAROID, "", "\"\"");
    check(ING_BPCHAROID, "ab  ", "\"ab  \"");
    check(ING_NAMEOID, "pg", "\"pg\"");
    check(ING_UUIDOID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
          "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"");
    check(ING_DATEOID, "2026-11-22", "\"2026-11-22\"");
    check(1186 /* interval */, "P1D", "\"P1D\"");
    check(ING_TEXTOID, "bad \xff utf8", "\"bad \xef\xbf\xbd utf8\"");
}

static void test_timestamps(void **state)
{
    check(ING_TIMESTAMPTZOID, "2026-11-22 01:02:03.123456+00", "\"2026-11-22T01:02:03.123456Z\"");
    check(ING_TIMESTAMPTZOID, "2026-11-22 01:02:03+00", "\"2026-11-22T01:02:03Z\"");
    check(ING_TIMESTAMPTZOID, "2026-11-22 01:02:03.5+05:30", "\"2026-11-22T01:02:03.5+05:30\"");
    check(ING_TIMESTAMPTZOID, "2026-11-22 01:02:03-08", "\"2026-11-22T01:02:03-08:00\"");
    check(ING_TIMESTAMPTZOID, "infinity", "\"infinity\"");
    check(ING_TIMESTAMPTZOID, "0001-01-01 00:00:00+00 BC", "\"0001-01-01 00:00:00+00 BC\"");
    check(ING_TIMESTAMPOID, "2026-11-22 01:02:03.123456", "\"2026-11-22T01:02:03.123456\"");
    check(ING_TIMESTAMPOID, "-infinity", "\"-infinity\"");
    char buf[48];
    assert_int_equal(ing_format_ts_utc(INT64_C(1795309323123456), buf, sizeof(buf)), 27);
    assert_string_equal(buf, "2026-11-22T01:02:03.123456Z");
    ing_format_ts_utc(-1, buf, sizeof(buf));
    assert_string_equal(buf, "1969-12-31T23:59:59.999999Z");
    /* the printf-free path agrees with gmtime_r over centuries, leap days,
     * before 1970; years past 9999 take the slow path */
    for (int64_t secs = -5000000000LL; secs < 253402300800LL; secs += 86399 * 37 + 12345) {
        int64_t v = secs * 1000000 + (secs & 0xfffff) % 1000000;
        time_t t = (time_t)secs;
        struct tm tm;
        assert_non_null(gmtime_r(&t, &tm));
        char want[48];
        snprintf(want, sizeof(want), "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(v - secs * 1000000));
        assert_int_equal(ing_format_ts_utc(v, buf, sizeof(buf)), (int)strlen(want));
        assert_string_equal(buf, want);
    }
    assert_int_equal(ing_format_ts_utc(INT64_C(951782400000000), buf, sizeof(buf)), 27);
    assert_string_equal(buf, "2000-02-29T00:00:00.000000Z");
    assert_int_equal(ing_format_ts_utc(INT64_C(253402300800000000), buf, sizeof(buf)), 28);
    assert_string_equal(buf, "10000-01-01T00:00:00.000000Z");
}

static void test_bytea(void **state)
{
    check(ING_BYTEAOID, "\\x00ff10", "\"AP8Q\"");
    check(ING_BYTEAOID, "\\x", "\"\"");
    check(ING_BYTEAOID, "\\x4", "\"XHg0\""); /* not valid hex: base64 of the text */
    check(ING_BYTEAOID, "\\xzz", "\"XHh6eg==\"");
    /* large value crosses the chunk size: compare with direct base64 */
    size_t n = 10000;
    char *hex = malloc(2 + 2 * n + 1);
    unsigned char *raw = malloc(n);
    hex[0] = '\\';
    hex[1] = 'x';
    for (size_t i = 0; i < n; i++) {
        raw[i] = (unsigned char)(i * 7 + 3);
        snprintf(hex + 2 + 2 * i, 3, "%02x", raw[i]);
    }
    wh_buf a, b;
    wh_buf_init(&a, 0);
    wh_buf_init(&b, 0);
    assert_int_equal(ing_value_json(&a, ING_BYTEAOID, hex, strlen(hex)), WH_OK);
    wh_buf_putc(&b, '"');
    wh_base64(&b, raw, n);
    wh_buf_putc(&b, '"');
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    wh_buf_free(&a);
    wh_buf_free(&b);
    free(hex);
    free(raw);
    /* binary ('b') column */
    wh_buf c;
    wh_buf_init(&c, 0);
    assert_int_equal(ing_value_binary(&c, "\x01\x02", 2), WH_OK);
    assert_int_equal(c.len, 6);
    assert_memory_equal(c.data, "\"AQI=\"", 6);
    wh_buf_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numbers), cmocka_unit_test(test_bool_json),
        cmocka_unit_test(test_strings), cmocka_unit_test(test_timestamps),
        cmocka_unit_test(test_bytea),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
