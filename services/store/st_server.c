/* st_server: request handler of walhook-store. See st_server.h. */
#include "st_server.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wh_buf.h"
#include "wh_ipc.h"
#include "wh_metrics.h"
#include "wh_daemon.h"
#include "wh_util.h"

#define ST_MAX_WAITQ 1024    /* tenants with a long-poll queue */
#define ST_EVENT_OVERHEAD 48 /* protobuf framing per event, upper bound */

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

    pthread_mutex_t wmu; /* guards waitq list, gens, stopping, nwaiting */
    st_waitq *waitq;
    size_t nwaitq;
    int nwaiting;
    int stopping;

    wh_counter events_stored;
    wh_counter appends;
    wh_counter reads;
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
    void *stats; /* wh_stats_reply's */
    /* Read: events collected into arrays; json bytes in one buffer, the
     * pointers are fixed up once the buffer stopped growing. */
    Walhook__Event *evs;
    Walhook__Event **evp;
    size_t *json_off;
    size_t nev, capev;
    wh_buf data;
} st_reply_mem;

/* ---- helpers ---- */

static void now_plus_ms_mono(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

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
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cond, &ca);
    pthread_condattr_destroy(&ca);
    q->next = s->waitq;
    s->waitq = q;
    s->nwaitq++;
    return q;
}

static void notify_tenant(st_server *s, const char *tenant)
{
    pthread_mutex_lock(&s->wmu);
    st_waitq *q = waitq_get(s, tenant, 0);
    if (q) {
        q->gen++;
        pthread_cond_broadcast(&q->cond);
    }
    pthread_mutex_unlock(&s->wmu);
}

/* ---- Append ---- */

static void do_append(st_server *s, const Walhook__AppendBatch *a, Walhook__Reply *rep,
                      st_reply_mem *m)
{
    char err[WH_ERRLEN];
    if (a == NULL) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", "append: missing");
        return;
    }
    if (st_db_check_name(a->tenant, "tenant", err, sizeof(err)) != WH_OK) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", err);
        return;
    }
    if (a->n_events > 0 && a->events == NULL) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", "events: missing");
        return;
    }
    st_event *ev = NULL;
    if (a->n_events > 0) {
        ev = calloc(a->n_events, sizeof(*ev));
        if (ev == NULL) {
            wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", "out of memory");
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
        if (bad) {
            snprintf(err, sizeof(err), "events[%zu]%s%s", i, e == NULL ? ": " : ".", bad);
            wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", err);
            free(ev);
            return;
        }
        ev[i].lsn = e->commit_lsn;
        ev[i].seq = e->seq;
        ev[i].commit_ts_us = e->commit_ts_us;
        ev[i].json = e->json.data;
        ev[i].json_len = e->json.len;
    }
    uint64_t durable = 0;
    int rc =
        st_db_append(s->db, a->tenant, ev, a->n_events, a->ack_lsn, &durable, err, sizeof(err));
    free(ev);
    if (rc != WH_OK) {
        wh_error("append tenant=%s batch=%" PRIu64 " failed: %s", a->tenant, a->batch_id, err);
        wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
        return;
    }
    wh_counter_add(&s->appends, 1);
    wh_counter_add(&s->events_stored, a->n_events);
    if (a->n_events > 0)
        notify_tenant(s, a->tenant);
    walhook__append_reply__init(&m->app);
    m->app.durable_lsn = durable;
    m->app.stored = (uint32_t)a->n_events;
    rep->body_case = WALHOOK__REPLY__BODY_APPEND;
    rep->append = &m->app;
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
    size_t off = m->data.len;
    if (wh_buf_append(&m->data, json, len) != WH_OK)
        return 1;
    Walhook__Event *e = &m->evs[m->nev];
    walhook__event__init(e);
    e->commit_lsn = lsn;
    e->seq = seq;
    e->commit_ts_us = ts;
    e->json.len = len;
    m->json_off[m->nev] = off;
    m->nev++;
    return 0;
}

