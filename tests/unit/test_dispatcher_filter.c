/* Unit tests for wh_filter: tables globs, operations, the expression
 * language (semantics and compile errors naming the position), column
 * lists, and the zero-allocation span reader it is built on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "wh_filter.h"
#include "wh_util.h"

static const char *EV =
    "{\"id\":\"default:0/1A2B3C8:0\",\"tenant\":\"default\",\"lsn\":\"0/1A2B3C8\",\"seq\":0,"
    "\"xid\":735,\"commit_ts\":\"2026-11-22T01:02:03.123456Z\",\"op\":\"insert\",\"schema\":"
    "\"public\",\"table\":\"orders\",\"key\":{\"id\":1},\"before\":null,"
    "\"after\":{\"id\":1,\"amount\":150,\"price\":\"99.90\",\"note\":\"caf\\u00e9 \\\"x\\\"\","
    "\"vip\":true,\"gone\":null,\"tags\":[1,2]}}";

static int expr_match(const char *expr, const char *ev)
{
    wh_filter_spec spec = {.expr = expr};
    wh_filter *f = NULL;
    char err[256];
    if (wh_filter_compile(&spec, &f, err, sizeof(err)) != WH_OK)
        fail_msg("%s: %s", expr, err);
    int r = wh_filter_match(f, ev, strlen(ev));
    wh_filter_free(f);
    return r;
}

static void expect_error(const char *expr, const char *needle)
{
    wh_filter_spec spec = {.expr = expr};
    wh_filter *f = NULL;
    char err[256];
    if (wh_filter_compile(&spec, &f, err, sizeof(err)) != WH_ERR)
        fail_msg("%s: compiled", expr);
    assert_null(f);
    if (!strstr(err, needle))
        fail_msg("%s: error \"%s\" lacks \"%s\"", expr, err, needle);
}

static void test_expressions(void **state)
{
    (void)state;
    assert_true(expr_match("table == \"orders\" && op == \"insert\" && after.amount > 100", EV));
    assert_false(expr_match("table == \"orders\" && op == \"insert\" && after.amount > 150", EV));
    assert_true(expr_match("after.amount >= 150 && after.amount <= 150", EV));
    assert_true(expr_match("after.amount != 151", EV));
    assert_true(expr_match("op in [\"insert\", \"update\"]", EV));
    assert_false(expr_match("op in ['delete']", EV));
    assert_true(expr_match("!(schema == \"audit\")", EV));
    assert_true(expr_match("not (schema == 'audit') and seq == 0", EV));
    assert_true(expr_match("table == \"x\" || table == \"orders\"", EV));
    assert_false(expr_match("table == \"x\" || table == \"y\"", EV));
    /* && binds tighter than || */
    assert_true(expr_match("table == \"orders\" || table == \"x\" && op == \"delete\"", EV));
    assert_false(expr_match("(table == \"orders\" || table == \"x\") && op == \"delete\"", EV));
    /* null: explicit and missing */
    assert_true(expr_match("before == null", EV));
    assert_true(expr_match("after.gone == null", EV));
    assert_true(expr_match("after.nosuch == null", EV));
    assert_true(expr_match("before.id == null", EV));
    assert_false(expr_match("after.id == null", EV));
    assert_true(expr_match("after.id != null", EV));
    /* a numeric rendered as a string compares as a number */
    assert_true(expr_match("after.price > 99.5", EV));
    assert_false(expr_match("after.price > 100", EV));
    assert_true(expr_match("after.price == \"99.90\"", EV));
    /* escapes in the event decoded */
    assert_true(expr_match("after.note == 'caf\xc3\xa9 \"x\"'", EV));
    assert_true(expr_match("after.note startswith \"caf\xc3\xa9\"", EV));
    assert_true(expr_match("table startswith \"ord\"", EV));
    assert_false(expr_match("table startswith \"orders_\"", EV));
    /* bare paths and booleans */
    assert_true(expr_match("after.vip", EV));
    assert_true(expr_match("after.vip == true", EV));
    assert_false(expr_match("after.id", EV));
    assert_true(expr_match("true", EV));
    /* different kinds: ordering is false, equality false */
    assert_false(expr_match("after.vip > 1", EV));
    assert_false(expr_match("after.tags == 1", EV));
    assert_false(expr_match("table < 5", EV));
    assert_true(expr_match("table < \"p\"", EV));
    assert_true(expr_match("commit_ts >= \"2026-11-22\"", EV));
    assert_true(expr_match("xid == 735 && key.id in [1, 2]", EV));
    assert_true(expr_match("   ", EV)); /* empty: no filter */
    /* a malformed event passes (the renderer reports it) */
    assert_true(expr_match("table == \"x\"", "{\"table\":"));
    assert_false(expr_match("table == \"x\"", "{\"table\":\"y\"}"));
}

