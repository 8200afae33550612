/* wh_ipc: NNG req/rep helpers carrying protobuf-c Walhook__Request/Reply.
 *
 * Server: a rep socket listening on `url` served by `nworkers` threads, each
 * with its own nng_ctx, so one slow request (an fsync, a long poll) does not
 * block the others. ipc:// sockets get permissions 0600 and their directory
 * is created 0700. NNG_OPT_RECVMAXSZ bounds message size.
 *
 * ipc:// endpoints are also served, and called, over a direct unix socket
 * at PATH.direct (wh_uds.h: one thread per connection, no NNG threads in
 * between); clients use it unless the server has no room
 * (WH_IPC_DIRECT_MAX connections), and NNG otherwise. The direct socket
 * serves nworkers requests at once too (wh_uds_listen's max_busy), so
 * each path holds at most nworkers requests and their replies in flight.
 *
 * Client: a req socket dialing `url` (non-blocking dial: reconnects by
 * itself). wh_client_call() is safe to retry: every handler is idempotent.
 * A client is used by one thread at a time.
 *
 * tls+tcp:// endpoints use mutual TLS (wh_ipc_tls_set).
 *
 * Teardown order (nothing of ours in flight when a socket closes):
 * wh_server_stop() cancels the workers' aios, closes their contexts, joins
 * the workers, frees the aios, then closes the socket; wh_client_close()
 * stops and frees the call's aio, then closes the socket.
 *
 * NNG 1.5.2 sometimes never finishes an aio whose operation raced with its
 * peer going away (upstream issue #1543): its timeout and nng_aio_cancel()
 * do not complete it, and nng_close() then waits forever for the pipe.
 * Nothing here waits on NNG without a bound: a call that is not finished a
 * second after its timeout is abandoned and the client reconnects (the call
 * returns WH_ERR, the caller retries as after any failure); at a server's
 * teardown an operation gets 0.5 s; nng_close() gets 1 s on a helper thread.
 * What is abandoned stays allocated (NNG may still touch it), with a
 * warning in the log.
 */
#ifndef WH_IPC_H
#define WH_IPC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include "walhook.pb-c.h"
#include "wh_buf.h"

/* Direct connections (wh_uds) a server serves at once, one thread each;
 * clients past that use NNG. */
#define WH_IPC_DIRECT_MAX 64

typedef struct wh_server wh_server;
typedef struct wh_client wh_client;

/* Called on a worker thread with the unpacked request. Fill *rep (already
 * initialised with walhook__reply__init; status 0). Memory the reply points
 * at must stay valid until `done` is called with the same rep and the
 * handler's `cookie` (may be NULL) after the reply was packed. */
typedef void (*wh_server_fn)(void *arg, const Walhook__Request *req, Walhook__Reply *rep,
                             void **cookie);
typedef void (*wh_server_done_fn)(void *arg, Walhook__Reply *rep, void *cookie);

/* Optional, before `done`: a reply the handler already holds in wire form
 * (the bytes walhook__reply__pack would write for *rep). Returns 1 after it
 * swapped out's buffer (empty on entry) for one whose bytes from *start are
 * the reply, 0 to have *rep packed (then *rep must still be valid). After
 * 1, whatever *rep points into that buffer is out's. Used on direct
 * connections only. */
typedef int (*wh_server_wire_fn)(void *arg, Walhook__Reply *rep, void *cookie, wh_buf *out,
                                 size_t *start);

int wh_server_start(wh_server **out, const char *url, int nworkers, size_t max_msg, wh_server_fn fn,
                    wh_server_done_fn done, void *arg, char *err, size_t errlen);
/* wh_server_start with a wire function (may be NULL). */
int wh_server_start_wire(wh_server **out, const char *url, int nworkers, size_t max_msg,
                         wh_server_fn fn, wh_server_wire_fn wire, wh_server_done_fn done, void *arg,
                         char *err, size_t errlen);
void wh_server_stop(wh_server *s);

int wh_client_open(wh_client **out, const char *url, int timeout_ms, size_t max_msg, char *err,
                   size_t errlen);
/* How long a call over a direct socket waits for the server's socket to
 * appear when it is not there (no file, or refused): by default the call's
 * timeout (a daemon starting); 0 fails the call at once (a probe, such as
 * the admin's Stats, that must say "down" without waiting). */
void wh_client_set_connect_wait(wh_client *c, int ms);
/* Sends req, waits up to the client's timeout for the reply. On WH_OK *rep is
 * an unpacked reply with status 0 (free with walhook__reply__free_unpacked(rep,
 * NULL)). A reply with status != 0 returns WH_ERR with its error text. */
int wh_client_call(wh_client *c, const Walhook__Request *req, Walhook__Reply **rep, char *err,
                   size_t errlen);
/* Like wh_client_call, and *status receives the reply's status when the store
 * answered with an error (e.g. 409, 412), 0 for a transport failure. */
int wh_client_call_status(wh_client *c, const Walhook__Request *req, Walhook__Reply **rep,
                          int *status, char *err, size_t errlen);
/* wh_client_call_status of a request already packed (a Walhook__Request's
 * bytes in iovcnt pieces): over a direct socket written from where the
 * pieces are, without a copy into one buffer; over NNG copied into one
 * message. */
int wh_client_call_iov(wh_client *c, const struct iovec *iov, int iovcnt, Walhook__Reply **rep,
                       int *status, char *err, size_t errlen);
