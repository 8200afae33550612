/* wh_pbfast: see wh_pbfast.h. */
#include "wh_pbfast.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wh_util.h"

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2 };

typedef struct pb_rd {
    const uint8_t *p, *end;
} pb_rd;

/* A varint of at most max bytes (10 for values; protobuf-c reads tags and
 * lengths from at most 5). A 10th byte above 1 is refused (protobuf-c drops
 * those bits; refusing is the safe side: protobuf-c then decides). */
static int rd_varint_max(pb_rd *r, uint64_t *v, int max)
{
    uint64_t x = 0;
    for (int i = 0; i < max; i++) {
        if (r->p >= r->end)
            return WH_ERR;
        uint8_t b = *r->p++;
        if (i == 9 && b > 1)
            return WH_ERR;
        x |= (uint64_t)(b & 0x7f) << (7 * i);
        if ((b & 0x80) == 0) {
            *v = x;
            return WH_OK;
        }
    }
    return WH_ERR;
}

static int rd_varint(pb_rd *r, uint64_t *v)
{
    return rd_varint_max(r, v, 10);
}

/* A field's tag: number and wire type. */
static int rd_tag(pb_rd *r, uint32_t *num, int *wt)
{
    uint64_t t;
    if (rd_varint_max(r, &t, 5) != WH_OK || t > UINT32_MAX || (t >> 3) == 0)
        return WH_ERR;
    *num = (uint32_t)(t >> 3);
    *wt = (int)(t & 7);
    return WH_OK;
}

static int rd_len(pb_rd *r, const uint8_t **data, size_t *n)
{
    uint64_t l;
    if (rd_varint_max(r, &l, 5) != WH_OK || l > INT32_MAX || l > (uint64_t)(r->end - r->p))
        return WH_ERR;
    *data = r->p;
    *n = (size_t)l;
    r->p += l;
    return WH_OK;
}

static int rd_u32(pb_rd *r, uint32_t *v)
{
    uint64_t x;
    if (rd_varint(r, &x) != WH_OK || x > UINT32_MAX)
        return WH_ERR;
    *v = (uint32_t)x;
    return WH_OK;
}

/* Each field once: bit n of *seen. */
static int once(uint64_t *seen, uint32_t num)
{
    uint64_t bit = (uint64_t)1 << (num & 63);
    if (*seen & bit)
        return WH_ERR;
    *seen |= bit;
    return WH_OK;
}

static int event_parse(const uint8_t *p, size_t n, Walhook__Event *e)
{
    pb_rd r = {p, p + n};
    uint64_t seen = 0, v;
    while (r.p < r.end) {
        uint32_t num;
        int wt;
        if (rd_tag(&r, &num, &wt) != WH_OK || num > 5 || once(&seen, num) != WH_OK)
            return WH_ERR;
        if (num == 4) {
            const uint8_t *d;
            size_t l;
            if (wt != WT_LEN || rd_len(&r, &d, &l) != WH_OK)
                return WH_ERR;
            e->json.len = l;
            e->json.data = l ? (uint8_t *)d : NULL;
            continue;
        }
        if (wt != WT_VARINT)
            return WH_ERR;
        if (num == 1) {
            if (rd_varint(&r, &e->commit_lsn) != WH_OK)
                return WH_ERR;
        } else if (num == 3) {
            if (rd_varint(&r, &v) != WH_OK)
                return WH_ERR;
            e->commit_ts_us = (int64_t)v;
        } else if (rd_u32(&r, num == 2 ? &e->seq : &e->subxid) != WH_OK) {
            return WH_ERR;
        }
    }
    return WH_OK;
}

/* One of the repeated Events: counted only (events_at NULL), or parsed into
 * events_at[*k] and listed in ptrs[*k]. */
static int event_next(const uint8_t *d, size_t l, Walhook__Event *events_at, Walhook__Event **ptrs,
                      size_t *k)
{
    if (events_at != NULL) {
        Walhook__Event *e = &events_at[*k];
        *e = (Walhook__Event)WALHOOK__EVENT__INIT;
        if (event_parse(d, l, e) != WH_OK)
            return WH_ERR;
        ptrs[*k] = e;
    }
    (*k)++;
    return WH_OK;
}

