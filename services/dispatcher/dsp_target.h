/* dsp_target: one webhook target.
 *
 * Two halves:
 *  - a store-I/O thread (the "reader") owning its own wh_client to the store:
 *    it long-polls Read (tenant, consumer = target name, from = last position
 *    read, max events/bytes from the config) and renders each batch's body
 *    into one of DSP_PREFETCH reusable slots, so the next batch is ready
 *    while the current one is posting (the micro-batcher: a batch read while
 *    the target is busy and not full waits until the loop needs it or it is
 *    batch_max_age_ms old, then is read again from the same position, so it
 *    grows; an idle target gets what is ready at once); it also sends CommitOffset when the
 *    loop reports a delivered batch (coalesced: only the newest position).
 *    Blocking store calls therefore never stall the HTTP loop or another
 *    target.
 *  - the HTTP state machine, driven only by the dispatcher's curl multi loop
 *    thread: IDLE (waiting for a batch) -> POSTING -> outcome (dsp_outcome):
 *      OK         commit, next batch (or next event, see below);
 *      RETRY      BACKOFF (Retry-After when the target sent one, else full
 *                 jitter retry_base_ms .. retry_max_ms) -> POSTING the SAME
 *                 request again, until max_attempts / max_age_ms (if set);
 *      PERMANENT  (and exhausted retries) a batch of several events is
 *                 retried one event at a time ("single mode": body "[e]",
 *                 X-Batch-Size 1, webhook-id of that event) so one bad event
 *                 does not take its neighbours along; a single failing
 *                 event then goes to on_failure: "dlq" -> DEADLETTER (the
 *                 reader writes it with the offset past it, dsp_dlq.h, the
 *                 loop waits) -> next event; "block" -> BACKOFF at
 *                 retry_max_ms on that event, forever (blocked);
 *      GONE (410) the target is disabled (state 4) until an operator
 *                 resumes it (the state's resume count grows, seen by the
 *                 loop's reconcile) or changes its settings; a target
 *                 deleted and created again under its name (another
 *                 created_version) is a new target object, enabled.
 *    Before a request: the circuit breaker (dsp_breaker.h) must allow it and
 *    the token buckets (dsp_limit.h) must hold the tokens; mode "fast" sheds
 *    the head batch to the DLQ when its oldest event is older than
 *    backlog_max_ms while the target fails. Every connection's address is
 *    checked by the SSRF guard (dsp_ssrf.h) when curl opens the socket;
 *    redirects are never followed; response bodies are read up to
 *    DSP_RESP_CAP (an excerpt is kept for dead letters).
 *
 * One easy handle per target is reused for every request, so the multi
 * handle's connection cache keeps the HTTP/1.1 connection alive.
 *
 * ordering = by_key: a fresh head batch is split into lanes (dsp_lane.h: a
 * hash of each event's key), each lane one request with its own easy handle
 * (a copy of the target's), at most max_connections of them in flight (and
 * dispatcher.max_inflight over every target: the loop's budget). Changes of
 * one row stay in one lane, in batch order, and batches go one after the
 * other, so the order per row is kept. The offset moves up to the first event
 * of the batch not delivered yet (cooperative checkpoint); when every lane is
 * done the batch is popped like a strict one. A lane's retryable failure is
 * retried by that lane alone (its own backoff); a permanent one, or
 * exhausted retries, stops the lanes, and once none is in flight the rest of
 * the batch goes through single mode from the first undelivered event,
 * skipping the events the lanes delivered (dead letters, on_failure).
 *
 * Runtime changes (dsp_state.c, on the loop thread): a changed URL, secrets
 * or delivery settings are swapped in between requests
 * (dsp_target_reconfigure); a paused target starts no request; a resumed
 * one drops what it read ahead and reads again from the committed offset.
 *
 * Offset epochs: every Read reply carries the consumer's epoch and each
 * batch remembers it; CommitOffset sends it. When the offset was moved over
 * REST (the epoch changed: a commit is refused with 409, or a Read shows a
 * new epoch) the reader asks for a reset: the loop drops the read-ahead
 * batches and the result of a request in flight, and the reader reads again
 * from the committed offset (generation counter `gen`).
 */
