/* ing_batch: open batch, sealed queue, sender thread. */
#include "ing_batch.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <unistd.h>

#include "wh_ipc.h"
#include "wh_lattrace.h"
#include "wh_lsn.h"
#include "wh_pbfast.h"
#include "wh_util.h"

#define ING_SPARE_BATCHES 4 /* recycled batch buffers kept */
/* JSON bytes per AppendBatch request: a sealed batch (flush_bytes) is sent
 * in requests of about this size, so neither the packed request here nor
 * the store's received, unpacked and WriteBatch copies of it (nor its
 * memtable overshoot) scale with flush_bytes. */
#define ING_REQ_BYTES (1u << 20)
/* Batch buffers up to this capacity are recycled (batches sealed by the
 * adaptive policy are mostly smaller); larger ones are freed. */
#define ING_KEEP_BYTES (1u << 20)
/* A batch is sealed at this many bytes of JSON (or flush_bytes, or a
 * quarter of the window, if lower: seal_bytes): one request, and its buffer
 * (grown by doubling) stays within ING_KEEP_BYTES, so it is recycled; with
 * a backlog it waits to fill up to this. */
#define ING_BATCH_FILL (ING_KEEP_BYTES - (16u << 10))

/* Per event: where its JSON is in the batch buffer and its seq (offsets fit
 * in 32 bits: a batch is below ipc.max_msg_bytes <= 1 GiB). */
typedef struct ev_meta {
    uint32_t off, len;
    uint32_t seq;    /* a staged event: its staging index */
    uint32_t subxid; /* a staged event: its (sub)transaction */
} ev_meta;

/* Commit LSN and timestamp of a run of consecutive events (one run per
 * transaction in the batch). */
typedef struct ev_run {
    uint64_t commit_lsn;
    int64_t commit_ts_us;
    size_t first; /* index of the run's first event */
} ev_run;

/* What a batch carries (one kind per request): events; staged events of a
 * streamed transaction (stage_xid); or a request packed beforehand (a
 * stage commit or abort, in json). */
enum { BATCH_EVENTS = 0, BATCH_STAGED, BATCH_PACKED };

typedef struct batch {
    int kind; /* BATCH_* */
    uint32_t stage_xid;
    int stage_reset;
    wh_buf json;
    ev_meta *ev;
    size_t nev, evcap;
    ev_run *run;
    size_t nrun, runcap;
    uint64_t ack_lsn;
    uint64_t batch_id;
    uint64_t first_us;
    wh_buf schemas; /* AppendBatch.schemas fields (ing_batcher_add_schema) */
    struct batch *next;
    /* TOAST cache ops (AppendBatch.toast_ops, framed) sent with the
     * batch's last events; tserial: the highest op serial among them */
    wh_buf tops;
    uint64_t tserial;
} batch;

struct ing_batcher {
    char tenant[WH_NAME_MAX];
    size_t max_batch_bytes;
    _Atomic int64_t flush_bytes, flush_age_us, window_bytes, backlog_linger_us;
    int backlog; /* replication thread: the slot has a backlog (ing_batcher_set_backlog) */
    int held;    /* replication thread: the last tick held the open batch for a free sender */

    /* replication thread only */
    batch *open;
    uint64_t last_commit_end;
    uint64_t next_id;

    pthread_mutex_t mu;
    pthread_cond_t cv;       /* queue non-empty or stop */
    pthread_cond_t acked_cv; /* a batch was acked */
    batch *qhead, *qtail;    /* sealed, waiting */
    batch *inflight;
    batch *free_list;
    _Atomic int sender_busy; /* a chain in flight or batches queued (set under mu) */
    int wake_fd;             /* eventfd: the sender finished a request */
    _Atomic int want_wake;   /* ING_WAKE_*: what the replication thread waits for */
    int stop;
    int thread_started;
    pthread_t thread;
    wh_client *client;
    /* sender thread: packing arrays, reused */
    Walhook__Event *pev;
    size_t pcap;
    wh_buf hdr;        /* a request's protobuf framing (ing_batch_encode) */
    wh_buf sch;        /* a request's schema registrations (its batches') */
    struct iovec *iov; /* a request's pieces */
    size_t iovcap;

    _Atomic uint64_t acked_lsn;
    _Atomic int64_t unacked_bytes;
    /* TOAST cache ops (ing_batcher_toast_add): replication thread's carry,
     * moved into the next batch of events sealed; the sender's pieces of
     * a request; the highest serial the store made durable */
    wh_buf tcarry;
    uint64_t tcarry_serial, tnext_serial;
    struct iovec *tiov;
    size_t ntiov, captiov;
    uint64_t tiov_serial;
    _Atomic uint64_t tdurable;
    uint64_t tsender;    /* AppendBatch.toast_sender: random, per process */
    uint8_t tfields[24]; /* toast_sender and toast_serial of a request */
    _Atomic uint64_t batches_sent, events_sent;
    /* a run of failed appends (send_retry): since when (the first failed
     * attempt's start, wh_now_ms; 0 = the last one succeeded), the last
     * error; fail_ms: ingestor.append_fail_ms */
    pthread_mutex_t fail_mu;
    uint64_t fail_since_ms;
    int fail_reported; /* logged as past fail_ms */
    char fail_err[200];
    _Atomic int64_t fail_ms;
};

static void batch_free(batch *b)
{
    if (!b)
        return;
    wh_buf_free(&b->json);
    wh_buf_free(&b->schemas);
    wh_buf_free(&b->tops);
    free(b->ev);
    free(b->run);
    free(b);
}

static batch *batch_get(ing_batcher *bt)
{
    pthread_mutex_lock(&bt->mu);
    batch *b = bt->free_list;
    if (b)
        bt->free_list = b->next;
    pthread_mutex_unlock(&bt->mu);
    if (!b) {
        b = calloc(1, sizeof(*b));
        if (!b)
            return NULL;
        wh_buf_init(&b->json, bt->max_batch_bytes);
        wh_buf_init(&b->schemas, 0);
        wh_buf_init(&b->tops, 0);
    }
    wh_buf_reset(&b->schemas);
    b->next = NULL;
    wh_buf_reset(&b->tops);
    b->tserial = 0;
    b->kind = BATCH_EVENTS;
    b->stage_xid = 0;
    b->stage_reset = 0;
    wh_buf_reset(&b->json);
    b->nev = 0;
    b->nrun = 0;
    b->ack_lsn = 0;
    b->first_us = 0;
    return b;
}

