#!/usr/bin/env bash
# Replayed dead letters are delivered even when the target's filter would
# drop them now (a replay is the operator's explicit request): target t0
# has filter_tables = "nomatch"; 8 dead letters are written for it
# (wh_statectl dlq-write), replayed (POST .../dlq/replay {"all":true}), and
# the dispatcher then posts those 8 to the receiver (envelope and column
# lists still apply) and leaves the replay queue empty; the live stream
# stays filtered (none of the other events reaches the receiver).
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_pipeline_setup
wh_require_bins tests/wh_loadgen tests/wh_statectl
pg_psql -c "CREATE PUBLICATION walhook FOR ALL TABLES" >/dev/null || wh_fail "publication"
"$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --tables 1 --setup-only >/dev/null 2>&1 || wh_fail "table setup"
RPORT=$(wh_free_port)
wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --out "$WH_TMP/got.jsonl"
wh_wait_http "http://127.0.0.1:$RPORT/" 5 || wh_fail "the receiver did not start"
APORT=$(wh_free_port)
CONF="$WH_TMP/walhook.conf"
wh_write_conf "$CONF" "$PG_DSN" "$WH_TMP/data" "$APORT" "http://127.0.0.1:$RPORT/t0"
sed -i 's|{ name = "t0"; url = \("[^"]*"\); }|{ name = "t0"; url = \1; filter_tables = "nomatch"; }|' "$CONF"
grep -q 'filter_tables = "nomatch"' "$CONF" || wh_fail "config: $(cat "$CONF")"
mkdir -m 700 "$WH_TMP/data"
wh_spawn store "$BIN/walhook-store" -c "$CONF"
wh_wait_until 10 test -S "$WH_TMP/data/store.sock" || wh_fail "the store did not start"
wh_spawn ingestor "$BIN/walhook-ingestor" -c "$CONF"
TOKEN=admin-token-of-test-dlq-replay-0123456789
WALHOOK_ADMIN_ADMIN_TOKEN=$TOKEN wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
wh_wait_slot_active walhook 60 || wh_fail "the ingestor never started streaming"
wh_wait_http "http://127.0.0.1:$APORT/livez" 20 || wh_fail "the admin does not answer"
"$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --changes 20 --seed 1 --max-txn 1 --tables 1 --expect "$WH_TMP/expected.jsonl" \
    >"$WH_TMP/loadgen.log" 2>&1 || wh_fail "load generation failed"
STATECTL=("$BIN/tests/wh_statectl" -c "$CONF")
_dead() { "${STATECTL[@]}" dlq-write default t0 8 >"$WH_TMP/dlq-write.out" 2>&1; }
wh_wait_until 30 _dead || wh_fail "dlq-write failed: $(cat "$WH_TMP/dlq-write.out")"
BASE="http://127.0.0.1:$APORT/v1/tenants/default/targets/t0/dlq"
api() { # METHOD URL [BODY]: the status; the body in $WH_TMP/body
    local args=()
    [ -n "${3:-}" ] && args=(-H 'Content-Type: application/json' --data "$3")
    curl -sS --max-time 10 -o "$WH_TMP/body" -w '%{http_code}' -X "$1" \
        -H "Authorization: Bearer $TOKEN" "${args[@]}" "$2"
}
jq_() { python3 -c "import json,sys; d=json.load(open('$WH_TMP/body')); print($1)"; }
[ "$(api GET "$BASE")" = 200 ] && [ "$(jq_ 'd["total"]')" = 8 ] || wh_fail "DLQ: $(cat "$WH_TMP/body")"
[ "$(api POST "$BASE/replay" '{"all":true}')" = 200 ] || wh_fail "replay: $(cat "$WH_TMP/body")"
[ "$(jq_ 'd["replayed"]')" = 8 ] || wh_fail "replayed: $(cat "$WH_TMP/body")"

wh_spawn dispatcher "$BIN/walhook-dispatcher" -c "$CONF"
_pending0() { [ "$(api GET "$BASE")" = 200 ] && [ "$(jq_ 'd["replay_pending"]')" = 0 ]; }
wh_wait_until 30 _pending0 || wh_fail "the replay queue was not emptied: $(cat "$WH_TMP/body")"
n() { grep -o '"id":"default:[^"]*"' "$WH_TMP/got.jsonl" 2>/dev/null | sort -u | wc -l; }
wh_wait_until 10 bash -c "[ \$(grep -o '\"id\":\"default:[^\"]*\"' '$WH_TMP/got.jsonl' 2>/dev/null | sort -u | wc -l) -ge 8 ]" ||
    wh_fail "the replay queue is empty but the receiver got $(n) of the 8 replayed dead letters (dropped by the filter)"
sleep 2
[ "$(n)" = 8 ] || wh_fail "the receiver got $(n) events, expected the 8 replayed (the stream is filtered)"
wh_pass "8 replayed dead letters delivered under a filter that drops the stream"
