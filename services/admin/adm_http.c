/* adm_http: libmicrohttpd server for the admin endpoints. */
#include "adm_http.h"

#include <arpa/inet.h>
#include <inttypes.h>
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
#include "adm_bg.h"
#include "wh_buf.h"
#include "wh_metrics.h"
#include "wh_util.h"

/* Open connections of one client (an IPv4 address or an IPv6 /64; not
 * counted: 127.0.0.1, ::1). */
typedef struct adm_client {
    unsigned char addr[16]; /* IPv4 in the first 4 bytes; IPv6: the /64 */
    int family;
    unsigned n;
} adm_client;

/* One open connection (MHD's socket context), in adm_http's list. */
typedef struct adm_link {
    struct adm_link *prev, *next;
    int fd;
    int phase;         /* ADM_PH_* */
    uint64_t since_ms; /* start of the phase: the request deadline counts from here */
    int takes_body;    /* the request being received has an admin token and a body */
    int closing;       /* shut down (deadline, eviction): no longer counted as live */
    int has_client;    /* counted in the clients table under addr/family */
    unsigned char addr[16];
    int family;
} adm_link;

enum {
    ADM_PH_RECV, /* waiting for or receiving a request: the deadline applies */
    ADM_PH_BUSY, /* in adm_api_handle: never interrupted */
    ADM_PH_SEND  /* sending the answer: the deadline applies again */
};

/* What the connection guard counts (walhook_admin_http_*_total). */
enum { ADM_EV_PER_CLIENT, ADM_EV_FULL, ADM_EV_EVICTED, ADM_EV_DEADLINE, ADM_NEV };

struct adm_http {
    struct MHD_Daemon *d;
    adm_auth *auth;
    adm_backend be;
    adm_api *api;
    char *tls_cert, *tls_key; /* PEM, kept while the daemon runs */
    uint16_t port;
    pthread_mutex_t cl_mu; /* guards clients, links, nlive, the log times */
    adm_client *clients;   /* one per client with open connections */
    size_t nclients, capclients;
    adm_link links; /* list head of the open connections, oldest first */
    unsigned nlive; /* open connections not closing */
    unsigned cap;   /* connections at once (conn_limit) */
    uint64_t deadline_ms;
    _Atomic uint64_t events[ADM_NEV];
    uint64_t logged[ADM_NEV];                    /* events[] at the last log line */
    uint64_t log_at_ms[ADM_NEV];                 /* time of the last log line */
    char last_client[ADM_NEV][INET6_ADDRSTRLEN]; /* of the last event */
    pthread_t guard;
    int guard_started;
    _Atomic int stop;
};

/* A connection thread runs one handler at a time on a small stack; many
 * idle connections then cost little memory. */
#define ADM_HTTP_THREAD_STACK (512 * 1024)
/* Connections shut down but not yet closed by their thread, beyond the cap
 * (libmicrohttpd's own limit is cap + this). */
#define ADM_HTTP_CLOSING_SLACK 32
/* At most one log line per kind of refusal this often. */
#define ADM_HTTP_LOG_EVERY_MS 10000
#define ADM_HTTP_GUARD_TICK_MS 250

/* Per-request state (con_cls): the body, capped. */
typedef struct adm_conn {
    wh_buf body;
    int too_large;
    int takes_body; /* adm_api_check: buffer the body (else discarded) */
} adm_conn;

static adm_link *link_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* Caller holds cl_mu. */
static void link_phase(adm_link *l, int phase)
{
    if (l) {
        l->phase = phase;
        l->since_ms = wh_now_ms();
    }
}

/* Caller holds cl_mu. Logs how many events of kind k happened since its
 * last line, at most once per ADM_HTTP_LOG_EVERY_MS. */