/* The JSON bytes at which a batch is sealed: flush_bytes, at most
 * ING_BATCH_FILL, and at most a quarter of the window
 * (runtime settings both): with a 2 MiB window, batches of 512 KiB, and the
 * sender coalesces queued batches up to a quarter of the window too. While
 * one request is in flight the replication loop reads three more before
 * the window is full, and every buffer that holds a request (here, in the
 * store) is a quarter of the window, not half of it. */
static size_t seal_bytes(ing_batcher *bt)
{
    size_t n = (size_t)atomic_load(&bt->flush_bytes);
    size_t quarter = (size_t)atomic_load(&bt->window_bytes) / 4;
    if (n > ING_BATCH_FILL)
        n = ING_BATCH_FILL;
    return quarter < n ? quarter : n;
}

/* With a backlog a batch fills up to a request's worth of JSON: a new (or
 * small recycled) buffer is grown to that at once and its pages are faulted
 * in with one madvise(MADV_POPULATE_WRITE), rather than one page fault per
 * page as events are rendered into it. On a paravirtualized guest a page
 * fault's entry and exit cost far more than zeroing the page: on the wide
 * backlog the faults of the batch buffers' first fill were about a seventh
 * of the replication thread's CPU. Best effort: without it (kernel before
 * 5.14) the pages fault as before. */
static void batch_prefault(ing_batcher *bt, batch *b)
{
    size_t want = seal_bytes(bt);
    if (b->json.cap > want || wh_buf_reserve(&b->json, want) != WH_OK)
        return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)b->json.data + page - 1) & ~(page - 1);
    uintptr_t hi = ((uintptr_t)b->json.data + b->json.cap) & ~(page - 1);
#ifdef MADV_POPULATE_WRITE
    if (hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE);
#else
    (void)lo;
    (void)hi;
#endif
}

/* Makes room for n packed events in the sender's arrays. */
static int pack_reserve(ing_batcher *bt, size_t n)
{
    if (bt->pcap >= n)
        return WH_OK;
    size_t nc = bt->pcap ? bt->pcap : 256;
    while (nc < n)
        nc *= 2;
    Walhook__Event *pe = realloc(bt->pev, nc * sizeof(*pe));
    if (!pe)
        return WH_ERR;
    bt->pev = pe;
    struct iovec *iv = realloc(bt->iov, (2 * nc + 3) * sizeof(*iv));
    if (!iv)
        return WH_ERR;
    bt->iov = iv;
    bt->iovcap = 2 * nc + 3;
    bt->pcap = nc;
    return WH_OK;
}

#define ING_STATUS_SLOW_DOWN 429 /* the store's "slow down" (write budget, isolation guard) */

static void lat_trace(const ing_batcher *bt, const char *hop, size_t n)
{
    if (!wh_lat_trace_on())
        return;
    for (size_t i = 0; i < n; i++)
        wh_lat_trace_add(hop, bt->pev[i].commit_ts_us);
    wh_lat_trace_flush();
}

int ing_batch_encode(const char *tenant, const Walhook__Event *ev, size_t n, uint64_t ack,
                     uint64_t id, uint32_t stage_xid, int stage_reset, const wh_buf *schemas,
                     wh_buf *hdr, struct iovec *iov, size_t iovcap, int *iovcnt)
{
    return ing_batch_encode_extra(tenant, ev, n, ack, id, stage_xid, stage_reset, schemas, NULL, 0,
                                  hdr, iov, iovcap, iovcnt);
}

int ing_batch_encode_extra(const char *tenant, const Walhook__Event *ev, size_t n, uint64_t ack,
                           uint64_t id, uint32_t stage_xid, int stage_reset, const wh_buf *schemas,
                           const struct iovec *extra, size_t nextra, wh_buf *hdr, struct iovec *iov,
                           size_t iovcap, int *iovcnt)
{
    size_t tlen = strlen(tenant);
    size_t slen = schemas ? schemas->len : 0;
    size_t ab = (tlen ? 1 + wh_pb_varint_len(tlen) + tlen : 0) +
                (ack ? 1 + wh_pb_varint_len(ack) : 0) + (id ? 1 + wh_pb_varint_len(id) : 0) +
                (stage_xid ? 1 + wh_pb_varint_len(stage_xid) : 0) + (stage_reset ? 2 : 0) + slen;
    for (size_t i = 0; i < nextra; i++)
        ab += extra[i].iov_len;
    for (size_t i = 0; i < n; i++) {
        size_t el = wh_pb_event_head_len(&ev[i]) + ev[i].json.len;
        ab += 1 + wh_pb_varint_len(el) + el;
    }
    if (iovcap < 2 * n + 2 + (slen > 0) + nextra)
        return WH_ERR;
    /* every piece of framing first, so the buffer does not move under the
     * iovecs: at most 11 + 16 + tlen, 46 a event, 22 + 8 */
    wh_buf_reset(hdr);
    if (wh_buf_reserve(hdr, 27 + tlen + 46 * n + 30) != WH_OK)
        return WH_ERR;
    uint8_t *base = (uint8_t *)hdr->data, *p = base, *piece = base;
    int k = 0;
    *p++ = 0x0a; /* Request.append */
    p = wh_pb_varint_put(p, ab);
    if (tlen) {
        *p++ = 0x0a; /* AppendBatch.tenant */
        p = wh_pb_varint_put(p, tlen);
        memcpy(p, tenant, tlen);
        p += tlen;
    }
    for (size_t i = 0; i < n; i++) {
        const Walhook__Event *e = &ev[i];
        *p++ = 0x12; /* AppendBatch.events */
        p = wh_pb_varint_put(p, wh_pb_event_head_len(e) + e->json.len);
        p = wh_pb_event_head_put(p, e);
        if (e->json.len) {
            iov[k].iov_base = piece;
            iov[k++].iov_len = (size_t)(p - piece);
            iov[k].iov_base = e->json.data;
            iov[k++].iov_len = e->json.len;
            piece = p;
        }
        p = wh_pb_event_tail_put(p, e);
    }
    if (ack) {
        *p++ = 0x18; /* AppendBatch.ack_lsn */
        p = wh_pb_varint_put(p, ack);
    }
    if (id) {
        *p++ = 0x20; /* AppendBatch.batch_id */
        p = wh_pb_varint_put(p, id);
    }
    if (stage_xid) {
        *p++ = 0x28; /* AppendBatch.stage_xid */
        p = wh_pb_varint_put(p, stage_xid);
    }
    if (stage_reset) {
        *p++ = 0x30; /* AppendBatch.stage_reset */
        *p++ = 1;
    }
    if (p > piece) {
        iov[k].iov_base = piece;
        iov[k++].iov_len = (size_t)(p - piece);
    }
    if (slen > 0) { /* AppendBatch.schemas, encoded by ing_schema_field */
        iov[k].iov_base = schemas->data;
        iov[k++].iov_len = slen;
    }
    for (size_t i = 0; i < nextra; i++) /* fields framed by their writer */
        iov[k++] = extra[i];
    hdr->len = (size_t)(p - base);
    *iovcnt = k;
    return WH_OK;
}