/* The AppendBatch's fields; events counted only (events_at: NULL), or
 * parsed into events_at[0..]. */
static int batch_parse(const uint8_t *p, size_t n, Walhook__AppendBatch *a, size_t *nev,
                       const uint8_t **tenant, size_t *tlen, Walhook__Event *events_at)
{
    pb_rd r = {p, p + n};
    uint64_t seen = 0;
    size_t k = 0;
    while (r.p < r.end) {
        uint32_t num;
        int wt;
        const uint8_t *d;
        size_t l;
        if (rd_tag(&r, &num, &wt) != WH_OK)
            return WH_ERR;
        switch (num) {
        case 1:  /* tenant */
        case 2:  /* events */
        case 20: /* snapshot_progress */
            if (wt != WT_LEN || (num != 2 && once(&seen, num) != WH_OK) ||
                rd_len(&r, &d, &l) != WH_OK)
                return WH_ERR;
            if (num == 1) {
                *tenant = d;
                *tlen = l;
            } else if (num == 20) {
                a->snapshot_progress.len = l;
                a->snapshot_progress.data = l ? (uint8_t *)d : NULL;
            } else if (event_next(d, l, events_at, a->events, &k) != WH_OK) {
                return WH_ERR;
            }
            break;
        case 3:  /* ack_lsn */
        case 4:  /* batch_id */
        case 32: /* toast_serial */
            if (wt != WT_VARINT || once(&seen, num) != WH_OK ||
                rd_varint(&r, num == 3   ? &a->ack_lsn
                              : num == 4 ? &a->batch_id
                                         : &a->toast_serial) != WH_OK)
                return WH_ERR;
            break;
        case 31: /* toast_sender, fixed64 */
            if (wt != WT_I64 || once(&seen, num) != WH_OK || r.end - r.p < 8)
                return WH_ERR;
            a->toast_sender = 0;
            for (int i = 7; i >= 0; i--)
                a->toast_sender = a->toast_sender << 8 | r.p[i];
            r.p += 8;
            break;
        default:
            return WH_ERR;
        }
    }
    *nev = k;
    return WH_OK;
}

/* One allocation of head bytes, then nev Events and nev pointers, then
 * tail bytes (NULL when too large or out of memory). */
static char *alloc_events(size_t head, size_t nev, size_t tail)
{
    if (nev > (SIZE_MAX - head - tail - 256) / (sizeof(Walhook__Event *) + sizeof(Walhook__Event)))
        return NULL;
    return malloc(head + nev * (sizeof(Walhook__Event) + sizeof(Walhook__Event *)) + tail);
}

int wh_pbfast_append(const uint8_t *buf, size_t len, Walhook__Request **out)
{
    *out = NULL;
    pb_rd r = {buf, buf + len};
    uint32_t num;
    int wt;
    const uint8_t *body;
    size_t blen;
    if (buf == NULL || rd_tag(&r, &num, &wt) != WH_OK || num != 1 || wt != WT_LEN ||
        rd_len(&r, &body, &blen) != WH_OK || r.p != r.end)
        return WH_ERR;
    /* first pass: count the events and check every field */
    Walhook__AppendBatch probe = WALHOOK__APPEND_BATCH__INIT;
    size_t nev = 0, tlen = 0;
    const uint8_t *tenant = NULL;
    if (batch_parse(body, blen, &probe, &nev, &tenant, &tlen, NULL) != WH_OK)
        return WH_ERR;
    if (tlen > SIZE_MAX / 2)
        return WH_ERR;
    char *m = alloc_events(sizeof(Walhook__Request) + sizeof(Walhook__AppendBatch), nev, tlen + 1);
    if (m == NULL)
        return WH_ERR;
    /* the structs first (each a multiple of the pointer alignment), then
     * the pointers, then the tenant's characters */
    Walhook__Request *req = (Walhook__Request *)m;
    Walhook__AppendBatch *a = (Walhook__AppendBatch *)(req + 1);
    Walhook__Event *ev = (Walhook__Event *)(a + 1);
    Walhook__Event **ptrs = (Walhook__Event **)(ev + nev);
    char *t = (char *)(ptrs + nev);
    *req = (Walhook__Request)WALHOOK__REQUEST__INIT;
    *a = (Walhook__AppendBatch)WALHOOK__APPEND_BATCH__INIT;
    a->events = nev ? ptrs : NULL;
    if (batch_parse(body, blen, a, &nev, &tenant, &tlen, ev) != WH_OK) {
        free(m);
        return WH_ERR;
    }
    a->n_events = nev;
    if (tlen)
        memcpy(t, tenant, tlen);
    t[tlen] = '\0';
    a->tenant = t;
    req->body_case = WALHOOK__REQUEST__BODY_APPEND;
    req->append = a;
    *out = req;
    return WH_OK;
}

