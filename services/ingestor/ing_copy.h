/* ing_copy: the replication stream (COPY BOTH) read and written on the
 * connection's socket itself, without libpq's message handling.
 *
 * libpq reads a COPY stream 16 KiB at a time and copies every CopyData
 * message into a fresh malloc'd buffer (PQgetCopyData); on a backlog of wide
 * rows those reads, copies and allocations were a large part of the
 * ingestor's CPU. Here the socket is read into one buffer (ING_COPY_BUF
 * bytes, grown only for a larger message) as much as it holds at a time, and
 * each CopyData message is handed out in place.
 *
 * Used only on a connection without TLS or GSS encryption (the bytes on the
 * socket are then the protocol itself); ing_repl keeps libpq's COPY
 * functions otherwise. The caller sends START_REPLICATION with
 * ing_copy_start once libpq is idle (every earlier query's result read), so
 * libpq's buffer holds nothing of the stream; from then on libpq only closes
 * the connection (PQfinish).
 *
 * Ownership: the ing_copy owns its buffer, not the socket (libpq's). */
#ifndef ING_COPY_H
#define ING_COPY_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

/* The read buffer: a read takes up to this much (the replication socket's
 * low-water mark with a backlog is below it). */
#define ING_COPY_BUF (512u * 1024)
/* The largest message accepted: the server's own limit (1 GiB) plus the
 * XLogData header. */
#define ING_COPY_MAX_MSG ((size_t)(1u << 30) + 64)

typedef struct ing_copy ing_copy;

int ing_copy_new(ing_copy **out, char *err, size_t errlen);
void ing_copy_free(ing_copy *c);

/* A new connection's socket (fd < 0: none); what was buffered is dropped. */
void ing_copy_reset(ing_copy *c, int fd);

/* Sends the query (START_REPLICATION) and reads the server's answer until
 * its CopyBothResponse: WH_OK, the stream has begun; WH_ERR with err =
 * the server's error ("ERROR:  ...") or the connection's failure. Gives up
 * after timeout_ms without an answer, or when *stop becomes nonzero. */
int ing_copy_start(ing_copy *c, const char *sql, int timeout_ms, volatile const sig_atomic_t *stop,
                   char *err, size_t errlen);

/* Reads what the socket holds, without waiting. 1: bytes were read and the
 * socket may hold more (the read filled the space it had); 0: the socket is
 * drained (nothing read, or less than the space); -1: the connection is
 * lost (err). */
int ing_copy_fill(ing_copy *c, char *err, size_t errlen);

/* The next complete CopyData message: 1 with *p, *n (valid until the next
 * ing_copy_fill or ing_copy_feed); 0 when no complete one is buffered; -1
 * when the stream ended (the server's CopyDone or error: err = "replication
 * stream ended[: its message]") or is malformed (err). Notices, parameter
 * status and notifications in between are skipped. */
int ing_copy_next(ing_copy *c, const uint8_t **p, size_t *n, char *err, size_t errlen);

/* Appends bytes as if read from the socket (tests, fuzzing). WH_ERR: out of
 * memory. */
int ing_copy_feed(ing_copy *c, const void *data, size_t len);

/* Bytes buffered and not yet handed out. */
size_t ing_copy_buffered(const ing_copy *c);

/* Writes one CopyData message with body p[0..n) (a standby status update),
 * waiting up to timeout_ms for room in the socket. */
int ing_copy_put(ing_copy *c, const void *p, size_t n, int timeout_ms, char *err, size_t errlen);
/* Writes CopyDone (the client ends the stream). */
int ing_copy_end(ing_copy *c, int timeout_ms, char *err, size_t errlen);

#endif