/* Sends one AppendBatch of the packed events [0, n), retrying with backoff
 * until it succeeds (Append is idempotent); a "slow down" answer is
 * retried after the delay it names. The request goes out from where its
 * pieces are (ing_batch_encode: each event's json from its batch buffer),
 * not packed into one buffer first. WH_ERR: stopping. */
/* The kind of request send_retry sends: events (packed in bt->pev), staged
 * events (the same, with the xid and the reset flag), or bytes packed
 * beforehand. */
typedef struct req_kind {
    int kind; /* BATCH_* */
    uint32_t xid;
    int reset;
    const wh_buf *packed;
} req_kind;

/* With TOAST ops in the request: AppendBatch.toast_sender and
 * toast_serial as one more piece after them (tiov_add keeps room for it).
 * Returns the number of extra pieces. */
static size_t tfields_add(ing_batcher *bt)
{
    if (bt->ntiov == 0)
        return 0;
    uint8_t *p = bt->tfields;
    *p++ = 0xf9; /* toast_sender = 31, fixed64 */
    *p++ = 0x01;
    for (int i = 0; i < 8; i++)
        *p++ = (uint8_t)(bt->tsender >> (8 * i));
    *p++ = 0x80; /* toast_serial = 32, varint */
    *p++ = 0x02;
    p = wh_pb_varint_put(p, bt->tiov_serial);
    bt->tiov[bt->ntiov].iov_base = bt->tfields;
    bt->tiov[bt->ntiov].iov_len = (size_t)(p - bt->tfields);
    return bt->ntiov + 1;
}

/* Sleeps ms unless the batcher is stopping: WH_ERR then (give up), else
 * WH_OK (try again). */
static int pause_unless_stopped(ing_batcher *bt, int ms)
{
    pthread_mutex_lock(&bt->mu);
    int stop = bt->stop;
    pthread_mutex_unlock(&bt->mu);
    if (stop)
        return WH_ERR;
    wh_sleep_ms(ms);
    return WH_OK;
}

/* Records an append's outcome: err NULL (it succeeded: a run of failures
 * ends), else the failure of the attempt sent at sent_ms. */
static void append_outcome(ing_batcher *bt, const char *err, uint64_t sent_ms)
{
    pthread_mutex_lock(&bt->fail_mu);
    if (err == NULL) {
        if (bt->fail_since_ms != 0 && bt->fail_reported)
            wh_info("appends to the store succeed again after %.1f s of failures (the last: %s)",
                    (double)(wh_now_ms() - bt->fail_since_ms) / 1000.0, bt->fail_err);
        bt->fail_since_ms = 0;
        bt->fail_reported = 0;
    } else {
        if (bt->fail_since_ms == 0)
            bt->fail_since_ms = sent_ms != 0 ? sent_ms : 1;
        wh_strlcpy(bt->fail_err, err, sizeof(bt->fail_err));
    }
    pthread_mutex_unlock(&bt->fail_mu);
}

uint64_t ing_batcher_append_failing(ing_batcher *bt, char *why, size_t whylen)
{
    pthread_mutex_lock(&bt->fail_mu);
    uint64_t since = bt->fail_since_ms, now = wh_now_ms();
    uint64_t ms = since != 0 && now > since ? now - since : 0;
    int64_t bound = atomic_load(&bt->fail_ms);
    int failing = since != 0 && bound > 0 && ms >= (uint64_t)bound;
    if (failing) {
        if (why != NULL)
            wh_seterr(why, whylen, "appends to the store have failed for %.1f s: %s",
                      (double)ms / 1000.0, bt->fail_err);
        if (!bt->fail_reported) {
            bt->fail_reported = 1;
            wh_warn("appends to the store have failed for %.1f s (ingestor.append_fail_ms %lld): "
                    "not ready until one succeeds; the last error: %s",
                    (double)ms / 1000.0, (long long)bound, bt->fail_err);
        }
    }
    pthread_mutex_unlock(&bt->fail_mu);
    return failing ? ms : 0;
}

uint64_t ing_batcher_append_failing_ms(ing_batcher *bt)
{
    pthread_mutex_lock(&bt->fail_mu);
    uint64_t since = bt->fail_since_ms, now = wh_now_ms();
    pthread_mutex_unlock(&bt->fail_mu);
    return since != 0 && now > since ? now - since : 0;
}