/* ---- Reply{read} ---- */

/* The ReadReply's fields; events counted only (events_at: NULL), or parsed
 * into events_at[0..] (and committed into *pos). */
static int read_parse(const uint8_t *p, size_t n, Walhook__ReadReply *rr, size_t *nev,
                      Walhook__Event *events_at, Walhook__Position *pos)
{
    pb_rd r = {p, p + n};
    uint64_t seen = 0, v;
    size_t k = 0;
    while (r.p < r.end) {
        uint32_t num;
        int wt;
        const uint8_t *d;
        size_t l;
        if (rd_tag(&r, &num, &wt) != WH_OK || num > 7 || (num != 1 && once(&seen, num) != WH_OK))
            return WH_ERR;
        if (num == 1 || num == 2) { /* events, committed */
            if (wt != WT_LEN || rd_len(&r, &d, &l) != WH_OK)
                return WH_ERR;
            if (num == 2) {
                pb_rd q = {d, d + l};
                uint64_t pseen = 0;
                Walhook__Position tmp = WALHOOK__POSITION__INIT;
                while (q.p < q.end) {
                    uint32_t pn;
                    int pw;
                    if (rd_tag(&q, &pn, &pw) != WH_OK || pn > 2 || pw != WT_VARINT ||
                        once(&pseen, pn) != WH_OK ||
                        (pn == 1 ? rd_varint(&q, &tmp.lsn) : rd_u32(&q, &tmp.seq)) != WH_OK)
                        return WH_ERR;
                }
                if (pos != NULL) {
                    *pos = tmp;
                    rr->committed = pos;
                }
            } else if (event_next(d, l, events_at, rr->events, &k) != WH_OK) {
                return WH_ERR;
            }
            continue;
        }
        if (wt != WT_VARINT)
            return WH_ERR;
        if (num == 3 || num == 5) { /* epoch, moves */
            if (rd_varint(&r, num == 3 ? &rr->epoch : &rr->moves) != WH_OK)
                return WH_ERR;
        } else if (num == 4) { /* needs_snapshot */
            if (rd_varint(&r, &v) != WH_OK)
                return WH_ERR;
            rr->needs_snapshot = v != 0;
        } else if (num == 7) { /* replay_gen */
            if (rd_varint(&r, &rr->replay_gen) != WH_OK)
                return WH_ERR;
        } else if (rd_u32(&r, &rr->zone) != WH_OK) { /* 6: zone */
            return WH_ERR;
        }
    }
    *nev = k;
    return WH_OK;
}

