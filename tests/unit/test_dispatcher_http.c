/* Real-HTTP test of the dispatcher: a fake store (real NNG rep server
 * answering Read/Commit from memory), a minimal blocking HTTP/1.1 responder
 * on 127.0.0.1 (plain sockets), and the real curl multi loop in between. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../services/dispatcher/dsp_control.h"
#include "../../services/dispatcher/dsp_loop.h"
#include "../../services/dispatcher/dsp_target.h"
#include "../../services/dispatcher/dsp_webhook.h"
#include "wh_config.h"
#include "wh_ipc.h"
#include "wh_lsn.h"
#include "wh_util.h"

/* ---- fake store ------------------------------------------------------- */

#define NEV 5
static const char *ev_json[NEV] = {"{\"n\":0}", "{\"n\":1}", "{\"n\":2}", "{\"n\":3}", "{\"n\":4}"};
static const uint64_t ev_lsn[NEV] = {0x100, 0x100, 0x200, 0x300, 0x300};
static const uint32_t ev_seq[NEV] = {0, 1, 0, 0, 1};
/* the stored events served (full envelopes for a test that renders them) */
static const char *const *ev_served = ev_json;
#define ENV(lsn, seq, id)                                                                          \
    "{\"id\":\"t1:0/" lsn ":" seq "\",\"tenant\":\"t1\",\"lsn\":\"0/" lsn "\",\"seq\":" seq        \
    ",\"xid\":7,\"commit_ts\":\"2026-11-22T01:02:03.123456Z\",\"op\":\"insert\",\"schema\":"       \
    "\"public\",\"table\":\"orders\",\"key\":{\"id\":" id                                          \
    "},\"before\":null,\"after\":{\"id\":" id ",\"note\":\"n" id "\"}}"
static const char *ev_env[NEV] = {ENV("100", "0", "1"), ENV("100", "1", "2"), ENV("200", "0", "3"),
                                  ENV("300", "0", "4"), ENV("300", "1", "5")};

typedef struct fake_store {
    pthread_mutex_t mu;
    int has_committed;
    uint64_t c_lsn;
    uint32_t c_seq;
    int commits;
    int reads;
    uint64_t epoch; /* the consumer's offset epoch (SetOffset bumps it) */
    int refused;    /* commits refused with 409 */
} fake_store;

static fake_store FS = {.mu = PTHREAD_MUTEX_INITIALIZER};

typedef struct read_cookie {
    Walhook__ReadReply rr;
    Walhook__Position committed;
    Walhook__Event ev[NEV];
    Walhook__Event *evp[NEV];
} read_cookie;

static void store_fn(void *arg, const Walhook__Request *req, Walhook__Reply *rep, void **cookie)
{
    (void)arg;
    *cookie = NULL;
    if (req->body_case == WALHOOK__REQUEST__BODY_COMMIT) {
        pthread_mutex_lock(&FS.mu);
        if (req->commit->epoch < FS.epoch) {
            FS.refused++;
            pthread_mutex_unlock(&FS.mu);
            wh_reply_error(rep, 409, "stale epoch");
            return;
        }
        const Walhook__Position *p = req->commit->pos;
        if (!FS.has_committed || wh_pos_cmp(p->lsn, p->seq, FS.c_lsn, FS.c_seq) > 0) {
            FS.c_lsn = p->lsn;
            FS.c_seq = p->seq;
        }
        FS.has_committed = 1;
        FS.commits++;
        /* the reply a real store gives: the committed offset */
        static __thread Walhook__OffsetReply orp;
        static __thread Walhook__Position opos;
        walhook__offset_reply__init(&orp);
        walhook__position__init(&opos);
        opos.lsn = FS.c_lsn;
        opos.seq = FS.c_seq;
        orp.committed = &opos;
        pthread_mutex_unlock(&FS.mu);
        rep->body_case = WALHOOK__REPLY__BODY_OFFSET;
        rep->offset = &orp;
        return;
    }
    if (req->body_case != WALHOOK__REQUEST__BODY_READ) {
        wh_reply_error(rep, 1, "unsupported");
        return;
    }
    const Walhook__ReadRequest *rd = req->read;
    read_cookie *c = calloc(1, sizeof(*c));
    walhook__read_reply__init(&c->rr);
    walhook__position__init(&c->committed);
    pthread_mutex_lock(&FS.mu);
    FS.reads++;
    int has = rd->has_from ? 1 : FS.has_committed;
    uint64_t fl = rd->has_from ? rd->from->lsn : FS.c_lsn;
    uint32_t fs = rd->has_from ? rd->from->seq : FS.c_seq;
    c->committed.lsn = FS.c_lsn;
    c->committed.seq = FS.c_seq;
    c->rr.epoch = FS.epoch;
    pthread_mutex_unlock(&FS.mu);
    size_t n = 0;
    for (int i = 0; i < NEV && n < rd->max_events; i++) {
        if (has && wh_pos_cmp(ev_lsn[i], ev_seq[i], fl, fs) <= 0)
            continue;
        walhook__event__init(&c->ev[n]);
        c->ev[n].commit_lsn = ev_lsn[i];
        c->ev[n].seq = ev_seq[i];
        c->ev[n].commit_ts_us = wh_wallclock_us() - 1000;
        c->ev[n].json.data = (uint8_t *)ev_served[i];
        c->ev[n].json.len = strlen(ev_served[i]);
        c->evp[n] = &c->ev[n];
        n++;
    }
    if (n == 0 && rd->wait_ms > 0)
        wh_sleep_ms(rd->wait_ms > 50 ? 50 : (int)rd->wait_ms);
    c->rr.n_events = n;
    c->rr.events = c->evp;
    c->rr.committed = &c->committed;
    rep->body_case = WALHOOK__REPLY__BODY_READ;
    rep->read = &c->rr;
    *cookie = c;
}

static void store_done(void *arg, Walhook__Reply *rep, void *cookie)
{
    (void)arg;
    (void)rep;
    free(cookie);
}

