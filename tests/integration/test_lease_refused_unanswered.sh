#!/usr/bin/env bash
# An Acquire refused with 429 (lease writes waiting for the disk) does not
# make a replica forget that an earlier Acquire of the target went
# unanswered: that one may still be granted once its write is synced.
#   1. d1 alone takes a and b; d0 (lease TTL 6 s: a round every 2 s;
#      ipc.timeout_ms 1.8 s) starts and d1 gives b up to balance, d0 takes
#      it. d1 stops (SIGTERM: a is released).
#   2. The store's WAL syncs are held (wh_syncgate): d0 asks for a twice
#      without an answer (its lease writes wait at the gate; given up at
#      its timeout and sent again, they fill the store's places for
#      writes, store.workers 4), then the store refuses the next Acquire
#      of a (429).
#   3. d2 (same settings) starts: two replicas for two targets, a share of
#      one, which d0 holds with b. d2's Acquires are refused (429) too.
#   4. The gate opens: the store grants a to d0 (the first unanswered
#      Acquire, written now).
# Checks: d0 asks for a again (it still counts as unanswered: tried after
# the share is held) and learns the grant: "lease of default/a acquired"
# in d0's log. Before: the 429 cleared the mark, d0 at its share never asked
# for a again, and a stayed d0's in the store, unknown to d0 and renewed by
# no one, keeping d2 from it until it lapsed (and then the takeover wait).
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
source "$(dirname "$0")/../lib/leases.sh"
wh_lease_gated_stack a b

# 1. d1 holds a, d0 holds b
wh_lease_d0_holds_b

# 2. two unanswered Acquires of a hold the places; the next one is refused
touch "$GATE"
wh_log "d1 stopped; the store's syncs are held"
_count() { grep -c "lease: store: acquire of default/a: .*$2" "$(log "$1")"; }
_noreply() { [ "$(_count d0 "no reply")" -ge 2 ]; }
wh_wait_until 20 _noreply ||
    wh_fail "d0's Acquire of a did not go unanswered twice: $(grep "lease" "$(log d0)" | tail -n 3)"
_refused() { [ "$(_count "$1" "error 429")" -ge "$2" ]; }
wh_wait_until 20 _refused d0 1 ||
    wh_fail "the store did not refuse d0's next Acquire of a: $(grep "lease" "$(log d0)" | tail -n 3)"

# 3. a second replica: d0's share is one, held with b. Three refused
# Acquires of d2 span two of its rounds (2 s apart), so d0 has had a round
# that counted d2 before the gate opens (the test catches nothing if not)
WALHOOK_DISPATCHER_LEASE_TTL_MS=6000 WALHOOK_IPC_TIMEOUT_MS=1800 wh_lease_dispatcher d2
wh_wait_until 30 _refused d2 3 ||
    wh_fail "d2's Acquires of a were not refused: $(grep "lease" "$(log d2)" | tail -n 3)"
grep -q "lease of default/a acquired" "$(log d0)" "$(log d2)" &&
    wh_fail "a was acquired while the store's syncs were held (the scenario did not run)"
[ -e "$GATE.held" ] || wh_fail "the gate let the sync go (the scenario did not run)"

# 4. the gate opens: the store grants a to d0
rm -f "$GATE"
wh_log "the gate is open"
wh_wait_until 20 grep -q "lease of default/a acquired" "$(log d0)" ||
    wh_fail "d0 did not ask for a again after the 429 (its unanswered Acquire was granted by the store, unknown to it): d0: $(grep "lease" "$(log d0)" | tail -n 3) d2: $(grep "lease" "$(log d2)" | tail -n 2)"
pg_psql -c "CREATE TABLE tl (id int primary key, v text); INSERT INTO tl VALUES (1, 'row-one')" ||
    wh_fail "cannot insert the row"
for t in a b; do
    wh_wait_until 30 grep -q row-one "$WH_TMP/received-$t.jsonl" || wh_fail "the row did not reach $t"
done
wh_pass "a 429 kept the unanswered mark: d0 asked for a again and learned of the store's late grant, every target delivered"