static void test_compile_errors(void **state)
{
    (void)state;
    expect_error("table ==", "position 7: expected a value after the comparison");
    expect_error("table == \"x", "position 10: unterminated string");
    expect_error("(op == 'x'", "missing ')'");
    expect_error("op in 'x'", "expected '[' after 'in'");
    expect_error("op in [after.x]", "literals");
    expect_error("op in ['a' 'b']", "expected ',' or ']'");
    expect_error("op == 'x' )", "position 11: unexpected ')'");
    expect_error("op # 1", "position 4: unexpected character");
    expect_error("op startswith 3", "expected a string after 'startswith'");
    expect_error("== 3", "position 1: expected a value");
    expect_error("a == 1x", "bad number");
    expect_error("a.b.c.d.e.f.g.h.i == 1", "too many segments");
    expect_error("'\\q'", "unknown escape");
    char deep[200];
    memset(deep, '!', 100);
    snprintf(deep + 100, sizeof(deep) - 100, "true");
    expect_error(deep, "nested too deeply");
    char *longexpr = malloc(WH_FILTER_EXPR_MAX + 16);
    memset(longexpr, 'a', WH_FILTER_EXPR_MAX + 10);
    longexpr[WH_FILTER_EXPR_MAX + 10] = '\0';
    expect_error(longexpr, "longer than");
    free(longexpr);
}

static void test_tables_ops(void **state)
{
    (void)state;
    const char *tables[] = {"ord*", "audit.*"};
    const char *ops[] = {"insert", "delete"};
    wh_filter_spec spec = {.tables = tables, .ntables = 2, .operations = ops, .noperations = 2};
    wh_filter *f;
    char err[256];
    assert_int_equal(wh_filter_compile(&spec, &f, err, sizeof(err)), WH_OK);
    assert_true(wh_filter_match(f, EV, strlen(EV)));
    const char *upd = "{\"op\":\"update\",\"schema\":\"public\",\"table\":\"orders\"}";
    assert_false(wh_filter_match(f, upd, strlen(upd)));
    const char *other = "{\"op\":\"insert\",\"schema\":\"public\",\"table\":\"users\"}";
    assert_false(wh_filter_match(f, other, strlen(other)));
    const char *audit = "{\"op\":\"delete\",\"schema\":\"audit\",\"table\":\"users\"}";
    assert_true(wh_filter_match(f, audit, strlen(audit)));
    const char *msg = "{\"op\":\"message\",\"schema\":null,\"table\":null}";
    assert_false(wh_filter_match(f, msg, strlen(msg))); /* operations exclude it */
    wh_filter_free(f);
    /* messages are not subject to the table globs */
    spec.operations = NULL;
    spec.noperations = 0;
    assert_int_equal(wh_filter_compile(&spec, &f, err, sizeof(err)), WH_OK);
    assert_true(wh_filter_match(f, msg, strlen(msg)));
    wh_filter_free(f);
    /* errors name the part */
    const char *badops[] = {"insert", "upsert"};
    wh_filter_spec bad = {.operations = badops, .noperations = 2};
    assert_int_equal(wh_filter_compile(&bad, &f, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "filter.operations[1]: unknown operation \"upsert\""));
    const char *cols[] = {"a"};
    wh_filter_spec both = {.columns_include = cols,
                           .ncolumns_include = 1,
                           .columns_exclude = cols,
                           .ncolumns_exclude = 1};
    assert_int_equal(wh_filter_compile(&both, &f, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "filter.columns"));
    /* an empty spec compiles to NULL: everything passes */
    wh_filter_spec none = {0};
    assert_int_equal(wh_filter_compile(&none, &f, err, sizeof(err)), WH_OK);
    assert_null(f);
    assert_true(wh_filter_match(NULL, EV, strlen(EV)));
}

/* Snapshot and backfill rows (op "read"): "read" can be listed, and a
 * list naming insert passes them too (the insert of a row that existed
 * before); a list without either drops them. */
static void test_ops_read(void **state)
{
    (void)state;
    const char *rd = "{\"op\":\"read\",\"schema\":\"public\",\"table\":\"orders\"}";
    const char *ins = "{\"op\":\"insert\",\"schema\":\"public\",\"table\":\"orders\"}";
    const char *upd = "{\"op\":\"update\",\"schema\":\"public\",\"table\":\"orders\"}";
    char err[256];
    wh_filter *f;
    const char *iud[] = {"insert", "update", "delete"};
    wh_filter_spec spec = {.operations = iud, .noperations = 3};
    assert_int_equal(wh_filter_compile(&spec, &f, err, sizeof(err)), WH_OK);
    assert_true(wh_filter_match(f, rd, strlen(rd)));
    assert_true(wh_filter_match(f, ins, strlen(ins)));
    wh_filter_free(f);
    const char *r[] = {"read"};
    wh_filter_spec only = {.operations = r, .noperations = 1};
    if (wh_filter_compile(&only, &f, err, sizeof(err)) != WH_OK)
        fail_msg("read refused: %s", err);
    assert_true(wh_filter_match(f, rd, strlen(rd)));
    assert_false(wh_filter_match(f, ins, strlen(ins))); /* read alone: no live inserts */
    wh_filter_free(f);
    const char *u[] = {"update"};
    wh_filter_spec nor = {.operations = u, .noperations = 1};
    assert_int_equal(wh_filter_compile(&nor, &f, err, sizeof(err)), WH_OK);
    assert_false(wh_filter_match(f, rd, strlen(rd)));
    assert_true(wh_filter_match(f, upd, strlen(upd)));
    wh_filter_free(f);
}

