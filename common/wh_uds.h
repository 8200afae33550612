/* wh_uds: length-prefixed messages over a unix stream socket, the direct
 * path of wh_ipc for ipc:// endpoints on one host.
 *
 * Why: NNG hands every message through its own threads (a poller thread,
 * then a task queue thread, then the caller's aio callback), and each hand-
 * off is a futex wake-up and a context switch. On the hot path (Append,
 * Read) those hops took a third of the daemons' CPU on a backlog of wide
 * rows and 0.3-0.5 ms of latency per hop. Here the caller's thread writes
 * the request and reads the reply itself, and the server has one thread
 * per connection that reads, handles and answers.
 *
 * Frame: a 4-byte little-endian length, then that many bytes (a packed
 * protobuf message). On connect the server sends one byte: 'Y' (served)
 * or 'N' (too many direct connections: the client uses NNG instead).
 *
 * Server: wh_uds_listen() binds PATH (mode 0600, a stale socket file is
 * replaced), an accept thread takes connections, each served by its own
 * thread until the peer closes, a frame is malformed (length 0 or above
 * max_msg) or the server stops.
 *
 * Memory: at most max_busy requests are served at once (a connection
 * waits for a slot once a request's length is read, before its body is
 * allocated), and a connection's request and reply buffers are brought
 * back to WH_UDS_KEEP_BYTES each after every request. So a server holds
 * at most max_conns x 2 x WH_UDS_KEEP_BYTES between requests, plus
 * max_busy x (max_msg request + its reply) in flight, plus a thread per
 * connection: the daemons' memory plans count that (wh_budget, part
 * "ipc_direct"). Teardown (wh_uds_stop): stop flag, wake
 * the accept thread (a pipe) and every connection (shutdown), join them
 * all, close the sockets, unlink PATH. A handler running at that moment
 * finishes first.
 *
 * Client: a file descriptor from wh_uds_connect(), one call at a time
 * (wh_uds_call). Any failure leaves the descriptor unusable: the caller
 * closes it and connects again.
 */
#ifndef WH_UDS_H
#define WH_UDS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "wh_buf.h"

typedef struct wh_uds_server wh_uds_server;

/* A connection's request buffer and reply buffer are each kept between
 * requests up to this size (small requests, the most, reuse them); a
 * larger one is freed after its request. */
#define WH_UDS_KEEP_BYTES (128u << 10)

/* One request: in[0..inlen) -> reply bytes appended to out (empty on
 * entry); the reply is out's bytes from *start (0 on entry) on. The
 * function may also swap out's buffer for one of its own. WH_ERR: nothing
 * is answered and the connection is closed. */
typedef int (*wh_uds_fn)(void *arg, const uint8_t *in, size_t inlen, wh_buf *out, size_t *start);

/* The direct socket's path for an ipc://PATH endpoint (PATH.direct); WH_ERR
 * when the URL is not ipc:// or the path does not fit a sockaddr_un. */
int wh_uds_path(const char *url, char *out, size_t len);

/* max_conns connections at most (more are told 'N'), max_busy requests
 * served at once. */
int wh_uds_listen(wh_uds_server **out, const char *path, size_t max_msg, int max_conns,
                  int max_busy, wh_uds_fn fn, void *arg, char *err, size_t errlen);
void wh_uds_stop(wh_uds_server *s);
/* Connections served now */
int wh_uds_conns(wh_uds_server *s);
/* Bytes the connections' buffers hold between requests (updated after
 * each request) */
size_t wh_uds_held(wh_uds_server *s);
/* Requests being served now */
int wh_uds_busy(wh_uds_server *s);

/* Connects to path, trying for up to timeout_ms (0: once) for the server
 * to be there, then up to 200 ms for its greeting. Never blocks past that:
 * a server whose listen backlog is full (it does not accept: stopped,
 * hung) counts as not there.
 * WH_OK: *fd is served. WH_ERR with *refused = 1: the server has no room
 * (use another transport); else the server is not reachable (err). */
int wh_uds_connect(int *fd, const char *path, int timeout_ms, int *refused, char *err,
                   size_t errlen);
