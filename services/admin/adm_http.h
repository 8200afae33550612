/* adm_http: the admin's HTTP server (libmicrohttpd, one thread per
 * connection so a slow /readyz never blocks /livez; limits below keep the
 * probes answerable under a flood of idle connections). It only moves bytes:
 * request bodies are collected up to ADM_MAX_BODY (413 beyond) and every
 * request is answered by adm_api_handle (adm_api.h: /v1 routes, auth,
 * status page); it owns the adm_auth, adm_backend and adm_api it creates
 * from cfg, and serves HTTPS when admin.tls_cert/tls_key are set.
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

/* Connection limits: probes must stay answerable under a flood of idle
 * connections. */
#define ADM_HTTP_MAX_CONNS 1000    /* at once (fewer when the fd limit is lower) */
#define ADM_HTTP_PER_CLIENT 64     /* from one address but 127.0.0.1 and ::1 */
#define ADM_HTTP_IDLE_TIMEOUT_S 10 /* a connection silent this long is closed */

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
