/* dsp_target: store reader thread + per-target HTTP state machine. */
#include "dsp_target.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dsp_lane.h"
#include "dsp_ssrf.h"
#include "dsp_zone.h"
#include "wh_budget.h"
#include "wh_dsn.h"
#include "wh_lsn.h"
#include "wh_lattrace.h"
#include "wh_util.h"

#define DSP_WARN_EVERY_MS 10000    /* repeated failure warnings per target */
#define DSP_DLQ_LOG_EVERY_MS 10000 /* dead-letter summaries per target */
#define DSP_STOP_COMMIT_TRIES 3
#define DSP_STOP_COMMIT_WAIT_MS 1000  /* a stop waits this long for the last commit */
#define DSP_RESET_COMMIT_WAIT_MS 1000 /* a reset's first Read waits for a held-back commit */

static void lanes_leave(dsp_target *t);
static void lane_free(dsp_lanereq *ln);

void dsp_settings_clamp(dsp_settings *s)
{
    if (s->ipc_timeout_ms <= 0)
        s->ipc_timeout_ms = 5000;
    if (s->batch_max_events == 0)
        s->batch_max_events = 1;
    uint64_t mb = s->batch_max_bytes > 0 ? s->batch_max_bytes : 1;
    /* a Read reply must fit in one IPC message, with room for framing */
    if (s->ipc_max_msg > 0 && mb + 65536 > s->ipc_max_msg)
        mb = s->ipc_max_msg > 131072 ? s->ipc_max_msg - 65536 : s->ipc_max_msg / 2;
    s->batch_max_bytes = (uint32_t)mb;
    /* long poll shorter than the IPC timeout */
    s->read_wait_ms = 200;
    if ((int)s->read_wait_ms > s->ipc_timeout_ms / 2)
        s->read_wait_ms = (uint32_t)(s->ipc_timeout_ms / 2);
    if (s->retry_base_ms <= 0)
        s->retry_base_ms = 1;
    if (s->retry_max_ms < s->retry_base_ms)
        s->retry_max_ms = s->retry_base_ms;
    if (s->http_timeout_ms <= 0)
        s->http_timeout_ms = 10000;
}

void dsp_settings_from_config(dsp_settings *s, const wh_config *c)
{
    memset(s, 0, sizeof(*s));
    wh_strlcpy(s->tenant, c->tenant, sizeof(s->tenant));
    wh_strlcpy(s->store_endpoint, c->store_endpoint, sizeof(s->store_endpoint));
    s->ipc_timeout_ms = c->ipc_timeout_ms;
    s->ipc_max_msg = c->ipc_max_msg_bytes > 0 ? (size_t)c->ipc_max_msg_bytes : 0;
    s->batch_max_events = c->batch_max_events > 0 ? (uint32_t)c->batch_max_events : 1;
    int64_t mb = c->batch_max_bytes > 0 ? c->batch_max_bytes : 1;
    s->batch_max_bytes = mb > UINT32_MAX ? UINT32_MAX : (uint32_t)mb;
    s->retry_base_ms = c->retry_base_ms;
    s->retry_max_ms = c->retry_max_ms;
    s->http_timeout_ms = c->http_timeout_ms;
    s->commit_interval_ms = c->commit_interval_ms;
    wh_strlcpy(s->allow_global, c->allow_private_networks, sizeof(s->allow_global));
    wh_strlcpy(s->ca_file, c->dispatcher_ca_file, sizeof(s->ca_file));
    wh_dsn_dbname(c->source_dsn, s->db, sizeof(s->db));
    dsp_settings_clamp(s);
}

int dsp_spec_changed(const dsp_spec *a, const dsp_spec *b)
{
    if (strcmp(a->url, b->url) != 0 || a->nsecrets != b->nsecrets ||
        a->lease_epoch != b->lease_epoch)
        return 1;
    for (int i = 0; i < a->nsecrets; i++)
        if (strcmp(a->secrets[i], b->secrets[i]) != 0)
            return 1;
    const dsp_settings *x = &a->set, *y = &b->set;
    return x->batch_max_events != y->batch_max_events || x->batch_max_bytes != y->batch_max_bytes ||
           x->retry_base_ms != y->retry_base_ms || x->retry_max_ms != y->retry_max_ms ||
           x->http_timeout_ms != y->http_timeout_ms ||
           x->commit_interval_ms != y->commit_interval_ms ||
           strcmp(x->allow_global, y->allow_global) != 0 || strcmp(x->db, y->db) != 0 ||
           memcmp(&x->dl, &y->dl, sizeof(x->dl)) != 0;
}

/* ---- batches ---------------------------------------------------------- */

/* ---- formats ---------------------------------------------------------- */

int dsp_format_build(dsp_format *f, const wh_delivery *d, const char *db, char *err, size_t errlen)
{
    dsp_format nf;
    memset(&nf, 0, sizeof(nf));
    char env[sizeof(d->envelope)];
    wh_strlcpy(env, d->envelope[0] ? d->envelope : "native", sizeof(env));
    for (char *p = env; *p; p++)
        if (*p == '_')
            *p = '-';
    if (dsp_env_parse(env, &nf.env, err, errlen) != WH_OK)
        return WH_ERR;
    if (wh_filter_compile_lists(d->filter_tables, d->filter_ops, d->filter_columns_include,
                                d->filter_columns_exclude, d->filter_expr, &nf.filter, err,
                                errlen) != WH_OK)
        return WH_ERR;
    /* Debezium's PostgreSQL connector sends no schema events and has no op
     * for them: a Debezium target gets walhook's schema and ddl events only
     * when its operations name them */
    if (nf.env == DSP_ENV_DEBEZIUM) {
        nf.skip_meta |= wh_filter_names_op(nf.filter, "schema") ? 0 : DSP_SKIP_SCHEMA;
        nf.skip_meta |= wh_filter_names_op(nf.filter, "ddl") ? 0 : DSP_SKIP_DDL;
    }
    nf.render = nf.env != DSP_ENV_NATIVE || wh_filter_has_columns(nf.filter);
    nf.single = nf.env == DSP_ENV_CLOUDEVENTS_BINARY;
    wh_strlcpy(nf.db, db ? db : "", sizeof(nf.db));
    dsp_format_free(f);
    *f = nf;
    return WH_OK;
}

void dsp_format_free(dsp_format *f)
{
    wh_filter_free(f->filter);
    memset(f, 0, sizeof(*f));
}

int dsp_batch_fill(dsp_batch *b, const char *tenant, Walhook__Event *const *events, size_t n,
                   int has_after, uint64_t after_lsn, uint32_t after_seq)
{
    int r = dsp_batch_fill_fmt(b, tenant, events, n, has_after, after_lsn, after_seq, NULL, NULL);
    return r < 0 ? r : (int)b->n;
}

int dsp_batch_fill_fmt(dsp_batch *b, const char *tenant, Walhook__Event *const *events, size_t n,
                       int has_after, uint64_t after_lsn, uint32_t after_seq, const dsp_format *fmt,
                       uint64_t *filtered)
{
    return dsp_batch_fill_ex(b, tenant, events, n, has_after, after_lsn, after_seq, fmt, filtered,
                             0);
}

/* Grows the per-event arrays of b to n entries. */
static int batch_reserve(dsp_batch *b, size_t n)
{
    if (n <= b->ts_cap)
        return WH_OK;
    int64_t *p = realloc(b->commit_ts, n * sizeof(*p));
    if (p == NULL)
        return WH_ERR;
    b->commit_ts = p;
    uint32_t *o = realloc(b->ev_off, n * sizeof(*o));
    if (o == NULL)
        return WH_ERR;
    b->ev_off = o;
    uint32_t *l = realloc(b->ev_len, n * sizeof(*l));
    if (l == NULL)
        return WH_ERR;
    b->ev_len = l;
    uint64_t *ls = realloc(b->ev_lsn, n * sizeof(*ls));
    if (ls == NULL)
        return WH_ERR;
    b->ev_lsn = ls;
    uint32_t *sq = realloc(b->ev_seq, n * sizeof(*sq));
    if (sq == NULL)
        return WH_ERR;
    b->ev_seq = sq;
    const void **pp = realloc(b->ptrs, n * sizeof(*pp));
    if (pp == NULL)
        return WH_ERR;
    b->ptrs = pp;
    size_t *pl = realloc(b->plens, n * sizeof(*pl));
    if (pl == NULL)
        return WH_ERR;
    b->plens = pl;
    b->ts_cap = n;
    return WH_OK;
}

/* 1 when the event is a schema or ddl event that skip (DSP_SKIP_*) names;
 * builds ix when the filter did not (the envelope then reuses it). */
static int skipped_meta(unsigned skip, const char *json, size_t len, wh_evidx *ix)
{
    if (ix->state == WH_EVX_NONE)
        wh_evidx_build(json, len, ix);
    wh_json_span op;
    if (wh_evidx_get(ix, json, WH_EV_OP, &op) != WH_OK)
        return 0;
    return ((skip & DSP_SKIP_SCHEMA) && wh_json_span_strcmp(&op, "schema", 6) == 0) ||
           ((skip & DSP_SKIP_DDL) && wh_json_span_strcmp(&op, "ddl", 3) == 0);
}

int dsp_batch_fill_ex(dsp_batch *b, const char *tenant, Walhook__Event *const *events, size_t n,
                      int has_after, uint64_t after_lsn, uint32_t after_seq, const dsp_format *fmt,
                      uint64_t *filtered, int borrow)
{
    if (batch_reserve(b, n) != WH_OK)
        return -1;
    const wh_filter *filter = fmt != NULL ? fmt->filter : NULL;
    const wh_filter *match = fmt != NULL && fmt->match_all ? NULL : filter;
    /* rendered: each event goes into the envelope right after the filter
     * passed it (its bytes still in the cache), walked once for both
     * (wh_evidx); the native bytes are copied into body only when the
     * events do not stay (borrow 0): they are what single mode, lanes and
     * dead letters use */
    int render = fmt != NULL && fmt->render && !fmt->single;
    int copy = !render || !borrow;
    char err[WH_ERRLEN];
    if (copy) {
        size_t total = 2;
        for (size_t i = 0; i < n; i++)
            total += events[i]->json.len + 1;
        if (dsp_body_begin(&b->body) != WH_OK || wh_buf_reserve(&b->body, total) != WH_OK)
            return -1;
    } else {
        wh_buf_reset(&b->body);
    }
    b->n = 0;
    b->scanned = 0;
    b->rendered = 0;
    b->nbytes = 2;
    if (render) {
        dsp_env_opts o;
        memset(&o, 0, sizeof(o));
        o.kind = fmt->env;
        o.db = fmt->db;
        o.columns = filter;
        if (dsp_env_begin(&b->rctx, &o, &b->wire, &b->env, err, sizeof(err)) != WH_OK) {
            wh_warn("tenant %s: rendering a batch failed: %s", tenant, err);
            return -1;
        }
    }
    uint64_t plsn = after_lsn;
    uint32_t pseq = after_seq;
    int have_prev = has_after;
    for (size_t i = 0; i < n; i++) {
        const Walhook__Event *e = events[i];
        /* defensive: keep strictly increasing positions only */
        if (have_prev && wh_pos_cmp(e->commit_lsn, e->seq, plsn, pseq) <= 0)
            continue;
        if (e->json.len == 0 || e->json.data == NULL)
            continue;
        plsn = e->commit_lsn;
        pseq = e->seq;
        have_prev = 1;
        b->scanned++;
        const char *json = (const char *)e->json.data;
        if (render) {
            wh_evidx ix;
            /* replayed dead letters (match_all) all go, whatever they are */
            if (!wh_filter_match_ix(match, json, e->json.len, &ix) ||
                (fmt->skip_meta && !fmt->match_all &&
                 skipped_meta(fmt->skip_meta, json, e->json.len, &ix))) {
                if (filtered != NULL)
                    (*filtered)++;
                continue; /* committed past with the batch, never posted */
            }
            if (dsp_env_add(&b->rctx, json, e->json.len, &ix, err, sizeof(err)) != WH_OK) {
                wh_warn("tenant %s: rendering a batch failed: %s", tenant, err);
                return -1;
            }
        } else if (match != NULL && !wh_filter_match(match, json, e->json.len)) {
            if (filtered != NULL)
                (*filtered)++;
            continue;
        }
        if (copy) {
            if (dsp_body_add(&b->body, b->n, e->json.data, e->json.len) != WH_OK)
                return -1;
            b->ev_off[b->n] = (uint32_t)(b->body.len - e->json.len);
            b->ptrs[b->n] = b->body.data + b->ev_off[b->n];
        } else {
            b->ev_off[b->n] = 0;
            b->ptrs[b->n] = json;
        }
        b->plens[b->n] = e->json.len;
        b->nbytes += e->json.len + (b->n > 0);
        b->ev_len[b->n] = (uint32_t)e->json.len;
        b->ev_lsn[b->n] = e->commit_lsn;
        b->ev_seq[b->n] = e->seq;
        b->commit_ts[b->n++] = e->commit_ts_us;
    }
    if (copy) {
        const char *at = b->body.data; /* the body was reserved whole: it did not move */
        if (dsp_body_end(&b->body) != WH_OK)
            return -1;
        for (size_t i = 0; b->body.data != at && i < b->n; i++)
            b->ptrs[i] = b->body.data + b->ev_off[i];
    }
    if (b->scanned == 0)
        return 0;
    b->last_lsn = plsn;
    b->last_seq = pseq;
    b->id[0] = '\0';
    if (b->n == 0)
        return (int)b->scanned; /* only filtered events: a skip batch */
    if (wh_event_id(tenant, b->ev_lsn[b->n - 1], b->ev_seq[b->n - 1], b->id, sizeof(b->id)) < 0)
        return -1;
    if (render) {
        if (dsp_env_end(&b->rctx, err, sizeof(err)) != WH_OK) {
            wh_warn("tenant %s: rendering a batch failed: %s", tenant, err);
            return -1;
        }
        b->rendered = 1;
    }
    return (int)b->scanned;
}

void dsp_batch_free(dsp_batch *b)
{
    wh_buf_free(&b->body);
    free(b->commit_ts);
    free(b->ev_off);
    free(b->ev_len);
    free(b->ev_lsn);
    free(b->ev_seq);
    free(b->ptrs);
    free(b->plens);
    b->ptrs = NULL;
    b->plens = NULL;
    wh_buf_free(&b->wire);
    dsp_env_ctx_free(&b->rctx);
    b->ev_off = b->ev_len = b->ev_seq = NULL;
    b->ev_lsn = NULL;
    b->commit_ts = NULL;
    b->ts_cap = 0;
    b->n = 0;
    wh_kept_free(b->held);
    b->held = NULL;
}

int dsp_retry_delay_ms(int attempt, int base_ms, int max_ms)
{
    int d = wh_backoff_ms(attempt > 0 ? attempt - 1 : 0, base_ms, max_ms);
    return d < 1 ? 1 : d;
}

int dsp_next_delay_ms(const char *ra, int attempt, int base_ms, int max_ms, int64_t now_s)
{
    int64_t ms;
    if (ra != NULL && dsp_retry_after_parse(ra, strlen(ra), now_s, &ms) == WH_OK) {
        if (ms > DSP_RETRY_AFTER_MAX_MS)
            ms = DSP_RETRY_AFTER_MAX_MS;
        /* "0" or a date in the past would mean a request loop the target
         * sets the pace of: the backoff's first cap is the floor */
        int floor_ms = base_ms < 1 ? 1 : base_ms;
        return ms < floor_ms ? floor_ms : (int)ms;
    }
    return dsp_retry_delay_ms(attempt, base_ms, max_ms);
}

