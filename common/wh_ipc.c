/* wh_ipc: NNG req/rep transport for Walhook__Request / Walhook__Reply. */
#include "wh_ipc.h"
#include "wh_notify.h"
#include "wh_pbfast.h"
#include "wh_uds.h"
#include "wh_util.h"

#include <errno.h>
#include <libgen.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* NNG 1.5.2 sometimes never finishes an aio whose operation raced with its
 * peer going away: neither its timeout nor nng_aio_cancel() completes it,
 * and the pipe's teardown then waits for it forever, and nng_close() with it
 * (upstream issue #1543). So nothing here waits on NNG without a bound:
 * every aio signals its completion through a callback to an aio_waiter that
 * is waited on with a deadline, and nng_close() runs on a helper thread.
 * What does not finish in time is abandoned (left allocated: NNG may still
 * touch it) with a warning. */
#define WH_IPC_CLOSE_MS 1000       /* nng_close() */
#define WH_IPC_STUCK_GRACE_MS 1000 /* a call beyond its own timeout */
#define WH_IPC_STOP_GRACE_MS 500   /* an operation cancelled at teardown */
/* A server worker's receive is posted again after this (an idle worker
 * wakes once a second), and its reply send gives up after WH_IPC_REPLY_MS:
 * a reply to a client that closed its socket at that moment once never
 * completed, and the control endpoint's one worker answered nobody again
 * (walhook up and the admin both saw "no reply" for a minute). */
#define WH_IPC_RECV_REPOST_MS 1000
#define WH_IPC_REPLY_MS 5000

/* Completion of one aio. Freed with its aio, or abandoned with it. */
typedef struct aio_waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    int done;          /* the aio's callback ran */
    int woken;         /* someone wants the waiter to give up soon */
} aio_waiter;

typedef struct wh_worker {
    struct wh_server *s;
    nng_ctx ctx;
    nng_aio *aio;
    aio_waiter *w;
    pthread_t thr;
    int has_ctx, has_thr;
    int abandoned; /* its aio never finished: left to NNG */
} wh_worker;

struct wh_server {
    nng_socket sock;
    wh_uds_server *direct; /* ipc:// only: the direct socket (wh_uds.h) */
    wh_worker *workers;
    int nworkers;
    atomic_int stopping;
    wh_server_fn fn;
    wh_server_wire_fn wire;
    wh_server_done_fn done;
    void *arg;
    char url[1024];
};

struct wh_client {
    nng_socket sock;
    nng_dialer dialer;
    nng_aio *aio; /* NULL: not connected (the last one was abandoned) */
    aio_waiter *w;
    int connected;      /* sock is open */
    pthread_mutex_t mu; /* aio and w against wh_client_interrupt */
    int timeout_ms;
    size_t max_msg;
    atomic_int interrupted;
    uint32_t retry_after_ms; /* of the last error reply (429 "slow down") */
    /* ipc:// endpoints: calls go over a direct socket (wh_uds.h) unless the
     * server had no room for it (then NNG, for good) */
    int direct;          /* 1: use it */
    int dfd;             /* -1: not connected (under mu) */
    int connect_wait_ms; /* -1: timeout_ms (wh_client_set_connect_wait) */
    wh_buf dbuf;         /* request, then reply bytes */
    wh_kept *kept;       /* a wh_client_call_kept in progress: its reply's bytes go there */
    char dpath[128];
    char url[1024];
};

static __thread char reply_errbuf[WH_ERRLEN];
static atomic_int direct_on = 1; /* ipc.direct (wh_ipc_direct_set) */

/* ---- TLS for tls+tcp:// endpoints (set once at start, before any thread) */

static struct {
    char cert[4096], key[4096], ca[4096], server_name[256];
} tls_paths;

int wh_ipc_tls_set(const char *cert, const char *key, const char *ca, const char *server_name)
{
    int rc = wh_strlcpy(tls_paths.cert, cert ? cert : "", sizeof(tls_paths.cert));
    rc |= wh_strlcpy(tls_paths.key, key ? key : "", sizeof(tls_paths.key));
    rc |= wh_strlcpy(tls_paths.ca, ca ? ca : "", sizeof(tls_paths.ca));
    rc |= wh_strlcpy(tls_paths.server_name, server_name ? server_name : "",
                     sizeof(tls_paths.server_name));
    return rc ? WH_ERR : WH_OK;
}

static int is_tls_url(const char *url)
{
    return strncmp(url, "tls+tcp://", 10) == 0;
}

