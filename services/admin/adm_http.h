/* adm_http: the admin's HTTP server (libmicrohttpd, one thread per
 * connection so a slow /readyz never blocks /livez; limits below keep the
 * probes answerable under a flood of idle, slow or unauthenticated
 * connections). It only moves bytes: as soon as a request's headers are in,
 * adm_api_check decides it (404/405/401/403/413 are answered then, and the
 * body is never read); the body of an admin-token write is collected up to
 * ADM_MAX_BODY (413 beyond), any other body is dropped unread, and every
 * request is answered by adm_api_handle (adm_api.h: /v1 routes, auth,
 * status page); it owns the adm_auth, adm_backend and adm_api it creates
 * from cfg, and serves HTTPS when admin.tls_cert/tls_key are set.
 * Connection limits and the request deadline: adm_http.c, "connection
 * limits"; counted in walhook_admin_http_connections_refused_total
 * {reason=per_client|full}, walhook_admin_http_connections_closed_total
 * {reason=evicted|deadline} and walhook_admin_http_connections{kind=open|max}.
 *   GET /livez   200 "ok"
 *   GET /readyz  200 when every daemon answers Stats, the ingestor streams
 *                and the store can write, else 503; the JSON body names who
 *                is not ready and why
 *   GET /metrics Prometheus text of every daemon plus the admin's own
 *   GET /config  the configuration as JSON, secrets redacted
 *   GET /        the status page (adm_page.h)
 *   /v1/...      the REST API (adm_api.h, docs/openapi.json)
 * Unknown path 404, other methods 405 (both JSON). */
#ifndef ADM_HTTP_H
#define ADM_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include "adm_query.h"
#include "wh_config.h"

/* Connection limits: probes must stay answerable under a flood of idle,
 * slow or unauthenticated connections. At most ADM_HTTP_MAX_CONNS at once
 * (fewer when the fd limit is lower); at the cap a newcomer replaces the
 * oldest connection waiting for a request. At most ADM_HTTP_PER_CLIENT from
 * one IPv4 address or IPv6 /64, but 127.0.0.1 and ::1. A connection silent
 * for ADM_HTTP_IDLE_TIMEOUT_S is closed, and a request must arrive whole
 * (headers and body) within admin.request_timeout_s. */
#define ADM_HTTP_MAX_CONNS 1000
#define ADM_HTTP_PER_CLIENT 64
#define ADM_HTTP_IDLE_TIMEOUT_S 10

typedef struct adm_http adm_http;

/* Listens on `listen` ("host:port"; port 0 picks a free one). q may be NULL
 * (every daemon then reads as down). cfg is copied. */
/* Lowers the connection limit (the admin's memory budget: each connection
 * may hold a request body and a thread); before adm_http_start. */
void adm_http_set_max_conns(unsigned n);

int adm_http_start(adm_http **out, const char *listen, adm_query *q, const wh_config *cfg,
                   char *err, size_t errlen);
/* The bound port. */
uint16_t adm_http_port(const adm_http *h);
/* Replaces the configuration served by /config (after a reload). */
void adm_http_set_config(adm_http *h, const wh_config *cfg);
void adm_http_stop(adm_http *h);

#endif
