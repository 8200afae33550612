/* st_server: request handler of walhook-store. See st_server.h. */
#include "st_server.h"

#include "st_push.h"
#include "st_schema.h"
#include "st_slot.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wh_budget.h"
#include "wh_buf.h"
#include "wh_ipc.h"
#include "wh_lattrace.h"
#include "wh_lsn.h"
#include "wh_metrics.h"
#include "wh_notify.h"
#include "wh_pbfast.h"
#include "wh_daemon.h"
#include "wh_util.h"

#define ST_MAX_WAITQ 1024          /* tenants with a long-poll queue */
#define ST_EVENT_OVERHEAD 48       /* protobuf framing per event, upper bound */
#define ST_READ_RESERVE (4u << 20) /* Read reply bytes reserved up front, at most */
#define ST_READER_STRIPES 16       /* reader cursors: lock stripes */
#define ST_MAX_READERS 1024        /* cursors kept at most; past that, reads make their own */
#define ST_READER_IDLE_MS 30000    /* a cursor unused this long is closed */
/* ms: a request that may wait for a synced write and finds no place among
 * them (write_place_take) is answered "slow down" once the oldest write in
 * progress has waited this long for the disk (a stall, not a busy moment);
 * until then it waits for a place, looking again every ST_WRITE_PLACE_POLL_MS */
#define ST_WRITE_PLACE_STALL_MS 500
#define ST_STR_(x) #x
#define ST_STR(x) ST_STR_(x)
#define ST_WRITE_PLACE_POLL_MS 50
#define ST_WRITE_RETRY_MS 1000 /* that answer's retry_after_ms */

/* A reader's cursor (st_db_reader) kept between its Reads. */
typedef struct st_rent {
    struct st_rent *next;
    char tenant[ST_NAME_MAX + 1];
    char consumer[ST_NAME_MAX + 1];
    st_reader *r;
    int busy; /* a Read uses it (one at a time; another gets its own iterator) */
    uint64_t used_ms;
} st_rent;

/* One per tenant that was ever long-polled; freed at destroy. */
typedef struct st_waitq {
    char tenant[ST_NAME_MAX + 1];
    uint64_t gen; /* bumped by every Append of the tenant */
    pthread_cond_t cond;
    struct st_waitq *next;
} st_waitq;

struct st_server {
    st_db *db;
    st_state *state; /* NULL: GetState/PutState answer 503 */
    int workers;
    size_t max_msg;
    wh_server *nng;
    wh_pub *pub;                     /* durability notifications; NULL: none (dispatchers poll) */
    st_slot *slot;                   /* SlotReport: track position, force_resync, zones */
    st_push *push;                   /* which Appends push their events (st_push.h) */
    pthread_mutex_t nmu;             /* guards nbuf */
    wh_buf nbuf;                     /* a notification being built (reused) */
    char notify_setting[WH_URL_MAX]; /* store.notify_endpoint ("" = derived) */

    pthread_mutex_t wmu; /* guards waitq list, gens, stopping, nwaiting, nwrite */
    st_waitq *waitq;
    size_t nwaitq;
    int nwaiting;
    int stopping;
    /* Requests being served that may wait for a synced write (under wmu;
     * waits_for_disk): each holds its worker for as long as the WAL sync
     * takes, so at most write_max at once (write_place_take), the other
     * workers left to the requests that wait for no disk */
    int nwrite, write_max;
    pthread_cond_t write_cv;  /* a place among them came free */
    wh_counter write_refused; /* requests refused for want of a place */

    wh_counter events_stored;
    wh_gauge last_append_us; /* wall clock of the last synced append with events */
    wh_counter appends;
    wh_counter reads;
    wh_counter slowed;              /* appends answered "slow down" */
    wh_counter notified;            /* durability notifications published */
    wh_counter zone_notes;          /* zone notes published (publish_zone) */
    wh_counter pushed;              /* ...of them with the events */
    wh_histogram append_time[2];    /* Append requests, handler entry to reply: light, big */
    _Atomic size_t stage_chunk;     /* stage commit: bytes of events per internal append */
    _Atomic uint64_t stage_commits; /* stage commits completed */

    /* reader cursors by (tenant, consumer), striped by hash: no lock is
     * shared by every Read */
    pthread_mutex_t rmu[ST_READER_STRIPES];
    st_rent *rents[ST_READER_STRIPES];
    atomic_int nrents;
    _Atomic uint64_t swept_ms;
    wh_counter cursor_reads; /* Reads served by a kept cursor */
};

/* Everything a reply points at; freed by st_server_done. */
typedef struct st_reply_mem {
    Walhook__AppendReply app;
    Walhook__ReadReply read;
    Walhook__OffsetReply off;
    Walhook__Position committed;
    Walhook__Position previous;
    Walhook__StateReply state;
    Walhook__TenantInfoReply tinfo;
    Walhook__BacklogReply backlog;
    Walhook__SlotReply slot;
    char slowest[ST_NAME_MAX + 1];
    void *stats;   /* wh_stats_reply's */
    void *schemas; /* st_schema_list's */
    /* Read: events collected into arrays; json bytes in one buffer, the
     * pointers are fixed up once the buffer stopped growing. For a Read,
     * the buffer holds the reply's wire form around them (wh_pb_read_event:
     * wire = 1), which st_server_wire sends as it is. */
    int wire;
    Walhook__Event *evs;
    Walhook__Event **evp;
    size_t *json_off;
    size_t nev, capev;
    wh_buf data;
    /* dead letters: unpacked records, freed in st_server_done */
    Walhook__DlqReply dlq;
    Walhook__DlqRecord **recs;
    size_t nrec, caprec;
    Walhook__Position dlq_committed;
    /* leases */
    Walhook__LeaseReply lease;
    Walhook__LeaseInfo *linfo;
    Walhook__LeaseInfo **linfop;
    size_t nlinfo, caplinfo;
    char **strs; /* strdup'ed strings of the lease reply */
    size_t nstrs, capstrs;
    char lowner[ST_OWNER_MAX + 1];
    char **owners;   /* LeaseList's owners array (strings in strs) */
    char **controls; /* their control endpoints, parallel to owners */
    /* ToastGet */
    Walhook__ToastReply toast;
    char *tval;
    st_toast_table *ttabs;
    size_t nttabs;
    Walhook__ToastTable *tt;
    Walhook__ToastTable **ttp;
} st_reply_mem;

static void rent_sweep(st_server *s);
static int write_place_take(st_server *s, uint64_t *stalled_ms);
static void write_place_give(st_server *s);
static void write_refuse(st_server *s, int body, uint64_t stalled_ms, Walhook__Reply *rep);
static int writes_waiting(st_server *s);
static void do_toast_get(st_server *s, const Walhook__ToastGet *g, Walhook__Reply *rep,
                         st_reply_mem *m);
static int toast_metrics(st_server *s, wh_buf *b);
static int toast_ops(const Walhook__AppendBatch *a, st_toast_op **out, Walhook__Reply *rep);

/* ---- helpers ---- */

/* Caller holds wmu. Returns the tenant's queue, creating it when `create`. */
static st_waitq *waitq_get(st_server *s, const char *tenant, int create)
{
    for (st_waitq *q = s->waitq; q; q = q->next)
        if (strcmp(q->tenant, tenant) == 0)
            return q;
    if (!create || s->nwaitq >= ST_MAX_WAITQ)
        return NULL;
    st_waitq *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return NULL;
    wh_strlcpy(q->tenant, tenant, sizeof(q->tenant));
    wh_cond_init_monotonic(&q->cond);
    q->next = s->waitq;
    s->waitq = q;
    s->nwaitq++;
    return q;
}

/* Publishes "tenant T is stored up to (lsn, seq)" (wh_notify.h): the
 * tenant's name, a NUL, the big-endian lsn (8 bytes) and seq (4 bytes),
 * and with has_prev the events themselves when they fit. After the write,
 * maybe before its sync (events_written): a subscriber that reads at once
 * finds the events. */
static void publish_durable(st_server *s, const char *tenant, uint64_t lsn, uint32_t seq,
                            int has_prev, uint64_t prev_lsn, uint32_t prev_seq, uint64_t moves,
                            Walhook__Event *const *events, size_t n)
{
    if (s->pub == NULL)
        return;
    int pushed = 0;
    pthread_mutex_lock(&s->nmu);
    if (wh_note_encode(&s->nbuf, tenant, lsn, seq, has_prev, prev_lsn, prev_seq, moves, events, n,
                       &pushed) == WH_OK)
        wh_pub_send(s->pub, s->nbuf.data, s->nbuf.len);
    else
        pushed = -1;
    pthread_mutex_unlock(&s->nmu);
    if (pushed < 0)
        return;
    wh_counter_add(&s->notified, 1);
    if (pushed)
        wh_counter_add(&s->pushed, 1);
}

/* Publishes a zone note (wh_note_encode_zone): the tenant's backpressure
 * zone changed, so the dispatchers take it now rather than at their next
 * Read or Backlog poll. Only on a change: nothing per event. */
static void publish_zone(st_server *s, const char *tenant, uint32_t zone)
{
    if (s->pub == NULL)
        return;
    pthread_mutex_lock(&s->nmu);
    int ok = wh_note_encode_zone(&s->nbuf, tenant, zone) == WH_OK;
    if (ok)
        wh_pub_send(s->pub, s->nbuf.data, s->nbuf.len);
    pthread_mutex_unlock(&s->nmu);
    if (ok)
        wh_counter_add(&s->zone_notes, 1);
}

/* Woken after the unlock (as in st_db's sync_end); a waitq lives until
 * st_server_destroy. */
static void notify_tenant(st_server *s, const char *tenant)
{
    pthread_mutex_lock(&s->wmu);
    st_waitq *q = waitq_get(s, tenant, 0);
    if (q)
        q->gen++;
    pthread_mutex_unlock(&s->wmu);
    if (q)
        pthread_cond_broadcast(&q->cond);
}

/* The preamble every handler shares, in two parts joined with ||:
 * present() answers 400 "<what>: missing" when the body is absent;
 * names_ok() checks the tenant (and the consumer when need_consumer) and
 * answers 400 naming the field. Both return 1 when the request goes on. */
static int present(Walhook__Reply *rep, const void *body, const char *what)
{
    if (body != NULL)
        return 1;
    wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s: missing", what);
    return 0;
}

static int names_ok(Walhook__Reply *rep, const char *tenant, const char *consumer,
                    int need_consumer)
{
    char err[WH_ERRLEN];
    if (st_db_check_name(tenant, "tenant", err, sizeof(err)) != WH_OK ||
        (need_consumer && st_db_check_name(consumer, "consumer", err, sizeof(err)) != WH_OK)) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", err);
        return 0;
    }
    return 1;
}

/* ---- Append ---- */

/* An Append being stored (store_events): what its `written` hook needs. */
typedef struct st_wctx {
    st_server *s;
    const char *tenant;
    const st_event *ev;
    Walhook__Event *const *pev;
    size_t n;
    int ordered;
    int track; /* st_push_begin was called */
    int told;  /* the hook ran: st_push_end called, the dispatchers told */
    st_push_tok tok;
} st_wctx;

/* The Append's events are written (readable), its WAL sync still ahead
 * (st_written_fn; on the thread writing the group): the tenant's push tail
 * moves, the dispatchers get the events (publish_durable) and the long
 * polls wake, so delivery overlaps the sync. Nothing is acknowledged here:
 * the ingestor's reply, and so PostgreSQL's flush LSN, waits for the sync.
 * A dispatcher may post an event the store then loses with the machine (a
 * process crash loses nothing written): the ingestor sends it again from
 * PostgreSQL, under the same id (at-least-once), and no offset can pass it
 * durably first (an offset's write syncs the WAL before it, events
 * included). A snapshot or backfill chunk is told after its sync instead
 * (st_db writes its group with sync=true). */
static void events_written(void *arg)
{
    st_wctx *w = arg;
    st_server *s = w->s;
    w->told = 1;
    if (w->n == 0)
        return;
    int has_prev = 0;
    uint64_t prev_lsn = 0, moves = 0;
    uint32_t prev_seq = 0;
    if (w->track) {
        const st_event *f = &w->ev[0], *l = &w->ev[w->n - 1];
        has_prev = st_push_end(s->push, s->db, &w->tok, w->ordered, f->lsn, f->seq, l->lsn, l->seq,
                               &prev_lsn, &prev_seq, &moves);
    }
    const Walhook__Event *last = w->pev[w->n - 1];
    publish_durable(s, w->tenant, last->commit_lsn, last->seq, has_prev, prev_lsn, prev_seq, moves,
                    w->pev, w->n);
    notify_tenant(s, w->tenant);
}

/* Stores events as every Append does: the group commit (st_db_append; the
 * last chunk of a stage commit also ends the xid's staging), the
 * tenant's push tail, counters, the notification with the events and the
 * long polls' wake-up (once written: events_written), the reply's wait for
 * the sync. pev: the same events as protobuf (the notification's). WH_ERR
 * (err set) when the write or the sync failed. */
static int store_events(st_server *s, const char *tenant, const st_event *ev,
                        Walhook__Event *const *pev, size_t n, int ordered, uint64_t ack_lsn,
                        int has_drop, uint32_t drop_xid, const st_append_extra *x,
                        uint64_t *durable, char *err, size_t errlen)
{
    st_wctx w = {.s = s, .tenant = tenant, .ev = ev, .pev = pev, .n = n, .ordered = ordered};
    w.track = n > 0 && s->pub != NULL;
    if (w.track)
        st_push_begin(s->push, s->db, tenant, &w.tok);
    st_append_extra xw = {0};
    if (x != NULL)
        xw = *x;
    /* st_db tells every append once written (a snapshot or backfill chunk
     * once synced: its group is written with sync=true) */
    xw.written = events_written;
    xw.written_arg = &w;
    int rc = has_drop ? st_db_append_stage_end(s->db, tenant, ev, n, ack_lsn, drop_xid, &xw,
                                               durable, err, errlen)
                      : st_db_append_ext(s->db, tenant, ev, n, ack_lsn, &xw, durable, err, errlen);
    if (rc != WH_OK) {
        if (!w.told && w.track) { /* maybe not written: the tail is read again */
            uint64_t pl = 0, mv = 0;
            uint32_t ps = 0;
            const st_event *f = &ev[0], *l = &ev[n - 1];
            st_push_end(s->push, s->db, &w.tok, 0, f->lsn, f->seq, l->lsn, l->seq, &pl, &ps, &mv);
        }
        return WH_ERR;
    }
    wh_counter_add(&s->appends, 1);
    wh_counter_add(&s->events_stored, n);
    if (n > 0)
        wh_gauge_set(&s->last_append_us, (int64_t)wh_wallclock_us());
    if (wh_lat_trace_on()) {
        for (size_t i = 0; i < n; i++)
            wh_lat_trace_add("st_synced", pev[i]->commit_ts_us);
        wh_lat_trace_flush();
    }
    rent_sweep(s);
    return WH_OK;
}

/* 1 when the append of bytes/events must wait: the reply says "slow down"
 * and for how long (the tenant's write budget, or the isolation guard
 * holding a flood back for another tenant's light appends). */
static int slow_down(st_server *s, const char *tenant, uint64_t bytes, uint64_t events,
                     Walhook__Reply *rep)
{
    uint32_t retry_ms = 0;
    int rc = st_db_admit(s->db, tenant, bytes, events, &retry_ms);
    if (rc != ST_DB_SLOW && rc != ST_DB_GUARD)
        return 0;
    wh_counter_add(&s->slowed, 1);
    if (rc == ST_DB_SLOW)
        wh_reply_error(rep, ST_STATUS_SLOW_DOWN,
                       "slow down: tenant %s is over its write budget (store.tenant_rate_*); "
                       "send again in %u ms",
                       tenant, retry_ms);
    else
        wh_reply_error(rep, ST_STATUS_SLOW_DOWN,
                       "slow down: another tenant's light appends are slower than "
                       "store.isolation_target_pct allows while tenant %s floods; send "
                       "again in %u ms",
                       tenant, retry_ms);
    rep->retry_after_ms = retry_ms;
    return 1;
}