/* A whole PEM file, NUL-terminated (mbedtls wants the terminator). */
static char *read_pem(const char *path, const char *what, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        wh_seterr(err, errlen, "setting '%s': cannot read %s: %s", what, path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    if (buf != NULL)
        n = fread(buf, 1, cap, f);
    int big = buf != NULL && n == cap && fgetc(f) != EOF;
    fclose(f);
    if (buf == NULL || big) {
        free(buf);
        wh_seterr(err, errlen, "setting '%s': %s is %s", what, path,
                  big ? "larger than 64 KiB" : "unreadable (out of memory)");
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* The host of a tls+tcp://host:port URL, as the name the server's
 * certificate must carry (ipc.tls_server_name overrides it). */
static void url_host(const char *url, char *out, size_t len)
{
    const char *h = url + 10, *end;
    if (*h == '[') {
        h++;
        end = strchr(h, ']');
    } else {
        end = strrchr(h, ':');
    }
    size_t n = end ? (size_t)(end - h) : strlen(h);
    if (n >= len)
        n = len - 1;
    memcpy(out, h, n);
    out[n] = '\0';
}

/* Mutual TLS: each side presents ipc.tls_cert and requires a peer
 * certificate signed by ipc.tls_ca. */
static int tls_config_new(nng_tls_config **out, int server, const char *url, char *err,
                          size_t errlen)
{
    if (!tls_paths.cert[0] || !tls_paths.key[0] || !tls_paths.ca[0])
        return wh_seterr(err, errlen,
                         "%s is a tls+tcp:// endpoint: set ipc.tls_cert, ipc.tls_key and "
                         "ipc.tls_ca",
                         url);
    nng_tls_config *cfg = NULL;
    char *cert = NULL, *key = NULL;
    int rv = nng_tls_config_alloc(&cfg, server ? NNG_TLS_MODE_SERVER : NNG_TLS_MODE_CLIENT);
    if (rv != 0)
        return wh_seterr(err, errlen, "%s: TLS is not available: %s", url, nng_strerror(rv));
    if (!(cert = read_pem(tls_paths.cert, "ipc.tls_cert", err, errlen)) ||
        !(key = read_pem(tls_paths.key, "ipc.tls_key", err, errlen)))
        goto error;
    if ((rv = nng_tls_config_own_cert(cfg, cert, key, NULL)) != 0) {
        wh_seterr(err, errlen, "settings 'ipc.tls_cert'/'ipc.tls_key' (%s, %s): %s", tls_paths.cert,
                  tls_paths.key, nng_strerror(rv));
        goto error;
    }
    if ((rv = nng_tls_config_ca_file(cfg, tls_paths.ca)) != 0) {
        wh_seterr(err, errlen, "setting 'ipc.tls_ca' (%s): %s", tls_paths.ca, nng_strerror(rv));
        goto error;
    }
    if ((rv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED)) != 0) {
        wh_seterr(err, errlen, "%s: TLS auth mode: %s", url, nng_strerror(rv));
        goto error;
    }
    if (!server) {
        char host[256];
        if (tls_paths.server_name[0])
            wh_strlcpy(host, tls_paths.server_name, sizeof(host));
        else
            url_host(url, host, sizeof(host));
        if ((rv = nng_tls_config_server_name(cfg, host)) != 0) {
            wh_seterr(err, errlen, "%s: TLS server name %s: %s", url, host, nng_strerror(rv));
            goto error;
        }
    }
    free(cert);
    free(key);
    *out = cfg;
    return WH_OK;
error:
    if (key != NULL) {
        memset(key, 0, strlen(key));
        free(key);
    }
    free(cert);
    nng_tls_config_free(cfg);
    return WH_ERR;
}

void wh_reply_error(Walhook__Reply *rep, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reply_errbuf, sizeof(reply_errbuf), fmt, ap);
    va_end(ap);
    rep->status = status != 0 ? status : 1;
    rep->error = reply_errbuf;
}

/* Creates the directory of an ipc:// path with mode 0700. */
static int prepare_ipc_dir(const char *url, char *err, size_t errlen)
{
    if (strncmp(url, "ipc://", 6) != 0)
        return WH_OK;
    char path[1024];
    if (wh_strlcpy(path, url + 6, sizeof(path)) != WH_OK)
        return wh_seterr(err, errlen, "ipc path too long: %s", url);
    char *dir = dirname(path);
    if (wh_mkdirs(dir, 0700, err, errlen) != WH_OK)
        return WH_ERR;
    return WH_OK;
}

static aio_waiter *waiter_new(void)
{
    aio_waiter *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    pthread_mutex_init(&w->mu, NULL);
    wh_cond_init_monotonic(&w->cv);
    return w;
}

static void waiter_free(aio_waiter *w)
{
    if (w == NULL)
        return;
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

/* The aio's completion callback (on an NNG thread). */
static void waiter_done(void *p)
{
    aio_waiter *w = p;
    pthread_mutex_lock(&w->mu);
    w->done = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Before starting an operation on the waiter's aio. */
static void waiter_arm(aio_waiter *w)
{
    pthread_mutex_lock(&w->mu);
    w->done = 0;
    w->woken = 0;
    pthread_mutex_unlock(&w->mu);
}

/* Asks a waiting thread to give up soon (it cancelled the aio first). */
static void waiter_wake(aio_waiter *w)
{
    pthread_mutex_lock(&w->mu);
    w->woken = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Waits for the armed operation: up to limit_ms (< 0: no limit), and once
 * woken (waiter_wake) or once *stop is set, up to WH_IPC_STOP_GRACE_MS more.
 * 1 when it completed, 0 when it did not (the aio must then be abandoned). */
static int waiter_wait(aio_waiter *w, int limit_ms, atomic_int *stop)
{
    struct timespec until;
    int limited = limit_ms >= 0, shortened = 0;
    if (limited)
        wh_deadline_in(&until, CLOCK_MONOTONIC, limit_ms);
    pthread_mutex_lock(&w->mu);
    while (!w->done) {
        if (!shortened && (w->woken || (stop != NULL && atomic_load(stop)))) {
            struct timespec soon;
            wh_deadline_in(&soon, CLOCK_MONOTONIC, WH_IPC_STOP_GRACE_MS);
            if (!limited || soon.tv_sec < until.tv_sec ||
                (soon.tv_sec == until.tv_sec && soon.tv_nsec < until.tv_nsec))
                until = soon;
            limited = shortened = 1;
        }
        if (!limited)
            pthread_cond_wait(&w->cv, &w->mu);
        else if (pthread_cond_timedwait(&w->cv, &w->mu, &until) == ETIMEDOUT)
            break;
    }
    int done = w->done;
    pthread_mutex_unlock(&w->mu);
    return done;
}

typedef struct close_job {
    nng_socket sock;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, abandoned;
} close_job;

static void close_job_free(close_job *j)
{
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

static void *close_thread(void *p)
{
    close_job *j = p;
    nng_close(j->sock);
    pthread_mutex_lock(&j->mu);
    j->done = 1;
    int abandoned = j->abandoned;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    if (abandoned)
        close_job_free(j);
    return NULL;
}

/* nng_close() on a helper thread, abandoned after WH_IPC_CLOSE_MS. Callers
 * stop everything of theirs that uses the socket first (aios, contexts,
 * worker threads), so nothing of ours races with the close. */
static void close_socket(nng_socket sock, const char *url)
{
    close_job *j = calloc(1, sizeof(*j));
    pthread_t t;
    pthread_attr_t at;
    if (j == NULL) {
        nng_close(sock);
        return;
    }
    j->sock = sock;
    pthread_mutex_init(&j->mu, NULL);
    wh_cond_init_monotonic(&j->cv);
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &at, close_thread, j);
    pthread_attr_destroy(&at);
    if (rc != 0) {
        close_job_free(j);
        nng_close(sock);
        return;
    }
    struct timespec until;
    wh_deadline_in(&until, CLOCK_MONOTONIC, WH_IPC_CLOSE_MS);
    pthread_mutex_lock(&j->mu);
    while (!j->done && pthread_cond_timedwait(&j->cv, &j->mu, &until) != ETIMEDOUT)
        ;
    int done = j->done;
    if (!done)
        j->abandoned = 1;
    pthread_mutex_unlock(&j->mu);
    if (done) {
        close_job_free(j);
        return;
    }
    wh_warn("ipc %s: closing the socket did not finish within %d ms (a pipe teardown is stuck "
            "in NNG, upstream issue #1543); continuing without it",
            url, WH_IPC_CLOSE_MS);
}

/* Runs one operation on the worker's aio and waits for it; 0 when it did
 * not finish although the server is stopping (the aio is then abandoned). */
static int worker_wait(wh_worker *w)
{
    if (waiter_wait(w->w, -1, &w->s->stopping))
        return 1;
    w->abandoned = 1;
    wh_warn("ipc %s: an operation did not finish at shutdown (stuck in NNG, upstream issue "
            "#1543); leaving it",
            w->s->url);
    return 0;
}

/* Runs the handler on an unpacked request (NULL: it did not unpack), or
 * answers 400. 1 when the handler ran (its `done` is due). */
static int serve_call(wh_server *s, const Walhook__Request *req, size_t inlen, Walhook__Reply *rep,
                      void **cookie)
{
    if (req == NULL) {
        wh_reply_error(rep, 400, "malformed request: not a walhook.Request message (%zu bytes)",
                       inlen);
        return 0;
    }
    if (req->body_case == WALHOOK__REQUEST__BODY__NOT_SET) {
        wh_reply_error(rep, 400, "malformed request: no request body set");
        return 0;
    }
    s->fn(s->arg, req, rep, cookie);
    return 1;
}

/* A request: an Append of the plain form decoded in place (wh_pbfast: its
 * events' bytes stay in `in`, which must outlive it; *fast = 1), anything
 * else by protobuf-c (copies; NULL when malformed). */
static Walhook__Request *req_unpack(const uint8_t *in, size_t inlen, int *fast)
{
    Walhook__Request *req = NULL;
    *fast = wh_pbfast_append(in, inlen, &req) == WH_OK;
    return *fast ? req : walhook__request__unpack(NULL, inlen, in);
}

static void req_free(Walhook__Request *req, int fast)
{
    if (fast)
        free(req);
    else if (req != NULL)
        walhook__request__free_unpacked(req, NULL);
}

/* A request on a direct connection (wh_uds_fn): its reply into out. */
static int serve_direct(void *arg, const uint8_t *in, size_t inlen, wh_buf *out, size_t *start)
{
    wh_server *s = arg;
    int fast;
    Walhook__Request *req = req_unpack(in, inlen, &fast);
    Walhook__Reply rep = WALHOOK__REPLY__INIT;
    void *cookie = NULL;
    int called = serve_call(s, req, inlen, &rep, &cookie);
    int rc = WH_OK;
    /* a reply the handler holds in wire form goes as it is (no copy) */
    if (!called || s->wire == NULL || s->wire(s->arg, &rep, cookie, out, start) != 1) {
        *start = 0;
        wh_buf_reset(out);
        size_t sz = walhook__reply__get_packed_size(&rep);
        rc = wh_buf_reserve(out, sz);
        if (rc == WH_OK)
            out->len = walhook__reply__pack(&rep, (uint8_t *)out->data);
    }
    if (called && s->done != NULL)
        s->done(s->arg, &rep, cookie);
    req_free(req, fast);
    return rc;
}

static void *server_worker(void *p)
{
    wh_worker *w = p;
    wh_server *s = w->s;
    nng_ctx ctx = w->ctx;
    nng_aio *aio = w->aio;
    while (!atomic_load(&s->stopping)) {
        waiter_arm(w->w);
        nng_aio_set_timeout(aio, WH_IPC_RECV_REPOST_MS);
        nng_ctx_recv(ctx, aio);
        if (!worker_wait(w))
            break;
        int rv = nng_aio_result(aio);
        if (rv == NNG_ECLOSED || rv == NNG_ECANCELED || atomic_load(&s->stopping)) {
            if (rv == 0)
                nng_msg_free(nng_aio_get_msg(aio));
            break;
        }
        if (rv != 0)
            continue;
        nng_msg *in = nng_aio_get_msg(aio);
        nng_aio_set_msg(aio, NULL);
        size_t inlen = nng_msg_len(in);
        int fast;
        Walhook__Request *req = req_unpack(nng_msg_body(in), inlen, &fast);
        /* protobuf-c copied every field: free the raw bytes before the
         * handler runs, so a large batch is not held twice (a fast-path
         * Append points into them: freed after its handler) */
        if (!fast) {
            nng_msg_free(in);
            in = NULL;
        }
        Walhook__Reply rep = WALHOOK__REPLY__INIT;
        void *cookie = NULL;
        int called = serve_call(s, req, inlen, &rep, &cookie);
        size_t sz = walhook__reply__get_packed_size(&rep);
        nng_msg *out = NULL;
        if (nng_msg_alloc(&out, sz) == 0)
            walhook__reply__pack(&rep, nng_msg_body(out));
        if (called && s->done != NULL)
            s->done(s->arg, &rep, cookie);
        req_free(req, fast);
        if (in != NULL)
            nng_msg_free(in);
        if (out == NULL)
            continue;
        /* Stopping: no new send races with the teardown. The client resends
         * to the next instance; every handler is idempotent. */
        if (atomic_load(&s->stopping)) {
            nng_msg_free(out);
            break;
        }
        nng_aio_set_msg(aio, out);
        waiter_arm(w->w);
        nng_aio_set_timeout(aio, WH_IPC_REPLY_MS);
        nng_ctx_send(ctx, aio);
        if (!worker_wait(w))
            break; /* the message stays with the abandoned aio */
        rv = nng_aio_result(aio);
        if (rv != 0) {
            nng_msg_free(out);
            nng_aio_set_msg(aio, NULL);
        }
        if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
            break;
    }
    return NULL;
}

/* Teardown in an order that leaves nothing of ours in flight when the socket
 * closes: stop flag; cancel every worker's aio and wake its waiter; close
 * the contexts (an operation started anyway fails with NNG_ECLOSED); join
 * the workers (each returns once its handler did; an NNG operation that
 * does not finish within WH_IPC_STOP_GRACE_MS of the stop is abandoned);
 * free the aios; only then close the socket (close_socket). */
static void server_teardown(wh_server *s)
{
    atomic_store(&s->stopping, 1);
    wh_uds_stop(s->direct);
    s->direct = NULL;
    for (int i = 0; i < s->nworkers; i++) {
        if (s->workers[i].aio != NULL)
            nng_aio_cancel(s->workers[i].aio);
        if (s->workers[i].w != NULL)
            waiter_wake(s->workers[i].w);
    }
    for (int i = 0; i < s->nworkers; i++)
        if (s->workers[i].has_ctx)
            nng_ctx_close(s->workers[i].ctx);
    for (int i = 0; i < s->nworkers; i++) {
        wh_worker *w = &s->workers[i];
        if (w->has_thr)
            pthread_join(w->thr, NULL);
        if (w->abandoned)
            continue; /* NNG may still complete it: aio and waiter stay */
        if (w->aio != NULL)
            nng_aio_free(w->aio);
        waiter_free(w->w);
    }
    close_socket(s->sock, s->url);
    free(s->workers);
    free(s);
}

/* Dials url from sock without waiting for the peer (NNG redials by
 * itself); tls+tcp:// with the client side of the TLS configuration, set
 * before the dialer starts. */
static int dial_on(nng_socket sock, const char *url, nng_dialer *out, char *err, size_t errlen)
{
    nng_dialer d;
    int rv = nng_dialer_create(&d, sock, url);
    if (rv == 0 && is_tls_url(url)) {
        nng_tls_config *tc = NULL;
        if (tls_config_new(&tc, 0, url, err, errlen) != WH_OK)
            return WH_ERR;
        rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, tc);
        nng_tls_config_free(tc); /* the dialer holds its own reference */
    }
    if (rv == 0)
        rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK);
    if (rv != 0)
        return wh_seterr(err, errlen, "cannot dial %s: %s", url, nng_strerror(rv));
    if (out != NULL)
        *out = d;
    return WH_OK;
}

/* Listens on url with sock: ipc:// files 0600, tls+tcp:// with the server
 * side of the TLS configuration. */
static int listen_on(nng_socket sock, const char *url, char *err, size_t errlen)
{
    nng_listener l;
    int rv;
    if ((rv = nng_listener_create(&l, sock, url)) != 0)
        return wh_seterr(err, errlen, "cannot listen on %s: %s", url, nng_strerror(rv));
    if (strncmp(url, "ipc://", 6) == 0)
        nng_listener_set_int(l, NNG_OPT_IPC_PERMISSIONS, 0600);
    if (is_tls_url(url)) {
        nng_tls_config *tc = NULL;
        if (tls_config_new(&tc, 1, url, err, errlen) != WH_OK)
            return WH_ERR;
        rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, tc);
        nng_tls_config_free(tc); /* the listener holds its own reference */
        if (rv != 0)
            return wh_seterr(err, errlen, "%s: cannot apply the TLS configuration: %s", url,
                             nng_strerror(rv));
    }
    if ((rv = nng_listener_start(l, 0)) != 0)
        return wh_seterr(err, errlen, "cannot listen on %s: %s%s", url, nng_strerror(rv),
                         rv == NNG_EADDRINUSE ? " (is another instance running?)" : "");
    return WH_OK;
}

int wh_server_start(wh_server **out, const char *url, int nworkers, size_t max_msg, wh_server_fn fn,
                    wh_server_done_fn done, void *arg, char *err, size_t errlen)
{
    return wh_server_start_wire(out, url, nworkers, max_msg, fn, NULL, done, arg, err, errlen);
}

int wh_server_start_wire(wh_server **out, const char *url, int nworkers, size_t max_msg,
                         wh_server_fn fn, wh_server_wire_fn wire, wh_server_done_fn done, void *arg,
                         char *err, size_t errlen)
{
    wh_server *s = calloc(1, sizeof(*s));
    int rv;
    if (s == NULL)
        return wh_seterr(err, errlen, "out of memory");
    s->fn = fn;
    s->wire = wire;
    s->done = done;
    s->arg = arg;
    wh_strlcpy(s->url, url, sizeof(s->url));
    if (nworkers < 1)
        nworkers = 1;
    if (prepare_ipc_dir(url, err, errlen) != WH_OK)
        goto error_nosock;
    if ((rv = nng_rep0_open(&s->sock)) != 0) {
        wh_seterr(err, errlen, "cannot open rep socket: %s", nng_strerror(rv));
        goto error_nosock;
    }
    s->workers = calloc((size_t)nworkers, sizeof(wh_worker));
    if (s->workers == NULL) {
        nng_close(s->sock);
        wh_seterr(err, errlen, "out of memory");
        goto error_nosock;
    }
    s->nworkers = nworkers;
    /* Every worker's context and aio exist before anything is received, so
     * that the teardown can stop them whatever the workers are doing. */
    for (int i = 0; i < nworkers; i++) {
        wh_worker *w = &s->workers[i];
        w->s = s;
        if ((w->w = waiter_new()) == NULL) {
            wh_seterr(err, errlen, "out of memory");
            goto error;
        }
        if ((rv = nng_ctx_open(&w->ctx, s->sock)) == 0) {
            w->has_ctx = 1;
            rv = nng_aio_alloc(&w->aio, waiter_done, w->w);
        }
        if (rv != 0) {
            wh_seterr(err, errlen, "ipc %s: cannot open a context: %s", url, nng_strerror(rv));
            goto error;
        }
    }
    nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, max_msg);
    if (listen_on(s->sock, url, err, errlen) != WH_OK)
        goto error;
    /* after NNG's listener: that one refuses a second instance */
    char dpath[128];
    if (wh_uds_path(url, dpath, sizeof(dpath)) == WH_OK &&
        wh_uds_listen(&s->direct, dpath, max_msg, WH_IPC_DIRECT_MAX, nworkers, serve_direct, s, err,
                      errlen) != WH_OK)
        goto error;
    for (int i = 0; i < nworkers; i++) {
        if (pthread_create(&s->workers[i].thr, NULL, server_worker, &s->workers[i]) != 0) {
            wh_seterr(err, errlen, "cannot start worker thread: %s", strerror(errno));
            goto error;
        }
        s->workers[i].has_thr = 1;
    }
    *out = s;
    return WH_OK;
error:
    server_teardown(s);
    return WH_ERR;
error_nosock:
    free(s);
    return WH_ERR;
}