/* WH_LAT_TRACE=1: one line per event at this hop (bench/latency.sh) */
static void lat_trace(const char *hop, const int64_t *ts, size_t n)
{
    if (!wh_lat_trace_on())
        return;
    for (size_t i = 0; i < n; i++)
        wh_lat_trace_add(hop, ts[i]);
    wh_lat_trace_flush();
}

/* Adds an event's commit -> 2xx time to acc (the latency histogram's
 * batch); an event without a commit time (a non-transactional message) is
 * not counted. */
static void lat_observe(wh_hist_acc *acc, int64_t now_wall, int64_t commit_ts)
{
    if (commit_ts == 0)
        return;
    int64_t d = now_wall - commit_ts;
    wh_hist_acc_add(acc, d > 0 ? (uint64_t)d : 0);
}

/* ---- reader thread ---------------------------------------------------- */

/* A batch that has room for more events (count and bytes). */
static int batch_partial(const dsp_batch *b, uint32_t max_events, uint32_t max_bytes)
{
    return b->scanned < max_events && b->nbytes + b->nbytes / (b->scanned + 1) < max_bytes;
}

/* Waits on cv (the reader's t->cv or the committer's t->ccv) up to ms
 * unless stop is set. Called with mu held. */
static void timed_wait_on(dsp_target *t, pthread_cond_t *cv, int ms)
{
    struct timespec ts;
    wh_deadline_in(&ts, CLOCK_REALTIME, ms);
    if (!t->stop)
        pthread_cond_timedwait(cv, &t->mu, &ts);
}

static void timed_wait_locked(dsp_target *t, int ms)
{
    timed_wait_on(t, &t->cv, ms);
}

/* The wait before a store write refused or failed is sent again: delay,
 * or the store's retry_after_ms when it refused the write for its disk
 * (rc 429: its writes wait for a WAL sync; nothing was stored). */
static int store_retry_ms(wh_client *c, int rc, int delay)
{
    int ra = rc == 429 ? wh_client_retry_wait_ms(c, 0) : 0;
    return ra > delay ? ra : delay;
}

/* WH_OK, WH_ERR, 409 when the store refused a stale epoch, or 429 when it
 * refused the commit for now (its writes wait for the disk; the offset did
 * not move). */
static int do_commit(dsp_target *t, wh_client *c, uint64_t lsn, uint32_t seq, uint64_t epoch,
                     char *err, size_t errlen)
{
    Walhook__Position pos = WALHOOK__POSITION__INIT;
    pos.lsn = lsn;
    pos.seq = seq;
    Walhook__CommitOffset co = WALHOOK__COMMIT_OFFSET__INIT;
    co.tenant = t->set.tenant;
    co.consumer = t->name;
    co.pos = &pos;
    co.epoch = epoch;
    co.lease_epoch = t->lease_epoch;
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    req.body_case = WALHOOK__REQUEST__BODY_COMMIT;
    req.commit = &co;
    Walhook__Reply *rep = NULL;
    int status = 0;
    if (wh_client_call_status(c, &req, &rep, &status, err, errlen) != WH_OK)
        return status == 409 || status == 429 ? status : WH_ERR;
    int ok = rep->body_case == WALHOOK__REPLY__BODY_OFFSET && rep->offset != NULL;
    walhook__reply__free_unpacked(rep, NULL);
    if (!ok)
        return wh_seterr(err, errlen, "store replied to CommitOffset without an offset body");
    wh_gauge_set(&t->committed_lsn, (int64_t)lsn);
    return WH_OK;
}

/* 1 when batches of f are rendered from the Read reply's own events
 * (dsp_batch_fill_ex's borrow): the slot keeps the reply instead of a copy
 * of the native events. */
static int fmt_borrows(const dsp_format *f)
{
    return f->render && !f->single;
}

/* The slot is filled again: what its last batch kept goes. */
static void slot_release(dsp_batch *slot)
{
    wh_kept_free(slot->held);
    slot->held = NULL;
}

/* Reads one batch into the free slot. Returns events kept, 0, -1 (error),
 * -2 (the consumer's epoch changed: reset) or -3 (the store marked the
 * target NEEDS_SNAPSHOT: events it had not read may be gone, so nothing read
 * now is posted, which would hide a gap, until an operator or a snapshot
 * sets its offset). */
static int do_read(dsp_target *t, dsp_batch *slot, uint32_t max_events, uint32_t max_bytes,
                   uint32_t wait_ms, char *err, size_t errlen)
{
    Walhook__Position from = WALHOOK__POSITION__INIT;
    Walhook__ReadRequest rr = WALHOOK__READ_REQUEST__INIT;
    rr.tenant = t->set.tenant;
    rr.consumer = t->name;
    if (t->has_from) {
        from.lsn = t->from_lsn;
        from.seq = t->from_seq;
        rr.has_from = 1;
        rr.from = &from;
    }
    rr.max_events = max_events;
    rr.max_bytes = max_bytes;
    rr.wait_ms = wait_ms;
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    req.body_case = WALHOOK__REQUEST__BODY_READ;
    req.read = &rr;
    wh_kept *k = NULL;
    int status;
    slot_release(slot);
    uint64_t zmark = dsp_zone_mark();
    if (wh_client_call_kept(t->store, &req, &k, &status, err, errlen) != WH_OK)
        return -1;
    Walhook__Reply *rep = wh_kept_reply(k);
    int kept = 0;
    slot->replay = 0;
    if (rep->body_case == WALHOOK__REPLY__BODY_READ && rep->read != NULL) {
        const Walhook__ReadReply *rd = rep->read;
        /* the store's committed offset is the truth after a restart, before
         * this process committed anything itself */
        if (rd->committed != NULL && (int64_t)rd->committed->lsn > wh_gauge_get(&t->committed_lsn))
            wh_gauge_set(&t->committed_lsn, (int64_t)rd->committed->lsn);
        /* without an explicit `from` the store started after the committed
         * offset: nothing at or before it may be posted */
        int has_after = t->has_from;
        uint64_t alsn = t->from_lsn;
        uint32_t aseq = t->from_seq;
        if (!has_after && rd->committed != NULL &&
            (rd->committed->lsn != 0 || rd->committed->seq != 0)) {
            has_after = 1;
            alsn = rd->committed->lsn;
            aseq = rd->committed->seq;
        }
        if (t->has_epoch && rd->epoch != t->epoch) {
            /* the offset was moved (SetOffset) since the last read */
            wh_kept_free(k);
            return -2;
        }
        t->has_epoch = 1;
        t->epoch = rd->epoch;
        t->moves = rd->moves;
        slot->epoch = rd->epoch;
        dsp_zone_set(t->set.tenant, rd->zone, zmark);
        if (rd->needs_snapshot) {
            wh_kept_free(k);
            return -3;
        }
        uint64_t filtered = 0;
        int borrow = fmt_borrows(&t->rfmt);
        kept = dsp_batch_fill_ex(slot, t->set.tenant, rd->events, rd->n_events, has_after, alsn,
                                 aseq, &t->rfmt, &filtered, borrow);
        if (filtered > 0)
            wh_counter_add(&t->filtered, filtered);
        if (kept < 0) {
            wh_seterr(err, errlen, "out of memory or a malformed event building a batch");
        } else if (kept > 0) {
            t->has_from = 1;
            t->from_lsn = slot->last_lsn;
            t->from_seq = slot->last_seq;
            if (borrow && slot->n > 0) {
                slot->held = k; /* the batch points at its events */
                return kept;
            }
        }
    } else {
        wh_seterr(err, errlen, "store replied to Read without a read body");
        kept = -1;
    }
    wh_kept_free(k);
    return kept;
}

/* Reads the replay queue (dead letters an operator replays) into slot.
 * Returns events kept, 0 (empty), -1. */
static int do_replay_read(dsp_target *t, dsp_batch *slot, uint32_t max_events, uint32_t max_bytes,
                          char *err, size_t errlen)
{
    Walhook__ReplayRead rr = WALHOOK__REPLAY_READ__INIT;
    rr.tenant = t->set.tenant;
    rr.consumer = t->name;
    rr.max_events = max_events;
    rr.max_bytes = max_bytes;
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    req.body_case = WALHOOK__REQUEST__BODY_REPLAY_READ;
    req.replay_read = &rr;
    wh_kept *k = NULL;
    int status;
    slot_release(slot);
    if (wh_client_call_kept(t->store, &req, &k, &status, err, errlen) != WH_OK)
        return -1;
    Walhook__Reply *rep = wh_kept_reply(k);
    int kept = 0;
    if (rep->body_case == WALHOOK__REPLY__BODY_READ && rep->read != NULL) {
        slot->epoch = rep->read->epoch;
        uint64_t filtered = 0;
        int borrow = fmt_borrows(&t->rfmt);
        /* the operator asked for these dead letters again: the target's
         * filter does not drop them (the replay would delete them from the
         * queue undelivered); the envelope and column lists apply */
        dsp_format rf = t->rfmt;
        rf.match_all = 1;
        kept = dsp_batch_fill_ex(slot, t->set.tenant, rep->read->events, rep->read->n_events, 0, 0,
                                 0, &rf, &filtered, borrow);
        if (kept < 0)
            wh_seterr(err, errlen, "out of memory or a malformed event building a replay batch");
        slot->replay = 1;
        slot->replay_gen = rep->read->replay_gen;
        if (kept > 0 && borrow && slot->n > 0) {
            slot->held = k; /* the batch points at its events */
            return kept;
        }
    } else {
        wh_seterr(err, errlen, "store replied to ReplayRead without a read body");
        kept = -1;
    }
    wh_kept_free(k);
    return kept;
}

static int do_replay_ack(dsp_target *t, uint64_t lsn, uint32_t seq, uint64_t gen, char *err,
                         size_t errlen)
{
    Walhook__Position pos = WALHOOK__POSITION__INIT;
    pos.lsn = lsn;
    pos.seq = seq;
    Walhook__ReplayAck ra = WALHOOK__REPLAY_ACK__INIT;
    ra.tenant = t->set.tenant;
    ra.consumer = t->name;
    ra.upto = &pos;
    ra.lease_epoch = atomic_load(&t->lease_epoch);
    ra.replay_gen = gen;
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    req.body_case = WALHOOK__REQUEST__BODY_REPLAY_ACK;
    req.replay_ack = &ra;
    Walhook__Reply *rep = NULL;
    if (wh_client_call(t->store, &req, &rep, err, errlen) != WH_OK)
        return WH_ERR;
    walhook__reply__free_unpacked(rep, NULL);
    return WH_OK;
}

/* Called with mu held: asks the loop for a reset (the offset moved). */
static void request_reset_locked(dsp_target *t)
{
    t->reset_req = 1;
    t->commit_pending = 0; /* read with an older epoch: refused anyway */
    pthread_mutex_unlock(&t->mu);
    if (t->notify)
        t->notify(t->notify_arg);
    pthread_mutex_lock(&t->mu);
}

/* ---- pushed events (dsp_push) ---- */

static atomic_uint_fast64_t push_batches; /* dsp_push_batches */
static atomic_uint_fast64_t push_fast;    /* dsp_push_fast */
static atomic_size_t push_held;           /* bytes of live pushes, every target */

uint64_t dsp_push_batches(void)
{
    return atomic_load(&push_batches);
}

uint64_t dsp_push_fast(void)
{
    return atomic_load(&push_fast);
}

dsp_push *dsp_push_new(wh_note *note, size_t bytes)
{
    if (note->push == NULL)
        return NULL;
    if (atomic_fetch_add(&push_held, bytes) + bytes > WH_BUDGET_DSP_PUSH_BYTES) {
        atomic_fetch_sub(&push_held, bytes);
        return NULL; /* slow readers hold enough: the others Read */
    }
    dsp_push *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        atomic_fetch_sub(&push_held, bytes);
        return NULL;
    }
    atomic_init(&p->refs, 1);
    p->bytes = bytes;
    p->note = *note;
    note->push = NULL;
    return p;
}

void dsp_push_unref(dsp_push *p)
{
    if (p == NULL || atomic_fetch_sub(&p->refs, 1) != 1)
        return;
    atomic_fetch_sub(&push_held, p->bytes);
    wh_note_free(&p->note);
    free(p);
}

/* Called with mu held: drops the oldest kept push. */
static void push_drop_first(dsp_target *t)
{
    t->push_bytes -= t->push[0]->bytes;
    dsp_push_unref(t->push[0]);
    memmove(&t->push[0], &t->push[1], (size_t)(t->npush - 1) * sizeof(t->push[0]));
    t->push[--t->npush] = NULL;
}

/* Called with mu held (released while the batch is built, held again on
 * return). Takes the pushed events right after the reader's position into
 * slot, as a Read would have returned them: only while the reader knows its
 * position, epoch and the store's offset-move count from a Read since the
 * last reset, the target is not NEEDS_SNAPSHOT, and the pushes are
 * contiguous from its position (each push holds every event of the tenant
 * in (prev, its last]). Returns what do_read returns for events taken (> 0),
 * or 0: nothing usable (the caller Reads). *tail_note: the notification
 * count when the batch reached the latest notified position (the reader may
 * then wait for the next notification, as after an empty Read), else 0. */
static int push_take(dsp_target *t, dsp_batch *slot, uint32_t max_events, uint32_t max_bytes,
                     uint64_t *tail_note)
{
    *tail_note = 0;
    /* pushes the reader has passed are of no more use */
    while (t->npush > 0) {
        const Walhook__DurableNote *dn = t->push[0]->note.push;
        const Walhook__Event *l = dn->events[dn->n_events - 1];
        if (t->has_from && wh_pos_cmp(l->commit_lsn, l->seq, t->from_lsn, t->from_seq) > 0 &&
            (!t->has_epoch || dn->moves == t->moves))
            break;
        push_drop_first(t);
    }
    if (t->npush == 0 || !t->has_from || !t->has_epoch || atomic_load(&t->needs_snapshot_pub) ||
        max_events == 0)
        return 0;
    uint64_t cl = t->from_lsn;
    uint32_t cs = t->from_seq;
    size_t n = 0, bytes = 0;
    int used = 0, full = 0;
    for (int i = 0; i < t->npush && !full; i++) {
        const Walhook__DurableNote *dn = t->push[i]->note.push;
        if (dn->moves != t->moves)
            break; /* an offset moved since the last Read */
        size_t k = 0;
        if (wh_pos_cmp(dn->prev->lsn, dn->prev->seq, cl, cs) != 0) {
            /* the position may be inside this push (a partial batch) */
            while (k < dn->n_events &&
                   wh_pos_cmp(dn->events[k]->commit_lsn, dn->events[k]->seq, cl, cs) < 0)
                k++;
            if (k == dn->n_events ||
                wh_pos_cmp(dn->events[k]->commit_lsn, dn->events[k]->seq, cl, cs) != 0)
                break; /* a gap: read */
            k++;
        }
        if (k == dn->n_events)
            continue;
        if (n + (dn->n_events - k) > t->pevs_cap) {
            size_t cap = t->pevs_cap ? t->pevs_cap : 64;
            while (cap < n + (dn->n_events - k))
                cap *= 2;
            Walhook__Event **pe = realloc(t->pevs, cap * sizeof(*pe));
            if (pe == NULL)
                return 0;
            t->pevs = pe;
            t->pevs_cap = cap;
        }
        for (; k < dn->n_events; k++) {
            Walhook__Event *e = dn->events[k];
            if (n >= max_events || (n > 0 && bytes + e->json.len > max_bytes)) {
                full = 1;
                break;
            }
            t->pevs[n++] = e;
            bytes += e->json.len;
            cl = e->commit_lsn;
            cs = e->seq;
        }
        used = i + 1;
    }
    if (n == 0)
        return 0;
    uint64_t at_note = 0;
    if (!full && wh_pos_cmp(cl, cs, t->note_lsn, t->note_seq) >= 0)
        at_note = t->note_gen;
    /* the events stay valid while the pushes they are in are referenced */
    dsp_push *refs[DSP_PUSH_RING];
    for (int i = 0; i < used; i++) {
        refs[i] = t->push[i];
        atomic_fetch_add(&refs[i]->refs, 1);
    }
    uint64_t alsn = t->from_lsn;
    uint32_t aseq = t->from_seq;
    uint64_t epoch = t->epoch;
    pthread_mutex_unlock(&t->mu);
    uint64_t filtered = 0;
    slot->replay = 0;
    slot->epoch = epoch;
    slot_release(slot);
    /* pushed events go when their pushes do: copied (borrow 0) */
    int kept =
        dsp_batch_fill_fmt(slot, t->set.tenant, t->pevs, n, 1, alsn, aseq, &t->rfmt, &filtered);
    if (filtered > 0)
        wh_counter_add(&t->filtered, filtered);
    if (kept > 0)
        lat_trace("dsp_read", slot->commit_ts, slot->n);
    for (int i = 0; i < used; i++)
        dsp_push_unref(refs[i]);
    pthread_mutex_lock(&t->mu);
    if (kept <= 0)
        return 0; /* out of memory or rendering: a Read does the same again */
    atomic_fetch_add(&push_batches, 1);
    t->has_from = 1;
    t->from_lsn = slot->last_lsn;
    t->from_seq = slot->last_seq;
    *tail_note = at_note;
    return kept;
}