static void do_stage(st_server *s, const Walhook__AppendBatch *a, Walhook__Reply *rep,
                     st_reply_mem *m);

static void do_append(st_server *s, const Walhook__AppendBatch *a, Walhook__Reply *rep,
                      st_reply_mem *m)
{
    char err[WH_ERRLEN];
    uint64_t t0 = wh_now_us();
    if (!present(rep, a, "append") || !names_ok(rep, a->tenant, NULL, 0))
        return;
    if (a->stage_xid != 0 || a->stage_reset || a->stage_commit != NULL || a->n_stage_aborts > 0) {
        if (a->n_toast_ops > 0) {
            wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s",
                           "toast_ops: only on a request of events (not staged, a stage commit "
                           "or stage aborts)");
            return;
        }
        do_stage(s, a, rep, m);
        return;
    }
    st_toast_op *tops = NULL;
    if (a->n_toast_ops > 0 && toast_ops(a, &tops, rep) != WH_OK)
        return;
    if (a->n_events > 0 && a->events == NULL) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", "events: missing");
        return;
    }
    st_event *ev = NULL;
    uint64_t bytes = 0;
    int ordered = 1; /* positions strictly increasing (a tail st_push can keep) */
    if (a->n_events > 0) {
        ev = calloc(a->n_events, sizeof(*ev));
        if (ev == NULL) {
            wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", "out of memory");
            free(tops);
            return;
        }
    }
    for (size_t i = 0; i < a->n_events; i++) {
        const Walhook__Event *e = a->events[i];
        const char *bad = NULL;
        if (e == NULL)
            bad = "missing";
        else if (e->commit_lsn == 0)
            bad = "commit_lsn: must be > 0";
        else if (e->commit_ts_us < 0)
            bad = "commit_ts_us: must be >= 0";
        else if (e->json.len == 0 || e->json.data == NULL)
            bad = "json: empty";
        else if (e->json.data[0] == 0x01 || e->json.data[0] == 0x02)
            bad = "json: starts with byte 0x01 or 0x02 (not JSON; the store's reference markers)";
        if (bad) {
            snprintf(err, sizeof(err), "events[%zu]%s%s", i, e == NULL ? ": " : ".", bad);
            wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", err);
            free(ev);
            free(tops);
            return;
        }
        if (i > 0 && wh_pos_cmp(e->commit_lsn, e->seq, ev[i - 1].lsn, ev[i - 1].seq) <= 0)
            ordered = 0;
        ev[i].lsn = e->commit_lsn;
        ev[i].seq = e->seq;
        ev[i].commit_ts_us = e->commit_ts_us;
        ev[i].json = e->json.data;
        ev[i].json_len = e->json.len;
        bytes += e->json.len;
    }
    if (wh_lat_trace_on()) {
        for (size_t i = 0; i < a->n_events; i++)
            wh_lat_trace_add("st_recv", a->events[i]->commit_ts_us);
        wh_lat_trace_flush();
    }
    if (slow_down(s, a->tenant, bytes, a->n_events, rep)) {
        free(ev);
        free(tops);
        return;
    }
    uint64_t durable = 0;
    st_schema *sv = NULL; /* schema versions: in the same WriteBatch as the first events */
    int rc = st_schema_from_batch(a, &sv, err, sizeof(err));
    if (rc != WH_OK) {
        free(ev);
        free(tops);
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", err);
        return;
    }
    st_append_extra x = {
        .prog = a->snapshot_progress.len > 0 ? (const char *)a->snapshot_progress.data : NULL,
        .prog_len = a->snapshot_progress.len,
        .sv = sv,
        .nsv = a->n_schemas,
        .tops = tops,
        .ntops = a->n_toast_ops,
        .tsender = a->toast_sender,
        .tserial = a->toast_serial};
    rc = store_events(s, a->tenant, ev, a->events, a->n_events, ordered, a->ack_lsn, 0, 0, &x,
                      &durable, err, sizeof(err));
    free(sv);
    int light = st_db_append_light(s->db, ev, a->n_events);
    free(ev);
    free(tops);
    if (rc != WH_OK) {
        wh_error("append tenant=%s batch=%" PRIu64 " failed: %s", a->tenant, a->batch_id, err);
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
        return;
    }
    walhook__append_reply__init(&m->app);
    m->app.durable_lsn = durable;
    m->app.stored = (uint32_t)a->n_events;
    rep->body_case = WALHOOK__REPLY__BODY_APPEND;
    rep->append = &m->app;
    wh_hist_observe_us(&s->append_time[light ? 0 : 1], wh_now_us() - t0);
}

/* ---- streamed transactions: staging (AppendBatch.stage_*) ---- */

/* A stage commit's chunk being filled by st_db_stage_scan. */
typedef struct stage_chunk {
    const Walhook__StageCommit *c;
    const uint32_t *aborted; /* ascending */
    size_t naborted;
    size_t max_bytes;
    uint64_t seq;      /* the next event's seq */
    uint64_t next_idx; /* the staging index to scan from next */
    int too_many;      /* seq would pass UINT32_MAX */
    int oom;
    wh_buf data;      /* the chunk's json: head(seq) + staged json */
    const char *cval; /* the commit record (st_db_stage_cval) */
    size_t cval_len;
    st_stage_txn *h;
    uint64_t *pos; /* where each event is staged (st_db_stage_txn_pos) */
    st_event *ev;
    Walhook__Event *pe;
    Walhook__Event **pp;
    size_t *off;
    size_t n, cap;
} stage_chunk;

static int chunk_step(void *arg, uint32_t idx, uint32_t subxid, const void *json, size_t len)
{
    stage_chunk *k = arg;
    if (wh_u32_in(k->aborted, k->naborted, subxid)) {
        k->next_idx = (uint64_t)idx + 1;
        return 0; /* an aborted subtransaction's: never an event */
    }
    if (k->seq > UINT32_MAX) {
        k->too_many = 1;
        return 1;
    }
    if (len == 0) { /* a placeholder: takes its seq, stores nothing (ing_repl emit_ddl) */
        k->seq++;
        k->next_idx = (uint64_t)idx + 1;
        return 0;
    }
    if (k->n > 0 && k->data.len + len > k->max_bytes)
        return 1; /* the chunk is full: this one starts the next */
    if (k->n == k->cap) {
        size_t nc = k->cap ? k->cap * 2 : 256;
        st_event *e = realloc(k->ev, nc * sizeof(*e));
        if (e != NULL)
            k->ev = e;
        Walhook__Event *pe = realloc(k->pe, nc * sizeof(*pe));
        if (pe != NULL)
            k->pe = pe;
        Walhook__Event **pp = realloc(k->pp, nc * sizeof(*pp));
        if (pp != NULL)
            k->pp = pp;
        size_t *off = realloc(k->off, nc * sizeof(*off));
        if (off != NULL)
            k->off = off;
        uint64_t *ix = realloc(k->pos, nc * sizeof(*ix));
        if (ix != NULL)
            k->pos = ix;
        if (e == NULL || pe == NULL || pp == NULL || off == NULL || ix == NULL) {
            k->oom = 1;
            return 1;
        }
        k->cap = nc;
    }
    size_t at = k->data.len;
    if (st_db_stage_render(&k->data, k->cval, k->cval_len, k->seq, json, len) != WH_OK) {
        k->data.len = at;
        k->oom = 1;
        return 1;
    }
    k->off[k->n] = at;
    k->pos[k->n] = st_db_stage_txn_pos(k->h);
    k->ev[k->n] =
        (st_event){k->c->commit_lsn, (uint32_t)k->seq, k->c->commit_ts_us, NULL, k->data.len - at};
    k->n++;
    k->seq++;
    k->next_idx = (uint64_t)idx + 1;
    return 0;
}

static void chunk_free(stage_chunk *k)
{
    wh_buf_free(&k->data);
    free(k->ev);
    free(k->pe);
    free(k->pp);
    free(k->off);
    free(k->pos);
}

/* The request's durable_lsn: ack_lsn applied through the group commit (so
 * D only ever grows) when given, else the stored value. */
static int stage_durable(st_server *s, const Walhook__AppendBatch *a, uint64_t *durable, char *err,
                         size_t errlen)
{
    if (a->ack_lsn == 0)
        return st_db_get_durable(s->db, a->tenant, durable, err, errlen);
    return st_db_append(s->db, a->tenant, NULL, 0, a->ack_lsn, durable, err, errlen);
}

static void stage_reply(Walhook__Reply *rep, st_reply_mem *m, uint64_t durable, size_t stored)
{
    walhook__append_reply__init(&m->app);
    m->app.durable_lsn = durable;
    m->app.stored = (uint32_t)stored;
    rep->body_case = WALHOOK__REPLY__BODY_APPEND;
    rep->append = &m->app;
}

/* Staged events: kept under stage_xid, not events. */
static void stage_put(st_server *s, const Walhook__AppendBatch *a, Walhook__Reply *rep,
                      st_reply_mem *m)
{
    char err[WH_ERRLEN];
    st_staged *ev = NULL;
    uint64_t bytes = 0, durable = 0;
    if (a->n_events > 0 && (ev = calloc(a->n_events, sizeof(*ev))) == NULL) {
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", "out of memory");
        return;
    }
    for (size_t i = 0; i < a->n_events; i++) {
        const Walhook__Event *e = a->events[i];
        const char *bad = NULL;
        if (e == NULL)
            bad = "missing";
        else if (e->commit_lsn != 0)
            bad = "commit_lsn: must be 0 in a staged batch (stage_xid)";
        else if (e->commit_ts_us != 0)
            bad = "commit_ts_us: must be 0 in a staged batch (stage_xid)";
        else if (e->json.len > 0 && e->json.data == NULL)
            bad = "json: missing";
        if (bad) {
            wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "events[%zu]%s%s", i, e == NULL ? ": " : ".",
                           bad);
            free(ev);
            return;
        }
        ev[i] = (st_staged){e->seq, e->subxid, e->json.data, e->json.len};
        bytes += e->json.len;
    }
    if (slow_down(s, a->tenant, bytes, a->n_events, rep)) {
        free(ev);
        return;
    }
    int rc = st_db_stage_put(s->db, a->tenant, a->stage_xid, a->stage_reset, ev, a->n_events, err,
                             sizeof(err));
    free(ev);
    if (rc == WH_OK)
        rc = stage_durable(s, a, &durable, err, sizeof(err));
    if (rc != WH_OK) {
        wh_error("stage tenant=%s xid=%u batch=%" PRIu64 " failed: %s", a->tenant, a->stage_xid,
                 a->batch_id, err);
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
        return;
    }
    stage_reply(rep, m, durable, a->n_events);
}

static void stage_aborts(st_server *s, const Walhook__AppendBatch *a, Walhook__Reply *rep,
                         st_reply_mem *m)
{
    char err[WH_ERRLEN];
    uint64_t durable = 0;
    st_stage_abort *ab = calloc(a->n_stage_aborts, sizeof(*ab));
    if (ab == NULL) {
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", "out of memory");
        return;
    }
    for (size_t i = 0; i < a->n_stage_aborts; i++) {
        const Walhook__StageAbort *x = a->stage_aborts[i];
        if (x == NULL || (x->xid == 0) != (x->subxid == 0) ||
            (x->one_event && (x->xid == 0 || x->subxid != x->xid))) {
            wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "stage_aborts[%zu]%s", i,
                           x == NULL      ? ": missing"
                           : x->one_event ? ": one_event needs subxid == xid > 0"
                           : x->xid == 0  ? ".xid: must be > 0 (both 0: drop all staging)"
                                          : ".subxid: must be > 0 (both 0: drop all staging)");
            free(ab);
            return;
        }
        ab[i] = (st_stage_abort){x->xid, x->subxid, x->one_event, x->index};
    }
    int rc = st_db_stage_abort(s->db, a->tenant, ab, a->n_stage_aborts, err, sizeof(err));
    /* a transaction dropped whole: the schema versions it first used too */
    for (size_t i = 0; i < a->n_stage_aborts && rc == WH_OK; i++) {
        size_t nd = 0;
        if (ab[i].xid == ab[i].subxid && !ab[i].one_event)
            rc = st_db_schema_drop_xid(s->db, a->tenant, ab[i].xid, &nd, err, sizeof(err));
    }
    free(ab);
    if (rc == WH_OK)
        rc = stage_durable(s, a, &durable, err, sizeof(err));
    if (rc != WH_OK) {
        wh_error("stage abort tenant=%s batch=%" PRIu64 " failed: %s", a->tenant, a->batch_id, err);
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
        return;
    }
    stage_reply(rep, m, durable, 0);
}

/* The staged events of xid become events at (commit_lsn, 0..n-1), in
 * chunks of about s->stage_chunk bytes, each stored as an Append of
 * references to the staged bytes (st_db.h, "staged transactions"): the
 * first carries the commit record, the last ack_lsn and the end of the
 * xid's staging. The tenant's staging lock is held throughout. A crash
 * half-way leaves the xid's staging: the commit sent again writes the same
 * references again and finishes; the transaction staged again (after an
 * ingestor restart) gets a new generation, and its commit finds the
 * references already stored resolving to the same bytes. */