void wh_server_stop(wh_server *s)
{
    if (s == NULL)
        return;
    server_teardown(s);
}

/* Opens the client's socket, dialer and aio. */
static int client_connect(wh_client *c, char *err, size_t errlen)
{
    nng_socket sock;
    nng_dialer dialer;
    nng_aio *aio = NULL;
    int rv;
    aio_waiter *w = waiter_new();
    if (w == NULL)
        return wh_seterr(err, errlen, "out of memory");
    if ((rv = nng_aio_alloc(&aio, waiter_done, w)) != 0) {
        waiter_free(w);
        return wh_seterr(err, errlen, "cannot allocate an aio: %s", nng_strerror(rv));
    }
    if ((rv = nng_req0_open(&sock)) != 0) {
        nng_aio_free(aio);
        waiter_free(w);
        return wh_seterr(err, errlen, "cannot open req socket: %s", nng_strerror(rv));
    }
    nng_socket_set_size(sock, NNG_OPT_RECVMAXSZ, c->max_msg);
    nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, c->timeout_ms);
    nng_socket_set_ms(sock, NNG_OPT_SENDTIMEO, c->timeout_ms);
    /* Never resend before the caller's own timeout: a resent long poll or a
     * large batch would only occupy another worker. NNG still resends a
     * request whose pipe closed (peer restarted). */
    nng_socket_set_ms(sock, NNG_OPT_REQ_RESENDTIME, c->timeout_ms + 1000);
    nng_socket_set_ms(sock, NNG_OPT_RECONNMINT, 20);
    nng_socket_set_ms(sock, NNG_OPT_RECONNMAXT, 500);
    if (dial_on(sock, c->url, &dialer, err, errlen) != WH_OK) {
        nng_close(sock);
        nng_aio_free(aio);
        waiter_free(w);
        return WH_ERR;
    }
    pthread_mutex_lock(&c->mu);
    c->sock = sock;
    c->dialer = dialer;
    c->aio = aio;
    c->w = w;
    c->connected = 1;
    pthread_mutex_unlock(&c->mu);
    return WH_OK;
}

