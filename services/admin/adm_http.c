/* adm_http: libmicrohttpd server for the admin endpoints. */
#include "adm_http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

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
    adm_query *q;
    pthread_mutex_t cfg_mu;
    wh_config *cfg;
    uint16_t port;
    pthread_mutex_t cl_mu; /* guards clients */
    adm_client *clients;   /* one per address with open connections */
    size_t nclients, capclients;
};

/* A connection thread runs one handler at a time on a small stack; many
 * idle connections then cost little memory. */
#define ADM_HTTP_THREAD_STACK (512 * 1024)

/* Marker for con_cls: the request's headers were seen once. */
static int adm_seen;

static enum MHD_Result adm_reply(struct MHD_Connection *conn, unsigned status, const char *ctype,
                                 const char *body, size_t len, const char *allow)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result adm_reply_buf(struct MHD_Connection *conn, unsigned status,
                                     const char *ctype, wh_buf *b)
{
    enum MHD_Result rc = adm_reply(conn, status, ctype, b->data ? b->data : "", b->len, NULL);
    wh_buf_free(b);
    return rc;
}

static enum MHD_Result adm_json_error(struct MHD_Connection *conn, unsigned status, const char *msg,
                                      const char *url, const char *allow)
{
    wh_buf b;
    wh_buf_init(&b, 0);
    wh_buf_puts(&b, "{\"error\":");
    wh_json_str(&b, msg, strlen(msg));
    if (url) {
        wh_buf_puts(&b, ",\"path\":");
        wh_json_str(&b, url, strnlen(url, 512));
    }
    wh_buf_puts(&b, "}\n");
    enum MHD_Result rc =
        adm_reply(conn, status, "application/json", b.data ? b.data : "", b.len, allow);
    wh_buf_free(&b);
    return rc;
}

static void adm_query_or_down(adm_http *h, adm_stat st[ADM_NDAEMONS])
{
    static const char *const names[ADM_NDAEMONS] = {"store", "ingestor", "dispatcher"};
    if (h->q) {
        adm_query_all(h->q, st);
        return;
    }
    for (int i = 0; i < ADM_NDAEMONS; i++) {
        memset(&st[i], 0, sizeof(st[i]));
        wh_strlcpy(st[i].name, names[i], sizeof(st[i].name));
        wh_strlcpy(st[i].error, "no query configured", sizeof(st[i].error));
    }
}

static enum MHD_Result adm_readyz(adm_http *h, struct MHD_Connection *conn)
{
    adm_stat st[ADM_NDAEMONS];
    adm_query_or_down(h, st);
    wh_buf b;
    wh_buf_init(&b, 0);
    int ready = adm_readiness(st, ADM_NDAEMONS, &b);
    adm_stats_free(st, ADM_NDAEMONS);
    return adm_reply_buf(conn, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                         "application/json", &b);
}

static enum MHD_Result adm_metrics(adm_http *h, struct MHD_Connection *conn)
{
    adm_stat st[ADM_NDAEMONS];
    adm_query_or_down(h, st);
    wh_buf b;
    wh_buf_init(&b, 0);
    int rc = adm_metrics_render(st, ADM_NDAEMONS, &b);
    adm_stats_free(st, ADM_NDAEMONS);
    if (rc != WH_OK) {
        wh_buf_free(&b);
        return adm_json_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot render metrics", NULL,
                              NULL);
    }
    return adm_reply_buf(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", &b);
}

static enum MHD_Result adm_config(adm_http *h, struct MHD_Connection *conn)
{
    wh_buf b;
    wh_buf_init(&b, 0);
    pthread_mutex_lock(&h->cfg_mu);
    int rc = wh_config_to_json(h->cfg, &b);
    pthread_mutex_unlock(&h->cfg_mu);
    if (rc != WH_OK) {
        wh_buf_free(&b);
        return adm_json_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot render config", NULL,
                              NULL);
    }
    wh_buf_putc(&b, '\n');
    return adm_reply_buf(conn, MHD_HTTP_OK, "application/json", &b);
}

static void html_esc(wh_buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            wh_buf_puts(b, "&lt;");
            break;
        case '>':
            wh_buf_puts(b, "&gt;");
            break;
        case '&':
            wh_buf_puts(b, "&amp;");
            break;
        case '"':
            wh_buf_puts(b, "&quot;");
            break;
        default:
            wh_buf_putc(b, *s);
            break;
        }
    }
}

static enum MHD_Result adm_status_page(adm_http *h, struct MHD_Connection *conn)
{
    adm_stat st[ADM_NDAEMONS];
    adm_query_or_down(h, st);
    wh_buf tmp;
    wh_buf_init(&tmp, 0);
    int ready = adm_readiness(st, ADM_NDAEMONS, &tmp);
    wh_buf_free(&tmp);
    char tenant[WH_NAME_MAX];
    pthread_mutex_lock(&h->cfg_mu);
    wh_strlcpy(tenant, h->cfg->tenant, sizeof(tenant));
    pthread_mutex_unlock(&h->cfg_mu);

