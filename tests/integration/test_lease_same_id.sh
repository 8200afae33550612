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
source "$(dirname "$0")/../lib/leases.sh"
CHANGES=${CHANGES:-4000}
trap wh_cleanup EXIT
NAMES=(a b)
export WALHOOK_DISPATCHER_LEASE_TTL_MS=3000 WALHOOK_DISPATCHER_ID=same
wh_lease_stack 2 20 "${NAMES[@]}"
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
ov=$(wh_overlaps "${NAMES[@]}")
[ "$ov" = 0 ] || wh_fail "$ov POST(s) overlapped another POST to the same target: both replicas with id 'same' posted at once"
held=()
for d in 1 2; do
    wh_alive "dispatcher-$d" || wh_fail "dispatcher $d exited"
    grep -q "as 'same#[0-9a-f]\{8\}'" "$WH_TMP/dispatcher-$d.log" ||
        wh_fail "dispatcher $d does not name itself same#<instance>: $(grep -m1 "sharing targets" "$WH_TMP/dispatcher-$d.log")"
    # The warning comes from a lease round (one a second), which may follow
    # the last delivery when the load drains before that round runs.
    wh_wait_until 15 grep -q "another live dispatcher uses dispatcher.id 'same'" \
        "$WH_TMP/dispatcher-$d.log" ||
        wh_fail "dispatcher $d did not warn about the other replica with its id within 15 s"
    held+=("$(grep -c "lease of default/.* acquired" "$WH_TMP/dispatcher-$d.log")")
done
wh_pass "$CHANGES changes to 2 targets, 2 replicas both with dispatcher.id 'same': leases acquired ${held[0]} + ${held[1]}, every change in order, no overlapping POSTs, the shared id logged by both"
