/* Unit tests: NNG req/rep transport over a real ipc:// socket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <nng/nng.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <nng/protocol/reqrep0/req.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "wh_ipc.h"
#include "wh_notify.h"
#include "wh_util.h"

static char dir[64], url[128];

static void echo_handler(void *arg, const Walhook__Request *req, Walhook__Reply *rep, void **cookie)
{
    int *calls = arg;
    (*calls)++;
    if (req->body_case == WALHOOK__REQUEST__BODY_GET_OFFSET) {
        if (req->get_offset->tenant == NULL || req->get_offset->tenant[0] == '\0') {
            wh_reply_error(rep, 400, "get_offset: missing tenant");
            return;
        }
        Walhook__OffsetReply *o = malloc(sizeof(*o));
        Walhook__Position *p = malloc(sizeof(*p));
        walhook__offset_reply__init(o);
        walhook__position__init(p);
        p->lsn = 42;
        p->seq = (uint32_t)strlen(req->get_offset->consumer);
        o->committed = p;
        rep->body_case = WALHOOK__REPLY__BODY_OFFSET;
        rep->offset = o;
        *cookie = o;
    }
}

static void echo_done(void *arg, Walhook__Reply *rep, void *cookie)
{
    Walhook__OffsetReply *o = cookie;
    if (o != NULL) {
        free(o->committed);
        free(o);
    }
}

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/wh_ipc_%d/sub", (int)getpid());
    snprintf(url, sizeof(url), "ipc://%s/s.sock", dir);
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf /tmp/wh_ipc_%d", (int)getpid());
    return system(cmd) == 0 ? 0 : -1;
}

static int call_offset(wh_client *c, const char *tenant, const char *consumer, Walhook__Reply **rep,
                       char *err)
{
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__GetOffset g = WALHOOK__GET_OFFSET__INIT;
    g.tenant = (char *)tenant;
    g.consumer = (char *)consumer;
    req.body_case = WALHOOK__REQUEST__BODY_GET_OFFSET;
    req.get_offset = &g;
    return wh_client_call(c, &req, rep, err, WH_ERRLEN);
}

static void test_roundtrip_and_errors(void **state)
{
    int calls = 0;
    wh_server *s;
    wh_client *c;
    char err[WH_ERRLEN];
    assert_int_equal(
        wh_server_start(&s, url, 3, 1 << 20, echo_handler, echo_done, &calls, err, sizeof(err)),
        WH_OK);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(stat(url + 6, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    assert_int_equal(wh_client_open(&c, url, 2000, 1 << 20, err, sizeof(err)), WH_OK);
    Walhook__Reply *rep;
    assert_int_equal(call_offset(c, "t", "abcd", &rep, err), WH_OK);
    assert_int_equal(rep->body_case, WALHOOK__REPLY__BODY_OFFSET);
    assert_true(rep->offset->committed->lsn == 42);
    assert_int_equal(rep->offset->committed->seq, 4);
    walhook__reply__free_unpacked(rep, NULL);

    assert_int_equal(call_offset(c, "", "x", &rep, err), WH_ERR);
    assert_non_null(strstr(err, "missing tenant"));
    assert_null(rep);

    /* Garbage bytes: the server answers with an error, it does not crash. */
    nng_socket raw;
    assert_int_equal(nng_req0_open(&raw), 0);
    nng_socket_set_ms(raw, NNG_OPT_RECVTIMEO, 2000);
    assert_int_equal(nng_dial(raw, url, NULL, 0), 0);
    assert_int_equal(nng_send(raw, "\xff\xff\xff\xff garbage", 12, 0), 0);
    char *buf = NULL;
    size_t sz = 0;
    assert_int_equal(nng_recv(raw, &buf, &sz, NNG_FLAG_ALLOC), 0);
    Walhook__Reply *r = walhook__reply__unpack(NULL, sz, (uint8_t *)buf);
    assert_non_null(r);
    assert_int_equal(r->status, 400);
    assert_non_null(strstr(r->error, "malformed request"));
    walhook__reply__free_unpacked(r, NULL);
    nng_free(buf, sz);
    nng_close(raw);

    /* Restart the server: the client reconnects by itself. */
    wh_server_stop(s);
    assert_int_equal(
        wh_server_start(&s, url, 1, 1 << 20, echo_handler, echo_done, &calls, err, sizeof(err)),
        WH_OK);
    int ok = 0;
    for (int i = 0; i < 20 && !ok; i++) {
        if (call_offset(c, "t", "x", &rep, err) == WH_OK) {
            ok = 1;
            walhook__reply__free_unpacked(rep, NULL);
        }
    }
    assert_true(ok);
    wh_client_close(c);
    wh_server_stop(s);
}

