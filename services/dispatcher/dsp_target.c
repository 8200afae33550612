/* dsp_target: store reader thread + per-target HTTP state machine. */
#include "dsp_target.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wh_lsn.h"
#include "wh_util.h"

#define DSP_WARN_EVERY_MS 10000 /* repeated failure warnings per target */
#define DSP_STOP_COMMIT_TRIES 3

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
           x->http_timeout_ms != y->http_timeout_ms;
}

/* ---- batches ---------------------------------------------------------- */

int dsp_batch_fill(dsp_batch *b, const char *tenant, Walhook__Event *const *events, size_t n,
                   int has_after, uint64_t after_lsn, uint32_t after_seq)
{
    if (n > b->ts_cap) {
        int64_t *p = realloc(b->commit_ts, n * sizeof(*p));
        if (p == NULL)
            return -1;
        b->commit_ts = p;
        b->ts_cap = n;
    }
    size_t total = 2;
    for (size_t i = 0; i < n; i++)
        total += events[i]->json.len + 1;
    if (dsp_body_begin(&b->body) != WH_OK || wh_buf_reserve(&b->body, total) != WH_OK)
        return -1;
    b->n = 0;
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
        if (dsp_body_add(&b->body, b->n, e->json.data, e->json.len) != WH_OK)
            return -1;
        b->commit_ts[b->n++] = e->commit_ts_us;
        plsn = e->commit_lsn;
        pseq = e->seq;
        have_prev = 1;
    }
    if (dsp_body_end(&b->body) != WH_OK)
        return -1;
    if (b->n == 0)
        return 0;
    b->last_lsn = plsn;
    b->last_seq = pseq;
    if (wh_event_id(tenant, plsn, pseq, b->id, sizeof(b->id)) < 0)
        return -1;
    return (int)b->n;
}

void dsp_batch_free(dsp_batch *b)
{
    wh_buf_free(&b->body);
    free(b->commit_ts);
    b->commit_ts = NULL;
    b->ts_cap = 0;
    b->n = 0;
}

int dsp_retry_delay_ms(int attempt, int base_ms, int max_ms)
{
    int d = wh_backoff_ms(attempt > 0 ? attempt - 1 : 0, base_ms, max_ms);
    return d < 1 ? 1 : d;
}

/* ---- reader thread ---------------------------------------------------- */

/* Waits on cv up to ms unless stop is set. Called with mu held. */
static void timed_wait_locked(dsp_target *t, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    if (!t->stop)
        pthread_cond_timedwait(&t->cv, &t->mu, &ts);
}

/* WH_OK, WH_ERR, or 409 when the store refused a stale epoch. */
static int do_commit(dsp_target *t, uint64_t lsn, uint32_t seq, uint64_t epoch, char *err,
                     size_t errlen)
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
    if (wh_client_call_status(t->store, &req, &rep, &status, err, errlen) != WH_OK)
        return status == 409 ? 409 : WH_ERR;
    int ok = rep->body_case == WALHOOK__REPLY__BODY_OFFSET && rep->offset != NULL;
    walhook__reply__free_unpacked(rep, NULL);
    if (!ok)
        return wh_seterr(err, errlen, "store replied to CommitOffset without an offset body");
    wh_gauge_set(&t->committed_lsn, (int64_t)lsn);
    return WH_OK;
}

/* Reads one batch into the free slot. Returns events kept, 0, -1 (error)
 * or -2 (the consumer's epoch changed: reset). */
static int do_read(dsp_target *t, dsp_batch *slot, uint32_t max_events, uint32_t max_bytes,
                   char *err, size_t errlen)
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
    rr.wait_ms = t->set.read_wait_ms;
    Walhook__Request req = WALHOOK__REQUEST__INIT;
    req.body_case = WALHOOK__REQUEST__BODY_READ;
    req.read = &rr;
    Walhook__Reply *rep = NULL;
    if (wh_client_call(t->store, &req, &rep, err, errlen) != WH_OK)
        return -1;
    int kept = 0;
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
            walhook__reply__free_unpacked(rep, NULL);
            return -2;
        }
        t->has_epoch = 1;
        t->epoch = rd->epoch;
        slot->epoch = rd->epoch;
        kept = dsp_batch_fill(slot, t->set.tenant, rd->events, rd->n_events, has_after, alsn, aseq);
        if (kept < 0) {
            wh_seterr(err, errlen, "out of memory building a batch");
        } else if (kept > 0) {
            t->has_from = 1;
            t->from_lsn = slot->last_lsn;
            t->from_seq = slot->last_seq;
        }
    } else {
        wh_seterr(err, errlen, "store replied to Read without a read body");
        kept = -1;
    }
    walhook__reply__free_unpacked(rep, NULL);
    return kept;
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

