#!/usr/bin/env bash
# Per-tenant write budget: with store.tenant_rate_events set low, the store
# answers the ingestor's appends "slow down" (429 + a retry delay) instead of
# acknowledging them; the ingestor waits that long and sends again (its
# credit window pauses PostgreSQL meanwhile). Every change still arrives, in
# order, exactly as generated, and the slot's confirmed position catches up.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
CHANGES=${CHANGES:-6000}
trap wh_cleanup EXIT
wh_require_bins walhook walhook-store walhook-ingestor walhook-dispatcher walhook-admin \
    walhook-receiver tests/wh_loadgen tests/wh_check
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
"$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --tables 2 --setup-only || wh_fail "table setup failed"

RPORT=$(wh_free_port)
APORT=$(wh_free_port)
wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --out "$WH_TMP/received.jsonl"
wh_wait_http "http://127.0.0.1:$RPORT/" 10 || true
# the smallest credit window: the store's slow downs fill it, so the
# ingestor stops reading WAL (walhook_ingestor_window_full_seconds_total)
export WALHOOK_STORE_TENANT_RATE_EVENTS=2000 WALHOOK_STORE_TENANT_BURST_MS=200 \
    WALHOOK_INGESTOR_WINDOW_BYTES=65536
wh_spawn walhook "$BIN/walhook" up --source "$PG_DSN" --target "http://127.0.0.1:$RPORT/hook" \
    --data "$WH_TMP/data" --admin "127.0.0.1:$APORT"
unset WALHOOK_STORE_TENANT_RATE_EVENTS WALHOOK_STORE_TENANT_BURST_MS WALHOOK_INGESTOR_WINDOW_BYTES
wh_wait_http "http://127.0.0.1:$APORT/readyz" 60 || wh_fail "walhook never became ready"

t_load=$EPOCHREALTIME
"$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --changes "$CHANGES" --seed 7 --max-txn 500 \
    --tables 2 --expect "$WH_TMP/expected.jsonl" || wh_fail "load generation failed"
METRICS="http://127.0.0.1:$APORT/metrics"
wh_wait_metric "$METRICS" walhook_events_delivered_total "$CHANGES" 120 ||
    wh_fail "not all events delivered (stored=$(wh_metric "$METRICS" walhook_events_stored_total))"
sleep 0.5
"$BIN/tests/wh_check" --expect "$WH_TMP/expected.jsonl" --received "$WH_TMP/received.jsonl" ||
    wh_fail "received stream does not match the expected changes"
slowed=$(wh_metric "$METRICS" walhook_store_appends_slowed_total)
[ "${slowed:-0}" -gt 0 ] || wh_fail "the store never answered slow down (slowed=$slowed)"
full=$(wh_metric_tcp "$APORT" walhook_ingestor_window_full_seconds_total %.3f)
# more than nothing, and no more than the time the load has been running
awk -v f="$full" -v t0="$t_load" -v t1="$EPOCHREALTIME" 'BEGIN { exit !(f > 0 && f < t1 - t0) }' ||
    wh_fail "window_full_seconds=$full: not within (0, time since the load began)"
grep -q "asks tenant .* to slow down" "$WH_TMP/walhook.log" ||
    wh_fail "the ingestor did not log the store's slow down"
grep -q "to the store failed" "$WH_TMP/walhook.log" &&
    wh_fail "the ingestor treated slow down as a failure"
# the slot's flush position reaches the end of the WAL written by the load
end=$(pg_psql -At -c "SELECT pg_current_wal_lsn()")
_flushed() {
    [ "$(pg_psql -At -c "SELECT confirmed_flush_lsn >= '$end' FROM pg_replication_slots LIMIT 1")" = t ]
}
wh_wait_until 30 _flushed || wh_fail "the slot's confirmed_flush_lsn did not reach $end"
wh_pass "$CHANGES changes through a 2000 events/s tenant budget: $slowed appends slowed down, WAL not read for ${full} s (window full), all delivered in order, slot caught up"
