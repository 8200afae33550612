/* Batcher and sender thread against a real NNG rep socket (wh_server) that
 * answers Append like the store would; stats rendering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../services/ingestor/ing_batch.h"
#include "../../services/ingestor/ing_stats.h"
#include "wh_config.h"
#include "wh_ipc.h"
#include "wh_util.h"

typedef struct sink {
    pthread_mutex_t mu;
    int calls;
    int fail_next; /* reply with an error this many times */
    size_t events;
    uint64_t max_ack;
    uint64_t last_lsn;
    uint32_t last_seq;
    int order_ok;
    int delay_ms;
    size_t tops;           /* TOAST ops received */
    size_t tops_alone;     /* requests with ops and no event */
    uint64_t tops_lastlsn; /* the last event's lsn in the request of the last ops */
    uint64_t tops_sender, tops_serial;
} sink;

static void on_req(void *arg, const Walhook__Request *req, Walhook__Reply *rep, void **cookie)
{
    sink *s = arg;
    if (s->delay_ms)
        wh_sleep_ms(s->delay_ms);
    pthread_mutex_lock(&s->mu);
    s->calls++;
    if (s->fail_next > 0) {
        s->fail_next--;
        pthread_mutex_unlock(&s->mu);
        wh_reply_error(rep, 1, "injected failure");
        return;
    }
    const Walhook__AppendBatch *ab = req->append;
    for (size_t i = 0; i < ab->n_events; i++) {
        const Walhook__Event *e = ab->events[i];
        if (s->events > 0 && !(e->commit_lsn > s->last_lsn ||
                               (e->commit_lsn == s->last_lsn && e->seq > s->last_seq)))
            s->order_ok = 0;
        if (e->json.len < 2 || e->json.data[0] != '{' || e->json.data[e->json.len - 1] != '}')
            s->order_ok = 0;
        s->last_lsn = e->commit_lsn;
        s->last_seq = e->seq;
        s->events++;
    }
    if (ab->ack_lsn > s->max_ack)
        s->max_ack = ab->ack_lsn;
    if (ab->n_toast_ops > 0) {
        s->tops += ab->n_toast_ops;
        s->tops_sender = ab->toast_sender;
        s->tops_serial = ab->toast_serial;
        if (ab->n_events == 0)
            s->tops_alone++;
        else
            s->tops_lastlsn = ab->events[ab->n_events - 1]->commit_lsn;
    }
    pthread_mutex_unlock(&s->mu);
    /* the reply a real store gives: an AppendReply */
    static __thread Walhook__AppendReply ar;
    walhook__append_reply__init(&ar);
    ar.stored = (uint32_t)ab->n_events;
    rep->body_case = WALHOOK__REPLY__BODY_APPEND;
    rep->append = &ar;
}

static void setup_cfg(wh_config *cfg, const char *dir)
{
    wh_config_defaults(cfg);
    snprintf(cfg->store_endpoint, sizeof(cfg->store_endpoint), "ipc://%s/store.sock", dir);
    cfg->ipc_timeout_ms = 2000;
    cfg->flush_bytes = 1024;
    cfg->flush_age_us = 1000000;
    cfg->window_bytes = 64 * 1024;
}

static void add_events(ing_batcher *bt, uint64_t lsn, int n, size_t size)
{
    char err[WH_ERRLEN];
    for (int i = 0; i < n; i++) {
        wh_buf *b = ing_batcher_buf(bt);
        size_t start = b->len;
        wh_buf_putc(b, '{');
        for (size_t k = 2; k < size; k++)
            wh_buf_putc(b, 'x');
        wh_buf_putc(b, '}');
        assert_int_equal(ing_batcher_add(bt, lsn, (uint32_t)i, 0, start, err, sizeof(err)), WH_OK);
    }
}

static void wait_events(sink *s, size_t want)
{
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&s->mu);
        size_t n = s->events;
        pthread_mutex_unlock(&s->mu);
        if (n >= want)
            return;
        wh_sleep_ms(10);
    }
    fail_msg("store received fewer than %zu events", want);
}

