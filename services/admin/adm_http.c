/* adm_http: libmicrohttpd server for the admin endpoints. */
#include "adm_http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "adm_api.h"
#include "adm_auth.h"
#include "adm_backend.h"
#include "wh_buf.h"
#include "wh_util.h"

/* Open connections of one client address (not counted: 127.0.0.1, ::1). */
typedef struct adm_client {
    unsigned char addr[16]; /* IPv4 in the first 4 bytes */
    int family;
    unsigned n;
} adm_client;

struct adm_http {
    struct MHD_Daemon *d;
    adm_auth *auth;
    adm_backend be;
    adm_api *api;
    char *tls_cert, *tls_key; /* PEM, kept while the daemon runs */
    uint16_t port;
    pthread_mutex_t cl_mu; /* guards clients */
    adm_client *clients;   /* one per address with open connections */
    size_t nclients, capclients;
};

/* A connection thread runs one handler at a time on a small stack; many
 * idle connections then cost little memory. */
#define ADM_HTTP_THREAD_STACK (512 * 1024)

/* Per-connection request state (con_cls): the body, capped. */
typedef struct adm_conn {
    wh_buf body;
    int too_large;
} adm_conn;

static void adm_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                          enum MHD_RequestTerminationCode toe)
{
    adm_conn *c = *con_cls;
    if (c) {
        wh_buf_free(&c->body);
        free(c);
        *con_cls = NULL;
    }
}

/* ---- connection limits --------------------------------------------------
 * One thread per connection; a connection silent for ADM_HTTP_IDLE_TIMEOUT_S
 * is closed; at most ADM_HTTP_MAX_CONNS at once, and at most
 * ADM_HTTP_PER_CLIENT from one address, so that one client cannot take the
 * probes' room. 127.0.0.1 and ::1 (probes and tools on this host: a compose
 * healthcheck, kubectl exec) have no per-address cap, only the global one. */

/* The client's address as a key; returns 0 for loopback 127.0.0.1 / ::1 and
 * addresses that are not IP (not counted). */
static int client_key(const struct sockaddr *sa, unsigned char addr[16], int *family)
{
    memset(addr, 0, 16);
    if (sa == NULL)
        return 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        if (a->sin_addr.s_addr == htonl(INADDR_LOOPBACK))
            return 0;
        memcpy(addr, &a->sin_addr, 4);
        *family = AF_INET;
        return 1;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr))
            return 0;
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) { /* ::ffff:a.b.c.d is a.b.c.d */
            if (memcmp(a->sin6_addr.s6_addr + 12, "\x7f\0\0\x01", 4) == 0)
                return 0;
            memcpy(addr, a->sin6_addr.s6_addr + 12, 4);
            *family = AF_INET;
            return 1;
        }
        memcpy(addr, &a->sin6_addr, 16);
        *family = AF_INET6;
        return 1;
    }
    return 0;
}

/* Caller holds cl_mu. The entry of addr, created when `create`. */
static adm_client *client_get(adm_http *h, const unsigned char addr[16], int family, int create)
{
    for (size_t i = 0; i < h->nclients; i++)
        if (h->clients[i].family == family && memcmp(h->clients[i].addr, addr, 16) == 0)
            return &h->clients[i];
    if (!create)
        return NULL;
    if (h->nclients == h->capclients) {
        size_t nc = h->capclients ? h->capclients * 2 : 16;
        adm_client *n = realloc(h->clients, nc * sizeof(*n));
        if (n == NULL)
            return NULL;
        h->clients = n;
        h->capclients = nc;
    }
    adm_client *c = &h->clients[h->nclients++];
    memcpy(c->addr, addr, 16);
    c->family = family;
    c->n = 0;
    return c;
}

/* MHD accept policy: refuses an address that has ADM_HTTP_PER_CLIENT open. */
static enum MHD_Result adm_accept(void *cls, const struct sockaddr *sa, socklen_t len)
{
    adm_http *h = cls;
    unsigned char addr[16];
    int family = 0;
    WH_UNUSED(len);
    if (!client_key(sa, addr, &family))
        return MHD_YES;
    pthread_mutex_lock(&h->cl_mu);
    const adm_client *c = client_get(h, addr, family, 0);
    int ok = c == NULL || c->n < ADM_HTTP_PER_CLIENT;
    pthread_mutex_unlock(&h->cl_mu);
    return ok ? MHD_YES : MHD_NO;
}

