#!/usr/bin/env bash
# Two dispatcher replicas given the same dispatcher.id (one config file for
# every replica; each with its own control endpoint, as replicas in separate
# containers have): each names itself "<id>#<instance>" in the store's
# leases, so they are two owners: the targets are split between them, no
# target is posted to by both at once (the receivers answer after 20 ms and
# count overlapping POSTs), every change arrives in order, and each replica
# logs that another live one uses its id.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
CHANGES=${CHANGES:-4000}
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-receiver \
    tests/wh_loadgen tests/wh_check
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
"$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --tables 2 --setup-only || wh_fail "table setup failed"

NAMES=(a b)
declare -A PORT=()
targets=""
for t in "${NAMES[@]}"; do
    PORT[$t]=$(wh_free_port)
    wh_spawn "receiver-$t" "$BIN/walhook-receiver" --listen "127.0.0.1:${PORT[$t]}" \
        --out "$WH_TMP/received-$t.jsonl" --delay-ms 20
    wh_wait_http "http://127.0.0.1:${PORT[$t]}/" 5 || wh_fail "receiver $t cannot listen"
    targets+="${targets:+,}$t=http://127.0.0.1:${PORT[$t]}/hook"
done
CONF="$WH_TMP/walhook.conf"
wh_write_conf "$CONF" "$PG_DSN" "$WH_TMP/data" "$(wh_free_port)"
export WALHOOK_TARGETS="$targets" WALHOOK_DISPATCHER_LEASE_TTL_MS=3000 WALHOOK_DISPATCHER_ID=same
mkdir -m 700 "$WH_TMP/data"
wh_spawn store "$BIN/walhook-store" -c "$CONF"
wh_wait_until 10 test -S "$WH_TMP/data/store.sock" || wh_fail "the store did not start"
wh_spawn ingestor "$BIN/walhook-ingestor" -c "$CONF"
for d in 1 2; do
    WALHOOK_DISPATCHER_CONTROL="ipc://$WH_TMP/data/dispatcher-$d.sock" \
        wh_spawn "dispatcher-$d" "$BIN/walhook-dispatcher" -c "$CONF"
done
wh_wait_slot_active walhook 60 || wh_fail "the ingestor never started streaming"
wh_spawn loadgen "$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --changes "$CHANGES" --max-txn 50 \
    --tables 2 --txn-pause-ms 2 --expect "$WH_TMP/expected.jsonl"
wait "${WH_PIDS[loadgen]}" || wh_fail "load generation failed"
unset "WH_PIDS[loadgen]"
files=("$WH_TMP/received-a.jsonl" "$WH_TMP/received-b.jsonl")
wh_wait_received 120 "$WH_TMP/expected.jsonl" "${files[@]}" || {
    for f in "${files[@]}"; do
        "$BIN/tests/wh_check" --expect "$WH_TMP/expected.jsonl" --received "$f" || true
    done
    wh_fail "receivers did not get every change"
}
ov=0
for t in "${NAMES[@]}"; do
    n=$(curl -fsS --max-time 3 "http://127.0.0.1:${PORT[$t]}/" | sed -n 's/.*stored, \([0-9]*\) overlapping.*/\1/p')
    ov=$((ov + ${n:-0}))
done
[ "$ov" = 0 ] || wh_fail "$ov POST(s) overlapped another POST to the same target: both replicas with id 'same' posted at once"
held=()
for d in 1 2; do
    wh_alive "dispatcher-$d" || wh_fail "dispatcher $d exited"
    grep -q "as 'same#[0-9a-f]\{8\}'" "$WH_TMP/dispatcher-$d.log" ||
        wh_fail "dispatcher $d does not name itself same#<instance>: $(grep -m1 "sharing targets" "$WH_TMP/dispatcher-$d.log")"
    grep -q "another live dispatcher uses dispatcher.id 'same'" "$WH_TMP/dispatcher-$d.log" ||
        wh_fail "dispatcher $d did not warn about the other replica with its id"
    held+=("$(grep -c "lease of default/.* acquired" "$WH_TMP/dispatcher-$d.log")")
done
wh_pass "$CHANGES changes to 2 targets, 2 replicas both with dispatcher.id 'same': leases acquired ${held[0]} + ${held[1]}, every change in order, no overlapping POSTs, the shared id logged by both"