static void *reader_main(void *arg)
{
    dsp_target *t = arg;
    char err[WH_ERRLEN];
    int read_fail = 0, commit_fail = 0, stop_tries = 0;
    uint64_t last_warn = 0;

    pthread_mutex_lock(&t->mu);
    t->my_gen = t->gen;
    for (;;) {
        while (!t->stop && !t->commit_pending && (t->count == DSP_PREFETCH || t->reset_req))
            pthread_cond_wait(&t->cv, &t->mu);
        if (t->gen != t->my_gen) {
            /* the loop dropped what was read: read from the committed offset */
            t->my_gen = t->gen;
            t->has_from = 0;
            t->has_epoch = 0;
        }
        if (t->commit_pending) {
            uint64_t lsn = t->commit_lsn;
            uint32_t seq = t->commit_seq;
            uint64_t epoch = t->commit_epoch;
            t->commit_pending = 0;
            pthread_mutex_unlock(&t->mu);
            int rc = do_commit(t, lsn, seq, epoch, err, sizeof(err));
            pthread_mutex_lock(&t->mu);
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
            timed_wait_locked(t, dsp_retry_delay_ms(commit_fail, 50, 2000));
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
        pthread_mutex_unlock(&t->mu);
        /* The slot is invisible to the loop until count is incremented. */
        uint64_t t0 = wh_now_ms();
        int kept = do_read(t, slot, max_events, max_bytes, err, sizeof(err));
        uint64_t took = wh_now_ms() - t0;
        pthread_mutex_lock(&t->mu);
        if (t->gen != gen)
            continue; /* reset while reading: drop it */
        if (kept > 0) {
            t->count++;
            read_fail = 0;
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
        } else if (took < 5 && t->set.read_wait_ms > 0 && !t->commit_pending) {
            /* an empty reply that did not long-poll: do not spin */
            timed_wait_locked(t, 20);
        }
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* ---- lifecycle -------------------------------------------------------- */

static size_t discard_cb(char *p, size_t size, size_t n, void *ud)
{
    WH_UNUSED(p);
    WH_UNUSED(ud);
    return size * n;
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
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    if (check_spec(sp, err, errlen) != WH_OK ||
        parse_keys(t->keys, &t->nkeys, sp, err, errlen) != WH_OK)
        return WH_ERR;

    CURL *e = curl_easy_init();
    if (e == NULL)
        return wh_seterr(err, errlen, "target %s: curl_easy_init failed", t->name);
    t->easy = e;
    int ok = curl_easy_setopt(e, CURLOPT_URL, t->url) == CURLE_OK &&
             curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
             curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") == CURLE_OK &&
             curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
             curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
             curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)t->set.http_timeout_ms) == CURLE_OK &&
             curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1) == CURLE_OK &&
             curl_easy_setopt(e, CURLOPT_POST, 1L) == CURLE_OK &&
             curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) == CURLE_OK &&
             curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L) == CURLE_OK &&
             curl_easy_setopt(e, CURLOPT_USERAGENT, "walhook-dispatcher/1") == CURLE_OK &&
             curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_cb) == CURLE_OK &&
             curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->curl_err) == CURLE_OK &&
             curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)t) == CURLE_OK;
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
    if (pthread_create(&t->thr, NULL, reader_main, t) != 0)
        return wh_seterr(err, errlen, "target %s: cannot start reader thread", t->name);
    t->thr_started = 1;
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
    pthread_mutex_unlock(&t->mu);
}

