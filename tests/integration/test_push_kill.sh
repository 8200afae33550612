#!/usr/bin/env bash
# Pushed events under crashes (issue 6 latency): the store sends each synced
# Append's events with its durability notification and a dispatcher reader
# exactly at the pushed range's start delivers them without a Read. Here a
# live stream of small transactions (CHANGES, paced so that appends are
# small and pushed) goes to two targets, "a" (a receiver answering 500 to
# every 7th request) and "b", while the store and the dispatcher are
# SIGKILLed in turn (KILLS in all) at random points of the delivery progress
# and restarted. Every kill loses notifications and positions in flight; the
# readers must fall back to Reads and never skip or reorder. Afterwards each
# receiver has every change, first arrivals in order with the right values
# (wh_check), and pushes were really used: the store's pushed notifications
# and the final dispatcher's push batches are counted (the last TAIL changes
# are written after the last restart).
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
CHANGES=${CHANGES:-6000}
SEED=${SEED:-$RANDOM}
KILLS=${KILLS:-4}
TAIL=${TAIL:-600}
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-admin \
    walhook-receiver tests/wh_loadgen tests/wh_check
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
DSN2="$PG_DSN?options=-csearch_path%3Ds2"
pg_psql -c "CREATE SCHEMA s2" || wh_fail "cannot create schema s2"
"$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --tables 3 --setup-only || wh_fail "table setup failed"
"$BIN/tests/wh_loadgen" --dsn "$DSN2" --tables 3 --setup-only || wh_fail "table setup (s2) failed"

PA=$(wh_free_port)
PB=$(wh_free_port)
while [ "$PB" = "$PA" ]; do PB=$(wh_free_port); done
APORT=$(wh_free_port)
CONF="$WH_TMP/walhook.conf"
wh_write_conf "$CONF" "$PG_DSN" "$WH_TMP/data" "$APORT" \
    "http://127.0.0.1:$PA/hook" "http://127.0.0.1:$PB/hook"
export WALHOOK_TARGETS="a=http://127.0.0.1:$PA/hook,b=http://127.0.0.1:$PB/hook"
mkdir -m 700 "$WH_TMP/data"
RA="$WH_TMP/received-a.jsonl"
RB="$WH_TMP/received-b.jsonl"
wh_spawn receiver-a "$BIN/walhook-receiver" --listen "127.0.0.1:$PA" --out "$RA" --fail-every 7
wh_spawn receiver-b "$BIN/walhook-receiver" --listen "127.0.0.1:$PB" --out "$RB"
start_daemon() { wh_spawn "$1" "$BIN/walhook-$1" -c "$CONF"; }
for d in store ingestor dispatcher admin; do
    start_daemon "$d"
    [ "$d" = store ] && { wh_wait_until 10 test -S "$WH_TMP/data/store.sock" || sleep 0.3; }
done
wh_wait_slot_active walhook 60 || wh_fail "the ingestor never started streaming"
wh_wait_http "http://127.0.0.1:$APORT/readyz" 30 || wh_fail "walhook never became ready"
M="http://127.0.0.1:$APORT/metrics"

check_alive() {
    local d
    for d in store ingestor dispatcher admin receiver-a receiver-b; do
        wh_alive "$d" || wh_fail "$d exited during the test"
    done
}
slowest() {
    local a b
    a=$(wh_count_events "$RA")
    b=$(wh_count_events "$RB")
    echo $((a < b ? a : b))
}

mapfile -t points < <(for _ in $(seq 1 "$KILLS"); do
    echo $((CHANGES / 10 + (RANDOM * 32768 + RANDOM) % (CHANGES * 7 / 10))); done | sort -n)
wh_log "seed $SEED: $CHANGES changes, SIGKILLs (store and dispatcher in turn) at ${points[*]} changes delivered"
wh_spawn loadgen "$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --changes "$((CHANGES - TAIL))" \
    --seed "$SEED" --max-txn 4 --txn-pause-ms 1 --tables 3 --expect "$WH_TMP/expected1.jsonl"

k=0
for p in "${points[@]}"; do
    _reached() { check_alive; [ "$(slowest)" -ge "$1" ]; }
    wh_wait_until 90 _reached "$p" || wh_fail "delivery stalled at $(slowest) changes (waiting for $p)"
    victim=store
    [ $((k % 2)) = 1 ] && victim=dispatcher
    pid=${WH_PIDS[$victim]}
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    k=$((k + 1))
    wh_log "SIGKILL $victim (pid $pid) at a=$(wh_count_events "$RA") b=$(wh_count_events "$RB") envelopes received"
    sleep "0.$((RANDOM % 5))"
    start_daemon "$victim"
done

wait "${WH_PIDS[loadgen]}" || wh_fail "load generation failed"
unset "WH_PIDS[loadgen]"
p0=$(wh_metric "$M" walhook_dispatcher_push_batches_total)
"$BIN/tests/wh_loadgen" --dsn "$DSN2" --changes "$TAIL" --seed "$((SEED + 1))" --max-txn 4 \
    --txn-pause-ms 1 --tables 3 --expect "$WH_TMP/expected2.jsonl" >>"$WH_TMP/loadgen.log" 2>&1 ||
    wh_fail "load generation (tail) failed"
cat "$WH_TMP/expected1.jsonl" "$WH_TMP/expected2.jsonl" >"$WH_TMP/expected.jsonl"
wh_wait_received 120 "$WH_TMP/expected.jsonl" "$RA" "$RB" || {
    check_alive
    "$BIN/tests/wh_check" --expect "$WH_TMP/expected.jsonl" --received "$RA" --received "$RB"
    wh_fail "receivers did not get every change (a=$(wh_count_events "$RA") b=$(wh_count_events "$RB") envelopes)"
}
check_alive
"$BIN/tests/wh_check" --expect "$WH_TMP/expected.jsonl" --received "$RA" --received "$RB" ||
    wh_fail "received streams do not match the expected changes"
pushed=$(wh_metric "$M" walhook_store_notifications_pushed_total)
p1=$(wh_metric "$M" walhook_dispatcher_push_batches_total)
reads=$(wh_metric "$M" walhook_store_reads_total)
[ "$pushed" -gt 0 ] || wh_fail "the store pushed no events with its notifications"
[ "$p1" -gt "$p0" ] || wh_fail "the dispatcher took no batch from pushed events in the tail ($p0 -> $p1)"
dups_a=$(($(wh_count_events "$RA") - CHANGES))
dups_b=$(($(wh_count_events "$RB") - CHANGES))
for d in dispatcher admin ingestor store receiver-a receiver-b; do wh_kill "$d" TERM; done
wh_pass "$CHANGES changes, $k SIGKILLs (store, dispatcher in turn): both targets got every change in order (redelivered: a=$dups_a b=$dups_b); since the last store start $pushed pushed notifications, $reads Reads; the final dispatcher took $p1 batches from pushes ($((p1 - p0)) in the tail)"