/* The call's aio did not finish: leave it (and its waiter and message) to
 * NNG, close the socket (bounded) and connect anew. */
static void client_abandon(wh_client *c, const char *what)
{
    wh_warn("ipc %s: %s did not finish within the call's timeout (stuck in NNG, upstream issue "
            "#1543); reconnecting",
            c->url, what);
    pthread_mutex_lock(&c->mu);
    nng_socket old = c->sock;
    c->aio = NULL;
    c->w = NULL;
    c->connected = 0;
    pthread_mutex_unlock(&c->mu);
    close_socket(old, c->url);
    char err[WH_ERRLEN];
    if (client_connect(c, err, sizeof(err)) != WH_OK)
        wh_warn("ipc %s: %s", c->url, err); /* the next call tries again */
}

/* No peer took a request within the call's timeout: close the socket and
 * dial afresh on the next call. NNG's dialer redials by itself, but a store
 * SIGKILLed many times in a row once left a client whose dialer never
 * connected again (its ingestor retried for over a minute while other
 * clients reached the new store at once). The call's aio is idle here. */
static void client_redial(wh_client *c)
{
    wh_info("ipc %s: no peer within the timeout; dialing again", c->url);
    pthread_mutex_lock(&c->mu);
    nng_socket old = c->sock;
    int was = c->connected;
    nng_aio *aio = c->aio;
    aio_waiter *w = c->w;
    c->aio = NULL;
    c->w = NULL;
    c->connected = 0;
    pthread_mutex_unlock(&c->mu);
    nng_aio_stop(aio);
    nng_aio_free(aio);
    waiter_free(w);
    if (was)
        close_socket(old, c->url);
}

int wh_client_open(wh_client **out, const char *url, int timeout_ms, size_t max_msg, char *err,
                   size_t errlen)
{
    wh_client *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return wh_seterr(err, errlen, "out of memory");
    c->timeout_ms = timeout_ms;
    c->max_msg = max_msg;
    c->dfd = -1;
    c->connect_wait_ms = -1;
    c->direct = atomic_load(&direct_on) && wh_uds_path(url, c->dpath, sizeof(c->dpath)) == WH_OK;
    wh_buf_init(&c->dbuf, 0);
    pthread_mutex_init(&c->mu, NULL);
    /* a direct client dials NNG only if the server has no room for it
     * (an NNG socket closed while its dial completes leaks in NNG 1.5.2) */
    int rc = wh_strlcpy(c->url, url, sizeof(c->url)) != WH_OK
                 ? wh_seterr(err, errlen, "endpoint too long: %.100s...", url)
             : c->direct ? WH_OK
                         : client_connect(c, err, errlen);
    if (rc != WH_OK) {
        pthread_mutex_destroy(&c->mu);
        free(c);
        return WH_ERR;
    }
    *out = c;
    return WH_OK;
}