static void stage_commit(st_server *s, const Walhook__AppendBatch *a, Walhook__Reply *rep,
                         st_reply_mem *m)
{
    const Walhook__StageCommit *c = a->stage_commit;
    char err[WH_ERRLEN];
    size_t head = 0;
    for (size_t i = 0; i < c->n_head_parts; i++) {
        if (c->head_parts[i].len > 0 && c->head_parts[i].data == NULL) {
            wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "stage_commit.head_parts[%zu]: missing", i);
            return;
        }
        head += c->head_parts[i].len;
    }
    const char *bad = NULL;
    if (c->xid == 0)
        bad = "xid: must be > 0";
    else if (c->commit_lsn == 0)
        bad = "commit_lsn: must be > 0";
    else if (c->commit_ts_us < 0)
        bad = "commit_ts_us: must be >= 0";
    else if (c->n_head_parts == 0)
        bad = "head_parts: empty (at least one part)";
    if (bad) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "stage_commit.%s", bad);
        return;
    }
    if (c->n_head_parts > ST_STAGE_HEAD_PARTS || head > ST_STAGE_HEAD_BYTES) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST,
                       "stage_commit.head_parts: %zu parts of %zu bytes (max %d parts, %d bytes)",
                       c->n_head_parts, head, ST_STAGE_HEAD_PARTS, ST_STAGE_HEAD_BYTES);
        return;
    }
    if (slow_down(s, a->tenant, 0, 0, rep))
        return;
    stage_chunk k = {.c = c, .max_bytes = atomic_load(&s->stage_chunk)};
    wh_buf_init(&k.data, 0);
    wh_buf cval;
    wh_buf_init(&cval, 0);
    uint32_t *aborted = NULL;
    uint64_t durable = 0, stored = 0, gen = 0;
    st_stage_txn *h = NULL;
    int rc = st_db_stage_begin(s->db, a->tenant, c->xid, &h, &gen, err, sizeof(err));
    k.h = h;
    if (rc == WH_OK) {
        const void *part[ST_STAGE_HEAD_PARTS];
        size_t plen[ST_STAGE_HEAD_PARTS];
        for (size_t i = 0; i < c->n_head_parts; i++) {
            part[i] = c->head_parts[i].data;
            plen[i] = c->head_parts[i].len;
        }
        if (st_db_stage_cval(&cval, c->xid, c->commit_lsn, part, plen, c->n_head_parts) != WH_OK)
            rc = wh_seterr(err, sizeof(err), "out of memory");
    }
    /* a commit cut short and sent again: its stored record stays what
     * the references it wrote resolve with (an event's id names one
     * content) */
    int have_c = 0;
    wh_buf oldc;
    wh_buf_init(&oldc, 0);
    if (rc == WH_OK && gen != 0)
        rc = st_db_stage_txn_cval(h, &oldc, &have_c, err, sizeof(err));
    if (rc == WH_OK && have_c && !st_db_stage_cval_lsn_is(oldc.data, oldc.len, c->commit_lsn)) {
        /* the xid's staging is a commit at another LSN, cut short: not
         * this transaction's (which staged nothing); that one's events
         * stay where they are */
        wh_warn("tenant %s: stage commit of xid %u at another commit LSN than its staging's "
                "commit record: nothing staged for it",
                a->tenant, c->xid);
        st_db_stage_txn_forget(h);
        gen = 0;
        have_c = 0;
    }
    if (rc == WH_OK && have_c) {
        if (oldc.len != cval.len || memcmp(oldc.data, cval.data, cval.len) != 0) {
            st_db_resends_differ_add(s->db, 1);
            wh_error("tenant %s: stage commit of xid %u sent again with another head than its "
                     "first attempt: the first kept (an event's id names one content; please "
                     "report this)",
                     a->tenant, c->xid);
        }
        wh_buf tmp = cval;
        cval = oldc;
        oldc = tmp;
    }
    wh_buf_free(&oldc);
    k.cval = cval.data;
    k.cval_len = cval.len;
    /* its pending schema starts become starts at its commit LSN, before
     * any of its events is stored (st_db_schema.c, "schema registry") */
    size_t nstarts = 0;
    if (rc == WH_OK)
        rc = st_db_schema_commit_xid(s->db, a->tenant, c->xid, c->commit_lsn, &nstarts, err,
                                     sizeof(err));
    if (rc == WH_OK)
        rc = st_db_stage_txn_aborted(h, &aborted, &k.naborted, err, sizeof(err));
    k.aborted = aborted;
    int last = 0, first = 1;
    while (rc == WH_OK && !last) {
        k.n = 0;
        wh_buf_reset(&k.data);
        int stopped = 0;
        if (k.next_idx <= UINT32_MAX)
            rc = st_db_stage_txn_scan(h, (uint32_t)k.next_idx, chunk_step, &k, &stopped, err,
                                      sizeof(err));
        if (rc != WH_OK)
            break;
        if (k.oom) {
            rc = wh_seterr(err, sizeof(err), "out of memory");
            break;
        }
        if (k.too_many) {
            wh_reply_error(rep, ST_STATUS_BAD_REQUEST,
                           "stage_commit: xid %u holds more events than a transaction can "
                           "number (seq is 32 bits)",
                           c->xid);
            free(aborted);
            chunk_free(&k);
            wh_buf_free(&cval);
            st_db_stage_end(h);
            return;
        }
        last = !stopped;
        for (size_t i = 0; i < k.n; i++) {
            const char *j = k.data.data + k.off[i];
            k.ev[i].json = j;
            walhook__event__init(&k.pe[i]);
            k.pe[i].commit_lsn = k.ev[i].lsn;
            k.pe[i].seq = k.ev[i].seq;
            k.pe[i].commit_ts_us = k.ev[i].commit_ts_us;
            k.pe[i].json.data = (uint8_t *)j;
            k.pe[i].json.len = k.ev[i].json_len;
            k.pp[i] = &k.pe[i];
        }
        st_db_charge(s->db, a->tenant, k.data.len, k.n);
        st_append_extra x = {.ref_gen = gen,
                             .ref_pos = k.pos,
                             .ref_file = st_db_stage_txn_file(h),
                             .cval = first && !have_c ? cval.data : NULL,
                             .cval_len = first && !have_c ? cval.len : 0};
        rc = store_events(s, a->tenant, k.ev, k.pp, k.n, 1, last ? a->ack_lsn : 0, last && gen != 0,
                          c->xid, gen != 0 ? &x : NULL, &durable, err, sizeof(err));
        stored += k.n;
        first = 0;
    }
    st_db_stage_end(h);
    free(aborted);
    chunk_free(&k);
    wh_buf_free(&cval);
    if (rc != WH_OK) {
        wh_error("stage commit tenant=%s xid=%u batch=%" PRIu64 " failed after %" PRIu64
                 " events: %s",
                 a->tenant, c->xid, a->batch_id, stored, err);
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
        return;
    }
    if (gen != 0) /* not a commit sent again after it finished */
        atomic_fetch_add(&s->stage_commits, 1);
    stage_reply(rep, m, durable, stored > UINT32_MAX ? UINT32_MAX : (size_t)stored);
}

/* A request with any stage_* field: exactly one kind, well formed. */
static void do_stage(st_server *s, const Walhook__AppendBatch *a, Walhook__Reply *rep,
                     st_reply_mem *m)
{
    if (a->stage_reset && a->stage_xid == 0) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s",
                       "stage_reset: needs stage_xid (the transaction to stage again)");
        return;
    }
    const char *kinds[3];
    size_t nk = 0;
    if (a->stage_xid != 0)
        kinds[nk++] = "staged events (stage_xid)";
    else if (a->n_events > 0)
        kinds[nk++] = "events";
    if (a->stage_commit != NULL)
        kinds[nk++] = "stage_commit";
    if (a->n_stage_aborts > 0 && nk < 3)
        kinds[nk++] = "stage_aborts";
    if (nk > 1) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST,
                       "append: %s and %s in one request (a request carries one of events, "
                       "staged events, stage_commit or stage_aborts)",
                       kinds[0], kinds[1]);
        return;
    }
    if ((a->n_events > 0 && a->events == NULL) ||
        (a->n_stage_aborts > 0 && a->stage_aborts == NULL)) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", "events: missing");
        return;
    }
    if (a->n_schemas > 0) { /* schema versions of staged events: before them */
        char err[WH_ERRLEN];
        st_schema *sv = NULL;
        if (st_schema_from_batch(a, &sv, err, sizeof(err)) != WH_OK) {
            wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", err);
            return;
        }
        int rc = st_db_schema_put(s->db, a->tenant, sv, a->n_schemas, err, sizeof(err));
        free(sv);
        if (rc != WH_OK) {
            wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
            return;
        }
    }
    if (a->stage_xid != 0)
        stage_put(s, a, rep, m);
    else if (a->stage_commit != NULL)
        stage_commit(s, a, rep, m);
    else
        stage_aborts(s, a, rep, m);
}

void st_server_set_stage_chunk(st_server *s, size_t bytes)
{
    atomic_store(&s->stage_chunk, bytes > 0 ? bytes : ST_STAGE_CHUNK_BYTES);
}

int st_server_long_polls(st_server *s)
{
    pthread_mutex_lock(&s->wmu);
    int n = s->nwaiting;
    pthread_mutex_unlock(&s->wmu);
    return n;
}

/* ---- reader cursors ---- */

static unsigned rent_stripe(const char *tenant, const char *consumer)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)tenant; *p; p++)
        h = (h ^ *p) * 16777619u;
    for (const unsigned char *p = (const unsigned char *)consumer; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h % ST_READER_STRIPES;
}

/* The consumer's cursor, marked busy (rent_release); NULL when another Read
 * uses it, too many are kept, or it cannot be opened: the caller then reads
 * without one. */
static st_rent *rent_acquire(st_server *s, const char *tenant, const char *consumer)
{
    unsigned k = rent_stripe(tenant, consumer);
    pthread_mutex_lock(&s->rmu[k]);
    st_rent *e = s->rents[k];
    while (e != NULL && (strcmp(e->tenant, tenant) != 0 || strcmp(e->consumer, consumer) != 0))
        e = e->next;
    if (e != NULL) {
        if (e->busy)
            e = NULL;
        else
            e->busy = 1;
        pthread_mutex_unlock(&s->rmu[k]);
        return e;
    }
    pthread_mutex_unlock(&s->rmu[k]);
    if (atomic_load(&s->nrents) >= ST_MAX_READERS)
        return NULL;
    e = calloc(1, sizeof(*e));
    char err[WH_ERRLEN];
    if (e == NULL || st_db_reader_open(s->db, tenant, consumer, &e->r, err, sizeof(err)) != WH_OK) {
        free(e);
        return NULL;
    }
    wh_strlcpy(e->tenant, tenant, sizeof(e->tenant));
    wh_strlcpy(e->consumer, consumer, sizeof(e->consumer));
    e->busy = 1;
    pthread_mutex_lock(&s->rmu[k]);
    st_rent *o = s->rents[k];
    while (o != NULL && (strcmp(o->tenant, tenant) != 0 || strcmp(o->consumer, consumer) != 0))
        o = o->next;
    if (o != NULL) { /* another Read made one meanwhile: keep the first */
        pthread_mutex_unlock(&s->rmu[k]);
        st_db_reader_close(e->r);
        free(e);
        return NULL;
    }
    e->next = s->rents[k];
    s->rents[k] = e;
    atomic_fetch_add(&s->nrents, 1);
    pthread_mutex_unlock(&s->rmu[k]);
    return e;
}

/* Closes the cursors unused for ST_READER_IDLE_MS, and at once the idle
 * ones of a tenant that was removed (at most once a second, from any
 * request and from st_server_tick): an idle cursor pins the files its
 * iterator saw, a removed tenant's column families included. */
static void rent_sweep(st_server *s)
{
    uint64_t now = wh_now_ms(), last = atomic_load(&s->swept_ms);
    if (now - last < 1000 || !atomic_compare_exchange_strong(&s->swept_ms, &last, now))
        return;
    st_rent *gone = NULL;
    for (int k = 0; k < ST_READER_STRIPES; k++) {
        pthread_mutex_lock(&s->rmu[k]);
        for (st_rent **pp = &s->rents[k]; *pp != NULL;) {
            st_rent *e = *pp;
            if (!e->busy &&
                (now - e->used_ms > ST_READER_IDLE_MS || !st_db_tenant_exists(s->db, e->tenant))) {
                *pp = e->next;
                e->next = gone;
                gone = e;
                atomic_fetch_sub(&s->nrents, 1);
            } else {
                pp = &e->next;
            }
        }
        pthread_mutex_unlock(&s->rmu[k]);
    }
    while (gone != NULL) {
        st_rent *n = gone->next;
        st_db_reader_close(gone->r);
        free(gone);
        gone = n;
    }
}

void st_server_tick(st_server *s)
{
    rent_sweep(s);
}

static void rent_release(st_server *s, st_rent *e)
{
    if (e == NULL)
        return;
    unsigned k = rent_stripe(e->tenant, e->consumer);
    pthread_mutex_lock(&s->rmu[k]);
    e->busy = 0;
    e->used_ms = wh_now_ms();
    pthread_mutex_unlock(&s->rmu[k]);
    rent_sweep(s);
}

static void rents_free(st_server *s)
{
    for (int k = 0; k < ST_READER_STRIPES; k++) {
        st_rent *e = s->rents[k];
        while (e != NULL) {
            st_rent *n = e->next;
            st_db_reader_close(e->r);
            free(e);
            e = n;
        }
        s->rents[k] = NULL;
        pthread_mutex_destroy(&s->rmu[k]);
    }
}

/* ---- Read ---- */

static int collect_event(void *arg, uint64_t lsn, uint32_t seq, int64_t ts, const void *json,
                         size_t len)
{
    st_reply_mem *m = arg;
    if (m->nev == m->capev) {
        size_t nc = m->capev ? m->capev * 2 : 64;
        Walhook__Event *e = realloc(m->evs, nc * sizeof(*e));
        if (e == NULL)
            return 1;
        m->evs = e;
        size_t *o = realloc(m->json_off, nc * sizeof(*o));
        if (o == NULL)
            return 1;
        m->json_off = o;
        m->capev = nc;
    }
    Walhook__Event *e = &m->evs[m->nev];
    walhook__event__init(e);
    e->commit_lsn = lsn;
    e->seq = seq;
    e->commit_ts_us = ts;
    e->json.len = len;
    e->json.data = (uint8_t *)json;
    /* the event as the reply carries it, json copied once */
    if (wh_pb_read_event(&m->data, e, &m->json_off[m->nev]) != WH_OK)
        return 1;
    e->json.data = NULL; /* the iterator's bytes: set from json_off once collected */
    m->nev++;
    return 0;
}

static int read_once(st_server *s, st_rent *c, const char *tenant, uint64_t lsn, uint32_t seq,
                     uint32_t max_events, size_t max_bytes, st_reply_mem *m, char *err,
                     size_t errlen)
{
    m->nev = 0;
    m->wire = 1;
    wh_buf_reset(&m->data);
    /* room for a full reply at once, its framing included: no copies while
     * it grows (the reply memory is per request; from the heap, reused) */
    size_t want = max_bytes + (size_t)max_events * ST_EVENT_OVERHEAD + 128;
    if (wh_buf_reserve(&m->data, WH_PB_READ_PREFIX +
                                     (want < ST_READ_RESERVE ? want : ST_READ_RESERVE)) != WH_OK)
        return wh_seterr(err, errlen, "out of memory");
    if (c != NULL) {
        wh_counter_add(&s->cursor_reads, 1);
        return st_db_reader_read(c->r, lsn, seq, max_events, max_bytes, collect_event, m, NULL, err,
                                 errlen);
    }
    return st_db_read(s->db, tenant, lsn, seq, max_events, max_bytes, collect_event, m, NULL, err,
                      errlen);
}