#ifndef DSP_TARGET_H
#define DSP_TARGET_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "dsp_breaker.h"
#include "dsp_dlq.h"
#include "dsp_envelope.h"
#include "wh_filter.h"
#include "dsp_limit.h"
#include "dsp_outcome.h"
#include "dsp_webhook.h"
#include "wh_cidr.h"
#include "wh_state.h"
#include "walhook.pb-c.h"
#include "wh_buf.h"
#include "wh_config.h"
#include "wh_ipc.h"
#include "wh_metrics.h"
#include "wh_notify.h"

#define DSP_PREFETCH 2 /* batches read ahead per target */
#define DSP_ID_MAX (WH_NAME_MAX + 48)
#define DSP_RESP_CAP (64 * 1024) /* response bytes read at most */
#define DSP_RETRY_AFTER_MAX_MS (3600 * 1000)
#define DSP_BATCH_AGE_DEFAULT_MS 50 /* batch_max_age_ms unset */
/* With durability notifications flowing, an idle reader reads again after
 * this long without one (a lost notification costs at most this much) */
#define DSP_NOTIFY_FALLBACK_MS 5000

/* Settings a target needs (copied from wh_config). */
typedef struct dsp_settings {
    char tenant[WH_NAME_MAX];
    char store_endpoint[WH_URL_MAX];
    int ipc_timeout_ms;
    size_t ipc_max_msg;
    uint32_t batch_max_events;
    uint32_t batch_max_bytes;
    uint32_t read_wait_ms; /* long-poll wait of a Read */
    int retry_base_ms;
    int retry_max_ms;
    int http_timeout_ms;
    int commit_interval_ms; /* dispatcher.commit_interval_ms: at most one commit per this many ms */
    char allow_global[256]; /* dispatcher.allow_private_networks */
    char ca_file[WH_PATH_MAX]; /* dispatcher.ca_file ("" = libcurl's default bundle) */
    wh_delivery dl;            /* the target's delivery settings (wh_state.h) */
    char db[64]; /* the tenant's source database (wh_dsn_dbname): Debezium source.db */
} dsp_settings;

void dsp_settings_from_config(dsp_settings *s, const wh_config *c);
/* Bounds a settings struct the way dsp_settings_from_config does (a batch
 * fits one IPC message, at least one event, retry_max >= retry_base ...). */
void dsp_settings_clamp(dsp_settings *s);

/* What defines a target: from the file (dsp_loop_create) or from the
 * runtime state (dsp_state.c). */
typedef struct dsp_spec {
    char name[WH_NAME_MAX];
    char url[WH_URL_MAX];
    char secrets[DSP_KEYS_MAX][256];
    int nsecrets;
    int paused;
    int64_t resumes; /* the state's resume count (wh_state_target.resumes) */
    /* the state version that created it (wh_state_target.created_version):
     * another value under the same name is another target (deleted and
     * created again), which the loop starts anew */
    int64_t created_version;
    dsp_settings set;     /* set.tenant is the target's tenant */
    uint64_t lease_epoch; /* this replica's lease of the target (dsp_lease), 0 = no leases */
    /* a target of the state whose lease this replica does not hold: the
     * loop does not run it, and stops it if it runs. handover: the lease
     * was given up to balance and is still valid in the store, so the
     * commit the target held back (commit_interval_ms) is sent as it stops
     * and the next owner does not deliver those events again; a lease lost
     * or lapsed drops it (the store would refuse it: fencing) */
    int unheld, handover;
} dsp_spec;

/* 1 when a and b differ in what dsp_target_reconfigure swaps (URL,
 * secrets, delivery settings). */
int dsp_spec_changed(const dsp_spec *a, const dsp_spec *b);

/* A target's format settings compiled for one thread (the reader renders
 * batches, the loop renders single events): each thread owns its copy. */