static void test_flow(void **state)
{
    char dir[] = "/tmp/wh_ing_batch_XXXXXX";
    assert_non_null(mkdtemp(dir));
    static wh_config cfg;
    setup_cfg(&cfg, dir);
    sink s = {.order_ok = 1};
    pthread_mutex_init(&s.mu, NULL);
    wh_server *srv;
    char err[WH_ERRLEN];
    assert_int_equal(
        wh_server_start(&srv, cfg.store_endpoint, 1, 64 << 20, on_req, NULL, &s, err, sizeof(err)),
        WH_OK);
    ing_batcher *bt;
    assert_int_equal(ing_batcher_new(&bt, &cfg, err, sizeof(err)), WH_OK);
    assert_true(ing_batcher_idle(bt));

    /* nothing in flight: the open batch goes out at once */
    add_events(bt, 100, 3, 100);
    assert_int_equal(ing_batcher_open_events(bt), 3);
    assert_false(ing_batcher_idle(bt));
    assert_false(ing_batcher_sender_busy(bt));
    ing_batcher_note_commit(bt, 150);
    assert_int_equal(ing_batcher_tick(bt, wh_now_us()), UINT64_MAX);
    assert_int_equal(ing_batcher_open_events(bt), 0);
    wait_events(&s, 3);
    assert_int_equal(ing_batcher_drain(bt, 2000), WH_OK);
    assert_int_equal(ing_batcher_acked_lsn(bt), 150);
    assert_int_equal(ing_batcher_unacked_bytes(bt), 0);
    assert_true(ing_batcher_idle(bt));
    assert_false(ing_batcher_sender_busy(bt));

    /* a request in flight (live stream): what was decoded is sealed at once
     * and queued; the sender sends the queue as its next request the moment
     * the store acknowledged the one in flight, without the replication
     * thread (which the ack still wakes when it asked: window room, a
     * flush LSN) */
    pthread_mutex_lock(&s.mu);
    s.delay_ms = 300;
    pthread_mutex_unlock(&s.mu);
    add_events(bt, 110, 1, 100);
    ing_batcher_seal(bt, err, sizeof(err));
    assert_true(ing_batcher_sender_busy(bt));
    add_events(bt, 120, 2, 100);
    ing_batcher_note_commit(bt, 160);
    assert_int_equal(ing_batcher_tick(bt, wh_now_us()), UINT64_MAX);
    assert_int_equal(ing_batcher_open_events(bt), 0); /* sealed, queued */
    assert_true(ing_batcher_sender_busy(bt));
    struct pollfd pfd = {.fd = ing_batcher_wake_fd(bt), .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 5000), 1); /* the first ack woke the replication thread */
    wait_events(&s, 6);                       /* and the queued batch went without it */
    assert_int_equal(ing_batcher_drain(bt, 5000), WH_OK);
    assert_int_equal(ing_batcher_acked_lsn(bt), 160);
    for (int i = 0; i < 500 && ing_batcher_sender_busy(bt); i++)
        wh_sleep_ms(10); /* the sender signals the ack, then marks itself free */
    assert_false(ing_batcher_sender_busy(bt));
    ing_batcher_wake_clear(bt);
    assert_int_equal(poll(&pfd, 1, 0), 0);

    /* the replication thread does not wait for an ack (a live stream just
     * after a status update): acks leave it asleep; when it asks again,
     * the next ack wakes it */
    ing_batcher_want_wake(bt, 0);
    add_events(bt, 125, 1, 100);
    ing_batcher_note_commit(bt, 165);
    assert_int_equal(ing_batcher_seal(bt, err, sizeof(err)), WH_OK);
    assert_int_equal(ing_batcher_drain(bt, 5000), WH_OK); /* acked, sender free */
    assert_int_equal(ing_batcher_acked_lsn(bt), 165);
    assert_false(ing_batcher_sender_busy(bt));
    assert_int_equal(poll(&pfd, 1, 0), 0);
    ing_batcher_want_wake(bt, ING_WAKE_ACK);
    add_events(bt, 127, 1, 100);
    ing_batcher_note_commit(bt, 167);
    assert_int_equal(ing_batcher_seal(bt, err, sizeof(err)), WH_OK);
    assert_int_equal(poll(&pfd, 1, 5000), 1);
    assert_int_equal(ing_batcher_drain(bt, 5000), WH_OK);
    assert_int_equal(ing_batcher_acked_lsn(bt), 167);
    ing_batcher_wake_clear(bt);

    /* with a backlog, the open batch is held while a request is in flight;
     * waiting only for a free sender, the replication thread is woken once
     * the sender is free, not by the ack before (drain returns after both:
     * the sender marks itself free and wakes under its lock) */
    ing_batcher_set_backlog(bt, 1);
    ing_batcher_want_wake(bt, ING_WAKE_FREE);
    add_events(bt, 128, 1, 100);
    ing_batcher_note_commit(bt, 168);
    assert_int_equal(ing_batcher_seal(bt, err, sizeof(err)), WH_OK);
    add_events(bt, 129, 1, 100);
    assert_int_equal(ing_batcher_tick(bt, wh_now_us()), UINT64_MAX);
    assert_true(ing_batcher_held(bt));
    assert_int_equal(ing_batcher_open_events(bt), 1);
    for (int i = 0; i < 500 && ing_batcher_acked_lsn(bt) < 168; i++)
        wh_sleep_ms(1); /* acked; the sender marks itself free just after */
    assert_int_equal(ing_batcher_drain(bt, 5000), WH_OK);
    assert_false(ing_batcher_sender_busy(bt));
    assert_int_equal(poll(&pfd, 1, 0), 1); /* woken by the sender free */
    ing_batcher_wake_clear(bt);
    ing_batcher_want_wake(bt, ING_WAKE_ACK | ING_WAKE_FREE);
    /* the sender free, the held batch (older than busy_linger_us, 100 ms
     * by default, after the store's 300 ms) goes out */
    assert_int_equal(ing_batcher_tick(bt, wh_now_us()), UINT64_MAX);
    assert_false(ing_batcher_held(bt));
    assert_int_equal(ing_batcher_open_events(bt), 0);
    assert_int_equal(ing_batcher_drain(bt, 5000), WH_OK);
    ing_batcher_wake_clear(bt);

    /* with a backlog, a small batch waits to fill (up to busy_linger_us)
     * even with nothing in flight */
    add_events(bt, 130, 2, 100);
    uint64_t due = ing_batcher_tick(bt, wh_now_us());
    assert_true(due != UINT64_MAX);
    assert_false(ing_batcher_held(bt));
    assert_int_equal(ing_batcher_open_events(bt), 2);
    assert_int_equal(ing_batcher_tick(bt, due), UINT64_MAX); /* sealed by age */
    assert_int_equal(ing_batcher_open_events(bt), 0);
    ing_batcher_set_backlog(bt, 0);
    assert_int_equal(ing_batcher_drain(bt, 5000), WH_OK);
    wait_events(&s, 12);
    ing_batcher_wake_clear(bt);
    pthread_mutex_lock(&s.mu);
    s.delay_ms = 0;
    pthread_mutex_unlock(&s.mu);

    /* reaching flush_bytes seals at once; ack_lsn is the last commit seen
     * before sealing, not later ones */
    add_events(bt, 200, 10, 200); /* 2000 bytes: sealed after 6 events */
    ing_batcher_note_commit(bt, 250);
    assert_int_equal(ing_batcher_seal(bt, err, sizeof(err)), WH_OK);
    assert_int_equal(ing_batcher_drain(bt, 2000), WH_OK);
    wait_events(&s, 22);
    assert_int_equal(ing_batcher_acked_lsn(bt), 250);
    pthread_mutex_lock(&s.mu);
    assert_int_equal(s.max_ack, 250);
    pthread_mutex_unlock(&s.mu);

    /* flush_bytes above a quarter of the window (64 KiB): a batch is
     * sealed at the quarter, 16 KiB (17 events of 1000 bytes), not at
     * flush_bytes */
    cfg.flush_bytes = 1 << 20;
    ing_batcher_set_limits(&cfg, bt);
    add_events(bt, 260, 16, 1000);
    assert_int_equal(ing_batcher_open_events(bt), 16);
    add_events(bt, 261, 1, 1000);
    assert_int_equal(ing_batcher_open_events(bt), 0);
    assert_int_equal(ing_batcher_drain(bt, 5000), WH_OK);
    wait_events(&s, 39);
    cfg.flush_bytes = 1024;
    ing_batcher_set_limits(&cfg, bt);

    /* store errors: retried until accepted, nothing lost, order kept */
    pthread_mutex_lock(&s.mu);
    s.fail_next = 3;
    pthread_mutex_unlock(&s.mu);
    add_events(bt, 300, 20, 100);
    ing_batcher_note_commit(bt, 350);
    ing_batcher_seal(bt, err, sizeof(err));
    assert_int_equal(ing_batcher_drain(bt, 10000), WH_OK);
    wait_events(&s, 59);
    assert_int_equal(ing_batcher_acked_lsn(bt), 350);

    /* credit window: a slow store lets unacked bytes pile up past it */
    s.delay_ms = 300;
    for (int k = 0; k < 100; k++)
        add_events(bt, 400 + (uint64_t)k, 2, 500);
    ing_batcher_seal(bt, err, sizeof(err));
    assert_true(ing_batcher_window_full(bt));
    assert_true(ing_batcher_unacked_bytes(bt) > 64 * 1024);
    assert_int_equal(ing_batcher_drain(bt, 20000), WH_OK);
    assert_false(ing_batcher_window_full(bt));
    wait_events(&s, 259);
    pthread_mutex_lock(&s.mu);
    assert_true(s.order_ok);
    /* the queued batches were coalesced into fewer requests */
    assert_true(s.calls < 3 + 3 + 3 + 3 + 1 + 1 + 100);
    pthread_mutex_unlock(&s.mu);

    /* stats rendering */
    ing_stats st;
    memset(&st, 0, sizeof(st));
    st.bt = bt;
    wh_counter_add(&st.changes_received, 233);
    wh_gauge_set(&st.confirmed_flush_lsn, 1000);
    wh_gauge_set(&st.server_wal_end, 1500);
    wh_buf out;
    wh_buf_init(&out, 0);
    assert_int_equal(ing_stats_render(&st, &out), WH_OK);
    wh_buf_cstr(&out);
    assert_non_null(strstr(out.data, "walhook_changes_received_total 233\n"));
    assert_non_null(strstr(out.data, "walhook_confirmed_flush_lsn 1000\n"));
    assert_non_null(strstr(out.data, "walhook_replication_lag_bytes 500\n"));
    assert_non_null(strstr(out.data, "walhook_ingestor_unacked_bytes 0\n"));
    assert_non_null(strstr(out.data, "walhook_ingestor_batches_sent_total "));
    /* the lag figures' age: 0 while the stream is read; while it is not,
     * the time since it was (the lag itself keeps its last value) */
    ing_stats_stream(&st, 1);
    wh_buf_reset(&out);
    assert_int_equal(ing_stats_render(&st, &out), WH_OK);
    wh_buf_cstr(&out);
    assert_non_null(strstr(out.data, "\nwalhook_replication_lag_age_seconds 0.000000\n"));
    ing_stats_stream(&st, 0); /* e.g. the window is full */
    assert_true(wh_gauge_get(&st.unread_since_us) > 0);
    wh_gauge_set(&st.unread_since_us, wh_wallclock_us() - 90 * 1000000ll); /* 90 s ago */
    /* not read since then: further passes (and a disconnect) keep the start */
    ing_stats_stream(&st, 0);
    wh_buf_reset(&out);
    assert_int_equal(ing_stats_render(&st, &out), WH_OK);
    wh_buf_cstr(&out);
    assert_non_null(strstr(out.data, "walhook_replication_lag_bytes 500\n"));
    const char *age = strstr(out.data, "\nwalhook_replication_lag_age_seconds ");
    assert_non_null(age);
    double aged = strtod(age + strlen("\nwalhook_replication_lag_age_seconds "), NULL);
    assert_true(aged >= 90.0 && aged < 3600.0);
    ing_stats_stream(&st, 1); /* read again */
    wh_buf_reset(&out);
    assert_int_equal(ing_stats_render(&st, &out), WH_OK);
    wh_buf_cstr(&out);
    assert_non_null(strstr(out.data, "\nwalhook_replication_lag_age_seconds 0.000000\n"));
    wh_buf_free(&out);
    assert_string_equal(ing_state_name(ING_STATE_STREAMING), "streaming");
    assert_string_equal(ing_state_name(ING_STATE_CONNECTING), "connecting");
    assert_string_equal(ing_state_name(ING_STATE_ERROR), "error");

    ing_batcher_free(bt);
    wh_server_stop(srv);
    pthread_mutex_destroy(&s.mu);
    char path[256];
    snprintf(path, sizeof(path), "%s/store.sock", dir);
    unlink(path);
    rmdir(dir);
}

