/* wh_stagebench: one stage of the hot path alone (make bench-stages).
 *
 *   wh_stagebench ingest N           decode + render N orders-shaped changes
 *                                    (pgoutput Begin/Insert/Commit, no network)
 *   wh_stagebench append URL N [T]   N orders-shaped events to the store at URL
 *                                    in AppendBatch requests of ~512 KiB (to
 *                                    tenant T, default "default")
 *   wh_stagebench read URL N         reads them back (Read of 1000 events)
 *   wh_stagebench dump N             writes the N events append would send,
 *                                    one JSON object a line, to stdout (for
 *                                    wh_dspbench --events)
 *   wh_stagebench tenants URL SECS   two tenants on one store: "steady"
 *                                    appends 10 events every 10 ms (1,000
 *                                    events/s) for SECS alone, then on while
 *                                    "flood" appends ~512 KiB requests as fast
 *                                    as the store takes them (0.5 s shown
 *                                    apart, then SECS); prints the steady
 *                                    tenant's append latency p50/p99 alone
 *                                    and under the flood, and the ratio
 *
 *   --wide (before the stage): events shaped like bench/run.sh's backlog
 *   (d) instead: updates of a 20-column row of about 1 KiB (text, jsonb,
 *   text[], timestamptz, numeric) with REPLICA IDENTITY FULL (old and new
 *   tuple: key, before and after are all rendered)
 *
 * Each prints one line: "stage N events in S s: R events/s, C us CPU/event
 * (this process)". The store's and the dispatcher's own CPU are read from
 * /proc by bench/stages.sh. Events look like the rows of the orders
 * table: id bigint, customer text, amount numeric(12,2), note text,
 * created_at timestamptz. */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../services/ingestor/ing_batch.h"
#include "../../services/ingestor/ing_event.h"
#include "../../services/ingestor/ing_pgoutput.h"
#include "wh_buf.h"
#include "wh_ipc.h"
#include "wh_lsn.h"
#include "wh_util.h"

#define SB_REQ_BYTES (512u << 10)
#define SB_LSN0 UINT64_C(0x10000000)

static const char *g_append_tenant = "default"; /* append: the tenant written to */
static int g_wide;                              /* --wide: wide-row updates */

