#!/usr/bin/env bash
# A dispatcher whose lease renewals get no answer stops posting to the
# target once the lease's local validity (4/5 of the TTL after the request
# that got it) ends, before the store's expiry would let another replica take
# the target; when the store answers again it takes the lease again and goes
# on from the committed offset. The store is frozen with SIGSTOP (a stuck
# store or a partition between the dispatcher and the store): the dispatcher
# must log the lapse and drop the target from its loop, and the receiver must
# get no POST from then until the store is thawed. Every change still
# arrives, in order.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
CHANGES=${CHANGES:-6000}
SEED=${SEED:-$RANDOM}
TTL=${TTL:-2000}
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-receiver \
    tests/wh_loadgen tests/wh_check
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
"$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --tables 2 --setup-only || wh_fail "table setup failed"

port=$(wh_free_port)
wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$port" --out "$WH_TMP/received.jsonl"
wh_wait_http "http://127.0.0.1:$port/" 5 || wh_fail "the receiver did not start"
CONF="$WH_TMP/walhook.conf"
wh_write_conf "$CONF" "$PG_DSN" "$WH_TMP/data" "$(wh_free_port)"
export WALHOOK_TARGETS="a=http://127.0.0.1:$port/hook"
export WALHOOK_DISPATCHER_LEASE_TTL_MS="$TTL"
mkdir -m 700 "$WH_TMP/data"
wh_spawn store "$BIN/walhook-store" -c "$CONF"
wh_wait_until 10 test -S "$WH_TMP/data/store.sock" || wh_fail "the store did not start"
wh_spawn ingestor "$BIN/walhook-ingestor" -c "$CONF"
WALHOOK_DISPATCHER_ID=d1 wh_spawn dispatcher "$BIN/walhook-dispatcher" -c "$CONF"
wh_wait_slot_active walhook 60 || wh_fail "the ingestor never started streaming"
LOG="$WH_TMP/dispatcher.log"
wh_wait_until 20 grep -q "lease of default/a acquired" "$LOG" || wh_fail "the lease was never acquired"

wh_log "seed $SEED: $CHANGES changes, one dispatcher, lease TTL $TTL ms"
wh_spawn loadgen "$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --changes "$CHANGES" --seed "$SEED" \
    --max-txn 100 --tables 2 --txn-pause-ms 2 --expect "$WH_TMP/expected.jsonl"
_progress() { [ "$(wh_count_events "$WH_TMP/received.jsonl")" -ge $((CHANGES / 5)) ]; }
wh_wait_until 60 _progress || wh_fail "delivery did not progress"

store=${WH_PIDS[store]}
kill -STOP "$store"
stopped_at=$(date +%s%N)
wh_log "store frozen (SIGSTOP)"
wh_wait_until $((TTL / 1000 + 10)) grep -q "lease of default/a: not renewed within its validity" \
    "$LOG" || { kill -CONT "$store"; wh_fail "the dispatcher never gave up the lease it could not renew"; }
lapse_ms=$(( ($(date +%s%N) - stopped_at) / 1000000 ))
wh_wait_until 5 grep -q "target default/a removed" "$LOG" ||
    { kill -CONT "$store"; wh_fail "the dispatcher kept the target in its loop after its lease lapsed"; }
# from here no POST: count the requests the receiver got, wait, count again
n0=$(grep -c . "$WH_TMP/received.jsonl")
sleep 2
n1=$(grep -c . "$WH_TMP/received.jsonl")
kill -CONT "$store"
wh_log "lease given up ${lapse_ms} ms after the freeze (TTL $TTL ms); receiver lines $n0 -> $n1 while frozen"
[ "$n0" = "$n1" ] || wh_fail "the target got POSTs after its lease lapsed ($n0 -> $n1 lines)"

_reacquired() { [ "$(grep -c "lease of default/a acquired" "$LOG")" -ge 2 ]; }
wh_wait_until $((TTL / 1000 + 20)) _reacquired || wh_fail "the lease was not acquired again"
wait "${WH_PIDS[loadgen]}" || wh_fail "load generation failed"
unset "WH_PIDS[loadgen]"
wh_wait_received 120 "$WH_TMP/expected.jsonl" "$WH_TMP/received.jsonl" || {
    "$BIN/tests/wh_check" --expect "$WH_TMP/expected.jsonl" --received "$WH_TMP/received.jsonl" || true
    wh_fail "the receiver did not get every change"
}
for d in dispatcher ingestor store receiver; do wh_kill "$d" TERM; done
wh_pass "$CHANGES changes; the store frozen: the lease lapsed after ${lapse_ms} ms (TTL $TTL ms), the target stopped (no POST while frozen), the lease was taken again, every change delivered in order"
