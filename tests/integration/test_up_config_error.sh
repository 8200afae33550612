#!/usr/bin/env bash
# A daemon that exits 2 (bad configuration) under walhook up: walhook up
# re-reads the file itself and logs an error naming the problem (at most
# once a minute per daemon), keeps the backoff, and keeps the other daemons
# running; once every daemon is down on it, walhook up stops and exits 2.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_items_up
wh_wait_http "http://127.0.0.1:$APORT/readyz" 60 || wh_fail "walhook never became ready"
declare -A before
for d in store ingestor admin; do
    before[$d]=$(wh_child_pid "$UP" "$d")
    [ -n "${before[$d]}" ] || wh_fail "no walhook-$d under walhook up"
done

echo 'this is not a setting' >>"$CONF"
kill -KILL "$(wh_child_pid "$UP" dispatcher)"
ERR="walhook-dispatcher exited with code 2: its configuration is invalid: config file"
wh_wait_until 30 grep -qF "$ERR" "$LOG" ||
    wh_fail "no error naming the configuration problem: $(grep walhook-dispatcher "$LOG" | tail -n 3)"
grep -F "$ERR" "$LOG" | grep -q "syntax error" || wh_fail "the error does not name the problem"
fails() { grep -c "walhook-dispatcher (pid [0-9]*) exited with code 2" "$LOG"; }
enough() { [ "$(fails)" -ge 4 ]; }
wh_wait_until 30 enough || wh_fail "the dispatcher is not retried"
grep -q "restarting walhook-dispatcher in [0-9]* ms" "$LOG" || wh_fail "no backoff"
errs=$(grep -cF "$ERR" "$LOG")
[ "$errs" -lt "$(fails)" ] || wh_fail "the error is not rate-limited: $errs errors for $(fails) failures"
for d in store ingestor admin; do
    [ "$(wh_child_pid "$UP" "$d")" = "${before[$d]}" ] || wh_fail "walhook-$d was not left running"
done
wh_alive walhook || wh_fail "walhook up exited while three daemons ran"
wh_log "dispatcher: $(fails) exits 2, $errs error(s) naming the file; the others kept running"

# every daemon down on the bad file: walhook up gives up with exit 2
for d in ingestor admin store; do
    kill -KILL "$(wh_child_pid "$UP" "$d")" 2>/dev/null
done
gone() { ! wh_alive walhook; }
wh_wait_until 30 gone || wh_fail "walhook up still runs with every daemon down on a bad file"
rc=0
wait "$UP" || rc=$?
unset "WH_PIDS[walhook]"
[ "$rc" = 2 ] || wh_fail "walhook up exited $rc, not 2, with every daemon down on a bad file"
grep -q "every daemon exits with code 2" "$LOG" || wh_fail "no final error: $(tail -n 3 "$LOG")"
wh_pass "exit 2 of a daemon reported ($errs error(s) for $(fails) failures), others kept;" \
    "all down: walhook up exited 2"