static void do_read(st_server *s, const Walhook__ReadRequest *r, Walhook__Reply *rep,
                    st_reply_mem *m)
{
    char err[WH_ERRLEN];
    if (!present(rep, r, "read") || !names_ok(rep, r->tenant, NULL, 0))
        return;
    int have_consumer = r->consumer != NULL && r->consumer[0] != '\0';
    if ((!r->has_from || have_consumer) && !names_ok(rep, r->tenant, r->consumer, 1))
        return;
    uint64_t c_lsn = 0, c_epoch = 0;
    uint32_t c_seq = 0;
    /* before the offset is read: a push with this count comes after no
     * offset move the reply does not show (DurableNote.moves) */
    uint64_t moves = st_db_offset_moves(s->db);
    /* the consumer's cursor: its offset entry and a reused iterator (NULL:
     * the read makes its own) */
    st_rent *c = have_consumer ? rent_acquire(s, r->tenant, r->consumer) : NULL;
    /* A consumer seen for the first time is stored at (0,0) (so the GC
     * watermark waits for it); a dropped one reads nothing. */
    if (have_consumer) {
        st_offset off;
        if ((c != NULL ? st_db_reader_register(c->r, &off, err, sizeof(err))
                       : st_db_register(s->db, r->tenant, r->consumer, &off, err, sizeof(err))) !=
            WH_OK) {
            rent_release(s, c);
            wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
            return;
        }
        c_lsn = off.lsn;
        c_seq = off.seq;
        c_epoch = off.epoch;
        if (off.dropped) {
            rent_release(s, c);
            walhook__read_reply__init(&m->read);
            walhook__position__init(&m->committed);
            m->read.committed = &m->committed;
            m->read.epoch = c_epoch;
            m->read.moves = moves;
            rep->body_case = WALHOOK__REPLY__BODY_READ;
            rep->read = &m->read;
            return;
        }
    }
    uint64_t f_lsn = c_lsn;
    uint32_t f_seq = c_seq;
    if (r->has_from) { /* a missing `from` is position (0,0): the beginning */
        f_lsn = r->from ? r->from->lsn : 0;
        f_seq = r->from ? r->from->seq : 0;
    }
    uint32_t max_events = r->max_events ? r->max_events : ST_DEFAULT_MAX_EVENTS;
    if (max_events > ST_MAX_EVENTS)
        max_events = ST_MAX_EVENTS;
    size_t max_bytes = r->max_bytes ? r->max_bytes : ST_DEFAULT_MAX_BYTES;
    size_t room = (size_t)max_events * ST_EVENT_OVERHEAD + 4096;
    size_t cap = s->max_msg > 2 * room ? s->max_msg - room : s->max_msg / 2;
    if (max_bytes > cap)
        max_bytes = cap;

    /* Register interest before reading so an Append in between is not missed. */
    st_waitq *q = NULL;
    uint64_t gen0 = 0;
    int wait_ms = (int)(r->wait_ms > ST_MAX_WAIT_MS ? ST_MAX_WAIT_MS : r->wait_ms);
    if (wait_ms > 0) {
        pthread_mutex_lock(&s->wmu);
        if (!s->stopping && s->nwaiting < s->workers - 1) {
            q = waitq_get(s, r->tenant, 1);
            if (q) {
                gen0 = q->gen;
                s->nwaiting++;
            }
        }
        pthread_mutex_unlock(&s->wmu);
    }

    int rc = read_once(s, c, r->tenant, f_lsn, f_seq, max_events, max_bytes, m, err, sizeof(err));
    if (rc == WH_OK && q && m->nev == 0) {
        struct timespec deadline;
        wh_deadline_in(&deadline, CLOCK_MONOTONIC, wait_ms);
        int woke = 0;
        pthread_mutex_lock(&s->wmu);
        while (!s->stopping && q->gen == gen0) {
            int w = pthread_cond_timedwait(&q->cond, &s->wmu, &deadline);
            if (w == ETIMEDOUT)
                break;
        }
        woke = q->gen != gen0;
        pthread_mutex_unlock(&s->wmu);
        if (woke)
            rc = read_once(s, c, r->tenant, f_lsn, f_seq, max_events, max_bytes, m, err,
                           sizeof(err));
    }
    if (q) {
        pthread_mutex_lock(&s->wmu);
        s->nwaiting--;
        pthread_mutex_unlock(&s->wmu);
    }
    int needs_snapshot =
        have_consumer && (c != NULL ? st_db_reader_needs_snapshot(c->r)
                                    : st_db_needs_snapshot(s->db, r->tenant, r->consumer));
    rent_release(s, c);
    if (have_consumer && rc == WH_OK && st_db_offset_moved(s->db, moves)) {
        /* An offset moved during this Read (a long poll spans it), or a
         * move is under way. The reply's epoch is the one read at its
         * start and its mark the one read now: a move that cleared the
         * mark (an automatic resync, a set offset) would pair the old
         * epoch with events read from the old offset and no mark, and a
         * reader of that epoch would post them, then have its commit
         * refused and post them again from the new offset. Offset and
         * mark again, together, once any move of this consumer is done:
         * when the epoch changed, the events go and the reply shows the
         * new offset; the mark is the one that goes with the epoch. */
        st_offset now;
        int ns_now = 0;
        st_db_offset_and_mark(s->db, r->tenant, r->consumer, &now, &ns_now);
        if (now.epoch != c_epoch) {
            /* the events go from the buffer too: a Read's reply goes out
             * of it in wire form (st_server_wire), events and all */
            m->nev = 0;
            wh_buf_reset(&m->data);
            c_lsn = now.lsn;
            c_seq = now.seq;
            c_epoch = now.epoch;
        }
        needs_snapshot = ns_now;
    }
    if (rc != WH_OK) {
        wh_error("read tenant=%s failed: %s", r->tenant, err);
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
        return;
    }
    if (m->nev > 0) {
        m->evp = malloc(m->nev * sizeof(*m->evp));
        if (m->evp == NULL) {
            wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", "out of memory");
            return;
        }
        for (size_t i = 0; i < m->nev; i++) {
            m->evs[i].json.data = (uint8_t *)m->data.data + m->json_off[i];
            m->evp[i] = &m->evs[i];
        }
    }
    wh_counter_add(&s->reads, 1);
    if (wh_lat_trace_on()) {
        for (size_t i = 0; i < m->nev; i++)
            wh_lat_trace_add("st_read", m->evs[i].commit_ts_us);
        wh_lat_trace_flush();
    }
    walhook__read_reply__init(&m->read);
    walhook__position__init(&m->committed);
    m->committed.lsn = c_lsn;
    m->committed.seq = c_seq;
    m->read.moves = moves;
    m->read.n_events = m->nev;
    m->read.events = m->evp;
    m->read.committed = &m->committed;
    m->read.epoch = c_epoch;
    m->read.needs_snapshot = needs_snapshot;
    m->read.zone = st_slot_zone(s->slot, r->tenant);
    rep->body_case = WALHOOK__REPLY__BODY_READ;
    rep->read = &m->read;
}

/* ---- offsets ---- */

static void offset_reply(Walhook__Reply *rep, st_reply_mem *m, const st_offset *now,
                         const st_offset *prev)
{
    walhook__offset_reply__init(&m->off);
    walhook__position__init(&m->committed);
    m->committed.lsn = now->lsn;
    m->committed.seq = now->seq;
    m->off.committed = &m->committed;
    m->off.epoch = now->epoch;
    if (prev != NULL) {
        walhook__position__init(&m->previous);
        m->previous.lsn = prev->lsn;
        m->previous.seq = prev->seq;
        m->off.previous = &m->previous;
    }
    rep->body_case = WALHOOK__REPLY__BODY_OFFSET;
    rep->offset = &m->off;
}

static void do_commit(st_server *s, const Walhook__CommitOffset *c, Walhook__Reply *rep,
                      st_reply_mem *m)
{
    char err[WH_ERRLEN];
    if (!present(rep, c, "commit") || !names_ok(rep, c->tenant, c->consumer, 1))
        return;
    if (c->pos == NULL) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", "pos: missing");
        return;
    }
    st_offset now;
    int rc = st_db_commit_fenced(s->db, c->tenant, c->consumer, c->pos->lsn, c->pos->seq, c->epoch,
                                 c->lease_epoch, &now, err, sizeof(err));
    if (rc == ST_DB_STALE) {
        wh_reply_error(rep, ST_STATUS_CONFLICT, "%s", err);
        return;
    }
    if (rc != WH_OK) {
        wh_error("commit tenant=%s consumer=%s failed: %s", c->tenant, c->consumer, err);
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
        return;
    }
    offset_reply(rep, m, &now, NULL);
}

static void do_get_offset(st_server *s, const Walhook__GetOffset *g, Walhook__Reply *rep,
                          st_reply_mem *m)
{
    char err[WH_ERRLEN];
    if (!present(rep, g, "get_offset") || !names_ok(rep, g->tenant, g->consumer, 1))
        return;
    st_offset now;
    if (st_db_offset_info(s->db, g->tenant, g->consumer, &now, err, sizeof(err)) != WH_OK) {
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
        return;
    }
    offset_reply(rep, m, &now, NULL);
}

static void do_set_offset(st_server *s, const Walhook__SetOffset *so, Walhook__Reply *rep,
                          st_reply_mem *m)
{
    char err[WH_ERRLEN];
    if (!present(rep, so, "set_offset") || !names_ok(rep, so->tenant, so->consumer, 1))
        return;
    uint64_t lsn = 0;
    uint32_t seq = 0;
    if (so->to_end) {
        if (st_db_tenant_end(s->db, so->tenant, &lsn, &seq, err, sizeof(err)) != WH_OK) {
            wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
            return;
        }
    } else if (so->pos == NULL) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", "pos: missing (or to_end)");
        return;
    } else {
        lsn = so->pos->lsn;
        seq = so->pos->seq;
    }
    st_offset prev, now;
    int cond = so->condition == WALHOOK__SET_OFFSET__CONDITION__TARGET   ? ST_OFFSET_TARGET
               : so->condition == WALHOOK__SET_OFFSET__CONDITION__CREATE ? ST_OFFSET_CREATE
               : so->condition == WALHOOK__SET_OFFSET__CONDITION__ANY    ? ST_OFFSET_ANY
                                                                         : -1;
    if (cond < 0) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "condition: unknown value %d",
                       (int)so->condition);
        return;
    }
    if ((cond != ST_OFFSET_ANY || so->expected_version != 0) && s->state == NULL) {
        wh_reply_error(rep, ST_STATUS_UNAVAILABLE, "%s",
                       cond != ST_OFFSET_ANY
                           ? "condition: needs the state, not kept by this store"
                           : "expected_version: needs the state, not kept by this store");
        return;
    }
    int status = 0;
    /* a condition or an expected version: checked under the state's lock */
    int rc =
        cond == ST_OFFSET_ANY && so->expected_version == 0
            ? st_db_set_offset(s->db, so->tenant, so->consumer, lsn, seq, &prev, &now, err,
                               sizeof(err))
            : st_state_set_offset(s->state, so->tenant, so->consumer, cond, so->expected_version,
                                  lsn, seq, &prev, &now, &status, err, sizeof(err));
    if (rc != WH_OK && status != 0) {
        wh_info("offset of %s/%s not set: %s", so->tenant, so->consumer, err);
        wh_reply_error(rep, status, "%s", err);
        return;
    }
    if (rc != WH_OK) {
        wh_error("set offset tenant=%s consumer=%s failed: %s", so->tenant, so->consumer, err);
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
        return;
    }
    wh_info("offset of %s/%s set (epoch %" PRIu64 ")", so->tenant, so->consumer, now.epoch);
    offset_reply(rep, m, &now, &prev);
}

static void do_drop_offset(st_server *s, const Walhook__DropOffset *d, Walhook__Reply *rep,
                           st_reply_mem *m)
{
    char err[WH_ERRLEN];
    if (!present(rep, d, "drop_offset") || !names_ok(rep, d->tenant, d->consumer, 1))
        return;
    st_offset prev, now;
    if (st_db_drop_offset(s->db, d->tenant, d->consumer, &prev, err, sizeof(err)) != WH_OK ||
        st_db_offset_info(s->db, d->tenant, d->consumer, &now, err, sizeof(err)) != WH_OK) {
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
        return;
    }
    offset_reply(rep, m, &now, &prev);
}

static void do_tenant_info(st_server *s, const Walhook__TenantInfo *t, Walhook__Reply *rep,
                           st_reply_mem *m)
{
    char err[WH_ERRLEN];
    if (!present(rep, t, "tenant_info") || !names_ok(rep, t->tenant, NULL, 0))
        return;
    uint64_t lsn, durable;
    uint32_t seq;
    if (st_db_tenant_end(s->db, t->tenant, &lsn, &seq, err, sizeof(err)) != WH_OK ||
        st_db_get_durable(s->db, t->tenant, &durable, err, sizeof(err)) != WH_OK) {
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
        return;
    }
    walhook__tenant_info_reply__init(&m->tinfo);
    walhook__position__init(&m->committed);
    m->committed.lsn = lsn;
    m->committed.seq = seq;
    m->tinfo.end = &m->committed;
    m->tinfo.durable_lsn = durable;
    walhook__position__init(&m->previous);
    st_db_watermark(s->db, t->tenant, &m->previous.lsn, &m->previous.seq);
    m->tinfo.watermark = &m->previous;
    char *prog = NULL;
    size_t plen = 0;
    /* the snapshot progress an ingestor resumes from is durable once
     * readable: it is written only with a chunk, whose group is written
     * with sync=true */
    if (st_db_get_progress(s->db, t->tenant, &prog, &plen, err, sizeof(err)) != WH_OK) {
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
        return;
    }
    if (prog != NULL) {
        wh_buf_reset(&m->data);
        int rc = wh_buf_append(&m->data, prog, plen);
        free(prog);
        if (rc != WH_OK) {
            wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", "out of memory");
            return;
        }
        m->tinfo.snapshot_progress.data = (uint8_t *)m->data.data;
        m->tinfo.snapshot_progress.len = m->data.len;
    }
    rep->body_case = WALHOOK__REPLY__BODY_TENANT_INFO;
    rep->tenant_info = &m->tinfo;
}

/* Backlog{tenant, consumer, max_events}: events after the committed offset
 * (at most max_events, default and ceiling ST_BACKLOG_MAX) and the commit
 * time of the first, for the dispatcher's backlog metrics. Read-only: an
 * unknown consumer is not registered. */
#define ST_BACKLOG_MAX 1000000

typedef struct backlog_acc {
    uint64_t n;
    int64_t first_ts;
} backlog_acc;

static int backlog_count(void *arg, uint64_t lsn, uint32_t seq, int64_t ts, const void *json,
                         size_t len)
{
    backlog_acc *a = arg;
    if (a->n++ == 0)
        a->first_ts = ts;
    return 0;
}

static void do_backlog(st_server *s, const Walhook__Backlog *b, Walhook__Reply *rep,
                       st_reply_mem *m)
{
    char err[WH_ERRLEN];
    if (!present(rep, b, "backlog") || !names_ok(rep, b->tenant, b->consumer, 1))
        return;
    uint32_t max =
        b->max_events == 0 || b->max_events > ST_BACKLOG_MAX ? ST_BACKLOG_MAX : b->max_events;
    st_offset o;
    backlog_acc a = {0, 0};
    size_t n = 0;
    /* one more than max tells "capped" */
    if (st_db_offset_info(s->db, b->tenant, b->consumer, &o, err, sizeof(err)) != WH_OK ||
        (!o.dropped && st_db_read(s->db, b->tenant, o.lsn, o.seq, max + 1, SIZE_MAX, backlog_count,
                                  &a, &n, err, sizeof(err)) != WH_OK)) {
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
        return;
    }
    walhook__backlog_reply__init(&m->backlog);
    m->backlog.capped = a.n > max;
    m->backlog.events = a.n > max ? max : a.n;
    m->backlog.oldest_commit_ts_us = a.first_ts;
    m->backlog.zone = st_slot_zone(s->slot, b->tenant);
    rep->body_case = WALHOOK__REPLY__BODY_BACKLOG;
    rep->backlog = &m->backlog;
}

/* ---- state ---- */

static void state_reply(Walhook__Reply *rep, st_reply_mem *m, uint64_t version, int with_doc)
{
    walhook__state_reply__init(&m->state);
    m->state.version = version;
    if (with_doc) {
        m->state.doc.data = (uint8_t *)m->data.data;
        m->state.doc.len = m->data.len;
    }
    rep->body_case = WALHOOK__REPLY__BODY_STATE;
    rep->state = &m->state;
}

static void do_get_state(st_server *s, const Walhook__GetState *g, Walhook__Reply *rep,
                         st_reply_mem *m)
{
    char err[WH_ERRLEN];
    if (s->state == NULL) {
        wh_reply_error(rep, ST_STATUS_UNAVAILABLE, "%s", "state: not kept by this store");
        return;
    }
    uint64_t known = g ? g->known_version : 0, version = 0;
    /* it waits for the state writes under way (st_state_get): while one is,
     * it is a request that may wait for the disk and takes a place (with a
     * PutState stalled at its sync, the daemons' state watchers asking
     * again and again held every worker) */
    uint64_t stalled_ms;
    int placed = st_state_writing(s->state);
    if (placed && !write_place_take(s, &stalled_ms)) {
        write_refuse(s, WALHOOK__REQUEST__BODY_GET_STATE, stalled_ms, rep);
        return;
    }
    int rc = st_state_get(s->state, known, &version, &m->data, err, sizeof(err));
    if (placed)
        write_place_give(s);
    if (rc != WH_OK) {
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
        return;
    }
    state_reply(rep, m, version, version != known);
}

