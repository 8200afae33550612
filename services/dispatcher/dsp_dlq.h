/* dsp_dlq: a target's dead letters, as the dispatcher hands them to the
 * store (issue 8). The store writes the dead letters and the consumer's new
 * offset (the position of the last one) in ONE synced batch, checking the
 * offset epoch, so an event is either still ahead of the offset or
 * recorded. Called on the target's store-reader thread (it owns the store
 * client); the loop waits meanwhile and keeps the batch untouched.
 *
 * The wire format is the store's DlqWrite message (its owner: the store
 * side); this module only translates. */
#ifndef DSP_DLQ_H
#define DSP_DLQ_H

#include <stddef.h>
#include <stdint.h>

#include "walhook.pb-c.h"
#include "wh_ipc.h"

#define DSP_EXCERPT_MAX 512 /* bytes of a response body kept for a dead letter */
#define DSP_CURLERR_MAX 256

/* One failed attempt, as recorded. */
typedef struct dsp_attempt_error {
    long status;   /* HTTP status, 0 when none */
    int curl_code; /* CURLcode, 0 when a response arrived */
    char curl_err[DSP_CURLERR_MAX];
    char body[DSP_EXCERPT_MAX]; /* excerpt of the response body (not NUL-terminated) */
    size_t body_len;
    int64_t at_us; /* wall clock */
} dsp_attempt_error;

/* Dead letters [from, to) of one batch: their JSON bytes and positions. */
typedef struct dsp_dlq_req {
    const char *tenant;
    const char *consumer;
    uint64_t epoch;       /* the offset epoch the events were read with */
    uint64_t lease_epoch; /* the target's lease (0 = none) */
    size_t n;
    const void *const *jsons; /* event i's JSON: jsons[i], lens[i] bytes */
    const size_t *lens;
    const uint64_t *lsns;
    const uint32_t *seqs;
    const int64_t *commit_ts_us;
    int attempts;
    dsp_attempt_error first, last;
    int replay;          /* replayed events: no offset move, their replay entries acked */
    uint64_t replay_gen; /* ... with the generation of the ReplayRead that returned them */
    char reason[96];     /* "HTTP 400", "retries exhausted", "backlog over cap (fast mode)" */
} dsp_dlq_req;

/* The reason of dead letters that failed for good: "retries exhausted: "
 * (when exhausted) then why (the failure: a transport error, "HTTP 400
 * (permanent)"), into dst (dstlen > 4; sizeof(dsp_dlq_req.reason) for
 * the record and the log lines). Text that does not fit is cut after a
 * whole word and ends with "..." (wh_cut_words), so a reader sees it was
 * cut. */
void dsp_dlq_reason(char *dst, size_t dstlen, int exhausted, const char *why);

/* WH_OK; 409 when the store refused the epoch (the offset moved or another
 * owner took the target); 429 when it refused the write for now (its
 * writes wait for the disk: nothing stored, send it again after the
 * client's retry_after_ms); WH_ERR otherwise (err says why). */
int dsp_dlq_write(wh_client *store, const dsp_dlq_req *r, char *err, size_t errlen);

#endif
