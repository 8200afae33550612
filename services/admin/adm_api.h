/* adm_api: every route of the admin HTTP server as a pure function of the
 * request (method, path, headers, body) and a backend (the store, the
 * daemons' Stats, the source databases), so that it is unit-tested and
 * fuzzed without a socket. adm_http feeds it requests from libmicrohttpd.
 *
 * Routes (docs/openapi.json is the reference, served at /v1/openapi.json):
 *   GET  /livez /readyz /metrics /config /            probes, config, page
 *   GET|POST              /v1/tenants
 *   GET|PATCH|DELETE      /v1/tenants/{t}
 *   GET|POST              /v1/tenants/{t}/targets
 *   GET|PATCH|DELETE      /v1/tenants/{t}/targets/{name}
 *   POST                  /v1/tenants/{t}/targets/{name}/{pause,resume,offset}
 *   GET|DELETE            /v1/tenants/{t}/targets/{name}/dlq     (list ?after=&limit=, purge)
 *   GET                   /v1/tenants/{t}/targets/{name}/dlq/{id}
 *   POST                  /v1/tenants/{t}/targets/{name}/dlq/replay
 *   GET|PATCH             /v1/settings
 *   GET                   /v1/slots, /v1/openapi.json
 * Order of checks: unknown path 404, method 405 (Allow), token 401
 * (WWW-Authenticate: Bearer), scope 403, body 413/415/400, If-Match 412.
 * Errors: {"error":{"code":"...","message":"...","field":"..."}}.
 *
 * Every write reads the state, changes a clone, validates it
 * (wh_state_validate_write against the state read: the filters of the
 * targets it adds or changes are compiled; a PATCH of a target compiles
 * its filter even when it changes nothing) and stores it with
 * PutState(expected_version): the
 * If-Match version when given (stale: 412), else the version read, retried
 * up to ADM_WRITE_TRIES times when another writer won the race.
 *
 * Thread-safety: adm_api_handle may run on many threads at once; the
 * backend's functions must be thread-safe.
 */
#ifndef ADM_API_H
#define ADM_API_H

#include <stddef.h>
#include <stdint.h>

#include "adm_auth.h"
#include "adm_query.h"
#include "wh_buf.h"
#include "wh_config.h"
#include "wh_state.h"
#include "walhook.pb-c.h"

#define ADM_MAX_BODY (1u << 20) /* larger request bodies: 413 */
#define ADM_WRITE_TRIES 5

/* Conditions of a SetOffset (SetOffset.condition): */
#define ADM_OFF_ANY 0    /* none */
#define ADM_OFF_TARGET 1 /* the state names the target, else 404 */
#define ADM_OFF_CREATE 2 /* no such target and no live offset (a create), else 409 */

typedef struct adm_pos {
    uint64_t lsn;
    uint32_t seq;
} adm_pos;

/* One tenant's replication slot as its source database reports it. */
typedef struct adm_slot_info {
    int found; /* the slot exists */
    char confirmed_flush_lsn[32];
    int64_t lag_bytes; /* current WAL - confirmed flush; -1 unknown */
    char wal_status[32];
    int64_t safe_wal_size; /* -1 = NULL (no max_slot_wal_keep_size) */
    int active;
    char error[256]; /* "" when the source answered */
} adm_slot_info;