typedef struct dsp_format {
    wh_filter *filter; /* NULL: every event passes, rows unchanged */
    dsp_env_kind env;
    int render;    /* 1 unless native without column lists: the stored bytes go as they are */
    int single;    /* cloudevents-binary: one event per request */
    char db[64];   /* Debezium source.db (dsp_settings.db) */
    int match_all; /* every event passes (replayed dead letters); the column lists still apply */
    unsigned skip_meta; /* DSP_SKIP_*: Debezium's schema and ddl events not named in
                           filter_ops are committed past, as filtered (Debezium has no such op) */
} dsp_format;
#define DSP_SKIP_SCHEMA 1u
#define DSP_SKIP_DDL 2u

/* Compiles the envelope and filter_* settings of d (comma-separated lists);
 * db (NULL: "") is the source database a Debezium envelope names. Errors
 * name the setting. f is untouched on error. */
int dsp_format_build(dsp_format *f, const wh_delivery *d, const char *db, char *err, size_t errlen);
void dsp_format_free(dsp_format *f);

/* One batch ready to post. */
typedef struct dsp_batch {
    wh_buf body;        /* "[e1,e2,...]", memory reused across batches (empty when rendered
                           from borrowed events: see dsp_batch_fill_ex) */
    int64_t *commit_ts; /* commit_ts_us of each event, for latency */
    uint32_t *ev_off;   /* event i's JSON in body: body.data + ev_off[i] (when copied) */
    uint32_t *ev_len;
    uint64_t *ev_lsn; /* event i's position */
    uint32_t *ev_seq;
    const void **ptrs; /* event i's native JSON: ptrs[i], plens[i] bytes (in body, or the
                          borrowed event's own bytes) for single mode, lanes, dead letters */
    size_t *plens;
    size_t ts_cap;       /* capacity of the per-event arrays (grown, never per event) */
    size_t scanned;      /* events read (kept + filtered out); n == 0 < scanned: skip only */
    size_t nbytes;       /* the native body's length "[e1,...]", copied into body or not */
    int rendered;        /* wire/env hold the rendered body (else body goes as is) */
    int replay;          /* events of the replay queue (DLQ replay): acked, not committed */
    uint64_t replay_gen; /* ... the replay generation of the ReplayRead (ReplayAck) */
    wh_buf wire;         /* the envelope rendering of the kept events */
    dsp_env_out env;     /* its content type and extra headers */
    dsp_env_ctx rctx;    /* the renderer's state (reused) */
    /* the Read reply whose events a batch filled with borrow points at:
     * kept while the batch may be posted, freed when the slot is filled
     * again (or freed) */
    wh_kept *held;
    size_t n;
    uint64_t last_lsn;
    uint32_t last_seq;
    uint64_t epoch;      /* the consumer's offset epoch when it was read */
    char id[DSP_ID_MAX]; /* webhook-id: id of the batch's last event */
} dsp_batch;

/* Renders events[0..n) into b (body, ids, timestamps); events at or before
 * (after_lsn, after_seq) are skipped when has_after. Returns the number of
 * events kept (0 = nothing to post) or -1 on allocation failure. */
int dsp_batch_fill(dsp_batch *b, const char *tenant, Walhook__Event *const *events, size_t n,
                   int has_after, uint64_t after_lsn, uint32_t after_seq);
void dsp_batch_free(dsp_batch *b);
/* dsp_batch_fill with a format: events the filter refuses are skipped
 * (counted in *filtered; last_lsn/last_seq still move past them, so a batch
 * of only filtered events is a "skip" batch with n == 0 that the loop
 * commits without posting); when fmt->render the wire body is rendered too,
 * each event right after the filter passed it. Returns b->scanned (0 =
 * nothing read) or -1 (allocation, rendering). */
int dsp_batch_fill_fmt(dsp_batch *b, const char *tenant, Walhook__Event *const *events, size_t n,
                       int has_after, uint64_t after_lsn, uint32_t after_seq, const dsp_format *fmt,
                       uint64_t *filtered);