/* Numbers compare exactly as decimal text: bigint beyond 2^53, numeric
 * with more digits than a double holds, 64 digits and more, exponents,
 * and PostgreSQL's Infinity, -Infinity and NaN (its order: -Infinity <
 * numbers < Infinity < NaN). */
static void test_numbers_exact(void **state)
{
    (void)state;
    const char *big = "{\"op\":\"insert\",\"key\":{\"id\":9007199254740992},\"after\":{"
                      "\"id\":9007199254740992,\"s\":\"9007199254740992\"}}";
    assert_false(expr_match("key.id == 9007199254740993", big));
    assert_true(expr_match("key.id != 9007199254740993", big));
    assert_false(expr_match("key.id in [9007199254740993]", big));
    assert_true(expr_match("key.id in [1, 9007199254740992]", big));
    assert_true(expr_match("key.id < 9007199254740993", big));
    assert_true(expr_match("after.id == 9007199254740992", big));
    assert_true(expr_match("after.s == 9007199254740992.000", big));
    assert_true(expr_match("after.s > 9007199254740991.9999999999999999", big));
    assert_true(expr_match("after.id == after.s", big));
    assert_true(expr_match("key.id == 9.007199254740992e15", big));
    assert_false(expr_match("key.id == 9.007199254740993e15", big));
    assert_true(expr_match("18446744073709551617 > key.id", big));

    const char *num = "{\"after\":{\"a\":\"12345678901234567890.0000000001\",\"b\":\"0."
                      "10000000000000000000001\",\"c\":\"1000."
                      "000000000000000000000000000000000000000000000000000000000000\","
                      "\"z\":\"-0.000\",\"n\":\"-12.5\",\"e\":1.5e3}}";
    assert_true(expr_match("after.a > 12345678901234567890", num));
    assert_false(expr_match("after.a == 12345678901234567890", num));
    assert_true(expr_match("after.a < 12345678901234567890.00000000011", num));
    assert_true(expr_match("after.b > 0.1", num));
    assert_true(expr_match("after.b < 0.10000000000000000000002", num));
    assert_true(expr_match("after.c > 100", num));
    assert_true(expr_match("after.c == 1000", num));
    assert_true(expr_match("after.c == 1e3 && after.c == 0.01e5", num));
    assert_true(expr_match("after.z == 0 && after.z >= -0", num));
    assert_true(expr_match("after.n < -12.49 && after.n > -12.51 && after.n < 0", num));
    assert_true(expr_match("after.e == 1500 && after.e > 1499.999", num));
    /* a literal of 64 digits and more */
    assert_true(expr_match("after.c < 1000000000000000000000000000000000000000000000000000000000000"
                           "000000000000",
                           num));
    assert_true(expr_match("after.a == 12345678901234567890.0000000001000000000000000000000000000"
                           "00000000000000",
                           num));

    const char *inf = "{\"after\":{\"p\":\"Infinity\",\"m\":\"-Infinity\",\"x\":\"NaN\","
                      "\"q\":\"Infinityx\"}}";
    assert_true(expr_match("after.p > 1e308 && after.p >= 99999999999999999999999", inf));
    assert_true(expr_match("after.m < -1e308", inf));
    assert_true(expr_match("after.m < after.p && after.p < after.x", inf));
    assert_true(expr_match("after.x > 5 && after.x == after.x", inf));
    assert_false(expr_match("after.p == 1", inf));
    assert_true(expr_match("after.p == \"Infinity\"", inf));
    assert_false(expr_match("after.q > 1", inf)); /* not a number: not comparable */
    assert_false(expr_match("after.q < 1", inf));
}

/* A string compared with another path's string: any length (the left one
 * was decoded into a 512-byte buffer, longer ones were not comparable),
 * escapes decoded on both sides. */
