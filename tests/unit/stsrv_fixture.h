/* Requests to st_server's handler for the store's unit tests
 * (test_store_server.c, test_store_stagefile.c): the handler called
 * directly, request builders (appends, reads, streamed transactions:
 * stage, commit, abort), the events a Read returns collected and checked
 * against what a committed streamed transaction must hold, staging counts
 * and a metric of the Stats text. Include after cmocka.h. */
#ifndef WH_TEST_STSRV_FIXTURE_H
#define WH_TEST_STSRV_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/store/st_db.h"
#include "../../services/store/st_server.h"
#include "wh_util.h"

/* Calls the handler directly; returns status. */
static inline int stsrv_call(st_server *srv, const Walhook__Request *req, Walhook__Reply *rep,
                             void **cookie)
{
    walhook__reply__init(rep);
    *cookie = NULL;
    st_server_handle(srv, req, rep, cookie);
    return rep->status;
}

/* ---- appends and reads ---- */

typedef struct stsrv_append_req {
    Walhook__Request req;
    Walhook__AppendBatch a;
    Walhook__Event ev[64];
    Walhook__Event *evp[64];
} stsrv_append_req;

/* n events {"k":1} at (lsn, 0..n-1), ack_lsn ack */
static inline void stsrv_make_append(stsrv_append_req *r, const char *tenant, size_t n,
                                     uint64_t lsn, uint64_t ack)
{
    assert_true(n <= 64);
    walhook__request__init(&r->req);
    walhook__append_batch__init(&r->a);
    for (size_t i = 0; i < n; i++) {
        walhook__event__init(&r->ev[i]);
        r->ev[i].commit_lsn = lsn;
        r->ev[i].seq = (uint32_t)i;
        r->ev[i].commit_ts_us = 1000;
        r->ev[i].json.data = (uint8_t *)"{\"k\":1}";
        r->ev[i].json.len = 7;
        r->evp[i] = &r->ev[i];
    }
    r->a.tenant = (char *)tenant;
    r->a.n_events = n;
    r->a.events = r->evp;
    r->a.ack_lsn = ack;
    r->req.body_case = WALHOOK__REQUEST__BODY_APPEND;
    r->req.append = &r->a;
}

typedef struct stsrv_read_req {
    Walhook__Request req;
    Walhook__ReadRequest r;
    Walhook__Position from;
} stsrv_read_req;

/* A Read of tenant by consumer (NULL: none), from (lsn, seq) (exclusive)
 * if has_from, waiting up to wait_ms; max_events and max_bytes unset. */
static inline void stsrv_make_read(stsrv_read_req *r, const char *tenant, const char *consumer,
                                   int has_from, uint64_t lsn, uint32_t seq, uint32_t wait_ms)
{
    walhook__request__init(&r->req);
    walhook__read_request__init(&r->r);
    walhook__position__init(&r->from);
    r->r.tenant = (char *)tenant;
    r->r.consumer = (char *)consumer;
    r->r.has_from = has_from;
    r->from.lsn = lsn;
    r->from.seq = seq;
    r->r.from = has_from ? &r->from : NULL;
    r->r.wait_ms = wait_ms;
    r->req.body_case = WALHOOK__REQUEST__BODY_READ;
    r->req.read = &r->r;
}

/* ---- streamed transactions (AppendBatch.stage_*) ---- */

typedef struct stsrv_stage_req {
    Walhook__Request req;
    Walhook__AppendBatch a;
    Walhook__StageCommit c;
    ProtobufCBinaryData parts[4];
    Walhook__StageAbort ab[4];
    Walhook__StageAbort *abp[4];
    Walhook__Event ev[256];
    Walhook__Event *evp[256];
    char body[256][40];
} stsrv_stage_req;

static inline void stsrv_stage_init(stsrv_stage_req *r, const char *tenant)
{
    memset(r, 0, sizeof(*r));
    walhook__request__init(&r->req);
    walhook__append_batch__init(&r->a);
    r->a.tenant = (char *)tenant;
    r->req.body_case = WALHOOK__REQUEST__BODY_APPEND;
    r->req.append = &r->a;
}