static int read_once(st_server *s, const char *tenant, uint64_t lsn, uint32_t seq,
                     uint32_t max_events, size_t max_bytes, st_reply_mem *m, char *err,
                     size_t errlen)
{
    m->nev = 0;
    wh_buf_reset(&m->data);
    return st_db_read(s->db, tenant, lsn, seq, max_events, max_bytes, collect_event, m, NULL, err,
                      errlen);
}

static void do_read(st_server *s, const Walhook__ReadRequest *r, Walhook__Reply *rep,
                    st_reply_mem *m)
{
    char err[WH_ERRLEN];
    if (r == NULL) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", "read: missing");
        return;
    }
    if (st_db_check_name(r->tenant, "tenant", err, sizeof(err)) != WH_OK) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", err);
        return;
    }
    int have_consumer = r->consumer != NULL && r->consumer[0] != '\0';
    if (!r->has_from || have_consumer) {
        if (st_db_check_name(r->consumer, "consumer", err, sizeof(err)) != WH_OK) {
            wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", err);
            return;
        }
    }
    uint64_t c_lsn = 0, c_epoch = 0;
    uint32_t c_seq = 0;
    /* A consumer seen for the first time is stored at (0,0) (so the GC
     * watermark waits for it); a dropped one reads nothing. */
    if (have_consumer) {
        st_offset off;
        if (st_db_register(s->db, r->tenant, r->consumer, &off, err, sizeof(err)) != WH_OK) {
            wh_reply_error(rep, ST_STATUS_INTERNAL, "%s", err);
            return;
        }
        c_lsn = off.lsn;
        c_seq = off.seq;
        c_epoch = off.epoch;
        if (off.dropped) {
            walhook__read_reply__init(&m->read);
            walhook__position__init(&m->committed);
            m->read.committed = &m->committed;
            m->read.epoch = c_epoch;
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

    int rc = read_once(s, r->tenant, f_lsn, f_seq, max_events, max_bytes, m, err, sizeof(err));
    if (rc == WH_OK && q && m->nev == 0) {
        struct timespec deadline;
        now_plus_ms_mono(&deadline, wait_ms);
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
            rc = read_once(s, r->tenant, f_lsn, f_seq, max_events, max_bytes, m, err, sizeof(err));
    }
    if (q) {
        pthread_mutex_lock(&s->wmu);
        s->nwaiting--;
        pthread_mutex_unlock(&s->wmu);
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
    walhook__read_reply__init(&m->read);
    walhook__position__init(&m->committed);
    m->committed.lsn = c_lsn;
    m->committed.seq = c_seq;
    m->read.n_events = m->nev;
    m->read.events = m->evp;
    m->read.committed = &m->committed;
    m->read.epoch = c_epoch;
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

static int check_names(Walhook__Reply *rep, const char *tenant, const char *consumer)
{
    char err[WH_ERRLEN];
    if (st_db_check_name(tenant, "tenant", err, sizeof(err)) != WH_OK ||
        (consumer != NULL && st_db_check_name(consumer, "consumer", err, sizeof(err)) != WH_OK)) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", err);
        return WH_ERR;
    }
    return WH_OK;
}

static void do_commit(st_server *s, const Walhook__CommitOffset *c, Walhook__Reply *rep,
                      st_reply_mem *m)
{
    char err[WH_ERRLEN];
    if (c == NULL) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", "commit: missing");
        return;
    }
    if (st_db_check_name(c->tenant, "tenant", err, sizeof(err)) != WH_OK ||
        st_db_check_name(c->consumer, "consumer", err, sizeof(err)) != WH_OK) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", err);
        return;
    }
    if (c->pos == NULL) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", "pos: missing");
        return;
    }
    st_offset now;
    int rc = st_db_commit_epoch(s->db, c->tenant, c->consumer, c->pos->lsn, c->pos->seq, c->epoch,
                                &now, err, sizeof(err));
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
    if (g == NULL) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", "get_offset: missing");
        return;
    }
    if (st_db_check_name(g->tenant, "tenant", err, sizeof(err)) != WH_OK ||
        st_db_check_name(g->consumer, "consumer", err, sizeof(err)) != WH_OK) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", err);
        return;
    }
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
    if (so == NULL) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", "set_offset: missing");
        return;
    }
    if (check_names(rep, so->tenant, so->consumer) != WH_OK)
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
    if (st_db_set_offset(s->db, so->tenant, so->consumer, lsn, seq, &prev, &now, err,
                         sizeof(err)) != WH_OK) {
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
    if (d == NULL) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", "drop_offset: missing");
        return;
    }
    if (check_names(rep, d->tenant, d->consumer) != WH_OK)
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
    if (t == NULL) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", "tenant_info: missing");
        return;
    }
    if (check_names(rep, t->tenant, NULL) != WH_OK)
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
    rep->body_case = WALHOOK__REPLY__BODY_TENANT_INFO;
    rep->tenant_info = &m->tinfo;
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
    if (st_state_get(s->state, known, &version, &m->data, err, sizeof(err)) != WH_OK) {
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
    if (p == NULL) {
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", "put_state: missing");
        return;
    }
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

/* wh_stats_fn: the store's own metrics (wh_stats_reply adds the process ones). */
static int store_metrics(void *arg, wh_buf *b, const char **state, int *ready)
{
    st_server *s = arg;
    int rc = 0;
    rc |= wh_metric_header(b, "walhook_events_stored_total", "counter",
                           "events appended (durable) since start");
    rc |= wh_metric_u64(b, "walhook_events_stored_total", "", wh_counter_get(&s->events_stored));
    rc |= wh_metric_header(b, "walhook_store_appends_total", "counter",
                           "append batches made durable since start");
    rc |= wh_metric_u64(b, "walhook_store_appends_total", "", wh_counter_get(&s->appends));
    rc |= wh_metric_header(b, "walhook_store_reads_total", "counter",
                           "read requests served since start");
    rc |= wh_metric_u64(b, "walhook_store_reads_total", "", wh_counter_get(&s->reads));
    rc |= wh_metric_header(b, "walhook_store_gc_dropped_total", "counter",
                           "events dropped below the GC watermark since start");
    rc |= wh_metric_u64(b, "walhook_store_gc_dropped_total", "", st_db_gc_dropped(s->db));
    if (s->state != NULL) {
        rc |= wh_metric_header(b, "walhook_state_version", "gauge",
                               "version of the runtime state document in the store");
        rc |= wh_metric_u64(b, "walhook_state_version", "", st_state_version(s->state));
    }
    return rc == 0 ? WH_OK : WH_ERR;
}

static void do_stats(st_server *s, Walhook__Reply *rep, st_reply_mem *m)
{
    wh_stats_reply(rep, &m->stats, "store", store_metrics, s);
}

/* ---- dispatch ---- */

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
    default:
        wh_reply_error(rep, ST_STATUS_BAD_REQUEST, "%s", "body: empty or unknown request type");
        break;
    }
}