static int send_retry(ing_batcher *bt, const req_kind *kind, size_t n, uint64_t ack, uint64_t id,
                      uint64_t first_id)
{
    char err[WH_ERRLEN];
    int slowed = 0, refused = 0;
    int iovcnt = 0;
    lat_trace(bt, "ing_send", n);
    size_t nex = tfields_add(bt); /* the TOAST ops' pieces, then their sender and serial */
    while (kind->kind != BATCH_PACKED &&
           (bt->iovcap < 2 * n + 3 + nex ||
            ing_batch_encode_extra(bt->tenant, bt->pev, n, ack, id,
                                   kind->kind == BATCH_STAGED ? kind->xid : 0,
                                   kind->kind == BATCH_STAGED && kind->reset, &bt->sch, bt->tiov,
                                   nex, &bt->hdr, bt->iov, bt->iovcap, &iovcnt) != WH_OK)) {
        if (bt->iovcap < 2 * n + 3 + nex) {
            struct iovec *iv = realloc(bt->iov, (2 * n + 3 + nex) * sizeof(*iv));
            if (iv != NULL) {
                bt->iov = iv;
                bt->iovcap = 2 * n + 3 + nex;
                continue;
            }
        }
        if (pause_unless_stopped(bt, 50) != WH_OK) /* out of memory for a few KiB: wait */
            return WH_ERR;
    }
    struct iovec packed = {.iov_base = kind->packed ? kind->packed->data : NULL,
                           .iov_len = kind->packed ? kind->packed->len : 0};
    for (int attempt = 0;; attempt++) {
        Walhook__Reply *rep = NULL;
        int status = 0;
        uint64_t sent_ms = wh_now_ms();
        int rc =
            kind->kind == BATCH_PACKED
                ? wh_client_call_iov(bt->client, &packed, 1, &rep, &status, err, sizeof(err))
                : wh_client_call_iov(bt->client, bt->iov, iovcnt, &rep, &status, err, sizeof(err));
        if (rc == WH_OK && (rep->body_case != WALHOOK__REPLY__BODY_APPEND || !rep->append)) {
            wh_seterr(err, sizeof(err), "the store replied to Append without an append body");
            walhook__reply__free_unpacked(rep, NULL);
            rc = WH_ERR;
        }
        if (rc == WH_OK) {
            walhook__reply__free_unpacked(rep, NULL);
            append_outcome(bt, NULL, 0);
            lat_trace(bt, "ing_acked", n);
            if (attempt > 0)
                wh_info("append of batches %llu..%llu succeeded after %d retries",
                        (unsigned long long)first_id, (unsigned long long)id, attempt);
            return WH_OK;
        }
        int ms = wh_backoff_ms(attempt < 20 ? attempt : 20, 20, 5000);
        if (status == ING_STATUS_SLOW_DOWN && strstr(err, WH_STORE_DISK_BUSY) != NULL) {
            /* the store's writes wait for its disk (a slow or stalled WAL
             * sync) and it refused this one, nothing stored: sent again
             * after its retry_after_ms, as one request (events are stored
             * once by their identity, so an earlier attempt that still
             * waits for the sync stores them only once). A failure for
             * ingestor.append_fail_ms, but no backoff growth. */
            ms = wh_client_retry_wait_ms(bt->client, 1000);
            append_outcome(bt, err, sent_ms);
            if (refused++ % 20 == 0)
                wh_warn("append of batches %llu..%llu (%zu events): the store refused it, its "
                        "writes are waiting for the disk (nothing stored); sending it again in "
                        "%d ms",
                        (unsigned long long)first_id, (unsigned long long)id, n, ms);
            attempt--;
        } else if (status == ING_STATUS_SLOW_DOWN) {
            /* over the tenant's write budget, or held back by the store's
             * isolation guard: not stored, not acked; the credit window
             * stops the WAL reading meanwhile */
            ms = wh_client_retry_wait_ms(bt->client, 10);
            attempt--; /* not a failure: no backoff growth (nor append_outcome) */
            if (slowed++ % 1000 == 0)
                wh_info("the store asks tenant %s to slow down (%s); batches %llu..%llu wait %d ms",
                        bt->tenant,
                        strstr(err, "store.isolation_target_pct")
                            ? "isolation guard: another tenant's light appends"
                            : "write budget",
                        (unsigned long long)first_id, (unsigned long long)id, ms);
        } else {
            append_outcome(bt, err, sent_ms);
            if (attempt == 0 || attempt % 20 == 0)
                wh_warn("append of batches %llu..%llu (%zu events) to the store failed: %s; "
                        "retrying",
                        (unsigned long long)first_id, (unsigned long long)id, n, err);
        }
        /* sleep in small steps so a stop is noticed */
        for (int slept = 0; slept < ms; slept += 50) {
            if (pause_unless_stopped(bt, ms - slept < 50 ? ms - slept : 50) != WH_OK)
                return WH_ERR;
        }
    }
}

/* Wakes the replication thread if it waits for what happened (`what`:
 * ING_WAKE_ACK after a request's ack, ING_WAKE_FREE once the sender is
 * free as well). Called after the effects are stored: with the replication
 * thread's store of want_wake before it looks at them (both sequentially
 * consistent), one of the two sees the other, so no wake-up is lost. */
static void wake(ing_batcher *bt, int what)
{
    if (!(atomic_load(&bt->want_wake) & what))
        return;
    uint64_t one = 1;
    ssize_t w = write(bt->wake_fd, &one, sizeof(one)); /* EAGAIN: already signalled */
    WH_UNUSED(w);
}

/* A request of the chain was acknowledged: everything in it is durable, and
 * so is `ack` (the ack_lsn of batches that ended in it or before it). The
 * replication thread is woken: the window has room again, the flush LSN may
 * move, and an open batch may go out now that nothing is in flight; if it
 * asked for that (ing_batcher_want_wake). */
static void request_done(ing_batcher *bt, uint64_t ack, size_t bytes, size_t nev)
{
    if (bt->ntiov > 0 || bt->tiov_serial > 0) { /* its TOAST ops are durable */
        if (bt->tiov_serial > atomic_load(&bt->tdurable))
            atomic_store(&bt->tdurable, bt->tiov_serial);
        bt->ntiov = 0;
        bt->tiov_serial = 0;
    }
    uint64_t cur = atomic_load(&bt->acked_lsn);
    while (ack > cur && !atomic_compare_exchange_weak(&bt->acked_lsn, &cur, ack))
        ;
    atomic_fetch_add(&bt->events_sent, nev);
    atomic_fetch_sub(&bt->unacked_bytes, (int64_t)bytes);
    wake(bt, ING_WAKE_ACK);
}

/* Adds batch b's TOAST ops to the request being packed. */
static int tiov_add(ing_batcher *bt, const batch *b)
{
    /* room for tfields_add's piece too */
    if (wh_grow(&bt->tiov, bt->ntiov + 2, &bt->captiov, sizeof(*bt->tiov), 16) != WH_OK)
        return WH_ERR;
    bt->tiov[bt->ntiov].iov_base = b->tops.data;
    bt->tiov[bt->ntiov++].iov_len = b->tops.len;
    if (b->tserial > bt->tiov_serial)
        bt->tiov_serial = b->tserial;
    return WH_OK;
}

/* Sends a chain of sealed batches (first, first->next, ...) in AppendBatch
 * requests of about ING_REQ_BYTES of JSON: small batches are combined (group
 * commit: the store makes them durable with one sync write), a large one is
 * split. A request carries the highest ack_lsn of the batches that end in it
 * or before it. WH_ERR: stopping. */