int wh_client_call(wh_client *c, const Walhook__Request *req, Walhook__Reply **rep, char *err,
                   size_t errlen)
{
    int status;
    return wh_client_call_status(c, req, rep, &status, err, errlen);
}

struct wh_kept {
    Walhook__Reply *rep;
    int fast;     /* rep is wh_pbfast_read_reply's (free()), else protobuf-c's */
    char *buf;    /* the reply's bytes when fast, read over the direct socket */
    nng_msg *msg; /* ... or received over NNG */
};

Walhook__Reply *wh_kept_reply(const wh_kept *k)
{
    return k->rep;
}

void wh_kept_free(wh_kept *k)
{
    if (k == NULL)
        return;
    if (k->fast)
        free(k->rep);
    else if (k->rep != NULL)
        walhook__reply__free_unpacked(k->rep, NULL);
    free(k->buf);
    if (k->msg != NULL)
        nng_msg_free(k->msg);
    free(k);
}

/* The reply bytes of a call: WH_OK with *rep, or WH_ERR (status, err). In
 * a wh_client_call_kept, a Read's reply is decoded in place when it can be
 * (c->kept->fast: the caller then hands the bytes to c->kept). */
static int take_reply(wh_client *c, const uint8_t *data, size_t len, Walhook__Reply **rep,
                      int *status, char *err, size_t errlen)
{
    if (c->kept != NULL && wh_pbfast_read_reply(data, len, rep) == WH_OK) {
        c->kept->fast = 1;
        c->retry_after_ms = (*rep)->retry_after_ms;
        return WH_OK;
    }
    Walhook__Reply *r = walhook__reply__unpack(NULL, len, data);
    if (r == NULL)
        return wh_seterr(err, errlen, "%s: malformed reply (%zu bytes)", c->url, len);
    c->retry_after_ms = r->retry_after_ms;
    if (r->status != 0) {
        *status = r->status;
        wh_seterr(err, errlen, "%s: error %d: %s", c->url, r->status,
                  r->error ? r->error : "(no message)");
        walhook__reply__free_unpacked(r, NULL);
        return WH_ERR;
    }
    *rep = r;
    return WH_OK;
}

/* A direct socket's descriptor, shared with wh_client_interrupt or
 * wh_sub_interrupt under mu: set once connected (shut down at once when
 * interrupted meanwhile), closed after a failure. */
static void dfd_set(pthread_mutex_t *mu, int *dfd, int fd, atomic_int *interrupted)
{
    pthread_mutex_lock(mu);
    *dfd = fd;
    if (atomic_load(interrupted))
        shutdown(fd, SHUT_RDWR);
    pthread_mutex_unlock(mu);
}

static void dfd_close(pthread_mutex_t *mu, int *dfd)
{
    pthread_mutex_lock(mu);
    if (*dfd >= 0)
        close(*dfd);
    *dfd = -1;
    pthread_mutex_unlock(mu);
}

#define WH_IPC_USE_NNG 1 /* direct_call: the server has no room, call over NNG */
#define WH_IPC_STALE 2   /* direct_exchange: the kept connection was dead, send again */

/* A call over the direct socket (wh_uds), connected on first use and after
 * any failure. WH_OK, WH_ERR, or WH_IPC_USE_NNG. */
/* The direct socket, connected if it is not: WH_OK (*fd), WH_ERR, or
 * WH_IPC_USE_NNG. */
static int direct_fd(wh_client *c, int timeout, int *fdp, int *reused, char *err, size_t errlen)
{
    char e[WH_ERRLEN];
    pthread_mutex_lock(&c->mu);
    int fd = c->dfd;
    pthread_mutex_unlock(&c->mu);
    *reused = fd >= 0;
    if (fd < 0) {
        int refused = 0;
        int wait =
            c->connect_wait_ms >= 0 && c->connect_wait_ms < timeout ? c->connect_wait_ms : timeout;
        if (wh_uds_connect(&fd, c->dpath, wait, &refused, e, sizeof(e)) != WH_OK) {
            if (refused) {
                wh_info("ipc %s: %s; calls go over NNG", c->url, e);
                c->direct = 0;
                return WH_IPC_USE_NNG;
            }
            return wh_seterr(err, errlen, "%s: %s", c->url, e);
        }
        dfd_set(&c->mu, &c->dfd, fd, &c->interrupted);
    }
    *fdp = fd;
    return WH_OK;
}

/* The direct connection for a request of sz bytes: its fd, or the status of
 * direct_fd (WH_IPC_USE_NNG: go by NNG), or an error for a request over
 * ipc.max_msg_bytes. */
static int direct_open(wh_client *c, size_t sz, int timeout, int *fd, int *reused, char *err,
                       size_t errlen)
{
    int rc = direct_fd(c, timeout, fd, reused, err, errlen);
    if (rc != WH_OK)
        return rc;
    if (sz > c->max_msg)
        return wh_seterr(err, errlen,
                         "%s: request of %zu bytes is larger than ipc.max_msg_bytes (%zu)", c->url,
                         sz, c->max_msg);
    return WH_OK;
}

/* Sends a framed request (its pieces) on the direct connection fd and takes
 * the reply, read into c->dbuf; a failed exchange drops the connection.
 * WH_IPC_STALE (nothing else done) when reused and the peer had closed it
 * before the request was written whole (a server that stopped or
 * restarted since the last call): no server acted on it, the caller sends
 * it again on a new connection. */
static int direct_exchange(wh_client *c, int fd, int reused, const struct iovec *iov, int iovcnt,
                           Walhook__Reply **rep, int *status, int timeout, char *err, size_t errlen)
{
    char e[WH_ERRLEN];
    int send_errno = 0;
    if (wh_uds_callv_sent(fd, iov, iovcnt, &c->dbuf, c->max_msg, timeout, &send_errno, e,
                          sizeof(e)) != WH_OK) {
        dfd_close(&c->mu, &c->dfd);
        if (reused && (send_errno == EPIPE || send_errno == ECONNRESET))
            return WH_IPC_STALE;
        return wh_seterr(err, errlen, "%s: %s", c->url, e);
    }
    int rc = take_reply(c, (const uint8_t *)c->dbuf.data, c->dbuf.len, rep, status, err, errlen);
    if (rc == WH_OK && c->kept != NULL && c->kept->fast) {
        /* the events point into these bytes: the next call reads into new ones */
        c->kept->buf = c->dbuf.data;
        c->dbuf.data = NULL;
        c->dbuf.len = c->dbuf.cap = 0;
    }
    if (c->dbuf.cap > (4u << 20))
        wh_buf_free(&c->dbuf);
    return rc;
}