static double now_s(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void report(const char *stage, size_t n, double wall, double cpu)
{
    printf("%-7s %8zu events in %6.2f s: %9.0f events/s, %6.2f us CPU/event (this process)\n",
           stage, n, wall, wall > 0 ? (double)n / wall : 0.0, cpu * 1e6 / (double)n);
    fflush(stdout);
}

/* ---- pgoutput messages ---- */

static void put8(wh_buf *b, uint8_t v)
{
    wh_buf_putc(b, (char)v);
}
static void put16(wh_buf *b, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    wh_buf_append(b, x, 2);
}
static void put32(wh_buf *b, uint32_t v)
{
    uint8_t x[4];
    for (int i = 0; i < 4; i++)
        x[i] = (uint8_t)(v >> (24 - 8 * i));
    wh_buf_append(b, x, 4);
}
static void put64(wh_buf *b, uint64_t v)
{
    uint8_t x[8];
    wh_put_be64(x, v);
    wh_buf_append(b, x, 8);
}
static void putstr(wh_buf *b, const char *s)
{
    wh_buf_append(b, s, strlen(s) + 1);
}
static void putcol(wh_buf *b, const char *s)
{
    put8(b, 't');
    put32(b, (uint32_t)strlen(s));
    wh_buf_append(b, s, strlen(s));
}

static void msg_relation(wh_buf *b)
{
    static const struct {
        const char *name;
        uint32_t oid;
        uint8_t key;
    } cols[] = {{"id", 20, 1},
                {"customer", 25, 0},
                {"amount", 1700, 0},
                {"note", 25, 0},
                {"created_at", 1184, 0}};
    wh_buf_reset(b);
    put8(b, 'R');
    put32(b, 16384);
    putstr(b, "public");
    putstr(b, "orders");
    put8(b, 'd');
    put16(b, 5);
    for (int i = 0; i < 5; i++) {
        put8(b, cols[i].key);
        putstr(b, cols[i].name);
        put32(b, cols[i].oid);
        put32(b, (uint32_t)-1);
    }
}

/* bench/run.sh's table wide, REPLICA IDENTITY FULL: every column is flagged
 * as part of the key */
static const struct {
    const char *name;
    uint32_t oid;
} wide_cols[20] = {{"id", 23},   {"c1", 25},   {"c2", 25},   {"c3", 25},   {"c4", 25},
                   {"c5", 25},   {"j1", 3802}, {"j2", 3802}, {"a1", 1009}, {"a2", 1009},
                   {"t1", 1184}, {"t2", 1184}, {"t3", 1184}, {"n1", 1700}, {"n2", 1700},
                   {"n3", 1700}, {"n4", 1700}, {"c6", 25},   {"c7", 25},   {"c8", 25}};

static void msg_relation_wide(wh_buf *b)
{
    wh_buf_reset(b);
    put8(b, 'R');
    put32(b, 16384);
    putstr(b, "public");
    putstr(b, "wide");
    put8(b, 'f');
    put16(b, 20);
    for (int i = 0; i < 20; i++) {
        put8(b, 1);
        putstr(b, wide_cols[i].name);
        put32(b, wide_cols[i].oid);
        put32(b, (uint32_t)-1);
    }
}

/* A 32-hex-digit string derived from x (the table's md5(...) columns). */
static void hex32(char *out, uint64_t x)
{
    static const char hx[] = "0123456789abcdef";
    uint64_t h = x * 0x9E3779B97F4A7C15u + 0x632BE59BD9B4E019u;
    for (int i = 0; i < 32; i++) {
        h ^= h >> 29;
        h *= 0xBF58476D1CE4E5B9u;
        out[i] = hx[h >> 60];
    }
    out[32] = '\0';
}

/* One tuple of the wide row id (the text forms PostgreSQL sends, as
 * bench/run.sh's prep_wide makes them); updated: n1 and c8 as after its
 * UPDATE. */
static void tuple_wide(wh_buf *b, uint64_t id, int updated)
{
    char v[20][512], m[6][33];
    hex32(m[0], id);
    hex32(m[1], id + 1);
    hex32(m[2], id + 2);
    hex32(m[3], id * 7);
    hex32(m[4], id * 3);
    snprintf(v[0], sizeof(v[0]), "%" PRIu64, id);
    snprintf(v[1], sizeof(v[1]), "%s%s%s", m[0], m[0], m[0]);
    snprintf(v[2], sizeof(v[2]), "%s%s%s", m[1], m[1], m[1]);
    snprintf(v[3], sizeof(v[3]), "%s%s", m[2], m[2]);
    snprintf(v[4], sizeof(v[4]), "customer %" PRIu64, id);
    memset(v[5], 'x', 64);
    v[5][64] = '\0';
    snprintf(v[6], sizeof(v[6]),
             "{\"id\": %" PRIu64 ", \"ok\": true, \"name\": \"item %" PRIu64
             "\", \"tags\": [\"a\", \"b\", %" PRIu64 "], \"price\": %" PRIu64 ".%02u}",
             id, id, id, id * 5 / 4, (unsigned)(id * 125 % 100));
    snprintf(v[7], sizeof(v[7]), "{\"zip\": %" PRIu64 ", \"address\": \"%s%s\"}", id % 100000, m[0],
             m[0]);
    snprintf(v[8], sizeof(v[8]), "{alpha,beta,%s,gamma}", m[0]);
    snprintf(v[9], sizeof(v[9]), "{%s,delta}", m[3]);
    snprintf(v[10], sizeof(v[10]), "2026-12-01 21:50:12.123456+00");
    snprintf(v[11], sizeof(v[11]), "2026-11-30 21:50:12.123456+00");
    snprintf(v[12], sizeof(v[12]), "2026-12-02 %02u:%02u:%02u.123456+00",
             (unsigned)(id / 3600 % 24), (unsigned)(id / 60 % 60), (unsigned)(id % 60));
    snprintf(v[13], sizeof(v[13]), "%" PRIu64 ".%05u", id * 314159 / 100000 + (updated ? 1 : 0),
             (unsigned)(id * 314159 % 100000));
    snprintf(v[14], sizeof(v[14]), "%" PRIu64 ".%020u", id / 7, 0u);
    snprintf(v[15], sizeof(v[15]), "12345678.9");
    snprintf(v[16], sizeof(v[16]), "%" PRIu64, id % 1000);
    snprintf(v[17], sizeof(v[17]), "%s%s", m[4], m[4]);
    snprintf(v[18], sizeof(v[18]), "status %" PRIu64, id % 10);
    if (updated)
        snprintf(v[19], sizeof(v[19]), "updated %" PRIu64, id);
    else
        snprintf(v[19], sizeof(v[19]), "x");
    put16(b, 20);
    for (int i = 0; i < 20; i++)
        putcol(b, v[i]);
}

static void msg_update_wide(wh_buf *b, uint64_t id)
{
    wh_buf_reset(b);
    put8(b, 'U');
    put32(b, 16384);
    put8(b, 'O');
    tuple_wide(b, id, 0);
    put8(b, 'N');
    tuple_wide(b, id, 1);
}

static void msg_begin(wh_buf *b, uint64_t lsn, int64_t ts_pg, uint32_t xid)
{
    wh_buf_reset(b);
    put8(b, 'B');
    put64(b, lsn);
    put64(b, (uint64_t)ts_pg);
    put32(b, xid);
}

static void msg_insert(wh_buf *b, uint64_t id)
{
    char v[5][64];
    unsigned c = (unsigned)(id * 2654435761u % 100000u);
    snprintf(v[0], sizeof(v[0]), "%" PRIu64, id);
    snprintf(v[1], sizeof(v[1]), "customer %u", c);
    snprintf(v[2], sizeof(v[2]), "%u.%02u", c * 37 / 100, c % 100);
    snprintf(v[3], sizeof(v[3]), "note for order of customer %u", c);
    snprintf(v[4], sizeof(v[4]), "2026-12-01 21:50:%02u.%06u+00", (unsigned)(id % 60),
             (unsigned)(id * 7919 % 1000000));
    wh_buf_reset(b);
    put8(b, 'I');
    put32(b, 16384);
    put8(b, 'N');
    put16(b, 5);
    for (int i = 0; i < 5; i++)
        putcol(b, v[i]);
}

static void msg_commit(wh_buf *b, uint64_t lsn, int64_t ts_pg)
{
    wh_buf_reset(b);
    put8(b, 'C');
    put8(b, 0);
    put64(b, lsn);
    put64(b, lsn + 0x30);
    put64(b, (uint64_t)ts_pg);
}

typedef struct rendered {
    wh_buf json;
    size_t *off; /* event i is json[off[i], off[i+1]) */
    size_t n;
} rendered;

/* Decodes and renders n one-row transactions. keep: keep every event's JSON
 * in r (for append); else the buffer is reused (the ingest stage). */
static int decode_render(size_t n, rendered *r, int keep)
{
    char err[WH_ERRLEN];
    ing_parser *p = NULL;
    ing_txn txn;
    memset(&txn, 0, sizeof(txn));
    wh_buf m;
    wh_buf_init(&m, 0);
    if (ing_parser_new(&p, err, sizeof(err)) != WH_OK ||
        ing_txn_set_tenant(&txn, "default", err, sizeof(err)) != WH_OK)
        goto error;
    /* the TOAST value cache of the daemon's default size
     * (WH_STAGEBENCH_TOAST=0: none) */
    const char *tc = getenv("WH_STAGEBENCH_TOAST");
    if ((tc == NULL || strcmp(tc, "0") != 0) &&
        ing_toast_new(&txn.toast, 8u << 20, NULL, err, sizeof(err)) != WH_OK)
        goto error;
    ing_msg msg;
    if (g_wide)
        msg_relation_wide(&m);
    else
        msg_relation(&m);
    if (ing_parse(p, (const uint8_t *)m.data, m.len, &msg, err, sizeof(err)) != WH_OK)
        goto error;
    wh_buf_init(&r->json, 0);
    r->off = keep ? calloc(n + 1, sizeof(*r->off)) : NULL;
    if (keep && !r->off)
        goto error;
    /* the messages of the loop are built beforehand: only decode + render
     * is measured */
    wh_buf bm, im, cm;
    wh_buf_init(&bm, 0);
    wh_buf_init(&im, 0);
    wh_buf_init(&cm, 0);
    int64_t ts_pg = (int64_t)1796161806123456 - ING_PG_EPOCH_OFFSET_US;
    for (size_t i = 0; i < n; i++) {
        uint64_t lsn = SB_LSN0 + (uint64_t)i * 0x100;
        msg_begin(&bm, lsn, ts_pg + (int64_t)i, (uint32_t)(1000 + i));
        if (g_wide)
            msg_update_wide(&im, i + 1);
        else
            msg_insert(&im, i + 1);
        msg_commit(&cm, lsn, ts_pg + (int64_t)i);
        if (!keep && i == 0)
            break;
    }
    double w0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    for (size_t i = 0; i < n; i++) {
        if (keep) { /* distinct rows and positions */
            uint64_t lsn = SB_LSN0 + (uint64_t)i * 0x100;
            msg_begin(&bm, lsn, ts_pg + (int64_t)i, (uint32_t)(1000 + i));
            if (g_wide)
                msg_update_wide(&im, i + 1);
            else
                msg_insert(&im, i + 1);
            msg_commit(&cm, lsn, ts_pg + (int64_t)i);
        }
        if (ing_parse(p, (const uint8_t *)bm.data, bm.len, &msg, err, sizeof(err)) != WH_OK)
            goto error;
        ing_txn_begin(&txn, msg.final_lsn, msg.xid, msg.commit_ts_us);
        if (ing_parse(p, (const uint8_t *)im.data, im.len, &msg, err, sizeof(err)) != WH_OK)
            goto error;
        if (!keep && r->json.len > (4u << 20))
            wh_buf_reset(&r->json);
        if (keep)
            r->off[i] = r->json.len;
        if (ing_event_change(&r->json, &txn, 0, &msg, err, sizeof(err)) != WH_OK)
            goto error;
        if (ing_parse(p, (const uint8_t *)cm.data, cm.len, &msg, err, sizeof(err)) != WH_OK)
            goto error;
    }
    if (keep)
        r->off[n] = r->json.len;
    r->n = n;
    if (!keep)
        report("ingest", n, now_s(CLOCK_MONOTONIC) - w0, now_s(CLOCK_PROCESS_CPUTIME_ID) - c0);
    if (!keep && getenv("WH_STAGEBENCH_PRINT")) /* the last event, to look at */
        printf("%.*s\n", (int)r->json.len, r->json.data);
    wh_buf_free(&bm);
    wh_buf_free(&im);
    wh_buf_free(&cm);
    wh_buf_free(&m);
    ing_parser_free(p);
    ing_toast_free(txn.toast);
    return WH_OK;
error:
    fprintf(stderr, "wh_stagebench: %s\n", err);
    wh_buf_free(&m);
    ing_parser_free(p);
    ing_toast_free(txn.toast);
    return WH_ERR;
}

/* ---- store ---- */

static int do_append(const char *url, size_t n)
{
    rendered r;
    if (decode_render(n, &r, 1) != WH_OK)
        return WH_ERR;
    char err[WH_ERRLEN];
    int rc = WH_ERR;
    wh_client *c = NULL;
    struct iovec *iov = NULL;
    size_t iovcap = 0;
    wh_buf hdr;
    wh_buf_init(&hdr, 0);
    Walhook__Event *ev = calloc(n, sizeof(*ev));
    if (ev == NULL) {
        fprintf(stderr, "wh_stagebench: out of memory\n");
        goto out;
    }
    if (wh_client_open(&c, url, 30000, 64u << 20, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "wh_stagebench: %s\n", err);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        walhook__event__init(&ev[i]);
        ev[i].commit_lsn = SB_LSN0 + (uint64_t)i * 0x100;
        ev[i].commit_ts_us = 1796161806123456 + (int64_t)i;
        ev[i].json.data = (uint8_t *)r.json.data + r.off[i];
        ev[i].json.len = r.off[i + 1] - r.off[i];
    }
    double w0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    uint64_t id = 0;
    for (size_t i = 0; i < n;) {
        size_t k = 0, bytes = 0;
        while (i + k < n && bytes < SB_REQ_BYTES)
            bytes += ev[i + k++].json.len;
        /* as the ingestor sends it (ing_batch_encode): the protobuf
         * framing in hdr, each event's json written from where it is */
        int iovcnt = 0;
        if (wh_grow(&iov, 2 * k + 3, &iovcap, sizeof(*iov), 64) != WH_OK ||
            ing_batch_encode(g_append_tenant, ev + i, k, ev[i + k - 1].commit_lsn + 0x30, ++id, 0,
                             0, NULL, &hdr, iov, iovcap, &iovcnt) != WH_OK) {
            fprintf(stderr, "wh_stagebench: append: out of memory\n");
            goto out;
        }
        Walhook__Reply *rep = NULL;
        int status = 0;
        if (wh_client_call_iov(c, iov, iovcnt, &rep, &status, err, sizeof(err)) != WH_OK) {
            fprintf(stderr, "wh_stagebench: append: %s\n", err);
            goto out;
        }
        walhook__reply__free_unpacked(rep, NULL);
        i += k;
    }
    report("append", n, now_s(CLOCK_MONOTONIC) - w0, now_s(CLOCK_PROCESS_CPUTIME_ID) - c0);
    /* for a like-for-like db_bench run (bench/tenants.sh) */
    printf("append shape: value_size %zu (json + 8-byte commit time), batch_size %zu\n",
           r.json.len / n + 8, (size_t)SB_REQ_BYTES / (r.json.len / n) + 1);
    rc = WH_OK;
out:
    wh_client_close(c);
    free(iov);
    wh_buf_free(&hdr);
    free(ev);
    free(r.off);
    wh_buf_free(&r.json);
    return rc;
}

static int do_read(const char *url, size_t n)
{
    char err[WH_ERRLEN];
    wh_client *c = NULL;
    if (wh_client_open(&c, url, 30000, 64u << 20, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "wh_stagebench: %s\n", err);
        return WH_ERR;
    }
    double w0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    Walhook__Position from = WALHOOK__POSITION__INIT;
    size_t got = 0;
    while (got < n) {
        Walhook__ReadRequest rr = WALHOOK__READ_REQUEST__INIT;
        rr.tenant = "default";
        rr.has_from = 1;
        rr.from = &from;
        rr.max_events = 1000;
        rr.max_bytes = 1u << 20;
        Walhook__Request req = WALHOOK__REQUEST__INIT;
        req.body_case = WALHOOK__REQUEST__BODY_READ;
        req.read = &rr;
        Walhook__Reply *rep = NULL;
        if (wh_client_call(c, &req, &rep, err, sizeof(err)) != WH_OK) {
            fprintf(stderr, "wh_stagebench: read: %s\n", err);
            return WH_ERR;
        }
        size_t k = rep->read ? rep->read->n_events : 0;
        if (k == 0) {
            fprintf(stderr, "wh_stagebench: read: only %zu of %zu events stored\n", got, n);
            walhook__reply__free_unpacked(rep, NULL);
            return WH_ERR;
        }
        from.lsn = rep->read->events[k - 1]->commit_lsn;
        from.seq = rep->read->events[k - 1]->seq;
        got += k;
        walhook__reply__free_unpacked(rep, NULL);
    }
    report("read", got, now_s(CLOCK_MONOTONIC) - w0, now_s(CLOCK_PROCESS_CPUTIME_ID) - c0);
    wh_client_close(c);
    return WH_OK;
}

/* ---- two tenants (make bench-tenants) ---- */

typedef struct tn_ctx {
    const char *url;
    rendered r;
    _Atomic int stop;
    _Atomic uint64_t flood_events;
    _Atomic uint64_t flood_slowed; /* "slow down" answers (a budget) */
    int failed;
} tn_ctx;

/* Appends events [i, i+k) of r as tenant, positions from base. */
static int tn_append(wh_client *c, const rendered *r, const char *tenant, uint64_t base, size_t i,
                     size_t k, Walhook__Event *ev, Walhook__Event **evp, char *err, size_t errlen)
{
    for (size_t j = 0; j < k; j++) {
        size_t e = (i + j) % r->n;
        walhook__event__init(&ev[j]);
        ev[j].commit_lsn = base + (uint64_t)(i + j) * 0x100;
        ev[j].commit_ts_us = wh_wallclock_us();
        ev[j].json.data = (uint8_t *)r->json.data + r->off[e];
        ev[j].json.len = r->off[e + 1] - r->off[e];
        evp[j] = &ev[j];
    }
    Walhook__AppendBatch ab = WALHOOK__APPEND_BATCH__INIT;
    ab.tenant = (char *)tenant;
    ab.n_events = k;
    ab.events = evp;
    ab.ack_lsn = ev[k - 1].commit_lsn + 0x30;
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    req.body_case = WALHOOK__REQUEST__BODY_APPEND;
    req.append = &ab;
    Walhook__Reply *rep = NULL;
    if (wh_client_call(c, &req, &rep, err, errlen) != WH_OK)
        return WH_ERR;
    walhook__reply__free_unpacked(rep, NULL);
    return WH_OK;
}

static void *tn_flood(void *arg)
{
    tn_ctx *x = arg;
    char err[WH_ERRLEN];
    wh_client *c = NULL;
    size_t per = 0, bytes = 0;
    while (per < x->r.n && bytes < SB_REQ_BYTES)
        bytes += x->r.off[per + 1] - x->r.off[per], per++;
    Walhook__Event *ev = calloc(per, sizeof(*ev));
    Walhook__Event **evp = calloc(per, sizeof(*evp));
    if (!ev || !evp || wh_client_open(&c, x->url, 30000, 64u << 20, err, sizeof(err)) != WH_OK) {
        x->failed = 1;
        return NULL;
    }
    for (size_t i = 0; !atomic_load(&x->stop); i += per) {
        if (tn_append(c, &x->r, "flood", SB_LSN0, i, per, ev, evp, err, sizeof(err)) != WH_OK) {
            uint32_t ms = wh_client_retry_after_ms(c);
            if (ms > 0) { /* over its budget (store.tenant_rate_*): as an ingestor does */
                atomic_fetch_add(&x->flood_slowed, 1);
                wh_sleep_ms(ms);
                i -= per; /* the same batch again */
                continue;
            }
            fprintf(stderr, "wh_stagebench: flood: %s\n", err);
            x->failed = 1;
            break;
        }
        atomic_fetch_add(&x->flood_events, per);
    }
    wh_client_close(c);
    free(ev);
    free(evp);
    return NULL;
}

static tn_ctx *g_flood; /* the flood process's context (its SIGTERM stops it) */

static void tn_flood_stop(int sig)
{
    (void)sig;
    if (g_flood != NULL)
        atomic_store(&g_flood->stop, 1);
}

/* "tenants-flood URL": the flood tenant in a process of its own, as a
 * second ingestor would be (in the steady tenant's process, its 512 KiB
 * buffers' page faults and unmaps would stall the steady client too).
 * Appends until SIGTERM, then prints "EVENTS SLOWED SECONDS". */
static int do_tenants_flood(const char *url)
{
    static tn_ctx x;
    x.url = url;
    if (decode_render(20000, &x.r, 1) != WH_OK)
        return WH_ERR;
    g_flood = &x;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = tn_flood_stop;
    sigaction(SIGTERM, &sa, NULL);
    double t0 = now_s(CLOCK_MONOTONIC);
    tn_flood(&x);
    printf("%" PRIu64 " %" PRIu64 " %.3f\n", atomic_load(&x.flood_events),
           atomic_load(&x.flood_slowed), now_s(CLOCK_MONOTONIC) - t0);
    fflush(stdout);
    free(x.r.off);
    wh_buf_free(&x.r.json);
    return x.failed ? WH_ERR : WH_OK;
}

/* Starts this program as "tenants-flood URL", its output into *rfd. */
static int tn_flood_spawn(const char *url, pid_t *pid, int *rfd)
{
    int p[2];
    if (pipe(p) != 0)
        return WH_ERR;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addclose(&fa, p[0]);
    char *const argv[] = {"wh_stagebench", "tenants-flood", (char *)url, NULL};
    extern char **environ;
    int rc = posix_spawn(pid, "/proc/self/exe", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        return WH_ERR;
    }
    *rfd = p[0];
    return WH_OK;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The steady tenant for secs seconds: 10 events every 10 ms; latencies (us)
 * of its appends into lat (sorted), their number into *n. */
static int tn_steady(tn_ctx *x, wh_client *c, uint64_t *next, double secs, uint64_t *lat,
                     size_t cap, size_t *n)
{
    char err[WH_ERRLEN];
    Walhook__Event ev[10], *evp[10];
    *n = 0;
    double t0 = now_s(CLOCK_MONOTONIC), tick = t0;
    while (now_s(CLOCK_MONOTONIC) - t0 < secs && *n < cap) {
        double a = now_s(CLOCK_MONOTONIC);
        if (tn_append(c, &x->r, "steady", SB_LSN0, *next, 10, ev, evp, err, sizeof(err)) != WH_OK) {
            fprintf(stderr, "wh_stagebench: steady: %s\n", err);
            return WH_ERR;
        }
        lat[(*n)++] = (uint64_t)((now_s(CLOCK_MONOTONIC) - a) * 1e6);
        if (getenv("BENCH_TENANT_TRACE") && lat[*n - 1] > 2000)
            fprintf(stderr, "steady append over 2 ms: %.3f s into the phase, %.2f ms\n", a - t0,
                    lat[*n - 1] / 1000.0);
        *next += 10;
        tick += 0.010;
        double wait = tick - now_s(CLOCK_MONOTONIC);
        if (wait > 0)
            wh_sleep_ms((int)(wait * 1000));
        else
            tick = now_s(CLOCK_MONOTONIC); /* behind: no catch-up burst */
    }
    qsort(lat, *n, sizeof(*lat), cmp_u64);
    return WH_OK;
}

/* The store's stage sums and counts of light appends (the steady
 * tenant's: walhook_store_append_stage_seconds{size="light"}) and its
 * commit groups, from its Stats metrics. */
typedef struct tn_stages {
    double sum[4]; /* handler, queue, write, wake: seconds */
    double count[4];
    double groups, sliced;
    double le5[4]; /* appends whose stage took at most 5 ms */
} tn_stages;

static double metric_value(const char *text, const char *name)
{
    const char *p = text;
    size_t nl = strlen(name);
    while ((p = strstr(p, name)) != NULL) {
        if ((p == text || p[-1] == '\n') && p[nl] == ' ')
            return strtod(p + nl + 1, NULL);
        p += nl;
    }
    return 0;
}

static void tn_stats(wh_client *c, tn_stages *st)
{
    static const char *const names[4] = {"handler", "queue", "write", "wake"};
    memset(st, 0, sizeof(*st));
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    Walhook__StatsRequest sr = WALHOOK__STATS_REQUEST__INIT;
    req.body_case = WALHOOK__REQUEST__BODY_STATS;
    req.stats = &sr;
    Walhook__Reply *rep = NULL;
    char err[WH_ERRLEN], name[128];
    if (wh_client_call(c, &req, &rep, err, sizeof(err)) != WH_OK)
        return;
    const char *m = rep->stats && rep->stats->metrics_text ? rep->stats->metrics_text : "";
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof(name),
                 "walhook_store_append_stage_seconds_sum{stage=\"%s\",size=\"light\"}", names[i]);
        st->sum[i] = metric_value(m, name);
        snprintf(name, sizeof(name),
                 "walhook_store_append_stage_seconds_count{stage=\"%s\",size=\"light\"}", names[i]);
        st->count[i] = metric_value(m, name);
        snprintf(
            name, sizeof(name),
            "walhook_store_append_stage_seconds_bucket{stage=\"%s\",size=\"light\",le=\"0.005\"}",
            names[i]);
        st->le5[i] = metric_value(m, name);
    }
    st->groups = metric_value(m, "walhook_store_commit_groups_total");
    st->sliced = metric_value(m, "walhook_store_commit_groups_sliced_total");
    walhook__reply__free_unpacked(rep, NULL);
}

