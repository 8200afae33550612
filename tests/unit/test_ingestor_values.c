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

#include "../../services/ingestor/ing_types.h"
#include "../../services/ingestor/ing_values.h"
#include "wh_buf.h"
#include "wh_json.h"
#include "wh_util.h"

static void check_t(const ing_vtype *t, uint32_t oid, const char *in, const char *want);

static void check(uint32_t oid, const char *in, const char *want)
{
    check_t(NULL, oid, in, want);
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
    /* bytes that are not UTF-8 (SQL_ASCII): U+FFFD, still valid JSON */
    check(ING_JSONOID, "{\"k\": \"caf\xe9\"}", "{\"k\": \"caf\xef\xbf\xbd\"}");
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
    check(ING_TIMESTAMPTZOID, "0001-01-01 00:00:00+00 BC", "\"0001-01-01T00:00:00Z BC\"");
    check(ING_TIMESTAMPTZOID, "10000-01-01 00:00:00+00", "\"10000-01-01T00:00:00Z\"");
    check(ING_TIMESTAMPOID, "0044-03-15 12:00:00 BC", "\"0044-03-15T12:00:00 BC\"");
    check(ING_TIMESTAMPOID, "294276-12-31 23:59:59.999999", "\"294276-12-31T23:59:59.999999\"");
    check(ING_TIMESTAMPTZOID, "2026-11-22 01:02:03+00:00:30", "\"2026-11-22T01:02:03+00:00\"");
    check(ING_TIMESTAMPTZOID, "2026-11-22 01:02:03", "\"2026-11-22 01:02:03\"");
    check(ING_TIMESTAMPTZOID, "123-11-22 01:02:03+00", "\"123-11-22 01:02:03+00\"");
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

/* renders in with descriptor t (NULL: by oid), compares, and checks that
 * the result is valid JSON */
static void check_t(const ing_vtype *t, uint32_t oid, const char *in, const char *want)
{
    wh_buf b;
    wh_buf_init(&b, 0);
    int rc = t ? ing_value_typed(&b, t, in, strlen(in)) : ing_value_json(&b, oid, in, strlen(in));
    assert_int_equal(rc, WH_OK);
    assert_int_equal(wh_buf_cstr(&b), WH_OK);
    if (strcmp(b.data, want) != 0)
        fail_msg("type %u, input [%s]: got [%s], want [%s]", oid, in, b.data, want);
    wh_json *j = NULL;
    char err[WH_ERRLEN];
    if (wh_json_parse(b.data, b.len, &j, err, sizeof(err)) != WH_OK)
        fail_msg("invalid JSON [%s]: %s", b.data, err);
    wh_json_free(j);
    wh_buf_free(&b);
}

static void test_arrays(void **state)
{
    /* as array_out writes them */
    check(ING_INT4ARRAYOID, "{1,NULL,3}", "[1,null,3]");
    check(ING_INT4ARRAYOID, "{}", "[]");
    check(ING_INT4ARRAYOID, "{{1,2},{3,4}}", "[[1,2],[3,4]]");
    check(ING_INT4ARRAYOID, "{{{1},{2}},{{3},{4}}}", "[[[1],[2]],[[3],[4]]]");
    check(ING_INT4ARRAYOID, "[0:1]={7,8}", "[7,8]");
    check(ING_INT4ARRAYOID, "[2:3][-1:0]={{1,2},{3,4}}", "[[1,2],[3,4]]");
    check(ING_TEXTARRAYOID, "{\"a b\",NULL,\"\",\"NULL\",\"x\\\"y\\\\z\",\"{\",\xc3\xa9}",
          "[\"a b\",null,\"\",\"NULL\",\"x\\\"y\\\\z\",\"{\",\"\xc3\xa9\"]");
    check(ING_TEXTARRAYOID, "{null,Null}", "[null,null]");
    check(ING_TEXTARRAYOID, "{\"\\\\\"}", "[\"\\\\\"]");
    check(ING_TEXTARRAYOID, "{{a,b},{NULL,\"c,d\"}}", "[[\"a\",\"b\"],[null,\"c,d\"]]");
    /* array_in's looser forms: white space, an escape outside quotes */
    check(ING_TEXTARRAYOID, " { a , b\\ ,\"c\" } ", "[\"a\",\"b \",\"c\"]");
    check(ING_TEXTARRAYOID, "{a\\,b}", "[\"a,b\"]");
    /* element forms: numbers, strings, timestamps, bytea, json, bool */
    check(1231 /* numeric[] */, "{1.50,NaN}", "[\"1.50\",\"NaN\"]");
    check(1022 /* float8[] */, "{1.5,Infinity,-0}", "[1.5,\"Infinity\",-0]");
    check(1000 /* bool[] */, "{t,f,NULL}", "[true,false,null]");
    check(1185 /* timestamptz[] */, "{\"2026-11-22 01:02:03+00\",infinity}",
          "[\"2026-11-22T01:02:03Z\",\"infinity\"]");
    check(1001 /* bytea[] */, "{\"\\\\x00ff10\",NULL}", "[\"AP8Q\",null]");
    check(3807 /* jsonb[] */, "{\"{\\\"a\\\": [1, 2]}\",\"3\"}", "[{\"a\": [1, 2]},3]");
    check(1020 /* box[] */, "{(1,1),(0,0);(2,2),(1,1)}", "[\"(1,1),(0,0)\",\"(2,2),(1,1)\"]");
    check(1006 /* int2vector[] */, "{\"1 2\",3,\"\"}", "[[1,2],[3],[]]");
    check(3905 /* int4range[] */, "{\"[1,3)\",empty}", "[\"[1,3)\",\"empty\"]");
    /* malformed: the text as a string */
    static const char *bad[] = {
        "",         "{",        "}",          "{1,2",      "{1,,2}",
        "{1,}",     "{,1}",     "{{1},2}",    "{1,{2}}",   "{\"a}",
        "{a\"b\"}", "{1}x",     "[1:2]{1,2}", "[1:2=1,2}", "{{{{{{{1}}}}}}}",
        "{1 2 {}}", "{\"a\"b}", "{a\\",       "1,2",       "[1:2]={1,2",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        wh_buf want;
        wh_buf_init(&want, 0);
        wh_json_str(&want, bad[i], strlen(bad[i]));
        wh_buf_cstr(&want);
        check(ING_INT4ARRAYOID, bad[i], want.data);
        wh_buf_free(&want);
    }
    /* six dimensions are fine, the element type's form applies at any depth */
    check(ING_INT4ARRAYOID, "{{{{{{1}}}}}}", "[[[[[[1]]]]]]");
    /* an element that is not a number of its type: a string, as a scalar */
    check(ING_INT4ARRAYOID, "{1,abc}", "[1,\"abc\"]");
}

static void test_vectors(void **state)
{
    check(ING_INT2VECTOROID, "1 2 3", "[1,2,3]");
    check(ING_OIDVECTOROID, "", "[]");
    check(ING_INT2VECTOROID, "1 x", "\"1 x\"");
}

/* type descriptors of the record tests (as ing_types builds them) */
static const ing_vtype mood = {.oid = ING_TEXTOID, .kind = ING_VT_SCALAR};
static const ing_vfield comp_f[] = {
    {"\"a\":", 4, ING_INT4OID, NULL},
    {"\"b x\":", 6, ING_TEXTOID, NULL},
    {"\"m\":", 4, 16389, &mood},
    {"\"arr\":", 6, ING_INT4ARRAYOID, NULL},
    {"\"ts\":", 5, ING_TIMESTAMPTZOID, NULL},
};
static const ing_vtype comp = {.oid = 16404, .kind = ING_VT_RECORD, .nfields = 5, .fields = comp_f};
static const ing_vtype comp_arr = {
    .oid = 16403, .kind = ING_VT_ARRAY, .delim = ',', .elem_oid = 16404, .elem = &comp};
static const ing_vfield comp2_f[] = {
    {"\"c\":", 4, 16404, &comp},
    {"\"cs\":", 5, 16403, &comp_arr},
};
static const ing_vtype comp2 = {
    .oid = 16407, .kind = ING_VT_RECORD, .nfields = 2, .fields = comp2_f};

static void test_records(void **state)
{
    check_t(&comp, 0, "(1,\"a b\",ok,\"{1,2}\",\"2026-11-22 01:02:03+00\")",
            "{\"a\":1,\"b x\":\"a b\",\"m\":\"ok\",\"arr\":[1,2],\"ts\":\"2026-11-22T01:02:03Z\"}");
    /* NULL fields are empty, "" is the empty string, quotes and backslashes
     * doubled */
    check_t(&comp, 0, "(,\"\",,,)",
            "{\"a\":null,\"b x\":\"\",\"m\":null,\"arr\":null,\"ts\":null}");
    check_t(&comp, 0, "(2,\"x\"\"y\\\\z\",sad,{},)",
            "{\"a\":2,\"b x\":\"x\\\"y\\\\z\",\"m\":\"sad\",\"arr\":[],\"ts\":null}");
    /* record_in's forms: a backslash escape outside quotes, quotes inside a
     * field */
    check_t(&comp, 0, "(3,a\\,b,o\"k\",,)",
            "{\"a\":3,\"b x\":\"a,b\",\"m\":\"ok\",\"arr\":null,\"ts\":null}");
    /* nested: a record in a record, an array of records */
    check_t(&comp2, 0,
            "(\"(1,x,ok,{3},)\",\"{\"\"(2,\\\\\"\"\\\\\"\"\\\\\"\"q\\\\\"\"\\\\\"\"\\\\\"\",,,)"
            "\"\",NULL}\")",
            "{\"c\":{\"a\":1,\"b x\":\"x\",\"m\":\"ok\",\"arr\":[3],\"ts\":null},"
            "\"cs\":[{\"a\":2,\"b x\":\"\\\"q\\\"\",\"m\":null,\"arr\":null,\"ts\":null},null]}");
    check_t(&comp_arr, 0, "{}", "[]");
    check_t(&comp_arr, 0, "{\"(1,,,,)\"}",
            "[{\"a\":1,\"b x\":null,\"m\":null,\"arr\":null,\"ts\":null}]");
    /* a malformed element is sent as its text; the array stays an array */
    check_t(&comp_arr, 0, "{\"(1,2)\"}", "[\"(1,2)\"]");
    /* malformed records */
    static const char *bad[] = {
        "",          "(",          "()",           "(1,2,3,4)",     "(1,2,3,4,5,6)",
        "1,2,3,4,5", "(1,2,3,4,5", "(1,2,3,4,5)x", "(1,\"2,3,4,5)", "(1,2,3,4,5\\)",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        wh_buf want;
        wh_buf_init(&want, 0);
        wh_json_str(&want, bad[i], strlen(bad[i]));
        wh_buf_cstr(&want);
        check_t(&comp, 0, bad[i], want.data);
        wh_buf_free(&want);
    }
    /* a composite type without attributes */
    static const ing_vtype empty = {.oid = 1, .kind = ING_VT_RECORD, .nfields = 0};
    check_t(&empty, 0, "()", "{}");
    check_t(&empty, 0, "(,)", "\"(,)\"");
    /* a trailing space after the record is allowed */
    check_t(&comp, 0, "(1,,,,) ", "{\"a\":1,\"b x\":null,\"m\":null,\"arr\":null,\"ts\":null}");
}

static void test_hstore(void **state)
{
    static const ing_vtype hs = {.oid = 16500, .kind = ING_VT_HSTORE};
    check_t(&hs, 0, "\"a\"=>\"1\", \"b\"=>NULL, \"c d\"=>\"x\\\"y\\\\\"",
            "{\"a\":\"1\",\"b\":null,\"c d\":\"x\\\"y\\\\\"}");
    check_t(&hs, 0, "", "{}");
    check_t(&hs, 0, "\"k\"=>\"NULL\"", "{\"k\":\"NULL\"}");
    check_t(&hs, 0, "a=>b,c=>null", "{\"a\":\"b\",\"c\":null}");
    check_t(&hs, 0, "\"a\"=>", "\"\\\"a\\\"=>\"");
    check_t(&hs, 0, "\"a\"=\"b\"", "\"\\\"a\\\"=\\\"b\\\"\"");
    check_t(&hs, 0, "NULL=>\"b\"", "\"NULL=>\\\"b\\\"\"");
    check_t(&hs, 0, "\"a\"=>\"b\" \"c\"=>\"d\"", "\"\\\"a\\\"=>\\\"b\\\" \\\"c\\\"=>\\\"d\\\"\"");
}

static void test_domains_depth(void **state)
{
    /* a domain over int renders as int; over int[] as an array */
    static const ing_vtype dint = {.oid = ING_INT4OID, .kind = ING_VT_SCALAR};
    check_t(&dint, 0, "42", "42");
    static const ing_vtype dintarr = {.oid = ING_INT4ARRAYOID, .kind = ING_VT_SCALAR};
    check_t(&dintarr, 0, "{1,2}", "[1,2]");
    /* an array of a domain over int[]: elements are arrays, quoted */
    static const ing_vtype arr_of_d = {
        .oid = 1, .kind = ING_VT_ARRAY, .delim = ',', .elem_oid = 2, .elem = &dintarr};
    check_t(&arr_of_d, 0, "{\"{1,2}\",\"{3}\",NULL}", "[[1,2],[3],null]");
    /* nesting past ING_VALUE_MAXDEPTH: the innermost parts as text */
    ing_vtype chain[ING_VALUE_MAXDEPTH + 2];
    chain[0] = (ing_vtype){.oid = ING_INT4ARRAYOID, .kind = ING_VT_SCALAR};
    for (int i = 1; i < ING_VALUE_MAXDEPTH + 2; i++)
        chain[i] = (ing_vtype){
            .oid = 1, .kind = ING_VT_ARRAY, .delim = ',', .elem_oid = 1, .elem = &chain[i - 1]};
    /* the literal of chain[top]: each level quotes the one below */
    wh_buf lit, tmp;
    wh_buf_init(&lit, 0);
    wh_buf_init(&tmp, 0);
    wh_buf_puts(&lit, "{1}");
    for (int i = 1; i < ING_VALUE_MAXDEPTH + 2; i++) {
        wh_buf_reset(&tmp);
        wh_buf_puts(&tmp, "{\"");
        for (size_t k = 0; k < lit.len; k++) {
            if (lit.data[k] == '"' || lit.data[k] == '\\')
                wh_buf_putc(&tmp, '\\');
            wh_buf_putc(&tmp, lit.data[k]);
        }
        wh_buf_puts(&tmp, "\"}");
        wh_buf_reset(&lit);
        wh_buf_append(&lit, tmp.data, tmp.len);
    }
    wh_buf out;
    wh_buf_init(&out, 0);
    assert_int_equal(ing_value_typed(&out, &chain[ING_VALUE_MAXDEPTH + 1], lit.data, lit.len),
                     WH_OK);
    wh_buf_cstr(&out);
    /* ING_VALUE_MAXDEPTH arrays open, then a string */
    for (int i = 0; i < ING_VALUE_MAXDEPTH; i++)
        assert_int_equal(out.data[i], '[');
    assert_int_equal(out.data[ING_VALUE_MAXDEPTH], '"');
    wh_json *j = NULL;
    char err[WH_ERRLEN];
    assert_int_equal(wh_json_parse(out.data, out.len, &j, err, sizeof(err)), WH_OK);
    wh_json_free(j);
    wh_buf_free(&out);
    wh_buf_free(&lit);
    wh_buf_free(&tmp);
}

/* a full buffer mid-array: WH_ERR, never a half value passed as OK */
static void test_bounded(void **state)
{
    const char *in = "{\"a b\",\"c d\",\"e f\",\"(1,2)\"}";
    for (size_t max = 1; max < 40; max++) {
        wh_buf b;
        wh_buf_init(&b, max);
        int rc = ing_value_json(&b, ING_TEXTARRAYOID, in, strlen(in));
        assert_true(b.len <= max);
        if (rc == WH_OK) {
            wh_buf_cstr(&b);
            assert_string_equal(b.data, "[\"a b\",\"c d\",\"e f\",\"(1,2)\"]");
        }
        wh_buf_free(&b);
    }
    ing_values_thread_cleanup();
}

static void test_types_cache(void **state)
{
    char err[WH_ERRLEN];
    ing_types *t = NULL;
    assert_int_equal(ing_types_new(&t, err, sizeof(err)), WH_OK);
    /* the rows of the catalog query for comp2, _mood, dd (domain over a
     * domain over int), dtext, hs */
    const ing_typerow rows[] = {
        {16388, 'b', "_mood", 16389, ',', 0, NULL, 0},
        {16389, 'e', "mood", 0, ',', 0, NULL, 0},
        {16396, 'd', "posint", 0, ',', 23, NULL, 0},
        {16399, 'd', "dtext", 0, ',', 25, NULL, 0},
        {16401, 'd', "dd", 0, ',', 16396, NULL, 0},
        {16403, 'b', "_comp", 16404, ',', 0, NULL, 0},
        {16404, 'c', "comp", 0, ',', 0, "a", 23},
        {16404, 'c', "comp", 0, ',', 0, "b \"x\"", 25},
        {16404, 'c', "comp", 0, ',', 0, "m", 16389},
        {16404, 'c', "comp", 0, ',', 0, "d", 16401},
        {16407, 'c', "comp2", 0, ',', 0, "c", 16404},
        {16407, 'c', "comp2", 0, ',', 0, "cs", 16403},
        {16500, 'b', "hstore", 0, ',', 0, NULL, 0},
        {16600, 'd', "dcomp", 0, ',', 16404, NULL, 0},
        {16700, 'r', "floatrange", 0, ',', 0, NULL, 0},
        {16800, 'c', "cyc", 0, ',', 0, "self", 16801},
        {16801, 'b', "_cyc", 16800, ',', 0, NULL, 0},
    };
    assert_true(ing_types_needs(t, 16407));
    assert_false(ing_types_needs(t, 23));
    assert_null(ing_types_get(t, 1007)); /* built in: by OID */
    assert_int_equal(ing_types_load(t, rows, sizeof(rows) / sizeof(rows[0]), err, sizeof(err)),
                     WH_OK);
    assert_false(ing_types_needs(t, 16407));
    check_t(ing_types_get(t, 16388), 0, "{sad,NULL}", "[\"sad\",null]");
    check_t(ing_types_get(t, 16401), 0, "7", "7");
    check_t(ing_types_get(t, 16399), 0, "x", "\"x\"");
    check_t(ing_types_get(t, 16407), 0, "(\"(1,x,ok,5)\",\"{\"\"(2,y,sad,)\"\"}\")",
            "{\"c\":{\"a\":1,\"b \\\"x\\\"\":\"x\",\"m\":\"ok\",\"d\":5},"
            "\"cs\":[{\"a\":2,\"b \\\"x\\\"\":\"y\",\"m\":\"sad\",\"d\":null}]}");
    check_t(ing_types_get(t, 16500), 0, "\"k\"=>\"v\"", "{\"k\":\"v\"}");
    check_t(ing_types_get(t, 16600), 0, "(1,,,)",
            "{\"a\":1,\"b \\\"x\\\"\":null,\"m\":null,\"d\":null}");
    check_t(ing_types_get(t, 16700), 0, "[1.5,2)", "\"[1.5,2)\"");
    /* a cycle (PostgreSQL forbids it) ends in text, without looping */
    assert_non_null(ing_types_get(t, 16800));
    /* expire: still usable, but needed again; a reload replaces the entry
     * and keeps the old one alive */
    const ing_vtype *old = ing_types_get(t, 16404);
    ing_types_expire(t);
    assert_true(ing_types_needs(t, 16404));
    assert_ptr_equal(ing_types_get(t, 16404), old);
    const ing_typerow rows2[] = {
        {16404, 'c', "comp", 0, ',', 0, "renamed", 23},
    };
    assert_int_equal(ing_types_load(t, rows2, 1, err, sizeof(err)), WH_OK);
    assert_false(ing_types_needs(t, 16404));
    check_t(ing_types_get(t, 16404), 0, "(1)", "{\"renamed\":1}");
    check_t(old, 0, "(1,,,)", "{\"a\":1,\"b \\\"x\\\"\":null,\"m\":null,\"d\":null}");
    /* a type referring to one never read: that part is text */
    const ing_typerow rows3[] = {{16900, 'b', "_x", 16901, ',', 0, NULL, 0}};
    assert_int_equal(ing_types_load(t, rows3, 1, err, sizeof(err)), WH_OK);
    check_t(ing_types_get(t, 16900), 0, "{\"(1,2)\"}", "[\"(1,2)\"]");
    assert_int_equal(ing_types_load(t, NULL, 0, err, sizeof(err)), WH_OK);
    /* reclaim: the replaced comp is still reached by current entries
     * (comp2's field, _comp's element, dcomp's copy of its fields) */
    assert_int_equal(ing_types_replaced(t), 1);
    assert_int_equal(ing_types_reclaim(t), 0);
    check_t(old, 0, "(1,,,)", "{\"a\":1,\"b \\\"x\\\"\":null,\"m\":null,\"d\":null}");
    ing_types_free(t);
}

/* Reconnects (expire, every type read again, reclaim) leave no replaced
 * entry behind (they were kept until ing_types_free: ~12 KB per reconnect
 * for a 40-attribute composite); a replaced entry reached only through
 * another replaced one that a current entry reaches is kept. */
static void test_types_reclaim(void **state)
{
    char err[WH_ERRLEN];
    ing_types *t = NULL;
    assert_int_equal(ing_types_new(&t, err, sizeof(err)), WH_OK);
    ing_typerow rows[43];
    size_t n = 0;
    static char names[40][16];
    for (int i = 0; i < 40; i++) {
        snprintf(names[i], sizeof(names[i]), "a%d", i);
        rows[n++] = (ing_typerow){20000, 'c', "wide", 0, ',', 0, names[i], i % 2 ? 25 : 20002};
    }
    rows[n++] = (ing_typerow){20001, 'b', "_wide", 20000, ',', 0, NULL, 0};
    rows[n++] = (ing_typerow){20002, 'e', "e", 0, ',', 0, NULL, 0};
    for (int round = 0; round < 1000; round++) {
        ing_types_expire(t);
        assert_int_equal(ing_types_load(t, rows, n, err, sizeof(err)), WH_OK);
        assert_int_equal(ing_types_count(t), 3);
        assert_int_equal(ing_types_replaced(t), round == 0 ? 0 : 3);
        assert_int_equal(ing_types_reclaim(t), round == 0 ? 0 : 3);
        assert_int_equal(ing_types_replaced(t), 0);
    }
    assert_non_null(ing_types_get(t, 20001));
    /* chain: _wide (current, old epoch) -> wide (replaced) -> e (replaced) */
    ing_types_expire(t);
    assert_int_equal(ing_types_load(t, rows, 40, err, sizeof(err)), WH_OK); /* wide only */
    const ing_typerow erow = {20002, 'e', "e", 0, ',', 0, NULL, 0};
    assert_int_equal(ing_types_load(t, &erow, 1, err, sizeof(err)), WH_OK);
    assert_int_equal(ing_types_replaced(t), 2);
    assert_int_equal(ing_types_reclaim(t), 0); /* _wide reaches the old wide, which reaches e */
    ing_types_expire(t);
    assert_int_equal(ing_types_load(t, rows, n, err, sizeof(err)), WH_OK);
    assert_int_equal(ing_types_reclaim(t), 5);
    assert_int_equal(ing_types_replaced(t), 0);
    ing_types_free(t);
}

/* The whole literal as a JSON string (a container's fallback). */
static void check_text(const ing_vtype *t, uint32_t oid, const char *in)
{
    wh_buf want;
    wh_buf_init(&want, 0);
    assert_int_equal(wh_json_str(&want, in, strlen(in)), WH_OK);
    assert_int_equal(wh_buf_cstr(&want), WH_OK);
    check_t(t, oid, in, want.data);
    wh_buf_free(&want);
}

/* json/jsonb text inside a record or array is checked before it is
 * embedded: a descriptor read before ALTER TYPE ... DROP ATTRIBUTE b, ADD
 * ATTRIBUTE b text still says jsonb, and the text is not JSON. */
static void test_json_in_containers(void **state)
{
    static const ing_vfield pj_f[] = {
        {"\"a\":", 4, ING_INT4OID, NULL},
        {"\"b\":", 4, ING_JSONBOID, NULL},
    };
    static const ing_vtype pj = {.oid = 16391, .kind = ING_VT_RECORD, .nfields = 2, .fields = pj_f};
    static const ing_vtype pj_arr = {
        .oid = 16390, .kind = ING_VT_ARRAY, .delim = ',', .elem_oid = 16391, .elem = &pj};
    check_t(&pj, 0, "(1,\"{\"\"k\"\": [1, null]}\")", "{\"a\":1,\"b\":{\"k\": [1, null]}}");
    check_t(&pj, 0, "(4,5)", "{\"a\":4,\"b\":5}"); /* a text that is JSON */
    check_t(&pj, 0, "(4,)", "{\"a\":4,\"b\":null}");
    check_text(&pj, 0, "(2,\"secret value\")");
    check_text(&pj, 0, "(3,x)");
    check_text(&pj, 0, "(3,\"{\"\"k\"\": 1\")");
    check_text(&pj, 0, "(3,\"[1,]\")");
    /* in an array of the type: the element falls back, the array stays */
    check_t(&pj_arr, 0, "{\"(1,2)\",\"(2,\\\"x y\\\")\"}",
            "[{\"a\":1,\"b\":2},\"(2,\\\"x y\\\")\"]");
    /* jsonb[] and json[] (built-in arrays): their elements are checked too */
    check(199, "{\"{\\\"a\\\": 1}\",2,NULL}", "[{\"a\": 1},2,null]");
    check_text(NULL, 3807, "{\"not json\"}");
    check_text(NULL, 199, "{tru}");
    /* a json/jsonb column's own text (the Relation message's type): as is */
    check(ING_JSONBOID, "{\"k\": 1}", "{\"k\": 1}");
    ing_values_thread_cleanup();
}

static void test_json_valid(void **state)
{
    static const char *good[] = {
        "{}",
        "[]",
        " {\"a\":[1,2,{\"b\":null}],\"c\":\"x\\u00e9\\n\"} ",
        "\"s\"",
        "-1.5e3",
        "true",
        "false",
        "null",
        "0",
        "[[[]]]",
        "{\"a\":{\"b\":{}}}",
        "\"caf\xe9\"",
        "\r\n\t7\t",
    };
    static const char *bad[] = {
        "",
        " ",
        "{",
        "}",
        "{\"a\"}",
        "{\"a\":1,}",
        "[1,]",
        "[1 2]",
        "tru",
        "nul",
        "\"a\x01\"",
        "\"\\q\"",
        "\"\\u12g4\"",
        "01",
        "1.",
        "{\"a\":1}}",
        "secret value",
        "x",
        "{a:1}",
        "[1]x",
        "1 2",
        "\"abc",
        "[\"a\":1]",
        "{\"a\" 1}",
        "{1:2}",
        "+1",
        "NaN",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!ing_json_valid(good[i], strlen(good[i])))
            fail_msg("[%s] is JSON", good[i]);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (ing_json_valid(bad[i], strlen(bad[i])))
            fail_msg("[%s] is not JSON", bad[i]);
    /* deep nesting: 4096 levels are followed, deeper is refused */
    char deep[2 * 5000];
    for (int d = 4096; d <= 4097; d++) {
        memset(deep, '[', (size_t)d);
        memset(deep + d, ']', (size_t)d);
        assert_int_equal(ing_json_valid(deep, 2 * (size_t)d), d <= 4096);
    }
    memset(deep, '[', 100);
    memset(deep + 100, ']', 99);
    assert_false(ing_json_valid(deep, 199));
}

/* ing_values_mismatch_take: values rendered with a descriptor whose literal
 * did not match (a composite type changed since it was read). */
static void test_mismatch_note(void **state)
{
    static const ing_vfield pt_f[] = {
        {"\"x\":", 4, ING_INT4OID, NULL},
        {"\"y\":", 4, ING_INT4OID, NULL},
    };
    static const ing_vtype pt = {.oid = 16391, .kind = ING_VT_RECORD, .nfields = 2, .fields = pt_f};
    static const ing_vtype pt_arr = {
        .oid = 16390, .kind = ING_VT_ARRAY, .delim = ',', .elem_oid = 16391, .elem = &pt};
    const ing_vtype *first = &pt;
    ing_values_mismatch_take(NULL);
    check_t(&pt, 0, "(1,2)", "{\"x\":1,\"y\":2}");
    assert_int_equal(ing_values_mismatch_take(&first), 0);
    assert_null(first);
    /* an attribute added: the field count differs */
    check_text(&pt, 0, "(1,2,3)");
    check_t(&pt_arr, 0, "{\"(1,2,3)\"}", "[\"(1,2,3)\"]");
    assert_int_equal(ing_values_mismatch_take(&first), 2);
    assert_ptr_equal(first, &pt);
    assert_int_equal(ing_values_mismatch_take(&first), 0);
    /* a built-in type's literal that does not parse is not a mismatch */
    check_text(NULL, ING_INT4ARRAYOID, "{1,,2}");
    assert_int_equal(ing_values_mismatch_take(NULL), 0);
    ing_values_thread_cleanup();
}

/* ing_types_stale: the type and every type that reaches it are read again;
 * the others are not; the descriptors stay usable until then. */
static void test_types_stale(void **state)
{
    char err[WH_ERRLEN];
    ing_types *t = NULL;
    assert_int_equal(ing_types_new(&t, err, sizeof(err)), WH_OK);
    const ing_typerow rows[] = {
        {16390, 'b', "_pt", 16391, ',', 0, NULL, 0}, {16391, 'c', "pt", 0, ',', 0, "x", 23},
        {16391, 'c', "pt", 0, ',', 0, "y", 23},      {16392, 'c', "outer", 0, ',', 0, "p", 16391},
        {16393, 'd', "dpt", 0, ',', 16391, NULL, 0}, {16394, 'e', "mood", 0, ',', 0, NULL, 0},
    };
    assert_int_equal(ing_types_load(t, rows, sizeof(rows) / sizeof(rows[0]), err, sizeof(err)),
                     WH_OK);
    assert_string_equal(ing_types_name(t, 16391), "pt");
    assert_null(ing_types_name(t, 23));
    assert_null(ing_types_name(t, 17000));
    const ing_vtype *old = ing_types_get(t, 16391);
    assert_int_equal(ing_types_stale(t, 17000), 0);
    assert_int_equal(ing_types_stale(t, 16391), 4);
    assert_true(ing_types_needs(t, 16391));
    assert_true(ing_types_needs(t, 16390));
    assert_true(ing_types_needs(t, 16392));
    assert_true(ing_types_needs(t, 16393));
    assert_false(ing_types_needs(t, 16394));
    assert_ptr_equal(ing_types_get(t, 16391), old);
    /* read again (one query returns the type and what it reaches) */
    const ing_typerow rows2[] = {
        {16390, 'b', "_pt", 16391, ',', 0, NULL, 0},
        {16391, 'c', "pt", 0, ',', 0, "x", 23},
        {16391, 'c', "pt", 0, ',', 0, "y", 23},
        {16391, 'c', "pt", 0, ',', 0, "z", 23},
    };
    assert_int_equal(ing_types_load(t, rows2, 4, err, sizeof(err)), WH_OK);
    assert_false(ing_types_needs(t, 16391));
    assert_false(ing_types_needs(t, 16390));
    check_t(ing_types_get(t, 16390), 0, "{\"(1,2,3)\"}", "[{\"x\":1,\"y\":2,\"z\":3}]");
    check_t(old, 0, "(1,2)", "{\"x\":1,\"y\":2}");
    ing_types_free(t);
    ing_values_thread_cleanup();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numbers),       cmocka_unit_test(test_bool_json),
        cmocka_unit_test(test_strings),       cmocka_unit_test(test_timestamps),
        cmocka_unit_test(test_bytea),         cmocka_unit_test(test_arrays),
        cmocka_unit_test(test_vectors),       cmocka_unit_test(test_records),
        cmocka_unit_test(test_hstore),        cmocka_unit_test(test_domains_depth),
        cmocka_unit_test(test_bounded),       cmocka_unit_test(test_types_cache),
        cmocka_unit_test(test_types_reclaim), cmocka_unit_test(test_json_in_containers),
        cmocka_unit_test(test_json_valid),    cmocka_unit_test(test_mismatch_note),
        cmocka_unit_test(test_types_stale),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