/* ---- tiny HTTP/1.1 responder ----------------------------------------- */

#define MAXREQ 64
typedef struct http_req {
    char head[4096];
    char body[4096];
    int status; /* what we answered */
} http_req;

typedef struct http_srv {
    int lfd;
    int port;
    pthread_t thr;
    atomic_int stop;
    int fail_first;    /* answer 500 to this many requests first */
    int gone_first;    /* answer 410 to this many requests first (before fail_first's) */
    int delay_ms;      /* wait this long before each answer */
    int slow_idx;      /* the request that arrives as this one (from 0) ... */
    int slow_ms;       /* ... waits this long instead (0: none) */
    int garbage_first; /* answer this many requests with bytes that are no HTTP */
    pthread_mutex_t mu;
    int arrived; /* requests read (answered or not yet) */
    http_req reqs[MAXREQ];
    int nreq;
    int conns;
} http_srv;

static int wait_readable(http_srv *s, int fd)
{
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, 50);
        if (r > 0)
            return 1;
        if (r < 0)
            return 0;
    }
    return 0;
}

static void serve_conn(http_srv *s, int fd)
{
    char buf[16384];
    size_t len = 0;
    for (;;) {
        char *eoh;
        while ((eoh = memmem(buf, len, "\r\n\r\n", 4)) == NULL) {
            if (len == sizeof(buf) || !wait_readable(s, fd))
                return;
            ssize_t r = read(fd, buf + len, sizeof(buf) - len);
            if (r <= 0)
                return;
            len += (size_t)r;
        }
        size_t hlen = (size_t)(eoh - buf) + 4;
        size_t clen = 0;
        for (char *p = buf; p < eoh; p++)
            if (strncasecmp(p, "\r\nContent-Length:", 17) == 0)
                clen = strtoul(p + 17, NULL, 10);
        while (len < hlen + clen) {
            if (len == sizeof(buf) || !wait_readable(s, fd))
                return;
            ssize_t r = read(fd, buf + len, sizeof(buf) - len);
            if (r <= 0)
                return;
            len += (size_t)r;
        }
        pthread_mutex_lock(&s->mu);
        int idx = s->arrived++;
        pthread_mutex_unlock(&s->mu);
        int delay = s->slow_ms > 0 && idx == s->slow_idx ? s->slow_ms : s->delay_ms;
        if (delay > 0)
            wh_sleep_ms(delay);
        if (idx < s->garbage_first) {
            /* no status line: curl says "Received HTTP/0.9 when not allowed" */
            static const char junk[] = "SSH-2.0-OpenSSH_9.2\r\n";
            pthread_mutex_lock(&s->mu);
            s->nreq++;
            pthread_mutex_unlock(&s->mu);
            (void)!write(fd, junk, sizeof(junk) - 1);
            return;
        }
        pthread_mutex_lock(&s->mu);
        int status = s->nreq < s->gone_first                   ? 410
                     : s->nreq < s->gone_first + s->fail_first ? 500
                                                               : 200;
        if (s->nreq < MAXREQ) {
            http_req *q = &s->reqs[s->nreq];
            snprintf(q->head, sizeof(q->head), "%.*s", (int)hlen, buf);
            snprintf(q->body, sizeof(q->body), "%.*s", (int)clen, buf + hlen);
            q->status = status;
        }
        s->nreq++;
        pthread_mutex_unlock(&s->mu);
        char resp[256];
        int rl = snprintf(
            resp, sizeof(resp),
            "HTTP/1.1 %d %s\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok", status,
            status == 200   ? "OK"
            : status == 410 ? "Gone"
                            : "Internal Server Error");
        if (write(fd, resp, (size_t)rl) != rl)
            return;
        memmove(buf, buf + hlen + clen, len - hlen - clen);
        len -= hlen + clen;
    }
}

static void *http_main(void *arg)
{
    http_srv *s = arg;
    while (wait_readable(s, s->lfd)) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_mutex_lock(&s->mu);
        s->conns++;
        pthread_mutex_unlock(&s->mu);
        serve_conn(s, fd);
        close(fd);
    }
    return NULL;
}

static int listen_any(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t al = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &al);
    *port = ntohs(a.sin_port);
    return fd;
}

static void http_start(http_srv *s, int fail_first)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    s->fail_first = fail_first;
    s->lfd = listen_any(&s->port);
    assert_int_equal(pthread_create(&s->thr, NULL, http_main, s), 0);
}

static void http_stop(http_srv *s)
{
    atomic_store(&s->stop, 1);
    pthread_join(s->thr, NULL);
    close(s->lfd);
}

/* ---- harness ---------------------------------------------------------- */

static char dir[256];

static void *loop_main(void *arg)
{
    dsp_loop_run(arg);
    return NULL;
}

static void make_config(wh_config *c, const char *url, const char *secret)
{
    wh_config_defaults(c);
    snprintf(dir, sizeof(dir), "/tmp/wh-dsp-test-%d", (int)getpid());
    wh_strlcpy(c->tenant, "t1", sizeof(c->tenant));
    snprintf(c->store_endpoint, sizeof(c->store_endpoint), "ipc://%s/store.sock", dir);
    snprintf(c->dispatcher_control, sizeof(c->dispatcher_control), "ipc://%s/dispatcher.sock", dir);
    c->ipc_max_msg_bytes = 4 << 20;
    c->ipc_timeout_ms = 2000;
    c->batch_max_events = 2;
    c->batch_max_bytes = 1 << 20;
    c->retry_base_ms = 10;
    c->retry_max_ms = 40;
    c->http_timeout_ms = 2000;
    c->max_inflight = 8;
    wh_strlcpy(c->allow_private_networks, "127.0.0.0/8", sizeof(c->allow_private_networks));
    c->ntargets = 1;
    memset(&c->targets[0], 0, sizeof(c->targets[0]));
    wh_strlcpy(c->targets[0].name, "a", sizeof(c->targets[0].name));
    wh_strlcpy(c->targets[0].url, url, sizeof(c->targets[0].url));
    wh_strlcpy(c->targets[0].secret, secret, sizeof(c->targets[0].secret));
}

