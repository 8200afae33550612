/* The admin API's routes (adm_api_handle) without a socket, on an
 * in-memory store: status codes, error bodies, auth scopes, ETag/If-Match,
 * redaction, and the OpenAPI document against the route table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <cmocka.h>
#include <jansson.h>

#include "admin_memstore.h"
#include "../../services/admin/adm_api.h"
#include "../../services/admin/adm_auth.h"
#include "../../services/admin/adm_bg.h"
#include "../../services/admin/adm_page.h"
#include "wh_budget.h"

#define READ_TOK "Bearer read-token-0123456789"
#define ADMIN_TOK "Bearer admin-token-0123456789"

typedef struct fx {
    memstore m;
    adm_auth *auth;
    adm_api *api;
    adm_response r;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(memstore_init(&f->m), WH_OK);
    char err[WH_ERRLEN];
    assert_int_equal(adm_auth_from_tokens(&f->auth, "read-token-0123456789",
                                          "admin-token-0123456789", 1, err, sizeof(err)),
                     WH_OK);
    adm_backend be = memstore_backend(&f->m);
    assert_int_equal(adm_api_new(&f->api, &f->m.base, &be, f->auth, err, sizeof(err)), WH_OK);
    adm_response_init(&f->r);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    adm_response_free(&f->r);
    adm_api_free(f->api);
    adm_auth_free(f->auth);
    memstore_free(&f->m);
    free(f);
    return 0;
}

/* Sends a request; returns the status; the body is f->r.body (NUL-ended). */
static int call(fx *f, const char *method, const char *path, const char *tok, const char *if_match,
                const char *body)
{
    adm_request q;
    memset(&q, 0, sizeof(q));
    q.method = method;
    q.path = path;
    q.authorization = tok;
    q.if_match = if_match;
    q.content_type = body ? "application/json" : NULL;
    q.body = body;
    q.body_len = body ? strlen(body) : 0;
    adm_api_handle(f->api, &q, &f->r);
    wh_buf_cstr(&f->r.body);
    return f->r.status;
}

static const char *body(fx *f)
{
    return f->r.body.data ? f->r.body.data : "";
}

static void assert_error(fx *f, const char *code, const char *field)
{
    json_t *j = json_loads(body(f), 0, NULL);
    assert_non_null(j);
    json_t *e = json_object_get(j, "error");
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "code")), code);
    assert_non_null(json_string_value(json_object_get(e, "message")));
    if (field) {
        const char *got = json_string_value(json_object_get(e, "field"));
        if (!got || strstr(got, field) == NULL)
            fail_msg("field '%s' expected in %s", field, body(f));
    }
    json_decref(j);
}

static void test_routing_and_auth(void **state)
{
    fx *f = *state;
    assert_int_equal(call(f, "GET", "/nope", NULL, NULL, NULL), 404);
    assert_error(f, "not_found", NULL);
    assert_int_equal(call(f, "GET", "/v1/tenants/default/targets/t0/x", ADMIN_TOK, NULL, NULL),
                     404);
    assert_int_equal(call(f, "PUT", "/v1/tenants", ADMIN_TOK, NULL, NULL), 405);
    assert_string_equal(f->r.allow, "GET, HEAD, POST");
    assert_error(f, "method_not_allowed", NULL);
    assert_int_equal(call(f, "GET", "/v1/tenants/default/targets/t0/pause", ADMIN_TOK, NULL, NULL),
                     405);
    /* probes open, API closed */
    assert_int_equal(call(f, "GET", "/livez", NULL, NULL, NULL), 200);
    assert_int_equal(call(f, "GET", "/metrics", NULL, NULL, NULL), 200);
    assert_int_equal(call(f, "GET", "/v1/tenants", NULL, NULL, NULL), 401);
    assert_true(f->r.challenge);
    assert_error(f, "unauthorized", "Authorization");
    assert_int_equal(call(f, "GET", "/v1/tenants", "Bearer wrong-token-0123456789", NULL, NULL),
                     401);
    assert_int_equal(call(f, "GET", "/v1/tenants", "Basic abc", NULL, NULL), 401);
    assert_int_equal(call(f, "GET", "/config", NULL, NULL, NULL), 401);
    assert_int_equal(call(f, "GET", "/v1/tenants", READ_TOK, NULL, NULL), 200);
    assert_int_equal(call(f, "POST", "/v1/tenants/default/targets/t0/pause", READ_TOK, NULL, NULL),
                     403);
    assert_error(f, "forbidden", NULL);
    assert_int_equal(f->m.puts, 0);
    assert_true(adm_auth_equal("abc", "abc"));
    assert_false(adm_auth_equal("abc", "abd"));
    assert_false(adm_auth_equal("abc", "abcd"));
    assert_false(adm_auth_equal("", "a"));
}

static void test_tenants_and_redaction(void **state)
{
    fx *f = *state;
    assert_int_equal(call(f, "GET", "/v1/tenants", READ_TOK, NULL, NULL), 200);
    assert_string_equal(f->r.etag, "\"1\"");
    assert_non_null(strstr(body(f), "\"default\""));
    assert_null(strstr(body(f), "hunter2"));
    assert_null(strstr(body(f), "MfKQ9r8"));
    assert_int_equal(call(f, "GET", "/v1/tenants/default", READ_TOK, NULL, NULL), 200);
    assert_int_equal(call(f, "GET", "/v1/tenants/nope", READ_TOK, NULL, NULL), 404);
    assert_error(f, "not_found", "tenant");
    assert_int_equal(call(f, "GET", "/config", READ_TOK, NULL, NULL), 200);
    assert_null(strstr(body(f), "hunter2"));
    assert_null(strstr(body(f), "MfKQ9r8"));
    assert_non_null(strstr(body(f), "\"version\":1"));

    /* create a second tenant, then change and remove it */
    assert_int_equal(call(f, "POST", "/v1/tenants", ADMIN_TOK, NULL,
                          "{\"name\":\"b\",\"source\":{\"dsn\":\"postgresql://u:pw2@127.0.0.1/b\","
                          "\"slot\":\"walhook_b\"}}"),
                     201);
    assert_null(strstr(body(f), "pw2"));
    assert_string_equal(f->r.etag, "\"2\"");
    assert_int_equal(call(f, "POST", "/v1/tenants", ADMIN_TOK, NULL,
                          "{\"name\":\"b\",\"source\":{\"dsn\":\"postgresql://127.0.0.1/b\"}}"),
                     409);
    assert_int_equal(call(f, "POST", "/v1/tenants", ADMIN_TOK, NULL, "{\"name\":\"c\"}"), 400);
    assert_error(f, "bad_request", "source.dsn");
    assert_int_equal(call(f, "POST", "/v1/tenants", ADMIN_TOK, NULL,
                          "{\"name\":\"c\",\"source\":{\"dsn\":\"host=x\",\"colour\":1}}"),
                     400);
    assert_error(f, "bad_request", "source.colour");
    /* a DSN libpq cannot parse: 400 naming source.dsn, never quoting it */
    assert_int_equal(call(f, "POST", "/v1/tenants", ADMIN_TOK, NULL,
                          "{\"name\":\"c\",\"source\":{\"dsn\":"
                          "\"postgresql://u:PWMARK@[]:5432/db\"}}"),
                     400);
    assert_error(f, "bad_request", "source.dsn");
    assert_null(strstr(body(f), "PWMARK"));
    assert_int_equal(call(f, "PATCH", "/v1/tenants/b", ADMIN_TOK, "\"2\"",
                          "{\"source\":{\"publication\":\"pub_b\"}}"),
                     200);
    assert_non_null(strstr(body(f), "pub_b"));
    assert_int_equal(call(f, "PATCH", "/v1/tenants/b", ADMIN_TOK, NULL, "{\"name\":\"zz\"}"), 400);
    assert_int_equal(call(f, "DELETE", "/v1/tenants/b", ADMIN_TOK, NULL, NULL), 200);
    assert_int_equal(call(f, "DELETE", "/v1/tenants/b", ADMIN_TOK, NULL, NULL), 404);
    assert_int_equal(call(f, "GET", "/v1/slots", READ_TOK, NULL, NULL), 200);
    assert_non_null(strstr(body(f), "\"lag_bytes\":4096"));
    assert_non_null(strstr(body(f), "\"wal_status\":\"reserved\""));
}

/* A table check that answers by the table's name: public.t published,
 * public.no not, public.err the source cannot tell, public.slow the source
 * did not answer in time. */
static int stub_table_check(void *arg, const wh_state_tenant *t, const char *table, char *err,
                            size_t errlen)
{
    (void)arg;
    (void)t;
    if (strcmp(table, "public.err") == 0) {
        wh_seterr(err, errlen, "the source of tenant 'default' (h:1): refused");
        return -1;
    }
    if (strcmp(table, "public.slow") == 0) {
        wh_seterr(err, errlen,
                  "the source of tenant 'default' (h:1) did not answer the publication query "
                  "within 3000 ms");
        return -2;
    }
    return strcmp(table, "public.t") == 0;
}

/* POST /v1/tenants/{t}/backfill with a source check: 202 for a published
 * table, 404 for another, 503 when the source cannot tell, 504 ("timeout")
 * when it did not answer in time, the message passed on; nothing recorded
 * but the 202. */
