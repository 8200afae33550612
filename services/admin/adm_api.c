/* adm_api: the admin's routes as a pure function of the request and a
 * backend (see adm_api.h). */
#include "adm_api.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adm_bg.h"
#include "adm_page.h"
#include "adm_slot.h"
#include "wh_budget.h"
#include "wh_lsn.h"
#include "wh_metrics.h"
#include "wh_pgerr.h"
#include "wh_snapprog.h"
#include "wh_util.h"

struct adm_api {
    pthread_mutex_t mu; /* guards base */
    wh_config *base;
    adm_backend be;
    adm_auth *auth;
    adm_page *page;
    int (*own_metrics)(void *arg, wh_buf *out); /* adm_api_set_own_metrics */
    void *own_metrics_arg;
};

void adm_api_set_own_metrics(adm_api *a, int (*fn)(void *arg, wh_buf *out), void *arg)
{
    a->own_metrics = fn;
    a->own_metrics_arg = arg;
}

/* ---- responses ---- */

void adm_response_init(adm_response *r)
{
    memset(r, 0, sizeof(*r));
    wh_buf_init(&r->body, 0);
    r->content_type = "application/json";
}

void adm_response_free(adm_response *r)
{
    wh_buf_free(&r->body);
}

static const char *code_of(int status)
{
    switch (status) {
    case 400:
        return "bad_request";
    case 401:
        return "unauthorized";
    case 403:
        return "forbidden";
    case 404:
        return "not_found";
    case 405:
        return "method_not_allowed";
    case 409:
        return "conflict";
    case 412:
        return "precondition_failed";
    case 413:
        return "payload_too_large";
    case 415:
        return "unsupported_media_type";
    case 503:
        return "unavailable";
    case 504:
        return "timeout";
    default:
        return "internal";
    }
}

/* Sets an error response; field may be NULL. Returns WH_ERR. */
static int fail(adm_response *r, int status, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(adm_response *r, int status, const char *field, const char *fmt, ...)
{
    char msg[WH_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    r->status = status;
    r->content_type = "application/json";
    r->etag[0] = '\0';
    wh_buf_reset(&r->body);
    wh_buf_puts(&r->body, "{\"error\":{\"code\":");
    const char *code = code_of(status);
    wh_json_str(&r->body, code, strlen(code));
    wh_buf_puts(&r->body, ",\"message\":");
    wh_json_str(&r->body, msg, strlen(msg));
    if (field && *field) {
        wh_buf_puts(&r->body, ",\"field\":");
        wh_json_str(&r->body, field, strnlen(field, 256));
    }
    wh_buf_puts(&r->body, "}}\n");
    return WH_ERR;
}

/* A validation message "tenants[0].targets[1].url: ..." names its field. */
static int fail_validation(adm_response *r, int status, const char *msg)
{
    char field[256] = "";
    const char *colon = strstr(msg, ": ");
    if (colon && (size_t)(colon - msg) < sizeof(field) &&
        memchr(msg, ' ', (size_t)(colon - msg)) == NULL) {
        memcpy(field, msg, (size_t)(colon - msg));
        field[colon - msg] = '\0';
    } else if (strncmp(msg, "setting '", 9) == 0) {
        const char *end = strchr(msg + 9, '\'');
        if (end && (size_t)(end - msg - 9) < sizeof(field)) {
            memcpy(field, msg + 9, (size_t)(end - msg - 9));
            field[end - msg - 9] = '\0';
        }
    }
    return fail(r, status, field, "%s", msg);
}

static int reply_json(adm_response *r, int status, json_t *j, uint64_t version)
{
    char *text = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(j);
    if (!text)
        return fail(r, 500, NULL, "cannot render the answer");
    r->status = status;
    r->content_type = "application/json";
    wh_buf_reset(&r->body);
    wh_buf_puts(&r->body, text);
    wh_buf_putc(&r->body, '\n');
    free(text);
    if (version)
        snprintf(r->etag, sizeof(r->etag), "\"%" PRIu64 "\"", version);
    return WH_OK;
}

/* ---- positions ---- */

int adm_pos_parse(const char *s, adm_pos *out)
{
    char lsn[WH_LSN_STRLEN];
    const char *colon = strchr(s, ':');
    size_t n = colon ? (size_t)(colon - s) : strlen(s);
    if (n == 0 || n >= sizeof(lsn))
        return WH_ERR;
    memcpy(lsn, s, n);
    lsn[n] = '\0';
    if (wh_lsn_parse(lsn, &out->lsn) != WH_OK)
        return WH_ERR;
    out->seq = 0;
    if (colon) {
        const char *p = colon + 1;
        if (!isdigit((unsigned char)*p))
            return WH_ERR;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (errno || *end || v > UINT32_MAX)
            return WH_ERR;
        out->seq = (uint32_t)v;
    }
    return WH_OK;
}

void adm_pos_format(adm_pos p, char *buf, size_t len)
{
    char lsn[WH_LSN_STRLEN];
    wh_lsn_format(p.lsn, lsn, sizeof(lsn));
    snprintf(buf, len, "%s:%" PRIu32, lsn, p.seq);
}

/* ---- state as JSON (always redacted) ---- */

static json_t *state_json(const wh_state *s)
{
    wh_buf b;
    wh_buf_init(&b, 0);
    json_t *j = NULL;
    if (wh_state_render(s, &b, WH_STATE_REDACT) == WH_OK)
        j = json_loadb(b.data ? b.data : "", b.len, 0, NULL);
    wh_buf_free(&b);
    return j;
}

static json_t *find_named(json_t *arr, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *n = json_string_value(json_object_get(v, "name"));
        if (n && strcmp(n, name) == 0)
            return v;
    }
    return NULL;
}

/* The redacted JSON of tenant t (a new reference) or NULL. */
static json_t *tenant_json(const wh_state *s, const char *t)
{
    json_t *all = state_json(s);
    json_t *one = all ? find_named(json_object_get(all, "tenants"), t) : NULL;
    if (one)
        json_incref(one);
    json_decref(all);
    return one;
}

static json_t *target_json(const wh_state *s, const char *t, const char *name)
{
    json_t *ten = tenant_json(s, t);
    json_t *one = ten ? find_named(json_object_get(ten, "targets"), name) : NULL;
    if (one)
        json_incref(one);
    json_decref(ten);
    return one;
}

/* ---- routes ---- */

enum { M_GET = 1, M_POST = 2, M_PATCH = 4, M_DELETE = 8, M_PUT = 16, M_HEAD = 32, M_OTHER = 64 };

typedef struct ctx {
    adm_api *a;
    const adm_request *req;
    adm_response *resp;
    int method;
    const char *tenant; /* path parameters, NUL-terminated copies */
    const char *target;
    const char *action;
    const char *item; /* 7th path segment (dead-letter routes) */
    int detail;       /* a valid token: open pages show error details */
} ctx;

typedef void (*route_fn)(ctx *c);

static void r_livez(ctx *c);
static void r_readyz(ctx *c);
static void r_metrics(ctx *c);
static void r_config(ctx *c);
static void r_page(ctx *c);
static void r_openapi(ctx *c);
static void r_tenants(ctx *c);
static void r_tenant(ctx *c);
static void r_targets(ctx *c);
static void r_target(ctx *c);
static void r_target_action(ctx *c);
static void r_settings(ctx *c);
static void r_slots(ctx *c);
static void r_dlq(ctx *c);
static void r_backfill(ctx *c);
static void r_schemas(ctx *c);

typedef struct route {
    const char *pattern;
    int methods;
    route_fn fn;
    const char *allow;
} route;

static const route routes[] = {
    {"/", M_GET | M_HEAD, r_page, "GET, HEAD"},
    {"/livez", M_GET | M_HEAD, r_livez, "GET, HEAD"},
    {"/readyz", M_GET | M_HEAD, r_readyz, "GET, HEAD"},
    {"/metrics", M_GET | M_HEAD, r_metrics, "GET, HEAD"},
    {"/config", M_GET | M_HEAD, r_config, "GET, HEAD"},
    {"/v1/openapi.json", M_GET | M_HEAD, r_openapi, "GET, HEAD"},
    {"/v1/tenants", M_GET | M_HEAD | M_POST, r_tenants, "GET, HEAD, POST"},
    {"/v1/tenants/{tenant}", M_GET | M_HEAD | M_PATCH | M_DELETE, r_tenant,
     "GET, HEAD, PATCH, DELETE"},
    {"/v1/tenants/{tenant}/targets", M_GET | M_HEAD | M_POST, r_targets, "GET, HEAD, POST"},
    {"/v1/tenants/{tenant}/backfill", M_GET | M_HEAD | M_POST, r_backfill, "GET, HEAD, POST"},
    {"/v1/tenants/{tenant}/targets/{target}", M_GET | M_HEAD | M_PATCH | M_DELETE, r_target,
     "GET, HEAD, PATCH, DELETE"},
    {"/v1/tenants/{tenant}/targets/{target}/pause", M_POST, r_target_action, "POST"},
    {"/v1/tenants/{tenant}/targets/{target}/resume", M_POST, r_target_action, "POST"},
    {"/v1/tenants/{tenant}/targets/{target}/offset", M_POST, r_target_action, "POST"},
    {"/v1/tenants/{tenant}/targets/{target}/resync", M_POST, r_target_action, "POST"},
    {"/v1/tenants/{tenant}/targets/{target}/dlq", M_GET | M_HEAD | M_DELETE, r_dlq,
     "GET, HEAD, DELETE"},
    {"/v1/tenants/{tenant}/targets/{target}/dlq/replay", M_POST, r_dlq, "POST"},
    {"/v1/tenants/{tenant}/targets/{target}/dlq/{id}", M_GET | M_HEAD, r_dlq, "GET, HEAD"},
    {"/v1/tenants/{tenant}/schemas", M_GET | M_HEAD, r_schemas, "GET, HEAD"},
    {"/v1/settings", M_GET | M_HEAD | M_PATCH, r_settings, "GET, HEAD, PATCH"},
    {"/v1/slots", M_GET | M_HEAD, r_slots, "GET, HEAD"},
};

static const adm_route_info route_infos[] = {
    {"/", "GET"},
    {"/livez", "GET"},
    {"/readyz", "GET"},
    {"/metrics", "GET"},
    {"/config", "GET"},
    {"/v1/openapi.json", "GET"},
    {"/v1/tenants", "GET,POST"},
    {"/v1/tenants/{tenant}", "GET,PATCH,DELETE"},
    {"/v1/tenants/{tenant}/targets", "GET,POST"},
    {"/v1/tenants/{tenant}/backfill", "GET,POST"},
    {"/v1/tenants/{tenant}/targets/{target}", "GET,PATCH,DELETE"},
    {"/v1/tenants/{tenant}/targets/{target}/pause", "POST"},
    {"/v1/tenants/{tenant}/targets/{target}/resume", "POST"},
    {"/v1/tenants/{tenant}/targets/{target}/offset", "POST"},
    {"/v1/tenants/{tenant}/targets/{target}/resync", "POST"},
    {"/v1/tenants/{tenant}/targets/{target}/dlq", "GET,DELETE"},
    {"/v1/tenants/{tenant}/targets/{target}/dlq/replay", "POST"},
    {"/v1/tenants/{tenant}/targets/{target}/dlq/{id}", "GET"},
    {"/v1/tenants/{tenant}/schemas", "GET"},
    {"/v1/settings", "GET,PATCH"},
    {"/v1/slots", "GET"},
};

const adm_route_info *adm_api_routes(size_t *n)
{
    *n = WH_ARRAY_LEN(route_infos);
    return route_infos;
}

static int method_bit(const char *m)
{
    static const struct {
        const char *name;
        int bit;
    } ms[] = {{"GET", M_GET},     {"HEAD", M_HEAD},     {"POST", M_POST},
              {"PATCH", M_PATCH}, {"DELETE", M_DELETE}, {"PUT", M_PUT}};
    for (size_t i = 0; i < WH_ARRAY_LEN(ms); i++)
        if (strcmp(m, ms[i].name) == 0)
            return ms[i].bit;
    return M_OTHER;
}

#define ADM_MAX_SEGS 8

/* Splits path (starting with '/') into segments; "/" has none. Returns
 * the count or -1 when malformed / too deep. */
static int split(const char *path, char segs[ADM_MAX_SEGS][WH_NAME_MAX])
{
    if (path[0] != '/')
        return -1;
    if (path[1] == '\0')
        return 0;
    int n = 0;
    const char *p = path + 1;
    for (;;) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (n >= ADM_MAX_SEGS || len == 0 || len >= WH_NAME_MAX)
            return -1;
        memcpy(segs[n], p, len);
        segs[n][len] = '\0';
        n++;
        if (!e)
            return n;
        p = e + 1;
    }
}

static const route *match(const char *path, char segs[ADM_MAX_SEGS][WH_NAME_MAX], int *nsegs)
{
    int n = split(path, segs);
    *nsegs = n;
    if (n < 0)
        return NULL;
    for (size_t i = 0; i < WH_ARRAY_LEN(routes); i++) {
        char pat[ADM_MAX_SEGS][WH_NAME_MAX];
        int pn = split(routes[i].pattern, pat);
        if (pn != n)
            continue;
        int ok = 1;
        for (int k = 0; k < n && ok; k++)
            ok = pat[k][0] == '{' || strcmp(pat[k], segs[k]) == 0;
        if (ok)
            return &routes[i];
    }
    return NULL;
}

/* ---- the entry point ---- */

static int is_read_method(int m)
{
    return m == M_GET || m == M_HEAD;
}

/* What can be decided from the request line and headers alone, in the
 * order of adm_api.h (404, 405, 401, 403, 413). 1: resp is the answer; 0:
 * the request goes on (*rt_out, *m_out; *scope_out its token's scope,
 * ADM_SCOPE_ADMIN without auth, ADM_SCOPE_NONE on an open route without a
 * valid token). */
