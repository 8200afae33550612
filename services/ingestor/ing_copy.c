/* ing_copy: the replication stream on the connection's socket (see ing_copy.h). */
#include "ing_copy.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "wh_pgerr.h"
#include "wh_lsn.h"
#include "wh_util.h"

/* Space below which the buffer is compacted before a read (what is left of
 * a partial message moves to its start). */
#define COPY_MIN_READ (64u * 1024)

struct ing_copy {
    int fd;
    uint8_t *buf;
    size_t cap;
    size_t start; /* first byte not handed out */
    size_t end;   /* end of the bytes read */
};

int ing_copy_new(ing_copy **out, char *err, size_t errlen)
{
    ing_copy *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return wh_seterr(err, errlen, "out of memory");
    c->fd = -1;
    *out = c;
    return WH_OK;
}

void ing_copy_free(ing_copy *c)
{
    if (c == NULL)
        return;
    free(c->buf);
    free(c);
}

void ing_copy_reset(ing_copy *c, int fd)
{
    c->fd = fd;
    c->start = c->end = 0;
    if (c->cap > ING_COPY_BUF) { /* a large message's buffer is not kept */
        free(c->buf);
        c->buf = NULL;
        c->cap = 0;
    }
}

size_t ing_copy_buffered(const ing_copy *c)
{
    return c->end - c->start;
}

/* Makes room for `need` bytes after the unconsumed ones (compacting, then
 * growing). WH_ERR: out of memory. */
static int make_room(ing_copy *c, size_t need)
{
    size_t have = c->end - c->start;
    if (have == 0)
        c->start = c->end = 0;
    if (c->cap - c->end >= need)
        return WH_OK;
    if (c->start > 0) {
        memmove(c->buf, c->buf + c->start, have);
        c->start = 0;
        c->end = have;
        if (c->cap - c->end >= need)
            return WH_OK;
    }
    size_t cap = c->cap ? c->cap : ING_COPY_BUF;
    while (cap - have < need)
        cap *= 2;
    uint8_t *nb = realloc(c->buf, cap);
    if (nb == NULL)
        return WH_ERR;
    c->buf = nb;
    c->cap = cap;
    return WH_OK;
}

int ing_copy_feed(ing_copy *c, const void *data, size_t len)
{
    if (make_room(c, len) != WH_OK)
        return WH_ERR;
    memcpy(c->buf + c->end, data, len);
    c->end += len;
    return WH_OK;
}