static void test_long_strings(void **state)
{
    (void)state;
    size_t n = 600;
    char *ev = malloc(5 * n + 256);
    char *v = malloc(n + 1);
    memset(v, 'x', n);
    v[n] = '\0';
    snprintf(ev, 5 * n + 256,
             "{\"before\":{\"note\":\"%s\"},\"after\":{\"note\":\"%s\","
             "\"esc\":\"%.*s\\u0078\",\"big\":\"%.*sy\"}}",
             v, v, (int)n - 1, v, (int)n - 1, v);
    assert_true(expr_match("after.note == before.note", ev));
    assert_false(expr_match("after.note != before.note", ev));
    assert_true(expr_match("after.esc == before.note", ev)); /* \u0078 is x */
    assert_true(expr_match("before.note == after.esc", ev));
    assert_true(expr_match("after.big > before.note", ev));
    assert_true(expr_match("before.note < after.big && after.esc < after.big", ev));
    assert_false(expr_match("after.big == after.esc", ev));
    free(ev);
    free(v);
}

static void test_columns_rewrite(void **state)
{
    (void)state;
    const char *inc[] = {"id", "amount"};
    wh_filter_spec spec = {.columns_include = inc, .ncolumns_include = 2};
    wh_filter *f;
    char err[256];
    assert_int_equal(wh_filter_compile(&spec, &f, err, sizeof(err)), WH_OK);
    assert_true(wh_filter_has_columns(f));
    wh_buf b;
    wh_buf_init(&b, 0);
    const char *ev = "{\"op\":\"update\",\"key\":{\"id\":1},\"before\":{\"id\":1,\"x\":[1,{}]},"
                     "\"after\":{\"id\":1,\"amount\":2,\"big\":\"t\"},\"unchanged\":[\"big\","
                     "\"amount\"]}";
    assert_int_equal(wh_filter_rewrite(f, ev, strlen(ev), &b), WH_OK);
    wh_buf_cstr(&b);
    assert_string_equal(b.data, "{\"op\":\"update\",\"key\":{\"id\":1},\"before\":{\"id\":1},"
                                "\"after\":{\"id\":1,\"amount\":2},\"unchanged\":[\"amount\"]}");
    /* key is the row's identity: an include list without its columns
     * leaves it whole (a delete's before may be emptied, never its key) */
    wh_filter_free(f);
    const char *amt[] = {"amount"};
    wh_filter_spec only = {.columns_include = amt, .ncolumns_include = 1};
    assert_int_equal(wh_filter_compile(&only, &f, err, sizeof(err)), WH_OK);
    const char *del = "{\"op\":\"delete\",\"key\":{\"id\":1,\"k2\":\"a\"},\"before\":{\"id\":1,"
                      "\"k2\":\"a\"},\"after\":null}";
    wh_buf_reset(&b);
    assert_int_equal(wh_filter_rewrite(f, del, strlen(del), &b), WH_OK);
    wh_buf_cstr(&b);
    assert_string_equal(b.data, "{\"op\":\"delete\",\"key\":{\"id\":1,\"k2\":\"a\"},"
                                "\"before\":{},\"after\":null}");
    /* malformed: error, buffer restored */
    wh_buf_reset(&b);
    wh_buf_puts(&b, "keep");
    assert_int_equal(wh_filter_rewrite(f, "{\"after\":{\"id\":", 14, &b), WH_ERR);
    assert_int_equal(b.len, 4);
    wh_filter_free(f);
    wh_buf_free(&b);
}

static void test_spans(void **state)
{
    (void)state;
    wh_json_span ev, v;
    assert_int_equal(wh_json_span_value(EV, strlen(EV), &ev), WH_OK);
    assert_int_equal(ev.type, WH_JSON_OBJECT);
    assert_int_equal(ev.len, strlen(EV));
    assert_int_equal(wh_json_span_get(&ev, "after", 5, &v), WH_OK);
    wh_json_span tags;
    assert_int_equal(wh_json_span_get(&v, "tags", 4, &tags), WH_OK);
    assert_int_equal(tags.type, WH_JSON_ARRAY);
    size_t pos = 0, n = 0;
    wh_json_span el;
    while (wh_json_span_next(&tags, &pos, NULL, &el) == 1)
        n++;
    assert_int_equal(n, 2);
    char buf[8];
    wh_json_span note;
    assert_int_equal(wh_json_span_get(&v, "note", 4, &note), WH_OK);
    assert_int_equal(wh_json_span_str(&note, buf, sizeof(buf), NULL), WH_ERR); /* too small */
    char big[64];
    size_t len;
    assert_int_equal(wh_json_span_str(&note, big, sizeof(big), &len), WH_OK);
    assert_string_equal(big, "caf\xc3\xa9 \"x\"");
    const char *bad[] = {"", "{", "{\"a\":}", "[1,2}", "\"abc", "nul", "-", "{\"a\" 1}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        wh_json_span s;
        int r = wh_json_span_value(bad[i], strlen(bad[i]), &s);
        if (r == WH_OK && (s.type == WH_JSON_OBJECT || s.type == WH_JSON_ARRAY)) {
            size_t p = 0;
            wh_json_span k, x;
            int rr;
            while ((rr = wh_json_span_next(&s, &p, &k, &x)) == 1)
                ;
            assert_int_equal(rr, -1);
        } else {
            assert_int_equal(r, WH_ERR);
        }
    }
    double d;
    wh_json_span num = {.p = "\"1e3\"", .len = 5, .type = WH_JSON_STRING};
    assert_int_equal(wh_json_span_num(&num, &d), WH_OK);
    assert_true(d == 1000.0);
    wh_json_span notnum = {.p = "\"1e\"", .len = 4, .type = WH_JSON_STRING};
    assert_int_equal(wh_json_span_num(&notnum, &d), WH_ERR);
}