/* The store is not there yet: the batch waits, then goes through. */
static void test_store_late(void **state)
{
    char dir[] = "/tmp/wh_ing_batch_XXXXXX";
    assert_non_null(mkdtemp(dir));
    static wh_config cfg;
    setup_cfg(&cfg, dir);
    cfg.ipc_timeout_ms = 300;
    char err[WH_ERRLEN];
    ing_batcher *bt;
    assert_int_equal(ing_batcher_new(&bt, &cfg, err, sizeof(err)), WH_OK);
    add_events(bt, 10, 5, 50);
    ing_batcher_note_commit(bt, 20);
    ing_batcher_seal(bt, err, sizeof(err));
    assert_int_equal(ing_batcher_drain(bt, 500), WH_ERR);
    assert_int_equal(ing_batcher_acked_lsn(bt), 0);
    sink s = {.order_ok = 1};
    pthread_mutex_init(&s.mu, NULL);
    wh_server *srv;
    assert_int_equal(
        wh_server_start(&srv, cfg.store_endpoint, 1, 64 << 20, on_req, NULL, &s, err, sizeof(err)),
        WH_OK);
    assert_int_equal(ing_batcher_drain(bt, 15000), WH_OK);
    assert_int_equal(ing_batcher_acked_lsn(bt), 20);
    wait_events(&s, 5);
    ing_batcher_free(bt);
    wh_server_stop(srv);
    pthread_mutex_destroy(&s.mu);
    char path[256];
    snprintf(path, sizeof(path), "%s/store.sock", dir);
    unlink(path);
    rmdir(dir);
}