static int send_chain(ing_batcher *bt, batch *first)
{
    uint64_t ack = 0;
    size_t k = 0, bytes = 0;
    batch *b = first;
    req_kind rk = {.kind = first->kind,
                   .xid = first->stage_xid,
                   .reset = first->stage_reset,
                   .packed = &first->json};
    if (first->kind == BATCH_PACKED) { /* one request, as packed */
        if (send_retry(bt, &rk, 0, first->ack_lsn, first->batch_id, first->batch_id) != WH_OK)
            return WH_ERR;
        request_done(bt, first->ack_lsn, first->json.len, 0);
        return WH_OK;
    }
    wh_buf_reset(&bt->sch);
    size_t tbytes = 0; /* TOAST ops in the request being packed */
    for (; b; b = b->next) {
        size_t r = 0;
        int tops_sent = 0;
        /* the batch's schema registrations go with the request that holds
         * its first events (or an earlier one): durable no later */
        while (b->schemas.len > 0 &&
               wh_buf_append(&bt->sch, b->schemas.data, b->schemas.len) != WH_OK) {
            if (pause_unless_stopped(bt, 50) != WH_OK)
                return WH_ERR;
        }
        if (b->tops.len > 0 && bytes + tbytes + b->json.len + b->tops.len > bt->max_batch_bytes) {
            /* with its events the batch's TOAST ops would not fit in one
             * request (large values): what is packed goes, then the ops in
             * a request of their own, durable before the events (a crash
             * between leaves puts whose events are sent again, never
             * events acked without their puts) */
            if ((k > 0 || bt->ntiov > 0) &&
                send_retry(bt, &rk, k, ack, b->batch_id, first->batch_id) != WH_OK)
                return WH_ERR;
            if (k > 0 || bt->ntiov > 0) {
                request_done(bt, ack, bytes, k);
                rk.reset = 0;
                k = bytes = 0;
                wh_buf_reset(&bt->sch);
            }
            while (tiov_add(bt, b) != WH_OK) {
                if (pause_unless_stopped(bt, 50) != WH_OK)
                    return WH_ERR;
            }
            if (send_retry(bt, &rk, 0, ack, b->batch_id, first->batch_id) != WH_OK)
                return WH_ERR;
            request_done(bt, ack, 0, 0);
            wh_buf_reset(&bt->sch);
            tbytes = 0;
            tops_sent = 1;
        }
        for (size_t i = 0; i < b->nev; i++) {
            if (k > 0 && bytes >= ING_REQ_BYTES) {
                if (send_retry(bt, &rk, k, ack, b->batch_id, first->batch_id) != WH_OK)
                    return WH_ERR;
                request_done(bt, ack, bytes, k);
                rk.reset = 0; /* the staging was reset by the first request */
                k = bytes = tbytes = 0;
                wh_buf_reset(&bt->sch);
            }
            while (pack_reserve(bt, k + 1) != WH_OK) {
                if (k > 0) { /* out of memory: send what is packed */
                    if (send_retry(bt, &rk, k, ack, b->batch_id, first->batch_id) != WH_OK)
                        return WH_ERR;
                    request_done(bt, ack, bytes, k);
                    rk.reset = 0;
                    k = bytes = 0;
                    wh_buf_reset(&bt->sch);
                    continue;
                }
                if (pause_unless_stopped(bt, 50) != WH_OK)
                    return WH_ERR;
            }
            while (r + 1 < b->nrun && b->run[r + 1].first <= i)
                r++;
            Walhook__Event *e = &bt->pev[k];
            walhook__event__init(e);
            e->commit_lsn = b->run[r].commit_lsn;
            e->commit_ts_us = b->run[r].commit_ts_us;
            e->seq = b->ev[i].seq;
            e->subxid = b->ev[i].subxid;
            e->json.data = (uint8_t *)b->json.data + b->ev[i].off;
            e->json.len = b->ev[i].len;
            k++;
            bytes += b->ev[i].len;
        }
        if (b->ack_lsn > ack)
            ack = b->ack_lsn;
        if (b->tops.len > 0 && !tops_sent) { /* with the batch's last events */
            while (tiov_add(bt, b) != WH_OK) {
                if (pause_unless_stopped(bt, 50) != WH_OK)
                    return WH_ERR;
            }
            tbytes += b->tops.len;
        }
        if (!b->next)
            break;
    }
    if (k > 0 || bt->ntiov > 0) {
        if (send_retry(bt, &rk, k, ack, b->batch_id, first->batch_id) != WH_OK)
            return WH_ERR;
        request_done(bt, ack, bytes, k);
    }
    return WH_OK;
}

static void *sender_main(void *arg)
{
    ing_batcher *bt = arg;
    for (;;) {
        pthread_mutex_lock(&bt->mu);
        while (!bt->qhead && !bt->stop)
            pthread_cond_wait(&bt->cv, &bt->mu);
        if (bt->stop) {
            pthread_mutex_unlock(&bt->mu);
            break;
        }
        /* take the queued batches (group commit: while the store syncs,
         * the next batches accumulate); send_chain sends them in requests
         * of ING_REQ_BYTES */
        batch *first = bt->qhead, *last = first;
        size_t nb = 1, bytes = first->json.len;
        /* at most a quarter of the window per request (a batch is sealed
         * there at the latest: seal_bytes), so the replication loop keeps
         * reading while the store syncs; at least the first batch */
        size_t cap = (size_t)atomic_load(&bt->window_bytes) / 4;
        if (cap > bt->max_batch_bytes)
            cap = bt->max_batch_bytes;
        /* one kind per request: events with events, a streamed
         * transaction's staged events with its own (the reset only on the
         * first), a packed request alone */
        while (last->next && nb < 256 && bytes + last->next->json.len <= cap &&
               first->kind != BATCH_PACKED && last->next->kind == first->kind &&
               last->next->stage_xid == first->stage_xid && !last->next->stage_reset) {
            last = last->next;
            nb++;
            bytes += last->json.len;
        }
        bt->qhead = last->next;
        if (!bt->qhead)
            bt->qtail = NULL;
        last->next = NULL;
        bt->inflight = first;
        pthread_mutex_unlock(&bt->mu);

        /* every request of the chain is accounted as it is acknowledged
         * (request_done): acked LSN, unacked bytes, events sent */
        if (send_chain(bt, first) != WH_OK)
            goto out;
        atomic_fetch_add(&bt->batches_sent, nb);
        pthread_mutex_lock(&bt->mu);
        bt->inflight = NULL;
        if (!bt->qhead) {
            atomic_store(&bt->sender_busy, 0);
            /* an open batch held for a free sender goes out (an ack alone
             * woke for nothing: the sender was still busy) */
            wake(bt, ING_WAKE_ACK | ING_WAKE_FREE);
        }
        /* a large buffer is not worth keeping: it stays resident while the
         * next batches fill, and growing a fresh one costs little */
        for (batch *b = first; b; b = b->next) {
            if (b->json.cap > ING_KEEP_BYTES) {
                wh_buf_free(&b->json);
                free(b->ev);
                b->ev = NULL;
                b->evcap = 0;
            }
        }
        last->next = bt->free_list;
        bt->free_list = first;
        /* keep a few recycled buffers; return the rest (up to a window of
         * them after a burst) to the system */
        batch *excess = NULL;
        size_t kept = 0;
        for (batch **pp = &bt->free_list; *pp; pp = &(*pp)->next) {
            if (++kept == ING_SPARE_BATCHES) {
                excess = (*pp)->next;
                (*pp)->next = NULL;
                break;
            }
        }
        pthread_cond_broadcast(&bt->acked_cv);
        pthread_mutex_unlock(&bt->mu);
        for (batch *b = excess, *n; b; b = n) {
            n = b->next;
            batch_free(b);
        }
    }
out:
    return NULL;
}