    wh_buf b;
    wh_buf_init(&b, 0);
    wh_buf_puts(&b, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>walhook</title>"
                    "</head><body>\n<h1>walhook</h1>\n<p>tenant: ");
    html_esc(&b, tenant);
    wh_buf_printf(&b, "</p>\n<p>overall: <b>%s</b></p>\n", ready ? "ready" : "NOT READY");
    wh_buf_puts(&b, "<table border=\"1\"><tr><th>daemon</th><th>up</th><th>ready</th>"
                    "<th>state</th><th>error</th></tr>\n");
    for (int i = 0; i < ADM_NDAEMONS; i++) {
        wh_buf_puts(&b, "<tr><td>");
        html_esc(&b, st[i].name);
        wh_buf_printf(&b, "</td><td>%s</td><td>%s</td><td>", st[i].up ? "yes" : "no",
                      st[i].ready ? "yes" : "no");
        html_esc(&b, st[i].state);
        wh_buf_puts(&b, "</td><td>");
        html_esc(&b, st[i].error[0] ? st[i].error : st[i].reason);
        wh_buf_puts(&b, "</td></tr>\n");
    }
    wh_buf_puts(&b, "</table>\n<p><a href=\"/metrics\">metrics</a> | <a href=\"/config\">config"
                    "</a> | <a href=\"/readyz\">readyz</a> | <a href=\"/livez\">livez</a></p>\n"
                    "</body></html>\n");
    adm_stats_free(st, ADM_NDAEMONS);
    return adm_reply_buf(conn, MHD_HTTP_OK, "text/html; charset=utf-8", &b);
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

/* ADM_HTTP_MAX_CONNS, or fewer when this process may not open that many
 * files (a connection is one; keep some for everything else). */
static unsigned conn_limit(void)
{
    struct rlimit rl;
    rlim_t max = ADM_HTTP_MAX_CONNS;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < max + 64)
        max = rl.rlim_cur > 128 ? rl.rlim_cur - 64 : rl.rlim_cur / 2;
    return (unsigned)max;
}

static enum MHD_Result adm_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version, const char *upload_data,
                                   size_t *upload_data_size, void **con_cls)
{
    adm_http *h = cls;
    if (*con_cls == NULL) {
        *con_cls = &adm_seen;
        return MHD_YES;
    }
    if (*upload_data_size) {
        *upload_data_size = 0; /* no endpoint takes a body: discard it */
        return MHD_YES;
    }
    int known = strcmp(url, "/livez") == 0 || strcmp(url, "/readyz") == 0 ||
                strcmp(url, "/metrics") == 0 || strcmp(url, "/config") == 0 ||
                strcmp(url, "/") == 0;
    if (!known)
        return adm_json_error(conn, MHD_HTTP_NOT_FOUND, "not found", url, NULL);
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return adm_json_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed", url,
                              "GET, HEAD");
    if (strcmp(url, "/livez") == 0)
        return adm_reply(conn, MHD_HTTP_OK, "text/plain; charset=utf-8", "ok\n", 3, NULL);
    if (strcmp(url, "/readyz") == 0)
        return adm_readyz(h, conn);
    if (strcmp(url, "/metrics") == 0)
        return adm_metrics(h, conn);
    if (strcmp(url, "/config") == 0)
        return adm_config(h, conn);
    return adm_status_page(h, conn);
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
    h->cfg = malloc(sizeof(*h->cfg));
    if (!h->cfg) {
        free(h);
        return wh_seterr(err, errlen, "out of memory");
    }
    memcpy(h->cfg, cfg, sizeof(*cfg));
    pthread_mutex_init(&h->cfg_mu, NULL);
    pthread_mutex_init(&h->cl_mu, NULL);
    h->q = q;
    h->d = MHD_start_daemon(
        flags, port, adm_accept, h, adm_handler, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_CONNECTION_LIMIT, conn_limit(), MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)ADM_HTTP_IDLE_TIMEOUT_S, MHD_OPTION_NOTIFY_CONNECTION, adm_notify, h,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)ADM_HTTP_THREAD_STACK, MHD_OPTION_END);
    if (!h->d) {
        pthread_mutex_destroy(&h->cl_mu);
        pthread_mutex_destroy(&h->cfg_mu);
        free(h->cfg);
        free(h);
        return wh_seterr(err, errlen, "admin.listen: cannot listen on %s (address in use?)",
                         listen);
    }
    const union MHD_DaemonInfo *inf = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = inf ? inf->port : port;
    *out = h;
    return WH_OK;
}

uint16_t adm_http_port(const adm_http *h)
{
    return h->port;
}

void adm_http_set_config(adm_http *h, const wh_config *cfg)
{
    pthread_mutex_lock(&h->cfg_mu);
    memcpy(h->cfg, cfg, sizeof(*cfg));
    pthread_mutex_unlock(&h->cfg_mu);
}

void adm_http_stop(adm_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->d);
    pthread_mutex_destroy(&h->cl_mu);
    pthread_mutex_destroy(&h->cfg_mu);
    free(h->clients);
    free(h->cfg);
    free(h);
}
