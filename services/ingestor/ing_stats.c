/* ing_stats: metrics rendering and the control server. */
#include "ing_stats.h"

#include <stdlib.h>

#include "wh_daemon.h"
#include "wh_util.h"

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
    if (wh_metric_header(b, "walhook_changes_received_total", "counter",
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

/* wh_stats_fn for the control endpoint. */
static int render_stats(void *arg, wh_buf *text, const char **state, int *ready, char *reason,
                        size_t reasonlen)
{
    const ing_stats *st = arg;
    int s = (int)wh_gauge_get(&st->state);
    *state = ing_state_name(s);
    *ready = s == ING_STATE_STREAMING;
    return ing_stats_render(st, text);
}

int ing_control_start(wh_control **out, const wh_config *cfg, ing_stats *st, char *err,
                      size_t errlen)
{
    return wh_control_start(out, cfg->ingestor_control, "ingestor", render_stats, st, err, errlen);
}
