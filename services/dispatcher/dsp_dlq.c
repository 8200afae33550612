/* dsp_dlq: dead letters to the store (DlqWrite). See dsp_dlq.h. */
#include "dsp_dlq.h"

#include <stdlib.h>
#include <string.h>

#include "wh_util.h"

void dsp_dlq_reason(char *dst, size_t dstlen, int exhausted, const char *why)
{
    (void)wh_cut_words(dst, dstlen, "%s%s", exhausted ? "retries exhausted: " : "", why);
}

static void fill_error(Walhook__DlqError *pe, const dsp_attempt_error *e)
{
    walhook__dlq_error__init(pe);
    pe->status = (int32_t)e->status;
    pe->curl_code = e->curl_code;
    pe->curl_error = (char *)e->curl_err;
    pe->body_excerpt.data = (uint8_t *)e->body;
    pe->body_excerpt.len = e->body_len;
    pe->at_us = e->at_us;
}

int dsp_dlq_write(wh_client *store, const dsp_dlq_req *r, char *err, size_t errlen)
{
    if (r->n == 0)
        return WH_OK;
    /* one block for the records, their events and pointers: a dead letter is
     * the slow path, one allocation per write is fine */
    size_t sz =
        r->n * (sizeof(Walhook__DlqRecord) + sizeof(Walhook__Event) + sizeof(Walhook__DlqRecord *));
    char *mem = malloc(sz);
    if (mem == NULL)
        return wh_seterr(err, errlen, "out of memory (%zu dead letters)", r->n);
    Walhook__DlqRecord *recs = (Walhook__DlqRecord *)mem;
    Walhook__Event *evs = (Walhook__Event *)(recs + r->n);
    Walhook__DlqRecord **ptrs = (Walhook__DlqRecord **)(evs + r->n);
    Walhook__DlqError first, last;
    fill_error(&first, &r->first);
    fill_error(&last, &r->last);
    int64_t now = wh_wallclock_us();
    for (size_t i = 0; i < r->n; i++) {
        walhook__event__init(&evs[i]);
        evs[i].commit_lsn = r->lsns[i];
        evs[i].seq = r->seqs[i];
        evs[i].commit_ts_us = r->commit_ts_us[i];
        evs[i].json.data = (uint8_t *)r->jsons[i];
        evs[i].json.len = r->lens[i];
        walhook__dlq_record__init(&recs[i]);
        recs[i].event = &evs[i];
        recs[i].attempts = (uint32_t)(r->attempts > 0 ? r->attempts : 0);
        recs[i].first_error = &first;
        recs[i].last_error = &last;
        recs[i].dead_at_us = now;
        recs[i].reason = (char *)r->reason;
        ptrs[i] = &recs[i];
    }
    Walhook__Position pos = WALHOOK__POSITION__INIT;
    pos.lsn = r->lsns[r->n - 1];
    pos.seq = r->seqs[r->n - 1];
    Walhook__DlqWrite w = WALHOOK__DLQ_WRITE__INIT;
    w.tenant = (char *)r->tenant;
    w.consumer = (char *)r->consumer;
    w.n_records = r->n;
    w.records = ptrs;
    if (r->replay) {
        /* behind the offset: the offset stays, the replay entries go */
        w.has_replay_ack = 1;
        w.replay_ack = &pos;
        w.replay_gen = r->replay_gen;
    } else {
        w.has_pos = 1;
        w.pos = &pos;
    }
    w.epoch = r->epoch;
    w.lease_epoch = r->lease_epoch;
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    req.body_case = WALHOOK__REQUEST__BODY_DLQ_WRITE;
    req.dlq_write = &w;
    Walhook__Reply *rep = NULL;
    int status = 0;
    int rc = wh_client_call_status(store, &req, &rep, &status, err, errlen);
    free(mem);
    if (rc != WH_OK)
        return status == 409 || status == 429 ? status : WH_ERR;
    int ok = rep->body_case == WALHOOK__REPLY__BODY_DLQ && rep->dlq != NULL;
    walhook__reply__free_unpacked(rep, NULL);
    if (!ok)
        return wh_seterr(err, errlen, "store replied to DlqWrite without a dlq body");
    return WH_OK;
}
