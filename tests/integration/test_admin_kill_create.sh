#!/usr/bin/env bash
# The admin SIGKILLed in the middle of POST /v1/tenants/default/targets, after
# the create's SetOffset (its start offset) reached the store and before the
# PutState that names the target: the offset is live and no target names it
# (an orphan, docs/INTERNALS.md "Orphan start offsets"). Deterministic: the
# store's WAL syncs are held (wh_syncgate) while the SetOffset waits, the
# admin is killed there, then the gate opens.
#   1. gA: a create of it is refused (409) within the grace period the store
#      gives the create that set the offset, and the retried create succeeds
#      once it has passed (201), with the start offset that retry set;
#      DELETE of the target then works.
#   2. gB: left alone, the orphan pins the tenant's GC watermark (checked
#      while the store keeps it: the drop bound is the default, 10 min);
#      after a store restart (the orphan found on disk) the store drops it
#      once the drop bound has passed, and the watermark moves to t0's
#      offset.
# The bounds are short here through WH_TEST_STORE_CREATE_GRACE_MS and
# WH_TEST_STORE_ORPHAN_DROP_MS, which exist for tests only.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-admin walhook-receiver \
    tests/wh_statectl tests/wh_syncgate.so
wh_tmpdir
export WALHOOK_ADMIN_ADMIN_TOKEN=admin-token-of-test-admin-kill-create-0123
AUTH="Authorization: Bearer $WALHOOK_ADMIN_ADMIN_TOKEN"
wh_items_prepare
GATE="$WH_TMP/gate"
SC=("$BIN/tests/wh_statectl" -c "$CONF")
start_store() { # [VAR=VALUE...]: the environment of the store (the test bounds)
    wh_spawn_gated_store "$@"
    wh_wait_until 20 "${SC[@]}" version >/dev/null || wh_fail "the store did not start"
}
start_admin() {
    wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
    wh_wait_http "http://127.0.0.1:$APORT/livez" 20 || wh_fail "the admin did not start"
}
start_store WH_TEST_STORE_CREATE_GRACE_MS=4000
wh_spawn ingestor "$BIN/walhook-ingestor" -c "$CONF"
wh_spawn dispatcher "$BIN/walhook-dispatcher" -c "$CONF"
start_admin
wh_wait_slot_active walhook 60 || wh_fail "the ingestor did not start streaming"
TG="http://127.0.0.1:$APORT/v1/tenants/default/targets"
post() { # NAME -> the status; the body in $WH_TMP/post.out
    curl -s -o "$WH_TMP/post.out" -w '%{http_code}' --max-time 30 -X POST -H "$AUTH" \
        -H 'Content-Type: application/json' \
        --data "{\"name\":\"$1\",\"url\":\"http://127.0.0.1:$RPORT/$1\"}" "$TG"
}
offset() { "${SC[@]}" offset default "$1"; } # "LSN SEQ", "0 0" when not live
named() { "${SC[@]}" get | grep -q "\"name\":\"$1\""; }
live() { [ "$(offset "$1")" != "0 0" ]; }
t0_done() { # t0 has committed up to the tenant's end, which is past $1
    local p
    read -r -a p <<<"$("${SC[@]}" positions default t0)"
    [ "${p[0]}" = "${p[4]}" ] && [ "${p[4]}" -gt "$1" ]
}
rows=0
insert() { # N rows
    pg_psql -c "INSERT INTO items SELECT generate_series($((rows + 1)), $((rows + $1)))" \
        >/dev/null || wh_fail "insert failed"
    rows=$((rows + $1))
}