static void log_events_locked(adm_http *h, int k, uint64_t now)
{
    static const char *const what[ADM_NEV] = {
        "refused: the client has %u connections open (the per-client cap)",
        "refused: %u connections open and none waiting for a request to replace",
        "closed to make room: the oldest connection still waiting for a request (%u open)",
        "closed: the request's headers and body did not arrive within the deadline (%u s)",
    };
    uint64_t n = h->events[k];
    if (n == h->logged[k] ||
        (h->log_at_ms[k] != 0 && now - h->log_at_ms[k] < ADM_HTTP_LOG_EVERY_MS))
        return;
    unsigned arg = k == ADM_EV_PER_CLIENT ? ADM_HTTP_PER_CLIENT
                   : k == ADM_EV_DEADLINE ? (unsigned)(h->deadline_ms / 1000)
                                          : h->cap;
    char msg[160];
    snprintf(msg, sizeof(msg), what[k], arg);
    wh_warn("http: %" PRIu64 " connection(s) %s; last from %s", n - h->logged[k], msg,
            h->last_client[k]);
    h->logged[k] = n;
    h->log_at_ms[k] = now;
}

/* Caller holds cl_mu. Counts an event of kind k from client and logs
 * (log_events_locked; the guard thread logs what is left later). */
static void note_locked(adm_http *h, int k, const char *client)
{
    h->events[k]++;
    wh_strlcpy(h->last_client[k], client, sizeof(h->last_client[k]));
    log_events_locked(h, k, wh_now_ms());
}

static void addr_str(const struct sockaddr *sa, char *out, size_t len)
{
    wh_strlcpy(out, "?", len);
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)len);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)len);
}

static void adm_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                          enum MHD_RequestTerminationCode toe)
{
    adm_http *h = cls;
    WH_UNUSED(toe);
    adm_conn *c = *con_cls;
    if (c) {
        wh_buf_free(&c->body);
        free(c);
        *con_cls = NULL;
    }
    adm_link *l = link_of(conn);
    pthread_mutex_lock(&h->cl_mu);
    link_phase(l, ADM_PH_RECV); /* the next request's deadline starts now */
    if (l)
        l->takes_body = 0;
    pthread_mutex_unlock(&h->cl_mu);
}

/* ---- connection limits --------------------------------------------------
 * One thread per connection (a slow /readyz never blocks /livez). A request
 * (its headers and body) must arrive within admin.request_timeout_s of the
 * connection or of the previous answer, and the answer must leave within as
 * long again, however slowly the bytes trickle (the guard thread shuts the
 * socket down); a connection silent for ADM_HTTP_IDLE_TIMEOUT_S is closed
 * sooner. Requests are authorized on their headers, so a body is read only
 * with an admin token (adm_api_check).
 *
 * At most `cap` connections at once (ADM_HTTP_MAX_CONNS, the memory budget,
 * the fd limit). When that many are open, a new connection replaces the
 * oldest one that is still waiting for (or receiving) a request without an
 * admin token, so a flood of idle or slow connections cannot keep the
 * probes out; only when every connection is busy with a request is a new
 * one refused. At most ADM_HTTP_PER_CLIENT from one client: an IPv4 address
 * or an IPv6 /64; 127.0.0.1 and ::1 (probes and tools on this host: a
 * compose healthcheck, kubectl exec, a local reverse proxy) have no
 * per-client cap, only the global one. Every refusal is counted
 * (walhook_admin_http_connections_refused_total and _closed_total) and
 * logged at most every 10 s per kind. */

/* The client's key: the IPv4 address, or the /64 of an IPv6 one; returns 0
 * for loopback 127.0.0.1 / ::1 and addresses that are not IP (not
 * counted). */
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
        /* one host usually holds a whole /64: count the prefix */
        memcpy(addr, &a->sin6_addr, 8);
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

/* Caller holds cl_mu. Shuts the connection's socket down: its thread sees
 * the end of the stream and closes it (the fd stays the connection's until
 * adm_notify's CLOSED, which takes cl_mu, so it is never another's). */
static void link_close(adm_http *h, adm_link *l)
{
    if (l->closing)
        return;
    shutdown(l->fd, SHUT_RDWR);
    l->closing = 1;
    h->nlive--;
}

/* MHD accept policy: the per-client cap, then the global one (replacing
 * the oldest connection waiting for a request). */