/* Requests as a store receives them: kind, xid, reset, ack. */
typedef struct kinds {
    pthread_mutex_t mu;
    int n;
    struct {
        uint32_t xid;
        int reset, commit, nev;
        uint64_t ack;
    } r[16];
} kinds;

static void on_req_kinds(void *arg, const Walhook__Request *req, Walhook__Reply *rep, void **cookie)
{
    (void)cookie;
    kinds *k = arg;
    const Walhook__AppendBatch *ab = req->append;
    pthread_mutex_lock(&k->mu);
    if (k->n < 16) {
        k->r[k->n].xid = ab->stage_xid;
        k->r[k->n].reset = ab->stage_reset;
        k->r[k->n].commit = ab->stage_commit != NULL;
        k->r[k->n].nev = (int)ab->n_events;
        k->r[k->n].ack = ab->ack_lsn;
        k->n++;
    }
    pthread_mutex_unlock(&k->mu);
    static __thread Walhook__AppendReply ar;
    walhook__append_reply__init(&ar);
    rep->body_case = WALHOOK__REPLY__BODY_APPEND;
    rep->append = &ar;
}

static void add_staged(ing_batcher *bt, uint32_t xid, int reset, int n)
{
    char err[WH_ERRLEN];
    assert_int_equal(ing_batcher_stage(bt, xid, reset, err, sizeof(err)), WH_OK);
    for (int i = 0; i < n; i++) {
        wh_buf *b = ing_batcher_buf(bt);
        size_t start = b->len;
        wh_buf_append(b, ",\"op\":\"insert\"}", 15);
        assert_int_equal(ing_batcher_add_staged(bt, (uint32_t)i, xid, start, err, sizeof(err)),
                         WH_OK);
    }
}