static void header_value(const char *head, const char *name, char *out, size_t outlen)
{
    out[0] = '\0';
    size_t nl = strlen(name);
    for (const char *p = head; (p = strstr(p, "\r\n")) != NULL; p += 2) {
        if (strncasecmp(p + 2, name, nl) == 0 && p[2 + nl] == ':') {
            const char *v = p + 2 + nl + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            snprintf(out, outlen, "%.*s", (int)(e - v), v);
            return;
        }
    }
}

static void test_round_trip_with_retry(void **state)
{
    (void)state;
    http_srv hs;
    http_start(&hs, 1); /* first POST gets a 500 */
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook", hs.port);
    static wh_config cfg;
    const char *secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    make_config(&cfg, url, secret);
    memset(&FS, 0, sizeof(FS));
    pthread_mutex_init(&FS.mu, NULL);

    char err[WH_ERRLEN];
    wh_server *store = NULL;
    assert_int_equal(wh_server_start(&store, cfg.store_endpoint, 2, (size_t)cfg.ipc_max_msg_bytes,
                                     store_fn, store_done, NULL, err, sizeof(err)),
                     WH_OK);
    dsp_loop *loop = NULL;
    if (dsp_loop_create(&loop, &cfg, err, sizeof(err)) != WH_OK)
        fail_msg("dsp_loop_create: %s", err);
    wh_control *ctl = NULL;
    assert_int_equal(dsp_control_start(&ctl, cfg.dispatcher_control, loop, err, sizeof(err)),
                     WH_OK);
    pthread_t lt;
    assert_int_equal(pthread_create(&lt, NULL, loop_main, loop), 0);

    /* wait for the last position to be committed */
    int done = 0;
    for (int i = 0; i < 500 && !done; i++) {
        pthread_mutex_lock(&FS.mu);
        done = FS.has_committed && FS.c_lsn == 0x300 && FS.c_seq == 1;
        pthread_mutex_unlock(&FS.mu);
        if (!done)
            wh_sleep_ms(10);
    }
    assert_true(done);

    /* Stats over the control endpoint */
    wh_client *cc = NULL;
    assert_int_equal(wh_client_open(&cc, cfg.dispatcher_control, 2000, 1 << 20, err, sizeof(err)),
                     WH_OK);
    Walhook__StatsRequest sr = WALHOOK__STATS_REQUEST__INIT;
    Walhook__Request rq = WALHOOK__REQUEST__INIT;
    rq.body_case = WALHOOK__REQUEST__BODY_STATS;
    rq.stats = &sr;
    Walhook__Reply *rep = NULL;
    if (wh_client_call(cc, &rq, &rep, err, sizeof(err)) != WH_OK)
        fail_msg("stats: %s", err);
    assert_int_equal(rep->body_case, WALHOOK__REPLY__BODY_STATS);
    assert_string_equal(rep->stats->daemon, "dispatcher");
    assert_string_equal(rep->stats->state, "running");
    assert_true(rep->stats->ready);
    const char *mt = rep->stats->metrics_text;
    assert_non_null(strstr(mt, "walhook_events_delivered_total{tenant=\"t1\",target=\"a\"} 5\n"));
    assert_non_null(strstr(mt, "walhook_delivery_failures_total{tenant=\"t1\",target=\"a\"} 1\n"));
    assert_non_null(
        strstr(mt, "walhook_delivery_latency_seconds_count{tenant=\"t1\",target=\"a\"} 5\n"));
    assert_non_null(strstr(mt, "walhook_up{daemon=\"dispatcher\"} 1\n"));
    walhook__reply__free_unpacked(rep, NULL);
    wh_client_close(cc);

    dsp_loop_stop(loop);
    pthread_join(lt, NULL);
    wh_control_stop(ctl);
    dsp_loop_destroy(loop);
    wh_server_stop(store);
    http_stop(&hs);

    /* what the receiver saw: 500, then the SAME batch again, then the rest */
    assert_int_equal(hs.nreq, 4);
    const char *bodies[4] = {"[{\"n\":0},{\"n\":1}]", "[{\"n\":0},{\"n\":1}]",
                             "[{\"n\":2},{\"n\":3}]", "[{\"n\":4}]"};
    const char *ids[4] = {"t1:0/100:1", "t1:0/100:1", "t1:0/300:0", "t1:0/300:1"};
    const char *sizes[4] = {"2", "2", "2", "1"};
    dsp_key key;
    assert_int_equal(dsp_key_parse(&key, secret, err, sizeof(err)), WH_OK);
    for (int i = 0; i < 4; i++) {
        http_req *q = &hs.reqs[i];
        char v[512];
        assert_int_equal(q->status, i == 0 ? 500 : 200);
        assert_true(strncmp(q->head, "POST /hook HTTP/1.1\r\n", 21) == 0);
        assert_string_equal(q->body, bodies[i]);
        header_value(q->head, "Content-Type", v, sizeof(v));
        assert_string_equal(v, "application/json");
        header_value(q->head, "X-Batch-Size", v, sizeof(v));
        assert_string_equal(v, sizes[i]);
        header_value(q->head, "webhook-id", v, sizeof(v));
        assert_string_equal(v, ids[i]);
        header_value(q->head, "webhook-timestamp", v, sizeof(v));
        long long ts = atoll(v);
        long long now = (long long)(wh_wallclock_us() / 1000000);
        assert_true(ts > now - 60 && ts <= now);
        char expect[DSP_SIG_MAX];
        assert_int_equal(
            dsp_sign(&key, ids[i], ts, q->body, strlen(q->body), expect, sizeof(expect)), WH_OK);
        header_value(q->head, "webhook-signature", v, sizeof(v));
        assert_string_equal(v, expect);
    }
    /* keep-alive: one connection for everything (the 500 did not close it) */
    assert_int_equal(hs.conns, 1);
}