/* A random id of this process as the sender of TOAST ops. */
static uint64_t sender_id(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v) || v == 0)
        v = wh_now_us() ^ ((uint64_t)getpid() << 40) ^ UINT64_C(0x9e3779b97f4a7c15);
    return v;
}

size_t ing_batch_bytes_for(int64_t max_msg)
{
    size_t m = max_msg > 0 ? (size_t)max_msg : 0;
    return m > (1u << 20) ? m - m / 8 : m / 2;
}

int64_t ing_msg_bytes_for(size_t event_bytes)
{
    const int64_t mib = 1 << 20;
    /* the JSON buffer keeps a byte for a NUL: the event needs one more */
    for (int64_t m = mib; m <= WH_IPC_MAX_MSG_BYTES_MAX; m += mib)
        if (ing_batch_bytes_for(m) > event_bytes)
            return m;
    return -1;
}

int ing_batcher_new(ing_batcher **out, const wh_config *cfg, char *err, size_t errlen)
{
    ing_batcher *bt = calloc(1, sizeof(*bt));
    if (!bt)
        return wh_seterr(err, errlen, "out of memory");
    wh_strlcpy(bt->tenant, cfg->tenant, sizeof(bt->tenant));
    wh_buf_init(&bt->hdr, 0);
    wh_buf_init(&bt->tcarry, 0);
    bt->tsender = sender_id();
    /* leave room for the protobuf framing of every event */
    size_t maxmsg = (size_t)cfg->ipc_max_msg_bytes;
    bt->max_batch_bytes = ing_batch_bytes_for(cfg->ipc_max_msg_bytes);
    pthread_mutex_init(&bt->fail_mu, NULL);
    ing_batcher_set_limits(cfg, bt);
    pthread_mutex_init(&bt->mu, NULL);
    pthread_cond_init(&bt->cv, NULL);
    pthread_cond_init(&bt->acked_cv, NULL);
    atomic_init(&bt->want_wake, ING_WAKE_ACK | ING_WAKE_FREE);
    bt->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (bt->wake_fd < 0) {
        wh_seterr(err, errlen, "eventfd: %s", strerror(errno));
        goto error;
    }
    if (wh_client_open(&bt->client, cfg->store_endpoint, cfg->ipc_timeout_ms, maxmsg, err,
                       errlen) != WH_OK)
        goto error;
    bt->open = batch_get(bt);
    if (!bt->open) {
        wh_seterr(err, errlen, "out of memory");
        goto error;
    }
    if (pthread_create(&bt->thread, NULL, sender_main, bt) != 0) {
        wh_seterr(err, errlen, "cannot start the sender thread");
        goto error;
    }
    bt->thread_started = 1;
    *out = bt;
    return WH_OK;
error:
    ing_batcher_free(bt);
    return WH_ERR;
}

void ing_batcher_free(ing_batcher *bt)
{
    if (!bt)
        return;
    if (bt->thread_started) {
        pthread_mutex_lock(&bt->mu);
        bt->stop = 1;
        pthread_cond_broadcast(&bt->cv);
        pthread_mutex_unlock(&bt->mu);
        /* an Append waiting on a store that is gone returns now (the drain
         * before this already waited for what could be acked) */
        wh_client_interrupt(bt->client);
        pthread_join(bt->thread, NULL);
    }
    if (bt->client)
        wh_client_close(bt->client);
    batch_free(bt->open);
    for (batch *b = bt->inflight, *n; b; b = n) {
        n = b->next;
        batch_free(b);
    }
    free(bt->pev);
    free(bt->iov);
    free(bt->tiov);
    wh_buf_free(&bt->tcarry);
    wh_buf_free(&bt->hdr);
    wh_buf_free(&bt->sch);
    for (batch *b = bt->qhead, *n; b; b = n) {
        n = b->next;
        batch_free(b);
    }
    for (batch *b = bt->free_list, *n; b; b = n) {
        n = b->next;
        batch_free(b);
    }
    if (bt->wake_fd > 0)
        close(bt->wake_fd);
    pthread_cond_destroy(&bt->acked_cv);
    pthread_cond_destroy(&bt->cv);
    pthread_mutex_destroy(&bt->mu);
    pthread_mutex_destroy(&bt->fail_mu);
    free(bt);
}

void ing_batcher_set_limits(const wh_config *cfg, ing_batcher *bt)
{
    int64_t flush_bytes = cfg->flush_bytes;
    if (flush_bytes > (int64_t)bt->max_batch_bytes / 2)
        flush_bytes = (int64_t)bt->max_batch_bytes / 2;
    atomic_store(&bt->flush_bytes, flush_bytes);
    atomic_store(&bt->flush_age_us, cfg->flush_age_us);
    atomic_store(&bt->window_bytes, cfg->window_bytes);
    atomic_store(&bt->backlog_linger_us, cfg->busy_linger_us);
    atomic_store(&bt->fail_ms, cfg->append_fail_ms);
}