/* A raw connection to the direct socket: connected and greeted. */
static int direct_raw(const char *u)
{
    struct sockaddr_un sa = {0};
    sa.sun_family = AF_UNIX;
    int pn = snprintf(sa.sun_path, sizeof(sa.sun_path), "%.90s.direct", u + 6);
    assert_true(pn > 0 && (size_t)pn < sizeof(sa.sun_path));
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    char hello = 0;
    assert_int_equal(read(fd, &hello, 1), 1);
    assert_int_equal(hello, 'Y');
    return fd;
}

static void frame_send(int fd, uint32_t len, const void *body, size_t n)
{
    uint8_t h[4] = {(uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16), (uint8_t)(len >> 24)};
    assert_int_equal(write(fd, h, 4), 4);
    if (n > 0)
        assert_int_equal(write(fd, body, n), (ssize_t)n);
}

/* ipc:// calls go over the direct socket (0600); bad frames get a 400 or
 * close that connection only; the server serves on. */
static void test_direct(void **state)
{
    int calls = 0;
    wh_server *s;
    wh_client *c;
    char err[WH_ERRLEN], path[160];
    assert_int_equal(
        wh_server_start(&s, url, 1, 1 << 16, echo_handler, echo_done, &calls, err, sizeof(err)),
        WH_OK);
    snprintf(path, sizeof(path), "%s.direct", url + 6);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(wh_client_open(&c, url, 2000, 1 << 16, err, sizeof(err)), WH_OK);
    assert_true(wh_client_is_direct(c));
    Walhook__Reply *rep;
    assert_int_equal(call_offset(c, "t", "abc", &rep, err), WH_OK);
    assert_int_equal(rep->offset->committed->seq, 3);
    walhook__reply__free_unpacked(rep, NULL);
    assert_int_equal(calls, 1);

    /* garbage in a well-formed frame: a 400 reply */
    int fd = direct_raw(url);
    frame_send(fd, 12, "\xff\xff\xff\xff garbage", 12);
    uint8_t h[4], body[256];
    assert_int_equal(recv(fd, h, 4, MSG_WAITALL), 4);
    uint32_t n = h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
    assert_true(n > 0 && n < sizeof(body));
    assert_int_equal(recv(fd, body, n, MSG_WAITALL), (ssize_t)n);
    Walhook__Reply *r = walhook__reply__unpack(NULL, n, body);
    assert_non_null(r);
    assert_int_equal(r->status, 400);
    assert_non_null(strstr(r->error, "malformed request"));
    walhook__reply__free_unpacked(r, NULL);
    /* a frame above max_msg, and one of length 0: the connection closes */
    frame_send(fd, (1 << 16) + 1, NULL, 0);
    assert_int_equal(recv(fd, h, 4, MSG_WAITALL), 0);
    close(fd);
    fd = direct_raw(url);
    frame_send(fd, 0, NULL, 0);
    assert_int_equal(recv(fd, h, 4, MSG_WAITALL), 0);
    close(fd);
    /* a peer that sends half a frame and goes away */
    fd = direct_raw(url);
    frame_send(fd, 100, "abc", 3);
    close(fd);
    assert_int_equal(call_offset(c, "t", "abcd", &rep, err), WH_OK);
    assert_int_equal(rep->offset->committed->seq, 4);
    walhook__reply__free_unpacked(rep, NULL);
    /* a request larger than max_msg fails on the client's side of things
     * too, without taking the server down */
    char big[70000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(call_offset(c, "t", big, &rep, err), WH_ERR);
    assert_int_equal(call_offset(c, "t", "ab", &rep, err), WH_OK);
    walhook__reply__free_unpacked(rep, NULL);
    wh_client_close(c);
    wh_server_stop(s);
    assert_int_not_equal(stat(path, &st), 0); /* removed at stop */
}

/* Past WH_IPC_DIRECT_MAX (64) direct connections a client is told so and
 * calls over NNG. */
static void test_direct_full(void **state)
{
    int calls = 0;
    wh_server *s;
    wh_client *c[65];
    char err[WH_ERRLEN];
    assert_int_equal(
        wh_server_start(&s, url, 2, 1 << 16, echo_handler, echo_done, &calls, err, sizeof(err)),
        WH_OK);
    for (int i = 0; i < 65; i++) {
        Walhook__Reply *rep;
        assert_int_equal(wh_client_open(&c[i], url, 2000, 1 << 16, err, sizeof(err)), WH_OK);
        assert_int_equal(call_offset(c[i], "t", "x", &rep, err), WH_OK);
        walhook__reply__free_unpacked(rep, NULL);
        assert_int_equal(wh_client_is_direct(c[i]), i < 64);
    }
    assert_int_equal(calls, 65);
    for (int i = 0; i < 65; i++)
        wh_client_close(c[i]);
    wh_server_stop(s);
}

static void test_timeout_names_endpoint(void **state)
{
    wh_client *c;
    char err[WH_ERRLEN];
    char u2[160];
    snprintf(u2, sizeof(u2), "ipc://%s/nobody.sock", dir);
    assert_int_equal(wh_client_open(&c, u2, 200, 1 << 20, err, sizeof(err)), WH_OK);
    Walhook__Reply *rep;
    assert_int_equal(call_offset(c, "t", "x", &rep, err), WH_ERR);
    assert_non_null(strstr(err, "nobody.sock"));
    wh_client_close(c);
}

/* A client told not to wait for a server that is not there fails its call
 * at once ("no server (...)"), where by default it waits for the server to
 * appear up to its timeout ("no server within N ms"); once the server is
 * up, the same client calls it. */
static void test_connect_wait_zero(void **state)
{
    wh_client *c, *d;
    char err[WH_ERRLEN];
    assert_int_equal(wh_client_open(&c, url, 30000, 1 << 16, err, sizeof(err)), WH_OK);
    assert_int_equal(wh_client_open(&d, url, 300, 1 << 16, err, sizeof(err)), WH_OK);
    wh_client_set_connect_wait(c, 0);
    Walhook__Reply *rep;
    assert_int_equal(call_offset(c, "t", "x", &rep, err), WH_ERR);
    assert_non_null(strstr(err, "no server ("));
    assert_null(strstr(err, "within"));
    assert_int_equal(call_offset(d, "t", "x", &rep, err), WH_ERR);
    assert_non_null(strstr(err, "no server within 300 ms ("));

    int calls = 0;
    wh_server *s;
    assert_int_equal(
        wh_server_start(&s, url, 1, 1 << 16, echo_handler, echo_done, &calls, err, sizeof(err)),
        WH_OK);
    assert_int_equal(call_offset(c, "t", "abc", &rep, err), WH_OK);
    assert_int_equal(rep->offset->committed->seq, 3);
    walhook__reply__free_unpacked(rep, NULL);
    assert_true(wh_client_is_direct(c));
    wh_client_close(c);
    wh_client_close(d);
    wh_server_stop(s);
}

/* The server restarted (a store SIGKILLed and started again) between two
 * calls of a client whose direct connection was up: the next call is not
 * lost to the dead connection ("send failed: Broken pipe"): nothing of it
 * reached any server, so it goes again on a new connection. */
static void test_server_restarted(void **state)
{
    wh_client *c;
    char err[WH_ERRLEN];
    int calls = 0;
    wh_server *s;
    assert_int_equal(
        wh_server_start(&s, url, 1, 1 << 16, echo_handler, echo_done, &calls, err, sizeof(err)),
        WH_OK);
    assert_int_equal(wh_client_open(&c, url, 3000, 1 << 16, err, sizeof(err)), WH_OK);
    Walhook__Reply *rep;
    assert_int_equal(call_offset(c, "t", "ab", &rep, err), WH_OK);
    walhook__reply__free_unpacked(rep, NULL);
    assert_true(wh_client_is_direct(c));
    wh_server_stop(s);
    assert_int_equal(
        wh_server_start(&s, url, 1, 1 << 16, echo_handler, echo_done, &calls, err, sizeof(err)),
        WH_OK);
    if (call_offset(c, "t", "abcd", &rep, err) != WH_OK)
        fail_msg("call after the server's restart: %s", err);
    assert_int_equal(rep->offset->committed->seq, 4);
    walhook__reply__free_unpacked(rep, NULL);
    assert_int_equal(calls, 2);
    wh_client_close(c);
    wh_server_stop(s);
}

static void slow_handler(void *arg, const Walhook__Request *req, Walhook__Reply *rep, void **cookie)
{
    wh_sleep_ms(3000);
}

typedef struct call_arg {
    wh_client *c;
    int rc;
    uint64_t took_ms;
} call_arg;

static void *call_thread(void *p)
{
    call_arg *a = p;
    Walhook__Reply *rep;
    char err[WH_ERRLEN];
    uint64_t t0 = wh_now_ms();
    a->rc = call_offset(a->c, "t", "x", &rep, err);
    a->took_ms = wh_now_ms() - t0;
    return NULL;
}

static void test_interrupt(void **state)
{
    wh_server *s;
    wh_client *c;
    char err[WH_ERRLEN];
    char u3[160];
    snprintf(u3, sizeof(u3), "ipc://%s/slow.sock", dir);
    assert_int_equal(
        wh_server_start(&s, u3, 1, 1 << 20, slow_handler, NULL, NULL, err, sizeof(err)), WH_OK);
    assert_int_equal(wh_client_open(&c, u3, 10000, 1 << 20, err, sizeof(err)), WH_OK);
    call_arg a = {c, 0, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, call_thread, &a), 0);
    wh_sleep_ms(200);
    wh_client_interrupt(c);
    pthread_join(th, NULL);
    assert_int_equal(a.rc, WH_ERR);
    assert_true(a.took_ms < 2000); /* not the 10 s timeout */
    /* later calls are capped at 1 s */
    uint64_t t0 = wh_now_ms();
    Walhook__Reply *rep;
    assert_int_equal(call_offset(c, "t", "x", &rep, err), WH_ERR);
    assert_true(wh_now_ms() - t0 < 2500);
    wh_client_close(c);
    wh_server_stop(s);
}

