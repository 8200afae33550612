#!/usr/bin/env bash
# Dispatcher scale-out with leases: two dispatcher processes share four
# targets (dispatcher.lease_ttl_ms, distinct dispatcher.id, each with its own
# control endpoint). Every receiver counts POSTs that overlap another POST in
# flight (the dispatcher posts one request at a time per target, so an
# overlap means two dispatchers posted to the same target at once) and
# answers after 20 ms so that overlaps would be seen. While changes stream,
# the targets are balanced over both dispatchers; then one is SIGKILLed and
# its targets move to the other within the lease TTL and resume at the
# committed offset: every receiver gets every change in order, none overlaps.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
source "$(dirname "$0")/../lib/leases.sh"
CHANGES=${CHANGES:-20000}
SEED=${SEED:-$RANDOM}
TTL=${TTL:-3000}
trap wh_cleanup EXIT
NAMES=(a b c d)
export WALHOOK_DISPATCHER_LEASE_TTL_MS="$TTL"
wh_lease_stack 3 20 "${NAMES[@]}"
start_dispatcher() { WALHOOK_DISPATCHER_ID="$1" wh_spawn "dispatcher-$1" "$BIN/walhook-dispatcher" -c "$CONF"; }
start_dispatcher d1
start_dispatcher d2
wh_wait_slot_active walhook 60 || wh_fail "the ingestor never started streaming"
for d in d1 d2; do
    wh_wait_until 10 test -S "$WH_TMP/data/dispatcher-$d.sock" ||
        wh_fail "dispatcher $d has no control endpoint of its own (dispatcher-$d.sock)"
done

# grep -c prints 0 itself when nothing matches (and exits 1): no "|| echo 0"
held() {
    local n
    n=$(grep -c "lease of default/.* acquired" "$WH_TMP/dispatcher-$1.log" 2>/dev/null)
    echo "${n:-0}"
}
check_alive() {
    local d
    for d in store ingestor receiver-a receiver-b receiver-c receiver-d; do
        wh_alive "$d" || wh_fail "$d exited during the test"
    done
}

wh_log "seed $SEED: $CHANGES changes over 4 targets, two dispatchers, lease TTL $TTL ms"
wh_spawn loadgen "$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --changes "$CHANGES" --seed "$SEED" \
    --max-txn 200 --tables 3 --txn-pause-ms 2 --expect "$WH_TMP/expected.jsonl"

# both dispatchers get targets (balanced: two each)
_balanced() { check_alive; [ "$(held d1)" -ge 1 ] && [ "$(held d2)" -ge 1 ]; }
wh_wait_until 30 _balanced || wh_fail "targets were not shared (d1 acquired $(held d1), d2 $(held d2))"
wh_log "targets shared: d1 acquired $(held d1) lease(s), d2 $(held d2)"
_progress() { check_alive; [ "$(wh_count_events "$WH_TMP/received-a.jsonl")" -ge $((CHANGES / 4)) ]; }
wh_wait_until 60 _progress || wh_fail "delivery did not progress"

# SIGKILL d1: its targets move to d2 within the TTL
pid=${WH_PIDS[dispatcher-d1]}
kill -KILL "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
unset "WH_PIDS[dispatcher-d1]"
killed_at=$(date +%s%N)
wh_log "SIGKILL dispatcher d1 (pid $pid)"
# d1 held what it acquired minus what it gave up or lost
d1_held=$(( $(held d1) - $(grep -c "lease of default/.* \(given up\|lost\)" "$WH_TMP/dispatcher-d1.log") ))
before=$(held d2)
_took_over() { [ "$(held d2)" -ge $((before + d1_held)) ]; }
wh_wait_until $((TTL / 1000 + 15)) _took_over ||
    wh_fail "d2 never took d1's $d1_held target(s) over (acquired $(( $(held d2) - before )))"
took_ms=$(( ($(date +%s%N) - killed_at) / 1000000 ))
wh_log "d2 acquired d1's $d1_held target(s) ${took_ms} ms after the kill (TTL $TTL ms)"

wait "${WH_PIDS[loadgen]}" || wh_fail "load generation failed"
unset "WH_PIDS[loadgen]"
files=()
for t in "${NAMES[@]}"; do files+=("$WH_TMP/received-$t.jsonl"); done
wh_wait_received 120 "$WH_TMP/expected.jsonl" "${files[@]}" || {
    check_alive
    for f in "${files[@]}"; do
        "$BIN/tests/wh_check" --expect "$WH_TMP/expected.jsonl" --received "$f" || true
    done
    wh_fail "receivers did not get every change"
}
ov=$(wh_overlaps "${NAMES[@]}")
[ "$ov" = 0 ] || wh_fail "$ov POST(s) overlapped another POST to the same target: two dispatchers posted at once"
wh_alive dispatcher-d2 || wh_fail "dispatcher d2 exited by itself"
dups=0
for f in "${files[@]}"; do dups=$((dups + $(wh_count_events "$f") - CHANGES)); done
for d in dispatcher-d2 ingestor store receiver-a receiver-b receiver-c receiver-d; do wh_kill "$d" TERM; done
wh_pass "$CHANGES changes to 4 targets shared by 2 dispatchers, one SIGKILLed: its $d1_held target(s) moved in ${took_ms} ms (TTL $TTL ms), every change delivered in order to every target ($dups redelivered), no overlapping POSTs"
