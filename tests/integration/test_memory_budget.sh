#!/usr/bin/env bash
# Issue 10, memory budget at runtime: a store whose memory_budget_bytes
# leaves room for less than one more tenant or target. Its parts and budget
# are gauges in the admin's /metrics; adding a tenant or a target over the
# admin REST API is refused with 409 naming the store's parts (its state
# does not change); removing a target passes; with the budget raised (store
# restarted) the same tenant is created. Every daemon refuses to start
# below its plan (exit 2, one line per part).
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-admin walhook-dispatcher walhook-ingestor
command -v jq >/dev/null || wh_fail "jq is missing (scripts/install-deps.sh --test)"
wh_tmpdir
DATA="$WH_TMP/data"
mkdir -m 700 "$DATA"
APORT=$(wh_free_port)
A="http://127.0.0.1:$APORT"
CONF="$WH_TMP/walhook.conf"
wh_write_conf "$CONF" "postgresql://unused@127.0.0.1:1/x" "$DATA" "$APORT" "http://127.0.0.1:9/hook"
TOKEN=admin-token-$RANDOM-0123456789

# every daemon below its plan: exit 2, a line per part, the setting named
for d in store dispatcher admin ingestor; do
    WALHOOK_MEMORY_BUDGET_BYTES=1048576 "$BIN/walhook-$d" -c "$CONF" >"$WH_TMP/refused-$d.out" 2>&1
    rc=$?
    [ "$rc" = 2 ] || wh_fail "walhook-$d below its budget: exit $rc, not 2: $(tail -3 "$WH_TMP/refused-$d.out")"
    grep -q "^  process " "$WH_TMP/refused-$d.out" || wh_fail "walhook-$d: no line per part"
    grep -q "memory_budget_bytes" "$WH_TMP/refused-$d.out" || wh_fail "walhook-$d: the setting is not named"
done

need_of_store() { # LOG: the plan's need (sum + headroom) the store logged
    sed -n 's/.*memory plan: sum [0-9]* bytes + 20% headroom = \([0-9]*\) .*/\1/p' "$1" | tail -n 1
}
start_store() { # BUDGET
    WALHOOK_MEMORY_BUDGET_BYTES=$1 wh_spawn store "$BIN/walhook-store" -c "$CONF"
    wh_wait_until 20 test -S "$DATA/store.sock" || wh_fail "the store did not start"
}

# the plan for one tenant and one target, then a budget 512 KiB above it
start_store 0
wh_wait_until 10 grep -q "memory plan: sum" "$WH_TMP/store.log" || wh_fail "no memory plan logged"
NEED=$(need_of_store "$WH_TMP/store.log")
wh_kill store TERM
BUDGET=$((NEED + 524288))
start_store "$BUDGET"
WALHOOK_ADMIN_ADMIN_TOKEN=$TOKEN wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
wh_wait_http "$A/livez" 30 || wh_fail "the admin does not answer /livez"

M=$(curl -sS --max-time 10 "$A/metrics")
grep -q "^walhook_memory_budget_bytes{daemon=\"store\"} $BUDGET\$" <<<"$M" ||
    wh_fail "no walhook_memory_budget_bytes of the store ($BUDGET) in /metrics"
for p in block_cache memtables iterators compaction_buffers thread_stacks ipc_buffers ipc_direct; do
    grep -q "^walhook_memory_part_bytes{daemon=\"store\",part=\"$p\"} [0-9]" <<<"$M" ||
        wh_fail "no gauge for the store's part $p in /metrics"
done
grep -q '^walhook_memory_part_bytes{daemon="admin",part="http_connections"} ' <<<"$M" ||
    wh_fail "no gauge of the admin's own parts"

api() { wh_admin_api "$@"; }
TENANT='{"name":"big","source":{"dsn":"postgresql://u@127.0.0.1:1/x"}}'
api POST /v1/tenants "$TENANT"
[ "$CODE" = 409 ] || wh_fail "a tenant over the store's budget: $CODE, not 409: $BODY"
[ "$(jq -r .error.field <<<"$BODY")" = memory_budget_bytes ] || wh_fail "409 without the field: $BODY"
jq -r .error.message <<<"$BODY" | grep -q "walhook-store needs.*memtables" ||
    wh_fail "409 does not name the store's parts: $BODY"
api GET /v1/tenants/big
[ "$CODE" = 404 ] || wh_fail "the refused tenant exists ($CODE)"
api POST /v1/tenants/default/targets '{"name":"more","url":"http://127.0.0.1:9/more"}'
[ "$CODE" = 409 ] || wh_fail "a target over the store's budget: $CODE, not 409: $BODY"
jq -r .error.message <<<"$BODY" | grep -q "iterators" || wh_fail "409 does not name iterators: $BODY"
api DELETE /v1/tenants/default/targets/t0
[ "$CODE" = 200 ] || wh_fail "removing a target at the budget: $CODE: $BODY"

# a larger budget: the same tenant is created
wh_kill store TERM
start_store $((NEED + 64 * 1048576))
for _ in $(seq 1 50); do
    api POST /v1/tenants "$TENANT"
    [ "$CODE" = 201 ] && break
    sleep 0.2
done
[ "$CODE" = 201 ] || wh_fail "with room in the budget the tenant was not created: $CODE: $BODY"
wh_pass "store budget $BUDGET bytes (need $NEED): tenant and target refused with 409 naming the parts, gauges in /metrics, removal passed, created once the budget was raised; 4 daemons refuse to start below their plan"