/* Staged events wait for their commit (never sealed by a tick alone); a
 * stream commit sends them first, without its end LSN as their ack (the
 * flush LSN must not pass the transaction before its events exist), then
 * itself with it; the reset goes with the first request only; a later
 * event is a request of its own. */
static void test_staged_then_commit(void **state)
{
    (void)state;
    char dir[] = "/tmp/wh_ing_stage_XXXXXX";
    assert_non_null(mkdtemp(dir));
    static wh_config cfg;
    setup_cfg(&cfg, dir);
    kinds k = {0};
    pthread_mutex_init(&k.mu, NULL);
    wh_server *srv;
    char err[WH_ERRLEN];
    assert_int_equal(wh_server_start(&srv, cfg.store_endpoint, 1, 64 << 20, on_req_kinds, NULL, &k,
                                     err, sizeof(err)),
                     WH_OK);
    ing_batcher *bt;
    assert_int_equal(ing_batcher_new(&bt, &cfg, err, sizeof(err)), WH_OK);
    ing_batcher_note_commit(bt, 50);
    add_staged(bt, 700, 1, 3);
    assert_int_equal(ing_batcher_tick(bt, wh_now_us()), UINT64_MAX);
    assert_int_equal(ing_batcher_open_events(bt), 3); /* waiting: not sealed */
    /* append { ack_lsn: 100, stage_commit {} }, as ing_repl packs it */
    static const uint8_t commit_req[] = {0x0a, 0x04, 0x18, 0x64, 0x3a, 0x00};
    assert_int_equal(ing_batcher_packed(bt, commit_req, sizeof(commit_req), 100, err, sizeof(err)),
                     WH_OK);
    assert_int_equal(ing_batcher_open_events(bt), 0);
    assert_int_equal(ing_batcher_unstage(bt, err, sizeof(err)), WH_OK);
    add_events(bt, 200, 1, 50);
    ing_batcher_note_commit(bt, 250);
    assert_int_equal(ing_batcher_seal(bt, err, sizeof(err)), WH_OK);
    assert_int_equal(ing_batcher_drain(bt, 5000), WH_OK);
    assert_int_equal(ing_batcher_acked_lsn(bt), 250);
    pthread_mutex_lock(&k.mu);
    assert_int_equal(k.n, 3);
    assert_int_equal(k.r[0].xid, 700);
    assert_int_equal(k.r[0].reset, 1);
    assert_int_equal(k.r[0].nev, 3);
    assert_true(k.r[0].ack <= 50); /* not the commit's end */
    assert_int_equal(k.r[1].commit, 1);
    assert_int_equal(k.r[1].ack, 100);
    assert_int_equal(k.r[2].xid, 0);
    assert_int_equal(k.r[2].nev, 1);
    assert_int_equal(k.r[2].ack, 250);
    pthread_mutex_unlock(&k.mu);
    ing_batcher_free(bt);
    wh_server_stop(srv);
    char path[256];
    snprintf(path, sizeof(path), "%s/store.sock", dir);
    unlink(path);
    rmdir(dir);
}