static void test_backfill_source_check(void **state)
{
    fx *f = *state;
    adm_api_free(f->api);
    adm_backend be = memstore_backend(&f->m);
    be.table_check = stub_table_check;
    char err[WH_ERRLEN];
    assert_int_equal(adm_api_new(&f->api, &f->m.base, &be, f->auth, err, sizeof(err)), WH_OK);
    const char *path = "/v1/tenants/default/backfill";
    assert_int_equal(call(f, "POST", path, ADMIN_TOK, NULL, "{\"table\":\"public.no\"}"), 404);
    assert_error(f, "not_found", "table");
    assert_int_equal(call(f, "POST", path, ADMIN_TOK, NULL, "{\"table\":\"public.err\"}"), 503);
    assert_error(f, "unavailable", NULL);
    assert_non_null(strstr(body(f), "(h:1): refused"));
    assert_int_equal(call(f, "POST", path, ADMIN_TOK, NULL, "{\"table\":\"public.slow\"}"), 504);
    assert_error(f, "timeout", NULL);
    assert_non_null(strstr(body(f), "did not answer the publication query within 3000 ms"));
    assert_int_equal(call(f, "POST", path, ADMIN_TOK, NULL, "{\"table\":\"public.t\"}"), 202);
    assert_int_equal(call(f, "GET", "/v1/tenants/default", READ_TOK, NULL, NULL), 200);
    assert_non_null(strstr(body(f), "\"backfills\":\"2:public.t\""));
}

/* POST/GET /v1/tenants/{t}/backfill: bodies checked, requests kept in the
 * tenant's source.backfills with increasing ids, at least the state
 * version + 1 (no source check and no
 * progress without those backends). */
static void test_backfill(void **state)
{
    fx *f = *state;
    const char *path = "/v1/tenants/default/backfill";
    static const char *const bad[] = {"{}",
                                      "{\"table\":5}",
                                      "{\"table\":\"nodot\"}",
                                      "{\"table\":\".t\"}",
                                      "{\"table\":\"a.b;c.d\"}",
                                      "{\"table\":\"public.t\",\"x\":1}",
                                      "[1]",
                                      "nope"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (call(f, "POST", path, ADMIN_TOK, NULL, bad[i]) != 400)
            fail_msg("POST %s: %d %s", bad[i], f->r.status, body(f));
    }
    assert_int_equal(call(f, "POST", path, READ_TOK, NULL, "{\"table\":\"public.t\"}"), 403);
    assert_int_equal(
        call(f, "POST", "/v1/tenants/nope/backfill", ADMIN_TOK, NULL, "{\"table\":\"public.t\"}"),
        404);
    assert_int_equal(call(f, "POST", path, ADMIN_TOK, NULL, "{\"table\":\"public.t\"}"), 202);
    assert_non_null(strstr(body(f), "\"id\":\"bf-2\""));
    assert_int_equal(call(f, "POST", path, ADMIN_TOK, NULL, "{\"table\":\"s.u\"}"), 202);
    assert_non_null(strstr(body(f), "\"id\":\"bf-3\""));
    assert_int_equal(call(f, "GET", path, READ_TOK, NULL, NULL), 200);
    assert_non_null(strstr(body(f), "{\"id\":\"bf-2\",\"table\":\"public.t\"}"));
    assert_non_null(strstr(body(f), "{\"id\":\"bf-3\",\"table\":\"s.u\"}"));
    assert_non_null(strstr(body(f), "\"jobs\":null"));
    assert_int_equal(call(f, "GET", "/v1/tenants/default", READ_TOK, NULL, NULL), 200);
    assert_non_null(strstr(body(f), "\"backfills\":\"2:public.t;3:s.u\""));
    /* full: the oldest requests go, the ids go on */
    char b[300];
    char longname[200];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    longname[5] = '.';
    snprintf(b, sizeof(b), "{\"table\":\"%s\"}", longname);
    for (int i = 0; i < 12; i++)
        assert_int_equal(call(f, "POST", path, ADMIN_TOK, NULL, b), 202);
    assert_non_null(strstr(body(f), "\"id\":\"bf-15\""));
    assert_int_equal(call(f, "GET", path, READ_TOK, NULL, NULL), 200);
    assert_null(strstr(body(f), "\"bf-2\""));
    assert_non_null(strstr(body(f), "\"bf-15\""));
}

static void test_targets(void **state)
{
    fx *f = *state;
    const char *tg = "/v1/tenants/default/targets";
    assert_int_equal(call(f, "GET", tg, READ_TOK, NULL, NULL), 200);
    assert_non_null(strstr(body(f), "\"t0\""));
    assert_int_equal(call(f, "GET", "/v1/tenants/default/targets/t0", READ_TOK, NULL, NULL), 200);
    assert_null(strstr(body(f), "MfKQ9r8"));
    assert_int_equal(call(f, "GET", "/v1/tenants/default/targets/zz", READ_TOK, NULL, NULL), 404);
    assert_error(f, "not_found", "target");
    assert_int_equal(call(f, "GET", "/v1/tenants/nope/targets", READ_TOK, NULL, NULL), 404);

    /* a new target starts at the end: SetOffset before the state write */
    assert_int_equal(
        call(f, "POST", tg, ADMIN_TOK, NULL, "{\"name\":\"a\",\"url\":\"http://127.0.0.1:1/a\"}"),
        201);
    assert_int_equal(f->m.set_offsets, 1);
    assert_non_null(strstr(body(f), "\"start_position\":\"0/16B3748:2\""));
    /* stamped with the version that creates it, as the store does: what it
     * sent is what the store holds (read_back compares them) */
    json_t *ja = json_loads(body(f), 0, NULL);
    assert_non_null(ja);
    assert_true(json_integer_value(json_object_get(ja, "created_version")) ==
                (json_int_t)f->m.cur->version);
    json_decref(ja);
    assert_int_equal(call(f, "POST", tg, ADMIN_TOK, NULL,
                          "{\"name\":\"b\",\"url\":\"http://127.0.0.1:1/b\",\"start\":\"0/10:3\"}"),
                     201);
    assert_non_null(strstr(body(f), "\"start_position\":\"0/10:3\""));
    assert_int_equal(
        call(f, "POST", tg, ADMIN_TOK, NULL, "{\"name\":\"a\",\"url\":\"http://127.0.0.1:1/a\"}"),
        409);
    assert_int_equal(call(f, "POST", tg, ADMIN_TOK, NULL, "{\"name\":\"c\",\"url\":\"ftp://x\"}"),
                     400);
    assert_error(f, "bad_request", "url");
    assert_int_equal(call(f, "POST", tg, ADMIN_TOK, NULL,
                          "{\"name\":\"c\",\"url\":\"http://h/\",\"colour\":\"red\"}"),
                     400);
    assert_error(f, "bad_request", "colour");
    assert_int_equal(call(f, "POST", tg, ADMIN_TOK, NULL,
                          "{\"name\":\"c\",\"url\":\"http://h/\",\"start\":\"yesterday\"}"),
                     400);
    assert_error(f, "bad_request", "start");
    assert_int_equal(
        call(f, "POST", tg, ADMIN_TOK, NULL, "{\"name\":\"bad name\",\"url\":\"http://h/\"}"), 400);
    assert_int_equal(call(f, "POST", tg, ADMIN_TOK, NULL,
                          "{\"name\":\"c\",\"url\":\"http://h/\",\"batch_max_events\":\"many\"}"),
                     400);
    assert_error(f, "bad_request", "batch_max_events");
    /* a create the store refuses to write: 503, and the offset its SetOffset
     * made is dropped (it would hold the GC for no target); a 400 before the
     * SetOffset drops nothing */
    assert_int_equal(f->m.drop_offsets, 0);
    f->m.fail_puts_503 = 1;
    assert_int_equal(
        call(f, "POST", tg, ADMIN_TOK, NULL, "{\"name\":\"d\",\"url\":\"http://127.0.0.1:1/d\"}"),
        503);
    f->m.fail_puts_503 = 0;
    assert_int_equal(f->m.drop_offsets, 1);
    mem_offset *od = mem_find_offset(&f->m, "default", "d");
    assert_non_null(od);
    assert_true(od->dropped);
    assert_int_equal(call(f, "GET", "/v1/tenants/default/targets/d", READ_TOK, NULL, NULL), 404);
    /* made again: SetOffset brings it back */
    assert_int_equal(
        call(f, "POST", tg, ADMIN_TOK, NULL, "{\"name\":\"d\",\"url\":\"http://127.0.0.1:1/d\"}"),
        201);
    assert_false(od->dropped);
    assert_int_equal(f->m.drop_offsets, 1);
    assert_int_equal(call(f, "DELETE", "/v1/tenants/default/targets/d", ADMIN_TOK, NULL, NULL),
                     200);
    /* the store dies mid-write, its reply lost: the state read back says
     * what happened. Written: 201 / 200, nothing undone, no second write */
    int puts = f->m.puts, drops = f->m.drop_offsets;
    f->m.lose_put_written = 1;
    assert_int_equal(
        call(f, "POST", tg, ADMIN_TOK, NULL, "{\"name\":\"e\",\"url\":\"http://127.0.0.1:1/e\"}"),
        201);
    assert_non_null(strstr(body(f), "\"start_position\":\"0/16B3748:2\""));
    assert_int_equal(f->m.puts, puts + 1);
    assert_int_equal(f->m.drop_offsets, drops);
    f->m.lose_put_written = 1;
    assert_int_equal(call(f, "PATCH", "/v1/tenants/default/targets/e", ADMIN_TOK, NULL,
                          "{\"url\":\"http://127.0.0.1:2/e\"}"),
                     200);
    assert_non_null(strstr(body(f), "http://127.0.0.1:2/e"));
    assert_int_equal(f->m.puts, puts + 2);
    /* not written (yet): 503 saying the outcome is unknown; a create's
     * offset is dropped as for a refused write */
    f->m.lose_put_unwritten = 1;
    assert_int_equal(call(f, "PATCH", "/v1/tenants/default/targets/e", ADMIN_TOK, NULL,
                          "{\"url\":\"http://127.0.0.1:3/e\"}"),
                     503);
    assert_non_null(strstr(body(f), "outcome is unknown"));
    assert_null(strstr(body(f), "refused"));
    f->m.lose_put_unwritten = 1;
    assert_int_equal(
        call(f, "POST", tg, ADMIN_TOK, NULL, "{\"name\":\"g\",\"url\":\"http://127.0.0.1:1/g\"}"),
        503);
    assert_non_null(strstr(body(f), "outcome is unknown"));
    assert_int_equal(f->m.drop_offsets, drops + 1);
    assert_int_equal(f->m.puts, puts + 2);
    assert_int_equal(call(f, "DELETE", "/v1/tenants/default/targets/e", ADMIN_TOK, NULL, NULL),
                     200);

    /* ETag / If-Match */
    assert_int_equal(call(f, "GET", "/v1/tenants/default/targets/a", READ_TOK, NULL, NULL), 200);
    char etag[32];
    wh_strlcpy(etag, f->r.etag, sizeof(etag));
    assert_int_equal(call(f, "PATCH", "/v1/tenants/default/targets/a", ADMIN_TOK, etag,
                          "{\"url\":\"http://127.0.0.1:2/a\",\"batch_max_events\":7}"),
                     200);
    assert_non_null(strstr(body(f), "127.0.0.1:2"));
    assert_int_equal(call(f, "PATCH", "/v1/tenants/default/targets/a", ADMIN_TOK, etag,
                          "{\"url\":\"http://127.0.0.1:3/a\"}"),
                     412);
    assert_error(f, "precondition_failed", NULL);
    assert_int_equal(
        call(f, "PATCH", "/v1/tenants/default/targets/a", ADMIN_TOK, "\"x\"", "{\"paused\":true}"),
        400);
    /* without If-Match a lost race is retried */
    f->m.fail_next_put_412 = 1;
    assert_int_equal(
        call(f, "PATCH", "/v1/tenants/default/targets/a", ADMIN_TOK, NULL, "{\"paused\":true}"),
        200);
    assert_non_null(strstr(body(f), "\"paused\":true"));
    assert_int_equal(call(f, "POST", "/v1/tenants/default/targets/a/resume", ADMIN_TOK, NULL, NULL),
                     200);
    assert_non_null(strstr(body(f), "\"paused\":false"));
    assert_int_equal(call(f, "POST", "/v1/tenants/default/targets/a/pause", ADMIN_TOK, NULL, "{}"),
                     200);
    assert_non_null(strstr(body(f), "\"paused\":true"));
    assert_int_equal(
        call(f, "POST", "/v1/tenants/default/targets/a/pause", ADMIN_TOK, NULL, "{\"x\":1}"), 400);

    /* secrets: written, never read back */
    assert_int_equal(call(f, "PATCH", "/v1/tenants/default/targets/a", ADMIN_TOK, NULL,
                          "{\"secrets\":[\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]}"),
                     200);
    assert_null(strstr(body(f), "MfKQ9r8"));
    assert_int_equal(call(f, "PATCH", "/v1/tenants/default/targets/a", ADMIN_TOK, NULL,
                          "{\"secrets\":[\"not-a-secret\"]}"),
                     400);
    assert_error(f, "bad_request", "secret");

    /* offsets */
    assert_int_equal(call(f, "POST", "/v1/tenants/default/targets/a/offset", ADMIN_TOK, NULL,
                          "{\"position\":\"0/20:1\"}"),
                     200);
    assert_non_null(strstr(body(f), "\"previous\":\"0/16B3748:2\""));
    assert_non_null(strstr(body(f), "\"position\":\"0/20:1\""));
    assert_int_equal(call(f, "POST", "/v1/tenants/default/targets/a/offset", ADMIN_TOK, NULL,
                          "{\"to\":\"end\"}"),
                     200);
    assert_non_null(strstr(body(f), "\"previous\":\"0/20:1\""));
    assert_int_equal(call(f, "POST", "/v1/tenants/default/targets/a/offset", ADMIN_TOK, NULL,
                          "{\"to\":\"start\"}"),
                     400);
    assert_int_equal(call(f, "POST", "/v1/tenants/default/targets/a/offset", ADMIN_TOK, NULL,
                          "{\"position\":\"0/1\",\"to\":\"end\"}"),
                     400);
    assert_int_equal(call(f, "POST", "/v1/tenants/default/targets/zz/offset", ADMIN_TOK, NULL,
                          "{\"to\":\"end\"}"),
                     404);

    assert_int_equal(call(f, "DELETE", "/v1/tenants/default/targets/a", ADMIN_TOK, NULL, NULL),
                     200);
    assert_int_equal(call(f, "DELETE", "/v1/tenants/default/targets/a", ADMIN_TOK, NULL, NULL),
                     404);
}

