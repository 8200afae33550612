/* wh_uds: length-prefixed messages over a unix stream socket (wh_uds.h). */
#include "wh_uds.h"
#include "wh_util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define WH_UDS_REPLY_MS 5000 /* a server's reply write */
#define WH_UDS_BODY_MS 30000 /* a request's body, once its length came */
#define WH_UDS_MAX_SUBS 64   /* a publisher's subscribers (its poll set) */
/* A request whose body is a Request of Stats and nothing else (the
 * readiness probe: field 5, length-delimited, and a zero length) does not
 * wait for a serving slot: up to WH_UDS_PROBES of them are served beside
 * the max_busy ones, so a daemon whose slots all hold requests that wait
 * (the store's writes on a hung disk) still says so. Stats reads memory
 * only. Only Stats: other requests of one empty message (a GetState of
 * known_version 0, the first read of a watcher, walhook status or the
 * admin) may wait for a lock a write holds across the disk (the store's
 * state lock), and two of them would take the probes' places. */
#define WH_UDS_PROBE_BYTES 2
#define WH_UDS_PROBE_TAG 0x2a /* (5 << 3) | 2: walhook.proto Request.stats */
#define WH_UDS_PROBES 2
/* SO_SNDBUF of both ends of every direct connection (requests, replies,
 * notifications to a subscriber): the kernel caps it at net.core.wmem_max
 * and doubles it, so with wmem_max >= 2 MiB a whole request or reply of
 * about 1 MiB (an Append, a Read's events) is queued by one write instead
 * of going over in pieces, each a wake-up of the reader and of the writer.
 * On the wide backlog (wmem_max 4 MiB) the time from an Append's send to
 * its decoding in the store went from 2.2 to 1.3 ms per 1 MiB request; with
 * the stock wmem_max (212992) the buffer is 416 KiB. Kernel memory, not in
 * the daemons' memory plans: up to twice this per connection while its
 * bytes are unread (INTERNALS "IPC"). */
#define WH_UDS_SNDBUF (2 << 20)

/* a listening socket (server and publisher) */
typedef struct uds_listener {
    int lfd;
    int wake[2]; /* its thread's stop pipe */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
} uds_listener;

typedef struct uds_conn {
    struct wh_uds_server *s;
    int fd;
    pthread_t thr;
    int done; /* the thread ended and closed fd (under s->mu) */
    struct uds_conn *next;
} uds_conn;

struct wh_uds_server {
    uds_listener l;
    pthread_t acc;
    int has_acc;
    atomic_int stopping;
    pthread_mutex_t mu;
    pthread_cond_t slot_cv; /* a serving slot or a probe's place came free, or stopping (mu) */
    uds_conn *conns;
    int nconns; /* live */
    int max_conns;
    int busy, max_busy; /* requests being served (mu), at most max_busy */
    int probes;         /* of WH_UDS_PROBES, served beside them (mu) */
    atomic_size_t held; /* the connections' buffers between requests */
    size_t max_msg;
    wh_uds_fn fn;
    void *arg;
};

int wh_uds_path(const char *url, char *out, size_t len)
{
    if (strncmp(url, "ipc://", 6) != 0)
        return WH_ERR;
    int n = snprintf(out, len, "%s.direct", url + 6);
    if (n < 0 || (size_t)n >= len || (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return WH_ERR;
    return WH_OK;
}

/* A request connection's send buffer (WH_UDS_SNDBUF); a refusal leaves the
 * default, which only costs wake-ups. */
static void sndbuf_set(int fd)
{
    int sz = WH_UDS_SNDBUF;
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
}

static int64_t now_ms(void)
{
    return (int64_t)wh_now_ms();
}

/* Waits for events on fd until the deadline (ms, CLOCK_MONOTONIC; < 0: none).
 * 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int ms = -1;
        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            ms = left <= 0 ? 0 : left > 1000000 ? 1000000 : (int)left;
        }
        struct pollfd p = {fd, events, 0};
        int r = poll(&p, 1, ms);
        if (r > 0)
            return 1;
        if (r == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

/* wait_fd for a call that fails on a timeout: 0 ready, -1 error or
 * timeout (errno ETIMEDOUT). */
static int wait_ready(int fd, short events, int64_t deadline)
{
    int w = wait_fd(fd, events, deadline);
    if (w == 0)
        errno = ETIMEDOUT;
    return w > 0 ? 0 : -1;
}

/* Reads exactly n bytes. 1 done, 0 peer closed before the first byte,
 * -1 error or timeout (errno ETIMEDOUT), or closed midway (EPIPE). */
static int read_full(int fd, void *buf, size_t n, int64_t deadline)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, (char *)buf + got, n - got, MSG_DONTWAIT);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r == 0) {
            if (got == 0)
                return 0;
            errno = EPIPE;
            return -1;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        if (wait_ready(fd, POLLIN, deadline) != 0)
            return -1;
    }
    return 1;
}

