#!/usr/bin/env bash
# A lease given up to balance before the dispatcher's loop ever ran its
# target is released at once, not left to lapse: here the lease is in its
# takeover wait (the loop does not run a target then) when it is given up.
#   1. d0 alone holds both targets; the receivers hold its POST of the row
#      "row-slow" for 25 s (target http_timeout_ms 30 s); d0 is stopped
#      (SIGTERM) meanwhile and releases both leases with requests abandoned.
#   2. d1 (lease TTL 24 s: a round every 8 s) takes both over and waits
#      out d0's timeout before posting; d2 (TTL 2 s) starts during that
#      wait, and d1 gives one target up to balance while it still waits
#      (at its next round, at most 16 s after d0's release).
# Checks: d2 acquires that target well before d1's lease of it would
# lapse (it was renewed as it was given up, so a lapse takes the 24 s TTL:
# the deadline is 12 s); the release said requests were abandoned, so d2
# waits too (its log) and no POST overlaps d0's held one (the receivers
# count overlapping POSTs: a clean release would let d2 post while the
# receiver still holds it); a row inserted last reaches both targets.
# Before the fix the lease lapsed: d2 took it after the TTL and waited again.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
source "$(dirname "$0")/../lib/leases.sh"
trap wh_cleanup EXIT
export WALHOOK_DISPATCHER_HTTP_TIMEOUT_MS=30000 WALHOOK_DISPATCHER_COMMIT_INTERVAL_MS=200
WH_LEASE_RECEIVER_ARGS=(--delay-match row-slow --delay-times 1)
wh_lease_stack 1 25000 a b
files=("$WH_TMP/received-a.jsonl" "$WH_TMP/received-b.jsonl")
log() { echo "$WH_TMP/dispatcher-$1.log"; }
_got() { grep -q "$1" "${files[0]}" && grep -q "$1" "${files[1]}"; }

# 1. d0 holds both; stopped while the receivers hold its POSTs
WALHOOK_DISPATCHER_LEASE_TTL_MS=1000 wh_lease_first d0 2
pg_psql -c "CREATE TABLE tl (id int primary key, v text); INSERT INTO tl VALUES (1, 'row-one')" ||
    wh_fail "cannot insert the first row"
wh_wait_until 30 _got row-one || wh_fail "d0 did not deliver the first row"
pg_psql -c "INSERT INTO tl VALUES (2, 'row-slow')" || wh_fail "cannot insert the slow row"
# /reset-max sets the receiver's "max concurrent" to the POSTs in flight now
_held() { curl -fsS --max-time 3 "http://127.0.0.1:${PORT[$1]}/reset-max" | grep -q " 1 max concurrent"; }
_both_held() { _held a && _held b; }
wh_wait_until 20 _both_held || wh_fail "the receivers never held d0's POSTs of the slow row"
wh_kill dispatcher-d0 TERM
wh_log "d0 stopped while the receivers hold its POSTs"

# 2. d1 takes both over (waiting); d2 starts, d1 gives one up in its wait
WALHOOK_DISPATCHER_LEASE_TTL_MS=24000 wh_lease_dispatcher d1
_waits() { [ "$(grep -c "lease of default/.*: posting starts in" "$(log "$1")")" -ge "$2" ]; }
wh_wait_until 30 _waits d1 2 || wh_fail "d1 did not take both targets over with a wait: $(grep "lease of" "$(log d1)")"
WALHOOK_DISPATCHER_LEASE_TTL_MS=2000 wh_lease_dispatcher d2
wh_wait_until 20 grep -q "lease of default/.* given up to balance" "$(log d1)" ||
    wh_fail "d1 gave no target up to balance: $(grep "lease of" "$(log d1)")"
tgt=$(grep -m1 -o "lease of default/[a-z]* given up" "$(log d1)" | cut -d/ -f2 | cut -d" " -f1)
grep -q "lease of default/$tgt: its takeover wait is over" "$(log d1)" &&
    wh_fail "d1 gave $tgt up after its takeover wait (the test needs it given up during it)"
wh_log "d1: $(grep -m1 "given up to balance" "$(log d1)" | cut -d" " -f4-)"
# d1 renewed the lease as it gave it up: left to lapse it frees after 24 s
wh_wait_until 12 grep -q "lease of default/$tgt acquired" "$(log d2)" ||
    wh_fail "d2 did not acquire $tgt within 12 s of d1 giving it up (d1's lease TTL is 24 s: it was left to lapse): $(grep "lease of default/$tgt" "$(log d1)")"
wh_log "d1: $(grep -m1 "lease of default/$tgt released" "$(log d1)" | cut -d" " -f4-)"
wh_log "d2: $(grep -m1 "lease of default/$tgt acquired" "$(log d2)" | cut -d" " -f4-)"
grep -q "lease of default/$tgt: posting starts in" "$(log d2)" ||
    wh_fail "d2 did not wait before posting to $tgt (the release was not marked abandoned): $(grep "lease of" "$(log d2)")"

pg_psql -c "INSERT INTO tl VALUES (3, 'row-last')" || wh_fail "cannot insert the last row"
wh_wait_until 90 _got row-last || wh_fail "the row inserted last did not reach both targets"
wh_wait_until 20 _got row-slow || wh_fail "the slow row never arrived"
ov=$(wh_overlaps a b)
[ "$ov" = 0 ] || wh_fail "$ov POST(s) overlapped another POST to the same target"
wh_pass "a lease given up to balance in its takeover wait, before d1's loop ever ran $tgt, was released at once (d2 acquired it well within d1's 24 s TTL) with requests abandoned (d2 waited); no overlapping POST, every row delivered"