/* A tenant or a target that would take the store over its memory budget
 * (the one it reports in its metrics) is refused with 409 naming the
 * parts; within the budget it is created; removing always works. */
/* a target's state: needs_snapshot (with since and reason from the
 * store's metrics) before paused; active; unknown without the store's
 * metrics */
static void test_target_state(void **state)
{
    fx *f = *state;
    const char *tg = "/v1/tenants/default/targets";
    assert_int_equal(
        call(f, "POST", tg, ADMIN_TOK, NULL, "{\"name\":\"b\",\"url\":\"http://127.0.0.1:1/b\"}"),
        201);
    assert_int_equal(call(f, "GET", "/v1/tenants/default/targets/t0", READ_TOK, NULL, NULL), 200);
    assert_non_null(strstr(body(f), "\"state\":\"unknown\""));
    f->m.store_metrics =
        "# TYPE walhook_store_target_needs_snapshot gauge\n"
        "walhook_store_target_needs_snapshot{tenant=\"default\",target=\"t0\"} 1\n"
        "walhook_store_target_needs_snapshot{tenant=\"other\",target=\"b\"} 1\n"
        "# TYPE walhook_store_target_needs_snapshot_since_seconds gauge\n"
        "walhook_store_target_needs_snapshot_since_seconds{tenant=\"default\",target=\"t0\","
        "reason=\"force_resync_disconnected\"} 1764772961\n"
        "walhook_store_target_needs_snapshot_since_seconds{tenant=\"other\",target=\"b\","
        "reason=\"retention_cap\"} 1\n";
    assert_int_equal(call(f, "GET", "/v1/tenants/default/targets/t0", READ_TOK, NULL, NULL), 200);
    json_t *j = json_loads(body(f), 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "needs_snapshot");
    json_t *ns = json_object_get(j, "needs_snapshot");
    assert_string_equal(json_string_value(json_object_get(ns, "since")), "2025-12-03T14:42:41Z");
    assert_string_equal(json_string_value(json_object_get(ns, "reason")),
                        "force_resync_disconnected");
    json_decref(j);
    /* the list: t0 marked, b (marked in another tenant only) active, then paused */
    assert_int_equal(call(f, "POST", "/v1/tenants/default/targets/b/pause", ADMIN_TOK, NULL, NULL),
                     200);
    assert_int_equal(call(f, "GET", tg, READ_TOK, NULL, NULL), 200);
    j = json_loads(body(f), 0, NULL);
    assert_non_null(j);
    size_t i;
    json_t *v;
    int seen = 0;
    json_array_foreach(json_object_get(j, "targets"), i, v)
    {
        const char *n = json_string_value(json_object_get(v, "name"));
        const char *st = json_string_value(json_object_get(v, "state"));
        if (strcmp(n, "t0") == 0) {
            assert_string_equal(st, "needs_snapshot");
            seen |= 1;
        } else if (strcmp(n, "b") == 0) {
            assert_string_equal(st, "paused");
            assert_true(json_is_null(json_object_get(v, "needs_snapshot")));
            seen |= 2;
        }
    }
    assert_int_equal(seen, 3);
    json_decref(j);
    assert_int_equal(call(f, "POST", "/v1/tenants/default/targets/b/resume", ADMIN_TOK, NULL, NULL),
                     200);
    assert_int_equal(call(f, "GET", "/v1/tenants/default/targets/b", READ_TOK, NULL, NULL), 200);
    assert_non_null(strstr(body(f), "\"state\":\"active\""));
    assert_non_null(strstr(body(f), "\"last_error\":null"));
    /* the dispatcher's view: b disabled by a 410 (its last error), t0
     * active with an older error; another tenant's b and a longer name
     * do not count */
    f->m.store_metrics = NULL;
    f->m.dsp_metrics =
        "walhook_target_disabled{tenant=\"default\",target=\"b\"} 1\n"
        "walhook_target_disabled{tenant=\"default\",target=\"t0\"} 0\n"
        "walhook_target_blocked{tenant=\"other\",target=\"t0\"} 1\n"
        "walhook_target_last_error_timestamp_seconds{tenant=\"default\",target=\"bb\","
        "error=\"HTTP 500 (retry)\"} 1764772990\n"
        "walhook_target_last_error_timestamp_seconds{replica=\"r1\",tenant=\"default\","
        "target=\"b\",error=\"HTTP 410 (gone)\"} 1764772961\n"
        "walhook_target_last_error_timestamp_seconds{replica=\"r2\",tenant=\"default\","
        "target=\"b\",error=\"Couldn't connect to server\"} 1764772900\n"
        "walhook_target_last_error_timestamp_seconds{tenant=\"default\",target=\"t0\","
        "error=\"HTTP 503 (retry)\"} 1764772000\n";
    assert_int_equal(call(f, "GET", "/v1/tenants/default/targets/b", READ_TOK, NULL, NULL), 200);
    j = json_loads(body(f), 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "disabled");
    assert_non_null(strstr(json_string_value(json_object_get(j, "state_reason")), "410 Gone"));
    json_t *le = json_object_get(j, "last_error");
    assert_string_equal(json_string_value(json_object_get(le, "error")), "HTTP 410 (gone)");
    assert_string_equal(json_string_value(json_object_get(le, "at")), "2025-12-03T14:42:41Z");
    json_decref(j);
    assert_int_equal(call(f, "GET", "/v1/tenants/default/targets/t0", READ_TOK, NULL, NULL), 200);
    assert_non_null(strstr(body(f), "\"state\":\"unknown\"")); /* no store metrics */
    assert_non_null(strstr(body(f), "\"error\":\"HTTP 503 (retry)\""));
    assert_null(strstr(body(f), "state_reason"));
    /* a resume counts (the dispatcher re-enables a 410 target when the
     * count grows), also of a target that is not paused */
    assert_int_equal(call(f, "POST", "/v1/tenants/default/targets/b/resume", ADMIN_TOK, NULL, NULL),
                     200);
    assert_int_equal(call(f, "GET", "/v1/tenants/default/targets/b", READ_TOK, NULL, NULL), 200);
    assert_non_null(strstr(body(f), "\"resumes\":2"));
    assert_int_equal(call(f, "POST", "/v1/tenants/default/targets/b/pause", ADMIN_TOK, NULL, NULL),
                     200);
    assert_int_equal(call(f, "GET", "/v1/tenants/default/targets/b", READ_TOK, NULL, NULL), 200);
    assert_non_null(strstr(body(f), "\"resumes\":2"));
    assert_non_null(strstr(body(f), "\"state\":\"paused\""));
    /* un-pausing by PATCH counts too; "resumes" itself is not writable */
    assert_int_equal(
        call(f, "PATCH", "/v1/tenants/default/targets/b", ADMIN_TOK, NULL, "{\"paused\":false}"),
        200);
    assert_non_null(strstr(body(f), "\"resumes\":3"));
    assert_int_equal(
        call(f, "PATCH", "/v1/tenants/default/targets/b", ADMIN_TOK, NULL, "{\"resumes\":9}"), 400);
    f->m.dsp_metrics = NULL;
    /* the targets (list and one) ask the store and the dispatcher alone:
     * the ingestor, which they do not need, adds no timeout to them */
    int all = f->m.all_stats, ts = f->m.target_stats;
    assert_int_equal(call(f, "GET", tg, READ_TOK, NULL, NULL), 200);
    assert_int_equal(call(f, "GET", "/v1/tenants/default/targets/b", READ_TOK, NULL, NULL), 200);
    assert_int_equal(f->m.all_stats, all);
    assert_int_equal(f->m.target_stats, ts + 2);
}

