/* ing_stats: metrics rendering and the control server. */
#include "ing_stats.h"

#include <stdlib.h>

#include "wh_ipc.h"
#include "wh_util.h"

struct ing_control {
    wh_server *srv;
    ing_stats *st;
};

typedef struct reply_mem {
    Walhook__StatsReply sr;
    wh_buf text;
} reply_mem;

const char *ing_state_name(int state)
{
    switch (state) {
    case ING_STATE_STREAMING:
        return "streaming";
    case ING_STATE_ERROR:
        return "error";
    default:
        return "connecting";
    }
}

int ing_stats_render(const ing_stats *st, wh_buf *b)
{
    int64_t flush = wh_gauge_get(&st->confirmed_flush_lsn);
    int64_t end = wh_gauge_get(&st->server_wal_end);
    int64_t lag = end > flush ? end - flush : 0;
    long rss = wh_peak_rss_kib();
    const char *d = "daemon=\"ingestor\"";
    if (wh_metric_header(b, "walhook_up", "gauge", "1 when the daemon runs") ||
        wh_metric_u64(b, "walhook_up", d, 1) ||
        wh_metric_header(b, "walhook_peak_rss_bytes", "gauge", "peak resident set size") ||
        wh_metric_i64(b, "walhook_peak_rss_bytes", d, rss > 0 ? (int64_t)rss * 1024 : 0) ||
        wh_metric_header(b, "walhook_changes_received_total", "counter",
                         "row changes decoded from the replication stream") ||
        wh_metric_u64(b, "walhook_changes_received_total", "",
                      wh_counter_get(&st->changes_received)) ||
        wh_metric_header(b, "walhook_confirmed_flush_lsn", "gauge",
                         "flush LSN last reported to PostgreSQL (numeric)") ||
        wh_metric_i64(b, "walhook_confirmed_flush_lsn", "", flush) ||
        wh_metric_header(b, "walhook_replication_lag_bytes", "gauge",
                         "server WAL end minus confirmed flush LSN") ||
        wh_metric_i64(b, "walhook_replication_lag_bytes", "", lag) ||
        wh_metric_header(b, "walhook_ingestor_batches_sent_total", "counter",
                         "batches acknowledged by the store") ||
        wh_metric_u64(b, "walhook_ingestor_batches_sent_total", "",
                      st->bt ? ing_batcher_batches_sent(st->bt) : 0) ||
        wh_metric_header(b, "walhook_ingestor_unacked_bytes", "gauge",
                         "bytes sent to the store and not yet acknowledged") ||
        wh_metric_i64(b, "walhook_ingestor_unacked_bytes", "",
                      st->bt ? ing_batcher_unacked_bytes(st->bt) : 0))
        return WH_ERR;
    return WH_OK;
}

static void on_request(void *arg, const Walhook__Request *req, Walhook__Reply *rep, void **cookie)
{
    ing_control *c = arg;
    if (req->body_case != WALHOOK__REQUEST__BODY_STATS) {
        wh_reply_error(rep, 1, "the ingestor only answers Stats");
        return;
    }
    reply_mem *m = calloc(1, sizeof(*m));
    if (!m) {
        wh_reply_error(rep, 1, "out of memory");
        return;
    }
    walhook__stats_reply__init(&m->sr);
    wh_buf_init(&m->text, 0);
    if (ing_stats_render(c->st, &m->text) != WH_OK || wh_buf_cstr(&m->text) != WH_OK) {
        wh_buf_free(&m->text);
        free(m);
        wh_reply_error(rep, 1, "cannot render metrics");
        return;
    }
    int state = (int)wh_gauge_get(&c->st->state);
    m->sr.daemon = "ingestor";
    m->sr.state = (char *)ing_state_name(state);
    m->sr.ready = state == ING_STATE_STREAMING;
    m->sr.metrics_text = m->text.data;
    rep->body_case = WALHOOK__REPLY__BODY_STATS;
    rep->stats = &m->sr;
    *cookie = m;
}

static void on_done(void *arg, Walhook__Reply *rep, void *cookie)
{
    reply_mem *m = cookie;
    if (m) {
        wh_buf_free(&m->text);
        free(m);
    }
}

int ing_control_start(ing_control **out, const wh_config *cfg, ing_stats *st, char *err,
                      size_t errlen)
{
    ing_control *c = calloc(1, sizeof(*c));
    if (!c)
        return wh_seterr(err, errlen, "out of memory");
    c->st = st;
    if (wh_server_start(&c->srv, cfg->ingestor_control, 1, 64 * 1024, on_request, on_done, c, err,
                        errlen) != WH_OK) {
        free(c);
        return WH_ERR;
    }
    *out = c;
    return WH_OK;
}

void ing_control_stop(ing_control *c)
{
    if (!c)
        return;
    wh_server_stop(c->srv);
    free(c);
}