/* Called with mu held (released meanwhile): the next batch, from pushed
 * events when they fit the reader's position (push_take), else a Read. */
static int next_read(dsp_target *t, dsp_batch *slot, uint32_t max_events, uint32_t max_bytes,
                     uint32_t wait_ms, int live, uint64_t *tail_note, char *err, size_t errlen)
{
    *tail_note = 0;
    int kept = live ? push_take(t, slot, max_events, max_bytes, tail_note) : 0;
    if (kept > 0)
        return kept;
    pthread_mutex_unlock(&t->mu);
    kept = do_read(t, slot, max_events, max_bytes, wait_ms, err, errlen);
    if (kept > 0)
        lat_trace("dsp_read", slot->commit_ts, slot->n);
    pthread_mutex_lock(&t->mu);
    return kept;
}

/* The committer thread: sends the latest CommitOffset the loop asked for
 * (commit_pending), with its own store client, so that the reader is free
 * to take the next batch while a commit syncs. At most one commit per
 * set.commit_interval_ms: the positions acknowledged meanwhile go in the
 * next one (at a few thousand requests a second a commit per request was
 * two IPC round trips and four thread wake-ups each, for a position the
 * next commit overwrites). At a stop it sends a pending commit at once
 * (bounded tries). */
static void *committer_main(void *arg)
{
    dsp_target *t = arg;
    char err[WH_ERRLEN];
    int commit_fail = 0, stop_tries = 0;
    uint64_t last_warn = 0, last_sent = 0;
    pthread_mutex_lock(&t->mu);
    for (;;) {
        while (!t->stop && !t->commit_pending)
            pthread_cond_wait(&t->ccv, &t->mu);
        if (!t->commit_pending)
            break; /* stopping, nothing to send */
        uint64_t now = wh_now_ms(),
                 iv = (uint64_t)(t->set.commit_interval_ms > 0 ? t->set.commit_interval_ms : 0);
        if (!t->stop && !t->commit_now && last_sent != 0 && now < last_sent + iv) {
            /* advance() does not wake it for each newer position meanwhile */
            t->commit_sleep = 1;
            timed_wait_on(t, &t->ccv, (int)(last_sent + iv - now));
            t->commit_sleep = 0;
            continue;
        }
        last_sent = now;
        if (t->commit_pending) {
            uint64_t lsn = t->commit_lsn;
            uint32_t seq = t->commit_seq;
            uint64_t epoch = t->commit_epoch;
            t->commit_pending = 0;
            t->commit_now = 0;
            t->commit_busy = 1;
            pthread_mutex_unlock(&t->mu);
            int rc = do_commit(t, t->cstore, lsn, seq, epoch, err, sizeof(err));
            pthread_mutex_lock(&t->mu);
            t->commit_busy = 0;
            /* a reader after a reset, or a stop, may wait for it */
            pthread_cond_broadcast(&t->cv);
            pthread_cond_broadcast(&t->ccv);
            if (rc == WH_OK) {
                commit_fail = 0;
                continue;
            }
            if (rc == 409) {
                wh_info("target %s/%s: the offset was moved; reading again from it", t->set.tenant,
                        t->name);
                commit_fail = 0;
                if (!t->stop)
                    request_reset_locked(t);
                continue;
            }
            /* put it back unless a newer position arrived meanwhile */
            if (!t->commit_pending || wh_pos_cmp(lsn, seq, t->commit_lsn, t->commit_seq) > 0) {
                t->commit_lsn = lsn;
                t->commit_seq = seq;
                t->commit_epoch = epoch;
            }
            t->commit_pending = 1;
            commit_fail++;
            uint64_t now = wh_now_ms();
            if (commit_fail == 1 || now - last_warn >= DSP_WARN_EVERY_MS) {
                wh_warn("target %s/%s: CommitOffset failed (%s), attempt %d, retrying",
                        t->set.tenant, t->name, err, commit_fail);
                last_warn = now;
            }
            if (t->stop && ++stop_tries >= DSP_STOP_COMMIT_TRIES) {
                wh_warn("target %s/%s: giving up the last commit at shutdown; the batch will be "
                        "delivered again (same webhook-id)",
                        t->set.tenant, t->name);
                break;
            }
            timed_wait_on(t, &t->ccv,
                          store_retry_ms(t->cstore, rc, dsp_retry_delay_ms(commit_fail, 50, 2000)));
            continue;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* Called with mu held: the reader waits for the notification after
 * note_gen `note` before it reads again (t->ri_*). */
static void idle_from(dsp_target *t, uint64_t note)
{
    t->ri_idle = 1;
    t->ri_note = note;
    t->ri_gen = t->gen;
    t->ri_until = wh_now_ms() + DSP_NOTIFY_FALLBACK_MS;
}

/* Called with mu held after a batch was taken (count incremented) by the
 * reader or, from a push, as the notification arrived: tail_note as
 * next_read gives it. */
static void batch_taken(dsp_target *t, uint64_t tail_note, int live)
{
    if (tail_note == 0 && live && t->note_gen != 0 && t->note_lsn != UINT64_MAX && t->has_from &&
        wh_pos_cmp(t->from_lsn, t->from_seq, t->note_lsn, t->note_seq) >= 0)
        /* a Read up to the latest notified position: the same (no empty
         * Read after it; bench (d): 95 of 269 Reads were) */
        tail_note = t->note_gen;
    if (tail_note != 0)
        /* events up to the latest notification: the store has nothing
         * newer until the next one (no empty Read) */
        idle_from(t, tail_note);
}

/* Called with mu held by the thread that received the notification (the
 * delivery loop over the direct connection), after a push was kept
 * for t (dsp_target_note). When the reader waits idle for just this (its
 * target has nothing read ahead or in flight, nothing else is due), the
 * batch is taken from the push here and the loop is told, as the reader
 * would have done after waking up: one thread hand-off less per
 * notification (traced with bench/latency.sh at 3,000 events/s on 2 CPUs:
 * notification -> batch 0.08-0.14 ms at p50 instead of 0.14-0.24).
 * Anything else stays with the reader. Returns 1 when a batch was taken (the caller
 * tells the loop once mu is released). */
static int fast_take(dsp_target *t)
{
    if (!t->ridle || t->rbusy || t->count != 0 || t->stop || t->reset_req || t->dlq_pending ||
        t->ack_pending || t->gen != t->my_gen || t->fmt_gen != t->rfmt_gen ||
        t->push_bytes > DSP_PUSH_FAST_BYTES ||
        (!t->replay_inflight && wh_now_ms() >= t->next_replay_ms))
        return 0;
    dsp_batch *slot = &t->slots[t->head % DSP_PREFETCH];
    unsigned gen = t->gen;
    uint64_t tail_note = 0;
    t->rbusy = 1; /* the reader waits (push_take releases mu) */
    int kept = push_take(t, slot, t->set.batch_max_events, t->set.batch_max_bytes, &tail_note);
    t->rbusy = 0;
    if (kept <= 0 || t->gen != gen)
        return 0; /* the reader reads it (a reset meanwhile: it starts over) */
    t->count++;
    t->ri_idle = 0;
    batch_taken(t, tail_note, 1);
    atomic_fetch_add(&push_fast, 1);
    return 1;
}

static void *reader_main(void *arg)
{
    dsp_target *t = arg;
    char err[WH_ERRLEN];
    int read_fail = 0, commit_fail = 0;
    uint64_t last_warn = 0;
    /* idle (t->ri_*): the last Read found nothing while notifications
     * flow; the next one waits for a notification of the tenant (note_gen
     * moves), a reset (gen moves) or the fallback deadline */
    pthread_mutex_lock(&t->mu);
    t->ri_idle = 0;
    t->my_gen = t->gen;
    for (;;) {
        /* rbusy: the notification's receiver is taking a batch for it */
        while (t->rbusy || (!t->stop && !t->ack_pending && !(t->dlq_pending && !t->reset_req) &&
                            (t->count == DSP_PREFETCH || t->reset_req))) {
            t->rwait = 1;
            pthread_cond_wait(&t->cv, &t->mu);
            t->rwait = 0;
        }
        if (t->gen != t->my_gen) {
            /* the loop dropped what was read: read from the committed offset,
             * once a commit it held back (dsp_target_reset: commit_now) is
             * in (bounded: a store that does not answer costs at most a
             * redelivery) */
            t->my_gen = t->gen;
            t->has_from = 0;
            t->has_epoch = 0;
            t->replay_inflight = 0; /* a dropped replay batch is read again */
            t->ack_pending = 0;
            uint64_t until = wh_now_ms() + DSP_RESET_COMMIT_WAIT_MS;
            for (uint64_t now = wh_now_ms(); (t->commit_pending || t->commit_busy) && !t->stop &&
                                             t->gen == t->my_gen && now < until;
                 now = wh_now_ms())
                timed_wait_locked(t, (int)(until - now));
            continue;
        }
        if (t->ack_pending) {
            uint64_t lsn = t->ack_lsn;
            uint32_t seq = t->ack_seq;
            uint64_t gen = t->ack_gen;
            int fin = t->ack_final;
            t->ack_pending = 0;
            t->ack_final = 0;
            pthread_mutex_unlock(&t->mu);
            int rc = do_replay_ack(t, lsn, seq, gen, err, sizeof(err));
            pthread_mutex_lock(&t->mu);
            if (rc == WH_OK) {
                if (fin)
                    t->replay_inflight = 0;
                continue;
            }
            if (!t->ack_pending) {
                t->ack_pending = 1;
                t->ack_lsn = lsn;
                t->ack_seq = seq;
                t->ack_gen = gen;
            }
            t->ack_final |= fin;
            wh_warn("target %s/%s: ReplayAck failed (%s), retrying", t->set.tenant, t->name, err);
            if (t->stop)
                break;
            timed_wait_locked(t, 500);
            continue;
        }
        if (t->dlq_pending && !t->reset_req) {
            dsp_dlq_req r = t->dlq_req;
            unsigned gen = t->gen;
            pthread_mutex_unlock(&t->mu);
            int rc = dsp_dlq_write(t->store, &r, err, sizeof(err));
            pthread_mutex_lock(&t->mu);
            if (t->gen != gen || !t->dlq_pending)
                continue; /* reset meanwhile: the loop forgot it */
            if (rc == WH_OK) {
                t->dlq_pending = 0;
                t->dlq_done = 1;
                commit_fail = 0;
                if (r.n > 0)
                    wh_gauge_set(&t->committed_lsn, (int64_t)r.lsns[r.n - 1]);
                pthread_mutex_unlock(&t->mu);
                if (t->notify)
                    t->notify(t->notify_arg);
                pthread_mutex_lock(&t->mu);
                continue;
            }
            if (rc == 409) {
                wh_info("target %s/%s: the offset was moved; reading again from it", t->set.tenant,
                        t->name);
                t->dlq_pending = 0;
                if (!t->stop)
                    request_reset_locked(t);
                continue;
            }
            commit_fail++;
            uint64_t now = wh_now_ms();
            if (commit_fail == 1 || now - last_warn >= DSP_WARN_EVERY_MS) {
                wh_warn("target %s/%s: writing %zu dead letter(s) failed (%s), attempt %d, "
                        "retrying; the target waits",
                        t->set.tenant, t->name, r.n, err, commit_fail);
                last_warn = now;
            }
            if (t->stop)
                break;
            timed_wait_locked(
                t, store_retry_ms(t->store, rc, dsp_retry_delay_ms(commit_fail, 50, 2000)));
            continue;
        }
        if (t->stop)
            break;
        if (t->count == DSP_PREFETCH || t->reset_req)
            continue;
        dsp_batch *slot = &t->slots[(t->head + t->count) % DSP_PREFETCH];
        uint32_t max_events = t->set.batch_max_events; /* runtime settings: under mu */
        uint32_t max_bytes = t->set.batch_max_bytes;
        unsigned gen = t->gen;
        unsigned fgen = t->fmt_gen;
        if (fgen != t->rfmt_gen) {
            /* the format settings changed: the reader compiles its own copy */
            static __thread wh_delivery dl;
            static __thread char db[sizeof(t->set.db)];
            dl = t->set.dl;
            wh_strlcpy(db, t->set.db, sizeof(db));
            pthread_mutex_unlock(&t->mu);
            if (dsp_format_build(&t->rfmt, &dl, db, err, sizeof(err)) != WH_OK)
                wh_error("target %s/%s: %s; keeping the previous format", t->set.tenant, t->name,
                         err);
            pthread_mutex_lock(&t->mu);
            t->rfmt_gen = fgen;
            continue;
        }
        if (!t->replay_inflight && wh_now_ms() >= t->next_replay_ms) {
            /* dead letters an operator replays go before the main stream */
            pthread_mutex_unlock(&t->mu);
            int rk = do_replay_read(t, slot, max_events, max_bytes, err, sizeof(err));
            pthread_mutex_lock(&t->mu);
            if (t->gen != gen)
                continue;
            if (rk > 0) {
                wh_info("target %s/%s: delivering %zu replayed dead letter(s)", t->set.tenant,
                        t->name, slot->n);
                t->replay_inflight = 1;
                t->count++;
                pthread_mutex_unlock(&t->mu);
                if (t->notify)
                    t->notify(t->notify_arg);
                pthread_mutex_lock(&t->mu);
                continue;
            }
            t->next_replay_ms =
                wh_now_ms() + (wh_sub_connected(t->notify_sub) ? DSP_NOTIFY_FALLBACK_MS : 1000);
            continue;
        }
        int live = wh_sub_connected(t->notify_sub);
        if (t->ri_idle && live && t->note_gen == t->ri_note && t->gen == t->ri_gen) {
            uint64_t now = wh_now_ms(), until = t->ri_until;
            if (!t->replay_inflight && t->next_replay_ms < until)
                until = t->next_replay_ms;
            if (now < until) {
                t->ridle = 1;
                timed_wait_locked(t, (int)(until - now));
                t->ridle = 0;
                continue;
            }
        }
        t->ri_idle = 0;
        uint64_t note0 = t->note_gen;
        uint32_t wait_ms = live ? 0 : t->set.read_wait_ms;
        int age_ms =
            t->set.dl.batch_max_age_ms > 0 ? t->set.dl.batch_max_age_ms : DSP_BATCH_AGE_DEFAULT_MS;
        int has_from = t->has_from;
        uint64_t from_lsn = t->from_lsn;
        uint32_t from_seq = t->from_seq;
        /* The slot is invisible to the loop until count is incremented. */
        uint64_t t0 = wh_now_ms();
        uint64_t tail_note = 0;
        int kept =
            next_read(t, slot, max_events, max_bytes, wait_ms, live, &tail_note, err, sizeof(err));
        uint64_t took = wh_now_ms() - t0;
        if (t->gen != gen)
            continue; /* reset while reading: drop it */
        if (kept > 0 && t->count > 0 && batch_partial(slot, max_events, max_bytes)) {
            /* The micro-batcher: the target is busy (a request in flight or
             * queued), so this batch may grow until the loop needs it or it
             * is batch_max_age_ms old; then it is read again from the same
             * position (full or not), unless no notification came since the
             * read (the store has nothing more: no second Read). A target
             * with nothing in flight got what was ready at once (count == 0
             * above). Reading again at each notification instead would make
             * the batch ready without that Read, at one Read per append
             * (measured: reads per event doubled, the store's CPU with them). */
            uint64_t until = t0 + (uint64_t)age_ms;
            while (!t->stop && !t->reset_req && t->gen == gen && t->count > 0 && !t->dlq_pending &&
                   !t->ack_pending) {
                uint64_t now = wh_now_ms();
                if (now >= until)
                    break;
                t->rwait = 1;
                timed_wait_locked(t, (int)(until - now));
                t->rwait = 0;
            }
            if (t->gen != gen || t->stop)
                continue;
            if (!live || t->note_gen != note0) {
                t->has_from = has_from;
                t->from_lsn = from_lsn;
                t->from_seq = from_seq;
                kept = next_read(t, slot, max_events, max_bytes, wait_ms, live, &tail_note, err,
                                 sizeof(err));
                if (t->gen != gen)
                    continue;
            }
        }
        /* only a Read that answered without the mark says it is gone (a
         * failed Read, -1, or a reset, -2, says nothing about it) */
        if (kept >= 0 && atomic_load(&t->needs_snapshot_pub)) {
            atomic_store(&t->needs_snapshot_pub, 0);
            wh_info("target %s/%s: no longer marked NEEDS_SNAPSHOT; delivering again",
                    t->set.tenant, t->name);
        }
        if (kept == -3) {
            if (!atomic_load(&t->needs_snapshot_pub)) {
                atomic_store(&t->needs_snapshot_pub, 1);
                wh_warn("target %s/%s: NEEDS_SNAPSHOT: the store marked it (behind tenant %s's "
                        "retention cap, store.retention_bytes / store.retention_age_s, or "
                        "force_resync, source.force_resync_lag_bytes / "
                        "disconnected_resync_after_s / lag_max_action) and changes it had not "
                        "read may be gone; nothing more is posted to it until its offset is set "
                        "(POST /v1/tenants/%s/targets/%s/offset)",
                        t->set.tenant, t->name, t->set.tenant, t->set.tenant, t->name);
            }
            timed_wait_locked(t, 1000);
        } else if (kept > 0) {
            t->count++;
            read_fail = 0;
            batch_taken(t, tail_note, live);
            pthread_mutex_unlock(&t->mu);
            if (t->notify)
                t->notify(t->notify_arg);
            pthread_mutex_lock(&t->mu);
        } else if (kept == -2) {
            wh_info("target %s/%s: the offset was moved; reading again from it", t->set.tenant,
                    t->name);
            request_reset_locked(t);
        } else if (kept < 0) {
            read_fail++;
            uint64_t now = wh_now_ms();
            if (read_fail == 1 || now - last_warn >= DSP_WARN_EVERY_MS) {
                wh_warn("target %s/%s: Read from store failed (%s), attempt %d, retrying",
                        t->set.tenant, t->name, err, read_fail);
                last_warn = now;
            }
            timed_wait_locked(t, dsp_retry_delay_ms(read_fail, 50, 2000));
        } else {
            wh_counter_add(&t->empty_reads, 1);
            if (live) {
                idle_from(t, note0);
            } else if (took < 5 && t->set.read_wait_ms > 0 && !t->commit_pending) {
                /* an empty reply that did not long-poll: do not spin */
                timed_wait_locked(t, 20);
            }
        }
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

int dsp_target_note(dsp_target *t, uint64_t lsn, uint32_t seq, dsp_push *push, int may_take)
{
    pthread_mutex_lock(&t->mu);
    t->note_gen++;
    /* the highest position notified: two Appends of the tenant that
     * overlap in the store may publish out of order, and a lower position
     * after a higher one would make a reader between them think it is at
     * the end and wait for the next notification */
    if ((lsn != 0 || seq != 0) && wh_pos_cmp(lsn, seq, t->note_lsn, t->note_seq) > 0) {
        t->note_lsn = lsn;
        t->note_seq = seq;
    }
    if (push != NULL) {
        while (t->npush > 0 &&
               (t->npush == DSP_PUSH_RING || t->push_bytes + push->bytes > DSP_PUSH_TARGET_BYTES))
            push_drop_first(t); /* a reader this far behind Reads anyway */
        atomic_fetch_add(&push->refs, 1);
        t->push[t->npush++] = push;
        t->push_bytes += push->bytes;
    }
    if (lsn == 0 && seq == 0)
        t->next_replay_ms = 0; /* dead letters queued for replay */
    int taken = may_take && push != NULL && fast_take(t);
    /* the reader is woken unless it has nothing to do: a batch was taken
     * for it up to the latest notification, and it waits idle for the next
     * one (taken with more to read: it reads the rest) */
    if (!taken || !t->ri_idle)
        pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    if (taken && t->notify)
        t->notify(t->notify_arg);
    return taken;
}

/* ---- lifecycle -------------------------------------------------------- */

/* Response body: an excerpt is kept, the rest counted; past DSP_RESP_CAP
 * the transfer is cut (the status is known by then). */
static size_t body_cb(char *p, size_t size, size_t n, void *ud)
{
    dsp_xfer *x = ud;
    size_t len = size * n;
    if (x->resp_len < sizeof(x->resp)) {
        size_t k = sizeof(x->resp) - x->resp_len;
        if (k > len)
            k = len;
        memcpy(x->resp + x->resp_len, p, k);
        x->resp_len += k;
    }
    x->resp_total += len;
    if (x->resp_total > DSP_RESP_CAP) {
        x->resp_capped = 1;
        return 0;
    }
    return len;
}

/* Response headers: Retry-After is kept (bounded). */
static size_t header_cb(char *p, size_t size, size_t n, void *ud)
{
    dsp_xfer *x = ud;
    size_t len = size * n;
    static const char name[] = "retry-after:";
    if (len > sizeof(name) - 1 && strncasecmp(p, name, sizeof(name) - 1) == 0) {
        size_t vl = len - (sizeof(name) - 1);
        if (vl >= sizeof(x->retry_after))
            vl = sizeof(x->retry_after) - 1;
        memcpy(x->retry_after, p + sizeof(name) - 1, vl);
        x->retry_after[vl] = '\0';
        x->has_retry_after = 1;
    }
    return len;
}

/* The SSRF guard: every address curl connects to, after DNS. */
static curl_socket_t open_cb(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    dsp_xfer *x = ud;
    if (purpose != CURLSOCKTYPE_IPCXN)
        return CURL_SOCKET_BAD;
    if (!dsp_ssrf_allowed(&a->addr, &x->t->allow_g, &x->t->allow_t, x->ssrf_why,
                          sizeof(x->ssrf_why))) {
        x->ssrf_refused = 1;
        return CURL_SOCKET_BAD;
    }
    curl_socket_t fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (fd != CURL_SOCKET_BAD)
        x->t->nsock++;
    return fd;
}

/* Every socket open_cb opened is closed here (ud: the target). */
static int close_cb(void *ud, curl_socket_t fd)
{
    dsp_target *t = ud;
    t->nsock--;
    return close(fd);
}

/* A connection pool of its own for one target (see dsp_target.h). Only the
 * loop thread uses it: no lock callbacks. */
static CURLSH *pool_new(void)
{
    CURLSH *sh = curl_share_init();
    if (sh != NULL &&
        curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK) {
        curl_share_cleanup(sh);
        sh = NULL;
    }
    return sh;
}

/* The options that point at the xfer itself (callbacks' data, error buffer,
 * CURLOPT_PRIVATE) and the target's pool. */
static int xfer_bind(dsp_xfer *x)
{
    CURL *e = x->easy;
    return curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_cb) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, (void *)x) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_cb) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, (void *)x->t) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_SHARE, x->t->share) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_HEADERDATA, (void *)x) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, body_cb) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)x) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->curl_err) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)x) == CURLE_OK;
}