static void assert_index_equal(const wh_evidx *a, const wh_evidx *b, const char *ev, size_t len,
                               const char *what)
{
    if (a->state != b->state || a->found != b->found || a->ev_off != b->ev_off ||
        a->ev_len != b->ev_len || a->sub_found != b->sub_found)
        fail_msg("%s: index differs (state %d/%d found %x/%x sub %x/%x) on %.*s", what, a->state,
                 b->state, a->found, b->found, a->sub_found, b->sub_found, (int)len, ev);
    for (int i = 0; i < WH_EV_NFIELDS; i++)
        if ((a->found & (1u << i)) &&
            (a->off[i] != b->off[i] || a->len[i] != b->len[i] || a->type[i] != b->type[i]))
            fail_msg("%s: member %d differs on %.*s", what, i, (int)len, ev);
    for (int j = 0; j < WH_EVX_SUB_MAX; j++)
        if ((a->sub_found & (1u << j)) &&
            (a->sub_off[j] != b->sub_off[j] || a->sub_len[j] != b->sub_len[j] ||
             a->sub_type[j] != b->sub_type[j]))
            fail_msg("%s: sub-member %d differs on %.*s", what, j, (int)len, ev);
}

/* The index wh_filter_match_ix leaves (quote and bracket maps, predicted
 * member order) equals the plain walk's (wh_evidx_build_scan) member for
 * member, with the maps built the CPU's best way and the baseline way
 * (wh_evidx_baseline); so does wh_evidx_build's (no filter: key, before
 * and after passed by their brackets). */
static void assert_same_index(const wh_filter *f, const char *ev, size_t len)
{
    wh_evidx a, b;
    memset(&b, 0x5A, sizeof(b));
    wh_evidx_build_scan(f, ev, len, &b);
    int m = wh_filter_match(f, ev, len);
    for (int base = 0; base < 2; base++) {
        wh_evidx_baseline(base);
        memset(&a, 0xA5, sizeof(a));
        /* and the answer is the one of a fresh match */
        assert_int_equal(wh_filter_match_ix(f, ev, len, &a), m);
        assert_index_equal(&a, &b, ev, len, base ? "baseline maps" : "maps");
        wh_evidx_build(ev, len, &a);
        wh_evidx c;
        wh_evidx_build_scan(NULL, ev, len, &c);
        assert_index_equal(&a, &c, ev, len, base ? "no filter, baseline maps" : "no filter");
    }
    wh_evidx_baseline(0);
}

/* assert_same_index on ev, on each prefix of it closed with '}', and on ev
 * with each byte replaced by each character of subst; buf holds len bytes. */
static void assert_same_index_mutants(const wh_filter *f, const char *ev, size_t len,
                                      const char *subst, char *buf)
{
    assert_same_index(f, ev, len);
    for (size_t p = 0; p < len; p++) {
        memcpy(buf, ev, p);
        buf[p] = '}';
        assert_same_index(f, buf, p + 1);
        for (const char *k = subst; *k != '\0'; k++) {
            memcpy(buf, ev, len);
            buf[p] = *k;
            assert_same_index(f, buf, len);
        }
    }
}