typedef struct adm_backend {
    void *arg;
    /* The current state (a new reference). WH_ERR: store unavailable. */
    int (*get_state)(void *arg, wh_state **out, char *err, size_t errlen);
    /* Optional: get_state waiting for the store's other requests under way
     * until deadline_ms (wh_now_ms's clock) at most (WH_ERR then), so the
     * reads of requests nobody waits for any more (the status page's,
     * adm_bg) do not queue up behind a store that does not answer; the
     * read itself is bounded by the store client's timeout (else
     * get_state). */
    int (*get_state_by)(void *arg, uint64_t deadline_ms, wh_state **out, char *err, size_t errlen);
    /* PutState; *status = 412 on a version conflict, the store's status on
     * another refusal, 0 on a transport failure. */
    int (*put_state)(void *arg, const wh_state *s, uint64_t expected, uint64_t *new_version,
                     int *status, char *err, size_t errlen);
    /* SetOffset (to_end, or pos) under condition cond (ADM_OFF_*) and, when
     * expected_version is not 0, only at that state version (an If-Match),
     * both checked by the store against its current state under one lock;
     * previous/now receive the positions. *status: 404/409 when the
     * condition does not hold, then 412 when the version is another. */
    int (*set_offset)(void *arg, const char *tenant, const char *consumer, int cond,
                      uint64_t expected_version, int to_end, adm_pos pos, adm_pos *previous,
                      adm_pos *now, int *status, char *err, size_t errlen);
    /* Optional: DropOffset (the consumer reads nothing, its offset no
     * longer holds the GC); undoes the SetOffset of a target whose create
     * was not written. */
    int (*drop_offset)(void *arg, const char *tenant, const char *consumer, char *err,
                       size_t errlen);
    /* Optional: the tenant's end and the consumer's committed offset. */
    int (*progress)(void *arg, const char *tenant, const char *consumer, adm_pos *end,
                    adm_pos *committed);
    /* Optional: progress waiting for the store's other requests under way
     * until deadline_ms at most (WH_ERR then), like get_state_by: the
     * status page's backlog reads, behind a store that stopped answering
     * meanwhile, do not queue up one after another (the store client's
     * timeout each) on tasks nobody waits for any more. */
    int (*progress_by)(void *arg, uint64_t deadline_ms, const char *tenant, const char *consumer,
                       adm_pos *end, adm_pos *committed);
    /* Optional: the daemons' Stats (else every daemon reads as down). */
    void (*stats)(void *arg, adm_stat st[ADM_NDAEMONS]);
    /* Optional: the slot of tenant t (else an "error" per tenant), out by
     * deadline_ms (wh_now_ms's clock): a source that has not answered by
     * then is an error in out. Thread-safe (tenants are asked at once). */
    void (*slot)(void *arg, const wh_state_tenant *t, uint64_t deadline_ms, adm_slot_info *out);
    /* Optional: the state /metrics asks the slots of (else get_state): the
     * current one when the store answers within ADM_STATS_TIMEOUT_MS, else
     * the last one read (a new reference); WH_ERR when none was ever read.
     * The sources' slots do not depend on the store. */
    int (*known_state)(void *arg, wh_state **out, char *err, size_t errlen);
    /* Optional: one request to the store (the dead-letter routes; 503
     * without it). Like wh_client_call_status: *rep freed by the caller
     * with walhook__reply__free_unpacked. */
    int (*store_call)(void *arg, const Walhook__Request *req, Walhook__Reply **rep, int *status,
                      char *err, size_t errlen);
    /* Optional: 1 when table ("schema.table") is in tenant t's publication,
     * 0 when not, -1 when the source cannot tell, -2 when it did not
     * answer within a bound of a few seconds (err says why, naming the
     * source). Returns by then whatever the source does. */
    int (*table_check)(void *arg, const wh_state_tenant *t, const char *table, char *err,
                       size_t errlen);
    /* Optional: the store's Stats only (st[0]; the others down), for what
     * needs the store's metrics alone (else stats). */
    void (*store_stats)(void *arg, adm_stat st[ADM_NDAEMONS]);
    /* Optional: the store's and the dispatcher's Stats (st[0], st[2]; the
     * ingestor down), for the target states (else store_stats, else stats). */
    void (*target_stats)(void *arg, adm_stat st[ADM_NDAEMONS]);
} adm_backend;

typedef struct adm_request {
    const char *method;        /* "GET", ... */
    const char *path;          /* without the query string */
    const char *authorization; /* header values, NULL when absent */
    const char *if_match;
    const char *content_type;
    const char *body;
    size_t body_len;
    int body_too_large; /* the HTTP layer discarded a body over ADM_MAX_BODY */
    /* Optional: the query parameter `name` (decoded) or NULL. */
    const char *(*query)(void *query_ctx, const char *name);
    void *query_ctx;
} adm_request;

typedef struct adm_response {
    int status;
    wh_buf body;
    const char *content_type; /* static string */
    char etag[32];            /* "" or "\"N\"" */
    char allow[64];           /* "" or the methods of the route (405) */
    int challenge;            /* add WWW-Authenticate: Bearer */
} adm_response;

typedef struct adm_api adm_api;

/* base: the file + env configuration (copied). auth: borrowed, may be NULL
 * (no auth: every request has the admin scope; tests only). */
int adm_api_new(adm_api **out, const wh_config *base, const adm_backend *be, adm_auth *auth,
                char *err, size_t errlen);
void adm_api_free(adm_api *a);
/* Replaces the base configuration (after SIGHUP). */
void adm_api_set_config(adm_api *a, const wh_config *base);

void adm_response_init(adm_response *r);
void adm_response_free(adm_response *r);
/* Handles one request; resp must be initialised. */
void adm_api_handle(adm_api *a, const adm_request *req, adm_response *resp);
/* What the request line and headers decide alone, before any body is read
 * (req->body unused; body_too_large from Content-Length): 1 when resp holds
 * the answer (404, 405, 401, 403, 413, in adm_api_handle's order), else 0
 * and *takes_body tells whether the route reads a body for this request
 * (a write with an admin token; never without a token). */
int adm_api_check(adm_api *a, const adm_request *req, adm_response *resp, int *takes_body);
/* Optional: fn appends more of the admin's own metrics to /metrics (the
 * HTTP layer's counters); before the first request. */
void adm_api_set_own_metrics(adm_api *a, int (*fn)(void *arg, wh_buf *out), void *arg);

/* The route table, for the OpenAPI coverage test: path patterns with
 * "{tenant}" / "{target}" and each route's methods ("GET,POST"). */
typedef struct adm_route_info {
    const char *pattern;
    const char *methods;
} adm_route_info;
const adm_route_info *adm_api_routes(size_t *n);

/* "X/X:seq" (":seq" optional, 0) -> position. */
int adm_pos_parse(const char *s, adm_pos *out);
void adm_pos_format(adm_pos p, char *buf, size_t len);

/* The embedded docs/openapi.json (generated at build time). */
extern const char adm_openapi_json[];
extern const size_t adm_openapi_json_len;

#endif
