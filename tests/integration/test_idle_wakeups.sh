#!/usr/bin/env bash
# An idle walhook does not wake needlessly: with the four daemons up and
# nothing to stream, the main thread of the admin (it only waits for
# signals) and of the store (only its 1 s tick and 60 s sweep) each switch
# out voluntarily a few times in WINDOW seconds, not ten times a second as
# with a 100 ms poll of the signal flags (about 10 * WINDOW). Counted from
# /proc/PID/task/PID/status (voluntary_ctxt_switches), not timed. Then a
# SIGHUP still reloads the file in the store and the admin, and a SIGTERM
# stops each daemon with exit status 0.
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
sleep 3 # idle: start-up work done

# voluntary context switches of the main thread of daemon $1
vcsw() {
    local pid=${WH_PIDS[$1]}
    awk '$1 == "voluntary_ctxt_switches:" { print $2 }' "/proc/$pid/task/$pid/status"
}
declare -A before=()
for d in store ingestor dispatcher admin; do
    before[$d]=$(vcsw "$d") || wh_fail "cannot read the switches of walhook-$d"
done
sleep "$WINDOW"
declare -A got=()
for d in store ingestor dispatcher admin; do
    got[$d]=$(($(vcsw "$d") - before[$d]))
done
wh_log "main thread's voluntary context switches in $WINDOW s: store ${got[store]}," \
    "admin ${got[admin]}, ingestor ${got[ingestor]}, dispatcher ${got[dispatcher]}"
for d in store admin; do
    [ "${got[$d]}" -le "$MAXSW" ] ||
        wh_fail "walhook-$d's main thread switched out ${got[$d]} times in $WINDOW s idle" \
            "(at most $MAXSW wanted; a 100 ms poll gives about $((WINDOW * 10)))"
done

# SIGHUP: the store and the admin each store the file as the next version
echo 'dispatcher = { batch_max_events = 9; };' >>"$CONF"
kill -HUP "${WH_PIDS[store]}"
wh_wait_until 10 grep -q "SIGHUP: $CONF is state version" "$WH_TMP/store.log" ||
    wh_fail "the store did not reload the file on SIGHUP"
kill -HUP "${WH_PIDS[admin]}"
wh_wait_until 10 grep -q "reload: $CONF stored as the next state version" "$WH_TMP/admin.log" ||
    wh_fail "the admin did not reload the file on SIGHUP"
wh_alive store && wh_alive admin || wh_fail "a daemon died on SIGHUP"

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
wh_pass "idle main-thread switches in $WINDOW s: store ${got[store]}, admin ${got[admin]}" \
    "(at most $MAXSW; ingestor ${got[ingestor]}, dispatcher ${got[dispatcher]}); SIGHUP" \
    "reloaded the store and the admin; SIGTERM stopped each daemon with status 0"