/* dsp_batch_fill_fmt; borrow 1: the events' bytes stay valid as long as
 * the batch is used (the caller keeps them, e.g. in b->held), so a rendered
 * batch does not copy them into body (ptrs point at them). */
int dsp_batch_fill_ex(dsp_batch *b, const char *tenant, Walhook__Event *const *events, size_t n,
                      int has_after, uint64_t after_lsn, uint32_t after_seq, const dsp_format *fmt,
                      uint64_t *filtered, int borrow);

typedef enum {
    DSP_T_IDLE = 0,
    DSP_T_POSTING,
    DSP_T_BACKOFF, /* waiting: retry backoff, breaker open or rate limit */
    DSP_T_PAUSED,  /* published only */
    DSP_T_DISABLED,
    DSP_T_DEADLETTER, /* the reader writes dead letters; the loop waits */
    DSP_T_BLOCKED     /* on_failure = block: retrying one failing event */
} dsp_tstate;

typedef void (*dsp_notify_fn)(void *arg);

struct dsp_target;

/* One HTTP request's curl handle and what its answer left (response
 * excerpt, Retry-After, SSRF refusal, curl's error text). The target's own
 * request uses t->x; each by_key lane has one more (CURLOPT_PRIVATE points
 * at the xfer). */
typedef struct dsp_xfer {
    CURL *easy;
    struct curl_slist *hdrs;
    dsp_headers hdr;
    struct dsp_target *t;
    int lane; /* -1: the target's strict request, else the lane index */
    char resp[DSP_EXCERPT_MAX];
    size_t resp_len, resp_total;
    int resp_capped;
    char retry_after[64];
    int has_retry_after;
    int ssrf_refused;
    char ssrf_why[192];
    char curl_err[CURL_ERROR_SIZE];
} dsp_xfer;

#define DSP_LANES_DEFAULT 4
#define DSP_LANES_MAX 64
#define DSP_MAX_CONN_DEFAULT 2

typedef enum {
    DSP_LN_IDLE = 0, /* nothing built for the head batch yet */
    DSP_LN_POSTING,
    DSP_LN_BACKOFF, /* retrying its request after retry_at_ms */
    DSP_LN_DONE     /* its events of the head batch are delivered */
} dsp_lnstate;

/* ordering = by_key: one lane's request for the head batch: the events of
 * the batch whose key hashes to this lane (dsp_lane.h), in batch order. */
typedef struct dsp_lanereq {
    dsp_xfer x;
    dsp_lnstate state;
    uint32_t *idx; /* event indices (head batch) of this request */
    size_t nidx, cap;
    const void **ptrs; /* for rendering */
    size_t *plens;
    wh_buf body; /* "[e..]" */
    wh_buf wire; /* rendered envelope (fmt->render) */
    dsp_env_out env;
    char id[DSP_ID_MAX];
    int attempt;
    uint64_t first_fail_ms, retry_at_ms;
    int ahead; /* 1: done with the head batch, working on the next one */
} dsp_lanereq;

/* Events the store pushed with a durability notification (wh_note with
 * push), shared by the targets of its tenant: each holds a reference. */
typedef struct dsp_push {
    atomic_int refs;
    size_t bytes; /* the packed note's size (what it holds, about) */
    wh_note note;
} dsp_push;
#define DSP_PUSH_RING 16                   /* pushes a target keeps until its reader passes them */
#define DSP_PUSH_TARGET_BYTES (256 * 1024) /* ...and their bytes at most (older ones dropped) */
/* A notification's receiver takes a batch from pushes itself (instead of
 * waking the reader) only while the target keeps at most this many bytes
 * pushed: it serves the targets of the tenant in turn. */
#define DSP_PUSH_FAST_BYTES (64 * 1024)
/* ...and for at most this many targets per notification (the others' readers
 * take theirs, in parallel; the receiver holds the target list) */
#define DSP_PUSH_FAST_TARGETS 4

/* A new push (one reference, the caller's) of a note received in `bytes`
 * bytes; NULL when note has no push or the pushes kept by every target
 * together would exceed WH_BUDGET_DSP_PUSH_BYTES (the readers then Read).
 * The note's push moves into it (note->push becomes NULL). */
