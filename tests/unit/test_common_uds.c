/* Unit tests: wh_uds servers' memory: what connections keep between
 * requests, and how many requests are served at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <errno.h>
#include <unistd.h>

#include "wh_uds.h"
#include "wh_util.h"

static char dir[64], path[128];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/wh_uds_%d", (int)getpid());
    snprintf(path, sizeof(path), "%s/s.direct", dir);
    mkdir(dir, 0700);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    rmdir(dir);
    return 0;
}

/* Echoes the request back (a reply as large as it). */
static int echo(void *arg, const uint8_t *in, size_t inlen, wh_buf *out, size_t *start)
{
    (void)arg;
    (void)start;
    return wh_buf_append(out, in, inlen);
}

/* A reply built in a buffer of its own, behind 5 bytes the client must not
 * get: out's buffer is swapped for it, the reply starts at *start. */
static int swapped(void *arg, const uint8_t *in, size_t inlen, wh_buf *out, size_t *start)
{
    (void)arg;
    wh_buf own;
    wh_buf_init(&own, 0);
    if (wh_buf_append(&own, "xxxxx", 5) != WH_OK || wh_buf_append(&own, in, inlen) != WH_OK) {
        wh_buf_free(&own);
        return WH_ERR;
    }
    wh_buf t = *out;
    *out = own;
    wh_buf_free(&t);
    *start = 5;
    return WH_OK;
}

/* A start past the reply's end: a handler's mistake. */
static int past_end(void *arg, const uint8_t *in, size_t inlen, wh_buf *out, size_t *start)
{
    (void)arg;
    *start = inlen + 1;
    return wh_buf_append(out, in, inlen);
}

/* Waits (bounded) until the server's held bytes are at most max. */
static size_t held_within(wh_uds_server *s, size_t max)
{
    size_t h = wh_uds_held(s);
    for (int i = 0; i < 1000 && (h = wh_uds_held(s)) > max; i++)
        wh_sleep_ms(5);
    return h;
}

/* wh_uds_frame_ready: nothing, the beginning of a frame (header or body
 * cut), a whole one, the end of the connection; never blocks */