void st_server_done(void *arg, Walhook__Reply *rep, void *cookie)
{
    WH_UNUSED(arg);
    WH_UNUSED(rep);
    st_reply_mem *m = cookie;
    if (m == NULL)
        return;
    wh_stats_reply_free(m->stats);
    wh_buf_free(&m->data);
    free(m->evs);
    free(m->evp);
    free(m->json_off);
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
    s->max_msg = max_msg > 0 ? max_msg : 64u * 1024 * 1024;
    pthread_mutex_init(&s->wmu, NULL);
    *out = s;
    return WH_OK;
}

void st_server_set_state(st_server *s, st_state *st)
{
    s->state = st;
}

int st_server_listen(st_server *s, const char *url, char *err, size_t errlen)
{
    if (s->nng)
        return wh_seterr(err, errlen, "store: already listening");
    return wh_server_start(&s->nng, url, s->workers, s->max_msg, st_server_handle, st_server_done,
                           s, err, errlen);
}

void st_server_stop(st_server *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->wmu);
    s->stopping = 1;
    for (st_waitq *q = s->waitq; q; q = q->next)
        pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&s->wmu);
    if (s->nng) {
        wh_server_stop(s->nng); /* closes the socket, joins the workers */
        s->nng = NULL;
    }
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
    pthread_mutex_destroy(&s->wmu);
    free(s);
}
