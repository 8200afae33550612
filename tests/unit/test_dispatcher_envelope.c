/* Unit tests for dsp_envelope: native, Debezium (its documented field
 * list), CloudEvents structured/batch (required attributes) and binary
 * mode (ce-* headers), column lists, malformed events. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "../../services/dispatcher/dsp_envelope.h"
#include "../../services/dispatcher/dsp_target.h"
#include "../../services/dispatcher/dsp_webhook.h"
#include "wh_util.h"

static const char *EV_UPD =
    "{\"id\":\"default:0/1A2B3C8:0\",\"tenant\":\"default\",\"lsn\":\"0/1A2B3C8\",\"seq\":0,"
    "\"xid\":735,\"commit_ts\":\"2026-11-22T01:02:03.123456Z\",\"op\":\"update\",\"schema\":"
    "\"public\",\"table\":\"orders\",\"key\":{\"id\":1},\"before\":{\"id\":1,\"note\":\"x\"},"
    "\"after\":{\"id\":1,\"note\":\"y\",\"amount\":\"12.50\"}}";
static const char *EV_INS =
    "{\"id\":\"default:0/1A2B3C8:1\",\"tenant\":\"default\",\"lsn\":\"0/1A2B3C8\",\"seq\":1,"
    "\"xid\":735,\"commit_ts\":\"2026-11-22T01:02:03.123456Z\",\"op\":\"insert\",\"schema\":"
    "\"public\",\"table\":\"my table\",\"key\":{\"id\":2},\"before\":null,"
    "\"after\":{\"id\":2,\"note\":\"z\"}}";
static const char *EV_DEL =
    "{\"id\":\"default:0/1A2B3D0:0\",\"tenant\":\"default\",\"lsn\":\"0/1A2B3D0\",\"seq\":0,"
    "\"xid\":736,\"commit_ts\":\"2026-11-22T01:02:04Z\",\"op\":\"delete\",\"schema\":"
    "\"public\",\"table\":\"orders\",\"key\":{\"id\":1},\"before\":{\"id\":1},\"after\":null}";
static const char *EV_TRUNC =
    "{\"id\":\"default:0/1A2B3E0:0\",\"tenant\":\"default\",\"lsn\":\"0/1A2B3E0\",\"seq\":0,"
    "\"xid\":737,\"commit_ts\":\"2026-11-22T01:02:05.5Z\",\"op\":\"truncate\",\"schema\":"
    "\"public\",\"table\":\"orders\",\"key\":null,\"before\":null,\"after\":null,"
    "\"options\":{\"cascade\":false,\"restart_identity\":false}}";
static const char *EV_MSG =
    "{\"id\":\"default:0/1A2B3F0:0\",\"tenant\":\"default\",\"lsn\":\"0/1A2B3F0\",\"seq\":0,"
    "\"xid\":0,\"commit_ts\":null,\"op\":\"message\",\"schema\":null,\"table\":null,\"key\":null,"
    "\"before\":null,\"after\":null,\"prefix\":\"p\",\"content\":\"aGk=\"}";

static int render(dsp_env_kind k, const wh_filter *cols, const char **evs, size_t n, wh_buf *b,
                  dsp_env_out *out, char *err)
{
    const void *p[8];
    size_t l[8];
    for (size_t i = 0; i < n; i++) {
        p[i] = evs[i];
        l[i] = strlen(evs[i]);
    }
    dsp_env_opts o = {.kind = k, .db = "shop", .columns = cols, .now_ms = 1800000000000};
    return dsp_env_render(&o, p, l, n, b, out, err, 256);
}

static json_t *parse(const wh_buf *b)
{
    json_error_t je;
    json_t *j = json_loadb(b->data, b->len, 0, &je);
    if (!j)
        fail_msg("not JSON: %s: %.*s", je.text, (int)b->len, b->data);
    return j;
}

static void test_parse_names(void **state)
{
    (void)state;
    dsp_env_kind k;
    char err[256];
    assert_int_equal(dsp_env_parse("debezium", &k, err, sizeof(err)), WH_OK);
    assert_int_equal(k, DSP_ENV_DEBEZIUM);
    assert_int_equal(dsp_env_parse("cloudevents-binary", &k, err, sizeof(err)), WH_OK);
    assert_int_equal(k, DSP_ENV_CLOUDEVENTS_BINARY);
    assert_string_equal(dsp_env_name(DSP_ENV_CLOUDEVENTS), "cloudevents");
    assert_int_equal(dsp_env_parse("avro", &k, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "\"avro\""));
}

static void test_native(void **state)
{
    (void)state;
    wh_buf b;
    wh_buf_init(&b, 0);
    dsp_env_out out;
    char err[256];
    const char *evs[] = {EV_UPD, EV_INS};
    assert_int_equal(render(DSP_ENV_NATIVE, NULL, evs, 2, &b, &out, err), WH_OK);
    assert_int_equal(out.consumed, 2);
    assert_int_equal(out.nheaders, 0);
    assert_string_equal(out.content_type, "application/json");
    wh_buf_cstr(&b);
    char expect[2048];
    snprintf(expect, sizeof(expect), "[%s,%s]", EV_UPD, EV_INS);
    assert_string_equal(b.data, expect);
    /* the buffer's memory is reused */
    char *mem = b.data;
    assert_int_equal(render(DSP_ENV_NATIVE, NULL, evs, 1, &b, &out, err), WH_OK);
    assert_ptr_equal(b.data, mem);
    wh_buf_free(&b);
}