/* A target an older walhook stored with a filter that does not compile
 * (t0 here, put into the store's document as it would have been read)
 * shows as refused and blocks none of the writes that leave it alone; a
 * change of it that leaves the filter bad, and a new bad filter, are
 * answered 400 naming the filter; a PATCH with a good filter mends it. */
static void test_legacy_bad_filter(void **state)
{
    fx *f = *state;
    const char *tg = "/v1/tenants/default/targets";
    const char *t0 = "/v1/tenants/default/targets/t0";
    pthread_mutex_lock(&f->m.mu);
    wh_strlcpy(f->m.cur->tenants[0].targets[0].dl.filter_expr, "after.amount => 5",
               sizeof(f->m.cur->tenants[0].targets[0].dl.filter_expr));
    pthread_mutex_unlock(&f->m.mu);
    assert_int_equal(call(f, "GET", t0, READ_TOK, NULL, NULL), 200);
    assert_non_null(strstr(body(f), "\"state\":\"refused\""));
    assert_non_null(strstr(body(f), "\"config_error\":\"filter_expr: position"));
    assert_int_equal(call(f, "GET", "/", NULL, NULL, NULL), 200);
    assert_non_null(strstr(body(f), "refused: filter_expr: position"));

    /* writes that leave t0 alone */
    if (call(f, "POST", tg, ADMIN_TOK, NULL,
             "{\"name\":\"a\",\"url\":\"http://127.0.0.1:1/a\",\"filter_ops\":\"insert\"}") != 201)
        fail_msg("a target added next to the legacy one: %d %s", f->r.status, body(f));
    if (call(f, "PATCH", "/v1/tenants/default/targets/a", ADMIN_TOK, NULL,
             "{\"batch_max_events\":7}") != 200)
        fail_msg("PATCH of another target: %d %s", f->r.status, body(f));
    assert_int_equal(call(f, "POST", "/v1/tenants/default/targets/a/pause", ADMIN_TOK, NULL, NULL),
                     200);
    if (call(f, "POST", "/v1/tenants", ADMIN_TOK, NULL,
             "{\"name\":\"b\",\"source\":{\"dsn\":\"postgresql://127.0.0.1/b\","
             "\"slot\":\"walhook_b\"}}") != 201)
        fail_msg("a tenant added: %d %s", f->r.status, body(f));
    assert_int_equal(
        call(f, "PATCH", "/v1/settings", ADMIN_TOK, NULL, "{\"dispatcher.retry_base_ms\":150}"),
        200);
    assert_int_equal(call(f, "GET", t0, READ_TOK, NULL, NULL), 200);
    assert_non_null(strstr(body(f), "\"state\":\"refused\""));

    /* t0 changed, its filter left bad; the same bad filter sent again;
     * paused: 400 naming its filter, nothing stored */
    int puts = f->m.puts;
    assert_int_equal(call(f, "PATCH", t0, ADMIN_TOK, NULL, "{\"url\":\"http://127.0.0.1:2/t0\"}"),
                     400);
    assert_error(f, "bad_request", "tenants[0].targets[0].filter_expr");
    assert_non_null(strstr(body(f), "filter_expr: position"));
    assert_int_equal(
        call(f, "PATCH", t0, ADMIN_TOK, NULL, "{\"filter_expr\":\"after.amount => 5\"}"), 400);
    assert_error(f, "bad_request", "tenants[0].targets[0].filter_expr");
    assert_int_equal(call(f, "PATCH", t0, ADMIN_TOK, NULL, "{}"), 400);
    assert_error(f, "bad_request", "tenants[0].targets[0].filter_expr");
    assert_int_equal(call(f, "POST", "/v1/tenants/default/targets/t0/pause", ADMIN_TOK, NULL, NULL),
                     400);
    assert_error(f, "bad_request", "tenants[0].targets[0].filter_expr");
    /* a resume of the (unpaused) target is no silent no-op either, and a
     * resync would move its offset past what it holds back */
    assert_int_equal(
        call(f, "POST", "/v1/tenants/default/targets/t0/resume", ADMIN_TOK, NULL, NULL), 400);
    assert_error(f, "bad_request", "tenants[0].targets[0].filter_expr");
    assert_int_equal(
        call(f, "POST", "/v1/tenants/default/targets/t0/resync", ADMIN_TOK, NULL, "{}"), 400);
    assert_error(f, "bad_request", "tenants[0].targets[0].filter_expr");
    /* a new bad filter elsewhere */
    assert_int_equal(call(f, "PATCH", "/v1/tenants/default/targets/a", ADMIN_TOK, NULL,
                          "{\"filter_expr\":\"op ==\"}"),
                     400);
    assert_error(f, "bad_request", "filter_expr");
    assert_int_equal(call(f, "POST", tg, ADMIN_TOK, NULL,
                          "{\"name\":\"c\",\"url\":\"http://127.0.0.1:1/c\","
                          "\"filter_expr\":\"after.amount => 5\"}"),
                     400);
    assert_error(f, "bad_request", "filter_expr");
    assert_int_equal(f->m.puts, puts);

    /* mended */
    if (call(f, "PATCH", t0, ADMIN_TOK, NULL, "{\"filter_expr\":\"after.amount >= 5\"}") != 200)
        fail_msg("the mending PATCH: %d %s", f->r.status, body(f));
    assert_int_equal(call(f, "GET", t0, READ_TOK, NULL, NULL), 200);
    assert_null(strstr(body(f), "refused"));
    assert_null(strstr(body(f), "config_error"));
    assert_int_equal(
        call(f, "PATCH", t0, ADMIN_TOK, NULL, "{\"filter_expr\":\"after.amount => 5\"}"), 400);
    assert_error(f, "bad_request", "filter_expr");
}