static int wait_until(int (*cond)(void *), void *arg, int ms)
{
    for (int i = 0; i < ms / 10; i++) {
        if (cond(arg))
            return 1;
        wh_sleep_ms(10);
    }
    return cond(arg);
}

static int all_committed(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&FS.mu);
    int done = FS.has_committed && FS.c_lsn == 0x300 && FS.c_seq == 1;
    pthread_mutex_unlock(&FS.mu);
    return done;
}

typedef struct ver_wait {
    dsp_loop *l;
    uint64_t v;
} ver_wait;

static int version_applied(void *arg)
{
    ver_wait *w = arg;
    return dsp_loop_version(w->l) >= w->v;
}

static int narrived3(void *arg)
{
    http_srv *s = arg;
    pthread_mutex_lock(&s->mu);
    int n = s->arrived;
    pthread_mutex_unlock(&s->mu);
    return n >= 3;
}

static int narrived1(void *arg)
{
    http_srv *s = arg;
    pthread_mutex_lock(&s->mu);
    int n = s->arrived;
    pthread_mutex_unlock(&s->mu);
    return n >= 1;
}

static int target_failed(void *arg)
{
    return wh_counter_get(&((dsp_target *)arg)->failures) > 0;
}

/* The store moves the offset (SetOffset: a new epoch) while a request is in
 * flight. back: to the start (nothing committed). The reader sees it at its
 * next Read: the tests that use it read every event in one batch, so the
 * reader, with no batch left to read ahead, keeps polling meanwhile. */
static void move_offset(int back)
{
    pthread_mutex_lock(&FS.mu);
    FS.epoch++;
    if (back) {
        FS.has_committed = 0;
        FS.c_lsn = 0;
        FS.c_seq = 0;
    }
    pthread_mutex_unlock(&FS.mu);
}

/* A fake store, a loop with no target, then the one target sp (version 2). */
typedef struct rig {
    wh_config cfg;
    wh_server *store;
    dsp_loop *loop;
    pthread_t lt;
} rig;

static void rig_start(rig *r, const char *url, const char *allow_global)
{
    static int nrig;
    make_config(&r->cfg, url, "");
    /* endpoints of its own: a failed test leaves its store and loop behind */
    nrig++;
    snprintf(r->cfg.store_endpoint, sizeof(r->cfg.store_endpoint), "ipc://%s/store-%d.sock", dir,
             nrig);
    snprintf(r->cfg.dispatcher_control, sizeof(r->cfg.dispatcher_control),
             "ipc://%s/dispatcher-%d.sock", dir, nrig);
    r->cfg.ntargets = 0;
    wh_strlcpy(r->cfg.allow_private_networks, allow_global, sizeof(r->cfg.allow_private_networks));
    memset(&FS, 0, sizeof(FS));
    pthread_mutex_init(&FS.mu, NULL);
    char err[WH_ERRLEN];
    r->store = NULL;
    assert_int_equal(wh_server_start(&r->store, r->cfg.store_endpoint, 2,
                                     (size_t)r->cfg.ipc_max_msg_bytes, store_fn, store_done, NULL,
                                     err, sizeof(err)),
                     WH_OK);
    r->loop = NULL;
    if (dsp_loop_create(&r->loop, &r->cfg, err, sizeof(err)) != WH_OK)
        fail_msg("dsp_loop_create: %s", err);
    assert_int_equal(pthread_create(&r->lt, NULL, loop_main, r->loop), 0);
}

static void rig_spec(rig *r, dsp_spec *sp, const char *url)
{
    memset(sp, 0, sizeof(*sp));
    wh_strlcpy(sp->name, "a", sizeof(sp->name));
    wh_strlcpy(sp->url, url, sizeof(sp->url));
    dsp_settings_from_config(&sp->set, &r->cfg);
}

static void rig_apply(rig *r, const dsp_spec *sp, uint64_t version)
{
    ver_wait vw = {r->loop, version};
    assert_int_equal(dsp_loop_set_targets(r->loop, sp, 1, version), WH_OK);
    assert_true(wait_until(version_applied, &vw, 5000));
}

static void rig_stop(rig *r)
{
    dsp_loop_stop(r->loop);
    pthread_join(r->lt, NULL);
}

static void rig_destroy(rig *r)
{
    dsp_loop_destroy(r->loop);
    wh_server_stop(r->store);
}

