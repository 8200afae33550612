#!/usr/bin/env bash
# A lease given up here in its takeover wait (its renewals got no answer)
# and granted back to this replica before the store's expiry keeps that
# wait: requests of its last holder may still be at the target.
#   1. d0 alone holds a; the receiver holds its POST of the row "row-slow"
#      for 28 s (http_timeout_ms 30 s); d0 is stopped (SIGTERM) meanwhile
#      and releases the lease with requests abandoned.
#   2. d1 (lease TTL 15 s, ipc.timeout_ms 2 s: a round every 5 s, its
#      store calls failing after 2 s) takes a over and waits out d0's
#      timeout.
#   3. In that wait, once d1 renewed the lease (the store no longer tells
#      it the takeover: test_lease_reply_lost), the store is frozen
#      (SIGSTOP) until d1 gives the lease up at the end of its local
#      validity (4/5 of the TTL, at the start of a round), then thawed
#      while that round's first call waits: d1 acquires a again before the
#      store's expiry, as its own lease (the same epoch, no takeover).
# Checks: no POST overlaps d0's held one (the receiver counts overlapping
# POSTs), and every row arrives. Before: the grant set a new wait from
# what the store said (nothing: not a takeover), so d1 posted at once.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
source "$(dirname "$0")/../lib/leases.sh"
STORE_STOPPED=0
trap '[ "$STORE_STOPPED" = 1 ] && kill -CONT "${WH_PIDS[store]}" 2>/dev/null; wh_cleanup' EXIT
export WALHOOK_DISPATCHER_HTTP_TIMEOUT_MS=30000 WALHOOK_DISPATCHER_COMMIT_INTERVAL_MS=200
WH_LEASE_RECEIVER_ARGS=(--delay-match row-slow --delay-times 1)
wh_lease_stack 1 28000 a
file="$WH_TMP/received-a.jsonl"
log() { echo "$WH_TMP/dispatcher-$1.log"; }

# 1. d0 holds a; stopped while the receiver holds its POST
wh_lease_slow_stop

# 2. d1 takes a over with a wait
WALHOOK_DISPATCHER_LEASE_TTL_MS=15000 WALHOOK_IPC_TIMEOUT_MS=2000 wh_lease_dispatcher d1
wh_wait_until 30 grep -q "lease of default/a: posting starts in" "$(log d1)" ||
    wh_fail "d1 did not take a over with a wait: $(grep "lease of" "$(log d1)")"

# 3. once d1 renewed a, the store frozen until d1 gives the lease up, then
# thawed
wh_wait_until 20 grep -q "lease of default/a: renewed by d1#" "$WH_TMP/store.log" ||
    wh_fail "d1 did not renew a after taking it over"
kill -STOP "${WH_PIDS[store]}"
STORE_STOPPED=1
wh_wait_until 20 grep -q "lease of default/a: not renewed within its validity" "$(log d1)"
ok=$?
kill -CONT "${WH_PIDS[store]}"
STORE_STOPPED=0
[ "$ok" = 0 ] || wh_fail "d1 did not give the lease up while the store was frozen"
grep -q "lease of default/a: its takeover wait is over" "$(log d1)" &&
    wh_fail "d1's takeover wait ended before the freeze did (the test needs the lapse in it)"
_again() { [ "$(grep -c "lease of default/a acquired" "$(log d1)")" -ge 2 ]; }
wh_wait_until 30 _again || wh_fail "d1 did not acquire a again: $(grep "lease of" "$(log d1)")"
again=$(grep "lease of default/a acquired" "$(log d1)" | sed -n 2p | cut -d" " -f4-)
wh_log "d1: $again"
[[ "$again" == *"let it lapse"* ]] &&
    wh_fail "d1 acquired a again after the store's expiry (a takeover: the test needs its own lease granted back): $again"

pg_psql -c "INSERT INTO tl VALUES (3, 'row-last')" || wh_fail "cannot insert the last row"
wh_wait_until 90 grep -q row-last "$file" || wh_fail "the row inserted last did not arrive"
wh_wait_until 20 grep -q row-slow "$file" || wh_fail "the slow row never arrived"
ov=$(wh_overlaps a)
[ "$ov" = 0 ] || wh_fail "$ov POST(s) overlapped d0's held one: $(grep "lease of\|default/a" "$(log d1)" | cut -d" " -f4- | tail -n 8)"
wh_pass "a lease lapsed here in its takeover wait and granted back before the store's expiry kept the wait: no overlapping POST, every row delivered"