static void test_memory_budget_409(void **state)
{
    fx *f = *state;
    const char *tenant = "{\"name\":\"t2\",\"source\":{\"dsn\":\"postgresql://u@127.0.0.1/x\"}}";
    const char *target = "{\"name\":\"a\",\"url\":\"http://127.0.0.1:1/a\"}";
    /* the store's plan for the current state fits, one more tenant not */
    static wh_config eff;
    wh_budget cur, more;
    wh_budget_counts n;
    wh_budget_counts_of(f->m.cur, &n);
    wh_state_effective(&eff, &f->m.base, f->m.cur, NULL);
    wh_budget_plan_store(&cur, &eff, &n);
    n.tenants++;
    wh_budget_plan_store(&more, &eff, &n);
    static char metrics[256];
    snprintf(metrics, sizeof(metrics),
             "# TYPE walhook_memory_budget_bytes gauge\n"
             /* a label before daemon (as the replica label of dispatchers) */
             "walhook_memory_budget_bytes{replica=\"r#00000001\",daemon=\"store\"} %lld\n",
             (long long)(wh_budget_need(&cur) + wh_budget_need(&more)) / 2);
    f->m.store_metrics = metrics;
    assert_int_equal(call(f, "POST", "/v1/tenants", ADMIN_TOK, NULL, tenant), 409);
    assert_error(f, "conflict", "memory_budget_bytes");
    assert_non_null(strstr(body(f), "walhook-store needs"));
    assert_non_null(strstr(body(f), "memtables"));
    assert_non_null(strstr(body(f), "ipc_buffers"));
    /* a target: the store's iterators and the dispatcher grow; the store's
     * budget holds one more reader but not 20 */
    snprintf(metrics, sizeof(metrics), "walhook_memory_budget_bytes{daemon=\"store\"} %lld\n",
             (long long)wh_budget_need(&cur) + 2 * 1024 * 1024);
    assert_int_equal(call(f, "POST", "/v1/tenants/default/targets", ADMIN_TOK, NULL, target), 201);
    char name[64], body_[160];
    int refused = 0;
    for (int i = 0; i < 20 && !refused; i++) {
        snprintf(name, sizeof(name), "x%d", i);
        snprintf(body_, sizeof(body_), "{\"name\":\"%s\",\"url\":\"http://127.0.0.1:1/a\"}", name);
        int st = call(f, "POST", "/v1/tenants/default/targets", ADMIN_TOK, NULL, body_);
        if (st == 409) {
            refused = 1;
            assert_non_null(strstr(body(f), "iterators"));
        } else {
            assert_int_equal(st, 201);
        }
    }
    assert_true(refused);
    /* removing passes although the state is at the budget */
    assert_int_equal(call(f, "DELETE", "/v1/tenants/default/targets/a", ADMIN_TOK, NULL, NULL),
                     200);
    /* with a large budget the tenant is created */
    f->m.store_metrics = "walhook_memory_budget_bytes{daemon=\"store\"} 68719476736\n";
    assert_int_equal(call(f, "POST", "/v1/tenants", ADMIN_TOK, NULL, tenant), 201);
    f->m.store_metrics = NULL;
}

static void test_settings(void **state)
{
    fx *f = *state;
    assert_int_equal(call(f, "GET", "/v1/settings", READ_TOK, NULL, NULL), 200);
    assert_non_null(strstr(body(f), "\"ingestor.flush_bytes\":4194304"));
    assert_null(strstr(body(f), "store.workers"));
    assert_int_equal(call(f, "PATCH", "/v1/settings", ADMIN_TOK, NULL,
                          "{\"ingestor.flush_bytes\":1048576,\"log_level\":\"debug\"}"),
                     200);
    assert_non_null(strstr(body(f), "\"ingestor.flush_bytes\":1048576"));
    assert_non_null(strstr(body(f), "\"log_level\":\"debug\""));
    assert_int_equal(call(f, "PATCH", "/v1/settings", ADMIN_TOK, NULL, "{\"store.workers\":8}"),
                     400);
    assert_error(f, "bad_request", "store.workers");
    assert_int_equal(call(f, "PATCH", "/v1/settings", ADMIN_TOK, NULL, "{\"no.such\":8}"), 400);
    assert_error(f, "bad_request", "no.such");
    assert_int_equal(
        call(f, "PATCH", "/v1/settings", ADMIN_TOK, NULL, "{\"ingestor.flush_bytes\":1}"), 400);
    assert_error(f, "bad_request", "ingestor.flush_bytes");
    assert_int_equal(
        call(f, "PATCH", "/v1/settings", ADMIN_TOK, NULL, "{\"ingestor.flush_bytes\":\"big\"}"),
        400);
    assert_int_equal(call(f, "PATCH", "/v1/settings", ADMIN_TOK, NULL,
                          "{\"dispatcher.retry_max_ms\":5,\"dispatcher.retry_base_ms\":50}"),
                     400);
    assert_int_equal(call(f, "PATCH", "/v1/settings", ADMIN_TOK, NULL, "{\"log_level\":\"loud\"}"),
                     400);
    assert_error(f, "bad_request", "log_level");
}

static void test_bodies(void **state)
{
    fx *f = *state;
    adm_request q;
    memset(&q, 0, sizeof(q));
    q.method = "PATCH";
    q.path = "/v1/settings";
    q.authorization = ADMIN_TOK;
    q.body_too_large = 1;
    adm_api_handle(f->api, &q, &f->r);
    assert_int_equal(f->r.status, 413);
    q.body_too_large = 0;
    q.body = "{\"log_level\":\"info\"}";
    q.body_len = strlen(q.body);
    q.content_type = "text/plain";
    adm_api_handle(f->api, &q, &f->r);
    assert_int_equal(f->r.status, 415);
    q.content_type = "application/json; charset=utf-8";
    adm_api_handle(f->api, &q, &f->r);
    assert_int_equal(f->r.status, 200);
    assert_int_equal(call(f, "PATCH", "/v1/settings", ADMIN_TOK, NULL, "{\"log_level\":"), 400);
    assert_error(f, "bad_request", "body");
    assert_int_equal(call(f, "PATCH", "/v1/settings", ADMIN_TOK, NULL, "[1,2]"), 400);
    assert_int_equal(call(f, "PATCH", "/v1/settings", ADMIN_TOK, NULL,
                          "{\"log_level\":\"info\",\"log_level\":\"warn\"}"),
                     400);
    assert_int_equal(call(f, "PATCH", "/v1/settings", ADMIN_TOK, NULL, NULL), 400);
}

static void test_page(void **state)
{
    fx *f = *state;
    assert_int_equal(call(f, "GET", "/", NULL, NULL, NULL), 200);
    assert_string_equal(f->r.content_type, "text/html; charset=utf-8");
    assert_non_null(strstr(body(f), "<td class=\"name\">t0</td>"));
    assert_non_null(strstr(body(f), "4.0 KiB")); /* slot lag */
    assert_non_null(strstr(body(f), "50.0 ms")); /* mean latency */
    assert_null(strstr(body(f), "http://"));     /* no external assets */
    assert_true(
        adm_metric_sum("a{target=\"x\"} 2\na{target=\"y\"} 3\nab 7\n", "a", "target=\"y\"") == 3.0);
    assert_true(adm_metric_sum("a 2\n", "b", NULL) == -1.0);
}

/* A store that answers each backlog read, slowly (a loaded store): the
 * reads of the page's 24 targets take longer than the page waits. The
 * page shows the state and the targets, the backlog of those read in time
 * and "-" for the rest. Before, the page used its task's reads only when
 * the task had returned, and the task read backlogs until the very
 * deadline the page waits for: the page said "runtime state unavailable:
 * the store did not answer". */
static int slow_progress(void *arg, const char *tenant, const char *consumer, adm_pos *end,
                         adm_pos *committed)
{
    struct timespec ts = {0, 150 * 1000 * 1000};
    nanosleep(&ts, NULL);
    return mem_progress(arg, tenant, consumer, end, committed);
}

static void test_page_slow_backlog(void **state)
{
    fx *f = *state;
    for (int i = 1; i < 24; i++) {
        char b[128];
        snprintf(b, sizeof(b), "{\"name\":\"s%d\",\"url\":\"http://127.0.0.1:9/s%d\"}", i, i);
        if (call(f, "POST", "/v1/tenants/default/targets", ADMIN_TOK, NULL, b) != 201)
            fail_msg("POST target s%d: %d %s", i, f->r.status, body(f));
    }
    adm_api_free(f->api);
    adm_backend be = memstore_backend(&f->m);
    be.progress = slow_progress;
    char err[WH_ERRLEN];
    assert_int_equal(adm_api_new(&f->api, &f->m.base, &be, f->auth, err, sizeof(err)), WH_OK);
    assert_int_equal(call(f, "GET", "/", NULL, NULL, NULL), 200);
    /* the page's task, if still running, is done with the backend */
    assert_int_equal(adm_bg_drain(10000), 1);
    if (strstr(body(f), "runtime state unavailable") != NULL)
        fail_msg("the store answered, the page says: %s",
                 strstr(body(f), "runtime state unavailable"));
    assert_non_null(strstr(body(f), "<td class=\"name\">t0</td>"));
    assert_non_null(strstr(body(f), "<td class=\"name\">s23</td>"));
}

/* adm_api_check decides on the headers alone, in adm_api_handle's order;
 * only a write with an admin token takes a body. */
static void test_check_before_body(void **state)
{
    fx *f = *state;
    adm_request q;
    int takes = -1;
    memset(&q, 0, sizeof(q));
    q.method = "POST";
    q.path = "/v1/tenants";
    assert_int_equal(adm_api_check(f->api, &q, &f->r, &takes), 1);
    assert_int_equal(f->r.status, 401);
    assert_true(f->r.challenge);
    q.body_too_large = 1; /* the token first: 401, not 413 */
    assert_int_equal(adm_api_check(f->api, &q, &f->r, &takes), 1);
    assert_int_equal(f->r.status, 401);
    q.authorization = READ_TOK;
    assert_int_equal(adm_api_check(f->api, &q, &f->r, &takes), 1);
    assert_int_equal(f->r.status, 403);
    q.authorization = ADMIN_TOK;
    assert_int_equal(adm_api_check(f->api, &q, &f->r, &takes), 1);
    assert_int_equal(f->r.status, 413);
    q.body_too_large = 0;
    assert_int_equal(adm_api_check(f->api, &q, &f->r, &takes), 0);
    assert_int_equal(takes, 1);
    q.method = "GET"; /* reads take no body, probes neither */
    assert_int_equal(adm_api_check(f->api, &q, &f->r, &takes), 0);
    assert_int_equal(takes, 0);
    q.path = "/livez";
    q.authorization = NULL;
    assert_int_equal(adm_api_check(f->api, &q, &f->r, &takes), 0);
    assert_int_equal(takes, 0);
    q.path = "/nope";
    assert_int_equal(adm_api_check(f->api, &q, &f->r, &takes), 1);
    assert_int_equal(f->r.status, 404);
}