/* Loop thread: the delivery settings that live outside the mutex. */
static void apply_delivery(dsp_target *t, const dsp_settings *set)
{
    const wh_delivery *d = &set->dl;
    dsp_breaker_configure(&t->br, d->breaker_failures, d->breaker_ratio_pct, d->breaker_window,
                          d->breaker_cooldown_ms);
    if (t->nack.win.size != (d->nack_window > 0 ? d->nack_window : 20) ||
        t->nack.threshold != (d->nack_threshold > 0 ? d->nack_threshold : 5))
        dsp_nack_init(&t->nack, d->nack_window, d->nack_threshold);
    /* in place, every time: a burst changed alone counts too, and a change
     * keeps the tokens left instead of refilling the bucket */
    dsp_limit_set(&t->lim, d->rate_events_per_s, d->rate_requests_per_s, d->rate_burst,
                  wh_now_us());
    char e[WH_ERRLEN];
    /* validated by wh_state; a bad list here allows nothing extra */
    if (wh_cidr_list_parse(set->allow_global, &t->allow_g, e, sizeof(e)) != WH_OK)
        t->allow_g.n = 0;
    if (wh_cidr_list_parse(d->allow_private, &t->allow_t, e, sizeof(e)) != WH_OK)
        t->allow_t.n = 0;
}

/* The shared target check (wh_target_validate, as `walhook check` runs it)
 * on the URL and on every secret of sp: a target the dispatcher sets up or
 * reconfigures is never less checked than one in the file. */
static int check_spec(const dsp_spec *sp, char *err, size_t errlen)
{
    wh_target wt;
    memset(&wt, 0, sizeof(wt));
    wh_strlcpy(wt.name, sp->name, sizeof(wt.name));
    wh_strlcpy(wt.url, sp->url, sizeof(wt.url));
    char sub[WH_ERRLEN];
    int n = sp->nsecrets < DSP_KEYS_MAX ? sp->nsecrets : DSP_KEYS_MAX;
    for (int i = 0; i <= n; i++) {
        if (i > 0)
            wh_strlcpy(wt.secret, sp->secrets[i - 1], sizeof(wt.secret));
        if (wh_target_validate(&wt, sub, sizeof(sub)) != WH_OK)
            return wh_seterr(err, errlen, "tenant '%s' %s", sp->set.tenant, sub);
    }
    return WH_OK;
}

/* Parses every secret of sp into keys; nothing is written on error. */
static int parse_keys(dsp_key *keys, int *nkeys, const dsp_spec *sp, char *err, size_t errlen)
{
    dsp_key k[DSP_KEYS_MAX];
    int n = sp->nsecrets < DSP_KEYS_MAX ? sp->nsecrets : DSP_KEYS_MAX;
    for (int i = 0; i < n; i++) {
        char kerr[WH_ERRLEN];
        if (dsp_key_parse(&k[i], sp->secrets[i], kerr, sizeof(kerr)) != WH_OK)
            return wh_seterr(err, errlen, "target %s/%s: secrets[%d]: %s", sp->set.tenant, sp->name,
                             i, kerr);
    }
    memcpy(keys, k, (size_t)n * sizeof(k[0]));
    *nkeys = n;
    return WH_OK;
}

static int connect_timeout_ms(const dsp_target *t)
{
    return t->set.http_timeout_ms < 10000 ? t->set.http_timeout_ms : 10000;
}

/* libcurl before 8.0 fails every request that reuses an h2c (prior
 * knowledge) connection with "Error in the HTTP2 framing layer" (curl issue
 * 10634, fixed in 8.0.0); Debian 12 ships 7.88. */
static int h2c_usable(void)
{
    return curl_version_info(CURLVERSION_NOW)->version_num >= 0x080000;
}

/* The target's http_version as libcurl's CURLOPT_HTTP_VERSION: "1.1" only
 * HTTP/1.1; "2" HTTP/2 (over TLS by ALPN, falling back to 1.1 when the
 * target does not offer h2; over cleartext with prior knowledge, h2c, where
 * libcurl can reuse such connections, else HTTP/1.1); "auto" (default)
 * HTTP/2 over TLS when the target offers it, 1.1 over cleartext (no h2c
 * Upgrade header, which some servers reject). */
static long http_version_of(const char *setting, const char *url)
{
    if (strcmp(setting, "1.1") == 0)
        return CURL_HTTP_VERSION_1_1;
    if (strcmp(setting, "2") == 0) {
        if (strncasecmp(url, "http://", 7) != 0)
            return CURL_HTTP_VERSION_2_0;
        return h2c_usable() ? CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE : CURL_HTTP_VERSION_1_1;
    }
    return CURL_HTTP_VERSION_2TLS;
}

/* Says once per set-up or change when http_version = "2" cannot be h2c. */
static void http_version_note(const dsp_target *t)
{
    if (strcmp(t->set.dl.http_version, "2") == 0 && strncasecmp(t->url, "http://", 7) == 0 &&
        !h2c_usable())
        wh_warn("target %s/%s: http_version = \"2\" over cleartext (h2c) needs libcurl 8.0 or "
                "later (this one, %s, fails on reused h2c connections); posting with HTTP/1.1",
                t->set.tenant, t->name, curl_version_info(CURLVERSION_NOW)->version);
}

/* libcurl's upload buffer (CURLOPT_UPLOAD_BUFFERSIZE): a body larger than
 * 64 KiB is copied into it and sent one buffer per send() and loop round
 * (each its own epoll_wait and curl_multi_socket_action). curl's 64 KiB
 * default took ~17 of each for a 1 MiB batch; the batch size (within
 * 64 KiB .. 1 MiB) takes one or two. Its pages are touched as far as the
 * largest body copied into it, and stays allocated: the memory plan's
 * upload_buffers part (wh_budget.h), one per target. */
static long upload_buffer_of(const dsp_settings *set)
{
    long n = (long)set->batch_max_bytes;
    return n < WH_BUDGET_DSP_UPLOAD_MIN   ? WH_BUDGET_DSP_UPLOAD_MIN
           : n > WH_BUDGET_DSP_UPLOAD_MAX ? WH_BUDGET_DSP_UPLOAD_MAX
                                          : n;
}