dsp_push *dsp_push_new(wh_note *note, size_t bytes);
void dsp_push_unref(dsp_push *p);
/* Batches taken from pushes instead of a Read, every target together. */
uint64_t dsp_push_batches(void);
/* ...of which were taken as the notification arrived (an idle reader's next
 * batch). */
uint64_t dsp_push_fast(void);

typedef struct dsp_target {
    /* static */
    char name[WH_NAME_MAX];
    char url[WH_URL_MAX];
    dsp_key keys[DSP_KEYS_MAX];
    int nkeys;
    dsp_settings set;
    _Atomic uint64_t lease_epoch; /* sent with every commit (fencing), 0 = no leases */
    /* loop thread: a request may start until then under lease_post_epoch
     * (dsp_loop_lease_hooks.post_until) */
    uint64_t lease_post_until, lease_post_epoch;
    dsp_notify_fn notify; /* called by the reader when a batch is ready */
    void *notify_arg;

    /* shared between reader and loop, guarded by mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;  /* the reader waits on it (notes, slots, dead letters, acks) */
    pthread_cond_t ccv; /* the committer waits on it (commit_pending, stop) */
    dsp_batch slots[DSP_PREFETCH];
    unsigned head, count;
    int commit_pending;
    int commit_sleep; /* the committer waits out commit_interval_ms: no signal needed */
    int commit_busy;  /* the committer is sending one (mu released) */
    int commit_now;   /* send the pending one without waiting out the interval */
    int rwait;        /* the reader waits for the loop to finish a batch (advance signals) */
    int dlq_pending;  /* loop -> reader: write dlq_req */
    int dlq_done;     /* reader -> loop: 1 written, -1 refused (reset follows) */
    dsp_dlq_req dlq_req;
    int ack_pending; /* loop -> reader: ReplayAck up to ack_lsn/ack_seq */
    int ack_final;   /* ...and the replay batch is done: the reader may read the queue again */
    uint64_t ack_lsn;
    uint32_t ack_seq;
    uint64_t ack_gen;        /* the replay batch's generation */
    int replay_inflight;     /* reader: a replay batch is queued or posting */
    uint64_t next_replay_ms; /* reader: when to look at the replay queue again */
    uint64_t commit_lsn;
    uint32_t commit_seq;
    uint64_t commit_epoch;
    int stop;
    uint64_t note_gen;             /* durability notifications of its tenant (dsp_target_note) */
    dsp_push *push[DSP_PUSH_RING]; /* pushed events not yet passed, oldest first */
    int npush;
    size_t push_bytes; /* their bytes */
    uint64_t note_lsn; /* position of the latest notification (UINT64_MAX: read) */
    uint32_t note_seq;
    int reset_req; /* reader: the offset moved; loop: drop and reset */
    unsigned gen;  /* bumped by each reset; a read of an older gen is dropped */
    /* The reader's idle wait: after a batch up to the latest notified
     * position (or an empty Read) it waits for the next notification of
     * its tenant (note_gen past ri_note), a reset (gen past ri_gen) or
     * ri_until. ridle: it is in that wait now, so a notification's receiver
     * may take the next batch from a push itself (dsp_target_note), marked
     * by rbusy: the reader waits while it is set. */
    int ri_idle;
    uint64_t ri_note, ri_until;
    unsigned ri_gen;
    int ridle;
    int rbusy;

    /* reader private (has_from to my_gen and rfmt: also the notification
     * thread's while it sets rbusy) */
    wh_sub *notify_sub;     /* the dispatcher's notification subscriber (NULL: none) */
    wh_counter empty_reads; /* Reads that found nothing */
    pthread_t thr;
    int thr_started;
    wh_client *store;
    /* the committer thread sends CommitOffset with its own client, so the
     * reader takes the next batch (pushed events) while a commit syncs */
    pthread_t cthr;
    int cthr_started;
    wh_client *cstore;
    int has_from;
    uint64_t from_lsn;
    uint32_t from_seq;
    int has_epoch; /* epoch of the reads since the last reset */
    uint64_t epoch;
    uint64_t moves;        /* the store's offset-move count at the last Read (pushes must match) */
    Walhook__Event **pevs; /* pushed events of the batch being taken (push_take) */
    size_t pevs_cap;
    unsigned my_gen;

    /* loop private */
    dsp_xfer x; /* the strict request (and the handle lanes are copied from) */
    /* The target's own connection pool: every handle of the target shares
     * this connection cache (CURL_LOCK_DATA_CONNECT), so no other target
     * reuses its connections and it reuses no one else's. nsock counts the
     * sockets open for it (CURLOPT_OPENSOCKETFUNCTION / CLOSESOCKETFUNCTION),
     * idle pooled ones included; over max_connections (the setting was
     * lowered) the target starts nothing until its requests finish, then
     * swaps in a fresh pool and closes the old one's connections. */
    CURLSH *share;
    atomic_int nsock; /* read by the metrics thread too */
    /* http_version, the URL or an SSRF allow list changed: renew the pool
     * when idle (pool_stale_why: what changed, for the log) */
    int pool_stale;
    const char *pool_stale_why;
    dsp_tstate state;
    int attempt;             /* failed attempts of the current request */
    int single;              /* single mode: posting the head batch one event at a time */
    size_t single_i;         /* next event of the head batch in single mode */
    size_t dlq_from, dlq_to; /* DEADLETTER: the events being written */
    int disabled;            /* 410 Gone: nothing is posted until resumed */
    int blocked;             /* on_failure = block and the head event failed for good */
    uint64_t first_fail_ms;
    dsp_attempt_error first_err, last_err;
    /* dead-letter log (loop private): the first dead letter is logged in
     * full, the next ones are summed up at most every DSP_DLQ_LOG_EVERY_MS */
    uint64_t dlq_log_ms;  /* monotonic ms of the last line, 0 = none yet */
    uint64_t dlq_log_n;   /* events dead-lettered since then, not logged */
    char dlq_log_why[96]; /* reason of the last of those */
    /* ordering = by_key (loop private): the head batch is posted by lanes,
     * each its own request; the batch is popped when every lane is done and
     * the offset moves meanwhile up to the first event not delivered yet
     * (cooperative checkpoint). A lane that fails for good sends the rest of
     * the batch to single mode (events delivered by lanes are skipped). */
    dsp_lanereq *lanes;
    int nlanes;       /* allocated */
    int lnl;          /* lanes of the head batch */
    int lmode;        /* the head batch is handled by lanes */
    int lfail;        /* a lane failed for good: no new lane request */
    int lposting;     /* lane requests in flight */
    uint8_t *ev_lane; /* lane of each event of the head batch */
    uint8_t *ev_done; /* 1: delivered by a lane */
    size_t ev_cap;
    /* A lane done with the head batch goes on with its events of the next
     * batch (the slot after the head) while the others finish theirs, so
     * lanes do not wait for each other at the end of each batch; per-key
     * order holds (a key's events stay in one lane, batch after batch) and
     * the offset still moves only within the head batch. When the head is
     * popped, the next batch's lane state becomes the head's. */
    int ah_ready;     /* ah_* describe the batch in slot ah_slot */
    int ah_slot;      /* slot index of the next batch */
    unsigned ah_gen;  /* t->gen when it was set up (a reset drops it) */
    int ah_fail;      /* a lane failed for good on the next batch */
    int ah_logged;    /* the first run-ahead was logged */
    uint8_t *ah_lane; /* lane of each event of the next batch */
    uint8_t *ah_done; /* 1: delivered by a lane ahead */
    size_t ah_cap;
    int done_valid;      /* ev_done describes the head batch (single mode skips those) */
    size_t done_upto;    /* events [0, done_upto) of the head batch are done and committed */
    wh_buf one;          /* single mode body "[e]" */
    dsp_env_out one_env; /* single mode: its content type and headers */
    dsp_format lfmt;     /* the loop's format (single mode) */
    dsp_format rfmt;     /* the reader's format (batches) */
    unsigned fmt_gen;    /* bumped (under mu) when the format settings change */
    unsigned rfmt_gen;   /* reader: the generation rfmt was built from */
    dsp_breaker br;
    dsp_nack nack;
    dsp_limit lim;
    wh_cidr_list allow_g, allow_t;
    uint64_t retry_at_ms; /* BACKOFF: monotonic ms of the next attempt */
    uint64_t last_warn_ms;
    int paused;    /* written under the loop's metrics lock */
    dsp_spec spec; /* what the target runs with (for comparisons) */
    int has_spec;
    dsp_spec *next_spec; /* a change waiting for the request in flight */
    int seen;            /* reconcile mark */
    /* removed from the state (or deleted and created again) with requests
     * in flight: the loop lets them end (dsp_target_discard, answers not
     * applied) before it destroys it, and no target of the same name
     * posts meanwhile; drain_ms: monotonic ms when that began */
    int draining;
    uint64_t drain_ms;
    atomic_int state_pub; /* state, published for the metrics */

    /* metrics (atomics, any thread) */
    wh_counter delivered;
    wh_counter failures;
    wh_histogram latency;
    wh_gauge committed_lsn;
    wh_counter resets;       /* read-ahead dropped because the offset moved */
    wh_counter retries;      /* attempts that will be retried */
    wh_counter dead_letters; /* events written to the DLQ */
    wh_counter shed;         /* of those, shed by mode fast */
    wh_counter filtered;     /* events skipped by the target's filter */
    wh_counter replayed;     /* dead letters delivered again (DLQ replay) */
    wh_counter rate_waits;   /* times a request waited for the token bucket */
    wh_counter ssrf_refusals;
    wh_counter breaker_opens;
    wh_counter permanent;    /* attempts answered with a permanent failure */
    atomic_int breaker_pub;  /* dsp_br_state */
    atomic_int degraded_pub; /* nack window over its threshold */
    atomic_int disabled_pub;
    atomic_int blocked_pub;
    atomic_int needs_snapshot_pub; /* the store marked it behind the retention cap */
    /* the last failed attempt (under mu, for the metrics): its text (no
     * body, no quotes or backslashes) and wall clock time; "" = none */
    char err_pub[DSP_CURLERR_MAX];
    int64_t err_pub_us;
} dsp_target;

