/* ing_stats: metrics rendering and the control server. */
#include "ing_stats.h"
#include "ing_slot.h"

#include <stdio.h>
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
    case ING_STATE_SNAPSHOTTING:
        return "snapshotting";
    default:
        return "connecting";
    }
}

void ing_stats_set_state(ing_stats *st, int state, const char *reason)
{
    pthread_mutex_lock(&st->reason_mu);
    wh_cut_words(st->reason, sizeof(st->reason), "%s", reason ? reason : "");
    wh_gauge_set(&st->state, state);
    pthread_mutex_unlock(&st->reason_mu);
}

void ing_stats_stream(ing_stats *st, int up)
{
    int64_t since = wh_gauge_get(&st->unread_since_us);
    if (up && since != 0)
        wh_gauge_set(&st->unread_since_us, 0);
    else if (!up && since == 0) /* a throttled stream that is lost: since the throttle */
        wh_gauge_set(&st->unread_since_us, wh_wallclock_us());
}

/* How old the lag figures are, microseconds: 0 while the stream is read. */
static int64_t lag_age_us(const ing_stats *st)
{
    int64_t since = wh_gauge_get(&st->unread_since_us), now = wh_wallclock_us();
    return since > 0 && now > since ? now - since : 0;
}

int ing_stats_render(const ing_stats *st, wh_buf *b)
{
    int64_t flush = wh_gauge_get(&st->confirmed_flush_lsn);
    int64_t end = wh_gauge_get(&st->server_wal_end);
    /* while the stream is not read both keep their last values: the real
     * lag is at least this (nothing is confirmed meanwhile) and grows */
    int64_t lag = end > flush ? end - flush : 0;
    /* several ingestors (one per tenant) feed one admin page: each sample
     * carries its tenant (names are [A-Za-z0-9_.-], no escaping needed) */
    char l[WH_NAME_MAX + 16] = "";
    if (st->tenant[0])
        snprintf(l, sizeof(l), "tenant=\"%s\"", st->tenant);
    if (wh_metric_header(b, "walhook_changes_received_total", "counter",
                         "row changes decoded from the replication stream") ||
        wh_metric_u64(b, "walhook_changes_received_total", l,
                      wh_counter_get(&st->changes_received)) ||
        wh_metric_header(b, "walhook_changes_skipped_total", "counter",
                         "changes and messages not delivered: their transaction's replication "
                         "origin is listed in source.skip_origins") ||
        wh_metric_u64(b, "walhook_changes_skipped_total", l,
                      wh_counter_get(&st->changes_skipped)) ||
        wh_metric_header(b, "walhook_confirmed_flush_lsn", "gauge",
                         "flush LSN last reported to PostgreSQL (numeric)") ||
        wh_metric_i64(b, "walhook_confirmed_flush_lsn", l, flush) ||
        wh_metric_header(b, "walhook_replication_lag_bytes", "gauge",
                         "server WAL end minus confirmed flush LSN") ||
        wh_metric_i64(b, "walhook_replication_lag_bytes", l, lag) ||
        wh_metric_header(b, "walhook_replication_lag_age_seconds", "gauge",
                         "0 while the ingestor reads the replication stream; while it does not "
                         "(disconnected from PostgreSQL, reconnecting, not yet connected, or "
                         "throttled: ingestor.window_bytes sent and not yet acknowledged by the "
                         "store), the time since it did or since the ingestor started: "
                         "walhook_replication_lag_bytes and walhook_confirmed_flush_lsn are "
                         "that old, and the real lag is at least walhook_replication_lag_bytes") ||
        wh_metric_us_as_s(b, "walhook_replication_lag_age_seconds", l, lag_age_us(st)) ||
        wh_metric_header(b, "walhook_ingestor_batches_sent_total", "counter",
                         "batches acknowledged by the store") ||
        wh_metric_u64(b, "walhook_ingestor_batches_sent_total", l,
                      st->bt ? ing_batcher_batches_sent(st->bt) : 0) ||
        wh_metric_header(b, "walhook_ingestor_window_full_seconds_total", "counter",
                         "time the ingestor did not read WAL because ingestor.window_bytes were "
                         "sent and not yet acknowledged by the store (backpressure)") ||
        wh_metric_us_as_s(b, "walhook_ingestor_window_full_seconds_total", l,
                          (int64_t)wh_counter_get(&st->window_full_us)) ||
        wh_metric_header(b, "walhook_ingestor_unacked_bytes", "gauge",
                         "bytes sent to the store and not yet acknowledged") ||
        wh_metric_i64(b, "walhook_ingestor_unacked_bytes", l,
                      st->bt ? ing_batcher_unacked_bytes(st->bt) : 0) ||
        wh_metric_header(b, "walhook_ingestor_append_failing_seconds", "gauge",
                         "how long the ingestor's appends to the store have failed (0: the last "
                         "one succeeded); past ingestor.append_fail_ms it is not ready") ||
        wh_metric_us_as_s(b, "walhook_ingestor_append_failing_seconds", l,
                          st->bt ? (int64_t)ing_batcher_append_failing_ms(st->bt) * 1000 : 0) ||
        wh_metric_header(b, "walhook_ingestor_state", "gauge",
                         "0 connecting, 1 streaming, 2 error (a permanent error, retried)") ||
        wh_metric_i64(b, "walhook_ingestor_state", l, wh_gauge_get(&st->state)) ||
        wh_metric_header(b, "walhook_ingestor_errors_total", "counter",
                         "permanent errors (permission, publication, slot) entered") ||
        wh_metric_u64(b, "walhook_ingestor_errors_total", l, wh_counter_get(&st->errors)) ||
        wh_metric_header(b, "walhook_ingestor_invalid_utf8_total", "counter",
                         "bytes of values that were not UTF-8 (a SQL_ASCII source database), "
                         "sent as U+FFFD") ||
        wh_metric_u64(b, "walhook_ingestor_invalid_utf8_total", l, wh_utf8_replaced()) ||
        wh_metric_header(b, "walhook_ingestor_values_as_text_total", "counter",
                         "values of types that are not built in sent as their text (a JSON "
                         "string): the value did not match the type's shape as read from the "
                         "catalog (a composite type changed); the type is read again") ||
        wh_metric_u64(b, "walhook_ingestor_values_as_text_total", l,
                      wh_counter_get(&st->values_as_text)))
        return WH_ERR;
    const ing_toast_stats *t = &st->toast;
    char lc[WH_NAME_MAX + 40], lo[WH_NAME_MAX + 40], ll[WH_NAME_MAX + 40], ls[WH_NAME_MAX + 40];
    snprintf(ls, sizeof(ls), "%s%sfrom=\"store\"", l, l[0] ? "," : "");
    snprintf(lc, sizeof(lc), "%s%sfrom=\"cache\"", l, l[0] ? "," : "");
    snprintf(lo, sizeof(lo), "%s%sfrom=\"old_row\"", l, l[0] ? "," : "");
    snprintf(ll, sizeof(ll), "%s%sfrom=\"listed\"", l, l[0] ? "," : "");
    if (wh_metric_header(
            b, "walhook_ingestor_unchanged_toast_total", "counter",
            "updates' unchanged TOAST values: filled from the cache (cache), from the store's "
            "cache (store), from a REPLICA IDENTITY FULL old row (old_row), or listed as "
            "unchanged (listed)") ||
        wh_metric_u64(b, "walhook_ingestor_unchanged_toast_total", lc, wh_counter_get(&t->hits)) ||
        wh_metric_u64(b, "walhook_ingestor_unchanged_toast_total", ls,
                      wh_counter_get(&t->from_store)) ||
        wh_metric_u64(b, "walhook_ingestor_unchanged_toast_total", lo,
                      wh_counter_get(&t->from_old)) ||
        wh_metric_u64(b, "walhook_ingestor_unchanged_toast_total", ll,
                      wh_counter_get(&t->misses)) ||
        wh_metric_header(b, "walhook_ingestor_toast_cache_bytes", "gauge",
                         "bytes held by the TOAST value cache (ingestor.toast_cache_bytes)") ||
        wh_metric_i64(b, "walhook_ingestor_toast_cache_bytes", l, wh_gauge_get(&t->bytes)) ||
        wh_metric_header(b, "walhook_ingestor_toast_cache_entries", "gauge",
                         "values held by the TOAST value cache") ||
        wh_metric_i64(b, "walhook_ingestor_toast_cache_entries", l, wh_gauge_get(&t->entries)) ||
        wh_metric_header(b, "walhook_ingestor_toast_cache_evictions_total", "counter",
                         "values dropped from the TOAST value cache to stay within its bound") ||
        wh_metric_u64(b, "walhook_ingestor_toast_cache_evictions_total", l,
                      wh_counter_get(&t->evicted)) ||
        wh_metric_header(b, "walhook_ingestor_toast_store_failed_total", "counter",
                         "TOAST cache lookups the store did not answer in time (the value was "
                         "listed as unchanged)") ||
        wh_metric_u64(b, "walhook_ingestor_toast_store_failed_total", l,
                      wh_counter_get(&t->store_failed)))
        return WH_ERR;
    char ok[WH_NAME_MAX + 40], bad[WH_NAME_MAX + 40];
    snprintf(ok, sizeof(ok), "%s%sresult=\"ok\"", l, l[0] ? "," : "");
    snprintf(bad, sizeof(bad), "%s%sresult=\"error\"", l, l[0] ? "," : "");
    int64_t seen = wh_gauge_get(&st->heartbeat_seen_us);
    if (wh_metric_header(b, "walhook_ingestor_heartbeats_total", "counter",
                         "heartbeat statements run on the source (source.heartbeat_interval_ms)") ||
        wh_metric_u64(b, "walhook_ingestor_heartbeats_total", ok,
                      wh_counter_get(&st->heartbeats_sent)) ||
        wh_metric_u64(b, "walhook_ingestor_heartbeats_total", bad,
                      wh_counter_get(&st->heartbeat_errors)) ||
        wh_metric_header(b, "walhook_ingestor_heartbeats_seen_total", "counter",
                         "heartbeat messages received back through the replication stream") ||
        wh_metric_u64(b, "walhook_ingestor_heartbeats_seen_total", l,
                      wh_counter_get(&st->heartbeats_seen)) ||
        wh_metric_header(b, "walhook_ingestor_last_heartbeat_timestamp_seconds", "gauge",
                         "when the last heartbeat message came through the stream (0: none)") ||
        wh_metric_us_as_s(b, "walhook_ingestor_last_heartbeat_timestamp_seconds", l, seen))
        return WH_ERR;
    int rc = WH_OK;
    pthread_mutex_lock((pthread_mutex_t *)&st->snap_mu);
    if (st->snap_text != NULL)
        rc = wh_buf_puts(b, st->snap_text);
    pthread_mutex_unlock((pthread_mutex_t *)&st->snap_mu);
    pthread_mutex_lock((pthread_mutex_t *)&st->reason_mu);
    rc |= ing_slot_render(st->slot, b, l);
    pthread_mutex_unlock((pthread_mutex_t *)&st->reason_mu);
    return rc;
}

