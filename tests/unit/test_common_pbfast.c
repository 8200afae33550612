/* Unit tests of wh_pbfast: the in-place decoders of the store's Append
 * request and of a Read's reply against protobuf-c's own unpack. Messages
 * packed by protobuf-c with every field they handle (random values, zeros
 * left out, json of 0 to 3000 bytes) decode to equal structures with json
 * pointing into the input; messages with other fields (or an error reply)
 * are refused (protobuf-c takes them); and for 200,000 mutations of valid
 * messages of each kind (bytes changed, cut, inserted), every one the fast
 * path accepts is accepted by protobuf-c with an equal result. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "walhook.pb-c.h"
#include "wh_pbfast.h"
#include "wh_util.h"

static uint64_t rng = 0x9E3779B97F4A7C15u;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* a value that is often 0, small, or any width */
static uint64_t rval(void)
{
    switch (rnd() % 4) {
    case 0:
        return 0;
    case 1:
        return rnd() % 200;
    default:
        return rnd() >> (rnd() % 64);
    }
}

static uint8_t jbuf[8][3000];

/* 0 to 8 random events into ev, listed in pv; their count */
static size_t random_events(Walhook__Event ev[8], Walhook__Event *pv[8])
{
    size_t n = rnd() % 9;
    for (size_t i = 0; i < n; i++) {
        ev[i] = (Walhook__Event)WALHOOK__EVENT__INIT;
        ev[i].commit_lsn = rval();
        ev[i].seq = (uint32_t)rval();
        ev[i].commit_ts_us = (int64_t)rval();
        ev[i].subxid = (uint32_t)rval();
        size_t l = rnd() % 4 ? rnd() % 3000 : 0;
        for (size_t k = 0; k < l; k++)
            jbuf[i][k] = (uint8_t)rnd();
        ev[i].json.len = l;
        ev[i].json.data = l ? jbuf[i] : NULL;
        pv[i] = &ev[i];
    }
    return n;
}

/* Packs a random Append request into *out (malloc'd). */
static size_t pack_random(uint8_t **out, int extra)
{
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__AppendBatch a = WALHOOK__APPEND_BATCH__INIT;
    Walhook__Event ev[8], *pv[8];
    char tenant[16];
    snprintf(tenant, sizeof(tenant), "t%u", (unsigned)(rnd() % 1000));
    a.tenant = rnd() % 5 ? tenant : (char *)"";
    a.n_events = random_events(ev, pv);
    a.events = pv;
    a.ack_lsn = rval();
    a.batch_id = rval();
    a.toast_sender = rnd() % 2 ? rnd() : 0;
    a.toast_serial = rval();
    uint8_t prog[40];
    if (rnd() % 3 == 0) {
        for (size_t k = 0; k < sizeof(prog); k++)
            prog[k] = (uint8_t)rnd();
        a.snapshot_progress.len = rnd() % sizeof(prog);
        a.snapshot_progress.data = prog;
    }
    Walhook__StageAbort ab = WALHOOK__STAGE_ABORT__INIT, *abp = &ab;
    if (extra == 1)
        a.stage_xid = 7;
    if (extra == 2) {
        a.n_stage_aborts = 1;
        a.stage_aborts = &abp;
    }
    if (extra == 3)
        a.stage_reset = 1;
    req.body_case = WALHOOK__REQUEST__BODY_APPEND;
    req.append = &a;
    size_t n = walhook__request__get_packed_size(&req);
    *out = malloc(n + 1);
    assert_non_null(*out);
    walhook__request__pack(&req, *out);
    return n;
}

static void bytes_equal(ProtobufCBinaryData a, ProtobufCBinaryData b, const uint8_t *in,
                        size_t inlen)
{
    assert_int_equal(a.len, b.len);
    if (a.len == 0)
        return;
    assert_memory_equal(a.data, b.data, a.len);
    /* in place: inside the input */
    assert_true(a.data >= in && a.data + a.len <= in + inlen);
}