static void test_frame_ready(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    wh_uds_rd rd;
    wh_uds_rd_init(&rd);
    /* no room reserved yet: left to the blocking read */
    assert_int_equal(wh_uds_rd_ready(&rd, sv[0]), WH_UDS_FRAME_PART);
    assert_int_equal(wh_uds_rd_reserve(&rd, 16), WH_OK);
    assert_int_equal(wh_uds_rd_ready(&rd, sv[0]), WH_UDS_FRAME_NONE);
    const uint8_t frame[4 + 5] = {5, 0, 0, 0, 'h', 'e', 'l', 'l', 'o'};
    assert_int_equal(write(sv[1], frame, 2), 2); /* half a header */
    assert_int_equal(wh_uds_rd_ready(&rd, sv[0]), WH_UDS_FRAME_PART);
    assert_int_equal(write(sv[1], frame + 2, 4), 4); /* header and 2 of 5 */
    /* part of a frame buffered: every call reads on */
    assert_int_equal(wh_uds_rd_ready(&rd, sv[0]), WH_UDS_FRAME_PART);
    assert_int_equal(rd.end - rd.off, 6);
    assert_int_equal(wh_uds_rd_ready(&rd, sv[0]), WH_UDS_FRAME_PART);
    assert_int_equal(wh_uds_rd_buffered(&rd), 0);
    assert_int_equal(write(sv[1], frame + 6, 3), 3);
    assert_int_equal(wh_uds_rd_ready(&rd, sv[0]), WH_UDS_FRAME_READY);
    assert_int_equal(wh_uds_rd_buffered(&rd), 1);
    char buf[16];
    assert_int_equal(wh_uds_rd_recv(&rd, sv[0], buf, sizeof(buf), 0), 5);
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(wh_uds_rd_ready(&rd, sv[0]), WH_UDS_FRAME_NONE);
    /* three frames in one recv: then cut from the buffer */
    assert_int_equal(wh_uds_rd_reserve(&rd, 64), WH_OK);
    uint8_t three[3 * 9];
    for (int i = 0; i < 3; i++) {
        memcpy(three + 9 * i, frame, 9);
        three[9 * i + 4] = (uint8_t)('a' + i);
    }
    assert_int_equal(write(sv[1], three, sizeof(three)), sizeof(three));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(wh_uds_rd_ready(&rd, sv[0]), WH_UDS_FRAME_READY);
        assert_int_equal(wh_uds_rd_recv(&rd, sv[0], buf, sizeof(buf), 0), 5);
        assert_int_equal(buf[0], 'a' + i);
        /* the socket is empty now: the buffer alone holds the rest */
        assert_int_equal(wh_uds_rd_buffered(&rd), i < 2);
    }
    /* that recv emptied the socket: no recv until asked again after a wait */
    assert_int_equal(wh_uds_rd_ready(&rd, sv[0]), WH_UDS_FRAME_NONE);
    assert_int_equal(wh_uds_rd_ready(&rd, sv[0]), WH_UDS_FRAME_NONE);
    /* a frame that begins and is not finished: the read waits a second for
     * the rest, then fails */
    assert_int_equal(write(sv[1], frame, 6), 6);
    assert_int_equal(wh_uds_rd_recv(&rd, sv[0], buf, sizeof(buf), 0), -1);
    wh_uds_rd_reset(&rd); /* the caller closes and reconnects */
    uint8_t rest[3];
    assert_int_equal(recv(sv[0], rest, sizeof(rest), MSG_DONTWAIT), -1); /* nothing left */
    /* a length above the caller's room is an error, not an overflow */
    const uint8_t big[4 + 5] = {40, 0, 0, 0, 'x', 'x', 'x', 'x', 'x'};
    assert_int_equal(write(sv[1], big, sizeof(big)), sizeof(big));
    assert_int_equal(wh_uds_rd_recv(&rd, sv[0], buf, sizeof(buf), 1000), -1);
    wh_uds_rd_reset(&rd);
    /* a frame within the timeout */
    assert_int_equal(wh_uds_rd_recv(&rd, sv[0], buf, sizeof(buf), 0), 0);
    assert_int_equal(write(sv[1], frame, sizeof(frame)), sizeof(frame));
    assert_int_equal(wh_uds_rd_recv(&rd, sv[0], buf, sizeof(buf), 1000), 5);
    close(sv[1]); /* the end: ready, and the read tells */
    assert_int_equal(wh_uds_rd_ready(&rd, sv[0]), WH_UDS_FRAME_NONE); /* drained by that read */
    assert_int_equal(wh_uds_rd_ready(&rd, sv[0]), WH_UDS_FRAME_READY);
    assert_int_equal(wh_uds_rd_recv(&rd, sv[0], buf, sizeof(buf), 0), -1);
    wh_uds_rd_free(&rd);
    close(sv[0]);
}

/* The peer of test_reply_pieces: reads the request frame, then writes the
 * reply "hello" in three pieces (half a header; the rest of it and 2 bytes
 * of the body; the rest), a little apart. */
static void *reply_in_pieces(void *arg)
{
    int fd = *(int *)arg;
    uint8_t req[4 + 3];
    size_t got = 0;
    while (got < sizeof(req)) {
        ssize_t r = read(fd, req + got, sizeof(req) - got);
        if (r <= 0)
            return NULL;
        got += (size_t)r;
    }
    const uint8_t rep[4 + 5] = {5, 0, 0, 0, 'h', 'e', 'l', 'l', 'o'};
    const size_t cuts[] = {0, 2, 6, 9};
    for (int i = 0; i < 3; i++) {
        wh_sleep_ms(20);
        if (write(fd, rep + cuts[i], cuts[i + 1] - cuts[i]) != (ssize_t)(cuts[i + 1] - cuts[i]))
            return NULL;
    }
    return NULL;
}

/* A call's reply read with one recvmsg when it is all there, and put
 * together when it comes in pieces; bytes past the reply (a second frame
 * on a connection of one call at a time) fail the call. */