/* ing_batch_encode writes the bytes walhook__request__pack does, for zero
 * and large field values, negative times, empty tenants and many events,
 * staged or not. */
/* TOAST cache ops (ing_batcher_toast_add) go in the request with the
 * next sealed batch's last events, alone at a tick when no event follows;
 * the batcher is not idle while they wait; their serial is durable once
 * acknowledged. */
/* A batcher sending to a sink (the TOAST op tests). */
typedef struct toast_fx {
    char dir[32];
    wh_config cfg;
    sink s;
    wh_server *srv;
    ing_batcher *bt;
    uint8_t op[64]; /* a framed ToastOp: field 33, a DEL of rel 1 */
    size_t oplen;
} toast_fx;

static void toast_fx_start(toast_fx *x)
{
    char err[WH_ERRLEN];
    snprintf(x->dir, sizeof(x->dir), "/tmp/wh_ing_batch_XXXXXX");
    assert_non_null(mkdtemp(x->dir));
    setup_cfg(&x->cfg, x->dir);
    x->s = (sink){.order_ok = 1};
    pthread_mutex_init(&x->s.mu, NULL);
    assert_int_equal(wh_server_start(&x->srv, x->cfg.store_endpoint, 1, 64 << 20, on_req, NULL,
                                     &x->s, err, sizeof(err)),
                     WH_OK);
    assert_int_equal(ing_batcher_new(&x->bt, &x->cfg, err, sizeof(err)), WH_OK);
    Walhook__ToastOp op = WALHOOK__TOAST_OP__INIT;
    op.kind = WALHOOK__TOAST_OP__KIND__DEL;
    op.rel = 1;
    op.key.data = (uint8_t *)"k";
    op.key.len = 1;
    op.col = "c";
    size_t n = walhook__toast_op__pack(&op, x->op + 3);
    x->op[0] = 0x8a; /* AppendBatch.toast_ops = 33 */
    x->op[1] = 0x02;
    x->op[2] = (uint8_t)n;
    x->oplen = n + 3;
}

static void toast_fx_stop(toast_fx *x)
{
    ing_batcher_free(x->bt);
    wh_server_stop(x->srv);
    pthread_mutex_destroy(&x->s.mu);
    char path[256];
    snprintf(path, sizeof(path), "%s/store.sock", x->dir);
    unlink(path);
    rmdir(x->dir);
}