static int nreq(http_srv *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->nreq;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* Targets arrive at runtime: an idle loop with no target, a paused target
 * posts nothing, resumed it delivers everything in order, a URL change
 * goes to the new receiver, an offset moved by the store (new epoch)
 * makes it deliver again from the moved offset, a removed target stops. */
static void test_runtime_targets(void **state)
{
    (void)state;
    http_srv h1, h2;
    http_start(&h1, 0);
    http_start(&h2, 0);
    char url1[128], url2[128];
    snprintf(url1, sizeof(url1), "http://127.0.0.1:%d/one", h1.port);
    snprintf(url2, sizeof(url2), "http://127.0.0.1:%d/two", h2.port);
    static wh_config cfg;
    make_config(&cfg, url1, "");
    cfg.ntargets = 0;
    memset(&FS, 0, sizeof(FS));
    pthread_mutex_init(&FS.mu, NULL);
    char err[WH_ERRLEN];
    wh_server *store = NULL;
    assert_int_equal(wh_server_start(&store, cfg.store_endpoint, 2, (size_t)cfg.ipc_max_msg_bytes,
                                     store_fn, store_done, NULL, err, sizeof(err)),
                     WH_OK);
    dsp_loop *loop = NULL;
    if (dsp_loop_create(&loop, &cfg, err, sizeof(err)) != WH_OK)
        fail_msg("dsp_loop_create with zero targets: %s", err);
    assert_int_equal(dsp_loop_ntargets(loop), 0);
    pthread_t lt;
    assert_int_equal(pthread_create(&lt, NULL, loop_main, loop), 0);

    static dsp_spec sp;
    memset(&sp, 0, sizeof(sp));
    wh_strlcpy(sp.name, "a", sizeof(sp.name));
    wh_strlcpy(sp.url, url1, sizeof(sp.url));
    dsp_settings_from_config(&sp.set, &cfg);
    sp.paused = 1;
    ver_wait vw = {loop, 2};
    assert_int_equal(dsp_loop_set_targets(loop, &sp, 1, 2), WH_OK);
    assert_true(wait_until(version_applied, &vw, 3000));
    wh_sleep_ms(300);
    assert_int_equal(nreq(&h1), 0); /* paused: nothing posted */

    wh_buf m;
    wh_buf_init(&m, 0);
    assert_int_equal(dsp_loop_metrics(loop, &m), WH_OK);
    assert_non_null(strstr(m.data, "walhook_target_paused{tenant=\"t1\",target=\"a\"} 1\n"));
    wh_buf_free(&m);

    sp.paused = 0;
    vw.v = 3;
    assert_int_equal(dsp_loop_set_targets(loop, &sp, 1, 3), WH_OK);
    assert_true(wait_until(all_committed, NULL, 5000));
    assert_int_equal(nreq(&h1), 3);

    /* a new URL, then the store moves the offset back to the start */
    wh_strlcpy(sp.url, url2, sizeof(sp.url));
    vw.v = 4;
    assert_int_equal(dsp_loop_set_targets(loop, &sp, 1, 4), WH_OK);
    assert_true(wait_until(version_applied, &vw, 3000));
    pthread_mutex_lock(&FS.mu);
    FS.epoch = 1;
    FS.has_committed = 0;
    FS.c_lsn = 0;
    FS.c_seq = 0;
    pthread_mutex_unlock(&FS.mu);
    assert_true(wait_until(all_committed, NULL, 5000));
    assert_int_equal(nreq(&h1), 3);
    assert_int_equal(nreq(&h2), 3);
    assert_string_equal(h2.reqs[0].body, "[{\"n\":0},{\"n\":1}]");
    assert_true(strncmp(h2.reqs[0].head, "POST /two HTTP/1.1\r\n", 20) == 0);
    assert_string_equal(h2.reqs[2].body, "[{\"n\":4}]");

    /* removed: the loop idles with no target */
    vw.v = 5;
    assert_int_equal(dsp_loop_set_targets(loop, NULL, 0, 5), WH_OK);
    assert_true(wait_until(version_applied, &vw, 3000));
    assert_int_equal(dsp_loop_ntargets(loop), 0);

    dsp_loop_stop(loop);
    pthread_join(lt, NULL);
    dsp_loop_destroy(loop);
    wh_server_stop(store);
    http_stop(&h1);
    http_stop(&h2);
}

/* s with every Debezium top-level ts_ms (the render time, before
 * ,"transaction") written as 0, into out (cap bytes). */
static void dbz_now_blank(const char *s, char *out, size_t cap)
{
    static const char key[] = "\"ts_ms\":", next[] = ",\"transaction\"";
    size_t o = 0;
    while (*s && o + 1 < cap) {
        if (strncmp(s, key, sizeof(key) - 1) == 0) {
            const char *d = s + sizeof(key) - 1, *e = d;
            while (*e == '-' || (*e >= '0' && *e <= '9'))
                e++;
            if (strncmp(e, next, sizeof(next) - 1) == 0) {
                size_t k = (size_t)(d - s);
                if (o + k + 2 >= cap)
                    break;
                memcpy(out + o, s, k);
                o += k;
                out[o++] = '0';
                s = e;
                continue;
            }
        }
        out[o++] = *s++;
    }
    out[o] = '\0';
}

/* A Debezium target: batches are rendered from the Read reply's own events
 * (no native copy); a batch that fails for good is posted again one event
 * at a time, each rendered from those same events, and everything is
 * committed in order. */
static void test_rendered_single_mode(void **state)
{
    (void)state;
    http_srv hs;
    http_start(&hs, 1); /* the first batch gets a 500: max_attempts 1 makes it final */
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/dbz", hs.port);
    static wh_config cfg;
    make_config(&cfg, url, "");
    cfg.ntargets = 0;
    memset(&FS, 0, sizeof(FS));
    pthread_mutex_init(&FS.mu, NULL);
    ev_served = ev_env;
    char err[WH_ERRLEN];
    wh_server *store = NULL;
    assert_int_equal(wh_server_start(&store, cfg.store_endpoint, 2, (size_t)cfg.ipc_max_msg_bytes,
                                     store_fn, store_done, NULL, err, sizeof(err)),
                     WH_OK);
    dsp_loop *loop = NULL;
    if (dsp_loop_create(&loop, &cfg, err, sizeof(err)) != WH_OK)
        fail_msg("dsp_loop_create: %s", err);
    pthread_t lt;
    assert_int_equal(pthread_create(&lt, NULL, loop_main, loop), 0);
    static dsp_spec sp;
    memset(&sp, 0, sizeof(sp));
    wh_strlcpy(sp.name, "a", sizeof(sp.name));
    wh_strlcpy(sp.url, url, sizeof(sp.url));
    dsp_settings_from_config(&sp.set, &cfg);
    wh_strlcpy(sp.set.dl.envelope, "debezium", sizeof(sp.set.dl.envelope));
    wh_strlcpy(sp.set.dl.filter_expr, "after.id != 4", sizeof(sp.set.dl.filter_expr));
    sp.set.dl.max_attempts = 1;
    assert_int_equal(dsp_loop_set_targets(loop, &sp, 1, 2), WH_OK);
    assert_true(wait_until(all_committed, NULL, 5000));
    dsp_loop_stop(loop);
    pthread_join(lt, NULL);
    dsp_loop_destroy(loop);
    wh_server_stop(store);
    http_stop(&hs);
    ev_served = ev_json;

    /* [e0,e1] (500), then e0 and e1 one at a time, then [e2] (e3 filtered
     * out of the second batch), then [e4] */
    assert_int_equal(hs.nreq, 5);
    const int first[5] = {0, 0, 1, 2, 4}, count[5] = {2, 1, 1, 1, 1};
    for (int r = 0; r < 5; r++) {
        http_req *q = &hs.reqs[r];
        assert_int_equal(q->status, r == 0 ? 500 : 200);
        const void *p[2];
        size_t l[2];
        for (int k = 0; k < count[r]; k++) {
            p[k] = ev_env[first[r] + k];
            l[k] = strlen(ev_env[first[r] + k]);
        }
        dsp_env_opts o = {.kind = DSP_ENV_DEBEZIUM};
        wh_buf want;
        wh_buf_init(&want, 0);
        dsp_env_out *out = malloc(sizeof(*out));
        assert_non_null(out);
        assert_int_equal(dsp_env_render(&o, p, l, (size_t)count[r], &want, out, err, sizeof(err)),
                         WH_OK);
        assert_int_equal(wh_buf_cstr(&want), WH_OK);
        char a[4096], b[4096];
        dbz_now_blank(want.data, a, sizeof(a));
        dbz_now_blank(q->body, b, sizeof(b));
        assert_string_equal(b, a);
        free(out);
        wh_buf_free(&want);
        char v[64];
        header_value(q->head, "X-Batch-Size", v, sizeof(v));
        assert_int_equal(atoi(v), count[r]);
    }
}

/* A change that arrives while a request is in flight waits for it: the
 * request finishes (and is committed) at the old URL, the next ones go to
 * the new one. */
static void test_change_between_requests(void **state)
{
    (void)state;
    http_srv h1, h2;
    http_start(&h1, 0);
    http_start(&h2, 0);
    h1.delay_ms = 400;
    char url1[128], url2[128];
    snprintf(url1, sizeof(url1), "http://127.0.0.1:%d/one", h1.port);
    snprintf(url2, sizeof(url2), "http://127.0.0.1:%d/two", h2.port);
    static wh_config cfg;
    make_config(&cfg, url1, "");
    memset(&FS, 0, sizeof(FS));
    pthread_mutex_init(&FS.mu, NULL);
    char err[WH_ERRLEN];
    wh_server *store = NULL;
    assert_int_equal(wh_server_start(&store, cfg.store_endpoint, 2, (size_t)cfg.ipc_max_msg_bytes,
                                     store_fn, store_done, NULL, err, sizeof(err)),
                     WH_OK);
    dsp_loop *loop = NULL;
    if (dsp_loop_create(&loop, &cfg, err, sizeof(err)) != WH_OK)
        fail_msg("dsp_loop_create: %s", err);
    pthread_t lt;
    assert_int_equal(pthread_create(&lt, NULL, loop_main, loop), 0);
    dsp_target *t = dsp_loop_target(loop, 0);
    for (int i = 0; i < 300 && atomic_load(&t->state_pub) != DSP_T_POSTING; i++)
        wh_sleep_ms(5);
    assert_int_equal(atomic_load(&t->state_pub), DSP_T_POSTING);

    static dsp_spec sp;
    memset(&sp, 0, sizeof(sp));
    wh_strlcpy(sp.name, "a", sizeof(sp.name));
    wh_strlcpy(sp.url, url2, sizeof(sp.url));
    dsp_settings_from_config(&sp.set, &cfg);
    assert_int_equal(dsp_loop_set_targets(loop, &sp, 1, 2), WH_OK);
    assert_true(wait_until(all_committed, NULL, 5000));
    dsp_loop_stop(loop);
    pthread_join(lt, NULL);
    dsp_loop_destroy(loop);
    wh_server_stop(store);
    http_stop(&h1);
    http_stop(&h2);
    /* the first batch went to (and was answered by) the old URL, once */
    assert_int_equal(h1.nreq, 1);
    assert_string_equal(h1.reqs[0].body, "[{\"n\":0},{\"n\":1}]");
    assert_int_equal(h2.nreq, 2);
    assert_string_equal(h2.reqs[0].body, "[{\"n\":2},{\"n\":3}]");
    assert_string_equal(h2.reqs[1].body, "[{\"n\":4}]");
}

static void test_unreachable_target(void **state)
{
    (void)state;
    int port;
    int fd = listen_any(&port);
    close(fd); /* nothing listens there now */
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    static wh_config cfg;
    make_config(&cfg, url, "");
    memset(&FS, 0, sizeof(FS));
    pthread_mutex_init(&FS.mu, NULL);
    char err[WH_ERRLEN];
    wh_server *store = NULL;
    assert_int_equal(wh_server_start(&store, cfg.store_endpoint, 2, (size_t)cfg.ipc_max_msg_bytes,
                                     store_fn, store_done, NULL, err, sizeof(err)),
                     WH_OK);
    dsp_loop *loop = NULL;
    if (dsp_loop_create(&loop, &cfg, err, sizeof(err)) != WH_OK)
        fail_msg("dsp_loop_create: %s", err);
    pthread_t lt;
    assert_int_equal(pthread_create(&lt, NULL, loop_main, loop), 0);
    wh_sleep_ms(400);
    dsp_target *t = dsp_loop_target(loop, 0);
    assert_true(wh_counter_get(&t->failures) >= 3);
    assert_int_equal(wh_counter_get(&t->delivered), 0);
    uint64_t t0 = wh_now_ms();
    dsp_loop_stop(loop);
    pthread_join(lt, NULL);
    dsp_loop_destroy(loop);
    assert_true(wh_now_ms() - t0 < 4000);
    wh_server_stop(store);
    assert_int_equal(FS.commits, 0); /* nothing skipped, nothing committed */
}

/* Issue 5, defect 3: one bad target (a secret that is not base64, a URL with
 * CR LF) is refused on its own; the good target next to it delivers. */
static void test_bad_target_refused(void **state)
{
    (void)state;
    http_srv hs;
    http_start(&hs, 0);
    char url[128], crlf[160];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook", hs.port);
    snprintf(crlf, sizeof(crlf), "http://127.0.0.1:%d/hook\r\nX-Injected: 1", hs.port);
    static wh_config cfg;
    make_config(&cfg, url, "");
    cfg.ntargets = 3;
    const char *names[3] = {"bad", "a", "crlf"};
    const char *urls[3] = {url, url, crlf};
    const char *secrets[3] = {"whsec_!!!", "", ""};
    for (int i = 0; i < 3; i++) {
        memset(&cfg.targets[i], 0, sizeof(cfg.targets[i]));
        wh_strlcpy(cfg.targets[i].name, names[i], sizeof(cfg.targets[i].name));
        wh_strlcpy(cfg.targets[i].url, urls[i], sizeof(cfg.targets[i].url));
        wh_strlcpy(cfg.targets[i].secret, secrets[i], sizeof(cfg.targets[i].secret));
    }
    memset(&FS, 0, sizeof(FS));
    pthread_mutex_init(&FS.mu, NULL);

    char err[WH_ERRLEN];
    wh_server *store = NULL;
    assert_int_equal(wh_server_start(&store, cfg.store_endpoint, 2, (size_t)cfg.ipc_max_msg_bytes,
                                     store_fn, store_done, NULL, err, sizeof(err)),
                     WH_OK);
    dsp_loop *loop = NULL;
    if (dsp_loop_create(&loop, &cfg, err, sizeof(err)) != WH_OK)
        fail_msg("one bad target stopped every target: %s", err);
    assert_int_equal(dsp_loop_nrefused(loop), 2);
    assert_int_equal(dsp_loop_ntargets(loop), 1);
    assert_string_equal(dsp_loop_target(loop, 0)->name, "a");
    wh_control *ctl = NULL;
    assert_int_equal(dsp_control_start(&ctl, cfg.dispatcher_control, loop, err, sizeof(err)),
                     WH_OK);
    pthread_t lt;
    assert_int_equal(pthread_create(&lt, NULL, loop_main, loop), 0);
    int done = 0;
    for (int i = 0; i < 500 && !done; i++) {
        pthread_mutex_lock(&FS.mu);
        done = FS.has_committed && FS.c_lsn == 0x300 && FS.c_seq == 1;
        pthread_mutex_unlock(&FS.mu);
        if (!done)
            wh_sleep_ms(10);
    }
    assert_true(done);

    wh_client *cc = NULL;
    assert_int_equal(wh_client_open(&cc, cfg.dispatcher_control, 2000, 1 << 20, err, sizeof(err)),
                     WH_OK);
    Walhook__StatsRequest sr = WALHOOK__STATS_REQUEST__INIT;
    Walhook__Request rq = WALHOOK__REQUEST__INIT;
    rq.body_case = WALHOOK__REQUEST__BODY_STATS;
    rq.stats = &sr;
    Walhook__Reply *rep = NULL;
    if (wh_client_call(cc, &rq, &rep, err, sizeof(err)) != WH_OK)
        fail_msg("stats: %s", err);
    assert_string_equal(rep->stats->state, "degraded");
    assert_true(rep->stats->ready);
    const char *mt = rep->stats->metrics_text;
    assert_non_null(
        strstr(mt, "walhook_target_config_errors_total{tenant=\"t1\",target=\"bad\"} 1\n"));
    assert_non_null(
        strstr(mt, "walhook_target_config_errors_total{tenant=\"t1\",target=\"crlf\"} 1\n"));
    assert_null(strstr(mt, "walhook_target_config_errors_total{tenant=\"t1\",target=\"a\"}"));
    assert_non_null(strstr(mt, "walhook_events_delivered_total{tenant=\"t1\",target=\"a\"} 5\n"));
    walhook__reply__free_unpacked(rep, NULL);
    wh_client_close(cc);

    dsp_loop_stop(loop);
    pthread_join(lt, NULL);
    wh_control_stop(ctl);
    dsp_loop_destroy(loop);
    wh_server_stop(store);
    http_stop(&hs);
    /* only target a posted: 2 + 2 + 1 events */
    assert_int_equal(hs.nreq, 3);
    for (int i = 0; i < 3; i++)
        assert_null(strstr(hs.reqs[i].head, "X-Injected"));
}

/* The breaker's half-open probe is in flight when the offset moves: its
 * result is not committed, but the breaker must still hear it. It was
 * dropped with the batch, and the breaker waited for it for good
 * (half-open, probe out): the target never posted again. */
static void test_breaker_probe_reset(void **state)
{
    (void)state;
    http_srv hs;
    http_start(&hs, 2); /* two failures open the breaker */
    hs.slow_idx = 2;    /* the probe after the cool-down */
    hs.slow_ms = 1500;
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook", hs.port);
    static rig r;
    rig_start(&r, url, "127.0.0.0/8");
    r.cfg.batch_max_events = NEV;
    static dsp_spec sp;
    rig_spec(&r, &sp, url);
    sp.set.dl.breaker_failures = 2;
    sp.set.dl.breaker_cooldown_ms = 300;
    rig_apply(&r, &sp, 2);
    assert_true(wait_until(narrived3, &hs, 10000));
    move_offset(0);
    assert_true(wait_until(all_committed, NULL, 15000));
    rig_stop(&r);
    dsp_target *t = dsp_loop_target(r.loop, 0);
    assert_int_equal(t->br.state, DSP_BR_CLOSED);
    assert_true(t->br.opened >= 1);
    rig_destroy(&r);
    http_stop(&hs);
}

static int target_disabled(void *arg)
{
    return atomic_load(&((dsp_target *)arg)->disabled_pub) == 1;
}

/* A target deleted and created again under its name, both seen as one
 * state version: the same spec but its created_version. It is a new target:
 * enabled though the old one was disabled by a 410 (with no resume: its
 * count is 0 in both), with a fresh breaker though the old one's was open
 * for 10 minutes. Before, the loop matched it by name and kept the old one:
 * nothing more was posted (disabled until a resume; open until the
 * cool-down). */
static void test_recreated_target(void **state)
{
    (void)state;
    for (int breaker = 0; breaker <= 1; breaker++) {
        http_srv hs;
        http_start(&hs, breaker); /* breaker: one 500, which opens it */
        hs.gone_first = !breaker; /* else one 410, which disables it */
        char url[128];
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook", hs.port);
        static rig r;
        rig_start(&r, url, "127.0.0.0/8");
        static dsp_spec sp;
        rig_spec(&r, &sp, url);
        sp.set.dl.breaker_failures = 1;
        sp.set.dl.breaker_cooldown_ms = 600000;
        sp.created_version = 2;
        rig_apply(&r, &sp, 2);
        dsp_target *t = dsp_loop_target(r.loop, 0);
        assert_true(wait_until(breaker ? target_failed : target_disabled, t, 10000));
        sp.created_version = 3;
        rig_apply(&r, &sp, 3);
        if (!wait_until(all_committed, NULL, 10000))
            fail_msg("%s target created again in one version posted nothing more (%d "
                     "request(s))",
                     breaker ? "an open-breaker" : "a 410-disabled", nreq(&hs));
        rig_stop(&r);
        assert_int_equal(dsp_loop_ntargets(r.loop), 1);
        t = dsp_loop_target(r.loop, 0);
        assert_int_equal(t->spec.created_version, 3);
        assert_int_equal(atomic_load(&t->disabled_pub), 0);
        assert_int_equal(t->br.state, DSP_BR_CLOSED);
        assert_int_equal(t->br.opened, 0);
        assert_int_equal(wh_counter_get(&t->failures), 0);
        assert_int_equal(nreq(&hs), 4); /* the failed one, then 2 + 2 + 1 events */
        rig_destroy(&r);
        http_stop(&hs);
    }
}

/* ordering = by_key: the offset moves while a lane's request is in flight.
 * The reset after the last lane finished kept the state POSTING with lane
 * mode left: nothing posted again (and one request counted in flight). */
static void test_lanes_reset(void **state)
{
    (void)state;
    http_srv hs;
    http_start(&hs, 0);
    hs.slow_idx = 0;
    hs.slow_ms = 1500;
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook", hs.port);
    static rig r;
    rig_start(&r, url, "127.0.0.0/8");
    r.cfg.batch_max_events = NEV;
    static dsp_spec sp;
    rig_spec(&r, &sp, url);
    wh_strlcpy(sp.set.dl.ordering, "by_key", sizeof(sp.set.dl.ordering));
    sp.set.dl.lanes = 2;
    sp.set.dl.max_connections = 1; /* the responder serves one connection at a time */
    rig_apply(&r, &sp, 2);
    assert_true(wait_until(narrived1, &hs, 10000));
    move_offset(1);
    assert_true(wait_until(all_committed, NULL, 15000));
    rig_stop(&r);
    dsp_target *t = dsp_loop_target(r.loop, 0);
    assert_int_equal(dsp_target_inflight(t), 0);
    assert_true(nreq(&hs) >= 2); /* the first answer was dropped, posted again */
    rig_destroy(&r);
    http_stop(&hs);
}

/* The SSRF guard runs when a socket opens. A target's allow_private
 * exception removed at runtime must hold for the next request too, which
 * reused the pooled keep-alive connection to the now refused address. */
static void test_ssrf_exception_removed(void **state)
{
    (void)state;
    http_srv hs;
    http_start(&hs, 0);
    hs.delay_ms = 500;
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook", hs.port);
    static rig r;
    rig_start(&r, url, ""); /* no global exception */
    r.cfg.batch_max_events = 1;
    static dsp_spec sp;
    rig_spec(&r, &sp, url);
    wh_strlcpy(sp.set.dl.allow_private, "127.0.0.0/8", sizeof(sp.set.dl.allow_private));
    rig_apply(&r, &sp, 2);
    assert_true(wait_until(narrived1, &hs, 10000));
    sp.set.dl.allow_private[0] = '\0';
    rig_apply(&r, &sp, 3);
    dsp_target *t = dsp_loop_target(r.loop, 0);
    /* refused from the next request on (retried: the loop keeps trying) */
    assert_true(wait_until(target_failed, t, 15000));
    rig_stop(&r);
    assert_non_null(strstr(t->last_err.curl_err, "allow_private"));
    assert_false(all_committed(NULL));
    assert_true(nreq(&hs) < NEV);
    rig_destroy(&r);
    http_stop(&hs);
}

/* An answer that is no HTTP (no status line: curl's "Received HTTP/0.9 when
 * not allowed", CURLE_UNSUPPORTED_PROTOCOL) is a transfer error, retried;
 * it was permanent: the batch went one event at a time and its first event
 * to the dead-letter queue after one attempt (this fake store has none). */
static void test_garbled_answer_retried(void **state)
{
    (void)state;
    http_srv hs;
    http_start(&hs, 0);
    hs.garbage_first = 2;
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook", hs.port);
    static rig r;
    rig_start(&r, url, "127.0.0.0/8");
    static dsp_spec sp;
    rig_spec(&r, &sp, url);
    rig_apply(&r, &sp, 2);
    assert_true(wait_until(all_committed, NULL, 15000));
    rig_stop(&r);
    dsp_target *t = dsp_loop_target(r.loop, 0);
    assert_int_equal(wh_counter_get(&t->permanent), 0);
    assert_true(wh_counter_get(&t->retries) >= 2);
    assert_int_equal(nreq(&hs), 2 + 3);
    rig_destroy(&r);
    http_stop(&hs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_with_retry),
        cmocka_unit_test(test_unreachable_target),
        cmocka_unit_test(test_runtime_targets),
        cmocka_unit_test(test_change_between_requests),
        cmocka_unit_test(test_rendered_single_mode),
        cmocka_unit_test(test_bad_target_refused),
        cmocka_unit_test(test_breaker_probe_reset),
        cmocka_unit_test(test_recreated_target),
        cmocka_unit_test(test_lanes_reset),
        cmocka_unit_test(test_ssrf_exception_removed),
        cmocka_unit_test(test_garbled_answer_retried),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (dir[0] && system(cmd) != 0)
        rc = rc ? rc : 1;
    return rc;
}
