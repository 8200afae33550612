#!/usr/bin/env bash
# Crash test: a 100,000-change stream while the store and the ingestor are
# each SIGKILLed 3 times at random moments (restarted ~0.5 s later). Afterwards
# the store must hold every change exactly once with no gap (walhook-store
# --dump), and the receiver must have got every change at least once, in order.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
CHANGES=${CHANGES:-100000}
SEED=${SEED:-$RANDOM}
KILLS=${KILLS:-3}
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-admin \
    walhook-receiver tests/wh_loadgen tests/wh_check
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
"$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --tables 3 --setup-only || wh_fail "table setup failed"

RPORT=$(wh_free_port)
APORT=$(wh_free_port)
CONF="$WH_TMP/walhook.conf"
wh_write_conf "$CONF" "$PG_DSN" "$WH_TMP/data" "$APORT" "http://127.0.0.1:$RPORT/hook"
mkdir -m 700 "$WH_TMP/data" # private, as every daemon requires

wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --out "$WH_TMP/received.jsonl"
# Phase 1 runs without the dispatcher, so the store keeps every event (no
# consumer offset = no GC) and the dump can be checked for completeness.
DAEMONS=(store ingestor admin)
declare -A UNEXPECTED=()
start_daemon() { wh_spawn "$1" "$BIN/walhook-$1" -c "$CONF"; }
for d in "${DAEMONS[@]}"; do
    start_daemon "$d"
    [ "$d" = store ] && sleep 0.3
done
wh_wait_slot_active walhook 60 || wh_fail "the ingestor never started streaming"

# Restarts any daemon that died without being killed by us (reported, not hidden).
supervise() {
    local d
    for d in "${DAEMONS[@]}"; do
        if ! wh_alive "$d"; then
            wait "${WH_PIDS[$d]}" 2>/dev/null
            local rc=$?
            wh_log "WARNING: $d exited by itself (rc=$rc); restarting"
            UNEXPECTED[$d]=$(( ${UNEXPECTED[$d]:-0} + 1 ))
            start_daemon "$d"
        fi
    done
}

wh_log "seed $SEED: generating $CHANGES changes with $KILLS kills each of store and ingestor"
wh_spawn loadgen "$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --changes "$CHANGES" --seed "$SEED" \
    --max-txn 500 --tables 3 --expect "$WH_TMP/expected.jsonl"

victims=()
for _ in $(seq 1 "$KILLS"); do victims+=(store ingestor); done
for i in $(seq $(( ${#victims[@]} - 1 )) -1 1); do # shuffle
    j=$(( RANDOM % (i + 1) ))
    t=${victims[$i]}; victims[$i]=${victims[$j]}; victims[$j]=$t
done
for v in "${victims[@]}"; do
    r=$(( RANDOM % 15 + 2 ))
    sleep "$((r / 10)).$((r % 10))"
    supervise
    wh_log "SIGKILL $v"
    kill -KILL "${WH_PIDS[$v]}" 2>/dev/null
    wait "${WH_PIDS[$v]}" 2>/dev/null
    sleep 0.5
    start_daemon "$v"
done

lp=${WH_PIDS[loadgen]}
wait "$lp" || wh_fail "load generation failed"
unset "WH_PIDS[loadgen]"
END_LSN=$(pg_psql -At -c "SELECT pg_current_wal_lsn()")
wh_log "generator done at $END_LSN; waiting for the slot's confirmed flush to reach it"

# Everything is durable once the slot's confirmed_flush_lsn reached END_LSN
# (the ingestor confirms only what the store acknowledged).
deadline=$(( $(date +%s) + ${WAIT_SECS:-180} ))
while :; do
    supervise
    ok=$(pg_psql -At -c "SELECT coalesce(confirmed_flush_lsn >= '$END_LSN'::pg_lsn, false)
                         FROM pg_replication_slots WHERE slot_name = 'walhook'")
    [ "$ok" = t ] && break
    [ "$(date +%s)" -ge "$deadline" ] && wh_fail "confirmed flush never reached $END_LSN"
    sleep 0.5
done

for d in admin ingestor store; do wh_kill "$d" TERM; done
"$BIN/walhook-store" --dump -c "$CONF" >"$WH_TMP/dump.txt" 2>"$WH_TMP/dump.log" ||
    wh_fail "walhook-store --dump failed"
"$BIN/tests/wh_check" --dump "$WH_TMP/dump.txt" --expect "$WH_TMP/expected.jsonl" ||
    wh_fail "store does not hold every change exactly once"

# Phase 2: deliver everything to the receiver.
DAEMONS=(store ingestor dispatcher admin)
for d in "${DAEMONS[@]}"; do
    start_daemon "$d"
    [ "$d" = store ] && sleep 0.3
done
METRICS="http://127.0.0.1:$APORT/metrics"
deadline=$(( $(date +%s) + ${WAIT_SECS:-180} ))
while :; do
    supervise
    n=$(wh_metric "$METRICS" walhook_events_delivered_total)
    [ -n "$n" ] && [ "$n" -ge "$CHANGES" ] 2>/dev/null && break
    [ "$(date +%s)" -ge "$deadline" ] && wh_fail "only $n of $CHANGES events delivered in time"
    sleep 0.5
done
sleep 0.5
for d in admin dispatcher ingestor store; do wh_kill "$d" TERM; done
wh_kill receiver TERM
"$BIN/tests/wh_check" --expect "$WH_TMP/expected.jsonl" --received "$WH_TMP/received.jsonl" ||
    wh_fail "receiver did not get every change in order"
extra=""
for d in "${!UNEXPECTED[@]}"; do extra+=" $d:${UNEXPECTED[$d]}"; done
[ -n "$extra" ] && extra=" (daemons that exited by themselves and were restarted:$extra)"
wh_pass "$CHANGES changes, $KILLS SIGKILLs each of store and ingestor: stored exactly once without gaps, delivered in order$extra"
