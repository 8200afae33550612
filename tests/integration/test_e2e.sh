#!/usr/bin/env bash
# End to end: 10,000 mixed changes over 3 tables in transactions of 1..500
# rows go PostgreSQL -> `walhook up` -> a real HTTP receiver; every change must
# arrive, in commit order, with the right values (wh_check).
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
CHANGES=${CHANGES:-10000}
SEED=${SEED:-42}
trap wh_cleanup EXIT
wh_require_bins walhook walhook-store walhook-ingestor walhook-dispatcher walhook-admin \
    walhook-receiver tests/wh_loadgen tests/wh_check
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
"$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --tables 3 --setup-only || wh_fail "table setup failed"

RPORT=$(wh_free_port)
APORT=$(wh_free_port)
wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --out "$WH_TMP/received.jsonl"
wh_wait_http "http://127.0.0.1:$RPORT/" 10 || true # any answer is fine; just give it time
wh_spawn walhook "$BIN/walhook" up --source "$PG_DSN" --target "http://127.0.0.1:$RPORT/hook" \
    --data "$WH_TMP/data" --admin "127.0.0.1:$APORT"
wh_wait_http "http://127.0.0.1:$APORT/readyz" 60 || wh_fail "walhook never became ready"
wh_log "ready; generating $CHANGES changes"

"$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --changes "$CHANGES" --seed "$SEED" --max-txn 500 \
    --tables 3 --expect "$WH_TMP/expected.jsonl" || wh_fail "load generation failed"

METRICS="http://127.0.0.1:$APORT/metrics"
wh_wait_metric "$METRICS" walhook_events_delivered_total "$CHANGES" 120 ||
    wh_fail "not all events delivered (stored=$(wh_metric "$METRICS" walhook_events_stored_total))"
sleep 0.5 # let a possible redelivery land before checking
"$BIN/tests/wh_check" --expect "$WH_TMP/expected.jsonl" --received "$WH_TMP/received.jsonl" ||
    wh_fail "received stream does not match the expected changes"

wh_alive walhook || wh_fail "walhook up exited early"
# cpu_scheduling = batch (the default): every thread of every daemon runs as
# SCHED_BATCH (policy 3: field 41 of /proc/TID/stat)
for d in store ingestor dispatcher admin; do
    dp=$(cat "$WH_TMP/data/$d.pid" 2>/dev/null) || wh_fail "no pid file for walhook-$d"
    n=0
    for st in /proc/"$dp"/task/*/stat; do
        line=$(cat "$st" 2>/dev/null) || continue # the thread just ended
        pol=$(echo "${line##*) }" | awk '{ print $39 }')
        [ "$pol" = 3 ] || wh_fail "walhook-$d thread ${st%/stat} runs with policy $pol, not SCHED_BATCH"
        n=$((n + 1))
    done
    [ "$n" -gt 1 ] || wh_fail "walhook-$d: found $n threads"
done
pid=${WH_PIDS[walhook]}
kill -TERM "$pid"
rc=0
for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && wh_fail "walhook up did not stop within 15 s of SIGTERM"
wait "$pid" || rc=$?
unset "WH_PIDS[walhook]"
[ "$rc" = 0 ] || wh_fail "walhook up exited with $rc after SIGTERM"
wh_pass "$CHANGES changes delivered in order with correct values; every daemon thread SCHED_BATCH"