static void test_debezium_fields(void **state)
{
    (void)state;
    wh_buf b;
    wh_buf_init(&b, 0);
    dsp_env_out out;
    char err[256];
    const char *evs[] = {EV_UPD, EV_INS, EV_DEL, EV_TRUNC, EV_MSG};
    assert_int_equal(render(DSP_ENV_DEBEZIUM, NULL, evs, 5, &b, &out, err), WH_OK);
    assert_string_equal(out.content_type, "application/json");
    json_t *a = parse(&b);
    assert_true(json_is_array(a));
    assert_int_equal(json_array_size(a), 5);
    const char *ops[] = {"u", "c", "d", "t", "m"};
    /* Debezium PostgreSQL connector, "Change event values": payload fields
     * before, after, source, op, ts_ms (transaction when enabled); source:
     * version, connector, name, ts_ms, snapshot, db, sequence, schema, table,
     * txId, lsn, xmin. */
    const char *src_fields[] = {"version",  "connector", "name",  "ts_ms", "snapshot", "db",
                                "sequence", "schema",    "table", "txId",  "lsn",      "xmin"};
    for (size_t i = 0; i < 5; i++) {
        json_t *e = json_array_get(a, i);
        assert_string_equal(json_string_value(json_object_get(e, "op")), ops[i]);
        assert_true(json_is_integer(json_object_get(e, "ts_ms")));
        assert_int_equal(json_integer_value(json_object_get(e, "ts_ms")), 1800000000000LL);
        json_t *src = json_object_get(e, "source");
        assert_true(json_is_object(src));
        for (size_t k = 0; k < sizeof(src_fields) / sizeof(src_fields[0]); k++)
            if (!json_object_get(src, src_fields[k]))
                fail_msg("event %zu: source.%s missing", i, src_fields[k]);
        assert_string_equal(json_string_value(json_object_get(src, "connector")), "postgresql");
        assert_string_equal(json_string_value(json_object_get(src, "db")), "shop");
        assert_string_equal(json_string_value(json_object_get(src, "name")), "default");
        assert_true(json_is_integer(json_object_get(src, "lsn")));
        assert_true(json_is_integer(json_object_get(src, "txId")));
        if (i == 4) {
            json_t *m = json_object_get(e, "message");
            assert_string_equal(json_string_value(json_object_get(m, "prefix")), "p");
            assert_string_equal(json_string_value(json_object_get(m, "content")), "aGk=");
            assert_true(json_is_null(json_object_get(src, "table")));
        } else {
            assert_non_null(json_object_get(e, "before"));
            assert_non_null(json_object_get(e, "after"));
        }
    }
    json_t *u = json_array_get(a, 0), *src = json_object_get(u, "source");
    /* 2026-11-22T01:02:03.123Z */
    assert_int_equal(json_integer_value(json_object_get(src, "ts_ms")), 1795309323123LL);
    assert_int_equal(json_integer_value(json_object_get(src, "lsn")), 0x1A2B3C8);
    assert_int_equal(json_integer_value(json_object_get(src, "txId")), 735);
    assert_string_equal(json_string_value(json_object_get(src, "schema")), "public");
    assert_string_equal(json_string_value(json_object_get(src, "table")), "orders");
    assert_string_equal(json_string_value(json_object_get(json_object_get(u, "before"), "note")),
                        "x");
    assert_string_equal(json_string_value(json_object_get(json_object_get(u, "after"), "note")),
                        "y");
    assert_true(json_is_null(json_object_get(json_array_get(a, 1), "before")));
    assert_true(json_is_null(json_object_get(json_array_get(a, 2), "after")));
    json_decref(a);
    wh_buf_free(&b);
}

/* An event of a transaction with a replication origin ("origin" after
 * commit_ts, as the ingestor writes it): Debezium's source carries it (the
 * fast path and the one with column lists), events without one have no
 * source.origin; a filter can select on it. */
static const char *EV_ORIG_UPD =
    "{\"id\":\"default:0/1A2B400:0\",\"tenant\":\"default\",\"lsn\":\"0/1A2B400\",\"seq\":0,"
    "\"xid\":740,\"commit_ts\":\"2026-11-22T01:02:03Z\",\"origin\":\"peer \\\"b\\\"\","
    "\"op\":\"update\",\"schema\":\"public\",\"table\":\"orders\",\"key\":{\"id\":1},"
    "\"before\":null,\"after\":{\"id\":1,\"note\":\"y\"}}";
static const char *EV_ORIG_MSG =
    "{\"id\":\"default:0/1A2B400:1\",\"tenant\":\"default\",\"lsn\":\"0/1A2B400\",\"seq\":1,"
    "\"xid\":740,\"commit_ts\":\"2026-11-22T01:02:03Z\",\"origin\":\"peer \\\"b\\\"\","
    "\"op\":\"message\",\"schema\":null,\"table\":null,\"key\":null,\"before\":null,"
    "\"after\":null,\"prefix\":\"p\",\"content\":\"aGk=\"}";

static void test_debezium_origin(void **state)
{
    (void)state;
    wh_buf b;
    wh_buf_init(&b, 0);
    dsp_env_out out;
    char err[256];
    const char *evs[] = {EV_ORIG_UPD, EV_INS, EV_ORIG_MSG};
    const char *exc[] = {"note"};
    wh_filter_spec spec = {.columns_exclude = exc, .ncolumns_exclude = 1};
    wh_filter *f;
    assert_int_equal(wh_filter_compile(&spec, &f, err, sizeof(err)), WH_OK);
    for (int cols = 0; cols < 2; cols++) {
        assert_int_equal(render(DSP_ENV_DEBEZIUM, cols ? f : NULL, evs, 3, &b, &out, err), WH_OK);
        json_t *a = parse(&b);
        assert_int_equal(json_array_size(a), 3);
        for (size_t i = 0; i < 3; i++) {
            json_t *src = json_object_get(json_array_get(a, i), "source");
            json_t *o = json_object_get(src, "origin");
            if (i == 1) {
                assert_null(o);
            } else {
                assert_string_equal(json_string_value(o), "peer \"b\"");
                assert_true(json_is_null(json_object_get(src, "xmin")));
                assert_int_equal(json_integer_value(json_object_get(src, "txId")), 740);
            }
        }
        json_decref(a);
    }
    wh_filter_free(f);
    /* the native body is the events as stored */
    assert_int_equal(render(DSP_ENV_NATIVE, NULL, evs, 1, &b, &out, err), WH_OK);
    wh_buf_cstr(&b);
    assert_non_null(strstr(b.data, EV_ORIG_UPD));
    /* a filter on the origin */
    wh_filter_spec fs = {.expr = "origin startswith \"peer \""};
    assert_int_equal(wh_filter_compile(&fs, &f, err, sizeof(err)), WH_OK);
    assert_int_equal(wh_filter_match(f, EV_ORIG_UPD, strlen(EV_ORIG_UPD)), 1);
    assert_int_equal(wh_filter_match(f, EV_INS, strlen(EV_INS)), 0);
    wh_filter_free(f);
    wh_filter_spec fn = {.expr = "origin == null"};
    assert_int_equal(wh_filter_compile(&fn, &f, err, sizeof(err)), WH_OK);
    assert_int_equal(wh_filter_match(f, EV_ORIG_UPD, strlen(EV_ORIG_UPD)), 0);
    assert_int_equal(wh_filter_match(f, EV_INS, strlen(EV_INS)), 1);
    wh_filter_free(f);
    wh_buf_free(&b);
}

static const char *EV_SCHEMA =
    "{\"id\":\"default:0/1A2B400:0\",\"tenant\":\"default\",\"lsn\":\"0/1A2B400\",\"seq\":0,"
    "\"xid\":741,\"commit_ts\":\"2026-11-22T01:02:06Z\",\"op\":\"schema\",\"key\":null,"
    "\"before\":null,\"after\":null,\"schema_version\":\"0123456789abcdef\",\"schema\":\"public\","
    "\"table\":\"orders\",\"replica_identity\":\"default\",\"key_columns\":[\"id\"],\"columns\":"
    "[{\"name\":\"id\",\"type_oid\":23,\"typmod\":-1}]}";