/* A frame's 4-byte little-endian length */
static void hdr_put(uint8_t hdr[4], size_t len)
{
    hdr[0] = (uint8_t)len;
    hdr[1] = (uint8_t)(len >> 8);
    hdr[2] = (uint8_t)(len >> 16);
    hdr[3] = (uint8_t)(len >> 24);
}

static size_t hdr_get(const uint8_t hdr[4])
{
    return (size_t)hdr[0] | (size_t)hdr[1] << 8 | (size_t)hdr[2] << 16 | (size_t)hdr[3] << 24;
}

/* Writes the frame header then body. WH_OK or WH_ERR (errno). */
static int write_frame(int fd, const void *body, size_t len, int64_t deadline)
{
    uint8_t hdr[4];
    hdr_put(hdr, len);
    size_t total = 4 + len, sent = 0;
    while (sent < total) {
        struct iovec iov[2];
        int n = 0;
        if (sent < 4) {
            iov[n].iov_base = hdr + sent;
            iov[n++].iov_len = 4 - sent;
            iov[n].iov_base = (void *)body;
            iov[n++].iov_len = len;
        } else {
            iov[n].iov_base = (char *)body + (sent - 4);
            iov[n++].iov_len = len - (sent - 4);
        }
        struct msghdr mh = {0};
        mh.msg_iov = iov;
        mh.msg_iovlen = (size_t)n;
        ssize_t r = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r >= 0) {
            sent += (size_t)r;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return WH_ERR;
        if (wait_ready(fd, POLLOUT, deadline) != 0)
            return WH_ERR;
    }
    return WH_OK;
}

/* Reads the rest of a frame's body of len bytes into b, after the b->len
 * bytes it holds. 1 done, -1 error (errno). */
static int read_rest(int fd, wh_buf *b, size_t len, int64_t deadline)
{
    if (b->len < len) {
        if (wh_buf_reserve(b, len - b->len) != WH_OK) {
            errno = ENOMEM;
            return -1;
        }
        int r = read_full(fd, b->data + b->len, len - b->len, deadline);
        if (r <= 0) {
            if (r == 0)
                errno = EPIPE;
            return -1;
        }
    }
    b->len = len;
    return 1;
}

/* Reads a frame's header and what of its body is there into b (reset
 * first; b->len: the body's bytes read), its length into *len: 1 done, 0
 * peer closed, -1 error (errno; EMSGSIZE for a length of 0 or above max,
 * EPROTO for bytes past the frame). The frame is the only one the
 * connection carries then (one call at a time on it: a client sends a
 * request once it has the reply to the one before, and a failed call
 * closes it), so once the socket is readable one recvmsg takes the header
 * and up to a small buffer's worth of the body: a wait and one read for a
 * small frame instead of a read that finds nothing, a wait and two reads.
 * Bytes that came along past the frame break that rule. */
static int read_head(int fd, wh_buf *b, size_t max, int64_t deadline, size_t *len)
{
    wh_buf_reset(b);
    /* room for a small frame (a NUL's byte kept: 4 KiB allocated) */
    size_t guess = b->cap > 4096 ? b->cap - 1 : 4095;
    if (guess > max)
        guess = max;
    if (b->max != 0 && guess > b->max)
        guess = b->max;
    if (wh_buf_reserve(b, guess) != WH_OK) {
        errno = ENOMEM;
        return -1;
    }
    if (wait_ready(fd, POLLIN, deadline) != 0)
        return -1;
    uint8_t hdr[4];
    struct iovec v[2] = {{hdr, sizeof(hdr)}, {b->data, guess}};
    struct msghdr mh = {0};
    mh.msg_iov = v;
    mh.msg_iovlen = 2;
    ssize_t n;
    do
        n = recvmsg(fd, &mh, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n == 0)
        return 0;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
        return -1;
    size_t got = n < 0 ? 0 : (size_t)n;
    if (got < sizeof(hdr)) { /* the header in pieces (or a wake-up for nothing) */
        int r = read_full(fd, hdr + got, sizeof(hdr) - got, deadline);
        if (r <= 0) {
            if (r == 0 && got > 0)
                errno = EPIPE;
            return r == 0 && got > 0 ? -1 : r;
        }
        got = sizeof(hdr);
    }
    size_t l = hdr_get(hdr), body = got - sizeof(hdr);
    if (l == 0 || l > max) {
        errno = EMSGSIZE;
        return -1;
    }
    if (body > l) {
        errno = EPROTO;
        return -1;
    }
    b->len = body;
    *len = l;
    return 1;
}

/* ---- listening socket (server and publisher) ---- */