/* Sends req as one frame and reads one reply frame into reply (reset
 * first; at most max bytes), within timeout_ms. */
int wh_uds_call(int fd, const void *req, size_t len, wh_buf *reply, size_t max, int timeout_ms,
                char *err, size_t errlen);
/* wh_uds_call with the request in iovcnt pieces (their total is the frame's
 * length), written from where they are: no copy into one buffer. */
int wh_uds_callv(int fd, const struct iovec *iov, int iovcnt, wh_buf *reply, size_t max,
                 int timeout_ms, char *err, size_t errlen);
/* wh_uds_callv that also tells, on an error, whether the request was
 * written whole: *send_errno 0 when it was (the peer may have acted on it),
 * else the errno of the write that failed (no whole frame reached the peer:
 * nothing of it was acted on). */
int wh_uds_callv_sent(int fd, const struct iovec *iov, int iovcnt, wh_buf *reply, size_t max,
                      int timeout_ms, int *send_errno, char *err, size_t errlen);

/* Broadcast (the durability notifications' direct path): a publisher
 * sends each message to every connected subscriber without ever blocking.
 * A message a subscriber's socket has no room for is dropped for that
 * subscriber (whole: a frame already begun is finished first, by the
 * accept thread when the socket drains). Subscribers get the same 'Y'/'N'
 * greeting and then only read frames. */
typedef struct wh_uds_pub wh_uds_pub;
int wh_uds_pub_listen(wh_uds_pub **out, const char *path, int max_subs, char *err, size_t errlen);
void wh_uds_pub_send(wh_uds_pub *p, const void *msg, size_t len);
/* Subscribers connected now */
int wh_uds_pub_subs(wh_uds_pub *p);
void wh_uds_pub_stop(wh_uds_pub *p);

/* A subscriber's buffered reader: one recv takes whatever the socket holds
 * (several frames, or the start of one), and frames are then cut from the
 * buffer without further system calls. One reader per connection, used by
 * one thread at a time; reset it when the connection is replaced. */
typedef struct wh_uds_rd {
    uint8_t *buf;
    size_t cap;      /* bytes allocated: 4 + the largest frame it takes */
    size_t off, end; /* unread bytes: buf[off..end) */
    int drained;     /* the last recv left the socket empty */
} wh_uds_rd;
void wh_uds_rd_init(wh_uds_rd *r);
/* Makes room for frames of up to max bytes. WH_OK or WH_ERR (no memory). */
int wh_uds_rd_reserve(wh_uds_rd *r, size_t max);
/* Forgets the bytes read (the connection was closed or replaced). */
void wh_uds_rd_reset(wh_uds_rd *r);
void wh_uds_rd_free(wh_uds_rd *r);
/* Without blocking, after at most one recv: WH_UDS_FRAME_NONE when nothing
 * is to be read, WH_UDS_FRAME_READY when a whole frame is (or the
 * connection ended or sent a bad length: wh_uds_rd_recv tells),
 * WH_UDS_FRAME_PART when only its beginning is, or no room was reserved
 * (wh_uds_rd_reserve): a read would wait. After a recv that emptied the
 * socket, the next call with nothing buffered answers NONE without a recv:
 * callers wait for readiness (epoll, level-triggered) before they ask
 * again. Frames already buffered make the socket no readier: ask
 * wh_uds_rd_buffered before waiting. */
#define WH_UDS_FRAME_NONE 0
#define WH_UDS_FRAME_READY 1
#define WH_UDS_FRAME_PART 2
int wh_uds_rd_ready(wh_uds_rd *r, int fd);
/* 1 when a whole frame (or a bad length) is buffered: no recv needed. */
int wh_uds_rd_buffered(const wh_uds_rd *r);
/* A subscriber's next frame (from the buffer when it is there): waits up
 * to timeout_ms for it to begin, then up to a second for the rest. Its length (copied to buf; a
 * frame above cap or the reader's room is an error), 0 on timeout, -1 when the connection failed
 * (close it, reset the reader, connect again). */
int wh_uds_rd_recv(wh_uds_rd *r, int fd, void *buf, size_t cap, int timeout_ms);

#endif