int wh_pbfast_read_reply(const uint8_t *buf, size_t len, Walhook__Reply **out)
{
    *out = NULL;
    if (buf == NULL)
        return WH_ERR;
    pb_rd r = {buf, buf + len};
    uint64_t seen = 0, v;
    const uint8_t *body = NULL;
    size_t blen = 0;
    uint32_t retry = 0;
    while (r.p < r.end) {
        uint32_t num;
        int wt;
        if (rd_tag(&r, &num, &wt) != WH_OK || once(&seen, num) != WH_OK)
            return WH_ERR;
        if (num == 4) { /* read */
            if (wt != WT_LEN || rd_len(&r, &body, &blen) != WH_OK)
                return WH_ERR;
        } else if (num == 1) { /* status: only 0 here (an error goes by protobuf-c) */
            if (wt != WT_VARINT || rd_varint(&r, &v) != WH_OK || v != 0)
                return WH_ERR;
        } else if (num == 41) { /* retry_after_ms */
            if (wt != WT_VARINT || rd_u32(&r, &retry) != WH_OK)
                return WH_ERR;
        } else {
            return WH_ERR;
        }
    }
    if (body == NULL)
        return WH_ERR;
    /* first pass: count the events and check every field */
    Walhook__ReadReply probe = WALHOOK__READ_REPLY__INIT;
    size_t nev = 0;
    if (read_parse(body, blen, &probe, &nev, NULL, NULL) != WH_OK)
        return WH_ERR;
    char *m = alloc_events(
        sizeof(Walhook__Reply) + sizeof(Walhook__ReadReply) + sizeof(Walhook__Position), nev, 0);
    if (m == NULL)
        return WH_ERR;
    /* the structs first (each a multiple of the pointer alignment), then
     * the pointers */
    Walhook__Reply *rep = (Walhook__Reply *)m;
    Walhook__ReadReply *rr = (Walhook__ReadReply *)(rep + 1);
    Walhook__Position *pos = (Walhook__Position *)(rr + 1);
    Walhook__Event *ev = (Walhook__Event *)(pos + 1);
    Walhook__Event **ptrs = (Walhook__Event **)(ev + nev);
    *rep = (Walhook__Reply)WALHOOK__REPLY__INIT;
    *rr = (Walhook__ReadReply)WALHOOK__READ_REPLY__INIT;
    rr->events = nev ? ptrs : NULL;
    if (read_parse(body, blen, rr, &nev, ev, pos) != WH_OK) {
        free(m);
        return WH_ERR;
    }
    rr->n_events = nev;
    rep->body_case = WALHOOK__REPLY__BODY_READ;
    rep->read = rr;
    rep->retry_after_ms = retry;
    *out = rep;
    return WH_OK;
}

/* ---- encoding ---- */

size_t wh_pb_varint_len(uint64_t v)
{
    size_t n = 1;
    for (; v >= 0x80; v >>= 7)
        n++;
    return n;
}

uint8_t *wh_pb_varint_put(uint8_t *p, uint64_t v)
{
    for (; v >= 0x80; v >>= 7)
        *p++ = (uint8_t)(v | 0x80);
    *p++ = (uint8_t)v;
    return p;
}

size_t wh_pb_event_head_len(const Walhook__Event *e)
{
    return (e->commit_lsn ? 1 + wh_pb_varint_len(e->commit_lsn) : 0) +
           (e->seq ? 1 + wh_pb_varint_len(e->seq) : 0) +
           (e->commit_ts_us ? 1 + wh_pb_varint_len((uint64_t)e->commit_ts_us) : 0) +
           (e->json.len ? 1 + wh_pb_varint_len(e->json.len) : 0) +
           (e->subxid ? 1 + wh_pb_varint_len(e->subxid) : 0);
}

uint8_t *wh_pb_event_head_put(uint8_t *p, const Walhook__Event *e)
{
    if (e->commit_lsn) {
        *p++ = 0x08; /* Event.commit_lsn */
        p = wh_pb_varint_put(p, e->commit_lsn);
    }
    if (e->seq) {
        *p++ = 0x10; /* Event.seq */
        p = wh_pb_varint_put(p, e->seq);
    }
    if (e->commit_ts_us) {
        *p++ = 0x18; /* Event.commit_ts_us (int64: two's complement) */
        p = wh_pb_varint_put(p, (uint64_t)e->commit_ts_us);
    }
    if (e->json.len) {
        *p++ = 0x22; /* Event.json */
        p = wh_pb_varint_put(p, e->json.len);
    }
    return p;
}

