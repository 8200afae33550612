#!/usr/bin/env bash
# A daemon that can never start because another process owns its endpoint
# (here: something else listens on the admin port) must back off: the
# readiness probe finds the other process answering, but a child counts as
# ready only once it has also stayed up SUP_STABLE_MS, so its quick deaths
# are failures before readiness (250, 500, 1000 ms ...), not "it was ready;
# restarting at once" ten times a second.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_items_conf
# the squatter on the admin port: an HTTP server that is not walhook-admin
wh_spawn squatter "$BIN/walhook-receiver" --listen "127.0.0.1:$APORT" --out "$WH_TMP/sq.jsonl"
wh_wait_until 30 curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$APORT/" ||
    wh_fail "the squatter does not listen"
wh_spawn walhook "$BIN/walhook" up -c "$CONF"
LOG="$WH_TMP/walhook.log"
deaths() { grep -c "walhook-admin (pid [0-9]*) exited with code" "$LOG"; }
enough() { [ "$(deaths)" -ge 4 ]; }
wh_wait_until 30 enough || wh_fail "walhook-admin did not keep failing: $(grep walhook-admin "$LOG" | tail -n 3)"
wh_alive walhook || wh_fail "walhook up exited"
if grep -q "walhook-admin (pid [0-9]*) .*(it was ready)" "$LOG"; then
    wh_fail "an admin that never listened was taken for ready:" \
        "$(grep -m 2 'walhook-admin (pid [0-9]*) .*(it was ready)' "$LOG")"
fi
grep -q "walhook-admin (pid [0-9]*) is ready" "$LOG" &&
    wh_fail "an admin that never listened was logged ready"
mapfile -t delays < <(grep -o "restarting walhook-admin in [0-9]* ms" "$LOG" | head -n 3 |
    awk '{print $4}')
[ "${delays[*]}" = "250 500 1000" ] || wh_fail "admin failing before ready: delays" \
    "'${delays[*]}' ms, expected 250 500 1000"
# the store, whose endpoint is its own, is still taken for ready
wh_wait_until 30 grep -q "walhook-store (pid [0-9]*) is ready" "$LOG" ||
    wh_fail "walhook-store never logged as ready"
wh_pass "$(deaths) deaths of an admin that cannot bind: backed off ${delays[*]} ms, never 'ready'"