/* MHD connection notification: counts open connections per address. */
static void adm_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                       enum MHD_ConnectionNotificationCode toe)
{
    adm_http *h = cls;
    WH_UNUSED(socket_context);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    unsigned char addr[16];
    int family = 0;
    if (ci == NULL || !client_key(ci->client_addr, addr, &family))
        return;
    pthread_mutex_lock(&h->cl_mu);
    adm_client *c = client_get(h, addr, family, toe == MHD_CONNECTION_NOTIFY_STARTED);
    if (c != NULL && toe == MHD_CONNECTION_NOTIFY_STARTED) {
        c->n++;
    } else if (c != NULL && c->n > 0 && --c->n == 0) {
        *c = h->clients[--h->nclients]; /* forget an address without connections */
    }
    pthread_mutex_unlock(&h->cl_mu);
}

static _Atomic unsigned conn_cap = ADM_HTTP_MAX_CONNS; /* adm_http_set_max_conns */

void adm_http_set_max_conns(unsigned n)
{
    conn_cap = n > 0 && n < ADM_HTTP_MAX_CONNS ? n : ADM_HTTP_MAX_CONNS;
}

/* ADM_HTTP_MAX_CONNS (or what the memory budget allows,
 * adm_http_set_max_conns), or fewer when this process may not open that
 * many files (a connection is one; keep some for everything else). */
static unsigned conn_limit(void)
{
    struct rlimit rl;
    rlim_t max = conn_cap;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < max + 64)
        max = rl.rlim_cur > 128 ? rl.rlim_cur - 64 : rl.rlim_cur / 2;
    return (unsigned)max;
}

/* Everything is routed through adm_api (a pure function of the request);
 * this layer only moves bytes and headers. */
/* adm_request's query lookup: a decoded query-string parameter. */
static const char *query_arg(void *ctx, const char *name)
{
    return MHD_lookup_connection_value(ctx, MHD_GET_ARGUMENT_KIND, name);
}

static enum MHD_Result adm_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version, const char *upload_data,
                                   size_t *upload_data_size, void **con_cls)
{
    adm_http *h = cls;
    adm_conn *c = *con_cls;
    if (c == NULL) {
        c = calloc(1, sizeof(*c));
        if (!c)
            return MHD_NO;
        wh_buf_init(&c->body, ADM_MAX_BODY);
        *con_cls = c;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (!cl || strtoull(cl, NULL, 10) <= ADM_MAX_BODY)
            return MHD_YES;
        c->too_large = 1; /* answer 413 now, without reading the body */
    } else if (*upload_data_size) {
        if (!c->too_large && wh_buf_append(&c->body, upload_data, *upload_data_size) != WH_OK) {
            c->too_large = 1;
            wh_buf_free(&c->body);
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    adm_request req;
    memset(&req, 0, sizeof(req));
    req.query = query_arg;
    req.query_ctx = conn;
    req.method = method;
    req.path = url;
    req.authorization = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    req.if_match = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "If-Match");
    req.content_type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    req.body = c->body.data;
    req.body_len = c->body.len;
    req.body_too_large = c->too_large;
    adm_response resp;
    adm_response_init(&resp);
    adm_api_handle(h->api, &req, &resp);
    struct MHD_Response *r = MHD_create_response_from_buffer(
        resp.body.len, resp.body.data ? resp.body.data : (void *)"", MHD_RESPMEM_MUST_COPY);
    enum MHD_Result rc = MHD_NO;
    if (r) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, resp.content_type);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        if (resp.etag[0])
            MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, resp.etag);
        if (resp.allow[0])
            MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, resp.allow);
        if (resp.challenge)
            MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                    "Bearer realm=\"walhook\"");
        rc = MHD_queue_response(conn, (unsigned)resp.status, r);
        MHD_destroy_response(r);
    }
    adm_response_free(&resp);
    return rc;
}

