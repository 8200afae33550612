#!/usr/bin/env bash
# Dispatcher crash test: 50,000 changes are delivered to two targets, "a" (a
# receiver answering 500 to every 7th request) and "b" (a normal receiver),
# while the dispatcher is SIGKILLed 3 times at random moments and restarted.
# The moments are random points of the delivery progress (between 10 % and
# 80 % of the changes received by the slower target), so every kill hits a
# delivery in flight and every restarted dispatcher still has work. Afterwards
# each receiver has every change at least once, in order, with the right
# values (wh_check per file), and the dispatcher's committed offset of each
# target (walhook_dispatcher_committed_lsn) reached the last event's position.
# That gauge starts at 0 in a new dispatcher process and moves on commits, so
# the last TAIL changes (tables t1..t3 of schema s2, expected files
# concatenated) are made after the last restart: the final dispatcher process
# always has something to commit for both targets.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
CHANGES=${CHANGES:-50000}
SEED=${SEED:-$RANDOM}
KILLS=${KILLS:-3}
TAIL=${TAIL:-1000}
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
mkdir -m 700 "$WH_TMP/data" # private, as every daemon requires
RA="$WH_TMP/received-a.jsonl"
RB="$WH_TMP/received-b.jsonl"
wh_spawn receiver-a "$BIN/walhook-receiver" --listen "127.0.0.1:$PA" --out "$RA" --fail-every 7
wh_spawn receiver-b "$BIN/walhook-receiver" --listen "127.0.0.1:$PB" --out "$RB"
DAEMONS=(store ingestor dispatcher admin)
start_daemon() { wh_spawn "$1" "$BIN/walhook-$1" -c "$CONF"; }
for d in "${DAEMONS[@]}"; do
    start_daemon "$d"
    [ "$d" = store ] && { wh_wait_until 10 test -S "$WH_TMP/data/store.sock" || sleep 0.3; }
done
wh_wait_slot_active walhook 60 || wh_fail "the ingestor never started streaming"
wh_wait_http "http://127.0.0.1:$APORT/readyz" 30 || wh_fail "walhook never became ready"
METRICS="http://127.0.0.1:$APORT/metrics"

# Only the dispatcher is killed; any other daemon dying is a failure.
check_alive() {
    local d
    for d in store ingestor admin receiver-a receiver-b; do
        wh_alive "$d" || wh_fail "$d exited during the test"
    done
}
slowest() {
    local a b
    a=$(wh_count_events "$RA")
    b=$(wh_count_events "$RB")
    echo $(( a < b ? a : b ))
}

# Random kill points in [10 %, 80 %] of CHANGES, ascending.
mapfile -t points < <(for _ in $(seq 1 "$KILLS"); do
    echo $(( CHANGES / 10 + (RANDOM * 32768 + RANDOM) % (CHANGES * 7 / 10) )); done | sort -n)
wh_log "seed $SEED: $CHANGES changes, dispatcher SIGKILLed at ${points[*]} changes delivered"
wh_spawn loadgen "$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --changes "$((CHANGES - TAIL))" \
    --seed "$SEED" --max-txn 500 --tables 3 --expect "$WH_TMP/expected1.jsonl"

kills=0
for p in "${points[@]}"; do
    _reached() { check_alive; wh_alive dispatcher || wh_fail "the dispatcher exited by itself"
                 [ "$(slowest)" -ge "$1" ]; }
    wh_wait_until 60 _reached "$p" || wh_fail "delivery stalled at $(slowest) changes (waiting for $p)"
    pid=${WH_PIDS[dispatcher]}
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    kills=$((kills + 1))
    wh_log "SIGKILL dispatcher (pid $pid) at a=$(wh_count_events "$RA") b=$(wh_count_events "$RB") envelopes received"
    r=$(( RANDOM % 5 ))
    sleep "0.$r"
    start_daemon dispatcher
done

wait "${WH_PIDS[loadgen]}" || wh_fail "load generation failed"
unset "WH_PIDS[loadgen]"
"$BIN/tests/wh_loadgen" --dsn "$DSN2" --changes "$TAIL" --seed "$((SEED + 1))" --max-txn 500 \
    --tables 3 --expect "$WH_TMP/expected2.jsonl" >>"$WH_TMP/loadgen.log" 2>&1 ||
    wh_fail "load generation (tail) failed"
cat "$WH_TMP/expected1.jsonl" "$WH_TMP/expected2.jsonl" >"$WH_TMP/expected.jsonl"
wh_log "generator done; waiting for both receivers to have everything"
wh_wait_received 90 "$WH_TMP/expected.jsonl" "$RA" "$RB" || {
    check_alive
    "$BIN/tests/wh_check" --expect "$WH_TMP/expected.jsonl" --received "$RA" --received "$RB"
    wh_fail "receivers did not get every change (a=$(wh_count_events "$RA") b=$(wh_count_events "$RB") envelopes)"
}
wh_log "both receivers have every change"
check_alive
wh_alive dispatcher || wh_fail "the dispatcher exited by itself"
"$BIN/tests/wh_check" --expect "$WH_TMP/expected.jsonl" --received "$RA" --received "$RB" ||
    wh_fail "received streams do not match the expected changes"

# The committed offsets must reach the last position (commit follows the 2xx).
for t in a b; do
    f="$WH_TMP/received-$t.jsonl"
    last=$(wh_last_lsn "$f")
    [ -n "$last" ] || wh_fail "no LSN in $f"
    want=$(wh_lsn_num "$last")
    _committed() { [ "$(wh_metric_label "$METRICS" walhook_dispatcher_committed_lsn "target=\"$1\"")" -ge "$2" ] 2>/dev/null; }
    wh_wait_until 30 _committed "$t" "$want" ||
        wh_fail "target $t: committed offset $(wh_metric_label "$METRICS" walhook_dispatcher_committed_lsn "target=\"$t\"") never reached $want ($last)"
done
wh_log "committed offsets reached the end"
failures=$(wh_metric_label "$METRICS" walhook_delivery_failures_total 'target="a"')
dups_a=$(( $(wh_count_events "$RA") - CHANGES ))
dups_b=$(( $(wh_count_events "$RB") - CHANGES ))
# Stop in the order of `walhook up` (consumers before the store), so that no
# daemon waits for a reply from a store that is already gone.
for d in dispatcher admin ingestor store receiver-a receiver-b; do wh_kill "$d" TERM; done
wh_pass "$CHANGES changes, $kills dispatcher SIGKILLs, target a failing every 7th request ($failures failures since the last restart): both targets got every change in order (redelivered: a=$dups_a b=$dups_b), committed offsets reached $last"
