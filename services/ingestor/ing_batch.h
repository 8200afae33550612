/* ing_batch: batching of rendered events and the sender thread.
 *
 * The replication thread renders each event straight into the open batch's
 * JSON buffer (ing_batcher_buf), then records it (ing_batcher_add). Adaptive
 * batching (group commit, ing_batcher_tick): on a live stream the open batch
 * is sealed as soon as what was read is decoded; sealed batches queue while
 * a request is in flight and the sender takes the whole queue as its next
 * request once the store acknowledged. With a backlog the open batch grows
 * while a request is in flight and, with none, until it holds a request's
 * worth or is busy_linger_us old. Sealed batches go to a sender thread that
 * packs Walhook__AppendBatch requests and calls the store, retrying with backoff
 * until it succeeds (Append is idempotent). Every batch carries ack_lsn = the
 * end LSN of the last Commit noted before it was sealed; when the store
 * confirms it, that LSN is published as the acked LSN (atomic). Batch
 * objects and their buffers are recycled: no per-event allocation. */
#ifndef ING_BATCH_H
#define ING_BATCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "wh_buf.h"
#include "wh_config.h"
#include "walhook.pb-c.h"

typedef struct ing_batcher ing_batcher;

int ing_batcher_new(ing_batcher **out, const wh_config *cfg, char *err, size_t errlen);
/* Stops the sender (abandoning unsent batches) and frees everything. */
void ing_batcher_free(ing_batcher *bt);

/* Runtime thresholds (atomic): ingestor.flush_bytes, flush_age_us (unused
 * by the adaptive policy), window_bytes, busy_linger_us (the longest a
 * batch waits to fill while the slot has a backlog). */
void ing_batcher_set_limits(const wh_config *cfg, ing_batcher *bt);

/* Appends to the store have failed (any error but "slow down": refused,
 * timed out, no store) since the first failed attempt was sent, for at
 * least ingestor.append_fail_ms: that time in ms, with why = "appends to
 * the store have failed for N s: <the last error>" (logged once per run);
 * 0 while they succeed, or the run is shorter. Any thread. */
uint64_t ing_batcher_append_failing(ing_batcher *bt, char *why, size_t whylen);
/* How long the current run of failed appends has lasted, ms (0: none). */
uint64_t ing_batcher_append_failing_ms(ing_batcher *bt);
/* The largest batch (its JSON) under an ipc.max_msg_bytes of max_msg: the
 * rest of the message is left for the protobuf framing. */
size_t ing_batch_bytes_for(int64_t max_msg);
/* The least ipc.max_msg_bytes (rounded up to a MiB) whose batches hold an
 * event of event_bytes, or -1 when even the largest (1 GiB) does not. */
int64_t ing_msg_bytes_for(size_t event_bytes);

/* The open batch's JSON buffer to render one event into. */
wh_buf *ing_batcher_buf(ing_batcher *bt);
/* Records the event rendered at buf[start..len). Seals the batch when it
 * reached flush_bytes. */
int ing_batcher_add(ing_batcher *bt, uint64_t commit_lsn, uint32_t seq, int64_t commit_ts_us,
                    size_t start, char *err, size_t errlen);
/* Streamed transactions (pgoutput protocol 2): the events of a stream
 * block of xid are staged in the store (AppendBatch.stage_xid).
 * ing_batcher_stage starts (or goes on with) xid's staged batch (reset:
 * the store drops what it has staged for xid first: a first segment);
 * ing_batcher_add_staged records a staged event rendered at buf[start..len)
 * (index: its staging index, subxid its subtransaction);
 * staged events wait in the open batch for a request's worth (they are
 * delivered only at the commit), across blocks of the same transaction;
 * ing_batcher_unstage (before an ordinary event is rendered) seals them. */
int ing_batcher_stage(ing_batcher *bt, uint32_t xid, int reset, char *err, size_t errlen);
int ing_batcher_add_staged(ing_batcher *bt, uint32_t index, uint32_t subxid, size_t start,
                           char *err, size_t errlen);
int ing_batcher_unstage(ing_batcher *bt, char *err, size_t errlen);
/* A schema registration (an AppendBatch.schemas field, ing_schema_field)
 * for the open batch: it goes with the request that holds the batch's
 * first events (so it is durable no later than the events after it). */
int ing_batcher_add_schema(ing_batcher *bt, const void *field, size_t len, char *err,
                           size_t errlen);
/* Queues a request packed beforehand (a Walhook__Request with an
 * AppendBatch: a stage commit or abort) after everything sealed before it
 * (the open batch is sealed first, without commit_end). commit_end (0:
 * none) is the end LSN of the commit the request completes: the request
 * carries it as its ack_lsn and the batches after it do too (as
 * ing_batcher_note_commit); otherwise the last noted commit. */
int ing_batcher_packed(ing_batcher *bt, const void *req, size_t len, uint64_t commit_end, char *err,
                       size_t errlen);
