#!/usr/bin/env bash
# `walhook up` SIGKILLed again and again (issue 5, defect 1). Each time its
# daemons get SIGTERM (parent-death signal) and must stop by themselves
# within their shutdown deadline; the next `walhook up`, started at once,
# must find any daemon of the previous instance still on the data directory
# (pid files, RocksDB LOCK holder), stop it with SIGTERM (none may need
# SIGKILL), say so, and get ready (/readyz 200). ITER rounds (default 30: a one-in-ten hang shows up with 96 %
# probability), a row inserted in each; at the end every row has arrived, a
# SIGTERM stops the last instance (exit 0) and no daemon process of any
# round is left. A `walhook up` started next to a running instance, or next
# to a daemon started by hand, is refused and leaves them alone.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
ITER=${ITER:-30}
declare -A SEEN=() # every daemon pid of every round
# ours: a live (not zombie) process whose environment names our data dir
ours() {
    grep -qa "WALHOOK_DATA_DIR=$WH_TMP/data" "/proc/$1/environ" 2>/dev/null &&
        ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null
}
kill_leftovers() {
    local p
    for p in "${!SEEN[@]}"; do ours "$p" && kill -KILL "$p" 2>/dev/null; done
    wh_cleanup
}
trap kill_leftovers EXIT
wh_require_bins walhook walhook-store walhook-ingestor walhook-dispatcher walhook-admin \
    walhook-receiver
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
pg_psql -c "CREATE TABLE kills (id int PRIMARY KEY)" || wh_fail "table setup failed"

RPORT=$(wh_free_port)
APORT=$(wh_free_port)
READYZ="http://127.0.0.1:$APORT/readyz"
LOG="$WH_TMP/walhook.log"
wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --out "$WH_TMP/received.jsonl"
up() {
    wh_spawn walhook "$BIN/walhook" up --source "$PG_DSN" --target "http://127.0.0.1:$RPORT/hook" \
        --data "$WH_TMP/data" --admin "127.0.0.1:$APORT"
}

remember_children() {
    local p
    for p in $(pgrep -P "$1" 2>/dev/null); do SEEN[$p]=1; done
}
# A daemon started by hand on the data directory is not a leftover: walhook
# up refuses to start and leaves it running.
wh_spawn handmade env WALHOOK_DATA_DIR="$WH_TMP/data" "$BIN/walhook-store"
wh_wait_until 30 grep -q "store running" "$WH_TMP/handmade.log" || wh_fail "a store alone did not start"
out=$("$BIN/walhook" up --source "$PG_DSN" \
    --target "http://127.0.0.1:$RPORT/hook" --data "$WH_TMP/data" --admin "127.0.0.1:$APORT" 2>&1)
rc=$?
[ "$rc" = 1 ] && grep -q "was not started by walhook up; stop it first" <<<"$out" ||
    wh_fail "walhook up next to a store started by hand: exit $rc: $out"
wh_alive handmade || wh_fail "walhook up stopped a store it had not started"
wh_kill handmade TERM

t0=$SECONDS
for i in $(seq 1 "$ITER"); do
    echo "---- round $i" >>"$LOG"
    up
    pid=${WH_PIDS[walhook]}
    wh_wait_http "$READYZ" 30 ||
        wh_fail "round $i: walhook up (pid $pid) did not get ready within 30 s"
    remember_children "$pid"
    pg_psql -c "INSERT INTO kills VALUES ($i)" || wh_fail "round $i: insert failed"
    sleep "0.$((RANDOM % 4))"
    remember_children "$pid"
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null
    unset "WH_PIDS[walhook]"
done
secs=$((SECONDS - t0))
stale=$(grep -c 'of a previous instance is still running' "$LOG")
killed=$(grep -c 'of a previous instance did not stop within' "$LOG")
deadline=$(grep -c 'shutdown did not finish within' "$LOG")
abandoned=$(grep -c 'closing the socket did not finish within' "$LOG")
wh_log "$ITER rounds in $secs s; leftovers stopped by the next walhook up: $stale" \
    "(SIGKILLed: $killed); shutdown deadlines hit: $deadline; socket closes abandoned: $abandoned"
# Every daemon stops by itself within its shutdown deadline: none may need
# the next instance's SIGKILL.
[ "$killed" = 0 ] || wh_fail "$killed leftover daemon(s) did not stop on SIGTERM: $(grep \
    'did not stop within' "$LOG" | head -n 3)"

up
pid=${WH_PIDS[walhook]}
wh_wait_http "$READYZ" 30 || wh_fail "the last walhook up did not get ready"
remember_children "$pid"
arrived() {
    [ "$(grep -o '"after":{"id":[0-9]*}' "$WH_TMP/received.jsonl" 2>/dev/null | sort -u |
        wc -l)" -ge "$ITER" ]
}
wh_wait_until 60 arrived || wh_fail "not every inserted row arrived ($(grep -o '"after":{"id":[0-9]*}' \
    "$WH_TMP/received.jsonl" | sort -u | wc -l) of $ITER)"
# A second walhook up on the same data directory must leave a running
# instance alone: refused, naming it.
out=$("$BIN/walhook" up --source "$PG_DSN" --target "http://127.0.0.1:$RPORT/hook" \
    --data "$WH_TMP/data" --admin "127.0.0.1:$(wh_free_port)" 2>&1)
rc=$?
[ "$rc" = 1 ] && grep -q "another walhook up (pid $pid) runs on the data directory" <<<"$out" ||
    wh_fail "a second walhook up on a running instance: exit $rc: $out"
curl -fsS -o /dev/null "$READYZ" || wh_fail "the running instance suffered from the second walhook up"
kill -TERM "$pid"
rc=0
wh_wait_until 20 sh -c "! kill -0 $pid 2>/dev/null" || wh_fail "walhook up did not stop after SIGTERM"
wait "$pid" || rc=$?
unset "WH_PIDS[walhook]"
[ "$rc" = 0 ] || wh_fail "walhook up exited with $rc after SIGTERM"
left=""
for p in "${!SEEN[@]}"; do
    ours "$p" && left+=" $p:$(tr '\0' ' ' <"/proc/$p/cmdline")"
done
[ -z "$left" ] || wh_fail "daemon processes left behind:$left"
wh_pass "$ITER SIGKILLs of walhook up in $secs s, each next walhook up ready; $stale leftover" \
    "daemons stopped by the next instance ($killed needed SIGKILL), $deadline shutdown deadlines," \
    "$abandoned socket closes abandoned; all $ITER rows arrived; ${#SEEN[@]} daemon pids, none left"
