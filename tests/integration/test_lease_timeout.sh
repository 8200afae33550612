#!/usr/bin/env bash
# A takeover waits for the old holder's request timeout, not the new
# holder's own: the target's http_timeout_ms is 10 s while d1 posts, and is
# lowered to 2 s before d2 takes the target over (lease TTL 1 s). The
# receiver holds one POST, d1's of the row "row-slow", for 6 s (once); d1
# is SIGKILLed while it is held, the timeout lowered, d2 started. Waiting by
# its own 2 s, d2 would post while d1's request is still at the receiver.
# Checks: no POST overlapped another (the receiver counts them), d2's wait
# was by d1's timeout (its log), every row arrived; the admin's /metrics
# showed the wait (walhook_target_lease_quiet_seconds > 0, then 0) and d2
# logged its end.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
source "$(dirname "$0")/../lib/leases.sh"
trap wh_cleanup EXIT
export WALHOOK_DISPATCHER_LEASE_TTL_MS=1000 WALHOOK_DISPATCHER_COMMIT_INTERVAL_MS=200
export WALHOOK_DISPATCHER_HTTP_TIMEOUT_MS=10000
WH_LEASE_RECEIVER_ARGS=(--delay-match row-slow --delay-times 1)
wh_lease_stack 1 6000 a
wh_require_bins tests/wh_statectl walhook-admin
file=$WH_TMP/received-a.jsonl
APORT=$(sed -n 's/.*listen = "127.0.0.1:\([0-9]*\)".*/\1/p' "$CONF" | head -1)
[ -n "$APORT" ] || wh_fail "no admin port in the config"
wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
wh_lease_first d1 1

pg_psql -c "CREATE TABLE tl (id int primary key, v text); INSERT INTO tl VALUES (1, 'row-one')" ||
    wh_fail "cannot insert the first row"
_got() { grep -q "$1" "$file"; }
wh_wait_until 30 _got row-one || wh_fail "d1 did not deliver the first row"
pg_psql -c "INSERT INTO tl VALUES (2, 'row-slow')" || wh_fail "cannot insert the slow row"
# /reset-max sets the receiver's "max concurrent" to the POSTs in flight now
_held() { curl -fsS --max-time 3 "http://127.0.0.1:${PORT[a]}/reset-max" | grep -q " 1 max concurrent"; }
wh_wait_until 20 _held || wh_fail "the receiver never held d1's POST of the slow row"
pid=${WH_PIDS[dispatcher-d1]}
kill -KILL "$pid"
wait "$pid" 2>/dev/null
unset "WH_PIDS[dispatcher-d1]"
wh_log "SIGKILL d1 (pid $pid) while the receiver holds its POST"
"$BIN/tests/wh_statectl" -c "$CONF" set-target default a http_timeout_ms=2000 >/dev/null ||
    wh_fail "cannot lower the target's http_timeout_ms"
wh_lease_dispatcher d2
wh_wait_until 20 grep -q "lease of default/a acquired" "$WH_TMP/dispatcher-d2.log" ||
    wh_fail "d2 did not take the target over"
# the admin's /metrics (from d2) shows the wait; checked after the overlaps
_quiet() { wh_metric_tcp "$APORT" walhook_target_lease_quiet_seconds %.3f; }
_waiting() { awk -v v="$(_quiet)" 'BEGIN { exit !(v > 0) }'; }
seen_wait=0
wh_wait_until 8 _waiting && seen_wait=1

pg_psql -c "INSERT INTO tl VALUES (3, 'row-last')" || wh_fail "cannot insert the last row"
wh_wait_until 60 _got row-last || wh_fail "d2 did not deliver the row inserted after the takeover"
wh_wait_until 20 _got row-slow || wh_fail "the slow row never arrived"
wh_log "d2: $(grep -m1 "posting starts in" "$WH_TMP/dispatcher-d2.log" | cut -d" " -f4-)"
ov=$(wh_overlaps a)
[ "$ov" = 0 ] || wh_fail "$ov POST(s) overlapped another POST to the same target"
grep -q "posting starts in .* request timeout, 2000 ms, .* told the store, 10000 ms" \
    "$WH_TMP/dispatcher-d2.log" ||
    wh_fail "d2 did not wait by d1's timeout: $(grep "lease of" "$WH_TMP/dispatcher-d2.log")"
[ "$seen_wait" = 1 ] ||
    wh_fail "walhook_target_lease_quiet_seconds never showed d2's wait (last: $(_quiet))"
_posting() { [ "$(_quiet)" = 0.000 ]; }
wh_wait_until 10 _posting ||
    wh_fail "walhook_target_lease_quiet_seconds is $(_quiet) once d2 posts"
grep -q "takeover wait is over after" "$WH_TMP/dispatcher-d2.log" ||
    wh_fail "d2 did not log the end of its wait"
wh_pass "a takeover after the target's http_timeout_ms was lowered (10 s to 2 s) waited by the old holder's 10 s: no overlapping POST, every row delivered, the wait shown in /metrics and its end logged"