/* Number of events in the open batch. */
size_t ing_batcher_open_events(const ing_batcher *bt);
/* Notes a Commit (its end LSN): the next sealed batch carries it. */
void ing_batcher_note_commit(ing_batcher *bt, uint64_t end_lsn);
/* Seals the open batch if it holds events. */
int ing_batcher_seal(ing_batcher *bt, char *err, size_t errlen);
/* Seals the open batch (with a backlog: only when the sender has nothing in
 * flight and the batch holds a request's worth of JSON or is busy_linger_us
 * old); returns the monotonic time (us) by which it must be
 * called again (UINT64_MAX: no deadline; the wake fd signals when the
 * sender is free). */
uint64_t ing_batcher_tick(ing_batcher *bt, uint64_t now_us);
/* 1 while the slot has a backlog (the server's WAL end well ahead of what
 * was received): batches then wait to fill (see ing_batcher_tick). */
void ing_batcher_set_backlog(ing_batcher *bt, int backlog);
/* 1 when the last ing_batcher_tick held the open batch until the sender is
 * free (a backlog): the sender free is to wake the replication thread
 * (ING_WAKE_FREE). */
int ing_batcher_held(const ing_batcher *bt);
/* 1 while a request is in flight or sealed batches wait. */
int ing_batcher_sender_busy(const ing_batcher *bt);
/* Readable after the sender finished a request (acked LSN, window room)
 * or became free, when the replication thread asked for that
 * (ing_batcher_want_wake; both at first); ing_batcher_wake_clear resets it. */
int ing_batcher_wake_fd(const ing_batcher *bt);
#define ING_WAKE_ACK 1  /* every ack: window room, a flush LSN to report */
#define ING_WAKE_FREE 2 /* the sender free: a held batch can go out */
/* What the replication thread is to be woken for (ING_WAKE_* bits, 0:
 * nothing: a live stream with a status update just sent). After asking,
 * the caller looks again at what it waits for before it sleeps (what
 * happened before it asked did not wake it). */
void ing_batcher_want_wake(ing_batcher *bt, int what);
void ing_batcher_wake_clear(ing_batcher *bt);

uint64_t ing_batcher_acked_lsn(const ing_batcher *bt);
/* After a drain, before streaming from another source: forgets the acked
 * and last commit LSNs (they belong to the old source). */
void ing_batcher_reset_lsn(ing_batcher *bt);
/* Bytes sealed and not yet acknowledged by the store. */
int64_t ing_batcher_unacked_bytes(const ing_batcher *bt);
/* 1 when unacked bytes exceed the window: stop reading the socket. */
int ing_batcher_window_full(const ing_batcher *bt);
/* 1 when the open batch is empty and every sealed batch was acked. */
int ing_batcher_idle(const ing_batcher *bt);
uint64_t ing_batcher_batches_sent(const ing_batcher *bt);
uint64_t ing_batcher_events_sent(const ing_batcher *bt);

/* Waits up to timeout_ms for every sealed batch to be acked. WH_OK when
 * drained. */
int ing_batcher_drain(ing_batcher *bt, int timeout_ms);

/* The bytes of the Walhook__Request carrying AppendBatch{tenant, ev[0..n),
 * ack, id, stage_xid, stage_reset, schemas} (those walhook__request__pack writes) as pieces: the
 * protobuf framing in hdr (reset first), each event's json where it is, then the schemas' bytes
 * (NULL or empty: none; already framed fields). iov has room for iovcap pieces (at least 2n + 3);
 * *iovcnt gets their number. WH_ERR: out of memory, or iov too small. */
int ing_batch_encode(const char *tenant, const Walhook__Event *ev, size_t n, uint64_t ack,
                     uint64_t id, uint32_t stage_xid, int stage_reset, const wh_buf *schemas,
                     wh_buf *hdr, struct iovec *iov, size_t iovcap, int *iovcnt);

/* ing_batch_encode, then the pieces of extra (AppendBatch fields framed by
 * their writer: the TOAST cache ops) inside the AppendBatch; iovcap at
 * least 2n + 3 + nextra. */
int ing_batch_encode_extra(const char *tenant, const Walhook__Event *ev, size_t n, uint64_t ack,
                           uint64_t id, uint32_t stage_xid, int stage_reset, const wh_buf *schemas,
                           const struct iovec *extra, size_t nextra, wh_buf *hdr, struct iovec *iov,
                           size_t iovcap, int *iovcnt);
/* A TOAST cache op (AppendBatch.toast_ops, framed: tag and length) for the
 * store: it goes with the next batch of events sealed (or alone, at the
 * next tick or before a packed request), in the request that carries that
 * batch's last events. Returns its serial (> 0; 0: out of memory, not
 * queued). The batcher is not idle while ops wait. */
uint64_t ing_batcher_toast_add(ing_batcher *bt, const void *op, size_t len);
/* Bytes of TOAST cache ops waiting for the next batch. */
size_t ing_batcher_toast_pending(const ing_batcher *bt);
/* The highest op serial the store has made durable. */
uint64_t ing_batcher_toast_durable(const ing_batcher *bt);

#endif
