#!/usr/bin/env bash
# "walhook-X (pid N) is not ready after 10 s" must mean that: a daemon
# restarted by walhook up and ready within a second or two must never get
# it (the loop's clock was read before the spawn recorded the start time,
# and the unsigned age wrapped around, right after every restart).
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_items_up
wh_wait_http "http://127.0.0.1:$APORT/readyz" 60 || wh_fail "walhook never became ready"
ready_child() {
    local p
    p=$(wh_child_pid "$UP" "$1")
    [ -n "$p" ] && grep -q "walhook-$1 (pid $p) is ready" "$LOG"
}
n=0
for d in dispatcher admin dispatcher; do
    wh_wait_until 60 ready_child "$d" || wh_fail "walhook-$d never logged as ready"
    old=$(wh_child_pid "$UP" "$d")
    kill -KILL "$old"
    restarted() { local p; p=$(wh_child_pid "$UP" "$d"); [ -n "$p" ] && [ "$p" != "$old" ]; }
    wh_wait_until 30 restarted || wh_fail "walhook-$d was not restarted"
    wh_wait_until 60 ready_child "$d" || wh_fail "the new walhook-$d never logged as ready"
    new=$(wh_child_pid "$UP" "$d")
    line=$(grep "walhook-$d (pid $new) is ready after" "$LOG")
    ms=$(grep -o "ready after [0-9]* ms" <<<"$line" | awk '{print $3}')
    if grep -q "walhook-$d (pid $new) is not ready after" "$LOG" && [ "$ms" -lt 10000 ]; then
        wh_fail "walhook-$d (pid $new), ready after $ms ms, was logged 'not ready after 10 s'"
    fi
    n=$((n + 1))
done
wh_pass "$n restarted daemons became ready without a spurious 'not ready after 10 s'"