static void test_reply_pieces(void **state)
{
    (void)state;
    int sv[2];
    char err[WH_ERRLEN];
    wh_buf rep;
    wh_buf_init(&rep, 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, reply_in_pieces, &sv[1]), 0);
    assert_int_equal(wh_uds_call(sv[0], "abc", 3, &rep, 1024, 5000, err, sizeof(err)), WH_OK);
    pthread_join(th, NULL);
    assert_int_equal(rep.len, 5);
    assert_memory_equal(rep.data, "hello", 5);
    /* a whole reply waiting before the call: one read */
    const uint8_t two[4 + 2] = {2, 0, 0, 0, 'o', 'k'};
    assert_int_equal(write(sv[1], two, sizeof(two)), sizeof(two));
    assert_int_equal(wh_uds_call(sv[0], "abc", 3, &rep, 1024, 5000, err, sizeof(err)), WH_OK);
    assert_int_equal(rep.len, 2);
    assert_memory_equal(rep.data, "ok", 2);
    uint8_t drop[64];
    assert_int_equal(recv(sv[1], drop, sizeof(drop), MSG_DONTWAIT), 4 + 3); /* the request */
    /* a reply with bytes after it */
    const uint8_t more[4 + 2 + 3] = {2, 0, 0, 0, 'o', 'k', 1, 0, 0};
    assert_int_equal(write(sv[1], more, sizeof(more)), sizeof(more));
    assert_int_equal(wh_uds_call(sv[0], "abc", 3, &rep, 1024, 5000, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "bytes past the reply"));
    /* a reply above max */
    close(sv[0]);
    close(sv[1]);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    const uint8_t big[4] = {0, 4, 0, 0}; /* 1024 */
    assert_int_equal(write(sv[1], big, sizeof(big)), sizeof(big));
    assert_int_equal(wh_uds_call(sv[0], "abc", 3, &rep, 100, 5000, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "larger than"));
    /* the peer closed before replying */
    close(sv[1]);
    assert_int_equal(wh_uds_call(sv[0], "abc", 3, &rep, 100, 5000, err, sizeof(err)), WH_ERR);
    close(sv[0]);
    wh_buf_free(&rep);
}

/* After a request of several MiB (and its reply as large), the connection
 * keeps at most WH_UDS_KEEP_BYTES of each buffer: the few-MiB buffers are
 * not held between requests. A small request after it is served from the
 * kept buffers. */
static void test_kept_buffers_bounded(void **state)
{
    (void)state;
    wh_uds_server *s;
    char err[WH_ERRLEN];
    assert_int_equal(wh_uds_listen(&s, path, 8u << 20, 4, 1, echo, NULL, err, sizeof(err)), WH_OK);
    int fd, refused;
    assert_int_equal(wh_uds_connect(&fd, path, 2000, &refused, err, sizeof(err)), WH_OK);
    size_t big = 3u << 20; /* below the old 4 MiB kept size */
    char *req = malloc(big);
    assert_non_null(req);
    memset(req, 'b', big);
    wh_buf rep;
    wh_buf_init(&rep, 0);
    assert_int_equal(wh_uds_call(fd, req, big, &rep, 8u << 20, 5000, err, sizeof(err)), WH_OK);
    assert_int_equal(rep.len, big);
    assert_int_equal(memcmp(rep.data, req, big), 0);
    size_t h = held_within(s, 2 * WH_UDS_KEEP_BYTES);
    assert_true(h <= 2 * WH_UDS_KEEP_BYTES);
    assert_true(h < big / 4); /* what is kept is small beside the request */
    /* a small one keeps its buffers */
    assert_int_equal(wh_uds_call(fd, "hello", 5, &rep, 8u << 20, 5000, err, sizeof(err)), WH_OK);
    assert_int_equal(rep.len, 5);
    /* the server counts its kept buffers after it wrote the reply: wait
     * (bounded) for the count */
    for (int i = 0; i < 1000 && wh_uds_held(s) == 0; i++)
        wh_sleep_ms(5);
    h = held_within(s, 2 * WH_UDS_KEEP_BYTES);
    assert_true(h > 0 && h <= 2 * WH_UDS_KEEP_BYTES);
    close(fd);
    /* a closed connection holds nothing */
    assert_int_equal(held_within(s, 0), 0);
    wh_buf_free(&rep);
    free(req);
    wh_uds_stop(s);
}