/* Binds path (mode 0600; a stale socket file is replaced) and listens. */
static int listener_open(uds_listener *l, const char *path, char *err, size_t errlen)
{
    l->lfd = -1;
    l->wake[0] = l->wake[1] = -1;
    struct sockaddr_un sa = {0};
    sa.sun_family = AF_UNIX;
    if (wh_strlcpy(l->path, path, sizeof(l->path)) != WH_OK ||
        wh_strlcpy(sa.sun_path, path, sizeof(sa.sun_path)) != WH_OK)
        return wh_seterr(err, errlen, "ipc socket path too long: %s", path);
    l->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l->lfd < 0 || pipe2(l->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        wh_seterr(err, errlen, "ipc %s: %s", path, strerror(errno));
        goto error;
    }
    /* a socket file left by a killed process: nobody answers on it (the
     * caller's NNG listener on the endpoint already refused a second
     * instance) */
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    mode_t old = umask(0077);
    int rc = bind(l->lfd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (rc != 0 || chmod(path, 0600) != 0 || listen(l->lfd, 64) != 0) {
        wh_seterr(err, errlen, "ipc %s: cannot listen: %s", path, strerror(errno));
        goto error;
    }
    return WH_OK;
error:
    if (l->lfd >= 0)
        close(l->lfd);
    if (l->wake[0] >= 0) {
        close(l->wake[0]);
        close(l->wake[1]);
    }
    l->lfd = l->wake[0] = l->wake[1] = -1;
    return WH_ERR;
}

static void listener_close(uds_listener *l, int unlink_path)
{
    close(l->lfd);
    close(l->wake[0]);
    close(l->wake[1]);
    if (unlink_path)
        unlink(l->path);
}

/* ---- server ---- */

/* Whether the request (len bytes, the start of it in b) is a probe. */
static int is_probe(const wh_buf *b, size_t len)
{
    const uint8_t *p = (const uint8_t *)b->data;
    return len == WH_UDS_PROBE_BYTES && b->len == len && p[0] == WH_UDS_PROBE_TAG && p[1] == 0;
}

/* Takes a serving slot, or for a probe a probe's place (*probe 1; give
 * it back with probe_give): a probe that finds both places taken takes
 * whichever comes free first, a place or a slot, and does not wait for a
 * slot alone (held by writes on a hung disk, for as long as that lasts).
 * WH_ERR when the server stops meanwhile. */
static int slot_take(wh_uds_server *s, int probe_shaped, int *probe)
{
    *probe = 0;
    pthread_mutex_lock(&s->mu);
    int ok = 0;
    while (!atomic_load(&s->stopping)) {
        if (probe_shaped && s->probes < WH_UDS_PROBES) {
            s->probes++;
            *probe = 1;
            ok = 1;
            break;
        }
        if (s->busy < s->max_busy) {
            s->busy++;
            ok = 1;
            break;
        }
        pthread_cond_wait(&s->slot_cv, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return ok ? WH_OK : WH_ERR;
}

static void probe_give(wh_uds_server *s)
{
    pthread_mutex_lock(&s->mu);
    s->probes--;
    /* a probe waiting for a place or a slot; the others wait on */
    pthread_cond_broadcast(&s->slot_cv);
    pthread_mutex_unlock(&s->mu);
}

static void slot_give(wh_uds_server *s)
{
    pthread_mutex_lock(&s->mu);
    s->busy--;
    pthread_cond_signal(&s->slot_cv);
    pthread_mutex_unlock(&s->mu);
}

/* A buffer kept between requests: at most WH_UDS_KEEP_BYTES. */
static void keep_small(wh_buf *b)
{
    if (b->cap > WH_UDS_KEEP_BYTES)
        wh_buf_free(b);
    else
        wh_buf_reset(b);
}

/* Each request (but a probe: WH_UDS_PROBE_BYTES) is served holding one of the server's max_busy
 * slots, taken once its length is known and before its body is allocated; its buffers are brought
 * back to WH_UDS_KEEP_BYTES before the slot is given back. So the connections hold at most
 * max_conns x 2 x WH_UDS_KEEP_BYTES between requests, and max_busy x (request + reply) in flight.
 */
static void *conn_thread(void *p)
{
    uds_conn *c = p;
    wh_uds_server *s = c->s;
    wh_buf in, out;
    wh_buf_init(&in, 0);
    wh_buf_init(&out, 0);
    size_t held = 0; /* what this connection counts in s->held */
    while (!atomic_load(&s->stopping)) {
        /* the header and the start of the body (a small buffer's worth)
         * before a slot, the rest in one */
        size_t len;
        int r = read_head(c->fd, &in, s->max_msg, -1, &len);
        if (r <= 0) {
            if (r < 0 && errno == EMSGSIZE)
                wh_warn("ipc %s: a message of a wrong size (0 or over ipc.max_msg_bytes = %zu); "
                        "closing that connection",
                        s->l.path, s->max_msg);
            else if (r < 0 && errno == EPROTO)
                wh_warn("ipc %s: a request sent before the reply to the one before; closing "
                        "that connection",
                        s->l.path);
            break;
        }
        int probe;
        if (slot_take(s, is_probe(&in, len), &probe) != WH_OK)
            break;
        int ok = read_rest(c->fd, &in, len, now_ms() + WH_UDS_BODY_MS) == 1;
        size_t start = 0;
        if (ok) {
            wh_buf_reset(&out);
            ok = s->fn(s->arg, (const uint8_t *)in.data, in.len, &out, &start) == WH_OK &&
                 start <= out.len &&
                 !atomic_load(&s->stopping); /* stopping: the client resends to the next one */
        }
        keep_small(&in);
        if (ok)
            ok = write_frame(c->fd, out.data + start, out.len - start,
                             now_ms() + WH_UDS_REPLY_MS) == WH_OK;
        keep_small(&out);
        size_t now = in.cap + out.cap;
        if (now != held) {
            atomic_fetch_add(&s->held, now);
            atomic_fetch_sub(&s->held, held);
            held = now;
        }
        if (probe)
            probe_give(s);
        else
            slot_give(s);
        if (!ok)
            break;
    }
    wh_buf_free(&in);
    wh_buf_free(&out);
    atomic_fetch_sub(&s->held, held);
    pthread_mutex_lock(&s->mu);
    close(c->fd);
    c->fd = -1;
    c->done = 1;
    s->nconns--;
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Joins and frees connections whose thread ended. */
static void reap(wh_uds_server *s)
{
    pthread_mutex_lock(&s->mu);
    uds_conn **pp = &s->conns, *dead = NULL;
    while (*pp != NULL) {
        uds_conn *c = *pp;
        if (c->done) {
            *pp = c->next;
            c->next = dead;
            dead = c;
        } else {
            pp = &c->next;
        }
    }
    pthread_mutex_unlock(&s->mu);
    while (dead != NULL) {
        uds_conn *n = dead->next;
        pthread_join(dead->thr, NULL);
        free(dead);
        dead = n;
    }
}

static void *accept_thread(void *p)
{
    wh_uds_server *s = p;
    while (!atomic_load(&s->stopping)) {
        struct pollfd pf[2] = {{s->l.lfd, POLLIN, 0}, {s->l.wake[0], POLLIN, 0}};
        int r = poll(pf, 2, 1000);
        reap(s);
        if (r < 0 && errno != EINTR)
            break;
        if (r <= 0 || (pf[1].revents & POLLIN) || !(pf[0].revents & POLLIN))
            continue;
        int fd = accept4(s->l.lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        pthread_mutex_lock(&s->mu);
        int room = s->nconns < s->max_conns && !atomic_load(&s->stopping);
        uds_conn *c = room ? calloc(1, sizeof(*c)) : NULL;
        if (c != NULL) {
            c->s = s;
            c->fd = fd;
            sndbuf_set(fd);
            if (send(fd, "Y", 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1 ||
                pthread_create(&c->thr, NULL, conn_thread, c) != 0) {
                free(c);
                c = NULL;
            } else {
                c->next = s->conns;
                s->conns = c;
                s->nconns++;
            }
        }
        pthread_mutex_unlock(&s->mu);
        if (c == NULL) {
            if (!room)
                (void)!send(fd, "N", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            close(fd);
        }
    }
    return NULL;
}

int wh_uds_listen(wh_uds_server **out, const char *path, size_t max_msg, int max_conns,
                  int max_busy, wh_uds_fn fn, void *arg, char *err, size_t errlen)
{
    wh_uds_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return wh_seterr(err, errlen, "out of memory");
    s->max_msg = max_msg;
    s->max_conns = max_conns > 0 ? max_conns : 1;
    s->max_busy = max_busy > 0 ? max_busy : 1;
    s->fn = fn;
    s->arg = arg;
    if (listener_open(&s->l, path, err, errlen) != WH_OK) {
        free(s);
        return WH_ERR;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->slot_cv, NULL);
    if (pthread_create(&s->acc, NULL, accept_thread, s) != 0) {
        wh_seterr(err, errlen, "ipc %s: cannot start a thread: %s", path, strerror(errno));
        listener_close(&s->l, 1);
        pthread_cond_destroy(&s->slot_cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return WH_ERR;
    }
    s->has_acc = 1;
    *out = s;
    return WH_OK;
}

void wh_uds_stop(wh_uds_server *s)
{
    if (s == NULL)
        return;
    atomic_store(&s->stopping, 1);
    if (s->has_acc) {
        (void)!write(s->l.wake[1], "x", 1);
        pthread_join(s->acc, NULL);
    }
    pthread_mutex_lock(&s->mu);
    pthread_cond_broadcast(&s->slot_cv); /* waiting for a slot: they end */
    for (uds_conn *c = s->conns; c != NULL; c = c->next)
        if (!c->done)
            shutdown(c->fd, SHUT_RDWR);
    pthread_mutex_unlock(&s->mu);
    for (uds_conn *c = s->conns, *n; c != NULL; c = n) {
        n = c->next;
        pthread_join(c->thr, NULL);
        free(c);
    }
    listener_close(&s->l, 1);
    pthread_cond_destroy(&s->slot_cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int wh_uds_conns(wh_uds_server *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->nconns;
    pthread_mutex_unlock(&s->mu);
    return n;
}

size_t wh_uds_held(wh_uds_server *s)
{
    return atomic_load(&s->held);
}

int wh_uds_busy(wh_uds_server *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->busy;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ---- client ---- */

int wh_uds_connect(int *fd, const char *path, int timeout_ms, int *refused, char *err,
                   size_t errlen)
{
    *refused = 0;
    *fd = -1;
    struct sockaddr_un sa = {0};
    sa.sun_family = AF_UNIX;
    if (wh_strlcpy(sa.sun_path, path, sizeof(sa.sun_path)) != WH_OK)
        return wh_seterr(err, errlen, "ipc socket path too long: %s", path);
    int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    /* why the last try failed: an errno, 0 (closed at once) or -1 (no
     * greeting in time) */
    int last = 0;
    for (;;) {
        /* Non-blocking connect: a server that does not accept (stopped by
         * SIGSTOP, hung) leaves every connection in its listen backlog, and
         * once that is full a blocking connect() waits until it accepts
         * again, whatever timeout_ms says (the admin's /metrics hung
         * there). Non-blocking, a full backlog is EAGAIN, tried again
         * until the deadline. The descriptor is blocking again once
         * connected, as the calls expect. */
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (s < 0)
            return wh_seterr(err, errlen, "ipc %s: %s", path, strerror(errno));
        int c = connect(s, (struct sockaddr *)&sa, sizeof(sa));
        if (c == 0) {
            int fl = fcntl(s, F_GETFL);
            if (fl < 0 || fcntl(s, F_SETFL, fl & ~O_NONBLOCK) != 0) {
                int e = errno;
                close(s);
                return wh_seterr(err, errlen, "ipc %s: fcntl: %s", path, strerror(e));
            }
            /* a live server greets at once: at least 200 ms for that,
             * whatever is left of the timeout */
            char hello = 0;
            int64_t hd = now_ms() + 200;
            int r = read_full(s, &hello, 1, hd > deadline ? hd : deadline);
            if (r == 1 && hello == 'Y') {
                sndbuf_set(s);
                *fd = s;
                return WH_OK;
            }
            close(s);
            if (r == 1 && hello == 'N') {
                *refused = 1;
                return wh_seterr(err, errlen,
                                 "ipc %s: the server has no room for another "
                                 "direct connection",
                                 path);
            }
            /* closed at once: the server is stopping; or no greeting in
             * time: it does not accept (stopped, hung); try again */
            last = r < 0 ? -1 : 0;
        } else {
            int e = errno;
            close(s);
            if (e != ENOENT && e != ECONNREFUSED && e != EAGAIN && e != EINTR)
                return wh_seterr(err, errlen, "ipc %s: cannot connect: %s", path, strerror(e));
            last = e;
        }
        if (now_ms() >= deadline) {
            const char *why = last > 0    ? strerror(last)
                              : last == 0 ? "closed at once"
                                          : "connected, no greeting: not accepting";
            if (timeout_ms <= 0)
                return wh_seterr(err, errlen, "ipc %s: no server (%s)", path, why);
            return wh_seterr(err, errlen, "ipc %s: no server within %d ms (%s)", path, timeout_ms,
                             why);
        }
        wh_sleep_ms(10);
    }
}

/* Reads a call's reply frame into b (reset first), as read_head, then the
 * rest of its body. */
static int read_reply_frame(int fd, wh_buf *b, size_t max, int64_t deadline)
{
    size_t len;
    int r = read_head(fd, b, max, deadline, &len);
    return r <= 0 ? r : read_rest(fd, b, len, deadline);
}

/* Reads a call's reply frame. */
static int read_reply(int fd, wh_buf *reply, size_t max, int64_t deadline, int timeout_ms,
                      char *err, size_t errlen)
{
    int r = read_reply_frame(fd, reply, max, deadline);
    if (r == 1)
        return WH_OK;
    if (r == 0)
        return wh_seterr(err, errlen, "no reply: the server closed the connection");
    if (errno == ETIMEDOUT)
        return wh_seterr(err, errlen, "no reply within %d ms", timeout_ms);
    if (errno == EMSGSIZE)
        return wh_seterr(err, errlen, "reply larger than ipc.max_msg_bytes (%zu)", max);
    if (errno == EPROTO)
        return wh_seterr(err, errlen, "bytes past the reply (not one reply per call)");
    return wh_seterr(err, errlen, "receive failed: %s", strerror(errno));
}

int wh_uds_call(int fd, const void *req, size_t len, wh_buf *reply, size_t max, int timeout_ms,
                char *err, size_t errlen)
{
    struct iovec v = {.iov_base = (void *)req, .iov_len = len};
    return wh_uds_callv(fd, &v, 1, reply, max, timeout_ms, err, errlen);
}

/* Writes the frame header then the pieces, at most WH_UDS_IOV_MAX iovecs a
 * sendmsg. WH_OK or WH_ERR (errno). */
#define WH_UDS_IOV_MAX 1024
static int write_framev(int fd, const struct iovec *iov, int iovcnt, size_t len, int64_t deadline)
{
    uint8_t hdr[4];
    hdr_put(hdr, len);
    int i = -1;     /* piece being written (-1: the header) */
    size_t off = 0; /* bytes of it already written */
    while (i < iovcnt) {
        struct iovec v[WH_UDS_IOV_MAX];
        int n = 0;
        for (int k = i; k < iovcnt && n < WH_UDS_IOV_MAX; k++) {
            const char *base = k < 0 ? (const char *)hdr : (const char *)iov[k].iov_base;
            size_t l = k < 0 ? sizeof(hdr) : iov[k].iov_len;
            if (k == i) {
                base += off;
                l -= off;
            }
            if (l == 0)
                continue;
            v[n].iov_base = (void *)base;
            v[n++].iov_len = l;
        }
        if (n == 0)
            break;
        struct msghdr mh = {0};
        mh.msg_iov = v;
        mh.msg_iovlen = (size_t)n;
        ssize_t r = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r >= 0) {
            /* move past what was written */
            size_t w = (size_t)r;
            while (i < iovcnt && w > 0) {
                size_t l = (i < 0 ? sizeof(hdr) : iov[i].iov_len) - off;
                if (w < l) {
                    off += w;
                    w = 0;
                    break;
                }
                w -= l;
                i++;
                off = 0;
            }
            while (i >= 0 && i < iovcnt && iov[i].iov_len == 0)
                i++;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return WH_ERR;
        if (wait_ready(fd, POLLOUT, deadline) != 0)
            return WH_ERR;
    }
    return WH_OK;
}

int wh_uds_callv_sent(int fd, const struct iovec *iov, int iovcnt, wh_buf *reply, size_t max,
                      int timeout_ms, int *send_errno, char *err, size_t errlen)
{
    int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    size_t len = 0;
    *send_errno = 0;
    for (int k = 0; k < iovcnt; k++)
        len += iov[k].iov_len;
    if (len == 0 || len > 0xffffffffu) {
        *send_errno = EINVAL;
        return wh_seterr(err, errlen, "request of %zu bytes cannot be framed", len);
    }
    if (write_framev(fd, iov, iovcnt, len, deadline) != WH_OK) {
        *send_errno = errno != 0 ? errno : EIO;
        return wh_seterr(err, errlen, "send failed: %s",
                         errno == ETIMEDOUT ? "no peer within the timeout" : strerror(errno));
    }
    return read_reply(fd, reply, max, deadline, timeout_ms, err, errlen);
}

int wh_uds_callv(int fd, const struct iovec *iov, int iovcnt, wh_buf *reply, size_t max,
                 int timeout_ms, char *err, size_t errlen)
{
    int send_errno;
    return wh_uds_callv_sent(fd, iov, iovcnt, reply, max, timeout_ms, &send_errno, err, errlen);
}

/* ---- broadcast ---- */

typedef struct uds_sub {
    int fd;
    char *pend; /* the rest of a frame the socket had no room for */
    size_t pend_len, pend_off;
    struct uds_sub *next;
} uds_sub;

struct wh_uds_pub {
    uds_listener l;
    pthread_t acc;
    atomic_int stopping;
    pthread_mutex_t mu;
    uds_sub *subs;
    int nsubs, max_subs;
};

static void sub_free(uds_sub *u)
{
    close(u->fd);
    free(u->pend);
    free(u);
}

/* Writes what is pending. 1 all written, 0 some left, -1 dead. Under mu. */
static int sub_flush(uds_sub *u)
{
    while (u->pend_off < u->pend_len) {
        ssize_t r = send(u->fd, u->pend + u->pend_off, u->pend_len - u->pend_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r > 0) {
            u->pend_off += (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        return -1;
    }
    free(u->pend);
    u->pend = NULL;
    u->pend_len = u->pend_off = 0;
    return 1;
}

/* Unlinks and frees a dead subscriber. Under mu. */
static void subs_prune(wh_uds_pub *p, uds_sub *dead)
{
    for (uds_sub **pp = &p->subs; *pp != NULL;) {
        if (*pp == dead) {
            *pp = dead->next;
            sub_free(dead);
            p->nsubs--;
            return;
        }
        pp = &(*pp)->next;
    }
}

static void *pub_thread(void *arg)
{
    wh_uds_pub *p = arg;
    struct pollfd pf[2 + WH_UDS_MAX_SUBS];
    uds_sub *who[WH_UDS_MAX_SUBS];
    while (!atomic_load(&p->stopping)) {
        int n = 2;
        pf[0] = (struct pollfd){p->l.lfd, POLLIN, 0};
        pf[1] = (struct pollfd){p->l.wake[0], POLLIN, 0};
        pthread_mutex_lock(&p->mu);
        for (uds_sub *u = p->subs; u != NULL && n < 2 + WH_UDS_MAX_SUBS; u = u->next) {
            who[n - 2] = u;
            pf[n++] = (struct pollfd){u->fd, (short)(u->pend != NULL ? POLLOUT : 0), 0};
        }
        pthread_mutex_unlock(&p->mu);
        int r = poll(pf, (nfds_t)n, 1000);
        if (r < 0 && errno != EINTR)
            break;
        if (r <= 0)
            continue;
        if (pf[1].revents & POLLIN) {
            char b[64];
            (void)!read(p->l.wake[0], b, sizeof(b));
        }
        pthread_mutex_lock(&p->mu);
        for (int i = 2; i < n; i++) {
            if (pf[i].revents == 0)
                continue;
            /* still listed? (a send may have removed it meanwhile) */
            uds_sub *u = p->subs;
            while (u != NULL && u != who[i - 2])
                u = u->next;
            if (u == NULL)
                continue;
            if ((pf[i].revents & (POLLHUP | POLLERR)) ||
                ((pf[i].revents & POLLOUT) && sub_flush(u) < 0))
                subs_prune(p, u);
        }
        pthread_mutex_unlock(&p->mu);
        if (!(pf[0].revents & POLLIN))
            continue;
        int fd = accept4(p->l.lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
            continue;
        pthread_mutex_lock(&p->mu);
        int room = p->nsubs < p->max_subs;
        uds_sub *u = room ? calloc(1, sizeof(*u)) : NULL;
        if (u != NULL && send(fd, "Y", 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1) {
            int sz = 4 << 20; /* a few pushes of events in flight */
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
            u->fd = fd;
            u->next = p->subs;
            p->subs = u;
            p->nsubs++;
            fd = -1;
        } else {
            free(u);
        }
        pthread_mutex_unlock(&p->mu);
        if (fd >= 0) {
            if (!room)
                (void)!send(fd, "N", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            close(fd);
        }
    }
    return NULL;
}

int wh_uds_pub_listen(wh_uds_pub **out, const char *path, int max_subs, char *err, size_t errlen)
{
    wh_uds_pub *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return wh_seterr(err, errlen, "out of memory");
    p->max_subs = max_subs < 1 ? 1 : max_subs > WH_UDS_MAX_SUBS ? WH_UDS_MAX_SUBS : max_subs;
    if (listener_open(&p->l, path, err, errlen) != WH_OK) {
        free(p);
        return WH_ERR;
    }
    pthread_mutex_init(&p->mu, NULL);
    if (pthread_create(&p->acc, NULL, pub_thread, p) != 0) {
        wh_seterr(err, errlen, "ipc %s: cannot start a thread: %s", path, strerror(errno));
        listener_close(&p->l, 1);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return WH_ERR;
    }
    *out = p;
    return WH_OK;
}

void wh_uds_pub_send(wh_uds_pub *p, const void *msg, size_t len)
{
    if (p == NULL || len == 0 || len > 0xffffffffu)
        return;
    uint8_t hdr[4];
    hdr_put(hdr, len);
    int wake = 0;
    pthread_mutex_lock(&p->mu);
    for (uds_sub *u = p->subs, *next; u != NULL; u = next) {
        next = u->next;
        int f = u->pend != NULL ? sub_flush(u) : 1;
        if (f < 0) {
            subs_prune(p, u);
            continue;
        }
        if (f == 0)
            continue; /* still behind: this message is dropped for it */
        struct iovec iov[2] = {{hdr, 4}, {(void *)msg, len}};
        struct msghdr mh = {0};
        mh.msg_iov = iov;
        mh.msg_iovlen = 2;
        ssize_t r;
        do
            r = sendmsg(u->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (r < 0 && errno == EINTR);
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            subs_prune(p, u);
            continue;
        }
        size_t sent = r < 0 ? 0 : (size_t)r;
        if (sent == 0 || sent == 4 + len)
            continue; /* nothing of it went (dropped whole), or all of it */
        /* a frame begun must be finished: keep its rest */
        size_t rest = 4 + len - sent;
        u->pend = malloc(rest);
        if (u->pend == NULL) {
            subs_prune(p, u); /* its stream would be corrupt */
            continue;
        }
        size_t off = 0;
        if (sent < 4) {
            memcpy(u->pend, hdr + sent, 4 - sent);
            off = 4 - sent;
            memcpy(u->pend + off, msg, len);
        } else {
            memcpy(u->pend, (const char *)msg + (sent - 4), rest);
        }
        u->pend_len = rest;
        u->pend_off = 0;
        wake = 1;
    }
    pthread_mutex_unlock(&p->mu);
    if (wake)
        (void)!write(p->l.wake[1], "x", 1);
}

int wh_uds_pub_subs(wh_uds_pub *p)
{
    pthread_mutex_lock(&p->mu);
    int n = p->nsubs;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void wh_uds_pub_stop(wh_uds_pub *p)
{
    if (p == NULL)
        return;
    atomic_store(&p->stopping, 1);
    (void)!write(p->l.wake[1], "x", 1);
    pthread_join(p->acc, NULL);
    for (uds_sub *u = p->subs, *n; u != NULL; u = n) {
        n = u->next;
        sub_free(u);
    }
    listener_close(&p->l, 1);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

void wh_uds_rd_init(wh_uds_rd *r)
{
    memset(r, 0, sizeof(*r));
}

int wh_uds_rd_reserve(wh_uds_rd *r, size_t max)
{
    if (max > 0x7fffffff)
        max = 0x7fffffff;
    if (r->cap >= 4 + max)
        return WH_OK;
    uint8_t *nb = realloc(r->buf, 4 + max);
    if (nb == NULL)
        return WH_ERR;
    r->buf = nb;
    r->cap = 4 + max;
    return WH_OK;
}

void wh_uds_rd_reset(wh_uds_rd *r)
{
    r->off = r->end = 0;
    r->drained = 0;
}

void wh_uds_rd_free(wh_uds_rd *r)
{
    free(r->buf);
    wh_uds_rd_init(r);
}

/* 1 when a whole frame of at most max bytes is buffered (its length into
 * *len), 0 when not yet, -1 for a length of 0 or above max (EMSGSIZE). */
static int rd_frame(const wh_uds_rd *r, size_t max, size_t *len)
{
    if (r->end - r->off < 4)
        return 0;
    size_t l = hdr_get(r->buf + r->off);
    if (l == 0 || l > max || l > r->cap - 4) {
        errno = EMSGSIZE;
        return -1;
    }
    *len = l;
    return r->end - r->off >= 4 + l ? 1 : 0;
}

/* One recv into the room after the buffered bytes (moved to the front
 * first). The bytes read, 0 when the peer closed, -1 on error (errno;
 * EAGAIN: nothing there). */
static ssize_t rd_fill(wh_uds_rd *r, int fd)
{
    if (r->off > 0) {
        memmove(r->buf, r->buf + r->off, r->end - r->off);
        r->end -= r->off;
        r->off = 0;
    }
    size_t room = r->cap - r->end;
    if (room == 0) {
        errno = EMSGSIZE; /* unreachable: a full buffer holds a whole frame */
        return -1;
    }
    for (;;) {
        ssize_t n = recv(fd, r->buf + r->end, room, MSG_DONTWAIT);
        if (n > 0) {
            r->end += (size_t)n;
            r->drained = (size_t)n < room;
            return n;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return n;
    }
}

int wh_uds_rd_buffered(const wh_uds_rd *r)
{
    size_t len;
    return r->cap > 0 && rd_frame(r, r->cap, &len) != 0;
}

int wh_uds_rd_ready(wh_uds_rd *r, int fd)
{
    if (r->cap == 0)
        return WH_UDS_FRAME_PART; /* no room reserved: the blocking read's */
    if (wh_uds_rd_buffered(r))
        return WH_UDS_FRAME_READY; /* a whole frame, or one the read refuses */
    if (r->drained && r->end == r->off) {
        r->drained = 0; /* asked again after a wait: read then */
        return WH_UDS_FRAME_NONE;
    }
    ssize_t n = rd_fill(r, fd);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return r->end > r->off ? WH_UDS_FRAME_PART : WH_UDS_FRAME_NONE;
    if (n <= 0)
        return WH_UDS_FRAME_READY; /* ended or failed: the read says so */
    return wh_uds_rd_buffered(r) ? WH_UDS_FRAME_READY : WH_UDS_FRAME_PART;
}

int wh_uds_rd_recv(wh_uds_rd *r, int fd, void *buf, size_t cap, int timeout_ms)
{
    if (wh_uds_rd_reserve(r, cap) != WH_OK)
        return -1;
    int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    int begun = 0;
    for (;;) {
        size_t len;
        int f = rd_frame(r, cap, &len);
        if (f < 0)
            return -1;
        if (f > 0) {
            memcpy(buf, r->buf + r->off + 4, len);
            r->off += 4 + len;
            if (r->off == r->end)
                r->off = r->end = 0;
            return (int)len;
        }
        if (r->end > r->off && !begun) {
            begun = 1; /* the frame began: a second for the rest */
            deadline = now_ms() + 1000;
        }
        if (r->end == r->off || r->drained) {
            int w = wait_fd(fd, POLLIN, deadline);
            if (w < 0)
                return -1;
            if (w == 0) {
                if (!begun)
                    return 0;
                errno = ETIMEDOUT;
                return -1;
            }
        }
        ssize_t n = rd_fill(r, fd);
        if (n == 0)
            return -1; /* closed (midway or not: the caller reconnects) */
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        if (n < 0)
            r->drained = 1; /* a spurious wake-up: wait again */
    }
}
