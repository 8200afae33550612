#!/usr/bin/env bash
# The store's Stats answers while a state write or a conditional SetOffset
# (the admin's POST .../offset: a condition, checked under the state's
# lock) waits for the disk, and GetState while the conditional SetOffset
# does. Both held the state's lock across their synced write, and GetState
# and Stats (walhook_state_version) took it: while the write waited, the
# admin's /metrics and /readyz showed the store down and its state reads
# timed out. The store's WAL syncs are held at a gate (wh_syncgate) while
# each write is under way; Stats (and GetState during the SetOffset) must
# answer then (wh_statectl's client gives up after 5 s), with the version
# before the write, and the write must still be held. A GetState sent
# during the held state write answers once it is done, with the version it
# wrote: a writer whose reply was lost reads the state back to learn
# whether its write landed (test_admin_create_slow_write).
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_syncgate_setup
wh_require_bins tests/wh_statectl
CONF="$WH_TMP/walhook.conf"
DATA="$WH_TMP/data"
mkdir -m 700 "$DATA"
# the store alone: no source is read, no target posted to
cat >"$CONF" <<CONFEOF
data_dir = "$DATA";
log_level = "info";
tenants = (
  { name = "default";
    source = { dsn = "host=127.0.0.1 port=9 dbname=none"; slot = "walhook"; publication = "walhook"; };
    targets = ( { name = "t0"; url = "http://127.0.0.1:9/hook"; } ); }
);
CONFEOF
wh_spawn_gated_store
wh_wait_until 30 test -S "$DATA/store.sock" || wh_fail "the store did not start"
ctl() { "$BIN/tests/wh_statectl" -c "$CONF" "$@"; }
V=$(ctl version) || wh_fail "GetState: $V"

# held WHAT GET CMD...: CMD (a write) in the background with the store's
# syncs held; Stats must answer with version V while it waits, and GetState
# too when GET is "now"; when GET is "after", a GetState sent while the
# write is held answers once it is done, with the version it wrote (given
# 3 s to answer early, as it did)
held() {
    local what=$1 get=$2 pid gp="" problem="" v=$V
    shift 2
    touch "$GATE"
    "$@" >"$WH_TMP/write.log" 2>&1 &
    pid=$!
    if ! wh_wait_until 20 test -e "$GATE.held"; then
        problem="the $what did not reach its synced write"
    elif ! ctl stats >"$WH_TMP/stats.txt" 2>&1; then
        problem="Stats while the $what waits for the disk: $(head -c 300 "$WH_TMP/stats.txt")"
    elif ! grep -q "^walhook_state_version $V\$" "$WH_TMP/stats.txt"; then
        problem="Stats while the $what waits: no walhook_state_version $V"
    elif [ "$get" = now ] && ! v=$(ctl version 2>&1); then
        problem="GetState while the $what waits for the disk: $v"
    elif [ "$v" != "$V" ]; then
        problem="GetState while the $what waits: version $v, not $V"
    elif [ "$get" = after ]; then
        : >"$WH_TMP/get.out"
        ctl version >"$WH_TMP/get.out" 2>&1 &
        gp=$!
        wh_wait_until 3 test -s "$WH_TMP/get.out" || true
    fi
    if [ -z "$problem" ] && { ! kill -0 "$pid" 2>/dev/null || [ ! -e "$GATE.held" ]; }; then
        problem="the $what was not held any more when Stats answered"
    fi
    rm -f "$GATE"
    wait "$pid" || problem="${problem:-the $what failed: $(cat "$WH_TMP/write.log")}"
    if [ -n "$gp" ]; then
        wait "$gp" || problem="${problem:-GetState sent during the $what: $(cat "$WH_TMP/get.out")}"
        v=$(cat "$WH_TMP/get.out")
        [ "$v" = $((V + 1)) ] || problem="${problem:-GetState sent during the $what answered version $v, not the written $((V + 1))}"
    fi
    [ -z "$problem" ] || wh_fail "$problem"
    wh_log "$what held: Stats answered (version $V), GetState ($get) version $v"
}

# the admin's set offset: conditional (the target exists, at version V)
held "conditional set offset" now ctl set-offset default t0 0/10:0 "$V"
[ "$(ctl offset default t0)" = "16 0" ] || wh_fail "the offset was not set: $(ctl offset default t0)"
# a state write
held "state write" after ctl set-target default t0 http_timeout_ms=3000
V2=$(ctl version) || wh_fail "GetState after the write: $V2"
[ "$V2" = $((V + 1)) ] || wh_fail "state version $V2 after the write, not $((V + 1))"

# A state write that arrives while a conditional SetOffset holds the
# state's lock across its held sync waits for that lock before it writes:
# a GetState sent meanwhile must wait for it too, and answer the version it
# wrote (it counted itself only once it had the lock: GetState answered
# V2 at once, and the write then landed as V2 + 1, the admin's read-back
# after a lost PutState reply taking "V2" as "nothing written").
touch "$GATE"
ctl set-offset default t0 0/20:0 "$V2" >"$WH_TMP/so.log" 2>&1 &
SP=$!
wh_wait_until 20 test -e "$GATE.held" || wh_fail "the conditional set offset did not reach its sync"
# its GetState answers at once (a conditional SetOffset is not waited
# for); its PutState then waits for the state's lock
ctl set-target default t0 http_timeout_ms=4000 >"$WH_TMP/write.log" 2>&1 &
WP=$!
sleep 1 # the PutState reaches the store (a pass if it came later)
: >"$WH_TMP/get.out"
ctl version >"$WH_TMP/get.out" 2>&1 &
GP=$!
wh_wait_until 3 test -s "$WH_TMP/get.out" || true
kill -0 "$WP" 2>/dev/null || wh_fail "the state write did not wait for the held set offset: $(cat "$WH_TMP/write.log")"
rm -f "$GATE"
wait "$SP" || wh_fail "the conditional set offset failed: $(cat "$WH_TMP/so.log")"
wait "$WP" || wh_fail "the state write behind the set offset failed: $(cat "$WH_TMP/write.log")"
wait "$GP" || wh_fail "GetState sent while a state write waited for the lock: $(cat "$WH_TMP/get.out")"
v=$(cat "$WH_TMP/get.out")
[ "$v" = $((V2 + 1)) ] ||
    wh_fail "GetState sent while a state write waited for the state's lock (behind a conditional set offset) answered version $v, not the $((V2 + 1)) it wrote"
wh_log "a state write queued behind a held conditional set offset: GetState answered its version $v"
wh_pass "Stats answered while a conditional set offset and a state write waited for the disk, GetState during the set offset with the version before it and during the write (held, or queued behind the set offset) with the version it wrote"
