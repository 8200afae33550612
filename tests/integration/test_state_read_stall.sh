#!/usr/bin/env bash
# The store's GetState and Stats answer while a state write or a
# conditional SetOffset (the admin's POST .../offset: a condition, checked
# under the state's lock) waits for the disk. Both held the state's lock
# across their synced write, and GetState and Stats (walhook_state_version)
# took it: while the write waited, the admin's /metrics and /readyz showed
# the store down and its state reads timed out. The store's WAL syncs are
# held at a gate (wh_syncgate) while each write is under way; GetState and
# Stats must answer then (wh_statectl's client gives up after 5 s), with the
# version before the write, and the write must still be held.
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

# held WHAT CMD...: CMD (a write) in the background with the store's syncs
# held; GetState and Stats must answer with version V while it waits
held() {
    local what=$1 pid problem="" v
    shift
    touch "$GATE"
    "$@" >"$WH_TMP/write.log" 2>&1 &
    pid=$!
    if ! wh_wait_until 20 test -e "$GATE.held"; then
        problem="the $what did not reach its synced write"
    elif ! ctl stats >"$WH_TMP/stats.txt" 2>&1; then
        problem="Stats while the $what waits for the disk: $(head -c 300 "$WH_TMP/stats.txt")"
    elif ! grep -q "^walhook_state_version $V\$" "$WH_TMP/stats.txt"; then
        problem="Stats while the $what waits: no walhook_state_version $V"
    elif ! v=$(ctl version 2>&1); then
        problem="GetState while the $what waits for the disk: $v"
    elif [ "$v" != "$V" ]; then
        problem="GetState while the $what waits: version $v, not $V"
    elif ! kill -0 "$pid" 2>/dev/null || [ ! -e "$GATE.held" ]; then
        problem="the $what was not held any more when GetState and Stats answered"
    fi
    rm -f "$GATE"
    wait "$pid" || problem="${problem:-the $what failed: $(cat "$WH_TMP/write.log")}"
    [ -z "$problem" ] || wh_fail "$problem"
    wh_log "$what held: GetState and Stats answered (version $V)"
}

# the admin's set offset: conditional (the target exists, at version V)
held "conditional set offset" ctl set-offset default t0 0/10:0 "$V"
[ "$(ctl offset default t0)" = "16 0" ] || wh_fail "the offset was not set: $(ctl offset default t0)"
# a state write
held "state write" ctl set-target default t0 http_timeout_ms=3000
V2=$(ctl version) || wh_fail "GetState after the write: $V2"
[ "$V2" = $((V + 1)) ] || wh_fail "state version $V2 after the write, not $((V + 1))"
wh_pass "GetState and Stats answered while a conditional set offset and a state write waited for the disk"
