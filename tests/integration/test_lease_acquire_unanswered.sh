#!/usr/bin/env bash
# An Acquire without an answer does not hold up the other Acquires of its
# lease round.
#   1. The store's WAL syncs are held (wh_syncgate) when d0 starts (lease TTL
#      60 s: a round every 20 s; ipc.timeout_ms 2 s): d0's first round sends
#      the Acquire of a, whose lease write waits at the gate, and d0 gives
#      the call up after 2 s (no reply; the store may still grant it). The
#      gate is opened then.
#   2. d0 goes on with b and c in the same round, and then asks for a again.
# Checks: b and c acquired within 10 s of a's unanswered Acquire (before: the
# round stopped at a, and b and c waited for d0's next round, 20 s later),
# a acquired too (the store granted the lost Acquire: the next one is
# granted as d0's own), and a row inserted then reaches all three.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
source "$(dirname "$0")/../lib/leases.sh"
GATE=""
trap '[ -n "$GATE" ] && rm -f "$GATE"; wh_cleanup' EXIT
WH_LEASE_GATED=1 wh_lease_stack 1 0 a b c
log="$WH_TMP/dispatcher-d0.log"
wh_wait_slot_active walhook 60 || wh_fail "the ingestor never started streaming"

touch "$GATE"
WALHOOK_DISPATCHER_LEASE_TTL_MS=60000 WALHOOK_IPC_TIMEOUT_MS=2000 wh_lease_dispatcher d0
wh_wait_until 20 grep -q "lease: store: acquire of default/a: .*no reply" "$log" ||
    wh_fail "d0's Acquire of a did not time out at the gate: $(grep "lease" "$log" | tail -n 3)"
rm -f "$GATE"
wh_log "d0's Acquire of a got no reply; the gate is open"
# nothing acquired before a's timeout (d0 is fast to go on once the gate opens)
first=$(grep -n -m1 "lease of default/. acquired" "$log" | cut -d: -f1)
noreply=$(grep -n -m1 "acquire of default/a: .*no reply" "$log" | cut -d: -f1)
[ -n "$first" ] && [ "$first" -lt "$noreply" ] &&
    wh_fail "d0 acquired a target while the store's syncs were held (the scenario did not run)"

_bc() { grep -q "lease of default/b acquired" "$log" && grep -q "lease of default/c acquired" "$log"; }
wh_wait_until 10 _bc ||
    wh_fail "b and c were not acquired in the round of a's unanswered Acquire: $(grep "lease" "$log" | tail -n 4)"
wh_wait_until 10 grep -q "lease of default/a acquired" "$log" ||
    wh_fail "d0 did not acquire a once the store answered: $(grep "lease" "$log" | tail -n 4)"
wh_log "d0: $(grep "lease of default/. acquired" "$log" | cut -d" " -f4- | tr '\n' ';')"

pg_psql -c "CREATE TABLE tl (id int primary key, v text); INSERT INTO tl VALUES (1, 'row-one')" ||
    wh_fail "cannot insert the row"
for t in a b c; do
    wh_wait_until 30 grep -q row-one "$WH_TMP/received-$t.jsonl" || wh_fail "the row did not reach $t"
done
wh_pass "an unanswered Acquire held up none of its round's others: b and c acquired at once, a once the store answered, every target delivered"