int dsp_target_reconfigure(dsp_target *t, const dsp_spec *sp, char *err, size_t errlen)
{
    if (check_spec(sp, err, errlen) != WH_OK ||
        parse_keys(t->keys, &t->nkeys, sp, err, errlen) != WH_OK)
        return WH_ERR;
    if (strcmp(t->url, sp->url) != 0) {
        wh_strlcpy(t->url, sp->url, sizeof(t->url));
        curl_easy_setopt(t->easy, CURLOPT_URL, t->url);
    }
    dsp_target_apply_settings(t, &sp->set);
    t->lease_epoch = sp->lease_epoch;
    return WH_OK;
}

void dsp_target_reset(dsp_target *t)
{
    pthread_mutex_lock(&t->mu);
    t->gen++;
    t->head = 0;
    t->count = 0;
    t->commit_pending = 0;
    t->reset_req = 0;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    wh_counter_add(&t->resets, 1);
    if (t->state == DSP_T_BACKOFF)
        t->state = DSP_T_IDLE;
    t->attempt = 0;
}

void dsp_target_forget_commit(dsp_target *t)
{
    pthread_mutex_lock(&t->mu);
    t->commit_pending = 0;
    pthread_mutex_unlock(&t->mu);
}

void dsp_target_stop_reader(dsp_target *t)
{
    pthread_mutex_lock(&t->mu);
    t->stop = 1;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    /* a Read or Commit waiting on a store that is gone returns now */
    wh_client_interrupt(t->store);
}

void dsp_target_destroy(dsp_target *t)
{
    if (t->thr_started) {
        dsp_target_stop_reader(t);
        pthread_join(t->thr, NULL);
        t->thr_started = 0;
    }
    if (t->store != NULL)
        wh_client_close(t->store);
    t->store = NULL;
    if (t->easy != NULL)
        curl_easy_cleanup(t->easy);
    t->easy = NULL;
    curl_slist_free_all(t->hdrs);
    t->hdrs = NULL;
    for (int i = 0; i < DSP_PREFETCH; i++)
        dsp_batch_free(&t->slots[i]);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
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

int dsp_target_maybe_post(dsp_target *t, CURLM *multi, uint64_t now_ms)
{
    if (t->state == DSP_T_POSTING)
        return 0;
    pthread_mutex_lock(&t->mu);
    int reset = t->reset_req;
    pthread_mutex_unlock(&t->mu);
    if (reset)
        dsp_target_reset(t);
    if (t->paused)
        return 0;
    if (t->state == DSP_T_BACKOFF && now_ms < t->retry_at_ms)
        return 0;
    dsp_batch *b = current_batch(t);
    if (b == NULL)
        return 0;
    char err[WH_ERRLEN];
    int64_t ts = wh_wallclock_us() / 1000000;
    if (dsp_headers_build(&t->hdr, t->keys, t->nkeys, b->id, b->n, ts, b->body.data, b->body.len,
                          err, sizeof(err)) != WH_OK) {
        wh_error("target %s/%s: %s", t->set.tenant, t->name, err);
        t->state = DSP_T_BACKOFF;
        t->retry_at_ms = now_ms + (uint64_t)dsp_retry_delay_ms(++t->attempt, t->set.retry_base_ms,
                                                               t->set.retry_max_ms);
        return -1;
    }
    curl_slist_free_all(t->hdrs);
    t->hdrs = NULL;
    const char *lines[] = {t->hdr.content_type, t->hdr.batch_size, t->hdr.id,
                           t->hdr.timestamp,    t->hdr.signature,  "Expect:"};
    for (size_t i = 0; i < WH_ARRAY_LEN(lines); i++) {
        if (lines[i][0] == '\0')
            continue;
        struct curl_slist *n = curl_slist_append(t->hdrs, lines[i]);
        if (n == NULL) {
            wh_error("target %s/%s: out of memory building headers", t->set.tenant, t->name);
            return -1;
        }
        t->hdrs = n;
    }
    t->curl_err[0] = '\0';
    curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->hdrs);
    curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, (long)t->set.http_timeout_ms);
    curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, b->body.data);
    curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)b->body.len);
    CURLMcode mc = curl_multi_add_handle(multi, t->easy);
    if (mc != CURLM_OK) {
        wh_error("target %s/%s: curl_multi_add_handle: %s", t->set.tenant, t->name,
                 curl_multi_strerror(mc));
        return -1;
    }
    t->state = DSP_T_POSTING;
    return 1;
}