/* The open pages' redaction keeps a libpq message's words, masks its
 * names. */
static void test_redact_detail(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"source unreachable: connection to server at \"10.1.2.3\", port 5433 failed: FATAL:  "
         "database \"orders\" does not exist",
         "source unreachable: connection to server at \"...\", port ... failed: FATAL:  "
         "database \"...\" does not exist"},
        {"connection to server at \"db.internal\" (10.0.0.5), port 5432 failed: FATAL:  "
         "password authentication failed for user \"app\"",
         "connection to server at \"...\" (...), port ... failed: FATAL:  password "
         "authentication failed for user \"...\""},
        {"no stats reply: ipc:///var/lib/walhook/ingestor.sock: ipc "
         "/var/lib/walhook/ingestor.sock.direct: no server (No such file or directory)",
         "no stats reply: ipc://... ipc .../ingestor.sock.direct: no server (No such file or "
         "directory)"},
        {"cannot reach 192.168.1.7:7001 (timed out)", "cannot reach ... (timed out)"},
        {"no pg_hba.conf entry for host \"10.9.8.7\", user \"app\", database \"shop\", SSL off",
         "no pg_hba.conf entry for host \"...\", user \"...\", database \"...\", SSL off"},
        {"connection to server on socket \"/run/postgresql/.s.PGSQL.5432\" failed",
         "connection to server on socket \"...\" failed"},
        {"publication \"walhook\" does not exist", "publication \"walhook\" does not exist"},
        {"not streaming (state connecting)", "not streaming (state connecting)"},
        {"role \"unterminated", "role \"..."},
        /* the other names libpq 15 quotes (its message texts) */
        {"could not translate host name \"db.internal\" to address: Name or service not known",
         "could not translate host name \"...\" to address: Name or service not known"},
        {"could not parse network address \"10.0.0.300\": Name or service not known",
         "could not parse network address \"...\": Name or service not known"},
        {"connection to server at \"fe80::1%eth0\" (fe80::1%eth0), port 5432 failed: Connection "
         "refused",
         "connection to server at \"...\" (...), port ... failed: Connection refused"},
        {"definition of service \"prod-db\" not found", "definition of service \"...\" not found"},
        {"requirepeer specifies \"postgres\", but actual peer user name is \"app\"",
         "requirepeer specifies \"...\", but actual peer user name is \"...\""},
        {"invalid port number: \"54x32\"", "invalid port number: \"...\""},
        {"IPv6 host address may not be empty in URI: \"postgresql://app@[]:5432/shop\"",
         "IPv6 host address may not be empty in URI: \"...\""},
        {"invalid URI query parameter: \"hostaddr=10.0.0.5\"",
         "invalid URI query parameter: \"...\""},
        {"invalid LDAP URL \"ldap://ldap.internal/dc=db?uniqueMember?one?(cn=x)\": no filter",
         "invalid LDAP URL \"...\": no filter"},
        {"server certificate for \"db.internal\" does not match host name \"10.0.0.5\"",
         "server certificate for \"...\" does not match host name \"...\""},
        {"FATAL:  role \"app\" is not permitted to log in",
         "FATAL:  role \"...\" is not permitted to log in"},
        {"FATAL:  no pg_hba.conf entry for replication connection from host \"10.1.1.1\", user "
         "\"rep\", no encryption",
         "FATAL:  no pg_hba.conf entry for replication connection from host \"...\", user "
         "\"...\", no encryption"},
        /* libpq 15's URI error quotes the whole URI after "):" */
        {"unexpected character \"x\" at position 27 in URI (expected \":\" or \"/\"): "
         "\"postgresql://app:s3cret@[::1]x/shop\"",
         "unexpected character \"x\" at position 27 in URI (expected \":\" or \"...\"): "
         "\"...\""},
        {"forbidden value %00 in percent-encoded value: \"s3cret%00\"",
         "forbidden value %00 in percent-encoded value: \"...\""},
        {"invalid sslmode value: \"verify-fulll\"", "invalid sslmode value: \"verify-fulll\""},
        {"missing \"=\" after \"s3cret\" in connection info string",
         "missing \"=\" after \"...\" in connection info string"},
        /* a '"' inside a quoted name (not escaped by the server) */
        {"FATAL:  database \"my\"db\" does not exist", "FATAL:  database \"...\" does not exist"},
        {"FATAL:  password authentication failed for user \"a\"b\"c\"",
         "FATAL:  password authentication failed for user \"...\""},
        /* unquoted: key=value pairs, IPv6 addresses, "server at" a name */
        {"bad conninfo host=db.internal port=5432 dbname=shop user=app sslmode=require",
         "bad conninfo host=... port=... dbname=... user=... sslmode=require"},
        {"cannot reach [2001:db8::5]:7001 or fe80::1%eth0 (timed out)",
         "cannot reach ... or ... (timed out)"},
        {"cannot reach 2001:db8:1:2:3:4:5:6: timed out; nor 0:0:0:0:0:ffff:10.0.0.5 at 12:00:01",
         "cannot reach ...: timed out; nor ... at 12:00:01"},
        {"connection to server at db.internal, port 5432 failed",
         "connection to server at ..., port ... failed"},
        {"FATAL:  database shop does not exist; role app does not exist",
         "FATAL:  database ... does not exist; role ... does not exist"},
        /* what is not a name stays */
        {"FATAL:  the database system is starting up",
         "FATAL:  the database system is starting up"},
        {"must be superuser or replication role to start walsender",
         "must be superuser or replication role to start walsender"},
        {"slot \"walhook_shop\" is active at 12:00:01",
         "slot \"walhook_shop\" is active at 12:00:01"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[256];
        wh_strlcpy(buf, cases[i].in, sizeof(buf));
        adm_redact_detail(buf, sizeof(buf));
        assert_string_equal(buf, cases[i].out);
    }
    char tiny[9] = "user \"a\""; /* longer masked: cut, never past the buffer */
    adm_redact_detail(tiny, sizeof(tiny));
    assert_string_equal(tiny, "user \"..");
}

/* Tokens from the config and a tokens file; a generated token file when
 * none is configured; short tokens refused by name. */
