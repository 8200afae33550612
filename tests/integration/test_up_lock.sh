#!/usr/bin/env bash
# Two `walhook up` on one data directory: the one that takes the data
# directory's lock (walhook-up.lock) runs, the other exits non-zero at once
# naming the data directory and the holder's pid, even when both start
# together (before either has a daemon with a pid file). A daemon that loses
# its exclusive resource (here a second walhook-store, which cannot take the
# RocksDB LOCK) leaves the running daemon's pid file alone.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_items_conf

wh_spawn upA "$BIN/walhook" up -c "$CONF"
wh_spawn upB "$BIN/walhook" up -c "$CONF"
one_gone() { ! wh_alive upA || ! wh_alive upB; }
wh_wait_until 30 one_gone || wh_fail "two walhook up run on one data directory"
if wh_alive upA; then win=upA lose=upB; else win=upB lose=upA; fi
WIN=${WH_PIDS[$win]}
rc=0
wait "${WH_PIDS[$lose]}" || rc=$?
unset "WH_PIDS[$lose]"
[ "$rc" != 0 ] || wh_fail "the second walhook up exited 0"
grep -qF "another walhook up (pid $WIN) runs on the data directory $DATA" "$WH_TMP/$lose.log" ||
    wh_fail "the losing walhook up does not name the holder and the data directory:" \
        "$(cat "$WH_TMP/$lose.log")"
wh_log "$lose exited $rc: $(grep -F 'another walhook up' "$WH_TMP/$lose.log")"
wh_wait_http "http://127.0.0.1:$APORT/readyz" 60 || wh_fail "the winning walhook up never became ready"

pidfiles_match() {
    local d p
    for d in store ingestor dispatcher admin; do
        p=$(wh_child_pid "$WIN" "$d")
        [ -n "$p" ] && [ "$(cat "$DATA/$d.pid" 2>/dev/null)" = "$p" ] || return 1
    done
}
wh_wait_until 30 pidfiles_match || wh_fail "the pid files do not name the running daemons"

# a third one, started by hand later, is refused the same way
rc=0
"$BIN/walhook" up -c "$CONF" >"$WH_TMP/upC.log" 2>&1 || rc=$?
[ "$rc" != 0 ] || wh_fail "a third walhook up exited 0"
grep -qF "another walhook up (pid $WIN)" "$WH_TMP/upC.log" ||
    wh_fail "the third walhook up: $(cat "$WH_TMP/upC.log")"

# a second store fails on the RocksDB LOCK and must not touch store.pid
rc=0
"$BIN/walhook-store" -c "$CONF" >"$WH_TMP/store2.log" 2>&1 || rc=$?
[ "$rc" != 0 ] || wh_fail "a second walhook-store on the same data directory exited 0"
pidfiles_match || wh_fail "a failed second store changed the pid files: store.pid is" \
    "'$(cat "$DATA/store.pid" 2>/dev/null)', the store is $(wh_child_pid "$WIN" store)"
wh_alive "$win" || wh_fail "the winning walhook up died"
wh_pass "two concurrent walhook up: one runs, the other exits $rc naming the holder;" \
    "the pid files survive a failed second store"