int ing_copy_fill(ing_copy *c, char *err, size_t errlen)
{
    if (c->fd < 0) {
        wh_seterr(err, errlen, "replication connection has no socket");
        return -1;
    }
    /* room for a read of at least COPY_MIN_READ, and for the whole of a
     * partial message whose length is known (read in one go) */
    size_t need = COPY_MIN_READ;
    if (c->end - c->start >= 5) {
        size_t len = (size_t)wh_get_be32(c->buf + c->start + 1) + 1;
        if (len <= ING_COPY_MAX_MSG + 5 && len > c->end - c->start &&
            len - (c->end - c->start) > need)
            need = len - (c->end - c->start);
    }
    if (c->cap - c->end < need && make_room(c, need) != WH_OK) {
        wh_seterr(err, errlen, "out of memory for a %zu byte replication message", need);
        return -1;
    }
    size_t space = c->cap - c->end;
    for (;;) {
        ssize_t r = recv(c->fd, c->buf + c->end, space, MSG_DONTWAIT);
        if (r > 0) {
            c->end += (size_t)r;
            return (size_t)r == space ? 1 : 0;
        }
        if (r == 0) {
            wh_seterr(err, errlen,
                      "replication connection lost: server closed the connection unexpectedly");
            return -1;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        wh_seterr(err, errlen, "replication connection lost: %s", strerror(errno));
        return -1;
    }
}

/* The text of an ErrorResponse: severity and SQLSTATE, and the primary
 * message only when the SQLSTATE's messages never quote data (a walsender
 * error may quote a row's value: a row filter, an output function); never
 * the detail. */
static void error_text(const uint8_t *p, size_t n, char *out, size_t outlen)
{
    const char *sev = NULL, *code = NULL, *msg = NULL;
    size_t i = 0;
    while (i < n && p[i] != 0) {
        uint8_t f = p[i++];
        const char *s = (const char *)p + i;
        const uint8_t *z = memchr(p + i, 0, n - i);
        if (z == NULL)
            break;
        if (f == 'S')
            sev = s;
        else if (f == 'C')
            code = s;
        else if (f == 'M')
            msg = s;
        i = (size_t)(z - p) + 1;
    }
    if (msg == NULL && code == NULL) {
        snprintf(out, outlen, "malformed error message from the server");
        return;
    }
    wh_pgerr_server(sev, code, msg, out, outlen);
}

int ing_copy_next(ing_copy *c, const uint8_t **p, size_t *n, char *err, size_t errlen)
{
    for (;;) {
        size_t have = c->end - c->start;
        if (have < 5)
            return 0;
        const uint8_t *m = c->buf + c->start;
        uint32_t len = wh_get_be32(m + 1);
        if (len < 4 || (size_t)len > ING_COPY_MAX_MSG) {
            wh_seterr(err, errlen, "replication stream: bad message length %u (type 0x%02x)",
                      (unsigned)len, m[0]);
            return -1;
        }
        if (have < (size_t)len + 1)
            return 0;
        const uint8_t *body = m + 5;
        size_t blen = (size_t)len - 4;
        c->start += (size_t)len + 1;
        switch (m[0]) {
        case 'd': /* CopyData */
            *p = body;
            *n = blen;
            return 1;
        case 'N': /* NoticeResponse, ParameterStatus, NotificationResponse */
        case 'S':
        case 'A':
            continue;
        case 'c': /* CopyDone */
            wh_seterr(err, errlen, "replication stream ended");
            return -1;
        case 'E': {
            char m2[512];
            error_text(body, blen, m2, sizeof(m2));
            wh_seterr(err, errlen, "replication stream ended: %s", m2);
            return -1;
        }
        default:
            wh_seterr(err, errlen, "replication stream: unexpected message type 0x%02x", m[0]);
            return -1;
        }
    }
}

/* Writes all of p[0..n), waiting up to timeout_ms for room. */
static int write_all(ing_copy *c, const uint8_t *p, size_t n, int timeout_ms, char *err,
                     size_t errlen)
{
    uint64_t deadline = wh_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    size_t off = 0;
    if (c->fd < 0)
        return wh_seterr(err, errlen, "replication connection has no socket");
    while (off < n) {
        ssize_t w = send(c->fd, p + off, n - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return wh_seterr(err, errlen, "%s", strerror(errno));
        uint64_t now = wh_now_ms();
        if (now >= deadline)
            return wh_seterr(err, errlen, "no room in the socket for %d ms", timeout_ms);
        struct pollfd pf = {c->fd, POLLOUT, 0};
        uint64_t left = deadline - now;
        if (poll(&pf, 1, left > 1000 ? 1000 : (int)left) < 0 && errno != EINTR)
            return wh_seterr(err, errlen, "poll: %s", strerror(errno));
    }
    return WH_OK;
}

/* Writes a message: type, length, body. */
static int put_msg(ing_copy *c, uint8_t type, const void *body, size_t n, int timeout_ms, char *err,
                   size_t errlen)
{
    uint8_t small[256];
    uint8_t *m = n + 5 <= sizeof(small) ? small : malloc(n + 5);
    if (m == NULL)
        return wh_seterr(err, errlen, "out of memory");
    if (n + 4 > 0x7fffffffu) {
        if (m != small)
            free(m);
        return wh_seterr(err, errlen, "message of %zu bytes is too long", n);
    }
    m[0] = type;
    wh_put_be32(m + 1, (uint32_t)(n + 4));
    if (n > 0)
        memcpy(m + 5, body, n);
    int rc = write_all(c, m, n + 5, timeout_ms, err, errlen);
    if (m != small)
        free(m);
    return rc;
}

int ing_copy_put(ing_copy *c, const void *p, size_t n, int timeout_ms, char *err, size_t errlen)
{
    return put_msg(c, 'd', p, n, timeout_ms, err, errlen);
}

int ing_copy_end(ing_copy *c, int timeout_ms, char *err, size_t errlen)
{
    return put_msg(c, 'c', NULL, 0, timeout_ms, err, errlen);
}

int ing_copy_start(ing_copy *c, const char *sql, int timeout_ms, volatile const sig_atomic_t *stop,
                   char *err, size_t errlen)
{
    char e[256];
    if (put_msg(c, 'Q', sql, strlen(sql) + 1, timeout_ms, e, sizeof(e)) != WH_OK)
        return wh_seterr(err, errlen, "sending the command failed: %s", e);
    uint64_t deadline = wh_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    char failure[512] = "";
    for (;;) {
        /* the answer: notices, then CopyBothResponse ('W'), or an error
         * then ReadyForQuery */
        while (c->end - c->start >= 5) {
            const uint8_t *m = c->buf + c->start;
            uint32_t len = wh_get_be32(m + 1);
            if (len < 4 || len > (1u << 20))
                return wh_seterr(err, errlen, "bad message length %u (type 0x%02x)", (unsigned)len,
                                 m[0]);
            if (c->end - c->start < (size_t)len + 1)
                break;
            c->start += (size_t)len + 1;
            if (m[0] == 'W') {
                if (failure[0])
                    return wh_seterr(err, errlen, "%s", failure);
                return WH_OK;
            }
            if (m[0] == 'E')
                error_text(m + 5, (size_t)len - 4, failure, sizeof(failure));
            else if (m[0] == 'Z')
                return wh_seterr(err, errlen, "%s",
                                 failure[0] ? failure : "the server did not start the stream");
            else if (m[0] != 'N' && m[0] != 'S' && m[0] != 'A')
                return wh_seterr(err, errlen, "unexpected message type 0x%02x", m[0]);
        }
        if (stop != NULL && *stop)
            return wh_seterr(err, errlen, "stopping");
        uint64_t now = wh_now_ms();
        if (now >= deadline)
            return wh_seterr(err, errlen, "no answer within %d ms", timeout_ms);
        struct pollfd pf = {c->fd, POLLIN, 0};
        uint64_t left = deadline - now;
        if (poll(&pf, 1, left > 100 ? 100 : (int)left) < 0 && errno != EINTR)
            return wh_seterr(err, errlen, "poll: %s", strerror(errno));
        if (ing_copy_fill(c, e, sizeof(e)) < 0)
            return wh_seterr(err, errlen, "%s", e);
    }
}