static void test_auth_sources(void **state)
{
    char dir[] = "/tmp/test_admin_auth.XXXXXX";
    assert_non_null(mkdtemp(dir));
    static wh_config c;
    wh_config_defaults(&c);
    wh_strlcpy(c.data_dir, dir, sizeof(c.data_dir));
    char path[256], err[WH_ERRLEN];
    adm_auth *a = NULL;

    /* nothing configured: <data_dir>/admin.token is generated, 0600 */
    assert_int_equal(adm_auth_new(&a, &c, err, sizeof(err)), WH_OK);
    snprintf(path, sizeof(path), "%s/admin.token", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char tok[256], hdr[300];
    assert_int_equal(adm_auth_read_admin_token(path, tok, sizeof(tok), err, sizeof(err)), WH_OK);
    assert_true(strlen(tok) >= ADM_TOKEN_MIN);
    snprintf(hdr, sizeof(hdr), "Bearer %s", tok);
    assert_int_equal(adm_auth_scope(a, hdr), ADM_SCOPE_ADMIN);
    assert_int_equal(adm_auth_scope(a, "Bearer x"), ADM_SCOPE_NONE);
    assert_int_equal(adm_auth_scope(a, NULL), ADM_SCOPE_NONE);
    adm_auth_free(a);
    /* a second start reads the same file */
    assert_int_equal(adm_auth_new(&a, &c, err, sizeof(err)), WH_OK);
    assert_int_equal(adm_auth_scope(a, hdr), ADM_SCOPE_ADMIN);
    adm_auth_free(a);

    /* an explicit tokens file with both scopes and a comment */
    snprintf(path, sizeof(path), "%s/tokens", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("# operators\nread:rrrrrrrrrrrrrrrrrrrr\n  admin:aaaaaaaaaaaaaaaaaaaa  # ops\n\n", f);
    fclose(f);
    wh_strlcpy(c.admin_tokens_file, path, sizeof(c.admin_tokens_file));
    wh_strlcpy(c.admin_read_token, "cccccccccccccccccccc", sizeof(c.admin_read_token));
    c.admin_open_probes = 0;
    assert_int_equal(adm_auth_new(&a, &c, err, sizeof(err)), WH_OK);
    assert_int_equal(adm_auth_scope(a, "Bearer rrrrrrrrrrrrrrrrrrrr"), ADM_SCOPE_READ);
    assert_int_equal(adm_auth_scope(a, "bearer   aaaaaaaaaaaaaaaaaaaa"), ADM_SCOPE_ADMIN);
    assert_int_equal(adm_auth_scope(a, "Bearer cccccccccccccccccccc"), ADM_SCOPE_READ);
    assert_int_equal(adm_auth_scope(a, "Bearer aaaaaaaaaaaaaaaaaaa"), ADM_SCOPE_NONE);
    assert_false(adm_auth_is_open(a, "/metrics"));
    adm_auth_free(a);

    /* too short, and a missing file: refused, named */
    wh_strlcpy(c.admin_read_token, "short", sizeof(c.admin_read_token));
    assert_int_equal(adm_auth_new(&a, &c, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "admin.read_token"));
    c.admin_read_token[0] = '\0';
    wh_strlcpy(c.admin_tokens_file, "/nonexistent/tokens", sizeof(c.admin_tokens_file));
    assert_int_equal(adm_auth_new(&a, &c, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "admin.tokens_file"));

    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* Every route of the server is in docs/openapi.json with its methods, and
 * every documented path and method is a route. */
static void test_openapi_matches_routes(void **state)
{
    fx *f = *state;
    assert_int_equal(call(f, "GET", "/v1/openapi.json", READ_TOK, NULL, NULL), 200);
    json_error_t je;
    json_t *doc = json_loads(body(f), 0, &je);
    if (!doc)
        fail_msg("openapi.json: %s (line %d)", je.text, je.line);
    assert_string_equal(json_string_value(json_object_get(doc, "openapi")), "3.1.0");
    json_t *paths = json_object_get(doc, "paths");
    size_t n;
    const adm_route_info *r = adm_api_routes(&n);
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_object_get(paths, r[i].pattern);
        if (!p)
            fail_msg("route %s is not in docs/openapi.json", r[i].pattern);
        char ms[64];
        wh_strlcpy(ms, r[i].methods, sizeof(ms));
        char *save = NULL;
        for (char *m = strtok_r(ms, ",", &save); m; m = strtok_r(NULL, ",", &save)) {
            char lower[16];
            size_t k = 0;
            for (; m[k] && k < sizeof(lower) - 1; k++)
                lower[k] = (char)(m[k] | 0x20);
            lower[k] = '\0';
            if (!json_object_get(p, lower))
                fail_msg("%s %s is not in docs/openapi.json", m, r[i].pattern);
        }
    }
    const char *path;
    json_t *item;
    json_object_foreach(paths, path, item)
    {
        size_t i = 0;
        while (i < n && strcmp(r[i].pattern, path) != 0)
            i++;
        if (i == n)
            fail_msg("documented path %s is not a route", path);
        const char *m;
        json_t *op;
        json_object_foreach(item, m, op)
        {
            if (strcmp(m, "parameters") == 0)
                continue;
            char upper[16];
            size_t k = 0;
            for (; m[k] && k < sizeof(upper) - 1; k++)
                upper[k] = (char)(m[k] & ~0x20);
            upper[k] = '\0';
            if (!strstr(r[i].methods, upper))
                fail_msg("documented %s %s is not answered", upper, path);
        }
    }
    json_decref(doc);
}

/* GET /v1/tenants/{t}/schemas: the store's versions grouped by table, in
 * the order of their first use, each with its description's members (a
 * pruned one's tombstone: "pruned":true, none); 404 for an unknown tenant;
 * 503 without a store. */
static int fake_schemas(void *arg, const Walhook__Request *req, Walhook__Reply **rep, int *status,
                        char *err, size_t errlen)
{
    (void)arg;
    *status = 0;
    if (req->body_case != WALHOOK__REQUEST__BODY_SCHEMA_LIST)
        return wh_seterr(err, errlen, "unexpected request");
    static const char *da =
        "{\"schema\":\"public\",\"table\":\"a\",\"replica_identity\":\"default\","
        "\"key_columns\":[\"id\"],\"columns\":[{\"name\":\"id\",\"type_oid\":"
        "23,\"typmod\":-1}]}";
    Walhook__SchemaVersion v[4], *vp[4] = {&v[0], &v[1], &v[2], &v[3]};
    const char *tables[4] = {"public.a", "public.a", "public.b", "public.b"};
    uint64_t fps[4] = {9, 5, 2, 3}, lsns[4] = {0x30, 0x10, 0x20, 0x40};
    for (int i = 0; i < 4; i++) {
        walhook__schema_version__init(&v[i]);
        v[i].table = (char *)tables[i];
        v[i].fingerprint = fps[i];
        v[i].first_lsn = lsns[i];
        v[i].first_xid = 700 + (uint32_t)i;
        v[i].description.data = (uint8_t *)da;
        v[i].description.len = strlen(da);
    }
    v[3].pruned = 1; /* a tombstone: no description */
    v[3].description.data = NULL;
    v[3].description.len = 0;
    Walhook__SchemaReply sr = WALHOOK__SCHEMA_REPLY__INIT;
    sr.n_versions = 4;
    sr.versions = vp;
    Walhook__Reply r = WALHOOK__REPLY__INIT;
    r.body_case = WALHOOK__REPLY__BODY_SCHEMAS;
    r.schemas = &sr;
    uint8_t buf[4096];
    size_t n = walhook__reply__pack(&r, buf);
    *rep = walhook__reply__unpack(NULL, n, buf);
    return *rep ? WH_OK : wh_seterr(err, errlen, "unpack");
}

static void test_schemas(void **state)
{
    fx *f = *state;
    /* no store: 503 */
    assert_int_equal(call(f, "GET", "/v1/tenants/default/schemas", READ_TOK, NULL, NULL), 503);
    adm_api_free(f->api);
    adm_backend be = memstore_backend(&f->m);
    be.store_call = fake_schemas;
    char err[WH_ERRLEN];
    assert_int_equal(adm_api_new(&f->api, &f->m.base, &be, f->auth, err, sizeof(err)), WH_OK);
    assert_int_equal(call(f, "GET", "/v1/tenants/nosuch/schemas", READ_TOK, NULL, NULL), 404);
    assert_error(f, "not_found", "tenant");
    assert_int_equal(call(f, "GET", "/v1/tenants/default/schemas", NULL, NULL, NULL), 401);
    assert_int_equal(call(f, "POST", "/v1/tenants/default/schemas", ADMIN_TOK, NULL, "{}"), 405);
    assert_int_equal(call(f, "GET", "/v1/tenants/default/schemas", READ_TOK, NULL, NULL), 200);
    json_t *j = json_loads(body(f), 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "tenant")), "default");
    json_t *t = json_object_get(j, "tables");
    assert_int_equal(json_array_size(t), 2);
    json_t *ta = json_array_get(t, 0);
    assert_string_equal(json_string_value(json_object_get(ta, "table")), "public.a");
    json_t *va = json_object_get(ta, "versions");
    assert_int_equal(json_array_size(va), 2);
    json_t *v0 = json_array_get(va, 0);
    assert_string_equal(json_string_value(json_object_get(v0, "fingerprint")), "0000000000000005");
    assert_string_equal(json_string_value(json_object_get(v0, "first_lsn")), "0/10");
    assert_int_equal(json_integer_value(json_object_get(v0, "first_xid")), 701);
    assert_string_equal(json_string_value(json_object_get(v0, "replica_identity")), "default");
    assert_int_equal(json_array_size(json_object_get(v0, "columns")), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(va, 1), "fingerprint")),
                        "0000000000000009");
    assert_true(json_is_false(json_object_get(v0, "pruned")));
    json_t *tb = json_array_get(t, 1);
    assert_string_equal(json_string_value(json_object_get(tb, "table")), "public.b");
    json_t *vb = json_object_get(tb, "versions");
    assert_int_equal(json_array_size(vb), 2);
    json_t *p = json_array_get(vb, 1); /* the pruned one: listed, without columns */
    assert_string_equal(json_string_value(json_object_get(p, "fingerprint")), "0000000000000003");
    assert_string_equal(json_string_value(json_object_get(p, "first_lsn")), "0/40");
    assert_true(json_is_true(json_object_get(p, "pruned")));
    assert_null(json_object_get(p, "columns"));
    assert_true(json_is_null(json_object_get(p, "last_started_lsn")));
    json_decref(j);
}

/* ---- races and read-modify-write (the memstore's before_set_offset hook
 * plays the other writer between the request's read and its SetOffset) ---- */

/* the other writer's state change: a copy of the current state, edited */
static wh_state_tenant *hook_edit(memstore *m, wh_state **next)
{
    assert_int_equal(wh_state_clone(next, m->cur), WH_OK);
    (*next)->version = m->cur->version + 1;
    return (wh_state_tenant *)wh_state_tenant_find(*next, "default");
}

static void hook_commit(memstore *m, wh_state *next)
{
    wh_state_unref(m->cur);
    m->cur = next;
}

/* another create of "r1" has set its offset and written its state */
static void other_create_done(memstore *m)
{
    wh_state *next;
    wh_state_target *t = wh_state_target_add(hook_edit(m, &next));
    assert_non_null(t);
    wh_strlcpy(t->name, "r1", sizeof(t->name));
    wh_strlcpy(t->url, "http://127.0.0.1:1/r1", sizeof(t->url));
    hook_commit(m, next);
    mem_offset *o = mem_find_offset(m, "default", "r1");
    o->pos = (adm_pos){0x5, 1};
    o->live = 1;
}

/* another create of "r2" has set its offset, its state not written yet */
static void other_create_pending(memstore *m)
{
    mem_offset *o = mem_find_offset(m, "default", "r2");
    o->pos = (adm_pos){0x6, 1};
    o->live = 1;
}

/* a DELETE of "gone": the state without it, its offset dropped */
static void other_delete(memstore *m)
{
    wh_state *next;
    assert_int_equal(wh_state_target_remove(hook_edit(m, &next), "gone"), WH_OK);
    hook_commit(m, next);
    mem_offset *o = mem_find_offset(m, "default", "gone");
    o->pos = (adm_pos){0, 0};
    o->dropped = 1;
    o->live = 0;
}

/* another writer's PATCH of "rs" (a new version of the state) */
static void other_patch(memstore *m)
{
    wh_state *next;
    wh_state_target *t = (wh_state_target *)wh_state_target_find(hook_edit(m, &next), "rs");
    assert_non_null(t);
    wh_strlcpy(t->url, "http://127.0.0.1:1/rs2", sizeof(t->url));
    hook_commit(m, next);
}