uint8_t *wh_pb_event_tail_put(uint8_t *p, const Walhook__Event *e)
{
    if (e->subxid) {
        *p++ = 0x28; /* Event.subxid */
        p = wh_pb_varint_put(p, e->subxid);
    }
    return p;
}

int wh_pb_read_event(wh_buf *b, const Walhook__Event *e, size_t *json_off)
{
    /* before the first event: the room for the Reply's head */
    size_t pre = b->len < WH_PB_READ_PREFIX ? WH_PB_READ_PREFIX - b->len : 0;
    size_t el = wh_pb_event_head_len(e) + e->json.len;
    if (wh_buf_reserve(b, pre + 1 + 10 + el) != WH_OK)
        return WH_ERR;
    b->len += pre;
    uint8_t *p = (uint8_t *)b->data + b->len;
    *p++ = 0x0a; /* ReadReply.events */
    p = wh_pb_varint_put(p, el);
    p = wh_pb_event_head_put(p, e);
    *json_off = (size_t)(p - (uint8_t *)b->data);
    if (e->json.len)
        memcpy(p, e->json.data, e->json.len);
    p = wh_pb_event_tail_put(p + e->json.len, e);
    b->len = (size_t)(p - (uint8_t *)b->data);
    return WH_OK;
}

int wh_pb_read_finish(wh_buf *b, const Walhook__ReadReply *rr, size_t *start)
{
    size_t pre = b->len < WH_PB_READ_PREFIX ? WH_PB_READ_PREFIX - b->len : 0;
    /* the fields after events, in field order: committed (a message: there
     * when set, even empty), epoch, needs_snapshot, moves, zone, replay_gen */
    const size_t tail_max = 2 * 11 + 10 + 3 * 11 + 2 + 6 + 11;
    /* refused before anything moves: the caller's pointers into b stay
     * valid, and it packs the reply instead */
    if (b->len + pre - WH_PB_READ_PREFIX > INT32_MAX - tail_max ||
        wh_buf_reserve(b, pre + tail_max) != WH_OK)
        return WH_ERR;
    b->len += pre;
    uint8_t *p = (uint8_t *)b->data + b->len;
    if (rr->committed) {
        const Walhook__Position *c = rr->committed;
        size_t pl = (c->lsn ? 1 + wh_pb_varint_len(c->lsn) : 0) +
                    (c->seq ? 1 + wh_pb_varint_len(c->seq) : 0);
        *p++ = 0x12; /* ReadReply.committed */
        p = wh_pb_varint_put(p, pl);
        if (c->lsn) {
            *p++ = 0x08;
            p = wh_pb_varint_put(p, c->lsn);
        }
        if (c->seq) {
            *p++ = 0x10;
            p = wh_pb_varint_put(p, c->seq);
        }
    }
    if (rr->epoch) {
        *p++ = 0x18;
        p = wh_pb_varint_put(p, rr->epoch);
    }
    if (rr->needs_snapshot) {
        *p++ = 0x20;
        *p++ = 1;
    }
    if (rr->moves) {
        *p++ = 0x28;
        p = wh_pb_varint_put(p, rr->moves);
    }
    if (rr->zone) {
        *p++ = 0x30;
        p = wh_pb_varint_put(p, rr->zone);
    }
    if (rr->replay_gen) {
        *p++ = 0x38;
        p = wh_pb_varint_put(p, rr->replay_gen);
    }
    b->len = (size_t)(p - (uint8_t *)b->data);
    /* the Reply's one field, `read`, right before the ReadReply */
    size_t rl = b->len - WH_PB_READ_PREFIX; /* at most INT32_MAX: h at most 6 */
    size_t h = 1 + wh_pb_varint_len(rl);
    uint8_t *q = (uint8_t *)b->data + WH_PB_READ_PREFIX - h;
    *q = 0x22; /* Reply.read */
    wh_pb_varint_put(q + 1, rl);
    *start = WH_PB_READ_PREFIX - h;
    return WH_OK;
}