static int direct_call(wh_client *c, const Walhook__Request *req, Walhook__Reply **rep, int *status,
                       int timeout, char *err, size_t errlen)
{
    size_t sz = walhook__request__get_packed_size(req);
    for (int attempt = 0;; attempt++) {
        int fd = -1, reused = 0;
        int rc = direct_open(c, sz, timeout, &fd, &reused, err, errlen);
        if (rc != WH_OK)
            return rc;
        wh_buf_reset(&c->dbuf);
        if (wh_buf_reserve(&c->dbuf, sz) != WH_OK)
            return wh_seterr(err, errlen, "cannot allocate %zu byte request", sz);
        walhook__request__pack(req, (uint8_t *)c->dbuf.data);
        /* the reply is read into the same buffer once the request is sent */
        struct iovec v = {.iov_base = c->dbuf.data, .iov_len = sz};
        rc = direct_exchange(c, fd, reused && attempt == 0, &v, 1, rep, status, timeout, err,
                             errlen);
        if (rc != WH_IPC_STALE)
            return rc;
    }
}

/* direct_call of a request already packed, in pieces (wh_client_call_iov). */
static int direct_callv(wh_client *c, const struct iovec *iov, int iovcnt, size_t sz,
                        Walhook__Reply **rep, int *status, int timeout, char *err, size_t errlen)
{
    for (int attempt = 0;; attempt++) {
        int fd = -1, reused = 0;
        int rc = direct_open(c, sz, timeout, &fd, &reused, err, errlen);
        if (rc != WH_OK)
            return rc;
        rc = direct_exchange(c, fd, reused && attempt == 0, iov, iovcnt, rep, status, timeout, err,
                             errlen);
        if (rc != WH_IPC_STALE)
            return rc;
    }
}

static int nng_call(wh_client *c, nng_msg *m, Walhook__Reply **rep, int *status, char *err,
                    size_t errlen);

void wh_client_set_connect_wait(wh_client *c, int ms)
{
    c->connect_wait_ms = ms < 0 ? -1 : ms;
}

/* A direct call's timeout: ipc.timeout_ms, at most 1 s once interrupted
 * (stopping). */
static int direct_timeout(wh_client *c)
{
    int timeout = c->timeout_ms;
    if (atomic_load(&c->interrupted) && timeout > 1000)
        timeout = 1000;
    return timeout;
}

int wh_client_call_status(wh_client *c, const Walhook__Request *req, Walhook__Reply **rep,
                          int *status, char *err, size_t errlen)
{
    *status = 0;
    *rep = NULL;
    if (c->direct) {
        int rc = direct_call(c, req, rep, status, direct_timeout(c), err, errlen);
        if (rc != WH_IPC_USE_NNG)
            return rc;
    }
    size_t sz = walhook__request__get_packed_size(req);
    nng_msg *m = NULL;
    int rv;
    *rep = NULL;
    if (c->aio == NULL && client_connect(c, err, errlen) != WH_OK)
        return WH_ERR;
    if ((rv = nng_msg_alloc(&m, sz)) != 0)
        return wh_seterr(err, errlen, "cannot allocate %zu byte request: %s", sz, nng_strerror(rv));
    walhook__request__pack(req, nng_msg_body(m));
    return nng_call(c, m, rep, status, err, errlen);
}

int wh_client_call_kept(wh_client *c, const Walhook__Request *req, wh_kept **out, int *status,
                        char *err, size_t errlen)
{
    *out = NULL;
    *status = 0;
    wh_kept *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return wh_seterr(err, errlen, "out of memory");
    c->kept = k;
    int rc = wh_client_call_status(c, req, &k->rep, status, err, errlen);
    c->kept = NULL;
    if (rc != WH_OK) {
        wh_kept_free(k);
        return rc;
    }
    *out = k;
    return WH_OK;
}

int wh_client_call_iov(wh_client *c, const struct iovec *iov, int iovcnt, Walhook__Reply **rep,
                       int *status, char *err, size_t errlen)
{
    *status = 0;
    *rep = NULL;
    size_t sz = 0;
    for (int i = 0; i < iovcnt; i++)
        sz += iov[i].iov_len;
    if (c->direct) {
        int rc = direct_callv(c, iov, iovcnt, sz, rep, status, direct_timeout(c), err, errlen);
        if (rc != WH_IPC_USE_NNG)
            return rc;
    }
    nng_msg *m = NULL;
    int rv;
    if (c->aio == NULL && client_connect(c, err, errlen) != WH_OK)
        return WH_ERR;
    if ((rv = nng_msg_alloc(&m, sz)) != 0)
        return wh_seterr(err, errlen, "cannot allocate %zu byte request: %s", sz, nng_strerror(rv));
    uint8_t *body = nng_msg_body(m);
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > 0)
            memcpy(body, iov[i].iov_base, iov[i].iov_len);
        body += iov[i].iov_len;
    }
    return nng_call(c, m, rep, status, err, errlen);
}

/* Sends the packed request m over NNG (taking it) and waits for the reply. */
static int nng_call(wh_client *c, nng_msg *m, Walhook__Reply **rep, int *status, char *err,
                    size_t errlen)
{
    int rv;
    /* after wh_client_interrupt() calls are short: a stopping process must
     * not wait a full timeout for a peer that is gone */
    int timeout = c->timeout_ms;
    if (atomic_load(&c->interrupted) && timeout > 1000)
        timeout = 1000;
    int limit = timeout + WH_IPC_STUCK_GRACE_MS;
    nng_aio_set_timeout(c->aio, timeout);
    nng_aio_set_msg(c->aio, m);
    waiter_arm(c->w);
    nng_send_aio(c->sock, c->aio);
    if (!waiter_wait(c->w, limit, NULL)) {
        client_abandon(c, "a send");
        return wh_seterr(err, errlen, "%s: send failed: stuck in NNG; reconnected", c->url);
    }
    if ((rv = nng_aio_result(c->aio)) != 0) {
        nng_msg_free(nng_aio_get_msg(c->aio));
        nng_aio_set_msg(c->aio, NULL);
        wh_seterr(err, errlen, "%s: send failed: %s", c->url,
                  rv == NNG_ETIMEDOUT ? "no peer within the timeout" : nng_strerror(rv));
        if (rv == NNG_ETIMEDOUT)
            client_redial(c);
        return WH_ERR;
    }
    waiter_arm(c->w);
    nng_recv_aio(c->sock, c->aio);
    if (!waiter_wait(c->w, limit, NULL)) {
        client_abandon(c, "a receive");
        return wh_seterr(err, errlen, "%s: no reply: stuck in NNG; reconnected", c->url);
    }
    if ((rv = nng_aio_result(c->aio)) != 0) {
        if (rv == NNG_ETIMEDOUT)
            return wh_seterr(err, errlen, "%s: no reply within %d ms", c->url, timeout);
        return wh_seterr(err, errlen, "%s: receive failed: %s", c->url, nng_strerror(rv));
    }
    m = nng_aio_get_msg(c->aio);
    nng_aio_set_msg(c->aio, NULL);
    int rc = take_reply(c, nng_msg_body(m), nng_msg_len(m), rep, status, err, errlen);
    if (rc == WH_OK && c->kept != NULL && c->kept->fast)
        c->kept->msg = m; /* the events point into it */
    else
        nng_msg_free(m);
    return rc;
}

void wh_ipc_direct_set(int on)
{
    atomic_store(&direct_on, on != 0);
}

int wh_client_is_direct(const wh_client *c)
{
    return c->direct;
}

uint32_t wh_client_retry_after_ms(const wh_client *c)
{
    return c->retry_after_ms;
}

int wh_client_retry_wait_ms(const wh_client *c, int fallback_ms)
{
    uint32_t ra = c->retry_after_ms;
    return ra == 0 ? fallback_ms : (ra > 10000 ? 10000 : (int)ra);
}