/* ---- bounded teardown (issue 5, defect 1) ----
 * Clients call as fast as they can, then all close while the server stops:
 * peers vanish with requests and replies in flight, as when `walhook up` is
 * killed and every daemon gets SIGTERM at once. With NNG 1.5.2 a pipe
 * teardown then sometimes never finishes (upstream issue #1543) and a plain
 * nng_close() waits for it forever: the old teardown hung within 9 to 142
 * rounds. Every stop and close must return within a few seconds. */
static atomic_int calling;

/* NNG 1.5.2 itself leaks a pipe whose dial completes while its socket
 * closes, which this test provokes on purpose (seen in 2 of 5 ASan runs).
 * For this program only, leaks of memory NNG allocated are not reported;
 * what wh_ipc allocates still is. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libnng.so\n";
}
static int gave_up_close; /* NNG's reaper is stuck for the rest of the process */

static void jitter_handler(void *arg, const Walhook__Request *req, Walhook__Reply *rep,
                           void **cookie)
{
    usleep((useconds_t)(rand() % 300));
}

static void *busy_client(void *p)
{
    wh_client *c = NULL;
    char err[WH_ERRLEN];
    if (wh_client_open(&c, url, 50, 1 << 20, err, sizeof(err)) != WH_OK)
        return NULL;
    while (atomic_load(&calling)) {
        Walhook__Reply *rep = NULL;
        if (call_offset(c, "t", "x", &rep, err) == WH_OK)
            walhook__reply__free_unpacked(rep, NULL);
    }
    wh_client_close(c);
    return NULL;
}