static void do_put_state(st_server *s, const Walhook__PutState *p, Walhook__Reply *rep,
                         st_reply_mem *m)
{
    char err[WH_ERRLEN];
    if (s->state == NULL) {
        wh_reply_error(rep, ST_STATUS_UNAVAILABLE, "%s", "state: not kept by this store");
        return;
    }
    if (!present(rep, p, "put_state"))
        return;
    if (p->doc.len == 0 || p->doc.data == NULL) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", "doc: empty");
        return;
    }
    uint64_t version = 0;
    int status = 0;
    if (st_state_put(s->state, p->expected_version, (const char *)p->doc.data, p->doc.len,
                     p->origin, &version, &status, err, sizeof(err)) != WH_OK) {
        wh_reply_error(rep, status ? status : ST_STATUS_INTERNAL, "%s", err);
        return;
    }
    state_reply(rep, m, version, 0);
}

/* ---- Stats ---- */

/* A label value: '"' '\\' and newlines escaped (Prometheus text format). */
static void label_value(char *out, size_t len, const char *v)
{
    size_t j = 0;
    for (; *v && j + 3 < len; v++) {
        if (*v == '"' || *v == '\\' || *v == '\n') {
            out[j++] = '\\';
            out[j++] = *v == '\n' ? 'n' : *v;
        } else {
            out[j++] = *v;
        }
    }
    out[j] = '\0';
}

typedef struct ns_acc {
    wh_buf *b;
    int rc;
    int since; /* the _since_seconds family */
} ns_acc;

static void needs_snapshot_metric(void *arg, const char *tenant, const char *consumer,
                                  int64_t since_ms, const char *reason)
{
    ns_acc *a = arg;
    char t[2 * ST_NAME_MAX + 2], c[2 * ST_NAME_MAX + 2], lab[5 * ST_NAME_MAX + 64];
    label_value(t, sizeof(t), tenant);
    label_value(c, sizeof(c), consumer);
    if (!a->since) {
        snprintf(lab, sizeof(lab), "tenant=\"%s\",target=\"%s\"", t, c);
        a->rc |= wh_metric_u64(a->b, "walhook_store_target_needs_snapshot", lab, 1);
        return;
    }
    snprintf(lab, sizeof(lab), "tenant=\"%s\",target=\"%s\",reason=\"%s\"", t, c, reason);
    a->rc |= wh_metric_i64(a->b, "walhook_store_target_needs_snapshot_since_seconds", lab,
                           since_ms / 1000);
}

/* Per tenant: size, live bytes, watermark lag, oldest event age, targets
 * marked NEEDS_SNAPSHOT (from the last maintenance pass), and one sample
 * per marked target. */
#define ST_METRIC_TENANTS 256
static int tenant_metrics(st_server *s, wh_buf *b)
{
    st_tenant_stats *ts = malloc(ST_METRIC_TENANTS * sizeof(*ts));
    if (ts == NULL)
        return WH_ERR;
    size_t n = st_db_tenant_stats(s->db, ts, ST_METRIC_TENANTS);
    static const struct {
        const char *name, *help;
    } m[] = {
        {"walhook_store_tenant_bytes", "bytes of the tenant's column families (SST + memtables)"},
        {"walhook_store_tenant_live_bytes", "on-disk bytes of the tenant's events at or after "
                                            "its GC watermark (approximate)"},
        {"walhook_store_watermark_lag_bytes", "WAL bytes between the tenant's last stored event "
                                              "and its GC watermark"},
        {"walhook_store_oldest_event_age_seconds",
         "commit age of the tenant's oldest event at or after its GC watermark (-1: none)"},
        {"walhook_store_needs_snapshot_targets",
         "targets of the tenant marked NEEDS_SNAPSHOT (behind its retention cap, or force_resync)"},
        {"walhook_store_tenant_gc_dropped_total",
         "events of the tenant dropped by the GC filter since start"},
        {"walhook_store_tenant_compactions_total",
         "compactions RocksDB began on the tenant's column families since start (automatic "
         "and the store's own)"},
        {"walhook_store_tenant_end_read_ok",
         "0 when the last maintenance pass could not read the tenant's last event (its end and lag "
         "are then older figures), else 1"},
    };
    int rc = 0;
    for (size_t k = 0; k < sizeof(m) / sizeof(m[0]); k++) {
        rc |= wh_metric_header(b, m[k].name, k == 5 || k == 6 ? "counter" : "gauge", m[k].help);
        for (size_t i = 0; i < n; i++) {
            char t[2 * ST_NAME_MAX + 2], lab[2 * ST_NAME_MAX + 16];
            label_value(t, sizeof(t), ts[i].tenant);
            snprintf(lab, sizeof(lab), "tenant=\"%s\"", t);
            switch (k) {
            case 0:
                rc |= wh_metric_u64(b, m[k].name, lab, ts[i].bytes);
                break;
            case 1:
                rc |= wh_metric_u64(b, m[k].name, lab, ts[i].live_bytes);
                break;
            case 2:
                rc |= wh_metric_u64(b, m[k].name, lab, ts[i].wm_lag_bytes);
                break;
            case 3:
                rc |= wh_metric_i64(b, m[k].name, lab,
                                    ts[i].oldest_age_ms < 0 ? -1 : ts[i].oldest_age_ms / 1000);
                break;
            case 4:
                rc |= wh_metric_u64(b, m[k].name, lab, ts[i].needs_snapshot);
                break;
            case 5:
                rc |= wh_metric_u64(b, m[k].name, lab, ts[i].gc_dropped);
                break;
            case 6:
                rc |= wh_metric_u64(b, m[k].name, lab, ts[i].compactions);
                break;
            default:
                rc |= wh_metric_u64(b, m[k].name, lab, ts[i].end_unread ? 0 : 1);
                break;
            }
        }
    }
    free(ts);
    ns_acc a = {b, 0, 0};
    rc |= wh_metric_header(b, "walhook_store_target_needs_snapshot", "gauge",
                           "1 for a target marked NEEDS_SNAPSHOT: behind its tenant's retention "
                           "cap or force_resync; its unread events may be gone; a snapshot or "
                           "SetOffset resumes it");
    st_db_needs_snapshot_each(s->db, needs_snapshot_metric, &a);
    rc |= wh_metric_header(b, "walhook_store_target_needs_snapshot_since_seconds", "gauge",
                           "when a target was marked NEEDS_SNAPSHOT (unix seconds; 0 unknown) "
                           "and why (reason: retention_cap, force_resync_lag, "
                           "force_resync_disconnected, unknown)");
    a.since = 1;
    st_db_needs_snapshot_each(s->db, needs_snapshot_metric, &a);
    rc |= wh_metric_header(b, "walhook_store_gc_compactions_total", "counter",
                           "compactions of a key range below a GC watermark since start");
    rc |= wh_metric_u64(b, "walhook_store_gc_compactions_total", "", st_db_gc_compactions(s->db));
    return rc | a.rc;
}

/* wh_stats_fn: the store's own metrics (wh_stats_reply adds the process ones).
 * Not ready while a write or sync has waited for the disk longer than
 * store.write_stall_ms (a hung disk: nothing fails, nothing completes), or
 * while its synced writes fail: the ingestor's appends then fail or wait
 * too, and nothing new can be stored. Nothing here waits for the disk. */
static int store_metrics(void *arg, wh_buf *b, const char **state, int *ready, char *reason,
                         size_t reasonlen)
{
    st_server *s = arg;
    if (st_db_write_stall(s->db, reason, reasonlen) != WH_OK) {
        *state = "write-stalled";
        *ready = 0;
    } else if (st_db_write_health(s->db, reason, reasonlen) != WH_OK) {
        *state = "write-failing";
        *ready = 0;
    }
    int rc = 0;
    rc |= wh_metric_header(b, "walhook_store_write_stalled_seconds", "gauge",
                           "how long the oldest write or sync still in progress has waited for "
                           "the disk (0: none in progress); over store.write_stall_ms the store "
                           "is not ready");
    rc |= wh_metric_us_as_s(b, "walhook_store_write_stalled_seconds", "",
                            (int64_t)st_db_write_pending_ms(s->db, NULL) * 1000);
    rc |= wh_metric_header(b, "walhook_store_disk_requests", "gauge",
                           "requests being served that may wait for a synced write (at most "
                           "store.workers; 2 more workers kept for the others)");
    rc |= wh_metric_i64(b, "walhook_store_disk_requests", "", writes_waiting(s));
    rc |= wh_metric_header(b, "walhook_store_disk_requests_refused_total", "counter",
                           "requests that may wait for a synced write refused (429, "
                           "retry_after_ms) because the others held every place while "
                           "the oldest write in progress had waited " ST_STR(
                               ST_WRITE_PLACE_STALL_MS) " ms or more for the disk");
    rc |= wh_metric_u64(b, "walhook_store_disk_requests_refused_total", "",
                        wh_counter_get(&s->write_refused));
    rc |= wh_metric_header(b, "walhook_events_stored_total", "counter",
                           "events appended (durable) since start");
    rc |= wh_metric_u64(b, "walhook_events_stored_total", "", wh_counter_get(&s->events_stored));
    rc |= wh_metric_header(b, "walhook_store_last_append_timestamp_seconds", "gauge",
                           "Unix time of the last synced append of events (0: none since start)");
    rc |= wh_metric_us_as_s(b, "walhook_store_last_append_timestamp_seconds", "",
                            wh_gauge_get(&s->last_append_us));
    rc |= wh_metric_header(b, "walhook_store_appends_total", "counter",
                           "append batches made durable since start");
    rc |= wh_metric_u64(b, "walhook_store_appends_total", "", wh_counter_get(&s->appends));
    rc |= wh_metric_header(b, "walhook_store_stage_commits_total", "counter",
                           "streamed transactions turned into events (stage commits) since start");
    rc |= wh_metric_u64(b, "walhook_store_stage_commits_total", "", atomic_load(&s->stage_commits));
    uint64_t sfiles = 0, sbytes = 0;
    st_db_staging_files(s->db, &sfiles, &sbytes);
    rc |= wh_metric_header(b, "walhook_store_staging_files", "gauge",
                           "staging files (a streamed transaction staged, or committed and "
                           "not collected yet)");
    rc |= wh_metric_u64(b, "walhook_store_staging_files", "", sfiles);
    rc |= wh_metric_header(b, "walhook_store_staging_bytes", "gauge",
                           "bytes of the staging files (not in walhook_store_tenant_bytes)");
    rc |= wh_metric_u64(b, "walhook_store_staging_bytes", "", sbytes);
    rc |= wh_metric_header(b, "walhook_store_notifications_total", "counter",
                           "durability notifications published (one per synced append)");
    rc |= wh_metric_u64(b, "walhook_store_notifications_total", "", wh_counter_get(&s->notified));
    rc |= wh_metric_header(b, "walhook_store_zone_notes_total", "counter",
                           "backpressure zone changes published to the dispatchers");
    rc |= wh_metric_u64(b, "walhook_store_zone_notes_total", "", wh_counter_get(&s->zone_notes));
    rc |= wh_metric_header(b, "walhook_store_notifications_pushed_total", "counter",
                           "durability notifications that carried the appended events");
    rc |= wh_metric_u64(b, "walhook_store_notifications_pushed_total", "",
                        wh_counter_get(&s->pushed));
    rc |= wh_metric_header(b, "walhook_store_reader_cursors", "gauge",
                           "readers' cursors kept (a reused iterator each)");
    rc |= wh_metric_i64(b, "walhook_store_reader_cursors", "", atomic_load(&s->nrents));
    rc |= wh_metric_header(b, "walhook_store_cursor_reads_total", "counter",
                           "reads served by a reader's kept cursor");
    rc |=
        wh_metric_u64(b, "walhook_store_cursor_reads_total", "", wh_counter_get(&s->cursor_reads));
    rc |= wh_metric_header(b, "walhook_store_reads_total", "counter",
                           "read requests served since start");
    rc |= wh_metric_u64(b, "walhook_store_reads_total", "", wh_counter_get(&s->reads));
    rc |= wh_metric_header(b, "walhook_store_gc_dropped_total", "counter",
                           "events dropped below the GC watermark since start");
    rc |= wh_metric_u64(b, "walhook_store_gc_dropped_total", "", st_db_gc_dropped(s->db));
    rc |= wh_metric_header(b, "walhook_store_schema_versions_pruned_total", "counter",
                           "schema versions pruned to tombstones in the tenants' registries "
                           "since start (no event at or above the GC watermark carries them)");
    rc |= wh_metric_u64(b, "walhook_store_schema_versions_pruned_total", "",
                        st_db_schema_pruned(s->db));
    rc |= wh_metric_header(b, "walhook_store_resends_differ_total", "counter",
                           "events sent again at a stored position with other bytes since "
                           "start (the stored ones kept; an ingestor bug: each logged)");
    rc |= wh_metric_u64(b, "walhook_store_resends_differ_total", "", st_db_resends_differ(s->db));
    rc |= wh_metric_header(b, "walhook_store_resend_checks_total", "counter",
                           "appended events compared with a stored copy since start (one read "
                           "each: at or below the tenant's newest event written since start or "
                           "its last event at start)");
    rc |= wh_metric_u64(b, "walhook_store_resend_checks_total", "", st_db_resend_checks(s->db));
    rc |= wh_metric_header(b, "walhook_store_io_rate_bytes", "gauge",
                           "RocksDB's rate limit of compaction writes in force, bytes/s "
                           "(store.io_rate_bytes, runtime; flushes are not limited)");
    rc |= wh_metric_i64(b, "walhook_store_io_rate_bytes", "", st_db_io_rate(s->db));
    uint64_t io_limited, io_passed;
    st_db_io_bytes(s->db, &io_limited, &io_passed);
    rc |= wh_metric_header(b, "walhook_store_io_background_bytes_total", "counter",
                           "bytes RocksDB's flushes and compactions wrote through the rate "
                           "limiter: kind=\"limited\" (compactions, store.io_rate_bytes), "
                           "kind=\"passed\" (flushes, and compactions while writes stall)");
    rc |=
        wh_metric_u64(b, "walhook_store_io_background_bytes_total", "kind=\"limited\"", io_limited);
    rc |= wh_metric_u64(b, "walhook_store_io_background_bytes_total", "kind=\"passed\"", io_passed);
    if (s->state != NULL) {
        rc |= wh_metric_header(b, "walhook_state_version", "gauge",
                               "version of the runtime state document in the store");
        rc |= wh_metric_u64(b, "walhook_state_version", "", st_state_version(s->state));
    }
    rc |= tenant_metrics(s, b);
    rc |= toast_metrics(s, b);
    rc |= wh_metric_header(
        b, "walhook_store_appends_slowed_total", "counter",
        "appends answered \"slow down\" (a tenant over its write budget, or held back by the "
        "isolation guard)");
    rc |= wh_metric_u64(b, "walhook_store_appends_slowed_total", "", wh_counter_get(&s->slowed));
    st_guard_stats gs;
    st_db_guard_stats(s->db, &gs);
    rc |= wh_metric_header(b, "walhook_store_isolation_slowed_total", "counter",
                           "of those, big appends the isolation guard held back while another "
                           "tenant's light appends were slower than store.isolation_target_pct "
                           "allows");
    rc |= wh_metric_u64(b, "walhook_store_isolation_slowed_total", "", gs.slowed);
    rc |= wh_metric_header(b, "walhook_store_isolation_rate_bytes", "gauge",
                           "bytes/s the isolation guard admits to big appends of tenants other "
                           "than the one making light appends (0: not limiting)");
    rc |= wh_metric_i64(b, "walhook_store_isolation_rate_bytes", "", gs.rate_bytes);
    rc |= wh_metric_header(b, "walhook_store_isolation_quiet_seconds", "gauge",
                           "the light appends' time with no flood that the guard compares with "
                           "(per 100 ms, the slowest; with none measured yet, the lowest window "
                           "seen; 0: no light append yet)");
    rc |= wh_metric_us_as_s(b, "walhook_store_isolation_quiet_seconds", "", gs.quiet_us);
    rc |= wh_metric_header(b, "walhook_store_write_errors_total", "counter",
                           "synced writes (appends, offset commits) that failed since start");
    rc |= wh_metric_u64(b, "walhook_store_write_errors_total", "", st_db_write_errors(s->db));
    st_append_stats as;
    st_db_append_stats(s->db, &as);
    rc |= wh_metric_header(b, "walhook_store_commit_groups_total", "counter",
                           "synced writes of the store's group commit (appends coalesced)");
    rc |= wh_metric_u64(b, "walhook_store_commit_groups_total", "", as.groups);
    rc |= wh_metric_header(b, "walhook_store_commit_groups_sliced_total", "counter",
                           "of those, groups sliced because a tenant makes light appends "
                           "(store.commit_share_bytes)");
    rc |= wh_metric_u64(b, "walhook_store_commit_groups_sliced_total", "", as.shared_groups);
    rc |= wh_metric_header(b, "walhook_store_append_stage_seconds", "histogram",
                           "time of an append in each stage: handler (the whole request in the "
                           "store), queue (until the write of the group with its last event "
                           "began), write (that group's WAL write, sync and memtable insert), "
                           "wake (back to its request thread); size light (at most "
                           "store.commit_share_bytes) or big");
    static const char *const stages[ST_APPEND_STAGES] = {"queue", "write", "wake"};
    for (int l = 0; l < 2; l++) {
        const char *size = l == 0 ? "light" : "big";
        char lab[64];
        snprintf(lab, sizeof(lab), "stage=\"handler\",size=\"%s\"", size);
        rc |= wh_metric_hist(b, "walhook_store_append_stage_seconds", lab, &s->append_time[l]);
        for (int i = 0; i < ST_APPEND_STAGES; i++) {
            snprintf(lab, sizeof(lab), "stage=\"%s\",size=\"%s\"", stages[i], size);
            rc |= wh_metric_hist(b, "walhook_store_append_stage_seconds", lab, as.stage[l][i]);
        }
    }
    return rc == 0 ? WH_OK : WH_ERR;
}