static const char *EV_DDL =
    "{\"id\":\"default:0/1A2B400:1\",\"tenant\":\"default\",\"lsn\":\"0/1A2B400\",\"seq\":1,"
    "\"xid\":741,\"commit_ts\":\"2026-11-22T01:02:06Z\",\"op\":\"ddl\",\"schema\":\"public\","
    "\"table\":null,\"key\":null,\"before\":null,\"after\":null,\"ddl\":{\"event\":"
    "\"ddl_command_end\",\"command_tag\":\"ALTER TABLE\",\"object_type\":\"table\","
    "\"object_identity\":\"public.orders\",\"statement\":\"ALTER TABLE orders ADD c int\"}}";

/* schema and ddl events: native as stored; Debezium (no op of its own)
 * with op "schema"/"ddl" and the native event under "walhook"; CloudEvents
 * type com.walhook.schema / com.walhook.ddl; a change's schema_version
 * stays in the native event. */
static void test_schema_ddl_events(void **state)
{
    (void)state;
    wh_buf b;
    wh_buf_init(&b, 0);
    dsp_env_out out;
    char err[256];
    const char *evs[] = {EV_SCHEMA, EV_DDL, EV_UPD};
    const char *exc[] = {"note"};
    wh_filter_spec spec = {.columns_exclude = exc, .ncolumns_exclude = 1};
    wh_filter *f;
    assert_int_equal(wh_filter_compile(&spec, &f, err, sizeof(err)), WH_OK);
    for (int cols = 0; cols < 2; cols++) {
        assert_int_equal(render(DSP_ENV_DEBEZIUM, cols ? f : NULL, evs, 3, &b, &out, err), WH_OK);
        json_t *a = parse(&b);
        assert_int_equal(json_array_size(a), 3);
        json_t *s0 = json_array_get(a, 0), *s1 = json_array_get(a, 1);
        assert_string_equal(json_string_value(json_object_get(s0, "op")), "schema");
        assert_string_equal(json_string_value(json_object_get(s1, "op")), "ddl");
        json_t *w = json_object_get(s0, "walhook");
        assert_string_equal(json_string_value(json_object_get(w, "schema_version")),
                            "0123456789abcdef");
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(s0, "source"), "table")), "orders");
        w = json_object_get(s1, "walhook");
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(w, "ddl"), "command_tag")),
            "ALTER TABLE");
        assert_true(json_is_null(json_object_get(s1, "before")));
        assert_string_equal(json_string_value(json_object_get(json_array_get(a, 2), "op")), "u");
        json_decref(a);
    }
    wh_filter_free(f);
    assert_int_equal(render(DSP_ENV_CLOUDEVENTS, NULL, evs, 2, &b, &out, err), WH_OK);
    json_t *a = parse(&b);
    assert_string_equal(json_string_value(json_object_get(json_array_get(a, 0), "type")),
                        "com.walhook.schema");
    assert_string_equal(json_string_value(json_object_get(json_array_get(a, 1), "type")),
                        "com.walhook.ddl");
    json_decref(a);
    assert_int_equal(render(DSP_ENV_NATIVE, NULL, evs, 2, &b, &out, err), WH_OK);
    wh_buf_cstr(&b);
    assert_non_null(strstr(b.data, EV_SCHEMA));
    assert_non_null(strstr(b.data, EV_DDL));
    /* operations filters name them */
    const char *ops[] = {"schema", "ddl"};
    wh_filter_spec os = {.operations = ops, .noperations = 2};
    assert_int_equal(wh_filter_compile(&os, &f, err, sizeof(err)), WH_OK);
    assert_true(wh_filter_match(f, EV_SCHEMA, strlen(EV_SCHEMA)));
    assert_true(wh_filter_match(f, EV_DDL, strlen(EV_DDL)));
    assert_false(wh_filter_match(f, EV_UPD, strlen(EV_UPD)));
    wh_filter_free(f);
    const char *ins[] = {"insert"};
    wh_filter_spec is = {.operations = ins, .noperations = 1};
    assert_int_equal(wh_filter_compile(&is, &f, err, sizeof(err)), WH_OK);
    assert_false(wh_filter_match(f, EV_SCHEMA, strlen(EV_SCHEMA)));
    wh_filter_free(f);
    wh_buf_free(&b);
}

static void test_cloudevents_structured(void **state)
{
    (void)state;
    wh_buf b;
    wh_buf_init(&b, 0);
    dsp_env_out out;
    char err[256];
    const char *evs[] = {EV_INS, EV_MSG};
    /* one event: application/cloudevents+json, one object */
    assert_int_equal(render(DSP_ENV_CLOUDEVENTS, NULL, evs, 1, &b, &out, err), WH_OK);
    assert_string_equal(out.content_type, "application/cloudevents+json");
    json_t *e = parse(&b);
    assert_true(json_is_object(e));
    /* required attributes: id, source, specversion, type */
    assert_string_equal(json_string_value(json_object_get(e, "specversion")), "1.0");
    assert_string_equal(json_string_value(json_object_get(e, "id")), "default:0/1A2B3C8:1");
    assert_string_equal(json_string_value(json_object_get(e, "source")),
                        "/walhook/default/public/my%20table");
    assert_string_equal(json_string_value(json_object_get(e, "type")), "com.walhook.insert");
    assert_string_equal(json_string_value(json_object_get(e, "time")),
                        "2026-11-22T01:02:03.123456Z");
    assert_string_equal(json_string_value(json_object_get(e, "subject")), "public.my table");
    assert_string_equal(json_string_value(json_object_get(e, "datacontenttype")),
                        "application/json");
    json_t *data = json_object_get(e, "data");
    assert_string_equal(json_string_value(json_object_get(data, "id")), "default:0/1A2B3C8:1");
    json_decref(e);
    /* a batch: application/cloudevents-batch+json, an array */
    assert_int_equal(render(DSP_ENV_CLOUDEVENTS, NULL, evs, 2, &b, &out, err), WH_OK);
    assert_string_equal(out.content_type, "application/cloudevents-batch+json");
    json_t *a = parse(&b);
    assert_int_equal(json_array_size(a), 2);
    json_t *m = json_array_get(a, 1);
    assert_string_equal(json_string_value(json_object_get(m, "type")), "com.walhook.message");
    assert_string_equal(json_string_value(json_object_get(m, "source")), "/walhook/default");
    assert_null(json_object_get(m, "time")); /* non-transactional message: no time */
    assert_null(json_object_get(m, "subject"));
    json_decref(a);
    wh_buf_free(&b);
}

