#!/usr/bin/env bash
# Target filters end to end (README "Filters"), with real PostgreSQL, the
# four daemons and HTTP receivers:
#   - t0 has filter_ops = insert,update,delete: a backfill's rows (op
#     "read", the inserts of rows that existed before) reach it;
#   - t1 has filter_ops = read: the backfill's rows reach it, live inserts
#     do not;
#   - t2 has filter_expr key.id == 9007199254740993: of two bigint keys one
#     apart beyond 2^53, only that one is delivered (exact comparison);
#   - PATCHes whose filter does not compile are answered 400 naming the
#     setting, and change nothing (the other settings of the same PATCH
#     included); t0 still gets its events afterwards.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_pipeline_setup
pg_psql -c "CREATE TABLE orders (id bigint PRIMARY KEY, amount numeric(30,10), note text);
  INSERT INTO orders VALUES (1, '1.5', 'a'), (2, '2.5', 'b'), (3, '3.5', 'c');
  CREATE PUBLICATION walhook FOR ALL TABLES;" >/dev/null || wh_fail "cannot create the table"
wh_start_receivers 3
APORT=$(wh_free_port)
CONF="$WH_TMP/walhook.conf"
wh_write_conf "$CONF" "$PG_DSN" "$WH_TMP/data" "$APORT" "http://127.0.0.1:$R0/t0" \
    "http://127.0.0.1:$R1/t1" "http://127.0.0.1:$R2/t2"
mkdir -m 700 "$WH_TMP/data"
for d in store ingestor dispatcher admin; do
    wh_spawn "$d" "$BIN/walhook-$d" -c "$CONF"
done
wh_wait_slot_active walhook 60 || wh_fail "the ingestor did not start streaming"
wh_wait_until 20 test -s "$WH_TMP/data/admin.token" || wh_fail "no admin token"
TOKEN=$(grep -v '^read:' "$WH_TMP/data/admin.token" | head -n 1)
API="http://127.0.0.1:$APORT"
T=/v1/tenants/default/targets
api() { # METHOD PATH [BODY]: prints the status code; the body in $WH_TMP/api.out
    curl -sS -o "$WH_TMP/api.out" -w '%{http_code}' --max-time 10 -X "$1" \
        -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        ${3:+-d "$3"} "$API$2"
}
code=$(api PATCH $T/t0 '{"filter_ops":"insert,update,delete"}')
[ "$code" = 200 ] || wh_fail "PATCH t0: $code $(cat "$WH_TMP/api.out")"
code=$(api PATCH $T/t1 '{"filter_ops":"read"}')
[ "$code" = 200 ] || wh_fail "PATCH t1 filter_ops=read: $code $(cat "$WH_TMP/api.out")"
code=$(api PATCH $T/t2 '{"filter_expr":"key.id == 9007199254740993"}')
[ "$code" = 200 ] || wh_fail "PATCH t2: $code $(cat "$WH_TMP/api.out")"
sleep 2 # the dispatcher applies the settings

# bad filters: 400 naming the setting, nothing changed
code=$(api PATCH $T/t0 '{"filter_expr":"after.amount => 5","batch_max_age_ms":7}')
[ "$code" = 400 ] || wh_fail "a filter_expr typo was answered $code $(cat "$WH_TMP/api.out")"
grep -q 'filter_expr' "$WH_TMP/api.out" || wh_fail "the 400 does not name filter_expr: $(cat "$WH_TMP/api.out")"
code=$(api PATCH $T/t0 '{"filter_ops":"insert,upsert"}')
[ "$code" = 400 ] || wh_fail "filter_ops upsert was answered $code"
grep -q 'filter_ops' "$WH_TMP/api.out" || wh_fail "the 400 does not name filter_ops: $(cat "$WH_TMP/api.out")"
code=$(api GET $T/t0)
[ "$code" = 200 ] || wh_fail "GET t0: $code"
grep -q '"filter_ops":"insert,update,delete"' "$WH_TMP/api.out" || wh_fail "t0 changed: $(cat "$WH_TMP/api.out")"
grep -q 'after.amount' "$WH_TMP/api.out" && wh_fail "the refused filter_expr was stored: $(cat "$WH_TMP/api.out")"
grep -q '"batch_max_age_ms":7' "$WH_TMP/api.out" && wh_fail "a refused PATCH changed batch_max_age_ms"
grep -q '"state":"active"' "$WH_TMP/api.out" || wh_fail "t0 is not active: $(cat "$WH_TMP/api.out")"

pg_psql -c "INSERT INTO orders VALUES (9007199254740992, '5', 'big-minus-one'),
  (9007199254740993, '6', 'big');" >/dev/null || wh_fail "insert"
code=$(api POST /v1/tenants/default/backfill '{"table":"public.orders"}')
case "$code" in 200 | 201 | 202) ;; *) wh_fail "backfill: $code $(cat "$WH_TMP/api.out")" ;; esac
reads() { grep -o '"op":"read"' "$1" 2>/dev/null | wc -l; }
wh_wait_until 60 bash -c "[ \$(grep -o '\"op\":\"read\"' '$WH_TMP/r0.jsonl' 2>/dev/null | wc -l) -ge 5 ]" ||
    wh_fail "t0 (filter_ops insert,update,delete) got $(reads "$WH_TMP/r0.jsonl") of the 5 backfill rows"
wh_wait_until 60 bash -c "[ \$(grep -o '\"op\":\"read\"' '$WH_TMP/r1.jsonl' 2>/dev/null | wc -l) -ge 5 ]" ||
    wh_fail "t1 (filter_ops read) got $(reads "$WH_TMP/r1.jsonl") of the 5 backfill rows"
pg_psql -c "INSERT INTO orders VALUES (100, '7', 'marker');" >/dev/null || wh_fail "insert"
wh_wait_until 30 grep -q marker "$WH_TMP/r0.jsonl" || wh_fail "t0 never got the marker"
grep -q '"op":"insert"' "$WH_TMP/r1.jsonl" && wh_fail "t1 (filter_ops read) got a live insert"
# t2: the live insert and the backfill row of ...993, never ...992
wh_wait_until 30 bash -c "[ \$(grep -o '\"key\":{\"id\":9007199254740993}' '$WH_TMP/r2.jsonl' 2>/dev/null | wc -l) -ge 2 ]" ||
    wh_fail "t2 did not get key 9007199254740993 twice (insert and read)"
sleep 1
grep -q '"key":{"id":9007199254740992}' "$WH_TMP/r2.jsonl" &&
    wh_fail "t2 (key.id == 9007199254740993) got key 9007199254740992"
n=$(grep -c '"key"' "$WH_TMP/r2.jsonl")
wh_pass "backfill rows pass ops filters (insert, read); bad filters answered 400; bigint keys compared exactly ($n requests to t2)"