static enum MHD_Result adm_accept(void *cls, const struct sockaddr *sa, socklen_t len)
{
    adm_http *h = cls;
    unsigned char addr[16];
    int family = 0;
    char who[INET6_ADDRSTRLEN];
    WH_UNUSED(len);
    enum MHD_Result ok = MHD_YES;
    pthread_mutex_lock(&h->cl_mu);
    if (client_key(sa, addr, &family)) {
        const adm_client *c = client_get(h, addr, family, 0);
        if (c != NULL && c->n >= ADM_HTTP_PER_CLIENT) {
            addr_str(sa, who, sizeof(who));
            note_locked(h, ADM_EV_PER_CLIENT, who);
            ok = MHD_NO;
        }
    }
    if (ok == MHD_YES && h->nlive >= h->cap) {
        adm_link *victim = NULL;
        for (adm_link *l = h->links.next; l != &h->links; l = l->next)
            if (!l->closing && l->phase == ADM_PH_RECV && !l->takes_body &&
                (victim == NULL || l->since_ms < victim->since_ms))
                victim = l;
        addr_str(sa, who, sizeof(who));
        if (victim != NULL) {
            link_close(h, victim);
            note_locked(h, ADM_EV_EVICTED, who);
        } else {
            note_locked(h, ADM_EV_FULL, who);
            ok = MHD_NO;
        }
    }
    pthread_mutex_unlock(&h->cl_mu);
    return ok;
}

/* MHD connection notification: the connection list and the per-client
 * counts. */
static void adm_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                       enum MHD_ConnectionNotificationCode toe)
{
    adm_http *h = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        adm_link *l = calloc(1, sizeof(*l));
        const union MHD_ConnectionInfo *fi =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (l == NULL || fi == NULL) { /* not guarded; libmicrohttpd's limits still hold */
            free(l);
            *socket_context = NULL;
            return;
        }
        l->fd = fi->connect_fd;
        pthread_mutex_lock(&h->cl_mu);
        if (ci != NULL && client_key(ci->client_addr, l->addr, &l->family)) {
            adm_client *c = client_get(h, l->addr, l->family, 1);
            if (c != NULL) {
                c->n++;
                l->has_client = 1;
            }
        }
        link_phase(l, ADM_PH_RECV);
        l->prev = h->links.prev;
        l->next = &h->links;
        h->links.prev->next = l;
        h->links.prev = l;
        h->nlive++;
        pthread_mutex_unlock(&h->cl_mu);
        *socket_context = l;
        return;
    }
    adm_link *l = *socket_context;
    if (l == NULL)
        return;
    pthread_mutex_lock(&h->cl_mu);
    l->prev->next = l->next;
    l->next->prev = l->prev;
    if (!l->closing)
        h->nlive--;
    adm_client *c = l->has_client ? client_get(h, l->addr, l->family, 0) : NULL;
    if (c != NULL && c->n > 0 && --c->n == 0)
        *c = h->clients[--h->nclients]; /* forget a client without connections */
    pthread_mutex_unlock(&h->cl_mu);
    *socket_context = NULL;
    free(l);
}

/* The guard thread: shuts down connections past their request deadline. */
static void *adm_guard(void *arg)
{
    adm_http *h = arg;
    while (!h->stop) {
        wh_sleep_ms(ADM_HTTP_GUARD_TICK_MS);
        uint64_t now = wh_now_ms();
        pthread_mutex_lock(&h->cl_mu);
        for (adm_link *l = h->links.next; l != &h->links; l = l->next)
            if (!l->closing && l->phase != ADM_PH_BUSY && now - l->since_ms > h->deadline_ms) {
                char who[INET6_ADDRSTRLEN] = "127.0.0.1 or ::1";
                if (l->has_client)
                    inet_ntop(l->family, l->addr, who, sizeof(who));
                link_close(h, l);
                note_locked(h, ADM_EV_DEADLINE, who);
            }
        for (int k = 0; k < ADM_NEV; k++)
            log_events_locked(h, k, now);
        pthread_mutex_unlock(&h->cl_mu);
    }
    return NULL;
}