/* The reply is out's bytes from *start: what is before it is not sent. */
static void test_reply_from_start(void **state)
{
    (void)state;
    wh_uds_server *s;
    char err[WH_ERRLEN];
    assert_int_equal(wh_uds_listen(&s, path, 1u << 20, 4, 1, swapped, NULL, err, sizeof(err)),
                     WH_OK);
    int fd, refused;
    assert_int_equal(wh_uds_connect(&fd, path, 2000, &refused, err, sizeof(err)), WH_OK);
    wh_buf rep;
    wh_buf_init(&rep, 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(wh_uds_call(fd, "hello", 5, &rep, 1u << 20, 5000, err, sizeof(err)),
                         WH_OK);
        assert_int_equal(rep.len, 5);
        assert_memory_equal(rep.data, "hello", 5);
    }
    close(fd);
    wh_uds_stop(s);
    /* a start past the end: no reply, the connection is closed */
    assert_int_equal(wh_uds_listen(&s, path, 1u << 20, 4, 1, past_end, NULL, err, sizeof(err)),
                     WH_OK);
    assert_int_equal(wh_uds_connect(&fd, path, 2000, &refused, err, sizeof(err)), WH_OK);
    assert_int_equal(wh_uds_call(fd, "hello", 5, &rep, 1u << 20, 5000, err, sizeof(err)), WH_ERR);
    close(fd);
    wh_buf_free(&rep);
    wh_uds_stop(s);
}

/* The server takes a request's header and the start of its body with one
 * read: requests one at a time are served, a request in pieces too, and a
 * client that sends the next request before the reply to the one before
 * has its connection closed (one call at a time per connection). */
static void test_server_one_call_at_a_time(void **state)
{
    (void)state;
    wh_uds_server *s;
    char err[WH_ERRLEN];
    assert_int_equal(wh_uds_listen(&s, path, 1u << 20, 4, 1, echo, NULL, err, sizeof(err)), WH_OK);
    int fd, refused;
    assert_int_equal(wh_uds_connect(&fd, path, 2000, &refused, err, sizeof(err)), WH_OK);
    const uint8_t req[4 + 3] = {3, 0, 0, 0, 'a', 'b', 'c'};
    uint8_t rep[64];
    /* in pieces: half the header, then the rest */
    assert_int_equal(write(fd, req, 2), 2);
    wh_sleep_ms(20);
    assert_int_equal(write(fd, req + 2, sizeof(req) - 2), sizeof(req) - 2);
    size_t got = 0;
    while (got < sizeof(req)) {
        ssize_t r = read(fd, rep + got, sizeof(req) - got);
        assert_true(r > 0);
        got += (size_t)r;
    }
    assert_memory_equal(rep, req, sizeof(req)); /* the echo */
    /* two requests in one write: the connection is closed */
    uint8_t two[2 * sizeof(req)];
    memcpy(two, req, sizeof(req));
    memcpy(two + sizeof(req), req, sizeof(req));
    assert_int_equal(write(fd, two, sizeof(two)), sizeof(two));
    assert_int_equal(read(fd, rep, sizeof(rep)), 0);
    close(fd);
    wh_uds_stop(s);
}

/* wh_uds_callv: a request in more pieces than one sendmsg takes (some
 * empty, one of 6 MiB: above the connection's send buffer, WH_UDS_SNDBUF
 * doubled, so writes are partial) arrives as their concatenation. */
static void test_callv_pieces(void **state)
{
    (void)state;
    wh_uds_server *s;
    char err[WH_ERRLEN];
    assert_int_equal(wh_uds_listen(&s, path, 8u << 20, 4, 1, echo, NULL, err, sizeof(err)), WH_OK);
    int fd, refused;
    assert_int_equal(wh_uds_connect(&fd, path, 2000, &refused, err, sizeof(err)), WH_OK);
    enum { NP = 3000 };
    struct iovec *iov = calloc(NP, sizeof(*iov));
    size_t big = 6u << 20;
    char *data = malloc(big + NP * 8);
    assert_non_null(iov);
    assert_non_null(data);
    size_t total = 0;
    for (int i = 0; i < NP; i++) {
        size_t l = i == 1500 ? big : i % 7 == 0 ? 0 : (size_t)(i % 5) + 1;
        for (size_t j = 0; j < l; j++)
            data[total + j] = (char)(i * 31 + (int)j);
        iov[i].iov_base = data + total;
        iov[i].iov_len = l;
        total += l;
    }
    wh_buf rep;
    wh_buf_init(&rep, 0);
    assert_int_equal(wh_uds_callv(fd, iov, NP, &rep, 8u << 20, 5000, err, sizeof(err)), WH_OK);
    assert_int_equal(rep.len, total);
    assert_int_equal(memcmp(rep.data, data, total), 0);
    /* one piece; then nothing to send */
    assert_int_equal(wh_uds_callv(fd, iov + 1, 1, &rep, 8u << 20, 5000, err, sizeof(err)), WH_OK);
    assert_int_equal(rep.len, 2);
    assert_memory_equal(rep.data, iov[1].iov_base, 2);
    assert_int_equal(wh_uds_callv(fd, iov, 1, &rep, 8u << 20, 5000, err, sizeof(err)), WH_ERR);
    close(fd);
    wh_buf_free(&rep);
    free(data);
    free(iov);
    wh_uds_stop(s);
}

