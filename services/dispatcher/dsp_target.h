/* dsp_target: one webhook target.
 *
 * Two halves:
 *  - a store-I/O thread (the "reader") owning its own wh_client to the store:
 *    it long-polls Read (tenant, consumer = target name, from = last position
 *    read, max events/bytes from the config) and renders each batch's body
 *    into one of DSP_PREFETCH reusable slots, so the next batch is ready
 *    while the current one is posting; it also sends CommitOffset when the
 *    loop reports a delivered batch (coalesced: only the newest position).
 *    Blocking store calls therefore never stall the HTTP loop or another
 *    target.
 *  - the HTTP state machine, driven only by the dispatcher's curl multi loop
 *    thread: IDLE (waiting for a batch) -> POSTING -> 2xx: commit, next batch;
 *    non-2xx / transport error: BACKOFF (full jitter, retry_base_ms ..
 *    retry_max_ms) -> POSTING the SAME batch again. In order, never skipped.
 *
 * One easy handle per target is reused for every request, so the multi
 * handle's connection cache keeps the HTTP/1.1 connection alive.
 */
#ifndef DSP_TARGET_H
#define DSP_TARGET_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "dsp_webhook.h"
#include "walhook.pb-c.h"
#include "wh_buf.h"
#include "wh_config.h"
#include "wh_ipc.h"
#include "wh_metrics.h"

#define DSP_PREFETCH 2 /* batches read ahead per target */
#define DSP_ID_MAX (WH_NAME_MAX + 48)

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
} dsp_settings;

void dsp_settings_from_config(dsp_settings *s, const wh_config *c);

/* One batch ready to post. */
typedef struct dsp_batch {
    wh_buf body;        /* "[e1,e2,...]", memory reused across batches */
    int64_t *commit_ts; /* commit_ts_us of each event, for latency */
    size_t ts_cap;
    size_t n;
    uint64_t last_lsn;
    uint32_t last_seq;
    char id[DSP_ID_MAX]; /* webhook-id: id of the batch's last event */
} dsp_batch;

/* Renders events[0..n) into b (body, ids, timestamps); events at or before
 * (after_lsn, after_seq) are skipped when has_after. Returns the number of
 * events kept (0 = nothing to post) or -1 on allocation failure. */
int dsp_batch_fill(dsp_batch *b, const char *tenant, Walhook__Event *const *events, size_t n,
                   int has_after, uint64_t after_lsn, uint32_t after_seq);
void dsp_batch_free(dsp_batch *b);

typedef enum { DSP_T_IDLE = 0, DSP_T_POSTING, DSP_T_BACKOFF } dsp_tstate;

typedef void (*dsp_notify_fn)(void *arg);

typedef struct dsp_target {
    /* static */
    int refused; /* failed dsp_target_init: no reader, never posts */
    char name[WH_NAME_MAX];
    char url[WH_URL_MAX];
    dsp_key key;
    dsp_settings set;
    dsp_notify_fn notify; /* called by the reader when a batch is ready */
    void *notify_arg;

    /* shared between reader and loop, guarded by mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    dsp_batch slots[DSP_PREFETCH];
    unsigned head, count;
    int commit_pending;
    uint64_t commit_lsn;
    uint32_t commit_seq;
    int stop;

    /* reader private */
    pthread_t thr;
    int thr_started;
    wh_client *store;
    int has_from;
    uint64_t from_lsn;
    uint32_t from_seq;

    /* loop private */
    CURL *easy;
    struct curl_slist *hdrs;
    dsp_headers hdr;
    dsp_tstate state;
    int attempt;          /* failed attempts of the current batch */
    uint64_t retry_at_ms; /* BACKOFF: monotonic ms of the next attempt */
    uint64_t last_warn_ms;
    char curl_err[CURL_ERROR_SIZE];

    /* metrics (atomics, any thread) */
    wh_counter delivered;
    wh_counter failures;
    wh_counter config_errors; /* times this target was refused */
    wh_histogram latency;
    wh_gauge committed_lsn;
} dsp_target;

/* Swaps in the runtime settings (batch limits, retry backoff, HTTP timeout)
 * of a reloaded configuration. Called on the loop thread. */
void dsp_target_apply_settings(dsp_target *t, const dsp_settings *set);

/* Prepares the target (wh_target_validate, key, curl handle, slots). Does
 * not start the reader. On failure the target is left `refused` (it never
 * posts, its config_errors counter is 1) and must still be destroyed. */
int dsp_target_init(dsp_target *t, const wh_target *cfg, const dsp_settings *set,
                    dsp_notify_fn notify, void *notify_arg, char *err, size_t errlen);
/* Opens the store client and starts the reader thread. */
int dsp_target_start_reader(dsp_target *t, char *err, size_t errlen);
/* Asks the reader to stop; it sends a pending commit first (bounded tries). */
void dsp_target_stop_reader(dsp_target *t);
/* Joins the reader and frees everything. The easy handle must not be in a
 * multi handle any more. */
void dsp_target_destroy(dsp_target *t);

/* Loop side. */
/* If a batch is ready and no backoff is pending, adds the request to multi:
 * returns 1 when a request was started, 0 when nothing to do, -1 on error. */
int dsp_target_maybe_post(dsp_target *t, CURLM *multi, uint64_t now_ms);
/* A transfer of this target finished with `res`: removes it from multi,
 * then commits and advances on 2xx, or schedules a retry. */
void dsp_target_finished(dsp_target *t, CURLM *multi, CURLcode res, uint64_t now_ms);
/* Removes an unfinished transfer (shutdown): nothing is committed for it. */
void dsp_target_abandon(dsp_target *t, CURLM *multi);
/* Milliseconds until this target wants attention from the loop (-1: none). */
long dsp_target_timeout_ms(const dsp_target *t, uint64_t now_ms);

/* Retry delay after `attempt` (1-based) failures: full jitter in
 * [0, min(max_ms, base_ms * 2^(attempt-1))], at least 1 ms. */
int dsp_retry_delay_ms(int attempt, int base_ms, int max_ms);

#endif