/* adm_api's own-metrics hook: the guard's counters. */
static int http_metrics(void *arg, wh_buf *out)
{
    adm_http *h = arg;
    int rc = WH_OK;
    rc |= wh_metric_header(out, "walhook_admin_http_connections_refused_total", "counter",
                           "connections the admin refused at accept: reason=per_client (the "
                           "client's cap) or full (every connection busy with a request)");
    rc |= wh_metric_u64(out, "walhook_admin_http_connections_refused_total",
                        "reason=\"per_client\"", h->events[ADM_EV_PER_CLIENT]);
    rc |= wh_metric_u64(out, "walhook_admin_http_connections_refused_total", "reason=\"full\"",
                        h->events[ADM_EV_FULL]);
    rc |= wh_metric_header(out, "walhook_admin_http_connections_closed_total", "counter",
                           "connections the admin closed: reason=evicted (the oldest waiting "
                           "for a request, to make room at the cap) or deadline (a request "
                           "slower than admin.request_timeout_s)");
    rc |= wh_metric_u64(out, "walhook_admin_http_connections_closed_total", "reason=\"evicted\"",
                        h->events[ADM_EV_EVICTED]);
    rc |= wh_metric_u64(out, "walhook_admin_http_connections_closed_total", "reason=\"deadline\"",
                        h->events[ADM_EV_DEADLINE]);
    pthread_mutex_lock(&h->cl_mu);
    unsigned live = h->nlive;
    pthread_mutex_unlock(&h->cl_mu);
    rc |= wh_metric_header(out, "walhook_admin_http_connections", "gauge",
                           "open HTTP connections of the admin (cap: max)");
    rc |= wh_metric_u64(out, "walhook_admin_http_connections", "kind=\"open\"", live);
    rc |= wh_metric_u64(out, "walhook_admin_http_connections", "kind=\"max\"", h->cap);
    return rc == WH_OK ? WH_OK : WH_ERR;
}

static _Atomic unsigned conn_cap = ADM_HTTP_MAX_CONNS; /* adm_http_set_max_conns */

void adm_http_set_max_conns(unsigned n)
{
    conn_cap = n > 0 && n < ADM_HTTP_MAX_CONNS ? n : ADM_HTTP_MAX_CONNS;
}

/* ADM_HTTP_MAX_CONNS (or what the memory budget allows,
 * adm_http_set_max_conns), or fewer when this process may not open that
 * many files (a connection is one, and ADM_HTTP_CLOSING_SLACK more may be
 * closing; keep some for everything else). */
static unsigned conn_limit(void)
{
    struct rlimit rl;
    rlim_t max = conn_cap;
    rlim_t reserve = 64 + ADM_HTTP_CLOSING_SLACK;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < max + reserve)
        max = rl.rlim_cur > 2 * reserve ? rl.rlim_cur - reserve : rl.rlim_cur / 4;
    return max > 0 ? (unsigned)max : 1;
}

/* Everything is routed through adm_api (a pure function of the request);
 * this layer only moves bytes and headers. */
/* adm_request's query lookup: a decoded query-string parameter. */
static const char *query_arg(void *ctx, const char *name)
{
    return MHD_lookup_connection_value(ctx, MHD_GET_ARGUMENT_KIND, name);
}

/* The request line and headers of conn as an adm_request (no body). */
static void request_of(struct MHD_Connection *conn, const char *url, const char *method,
                       adm_request *req)
{
    memset(req, 0, sizeof(*req));
    req->query = query_arg;
    req->query_ctx = conn;
    req->method = method;
    req->path = url;
    req->authorization = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    req->if_match = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "If-Match");
    req->content_type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
}

static enum MHD_Result queue(struct MHD_Connection *conn, const adm_response *resp)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        resp->body.len, resp->body.data ? resp->body.data : (void *)"", MHD_RESPMEM_MUST_COPY);
    enum MHD_Result rc = MHD_NO;
    if (r) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, resp->content_type);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        if (resp->etag[0])
            MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, resp->etag);
        if (resp->allow[0])
            MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, resp->allow);
        if (resp->challenge)
            MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                    "Bearer realm=\"walhook\"");
        /* a client without a token keeps no connection open after its 401 */
        if (resp->status == 401)
            MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
        rc = MHD_queue_response(conn, (unsigned)resp->status, r);
        MHD_destroy_response(r);
    }
    return rc;
}