int dsp_target_init(dsp_target *t, const dsp_spec *sp, dsp_notify_fn notify, void *notify_arg,
                    char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    wh_strlcpy(t->name, sp->name, sizeof(t->name));
    wh_strlcpy(t->url, sp->url, sizeof(t->url));
    t->set = sp->set;
    t->lease_epoch = sp->lease_epoch;
    t->paused = sp->paused;
    t->notify = notify;
    t->notify_arg = notify_arg;
    for (int i = 0; i < DSP_PREFETCH; i++)
        wh_buf_init(&t->slots[i].body, 0);
    wh_buf_init(&t->one, 0);
    dsp_breaker_init(&t->br, 0, 0, 0, 0);
    dsp_nack_init(&t->nack, 0, 0);
    dsp_limit_init(&t->lim, 0, 0, 0, wh_now_us());
    apply_delivery(t, &t->set);
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    pthread_cond_init(&t->ccv, NULL);
    if (check_spec(sp, err, errlen) != WH_OK ||
        parse_keys(t->keys, &t->nkeys, sp, err, errlen) != WH_OK)
        return WH_ERR;
    char ferr[WH_ERRLEN];
    if (dsp_format_build(&t->lfmt, &sp->set.dl, sp->set.db, ferr, sizeof(ferr)) != WH_OK)
        return wh_seterr(err, errlen, "tenant '%s' target '%s': %s", sp->set.tenant, sp->name,
                         ferr);
    t->fmt_gen = 1;

    http_version_note(t);
    t->share = pool_new();
    if (t->share == NULL)
        return wh_seterr(err, errlen, "target %s: curl_share_init failed", t->name);
    CURL *e = curl_easy_init();
    if (e == NULL)
        return wh_seterr(err, errlen, "target %s: curl_easy_init failed", t->name);
    t->x.easy = e;
    t->x.t = t;
    t->x.lane = -1;
    int ok =
        curl_easy_setopt(e, CURLOPT_URL, t->url) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)t->set.http_timeout_ms) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_timeout_ms(t)) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                         http_version_of(t->set.dl.http_version, t->url)) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_PROXY, "") == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_POST, 1L) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, upload_buffer_of(&t->set)) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_USERAGENT, "walhook-dispatcher/1") == CURLE_OK &&
        (t->set.ca_file[0] == '\0' ||
         curl_easy_setopt(e, CURLOPT_CAINFO, t->set.ca_file) == CURLE_OK) &&
        xfer_bind(&t->x);
    if (!ok)
        return wh_seterr(err, errlen,
                         "target %s: setting curl options failed (url or libcurl "
                         "too old?)",
                         t->name);
    return WH_OK;
}

int dsp_target_start_reader(dsp_target *t, char *err, size_t errlen)
{
    if (wh_client_open(&t->store, t->set.store_endpoint, t->set.ipc_timeout_ms, t->set.ipc_max_msg,
                       err, errlen) != WH_OK)
        return WH_ERR;
    if (wh_client_open(&t->cstore, t->set.store_endpoint, t->set.ipc_timeout_ms, t->set.ipc_max_msg,
                       err, errlen) != WH_OK)
        return WH_ERR;
    if (pthread_create(&t->thr, NULL, reader_main, t) != 0)
        return wh_seterr(err, errlen, "target %s: cannot start reader thread", t->name);
    t->thr_started = 1;
    if (pthread_create(&t->cthr, NULL, committer_main, t) != 0)
        return wh_seterr(err, errlen, "target %s: cannot start committer thread", t->name);
    t->cthr_started = 1;
    return WH_OK;
}

void dsp_target_apply_settings(dsp_target *t, const dsp_settings *set)
{
    pthread_mutex_lock(&t->mu);
    t->set.batch_max_events = set->batch_max_events;
    t->set.batch_max_bytes = set->batch_max_bytes;
    t->set.retry_base_ms = set->retry_base_ms;
    t->set.retry_max_ms = set->retry_max_ms;
    t->set.http_timeout_ms = set->http_timeout_ms;
    if (t->set.commit_interval_ms != set->commit_interval_ms)
        pthread_cond_broadcast(&t->ccv); /* a committer waiting out the old one */
    t->set.commit_interval_ms = set->commit_interval_ms;
    wh_strlcpy(t->set.allow_global, set->allow_global, sizeof(t->set.allow_global));
    t->set.dl = set->dl;
    pthread_mutex_unlock(&t->mu);
    apply_delivery(t, set);
}

int dsp_target_reconfigure(dsp_target *t, const dsp_spec *sp, char *err, size_t errlen)
{
    dsp_format nf;
    memset(&nf, 0, sizeof(nf));
    char ferr[WH_ERRLEN];
    if (check_spec(sp, err, errlen) != WH_OK)
        return WH_ERR;
    if (dsp_format_build(&nf, &sp->set.dl, sp->set.db, ferr, sizeof(ferr)) != WH_OK)
        return wh_seterr(err, errlen, "tenant '%s' target '%s': %s", sp->set.tenant, sp->name,
                         ferr);
    if (parse_keys(t->keys, &t->nkeys, sp, err, errlen) != WH_OK) {
        dsp_format_free(&nf);
        return WH_ERR;
    }
    int fmt_changed =
        strcmp(t->set.dl.envelope, sp->set.dl.envelope) != 0 ||
        strcmp(t->set.dl.filter_tables, sp->set.dl.filter_tables) != 0 ||
        strcmp(t->set.dl.filter_ops, sp->set.dl.filter_ops) != 0 ||
        strcmp(t->set.dl.filter_columns_include, sp->set.dl.filter_columns_include) != 0 ||
        strcmp(t->set.dl.filter_columns_exclude, sp->set.dl.filter_columns_exclude) != 0 ||
        strcmp(t->set.dl.filter_expr, sp->set.dl.filter_expr) != 0 ||
        strcmp(t->set.db, sp->set.db) != 0;
    dsp_format_free(&t->lfmt);
    t->lfmt = nf;
    long hv_old = http_version_of(t->set.dl.http_version, t->url);
    long ub_old = upload_buffer_of(&t->set);
    /* The SSRF guard runs when curl opens a socket (open_cb), never on a
     * pooled connection it reuses: with a list narrowed (an exception
     * removed) or the URL moved, a keep-alive connection would go on
     * reaching an address the guard now refuses. */
    int reach_changed = strcmp(t->url, sp->url) != 0 ||
                        strcmp(t->set.allow_global, sp->set.allow_global) != 0 ||
                        strcmp(t->set.dl.allow_private, sp->set.dl.allow_private) != 0;
    if (strcmp(t->url, sp->url) != 0) {
        wh_strlcpy(t->url, sp->url, sizeof(t->url));
        curl_easy_setopt(t->x.easy, CURLOPT_URL, t->url);
    }
    dsp_target_apply_settings(t, &sp->set);
    t->lease_epoch = sp->lease_epoch;
    curl_easy_setopt(t->x.easy, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_timeout_ms(t));
    long hv = http_version_of(t->set.dl.http_version, t->url);
    curl_easy_setopt(t->x.easy, CURLOPT_HTTP_VERSION, hv);
    /* (setting it frees curl's buffer: only between requests, as here) */
    long ub = upload_buffer_of(&t->set);
    if (ub != ub_old)
        curl_easy_setopt(t->x.easy, CURLOPT_UPLOAD_BUFFERSIZE, ub);
    for (int i = 0; i < t->nlanes; i++) {
        if (ub != ub_old)
            curl_easy_setopt(t->lanes[i].x.easy, CURLOPT_UPLOAD_BUFFERSIZE, ub);
        curl_easy_setopt(t->lanes[i].x.easy, CURLOPT_URL, t->url);
        curl_easy_setopt(t->lanes[i].x.easy, CURLOPT_CONNECTTIMEOUT_MS,
                         (long)connect_timeout_ms(t));
        curl_easy_setopt(t->lanes[i].x.easy, CURLOPT_HTTP_VERSION, hv);
    }
    /* connections made with the old protocol version, or checked against
     * the old URL and allow lists, are not reused */
    if (hv != hv_old) {
        t->pool_stale = 1;
        t->pool_stale_why = reach_changed ? "http_version changed, and the URL or an allow list"
                                          : "http_version changed";
        http_version_note(t);
    } else if (reach_changed) {
        t->pool_stale = 1;
        t->pool_stale_why = "the URL or an allow list changed (SSRF guard)";
    }
    if (fmt_changed) {
        /* batches read ahead were filtered and rendered the old way */
        pthread_mutex_lock(&t->mu);
        t->fmt_gen++;
        pthread_mutex_unlock(&t->mu);
        if (t->state != DSP_T_POSTING && t->state != DSP_T_DEADLETTER)
            dsp_target_reset(t);
    }
    /* a changed target is tried again, also after a 410 */
    if (t->disabled)
        wh_info("target %s/%s: enabled again by a change of its settings", t->set.tenant, t->name);
    dsp_target_enable(t);
    return WH_OK;
}

void dsp_target_enable(dsp_target *t)
{
    t->disabled = 0;
    t->blocked = 0;
    atomic_store(&t->disabled_pub, 0);
    atomic_store(&t->blocked_pub, 0);
}

void dsp_target_reset(dsp_target *t)
{
    pthread_mutex_lock(&t->mu);
    t->gen++;
    t->head = 0;
    t->count = 0;
    if (t->reset_req) {
        t->commit_pending = 0; /* the offset moved: refused anyway */
    } else if (t->commit_pending) {
        /* a format change, a resume: what was delivered stays delivered;
         * the reader reads from the offset once this is in */
        t->commit_now = 1;
        pthread_cond_broadcast(&t->ccv);
    }
    t->reset_req = 0;
    t->dlq_pending = 0;
    t->dlq_done = 0;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    wh_counter_add(&t->resets, 1);
    /* POSTING only while a request is still in flight: in lane mode the
     * state says POSTING until lanes_state() runs, which a reset after the
     * last lane finished never does; kept, with lmode cleared below, nothing
     * would post again (strict_post waits for a request that is gone) */
    if (t->lmode ? t->lposting == 0 : t->state != DSP_T_POSTING)
        t->state = DSP_T_IDLE;
    t->attempt = 0;
    t->single = 0;
    t->single_i = 0;
    t->first_fail_ms = 0;
    t->blocked = 0;
    t->done_valid = 0;
    lanes_leave(t);
    atomic_store(&t->blocked_pub, 0);
}

void dsp_target_forget_commit(dsp_target *t)
{
    pthread_mutex_lock(&t->mu);
    t->commit_pending = 0;
    t->dlq_pending = 0;
    t->ack_pending = 0;
    pthread_mutex_unlock(&t->mu);
}

void dsp_target_stop_reader(dsp_target *t)
{
    pthread_mutex_lock(&t->mu);
    t->stop = 1;
    pthread_cond_broadcast(&t->cv);
    pthread_cond_broadcast(&t->ccv);
    pthread_mutex_unlock(&t->mu);
    /* a Read waiting on a store that is gone returns now; the committer's
     * client only after its last commit (dsp_target_drain_commit) */
    wh_client_interrupt(t->store);
}

void dsp_target_drain_commit(dsp_target *t, uint64_t until_ms)
{
    if (t->cthr_started) {
        pthread_mutex_lock(&t->mu);
        for (uint64_t now = wh_now_ms(); (t->commit_pending || t->commit_busy) && now < until_ms;
             now = wh_now_ms()) {
            struct timespec ts;
            wh_deadline_in(&ts, CLOCK_REALTIME, (int64_t)(until_ms - now));
            pthread_cond_timedwait(&t->ccv, &t->mu, &ts);
        }
        pthread_mutex_unlock(&t->mu);
    }
    if (t->cstore != NULL)
        wh_client_interrupt(t->cstore);
}

static void dlq_summary(dsp_target *t, uint64_t now_ms, const char *tail);

void dsp_target_destroy(dsp_target *t)
{
    /* dead letters counted for a summary that would never come (the
     * target is removed, rebuilt or the dispatcher stops) */
    if (t->dlq_log_n > 0)
        dlq_summary(t, wh_now_ms(), "; the target stops");
    if (t->thr_started || t->cthr_started) {
        dsp_target_stop_reader(t);
        dsp_target_drain_commit(t, wh_now_ms() + DSP_STOP_COMMIT_WAIT_MS);
    }
    if (t->thr_started) {
        pthread_join(t->thr, NULL);
        t->thr_started = 0;
    }
    if (t->cthr_started) {
        pthread_join(t->cthr, NULL);
        t->cthr_started = 0;
    }
    if (t->store != NULL)
        wh_client_close(t->store);
    t->store = NULL;
    if (t->cstore != NULL)
        wh_client_close(t->cstore);
    t->cstore = NULL;
    if (t->x.easy != NULL)
        curl_easy_cleanup(t->x.easy);
    t->x.easy = NULL;
    curl_slist_free_all(t->x.hdrs);
    t->x.hdrs = NULL;
    for (int i = 0; i < t->nlanes; i++)
        lane_free(&t->lanes[i]);
    free(t->lanes);
    t->lanes = NULL;
    t->nlanes = 0;
    if (t->share != NULL) /* closes the pooled connections (close_cb) */
        curl_share_cleanup(t->share);
    t->share = NULL;
    free(t->ev_lane);
    free(t->ev_done);
    t->ev_lane = t->ev_done = NULL;
    free(t->ah_lane);
    free(t->ah_done);
    t->ah_lane = t->ah_done = NULL;
    for (int i = 0; i < DSP_PREFETCH; i++)
        dsp_batch_free(&t->slots[i]);
    while (t->npush > 0)
        push_drop_first(t);
    free(t->pevs);
    t->pevs = NULL;
    wh_buf_free(&t->one);
    dsp_format_free(&t->lfmt);
    dsp_format_free(&t->rfmt);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    pthread_cond_destroy(&t->ccv);
}

/* ---- loop side -------------------------------------------------------- */

static dsp_batch *current_batch(dsp_target *t)
{
    dsp_batch *b = NULL;
    pthread_mutex_lock(&t->mu);
    if (t->count > 0)
        b = &t->slots[t->head];
    pthread_mutex_unlock(&t->mu);
    return b;
}

void dsp_target_publish(dsp_target *t)
{
    int st = t->disabled ? DSP_T_DISABLED : t->blocked ? DSP_T_BLOCKED : (int)t->state;
    atomic_store(&t->state_pub, st);
    atomic_store(&t->breaker_pub, (int)t->br.state);
    atomic_store(&t->degraded_pub, dsp_nack_degraded(&t->nack));
    atomic_store(&t->disabled_pub, t->disabled);
    atomic_store(&t->blocked_pub, t->blocked);
}

/* The events of the head batch [from, to) are done (delivered or dead-
 * lettered): the batch is popped when nothing is left, else single mode goes
 * on at `to`. commit: also ask the reader to commit the last one. */