/* Staged events idx first..first+n-1 of xid, bodies "\"b\":\"<tag><idx>\"}" */
static inline void stsrv_make_stage(stsrv_stage_req *r, const char *tenant, uint32_t xid, int reset,
                                    uint32_t first, size_t n, uint32_t subxid, char tag)
{
    stsrv_stage_init(r, tenant);
    assert_true(n <= 256);
    for (size_t i = 0; i < n; i++) {
        walhook__event__init(&r->ev[i]);
        r->ev[i].seq = first + (uint32_t)i;
        r->ev[i].subxid = subxid;
        int l =
            snprintf(r->body[i], sizeof(r->body[i]), "\"b\":\"%c%u\"}", tag, first + (uint32_t)i);
        r->ev[i].json.data = (uint8_t *)r->body[i];
        r->ev[i].json.len = (size_t)l;
        r->evp[i] = &r->ev[i];
    }
    r->a.n_events = n;
    r->a.events = r->evp;
    r->a.stage_xid = xid;
    r->a.stage_reset = reset;
}

/* The head parts of every commit: an event's json is head(seq) + body. */
static const char *const STSRV_HEAD[3] = {"{\"id\":\"t:", "\",\"seq\":", ","};

/* The commit of xid at lsn (commit_ts 5000, head STSRV_HEAD), ack_lsn ack */
static inline void stsrv_make_commit(stsrv_stage_req *r, const char *tenant, uint32_t xid,
                                     uint64_t lsn, uint64_t ack)
{
    stsrv_stage_init(r, tenant);
    walhook__stage_commit__init(&r->c);
    r->c.xid = xid;
    r->c.commit_lsn = lsn;
    r->c.commit_ts_us = 5000;
    for (int i = 0; i < 3; i++) {
        r->parts[i].data = (uint8_t *)STSRV_HEAD[i];
        r->parts[i].len = strlen(STSRV_HEAD[i]);
    }
    r->c.n_head_parts = 3;
    r->c.head_parts = r->parts;
    r->a.stage_commit = &r->c;
    r->a.ack_lsn = ack;
}

/* The abort of subxid of xid (subxid == xid: the whole xid; both 0: drop
 * all staging). */
static inline void stsrv_make_aborts(stsrv_stage_req *r, const char *tenant, uint32_t xid,
                                     uint32_t subxid)
{
    stsrv_stage_init(r, tenant);
    walhook__stage_abort__init(&r->ab[0]);
    r->ab[0].xid = xid;
    r->ab[0].subxid = subxid;
    r->abp[0] = &r->ab[0];
    r->a.n_stage_aborts = 1;
    r->a.stage_aborts = r->abp;
}

/* Sends an append request; status 0 expected; returns AppendReply.stored,
 * its durable_lsn into *durable (NULL: not wanted). */
static inline uint32_t stsrv_stage_call(st_server *srv, const Walhook__Request *req,
                                        uint64_t *durable)
{
    Walhook__Reply rep;
    void *cookie;
    int st = stsrv_call(srv, req, &rep, &cookie);
    if (st != 0)
        fail_msg("status %d: %s", st, rep.error ? rep.error : "");
    assert_int_equal(rep.body_case, WALHOOK__REPLY__BODY_APPEND);
    uint32_t stored = rep.append->stored;
    if (durable)
        *durable = rep.append->durable_lsn;
    st_server_done(srv, &rep, cookie);
    return stored;
}

/* The json a committed staged event must have: head(seq) + body */
static inline size_t stsrv_expect_json(char *out, size_t len, uint32_t seq, char tag, uint32_t idx)
{
    return (size_t)snprintf(out, len, "%s%u%s%u%s\"b\":\"%c%u\"}", STSRV_HEAD[0], seq,
                            STSRV_HEAD[1], seq, STSRV_HEAD[2], tag, idx);
}

/* ---- what a Read returns ---- */

/* Events read (calloc it: it is large). */
typedef struct stsrv_collected {
    size_t n;
    uint64_t lsn[2048];
    uint32_t seq[2048];
    int64_t ts[2048];
    size_t len[2048];
    char json[2048][96];
} stsrv_collected;

/* Appends an event read to out (its json cut at 95 bytes, its length
 * whole). */
static inline void stsrv_collect(stsrv_collected *out, const Walhook__Event *e)
{
    assert_true(out->n < 2048);
    out->lsn[out->n] = e->commit_lsn;
    out->seq[out->n] = e->seq;
    out->ts[out->n] = e->commit_ts_us;
    out->len[out->n] = e->json.len;
    size_t jl = e->json.len < 95 ? e->json.len : 95;
    memcpy(out->json[out->n], e->json.data, jl);
    out->json[out->n][jl] = '\0';
    out->n++;
}