static void test_index_walks(void **state)
{
    (void)state;
    static const char *evs[] = {
        /* the ingestor's layout, with and without escapes */
        "{\"id\":\"default:0/1A2B3C8:0\",\"tenant\":\"default\",\"lsn\":\"0/1A2B3C8\",\"seq\":0,"
        "\"xid\":735,\"commit_ts\":\"2026-11-22T01:02:03.123456Z\",\"op\":\"insert\",\"schema\":"
        "\"public\",\"table\":\"orders\",\"key\":{\"id\":1},\"before\":null,\"after\":{\"id\":1,"
        "\"customer\":\"customer 7\",\"amount\":\"12.50\",\"note\":\"n\",\"created_at\":"
        "\"2026-12-01T21:50:06.5Z\"}}",
        NULL, /* EV */
        /* a streamed change with its own LSN, and a snapshot row without */
        "{\"id\":\"default:0/1A2B3C8:1\",\"tenant\":\"default\",\"lsn\":\"0/1A2B3C8\",\"seq\":1,"
        "\"xid\":735,\"commit_ts\":\"2026-11-22T01:02:03.123456Z\",\"op\":\"update\","
        "\"change_lsn\":\"0/"
        "1A2B300\",\"schema\":\"public\",\"table\":\"orders\",\"key\":{\"id\":1},"
        "\"before\":null,\"after\":{\"id\":1,\"amount\":\"3\"}}",
        "{\"id\":\"default:0/1A2B3C8:2\",\"tenant\":\"default\",\"lsn\":\"0/1A2B3C8\",\"seq\":2,"
        "\"xid\":0,\"commit_ts\":\"2026-11-22T01:02:03.123456Z\",\"op\":\"read\",\"schema\":"
        "\"public\",\"table\":\"orders\",\"key\":{\"id\":2},\"before\":null,\"after\":{\"id\":2}}",
        /* members out of order, repeated, unknown, whitespace */
        " { \"op\" : \"update\" , \"table\":\"t\", \"id\":\"x\",\"op\":\"delete\",\"zz\":[1,{\"a\":"
        "\"}\"}],\"after\" :{ \"amount\" : -1.5e2 , \"amount\":3 },\"after\":{\"amount\":9}}\n",
        /* names that start like the predicted ones */
        "{\"id\":\"a\",\"tenantx\":\"b\",\"tenant\":\"t\",\"lsn\":\"0/1\",\"seq\":1,\"xid\":2,"
        "\"commit_ts\":null,\"op\":\"message\",\"schema\":null,\"table\":null,\"key\":null,"
        "\"before\":null,\"after\":null,\"prefix\":\"p\",\"content\":\"aGk=\"}",
        /* nested values in key/before/after, and arrays of strings */
        "{\"id\":\"a\",\"key\":{\"k\":{\"x\":[\"]\",\"}\"]},\"id\":2},\"before\":{\"id\":[],"
        "\"amount\":"
        "{}},\"after\":{\"id\":{\"amount\":5},\"amount\":\"7\",\"tags\":[\"a\",\"b\"]}}",
        /* malformed: scalars, unterminated strings, brackets */
        "{\"id\":\"a\",\"after\":{\"amount\":tru,\"x\":1},\"op\":\"insert\"}",
        "{\"id\":\"a\",\"after\":{\"amount\":1,\"x\":nul},\"op\":\"insert\"}",
        "{\"id\":\"a\",\"after\":{\"amount\":1,\"x\":\"},\"op\":\"insert\"}",
        "{\"id\":\"a\",\"after\":{\"amount\":1]},\"op\":\"insert\"}",
        "{\"id\":\"a\",\"op\":\"insert\",}",
        "{\"id\":\"a\" \"op\":\"insert\"}",
        "{\"id\"\"a\"}",
        "{\"id\":}",
        "{}",
        "{ }",
        "[]",
        "{\"id\":0123}",
        "{\"id\":12.5,\"xid\":1e3,\"seq\":-1}",
    };
    const char *cols[] = {"note"};
    wh_filter_spec spec = {
        .expr = "table == \"orders\" && op == \"insert\" && after.amount > 1 || key.id == 2 || "
                "before.amount == null || after.customer startswith \"c\"",
        .columns_exclude = cols,
        .ncolumns_exclude = 1};
    wh_filter *f = NULL;
    char err[256];
    assert_int_equal(wh_filter_compile(&spec, &f, err, sizeof(err)), WH_OK);
    char buf[12000];
    for (size_t e = 0; e < sizeof(evs) / sizeof(evs[0]); e++) {
        const char *ev = evs[e] ? evs[e] : EV;
        size_t len = strlen(ev);
        /* every prefix closed with '}', and every byte replaced by a
         * structural character, a quote or a backslash */
        assert_same_index_mutants(f, ev, len, "\"\\{}[],: n1t-", buf);
    }
    /* long strings: quotes on both sides of 64-byte blocks, and an event
     * longer than the quote map holds */
    for (size_t pad = 0; pad < 140; pad++) {
        int n = snprintf(buf, sizeof(buf),
                         "{\"id\":\"%.*s\",\"op\":\"insert\",\"table\":\"orders\",\"after\":"
                         "{\"note\":\"%.*s\",\"amount\":2}}",
                         (int)pad,
                         "................................................................"
                         "................................................................"
                         "..............",
                         (int)(pad / 2),
                         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        assert_same_index(f, buf, (size_t)n);
        assert_true(wh_filter_match(f, buf, (size_t)n));
    }
    size_t at = (size_t)snprintf(buf, sizeof(buf), "{\"after\":{\"amount\":5,\"big\":\"");
    memset(buf + at, 'y', 9000);
    at += 9000;
    at +=
        (size_t)snprintf(buf + at, sizeof(buf) - at, "\"},\"table\":\"orders\",\"op\":\"insert\"}");
    assert_same_index(f, buf, at);
    assert_true(wh_filter_match(f, buf, at));
    wh_filter_free(f);
}

/* An event of the ingestor's layout whose key, before and after are rows
 * like make bench's backlog (d) (text, jsonb objects and arrays as the
 * ingestor inlines them, with spaces; text[]; numeric as strings), with
 * extra: brackets and quotes' neighbours in strings, strings and
 * containers across 64-byte blocks, and nested containers `depth` deep in
 * after (0: none). Returns its length. */
static size_t wide_event(char *buf, size_t cap, int id, int depth)
{
    char row[2048], deep[1200];
    size_t dn = 0; /* [[{"k":[[{"k":...1...}]]}]] */
    for (int d = 0; d < depth; d++) {
        if (d % 3 == 2) {
            memcpy(deep + dn, "{\"k\":", 5);
            dn += 5;
        } else {
            deep[dn++] = '[';
        }
    }
    if (depth > 0)
        deep[dn++] = '1';
    for (int d = depth - 1; d >= 0; d--)
        deep[dn++] = d % 3 == 2 ? '}' : ']';
    deep[dn] = '\0';
    int rn = snprintf(
        row, sizeof(row),
        "{\"id\":%d,\"c1\":\"40862c6e26e2f4baa5e3bb93523a295140862c6e26e2f4baa5e3bb93523a2951\","
        "\"c2\":\"a]b}c[d{e\",\"c3\":\"\",\"c4\":\"customer "
        "%d\",\"c5\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\",\"j1\":{\"id\": %d, \"ok\": true, \"name\": "
        "\"item ]}\", \"tags\": [\"a\", \"b\", %d, [], {}], \"price\": 1.25, \"n\": null},"
        "\"j2\":{\"zip\": 1, \"address\": {\"l\": [\"YyY_\", -0.5e-3]}},\"a1\":[\"alpha\",\"beta\","
        "\"gamma\",null],\"a2\":[[1,2],[3,[4,[5]]]],\"t1\":\"2026-12-01T21:50:12.123456Z\","
        "\"d\":%s,\"n1\":\"3.14159\",\"n2\":\"0.00000000000000000000\",\"n3\":-12345678.9,"
        "\"n4\":1e400,\"u\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\",\"b\":false,\"z\":null,"
        "\"c8\":\"x\"}",
        id, id, id, id, depth > 0 ? deep : "[]");
    assert_true(rn > 0 && (size_t)rn < sizeof(row));
    int n = snprintf(
        buf, cap,
        "{\"id\":\"default:0/10000000:0\",\"tenant\":\"default\",\"lsn\":\"0/10000000\",\"seq\":0,"
        "\"xid\":1000,\"commit_ts\":\"2026-12-01T21:50:06.123456Z\",\"op\":\"update\","
        "\"change_lsn\":\"0/FFFFFF0\",\"schema\":\"public\",\"table\":\"wide\",\"key\":%s,"
        "\"before\":%s,\"after\":%s,\"unchanged\":[\"c7\"]}",
        row, row, row);
    assert_true(n > 0 && (size_t)n < cap);
    return (size_t)n;
}

/* Containers passed by their brackets (the bracket map: nested jsonb and
 * arrays, and key, before and after themselves, wholly or after the
 * filter's sub-members) give the plain walk's index: on rows of the wide
 * shape, at and around the nesting limit, and with every byte replaced by
 * a bracket, a quote, or a byte the map's bracket test also takes. */
static void test_index_containers(void **state)
{
    (void)state;
    static const char *exprs[] = {
        "table == \"wide\" && op == \"update\" && after.n1 >= 0", /* after: sub-member, then the
                                                                     rest */
        "key.id == 1 || before.j2 != null || after.u startswith \"caf\" || after.c8 == \"x\"",
        "op == \"update\"", /* no sub-members */
    };
    static const char subst[] = "\"{}[]Yy_";
    char buf[12000], mut[12000];
    for (size_t x = 0; x < sizeof(exprs) / sizeof(exprs[0]); x++) {
        wh_filter_spec spec = {.expr = exprs[x]};
        wh_filter *f = NULL;
        char err[256];
        assert_int_equal(wh_filter_compile(&spec, &f, err, sizeof(err)), WH_OK);
        /* nesting around WH_JSON_SPAN_DEPTH: after is one level, d is
         * another, and its value's brackets the rest */
        for (int depth = 0; depth <= 258; depth += depth < 250 ? 50 : 1) {
            size_t len = wide_event(buf, sizeof(buf), 1 + depth, depth);
            assert_same_index(f, buf, len);
        }
        size_t len = wide_event(buf, sizeof(buf), 1, 3);
        assert_true(wh_filter_match(f, buf, len));
        assert_same_index_mutants(f, buf, len, subst, mut);
        wh_filter_free(f);
    }
}

/* Events that end where a page the process may not read begins, of every
 * length up to 300 bytes and around the maps' limit (8 KiB), give the
 * plain walk's index: the maps' loads of the last, partial 64-byte block
 * and the bracket walk over it stay within the event. The containers are
 * left open so that the walk passes the event's closing brace and reads
 * the map to its end: a bracket bit past the event (a wrong byte in the
 * padding of the last block) would make it read the byte there, and
 * fault. A backslash anywhere, in an event of any length, means no maps. */
static void test_index_page_end(void **state)
{
    (void)state;
    static const char *shapes[] = {
        "{\"after\":{\"n1\":1,\"x\":{\"s\":\"%s\"}",       /* after open: the rest of it */
        "{\"id\":\"a\",\"zz\":{\"a\":{\"s\":\"%s\"}",      /* a nested value open */
        "{\"id\":\"a\",\"zz\":[{\"a\":[{\"s\":\"%s\"}]}",  /* an array open */
        "{\"after\":{\"n1\":1,\"x\":{\"s\":\"%s}",         /* a string open */
        "{\"id\":\"%s\",\"after\":{\"n1\":1,\"x\":[{}]}}", /* well formed */
        "{\"id\":\"\\\"%s\"}", /* an escaped quote: no maps, whatever the length */
    };
    static const char *exprs[] = {"after.n1 == 1", "op == \"insert\""};
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), npg = (8300 + pg - 1) / pg;
    char *region =
        mmap(NULL, (npg + 1) * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(region != MAP_FAILED);
    assert_int_equal(mprotect(region + npg * pg, pg, PROT_NONE), 0);
    char *end = region + npg * pg, *fill = malloc(8300), *ev = malloc(8400);
    assert_non_null(fill);
    assert_non_null(ev);
    for (size_t x = 0; x < sizeof(exprs) / sizeof(exprs[0]); x++) {
        wh_filter_spec spec = {.expr = exprs[x]};
        wh_filter *f = NULL;
        char err[256];
        assert_int_equal(wh_filter_compile(&spec, &f, err, sizeof(err)), WH_OK);
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
            for (size_t k = 0; k < 8200; k = k == 300 ? 8060 : k + 1) {
                memset(fill, 'y', k);
                fill[k] = '\0';
                int n = snprintf(ev, 8400, shapes[s], fill);
                assert_true(n > 0 && n < 8400);
                memcpy(end - n, ev, (size_t)n);
                assert_same_index(f, end - n, (size_t)n);
            }
        }
        wh_filter_free(f);
    }
    free(fill);
    free(ev);
    assert_int_equal(munmap(region, (npg + 1) * pg), 0);
}