static void test_cloudevents_binary(void **state)
{
    (void)state;
    wh_buf b;
    wh_buf_init(&b, 0);
    dsp_env_out out;
    char err[256];
    const char *evs[] = {EV_INS, EV_UPD};
    assert_int_equal(render(DSP_ENV_CLOUDEVENTS_BINARY, NULL, evs, 2, &b, &out, err), WH_OK);
    assert_int_equal(out.consumed, 1); /* one event per request */
    assert_string_equal(out.content_type, "application/json");
    const char *want[] = {"ce-specversion: 1.0",
                          "ce-id: default:0/1A2B3C8:1",
                          "ce-source: /walhook/default/public/my%20table",
                          "ce-type: com.walhook.insert",
                          "ce-subject: public.my%20table",
                          "ce-time: 2026-11-22T01:02:03.123456Z"};
    assert_int_equal(out.nheaders, 6);
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(out.headers[i], want[i]);
    wh_buf_cstr(&b);
    assert_string_equal(b.data, EV_INS);
    wh_buf_free(&b);
}

/* An unchanged TOAST value the ingestor could not fill is listed in
 * "unchanged" (after "after"): Debezium gets its placeholder
 * __debezium_unavailable_value in "after" (column lists apply), so the
 * column is neither missing nor null; native keeps the list. */
static const char *EV_TOAST =
    "{\"id\":\"default:0/1A2B3C8:2\",\"tenant\":\"default\",\"lsn\":\"0/1A2B3C8\",\"seq\":2,"
    "\"xid\":735,\"commit_ts\":\"2026-11-22T01:02:03.123456Z\",\"op\":\"update\",\"schema\":"
    "\"public\",\"table\":\"docs\",\"key\":{\"id\":1},\"before\":null,"
    "\"after\":{\"id\":1,\"status\":\"shipped\"},\"unchanged\":[\"body\",\"extra\"],"
    "\"schema_version\":\"9c1f2e4b7a05d3e8\"}";

static void test_debezium_unchanged_toast(void **state)
{
    (void)state;
    wh_buf b;
    wh_buf_init(&b, 0);
    dsp_env_out out;
    char err[256];
    const char *evs[] = {EV_TOAST, EV_UPD};
    assert_int_equal(render(DSP_ENV_DEBEZIUM, NULL, evs, 2, &b, &out, err), WH_OK);
    json_t *a = parse(&b);
    json_t *after = json_object_get(json_array_get(a, 0), "after");
    assert_string_equal(json_string_value(json_object_get(after, "body")),
                        "__debezium_unavailable_value");
    assert_string_equal(json_string_value(json_object_get(after, "extra")),
                        "__debezium_unavailable_value");
    assert_string_equal(json_string_value(json_object_get(after, "status")), "shipped");
    assert_int_equal(json_object_size(after), 4);
    assert_true(json_is_null(json_object_get(json_array_get(a, 0), "before")));
    /* an event without unchanged columns: none added */
    assert_int_equal(json_object_size(json_object_get(json_array_get(a, 1), "after")), 3);
    json_decref(a);
    /* a column list leaves out what it excludes, placeholder included */
    const char *exc[] = {"extra"};
    wh_filter_spec spec = {.columns_exclude = exc, .ncolumns_exclude = 1};
    wh_filter *f;
    assert_int_equal(wh_filter_compile(&spec, &f, err, sizeof(err)), WH_OK);
    wh_buf_reset(&b);
    assert_int_equal(render(DSP_ENV_DEBEZIUM, f, evs, 1, &b, &out, err), WH_OK);
    a = parse(&b);
    after = json_object_get(json_array_get(a, 0), "after");
    assert_string_equal(json_string_value(json_object_get(after, "body")),
                        "__debezium_unavailable_value");
    assert_null(json_object_get(after, "extra"));
    json_decref(a);
    wh_filter_free(f);
    /* native keeps the list */
    wh_buf_reset(&b);
    assert_int_equal(render(DSP_ENV_NATIVE, NULL, evs, 1, &b, &out, err), WH_OK);
    a = parse(&b);
    assert_int_equal(json_array_size(json_object_get(json_array_get(a, 0), "unchanged")), 2);
    json_decref(a);
    wh_buf_free(&b);
}

/* source.snapshot: "true" for a snapshot or backfill row (op read, the
 * fast path and the one with column lists), "false" for a change. */
static void test_debezium_snapshot(void **state)
{
    (void)state;
    static const char *EV_READ =
        "{\"id\":\"default:0/1A2B3C8:3\",\"tenant\":\"default\",\"lsn\":\"0/1A2B3C8\","
        "\"seq\":3,\"xid\":735,\"commit_ts\":\"2026-11-22T01:02:03.123456Z\",\"op\":\"read\","
        "\"schema\":\"public\",\"table\":\"orders\",\"key\":{\"id\":7},\"before\":null,"
        "\"after\":{\"id\":7,\"note\":\"old\"}}";
    const char *evs[] = {EV_READ, EV_INS};
    const char *exc[] = {"note"};
    wh_filter_spec spec = {.columns_exclude = exc, .ncolumns_exclude = 1};
    wh_filter *f;
    char err[256];
    assert_int_equal(wh_filter_compile(&spec, &f, err, sizeof(err)), WH_OK);
    wh_buf b;
    wh_buf_init(&b, 0);
    dsp_env_out out;
    for (int k = 0; k < 2; k++) {
        wh_buf_reset(&b);
        assert_int_equal(render(DSP_ENV_DEBEZIUM, k ? f : NULL, evs, 2, &b, &out, err), WH_OK);
        json_t *a = parse(&b);
        json_t *r = json_array_get(a, 0), *c = json_array_get(a, 1);
        assert_string_equal(json_string_value(json_object_get(r, "op")), "r");
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(r, "source"), "snapshot")), "true");
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(c, "source"), "snapshot")), "false");
        assert_string_equal(json_string_value(json_object_get(json_object_get(r, "source"), "db")),
                            "shop");
        json_decref(a);
    }
    wh_filter_free(f);
    wh_buf_free(&b);
}