static int precheck(adm_api *a, const adm_request *req, adm_response *resp,
                    char segs[ADM_MAX_SEGS][WH_NAME_MAX], const route **rt_out, int *m_out,
                    int *scope_out)
{
    resp->status = 200;
    resp->content_type = "application/json";
    resp->etag[0] = resp->allow[0] = '\0';
    resp->challenge = 0;
    wh_buf_reset(&resp->body);
    const char *path = req->path ? req->path : "";
    const char *method = req->method ? req->method : "";
    int nsegs;
    const route *rt = match(path, segs, &nsegs);
    if (!rt) {
        fail(resp, 404, NULL, "no such endpoint: %.200s", path);
        return 1;
    }
    int m = method_bit(method);
    if (!(rt->methods & m)) {
        fail(resp, 405, NULL, "%s does not answer %.16s (allowed: %s)", rt->pattern, method,
             rt->allow);
        wh_strlcpy(resp->allow, rt->allow, sizeof(resp->allow));
        return 1;
    }
    int scope = ADM_SCOPE_ADMIN;
    if (a->auth) {
        scope = adm_auth_scope(a->auth, req->authorization);
        if (!adm_auth_is_open(a->auth, path)) {
            if (scope == ADM_SCOPE_NONE) {
                fail(resp, 401, "Authorization",
                     req->authorization
                         ? "the bearer token is not valid"
                         : "a bearer token is required (Authorization: Bearer TOKEN)");
                resp->challenge = 1;
                return 1;
            }
            if (!is_read_method(m) && scope < ADM_SCOPE_ADMIN) {
                fail(resp, 403, "Authorization", "this token has the read scope; %s needs admin",
                     method);
                return 1;
            }
        }
    }
    if (req->body_too_large || req->body_len > ADM_MAX_BODY) {
        fail(resp, 413, "body", "the request body is larger than %u bytes", ADM_MAX_BODY);
        return 1;
    }
    *rt_out = rt;
    *m_out = m;
    *scope_out = scope;
    return 0;
}

int adm_api_check(adm_api *a, const adm_request *req, adm_response *resp, int *takes_body)
{
    char segs[ADM_MAX_SEGS][WH_NAME_MAX];
    const route *rt = NULL;
    int m = 0, scope = ADM_SCOPE_NONE;
    *takes_body = 0;
    if (precheck(a, req, resp, segs, &rt, &m, &scope))
        return 1;
    /* open routes (probes, the page) take no body: without a token it is
     * never buffered */
    *takes_body = !is_read_method(m) && scope >= ADM_SCOPE_ADMIN;
    return 0;
}

void adm_api_handle(adm_api *a, const adm_request *req, adm_response *resp)
{
    char segs[ADM_MAX_SEGS][WH_NAME_MAX];
    const route *rt = NULL;
    int m = 0, scope = ADM_SCOPE_NONE;
    if (precheck(a, req, resp, segs, &rt, &m, &scope))
        return;
    char pat[ADM_MAX_SEGS][WH_NAME_MAX];
    int pn = split(rt->pattern, pat);
    ctx c = {a,    req,  resp, m == M_HEAD ? M_GET : m, NULL,
             NULL, NULL, NULL, scope >= ADM_SCOPE_READ};
    for (int k = 0; k < pn; k++) {
        if (strcmp(pat[k], "{tenant}") == 0)
            c.tenant = segs[k];
        else if (strcmp(pat[k], "{target}") == 0)
            c.target = segs[k];
    }
    if (c.target && pn > 5)
        c.action = segs[5];
    if (c.target && pn > 6)
        c.item = segs[6];
    rt->fn(&c);
}

/* ---- backend helpers ---- */

static wh_state *get_state(ctx *c)
{
    wh_state *s = NULL;
    char err[WH_ERRLEN] = "no store";
    if (!c->a->be.get_state || c->a->be.get_state(c->a->be.arg, &s, err, sizeof(err)) != WH_OK ||
        !s) {
        fail(c->resp, 503, NULL, "cannot read the state from the store: %s", err);
        return NULL;
    }
    return s;
}

static void base_copy(adm_api *a, wh_config *out)
{
    pthread_mutex_lock(&a->mu);
    memcpy(out, a->base, sizeof(*out));
    pthread_mutex_unlock(&a->mu);
}

/* ---- probes, config, openapi, page ---- */

static void query_stats(ctx *c, adm_stat st[ADM_NDAEMONS])
{
    static const char *const names[ADM_NDAEMONS] = {"store", "ingestor", "dispatcher"};
    if (c->a->be.stats) {
        c->a->be.stats(c->a->be.arg, st);
        return;
    }
    for (int i = 0; i < ADM_NDAEMONS; i++) {
        memset(&st[i], 0, sizeof(st[i]));
        wh_strlcpy(st[i].name, names[i], sizeof(st[i].name));
        wh_strlcpy(st[i].error, "no query configured", sizeof(st[i].error));
    }
}

static void r_livez(ctx *c)
{
    c->resp->status = 200;
    c->resp->content_type = "text/plain; charset=utf-8";
    wh_buf_puts(&c->resp->body, "ok\n");
}

/* Without a valid token, the open pages (/, /readyz) keep the error
 * messages' words but not what they name of the environment: libpq's host,
 * port, database and user, endpoints (adm_redact_detail). */
static void redact_stats(ctx *c, adm_stat st[ADM_NDAEMONS])
{
    if (c->detail)
        return;
    for (int i = 0; i < ADM_NDAEMONS; i++) {
        adm_redact_detail(st[i].error, sizeof(st[i].error));
        adm_redact_detail(st[i].reason, sizeof(st[i].reason));
    }
}

static void r_readyz(ctx *c)
{
    adm_stat st[ADM_NDAEMONS];
    query_stats(c, st);
    redact_stats(c, st);
    int ready = adm_readiness(st, ADM_NDAEMONS, &c->resp->body);
    adm_stats_free(st, ADM_NDAEMONS);
    c->resp->status = ready ? 200 : 503;
}

/* Each tenant's slot as its source reports it (one short connection per
 * tenant and scrape): walhook_slot_wal_status{tenant,slot,wal_status} 1,
 * walhook_slot_lag_bytes, walhook_slot_safe_wal_size_bytes (-1: no
 * max_slot_wal_keep_size), walhook_slot_active; walhook_slot_query_ok 0 when
 * the source could not be asked. The tenants are the state's (the last one
 * read while the store does not answer: known_state). Alerts:
 * deploy/monitoring. */
/* One tenant's slot query of slots_read. */
typedef struct slot_job {
    const adm_backend *be;
    const wh_state_tenant *t;
    uint64_t deadline_ms;
    adm_slot_info *out;
} slot_job;

static void *slot_job_run(void *arg)
{
    slot_job *j = arg;
    j->be->slot(j->be->arg, j->t, j->deadline_ms, j->out);
    return NULL;
}

/* Every tenant's slot of s into si[] by deadline_ms, the tenants at once:
 * a source that does not answer (its query bounded by the deadline) costs
 * the others nothing, and is an error in its own entry. */
static void slots_read(const adm_backend *be, const wh_state *s, uint64_t deadline_ms,
                       adm_slot_info *si)
{
    slot_job jobs[WH_MAX_TENANTS];
    pthread_t th[WH_MAX_TENANTS];
    int started[WH_MAX_TENANTS];
    int n = s->ntenants < WH_MAX_TENANTS ? s->ntenants : WH_MAX_TENANTS;
    for (int i = 0; i < n; i++) {
        jobs[i] = (slot_job){be, &s->tenants[i], deadline_ms, &si[i]};
        started[i] = n > 1 && pthread_create(&th[i], NULL, slot_job_run, &jobs[i]) == 0;
        if (!started[i])
            slot_job_run(&jobs[i]);
    }
    for (int i = 0; i < n; i++)
        if (started[i])
            pthread_join(th[i], NULL);
}

/* The slot metrics, the sources asked until deadline_ms. */
static int slot_metrics(const adm_backend *be, uint64_t deadline_ms, wh_buf *out)
{
    wh_state *s = NULL;
    char err[WH_ERRLEN];
    int (*state)(void *, wh_state **, char *, size_t) =
        be->known_state ? be->known_state : be->get_state;
    if (!be->slot || !state || state(be->arg, &s, err, sizeof(err)) != WH_OK || s == NULL)
        return WH_OK;
    adm_slot_info *si = calloc((size_t)s->ntenants + 1, sizeof(*si));
    if (si == NULL) {
        wh_state_unref(s);
        return WH_ERR;
    }
    slots_read(be, s, deadline_ms, si);
    static const struct {
        const char *name, *type, *help;
    } m[] = {
        {"walhook_slot_query_ok", "gauge", "1 when the source database answered the slot query"},
        {"walhook_slot_wal_status", "gauge",
         "1, labelled with the slot's wal_status (reserved, extended, unreserved, lost)"},
        {"walhook_slot_lag_bytes", "gauge", "current WAL position - the slot's confirmed flush"},
        {"walhook_slot_safe_wal_size_bytes", "gauge",
         "WAL that can still be written before the slot is lost; -1 when unlimited"},
        {"walhook_slot_active", "gauge", "1 while a walsender streams from the slot"},
    };
    int rc = WH_OK;
    for (size_t k = 0; k < WH_ARRAY_LEN(m) && rc == WH_OK; k++) {
        rc |= wh_metric_header(out, m[k].name, m[k].type, m[k].help);
        for (int i = 0; i < s->ntenants && rc == WH_OK; i++) {
            const adm_slot_info *x = &si[i];
            int ok = x->error[0] == '\0' && x->found;
            char lab[2 * WH_NAME_MAX + 64];
            snprintf(lab, sizeof(lab), "tenant=\"%s\",slot=\"%s\"", s->tenants[i].name,
                     s->tenants[i].slot);
            if (k == 0)
                rc |= wh_metric_u64(out, m[k].name, lab, ok);
            else if (!ok)
                continue;
            else if (k == 1 && x->wal_status[0])
                rc |= wh_buf_printf(out, "%s{%s,wal_status=\"%.31s\"} 1\n", m[k].name, lab,
                                    x->wal_status);
            else if (k == 2 && x->lag_bytes >= 0)
                rc |= wh_metric_i64(out, m[k].name, lab, x->lag_bytes);
            else if (k == 3)
                rc |= wh_metric_i64(out, m[k].name, lab, x->safe_wal_size);
            else if (k == 4)
                rc |= wh_metric_u64(out, m[k].name, lab, x->active ? 1 : 0);
        }
    }
    free(si);
    wh_state_unref(s);
    return rc == WH_OK ? WH_OK : WH_ERR;
}

/* The slot metrics of one scrape, on a task of their own (adm_bg) beside
 * the daemons' Stats: the state read and the sources' queries wait for
 * nothing else, and nothing else waits for them past the scrape's bound. */
typedef struct slot_round {
    adm_backend be;
    uint64_t deadline_ms; /* the sources' queries' */
    wh_buf text;
    int rc;
} slot_round;

static void slot_round_run(void *arg, int i)
{
    WH_UNUSED(i);
    slot_round *r = arg;
    r->rc = slot_metrics(&r->be, r->deadline_ms, &r->text);
}

/* The slot task's queries end this long before the scrape's deadline:
 * the task renders their metrics and returns by then, a source that has
 * not answered among them (walhook_slot_query_ok 0). At most a quarter
 * of admin.stats_wait_ms: a wait of 300 ms or less (its range starts at
 * 100) left the queries a deadline already past, and no slot was read. */
#define ADM_SLOT_RENDER_MS 300
static uint64_t slot_render_ms(void)
{
    uint64_t q = (uint64_t)adm_stats_wait_ms / 4;
    return q < ADM_SLOT_RENDER_MS ? q : ADM_SLOT_RENDER_MS;
}

static void slot_round_free(void *arg)
{
    slot_round *r = arg;
    wh_buf_free(&r->text);
    free(r);
}

/* /metrics answers within adm_stats_wait_ms (and the time to render):
 * the daemons' Stats and the slot queries run at once, each waited for
 * that long at most; a daemon that has not answered by then has
 * walhook_daemon_up 0 and no samples, slots not read by then have none. */