/* A handler that blocks until released, counting how many run at once. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int in, max_in, open;
    int hold_probes, probes_in; /* test_probe_after_probes: probes wait too */
} gate;

static gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0};

static int blocking(void *arg, const uint8_t *in, size_t inlen, wh_buf *out, size_t *start)
{
    (void)arg;
    (void)start;
    if (inlen == 2 && in[0] == 0x2a && in[1] == 0) { /* a probe: at once, unless held */
        pthread_mutex_lock(&g.mu);
        if (g.hold_probes) {
            g.probes_in++;
            pthread_cond_broadcast(&g.cv);
            while (g.hold_probes)
                pthread_cond_wait(&g.cv, &g.mu);
            g.probes_in--;
        }
        pthread_mutex_unlock(&g.mu);
        return wh_buf_append(out, "ok", 2);
    }
    pthread_mutex_lock(&g.mu);
    g.in++;
    if (g.in > g.max_in)
        g.max_in = g.in;
    pthread_cond_broadcast(&g.cv);
    while (!g.open)
        pthread_cond_wait(&g.cv, &g.mu);
    g.in--;
    pthread_mutex_unlock(&g.mu);
    return wh_buf_append(out, in, inlen);
}

typedef struct caller {
    int rc;
    int timeout_ms; /* probe_thread's (0: 30 s) */
} caller;

/* One call of msg on a new connection, waiting up to timeout_ms: its
 * status into c->rc. */
static void call_msg(caller *c, const char *msg, size_t len, int timeout_ms)
{
    char err[WH_ERRLEN];
    int fd, refused;
    c->rc = WH_ERR;
    if (wh_uds_connect(&fd, path, 2000, &refused, err, sizeof(err)) != WH_OK)
        return;
    wh_buf rep;
    wh_buf_init(&rep, 0);
    c->rc = wh_uds_call(fd, msg, len, &rep, 1024, timeout_ms, err, sizeof(err));
    wh_buf_free(&rep);
    close(fd);
}

static void *call_thread(void *p)
{
    call_msg(p, "x", 1, 30000);
    return NULL;
}

/* Sends a Request of an empty GetState (known_version 0: two bytes, like a
 * probe), which the blocking handler holds until released. */
static void *getstate_thread(void *p)
{
    static const char gs[2] = {0x32, 0x00}; /* Request.get_state, empty */
    call_msg(p, gs, 2, 30000);
    return NULL;
}

/* Waits up to ms for n handlers to run at once: 1 when they do. */
static int handlers_in(int n, int ms)
{
    for (int waited = 0;; waited += 10) {
        pthread_mutex_lock(&g.mu);
        int in = g.in;
        pthread_mutex_unlock(&g.mu);
        if (in >= n)
            return 1;
        if (waited >= ms)
            return 0;
        wh_sleep_ms(10);
    }
}

/* With max_busy 2, five connections sending at once are served two at a
 * time (so at most two requests and their replies are in memory); all are
 * answered once the handlers are released. */
static void test_busy_bounded(void **state)
{
    (void)state;
    wh_uds_server *s;
    char err[WH_ERRLEN];
    assert_int_equal(wh_uds_listen(&s, path, 1 << 16, 8, 2, blocking, NULL, err, sizeof(err)),
                     WH_OK);
    pthread_t th[5];
    caller cs[5];
    for (int i = 0; i < 5; i++)
        assert_int_equal(pthread_create(&th[i], NULL, call_thread, &cs[i]), 0);
    pthread_mutex_lock(&g.mu);
    while (g.in < 2)
        pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
    /* the other three are connected and have sent: they wait for a slot */
    for (int i = 0; i < 1000 && wh_uds_conns(s) < 5; i++)
        wh_sleep_ms(5);
    assert_int_equal(wh_uds_conns(s), 5);
    wh_sleep_ms(200);
    assert_int_equal(wh_uds_busy(s), 2);
    pthread_mutex_lock(&g.mu);
    assert_int_equal(g.in, 2);
    g.open = 1;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    for (int i = 0; i < 5; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(cs[i].rc, WH_OK);
    }
    assert_int_equal(g.max_in, 2);
    wh_uds_stop(s);
}