static enum MHD_Result adm_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version, const char *upload_data,
                                   size_t *upload_data_size, void **con_cls)
{
    adm_http *h = cls;
    WH_UNUSED(version);
    adm_conn *c = *con_cls;
    adm_request req;
    adm_response resp;
    if (c == NULL) {
        /* the headers are in: decide now whether this request may send a
         * body (a token, its scope, the size), before any of it is read */
        c = calloc(1, sizeof(*c));
        if (!c)
            return MHD_NO;
        wh_buf_init(&c->body, ADM_MAX_BODY);
        *con_cls = c;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        request_of(conn, url, method, &req);
        req.body_too_large = cl && strtoull(cl, NULL, 10) > ADM_MAX_BODY;
        adm_response_init(&resp);
        if (!adm_api_check(h->api, &req, &resp, &c->takes_body)) {
            adm_response_free(&resp);
            if (c->takes_body) {
                adm_link *l = link_of(conn);
                pthread_mutex_lock(&h->cl_mu);
                if (l)
                    l->takes_body = 1; /* not replaced for a newcomer */
                pthread_mutex_unlock(&h->cl_mu);
            }
            return MHD_YES;
        }
        /* answered without reading the body: libmicrohttpd then closes
         * the connection instead of reading what the client sends */
        enum MHD_Result rc = queue(conn, &resp);
        adm_response_free(&resp);
        return rc;
    }
    if (*upload_data_size) {
        if (c->takes_body && !c->too_large &&
            wh_buf_append(&c->body, upload_data, *upload_data_size) != WH_OK) {
            c->too_large = 1;
            wh_buf_free(&c->body);
        }
        *upload_data_size = 0; /* a body the route does not take is dropped */
        return MHD_YES;
    }
    adm_link *l = link_of(conn);
    pthread_mutex_lock(&h->cl_mu);
    link_phase(l, ADM_PH_BUSY);
    pthread_mutex_unlock(&h->cl_mu);
    request_of(conn, url, method, &req);
    req.body = c->body.data;
    req.body_len = c->body.len;
    req.body_too_large = c->too_large;
    adm_response_init(&resp);
    adm_api_handle(h->api, &req, &resp);
    enum MHD_Result rc = queue(conn, &resp);
    adm_response_free(&resp);
    pthread_mutex_lock(&h->cl_mu);
    link_phase(l, ADM_PH_SEND);
    pthread_mutex_unlock(&h->cl_mu);
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
    h->links.prev = h->links.next = &h->links;
    h->cap = conn_limit();
    h->deadline_ms =
        (uint64_t)(cfg->admin_request_timeout_s > 0 ? cfg->admin_request_timeout_s : 30) * 1000;
    if (adm_auth_new(&h->auth, cfg, err, errlen) != WH_OK ||
        adm_backend_open(&h->be, cfg, q, err, errlen) != WH_OK ||
        adm_api_new(&h->api, cfg, &h->be, h->auth, err, errlen) != WH_OK)
        goto error;
    adm_api_set_own_metrics(h->api, http_metrics, h);
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
        MHD_OPTION_CONNECTION_LIMIT, h->cap + ADM_HTTP_CLOSING_SLACK, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)ADM_HTTP_IDLE_TIMEOUT_S, MHD_OPTION_NOTIFY_CONNECTION, adm_notify, h,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)ADM_HTTP_THREAD_STACK, MHD_OPTION_NOTIFY_COMPLETED,
        adm_completed, h, MHD_OPTION_ARRAY, tls, MHD_OPTION_END);
    if (!h->d) {
        wh_seterr(err, errlen, "admin.listen: cannot listen on %s (address in use%s?)", listen,
                  h->tls_cert ? ", or a bad TLS certificate/key" : "");
        goto error;
    }
    if (pthread_create(&h->guard, NULL, adm_guard, h) != 0) {
        wh_seterr(err, errlen, "admin: cannot start the connection guard thread");
        goto error;
    }
    h->guard_started = 1;
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
    if (h->guard_started) {
        h->stop = 1;
        pthread_join(h->guard, NULL);
    }
    if (h->d)
        MHD_stop_daemon(h->d);
    /* what a request stopped waiting for (adm_bg: a daemon's Stats, the
     * slot queries) may still use the backend: its calls are bounded, a
     * source's slot query that hangs is not (then the backend stays) */
    if (adm_bg_drain(3 * ADM_STATS_TIMEOUT_MS)) {
        adm_api_free(h->api);
        adm_backend_close(&h->be);
    } else {
        wh_warn("stopping: a slot query or a Stats query still runs; the backend is left open");
    }
    adm_auth_free(h->auth);
    if (h->tls_key)
        explicit_bzero(h->tls_key, strlen(h->tls_key));
    free(h->tls_key);
    free(h->tls_cert);
    pthread_mutex_destroy(&h->cl_mu);
    free(h->clients);
    free(h);
}