void ing_batcher_set_backlog(ing_batcher *bt, int backlog)
{
    bt->backlog = backlog;
}

wh_buf *ing_batcher_buf(ing_batcher *bt)
{
    return &bt->open->json;
}

size_t ing_batcher_open_events(const ing_batcher *bt)
{
    return bt->open->nev;
}

/* Queues b for the sender, carrying the last noted commit as its ack_lsn. */
static void enqueue(ing_batcher *bt, batch *b)
{
    if (b->kind == BATCH_EVENTS && bt->tcarry.len > 0) { /* the TOAST ops so far go with it */
        wh_buf t = b->tops;
        b->tops = bt->tcarry;
        b->tserial = bt->tcarry_serial;
        bt->tcarry = t;
        wh_buf_reset(&bt->tcarry);
    }
    b->ack_lsn = bt->last_commit_end;
    b->batch_id = ++bt->next_id;
    pthread_mutex_lock(&bt->mu);
    atomic_fetch_add(&bt->unacked_bytes, (int64_t)b->json.len);
    if (bt->qtail)
        bt->qtail->next = b;
    else
        bt->qhead = b;
    bt->qtail = b;
    atomic_store(&bt->sender_busy, 1);
    pthread_cond_signal(&bt->cv);
    pthread_mutex_unlock(&bt->mu);
}

/* The open batch for events of kind (and xid): the open one when it is of
 * that kind, else a new one after sealing it. WH_ERR: out of memory. */
static int open_kind(ing_batcher *bt, int kind, uint32_t xid, int reset, char *err, size_t errlen)
{
    batch *b = bt->open;
    if (b->kind == kind && b->stage_xid == xid && !reset)
        return WH_OK;
    if (b->nev > 0 && ing_batcher_seal(bt, err, errlen) != WH_OK)
        return WH_ERR;
    b = bt->open;
    b->kind = kind;
    b->stage_xid = xid;
    b->stage_reset = reset;
    return WH_OK;
}

static int add_event(ing_batcher *bt, uint64_t commit_lsn, uint32_t seq, uint32_t subxid,
                     int64_t commit_ts_us, size_t start, char *err, size_t errlen)
{
    batch *b = bt->open;
    if (b->nev == b->evcap) {
        size_t n = b->evcap ? b->evcap + b->evcap / 2 : 1024;
        ev_meta *ne = realloc(b->ev, n * sizeof(*ne));
        if (!ne)
            return wh_seterr(err, errlen, "out of memory");
        b->ev = ne;
        b->evcap = n;
    }
    if (b->nrun == 0 || b->run[b->nrun - 1].commit_lsn != commit_lsn ||
        b->run[b->nrun - 1].commit_ts_us != commit_ts_us) {
        if (wh_grow(&b->run, b->nrun + 1, &b->runcap, sizeof(*b->run), 64) != WH_OK)
            return wh_seterr(err, errlen, "out of memory");
        ev_run *r = &b->run[b->nrun++];
        r->commit_lsn = commit_lsn;
        r->commit_ts_us = commit_ts_us;
        r->first = b->nev;
    }
    ev_meta *e = &b->ev[b->nev++];
    e->seq = seq;
    e->subxid = subxid;
    e->off = (uint32_t)start;
    e->len = (uint32_t)(b->json.len - start);
    if (b->nev == 1)
        b->first_us = wh_now_us();
    if (b->json.len >= seal_bytes(bt))
        return ing_batcher_seal(bt, err, errlen);
    return WH_OK;
}

int ing_batcher_add(ing_batcher *bt, uint64_t commit_lsn, uint32_t seq, int64_t commit_ts_us,
                    size_t start, char *err, size_t errlen)
{
    if (bt->open->kind != BATCH_EVENTS) { /* not reached: ing_batcher_unstage comes first */
        size_t len = bt->open->json.len - start;
        return wh_seterr(err, errlen, "an event of %zu bytes rendered into a staged batch", len);
    }
    return add_event(bt, commit_lsn, seq, 0, commit_ts_us, start, err, errlen);
}

int ing_batcher_stage(ing_batcher *bt, uint32_t xid, int reset, char *err, size_t errlen)
{
    return open_kind(bt, BATCH_STAGED, xid, reset, err, errlen);
}

int ing_batcher_add_staged(ing_batcher *bt, uint32_t index, uint32_t subxid, size_t start,
                           char *err, size_t errlen)
{
    if (bt->open->kind != BATCH_STAGED)
        return wh_seterr(err, errlen, "a staged event outside a stream block");
    return add_event(bt, 0, index, subxid, 0, start, err, errlen);
}

int ing_batcher_add_schema(ing_batcher *bt, const void *field, size_t len, char *err, size_t errlen)
{
    if (wh_buf_append(&bt->open->schemas, field, len) != WH_OK)
        return wh_seterr(err, errlen, "out of memory");
    return WH_OK;
}

int ing_batcher_unstage(ing_batcher *bt, char *err, size_t errlen)
{
    return open_kind(bt, BATCH_EVENTS, 0, 0, err, errlen);
}

/* The TOAST ops waiting in the carry go out now, in a batch of their own
 * (before a request that cannot carry them). */
static int toast_flush(ing_batcher *bt, char *err, size_t errlen)
{
    if (bt->tcarry.len == 0)
        return WH_OK;
    batch *b = batch_get(bt);
    if (!b)
        return wh_seterr(err, errlen, "out of memory");
    enqueue(bt, b);
    return WH_OK;
}

int ing_batcher_packed(ing_batcher *bt, const void *req, size_t len, uint64_t commit_end, char *err,
                       size_t errlen)
{
    if (bt->open->nev > 0 && ing_batcher_seal(bt, err, errlen) != WH_OK)
        return WH_ERR;
    if (toast_flush(bt, err, errlen) != WH_OK)
        return WH_ERR;
    batch *b = batch_get(bt);
    if (!b)
        return wh_seterr(err, errlen, "out of memory");
    b->kind = BATCH_PACKED;
    if (wh_buf_append(&b->json, req, len) != WH_OK) {
        batch_free(b);
        return wh_seterr(err, errlen, "a packed request of %zu bytes: too large or out of memory",
                         len);
    }
    if (commit_end > bt->last_commit_end) /* batches sealed from now on carry it */
        bt->last_commit_end = commit_end;
    enqueue(bt, b);
    return WH_OK;
}

