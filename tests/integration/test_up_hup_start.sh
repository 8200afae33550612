#!/usr/bin/env bash
# A SIGHUP (reload) sent to walhook up while its daemons start must not kill
# them: walhook up forwards it to children it has just forked, which have
# not installed their handler yet. They start with SIGHUP blocked (the mask
# survives exec); the daemon unblocks it once its handler is in place, and
# then reloads. Two cases: a SIGHUP while walhook up waits for the store
# (held, then forwarded to the dispatcher and admin forked right before),
# and SIGHUPs right after a SIGKILLed dispatcher is restarted.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_items_up
wh_wait_until 30 grep -q "started walhook-ingestor" "$LOG" || wh_fail "walhook up did not start"
kill -HUP "$UP"
wh_wait_until 30 grep -q "reload: SIGHUP sent" "$LOG" || wh_fail "the SIGHUP was not forwarded"
all_ready() {
    local d
    for d in store ingestor dispatcher admin; do
        grep -q "walhook-$d (pid [0-9]*) is ready" "$LOG" || return 1
    done
}
wh_wait_until 60 all_ready || wh_fail "not every daemon became ready"
grep -q "killed by signal 1 " "$LOG" &&
    wh_fail "a SIGHUP during start-up killed a daemon: $(grep -m 2 'killed by signal 1 ' "$LOG")"

ready_child() { # NAME: the supervisor logged its current child ready
    local p
    p=$(wh_child_pid "$UP" "$1")
    [ -n "$p" ] && grep -q "walhook-$1 (pid $p) is ready" "$LOG"
}
restarted() { local p; p=$(wh_child_pid "$UP" dispatcher); [ -n "$p" ] && [ "$p" != "$1" ]; }
for round in 1 2 3 4 5; do
    wh_wait_until 60 ready_child dispatcher || wh_fail "round $round: dispatcher never ready"
    old=$(wh_child_pid "$UP" dispatcher)
    kill -KILL "$old"
    wh_wait_until 30 restarted "$old" || wh_fail "round $round: dispatcher not restarted"
    kill -HUP "$UP"
done
wh_wait_until 60 ready_child dispatcher || wh_fail "the dispatcher never became ready at the end"
grep -q "killed by signal 1 " "$LOG" &&
    wh_fail "a forwarded SIGHUP killed a fresh daemon: $(grep -m 2 'killed by signal 1 ' "$LOG")"
wh_alive walhook || wh_fail "walhook up died"
wh_pass "SIGHUP at start-up and right after 5 restarts: no daemon killed by it"