/* Swaps in the runtime settings (batch limits, retry backoff, HTTP timeout)
 * of a reloaded configuration. Called on the loop thread. */
void dsp_target_apply_settings(dsp_target *t, const dsp_settings *set);

/* Prepares the target (keys, curl handle, slots). Does not start the
 * reader. */
int dsp_target_init(dsp_target *t, const dsp_spec *sp, dsp_notify_fn notify, void *notify_arg,
                    char *err, size_t errlen);
/* Loop thread, not while POSTING: URL, secrets and delivery settings of sp.
 * A bad secret changes nothing (WH_ERR naming the target). */
int dsp_target_reconfigure(dsp_target *t, const dsp_spec *sp, char *err, size_t errlen);
/* Loop thread: publishes state, breaker, degraded, disabled, blocked for
 * the metrics (atomics). */
void dsp_target_publish(dsp_target *t);
/* Loop thread: logs the dead letters counted since the last line (one
 * summary per DSP_DLQ_LOG_EVERY_MS at most); called on every loop round. */
void dsp_target_log_flush(dsp_target *t, uint64_t now_ms);
/* Any thread: the last failed attempt's text and wall clock time (us) into
 * buf; 0 when the target has not failed. */
int dsp_target_last_error(dsp_target *t, char *buf, size_t len, int64_t *at_us);
/* Loop thread: clears disabled (410) and blocked; an operator's resume. */
void dsp_target_enable(dsp_target *t);
/* Loop thread, not while POSTING: drops the read-ahead batches and makes
 * the reader read again from the committed offset. */