void ing_batcher_note_commit(ing_batcher *bt, uint64_t end_lsn)
{
    if (end_lsn > bt->last_commit_end)
        bt->last_commit_end = end_lsn;
}

int ing_batcher_seal(ing_batcher *bt, char *err, size_t errlen)
{
    batch *b = bt->open;
    if (b->nev == 0)
        return WH_OK;
    batch *nb = batch_get(bt);
    if (!nb)
        return wh_seterr(err, errlen, "out of memory");
    if (bt->backlog)
        batch_prefault(bt, nb);
    int staged = b->kind == BATCH_STAGED;
    if (staged) { /* the block goes on in the next batch */
        nb->kind = BATCH_STAGED;
        nb->stage_xid = b->stage_xid;
    }
    enqueue(bt, b);
    bt->open = nb;
    /* a staged batch carries no TOAST ops (enqueue): those so far follow it
     * in a batch of their own, as at a tick with no open event. A streamed
     * transaction's open batch is hardly ever empty at a tick, and its
     * changes add an op per value of a cached column: they would pile up
     * without a bound, then go as one request larger than the store takes */
    return staged ? toast_flush(bt, err, errlen) : WH_OK;
}

uint64_t ing_batcher_tick(ing_batcher *bt, uint64_t now_us)
{
    batch *b = bt->open;
    bt->held = 0;
    if (b->nev == 0) {
        char err[128];
        if (bt->tcarry.len > 0 && toast_flush(bt, err, sizeof(err)) != WH_OK)
            return now_us + 1000;
        return UINT64_MAX;
    }
    /* Adaptive batching (group commit). Live stream: what was decoded is
     * sealed at once, in flight or not; sealed batches queue while a
     * request is in flight and the sender takes the whole queue as its next
     * request the moment the store acknowledged (send_chain combines them):
     * the request grows while one is in flight, and the replication thread
     * is not on the path from an ack to the next send (it used to be woken
     * to seal, then woke the sender: two thread hand-offs per request).
     * Backlog (latency is the backlog's, not the batch's): while a request
     * is in flight the batch grows, and with nothing in flight it waits
     * until it holds a request's worth of JSON (ING_BATCH_FILL) or is
     * busy_linger_us old: every request, wake-up and sync then carries
     * hundreds of events instead of a handful. */
    /* staged events are delivered only at their transaction's commit: they
     * wait for a request's worth (or the commit, or an event after them) */
    if (b->kind == BATCH_STAGED && b->json.len < ING_BATCH_FILL)
        return UINT64_MAX;
    bt->held = bt->backlog && atomic_load(&bt->sender_busy);
    if (bt->held)
        return UINT64_MAX;
    if (bt->backlog && b->json.len < ING_BATCH_FILL) {
        uint64_t due = b->first_us + (uint64_t)atomic_load(&bt->backlog_linger_us);
        if (now_us < due)
            return due;
    }
    char err[128];
    if (ing_batcher_seal(bt, err, sizeof(err)) != WH_OK)
        return now_us + 1000;
    return UINT64_MAX;
}

int ing_batcher_held(const ing_batcher *bt)
{
    return bt->held;
}

int ing_batcher_sender_busy(const ing_batcher *bt)
{
    return atomic_load(&((ing_batcher *)bt)->sender_busy);
}

int ing_batcher_wake_fd(const ing_batcher *bt)
{
    return bt->wake_fd;
}

void ing_batcher_want_wake(ing_batcher *bt, int what)
{
    atomic_store(&bt->want_wake, what);
}

void ing_batcher_wake_clear(ing_batcher *bt)
{
    uint64_t v;
    ssize_t r = read(bt->wake_fd, &v, sizeof(v));
    WH_UNUSED(r);
}

uint64_t ing_batcher_acked_lsn(const ing_batcher *bt)
{
    return atomic_load(&((ing_batcher *)bt)->acked_lsn);
}

void ing_batcher_reset_lsn(ing_batcher *bt)
{
    bt->last_commit_end = 0;
    atomic_store(&bt->acked_lsn, 0);
}

int64_t ing_batcher_unacked_bytes(const ing_batcher *bt)
{
    return atomic_load(&((ing_batcher *)bt)->unacked_bytes);
}

int ing_batcher_window_full(const ing_batcher *bt)
{
    return ing_batcher_unacked_bytes(bt) > atomic_load(&((ing_batcher *)bt)->window_bytes);
}

int ing_batcher_idle(const ing_batcher *bt)
{
    return bt->open->nev == 0 && bt->tcarry.len == 0 && ing_batcher_unacked_bytes(bt) == 0 &&
           !ing_batcher_sender_busy(bt);
}

uint64_t ing_batcher_toast_add(ing_batcher *bt, const void *op, size_t len)
{
    if (wh_buf_append(&bt->tcarry, op, len) != WH_OK)
        return 0;
    bt->tcarry_serial = ++bt->tnext_serial;
    return bt->tcarry_serial;
}

size_t ing_batcher_toast_pending(const ing_batcher *bt)
{
    return bt->tcarry.len;
}

uint64_t ing_batcher_toast_durable(const ing_batcher *bt)
{
    return atomic_load(&((ing_batcher *)bt)->tdurable);
}

uint64_t ing_batcher_batches_sent(const ing_batcher *bt)
{
    return atomic_load(&((ing_batcher *)bt)->batches_sent);
}

uint64_t ing_batcher_events_sent(const ing_batcher *bt)
{
    return atomic_load(&((ing_batcher *)bt)->events_sent);
}

int ing_batcher_drain(ing_batcher *bt, int timeout_ms)
{
    uint64_t deadline = wh_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    pthread_mutex_lock(&bt->mu);
    while (bt->qhead || bt->inflight) {
        uint64_t now = wh_now_ms();
        if (now >= deadline)
            break;
        struct timespec ts;
        wh_deadline_in(&ts, CLOCK_REALTIME, deadline - now < 100 ? (int64_t)(deadline - now) : 100);
        pthread_cond_timedwait(&bt->acked_cv, &bt->mu, &ts);
    }
    int rc = (bt->qhead || bt->inflight) ? WH_ERR : WH_OK;
    pthread_mutex_unlock(&bt->mu);
    return rc;
}