static void r_metrics(ctx *c)
{
    uint64_t deadline = wh_now_ms() + adm_stats_wait_ms;
    slot_round *sr = NULL;
    adm_bg *sg = NULL;
    if (c->a->be.slot) {
        sr = calloc(1, sizeof(*sr));
        if (sr != NULL) {
            sr->be = c->a->be;
            sr->deadline_ms = deadline - slot_render_ms();
            wh_buf_init(&sr->text, 0);
            sg = adm_bg_start(sr, slot_round_free, slot_round_run, 1);
            if (sg == NULL)
                slot_round_free(sr);
        }
    }
    adm_stat st[ADM_NDAEMONS];
    query_stats(c, st);
    int rc = adm_metrics_render(st, ADM_NDAEMONS, &c->resp->body);
    adm_stats_free(st, ADM_NDAEMONS);
    if (sg != NULL) {
        int done[ADM_BG_MAX];
        if (adm_bg_wait(sg, deadline, done) != 1)
            wh_warn("/metrics: the sources' slot queries did not finish within %d ms; "
                    "this scrape has no slot metrics",
                    adm_stats_wait_ms);
        else if (sr->rc != WH_OK)
            rc = WH_ERR;
        else if (rc == WH_OK && sr->text.len > 0)
            rc = wh_buf_append(&c->resp->body, sr->text.data, sr->text.len);
        adm_bg_release(sg);
    }
    if (rc == WH_OK && c->a->own_metrics)
        rc = c->a->own_metrics(c->a->own_metrics_arg, &c->resp->body);
    if (rc != WH_OK) {
        fail(c->resp, 500, NULL, "cannot render metrics");
        return;
    }
    c->resp->status = 200;
    c->resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

#define ADM_NPLANS 3 /* store, dispatcher, ingestor */

/* The request handlers' large working copies (two configurations of 57 KiB
 * and the budget plans), per thread from the heap on a thread's first
 * request, freed when it exits: as static __thread arrays they were zeroed,
 * so resident, in every thread of the process (NNG's too), 256 KiB each. */
typedef struct scratch {
    wh_config base, eff;
    wh_budget plans_cur[ADM_NPLANS], plans_next[ADM_NPLANS];
} scratch;
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_key_init(void)
{
    pthread_key_create(&scratch_key, free);
}

/* NULL: out of memory */
static scratch *scratch_get(void)
{
    pthread_once(&scratch_once, scratch_key_init);
    scratch *w = pthread_getspecific(scratch_key);
    if (w == NULL) {
        w = calloc(1, sizeof(*w));
        if (w != NULL && pthread_setspecific(scratch_key, w) != 0) {
            free(w);
            w = NULL;
        }
    }
    return w;
}

/* /config: the effective configuration (file + env overlaid with the
 * runtime state), redacted, with the state's version and tenants. Falls
 * back to the file configuration when the store cannot be read. */
static void r_config(ctx *c)
{
    scratch *w = scratch_get();
    if (w == NULL) {
        fail(c->resp, 500, NULL, "out of memory");
        return;
    }
    wh_config *const base = &w->base, *const eff = &w->eff;
    base_copy(c->a, base);
    wh_state *s = NULL;
    char err[WH_ERRLEN] = "";
    if (c->a->be.get_state && c->a->be.get_state(c->a->be.arg, &s, err, sizeof(err)) != WH_OK)
        s = NULL;
    if (s)
        wh_state_effective(eff, base, s, base->tenant);
    else
        memcpy(eff, base, sizeof(*eff));
    wh_buf b;
    wh_buf_init(&b, 0);
    json_t *j = NULL;
    if (wh_config_to_json(eff, &b) == WH_OK)
        j = json_loadb(b.data ? b.data : "", b.len, 0, NULL);
    wh_buf_free(&b);
    if (!j) {
        wh_state_unref(s);
        fail(c->resp, 500, NULL, "cannot render the configuration");
        return;
    }
    uint64_t version = 0;
    if (s) {
        json_t *sj = state_json(s);
        version = s->version;
        json_object_set_new(j, "version", json_integer((json_int_t)s->version));
        if (sj)
            json_object_set(j, "tenants", json_object_get(sj, "tenants"));
        json_decref(sj);
    } else {
        json_object_set_new(j, "state_error", json_string(err[0] ? err : "no store"));
    }
    wh_state_unref(s);
    reply_json(c->resp, 200, j, version);
}

static void r_openapi(ctx *c)
{
    c->resp->status = 200;
    wh_buf_append(&c->resp->body, adm_openapi_json, adm_openapi_json_len);
}

/* What the status page reads through the store and the sources, on a
 * task of its own (adm_bg) beside the daemons' Stats: the state, then at
 * once each tenant's slot (its source, until deadline_ms less
 * slot_render_ms()) and each target's backlog (the store, while before
 * deadline_ms). At deadline_ms the page takes, under mu, what has been
 * read by then, whether the task returned or not: the state and the slots
 * read, the backlogs read so far ("-" for the others). Before, the page
 * used the task's reads only when it had returned, and a task with the
 * state still reading backlogs then (two calls to the store a target, one
 * at a time on its client: a large state, pages loaded at once, a slow
 * store) had the page say that the store did not answer. */
typedef struct page_round {
    adm_backend be;
    uint64_t deadline_ms;
    pthread_mutex_t mu; /* guards the rest */
    wh_state *s;        /* the state read; NULL: none (yet), err says why */
    char err[WH_ERRLEN];
    adm_slot_info *slots; /* s->ntenants entries, the page's once slots_done */
    int slots_done;
    adm_slot_info *sl;     /* the slot queries' own (slots_read), then slots */
    adm_page_target *prog; /* one per target, tenants in order, as read */
    int oom;
    int taken; /* the page took what was read: the task stops */
} page_round;

/* The tenants' slots, on a thread of their own beside the backlogs. */
static void *page_slots_run(void *arg)
{
    page_round *r = arg;
    const wh_state *s = r->s;
    slots_read(&r->be, s, r->deadline_ms - slot_render_ms(), r->sl);
    pthread_mutex_lock(&r->mu);
    memcpy(r->slots, r->sl, (size_t)s->ntenants * sizeof(*r->slots));
    r->slots_done = 1;
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* The targets of every tenant of s. */
static int state_targets(const wh_state *s)
{
    int n = 0;
    for (int t = 0; t < s->ntenants; t++)
        n += s->tenants[t].ntargets;
    return n;
}

static void page_round_run(void *arg, int i)
{
    WH_UNUSED(i);
    page_round *r = arg;
    const adm_backend *be = &r->be;
    wh_state *s = NULL;
    char e[WH_ERRLEN] = "no store";
    int rc = WH_ERR;
    if (be->get_state_by)
        rc = be->get_state_by(be->arg, r->deadline_ms, &s, e, sizeof(e));
    else if (be->get_state)
        rc = be->get_state(be->arg, &s, e, sizeof(e));
    if (rc != WH_OK || s == NULL) {
        pthread_mutex_lock(&r->mu);
        snprintf(r->err, sizeof(r->err), "cannot read it from the store: %.440s", e);
        pthread_mutex_unlock(&r->mu);
        return;
    }
    int ntargets = state_targets(s);
    adm_slot_info *slots = calloc((size_t)s->ntenants + 1, sizeof(*slots));
    adm_slot_info *sl = calloc((size_t)s->ntenants + 1, sizeof(*sl));
    adm_page_target *prog = calloc((size_t)ntargets + 1, sizeof(*prog));
    pthread_mutex_lock(&r->mu);
    r->s = s; /* the task's reference: page_round_free's */
    r->slots = slots;
    r->sl = sl;
    r->prog = prog;
    r->oom = slots == NULL || sl == NULL || prog == NULL;
    if (!r->oom && !be->slot) {
        for (int t = 0; t < s->ntenants; t++)
            wh_strlcpy(slots[t].error, "no source query", sizeof(slots[t].error));
        r->slots_done = 1;
    }
    int stop = r->oom || r->taken;
    pthread_mutex_unlock(&r->mu);
    if (stop)
        return;
    pthread_t th;
    int threaded = be->slot && pthread_create(&th, NULL, page_slots_run, r) == 0;
    if (be->slot && !threaded)
        page_slots_run(r);
    for (int t = 0, k = 0; t < s->ntenants && !stop; t++) {
        const wh_state_tenant *tn = &s->tenants[t];
        for (int j = 0; j < tn->ntargets && !stop; j++, k++) {
            adm_page_target p;
            memset(&p, 0, sizeof(p));
            const char *tname = tn->targets[j].name;
            if (be->progress_by)
                p.has_progress = be->progress_by(be->arg, r->deadline_ms, tn->name, tname, &p.end,
                                                 &p.committed) == WH_OK;
            else if (be->progress)
                p.has_progress =
                    be->progress(be->arg, tn->name, tname, &p.end, &p.committed) == WH_OK;
            pthread_mutex_lock(&r->mu);
            r->prog[k] = p;
            /* the page took what was read (or is about to): the rest
             * without backlog */
            stop = r->taken || wh_now_ms() >= r->deadline_ms;
            pthread_mutex_unlock(&r->mu);
        }
    }
    if (threaded)
        pthread_join(th, NULL);
}

/* What the page shows of r at its deadline (the task returned or not):
 * the state (a reference of the page's) with copies of the slots and the
 * backlogs read by then, or NULL and why in err. 0, or -1 out of memory. */
static int page_round_take(page_round *r, wh_state **s, adm_slot_info **slots,
                           adm_page_target **prog, char *err, size_t errlen)
{
    int rc = 0;
    pthread_mutex_lock(&r->mu);
    r->taken = 1;
    if (r->oom) {
        rc = -1;
    } else if (r->s != NULL) {
        const wh_state *st = r->s;
        int ntargets = state_targets(st);
        *slots = calloc((size_t)st->ntenants + 1, sizeof(**slots));
        *prog = calloc((size_t)ntargets + 1, sizeof(**prog));
        if (*slots == NULL || *prog == NULL) {
            rc = -1;
        } else {
            memcpy(*prog, r->prog, (size_t)ntargets * sizeof(**prog));
            for (int t = 0; t < st->ntenants; t++) {
                if (r->slots_done)
                    (*slots)[t] = r->slots[t];
                else
                    snprintf((*slots)[t].error, sizeof((*slots)[t].error),
                             "slot query: not read within %d ms", adm_stats_wait_ms);
            }
            wh_state_ref(r->s);
            *s = r->s;
        }
    } else if (r->err[0] != '\0') {
        wh_strlcpy(err, r->err, errlen);
    } else {
        snprintf(err, errlen, "the store did not answer within %d ms", adm_stats_wait_ms);
    }
    pthread_mutex_unlock(&r->mu);
    if (rc != 0) {
        free(*slots);
        free(*prog);
        *slots = NULL;
        *prog = NULL;
    }
    return rc;
}

static void page_round_free(void *arg)
{
    page_round *r = arg;
    wh_state_unref(r->s);
    free(r->slots);
    free(r->sl);
    free(r->prog);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* The status page answers within adm_stats_wait_ms (and the time to
 * render), like /metrics: the daemons' Stats and what is read through the
 * store (page_round) at once, each waited for that long at most. A store
 * that has not answered by then leaves the tenants out ("runtime state
 * unavailable", naming the store), and its row down with why. */
static void r_page(ctx *c)
{
    uint64_t deadline = wh_now_ms() + adm_stats_wait_ms;
    page_round *r = calloc(1, sizeof(*r));
    adm_bg *g = NULL;
    if (r != NULL) {
        r->be = c->a->be;
        r->deadline_ms = deadline;
        pthread_mutex_init(&r->mu, NULL);
        g = adm_bg_start(r, page_round_free, page_round_run, 1);
        if (g == NULL)
            page_round_free(r);
    }
    if (g == NULL) {
        fail(c->resp, 500, NULL, "out of memory");
        return;
    }
    adm_stat st[ADM_NDAEMONS];
    query_stats(c, st);
    wh_state *s = NULL;
    adm_slot_info *slots = NULL;
    adm_page_target *prog = NULL;
    char err[WH_ERRLEN] = "";
    int done[ADM_BG_MAX];
    adm_bg_wait(g, deadline, done);
    /* r stays until released, the task's or not: page_round_take reads it
     * under its own lock */
    int oom = page_round_take(r, &s, &slots, &prog, err, sizeof(err)) != 0;
    adm_bg_release(g);
    if (oom) {
        adm_stats_free(st, ADM_NDAEMONS);
        fail(c->resp, 500, NULL, "out of memory");
        return;
    }
    redact_stats(c, st);
    if (!c->detail) {
        adm_redact_detail(err, sizeof(err));
        for (int i = 0; s && i < s->ntenants; i++)
            adm_redact_detail(slots[i].error, sizeof(slots[i].error));
    }
    int rc = adm_page_render(c->a->page, s, s ? NULL : err, st, slots, prog, &c->resp->body);
    free(slots);
    free(prog);
    wh_state_unref(s);
    adm_stats_free(st, ADM_NDAEMONS);
    if (rc != WH_OK) {
        fail(c->resp, 500, NULL, "cannot render the status page");
        return;
    }
    c->resp->status = 200;
    c->resp->content_type = "text/html; charset=utf-8";
}

/* ---- request bodies ---- */

static json_t *parse_body(ctx *c, int allow_empty)
{
    const adm_request *q = c->req;
    if (q->body_len == 0 || !q->body) {
        if (allow_empty)
            return json_object();
        fail(c->resp, 400, "body", "a JSON object is required");
        return NULL;
    }
    const char *ct = q->content_type;
    if (!ct || strncasecmp(ct, "application/json", 16) != 0 ||
        (ct[16] != '\0' && ct[16] != ';' && ct[16] != ' ')) {
        fail(c->resp, 415, "Content-Type", "the body must be application/json (got %.64s)",
             ct ? ct : "no Content-Type");
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(q->body, q->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        fail(c->resp, 400, "body", "invalid JSON at line %d column %d: %s", je.line, je.column,
             je.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        fail(c->resp, 400, "body", "a JSON object is required");
        return NULL;
    }
    return j;
}

static int get_string(ctx *c, json_t *v, const char *field, char *dst, size_t len)
{
    if (!json_is_string(v))
        return fail(c->resp, 400, field, "%s: expected a string", field);
    const char *s = json_string_value(v);
    if (strlen(s) != json_string_length(v))
        return fail(c->resp, 400, field, "%s: must not contain NUL", field);
    if (wh_strlcpy(dst, s, len) != WH_OK)
        return fail(c->resp, 400, field, "%s: longer than %zu bytes", field, len - 1);
    return WH_OK;
}

static int get_int(ctx *c, json_t *v, const char *field, int64_t lo, int64_t hi, int64_t *out)
{
    if (json_is_null(v)) {
        *out = 0;
        return WH_OK;
    }
    if (!json_is_integer(v))
        return fail(c->resp, 400, field, "%s: expected an integer", field);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return fail(c->resp, 400, field,
                    "%s: %" PRId64 " is out of range [%" PRId64 ", %" PRId64 "]", field, (int64_t)x,
                    lo, hi);
    *out = (int64_t)x;
    return WH_OK;
}

static int get_bool(ctx *c, json_t *v, const char *field, int *out)
{
    if (!json_is_boolean(v))
        return fail(c->resp, 400, field, "%s: expected true or false", field);
    *out = json_is_true(v);
    return WH_OK;
}

/* Applies a target object (POST: create, else PATCH) onto t. start (POST
 * only) receives the "start" member or "". */
static int apply_target(ctx *c, json_t *o, wh_state_target *t, int create, char *start,
                        size_t startlen)
{
    const char *key;
    json_t *v;
    if (start)
        start[0] = '\0';
    json_object_foreach(o, key, v)
    {
        int64_t x;
        if (strcmp(key, "name") == 0) {
            char name[WH_NAME_MAX];
            if (get_string(c, v, "name", name, sizeof(name)) != WH_OK)
                return WH_ERR;
            if (!create && strcmp(name, t->name) != 0)
                return fail(c->resp, 400, "name", "name: a target cannot be renamed");
            wh_strlcpy(t->name, name, sizeof(t->name));
        } else if (strcmp(key, "url") == 0) {
            /* a GET shows the URL redacted (user:****@, ?****): that value
             * written back (a PATCH of what was read) leaves the stored URL
             * as it is; another one with the markers would store them */
            char url[sizeof(t->url)], shown[sizeof(t->url)];
            if (get_string(c, v, "url", url, sizeof(url)) != WH_OK)
                return WH_ERR;
            wh_config_redact_url(t->url, shown, sizeof(shown));
            if (!create && t->url[0] != '\0' && strcmp(url, shown) == 0)
                continue;
            if (strstr(url, ":****@") || strstr(url, "?****"))
                return fail(c->resp, 400, "url", "url: a redacted value cannot be written back");
            wh_strlcpy(t->url, url, sizeof(t->url));
        } else if (strcmp(key, "secret") == 0) {
            if (json_is_null(v)) {
                t->nsecrets = 0;
                continue;
            }
            if (get_string(c, v, "secret", t->secrets[0], sizeof(t->secrets[0])) != WH_OK)
                return WH_ERR;
            t->nsecrets = 1;
        } else if (strcmp(key, "secrets") == 0) {
            if (!json_is_array(v))
                return fail(c->resp, 400, "secrets", "secrets: expected an array of strings");
            if (json_array_size(v) > WH_MAX_SECRETS)
                return fail(c->resp, 400, "secrets", "secrets: at most %d", WH_MAX_SECRETS);
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e)
            {
                char f[32];
                snprintf(f, sizeof(f), "secrets[%zu]", i);
                if (get_string(c, e, f, t->secrets[i], sizeof(t->secrets[i])) != WH_OK)
                    return WH_ERR;
                if (strstr(t->secrets[i], "***"))
                    return fail(c->resp, 400, f, "%s: a redacted value cannot be written back", f);
            }
            t->nsecrets = (int)json_array_size(v);
        } else if (strcmp(key, "paused") == 0) {
            int was = t->paused;
            if (get_bool(c, v, "paused", &t->paused) != WH_OK)
                return WH_ERR;
            /* un-pausing by PATCH is a resume too (m_target_pause) */
            if (!create && was && !t->paused && t->resumes < INT64_MAX)
                t->resumes++;
        } else if (strcmp(key, "batch_max_events") == 0) {
            if (get_int(c, v, key, 0, 100000, &x) != WH_OK)
                return WH_ERR;
            t->batch_max_events = (int)x;
        } else if (strcmp(key, "batch_max_bytes") == 0) {
            if (get_int(c, v, key, 0, 256LL << 20, &x) != WH_OK)
                return WH_ERR;
            t->batch_max_bytes = x;
        } else if (strcmp(key, "retry_base_ms") == 0) {
            if (get_int(c, v, key, 0, 600000, &x) != WH_OK)
                return WH_ERR;
            t->retry_base_ms = (int)x;
        } else if (strcmp(key, "retry_max_ms") == 0) {
            if (get_int(c, v, key, 0, 3600000, &x) != WH_OK)
                return WH_ERR;
            t->retry_max_ms = (int)x;
        } else if (strcmp(key, "http_timeout_ms") == 0) {
            if (get_int(c, v, key, 0, 600000, &x) != WH_OK)
                return WH_ERR;
            t->http_timeout_ms = (int)x;
        } else if (strcmp(key, "start") == 0 && create && start) {
            if (get_string(c, v, "start", start, startlen) != WH_OK)
                return WH_ERR;
            adm_pos p;
            if (strcmp(start, "end") != 0 && adm_pos_parse(start, &p) != WH_OK)
                return fail(c->resp, 400, "start",
                            "start: expected \"end\" or a position \"X/X:seq\"");
        } else {
            /* delivery settings (wh_delivery): shared with the document parser */
            char derr[WH_ERRLEN];
            int rc = wh_delivery_set(&t->dl, key, v, derr, sizeof(derr));
            if (rc == 1)
                return fail(c->resp, 400, key, "%s: unknown field of a target", key);
            if (rc != WH_OK)
                return fail(c->resp, 400, key, "%s", derr);
        }
    }
    if (create && t->name[0] == '\0')
        return fail(c->resp, 400, "name", "name: required");
    if (create && t->url[0] == '\0')
        return fail(c->resp, 400, "url", "url: required");
    return WH_OK;
}

static int apply_source(ctx *c, json_t *o, wh_state_tenant *t)
{
    if (!json_is_object(o))
        return fail(c->resp, 400, "source", "source: expected an object");
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        char field[64];
        snprintf(field, sizeof(field), "source.%.40s", key);
        int rc;
        if (strcmp(key, "dsn") == 0) {
            rc = get_string(c, v, field, t->dsn, sizeof(t->dsn));
            if (rc == WH_OK && strstr(t->dsn, "***"))
                return fail(c->resp, 400, field, "%s: a redacted value cannot be written back",
                            field);
            char why[WH_ERRLEN];
            if (rc == WH_OK && t->dsn[0] && wh_pgerr_dsn_check(t->dsn, why, sizeof(why)) != WH_OK)
                return fail(c->resp, 400, field, "%s: invalid connection string: %s", field, why);
        } else if (strcmp(key, "slot") == 0)
            rc = get_string(c, v, field, t->slot, sizeof(t->slot));
        else if (strcmp(key, "publication") == 0)
            rc = get_string(c, v, field, t->publication, sizeof(t->publication));
        else if (strcmp(key, "tables") == 0)
            rc = get_string(c, v, field, t->tables, sizeof(t->tables));
        else if (strcmp(key, "create_slot") == 0)
            rc = get_bool(c, v, field, &t->create_slot);
        else {
            char serr[WH_ERRLEN]; /* source.slot_policy, lag thresholds (wh_slotcfg) */
            rc = wh_slotcfg_set_json(&t->slotcfg, key, v, field, serr, sizeof(serr));
            if (rc == 1)
                return fail(c->resp, 400, field, "%s: unknown field of a source", field);
            if (rc != WH_OK)
                return fail(c->resp, 400, field, "%s", serr);
        }
        if (rc != WH_OK)
            return WH_ERR;
    }
    return WH_OK;
}

/* ---- writes ---- */

typedef struct write_op write_op;
struct write_op {
    /* changes the clone; fills c->resp and returns WH_ERR to refuse */
    int (*mutate)(ctx *c, write_op *op, wh_state *s);
    /* optional: after validation, before PutState */
    int (*before_put)(ctx *c, write_op *op, wh_state *s);
    json_t *body;
    char start[64]; /* new target: "end" or a position */
    adm_pos prev, now;
    int moved;
};

static int parse_if_match(ctx *c, uint64_t *out)
{
    const char *h = c->req->if_match;
    *out = 0;
    if (!h)
        return WH_OK;
    while (*h == ' ')
        h++;
    if (strcmp(h, "*") == 0)
        return WH_OK;
    if (strncmp(h, "W/", 2) == 0)
        h += 2;
    if (*h == '"')
        h++;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(h, &end, 10);
    if (errno || end == h || v == 0 || (*end != '"' && *end != '\0' && *end != ' '))
        return fail(c->resp, 400, "If-Match", "If-Match: expected a version ETag like \"7\"");
    *out = v;
    return WH_OK;
}

/* ---- memory budget of a change (wh_budget) ---- */

/* The plans of the daemons whose memory a state change moves: the store
 * (tenants' column families, a reader per target), the dispatcher (a
 * target's batches, state and thread) and an ingestor (its settings). */
static void plans_of(const wh_config *eff, const wh_state *s, wh_budget out[ADM_NPLANS])
{
    wh_budget_counts n;
    wh_budget_counts_of(s, &n);
    wh_budget_plan_store(&out[0], eff, &n);
    wh_budget_plan_dispatcher(&out[1], eff, &n);
    wh_budget_plan_ingestor(&out[2], eff, "ingestor");
}

/* The budget a daemon reported (walhook_memory_budget_bytes), -1 if none. */
static int64_t reported_budget(const adm_stat *st, int n, const char *daemon)
{
    char label[64];
    snprintf(label, sizeof(label), "daemon=\"%.40s\"", daemon);
    for (int i = 0; i < n; i++) {
        if (!st[i].up || !st[i].metrics)
            continue;
        /* the first sample with that label: dispatcher replicas (each
         * labelled replica="...") share one configuration */
        for (const char *p = strstr(st[i].metrics, "walhook_memory_budget_bytes{"); p != NULL;
             p = strstr(p + 1, "walhook_memory_budget_bytes{")) {
            const char *close = strchr(p, '}'), *eol = strchr(p, '\n');
            const char *l = strstr(p, label);
            if (close == NULL || l == NULL || l > close || (eol != NULL && close > eol) ||
                close[1] != ' ')
                continue;
            long long v = strtoll(close + 2, NULL, 10);
            return v > 0 ? (int64_t)v : -1;
        }
    }
    return -1;
}

/* A change that makes a daemon's plan grow past its budget is refused with
 * 409 naming the daemon and its parts (the check each daemon makes at
 * start). The budget is the one the daemon reports in its metrics, else
 * this admin's own (memory_budget_bytes or its container's limit). A change
 * that does not grow a plan passes, so removing things always works. */
static int budget_check(ctx *c, const wh_budget cur[ADM_NPLANS], const wh_budget next[ADM_NPLANS],
                        const wh_config *eff)
{
    int grows = 0;
    for (int i = 0; i < ADM_NPLANS; i++)
        grows |= wh_budget_need(&next[i]) > wh_budget_need(&cur[i]);
    if (!grows)
        return WH_OK;
    adm_stat st[ADM_NDAEMONS];
    query_stats(c, st);
    int rc = WH_OK;
    for (int i = 0; i < ADM_NPLANS && rc == WH_OK; i++) {
        if (wh_budget_need(&next[i]) <= wh_budget_need(&cur[i]))
            continue;
        int64_t limit = reported_budget(st, ADM_NDAEMONS, next[i].daemon);
        if (limit < 0)
            limit = wh_budget_limit(eff, NULL, 0);
        char err[1024];
        if (wh_budget_check(&next[i], limit, err, sizeof(err)) != WH_OK)
            rc = fail(c->resp, 409, "memory_budget_bytes",
                      "refused: after this change %s (remove tenants or targets, lower the "
                      "settings of the largest parts, or raise memory_budget_bytes)",
                      err);
    }
    adm_stats_free(st, ADM_NDAEMONS);
    return rc;
}

/* A PutState the store did not answer (it died or was cut off mid-write: its
 * synced write may have landed or not): the state is read back, waiting up
 * to ADM_READBACK_MS for the store to answer. 1: it holds next as version
 * expected + 1, the write landed (*out: that state, with a reference);
 * 0: still version expected, not landed so far (*seen); -1: unreadable or
 * another version (*seen, 0 when unreadable): the outcome is unknown. */
#define ADM_READBACK_MS 5000
static int read_back(ctx *c, wh_state *next, uint64_t expected, wh_state **out, uint64_t *seen)
{
    *out = NULL;
    *seen = 0;
    wh_state *back = NULL;
    char err[WH_ERRLEN];
    uint64_t deadline = wh_now_ms() + ADM_READBACK_MS;
    while (c->a->be.get_state(c->a->be.arg, &back, err, sizeof(err)) != WH_OK || back == NULL) {
        back = NULL;
        if (wh_now_ms() >= deadline)
            return -1;
        wh_sleep_ms(200);
    }
    *seen = back->version;
    if (back->version != expected + 1) {
        wh_state_unref(back);
        return *seen == expected ? 0 : -1;
    }
    wh_buf a, b;
    wh_buf_init(&a, 0);
    wh_buf_init(&b, 0);
    uint64_t keep = next->version;
    next->version = back->version;
    int same = wh_state_render(next, &a, 0) == WH_OK && wh_state_render(back, &b, 0) == WH_OK &&
               a.len == b.len && memcmp(a.data, b.data, a.len) == 0;
    next->version = keep;
    wh_buf_free(&a);
    wh_buf_free(&b);
    if (!same) {
        wh_state_unref(back);
        return -1;
    }
    *out = back;
    return 1;
}

/* Runs op against the store; *out receives the written state (version set). */
static int write_state(ctx *c, write_op *op, wh_state **out)
{
    uint64_t want;
    *out = NULL;
    if (parse_if_match(c, &want) != WH_OK)
        return WH_ERR;
    if (!c->a->be.put_state)
        return fail(c->resp, 503, NULL, "no store to write to");
    for (int attempt = 0; attempt < ADM_WRITE_TRIES; attempt++) {
        wh_state *cur = get_state(c);
        if (!cur)
            return WH_ERR;
        if (want && cur->version != want) {
            uint64_t v = cur->version;
            wh_state_unref(cur);
            return fail(c->resp, 412, "If-Match",
                        "version conflict: current is %" PRIu64 ", If-Match names %" PRIu64, v,
                        want);
        }
        uint64_t expected = cur->version;
        scratch *w = scratch_get();
        if (w == NULL) {
            wh_state_unref(cur);
            return fail(c->resp, 500, NULL, "out of memory");
        }
        wh_config *const base = &w->base, *const eff = &w->eff;
        wh_budget *const plans_cur = w->plans_cur, *const plans_next = w->plans_next;
        base_copy(c->a, base);
        wh_state_effective(eff, base, cur, NULL);
        plans_of(eff, cur, plans_cur);
        wh_state *next = NULL;
        int rc = wh_state_clone(&next, cur);
        if (rc != WH_OK) {
            wh_state_unref(cur);
            return fail(c->resp, 500, NULL, "out of memory");
        }
        if (op->mutate(c, op, next) != WH_OK) {
            wh_state_unref(cur);
            wh_state_unref(next);
            return WH_ERR;
        }
        /* as the store will (a target it adds is created by this version):
         * the reply shows it, and read_back compares what the store holds */
        wh_state_stamp_created(next, cur, expected + 1);
        /* the filters of the targets the change adds or changes are
         * compiled; a target it leaves as stored (one an older walhook
         * stored with a filter that does not compile) does not block it */
        char err[WH_ERRLEN];
        /* a slot another tenant uses on the same server: a conflict with
         * that tenant (409), not a malformed request */
        int status = 400;
        rc = wh_state_check_slots(next, cur, err, sizeof(err));
        if (rc != WH_OK)
            status = 409;
        else
            rc = wh_state_validate_write(next, cur, err, sizeof(err));
        wh_state_unref(cur);
        if (rc != WH_OK) {
            wh_state_unref(next);
            return fail_validation(c->resp, status, err);
        }
        /* cross-field rules of the settings (retry_max >= retry_base ...) */
        wh_state_effective(eff, base, next, NULL);
        if (wh_config_validate(eff, err, sizeof(err)) != WH_OK) {
            wh_state_unref(next);
            return fail_validation(c->resp, 400, err);
        }
        /* more tenants, targets or larger settings: within the budgets */
        plans_of(eff, next, plans_next);
        if (budget_check(c, plans_cur, plans_next, eff) != WH_OK) {
            wh_state_unref(next);
            return WH_ERR;
        }
        if (op->before_put && op->before_put(c, op, next) != WH_OK) {
            wh_state_unref(next);
            return WH_ERR;
        }
        uint64_t nv = 0;
        status = 0;
        rc = c->a->be.put_state(c->a->be.arg, next, expected, &nv, &status, err, sizeof(err));
        if (rc == WH_OK) {
            next->version = nv;
            *out = next;
            return WH_OK;
        }
        if (status == 0) {
            /* no answer from the store: what does it hold now? */
            uint64_t seen;
            int r = read_back(c, next, expected, out, &seen);
            wh_state_unref(next);
            if (r == 1) {
                wh_info("state version %" PRIu64 " was written though its reply was lost (%s)",
                        seen, err);
                return WH_OK;
            }
            if (r == 0)
                return fail(c->resp, 503, NULL,
                            "the store did not answer the write (%s); the state read back is "
                            "still version %" PRIu64 ": nothing written so far, but the outcome "
                            "is unknown; read the state again (GET) before retrying",
                            err, seen);
            if (seen != 0)
                return fail(c->resp, 503, NULL,
                            "the store did not answer the write (%s); the state read back is "
                            "version %" PRIu64 ", not this change alone: the outcome is "
                            "unknown; read the state again (GET) before retrying",
                            err, seen);
            return fail(c->resp, 503, NULL,
                        "the store did not answer the write (%s), and the state cannot be read "
                        "back: the outcome is unknown; read the state again (GET) before "
                        "retrying",
                        err);
        }
        wh_state_unref(next);
        if (status == 412 && !want)
            continue; /* another writer won: read again and redo */
        if (status == 412)
            return fail(c->resp, 412, "If-Match", "version conflict: %s", err);
        if (status == 400)
            return fail_validation(c->resp, 400, err);
        return fail(c->resp, 503, NULL, "the store refused the write: %s", err);
    }
    return fail(c->resp, 412, NULL, "version conflict: %d writers in a row changed the state first",
                ADM_WRITE_TRIES);
}

static wh_state_tenant *tenant_mut(wh_state *s, const char *name)
{
    return (wh_state_tenant *)wh_state_tenant_find(s, name);
}

static int tenant_missing(ctx *c)
{
    return fail(c->resp, 404, "tenant", "no tenant '%s'", c->tenant);
}

static int target_missing(ctx *c)
{
    return fail(c->resp, 404, "target", "tenant '%s' has no target '%s'", c->tenant, c->target);
}

/* ---- /v1/tenants ---- */

/* The slot of a tenant created without one: "walhook_" and the name lower
 * case, each byte outside [a-z0-9_] as '_', cut at PostgreSQL's 63 bytes.
 * Never the "walhook" of the file's first tenant: a slot is per server, and
 * one shared by two tenants sends one tenant's changes to the other (two
 * names that map to one slot are refused by wh_state_check_slots, naming
 * both). */
static void default_slot(const char *name, char *out, size_t len)
{
    size_t o = 0;
    const char *pre = "walhook_";
    for (; pre[o] != '\0' && o + 1 < len; o++)
        out[o] = pre[o];
    for (const char *p = name; *p != '\0' && o + 1 < len && o < 63; p++) {
        char ch = (char)tolower((unsigned char)*p);
        out[o++] = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ? ch : '_';
    }
    if (len > 0)
        out[o] = '\0';
}

static int m_tenant_create(ctx *c, write_op *op, wh_state *s)
{
    wh_state_tenant nt;
    memset(&nt, 0, sizeof(nt));
    nt.create_slot = 1;
    /* the publication is per database and only chooses tables: tenants may
     * share the default one (the slot is what must not be shared) */
    wh_strlcpy(nt.publication, "walhook", sizeof(nt.publication));
    json_t *targets = NULL;
    const char *key;
    json_t *v;
    json_object_foreach(op->body, key, v)
    {
        if (strcmp(key, "name") == 0) {
            if (get_string(c, v, "name", nt.name, sizeof(nt.name)) != WH_OK)
                return WH_ERR;
        } else if (strcmp(key, "source") == 0) {
            if (apply_source(c, v, &nt) != WH_OK)
                return WH_ERR;
        } else if (strcmp(key, "targets") == 0) {
            if (!json_is_array(v))
                return fail(c->resp, 400, "targets", "targets: expected an array");
            targets = v;
        } else {
            return fail(c->resp, 400, key, "%s: unknown field of a tenant", key);
        }
    }
    if (nt.name[0] == '\0')
        return fail(c->resp, 400, "name", "name: required");
    if (nt.slot[0] == '\0') /* none given */
        default_slot(nt.name, nt.slot, sizeof(nt.slot));
    if (nt.dsn[0] == '\0')
        return fail(c->resp, 400, "source.dsn", "source.dsn: required");
    if (wh_state_tenant_find(s, nt.name))
        return fail(c->resp, 409, "name", "tenant '%s' exists", nt.name);
    if (s->ntenants >= WH_MAX_TENANTS)
        return fail(c->resp, 409, "name", "at most %d tenants", WH_MAX_TENANTS);
    size_t nt_targets = targets ? json_array_size(targets) : 0;
    if (nt_targets > WH_MAX_TARGETS)
        return fail(c->resp, 400, "targets", "targets: at most %d", WH_MAX_TARGETS);
    if (nt_targets) {
        nt.targets = calloc(nt_targets, sizeof(*nt.targets));
        if (!nt.targets)
            return fail(c->resp, 500, NULL, "out of memory");
        size_t i;
        json_t *e;
        json_array_foreach(targets, i, e)
        {
            if (!json_is_object(e) || apply_target(c, e, &nt.targets[i], 1, NULL, 0) != WH_OK) {
                if (!json_is_object(e))
                    fail(c->resp, 400, "targets", "targets[%zu]: expected an object", i);
                free(nt.targets);
                return WH_ERR;
            }
            nt.ntargets++;
        }
    }
    wh_state_tenant *added = wh_state_tenant_add(s);
    if (!added) {
        free(nt.targets);
        return fail(c->resp, 500, NULL, "out of memory");
    }
    *added = nt;
    wh_strlcpy(op->start, nt.name, sizeof(op->start)); /* the created name */
    return WH_OK;
}

static void r_tenants(ctx *c)
{
    if (c->method == M_GET) {
        wh_state *s = get_state(c);
        if (!s)
            return;
        json_t *j = state_json(s);
        json_t *out = json_object();
        json_object_set_new(out, "version", json_integer((json_int_t)s->version));
        json_object_set(out, "tenants", j ? json_object_get(j, "tenants") : json_array());
        json_decref(j);
        reply_json(c->resp, 200, out, s->version);
        wh_state_unref(s);
        return;
    }
    write_op op = {m_tenant_create, NULL, parse_body(c, 0), "", {0, 0}, {0, 0}, 0};
    if (!op.body)
        return;
    wh_state *s = NULL;
    if (write_state(c, &op, &s) == WH_OK) {
        json_t *t = tenant_json(s, op.start);
        reply_json(c->resp, 201, t ? t : json_object(), s->version);
        wh_state_unref(s);
    }
    json_decref(op.body);
}

static int m_tenant_patch(ctx *c, write_op *op, wh_state *s)
{
    wh_state_tenant *t = tenant_mut(s, c->tenant);
    if (!t)
        return tenant_missing(c);
    const char *key;
    json_t *v;
    json_object_foreach(op->body, key, v)
    {
        if (strcmp(key, "name") == 0) {
            if (!json_is_string(v) || strcmp(json_string_value(v), t->name) != 0)
                return fail(c->resp, 400, "name", "name: a tenant cannot be renamed");
        } else if (strcmp(key, "source") == 0) {
            if (apply_source(c, v, t) != WH_OK)
                return WH_ERR;
        } else if (strcmp(key, "targets") == 0) {
            return fail(c->resp, 400, "targets",
                        "targets: change targets through /v1/tenants/%s/targets", c->tenant);
        } else {
            return fail(c->resp, 400, key, "%s: unknown field of a tenant", key);
        }
    }
    return WH_OK;
}

static int m_tenant_delete(ctx *c, write_op *op, wh_state *s)
{
    return wh_state_tenant_remove(s, c->tenant) == WH_OK ? WH_OK : tenant_missing(c);
}

/* PATCH (mutate with the parsed body) or DELETE of the request's target, or
 * of its tenant when the route names no target: 200 with the object as it
 * now is, or {"deleted": NAME, ["tenant": TENANT,] "version": V}. */
static void write_object(ctx *c, int (*mutate)(ctx *c, write_op *op, wh_state *s))
{
    write_op op = {mutate, NULL, NULL, "", {0, 0}, {0, 0}, 0};
    if (c->method == M_PATCH && !(op.body = parse_body(c, 0)))
        return;
    wh_state *s = NULL;
    if (write_state(c, &op, &s) == WH_OK) {
        json_t *j;
        if (c->method == M_PATCH) {
            j = c->target ? target_json(s, c->tenant, c->target) : tenant_json(s, c->tenant);
            if (!j)
                j = json_object();
        } else if (c->target) {
            j = json_pack("{s:s,s:s,s:I}", "deleted", c->target, "tenant", c->tenant, "version",
                          (json_int_t)s->version);
        } else {
            j = json_pack("{s:s,s:I}", "deleted", c->tenant, "version", (json_int_t)s->version);
        }
        reply_json(c->resp, 200, j, s->version);
        wh_state_unref(s);
    }
    json_decref(op.body);
}

static void r_tenant(ctx *c)
{
    if (c->method == M_GET) {
        wh_state *s = get_state(c);
        if (!s)
            return;
        json_t *t = tenant_json(s, c->tenant);
        if (t)
            reply_json(c->resp, 200, t, s->version);
        else
            tenant_missing(c);
        wh_state_unref(s);
        return;
    }
    write_object(c, c->method == M_PATCH ? m_tenant_patch : m_tenant_delete);
}

/* ---- /v1/tenants/{t}/targets ---- */

/* SetOffset under cond (ADM_OFF_*) and, when expected is not 0, at that
 * state version (the request's If-Match): the store checks both against its
 * current state under one lock, so a target removed or created by another
 * writer since this request read the state is answered 404 / 409, and any
 * state write since the If-Match version 412, nothing moved. */
static int set_offset(ctx *c, write_op *op, const char *tenant, const char *target, int cond,
                      uint64_t expected, int to_end, adm_pos pos)
{
    if (!c->a->be.set_offset)
        return fail(c->resp, 503, NULL, "no store to move offsets in");
    char err[WH_ERRLEN];
    int status = 0;
    if (c->a->be.set_offset(c->a->be.arg, tenant, target, cond, expected, to_end, pos, &op->prev,
                            &op->now, &status, err, sizeof(err)) != WH_OK) {
        if (status == 412)
            return fail(c->resp, 412, "If-Match",
                        "If-Match: the state has changed since that version, the offset was not "
                        "moved (%s)",
                        err);
        if (status == 404)
            return fail(c->resp, 404, cond == ADM_OFF_ANY ? "position" : "target",
                        "the store refused the offset: %s", err);
        if (status == 409)
            return fail(c->resp, 409, "name", "the store refused the offset: %s", err);
        if (status == 400)
            return fail(c->resp, status, "position", "the store refused the offset: %s", err);
        return fail(c->resp, 503, NULL, "cannot move the offset: %s", err);
    }
    op->moved = 1;
    return WH_OK;
}

static int m_target_create(ctx *c, write_op *op, wh_state *s)
{
    wh_state_tenant *t = tenant_mut(s, c->tenant);
    if (!t)
        return tenant_missing(c);
    wh_state_target nt;
    memset(&nt, 0, sizeof(nt));
    if (apply_target(c, op->body, &nt, 1, op->start, sizeof(op->start)) != WH_OK)
        return WH_ERR;
    if (wh_state_target_find(t, nt.name))
        return fail(c->resp, 409, "name", "tenant '%s' has a target '%s'", t->name, nt.name);
    if (t->ntargets >= WH_MAX_TARGETS)
        return fail(c->resp, 409, "name", "at most %d targets per tenant", WH_MAX_TARGETS);
    wh_state_target *added = wh_state_target_add(t);
    if (!added)
        return fail(c->resp, 500, NULL, "out of memory");
    *added = nt;
    return WH_OK;
}

/* A new target starts at the tenant's end or at the requested position:
 * its offset is set before the state that names it is written. Only if no
 * other create of it has set one (ADM_OFF_CREATE): two creates of one name
 * that both read a state without it would otherwise both move the offset,
 * and the loser's move could land after the winner's. A retry after a lost
 * PutState keeps the offset this request set (no other create can have
 * moved it since). */
static int b_target_create(ctx *c, write_op *op, wh_state *s)
{
    if (op->moved)
        return WH_OK;
    const char *name = json_string_value(json_object_get(op->body, "name"));
    adm_pos pos = {0, 0};
    int to_end = op->start[0] == '\0' || strcmp(op->start, "end") == 0;
    if (!to_end)
        adm_pos_parse(op->start, &pos);
    return set_offset(c, op, c->tenant, name ? name : "", ADM_OFF_CREATE, 0, to_end, pos);
}

/* "state" and "needs_snapshot" (adm_slot_target_json) on each target
 * object of arr (an array) or on the object one: from the store's metrics
 * alone (another daemon that does not answer costs no timeout). */
static void add_target_states(ctx *c, json_t *arr, json_t *one)
{
    adm_stat st[ADM_NDAEMONS];
    /* the store's NEEDS_SNAPSHOT marks and the dispatcher's disabled (410),
     * blocked and last error; not the ingestor (no timeout of its own) */
    if (c->a->be.target_stats)
        c->a->be.target_stats(c->a->be.arg, st);
    else if (c->a->be.store_stats)
        c->a->be.store_stats(c->a->be.arg, st);
    else
        query_stats(c, st);
    size_t i;
    json_t *v;
    if (one != NULL)
        adm_slot_target_json(one, st, c->tenant);
    json_array_foreach(arr, i, v) adm_slot_target_json(v, st, c->tenant);
    adm_stats_free(st, ADM_NDAEMONS);
}

/* A create whose state was not written (the store refused it, a conflict
 * every time, the store gone) leaves the offset its SetOffset made: live,
 * it would hold the tenant's GC back for a consumer that is no target. It
 * is dropped unless the state names the target after all (a reply lost
 * after the write, or another writer made it); a PutState that lists it
 * later un-drops it. Best effort: logged when it cannot be done. */
static void undo_target_offset(ctx *c, const char *name)
{
    if (!c->a->be.drop_offset || name[0] == '\0')
        return;
    char err[WH_ERRLEN];
    wh_state *s = NULL;
    if (c->a->be.get_state(c->a->be.arg, &s, err, sizeof(err)) != WH_OK) {
        wh_warn("target %s/%s was not created; its offset is left as set (the state cannot be "
                "read: %s)",
                c->tenant, name, err);
        return;
    }
    const wh_state_tenant *t = wh_state_tenant_find(s, c->tenant);
    int named = t != NULL && wh_state_target_find(t, name) != NULL;
    wh_state_unref(s);
    if (named)
        return;
    if (c->a->be.drop_offset(c->a->be.arg, c->tenant, name, err, sizeof(err)) != WH_OK)
        wh_warn("target %s/%s was not created; dropping the offset set for it: %s", c->tenant, name,
                err);
    else
        wh_info("target %s/%s was not created; the offset set for it is dropped", c->tenant, name);
}

static void r_targets(ctx *c)
{
    if (c->method == M_GET) {
        wh_state *s = get_state(c);
        if (!s)
            return;
        json_t *t = tenant_json(s, c->tenant);
        if (t) {
            json_t *out = json_object();
            json_object_set_new(out, "version", json_integer((json_int_t)s->version));
            json_object_set_new(out, "tenant", json_string(c->tenant));
            json_object_set(out, "targets", json_object_get(t, "targets"));
            add_target_states(c, json_object_get(t, "targets"), NULL);
            json_decref(t);
            reply_json(c->resp, 200, out, s->version);
        } else {
            tenant_missing(c);
        }
        wh_state_unref(s);
        return;
    }
    write_op op = {m_target_create, b_target_create, parse_body(c, 0), "", {0, 0}, {0, 0}, 0};
    if (!op.body)
        return;
    wh_state *s = NULL;
    if (write_state(c, &op, &s) == WH_OK) {
        const char *name = json_string_value(json_object_get(op.body, "name"));
        json_t *t = target_json(s, c->tenant, name ? name : "");
        if (!t)
            t = json_object();
        char pos[48];
        adm_pos_format(op.now, pos, sizeof(pos));
        json_object_set_new(t, "start_position", json_string(pos));
        reply_json(c->resp, 201, t, s->version);
        wh_state_unref(s);
    } else if (op.moved) {
        const char *name = json_string_value(json_object_get(op.body, "name"));
        undo_target_offset(c, name ? name : "");
    }
    json_decref(op.body);
}

/* The request's target in s (editable); NULL once a 404 is answered. */
static wh_state_target *target_mut(ctx *c, wh_state *s)
{
    wh_state_tenant *t = tenant_mut(s, c->tenant);
    if (!t) {
        tenant_missing(c);
        return NULL;
    }
    wh_state_target *tg = (wh_state_target *)wh_state_target_find(t, c->target);
    if (!tg)
        target_missing(c);
    return tg;
}

/* 400 naming the filter of tg when it does not compile: a write aimed at
 * the target answers for its filter even when it leaves the target as
 * stored (write_state compiles the filters of changed targets alone), so a
 * filter an older walhook stored that does not compile is mended by a
 * PATCH, never written again as it is by a PATCH, a pause or a resume. */
static int target_filter_ok(ctx *c, const wh_state *s, const wh_state_target *tg)
{
    char err[WH_ERRLEN];
    if (wh_delivery_check_filter(&tg->dl, err, sizeof(err)) == WH_OK)
        return WH_OK;
    const wh_state_tenant *t = wh_state_tenant_find(s, c->tenant);
    char msg[WH_ERRLEN + 64];
    snprintf(msg, sizeof(msg), "tenants[%d].targets[%d].%s", (int)(t - s->tenants),
             (int)(tg - t->targets), err);
    return fail_validation(c->resp, 400, msg);
}

static int m_target_patch(ctx *c, write_op *op, wh_state *s)
{
    wh_state_target *tg = target_mut(c, s);
    if (!tg || apply_target(c, op->body, tg, 0, NULL, 0) != WH_OK)
        return WH_ERR;
    return target_filter_ok(c, s, tg);
}

static int m_target_delete(ctx *c, write_op *op, wh_state *s)
{
    wh_state_tenant *t = tenant_mut(s, c->tenant);
    if (!t)
        return tenant_missing(c);
    return wh_state_target_remove(t, c->target) == WH_OK ? WH_OK : target_missing(c);
}

static void r_target(ctx *c)
{
    if (c->method == M_GET) {
        wh_state *s = get_state(c);
        if (!s)
            return;
        const wh_state_tenant *t = wh_state_tenant_find(s, c->tenant);
        json_t *j = t ? target_json(s, c->tenant, c->target) : NULL;
        if (j)
            add_target_states(c, NULL, j);
        if (j)
            reply_json(c->resp, 200, j, s->version);
        else if (!t)
            tenant_missing(c);
        else
            target_missing(c);
        wh_state_unref(s);
        return;
    }
    write_object(c, c->method == M_PATCH ? m_target_patch : m_target_delete);
}

static int m_target_pause(ctx *c, write_op *op, wh_state *s)
{
    wh_state_target *tg = target_mut(c, s);
    if (!tg)
        return WH_ERR;
    tg->paused = strcmp(c->action, "pause") == 0;
    /* a resume is an event, not only the end of a pause: the dispatcher
     * re-enables a target disabled by 410 Gone when the count grows, also
     * when it never saw the paused version in between (or there was none) */
    if (!tg->paused && tg->resumes < INT64_MAX)
        tg->resumes++;
    return target_filter_ok(c, s, tg);
}

/* 404 unless the tenant and the target exist; *version (may be NULL): the
 * state version that says so. */
static int target_exists(ctx *c, uint64_t *version)
{
    wh_state *s = get_state(c);
    if (!s)
        return WH_ERR;
    const wh_state_tenant *t = wh_state_tenant_find(s, c->tenant);
    int found = t && wh_state_target_find(t, c->target);
    if (version != NULL)
        *version = s->version;
    wh_state_unref(s);
    if (!t)
        return tenant_missing(c);
    if (!found)
        return target_missing(c);
    return WH_OK;
}

/* target_exists, and If-Match (if given) names the version read: checked
 * before the side effects of the offset routes, an early answer only: the
 * store compares it again where it counts (resync's state write, the
 * SetOffset of .../offset), since a write may land after this read.
 * *want: the If-Match version, 0 if none. */
static int target_exists_at(ctx *c, uint64_t *version, uint64_t *want)
{
    if (parse_if_match(c, want) != WH_OK || target_exists(c, version) != WH_OK)
        return WH_ERR;
    uint64_t w = *want;
    if (w && *version != w)
        return fail(c->resp, 412, "If-Match",
                    "version conflict: current is %" PRIu64 ", If-Match names %" PRIu64, *version,
                    w);
    return WH_OK;
}

static void r_offset(ctx *c)
{
    json_t *body = parse_body(c, 0);
    if (!body)
        return;
    int to_end = 0;
    adm_pos pos = {0, 0};
    const char *key;
    json_t *v;
    int have = 0;
    json_object_foreach(body, key, v)
    {
        if (strcmp(key, "to") == 0) {
            if (!json_is_string(v) || strcmp(json_string_value(v), "end") != 0) {
                fail(c->resp, 400, "to", "to: the only value is \"end\"");
                goto out;
            }
            to_end = 1;
            have++;
        } else if (strcmp(key, "position") == 0) {
            if (!json_is_string(v) || adm_pos_parse(json_string_value(v), &pos) != WH_OK) {
                fail(c->resp, 400, "position",
                     "position: expected \"X/X:seq\" (the last position to count as delivered)");
                goto out;
            }
            have++;
        } else {
            fail(c->resp, 400, key, "%s: unknown field (use \"to\" or \"position\")", key);
            goto out;
        }
    }
    if (have != 1) {
        fail(c->resp, 400, "position",
             "give exactly one of {\"to\":\"end\"} or {\"position\":\"X/X:seq\"}");
        goto out;
    }
    uint64_t want = 0, version = 0;
    if (target_exists_at(c, &version, &want) != WH_OK)
        goto out;
    /* the store moves it only while its state names the target (a delete
     * since target_exists must not revive the dropped offset) and, with an
     * If-Match, only while its version is that one: compared there under
     * the lock of state writes, as the check above cannot (a write may
     * land between it and the move) */
    write_op op;
    memset(&op, 0, sizeof(op));
    if (set_offset(c, &op, c->tenant, c->target, ADM_OFF_TARGET, want, to_end, pos) != WH_OK)
        goto out;
    char prev[48], now[48];
    adm_pos_format(op.prev, prev, sizeof(prev));
    adm_pos_format(op.now, now, sizeof(now));
    reply_json(c->resp, 200,
               json_pack("{s:s,s:s,s:s,s:s}", "tenant", c->tenant, "target", c->target, "previous",
                         prev, "position", now),
               version);
out:
    json_decref(body);
}

static int m_backfill(ctx *c, write_op *op, wh_state *s);

/* The backfill of a resync, while the state names the target. */
static int m_resync(ctx *c, write_op *op, wh_state *s)
{
    /* a target refused for its filter takes nothing yet: moving its offset
     * would skip what it holds back; its filter is mended first */
    wh_state_target *tg = target_mut(c, s);
    if (!tg || target_filter_ok(c, s, tg) != WH_OK)
        return WH_ERR;
    return m_backfill(c, op, s);
}

/* POST .../targets/{n}/resync: what a NEEDS_SNAPSHOT target (or any target
 * an operator wants to start over) needs in one action: its offset to the
 * tenant's end (which clears the mark), and a backfill of every table of
 * the publication (request table "*": ing_snapshot makes a job per
 * table). The read events go to every target of the tenant.
 *
 * The backfill is written first (write_state: If-Match, the target, the
 * store): an answer that is not 202 has moved no offset, so no event is
 * skipped without a backfill to make up for it. The offset then goes to
 * the end as read before that write, not the end at the move: the
 * backfill's read events are stored after that write, and one the
 * ingestor stored before the move must not be skipped. The events between
 * the two are delivered twice at worst. */
static void r_resync(ctx *c)
{
    json_t *body = parse_body(c, 1);
    if (!body)
        return;
    if (json_object_size(body) != 0) {
        json_decref(body);
        fail(c->resp, 400, "body", "resync takes no body");
        return;
    }
    json_decref(body);
    uint64_t version = 0, want = 0;
    if (target_exists_at(c, &version, &want) != WH_OK)
        return;
    adm_pos end = {0, 0}, committed = {0, 0};
    int to_end = !c->a->be.progress ||
                 c->a->be.progress(c->a->be.arg, c->tenant, c->target, &end, &committed) != WH_OK;
    json_t *all = json_pack("{s:s}", "table", "*");
    write_op bop = {m_resync, NULL, all, "", {0, 0}, {0, 0}, 0};
    wh_state *s = NULL;
    int rc = write_state(c, &bop, &s);
    json_decref(all);
    if (rc != WH_OK)
        return;
    char id[80];
    snprintf(id, sizeof(id), "bf-%s", bop.start);
    write_op op;
    memset(&op, 0, sizeof(op));
    if (set_offset(c, &op, c->tenant, c->target, ADM_OFF_TARGET, 0, to_end, end) != WH_OK) {
        /* set_offset's answer stands; the backfill stays requested */
        wh_warn("target %s/%s: resync: backfill %s requested, the offset was not moved", c->tenant,
                c->target, id);
        wh_state_unref(s);
        return;
    }
    char prev[48], now[48];
    adm_pos_format(op.prev, prev, sizeof(prev));
    adm_pos_format(op.now, now, sizeof(now));
    wh_info("target %s/%s: resync: offset %s -> %s (the end), backfill %s of every table",
            c->tenant, c->target, prev, now, id);
    reply_json(c->resp, 202,
               json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "tenant", c->tenant, "target", c->target,
                         "previous", prev, "position", now, "backfill", id, "state", "requested"),
               s->version);
    wh_state_unref(s);
}

static void r_target_action(ctx *c)
{
    if (strcmp(c->action, "offset") == 0) {
        r_offset(c);
        return;
    }
    if (strcmp(c->action, "resync") == 0) {
        r_resync(c);
        return;
    }
    write_op op = {m_target_pause, NULL, NULL, "", {0, 0}, {0, 0}, 0};
    /* pause/resume take no body; an empty JSON object is fine too */
    json_t *body = parse_body(c, 1);
    if (!body)
        return;
    if (json_object_size(body) != 0) {
        json_decref(body);
        fail(c->resp, 400, "body", "%s takes no body", c->action);
        return;
    }
    json_decref(body);
    wh_state *s = NULL;
    if (write_state(c, &op, &s) == WH_OK) {
        json_t *t = target_json(s, c->tenant, c->target);
        reply_json(c->resp, 200, t ? t : json_object(), s->version);
        wh_state_unref(s);
    }
}

/* ---- /v1/tenants/{t}/targets/{name}/dlq: dead letters ----
 * A dead letter's id is its position with '-' for the LSN's '/' (so it is
 * one path segment): "0-1A2B3C8:0"; "0/1A2B3C8:0" is accepted in bodies
 * and query strings too. */

#define ADM_DLQ_LIST_MAX 1000
#define ADM_DLQ_IDS_MAX 1000

static int dlq_id_parse(const char *s, adm_pos *out)
{
    char tmp[64];
    if (!s || strlen(s) >= sizeof(tmp))
        return WH_ERR;
    wh_strlcpy(tmp, s, sizeof(tmp));
    char *dash = strchr(tmp, '-');
    if (dash && !strchr(tmp, '/'))
        *dash = '/';
    return adm_pos_parse(tmp, out);
}

static void dlq_id_format(uint64_t lsn, uint32_t seq, char *buf, size_t len)
{
    snprintf(buf, len, "%X-%X:%u", (unsigned)(lsn >> 32), (unsigned)lsn, seq);
}

static json_t *iso_time(int64_t us)
{
    if (us <= 0)
        return json_null();
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    if (!gmtime_r(&t, &tm))
        return json_null();
    char b[64];
    snprintf(b, sizeof(b), "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(us % 1000000));
    return json_string(b);
}

/* Bytes as a JSON string: invalid UTF-8 and control bytes become '?'. */
static json_t *excerpt_json(const uint8_t *p, size_t n)
{
    char *b = malloc(n + 1);
    if (!b)
        return json_null();
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t k = wh_utf8_len(p + i, n - i);
        if (k == 0 || (k == 1 && p[i] < 0x20 && p[i] != '\n' && p[i] != '\t')) {
            b[o++] = '?';
            i++;
        } else {
            memcpy(b + o, p + i, k);
            o += k;
            i += k;
        }
    }
    json_t *j = json_stringn(b, o);
    free(b);
    return j ? j : json_null();
}

static json_t *dlq_error_json(const Walhook__DlqError *e)
{
    if (!e)
        return json_null();
    return json_pack("{s:i,s:i,s:s,s:o,s:o}", "status", (int)e->status, "curl_code",
                     (int)e->curl_code, "curl_error", e->curl_error ? e->curl_error : "",
                     "body_excerpt", excerpt_json(e->body_excerpt.data, e->body_excerpt.len), "at",
                     iso_time(e->at_us));
}

static json_t *dlq_record_json(const Walhook__DlqRecord *r)
{
    const Walhook__Event *ev = r->event;
    char id[48], pos[48];
    uint64_t lsn = ev ? ev->commit_lsn : 0;
    uint32_t seq = ev ? ev->seq : 0;
    dlq_id_format(lsn, seq, id, sizeof(id));
    adm_pos_format((adm_pos){lsn, seq}, pos, sizeof(pos));
    json_t *event = NULL;
    if (ev && ev->json.len > 0)
        event = json_loadb((const char *)ev->json.data, ev->json.len, 0, NULL);
    json_t *event_id = event ? json_object_get(event, "id") : NULL;
    return json_pack("{s:s,s:O,s:s,s:i,s:s,s:o,s:o,s:o,s:o}", "id", id, "event_id",
                     event_id ? event_id : json_null(), "position", pos, "attempts",
                     (int)r->attempts, "reason", r->reason ? r->reason : "", "dead_at",
                     iso_time(r->dead_at_us), "first_error", dlq_error_json(r->first_error),
                     "last_error", dlq_error_json(r->last_error), "event",
                     event ? event : json_null());
}

/* One store call; on failure the response is set (404 for a missing
 * record is the caller's). */
static Walhook__Reply *dlq_call(ctx *c, Walhook__Request *req)
{
    if (!c->a->be.store_call) {
        fail(c->resp, 503, NULL, "the dead-letter queue needs the store (no store configured)");
        return NULL;
    }
    Walhook__Reply *rep = NULL;
    int status = 0;
    char err[WH_ERRLEN];
    if (c->a->be.store_call(c->a->be.arg, req, &rep, &status, err, sizeof(err)) != WH_OK) {
        if (status == 400)
            fail(c->resp, 400, NULL, "%s", err);
        else if (status != 0)
            fail(c->resp, 503, NULL, "the store refused it: %s", err);
        else
            fail(c->resp, 503, NULL, "the store did not answer: %s", err);
        return NULL;
    }
    if (rep->body_case != WALHOOK__REPLY__BODY_DLQ || !rep->dlq) {
        walhook__reply__free_unpacked(rep, NULL);
        fail(c->resp, 500, NULL, "the store's reply has no dead-letter body");
        return NULL;
    }
    return rep;
}

static void dlq_list(ctx *c)
{
    Walhook__DlqList l = WALHOOK__DLQ_LIST__INIT;
    Walhook__Position after = WALHOOK__POSITION__INIT;
    l.tenant = (char *)c->tenant;
    l.consumer = (char *)c->target;
    const char *qa = c->req->query ? c->req->query(c->req->query_ctx, "after") : NULL;
    const char *ql = c->req->query ? c->req->query(c->req->query_ctx, "limit") : NULL;
    if (qa && *qa) {
        adm_pos p;
        if (dlq_id_parse(qa, &p) != WH_OK) {
            fail(c->resp, 400, "after", "after: expected a dead-letter id like \"0-1A2B3C8:0\"");
            return;
        }
        after.lsn = p.lsn;
        after.seq = p.seq;
        l.has_after = 1;
        l.after = &after;
    }
    uint32_t limit = 100;
    if (ql && *ql) {
        char *end;
        errno = 0;
        long v = strtol(ql, &end, 10);
        if (errno || *end || v < 1 || v > ADM_DLQ_LIST_MAX) {
            fail(c->resp, 400, "limit", "limit: expected 1..%d", ADM_DLQ_LIST_MAX);
            return;
        }
        limit = (uint32_t)v;
    }
    l.limit = limit;
    if (target_exists(c, NULL) != WH_OK)
        return;
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    req.body_case = WALHOOK__REQUEST__BODY_DLQ_LIST;
    req.dlq_list = &l;
    Walhook__Reply *rep = dlq_call(c, &req);
    if (!rep)
        return;
    json_t *items = json_array();
    char next[48] = "";
    for (size_t i = 0; i < rep->dlq->n_records; i++) {
        const Walhook__DlqRecord *r = rep->dlq->records[i];
        json_array_append_new(items, dlq_record_json(r));
        if (r->event)
            dlq_id_format(r->event->commit_lsn, r->event->seq, next, sizeof(next));
    }
    json_t *out = json_pack("{s:s,s:s,s:I,s:I,s:o,s:o}", "tenant", c->tenant, "target", c->target,
                            "total", (json_int_t)rep->dlq->total, "replay_pending",
                            (json_int_t)rep->dlq->replay_pending, "items", items, "next",
                            rep->dlq->more && next[0] ? json_string(next) : json_null());
    walhook__reply__free_unpacked(rep, NULL);
    reply_json(c->resp, 200, out, 0);
}

static void dlq_show(ctx *c)
{
    adm_pos p;
    if (dlq_id_parse(c->item, &p) != WH_OK) {
        fail(c->resp, 400, "id", "id: expected a dead-letter id like \"0-1A2B3C8:0\" (got %.64s)",
             c->item);
        return;
    }
    if (target_exists(c, NULL) != WH_OK)
        return;
    Walhook__DlqGet g = WALHOOK__DLQ_GET__INIT;
    Walhook__Position pos = WALHOOK__POSITION__INIT;
    pos.lsn = p.lsn;
    pos.seq = p.seq;
    g.tenant = (char *)c->tenant;
    g.consumer = (char *)c->target;
    g.pos = &pos;
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    req.body_case = WALHOOK__REQUEST__BODY_DLQ_GET;
    req.dlq_get = &g;
    Walhook__Reply *rep = dlq_call(c, &req);
    if (!rep)
        return;
    if (rep->dlq->n_records == 0) {
        walhook__reply__free_unpacked(rep, NULL);
        fail(c->resp, 404, "id", "target '%s' of tenant '%s' has no dead letter %s", c->target,
             c->tenant, c->item);
        return;
    }
    json_t *out = dlq_record_json(rep->dlq->records[0]);
    walhook__reply__free_unpacked(rep, NULL);
    reply_json(c->resp, 200, out, 0);
}

/* Replay (POST body {"all":true} or {"ids":[...]}) or purge (DELETE, all,
 * or ?ids=a,b). */
static void dlq_edit(ctx *c, int replay)
{
    int all = 0;
    Walhook__Position pos[ADM_DLQ_IDS_MAX];
    Walhook__Position *pp[ADM_DLQ_IDS_MAX];
    size_t n = 0;
    json_t *body = NULL;
    if (replay) {
        body = parse_body(c, 0);
        if (!body)
            return;
        const char *key;
        json_t *v;
        json_object_foreach(body, key, v)
        {
            if (strcmp(key, "all") == 0) {
                if (!json_is_true(v)) {
                    fail(c->resp, 400, "all", "all: the only value is true");
                    goto out;
                }
                all = 1;
            } else if (strcmp(key, "ids") == 0) {
                if (!json_is_array(v) || json_array_size(v) == 0 ||
                    json_array_size(v) > ADM_DLQ_IDS_MAX) {
                    fail(c->resp, 400, "ids", "ids: an array of 1..%d dead-letter ids",
                         ADM_DLQ_IDS_MAX);
                    goto out;
                }
                size_t i;
                json_t *e;
                json_array_foreach(v, i, e)
                {
                    adm_pos p;
                    if (!json_is_string(e) || dlq_id_parse(json_string_value(e), &p) != WH_OK) {
                        fail(c->resp, 400, "ids",
                             "ids[%zu]: expected a dead-letter id like "
                             "\"0-1A2B3C8:0\"",
                             i);
                        goto out;
                    }
                    walhook__position__init(&pos[n]);
                    pos[n].lsn = p.lsn;
                    pos[n].seq = p.seq;
                    pp[n] = &pos[n];
                    n++;
                }
            } else {
                fail(c->resp, 400, key, "%s: unknown field (use \"all\" or \"ids\")", key);
                goto out;
            }
        }
        if (all == (n > 0)) {
            fail(c->resp, 400, "ids", "give exactly one of {\"all\":true} or {\"ids\":[...]}");
            goto out;
        }
    } else {
        const char *q = c->req->query ? c->req->query(c->req->query_ctx, "ids") : NULL;
        if (!q || !*q) {
            all = 1;
        } else {
            char tmp[4096];
            if (strlen(q) >= sizeof(tmp)) {
                fail(c->resp, 400, "ids", "ids: too long");
                goto out;
            }
            wh_strlcpy(tmp, q, sizeof(tmp));
            char *save = NULL;
            for (char *tok = strtok_r(tmp, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                adm_pos p;
                if (n >= ADM_DLQ_IDS_MAX || dlq_id_parse(tok, &p) != WH_OK) {
                    fail(c->resp, 400, "ids",
                         "ids: expected dead-letter ids like "
                         "\"0-1A2B3C8:0\", comma-separated");
                    goto out;
                }
                walhook__position__init(&pos[n]);
                pos[n].lsn = p.lsn;
                pos[n].seq = p.seq;
                pp[n] = &pos[n];
                n++;
            }
        }
    }
    if (target_exists(c, NULL) != WH_OK)
        goto out;
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__DlqReplay rp = WALHOOK__DLQ_REPLAY__INIT;
    Walhook__DlqPurge pg = WALHOOK__DLQ_PURGE__INIT;
    if (replay) {
        rp.tenant = (char *)c->tenant;
        rp.consumer = (char *)c->target;
        rp.all = all;
        rp.n_positions = n;
        rp.positions = pp;
        req.body_case = WALHOOK__REQUEST__BODY_DLQ_REPLAY;
        req.dlq_replay = &rp;
    } else {
        pg.tenant = (char *)c->tenant;
        pg.consumer = (char *)c->target;
        pg.all = all;
        pg.n_positions = n;
        pg.positions = pp;
        req.body_case = WALHOOK__REQUEST__BODY_DLQ_PURGE;
        req.dlq_purge = &pg;
    }
    Walhook__Reply *rep = dlq_call(c, &req);
    if (!rep)
        goto out;
    uint32_t count = rep->dlq->affected;
    walhook__reply__free_unpacked(rep, NULL);
    reply_json(c->resp, 200,
               json_pack("{s:s,s:s,s:i}", "tenant", c->tenant, "target", c->target,
                         replay ? "replayed" : "purged", (int)count),
               0);
out:
    json_decref(body);
}

static void r_dlq(ctx *c)
{
    if (c->item && strcmp(c->item, "replay") == 0)
        dlq_edit(c, 1);
    else if (c->item)
        dlq_show(c);
    else if (c->method == M_DELETE)
        dlq_edit(c, 0);
    else
        dlq_list(c);
}

/* ---- /v1/settings ---- */

static json_t *settings_json(const wh_config *cfg)
{
    json_t *o = json_object();
    for (size_t i = 0; i < wh_config_table_len; i++) {
        const wh_config_entry *e = &wh_config_table[i];
        if (!(e->flags & WH_CF_RUNTIME))
            continue;
        const char *p = (const char *)cfg + e->offset;
        json_t *v;
        switch (e->type) {
        case WH_CT_STRING:
            v = json_string(p);
            break;
        case WH_CT_BOOL:
            v = json_boolean(*(const int *)p);
            break;
        case WH_CT_INT:
            v = json_integer(*(const int *)p);
            break;
        default:
            v = json_integer((json_int_t) * (const int64_t *)p);
            break;
        }
        json_object_set_new(o, e->path, v);
    }
    return o;
}

static int m_settings(ctx *c, write_op *op, wh_state *s)
{
    const char *key;
    json_t *v;
    if (json_object_size(op->body) == 0)
        return fail(c->resp, 400, "body", "name at least one setting");
    json_object_foreach(op->body, key, v)
    {
        const wh_config_entry *e = wh_config_find(key);
        if (!e)
            return fail(c->resp, 400, key, "unknown setting '%s'", key);
        if (!(e->flags & WH_CF_RUNTIME))
            return fail(c->resp, 400, key,
                        "setting '%s' cannot change at runtime (set it in the file and restart)",
                        key);
        char text[WH_URL_MAX];
        if (e->type == WH_CT_STRING) {
            if (get_string(c, v, key, text, sizeof(text)) != WH_OK)
                return WH_ERR;
        } else if (e->type == WH_CT_BOOL) {
            int b;
            if (get_bool(c, v, key, &b) != WH_OK)
                return WH_ERR;
            snprintf(text, sizeof(text), "%s", b ? "true" : "false");
        } else {
            if (!json_is_integer(v))
                return fail(c->resp, 400, key, "setting '%s': expected an integer", key);
            snprintf(text, sizeof(text), "%" PRId64, (int64_t)json_integer_value(v));
        }
        char err[WH_ERRLEN];
        if (wh_config_set(&s->settings, key, text, err, sizeof(err)) != WH_OK)
            return fail(c->resp, 400, key, "%s", err);
        if (strcmp(key, "log_level") == 0 && wh_log_level_parse(s->settings.log_level) < 0)
            return fail(c->resp, 400, key,
                        "setting 'log_level': '%s' is not debug, info, warn "
                        "or error",
                        s->settings.log_level);
    }
    return WH_OK;
}

static void r_settings(ctx *c)
{
    wh_state *s = NULL;
    write_op op = {m_settings, NULL, NULL, "", {0, 0}, {0, 0}, 0};
    if (c->method == M_PATCH) {
        if (!(op.body = parse_body(c, 0)))
            return;
        if (write_state(c, &op, &s) != WH_OK) {
            json_decref(op.body);
            return;
        }
        json_decref(op.body);
    } else if (!(s = get_state(c))) {
        return;
    }
    json_t *out = json_object();
    json_object_set_new(out, "version", json_integer((json_int_t)s->version));
    json_object_set_new(out, "settings", settings_json(&s->settings));
    reply_json(c->resp, 200, out, s->version);
    wh_state_unref(s);
}

/* ---- /v1/slots ---- */

static void r_slots(ctx *c)
{
    wh_state *s = get_state(c);
    if (!s)
        return;
    adm_slot_info *all = calloc((size_t)s->ntenants + 1, sizeof(*all));
    if (all == NULL) {
        wh_state_unref(s);
        fail(c->resp, 500, NULL, "out of memory");
        return;
    }
    adm_stat st[ADM_NDAEMONS];
    query_stats(c, st); /* zones, policies, NEEDS_SNAPSHOT marks (adm_slot) */
    if (c->a->be.slot)
        slots_read(&c->a->be, s, wh_now_ms() + adm_stats_wait_ms, all);
    json_t *arr = json_array();
    for (int i = 0; i < s->ntenants; i++) {
        const wh_state_tenant *t = &s->tenants[i];
        adm_slot_info si = all[i];
        if (!c->a->be.slot)
            wh_strlcpy(si.error, "no source query configured", sizeof(si.error));
        json_t *o = json_pack("{s:s,s:s}", "tenant", t->name, "slot", t->slot);
        if (si.error[0]) {
            json_object_set_new(o, "error", json_string(si.error));
        } else {
            json_object_set_new(o, "exists", json_boolean(si.found));
            if (si.found) {
                json_object_set_new(o, "active", json_boolean(si.active));
                json_object_set_new(o, "confirmed_flush_lsn",
                                    si.confirmed_flush_lsn[0] ? json_string(si.confirmed_flush_lsn)
                                                              : json_null());
                json_object_set_new(o, "lag_bytes",
                                    si.lag_bytes >= 0 ? json_integer(si.lag_bytes) : json_null());
                json_object_set_new(o, "wal_status",
                                    si.wal_status[0] ? json_string(si.wal_status) : json_null());
                json_object_set_new(o, "safe_wal_size",
                                    si.safe_wal_size >= 0 ? json_integer(si.safe_wal_size)
                                                          : json_null());
            }
        }
        adm_slot_json(o, t, st);
        json_array_append_new(arr, o);
    }
    free(all);
    adm_stats_free(st, ADM_NDAEMONS);
    json_t *out = json_object();
    json_object_set_new(out, "version", json_integer((json_int_t)s->version));
    json_object_set_new(out, "slots", arr);
    reply_json(c->resp, 200, out, s->version);
    wh_state_unref(s);
}

/* ---- lifecycle ---- */

int adm_api_new(adm_api **out, const wh_config *base, const adm_backend *be, adm_auth *auth,
                char *err, size_t errlen)
{
    adm_api *a = calloc(1, sizeof(*a));
    if (!a)
        return wh_seterr(err, errlen, "out of memory");
    a->base = malloc(sizeof(*a->base));
    if (!a->base || adm_page_new(&a->page) != WH_OK) {
        free(a->base);
        free(a);
        return wh_seterr(err, errlen, "out of memory");
    }
    memcpy(a->base, base, sizeof(*base));
    if (be)
        a->be = *be;
    a->auth = auth;
    pthread_mutex_init(&a->mu, NULL);
    *out = a;
    return WH_OK;
}

/* ---- /v1/tenants/{t}/schemas: the tenant's schema registry (the store's) ----
 * {"tenant","tables":[{"table":"s.t","versions":[{"fingerprint","first_lsn",
 * "first_xid","schema","table","replica_identity","key_columns","columns",
 * "last_started_lsn","pruned"}]}]}: tables by name, each one's versions in
 * the order they were first used; a version the store pruned (its
 * tombstone) has "pruned":true and no description members (events below
 * the GC watermark may still carry it). */

static int schema_cmp(const void *a, const void *b)
{
    const Walhook__SchemaVersion *x = *(Walhook__SchemaVersion *const *)a;
    const Walhook__SchemaVersion *y = *(Walhook__SchemaVersion *const *)b;
    int c = strcmp(x->table ? x->table : "", y->table ? y->table : "");
    if (c != 0)
        return c;
    /* streamed first uses (no commit LSN known) after the others */
    uint64_t xl = x->first_lsn ? x->first_lsn : UINT64_MAX;
    uint64_t yl = y->first_lsn ? y->first_lsn : UINT64_MAX;
    if (xl != yl)
        return xl < yl ? -1 : 1;
    return x->fingerprint < y->fingerprint ? -1 : x->fingerprint > y->fingerprint;
}

static void r_schemas(ctx *c)
{
    wh_state *s = get_state(c);
    if (!s)
        return;
    int found = wh_state_tenant_find(s, c->tenant) != NULL;
    wh_state_unref(s);
    if (!found) {
        tenant_missing(c);
        return;
    }
    if (!c->a->be.store_call) {
        fail(c->resp, 503, NULL, "the schema registry needs the store (no store configured)");
        return;
    }
    Walhook__SchemaList sl = WALHOOK__SCHEMA_LIST__INIT;
    sl.tenant = (char *)c->tenant;
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    req.body_case = WALHOOK__REQUEST__BODY_SCHEMA_LIST;
    req.schema_list = &sl;
    Walhook__Reply *rep = NULL;
    int status = 0;
    char err[WH_ERRLEN];
    if (c->a->be.store_call(c->a->be.arg, &req, &rep, &status, err, sizeof(err)) != WH_OK) {
        fail(c->resp, status == 400 ? 400 : 503, NULL,
             status == 400 ? "%s"
             : status != 0 ? "the store refused it: %s"
                           : "the store did not answer: %s",
             err);
        return;
    }
    if (rep->body_case != WALHOOK__REPLY__BODY_SCHEMAS || !rep->schemas) {
        walhook__reply__free_unpacked(rep, NULL);
        fail(c->resp, 500, NULL, "the store's reply has no schema body");
        return;
    }
    size_t n = rep->schemas->n_versions;
    Walhook__SchemaVersion **v = rep->schemas->versions;
    if (n > 1)
        qsort(v, n, sizeof(*v), schema_cmp);
    json_t *tables = json_array(), *cur = NULL;
    const char *cur_name = NULL;
    for (size_t i = 0; i < n; i++) {
        const char *tn = v[i]->table ? v[i]->table : "";
        if (cur_name == NULL || strcmp(cur_name, tn) != 0) {
            cur = json_array();
            json_array_append_new(tables, json_pack("{s:s,s:o}", "table", tn, "versions", cur));
            cur_name = tn;
        }
        char fp[17], lsn[WH_LSN_STRLEN];
        snprintf(fp, sizeof(fp), "%016" PRIx64, v[i]->fingerprint);
        wh_lsn_format(v[i]->first_lsn, lsn, sizeof(lsn));
        json_t *ver = json_pack("{s:s,s:o,s:I}", "fingerprint", fp, "first_lsn",
                                v[i]->first_lsn ? json_string(lsn) : json_null(), "first_xid",
                                (json_int_t)v[i]->first_xid);
        json_t *d = v[i]->pruned ? NULL
                                 : json_loadb((const char *)v[i]->description.data,
                                              v[i]->description.len, 0, NULL);
        if (json_is_object(d))
            json_object_update(ver, d); /* schema, table, replica_identity, key_columns, columns */
        json_decref(d);
        /* the last (re)start the store knows (its registry pruning) */
        wh_lsn_format(v[i]->started_lsn, lsn, sizeof(lsn));
        json_object_set_new(ver, "last_started_lsn",
                            v[i]->started_lsn ? json_string(lsn) : json_null());
        json_object_set_new(ver, "pruned", json_boolean(v[i]->pruned));
        json_array_append_new(cur, ver);
    }
    json_t *out = json_pack("{s:s,s:o}", "tenant", c->tenant, "tables", tables);
    walhook__reply__free_unpacked(rep, NULL);
    reply_json(c->resp, 200, out, 0);
}

void adm_api_set_config(adm_api *a, const wh_config *base)
{
    pthread_mutex_lock(&a->mu);
    memcpy(a->base, base, sizeof(*base));
    pthread_mutex_unlock(&a->mu);
}

void adm_api_free(adm_api *a)
{
    if (!a)
        return;
    adm_page_free(a->page);
    pthread_mutex_destroy(&a->mu);
    free(a->base);
    free(a);
}

/* ---- /v1/tenants/{t}/backfill: on-demand backfills (ing_snapshot) ----
 * POST {"table":"schema.table"} records a request in the tenant's
 * source.backfills ("id:table;..."); the tenant's ingestor reads the table
 * by watermark chunks while it streams. GET lists the requests and the
 * progress the store keeps (snapshot jobs included). */

static int m_backfill(ctx *c, write_op *op, wh_state *s)
{
    wh_state_tenant *t = tenant_mut(s, c->tenant);
    if (!t)
        return fail(c->resp, 404, "tenant", "no tenant '%s'", c->tenant);
    const char *table = json_string_value(json_object_get(op->body, "table"));
    unsigned long id = 0;
    wh_state_backfill_add(t, table, (unsigned long)s->version + 1, &id);
    snprintf(op->start, sizeof(op->start), "%lu", id);
    return WH_OK;
}

/* The progress document the store keeps for the tenant as JSON (null when
 * none or when the store cannot tell). */
static json_t *backfill_progress(ctx *c)
{
    if (!c->a->be.store_call)
        return json_null();
    Walhook__Request req;
    Walhook__TenantInfo ti;
    walhook__request__init(&req);
    walhook__tenant_info__init(&ti);
    ti.tenant = (char *)c->tenant;
    req.body_case = WALHOOK__REQUEST__BODY_TENANT_INFO;
    req.tenant_info = &ti;
    Walhook__Reply *rep = NULL;
    int status = 0;
    char err[WH_ERRLEN];
    if (c->a->be.store_call(c->a->be.arg, &req, &rep, &status, err, sizeof(err)) != WH_OK)
        return json_null();
    json_t *out = json_null();
    wh_snapprog p;
    memset(&p, 0, sizeof(p));
    if (rep->body_case == WALHOOK__REPLY__BODY_TENANT_INFO && rep->tenant_info &&
        rep->tenant_info->snapshot_progress.len > 0 &&
        wh_snapprog_decode(&p, (const char *)rep->tenant_info->snapshot_progress.data,
                           rep->tenant_info->snapshot_progress.len, err, sizeof(err)) == WH_OK) {
        out = json_array();
        for (size_t i = 0; i < p.njobs; i++) {
            const wh_snapjob *j = &p.jobs[i];
            json_array_append_new(out, json_pack("{s:s,s:s,s:s,s:I,s:I}", "id", j->id, "table",
                                                 j->table, "state", wh_snap_state_name(j->state),
                                                 "rows_done", (json_int_t)j->rows_done,
                                                 "rows_estimated", (json_int_t)j->rows_est));
        }
    }
    wh_snapprog_clear(&p);
    walhook__reply__free_unpacked(rep, NULL);
    return out;
}

static void r_backfill(ctx *c)
{
    if (c->method == M_GET) {
        wh_state *s = get_state(c);
        if (!s)
            return;
        const wh_state_tenant *t = wh_state_tenant_find(s, c->tenant);
        if (!t) {
            wh_state_unref(s);
            fail(c->resp, 404, "tenant", "no tenant '%s'", c->tenant);
            return;
        }
        json_t *req = json_array();
        char list[WH_URL_MAX];
        wh_strlcpy(list, t->backfills, sizeof(list));
        char *save = NULL;
        for (char *it = strtok_r(list, ";", &save); it; it = strtok_r(NULL, ";", &save)) {
            char *colon = strchr(it, ':');
            if (!colon)
                continue;
            *colon = '\0';
            char id[64];
            snprintf(id, sizeof(id), "bf-%.40s", it);
            json_array_append_new(req, json_pack("{s:s,s:s}", "id", id, "table", colon + 1));
        }
        uint64_t v = s->version;
        wh_state_unref(s);
        reply_json(c->resp, 200,
                   json_pack("{s:s,s:o,s:o}", "tenant", c->tenant, "requests", req, "jobs",
                             backfill_progress(c)),
                   v);
        return;
    }
    json_t *body = parse_body(c, 0);
    if (!body)
        return;
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v)
    {
        if (strcmp(key, "table") != 0) {
            fail(c->resp, 400, key,
                 "%.40s: unknown field (the body is {\"table\": \"schema.table\"})", key);
            json_decref(body);
            return;
        }
    }
    const char *table = json_string_value(json_object_get(body, "table"));
    const char *bad = NULL;
    if (table == NULL)
        bad = "table: required, a string \"schema.table\"";
    else if (strlen(table) > WH_BACKFILL_TABLE_MAX)
        bad = "table: too long";
    else if (strchr(table, '.') == NULL || table[0] == '.' || table[strlen(table) - 1] == '.')
        bad = "table: must be \"schema.table\"";
    for (const unsigned char *p = (const unsigned char *)(table ? table : ""); !bad && *p; p++)
        if (*p < 0x20 || *p == 0x7f || *p == ';')
            bad = "table: contains a control character or ';'";
    if (bad) {
        fail(c->resp, 400, "table", "%s", bad);
        json_decref(body);
        return;
    }
    if (c->a->be.table_check) {
        wh_state *s = get_state(c);
        if (!s) {
            json_decref(body);
            return;
        }
        const wh_state_tenant *t = wh_state_tenant_find(s, c->tenant);
        char err[WH_ERRLEN] = "";
        int known = t ? c->a->be.table_check(c->a->be.arg, t, table, err, sizeof(err)) : 0;
        if (!t)
            fail(c->resp, 404, "tenant", "no tenant '%s'", c->tenant);
        else if (known == -2)
            fail(c->resp, 504, NULL, "cannot check the table: %s", err);
        else if (known < 0)
            fail(c->resp, 503, NULL, "cannot check the table: %s", err);
        else if (known == 0)
            fail(c->resp, 404, "table", "%s is not a table of publication '%s'", table,
                 t->publication);
        wh_state_unref(s);
        if (known != 1) {
            json_decref(body);
            return;
        }
    }
    write_op op = {m_backfill, NULL, body, "", {0, 0}, {0, 0}, 0};
    wh_state *s = NULL;
    if (write_state(c, &op, &s) == WH_OK) {
        char id[80];
        snprintf(id, sizeof(id), "bf-%s", op.start);
        reply_json(c->resp, 202,
                   json_pack("{s:s,s:s,s:s,s:s}", "tenant", c->tenant, "id", id, "table", table,
                             "state", "requested"),
                   s->version);
        wh_state_unref(s);
    }
    json_decref(body);
}