/* A request of one empty message (a Request of Stats: the readiness
 * probe) is served while every slot holds a request that waits (the
 * store's writes on a hung disk): a daemon stuck that way still says so. */
static void test_probe_beside_slots(void **state)
{
    (void)state;
    pthread_mutex_lock(&g.mu);
    g.in = g.max_in = g.open = 0;
    pthread_mutex_unlock(&g.mu);
    wh_uds_server *s;
    char err[WH_ERRLEN];
    assert_int_equal(wh_uds_listen(&s, path, 1 << 16, 8, 1, blocking, NULL, err, sizeof(err)),
                     WH_OK);
    pthread_t th;
    caller c;
    assert_int_equal(pthread_create(&th, NULL, call_thread, &c), 0);
    pthread_mutex_lock(&g.mu);
    while (g.in < 1)
        pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
    /* two other requests of one empty message (GetState, known_version 0)
     * that wait (for the store's state lock): they wait for the slot, and
     * take none of the probes' places (before, they took both: the probe
     * then waited for the slot). Given a second to reach the handler. */
    pthread_t gth[2];
    caller gc[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&gth[i], NULL, getstate_thread, &gc[i]), 0);
    (void)handlers_in(3, 1000);
    int fd, refused;
    assert_int_equal(wh_uds_connect(&fd, path, 2000, &refused, err, sizeof(err)), WH_OK);
    wh_buf rep;
    wh_buf_init(&rep, 0);
    const char probe[2] = {0x2a, 0x00}; /* Request.stats, empty */
    if (wh_uds_call(fd, probe, 2, &rep, 1024, 3000, err, sizeof(err)) != WH_OK)
        fail_msg("the probe was not answered while the only slot was held: %s", err);
    assert_int_equal(rep.len, 2);
    assert_memory_equal(rep.data, "ok", 2);
    /* any other request waits for the slot */
    assert_int_equal(wh_uds_call(fd, "xy", 2, &rep, 1024, 300, err, sizeof(err)), WH_ERR);
    close(fd);
    wh_buf_free(&rep);
    pthread_mutex_lock(&g.mu);
    g.open = 1;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    pthread_join(th, NULL);
    assert_int_equal(c.rc, WH_OK);
    for (int i = 0; i < 2; i++) {
        pthread_join(gth[i], NULL);
        assert_int_equal(gc[i].rc, WH_OK);
    }
    wh_uds_stop(s);
}

/* Sends a probe (Request.stats, empty); 0 into c->rc when answered. */
static void *probe_thread(void *p)
{
    caller *c = p;
    static const char probe[2] = {0x2a, 0x00};
    call_msg(c, probe, 2, c->timeout_ms > 0 ? c->timeout_ms : 30000);
    return NULL;
}

/* A probe that came while both probes' places were taken (two other
 * probes, their replies slow) and every slot holds a waiting request is
 * served once a probe's place comes free: before, it waited for a slot,
 * for as long as the slots' requests waited (a hung disk). */
static void test_probe_after_probes(void **state)
{
    (void)state;
    pthread_mutex_lock(&g.mu);
    g.in = g.max_in = g.open = 0;
    g.hold_probes = 1;
    g.probes_in = 0;
    pthread_mutex_unlock(&g.mu);
    wh_uds_server *s;
    char err[WH_ERRLEN];
    assert_int_equal(wh_uds_listen(&s, path, 1 << 16, 8, 1, blocking, NULL, err, sizeof(err)),
                     WH_OK);
    pthread_t th, pth[2];
    caller c = {0}, pc[2] = {{0}};
    assert_int_equal(pthread_create(&th, NULL, call_thread, &c), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&pth[i], NULL, probe_thread, &pc[i]), 0);
    pthread_mutex_lock(&g.mu);
    while (g.in < 1 || g.probes_in < 2)
        pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
    /* a third probe (answered within 3 s, or c3.rc is WH_ERR): connected
     * and sent while both places are taken */
    pthread_t th3;
    caller c3 = {0};
    c3.timeout_ms = 3000;
    assert_int_equal(pthread_create(&th3, NULL, probe_thread, &c3), 0);
    for (int i = 0; i < 1000 && wh_uds_conns(s) < 4; i++)
        wh_sleep_ms(5);
    wh_sleep_ms(200); /* the server reads it */
    pthread_mutex_lock(&g.mu);
    g.hold_probes = 0;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    for (int i = 0; i < 2; i++) {
        pthread_join(pth[i], NULL);
        assert_int_equal(pc[i].rc, WH_OK);
    }
    pthread_join(th3, NULL);
    pthread_mutex_lock(&g.mu);
    g.open = 1;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    pthread_join(th, NULL);
    wh_uds_stop(s);
    if (c3.rc != WH_OK)
        fail_msg("the third probe was not answered while the only slot was held");
    assert_int_equal(c.rc, WH_OK);
}