static void test_toast_ops(void **state)
{
    (void)state;
    static toast_fx x;
    toast_fx_start(&x);
    ing_batcher *bt = x.bt;
    sink *sp = &x.s;
    add_events(bt, 100, 2, 100);
    uint64_t s1 = ing_batcher_toast_add(bt, x.op, x.oplen);
    uint64_t s2 = ing_batcher_toast_add(bt, x.op, x.oplen);
    assert_true(s1 > 0 && s2 > s1);
    add_events(bt, 200, 1, 100);
    ing_batcher_note_commit(bt, 250);
    assert_int_equal(ing_batcher_tick(bt, wh_now_us()), UINT64_MAX);
    wait_events(sp, 3);
    assert_int_equal(ing_batcher_drain(bt, 2000), WH_OK);
    pthread_mutex_lock(&sp->mu);
    assert_int_equal(sp->tops, 2);
    assert_int_equal(sp->tops_alone, 0);
    assert_int_equal(sp->tops_lastlsn, 200);
    assert_true(sp->tops_sender != 0);
    assert_int_equal(sp->tops_serial, s2);
    pthread_mutex_unlock(&sp->mu);
    assert_int_equal(ing_batcher_toast_durable(bt), s2);
    /* no event follows: alone, at the next tick; not idle meanwhile */
    assert_true(ing_batcher_idle(bt));
    uint64_t s3 = ing_batcher_toast_add(bt, x.op, x.oplen);
    assert_false(ing_batcher_idle(bt));
    assert_true(ing_batcher_toast_durable(bt) < s3);
    assert_int_equal(ing_batcher_tick(bt, wh_now_us()), UINT64_MAX);
    assert_int_equal(ing_batcher_drain(bt, 2000), WH_OK);
    for (int i = 0; i < 500 && !ing_batcher_idle(bt); i++)
        wh_sleep_ms(10);
    assert_true(ing_batcher_idle(bt));
    pthread_mutex_lock(&sp->mu);
    assert_int_equal(sp->tops, 3);
    assert_int_equal(sp->tops_alone, 1);
    pthread_mutex_unlock(&sp->mu);
    assert_int_equal(ing_batcher_toast_durable(bt), s3);
    toast_fx_stop(&x);
}

/* In a stream block the ops do not wait for a tick with no open event
 * (a streamed transaction's batch is hardly ever empty): each staged
 * batch sealed takes those so far out, in a request of their own. */
static void test_toast_ops_staged(void **state)
{
    (void)state;
    static toast_fx x;
    toast_fx_start(&x);
    ing_batcher *bt = x.bt;
    sink *sp = &x.s;
    char err[WH_ERRLEN];
    assert_int_equal(ing_batcher_stage(bt, 900, 1, err, sizeof(err)), WH_OK);
    for (uint32_t i = 0; i < 3; i++) {
        wh_buf *b = ing_batcher_buf(bt);
        size_t start = b->len;
        wh_buf_puts(b, "{\"a\":1}");
        assert_int_equal(ing_batcher_add_staged(bt, i, 900, start, err, sizeof(err)), WH_OK);
        assert_true(ing_batcher_toast_add(bt, x.op, x.oplen) > 0);
        assert_int_equal(ing_batcher_seal(bt, err, sizeof(err)), WH_OK);
    }
    /* no tick: the three seals took the ops out */
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&sp->mu);
        size_t t = sp->tops;
        pthread_mutex_unlock(&sp->mu);
        if (t >= 3)
            break;
        wh_sleep_ms(10);
    }
    pthread_mutex_lock(&sp->mu);
    assert_int_equal(sp->tops, 3);
    assert_true(sp->tops_alone >= 1);
    pthread_mutex_unlock(&sp->mu);
    toast_fx_stop(&x);
}