static void advance(dsp_target *t, dsp_batch *b, size_t to, int commit)
{
    t->attempt = 0;
    t->first_fail_ms = 0;
    t->blocked = 0;
    t->state = DSP_T_IDLE;
    pthread_mutex_lock(&t->mu);
    if (to >= b->n)
        commit = 1; /* past the batch's filtered tail too */
    if (b->replay) {
        /* replayed dead letters are behind the offset: acked, not committed */
        if (commit) {
            t->ack_lsn = to >= b->n ? b->last_lsn : b->ev_lsn[to - 1];
            t->ack_seq = to >= b->n ? b->last_seq : b->ev_seq[to - 1];
            t->ack_gen = b->replay_gen;
            t->ack_pending = 1;
            t->ack_final = to >= b->n;
        }
        commit = 0;
    }
    if (commit) {
        uint64_t lsn = to >= b->n ? b->last_lsn : b->ev_lsn[to - 1];
        uint32_t seq = to >= b->n ? b->last_seq : b->ev_seq[to - 1];
        if (!t->commit_pending || wh_pos_cmp(lsn, seq, t->commit_lsn, t->commit_seq) > 0) {
            t->commit_lsn = lsn;
            t->commit_seq = seq;
            t->commit_epoch = b->epoch;
        }
        t->commit_pending = 1;
        if (!t->commit_sleep)
            pthread_cond_signal(&t->ccv);
    }
    if (to >= b->n) {
        t->single = 0;
        t->single_i = 0;
        t->done_valid = 0;
        t->head = (t->head + 1) % DSP_PREFETCH;
        t->count--;
    } else {
        t->single = 1;
        t->single_i = to;
    }
    /* the reader cares when it waits for a batch to finish (a free slot,
     * an idle target for its growing batch) or for a replay ack; idle for
     * a notification it is not woken for every request */
    if (t->rwait || t->ack_pending)
        pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

/* One line for the first dead letters of a target (or the first after a
 * quiet DSP_DLQ_LOG_EVERY_MS), then the count of the next ones at most once
 * per DSP_DLQ_LOG_EVERY_MS (dsp_target_log_flush): a target that refuses
 * every event must not log a line per event. Never a row value. */
static void log_deadletter(dsp_target *t, size_t n, const char *reason, uint64_t now_ms)
{
    dsp_target_log_flush(t, now_ms);
    if (t->dlq_log_ms != 0 && now_ms - t->dlq_log_ms < DSP_DLQ_LOG_EVERY_MS) {
        t->dlq_log_n += n;
        (void)wh_cut_words(t->dlq_log_why, sizeof(t->dlq_log_why), "%s", reason);
        return;
    }
    wh_warn("target %s/%s: %zu event(s) go to the dead-letter queue after %d attempt(s): %s "
            "(more dead letters of this target are counted in one line every %d s)",
            t->set.tenant, t->name, n, t->attempt, reason, DSP_DLQ_LOG_EVERY_MS / 1000);
    t->dlq_log_ms = now_ms;
    t->dlq_log_n = 0;
}

/* The summary line of the dead letters counted since the last line. */
static void dlq_summary(dsp_target *t, uint64_t now_ms, const char *tail)
{
    wh_warn("target %s/%s: %" PRIu64 " more event(s) went to the dead-letter queue in the last "
            "%.0f s; last: %s (%" PRIu64 " written for it in total)%s",
            t->set.tenant, t->name, t->dlq_log_n, (double)(now_ms - t->dlq_log_ms) / 1000.0,
            t->dlq_log_why, wh_counter_get(&t->dead_letters), tail);
    t->dlq_log_ms = now_ms;
    t->dlq_log_n = 0;
}

void dsp_target_log_flush(dsp_target *t, uint64_t now_ms)
{
    if (t->dlq_log_n == 0 || now_ms - t->dlq_log_ms < DSP_DLQ_LOG_EVERY_MS)
        return;
    dlq_summary(t, now_ms, "");
}

/* The text of a failed attempt for the metrics (the admin shows it): one
 * line, printable ASCII, no quote or backslash (a Prometheus label). */
static void publish_error(dsp_target *t, const char *why)
{
    char clean[sizeof(t->err_pub)];
    size_t k = 0;
    for (const char *p = why; *p && k + 1 < sizeof(clean); p++) {
        unsigned char c = (unsigned char)*p;
        clean[k++] = c < 0x20 || c >= 0x7f ? ' ' : c == '"' || c == '\\' ? '\'' : (char)c;
    }
    clean[k] = '\0';
    pthread_mutex_lock(&t->mu);
    memcpy(t->err_pub, clean, k + 1);
    t->err_pub_us = wh_wallclock_us();
    pthread_mutex_unlock(&t->mu);
}

int dsp_target_last_error(dsp_target *t, char *buf, size_t len, int64_t *at_us)
{
    pthread_mutex_lock(&t->mu);
    int has = t->err_pub[0] != '\0';
    if (has) {
        wh_strlcpy(buf, t->err_pub, len);
        *at_us = t->err_pub_us;
    }
    pthread_mutex_unlock(&t->mu);
    return has;
}

/* Hands the events [from, to) of the head batch to the reader as dead
 * letters; the loop waits in DEADLETTER until it wrote them. */
static void start_deadletter(dsp_target *t, dsp_batch *b, size_t from, size_t to,
                             const char *reason)
{
    dsp_dlq_req *r = &t->dlq_req;
    pthread_mutex_lock(&t->mu);
    memset(r, 0, sizeof(*r));
    r->tenant = t->set.tenant;
    r->consumer = t->name;
    r->epoch = b->epoch;
    r->lease_epoch = atomic_load(&t->lease_epoch);
    r->n = to - from;
    r->jsons = b->ptrs + from;
    r->lens = b->plens + from;
    r->lsns = b->ev_lsn + from;
    r->seqs = b->ev_seq + from;
    r->commit_ts_us = b->commit_ts + from;
    r->attempts = t->attempt;
    r->first = t->first_err;
    r->last = t->last_err;
    r->replay = b->replay;
    r->replay_gen = b->replay_gen;
    wh_strlcpy(r->reason, reason, sizeof(r->reason));
    t->dlq_pending = 1;
    t->dlq_done = 0;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    t->dlq_from = from;
    t->dlq_to = to;
    t->state = DSP_T_DEADLETTER;
    log_deadletter(t, to - from, reason, wh_now_ms());
}

/* DEADLETTER: the reader's answer. 1 when the target may go on. */
static int deadletter_done(dsp_target *t)
{
    pthread_mutex_lock(&t->mu);
    int done = t->dlq_done;
    t->dlq_done = 0;
    pthread_mutex_unlock(&t->mu);
    if (!done)
        return 0;
    t->state = DSP_T_IDLE; /* (advance too, when the batch is still there) */
    dsp_batch *b = current_batch(t);
    wh_counter_add(&t->dead_letters, t->dlq_to - t->dlq_from);
    if (b != NULL)
        advance(t, b, t->dlq_to, 0); /* the store moved the offset with them */
    return 1;
}

static int on_dlq(const dsp_target *t)
{
    return strcmp(t->set.dl.on_failure, "block") != 0;
}

/* mode fast: the head batch's oldest undelivered event is older than the
 * cap while the target fails; in the red backpressure zone (dsp_zone) at
 * once while it fails. */
static int should_shed(const dsp_target *t, const dsp_batch *b)
{
    if (strcmp(t->set.dl.mode, "fast") != 0 || !on_dlq(t))
        return 0;
    if (t->attempt == 0 && t->br.state == DSP_BR_CLOSED)
        return 0;
    if (dsp_zone_get(t->set.tenant) == DSP_ZONE_RED)
        return 1;
    size_t i = t->single ? t->single_i : 0;
    if (i >= b->n || b->commit_ts[i] == 0)
        return 0;
    int64_t cap_us = (t->set.dl.backlog_max_ms > 0 ? t->set.dl.backlog_max_ms : 60000) * 1000;
    return wh_wallclock_us() - b->commit_ts[i] > cap_us;
}

static void wait_until(dsp_target *t, uint64_t at_ms)
{
    t->state = DSP_T_BACKOFF;
    t->retry_at_ms = at_ms;
}

/* Signs body for x, sets its headers and body and adds it to multi. */
static int xfer_start(dsp_target *t, dsp_xfer *x, CURLM *multi, const char *body, size_t blen,
                      const dsp_env_out *env, const char *id, size_t n, char *err, size_t errlen)
{
    int64_t ts = wh_wallclock_us() / 1000000;
    if (dsp_headers_build(&x->hdr, t->keys, t->nkeys, id, n, ts, body, blen, err, errlen) != WH_OK)
        return WH_ERR;
    curl_slist_free_all(x->hdrs);
    x->hdrs = NULL;
    if (env != NULL && env->content_type[0])
        snprintf(x->hdr.content_type, sizeof(x->hdr.content_type), "Content-Type: %s",
                 env->content_type);
    const char *lines[6 + DSP_ENV_HEADERS_MAX] = {x->hdr.content_type, x->hdr.batch_size,
                                                  x->hdr.id,           x->hdr.timestamp,
                                                  x->hdr.signature,    "Expect:"};
    size_t nlines = 6;
    for (size_t k = 0; env != NULL && k < env->nheaders && k < DSP_ENV_HEADERS_MAX; k++)
        lines[nlines++] = env->headers[k];
    for (size_t i = 0; i < nlines; i++) {
        if (lines[i][0] == '\0')
            continue;
        struct curl_slist *sl = curl_slist_append(x->hdrs, lines[i]);
        if (sl == NULL)
            return wh_seterr(err, errlen, "out of memory building headers");
        x->hdrs = sl;
    }
    x->curl_err[0] = '\0';
    x->resp_len = x->resp_total = 0;
    x->resp_capped = 0;
    x->has_retry_after = 0;
    x->ssrf_refused = 0;
    curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, (long)t->set.http_timeout_ms);
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    CURLMcode mc = curl_multi_add_handle(multi, x->easy);
    if (mc != CURLM_OK)
        return wh_seterr(err, errlen, "curl_multi_add_handle: %s", curl_multi_strerror(mc));
    return WH_OK;
}

/* ---- ordering = by_key: lanes ------------------------------------------ */

static int strict_post(dsp_target *t, CURLM *multi, uint64_t now_ms, int budget);
static void lanes_commit(dsp_target *t, const dsp_batch *b);

static int nlanes_of(const dsp_target *t)
{
    int n = t->set.dl.lanes > 0 ? t->set.dl.lanes : DSP_LANES_DEFAULT;
    return n > DSP_LANES_MAX ? DSP_LANES_MAX : n;
}

static int max_conn_of(const dsp_target *t)
{
    return t->set.dl.max_connections > 0 ? t->set.dl.max_connections : DSP_MAX_CONN_DEFAULT;
}

int dsp_target_inflight(const dsp_target *t)
{
    return (t->state == DSP_T_POSTING && !t->lmode ? 1 : 0) + t->lposting;
}

static void lane_free(dsp_lanereq *ln)
{
    if (ln->x.easy != NULL)
        curl_easy_cleanup(ln->x.easy);
    curl_slist_free_all(ln->x.hdrs);
    free(ln->idx);
    free(ln->ptrs);
    free(ln->plens);
    wh_buf_free(&ln->body);
    wh_buf_free(&ln->wire);
    memset(ln, 0, sizeof(*ln));
}

/* Grows the lane array to n, each lane with a copy of the target's handle. */
static int lanes_alloc(dsp_target *t, int n)
{
    if (t->nlanes >= n)
        return WH_OK;
    dsp_lanereq *p = realloc(t->lanes, (size_t)n * sizeof(*p));
    if (p == NULL)
        return WH_ERR;
    t->lanes = p;
    for (int i = t->nlanes; i < n; i++) {
        dsp_lanereq *ln = &p[i];
        memset(ln, 0, sizeof(*ln));
        wh_buf_init(&ln->body, 0);
        wh_buf_init(&ln->wire, 0);
        ln->x.t = t;
        ln->x.lane = i;
        ln->x.easy = curl_easy_duphandle(t->x.easy);
        if (ln->x.easy == NULL || !xfer_bind(&ln->x)) {
            lane_free(ln);
            return WH_ERR;
        }
        t->nlanes = i + 1;
    }
    return WH_OK;
}

/* A fresh head batch goes to the lanes when ordering = by_key. */
static int lanes_enter(dsp_target *t, const dsp_batch *b)
{
    if (strcmp(t->set.dl.ordering, "by_key") != 0 || t->lfmt.single)
        return WH_ERR;
    int nl = nlanes_of(t);
    if (nl < 2)
        return WH_ERR;
    if (lanes_alloc(t, nl) != WH_OK) {
        wh_warn("target %s/%s: cannot set up %d lanes (out of memory); posting in order",
                t->set.tenant, t->name, nl);
        return WH_ERR;
    }
    if (b->n > t->ev_cap) {
        uint8_t *a = realloc(t->ev_lane, b->n), *d = NULL;
        if (a != NULL)
            t->ev_lane = a;
        if (a != NULL && (d = realloc(t->ev_done, b->n)) != NULL)
            t->ev_done = d;
        if (a == NULL || d == NULL)
            return WH_ERR;
        t->ev_cap = b->n;
    }
    pthread_mutex_lock(&t->mu);
    int slot = t->head;
    pthread_mutex_unlock(&t->mu);
    if (t->ah_ready && t->ah_slot == slot && t->ah_gen == t->gen && t->lnl == nl) {
        /* lanes ran ahead into this batch before single mode took the last
         * one: what they delivered is not posted again */
        memcpy(t->ev_lane, t->ah_lane, b->n);
        memcpy(t->ev_done, t->ah_done, b->n);
    } else {
        for (size_t i = 0; i < b->n; i++)
            t->ev_lane[i] = (uint8_t)dsp_lane_of(b->ptrs[i], b->plens[i], (unsigned)nl);
        memset(t->ev_done, 0, b->n);
    }
    t->ah_ready = 0;
    t->ah_fail = 0;
    for (int i = 0; i < t->nlanes; i++) {
        t->lanes[i].state = DSP_LN_IDLE;
        t->lanes[i].attempt = 0;
        t->lanes[i].first_fail_ms = 0;
        t->lanes[i].ahead = 0;
    }
    t->lnl = nl;
    t->lmode = 1;
    t->lfail = 0;
    t->done_valid = 1;
    t->done_upto = 0;
    return WH_OK;
}

static void lanes_leave(dsp_target *t)
{
    t->lmode = 0;
    t->lfail = 0;
    for (int i = 0; i < t->nlanes; i++) {
        t->lanes[i].state = DSP_LN_IDLE;
        t->lanes[i].ahead = 0;
    }
}

/* The batch after the head, or NULL. */
static dsp_batch *next_batch(dsp_target *t, int *slot)
{
    dsp_batch *b = NULL;
    pthread_mutex_lock(&t->mu);
    if (t->count > 1) {
        *slot = (t->head + 1) % DSP_PREFETCH;
        b = &t->slots[*slot];
    }
    pthread_mutex_unlock(&t->mu);
    return b;
}

/* The next batch when lanes may run ahead into it (its lanes assigned on
 * first use), else NULL: not while a lane failed for good, nor into a
 * replayed, empty or single-event batch, nor while a change of the target's
 * settings waits for a moment with nothing in flight (the loop applies it
 * then: the lanes stop at the end of the head batch). */
static dsp_batch *ahead_batch(dsp_target *t, const dsp_batch *head)
{
    int slot = -1;
    if (t->next_spec != NULL)
        return NULL;
    dsp_batch *nb = next_batch(t, &slot);
    if (nb == NULL || nb->n == 0 || nb->replay || head->replay || t->lfail || t->ah_fail ||
        t->lfmt.single || t->single)
        return NULL;
    if (t->ah_ready && t->ah_slot == slot && t->ah_gen == t->gen)
        return nb;
    if (nb->n > t->ah_cap) {
        uint8_t *a = realloc(t->ah_lane, nb->n), *d = NULL;
        if (a != NULL)
            t->ah_lane = a;
        if (a != NULL && (d = realloc(t->ah_done, nb->n)) != NULL)
            t->ah_done = d;
        if (a == NULL || d == NULL)
            return NULL;
        t->ah_cap = nb->n;
    }
    for (size_t i = 0; i < nb->n; i++)
        t->ah_lane[i] = (uint8_t)dsp_lane_of(nb->ptrs[i], nb->plens[i], (unsigned)t->lnl);
    memset(t->ah_done, 0, nb->n);
    t->ah_ready = 1;
    t->ah_slot = slot;
    t->ah_gen = t->gen;
    t->ah_fail = 0;
    return nb;
}

/* The head batch is popped (every lane is done with it or ahead): the next
 * batch's lane state becomes the head's. */