static void do_stats(st_server *s, Walhook__Reply *rep, st_reply_mem *m)
{
    wh_stats_reply(rep, &m->stats, "store", store_metrics, s);
}

/* ---- dead-letter queue ---- */

static void dlq_reply(Walhook__Reply *rep, st_reply_mem *m)
{
    walhook__dlq_reply__init(&m->dlq);
    m->dlq.records = m->recs;
    m->dlq.n_records = m->nrec;
    rep->body_case = WALHOOK__REPLY__BODY_DLQ;
    rep->dlq = &m->dlq;
}

/* Keeps an unpacked record for the reply (st_dlq_fn). */
static int collect_record(void *arg, uint64_t lsn, uint32_t seq, const void *val, size_t len)
{
    WH_UNUSED(lsn);
    WH_UNUSED(seq);
    st_reply_mem *m = arg;
    if (wh_grow(&m->recs, m->nrec + 1, &m->caprec, sizeof(*m->recs), 16) != WH_OK)
        return 1;
    Walhook__DlqRecord *r = walhook__dlq_record__unpack(NULL, len, val);
    if (r == NULL)
        return 0; /* not ours: skipped */
    m->recs[m->nrec++] = r;
    return 0;
}

static void do_dlq_write(st_server *s, const Walhook__DlqWrite *w, Walhook__Reply *rep,
                         st_reply_mem *m)
{
    char err[WH_ERRLEN];
    if (!present(rep, w, "dlq_write") || !names_ok(rep, w->tenant, w->consumer, 1))
        return;
    if (w->has_pos && w->pos == NULL) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", "pos: missing (has_pos is set)");
        return;
    }
    if (w->has_replay_ack && w->replay_ack == NULL) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s",
                       "replay_ack: missing (has_replay_ack is set)");
        return;
    }
    st_dlq_item *items = w->n_records ? calloc(w->n_records, sizeof(*items)) : NULL;
    size_t *offs = w->n_records ? calloc(w->n_records, sizeof(*offs)) : NULL;
    if (w->n_records && (items == NULL || offs == NULL)) {
        free(items);
        free(offs);
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", "out of memory");
        return;
    }
    /* records packed into m->data with bounded response excerpts */
    for (size_t i = 0; i < w->n_records; i++) {
        const Walhook__DlqRecord *r = w->records[i];
        if (r == NULL || r->event == NULL || r->event->commit_lsn == 0 || r->event->json.len == 0) {
            wh_reply_error(rep, ST_STATUS_BAD_REQUEST,
                           "records[%zu].event: missing, commit_lsn 0 or empty json", i);
            goto out;
        }
        Walhook__DlqRecord c = *r;
        Walhook__DlqError fe, le;
        if (c.first_error) {
            fe = *c.first_error;
            if (fe.body_excerpt.len > ST_DLQ_EXCERPT)
                fe.body_excerpt.len = ST_DLQ_EXCERPT;
            c.first_error = &fe;
        }
        if (c.last_error) {
            le = *c.last_error;
            if (le.body_excerpt.len > ST_DLQ_EXCERPT)
                le.body_excerpt.len = ST_DLQ_EXCERPT;
            c.last_error = &le;
        }
        size_t n = walhook__dlq_record__get_packed_size(&c);
        if (wh_buf_reserve(&m->data, n) != WH_OK) {
            wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", "out of memory");
            goto out;
        }
        offs[i] = m->data.len;
        m->data.len += walhook__dlq_record__pack(&c, (uint8_t *)m->data.data + m->data.len);
        items[i].lsn = r->event->commit_lsn;
        items[i].seq = r->event->seq;
        items[i].len = m->data.len - offs[i];
    }
    for (size_t i = 0; i < w->n_records; i++)
        items[i].val = m->data.data + offs[i];
    st_offset now;
    int rc = st_db_dlq_write(
        s->db, w->tenant, w->consumer, items, w->n_records, w->has_pos, w->pos ? w->pos->lsn : 0,
        w->pos ? w->pos->seq : 0, w->epoch, w->lease_epoch, w->has_replay_ack,
        w->replay_ack ? w->replay_ack->lsn : 0, w->replay_ack ? w->replay_ack->seq : 0,
        w->replay_gen, &now, err, sizeof(err));
    if (rc == ST_DB_STALE) {
        wh_reply_error(rep, ST_STATUS_CONFLICT, "%s", err);
    } else if (rc != WH_OK) {
        int bad = strncmp(err, "records[", 8) == 0;
        if (!bad)
            wh_error("dead-letter write tenant=%s consumer=%s failed: %s", w->tenant, w->consumer,
                     err);
        wh_reply_error(rep, bad ? ST_STATUS_BAD_REQUEST : ST_STATUS_INTERNAL, "%s", err);
    } else {
        if (w->n_records > 0)
            wh_debug("%zu dead letter(s) recorded for %s/%s", w->n_records, w->tenant,
                     w->consumer); /* the dispatcher logs them, in a summary */
        dlq_reply(rep, m);
        walhook__position__init(&m->dlq_committed);
        m->dlq_committed.lsn = now.lsn;
        m->dlq_committed.seq = now.seq;
        m->dlq.committed = &m->dlq_committed;
        m->dlq.affected = (uint32_t)w->n_records;
    }
out:
    free(items);
    free(offs);
}

#define ST_DLQ_LIST_DEFAULT 100
#define ST_DLQ_LIST_MAX 1000

static void do_dlq_list(st_server *s, const Walhook__DlqList *l, Walhook__Reply *rep,
                        st_reply_mem *m)
{
    char err[WH_ERRLEN];
    if (!present(rep, l, "dlq_list") || !names_ok(rep, l->tenant, l->consumer, 1))
        return;
    if (l->limit > ST_DLQ_LIST_MAX) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "limit: %u is above %d", l->limit,
                       ST_DLQ_LIST_MAX);
        return;
    }
    uint32_t limit = l->limit ? l->limit : ST_DLQ_LIST_DEFAULT;
    size_t max_bytes = s->max_msg / 2;
    int more = 0;
    uint64_t total = 0, pending = 0;
    if (st_db_dlq_list(s->db, l->tenant, l->consumer, 'Q', l->has_after,
                       l->after ? l->after->lsn : 0, l->after ? l->after->seq : 0, limit, max_bytes,
                       collect_record, m, &more, err, sizeof(err)) != WH_OK ||
        st_db_dlq_count(s->db, l->tenant, l->consumer, 'Q', UINT64_MAX, &total, err, sizeof(err)) !=
            WH_OK ||
        st_db_dlq_count(s->db, l->tenant, l->consumer, 'R', UINT64_MAX, &pending, err,
                        sizeof(err)) != WH_OK) {
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
        return;
    }
    dlq_reply(rep, m);
    m->dlq.more = more;
    m->dlq.total = total;
    m->dlq.replay_pending = pending;
}

static void do_dlq_get(st_server *s, const Walhook__DlqGet *g, Walhook__Reply *rep, st_reply_mem *m)
{
    char err[WH_ERRLEN];
    if (!present(rep, g, "dlq_get") || !names_ok(rep, g->tenant, g->consumer, 1))
        return;
    if (g->pos == NULL) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", "pos: missing");
        return;
    }
    int found = 0;
    if (st_db_dlq_get(s->db, g->tenant, g->consumer, g->pos->lsn, g->pos->seq, collect_record, m,
                      &found, err, sizeof(err)) != WH_OK) {
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
        return;
    }
    dlq_reply(rep, m); /* not found: no record */
}

static void do_dlq_edit(st_server *s, const char *tenant, const char *consumer, int all,
                        Walhook__Position *const *pos, size_t n, int to_replay, Walhook__Reply *rep,
                        st_reply_mem *m)
{
    char err[WH_ERRLEN];
    if (!present(rep, tenant, to_replay ? "dlq_replay" : "dlq_purge") ||
        !names_ok(rep, tenant, consumer, 1))
        return;
    if (!all && n == 0) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", "positions: empty (or all)");
        return;
    }
    if (n > ST_DLQ_LIST_MAX) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "positions: more than %d", ST_DLQ_LIST_MAX);
        return;
    }
    uint64_t lsns[ST_DLQ_LIST_MAX];
    uint32_t seqs[ST_DLQ_LIST_MAX];
    for (size_t i = 0; i < n; i++) {
        if (pos[i] == NULL) {
            wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "positions[%zu]: missing", i);
            return;
        }
        lsns[i] = pos[i]->lsn;
        seqs[i] = pos[i]->seq;
    }
    uint32_t count = 0;
    int rc = to_replay ? st_db_dlq_replay(s->db, tenant, consumer, all, lsns, seqs, n, &count, err,
                                          sizeof(err))
                       : st_db_dlq_purge(s->db, tenant, consumer, all, lsns, seqs, n, &count, err,
                                         sizeof(err));
    if (rc != WH_OK) {
        wh_error("dead-letter %s tenant=%s consumer=%s failed: %s", to_replay ? "replay" : "purge",
                 tenant, consumer, err);
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
        return;
    }
    if (count > 0) {
        wh_info("%u dead letter(s) of %s/%s %s", count, tenant, consumer,
                to_replay ? "queued for replay" : "purged");
        if (to_replay) {
            notify_tenant(s, tenant); /* a long-polling dispatcher looks again */
            publish_durable(s, tenant, 0, 0, 0, 0, 0, 0, NULL, 0); /* a subscribed one too */
        }
    }
    dlq_reply(rep, m);
    m->dlq.affected = count;
}

static int collect_replay(void *arg, uint64_t lsn, uint32_t seq, const void *val, size_t len)
{
    WH_UNUSED(lsn);
    WH_UNUSED(seq);
    Walhook__DlqRecord *r = walhook__dlq_record__unpack(NULL, len, val);
    if (r == NULL)
        return 0;
    int stop = 0;
    if (r->event != NULL)
        stop = collect_event(arg, r->event->commit_lsn, r->event->seq, r->event->commit_ts_us,
                             r->event->json.data, r->event->json.len);
    walhook__dlq_record__free_unpacked(r, NULL);
    return stop;
}

static void do_replay_read(st_server *s, const Walhook__ReplayRead *r, Walhook__Reply *rep,
                           st_reply_mem *m)
{
    char err[WH_ERRLEN];
    if (!present(rep, r, "replay_read") || !names_ok(rep, r->tenant, r->consumer, 1))
        return;
    uint32_t max_events = r->max_events ? r->max_events : ST_DEFAULT_MAX_EVENTS;
    if (max_events > ST_MAX_EVENTS)
        max_events = ST_MAX_EVENTS;
    size_t max_bytes = r->max_bytes ? r->max_bytes : ST_DEFAULT_MAX_BYTES;
    if (max_bytes > s->max_msg / 2)
        max_bytes = s->max_msg / 2;
    int more = 0;
    st_offset off;
    /* before the entries: a replay that queues more after it moves it */
    uint64_t gen = st_db_replay_gen(s->db, r->tenant, r->consumer);
    if (st_db_dlq_list(s->db, r->tenant, r->consumer, 'R', 0, 0, 0, max_events, max_bytes,
                       collect_replay, m, &more, err, sizeof(err)) != WH_OK ||
        st_db_offset_info(s->db, r->tenant, r->consumer, &off, err, sizeof(err)) != WH_OK) {
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
        return;
    }
    if (m->nev > 0) {
        m->evp = malloc(m->nev * sizeof(*m->evp));
        if (m->evp == NULL) {
            wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", "out of memory");
            return;
        }
        for (size_t i = 0; i < m->nev; i++) {
            m->evs[i].json.data = (uint8_t *)m->data.data + m->json_off[i];
            m->evp[i] = &m->evs[i];
        }
    }
    walhook__read_reply__init(&m->read);
    walhook__position__init(&m->committed);
    m->committed.lsn = off.lsn;
    m->committed.seq = off.seq;
    m->read.n_events = m->nev;
    m->read.events = m->evp;
    m->read.committed = &m->committed;
    m->read.epoch = off.epoch;
    m->read.replay_gen = gen;
    rep->body_case = WALHOOK__REPLY__BODY_READ;
    rep->read = &m->read;
}

static void do_replay_ack(st_server *s, const Walhook__ReplayAck *a, Walhook__Reply *rep,
                          st_reply_mem *m)
{
    char err[WH_ERRLEN];
    if (!present(rep, a, "replay_ack") || !names_ok(rep, a->tenant, a->consumer, 1))
        return;
    if (a->upto == NULL) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", "upto: missing");
        return;
    }
    uint32_t n = 0;
    int rc = st_db_replay_ack(s->db, a->tenant, a->consumer, a->upto->lsn, a->upto->seq,
                              a->lease_epoch, a->replay_gen, &n, err, sizeof(err));
    if (rc == ST_DB_STALE) {
        wh_reply_error(rep, ST_STATUS_CONFLICT, "%s", err);
        return;
    }
    if (rc != WH_OK) {
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
        return;
    }
    dlq_reply(rep, m);
    m->dlq.affected = n;
}

/* ---- leases ---- */