/* `path OP literal` (read without building values) answers what the
 * mirrored `literal OP' path` (the general comparison) answers. */
static void test_compare_mirrored(void **state)
{
    (void)state;
    static const char *paths[] = {"after.amount", "after.price",  "after.note", "after.vip",
                                  "after.gone",   "after.nosuch", "after.tags", "table",
                                  "xid",          "key",          "before",     "seq"};
    static const char *lits[] = {"150",   "99.9",      "0",       "-1",   "1e3", "\"orders\"",
                                 "\"x\"", "\"99.90\"", "\"150\"", "true", "null"};
    static const struct {
        const char *op, *mirror;
    } ops[] = {{"==", "=="}, {"!=", "!="}, {"<", ">"}, {"<=", ">="}, {">", "<"}, {">=", "<="}};
    for (size_t p = 0; p < sizeof(paths) / sizeof(paths[0]); p++)
        for (size_t l = 0; l < sizeof(lits) / sizeof(lits[0]); l++)
            for (size_t o = 0; o < sizeof(ops) / sizeof(ops[0]); o++) {
                char a[128], b[128];
                snprintf(a, sizeof(a), "%s %s %s", paths[p], ops[o].op, lits[l]);
                snprintf(b, sizeof(b), "%s %s %s", lits[l], ops[o].mirror, paths[p]);
                if (expr_match(a, EV) != expr_match(b, EV))
                    fail_msg("\"%s\" and \"%s\" differ", a, b);
            }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expressions),     cmocka_unit_test(test_compile_errors),
        cmocka_unit_test(test_tables_ops),      cmocka_unit_test(test_ops_read),
        cmocka_unit_test(test_numbers_exact),   cmocka_unit_test(test_long_strings),
        cmocka_unit_test(test_columns_rewrite), cmocka_unit_test(test_spans),
        cmocka_unit_test(test_index_walks),     cmocka_unit_test(test_index_containers),
        cmocka_unit_test(test_index_page_end),  cmocka_unit_test(test_compare_mirrored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
