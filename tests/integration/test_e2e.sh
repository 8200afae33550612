#!/usr/bin/env bash
# End to end: 10,000 mixed changes over 3 tables in transactions of 1..500
# rows go PostgreSQL -> `walhook up` -> a real HTTP receiver; every change must
# arrive, in commit order, with the right values (wh_check). Also: each
# daemon's threads run with the scheduling policy cpu_scheduling = auto gives,
# and on the one CPU cpu_affinity names (the last this shell may run on).
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
# cpu_affinity: every daemon and each of its threads on one CPU
CPU=$(awk '/^Cpus_allowed_list/ {n = split($2, a, /[,-]/); print a[n]}' /proc/self/status)
[ -n "$CPU" ] || wh_fail "cannot read this shell's CPUs"
WALHOOK_CPU_AFFINITY=$CPU wh_spawn walhook "$BIN/walhook" up --source "$PG_DSN" --target "http://127.0.0.1:$RPORT/hook" \
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
# cpu_scheduling = auto (the default): every thread of the ingestor, the
# dispatcher and the admin runs as SCHED_BATCH (policy 3: field 41 of
# /proc/TID/stat), every thread of the store as SCHED_OTHER (0), whatever of
# the two this shell runs with
for d in store ingestor dispatcher admin; do
    want=3
    [ "$d" = store ] && want=0
    dp=$(cat "$WH_TMP/data/$d.pid" 2>/dev/null) || wh_fail "no pid file for walhook-$d"
    n=0
    for st in /proc/"$dp"/task/*/stat; do
        line=$(cat "$st" 2>/dev/null) || continue # the thread just ended
        read -ra f <<<"${line##*) }"
        [ "${f[38]}" = "$want" ] ||
            wh_fail "walhook-$d thread ${st%/stat} runs with policy ${f[38]}, not $want"
        cpus=$(awk '/^Cpus_allowed_list/ {print $2}' "${st%/stat}/status" 2>/dev/null) || continue
        [ -z "$cpus" ] || [ "$cpus" = "$CPU" ] ||
            wh_fail "walhook-$d thread ${st%/stat} may run on CPUs $cpus, not only $CPU (cpu_affinity)"
        n=$((n + 1))
    done
    [ "$n" -gt 1 ] || wh_fail "walhook-$d: found $n threads"
done
wh_pass "$CHANGES changes delivered in order with correct values; daemon threads SCHED_BATCH but the store's, all on CPU $CPU"