static void test_encode_matches_pack(void **state)
{
    (void)state;
    enum { N = 700 };
    Walhook__Event *ev = calloc(N, sizeof(*ev));
    Walhook__Event **evp = calloc(N, sizeof(*evp));
    struct iovec *iov = calloc(2 * N + 3, sizeof(*iov));
    char *json = malloc(N * 300);
    assert_non_null(ev);
    assert_non_null(evp);
    assert_non_null(iov);
    assert_non_null(json);
    uint64_t x = 88172645463325252ull;
    wh_buf hdr, flat;
    wh_buf_init(&hdr, 0);
    wh_buf_init(&flat, 0);
    for (int round = 0; round < 40; round++) {
        size_t n = round == 0 ? 0 : round == 1 ? 1 : (size_t)(round * 17) % N + 1;
        size_t off = 0;
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            walhook__event__init(&ev[i]);
            int shape = (int)(x % 5);
            ev[i].commit_lsn = shape == 0 ? 0 : shape == 1 ? UINT64_MAX : x >> (x % 60);
            ev[i].seq = shape == 2 ? 0 : (uint32_t)(x >> 7) >> (x % 30);
            ev[i].commit_ts_us = shape == 3 ? -(int64_t)(x % 1000000) : (int64_t)(x >> 12);
            /* staged events (odd rounds): a subtransaction, often none */
            ev[i].subxid = round % 2 && shape != 4 ? (uint32_t)(x >> 9) >> (x % 31) : 0;
            size_t jl = (size_t)(x % 299) + 1;
            for (size_t j = 0; j < jl; j++)
                json[off + j] = (char)('a' + (j + i) % 26);
            ev[i].json.data = (uint8_t *)json + off;
            ev[i].json.len = jl;
            off += jl;
            evp[i] = &ev[i];
        }
        Walhook__AppendBatch ab;
        walhook__append_batch__init(&ab);
        ab.tenant = round % 3 == 0 ? "" : "tenant-x";
        ab.n_events = n;
        ab.events = evp;
        ab.ack_lsn = round % 4 == 0 ? 0 : x;
        ab.batch_id = round % 5 == 0 ? 0 : (uint64_t)round * 1000003;
        ab.stage_xid = round % 2 ? (uint32_t)(x >> 3) >> (round % 29) : 0;
        ab.stage_reset = round % 6 == 1;
        /* schema registrations (every third round): fields packed apart */
        Walhook__SchemaVersion sv[2], *svp[2] = {&sv[0], &sv[1]};
        wh_buf sch;
        wh_buf_init(&sch, 0);
        if (round % 3 == 1) {
            for (int v = 0; v < 2; v++) {
                walhook__schema_version__init(&sv[v]);
                sv[v].table = v ? "public.t" : "s.u";
                sv[v].fingerprint = x + (uint64_t)v;
                sv[v].first_lsn = v ? 0 : x >> 3;
                sv[v].first_xid = (uint32_t)x;
                sv[v].description.data = (uint8_t *)json;
                sv[v].description.len = (size_t)round * 7;
                size_t pl = walhook__schema_version__get_packed_size(&sv[v]);
                uint8_t tag[12];
                size_t tl = 0;
                tag[tl++] = 0xf2;
                tag[tl++] = 0x01;
                size_t q = pl;
                while (q >= 0x80) {
                    tag[tl++] = (uint8_t)(q | 0x80);
                    q >>= 7;
                }
                tag[tl++] = (uint8_t)q;
                assert_int_equal(wh_buf_append(&sch, tag, tl), WH_OK);
                assert_int_equal(wh_buf_reserve(&sch, pl), WH_OK);
                walhook__schema_version__pack(&sv[v], (uint8_t *)sch.data + sch.len);
                sch.len += pl;
            }
            ab.n_schemas = 2;
            ab.schemas = svp;
        }
        Walhook__Request req;
        walhook__request__init(&req);
        req.body_case = WALHOOK__REQUEST__BODY_APPEND;
        req.append = &ab;
        size_t sz = walhook__request__get_packed_size(&req);
        uint8_t *want = malloc(sz);
        assert_non_null(want);
        walhook__request__pack(&req, want);
        int cnt = 0;
        assert_int_equal(ing_batch_encode(ab.tenant, ev, n, ab.ack_lsn, ab.batch_id, ab.stage_xid,
                                          ab.stage_reset, &sch, &hdr, iov, 2 * N + 3, &cnt),
                         WH_OK);
        wh_buf_reset(&flat);
        for (int k = 0; k < cnt; k++)
            assert_int_equal(wh_buf_append(&flat, iov[k].iov_base, iov[k].iov_len), WH_OK);
        assert_int_equal(flat.len, sz);
        assert_memory_equal(flat.data, want, sz);
        free(want);
        wh_buf_free(&sch);
    }
    /* too few iovecs */
    int cnt = 0;
    assert_int_equal(ing_batch_encode("t", ev, 10, 1, 1, 0, 0, NULL, &hdr, iov, 21, &cnt), WH_ERR);
    wh_buf_free(&hdr);
    wh_buf_free(&flat);
    free(json);
    free(iov);
    free(evp);
    free(ev);
}

int main(void)
{
    wh_log_init("test", WH_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flow),
        cmocka_unit_test(test_store_late),
        cmocka_unit_test(test_encode_matches_pack),
        cmocka_unit_test(test_toast_ops),
        cmocka_unit_test(test_toast_ops_staged),
        cmocka_unit_test(test_staged_then_commit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
