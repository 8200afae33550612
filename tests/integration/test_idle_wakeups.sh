#!/usr/bin/env bash
# An idle walhook does not wake needlessly, before or after a signal: with
# the four daemons up and nothing to stream, a SIGHUP to each reloads the
# file (the store and the admin store it at once, the ingestor and the
# dispatcher through the store). Then, idle, the main thread of the admin
# (it only waits for signals) and of the store (only its 1 s tick and 60 s
# sweep) each switch out voluntarily a few times in WINDOW seconds, not ten
# times a second as with a 100 ms poll of the signal flags (about 10 *
# WINDOW); and no main thread spins (a signal byte left in the pipe, a
# flag never cleared: a busy loop, which switches out no more than a sleep
# does): each used at most a fifth of a CPU in the window. Counted from
# /proc/PID/task/PID/status and stat, not timed. Then a SIGTERM stops each
# daemon with exit status 0.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
WINDOW=${WINDOW:-3}
MAXSW=${MAXSW:-$((WINDOW * 3))} # the 100 ms loop: about 10 per second
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-admin walhook-receiver
wh_tmpdir
wh_items_pipeline
wh_wait_http "http://127.0.0.1:$APORT/livez" 30 || wh_fail "the admin does not answer /livez"
# the admin's state watcher started (its SIGHUP goes through the store)
wh_wait_until 30 grep -q "state version 1 applied" "$WH_TMP/admin.log" ||
    wh_fail "the admin never applied the runtime state"

# SIGHUP: each daemon stores the file as the next state version
echo 'dispatcher = { batch_max_events = 9; };' >>"$CONF"
declare -A said=([store]="SIGHUP: $CONF is state version"
    [admin]="reload: $CONF stored as the next state version"
    [ingestor]="reload: $CONF stored as the next state version"
    [dispatcher]="reload: $CONF stored as the next state version")
for d in store admin ingestor dispatcher; do
    kill -HUP "${WH_PIDS[$d]}"
    wh_wait_until 10 grep -qF "${said[$d]}" "$WH_TMP/$d.log" ||
        wh_fail "walhook-$d did not reload the file on SIGHUP"
    wh_alive "$d" || wh_fail "walhook-$d died on SIGHUP"
done
sleep 3 # idle: start-up work and the new versions done

# voluntary context switches, and CPU time in clock ticks, of the main
# thread of daemon $1
vcsw() {
    local pid=${WH_PIDS[$1]}
    awk '$1 == "voluntary_ctxt_switches:" { print $2 }' "/proc/$pid/task/$pid/status"
}
cpu() {
    local pid=${WH_PIDS[$1]} s
    s=$(cat "/proc/$pid/task/$pid/stat") || return 1
    s=${s##*) } # the fields after the command name: state is the first
    awk '{ print $12 + $13 }' <<<"$s"
}
HZ=$(getconf CLK_TCK)
MAXCPU=$((WINDOW * HZ / 5))
declare -A before=() cbefore=()
for d in store ingestor dispatcher admin; do
    before[$d]=$(vcsw "$d") || wh_fail "cannot read the switches of walhook-$d"
    cbefore[$d]=$(cpu "$d") || wh_fail "cannot read the CPU time of walhook-$d"
done
sleep "$WINDOW"
declare -A got=() cgot=()
for d in store ingestor dispatcher admin; do
    got[$d]=$(($(vcsw "$d") - before[$d]))
    cgot[$d]=$(($(cpu "$d") - cbefore[$d]))
done
wh_log "main thread in $WINDOW s idle: voluntary context switches store ${got[store]}," \
    "admin ${got[admin]}, ingestor ${got[ingestor]}, dispatcher ${got[dispatcher]};" \
    "CPU ticks (of $((WINDOW * HZ))) store ${cgot[store]}, admin ${cgot[admin]}," \
    "ingestor ${cgot[ingestor]}, dispatcher ${cgot[dispatcher]}"
for d in store ingestor dispatcher admin; do
    [ "${cgot[$d]}" -le "$MAXCPU" ] ||
        wh_fail "walhook-$d's main thread used ${cgot[$d]} of $((WINDOW * HZ)) CPU ticks in" \
            "$WINDOW s idle after a SIGHUP (at most $MAXCPU wanted): a busy loop"
done
for d in store admin; do
    [ "${got[$d]}" -le "$MAXSW" ] ||
        wh_fail "walhook-$d's main thread switched out ${got[$d]} times in $WINDOW s idle" \
            "(at most $MAXSW wanted; a 100 ms poll gives about $((WINDOW * 10)))"
done

# SIGTERM: each daemon stops by itself (exit 0), well before the 5 s
# shutdown watchdog; the store last, as walhook up does
for d in admin dispatcher ingestor store; do
    pid=${WH_PIDS[$d]}
    kill -TERM "$pid"
    wh_wait_until 10 eval "! kill -0 $pid 2>/dev/null" || wh_fail "walhook-$d ignored SIGTERM"
    wait "$pid"
    rc=$?
    unset "WH_PIDS[$d]"
    [ "$rc" = 0 ] || wh_fail "walhook-$d exited with status $rc on SIGTERM"
    grep -q "shutdown did not finish" "$WH_TMP/$d.log" &&
        wh_fail "walhook-$d was cut short by its shutdown watchdog"
done
wh_pass "SIGHUP reloaded each daemon; then idle in $WINDOW s, main-thread switches store" \
    "${got[store]}, admin ${got[admin]} (at most $MAXSW), CPU ticks store ${cgot[store]}," \
    "admin ${cgot[admin]}, ingestor ${cgot[ingestor]}, dispatcher ${cgot[dispatcher]} (at" \
    "most $MAXCPU); SIGTERM stopped each daemon with status 0"