void dsp_target_finished(dsp_target *t, CURLM *multi, CURLcode res, uint64_t now_ms)
{
    long code = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
    curl_multi_remove_handle(multi, t->easy);
    dsp_batch *b = current_batch(t);
    if (b == NULL) { /* cannot happen: the slot is held while posting */
        t->state = DSP_T_IDLE;
        return;
    }
    pthread_mutex_lock(&t->mu);
    int reset = t->reset_req;
    pthread_mutex_unlock(&t->mu);
    if (reset) {
        /* the offset moved while this request was in flight: its result
         * must not be committed */
        t->state = DSP_T_IDLE;
        dsp_target_reset(t);
        return;
    }
    if (res == CURLE_OK && code >= 200 && code < 300) {
        int64_t now_wall = wh_wallclock_us();
        for (size_t i = 0; i < b->n; i++) {
            if (b->commit_ts[i] == 0)
                continue; /* no commit time (non-transactional message) */
            int64_t d = now_wall - b->commit_ts[i];
            wh_hist_observe_us(&t->latency, d > 0 ? (uint64_t)d : 0);
        }
        wh_counter_add(&t->delivered, b->n);
        if (t->attempt > 0)
            wh_info("target %s/%s: delivering again after %d failed attempts", t->set.tenant,
                    t->name, t->attempt);
        t->attempt = 0;
        t->state = DSP_T_IDLE;
        pthread_mutex_lock(&t->mu);
        if (!t->commit_pending ||
            wh_pos_cmp(b->last_lsn, b->last_seq, t->commit_lsn, t->commit_seq) > 0) {
            t->commit_lsn = b->last_lsn;
            t->commit_seq = b->last_seq;
            t->commit_epoch = b->epoch;
        }
        t->commit_pending = 1;
        t->head = (t->head + 1) % DSP_PREFETCH;
        t->count--;
        pthread_cond_broadcast(&t->cv);
        pthread_mutex_unlock(&t->mu);
        return;
    }
    wh_counter_add(&t->failures, 1);
    t->attempt++;
    int delay = dsp_retry_delay_ms(t->attempt, t->set.retry_base_ms, t->set.retry_max_ms);
    t->state = DSP_T_BACKOFF;
    t->retry_at_ms = now_ms + (uint64_t)delay;
    /* One warning per failing batch at most once a second, and at least
     * every DSP_WARN_EVERY_MS while a batch keeps failing. */
    uint64_t since = now_ms - t->last_warn_ms;
    if (t->last_warn_ms == 0 || (t->attempt == 1 && since >= 1000) || since >= DSP_WARN_EVERY_MS) {
        char why[CURL_ERROR_SIZE + 64];
        if (res != CURLE_OK)
            snprintf(why, sizeof(why), "%s",
                     t->curl_err[0] ? t->curl_err : curl_easy_strerror(res));
        else
            snprintf(why, sizeof(why), "HTTP %ld", code);
        wh_warn("target %s/%s: delivery of %zu events (webhook-id %s) failed: %s; attempt %d, "
                "retrying in %d ms (%" PRIu64 " failures in total)",
                t->set.tenant, t->name, b->n, b->id, why, t->attempt, delay,
                wh_counter_get(&t->failures));
        t->last_warn_ms = now_ms;
    }
}

void dsp_target_abandon(dsp_target *t, CURLM *multi)
{
    if (t->state == DSP_T_POSTING) {
        curl_multi_remove_handle(multi, t->easy);
        wh_warn("target %s/%s: abandoning an unfinished request at shutdown (not committed)",
                t->set.tenant, t->name);
    }
    t->state = DSP_T_IDLE;
}

long dsp_target_timeout_ms(const dsp_target *t, uint64_t now_ms)
{
    if (t->state != DSP_T_BACKOFF)
        return -1;
    return t->retry_at_ms > now_ms ? (long)(t->retry_at_ms - now_ms) : 0;
}