static char *adm_read_file(const char *path, const char *setting, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        wh_seterr(err, errlen, "setting '%s': cannot read %s", setting, path);
        return NULL;
    }
    wh_buf b;
    wh_buf_init(&b, 1 << 20);
    char chunk[4096];
    size_t n;
    int ok = 1;
    while (ok && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        ok = wh_buf_append(&b, chunk, n) == WH_OK;
    fclose(f);
    if (!ok || wh_buf_cstr(&b) != WH_OK || b.len == 0) {
        wh_buf_free(&b);
        wh_seterr(err, errlen, "setting '%s': %s is empty or larger than 1 MiB", setting, path);
        return NULL;
    }
    return b.data;
}

int adm_http_start(adm_http **out, const char *listen, adm_query *q, const wh_config *cfg,
                   char *err, size_t errlen)
{
    char host[256];
    uint16_t port;
    if (adm_parse_listen(listen, host, sizeof(host), &port, err, errlen) != WH_OK)
        return WH_ERR;
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int gai = getaddrinfo(host, NULL, &hints, &ai);
    if (gai != 0 || !ai)
        return wh_seterr(err, errlen, "admin.listen: cannot resolve '%s': %s", host,
                         gai_strerror(gai));
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    /* poll, not select: more than FD_SETSIZE connections */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL;
    if (ai->ai_family == AF_INET6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        memcpy(a6, ai->ai_addr, sizeof(*a6));
        a6->sin6_port = htons(port);
        flags |= MHD_USE_IPv6;
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        memcpy(a4, ai->ai_addr, sizeof(*a4));
        a4->sin_port = htons(port);
    }
    freeaddrinfo(ai);

    adm_http *h = calloc(1, sizeof(*h));
    if (!h)
        return wh_seterr(err, errlen, "out of memory");
    pthread_mutex_init(&h->cl_mu, NULL);
    if (adm_auth_new(&h->auth, cfg, err, errlen) != WH_OK ||
        adm_backend_open(&h->be, cfg, q, err, errlen) != WH_OK ||
        adm_api_new(&h->api, cfg, &h->be, h->auth, err, errlen) != WH_OK)
        goto error;
    /* optional TLS (libmicrohttpd with GnuTLS): admin.tls_cert + tls_key */
    struct MHD_OptionItem tls[3] = {{MHD_OPTION_END, 0, NULL}};
    if (cfg->admin_tls_cert[0]) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            wh_seterr(err, errlen, "setting 'admin.tls_cert': libmicrohttpd has no TLS");
            goto error;
        }
        if (!(h->tls_cert = adm_read_file(cfg->admin_tls_cert, "admin.tls_cert", err, errlen)) ||
            !(h->tls_key = adm_read_file(cfg->admin_tls_key, "admin.tls_key", err, errlen)))
            goto error;
        flags |= MHD_USE_TLS;
        tls[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, h->tls_cert};
        tls[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, h->tls_key};
        tls[2] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    }
    h->d = MHD_start_daemon(
        flags, port, adm_accept, h, adm_handler, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_CONNECTION_LIMIT, conn_limit(), MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)ADM_HTTP_IDLE_TIMEOUT_S, MHD_OPTION_NOTIFY_CONNECTION, adm_notify, h,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)ADM_HTTP_THREAD_STACK, MHD_OPTION_NOTIFY_COMPLETED,
        adm_completed, NULL, MHD_OPTION_ARRAY, tls, MHD_OPTION_END);
    if (!h->d) {
        wh_seterr(err, errlen, "admin.listen: cannot listen on %s (address in use%s?)", listen,
                  h->tls_cert ? ", or a bad TLS certificate/key" : "");
        goto error;
    }
    const union MHD_DaemonInfo *inf = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = inf ? inf->port : port;
    *out = h;
    return WH_OK;
error:
    adm_http_stop(h);
    return WH_ERR;
}

uint16_t adm_http_port(const adm_http *h)
{
    return h->port;
}

void adm_http_set_config(adm_http *h, const wh_config *cfg)
{
    adm_api_set_config(h->api, cfg);
}

void adm_http_stop(adm_http *h)
{
    if (!h)
        return;
    if (h->d)
        MHD_stop_daemon(h->d);
    adm_api_free(h->api);
    adm_backend_close(&h->be);
    adm_auth_free(h->auth);
    if (h->tls_key)
        explicit_bzero(h->tls_key, strlen(h->tls_key));
    free(h->tls_key);
    free(h->tls_cert);
    pthread_mutex_destroy(&h->cl_mu);
    free(h->clients);
    free(h);
}