/* fast (wh_pbfast) against slow (protobuf-c) */
static void same(const Walhook__Request *f, const Walhook__Request *s, const uint8_t *in,
                 size_t inlen)
{
    assert_int_equal(f->body_case, s->body_case);
    const Walhook__AppendBatch *a = f->append, *b = s->append;
    assert_string_equal(a->tenant, b->tenant);
    assert_int_equal(a->n_events, b->n_events);
    for (size_t i = 0; i < a->n_events; i++) {
        const Walhook__Event *x = a->events[i], *y = b->events[i];
        assert_true(x->commit_lsn == y->commit_lsn);
        assert_int_equal(x->seq, y->seq);
        assert_true(x->commit_ts_us == y->commit_ts_us);
        assert_int_equal(x->subxid, y->subxid);
        bytes_equal(x->json, y->json, in, inlen);
    }
    assert_true(a->ack_lsn == b->ack_lsn);
    assert_true(a->batch_id == b->batch_id);
    assert_true(a->toast_sender == b->toast_sender);
    assert_true(a->toast_serial == b->toast_serial);
    bytes_equal(a->snapshot_progress, b->snapshot_progress, in, inlen);
    assert_int_equal(b->stage_xid, 0);
    assert_int_equal(b->stage_reset, 0);
    assert_null(b->stage_commit);
    assert_int_equal(b->n_stage_aborts, 0);
    assert_int_equal(b->n_schemas, 0);
    assert_int_equal(b->n_toast_ops, 0);
}

static void test_packed_requests(void **state)
{
    (void)state;
    for (int i = 0; i < 3000; i++) {
        uint8_t *in;
        size_t n = pack_random(&in, 0);
        Walhook__Request *f = NULL;
        assert_int_equal(wh_pbfast_append(in, n, &f), WH_OK);
        Walhook__Request *s = walhook__request__unpack(NULL, n, in);
        assert_non_null(s);
        same(f, s, in, n);
        free(f);
        walhook__request__free_unpacked(s, NULL);
        free(in);
    }
}