# orphan NAME: the admin killed while the create's SetOffset waits for its
# WAL sync, so the offset lands and the PutState never runs. The kill can
# come before the admin sent the SetOffset: then nothing is left and it is
# tried again, waiting longer.
orphan() {
    local name=$1 wait
    for wait in 0.3 1 2; do
        touch "$GATE"
        (post "$name" >"$WH_TMP/killed.code") &
        local cp=$!
        wh_wait_until 10 test -e "$GATE.held" || wh_fail "no WAL sync was held"
        sleep "$wait"
        kill -KILL "${WH_PIDS[admin]}"
        wait "${WH_PIDS[admin]}" 2>/dev/null
        unset "WH_PIDS[admin]"
        rm -f "$GATE"
        wait "$cp"
        wh_log "$name: the interrupted POST got '$(cat "$WH_TMP/killed.code")'"
        named "$name" && wh_fail "$name: the PutState ran before the kill"
        # the SetOffset, if sent, completes once the gate is open
        wh_wait_until 5 live "$name" && return 0
        wh_log "$name: no offset was set before the kill; again"
        start_admin
    done
    wh_fail "$name: no orphan offset could be made"
}

insert 100
wh_wait_until 30 t0_done 0 || wh_fail "t0 did not deliver the first rows"

# ---- 1. gA: refused within the grace, then created
orphan gA
ORPHAN_A=$(offset gA)
wh_log "gA: orphan offset $ORPHAN_A"
start_admin
code=$(post gA)
wh_log "gA: first retry -> $code $(head -c 300 "$WH_TMP/post.out")"
case "$code" in
409) grep -q "under way" "$WH_TMP/post.out" || wh_fail "gA: 409 for another reason" ;;
201) ;; # the grace passed already (a slow machine)
*) wh_fail "gA: the retry got $code" ;;
esac
created() { [ "$(post "$1")" = 201 ]; }
[ "$code" = 201 ] || wh_wait_until 30 created gA ||
    wh_fail "gA: the retried create never succeeded: $(head -c 300 "$WH_TMP/post.out")"
wh_log "gA: created: $(head -c 300 "$WH_TMP/post.out")"
grep -q "a new create of it replaces it" "$WH_TMP/store.log" ||
    wh_fail "gA: the store did not say it replaced the stale start offset"
named gA || wh_fail "gA: the state does not name it"
START=$(grep -o '"start_position":"[^"]*"' "$WH_TMP/post.out")
[ -n "$START" ] || wh_fail "gA: no start_position in the answer"
[ "$(offset gA)" != "0 0" ] || wh_fail "gA: its offset is not live"
st=$(curl -s -o "$WH_TMP/del.out" -w '%{http_code}' --max-time 10 -X DELETE -H "$AUTH" "$TG/gA")
[ "$st" = 200 ] || wh_fail "gA: DELETE got $st $(cat "$WH_TMP/del.out")"
[ "$(offset gA)" = "0 0" ] || wh_fail "gA: its offset is still live after the DELETE"

# ---- 2. gB: an orphan alone pins GC until the store drops it
orphan gB
read -r B_LSN _ <<<"$(offset gB)"
wh_log "gB: orphan offset $B_LSN"
insert 200
wh_wait_until 30 t0_done "$B_LSN" || wh_fail "t0 did not deliver the new rows"
read -r -a P <<<"$("${SC[@]}" positions default t0)"
wh_log "t0 (off_lsn off_seq wm_lsn wm_seq end_lsn): ${P[*]}"
[ "${P[2]}" -le "$B_LSN" ] || wh_fail "gB's orphan offset ($B_LSN) does not hold the watermark: ${P[*]}"
# a new store process: the orphan is first seen on disk
wh_kill store TERM
start_store WH_TEST_STORE_CREATE_GRACE_MS=4000 WH_TEST_STORE_ORPHAN_DROP_MS=3000
wm_moved() {
    local p
    read -r -a p <<<"$("${SC[@]}" positions default t0)"
    [ "${p[2]}" -gt "$B_LSN" ] && [ "${p[2]}" = "${p[0]}" ]
}
wh_wait_until 40 wm_moved ||
    wh_fail "the watermark stays at gB's orphan offset: $("${SC[@]}" positions default t0)"
wh_log "t0 after the drop: $("${SC[@]}" positions default t0)"
[ "$(offset gB)" = "0 0" ] || wh_fail "gB: its offset is still live"
grep "offset of default/gB" "$WH_TMP/store.log" | grep -q "dropped" ||
    wh_fail "the store did not log the dropped orphan offset of gB"
wh_pass "a create interrupted by an admin SIGKILL is retried after the grace; an orphan offset is dropped and GC moves on"