static void *open_later(void *p)
{
    (void)p;
    wh_sleep_ms(300);
    pthread_mutex_lock(&g.mu);
    g.open = 1;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    return NULL;
}

/* A connection waiting for a slot when the server stops is not served:
 * the stop waits for the running handler only. */
static void test_stop_while_waiting(void **state)
{
    (void)state;
    wh_uds_server *s;
    char err[WH_ERRLEN];
    pthread_mutex_lock(&g.mu);
    g.in = g.max_in = g.open = 0;
    pthread_mutex_unlock(&g.mu);
    assert_int_equal(wh_uds_listen(&s, path, 1 << 16, 8, 1, blocking, NULL, err, sizeof(err)),
                     WH_OK);
    pthread_t th[2], opener;
    caller cs[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, call_thread, &cs[i]), 0);
    pthread_mutex_lock(&g.mu);
    while (g.in < 1)
        pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
    for (int i = 0; i < 1000 && wh_uds_conns(s) < 2; i++)
        wh_sleep_ms(5);
    assert_int_equal(pthread_create(&opener, NULL, open_later, NULL), 0);
    wh_uds_stop(s);
    pthread_join(opener, NULL);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(cs[i].rc, WH_ERR); /* stopping: no reply */
    }
    assert_int_equal(g.max_in, 1);
}

/* A server that does not accept (stopped by SIGSTOP, hung) and whose listen
 * backlog is full (clients that gave up leave their connections in it):
 * wh_uds_connect fails, at once with no wait and within its wait otherwise.
 * Before, connect() blocked until the server accepted again: the admin's
 * /metrics hung while the store was stopped. alarm() ends the test if it
 * hangs. */
static void test_connect_backlog_full(void **state)
{
    (void)state;
    struct sockaddr_un sa = {0};
    sa.sun_family = AF_UNIX;
    assert_int_equal(wh_strlcpy(sa.sun_path, path, sizeof(sa.sun_path)), WH_OK);
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(l >= 0);
    assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(l, 0), 0);
    enum { MAXQ = 256 };
    int held[MAXQ], n = 0;
    for (; n < MAXQ; n++) {
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        assert_true(s >= 0);
        if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
            assert_int_equal(errno, EAGAIN);
            close(s);
            break;
        }
        held[n] = s;
    }
    assert_true(n < MAXQ); /* the backlog is full */
    alarm(30);
    int fd = -1, refused = 1;
    char err[WH_ERRLEN];
    assert_int_equal(wh_uds_connect(&fd, path, 0, &refused, err, sizeof(err)), WH_ERR);
    assert_int_equal(refused, 0);
    assert_non_null(strstr(err, "no server"));
    assert_int_equal(wh_uds_connect(&fd, path, 300, &refused, err, sizeof(err)), WH_ERR);
    assert_int_equal(refused, 0);
    assert_non_null(strstr(err, "no server within 300 ms"));
    alarm(0);
    /* a connection that is in the backlog with no greeting says so */
    for (int i = 0; i < n; i++)
        close(held[i]);
    close(l);
    unlink(path);
    l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(l, 4), 0);
    alarm(30);
    assert_int_equal(wh_uds_connect(&fd, path, 0, &refused, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "no greeting"));
    alarm(0);
    close(l);
}

int main(void)
{
    wh_log_init("test", WH_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_ready),
        cmocka_unit_test(test_reply_pieces),
        cmocka_unit_test_setup_teardown(test_reply_from_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kept_buffers_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callv_pieces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_one_call_at_a_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_while_waiting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe_beside_slots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe_after_probes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_backlog_full, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