static void lanes_shift(dsp_target *t)
{
    uint8_t *p = t->ev_lane;
    t->ev_lane = t->ah_lane;
    t->ah_lane = p;
    p = t->ev_done;
    t->ev_done = t->ah_done;
    t->ah_done = p;
    size_t c = t->ev_cap;
    t->ev_cap = t->ah_cap;
    t->ah_cap = c;
    t->ah_ready = 0;
    t->lfail = t->ah_fail;
    t->ah_fail = 0;
    for (int i = 0; i < t->nlanes; i++) {
        dsp_lanereq *ln = &t->lanes[i];
        if (ln->ahead) {
            ln->ahead = 0; /* its state (posting, backoff, done) goes on */
        } else {
            ln->state = DSP_LN_IDLE;
            ln->attempt = 0;
            ln->first_fail_ms = 0;
        }
    }
    t->done_valid = 1;
    t->done_upto = 0;
}

/* Collects the lane's undelivered events of b and renders its body. */
static int lane_build(dsp_target *t, dsp_lanereq *ln, int lane, const dsp_batch *b)
{
    const uint8_t *ev_lane = ln->ahead ? t->ah_lane : t->ev_lane;
    const uint8_t *ev_done = ln->ahead ? t->ah_done : t->ev_done;
    ln->nidx = 0;
    if (ln->cap < b->n) {
        uint32_t *ix = realloc(ln->idx, b->n * sizeof(*ix));
        if (ix != NULL)
            ln->idx = ix;
        const void **pp = ix ? realloc(ln->ptrs, b->n * sizeof(*pp)) : NULL;
        if (pp != NULL)
            ln->ptrs = pp;
        size_t *pl = pp ? realloc(ln->plens, b->n * sizeof(*pl)) : NULL;
        if (pl == NULL)
            return WH_ERR;
        ln->plens = pl;
        ln->cap = b->n;
    }
    for (size_t i = 0; i < b->n; i++) {
        if (ev_lane[i] != lane || ev_done[i])
            continue;
        ln->idx[ln->nidx] = (uint32_t)i;
        ln->ptrs[ln->nidx] = b->ptrs[i];
        ln->plens[ln->nidx++] = b->plens[i];
    }
    if (ln->nidx == 0)
        return WH_OK;
    uint32_t last = ln->idx[ln->nidx - 1];
    if (wh_event_id(t->set.tenant, b->ev_lsn[last], b->ev_seq[last], ln->id, sizeof(ln->id)) < 0)
        return WH_ERR;
    if (t->lfmt.render) {
        dsp_env_opts o;
        memset(&o, 0, sizeof(o));
        o.kind = t->lfmt.env;
        o.db = t->lfmt.db;
        o.columns = t->lfmt.filter;
        char err[WH_ERRLEN];
        return dsp_env_render(&o, ln->ptrs, ln->plens, ln->nidx, &ln->wire, &ln->env, err,
                              sizeof(err));
    }
    return dsp_body_build(&ln->body, (const void *const *)ln->ptrs, ln->plens, ln->nidx);
}

/* The loop's view of a target in lane mode: posting while a lane posts,
 * else waiting for the earliest lane in backoff. */
static void lanes_state(dsp_target *t)
{
    if (t->lposting > 0) {
        t->state = DSP_T_POSTING;
        return;
    }
    t->state = DSP_T_IDLE;
    for (int i = 0; i < t->lnl && i < t->nlanes; i++) {
        const dsp_lanereq *ln = &t->lanes[i];
        if (ln->state == DSP_LN_BACKOFF &&
            (t->state != DSP_T_BACKOFF || ln->retry_at_ms < t->retry_at_ms))
            wait_until(t, ln->retry_at_ms);
    }
}

static int lanes_post(dsp_target *t, CURLM *multi, uint64_t now_ms, int budget)
{
    pthread_mutex_lock(&t->mu);
    int reset = t->reset_req;
    pthread_mutex_unlock(&t->mu);
    if (reset) {
        /* the offset moved: the lanes' results in flight are dropped */
        if (t->lposting == 0)
            dsp_target_reset(t);
        return 0;
    }
    dsp_batch *b = current_batch(t);
    if (b == NULL) {
        lanes_leave(t);
        return 0;
    }
    if (t->lfail) {
        if (t->lposting > 0)
            return 0;
        /* a lane failed for good: the rest of the batch one event at a time
         * (dead letters, on_failure) from the first event not delivered */
        lanes_leave(t);
        t->single = 1;
        t->single_i = t->done_upto;
        t->attempt = 0;
        t->first_fail_ms = 0;
        t->state = DSP_T_IDLE;
        return strict_post(t, multi, now_ms, budget);
    }
    dsp_target_publish(t);
    int started = 0, done = 0;
    int cap = max_conn_of(t);
    uint64_t now_us = wh_now_us();
    dsp_batch *nb = NULL;
    for (int i = 0; i < t->lnl; i++) {
        dsp_lanereq *ln = &t->lanes[i];
        if (ln->state == DSP_LN_DONE && !ln->ahead && !t->paused && !t->disabled &&
            (nb = ahead_batch(t, b)) != NULL) {
            /* done with the head batch: on with its events of the next */
            if (!t->ah_logged) {
                t->ah_logged = 1;
                wh_info("target %s/%s: a lane done with its batch runs ahead into the next one",
                        t->set.tenant, t->name);
            }
            ln->ahead = 1;
            ln->state = DSP_LN_IDLE;
            ln->attempt = 0;
            ln->first_fail_ms = 0;
        }
        if (ln->ahead) {
            done++; /* its events of the head batch are delivered */
            if (t->ah_fail)
                continue;
        }
        if (ln->state == DSP_LN_DONE) {
            if (!ln->ahead)
                done++;
            continue;
        }
        if (ln->state == DSP_LN_POSTING || started >= budget || t->lposting >= cap || t->paused ||
            t->disabled)
            continue;
        if (ln->state == DSP_LN_BACKOFF && now_ms < ln->retry_at_ms)
            continue;
        const dsp_batch *lb = b;
        if (ln->ahead && (lb = nb != NULL ? nb : ahead_batch(t, b)) == NULL)
            continue;
        nb = ln->ahead ? (dsp_batch *)lb : nb;
        if (ln->state == DSP_LN_IDLE) {
            if (lane_build(t, ln, i, lb) != WH_OK) {
                wh_error("target %s/%s: building the request of lane %d failed", t->set.tenant,
                         t->name, i);
                ln->state = DSP_LN_BACKOFF;
                ln->retry_at_ms = now_ms + 1000;
                continue;
            }
            if (ln->nidx == 0) {
                ln->state = DSP_LN_DONE;
                if (!ln->ahead) /* a lane ahead was counted above */
                    done++;
                continue;
            }
        }
        long w = dsp_breaker_wait_ms(&t->br, now_ms);
        if (w <= 0) {
            w = dsp_limit_wait_ms(&t->lim, (uint32_t)ln->nidx, now_us);
            if (w > 0)
                wh_counter_add(&t->rate_waits, 1);
        }
        if (w > 0) {
            ln->state = DSP_LN_BACKOFF;
            ln->retry_at_ms = now_ms + (uint64_t)w;
            continue;
        }
        const wh_buf *body = t->lfmt.render ? &ln->wire : &ln->body;
        char err[WH_ERRLEN];
        if (xfer_start(t, &ln->x, multi, body->data, body->len, t->lfmt.render ? &ln->env : NULL,
                       ln->id, ln->nidx, err, sizeof(err)) != WH_OK) {
            wh_error("target %s/%s: lane %d: %s", t->set.tenant, t->name, i, err);
            ln->state = DSP_LN_BACKOFF;
            ln->retry_at_ms = now_ms + 1000;
            continue;
        }
        dsp_limit_take(&t->lim, (uint32_t)ln->nidx, now_us);
        dsp_breaker_on_send(&t->br);
        ln->state = DSP_LN_POSTING;
        t->lposting++;
        started++;
    }
    if (done == t->lnl) {
        /* every lane delivered its events: past the batch (and its
         * filtered tail) */
        int ahead = 0;
        for (int i = 0; i < t->lnl; i++)
            ahead |= t->lanes[i].ahead;
        if (ahead && t->ah_ready && t->ah_gen == t->gen) {
            advance(t, b, b->n, 1);
            lanes_shift(t);
            dsp_batch *h = current_batch(t);
            if (h == NULL) { /* cannot happen: the next batch was there */
                lanes_leave(t);
                return started;
            }
            lanes_commit(t, h);
            lanes_state(t);
            return started + lanes_post(t, multi, now_ms, budget - started);
        }
        lanes_leave(t);
        advance(t, b, b->n, 1);
        return started + strict_post(t, multi, now_ms, budget - started);
    }
    lanes_state(t);
    return started;
}

/* Lane mode: the offset moves up to the first event not delivered yet. */
static void lanes_commit(dsp_target *t, const dsp_batch *b)
{
    size_t u = t->done_upto;
    while (u < b->n && t->ev_done[u])
        u++;
    if (u == t->done_upto || u >= b->n)
        return; /* the whole batch: committed when it is popped */
    t->done_upto = u;
    pthread_mutex_lock(&t->mu);
    uint64_t lsn = b->ev_lsn[u - 1];
    uint32_t seq = b->ev_seq[u - 1];
    if (!t->commit_pending || wh_pos_cmp(lsn, seq, t->commit_lsn, t->commit_seq) > 0) {
        t->commit_lsn = lsn;
        t->commit_seq = seq;
        t->commit_epoch = b->epoch;
    }
    t->commit_pending = 1;
    pthread_cond_signal(&t->ccv);
    pthread_mutex_unlock(&t->mu);
}

/* The strict path: one request for the head batch (or one event of it in
 * single mode); by_key hands a fresh batch to the lanes. */
static int strict_post(dsp_target *t, CURLM *multi, uint64_t now_ms, int budget)
{
    if (t->state == DSP_T_POSTING)
        return 0;
    pthread_mutex_lock(&t->mu);
    int reset = t->reset_req;
    pthread_mutex_unlock(&t->mu);
    if (reset)
        dsp_target_reset(t);
    if (t->state == DSP_T_DEADLETTER) {
        if (!deadletter_done(t))
            return 0;
        /* a settings change that waited for the dead letters: the loop
         * applies it (and reads again the batches read ahead the old way)
         * before anything more is posted */
        if (t->next_spec != NULL)
            return 0;
    }
    dsp_target_publish(t);
    if (t->paused || t->disabled)
        return 0;
    dsp_batch *b = current_batch(t);
    while (b != NULL && b->n == 0) {
        /* only filtered events: committed past, never posted */
        advance(t, b, 0, 1);
        b = current_batch(t);
    }
    if (b == NULL)
        return 0;
    if (t->lfmt.single && !t->single) {
        t->single = 1; /* cloudevents-binary: one event per request */
        t->single_i = 0;
    }
    if (t->single && t->done_valid) {
        /* after lanes: the events they delivered are not posted again */
        size_t i = t->single_i;
        while (i < b->n && t->ev_done[i])
            i++;
        if (i >= b->n) {
            advance(t, b, b->n, 1);
            return strict_post(t, multi, now_ms, budget);
        }
        t->single_i = i;
    }
    if (should_shed(t, b)) {
        size_t from = t->single ? t->single_i : 0, to = b->n;
        /* after lanes, up to the next event they delivered (never a dead
         * letter for it); the rest goes on the next round */
        if (t->single && t->done_valid)
            for (to = from + 1; to < b->n && !t->ev_done[to]; to++)
                ;
        wh_counter_add(&t->shed, to - from);
        start_deadletter(t, b, from, to,
                         dsp_zone_get(t->set.tenant) == DSP_ZONE_RED
                             ? "backpressure zone red while failing (mode fast)"
                             : "backlog over backlog_max_ms while failing (mode fast)");
        return 0;
    }
    if (t->state == DSP_T_BACKOFF && now_ms < t->retry_at_ms)
        return 0;
    if (t->attempt == 0 && !t->single && !b->replay && b->n > 1 && lanes_enter(t, b) == WH_OK)
        return lanes_post(t, multi, now_ms, budget);
    long w = dsp_breaker_wait_ms(&t->br, now_ms);
    if (w > 0) {
        wait_until(t, now_ms + (uint64_t)w);
        return 0;
    }
    size_t first = t->single ? t->single_i : 0;
    size_t n = t->single ? 1 : b->n;
    uint64_t now_us = wh_now_us();
    w = dsp_limit_wait_ms(&t->lim, (uint32_t)n, now_us);
    if (w > 0) {
        wh_counter_add(&t->rate_waits, 1);
        wait_until(t, now_ms + (uint64_t)w);
        return 0;
    }
    const char *body = b->rendered ? b->wire.data : b->body.data;
    size_t blen = b->rendered ? b->wire.len : b->body.len;
    const dsp_env_out *env = b->rendered ? &b->env : NULL;
    char idbuf[DSP_ID_MAX];
    const char *id = b->id;
    if (t->single) {
        const void *ptr = b->ptrs[first];
        size_t plen = b->plens[first];
        char rerr[WH_ERRLEN];
        int rc = WH_OK;
        env = NULL;
        wh_buf_reset(&t->one);
        if (t->lfmt.render) {
            dsp_env_opts o;
            memset(&o, 0, sizeof(o));
            o.kind = t->lfmt.env;
            o.db = t->lfmt.db;
            o.columns = t->lfmt.filter;
            rc = dsp_env_render(&o, &ptr, &plen, 1, &t->one, &t->one_env, rerr, sizeof(rerr));
            env = &t->one_env;
        } else {
            wh_strlcpy(rerr, "out of memory", sizeof(rerr));
            if (wh_buf_putc(&t->one, '[') != WH_OK || wh_buf_append(&t->one, ptr, plen) != WH_OK ||
                wh_buf_putc(&t->one, ']') != WH_OK || wh_buf_cstr(&t->one) != WH_OK)
                rc = WH_ERR;
        }
        if (rc != WH_OK || wh_event_id(t->set.tenant, b->ev_lsn[first], b->ev_seq[first], idbuf,
                                       sizeof(idbuf)) < 0) {
            wh_error("target %s/%s: building a request failed: %s", t->set.tenant, t->name, rerr);
            wait_until(t, now_ms + 1000);
            return -1;
        }
        body = t->one.data;
        blen = t->one.len;
        id = idbuf;
    }
    char err[WH_ERRLEN];
    if (xfer_start(t, &t->x, multi, body, blen, env, id, n, err, sizeof(err)) != WH_OK) {
        wh_error("target %s/%s: %s", t->set.tenant, t->name, err);
        wait_until(t, now_ms + (uint64_t)dsp_retry_delay_ms(++t->attempt, t->set.retry_base_ms,
                                                            t->set.retry_max_ms));
        return -1;
    }
    lat_trace("dsp_post", b->commit_ts + first, n);
    dsp_limit_take(&t->lim, (uint32_t)n, now_us);
    dsp_breaker_on_send(&t->br);
    t->state = DSP_T_POSTING;
    return 1;
}

/* Over max_connections sockets (the setting was lowered, or a connection
 * was not reused), or http_version, the URL or an allow list changed
 * (pool_stale): nothing new starts until the target's requests are done,
 * then every handle moves to a fresh pool and the old one is closed with
 * its idle connections. 1 while the target must wait. */
static int pool_over(dsp_target *t)
{
    int max = max_conn_of(t);
    if (t->nsock <= max && !t->pool_stale)
        return 0;
    if (dsp_target_inflight(t) > 0)
        return 1;
    CURLSH *sh = pool_new();
    if (sh == NULL)
        return 1;
    int before = t->nsock;
    curl_easy_setopt(t->x.easy, CURLOPT_SHARE, sh);
    for (int i = 0; i < t->nlanes; i++)
        curl_easy_setopt(t->lanes[i].x.easy, CURLOPT_SHARE, sh);
    if (curl_share_cleanup(t->share) != CURLSHE_OK) {
        /* still in use (cannot happen with nothing in flight): keep it */
        curl_easy_setopt(t->x.easy, CURLOPT_SHARE, t->share);
        for (int i = 0; i < t->nlanes; i++)
            curl_easy_setopt(t->lanes[i].x.easy, CURLOPT_SHARE, t->share);
        curl_share_cleanup(sh);
        return 0;
    }
    t->share = sh;
    if (t->pool_stale)
        wh_info("target %s/%s: closed %d pooled connection(s) made before %s", t->set.tenant,
                t->name, before - t->nsock, t->pool_stale_why);
    else
        wh_info("target %s/%s: closed %d pooled connection(s) over max_connections = %d",
                t->set.tenant, t->name, before - t->nsock, max);
    t->pool_stale = 0;
    return 0;
}

