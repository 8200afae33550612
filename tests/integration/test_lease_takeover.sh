#!/usr/bin/env bash
# No two dispatcher replicas post to one target at once, even when the
# receiver is slower than the lease TTL: the receivers answer after 3 s, the
# lease TTL is 1 s, dispatcher.http_timeout_ms 6 s. A replica that takes
# over a lease its holder let lapse (given up to balance with a request
# abandoned, or the holder SIGKILLed with a request in flight) holds it but
# posts only once the old holder's requests have reached their timeout.
#   1. d1 alone holds both targets while changes stream; d2 starts and d1
#      gives one target up to balance (abandoning the request it had there);
#      d2 takes it over and waits before its first POST.
#   2. d2 is SIGKILLed once it posts; d1 takes the target back and waits.
# Checks: every change at both targets with first arrivals in order, and no
# POST that overlapped another POST to the same target (the receivers
# count them). Before the takeover wait, both steps overlapped.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
source "$(dirname "$0")/../lib/leases.sh"
CHANGES=${CHANGES:-1200}
trap wh_cleanup EXIT
export WALHOOK_DISPATCHER_LEASE_TTL_MS=1000 WALHOOK_DISPATCHER_HTTP_TIMEOUT_MS=6000
export WALHOOK_DISPATCHER_COMMIT_INTERVAL_MS=200 WALHOOK_DISPATCHER_BATCH_MAX_EVENTS=300
NAMES=(a b)
wh_lease_stack 2 3000 "${NAMES[@]}"
files=("$WH_TMP/received-a.jsonl" "$WH_TMP/received-b.jsonl")
wh_lease_first d1 2
wh_spawn loadgen "$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --changes "$CHANGES" --seed 7 \
    --max-txn 20 --tables 2 --txn-pause-ms 20 --expect "$WH_TMP/expected.jsonl"
_some() { [ "$(wh_count_events "${files[0]}")" -ge 100 ] && [ "$(wh_count_events "${files[1]}")" -ge 100 ]; }
wh_wait_until 60 _some || wh_fail "no delivery by d1"

# 1. the balance handover
wh_lease_dispatcher d2
wh_wait_until 30 grep -q "lease of default/.* acquired" "$WH_TMP/dispatcher-d2.log" ||
    wh_fail "d2 never took the target d1 gave up"
wh_log "d1: $(grep -m1 "given up to balance" "$WH_TMP/dispatcher-d1.log" | cut -d" " -f4-)"
wh_log "d2: $(grep -m1 "acquired" "$WH_TMP/dispatcher-d2.log" | cut -d" " -f4-)"
tgt=$(grep -m1 -o "lease of default/[a-z]* acquired" "$WH_TMP/dispatcher-d2.log" | cut -d/ -f2 | cut -d" " -f1)

# 2. d2 killed once it posts (its wait over, a request at the receiver)
sleep 3 # what d1 abandoned there has ended
n0=$(wh_count_events "$WH_TMP/received-$tgt.jsonl")
_moved() { [ "$(wh_count_events "$WH_TMP/received-$tgt.jsonl")" -gt "$n0" ]; }
wh_wait_until 30 _moved || wh_fail "target $tgt got nothing after d2 took it"
sleep 0.5 # the receiver holds d2's next request (3 s)
pid=${WH_PIDS[dispatcher-d2]}
kill -KILL "$pid"
wait "$pid" 2>/dev/null
unset "WH_PIDS[dispatcher-d2]"
wh_log "SIGKILL d2 (pid $pid) while it posts to $tgt"

wait "${WH_PIDS[loadgen]}" || wh_fail "load generation failed"
unset "WH_PIDS[loadgen]"
wh_wait_received 120 "$WH_TMP/expected.jsonl" "${files[@]}" || {
    for f in "${files[@]}"; do "$BIN/tests/wh_check" --expect "$WH_TMP/expected.jsonl" --received "$f" || true; done
    wh_fail "receivers did not get every change in order"
}
grep -q "lease of default/$tgt acquired" "$WH_TMP/dispatcher-d1.log" ||
    wh_fail "d1 did not take $tgt back"
wh_log "d1: $(grep "posting starts in" "$WH_TMP/dispatcher-d1.log" | tail -1 | cut -d" " -f4-)"
sleep 3 # a request still at a receiver is counted when it ends
ov=$(wh_overlaps "${NAMES[@]}")
[ "$ov" = 0 ] || wh_fail "$ov POST(s) overlapped another POST to the same target"
dups=0
for f in "${files[@]}"; do dups=$((dups + $(wh_count_events "$f") - CHANGES)); done
wh_pass "a balance handover and a takeover after SIGKILL with a receiver slower than the lease TTL: every change in order at both targets, $dups redelivered, no overlapping POST"