/* Mean ms per light append of each stage between a and b. */
static void tn_stages_print(const char *phase, const tn_stages *a, const tn_stages *b)
{
    double ms[4];
    for (int i = 0; i < 4; i++) {
        double n = b->count[i] - a->count[i];
        ms[i] = n > 0 ? (b->sum[i] - a->sum[i]) * 1000.0 / n : 0;
    }
    double over[4];
    for (int i = 0; i < 4; i++)
        over[i] = (b->count[i] - a->count[i]) - (b->le5[i] - a->le5[i]);
    printf("tenants store, steady's appends %s: mean ms handler %.2f = queue %.2f + write %.2f "
           "+ wake %.2f (+ checks); %.0f synced groups, %.0f sliced; over 5 ms: handler %.0f, "
           "queue %.0f, write %.0f, wake %.0f\n",
           phase, ms[0], ms[1], ms[2], ms[3], b->groups - a->groups, b->sliced - a->sliced, over[0],
           over[1], over[2], over[3]);
}

static int do_tenants(const char *url, double secs)
{
    tn_ctx x = {.url = url};
    if (decode_render(20000, &x.r, 1) != WH_OK)
        return WH_ERR;
    char err[WH_ERRLEN];
    wh_client *c = NULL;
    if (wh_client_open(&c, url, 30000, 64u << 20, err, sizeof(err)) != WH_OK) {
        fprintf(stderr, "wh_stagebench: %s\n", err);
        return WH_ERR;
    }
    size_t cap = (size_t)(secs * 200) + 16, n1 = 0, n2 = 0;
    uint64_t *l1 = calloc(cap, sizeof(*l1)), *l2 = calloc(cap, sizeof(*l2));
    uint64_t next = 0;
    tn_stages s0, s1, s2;
    tn_stats(c, &s0);
    if (!l1 || !l2 || tn_steady(&x, c, &next, secs, l1, cap, &n1) != WH_OK || n1 == 0)
        return WH_ERR;
    tn_stats(c, &s1);
    pid_t fpid;
    int ffd;
    if (tn_flood_spawn(url, &fpid, &ffd) != WH_OK) {
        fprintf(stderr, "wh_stagebench: cannot start the flood process\n");
        return WH_ERR;
    }
    /* the steady tenant goes on appending while the flood starts (a steady
     * tenant does not pause for it); the bar's figure is taken from 0.5 s
     * on, once the store has answered the flood; this start is shown apart */
    size_t nw = 0, wcap = 128;
    uint64_t *lw = calloc(wcap, sizeof(*lw));
    if (lw == NULL || tn_steady(&x, c, &next, 0.5, lw, wcap, &nw) != WH_OK) {
        kill(fpid, SIGTERM);
        waitpid(fpid, NULL, 0);
        close(ffd);
        free(lw);
        return WH_ERR;
    }
    tn_stages s1f;
    tn_stats(c, &s1f); /* the flood is going: its appends from here on */
    int rc = tn_steady(&x, c, &next, secs, l2, cap, &n2);
    tn_stats(c, &s2);
    kill(fpid, SIGTERM);
    char out[256] = "";
    FILE *ff = fdopen(ffd, "r");
    if (ff == NULL || fgets(out, sizeof(out), ff) == NULL)
        out[0] = '\0';
    if (ff != NULL)
        fclose(ff);
    int wst = 0;
    waitpid(fpid, &wst, 0);
    unsigned long long fev = 0, fslow = 0;
    double fw = 0;
    if (sscanf(out, "%llu %llu %lf", &fev, &fslow, &fw) != 3 || !WIFEXITED(wst) ||
        WEXITSTATUS(wst) != 0) {
        fprintf(stderr, "wh_stagebench: the flood process failed\n");
        rc = WH_ERR;
    }
    wh_client_close(c);
    if (rc != WH_OK || n2 == 0)
        return WH_ERR;
    double p99a = (double)l1[n1 * 99 / 100] / 1000.0, p99b = (double)l2[n2 * 99 / 100] / 1000.0;
    printf("tenants steady 1000 events/s alone:      %zu appends, p50 %.2f ms, p99 %.2f ms\n", n1,
           (double)l1[n1 / 2] / 1000.0, p99a);
    printf("tenants steady with the flood on:        %zu appends, p50 %.2f ms, p99 %.2f ms\n", n2,
           (double)l2[n2 / 2] / 1000.0, p99b);
    printf("tenants flood (its own process): %.0f events/s meanwhile (%llu \"slow down\" "
           "answers); steady p99 ratio (flood/alone) %.2f (bar: <= 2)\n",
           fw > 0 ? (double)fev / fw : 0.0, fslow, p99a > 0 ? p99b / p99a : 0.0);
    size_t over = 0;
    for (size_t i = 0; i < nw; i++)
        over += (double)lw[i] / 1000.0 > 2 * p99a;
    printf("tenants steady in the flood's first 0.5 s (not in the p99 above): %zu appends, p50 "
           "%.2f ms, max %.2f ms, %zu over twice the p99 alone\n",
           nw, nw ? (double)lw[nw / 2] / 1000.0 : 0.0, nw ? (double)lw[nw - 1] / 1000.0 : 0.0,
           over);
    free(lw);
    tn_stages_print("alone", &s0, &s1);
    tn_stages_print("with the flood", &s1f, &s2);
    free(l1);
    free(l2);
    free(x.r.off);
    wh_buf_free(&x.r.json);
    return WH_OK;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--wide") == 0) {
        g_wide = 1;
        argv++;
        argc--;
    }
    if (argc == 5 && strcmp(argv[1], "append") == 0) {
        g_append_tenant = argv[4];
        argc = 4;
    }
    if (argc == 3 && strcmp(argv[1], "ingest") == 0) {
        rendered r;
        int rc = decode_render(strtoul(argv[2], NULL, 10), &r, 0);
        wh_buf_free(&r.json);
        return rc == WH_OK ? 0 : 1;
    }
    if (argc == 3 && strcmp(argv[1], "dump") == 0) {
        rendered r;
        if (decode_render(strtoul(argv[2], NULL, 10), &r, 1) != WH_OK)
            return 1;
        for (size_t i = 0; i < r.n; i++)
            printf("%.*s\n", (int)(r.off[i + 1] - r.off[i]), r.json.data + r.off[i]);
        free(r.off);
        wh_buf_free(&r.json);
        return fflush(stdout) == 0 ? 0 : 1;
    }
    if (argc == 4 && strcmp(argv[1], "append") == 0)
        return do_append(argv[2], strtoul(argv[3], NULL, 10)) == WH_OK ? 0 : 1;
    if (argc == 4 && strcmp(argv[1], "read") == 0)
        return do_read(argv[2], strtoul(argv[3], NULL, 10)) == WH_OK ? 0 : 1;
    if (argc == 4 && strcmp(argv[1], "tenants") == 0)
        return do_tenants(argv[2], strtod(argv[3], NULL)) == WH_OK ? 0 : 1;
    if (argc == 3 && strcmp(argv[1], "tenants-flood") == 0)
        return do_tenants_flood(argv[2]) == WH_OK ? 0 : 1;
    fprintf(stderr,
            "usage: wh_stagebench [--wide] ingest N | append URL N | read URL N | dump N | tenants "
            "URL SECS | tenants-flood URL\n");
    return 2;
}