/* Two creates of one target: the one that loses does not move the offset
 * the winner set (and reported as its start_position). */
static void test_create_race_keeps_winner_offset(void **state)
{
    fx *f = *state;
    const char *tg = "/v1/tenants/default/targets";
    f->m.before_set_offset = other_create_done;
    assert_int_equal(call(f, "POST", tg, ADMIN_TOK, NULL,
                          "{\"name\":\"r1\",\"url\":\"http://127.0.0.1:1/r1\",\"start\":\"end\"}"),
                     409);
    mem_offset *o = mem_find_offset(&f->m, "default", "r1");
    assert_true(o->live);
    assert_int_equal(o->pos.lsn, 0x5);
    assert_int_equal(o->pos.seq, 1);

    f->m.before_set_offset = other_create_pending;
    assert_int_equal(call(f, "POST", tg, ADMIN_TOK, NULL,
                          "{\"name\":\"r2\",\"url\":\"http://127.0.0.1:1/r2\",\"start\":\"end\"}"),
                     409);
    assert_error(f, "conflict", "name");
    o = mem_find_offset(&f->m, "default", "r2");
    assert_int_equal(o->pos.lsn, 0x6);
    assert_int_equal(f->m.drop_offsets, 0); /* not this request's offset to drop */

    /* a create that loses its PutState once keeps the offset it set */
    f->m.fail_next_put_412 = 1;
    assert_int_equal(
        call(f, "POST", tg, ADMIN_TOK, NULL,
             "{\"name\":\"r3\",\"url\":\"http://127.0.0.1:1/r3\",\"start\":\"0/7:1\"}"),
        201);
    assert_non_null(strstr(body(f), "\"start_position\":\"0/7:1\""));
    assert_int_equal(mem_find_offset(&f->m, "default", "r3")->pos.lsn, 0x7);
}

/* An offset request racing a DELETE of its target: 404, and the dropped
 * offset stays dropped (live, it would hold the tenant's GC for good). */
static void test_offset_vs_delete(void **state)
{
    fx *f = *state;
    assert_int_equal(call(f, "POST", "/v1/tenants/default/targets", ADMIN_TOK, NULL,
                          "{\"name\":\"gone\",\"url\":\"http://127.0.0.1:1/g\"}"),
                     201);
    f->m.before_set_offset = other_delete;
    assert_int_equal(call(f, "POST", "/v1/tenants/default/targets/gone/offset", ADMIN_TOK, NULL,
                          "{\"position\":\"0/1:1\"}"),
                     404);
    mem_offset *o = mem_find_offset(&f->m, "default", "gone");
    assert_true(o->dropped);
    assert_false(o->live);
}

static void assert_offset(fx *f, const char *target, uint64_t lsn, uint32_t seq)
{
    mem_offset *o = mem_find_offset(&f->m, "default", target);
    if (o->pos.lsn != lsn || o->pos.seq != seq)
        fail_msg("offset of %s: %llx:%u, expected %llx:%u", target, (unsigned long long)o->pos.lsn,
                 o->pos.seq, (unsigned long long)lsn, seq);
}

static const char *backfills(fx *f)
{
    return wh_state_tenant_find(f->m.cur, "default")->backfills;
}

/* resync and offset: If-Match and the state write come before the offset
 * moves; an answer that is not 2xx moved nothing. */
static void test_resync_and_offset_if_match(void **state)
{
    fx *f = *state;
    const char *rs = "/v1/tenants/default/targets/rs/resync";
    const char *off = "/v1/tenants/default/targets/rs/offset";
    assert_int_equal(
        call(f, "POST", "/v1/tenants/default/targets", ADMIN_TOK, NULL,
             "{\"name\":\"rs\",\"url\":\"http://127.0.0.1:1/rs\",\"start\":\"0/10:3\"}"),
        201);
    char stale[32];
    wh_strlcpy(stale, f->r.etag, sizeof(stale));
    assert_int_equal(call(f, "POST", "/v1/tenants/default/targets/rs/pause", ADMIN_TOK, NULL, NULL),
                     200);
    assert_int_equal(call(f, "POST", rs, ADMIN_TOK, stale, NULL), 412);
    assert_error(f, "precondition_failed", "If-Match");
    assert_offset(f, "rs", 0x10, 3);
    assert_string_equal(backfills(f), "");
    assert_int_equal(call(f, "POST", rs, ADMIN_TOK, "\"x\"", NULL), 400);
    assert_offset(f, "rs", 0x10, 3);
    f->m.fail_puts_503 = 1;
    assert_int_equal(call(f, "POST", rs, ADMIN_TOK, NULL, NULL), 503);
    f->m.fail_puts_503 = 0;
    assert_offset(f, "rs", 0x10, 3);
    assert_string_equal(backfills(f), "");
    assert_int_equal(call(f, "POST", off, ADMIN_TOK, stale, "{\"to\":\"end\"}"), 412);
    assert_error(f, "precondition_failed", "If-Match");
    assert_offset(f, "rs", 0x10, 3);
    assert_int_equal(call(f, "POST", off, ADMIN_TOK, "\"x\"", "{\"to\":\"end\"}"), 400);
    assert_offset(f, "rs", 0x10, 3);

    /* If-Match names the current version, but another write lands between
     * this request's read and its SetOffset: the store compares the version
     * when it moves the offset, so 412 and nothing moved */
    char cur[32];
    snprintf(cur, sizeof(cur), "\"%llu\"", (unsigned long long)f->m.cur->version);
    f->m.before_set_offset = other_patch;
    int moves = f->m.set_offsets;
    assert_int_equal(call(f, "POST", off, ADMIN_TOK, cur, "{\"position\":\"0/12:1\"}"), 412);
    assert_error(f, "precondition_failed", "If-Match");
    assert_non_null(strstr(body(f), "not moved"));
    assert_offset(f, "rs", 0x10, 3);
    assert_int_equal(f->m.set_offsets, moves);
    /* the same race without If-Match moves it, as before */
    f->m.before_set_offset = other_patch;
    assert_int_equal(call(f, "POST", off, ADMIN_TOK, NULL, "{\"position\":\"0/12:1\"}"), 200);
    assert_offset(f, "rs", 0x12, 1);

    /* the current version: both go through */
    snprintf(cur, sizeof(cur), "\"%llu\"", (unsigned long long)f->m.cur->version);
    assert_int_equal(call(f, "POST", off, ADMIN_TOK, cur, "{\"position\":\"0/11:1\"}"), 200);
    assert_offset(f, "rs", 0x11, 1);
    assert_int_equal(call(f, "POST", rs, ADMIN_TOK, cur, NULL), 202);
    assert_non_null(strstr(body(f), "\"previous\":\"0/11:1\""));
    assert_offset(f, "rs", MEM_END_LSN, MEM_END_SEQ);
    assert_non_null(strstr(backfills(f), "*"));
}

/* PATCH of a target with the URL a GET shows (credentials and query
 * redacted) keeps the stored URL; other redaction markers are refused. */
static void test_url_redacted_roundtrip(void **state)
{
    fx *f = *state;
    const char *url = "http://hook:pw1@127.0.0.1:1/h?token=abc";
    char req[256];
    snprintf(req, sizeof(req), "{\"name\":\"u1\",\"url\":\"%s\"}", url);
    assert_int_equal(call(f, "POST", "/v1/tenants/default/targets", ADMIN_TOK, NULL, req), 201);
    assert_int_equal(call(f, "GET", "/v1/tenants/default/targets/u1", READ_TOK, NULL, NULL), 200);
    json_t *j = json_loads(body(f), 0, NULL);
    assert_non_null(j);
    const char *shown = json_string_value(json_object_get(j, "url"));
    assert_non_null(shown);
    assert_null(strstr(shown, "pw1"));
    snprintf(req, sizeof(req), "{\"url\":\"%s\",\"batch_max_events\":9}", shown);
    json_decref(j);
    assert_int_equal(call(f, "PATCH", "/v1/tenants/default/targets/u1", ADMIN_TOK, NULL, req), 200);
    const wh_state_target *t =
        wh_state_target_find(wh_state_tenant_find(f->m.cur, "default"), "u1");
    assert_string_equal(t->url, url);
    assert_int_equal(call(f, "PATCH", "/v1/tenants/default/targets/u1", ADMIN_TOK, NULL,
                          "{\"url\":\"http://other:****@127.0.0.1:1/h\"}"),
                     400);
    assert_error(f, "bad_request", "url");
    assert_int_equal(call(f, "POST", "/v1/tenants/default/targets", ADMIN_TOK, NULL,
                          "{\"name\":\"u2\",\"url\":\"http://127.0.0.1:1/h?****\"}"),
                     400);
    t = wh_state_target_find(wh_state_tenant_find(f->m.cur, "default"), "u1");
    assert_string_equal(t->url, url);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_routing_and_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenants_and_redaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_targets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backfill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backfill_source_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_target_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_legacy_bad_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_budget_409, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_before_body, setup, teardown),
        cmocka_unit_test(test_redact_detail),
        cmocka_unit_test_setup_teardown(test_openapi_matches_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schemas, setup, teardown),
        cmocka_unit_test(test_auth_sources),
        cmocka_unit_test_setup_teardown(test_create_race_keeps_winner_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offset_vs_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resync_and_offset_if_match, setup, teardown),
        cmocka_unit_test_setup_teardown(test_url_redacted_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_page_slow_backlog, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
