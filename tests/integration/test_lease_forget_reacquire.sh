#!/usr/bin/env bash
# A lease given up to balance with a request abandoned at the target is not
# taken back by the same dispatcher without a wait when the target is
# deleted and created again meanwhile.
#   1. d1 (lease TTL 20 s) alone holds a, b and c; the receivers hold its
#      POST of the row "row-slow" for 28 s (http_timeout_ms 30 s).
#   2. d2 starts; d1 gives c up to balance (its request to c is abandoned,
#      the lease is left to lapse in the store, still d1's for 20 s).
#   3. c is deleted through the admin (d1 gives b up in the same lease
#      round: 2 targets over 2 dispatchers), then created again (same URL):
#      d1 holds one target of a fair two and takes c.
# Checks: no POST to c overlaps d1's abandoned one still at the receiver.
# Before: d1 forgot what it knew of c's lease with the deletion (given up,
# requests abandoned), and the store, where d1 still held c, granted it
# back as d1's own with nothing to wait for: c posted at once.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
source "$(dirname "$0")/../lib/leases.sh"
trap wh_cleanup EXIT
export WALHOOK_DISPATCHER_HTTP_TIMEOUT_MS=30000 WALHOOK_DISPATCHER_COMMIT_INTERVAL_MS=200
export WALHOOK_ADMIN_ADMIN_TOKEN=admin-token-of-test-lease-forget-reacquire-01
TOKEN=$WALHOOK_ADMIN_ADMIN_TOKEN
WH_LEASE_RECEIVER_ARGS=(--delay-match row-slow --delay-times 1)
wh_lease_stack 1 28000 a b c
wh_require_bins walhook-admin
APORT=$(sed -n 's/.*listen = "127.0.0.1:\([0-9]*\)".*/\1/p' "$CONF")
A="http://127.0.0.1:$APORT"
wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
wh_wait_http "$A/livez" 30 || wh_fail "the admin does not answer /livez"
log() { echo "$WH_TMP/dispatcher-$1.log"; }
files=("$WH_TMP/received-a.jsonl" "$WH_TMP/received-b.jsonl" "$WH_TMP/received-c.jsonl")
_got() { grep -q "$1" "${files[0]}" && grep -q "$1" "${files[1]}" && grep -q "$1" "${files[2]}"; }

# 1. d1 holds all three; the receivers hold its POSTs of the slow row
WALHOOK_DISPATCHER_LEASE_TTL_MS=20000 wh_lease_first d1 3
pg_psql -c "CREATE TABLE tl (id int primary key, v text); INSERT INTO tl VALUES (1, 'row-one')" ||
    wh_fail "cannot insert the first row"
wh_wait_until 30 _got row-one || wh_fail "d1 did not deliver the first row"
pg_psql -c "INSERT INTO tl VALUES (2, 'row-slow')" || wh_fail "cannot insert the slow row"
_held() { curl -fsS --max-time 3 "http://127.0.0.1:${PORT[$1]}/reset-max" | grep -q " 1 max concurrent"; }
wh_wait_until 20 _held c || wh_fail "the receiver of c never held d1's POST of the slow row"

# 2. d2 starts: d1 gives c up with its request abandoned
WALHOOK_DISPATCHER_LEASE_TTL_MS=2000 wh_lease_dispatcher d2
wh_wait_until 20 grep -q "lease of default/.* given up to balance" "$(log d1)" ||
    wh_fail "d1 gave no target up to balance: $(grep "lease of" "$(log d1)")"
grep -q "lease of default/c given up to balance" "$(log d1)" ||
    wh_fail "d1 gave up another target than c (the test needs c): $(grep "given up" "$(log d1)")"
wh_wait_until 10 grep -q "target default/c handed over" "$(log d1)" ||
    wh_fail "d1's loop did not stop c: $(grep "default/c" "$(log d1)")"
wh_log "d1: $(grep -m1 "given up to balance" "$(log d1)" | cut -d" " -f4-)"

# 3. c deleted (d1 gives b up in the lease round that follows), created again
wh_admin_api DELETE /v1/tenants/default/targets/c
[ "$CODE" = 200 ] || [ "$CODE" = 204 ] || wh_fail "delete c: $CODE $BODY"
wh_wait_until 20 grep -q "lease of default/b given up to balance" "$(log d1)" ||
    wh_fail "d1 did not give b up after c's removal: $(grep "lease of" "$(log d1)")"
wh_admin_api POST /v1/tenants/default/targets "{\"name\":\"c\",\"url\":\"http://127.0.0.1:${PORT[c]}/hook\"}"
[ "$CODE" = 201 ] || wh_fail "create c again: $CODE $BODY"
_c_taken() { grep -q "lease of default/c acquired" "$(log d2)" ||
    [ "$(grep -c "lease of default/c acquired" "$(log d1)")" -ge 2 ]; }
wh_wait_until 60 _c_taken || wh_fail "no dispatcher took c again"
wh_log "c taken again: $(grep -h "lease of default/c acquired\|lease of default/c: posting" "$(log d1)" "$(log d2)" | tail -n 2 | cut -d" " -f4- | tr '\n' ' ')"
pg_psql -c "INSERT INTO tl VALUES (3, 'row-last')" || wh_fail "cannot insert the last row"
wh_wait_until 90 grep -q row-last "${files[2]}" || wh_fail "the row inserted last did not reach c"
ov=$(wh_overlaps c)
[ "$ov" = 0 ] || wh_fail "$ov POST(s) to c overlapped d1's abandoned one: $(grep -h "default/c" "$(log d1)" | cut -d" " -f4- | tail -n 8)"
wh_pass "c, given up with a request abandoned at the receiver, deleted and created again: taken again without any POST overlapping the abandoned one"