void wh_client_interrupt(wh_client *c)
{
    if (c == NULL)
        return;
    atomic_store(&c->interrupted, 1);
    pthread_mutex_lock(&c->mu);
    if (c->dfd >= 0)
        shutdown(c->dfd, SHUT_RDWR); /* a direct call in progress fails now */
    if (c->aio != NULL)
        nng_aio_cancel(c->aio);
    if (c->w != NULL)
        waiter_wake(c->w); /* an aio the cancel does not finish is abandoned soon */
    pthread_mutex_unlock(&c->mu);
}

void wh_client_close(wh_client *c)
{
    if (c == NULL)
        return;
    /* the call's aio first (idle: a call that did not finish was abandoned
     * and replaced), then the socket, bounded (close_socket) */
    if (c->aio != NULL) {
        nng_aio_stop(c->aio);
        nng_aio_free(c->aio);
    }
    waiter_free(c->w);
    if (c->connected)
        close_socket(c->sock, c->url);
    if (c->dfd >= 0)
        close(c->dfd);
    wh_buf_free(&c->dbuf);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* ---- durability notifications (pub/sub) ---- */

/* ipc:// endpoints also publish over a direct socket (wh_uds_pub, at
 * PATH.direct); subscribers use it, and NNG only when the publisher has
 * no room (WH_IPC_DIRECT_MAX). NNG's copy of a message is made only while
 * an NNG subscriber is connected. */
struct wh_pub {
    nng_socket sock;
    wh_uds_pub *direct;
    atomic_int pipes; /* NNG subscribers */
    char url[1024];
};

struct wh_sub {
    nng_socket sock;
    int has_sock; /* NNG: opened when the direct socket is refused */
    nng_aio *aio;
    aio_waiter *w;
    atomic_int pipes; /* connected publishers (NNG) */
    atomic_int interrupted;
    int abandoned;
    int direct;          /* 1: the direct socket */
    int dfd;             /* -1: not connected (under mu) */
    uint64_t dgen;       /* connects so far (under mu) */
    wh_uds_rd rd;        /* the direct socket's buffered reader (its reader thread's) */
    uint64_t rd_gen;     /* the connection (dgen) rd's bytes came from */
    pthread_mutex_t mu;  /* dfd against wh_sub_interrupt */
    pthread_mutex_t cmu; /* one connect attempt at a time */
    char dpath[128];
    char url[1024];
};

static void pipe_count_cb(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
    WH_UNUSED(pipe);
    atomic_int *n = arg;
    if (ev == NNG_PIPE_EV_ADD_POST)
        atomic_fetch_add(n, 1);
    else if (ev == NNG_PIPE_EV_REM_POST)
        atomic_fetch_sub(n, 1);
}

int wh_notify_url(const char *store_url, const char *setting, char *out, size_t len, char *err,
                  size_t errlen)
{
    if (setting != NULL && setting[0] != '\0') {
        if (wh_strlcpy(out, setting, len) != WH_OK)
            return wh_seterr(err, errlen, "store.notify_endpoint %s: too long", setting);
        return WH_OK;
    }
    if (strncmp(store_url, "ipc://", 6) == 0) {
        if ((size_t)snprintf(out, len, "%s.notify", store_url) >= len)
            return wh_seterr(err, errlen, "store.endpoint %s: too long for its notify endpoint",
                             store_url);
        return WH_OK;
    }
    return wh_seterr(err, errlen,
                     "store.endpoint %s is not ipc:// and store.notify_endpoint is not set",
                     store_url);
}

int wh_pub_open(wh_pub **out, const char *url, char *err, size_t errlen)
{
    wh_pub *p = calloc(1, sizeof(*p));
    int rv;
    if (p == NULL)
        return wh_seterr(err, errlen, "out of memory");
    wh_strlcpy(p->url, url, sizeof(p->url));
    if (prepare_ipc_dir(url, err, errlen) != WH_OK) {
        free(p);
        return WH_ERR;
    }
    if ((rv = nng_pub0_open(&p->sock)) != 0) {
        free(p);
        return wh_seterr(err, errlen, "cannot open pub socket: %s", nng_strerror(rv));
    }
    nng_pipe_notify(p->sock, NNG_PIPE_EV_ADD_POST, pipe_count_cb, &p->pipes);
    nng_pipe_notify(p->sock, NNG_PIPE_EV_REM_POST, pipe_count_cb, &p->pipes);
    if (listen_on(p->sock, url, err, errlen) != WH_OK)
        goto error;
    char dpath[128];
    if (wh_uds_path(url, dpath, sizeof(dpath)) == WH_OK &&
        wh_uds_pub_listen(&p->direct, dpath, WH_IPC_DIRECT_MAX, err, errlen) != WH_OK)
        goto error;
    *out = p;
    return WH_OK;
error:
    close_socket(p->sock, p->url);
    free(p);
    return WH_ERR;
}

void wh_pub_send(wh_pub *p, const void *msg, size_t len)
{
    if (p == NULL)
        return;
    wh_uds_pub_send(p->direct, msg, len);
    if (atomic_load(&p->pipes) <= 0)
        return;
    nng_msg *m = NULL;
    if (nng_msg_alloc(&m, len) != 0)
        return;
    memcpy(nng_msg_body(m), msg, len);
    if (nng_sendmsg(p->sock, m, NNG_FLAG_NONBLOCK) != 0)
        nng_msg_free(m);
}

void wh_pub_close(wh_pub *p)
{
    if (p == NULL)
        return;
    wh_uds_pub_stop(p->direct);
    close_socket(p->sock, p->url);
    free(p);
}

/* Opens the NNG subscriber (no direct socket, or no room on it). */
static int sub_nng_open(wh_sub *s, char *err, size_t errlen)
{
    int rv;
    if ((s->w = waiter_new()) == NULL)
        return wh_seterr(err, errlen, "out of memory");
    if ((rv = nng_sub0_open(&s->sock)) != 0) {
        waiter_free(s->w);
        s->w = NULL;
        return wh_seterr(err, errlen, "cannot open sub socket: %s", nng_strerror(rv));
    }
    if ((rv = nng_aio_alloc(&s->aio, waiter_done, s->w)) != 0 ||
        (rv = nng_socket_set(s->sock, NNG_OPT_SUB_SUBSCRIBE, "", 0)) != 0) {
        wh_seterr(err, errlen, "%s: %s", s->url, nng_strerror(rv));
        goto error;
    }
    nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, WH_NOTE_MSG_MAX); /* pushed events */
    nng_socket_set_ms(s->sock, NNG_OPT_RECONNMINT, 20);
    nng_socket_set_ms(s->sock, NNG_OPT_RECONNMAXT, 500);
    nng_pipe_notify(s->sock, NNG_PIPE_EV_ADD_POST, pipe_count_cb, &s->pipes);
    nng_pipe_notify(s->sock, NNG_PIPE_EV_REM_POST, pipe_count_cb, &s->pipes);
    if (dial_on(s->sock, s->url, NULL, err, errlen) != WH_OK)
        goto error;
    s->has_sock = 1;
    return WH_OK;
error:
    if (s->aio != NULL)
        nng_aio_free(s->aio);
    s->aio = NULL;
    close_socket(s->sock, s->url);
    waiter_free(s->w);
    s->w = NULL;
    return WH_ERR;
}