static void test_columns(void **state)
{
    (void)state;
    const char *exc[] = {"note"};
    wh_filter_spec spec = {.columns_exclude = exc, .ncolumns_exclude = 1};
    wh_filter *f;
    char err[256];
    assert_int_equal(wh_filter_compile(&spec, &f, err, sizeof(err)), WH_OK);
    wh_buf b;
    wh_buf_init(&b, 0);
    dsp_env_out out;
    const char *evs[] = {EV_UPD};
    assert_int_equal(render(DSP_ENV_NATIVE, f, evs, 1, &b, &out, err), WH_OK);
    json_t *a = parse(&b);
    json_t *e = json_array_get(a, 0);
    assert_null(json_object_get(json_object_get(e, "after"), "note"));
    assert_non_null(json_object_get(json_object_get(e, "after"), "amount"));
    assert_null(json_object_get(json_object_get(e, "before"), "note"));
    assert_string_equal(json_string_value(json_object_get(e, "table")), "orders");
    json_decref(a);
    assert_int_equal(render(DSP_ENV_DEBEZIUM, f, evs, 1, &b, &out, err), WH_OK);
    a = parse(&b);
    assert_null(json_object_get(json_object_get(json_array_get(a, 0), "after"), "note"));
    json_decref(a);
    wh_filter_free(f);
    wh_buf_free(&b);
}

static void test_malformed(void **state)
{
    (void)state;
    wh_buf b;
    wh_buf_init(&b, 0);
    dsp_env_out out;
    char err[256];
    const char *bad[] = {EV_INS, "{\"id\":\"x\"}"};
    assert_int_equal(render(DSP_ENV_DEBEZIUM, NULL, bad, 2, &b, &out, err), WH_ERR);
    assert_non_null(strstr(err, "event 1"));
    const char *bad2[] = {"[1,2"};
    assert_int_equal(render(DSP_ENV_NATIVE, NULL, bad2, 1, &b, &out, err), WH_ERR);
    assert_non_null(strstr(err, "event 0"));
    /* a body cap is honoured */
    wh_buf small;
    wh_buf_init(&small, 64);
    const char *evs[] = {EV_UPD};
    assert_int_equal(render(DSP_ENV_CLOUDEVENTS, NULL, evs, 1, &small, &out, err), WH_ERR);
    assert_non_null(strstr(err, "larger"));
    wh_buf_free(&small);
    wh_buf_free(&b);
    int64_t ms;
    assert_int_equal(dsp_env_time_ms("2026-11-22T01:02:03Z", 20, &ms), WH_OK);
    assert_int_equal(ms, 1795309323000LL);
    assert_int_equal(dsp_env_time_ms("2026-11-22 01:02:03Z", 20, &ms), WH_ERR);
}

/* The index the filter leaves (wh_filter_match_ix) renders the same bytes
 * as a fresh walk, for every format, on well-formed, odd (escaped member
 * names, repeated members, a copy of the bytes) and malformed events. */
static void test_index_same_output(void **state)
{
    (void)state;
    static const char *odd[] = {
        /* escaped member names and a repeated "op" (the first one wins) */
        "{\"\\u0069d\":\"t:0/1:0\",\"tenant\":\"t\",\"lsn\":\"0/1\",\"xid\":7,\"commit_ts\":"
        "\"2026-11-22T01:02:03Z\",\"o\\u0070\":\"insert\",\"op\":\"delete\",\"schema\":\"s\","
        "\"table\":\"t\\\"q\",\"key\":null,\"before\":null,\"after\":{\"a\":\"\\\\\"}}",
        /* malformed after the members the envelope needs */
        "{\"id\":\"t:0/1:0\",\"tenant\":\"t\",\"lsn\":\"0/1\",\"xid\":7,\"commit_ts\":null,"
        "\"op\":\"insert\",\"schema\":\"s\",\"table\":\"t\",\"key\":null,\"before\":null,"
        "\"after\":null,\"x\":tru}",
        "  {\"id\":1}  ",
        "[1]",
        "{\"id\":\"a\",\"tenant\":\"t\",\"lsn\":\"0/1\",\"xid\":1}",
    };
    const char *all[] = {EV_UPD, EV_INS, EV_DEL, EV_TRUNC, EV_MSG,
                         odd[0], odd[1], odd[2], odd[3],   odd[4]};
    const char *cols[] = {"note"};
    wh_filter_spec spec = {.expr = "table == \"orders\" || after.id > 1 || op == \"message\"",
                           .columns_exclude = cols,
                           .ncolumns_exclude = 1};
    wh_filter *f = NULL;
    char err[256], err2[256];
    assert_int_equal(wh_filter_compile(&spec, &f, err, sizeof(err)), WH_OK);
    wh_buf a, b;
    wh_buf_init(&a, 1 << 20);
    wh_buf_init(&b, 1 << 20);
    dsp_env_out *o1 = malloc(sizeof(*o1)), *o2 = malloc(sizeof(*o2));
    assert_non_null(o1);
    assert_non_null(o2);
    for (size_t e = 0; e < sizeof(all) / sizeof(all[0]); e++) {
        size_t len = strlen(all[e]);
        wh_evidx ix;
        int m = wh_filter_match_ix(f, all[e], len, &ix);
        assert_int_equal(m, wh_filter_match(f, all[e], len));
        assert_int_not_equal(ix.state, WH_EVX_NONE);
        char *copy = malloc(len + 1); /* the index is valid for a copy of the bytes */
        assert_non_null(copy);
        memcpy(copy, all[e], len + 1);
        const void *p[1] = {copy};
        size_t l[1] = {len};
        for (int k = DSP_ENV_NATIVE; k <= DSP_ENV_CLOUDEVENTS_BINARY; k++) {
            for (int c = 0; c < 2; c++) {
                dsp_env_opts op = {.kind = (dsp_env_kind)k, .columns = c ? f : NULL, .now_ms = 7};
                int r1 = dsp_env_render(&op, p, l, 1, &a, o1, err, sizeof(err));
                int r2 = dsp_env_render_ix(&op, p, l, &ix, 1, &b, o2, err2, sizeof(err2));
                assert_int_equal(r1, r2);
                assert_int_equal(a.len, b.len);
                assert_memory_equal(a.data, b.data, a.len);
                if (r1 != WH_OK)
                    assert_string_equal(err, err2);
                assert_int_equal(o1->nheaders, o2->nheaders);
                for (size_t h = 0; h < o1->nheaders; h++)
                    assert_string_equal(o1->headers[h], o2->headers[h]);
            }
        }
        free(copy);
    }
    /* the first "op" wins in the filter too: odd[0] is an insert */
    wh_filter *fo = NULL;
    wh_filter_spec so = {.expr = "op == \"insert\" && table == \"t\\\"q\""};
    assert_int_equal(wh_filter_compile(&so, &fo, err, sizeof(err)), WH_OK);
    assert_int_equal(wh_filter_match(fo, odd[0], strlen(odd[0])), 1);
    wh_filter_free(fo);
    free(o1);
    free(o2);
    wh_buf_free(&a);
    wh_buf_free(&b);
    wh_filter_free(f);
}

/* Rows of the wide shape (make bench's backlog (d): jsonb objects and
 * arrays inlined with spaces, text[], numeric as strings) with what is
 * tricky to pass by brackets: brackets and quotes' neighbours in strings,
 * raw UTF-8, nulls, numbers of every form, nested containers. */
