#!/usr/bin/env bash
# POST /v1/tenants/{t}/targets/{n}/resync: the target's offset moves to the
# tenant's end, and every table of the publication is backfilled (request
# table "*": a job per table). Rows that existed before walhook started
# (source.snapshot = never: no read of them so far) and rows inserted
# while walhook ran all arrive as read events afterwards, each row once;
# bad requests get 400/404.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_pipeline_setup
pg_psql -c "CREATE TABLE a (id int PRIMARY KEY, v text)" \
    -c "INSERT INTO a SELECT g, 'a' || g FROM generate_series(1, 3000) g" \
    -c "CREATE TABLE b (x int, y int, v text, PRIMARY KEY (x, y))" \
    -c "INSERT INTO b SELECT g / 10, g % 10, 'b' FROM generate_series(0, 999) g" >/dev/null ||
    wh_fail "cannot create the tables"
PORT=$(wh_free_port)
APORT=$(wh_free_port)
wh_spawn recv "$BIN/walhook-receiver" --listen "127.0.0.1:$PORT" --out "$WH_TMP/got.jsonl"
CONF="$WH_TMP/walhook.conf"
wh_write_conf "$CONF" "$PG_DSN" "$WH_TMP/data" "$APORT" "http://127.0.0.1:$PORT/hook"
TOKEN=admin-token-$RANDOM-0123456789
export WALHOOK_ADMIN_ADMIN_TOKEN=$TOKEN
wh_up "$CONF" "$APORT"
pg_psql -c "INSERT INTO a SELECT g, 'new' FROM generate_series(3001, 3100) g" >/dev/null || wh_fail "insert"
_inserts() { [ "$(wh_count_events "$WH_TMP/got.jsonl")" -ge 100 ]; }
wh_wait_until 60 _inserts || wh_fail "the 100 inserts were not delivered"
AUTH="Authorization: Bearer $TOKEN"
API="http://127.0.0.1:$APORT/v1/tenants/default/targets"
post() { curl -sS -o "$WH_TMP/post.out" -w '%{http_code}' -X POST -H "$AUTH" -H 'Content-Type: application/json' -d "$2" "$1"; }
code=$(post "$API/t0/resync" '{"x": 1}')
[ "$code" = 400 ] || wh_fail "resync with a body: HTTP $code, expected 400"
code=$(post "$API/nosuch/resync" '{}')
[ "$code" = 404 ] || wh_fail "resync of an unknown target: HTTP $code, expected 404"
code=$(post "$API/t0/resync" '{}')
[ "$code" = 202 ] || wh_fail "resync: HTTP $code ($(cat "$WH_TMP/post.out"))"
BF=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["backfill"])' "$WH_TMP/post.out")
[[ "$BF" =~ ^bf-[0-9]+$ ]] || wh_fail "resync reply: $(cat "$WH_TMP/post.out")"
reads() { # TABLE: distinct keys read, read events
    python3 -c '
import json, sys
keys, n = set(), 0
for line in open(sys.argv[1]):
    for e in json.loads(line):
        if e.get("table") == sys.argv[2] and e["op"] == "read":
            keys.add(json.dumps(e["key"], sort_keys=True)); n += 1
print(len(keys), n)' "$WH_TMP/got.jsonl" "$1"
}
_all() { [ "$(reads a)" = "3100 3100" ] && [ "$(reads b)" = "1000 1000" ]; }
wh_wait_until 120 _all || wh_fail "after the resync: a $(reads a) (want 3100 3100), b $(reads b) (want 1000 1000)"
grep -q "backfill $BF: 2 tables of publication" "$WH_TMP/walhook.log" ||
    wh_fail "the ingestor did not list the publication's tables for $BF"
wh_kill walhook TERM
wh_kill recv TERM
wh_pass "a resync moved t0 to the end and backfilled every table: 3100 + 1000 rows read once each; 400 for a body, 404 for an unknown target"