int dsp_target_maybe_post(dsp_target *t, CURLM *multi, uint64_t now_ms, int budget)
{
    if (budget <= 0)
        return 0;
    if (pool_over(t))
        return 0;
    if (t->lmode)
        return lanes_post(t, multi, now_ms, budget);
    return strict_post(t, multi, now_ms, budget);
}

static void note_error(dsp_target *t, CURLcode res, long code)
{
    dsp_attempt_error *e = &t->last_err;
    memset(e, 0, sizeof(*e));
    e->status = code;
    e->curl_code = (int)res;
    if (t->x.ssrf_refused)
        wh_strlcpy(e->curl_err, t->x.ssrf_why, sizeof(e->curl_err));
    else if (res != CURLE_OK)
        wh_strlcpy(e->curl_err, t->x.curl_err[0] ? t->x.curl_err : curl_easy_strerror(res),
                   sizeof(e->curl_err));
    memcpy(e->body, t->x.resp, t->x.resp_len);
    e->body_len = t->x.resp_len;
    e->at_us = wh_wallclock_us();
    if (t->attempt == 0)
        t->first_err = *e;
}

/* The text of a failed attempt for logs and dead letters (never a body):
 * the SSRF guard's refusal (counted), curl's error, or the HTTP status. */
static void describe_failure(dsp_target *t, const dsp_xfer *x, CURLcode res, long code,
                             dsp_outcome out, const char *curl_err, char *why, size_t len)
{
    if (x->ssrf_refused && res != CURLE_OK) {
        wh_counter_add(&t->ssrf_refusals, 1);
        snprintf(why, len, "refused by the SSRF guard: %s", x->ssrf_why);
    } else if (res != CURLE_OK) {
        snprintf(why, len, "%s", curl_err);
    } else {
        snprintf(why, len, "HTTP %ld (%s)", code, dsp_outcome_name(out));
    }
}

/* 410 Gone: the target is disabled until an operator resumes it. */
static void disable_gone(dsp_target *t)
{
    t->disabled = 1;
    wh_warn("target %s/%s: answered 410 Gone: disabled, nothing more is posted until an "
            "operator resumes it (walhook targets resume; its offset is kept)",
            t->set.tenant, t->name);
}

/* Classifies an answer and feeds the breaker and the nack window. */
static dsp_outcome record_outcome(dsp_target *t, const dsp_xfer *x, CURLcode *res, long code,
                                  uint64_t now_ms)
{
    if (*res == CURLE_WRITE_ERROR && x->resp_capped && code > 0)
        *res = CURLE_OK; /* we cut a long answer short; its status stands */
    dsp_outcome out =
        x->ssrf_refused && *res != CURLE_OK ? DSP_OUT_RETRY : dsp_classify(*res, code);
    uint64_t opened = t->br.opened;
    dsp_breaker_record(&t->br, out == DSP_OUT_RETRY, now_ms);
    if (t->br.opened != opened) {
        wh_counter_add(&t->breaker_opens, 1);
        wh_warn("target %s/%s: circuit breaker open for %d ms (%d consecutive failures, %d of "
                "the last %d attempts failed)",
                t->set.tenant, t->name, t->br.cooldown_ms, t->br.consecutive, t->br.win.fails,
                t->br.win.count);
    }
    int was_degraded = dsp_nack_degraded(&t->nack);
    dsp_nack_record(&t->nack, out != DSP_OUT_OK);
    if (dsp_nack_degraded(&t->nack) != was_degraded)
        wh_warn("target %s/%s: %s (%d failures in the last %d attempts)", t->set.tenant, t->name,
                was_degraded ? "no longer degraded" : "degraded", t->nack.win.fails,
                t->nack.win.count);
    return out;
}

void dsp_target_finished(dsp_target *t, CURLM *multi, CURLcode res, uint64_t now_ms)
{
    long code = 0;
    curl_easy_getinfo(t->x.easy, CURLINFO_RESPONSE_CODE, &code);
    curl_multi_remove_handle(multi, t->x.easy);
    t->state = DSP_T_IDLE;
    dsp_batch *b = current_batch(t);
    if (b == NULL) /* cannot happen: the slot is held while posting */
        return;
    pthread_mutex_lock(&t->mu);
    int reset = t->reset_req;
    pthread_mutex_unlock(&t->mu);
    if (reset) {
        /* the offset moved while this request was in flight: its result
         * must not be committed. The breaker still hears it: it says how
         * the target is, and a half-open probe whose result never arrives
         * keeps the breaker waiting for it for good (nothing posted). */
        record_outcome(t, &t->x, &res, code, now_ms);
        dsp_target_reset(t);
        return;
    }
    dsp_outcome out = record_outcome(t, &t->x, &res, code, now_ms);
    size_t first = t->single ? t->single_i : 0;
    size_t n = t->single ? 1 : b->n;

    if (out == DSP_OUT_OK) {
        int64_t now_wall = wh_wallclock_us();
        lat_trace("dsp_ok", b->commit_ts + first, n);
        wh_hist_acc acc = {0};
        for (size_t i = first; i < first + n; i++)
            lat_observe(&acc, now_wall, b->commit_ts[i]);
        wh_hist_add(&t->latency, &acc);
        wh_counter_add(&t->delivered, n);
        if (b->replay)
            wh_counter_add(&t->replayed, n);
        if (t->attempt > 0)
            wh_info("target %s/%s: delivering again after %d failed attempts", t->set.tenant,
                    t->name, t->attempt);
        advance(t, b, first + n, 1);
        dsp_target_publish(t);
        return;
    }

    wh_counter_add(&t->failures, 1);
    note_error(t, res, code);
    if (t->attempt == 0)
        t->first_fail_ms = now_ms;
    t->attempt++;
    char why[DSP_CURLERR_MAX + 64];
    describe_failure(t, &t->x, res, code, out, t->last_err.curl_err, why, sizeof(why));
    publish_error(t, why);

    if (out == DSP_OUT_GONE) {
        disable_gone(t);
        dsp_target_publish(t);
        return;
    }
    int exhausted = 0;
    if (out == DSP_OUT_RETRY) {
        const wh_delivery *d = &t->set.dl;
        exhausted = (d->max_attempts > 0 && t->attempt >= d->max_attempts) ||
                    (d->max_age_ms > 0 && now_ms - t->first_fail_ms >= (uint64_t)d->max_age_ms);
    } else {
        wh_counter_add(&t->permanent, 1);
    }
    if (out == DSP_OUT_RETRY && !exhausted) {
        wh_counter_add(&t->retries, 1);
        int delay = dsp_next_delay_ms(t->x.has_retry_after ? t->x.retry_after : NULL, t->attempt,
                                      t->set.retry_base_ms, t->set.retry_max_ms,
                                      wh_wallclock_us() / 1000000);
        wait_until(t, now_ms + (uint64_t)delay);
        /* One warning per failing batch at most once a second, and at least
         * every DSP_WARN_EVERY_MS while a batch keeps failing. */
        uint64_t since = now_ms - t->last_warn_ms;
        if (t->last_warn_ms == 0 || (t->attempt == 1 && since >= 1000) ||
            since >= DSP_WARN_EVERY_MS) {
            wh_warn("target %s/%s: delivery of %zu events (webhook-id %s) failed: %s; attempt %d, "
                    "retrying in %d ms%s (%" PRIu64 " failures in total)",
                    t->set.tenant, t->name, n, b->id, why, t->attempt, delay,
                    t->x.has_retry_after ? " (Retry-After)" : "", wh_counter_get(&t->failures));
            t->last_warn_ms = now_ms;
        }
        dsp_target_publish(t);
        return;
    }
    /* permanent, or retries exhausted */
    if (!t->single && b->n > 1) {
        wh_warn("target %s/%s: batch of %zu events (webhook-id %s) failed for good (%s); posting "
                "its events one at a time",
                t->set.tenant, t->name, b->n, b->id, why);
        t->single = 1;
        t->single_i = 0;
        t->attempt = 0;
        t->first_fail_ms = 0;
        dsp_target_publish(t);
        return;
    }
    if (!on_dlq(t)) {
        if (!t->blocked || now_ms - t->last_warn_ms >= DSP_WARN_EVERY_MS) {
            wh_warn("target %s/%s: event at %zu of the batch failed for good (%s); on_failure = "
                    "block: the target stops at it and retries every %d ms",
                    t->set.tenant, t->name, first, why, t->set.retry_max_ms);
            t->last_warn_ms = now_ms;
        }
        t->blocked = 1;
        wait_until(t, now_ms + (uint64_t)t->set.retry_max_ms);
        dsp_target_publish(t);
        return;
    }
    char reason[sizeof(t->dlq_req.reason)];
    dsp_dlq_reason(reason, sizeof(reason), exhausted, why);
    start_deadletter(t, b, first, first + n, reason);
    dsp_target_publish(t);
}

void dsp_target_lane_finished(dsp_target *t, dsp_xfer *x, CURLM *multi, CURLcode res,
                              uint64_t now_ms)
{
    dsp_lanereq *ln = &t->lanes[x->lane];
    long code = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    curl_multi_remove_handle(multi, x->easy);
    t->lposting--;
    ln->state = DSP_LN_IDLE;
    dsp_batch *b = current_batch(t);
    int nslot = -1;
    if (ln->ahead)
        b = t->ah_ready && t->ah_gen == t->gen ? next_batch(t, &nslot) : NULL;
    if (ln->ahead && b != NULL && nslot != t->ah_slot)
        b = NULL;
    pthread_mutex_lock(&t->mu);
    int reset = t->reset_req;
    pthread_mutex_unlock(&t->mu);
    if (reset || b == NULL || !t->lmode) {
        /* the offset moved while this request was in flight: its result
         * must not be committed; the reset waits for the other lanes. The
         * breaker still hears it (a half-open probe, see
         * dsp_target_finished). */
        record_outcome(t, x, &res, code, now_ms);
        if (t->lposting == 0)
            dsp_target_reset(t);
        return;
    }
    dsp_outcome out = record_outcome(t, x, &res, code, now_ms);
    if (out == DSP_OUT_OK) {
        int64_t now_wall = wh_wallclock_us();
        uint8_t *ev_done = ln->ahead ? t->ah_done : t->ev_done;
        wh_hist_acc acc = {0};
        for (size_t k = 0; k < ln->nidx; k++) {
            uint32_t i = ln->idx[k];
            ev_done[i] = 1;
            lat_observe(&acc, now_wall, b->commit_ts[i]);
        }
        wh_hist_add(&t->latency, &acc);
        wh_counter_add(&t->delivered, ln->nidx);
        ln->state = DSP_LN_DONE;
        ln->attempt = 0;
        if (!ln->ahead) /* the offset moves within the head batch only */
            lanes_commit(t, b);
        lanes_state(t);
        dsp_target_publish(t);
        return;
    }
    wh_counter_add(&t->failures, 1);
    if (ln->attempt == 0)
        ln->first_fail_ms = now_ms;
    ln->attempt++;
    char why[DSP_CURLERR_MAX + 64];
    describe_failure(t, x, res, code, out, x->curl_err[0] ? x->curl_err : curl_easy_strerror(res),
                     why, sizeof(why));
    publish_error(t, why);
    if (out == DSP_OUT_GONE) {
        disable_gone(t);
        lanes_state(t);
        dsp_target_publish(t);
        return;
    }
    const wh_delivery *d = &t->set.dl;
    int exhausted = out != DSP_OUT_RETRY ||
                    (d->max_attempts > 0 && ln->attempt >= d->max_attempts) ||
                    (d->max_age_ms > 0 && now_ms - ln->first_fail_ms >= (uint64_t)d->max_age_ms);
    if (!exhausted) {
        wh_counter_add(&t->retries, 1);
        int delay = dsp_next_delay_ms(x->has_retry_after ? x->retry_after : NULL, ln->attempt,
                                      t->set.retry_base_ms, t->set.retry_max_ms,
                                      wh_wallclock_us() / 1000000);
        ln->state = DSP_LN_BACKOFF;
        ln->retry_at_ms = now_ms + (uint64_t)delay;
        if (t->last_warn_ms == 0 || now_ms - t->last_warn_ms >= 1000) {
            wh_warn("target %s/%s: lane %d: delivery of %zu events (webhook-id %s) failed: %s; "
                    "attempt %d, retrying in %d ms",
                    t->set.tenant, t->name, x->lane, ln->nidx, ln->id, why, ln->attempt, delay);
            t->last_warn_ms = now_ms;
        }
    } else {
        if (out != DSP_OUT_RETRY)
            wh_counter_add(&t->permanent, 1);
        wh_warn("target %s/%s: lane %d: %zu events (webhook-id %s) failed for good (%s); the rest "
                "of the batch goes one event at a time",
                t->set.tenant, t->name, x->lane, ln->nidx, ln->id, why);
        if (ln->ahead)
            t->ah_fail = 1; /* the next batch goes one event at a time when it is the head */
        else
            t->lfail = 1;
    }
    lanes_state(t);
    dsp_target_publish(t);
}

int dsp_target_abandon(dsp_target *t, CURLM *multi)
{
    int n = 0;
    if (t->state == DSP_T_POSTING && !t->lmode) {
        curl_multi_remove_handle(multi, t->x.easy);
        n++;
    }
    for (int i = 0; i < t->nlanes; i++)
        if (t->lanes[i].state == DSP_LN_POSTING) {
            curl_multi_remove_handle(multi, t->lanes[i].x.easy);
            t->lanes[i].state = DSP_LN_IDLE;
            n++;
        }
    if (n > 0)
        wh_warn("target %s/%s: abandoning %d unfinished request(s) (not committed)", t->set.tenant,
                t->name, n);
    t->lposting = 0;
    t->state = DSP_T_IDLE;
    return n;
}

int dsp_target_discard(dsp_target *t, dsp_xfer *x, CURLM *multi, long *code)
{
    *code = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, code);
    curl_multi_remove_handle(multi, x->easy);
    if (x->lane >= 0) {
        if (x->lane < t->nlanes && t->lanes[x->lane].state == DSP_LN_POSTING) {
            t->lanes[x->lane].state = DSP_LN_IDLE;
            t->lposting--;
        }
    } else if (t->state == DSP_T_POSTING) {
        t->state = DSP_T_IDLE;
    }
    return dsp_target_inflight(t);
}

long dsp_target_timeout_ms(const dsp_target *t, uint64_t now_ms)
{
    if (t->lmode && t->lposting > 0) {
        /* lanes in backoff next to lanes posting */
        long to = -1;
        for (int i = 0; i < t->lnl && i < t->nlanes; i++) {
            const dsp_lanereq *ln = &t->lanes[i];
            if (ln->state != DSP_LN_BACKOFF)
                continue;
            long w = ln->retry_at_ms > now_ms ? (long)(ln->retry_at_ms - now_ms) : 0;
            if (to < 0 || w < to)
                to = w;
        }
        return to;
    }
    if (t->state != DSP_T_BACKOFF)
        return -1;
    return t->retry_at_ms > now_ms ? (long)(t->retry_at_ms - now_ms) : 0;
}
