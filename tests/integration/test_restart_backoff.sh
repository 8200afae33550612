#!/usr/bin/env bash
# Restart policy of `walhook up` (issue 5, defect 4), checked through its log,
# never through timing: a daemon killed after it became ready is restarted
# at once; one that keeps dying before it is ready (here: the configuration
# file was broken meanwhile, so each new walhook-dispatcher exits 2) backs
# off 250, 500, 1000 ms...; once it is ready again (file repaired) the
# backoff is reset and the next kill is again restarted at once.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
wh_require_bins walhook walhook-store walhook-ingestor walhook-dispatcher walhook-admin \
    walhook-receiver
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
RPORT=$(wh_free_port)
APORT=$(wh_free_port)
READYZ="http://127.0.0.1:$APORT/readyz"
CONF="$WH_TMP/walhook.conf"
wh_write_conf "$CONF" "$PG_DSN" "$WH_TMP/data" "$APORT" "http://127.0.0.1:$RPORT/hook"
cp "$CONF" "$WH_TMP/good.conf"
wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --out "$WH_TMP/received.jsonl"
wh_spawn walhook "$BIN/walhook" up -c "$CONF"
UP=${WH_PIDS[walhook]}
LOG="$WH_TMP/walhook.log"
wh_wait_http "$READYZ" 60 || wh_fail "walhook never became ready"

child() { wh_child_pid "$UP" "$1"; }
logged() { grep -qF -- "$1" "$LOG"; }
ready_child() { # NAME: the supervisor logged that its current child is ready
    local p
    p=$(child "$1")
    [ -n "$p" ] && logged "walhook-$1 (pid $p) is ready"
}
# kill_ready NAME: waits until the supervisor saw walhook-NAME ready, kills it,
# and checks the restart was immediate; prints the new pid
kill_ready() {
    local name=$1 old new
    wh_wait_until 60 ready_child "$name" || wh_fail "walhook-$name never logged as ready"
    old=$(child "$name")
    kill -KILL "$old"
    wh_wait_until 15 logged "walhook-$name (pid $old) killed by signal 9" ||
        wh_fail "the death of walhook-$name (pid $old) was not logged"
    grep -F "walhook-$name (pid $old) killed by signal 9" "$LOG" |
        grep -qF "(it was ready); restarting walhook-$name at once" ||
        wh_fail "walhook-$name (pid $old) was ready but not restarted at once: $(grep -F \
            "(pid $old) killed" "$LOG")"
    wh_log "walhook-$name (pid $old) was ready: restarted at once"
}

kill_ready dispatcher
kill_ready ingestor
kill_ready admin
kill_ready dispatcher

# Break the file: the next dispatchers exit 2 at start, before they are ready.
# the child started by the last kill must have read the good file before it
# is broken (else it fails before ready, which is the next step's case)
wh_wait_until 60 ready_child dispatcher || wh_fail "walhook-dispatcher never logged as ready"
echo 'this is not a setting' >>"$CONF"
before=$(grep -c "restarting walhook-dispatcher in " "$LOG")
kill_ready dispatcher
backoffs() { [ "$(grep -c "restarting walhook-dispatcher in " "$LOG")" -ge $((before + 3)) ]; }
wh_wait_until 30 backoffs || wh_fail "no backoff for a dispatcher that keeps failing: $(grep \
    'walhook-dispatcher' "$LOG" | tail -n 5)"
mapfile -t delays < <(grep -o "restarting walhook-dispatcher in [0-9]* ms" "$LOG" |
    tail -n +$((before + 1)) | head -n 3 | awk '{print $4}')
[ "${delays[*]}" = "250 500 1000" ] || wh_fail "backoff of a dispatcher failing before ready:" \
    "${delays[*]} ms, expected 250 500 1000"
grep -q "walhook-dispatcher (pid [0-9]*) exited with code 2 .*before it became ready (2 times in a row)" \
    "$LOG" || wh_fail "the failures before readiness are not counted in the log"
wh_log "dispatcher failing before ready: restarted in ${delays[*]} ms"

# Repair it: the next dispatcher gets ready, which resets the backoff.
cp "$WH_TMP/good.conf" "$CONF"
wh_wait_until 30 ready_child dispatcher || wh_fail "the dispatcher did not recover"
kill_ready dispatcher
wh_wait_http "$READYZ" 60 || wh_fail "/readyz not 200 at the end"
at_once=$(grep -c "restarting walhook-[a-z]* at once" "$LOG")
kill -TERM "$UP"
rc=0
wait "$UP" || rc=$?
unset "WH_PIDS[walhook]"
[ "$rc" = 0 ] || wh_fail "walhook up exited $rc after SIGTERM"
wh_pass "6 kills of ready daemons each restarted at once ($at_once logged); a dispatcher dying" \
    "before ready backed off ${delays[*]} ms; ready again reset it"