static char *reply_str(st_reply_mem *m, const char *v)
{
    if (wh_grow(&m->strs, m->nstrs + 1, &m->capstrs, sizeof(*m->strs), 16) != WH_OK)
        return NULL;
    char *d = strdup(v);
    if (d)
        m->strs[m->nstrs++] = d;
    return d;
}

static void lease_reply(Walhook__Reply *rep, st_reply_mem *m, const st_lease *l)
{
    walhook__lease_reply__init(&m->lease);
    if (l) {
        wh_strlcpy(m->lowner, l->owner, sizeof(m->lowner));
        m->lease.granted = l->granted;
        m->lease.epoch = l->epoch;
        m->lease.owner = m->lowner;
        m->lease.expires_in_ms = l->expires_in_ms;
        m->lease.taken_over = l->taken_over != 0;
        m->lease.expired_ms_ago = l->expired_ms_ago;
        m->lease.request_timeout_ms = l->request_timeout_ms;
    }
    rep->body_case = WALHOOK__REPLY__BODY_LEASE;
    rep->lease = &m->lease;
}

/* LeaseAcquire, LeaseRenew, LeaseRelease. An Acquire or a Release holds a
 * place among the requests that wait for the disk (waits_for_disk); a
 * renewal stores nothing but rarely (st_db_lease_renew) and takes none. */
static void do_lease(st_server *s, const Walhook__Request *req, Walhook__Reply *rep,
                     st_reply_mem *m)
{
    char err[WH_ERRLEN];
    st_lease l;
    int rc;
    const char *tenant, *consumer, *owner;
    uint32_t ttl = 0;
    switch (req->body_case) {
    case WALHOOK__REQUEST__BODY_LEASE_ACQUIRE: {
        const Walhook__LeaseAcquire *a = req->lease_acquire;
        if (a == NULL)
            goto missing;
        tenant = a->tenant, consumer = a->consumer, owner = a->owner, ttl = a->ttl_ms;
        rc = st_db_lease_acquire(s->db, tenant, consumer, owner, ttl, a->request_timeout_ms, &l,
                                 err, sizeof(err));
        if (rc == WH_OK && l.granted)
            wh_debug("lease %s/%s held by %s (epoch %" PRIu64 ")", tenant, consumer, owner,
                     l.epoch);
        break;
    }
    case WALHOOK__REQUEST__BODY_LEASE_RENEW: {
        const Walhook__LeaseRenew *a = req->lease_renew;
        if (a == NULL)
            goto missing;
        tenant = a->tenant, consumer = a->consumer, owner = a->owner, ttl = a->ttl_ms;
        rc = st_db_lease_renew(s->db, tenant, consumer, owner, a->epoch, ttl, a->request_timeout_ms,
                               &l, err, sizeof(err));
        break;
    }
    default: {
        const Walhook__LeaseRelease *a = req->lease_release;
        if (a == NULL)
            goto missing;
        tenant = a->tenant, consumer = a->consumer, owner = a->owner;
        rc = st_db_lease_release(s->db, tenant, consumer, owner, a->epoch, a->abandoned, &l, err,
                                 sizeof(err));
        break;
    }
    }
    if (rc != WH_OK) {
        int bad = strstr(err, "rocksdb") == NULL;
        wh_reply_error(rep, bad ? ST_STATUS_BAD_REQUEST : ST_STATUS_INTERNAL, "%s", err);
        return;
    }
    if (ttl > 0)
        st_db_owners_live(s->db, owner, NULL, ttl, NULL, NULL);
    lease_reply(rep, m, &l);
    return;
missing:
    wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", "lease: missing");
}

static int collect_lease(void *arg, const char *tenant, const char *consumer, const st_lease *l)
{
    st_reply_mem *m = arg;
    if (wh_grow(&m->linfo, m->nlinfo + 1, &m->caplinfo, sizeof(*m->linfo), 16) != WH_OK)
        return 1;
    Walhook__LeaseInfo *i = &m->linfo[m->nlinfo];
    walhook__lease_info__init(i);
    i->tenant = reply_str(m, tenant);
    i->consumer = reply_str(m, consumer);
    i->owner = reply_str(m, l->owner);
    if (!i->tenant || !i->consumer || !i->owner)
        return 1;
    i->epoch = l->epoch;
    i->expires_in_ms = l->expires_in_ms;
    m->nlinfo++;
    return 0;
}

typedef struct {
    st_reply_mem *m;
    char **v, **c; /* owners, their controls (same capacity) */
    size_t n, cap, ccap;
    int oom;
} owners_acc;

static void collect_owner(void *arg, const char *owner, const char *control)
{
    owners_acc *a = arg;
    if (wh_grow(&a->v, a->n + 1, &a->cap, sizeof(*a->v), 8) != WH_OK ||
        wh_grow(&a->c, a->n + 1, &a->ccap, sizeof(*a->c), 8) != WH_OK) {
        a->oom = 1;
        return;
    }
    char *d = reply_str(a->m, owner), *e = reply_str(a->m, control);
    if (d == NULL || e == NULL) {
        a->oom = 1;
        return;
    }
    a->v[a->n] = d;
    a->c[a->n++] = e;
}

/* LeaseList.control: an endpoint URL (ipc://, tcp://, tls+tcp://) of
 * printable ASCII that the admin may dial. */
static int st_check_control(const char *c, char *err, size_t errlen)
{
    if (strlen(c) >= WH_URL_MAX)
        return wh_seterr(err, errlen, "control: longer than %d bytes", WH_URL_MAX - 1);
    if (!wh_str_visible(c))
        return wh_seterr(err, errlen, "control: only printable ASCII without spaces");
    if (!wh_endpoint_scheme_ok(c))
        return wh_seterr(err, errlen, "control: must start with ipc://, tcp:// or tls+tcp://");
    return WH_OK;
}

static void do_lease_list(st_server *s, const Walhook__LeaseList *l, Walhook__Reply *rep,
                          st_reply_mem *m)
{
    char err[WH_ERRLEN];
    if (!present(rep, l, "lease_list"))
        return;
    int has_owner = l->owner != NULL && l->owner[0] != '\0';
    if (has_owner && st_db_check_owner(l->owner, err, sizeof(err)) != WH_OK) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", err);
        return;
    }
    if (has_owner && l->control != NULL && l->control[0] != '\0' &&
        st_check_control(l->control, err, sizeof(err)) != WH_OK) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", err);
        return;
    }
    if (has_owner && (l->ttl_ms < 100 || l->ttl_ms > 600000)) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "ttl_ms: %u out of range (100..600000)",
                       l->ttl_ms);
        return;
    }
    st_db_lease_each(s->db, collect_lease, m);
    owners_acc a = {.m = m};
    /* a control is noted only with its owner (an admin's list names none) */
    const char *control = has_owner && l->control != NULL ? l->control : NULL;
    st_db_owners_live(s->db, has_owner ? l->owner : NULL, control, l->ttl_ms, collect_owner, &a);
    m->linfop = malloc((m->nlinfo ? m->nlinfo : 1) * sizeof(*m->linfop));
    if (m->linfop == NULL || a.oom) {
        free(a.v);
        free(a.c);
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", "out of memory");
        return;
    }
    for (size_t i = 0; i < m->nlinfo; i++)
        m->linfop[i] = &m->linfo[i];
    lease_reply(rep, m, NULL);
    m->lease.leases = m->linfop;
    m->lease.n_leases = m->nlinfo;
    m->owners = a.v;
    m->controls = a.c;
    m->lease.owners = a.v;
    m->lease.n_owners = a.n;
    m->lease.owner_controls = a.c;
    m->lease.n_owner_controls = a.n;
}

/* ---- slot (st_slot) ---- */

static void do_slot_report(st_server *s, const Walhook__SlotReport *r, Walhook__Reply *rep,
                           st_reply_mem *m)
{
    char err[WH_ERRLEN];
    if (!present(rep, r, "slot_report") || !names_ok(rep, r->tenant, NULL, 0))
        return;
    walhook__slot_reply__init(&m->slot);
    int zone_changed = 0;
    if (st_slot_report(s->slot, r, &m->slot, m->slowest, sizeof(m->slowest), &zone_changed, err,
                       sizeof(err)) != WH_OK) {
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
        return;
    }
    if (zone_changed)
        publish_zone(s, r->tenant, st_slot_zone(s->slot, r->tenant));
    m->slot.slowest = m->slowest;
    rep->body_case = WALHOOK__REPLY__BODY_SLOT;
    rep->slot = &m->slot;
}

/* ---- dispatch ---- */

/* The request's name in a refusal (write_refuse); NULL for a request that
 * never waits for the disk. */
static const char *write_name(int body)
{
    switch (body) {
    case WALHOOK__REQUEST__BODY_APPEND:
        return "append";
    case WALHOOK__REQUEST__BODY_COMMIT:
        return "commit";
    case WALHOOK__REQUEST__BODY_SET_OFFSET:
        return "set_offset";
    case WALHOOK__REQUEST__BODY_DROP_OFFSET:
        return "drop_offset";
    case WALHOOK__REQUEST__BODY_PUT_STATE:
        return "put_state";
    case WALHOOK__REQUEST__BODY_DLQ_WRITE:
        return "dlq_write";
    case WALHOOK__REQUEST__BODY_DLQ_REPLAY:
        return "dlq_replay";
    case WALHOOK__REQUEST__BODY_DLQ_PURGE:
        return "dlq_purge";
    case WALHOOK__REQUEST__BODY_REPLAY_ACK:
        return "replay_ack";
    case WALHOOK__REQUEST__BODY_LEASE_ACQUIRE:
    case WALHOOK__REQUEST__BODY_LEASE_RELEASE:
        return "lease";
    case WALHOOK__REQUEST__BODY_SLOT_REPORT:
        return "slot_report";
    case WALHOOK__REQUEST__BODY_SCHEMA_LIST:
        return "schema_list";
    case WALHOOK__REQUEST__BODY_GET_STATE:
        return "get_state";
    default:
        return NULL;
    }
}

/* 1 for a request that may wait for a synced write (its own, or a WAL
 * sync it needs to answer): Append (events, staged events, stage commits
 * and aborts), CommitOffset, SetOffset, DropOffset, PutState, DlqWrite,
 * DlqReplay, DlqPurge, ReplayAck, LeaseAcquire, LeaseRelease, SlotReport
 * (a NEEDS_SNAPSHOT mark is stored with sync, a stall timer through the
 * same write queue) and SchemaList (answered once what it listed is
 * synced). A LeaseRenew stores nothing but rarely; the first Read of a
 * consumer stores its offset once; neither takes a place. */
static int waits_for_disk(int body)
{
    /* GetState takes one only while a state write is under way (do_get_state) */
    return body != WALHOOK__REQUEST__BODY_GET_STATE && write_name(body) != NULL;
}

/* A place for a request that may wait for a synced write; 0: none, and
 * *stalled_ms the age of the oldest write in progress, which has waited
 * for the disk ST_WRITE_PLACE_STALL_MS or more. While the writes move (a
 * busy moment: many targets committing at once, a slow fsync) the request
 * waits for a place however long that takes, as it queued for a worker
 * before; only a stalled disk gets refusals. Such a request holds its worker
 * for as long as the sync takes: with the WAL's syncs stalled (a slow or
 * hung disk), the callers, each giving its request up at its timeout and
 * sending it again while the first still waits, held every worker (an
 * Append and its retry, a commit and its retry, a slot report), and the
 * requests that wait for no disk (Read, GetState, Stats, LeaseList,
 * LeaseRenew) got no answer: no /metrics, health or state read while the
 * disk stalled (test_write_sync_stall, test_lease_sync_stall). So at most
 * write_max (store.workers) of them are served at once, over NNG and the
 * direct sockets together, each of which serves store.workers +
 * WH_STORE_SPARE_WORKERS requests: the spare ones stay free for the others
 * (one for a long poll, one for the rest), and the disk's requests keep
 * the concurrency they had (their group commits, commits riding on them). */
static int write_place_take(st_server *s, uint64_t *stalled_ms)
{
    int ok = 0;
    *stalled_ms = 0;
    pthread_mutex_lock(&s->wmu);
    while (!s->stopping) {
        if (s->nwrite < s->write_max) {
            s->nwrite++;
            ok = 1;
            break;
        }
        uint64_t ms = st_db_write_pending_ms(s->db, NULL);
        if (ms >= ST_WRITE_PLACE_STALL_MS) {
            *stalled_ms = ms;
            break;
        }
        struct timespec deadline;
        wh_deadline_in(&deadline, CLOCK_MONOTONIC, ST_WRITE_PLACE_POLL_MS);
        pthread_cond_timedwait(&s->write_cv, &s->wmu, &deadline);
    }
    pthread_mutex_unlock(&s->wmu);
    return ok;
}

static void write_place_give(st_server *s)
{
    pthread_mutex_lock(&s->wmu);
    s->nwrite--;
    pthread_cond_signal(&s->write_cv);
    pthread_mutex_unlock(&s->wmu);
}

/* Requests holding a place now */
static int writes_waiting(st_server *s)
{
    pthread_mutex_lock(&s->wmu);
    int n = s->nwrite;
    pthread_mutex_unlock(&s->wmu);
    return n;
}

/* "Slow down", nothing done: an Append stores nothing (the ingestor sends
 * it again: events are stored once by their identity), a commit, SetOffset
 * or DlqWrite moves no offset, a PutState writes no version, an Acquire
 * grants nothing, a Release lets the lease lapse (its next holder waits
 * as after a lapse). The message names no row value. */
static void write_refuse(st_server *s, int body, uint64_t stalled_ms, Walhook__Reply *rep)
{
    wh_counter_add(&s->write_refused, 1);
    wh_reply_error(rep, ST_STATUS_SLOW_DOWN,
                   "%s: %d " WH_STORE_DISK_BUSY ", the oldest for %" PRIu64
                   " ms (store.workers %d); refused, nothing done; try again later",
                   write_name(body), s->write_max, stalled_ms, s->workers);
    rep->retry_after_ms = ST_WRITE_RETRY_MS;
}