#define WIDE_ROW(id, n1)                                                                           \
    "{\"id\":" id ",\"c1\":\"40862c6e26e2f4baa5e3bb93523a295140862c6e26e2f4baa5e3bb93523a2951\","  \
    "\"c2\":\"a]b}c[d{e\",\"c3\":\"\",\"c5\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\","       \
    "\"j1\":{\"id\": 1, \"ok\": true, \"name\": \"item ]}\", \"tags\": [\"a\", \"b\", 1, [], "     \
    "{}], "                                                                                        \
    "\"price\": 1.25, \"n\": null},\"j2\":{\"zip\": 1, \"address\": {\"l\": [\"YyY_\", "           \
    "-0.5e-3]}},\"a1\":[\"alpha\",\"beta\",null],\"a2\":[[1,2],[3,[4,[5]]]],\"t1\":"               \
    "\"2026-12-01T21:50:12.123456Z\",\"n1\":" n1 ",\"n2\":\"0.00000000000000000000\","             \
    "\"n3\":-12345678.9,\"n4\":1E+300,\"n5\":-9007199254740993,\"b\":false,\"z\":null,"            \
    "\"c8\":\"x\"}"
#define WIDE_HEAD(op)                                                                              \
    "{\"id\":\"default:0/10000000:0\",\"tenant\":\"default\",\"lsn\":\"0/10000000\",\"seq\":0,"    \
    "\"xid\":1000,\"commit_ts\":\"2026-12-01T21:50:06.123456Z\",\"op\":\"" op "\","                \
    "\"change_lsn\":\"0/FFFFFF0\",\"schema\":\"public\",\"table\":\"wide\","

/* The index of the quote and bracket maps (wh_filter_match_ix's, with
 * sub-members of key and after so that the rest of those is passed by its
 * brackets; dsp_env_render's own; both with the baseline maps too) renders
 * the same bytes as the index of the plain walk (wh_evidx_build_scan), in
 * every format, with and without column lists, on wide rows with nested
 * jsonb, escapes, raw UTF-8, nulls, numbers and unchanged TOAST columns. */
static void test_index_maps_same_output(void **state)
{
    (void)state;
    const char *evs[] = {
        WIDE_HEAD("update") "\"key\":" WIDE_ROW("1", "\"3.14159\"") ",\"before\":" WIDE_ROW(
            "1", "\"3.14159\"") ",\"after\":" WIDE_ROW("1",
                                                       "\"4.14159\"") ",\"unchanged\":[\"c7\"]}",
        WIDE_HEAD("insert") "\"key\":{\"id\":2},\"before\":null,\"after\":" WIDE_ROW("2", "7") "}",
        WIDE_HEAD("delete") "\"key\":{\"id\":3},\"before\":" WIDE_ROW("3",
                                                                      "null") ",\"after\":null}",
        /* an escape: the index of a scan then (still the same output) */
        WIDE_HEAD("update") "\"key\":{\"id\":4},\"before\":null,\"after\":" WIDE_ROW(
            "4", "\"1\\u0030\"") ",\"unchanged\":[\"c\\u0037\",\"c9\"]}",
        /* sub-members repeated, after malformed past them */
        WIDE_HEAD("update") "\"key\":{\"id\":5,\"id\":6},\"before\":null,\"after\":{\"n1\":1,"
                            "\"n1\":2,\"x\":[1,2}}}",
        /* malformed past them with bytes the bracket map's test also takes */
        WIDE_HEAD("update") "\"key\":{\"id\":7},\"before\":null,\"after\":{\"n1\":1,\"x\":[y_Y]}}",
        EV_UPD,
        EV_INS,
        EV_DEL,
        EV_TRUNC,
        EV_MSG,
        EV_TOAST,
    };
    const char *cols[] = {"c1", "j1", "c7", "note"};
    wh_filter_spec spec = {.expr = "key.id >= 1 && (after.n1 >= 0 || after.n1 == null || op == "
                                   "\"message\" || after.id > 0)",
                           .columns_exclude = cols,
                           .ncolumns_exclude = 4};
    wh_filter *f = NULL;
    char err[256], err2[256];
    assert_int_equal(wh_filter_compile(&spec, &f, err, sizeof(err)), WH_OK);
    wh_buf ref, b;
    wh_buf_init(&ref, 1 << 20);
    wh_buf_init(&b, 1 << 20);
    dsp_env_out *o1 = malloc(sizeof(*o1)), *o2 = malloc(sizeof(*o2));
    assert_non_null(o1);
    assert_non_null(o2);
    for (size_t e = 0; e < sizeof(evs) / sizeof(evs[0]); e++) {
        size_t len = strlen(evs[e]);
        const void *p[1] = {evs[e]};
        size_t l[1] = {len};
        wh_evidx plain;
        wh_evidx_build_scan(f, evs[e], len, &plain);
        for (int k = DSP_ENV_NATIVE; k <= DSP_ENV_CLOUDEVENTS_BINARY; k++) {
            for (int c = 0; c < 2; c++) {
                dsp_env_opts op = {.kind = (dsp_env_kind)k, .columns = c ? f : NULL, .now_ms = 7};
                int r1 = dsp_env_render_ix(&op, p, l, &plain, 1, &ref, o1, err, sizeof(err));
                if (e < 3)
                    assert_int_equal(r1, WH_OK);
                for (int way = 0; way < 4; way++) {
                    wh_evidx_baseline(way >= 2);
                    wh_evidx ix;
                    if (way % 2 == 0)
                        wh_filter_match_ix(f, evs[e], len, &ix);
                    int r2 = dsp_env_render_ix(&op, p, l, way % 2 == 0 ? &ix : NULL, 1, &b, o2,
                                               err2, sizeof(err2));
                    if (r1 != r2 || ref.len != b.len || memcmp(ref.data, b.data, b.len) != 0)
                        fail_msg("event %zu, format %d, columns %d, way %d: %.*s\n"
                                 "differs from the plain walk's %.*s",
                                 e, k, c, way, (int)b.len, b.data, (int)ref.len, ref.data);
                    if (r1 != WH_OK)
                        assert_string_equal(err, err2);
                    assert_int_equal(o1->nheaders, o2->nheaders);
                    for (size_t h = 0; h < o1->nheaders; h++)
                        assert_string_equal(o1->headers[h], o2->headers[h]);
                }
                wh_evidx_baseline(0);
            }
        }
    }
    /* what the wide update renders to (Debezium): its rows whole, the
     * unchanged column as Debezium's placeholder */
    dsp_env_opts op = {.kind = DSP_ENV_DEBEZIUM, .now_ms = 7};
    const void *p[1] = {evs[0]};
    size_t l[1] = {strlen(evs[0])};
    assert_int_equal(dsp_env_render(&op, p, l, 1, &b, o1, err, sizeof(err)), WH_OK);
    json_t *a = parse(&b);
    json_t *after = json_object_get(json_array_get(a, 0), "after");
    assert_string_equal(json_string_value(json_object_get(after, "c7")),
                        "__debezium_unavailable_value");
    assert_string_equal(json_string_value(json_object_get(after, "c2")), "a]b}c[d{e");
    assert_string_equal(json_string_value(json_object_get(after, "n1")), "4.14159");
    assert_int_equal(json_array_size(json_object_get(json_object_get(after, "j1"), "tags")), 5);
    assert_int_equal(json_object_size(after), 19);
    assert_int_equal(json_object_size(json_object_get(json_array_get(a, 0), "before")), 18);
    json_decref(a);
    free(o1);
    free(o2);
    wh_buf_free(&ref);
    wh_buf_free(&b);
    wh_filter_free(f);
}