int wh_sub_open(wh_sub **out, const char *url, char *err, size_t errlen)
{
    wh_sub *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return wh_seterr(err, errlen, "out of memory");
    wh_strlcpy(s->url, url, sizeof(s->url));
    s->dfd = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->cmu, NULL);
    s->direct = atomic_load(&direct_on) && wh_uds_path(url, s->dpath, sizeof(s->dpath)) == WH_OK;
    if (!s->direct && sub_nng_open(s, err, errlen) != WH_OK) {
        pthread_mutex_destroy(&s->cmu);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return WH_ERR;
    }
    *out = s;
    return WH_OK;
}

/* Connects the direct subscriber when it is not (waiting at most timeout_ms
 * for the publisher). The connected fd, or -1; *nng set when the publisher
 * had no room (the subscriber switched to NNG). Caller holds cmu. */
static int sub_direct_connect(wh_sub *s, int timeout_ms, int *nng)
{
    *nng = 0;
    pthread_mutex_lock(&s->mu);
    int fd = s->dfd;
    pthread_mutex_unlock(&s->mu);
    if (fd >= 0 || !s->direct)
        return fd;
    int refused = 0;
    char e[WH_ERRLEN];
    if (wh_uds_connect(&fd, s->dpath, timeout_ms, &refused, e, sizeof(e)) != WH_OK) {
        if (refused) {
            wh_info("ipc %s: %s; notifications come over NNG", s->url, e);
            if (sub_nng_open(s, e, sizeof(e)) != WH_OK)
                wh_warn("ipc %s: %s", s->url, e);
            s->direct = 0;
            *nng = 1;
        }
        return -1;
    }
    pthread_mutex_lock(&s->mu);
    s->dgen++; /* before the descriptor: never a new one with the old number */
    pthread_mutex_unlock(&s->mu);
    dfd_set(&s->mu, &s->dfd, fd, &s->interrupted);
    return fd;
}

/* The reader's bytes belong to connection gen: a new connection starts
 * with none (the reading thread's). */
static void rd_follow(wh_sub *s, uint64_t gen)
{
    if (s->rd_gen != gen) {
        wh_uds_rd_reset(&s->rd);
        s->rd_gen = gen;
    }
}

/* The direct subscriber: connects when not connected (at most the
 * timeout), then reads one frame. */
static int sub_direct_recv(wh_sub *s, void *buf, size_t cap, int timeout_ms)
{
    int nng;
    pthread_mutex_lock(&s->cmu);
    int fd = sub_direct_connect(s, timeout_ms, &nng);
    pthread_mutex_unlock(&s->cmu);
    if (fd < 0)
        return nng && s->has_sock ? 0 : atomic_load(&s->interrupted) || nng ? -1 : 0;
    pthread_mutex_lock(&s->mu);
    uint64_t gen = s->dgen;
    pthread_mutex_unlock(&s->mu);
    rd_follow(s, gen);
    int n = wh_uds_rd_recv(&s->rd, fd, buf, cap, timeout_ms);
    if (n < 0) {
        dfd_close(&s->mu, &s->dfd);
        wh_uds_rd_reset(&s->rd);
        return atomic_load(&s->interrupted) ? -1 : 0;
    }
    return n;
}

int wh_sub_recv(wh_sub *s, void *buf, size_t cap, int timeout_ms)
{
    if (s->abandoned || atomic_load(&s->interrupted))
        return -1;
    if (s->direct)
        return sub_direct_recv(s, buf, cap, timeout_ms);
    if (!s->has_sock)
        return -1;
    nng_aio_set_timeout(s->aio, timeout_ms);
    waiter_arm(s->w);
    nng_recv_aio(s->sock, s->aio);
    if (!waiter_wait(s->w, timeout_ms + WH_IPC_STUCK_GRACE_MS, &s->interrupted)) {
        s->abandoned = 1; /* left to NNG (upstream issue #1543) */
        wh_warn("ipc %s: a receive did not finish (stuck in NNG); notifications stop", s->url);
        return -1;
    }
    int rv = nng_aio_result(s->aio);
    if (rv == NNG_ETIMEDOUT)
        return 0;
    if (rv != 0)
        return atomic_load(&s->interrupted) || rv == NNG_ECLOSED ? -1 : 0;
    nng_msg *m = nng_aio_get_msg(s->aio);
    nng_aio_set_msg(s->aio, NULL);
    size_t n = nng_msg_len(m);
    memcpy(buf, nng_msg_body(m), n < cap ? n : cap);
    nng_msg_free(m);
    return (int)(n < cap ? n : cap);
}

int wh_sub_connected(wh_sub *s)
{
    if (s == NULL)
        return 0;
    if (s->direct && pthread_mutex_trylock(&s->cmu) == 0) {
        /* like NNG's dialer: connect in the background of a check */
        int nng;
        sub_direct_connect(s, 0, &nng);
        pthread_mutex_unlock(&s->cmu);
    }
    if (s->direct) {
        pthread_mutex_lock(&s->mu);
        int c = s->dfd >= 0;
        pthread_mutex_unlock(&s->mu);
        return c;
    }
    return s->has_sock && atomic_load(&s->pipes) > 0;
}

int wh_sub_direct_fd(wh_sub *s, uint64_t *gen)
{
    *gen = 0;
    if (s == NULL || !s->direct)
        return -1;
    pthread_mutex_lock(&s->mu);
    int fd = s->dfd;
    *gen = s->dgen;
    pthread_mutex_unlock(&s->mu);
    return fd;
}

_Static_assert(WH_SUB_NONE == WH_UDS_FRAME_NONE && WH_SUB_READY == WH_UDS_FRAME_READY &&
                   WH_SUB_PART == WH_UDS_FRAME_PART,
               "wh_sub_pending returns wh_uds_rd_ready's values");

int wh_sub_pending(wh_sub *s, size_t max)
{
    pthread_mutex_lock(&s->mu);
    int r = WH_UDS_FRAME_READY; /* not connected: the read tells */
    if (s->dfd >= 0) {
        rd_follow(s, s->dgen);
        r = wh_uds_rd_reserve(&s->rd, max) == WH_OK ? wh_uds_rd_ready(&s->rd, s->dfd)
                                                    : WH_UDS_FRAME_PART;
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

int wh_sub_buffered(wh_sub *s)
{
    pthread_mutex_lock(&s->mu);
    int r = s->dfd >= 0 && s->rd_gen == s->dgen && wh_uds_rd_buffered(&s->rd);
    pthread_mutex_unlock(&s->mu);
    return r;
}

void wh_sub_interrupt(wh_sub *s)
{
    if (s == NULL)
        return;
    atomic_store(&s->interrupted, 1);
    pthread_mutex_lock(&s->mu);
    if (s->dfd >= 0)
        shutdown(s->dfd, SHUT_RDWR);
    pthread_mutex_unlock(&s->mu);
    if (s->has_sock) {
        nng_aio_cancel(s->aio);
        waiter_wake(s->w);
    }
}

/* The receiving thread has returned (joined) before this. */
void wh_sub_close(wh_sub *s)
{
    if (s == NULL)
        return;
    if (s->has_sock) {
        if (!s->abandoned) {
            nng_aio_stop(s->aio);
            nng_aio_free(s->aio);
            waiter_free(s->w);
        }
        close_socket(s->sock, s->url);
    }
    if (s->dfd >= 0)
        close(s->dfd);
    wh_uds_rd_free(&s->rd);
    pthread_mutex_destroy(&s->cmu);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