void dsp_target_reset(dsp_target *t);
/* The target was removed (or its lease is lost): forget what the reader
 * has not sent yet: the commit, a dead-letter write and a replay ack (for
 * a removed target the store dropped its offset and queues, and a target
 * created again under the name must not get them; after a lost lease the
 * next holder reads from the committed offset). Before
 * dsp_target_stop_reader. */
void dsp_target_forget_commit(dsp_target *t);
/* Any thread: the store made events of the target's tenant durable up to
 * (lsn, seq) ((0, 0): dead letters were queued for replay): wakes the
 * reader, which reads only when notified while notifications flow. With
 * push (may be NULL; the target takes its own reference) the events came
 * along: a reader exactly at push's prev, or at one of its events, takes
 * them instead of a Read (same epoch, same offset-move count as its last
 * Read, not NEEDS_SNAPSHOT); anything else is read. may_take: when the
 * reader waits idle and nothing is read ahead, the calling thread takes
 * that batch itself and tells the loop (1 returned; the reader is then not
 * woken when the batch reached the notified position). */
int dsp_target_note(dsp_target *t, uint64_t lsn, uint32_t seq, dsp_push *push, int may_take);
/* Opens the store client and starts the reader thread. */
int dsp_target_start_reader(dsp_target *t, char *err, size_t errlen);
/* Asks the reader to stop; it sends a pending commit first (bounded tries). */
void dsp_target_stop_reader(dsp_target *t);
/* After dsp_target_stop_reader: waits until the committer has sent its
 * last commit (or failed to), at most until until_ms (wh_now_ms), then
 * interrupts its store client. */