/* Every event of the tenant through Read (from (0,0), no consumer). */
static inline void stsrv_read_all(st_server *srv, const char *tenant, stsrv_collected *out)
{
    out->n = 0;
    uint64_t lsn = 0;
    uint32_t seq = 0;
    for (;;) {
        stsrv_read_req r;
        stsrv_make_read(&r, tenant, NULL, 1, lsn, seq, 0);
        r.r.max_events = 1000;
        Walhook__Reply rep;
        void *cookie;
        int st = stsrv_call(srv, &r.req, &rep, &cookie);
        if (st != 0)
            fail_msg("read: status %d: %s", st, rep.error ? rep.error : "");
        size_t n = rep.read->n_events;
        for (size_t i = 0; i < n; i++) {
            stsrv_collect(out, rep.read->events[i]);
            lsn = rep.read->events[i]->commit_lsn;
            seq = rep.read->events[i]->seq;
        }
        st_server_done(srv, &rep, cookie);
        if (n == 0)
            break;
    }
}

/* c[at..at+n): a committed streamed transaction at lsn, seq 0..n-1,
 * commit_ts 5000, json head(seq) + body of tag and staging index idx[i]
 * (idx NULL: idx0 + i). with_len: the json's whole length is checked too
 * (test_store_stagefile.c); 0: its text only, as far as it was collected
 * (test_store_server.c). */
static inline void stsrv_expect_txn(const stsrv_collected *c, size_t at, size_t n, uint64_t lsn,
                                    char tag, const uint32_t *idx, uint32_t idx0, int with_len)
{
    assert_true(at + n <= c->n);
    for (uint32_t i = 0; i < n; i++) {
        char want[96];
        size_t wl = stsrv_expect_json(want, sizeof(want), i, tag, idx ? idx[i] : idx0 + i);
        assert_true(c->lsn[at + i] == lsn);
        assert_int_equal(c->seq[at + i], i);
        assert_int_equal(c->ts[at + i], 5000);
        if (with_len)
            assert_int_equal(c->len[at + i], wl);
        assert_string_equal(c->json[at + i], want);
    }
}

/* The tenant's events: exactly one committed streamed transaction of n
 * events at lsn, bodies of tag from staging index 0 (with_len: as
 * stsrv_expect_txn). */
static inline void stsrv_read_expect(st_server *srv, const char *tenant, size_t n, uint64_t lsn,
                                     char tag, int with_len)
{
    stsrv_collected *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    stsrv_read_all(srv, tenant, c);
    assert_int_equal(c->n, n);
    stsrv_expect_txn(c, 0, n, lsn, tag, NULL, 0, with_len);
    free(c);
}

/* ---- counts ---- */

/* The events staged for xid of tenant (up to a million). */
static inline uint64_t stsrv_staged_count(st_db *db, const char *tenant, uint32_t xid)
{
    char err[WH_ERRLEN];
    uint64_t n = 0;
    if (st_db_stage_count(db, tenant, xid, 1000000, &n, err, sizeof(err)) != WH_OK)
        fail_msg("stage count: %s", err);
    return n;
}

/* The tenant's committed streamed transactions whose staging is kept (up
 * to a million). */
static inline uint64_t stsrv_committed_count(st_db *db, const char *tenant)
{
    char err[WH_ERRLEN];
    uint64_t n = 0;
    assert_int_equal(st_db_stage_committed(db, tenant, 1000000, &n, err, sizeof(err)), WH_OK);
    return n;
}

/* A metric of the store's Stats text (counter or gauge) */
static inline uint64_t stsrv_metric_of(st_server *srv, const char *name)
{
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__StatsRequest sr = WALHOOK__STATS_REQUEST__INIT;
    req.body_case = WALHOOK__REQUEST__BODY_STATS;
    req.stats = &sr;
    Walhook__Reply rep;
    void *cookie;
    assert_int_equal(stsrv_call(srv, &req, &rep, &cookie), 0);
    char needle[128];
    snprintf(needle, sizeof(needle), "\n%s ", name);
    const char *p = strstr(rep.stats->metrics_text, needle);
    assert_non_null(p);
    uint64_t v = strtoull(p + strlen(needle), NULL, 10);
    st_server_done(srv, &rep, cookie);
    return v;
}

#endif