/* wh_stats_fn for the control endpoint. */
static int render_stats(void *arg, wh_buf *text, const char **state, int *ready, char *reason,
                        size_t reasonlen)
{
    ing_stats *st = arg;
    pthread_mutex_lock(&st->reason_mu);
    int s = (int)wh_gauge_get(&st->state);
    if (s != ING_STATE_STREAMING && st->reason[0])
        wh_strlcpy(reason, st->reason, reasonlen);
    pthread_mutex_unlock(&st->reason_mu);
    *state = ing_state_name(s);
    *ready = s == ING_STATE_STREAMING || s == ING_STATE_SNAPSHOTTING;
    /* appends failing for ingestor.append_fail_ms: nothing new is stored,
     * whatever the reason (the store refuses, hangs, or is gone) */
    if (*ready && st->bt != NULL && ing_batcher_append_failing(st->bt, reason, reasonlen) != 0) {
        *state = "append-failing";
        *ready = 0;
    }
    return ing_stats_render(st, text);
}

int ing_control_start(wh_control **out, const wh_config *cfg, ing_stats *st, char *err,
                      size_t errlen)
{
    /* walhook_up{daemon=...} must not repeat across the tenants' ingestors */
    static char name[WH_NAME_MAX + 16];
    if (st->daemon_name[0])
        wh_strlcpy(name, st->daemon_name, sizeof(name));
    else
        wh_strlcpy(name, "ingestor", sizeof(name));
    return wh_control_start(out, cfg->ingestor_control, name, render_stats, st, err, errlen);
}