void st_server_handle(void *arg, const Walhook__Request *req, Walhook__Reply *rep, void **cookie)
{
    st_server *s = arg;
    st_reply_mem *m = calloc(1, sizeof(*m));
    *cookie = m;
    if (m == NULL) {
        rep->status = ST_STATUS_INTERNAL;
        rep->error = "out of memory";
        return;
    }
    wh_buf_init(&m->data, 0);
    if (req == NULL) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", "request: missing");
        return;
    }
    int placed = waits_for_disk(req->body_case);
    uint64_t stalled_ms;
    if (placed && !write_place_take(s, &stalled_ms)) {
        write_refuse(s, req->body_case, stalled_ms, rep);
        return;
    }
    switch (req->body_case) {
    case WALHOOK__REQUEST__BODY_APPEND:
        do_append(s, req->append, rep, m);
        break;
    case WALHOOK__REQUEST__BODY_READ:
        do_read(s, req->read, rep, m);
        break;
    case WALHOOK__REQUEST__BODY_COMMIT:
        do_commit(s, req->commit, rep, m);
        break;
    case WALHOOK__REQUEST__BODY_GET_OFFSET:
        do_get_offset(s, req->get_offset, rep, m);
        break;
    case WALHOOK__REQUEST__BODY_STATS:
        do_stats(s, rep, m);
        break;
    case WALHOOK__REQUEST__BODY_GET_STATE:
        do_get_state(s, req->get_state, rep, m);
        break;
    case WALHOOK__REQUEST__BODY_PUT_STATE:
        do_put_state(s, req->put_state, rep, m);
        break;
    case WALHOOK__REQUEST__BODY_SET_OFFSET:
        do_set_offset(s, req->set_offset, rep, m);
        break;
    case WALHOOK__REQUEST__BODY_DROP_OFFSET:
        do_drop_offset(s, req->drop_offset, rep, m);
        break;
    case WALHOOK__REQUEST__BODY_TENANT_INFO:
        do_tenant_info(s, req->tenant_info, rep, m);
        break;
    case WALHOOK__REQUEST__BODY_DLQ_WRITE:
        do_dlq_write(s, req->dlq_write, rep, m);
        break;
    case WALHOOK__REQUEST__BODY_DLQ_LIST:
        do_dlq_list(s, req->dlq_list, rep, m);
        break;
    case WALHOOK__REQUEST__BODY_DLQ_GET:
        do_dlq_get(s, req->dlq_get, rep, m);
        break;
    case WALHOOK__REQUEST__BODY_DLQ_REPLAY:
        do_dlq_edit(s, req->dlq_replay ? req->dlq_replay->tenant : NULL,
                    req->dlq_replay ? req->dlq_replay->consumer : NULL,
                    req->dlq_replay ? req->dlq_replay->all : 0,
                    req->dlq_replay ? req->dlq_replay->positions : NULL,
                    req->dlq_replay ? req->dlq_replay->n_positions : 0, 1, rep, m);
        break;
    case WALHOOK__REQUEST__BODY_DLQ_PURGE:
        do_dlq_edit(s, req->dlq_purge ? req->dlq_purge->tenant : NULL,
                    req->dlq_purge ? req->dlq_purge->consumer : NULL,
                    req->dlq_purge ? req->dlq_purge->all : 0,
                    req->dlq_purge ? req->dlq_purge->positions : NULL,
                    req->dlq_purge ? req->dlq_purge->n_positions : 0, 0, rep, m);
        break;
    case WALHOOK__REQUEST__BODY_REPLAY_READ:
        do_replay_read(s, req->replay_read, rep, m);
        break;
    case WALHOOK__REQUEST__BODY_REPLAY_ACK:
        do_replay_ack(s, req->replay_ack, rep, m);
        break;
    case WALHOOK__REQUEST__BODY_LEASE_ACQUIRE:
    case WALHOOK__REQUEST__BODY_LEASE_RENEW:
    case WALHOOK__REQUEST__BODY_LEASE_RELEASE:
        do_lease(s, req, rep, m);
        break;
    case WALHOOK__REQUEST__BODY_LEASE_LIST:
        do_lease_list(s, req->lease_list, rep, m);
        break;
    case WALHOOK__REQUEST__BODY_BACKLOG:
        do_backlog(s, req->backlog, rep, m);
        break;
    case WALHOOK__REQUEST__BODY_SCHEMA_LIST: {
        /* registrations are readable before their sync: what was listed
         * is durable once a sync that begins after the listing ended */
        char err[WH_ERRLEN];
        st_schema_list(s->db, req->schema_list, rep, &m->schemas);
        if (rep->status == 0 && st_db_wal_synced(s->db, err, sizeof(err)) != WH_OK)
            wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
        break;
    }
    case WALHOOK__REQUEST__BODY_SLOT_REPORT:
        do_slot_report(s, req->slot_report, rep, m);
        break;
    case WALHOOK__REQUEST__BODY_TOAST_GET:
        do_toast_get(s, req->toast_get, rep, m);
        break;
    default:
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", "body: empty or unknown request type");
        break;
    }
    if (placed)
        write_place_give(s);
}

/* wh_server_wire_fn: a Read's reply goes out of the buffer its events were
 * collected in (wh_pb_read_event), its other fields written around them;
 * anything else is packed. */
static int st_server_wire(void *arg, Walhook__Reply *rep, void *cookie, wh_buf *out, size_t *start)
{
    WH_UNUSED(arg);
    st_reply_mem *m = cookie;
    if (m == NULL || !m->wire || rep->body_case != WALHOOK__REPLY__BODY_READ ||
        rep->read != &m->read || rep->status != 0 || (rep->error && rep->error[0]) ||
        rep->retry_after_ms != 0 || m->read.n_events != m->nev)
        return 0;
    if (wh_pb_read_finish(&m->data, &m->read, start) != WH_OK)
        return 0;
    wh_buf t = *out; /* out's (empty) buffer is freed with the reply memory */
    *out = m->data;
    m->data = t;
    return 1;
}

void st_server_done(void *arg, Walhook__Reply *rep, void *cookie)
{
    WH_UNUSED(arg);
    WH_UNUSED(rep);
    st_reply_mem *m = cookie;
    if (m == NULL)
        return;
    wh_stats_reply_free(m->stats);
    st_schema_reply_free(m->schemas);
    wh_buf_free(&m->data);
    for (size_t i = 0; i < m->nrec; i++)
        walhook__dlq_record__free_unpacked(m->recs[i], NULL);
    free(m->recs);
    free(m->linfo);
    free(m->linfop);
    for (size_t i = 0; i < m->nstrs; i++)
        free(m->strs[i]);
    free(m->strs);
    free(m->owners);
    free(m->controls);
    free(m->evs);
    free(m->evp);
    free(m->json_off);
    free(m->tval);
    st_toast_tables_free(m->ttabs, m->nttabs);
    free(m->tt);
    free(m->ttp);
    free(m);
}

/* ---- lifecycle ---- */

int st_server_create(st_server **out, st_db *db, int workers, size_t max_msg, char *err,
                     size_t errlen)
{
    *out = NULL;
    if (db == NULL)
        return wh_seterr(err, errlen, "store: no database");
    if (workers < 1)
        return wh_seterr(err, errlen, "store.workers: must be >= 1");
    st_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return wh_seterr(err, errlen, "out of memory");
    s->db = db;
    s->workers = workers;
    s->stage_chunk = ST_STAGE_CHUNK_BYTES;
    s->max_msg = max_msg > 0 ? max_msg : 64u * 1024 * 1024;
    if (st_push_new(&s->push) != WH_OK) {
        free(s);
        return wh_seterr(err, errlen, "out of memory");
    }
    if (st_slot_new(&s->slot, db, err, errlen) != WH_OK) {
        st_push_free(s->push);
        free(s);
        return WH_ERR;
    }
    pthread_mutex_init(&s->wmu, NULL);
    pthread_mutex_init(&s->nmu, NULL);
    /* store.workers places for the requests that may wait for the disk,
     * served by store.workers + WH_STORE_SPARE_WORKERS workers (NNG) and
     * slots (the direct socket): the spare ones always left to the others */
    s->write_max = workers;
    wh_cond_init_monotonic(&s->write_cv);
    wh_buf_init(&s->nbuf, WH_NOTE_MSG_MAX);
    for (int k = 0; k < ST_READER_STRIPES; k++)
        pthread_mutex_init(&s->rmu[k], NULL);
    *out = s;
    return WH_OK;
}

void st_server_set_notify(st_server *s, const char *setting)
{
    wh_strlcpy(s->notify_setting, setting != NULL ? setting : "", sizeof(s->notify_setting));
}

void st_server_set_state(st_server *s, st_state *st)
{
    s->state = st;
}

int st_server_listen(st_server *s, const char *url, char *err, size_t errlen)
{
    if (s->nng)
        return wh_seterr(err, errlen, "store: already listening");
    char nurl[1100], nerr[WH_ERRLEN];
    if (wh_notify_url(url, s->notify_setting, nurl, sizeof(nurl), nerr, sizeof(nerr)) != WH_OK)
        wh_info("durability notifications are off (dispatchers long-poll the store): %s", nerr);
    else if (wh_pub_open(&s->pub, nurl, nerr, sizeof(nerr)) != WH_OK)
        wh_warn("durability notifications are off (dispatchers long-poll the store): "
                "store.notify_endpoint: %s",
                nerr);
    return wh_server_start_wire(&s->nng, url, s->workers + WH_STORE_SPARE_WORKERS, s->max_msg,
                                st_server_handle, st_server_wire, st_server_done, s, err, errlen);
}

void st_server_stop(st_server *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->wmu);
    s->stopping = 1;
    for (st_waitq *q = s->waitq; q; q = q->next)
        pthread_cond_broadcast(&q->cond);
    pthread_cond_broadcast(&s->write_cv);
    pthread_mutex_unlock(&s->wmu);
    if (s->nng) {
        wh_server_stop(s->nng); /* closes the socket, joins the workers */
        s->nng = NULL;
    }
    wh_pub_close(s->pub);
    s->pub = NULL;
}

void st_server_destroy(st_server *s)
{
    if (s == NULL)
        return;
    st_server_stop(s);
    st_waitq *q = s->waitq;
    while (q) {
        st_waitq *n = q->next;
        pthread_cond_destroy(&q->cond);
        free(q);
        q = n;
    }
    rents_free(s); /* after the workers stopped; before the db closes */
    st_push_free(s->push);
    st_slot_free(s->slot);
    wh_buf_free(&s->nbuf);
    pthread_mutex_destroy(&s->nmu);
    pthread_cond_destroy(&s->write_cv);
    pthread_mutex_destroy(&s->wmu);
    free(s);
}

/* ---- the TOAST value cache (st_toast.h) ---- */

/* The request's toast_ops as st_toast_op (pointing into a); WH_ERR: a bad
 * op (answered). */
static int toast_ops(const Walhook__AppendBatch *a, st_toast_op **out, Walhook__Reply *rep)
{
    *out = NULL;
    if (a->toast_ops == NULL) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", "toast_ops: missing");
        return WH_ERR;
    }
    st_toast_op *ops = calloc(a->n_toast_ops, sizeof(*ops));
    if (ops == NULL) {
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", "out of memory");
        return WH_ERR;
    }
    for (size_t i = 0; i < a->n_toast_ops; i++) {
        const Walhook__ToastOp *o = a->toast_ops[i];
        const char *bad = NULL;
        int kind = o != NULL ? (int)o->kind : 0;
        if (o == NULL)
            bad = "missing";
        else if (kind < ST_TOAST_PUT || kind > ST_TOAST_CLEAR)
            bad = "kind: unknown";
        else if (kind != ST_TOAST_CLEAR && o->rel == 0)
            bad = "rel: must be > 0";
        else if ((kind == ST_TOAST_PUT || kind == ST_TOAST_DEL || kind == ST_TOAST_DEL_ROW) &&
                 (o->key.len == 0 || o->key.len > 1024 * 1024))
            bad = "key: empty or over 1 MiB";
        else if ((kind == ST_TOAST_PUT || kind == ST_TOAST_DEL) &&
                 (o->col == NULL || o->col[0] == '\0' || strlen(o->col) > 0xffff))
            bad = "col: empty or too long";
        else if (kind == ST_TOAST_PUT && (o->value.len == 0 || o->lsn == 0))
            bad = "a put needs a value and an lsn";
        if (bad != NULL) {
            wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "toast_ops[%zu]%s%s", i,
                           o == NULL ? ": " : ".", bad);
            free(ops);
            return WH_ERR;
        }
        ops[i] = (st_toast_op){(int)o->kind,
                               o->rel,
                               (const char *)o->key.data,
                               o->key.len,
                               o->col ? o->col : "",
                               o->col ? strlen(o->col) : 0,
                               (const char *)o->value.data,
                               o->value.len,
                               o->lsn,
                               o->fingerprint};
    }
    *out = ops;
    return WH_OK;
}

static void do_toast_get(st_server *s, const Walhook__ToastGet *g, Walhook__Reply *rep,
                         st_reply_mem *m)
{
    char err[WH_ERRLEN];
    if (!present(rep, g, "toast_get") || !names_ok(rep, g->tenant, NULL, 0))
        return;
    walhook__toast_reply__init(&m->toast);
    if (g->tables) {
        if (st_db_toast_tables(s->db, g->tenant, &m->ttabs, &m->nttabs, err, sizeof(err)) !=
            WH_OK) {
            wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
            return;
        }
        if (m->nttabs > 0) {
            m->tt = calloc(m->nttabs, sizeof(*m->tt));
            m->ttp = calloc(m->nttabs, sizeof(*m->ttp));
            if (m->tt == NULL || m->ttp == NULL) {
                wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", "out of memory");
                return;
            }
        }
        for (size_t i = 0; i < m->nttabs; i++) {
            walhook__toast_table__init(&m->tt[i]);
            m->tt[i].rel = m->ttabs[i].rel;
            m->tt[i].fingerprint = m->ttabs[i].fingerprint;
            m->tt[i].n_cols = m->ttabs[i].ncols;
            m->tt[i].cols = m->ttabs[i].cols;
            m->ttp[i] = &m->tt[i];
        }
        m->toast.n_tables = m->nttabs;
        m->toast.tables = m->ttp;
    } else {
        if (g->rel == 0 || g->key.len == 0 || g->col == NULL || g->col[0] == '\0') {
            wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s",
                           "toast_get: rel, key and col are needed (or tables)");
            return;
        }
        size_t vl = 0;
        uint64_t lsn = 0;
        int r = st_db_toast_get(s->db, g->tenant, g->rel, (const char *)g->key.data, g->key.len,
                                g->col, g->before_lsn, &m->tval, &vl, &lsn, err, sizeof(err));
        if (r < 0) {
            wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
            return;
        }
        if (r > 0) {
            m->toast.found = 1;
            m->toast.value.data = (uint8_t *)m->tval;
            m->toast.value.len = vl;
            m->toast.lsn = lsn;
        }
    }
    rep->body_case = WALHOOK__REPLY__BODY_TOAST;
    rep->toast = &m->toast;
}

static int toast_metrics(st_server *s, wh_buf *b)
{
    st_tenant_stats *ts = malloc(ST_METRIC_TENANTS * sizeof(*ts));
    if (ts == NULL)
        return WH_ERR;
    size_t n = st_db_tenant_stats(s->db, ts, ST_METRIC_TENANTS);
    static const struct {
        const char *name, *type, *help;
    } m[] = {
        {"walhook_store_toast_entries", "gauge",
         "entries of the tenant's TOAST value cache (store.toast_cache_bytes)"},
        {"walhook_store_toast_bytes", "gauge", "bytes of the tenant's TOAST value cache entries"},
        {"walhook_store_toast_evictions_total", "counter",
         "TOAST value cache entries evicted to stay within store.toast_cache_bytes"},
        {"walhook_store_toast_lookups_total", "counter",
         "ToastGet lookups of the tenant since start (found: those answered with a value)"},
    };
    int rc = 0;
    for (size_t k = 0; k < sizeof(m) / sizeof(m[0]); k++) {
        rc |= wh_metric_header(b, m[k].name, m[k].type, m[k].help);
        for (size_t i = 0; i < n; i++) {
            st_toast_stats st;
            if (!st_db_toast_stats(s->db, ts[i].tenant, &st))
                continue;
            char t[2 * ST_NAME_MAX + 2], lab[2 * ST_NAME_MAX + 40];
            label_value(t, sizeof(t), ts[i].tenant);
            snprintf(lab, sizeof(lab), "tenant=\"%s\"", t);
            if (k == 0)
                rc |= wh_metric_u64(b, m[k].name, lab, st.entries);
            else if (k == 1)
                rc |= wh_metric_u64(b, m[k].name, lab, st.bytes);
            else if (k == 2)
                rc |= wh_metric_u64(b, m[k].name, lab, st.evictions);
            else {
                snprintf(lab, sizeof(lab), "tenant=\"%s\",found=\"true\"", t);
                rc |= wh_metric_u64(b, m[k].name, lab, st.found);
                snprintf(lab, sizeof(lab), "tenant=\"%s\",found=\"false\"", t);
                rc |= wh_metric_u64(b, m[k].name, lab, st.lookups - st.found);
            }
        }
    }
    free(ts);
    return rc ? WH_ERR : WH_OK;
}