/* b's bytes with every Debezium top-level ts_ms (the render time: the
 * digits before ,"transaction") written as 0, into out. */
static void dbz_now_blank(const wh_buf *b, wh_buf *out)
{
    static const char key[] = "\"ts_ms\":", next[] = ",\"transaction\"";
    wh_buf_reset(out);
    size_t i = 0;
    while (i < b->len) {
        const char *k = memmem(b->data + i, b->len - i, key, sizeof(key) - 1);
        if (k == NULL)
            break;
        size_t at = (size_t)(k - b->data) + sizeof(key) - 1, e = at;
        while (e < b->len && (b->data[e] == '-' || (b->data[e] >= '0' && b->data[e] <= '9')))
            e++;
        assert_int_equal(wh_buf_append(out, b->data + i, at - i), WH_OK);
        if (b->len - e >= sizeof(next) - 1 && memcmp(b->data + e, next, sizeof(next) - 1) == 0)
            assert_int_equal(wh_buf_putc(out, '0'), WH_OK);
        else
            assert_int_equal(wh_buf_append(out, b->data + at, e - at), WH_OK);
        i = e;
    }
    assert_int_equal(wh_buf_append(out, b->data + i, b->len - i), WH_OK);
}

/* dsp_batch_fill_ex renders each event right after the filter passed it:
 * the wire body is byte for byte what dsp_env_render makes of the kept
 * events (Debezium's render time aside), whether the events are copied
 * (borrow 0) or borrowed (1); ptrs/plens give each kept event's native
 * bytes either way, and a batch the filter emptied is a skip batch. */
static void test_batch_fill_rendered(void **state)
{
    (void)state;
    const char *all[] = {EV_UPD, EV_INS, EV_DEL, EV_TRUNC, EV_MSG};
    const size_t nall = sizeof(all) / sizeof(all[0]);
    Walhook__Event ev[5], *evp[5];
    for (size_t i = 0; i < nall; i++) {
        walhook__event__init(&ev[i]);
        ev[i].commit_lsn = 0x100 + i;
        ev[i].seq = 0;
        ev[i].commit_ts_us = 1000 + (int64_t)i;
        ev[i].json.data = (uint8_t *)all[i];
        ev[i].json.len = strlen(all[i]);
        evp[i] = &ev[i];
    }
    const char *cols[] = {"note"};
    const char *exprs[] = {"", "table == \"orders\" || op == \"message\"", "op == \"insert\"",
                           "op == \"nothing\""};
    char err[256];
    wh_buf want, got, wn, gn;
    wh_buf_init(&want, 0);
    wh_buf_init(&got, 0);
    wh_buf_init(&wn, 0);
    wh_buf_init(&gn, 0);
    dsp_env_out *wo = malloc(sizeof(*wo));
    assert_non_null(wo);
    for (int k = DSP_ENV_NATIVE; k <= DSP_ENV_CLOUDEVENTS; k++) {
        for (size_t x = 0; x < sizeof(exprs) / sizeof(exprs[0]); x++) {
            for (int c = 0; c < 2; c++) {
                if (k == DSP_ENV_NATIVE && !c)
                    continue; /* native without column lists is not rendered */
                wh_filter_spec spec = {.expr = exprs[x]};
                if (c) {
                    spec.columns_exclude = cols;
                    spec.ncolumns_exclude = 1;
                }
                dsp_format fmt;
                memset(&fmt, 0, sizeof(fmt));
                assert_int_equal(wh_filter_compile(&spec, &fmt.filter, err, sizeof(err)), WH_OK);
                fmt.env = (dsp_env_kind)k;
                fmt.render = 1;
                /* the reference: the filter, then the kept events rendered */
                const void *p[5];
                size_t l[5], nk = 0;
                for (size_t i = 0; i < nall; i++)
                    if (wh_filter_match(fmt.filter, all[i], strlen(all[i]))) {
                        p[nk] = all[i];
                        l[nk++] = strlen(all[i]);
                    }
                for (int borrow = 0; borrow < 2; borrow++) {
                    /* one batch at a time and twice per batch (state reused) */
                    dsp_batch b;
                    memset(&b, 0, sizeof(b));
                    for (int rep = 0; rep < 2; rep++) {
                        uint64_t filtered = 0;
                        int r = dsp_batch_fill_ex(&b, "default", evp, nall, 0, 0, 0, &fmt,
                                                  &filtered, borrow);
                        assert_int_equal(r, (int)nall);
                        assert_int_equal(b.n, nk);
                        assert_int_equal(filtered, nall - nk);
                        assert_true(b.last_lsn == 0x100 + nall - 1);
                        for (size_t i = 0; i < nk; i++) {
                            assert_int_equal(b.plens[i], l[i]);
                            assert_memory_equal(b.ptrs[i], p[i], l[i]);
                            if (borrow)
                                assert_ptr_equal(b.ptrs[i], p[i]);
                        }
                        /* the micro-batcher's size: the native body's, copied or not */
                        assert_int_equal(dsp_body_build(&got, p, l, nk), WH_OK);
                        assert_int_equal(b.nbytes, got.len);
                        if (nk == 0) {
                            assert_int_equal(b.rendered, 0);
                            continue;
                        }
                        assert_int_equal(b.rendered, 1);
                        dsp_env_opts o = {.kind = (dsp_env_kind)k, .columns = fmt.filter};
                        assert_int_equal(dsp_env_render(&o, p, l, nk, &want, wo, err, sizeof(err)),
                                         WH_OK);
                        dbz_now_blank(&want, &wn);
                        dbz_now_blank(&b.wire, &gn);
                        assert_int_equal(gn.len, wn.len);
                        assert_memory_equal(gn.data, wn.data, wn.len);
                        assert_string_equal(b.env.content_type, wo->content_type);
                        assert_int_equal(b.env.nheaders, wo->nheaders);
                    }
                    dsp_batch_free(&b);
                }
                dsp_format_free(&fmt);
            }
        }
    }
    free(wo);
    wh_buf_free(&want);
    wh_buf_free(&got);
    wh_buf_free(&wn);
    wh_buf_free(&gn);
}