/* A reply that may point into the bytes it came in (wh_client_call_kept). */
typedef struct wh_kept wh_kept;
/* wh_client_call_status for a request whose reply is a Read's (a Read, a
 * ReplayRead): that reply is decoded in place when it can be
 * (wh_pbfast_read_reply), its events' json pointing into the reply's bytes,
 * which *out keeps (the next call reads into new ones); otherwise unpacked
 * as by wh_client_call. On WH_OK the reply is wh_kept_reply(*out), valid
 * until wh_kept_free(*out) (from any thread). */
int wh_client_call_kept(wh_client *c, const Walhook__Request *req, wh_kept **out, int *status,
                        char *err, size_t errlen);
Walhook__Reply *wh_kept_reply(const wh_kept *k);
void wh_kept_free(wh_kept *k);
/* retry_after_ms of the last reply (the store's 429 "slow down": send the
 * same request again after that many ms); 0 when it had none. */
uint32_t wh_client_retry_after_ms(const wh_client *c);
/* How long to wait before sending it again: that retry_after_ms, at most
 * 10 s; fallback_ms when the reply had none. */
int wh_client_retry_wait_ms(const wh_client *c, int fallback_ms);
/* In the message of the store's 429 that refused a request because its
 * writes wait for the disk (a stalled WAL sync): nothing was done. */
#define WH_STORE_DISK_BUSY "writes are waiting for the disk"
/* 1 when the client's calls go over the direct socket of an ipc://
 * endpoint (wh_uds.h), 0 over NNG (tcp://, tls+tcp://, or the server had
 * no room for another direct connection). */
int wh_client_is_direct(const wh_client *c);
/* ipc.direct: 0 makes clients and subscribers opened afterwards use NNG
 * only (servers and publishers still offer the direct socket). Set at
 * start (wh_daemon_init). */
void wh_ipc_direct_set(int on);
/* From any thread: cancels the call in progress (it returns WH_ERR) and caps
 * the timeout of later calls at 1 s. For a stopping process. */
void wh_client_interrupt(wh_client *c);
void wh_client_close(wh_client *c);

/* TLS for tls+tcp:// endpoints (servers and clients): PEM certificate,
 * its key, the CA that signs every peer (mutual TLS: both sides present a
 * certificate), and the name the server certificates carry ("" = the URL's
 * host). Call once at start, before any server or client opens
 * (wh_daemon_init does, from ipc.tls_*). */
int wh_ipc_tls_set(const char *cert, const char *key, const char *ca, const char *server_name);

/* Durability notifications (pub/sub): the store publishes one short
 * message per synced Append (a hint: "tenant T has events up to (lsn,
 * seq)"); dispatchers subscribe and Read when a tenant of theirs moved,
 * instead of polling. Delivery is best effort (NNG pub drops for a slow
 * subscriber), so a subscriber still reads now and then without one.
 * The endpoint is derived from store.endpoint (wh_notify_url). */
typedef struct wh_pub wh_pub;
typedef struct wh_sub wh_sub;

/* The notify endpoint: `setting` (store.notify_endpoint) when set, else
 * for an ipc://PATH store ipc://PATH.notify; WH_ERR (err says why) when
 * there is none (a tcp:// store without the setting: no port is taken
 * that the operator did not name). */
int wh_notify_url(const char *store_url, const char *setting, char *out, size_t len, char *err,
                  size_t errlen);
int wh_pub_open(wh_pub **out, const char *url, char *err, size_t errlen);
/* Never blocks (a subscriber that does not keep up loses messages). */
void wh_pub_send(wh_pub *p, const void *msg, size_t len);
void wh_pub_close(wh_pub *p);
/* Dials url (non-blocking: reconnects by itself), subscribed to every
 * message. */
int wh_sub_open(wh_sub **out, const char *url, char *err, size_t errlen);
/* Waits up to timeout_ms for one message: its length (at most cap bytes
 * are copied), 0 on timeout, -1 when closed or interrupted. */
int wh_sub_recv(wh_sub *s, void *buf, size_t cap, int timeout_ms);
/* 1 while connected to a publisher. */
int wh_sub_connected(wh_sub *s);
/* The direct connection's descriptor, or -1 (over NNG, or not connected),
 * and in *gen its connection's number (one more per connect): a caller
 * may watch the descriptor (epoll) and read it with wh_sub_recv(..., 0)
 * for as long as both stay the same. */
int wh_sub_direct_fd(wh_sub *s, uint64_t *gen);
/* Without blocking, over the direct connection: what a wh_sub_recv(..., 0)
 * would find, WH_SUB_NONE (nothing), WH_SUB_READY (a whole message, or the
 * end of the connection) or WH_SUB_PART (the beginning of a message: the
 * read would wait for the rest; also before any buffer room for messages of
 * up to max bytes could be reserved). At most one recv: the messages it brings
 * are buffered for the next wh_sub_recv calls, and once it emptied the
 * socket the next call with nothing buffered answers WH_SUB_NONE without
 * a recv (wait for the socket to be readable, level-triggered, before the
 * next; see wh_uds_rd_ready). */
#define WH_SUB_NONE 0
#define WH_SUB_READY 1
#define WH_SUB_PART 2
int wh_sub_pending(wh_sub *s, size_t max);
/* 1 when a whole message is already in the direct connection's buffer
 * (read by an earlier recv): the socket is not readable for it, so an
 * epoll loop asks this before it waits. Only the reading thread. */
int wh_sub_buffered(wh_sub *s);
/* From any thread: a wh_sub_recv in progress returns -1 soon. */
void wh_sub_interrupt(wh_sub *s);
void wh_sub_close(wh_sub *s);

/* Helper for handlers: sets status and error text on a reply. The text is
 * copied into a thread-local buffer valid until the reply is packed. */
void wh_reply_error(Walhook__Reply *rep, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