void dsp_target_drain_commit(dsp_target *t, uint64_t until_ms);
/* Joins the reader and frees everything. The easy handle must not be in a
 * multi handle any more. */
void dsp_target_destroy(dsp_target *t);

/* Loop side. */
/* If a batch is ready and no backoff is pending, adds up to `budget`
 * requests to multi (one in strict ordering; by_key: one per lane, at most
 * max_connections in flight): returns the number started, 0 when nothing to
 * do, -1 on error. */
int dsp_target_maybe_post(dsp_target *t, CURLM *multi, uint64_t now_ms, int budget);
/* A lane's transfer (x->lane >= 0) finished: like dsp_target_finished. */
void dsp_target_lane_finished(dsp_target *t, dsp_xfer *x, CURLM *multi, CURLcode res,
                              uint64_t now_ms);
/* Requests of this target in flight. */
int dsp_target_inflight(const dsp_target *t);
/* A transfer of this target finished with `res`: removes it from multi,
 * then commits and advances on 2xx, or schedules a retry. */
void dsp_target_finished(dsp_target *t, CURLM *multi, CURLcode res, uint64_t now_ms);
/* Removes unfinished transfers (shutdown, removal): nothing is committed
 * for them. Returns how many were removed. */
int dsp_target_abandon(dsp_target *t, CURLM *multi);
/* A transfer of a draining target (t->draining) finished: removes it from
 * multi and forgets it; its answer is not applied (no commit, no dead
 * letter, no breaker or 410). *code: its HTTP status (0: none). Returns
 * the target's requests still in flight. */
int dsp_target_discard(dsp_target *t, dsp_xfer *x, CURLM *multi, long *code);
/* Milliseconds until this target wants attention from the loop (-1: none). */
long dsp_target_timeout_ms(const dsp_target *t, uint64_t now_ms);

/* Retry delay after `attempt` (1-based) failures: full jitter in
 * [0, min(max_ms, base_ms * 2^(attempt-1))], at least 1 ms. */
int dsp_retry_delay_ms(int attempt, int base_ms, int max_ms);

/* The delay before the next attempt after a retryable failure: Retry-After
 * (value ra, may be NULL) when it parses, capped at DSP_RETRY_AFTER_MAX_MS
 * and at least base_ms (retry_base_ms: "0" or a past date does not make a
 * tight loop), else dsp_retry_delay_ms. */
int dsp_next_delay_ms(const char *ra, int attempt, int base_ms, int max_ms, int64_t now_s);

#endif