/* Debezium's source.lsn is the change's own LSN (change_lsn); the commit
 * LSN for an event without one (a snapshot row, an event stored before
 * change_lsn existed); sequence is ["<commit LSN>","<lsn>"], which rises in
 * delivery order. 0x1A2B300 = 27439872, 0x1A2B3C8 = 27440072. */
static void test_debezium_change_lsn(void **state)
{
    (void)state;
    const char *with =
        "{\"id\":\"default:0/1A2B3C8:1\",\"tenant\":\"default\",\"lsn\":\"0/1A2B3C8\",\"seq\":1,"
        "\"xid\":735,\"commit_ts\":\"2026-11-22T01:02:03.123456Z\",\"op\":\"insert\","
        "\"change_lsn\":\"0/1A2B300\",\"schema\":\"public\",\"table\":\"t\",\"key\":{\"id\":2},"
        "\"before\":null,\"after\":{\"id\":2}}";
    const char *evs[] = {with, EV_INS};
    wh_buf b;
    wh_buf_init(&b, 0);
    dsp_env_out out;
    char err[256];
    assert_int_equal(render(DSP_ENV_DEBEZIUM, NULL, evs, 2, &b, &out, err), WH_OK);
    json_t *a = parse(&b);
    json_t *s0 = json_object_get(json_array_get(a, 0), "source");
    json_t *s1 = json_object_get(json_array_get(a, 1), "source");
    assert_true(json_integer_value(json_object_get(s0, "lsn")) == 27439872);
    assert_string_equal(json_string_value(json_object_get(s0, "sequence")),
                        "[\"27440072\",\"27439872\"]");
    assert_true(json_integer_value(json_object_get(s1, "lsn")) == 27440072);
    assert_string_equal(json_string_value(json_object_get(s1, "sequence")),
                        "[\"27440072\",\"27440072\"]");
    json_decref(a);
    /* a change_lsn that is not an LSN is an error naming it */
    const char *bad[] = {
        "{\"id\":\"d:0/1:0\",\"tenant\":\"d\",\"lsn\":\"0/1\",\"seq\":0,\"xid\":1,"
        "\"commit_ts\":null,\"op\":\"insert\",\"change_lsn\":\"zz\",\"schema\":\"s\","
        "\"table\":\"t\",\"key\":null,\"before\":null,\"after\":{}}"};
    assert_int_equal(render(DSP_ENV_DEBEZIUM, NULL, bad, 1, &b, &out, err), WH_ERR);
    assert_non_null(strstr(err, "change_lsn"));
    wh_buf_free(&b);
}

/* A Debezium target gets schema and ddl events only when its operations
 * name them (Debezium's PostgreSQL connector has no such events): the
 * others are committed past as filtered; native and CloudEvents targets
 * get them all. */
static void test_debezium_skips_meta(void **state)
{
    (void)state;
    const char *all[] = {EV_SCHEMA, EV_INS, EV_DDL, EV_UPD};
    Walhook__Event ev[4], *evp[4];
    for (size_t i = 0; i < 4; i++) {
        walhook__event__init(&ev[i]);
        ev[i].commit_lsn = 0x100 + i;
        ev[i].json.data = (uint8_t *)all[i];
        ev[i].json.len = strlen(all[i]);
        evp[i] = &ev[i];
    }
    const struct {
        const char *env, *ops;
        size_t kept;
        const char *first_op; /* op of the first kept event, in its envelope */
    } cases[] = {
        {"debezium", "", 2, "c"},
        {"debezium", "insert, update", 2, "c"},
        {"debezium", "schema insert update", 3, "schema"},
        {"debezium", "ddl,insert,update", 3, "c"},
        {"debezium", "schema,ddl,insert,update", 4, "schema"},
        {"cloudevents", "", 4, NULL},
        {"native", "", 4, NULL},
    };
    char err[256];
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        wh_delivery d;
        memset(&d, 0, sizeof(d));
        snprintf(d.envelope, sizeof(d.envelope), "%s", cases[k].env);
        snprintf(d.filter_ops, sizeof(d.filter_ops), "%s", cases[k].ops);
        dsp_format fmt;
        memset(&fmt, 0, sizeof(fmt));
        assert_int_equal(dsp_format_build(&fmt, &d, NULL, err, sizeof(err)), WH_OK);
        dsp_batch b;
        memset(&b, 0, sizeof(b));
        uint64_t filtered = 0;
        assert_int_equal(dsp_batch_fill_ex(&b, "default", evp, 4, 0, 0, 0, &fmt, &filtered, 0), 4);
        assert_int_equal(b.n, cases[k].kept);
        assert_int_equal(filtered, 4 - cases[k].kept);
        if (cases[k].first_op != NULL) {
            assert_int_equal(b.rendered, 1);
            json_error_t je;
            json_t *a = json_loadb(b.wire.data, b.wire.len, 0, &je);
            assert_non_null(a);
            assert_int_equal(json_array_size(a), cases[k].kept);
            assert_string_equal(json_string_value(json_object_get(json_array_get(a, 0), "op")),
                                cases[k].first_op);
            json_decref(a);
        }
        /* replayed dead letters (match_all) go whatever they are */
        fmt.match_all = 1;
        filtered = 0;
        assert_int_equal(dsp_batch_fill_ex(&b, "default", evp, 4, 0, 0, 0, &fmt, &filtered, 0), 4);
        assert_int_equal(b.n, 4);
        assert_int_equal(filtered, 0);
        dsp_batch_free(&b);
        dsp_format_free(&fmt);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_names),         cmocka_unit_test(test_native),
        cmocka_unit_test(test_debezium_fields),     cmocka_unit_test(test_debezium_origin),
        cmocka_unit_test(test_schema_ddl_events),   cmocka_unit_test(test_cloudevents_structured),
        cmocka_unit_test(test_cloudevents_binary),  cmocka_unit_test(test_columns),
        cmocka_unit_test(test_malformed),           cmocka_unit_test(test_index_same_output),
        cmocka_unit_test(test_batch_fill_rendered), cmocka_unit_test(test_debezium_unchanged_toast),
        cmocka_unit_test(test_debezium_skips_meta), cmocka_unit_test(test_debezium_change_lsn),
        cmocka_unit_test(test_debezium_snapshot),   cmocka_unit_test(test_index_maps_same_output),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
