#!/usr/bin/env bash
# A LeaseRelease the store refuses (429: lease writes waiting for the disk)
# is logged as not done, not as "released": the store keeps the lease until
# its TTL runs out, and its next holder waits as after a lapse.
#   1. d0 (lease TTL 3 s, ipc.timeout_ms 1 s) holds a and b.
#   2. The store's WAL syncs are held (wh_syncgate); six LeaseAcquires of
#      free consumers (owner "other") are sent at once: four wait at the
#      gate, holding the store's places for writes (store.workers 4).
#   3. d1 (same settings) starts: d0 gives a target up to balance and, the
#      loop handing it at once, releases it; the store refuses the release.
# Checks: d0 logs "not released (handed over)" for that target, never
# "released: handed over" after the refusal; d1 acquires no target while
# the syncs are held.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
source "$(dirname "$0")/../lib/leases.sh"
wh_lease_gated_stack a b

# 1. d0 holds a and b
WALHOOK_DISPATCHER_LEASE_TTL_MS=3000 WALHOOK_IPC_TIMEOUT_MS=1000 wh_lease_first d0 2

# 2. the places for writes held at the gate
wh_lease_held_acquires
grep -q "status 429" "$WH_TMP"/acq*.out ||
    wh_fail "no Acquire was refused (the places are not held): $(cat "$WH_TMP"/acq*.out)"

# 3. d1 starts: d0 hands a target over, and its release is refused
WALHOOK_DISPATCHER_LEASE_TTL_MS=3000 WALHOOK_IPC_TIMEOUT_MS=1000 wh_lease_dispatcher d1
_refused() { grep -q "lease: store: release of default/.: .*error 429" "$(log d0)"; }
wh_wait_until 30 _refused ||
    wh_fail "d0 did not hand a target over, or its release was not refused: $(grep "lease" "$(log d0)" | tail -n 3)"
t=$(grep -m1 "lease: store: release of default/.: .*error 429" "$(log d0)" |
    sed 's/.*release of default\/\(.\): .*/\1/')
wh_wait_until 10 grep -q "lease of default/$t not released (handed over)" "$(log d0)" ||
    wh_fail "d0 did not log its refused release of $t as not done: $(grep "lease of default/$t" "$(log d0)" | tail -n 3)"
grep -q "lease of default/$t released: handed over" "$(log d0)" &&
    wh_fail "d0 logged the release of $t the store refused as done: $(grep "lease of default/$t" "$(log d0)" | tail -n 3)"
[ -e "$GATE.held" ] || wh_fail "the gate let the sync go (the scenario did not run)"
grep -q "lease of default/. acquired" "$(log d1)" &&
    wh_fail "d1 acquired a target while the store's syncs were held: $(grep "lease of" "$(log d1)" | tail -n 2)"
rm -f "$GATE"
wh_log "the gate is open"
wh_pass "the release of $t the store refused (429) was logged as not done: the store keeps it until its TTL"