typedef struct stop_job {
    wh_server *s;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
} stop_job;

static void *stop_server(void *p)
{
    stop_job *j = p;
    wh_server_stop(j->s);
    pthread_mutex_lock(&j->mu);
    j->done = 1;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

static void test_stop_with_peers_vanishing(void **state)
{
    enum { ROUNDS = 100, CLIENTS = 6 };
    char err[WH_ERRLEN];
    int abandoned = 0, r;
    for (r = 0; r < ROUNDS && !abandoned; r++) {
        static stop_job j;
        memset(&j, 0, sizeof(j));
        pthread_mutex_init(&j.mu, NULL);
        pthread_cond_init(&j.cv, NULL);
        assert_int_equal(
            wh_server_start(&j.s, url, 4, 1 << 20, jitter_handler, NULL, NULL, err, sizeof(err)),
            WH_OK);
        atomic_store(&calling, 1);
        pthread_t cl[CLIENTS], st;
        for (int i = 0; i < CLIENTS; i++)
            assert_int_equal(pthread_create(&cl[i], NULL, busy_client, NULL), 0);
        usleep((useconds_t)(10000 + rand() % 20000));
        atomic_store(&calling, 0); /* the clients close while the server stops */
        uint64_t t0 = wh_now_ms();
        assert_int_equal(pthread_create(&st, NULL, stop_server, &j), 0);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 10;
        pthread_mutex_lock(&j.mu);
        while (!j.done && pthread_cond_timedwait(&j.cv, &j.mu, &until) == 0)
            ;
        int done = j.done;
        pthread_mutex_unlock(&j.mu);
        if (!done) {
            fprintf(stderr, "round %d: wh_server_stop did not return within 10 s\n", r);
            fail();
        }
        uint64_t took = wh_now_ms() - t0;
        pthread_join(st, NULL);
        for (int i = 0; i < CLIENTS; i++)
            pthread_join(cl[i], NULL);
        pthread_cond_destroy(&j.cv);
        pthread_mutex_destroy(&j.mu);
        /* A close given up after 1 s: NNG's reaper is stuck for the rest of
         * this process, and every later round would only repeat that. */
        if (took >= 900)
            abandoned = 1;
    }
    gave_up_close = abandoned;
    fprintf(stderr, "%d rounds, %s\n", r,
            abandoned ? "the last one had to give up a stuck nng_close (bounded)"
                      : "no stuck nng_close");
}

/* Notify endpoints: the setting wins; ipc:// is derived; tcp:// needs the
 * setting. Pub/sub: a subscriber receives what is published once
 * connected; a receive with nothing published times out (0); an interrupt
 * ends a receive (-1). */
static void test_pubsub(void **state)
{
    char n[256], err[WH_ERRLEN];
    assert_int_equal(wh_notify_url(url, "", n, sizeof(n), err, sizeof(err)), WH_OK);
    assert_true(strlen(n) > 7 && strcmp(n + strlen(n) - 7, ".notify") == 0);
    assert_int_equal(wh_notify_url("tcp://127.0.0.1:7000", "", n, sizeof(n), err, sizeof(err)),
                     WH_ERR);
    assert_non_null(strstr(err, "store.notify_endpoint"));
    assert_int_equal(wh_notify_url("tcp://127.0.0.1:7000", "tcp://127.0.0.1:7009", n, sizeof(n),
                                   err, sizeof(err)),
                     WH_OK);
    assert_string_equal(n, "tcp://127.0.0.1:7009");

    char nurl[256];
    snprintf(nurl, sizeof(nurl), "ipc://%s/n.sock", dir);
    wh_pub *p = NULL;
    wh_sub *s = NULL;
    assert_int_equal(wh_pub_open(&p, nurl, err, sizeof(err)), WH_OK);
    assert_int_equal(wh_sub_open(&s, nurl, err, sizeof(err)), WH_OK);
    for (int i = 0; i < 200 && !wh_sub_connected(s); i++)
        usleep(10000);
    assert_true(wh_sub_connected(s));
    char buf[64];
    int got = 0;
    /* a message published before the pipe is fully set up may be lost (a
     * hint): publish until one arrives */
    for (int i = 0; i < 50 && got <= 0; i++) {
        wh_pub_send(p, "tenant\0abc", 10);
        got = wh_sub_recv(s, buf, sizeof(buf), 100);
    }
    assert_int_equal(got, 10);
    assert_memory_equal(buf, "tenant\0abc", 10);
    while (wh_sub_recv(s, buf, sizeof(buf), 50) > 0) /* the extra copies */
        ;
    assert_int_equal(wh_sub_recv(s, buf, sizeof(buf), 50), 0);
    wh_sub_interrupt(s);
    assert_int_equal(wh_sub_recv(s, buf, sizeof(buf), 5000), -1);
    wh_sub_close(s);
    wh_pub_close(p);
}

/* A publisher on ipc://DIR/NAME.sock and a subscriber connected to it
 * (over the direct socket). */
static void direct_pubsub(const char *name, wh_pub **p, wh_sub **s)
{
    char nurl[256], err[WH_ERRLEN];
    snprintf(nurl, sizeof(nurl), "ipc://%s/%s.sock", dir, name);
    assert_int_equal(wh_pub_open(p, nurl, err, sizeof(err)), WH_OK);
    assert_int_equal(wh_sub_open(s, nurl, err, sizeof(err)), WH_OK);
    for (int i = 0; i < 200 && !wh_sub_connected(*s); i++)
        usleep(10000);
    assert_true(wh_sub_connected(*s));
}

/* Messages a blocking read took along stay in the subscriber's buffer,
 * where epoll cannot see them: wh_sub_buffered says so, and wh_sub_pending
 * then answers from the buffer (the dispatcher's loop after the
 * notification thread handed the socket over). */
static void test_sub_buffered(void **state)
{
    (void)state;
    wh_pub *p = NULL;
    wh_sub *s = NULL;
    direct_pubsub("b", &p, &s);
    char buf[64];
    int seen = 0; /* the publisher has taken the subscriber on */
    for (int i = 0; i < 200 && !seen; i++) {
        wh_pub_send(p, "x", 1);
        seen = wh_sub_recv(s, buf, sizeof(buf), 20) > 0;
    }
    assert_true(seen);
    while (wh_sub_recv(s, buf, sizeof(buf), 100) > 0) /* the extra copies */
        ;
    assert_int_equal(wh_sub_buffered(s), 0);
    wh_pub_send(p, "one", 3);
    wh_pub_send(p, "two", 3);
    wh_pub_send(p, "three", 5);
    usleep(100000); /* all three in the socket */
    assert_int_equal(wh_sub_recv(s, buf, sizeof(buf), 2000), 3);
    assert_memory_equal(buf, "one", 3);
    assert_int_equal(wh_sub_buffered(s), 1);
    assert_int_equal(wh_sub_pending(s, sizeof(buf)), WH_SUB_READY);
    assert_int_equal(wh_sub_recv(s, buf, sizeof(buf), 0), 3);
    assert_memory_equal(buf, "two", 3);
    assert_int_equal(wh_sub_buffered(s), 1);
    assert_int_equal(wh_sub_recv(s, buf, sizeof(buf), 0), 5);
    assert_memory_equal(buf, "three", 5);
    assert_int_equal(wh_sub_buffered(s), 0);
    wh_sub_close(s);
    wh_pub_close(p);
}

/* The direct publisher never blocks on a subscriber that does not read:
 * what does not fit is dropped whole, a frame begun is finished, and the
 * subscriber reads intact messages in order. The 65th subscriber gets
 * them over NNG. */
static void test_pubsub_direct(void **state)
{
    char nurl[256], err[WH_ERRLEN];
    wh_pub *p = NULL;
    wh_sub *s = NULL;
    direct_pubsub("d", &p, &s);
    snprintf(nurl, sizeof(nurl), "ipc://%s/d.sock", dir);
    size_t big = 200u << 10;
    char *m = malloc(big), *buf = malloc(WH_NOTE_MSG_MAX);
    assert_non_null(m);
    assert_non_null(buf);
    for (int i = 1; i <= 200; i++) { /* 40 MB at a subscriber that is not reading */
        memset(m, i, big);
        wh_pub_send(p, m, big);
    }
    int last = 0, n, got = 0;
    while ((n = wh_sub_recv(s, buf, WH_NOTE_MSG_MAX, 300)) > 0) {
        assert_int_equal(n, (int)big);
        int v = (unsigned char)buf[0];
        assert_true(v > last);
        for (size_t k = 0; k < big; k += 4093)
            assert_int_equal((unsigned char)buf[k], v);
        assert_int_equal((unsigned char)buf[big - 1], v);
        last = v;
        got++;
    }
    assert_true(got >= 1 && got < 200); /* some dropped, none corrupt */
    wh_pub_send(p, "after", 5);
    assert_int_equal(wh_sub_recv(s, buf, WH_NOTE_MSG_MAX, 2000), 5);
    assert_memory_equal(buf, "after", 5);

    wh_sub *many[65];
    for (int i = 0; i < 64; i++) /* 63 more direct, and one over NNG */
        assert_int_equal(wh_sub_open(&many[i], nurl, err, sizeof(err)), WH_OK);
    for (int i = 0; i < 64; i++)
        for (int k = 0; k < 300 && !wh_sub_connected(many[i]); k++) {
            wh_sub_recv(many[i], buf, WH_NOTE_MSG_MAX, 10);
            usleep(5000);
        }
    int ok = 0;
    for (int i = 0; i < 50 && ok == 0; i++) {
        wh_pub_send(p, "hint", 4);
        ok = wh_sub_recv(many[63], buf, WH_NOTE_MSG_MAX, 100) == 4;
    }
    assert_true(ok);
    for (int i = 0; i < 64; i++)
        wh_sub_close(many[i]);
    wh_sub_interrupt(s);
    assert_int_equal(wh_sub_recv(s, buf, WH_NOTE_MSG_MAX, 5000), -1);
    wh_sub_close(s);
    wh_pub_close(p);
    free(m);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_and_errors),
        cmocka_unit_test(test_direct),
        cmocka_unit_test(test_direct_full),
        cmocka_unit_test(test_timeout_names_endpoint),
        cmocka_unit_test(test_connect_wait_zero),
        cmocka_unit_test(test_server_restarted),
        cmocka_unit_test(test_interrupt),
        cmocka_unit_test(test_pubsub),
        cmocka_unit_test(test_pubsub_direct),
        cmocka_unit_test(test_sub_buffered),
        /* last: a stuck NNG reaper would slow down every later close */
        cmocka_unit_test(test_stop_with_peers_vanishing),
    };
    int failed = cmocka_run_group_tests_name("common_ipc", tests, setup, teardown);
    /* NNG frees closed sockets on its reaper thread: let it finish before
     * the leak checker looks (not when a close was given up: it never ends) */
    if (!gave_up_close)
        nng_fini();
    return failed;
}