static void test_other_fields_refused(void **state)
{
    (void)state;
    for (int extra = 1; extra <= 3; extra++) {
        uint8_t *in;
        size_t n = pack_random(&in, extra);
        Walhook__Request *f = NULL;
        assert_int_equal(wh_pbfast_append(in, n, &f), WH_ERR);
        assert_null(f);
        Walhook__Request *s = walhook__request__unpack(NULL, n, in);
        assert_non_null(s);
        walhook__request__free_unpacked(s, NULL);
        free(in);
    }
    /* another body, empty input, a lone tag */
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__GetOffset g = WALHOOK__GET_OFFSET__INIT;
    g.tenant = "t";
    g.consumer = "c";
    req.body_case = WALHOOK__REQUEST__BODY_GET_OFFSET;
    req.get_offset = &g;
    uint8_t b[64];
    size_t n = walhook__request__pack(&req, b);
    Walhook__Request *f = NULL;
    assert_int_equal(wh_pbfast_append(b, n, &f), WH_ERR);
    assert_int_equal(wh_pbfast_append(b, 0, &f), WH_ERR);
    assert_int_equal(wh_pbfast_append(NULL, 0, &f), WH_ERR);
    static const uint8_t lone[] = {0x0a};
    assert_int_equal(wh_pbfast_append(lone, 1, &f), WH_ERR);
    /* a tag or a length in more than 5 bytes: protobuf-c refuses, so must
     * the fast path */
    static const uint8_t longlen[] = {0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    static const uint8_t longtag[] = {0x8a, 0x80, 0x80, 0x80, 0x80, 0x00, 0x00};
    assert_null(walhook__request__unpack(NULL, sizeof(longlen), longlen));
    assert_null(walhook__request__unpack(NULL, sizeof(longtag), longtag));
    assert_int_equal(wh_pbfast_append(longlen, sizeof(longlen), &f), WH_ERR);
    assert_int_equal(wh_pbfast_append(longtag, sizeof(longtag), &f), WH_ERR);
    /* in 5 bytes both read them */
    static const uint8_t len5[] = {0x0a, 0x80, 0x80, 0x80, 0x80, 0x00};
    assert_int_equal(wh_pbfast_append(len5, sizeof(len5), &f), WH_OK);
    free(f);
    Walhook__Request *s5 = walhook__request__unpack(NULL, sizeof(len5), len5);
    assert_non_null(s5);
    walhook__request__free_unpacked(s5, NULL);
    /* an event's field twice: refused (protobuf-c takes the last) */
    static const uint8_t twice[] = {0x0a, 0x06, 0x12, 0x04, 0x08, 0x01, 0x08, 0x02};
    assert_int_equal(wh_pbfast_append(twice, sizeof(twice), &f), WH_ERR);
    /* an empty AppendBatch and an empty event: accepted */
    static const uint8_t empty[] = {0x0a, 0x02, 0x12, 0x00};
    assert_int_equal(wh_pbfast_append(empty, sizeof(empty), &f), WH_OK);
    assert_int_equal(f->append->n_events, 1);
    assert_string_equal(f->append->tenant, "");
    free(f);
}

/* A copy of in[0..n) with a few bytes changed, cut short, or one byte
 * inserted (malloc'd, *len its length). */
static uint8_t *mutate(const uint8_t *in, size_t n, size_t *len)
{
    uint8_t *m = malloc(n + 8);
    assert_non_null(m);
    memcpy(m, in, n);
    *len = n;
    int kind = (int)(rnd() % 3);
    if (kind == 0 && n > 0) {
        for (int k = 0, c = 1 + (int)(rnd() % 3); k < c; k++)
            m[rnd() % n] = (uint8_t)rnd();
    } else if (kind == 1 && n > 0) {
        *len = rnd() % n;
    } else {
        size_t at = n ? rnd() % n : 0;
        memmove(m + at + 1, m + at, n - at);
        m[at] = (uint8_t)rnd();
        *len = n + 1;
    }
    return m;
}

/* ---- Reply{read} ---- */

/* A ReadReply's fields but events, random, as rep's body; empty_pos: a
 * committed Position with no field. */
static void random_read_fields(Walhook__Reply *rep, Walhook__ReadReply *rr, Walhook__Position *pos,
                               int empty_pos)
{
    if (rnd() % 2 || empty_pos) {
        pos->lsn = empty_pos ? 0 : rval();
        pos->seq = empty_pos ? 0 : (uint32_t)rval();
        rr->committed = pos;
    }
    rr->epoch = rval();
    rr->needs_snapshot = rnd() % 4 == 0;
    rr->moves = rval();
    rr->zone = (uint32_t)(rnd() % 3);
    rr->replay_gen = rnd() % 2 ? rval() : 0;
    rep->body_case = WALHOOK__REPLY__BODY_READ;
    rep->read = rr;
}

/* Packs a random Read reply into *out (malloc'd); extra 1: an error reply
 * (status, error), 2: another body, 3: a Position with no field. */
static size_t pack_random_reply(uint8_t **out, int extra)
{
    Walhook__Reply rep = WALHOOK__REPLY__INIT;
    Walhook__ReadReply rr = WALHOOK__READ_REPLY__INIT;
    Walhook__Position pos = WALHOOK__POSITION__INIT;
    Walhook__OffsetReply off = WALHOOK__OFFSET_REPLY__INIT;
    Walhook__Event ev[8], *pv[8];
    rr.n_events = random_events(ev, pv);
    rr.events = pv;
    random_read_fields(&rep, &rr, &pos, extra == 3);
    rep.retry_after_ms = rnd() % 3 ? 0 : (uint32_t)rval();
    if (extra == 1) {
        rep.status = 500;
        rep.error = "boom";
    }
    if (extra == 2) {
        rep.body_case = WALHOOK__REPLY__BODY_OFFSET;
        rep.offset = &off;
    }
    size_t n = walhook__reply__get_packed_size(&rep);
    *out = malloc(n + 1);
    assert_non_null(*out);
    walhook__reply__pack(&rep, *out);
    return n;
}

static void same_reply(const Walhook__Reply *f, const Walhook__Reply *s, const uint8_t *in,
                       size_t inlen)
{
    assert_int_equal(f->body_case, s->body_case);
    assert_int_equal(f->body_case, WALHOOK__REPLY__BODY_READ);
    assert_int_equal(f->status, s->status);
    assert_true(f->error == NULL || f->error[0] == '\0');
    assert_true(s->error == NULL || s->error[0] == '\0');
    assert_int_equal(f->retry_after_ms, s->retry_after_ms);
    const Walhook__ReadReply *a = f->read, *b = s->read;
    assert_int_equal(a->n_events, b->n_events);
    assert_int_equal(a->epoch, b->epoch);
    assert_int_equal(a->needs_snapshot, b->needs_snapshot);
    assert_int_equal(a->moves, b->moves);
    assert_int_equal(a->zone, b->zone);
    assert_int_equal(a->replay_gen, b->replay_gen);
    assert_int_equal(a->committed == NULL, b->committed == NULL);
    if (a->committed != NULL) {
        assert_int_equal(a->committed->lsn, b->committed->lsn);
        assert_int_equal(a->committed->seq, b->committed->seq);
    }
    for (size_t i = 0; i < a->n_events; i++) {
        const Walhook__Event *x = a->events[i], *y = b->events[i];
        assert_int_equal(x->commit_lsn, y->commit_lsn);
        assert_int_equal(x->seq, y->seq);
        assert_int_equal(x->commit_ts_us, y->commit_ts_us);
        assert_int_equal(x->subxid, y->subxid);
        bytes_equal(x->json, y->json, in, inlen);
    }
}

/* The store's reply written in place (wh_pb_read_event, wh_pb_read_finish)
 * is protobuf-c's pack of the same Reply, byte for byte; each json_off
 * names where the event's json is. big: one event of 3 MiB too (a 4-byte
 * length in the Reply's head). */
static void read_wire_once(int big)
{
    Walhook__Reply rep = WALHOOK__REPLY__INIT;
    Walhook__ReadReply rr = WALHOOK__READ_REPLY__INIT;
    Walhook__Position pos = WALHOOK__POSITION__INIT;
    Walhook__Event ev[9], *pv[9];
    rr.n_events = random_events(ev, pv);
    uint8_t *large = NULL;
    if (big) {
        size_t l = 3u << 20;
        large = malloc(l);
        assert_non_null(large);
        memset(large, 'w', l);
        ev[rr.n_events] = (Walhook__Event)WALHOOK__EVENT__INIT;
        ev[rr.n_events].commit_lsn = rval();
        ev[rr.n_events].json.len = l;
        ev[rr.n_events].json.data = large;
        pv[rr.n_events] = &ev[rr.n_events];
        rr.n_events++;
    }
    rr.events = pv;
    random_read_fields(&rep, &rr, &pos, 0);
    wh_buf b;
    wh_buf_init(&b, 0);
    size_t off[9];
    /* a buffer used before (the store's second read after a wait) */
    if (rnd() % 2) {
        assert_int_equal(wh_buf_append(&b, "junk", 4), WH_OK);
        wh_buf_reset(&b);
    }
    for (size_t i = 0; i < rr.n_events; i++)
        assert_int_equal(wh_pb_read_event(&b, &ev[i], &off[i]), WH_OK);
    size_t start = 99;
    if (rnd() % 8 == 0) { /* a finish that fails leaves the buffer as it was */
        wh_buf keep = b;
        b.max = b.len + 1;
        assert_int_equal(wh_pb_read_finish(&b, &rr, &start), WH_ERR);
        assert_ptr_equal(b.data, keep.data);
        assert_int_equal(b.len, keep.len);
        b.max = 0;
    }
    assert_int_equal(wh_pb_read_finish(&b, &rr, &start), WH_OK);
    assert_true(start < WH_PB_READ_PREFIX);
    size_t n = walhook__reply__get_packed_size(&rep);
    uint8_t *want = malloc(n + 1);
    assert_non_null(want);
    assert_int_equal(walhook__reply__pack(&rep, want), n);
    assert_int_equal(b.len - start, n);
    assert_memory_equal(b.data + start, want, n);
    for (size_t i = 0; i < rr.n_events; i++)
        if (ev[i].json.len)
            assert_memory_equal(b.data + off[i], ev[i].json.data, ev[i].json.len);
    free(want);
    free(large);
    wh_buf_free(&b);
}

static void test_read_wire(void **state)
{
    (void)state;
    for (int i = 0; i < 3000; i++)
        read_wire_once(0);
    for (int i = 0; i < 3; i++)
        read_wire_once(1);
}

static void test_packed_replies(void **state)
{
    (void)state;
    for (int i = 0; i < 3000; i++) {
        uint8_t *in;
        size_t n = pack_random_reply(&in, i % 10 == 0 ? 3 : 0);
        Walhook__Reply *f = NULL;
        assert_int_equal(wh_pbfast_read_reply(in, n, &f), WH_OK);
        Walhook__Reply *s = walhook__reply__unpack(NULL, n, in);
        assert_non_null(s);
        same_reply(f, s, in, n);
        free(f);
        walhook__reply__free_unpacked(s, NULL);
        free(in);
    }
    /* an error reply and another body go by protobuf-c */
    for (int extra = 1; extra <= 2; extra++) {
        uint8_t *in;
        size_t n = pack_random_reply(&in, extra);
        Walhook__Reply *f = NULL;
        assert_int_equal(wh_pbfast_read_reply(in, n, &f), WH_ERR);
        assert_null(f);
        Walhook__Reply *s = walhook__reply__unpack(NULL, n, in);
        assert_non_null(s);
        walhook__reply__free_unpacked(s, NULL);
        free(in);
    }
    Walhook__Reply *f = NULL;
    assert_int_equal(wh_pbfast_read_reply(NULL, 0, &f), WH_ERR);
    /* no body at all (an empty reply): refused */
    assert_int_equal(wh_pbfast_read_reply((const uint8_t *)"", 0, &f), WH_ERR);
    /* committed twice: refused (protobuf-c merges them) */
    static const uint8_t twice[] = {0x22, 0x08, 0x12, 0x02, 0x08, 0x01, 0x12, 0x02, 0x10, 0x02};
    assert_int_equal(wh_pbfast_read_reply(twice, sizeof(twice), &f), WH_ERR);
    Walhook__Reply *s = walhook__reply__unpack(NULL, sizeof(twice), twice);
    assert_non_null(s);
    walhook__reply__free_unpacked(s, NULL);
    /* an empty ReadReply: accepted, nothing set */
    static const uint8_t empty[] = {0x22, 0x00};
    assert_int_equal(wh_pbfast_read_reply(empty, sizeof(empty), &f), WH_OK);
    assert_int_equal(f->read->n_events, 0);
    assert_null(f->read->committed);
    free(f);
}

/* One mutation of a random message (reply 0: an Append request, 1: a Read
 * reply): 1 when the fast path accepts it (then protobuf-c does too, with an
 * equal result), 0 when both refuse it, -1 when only protobuf-c takes it. */
static int mutation_one(int reply, int i)
{
    uint8_t *in;
    size_t len, n = reply ? pack_random_reply(&in, 0) : pack_random(&in, 0);
    uint8_t *m = mutate(in, n, &len);
    int rc, unpacked;
    if (reply) {
        Walhook__Reply *f = NULL;
        rc = wh_pbfast_read_reply(m, len, &f);
        Walhook__Reply *s = walhook__reply__unpack(NULL, len, m);
        if (rc == WH_OK && s == NULL)
            fail_msg("reply mutation %d: the fast path accepted what protobuf-c refuses", i);
        if (rc == WH_OK)
            same_reply(f, s, m, len);
        unpacked = s != NULL;
        free(f);
        if (s != NULL)
            walhook__reply__free_unpacked(s, NULL);
    } else {
        Walhook__Request *f = NULL;
        rc = wh_pbfast_append(m, len, &f);
        Walhook__Request *s = walhook__request__unpack(NULL, len, m);
        if (rc == WH_OK && s == NULL)
            fail_msg("mutation %d: the fast path accepted what protobuf-c refuses", i);
        if (rc == WH_OK)
            same(f, s, m, len);
        unpacked = s != NULL;
        free(f);
        if (s != NULL)
            walhook__request__free_unpacked(s, NULL);
    }
    free(m);
    free(in);
    return rc == WH_OK ? 1 : unpacked ? -1 : 0;
}

/* 200,000 mutations: both kinds of outcome happen */
static void mutations(int reply)
{
    size_t accepted = 0, refused_both = 0;
    for (int i = 0; i < 200000; i++) {
        int r = mutation_one(reply, i);
        accepted += r == 1;
        refused_both += r == 0;
    }
    assert_true(accepted > 1000);
    assert_true(refused_both > 1000);
}

static void test_mutations(void **state)
{
    (void)state;
    mutations(0);
}

static void test_reply_mutations(void **state)
{
    (void)state;
    mutations(1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_packed_requests), cmocka_unit_test(test_other_fields_refused),
        cmocka_unit_test(test_mutations),       cmocka_unit_test(test_packed_replies),
        cmocka_unit_test(test_reply_mutations), cmocka_unit_test(test_read_wire),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
