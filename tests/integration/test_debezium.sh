#!/usr/bin/env bash
# The Debezium envelope end to end, with real PostgreSQL, the four daemons
# and two receivers (native and Debezium):
#   - an update that leaves a TOASTed value unchanged for a row written
#     before the slot existed: native lists it in "unchanged", Debezium
#     writes Debezium's placeholder __debezium_unavailable_value in "after"
#     (never a missing column);
#   - a backfill's rows carry source.snapshot "true", changes "false";
#   - source.db is the database of the tenant's DSN;
#   - source.lsn is each change's own LSN (distinct and rising within one
#     transaction), the native event's change_lsn;
#   - walhook's schema event (the table's first change) reaches the native
#     target, not the Debezium one (no such op in Debezium; its operations
#     filter does not name schema).
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_pipeline_setup
pg_psql -c "CREATE TABLE docs (id int PRIMARY KEY, status text, body text);
  ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
  INSERT INTO docs SELECT 1, 'new', string_agg(md5(g::text), '') FROM generate_series(1, 400) g;
  CREATE PUBLICATION walhook FOR ALL TABLES;" >/dev/null || wh_fail "cannot create the table"
wh_start_receivers 2
APORT=$(wh_free_port)
CONF="$WH_TMP/walhook.conf"
wh_write_conf "$CONF" "$PG_DSN" "$WH_TMP/data" "$APORT" "http://127.0.0.1:$R0/native" \
    "http://127.0.0.1:$R1/dbz"
sed -i 's|{ name = "t1"; url = \("[^"]*"\); }|{ name = "t1"; url = \1; envelope = "debezium"; }|' "$CONF"
grep -q 'envelope = "debezium"' "$CONF" || wh_fail "config: $(cat "$CONF")"
mkdir -m 700 "$WH_TMP/data"
for d in store ingestor dispatcher admin; do
    wh_spawn "$d" "$BIN/walhook-$d" -c "$CONF"
done
wh_wait_slot_active walhook 60 || wh_fail "the ingestor did not start streaming"
wh_wait_until 20 test -s "$WH_TMP/data/admin.token" || wh_fail "no admin token"
TOKEN=$(grep -v '^read:' "$WH_TMP/data/admin.token" | head -n 1)

pg_psql -c "UPDATE docs SET status = 'shipped' WHERE id = 1" >/dev/null || wh_fail "update"
wh_wait_until 30 grep -q shipped "$WH_TMP/r0.jsonl" || wh_fail "the native target got nothing"
wh_wait_until 30 grep -q shipped "$WH_TMP/r1.jsonl" || wh_fail "the Debezium target got nothing"
grep -q '"unchanged":\["body"\]' "$WH_TMP/r0.jsonl" ||
    wh_fail "native: body not listed as unchanged (the test's premise): $(head -c 600 "$WH_TMP/r0.jsonl")"
upd=$(grep -o '"after":{[^}]*}' "$WH_TMP/r1.jsonl" | grep shipped | head -n 1)
[ "$upd" = '"after":{"id":1,"status":"shipped","body":"__debezium_unavailable_value"}' ] ||
    wh_fail "Debezium after of the update: $upd"
grep -q '"op":"schema"' "$WH_TMP/r0.jsonl" ||
    wh_fail "native: no schema event before the table's first change (the test's premise)"
! grep -q '"op":"schema"' "$WH_TMP/r1.jsonl" ||
    wh_fail "Debezium: a schema event reached the target: $(grep -o '"op":"schema"[^}]*' "$WH_TMP/r1.jsonl" | head -n 1)"
grep -o '"source":{[^}]*}' "$WH_TMP/r1.jsonl" | head -n 1 | grep -q '"snapshot":"false","db":"postgres"' ||
    wh_fail "Debezium source of the update: $(grep -o '"source":{[^}]*}' "$WH_TMP/r1.jsonl" | head -n 1)"

# three rows of one transaction: three LSNs, in order, one commit LSN
pg_psql -c "INSERT INTO docs (id, status, body) SELECT g, 'multi', 'x' FROM generate_series(10, 12) g" \
    >/dev/null || wh_fail "insert"
wh_wait_until 30 grep -q '"id":12,"status":"multi"' "$WH_TMP/r1.jsonl" || wh_fail "the 3 rows did not reach the Debezium target"
wh_wait_until 30 grep -q '"id":12,"status":"multi"' "$WH_TMP/r0.jsonl" || wh_fail "the 3 rows did not reach the native target"
lsns=$(jq -c '.[] | select(.after.status? == "multi") | .source.lsn' "$WH_TMP/r1.jsonl" | tr '\n' ' ')
seqs=$(jq -r '.[] | select(.after.status? == "multi") | .source.sequence' "$WH_TMP/r1.jsonl" | tr '\n' ' ')
read -r l1 l2 l3 rest <<<"$lsns"
[ -n "$l3" ] && [ -z "$rest" ] && [ "$l1" -lt "$l2" ] && [ "$l2" -lt "$l3" ] ||
    wh_fail "Debezium source.lsn of the 3 rows of one transaction are not 3 rising LSNs: $lsns"
# sequence ["<commit LSN>","<lsn>"]: one commit LSN, the change's own after it
read -r q1 q2 q3 _ <<<"$seqs"
[[ "$q1" == '["'*"\",\"$l1\"]" && "${q1%%\",*}" == "${q3%%\",*}" && "$q3" == *"\",\"$l3\"]" ]] ||
    wh_fail "Debezium source.sequence is not [commit LSN, the change's LSN]: $seqs"
nat=$(jq -r '.[] | select(.after.status? == "multi") | "\(.lsn) \(.change_lsn)"' "$WH_TMP/r0.jsonl" | sort -u)
[ "$(cut -d' ' -f1 <<<"$nat" | sort -u | wc -l)" = 1 ] && [ "$(cut -d' ' -f2 <<<"$nat" | sort -u | wc -l)" = 3 ] ||
    wh_fail "native: the 3 rows should share one lsn (the commit's) and have 3 change_lsn: $nat"

code=$(curl -sS -o "$WH_TMP/api.out" -w '%{http_code}' --max-time 10 -X POST \
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"table":"public.docs"}' "http://127.0.0.1:$APORT/v1/tenants/default/backfill")
case "$code" in 200 | 201 | 202) ;; *) wh_fail "backfill: $code $(cat "$WH_TMP/api.out")" ;; esac
wh_wait_until 60 grep -q '"op":"r"' "$WH_TMP/r1.jsonl" || wh_fail "no backfill row reached the Debezium target"
src=$(grep -o '"source":{[^}]*},"op":"r"' "$WH_TMP/r1.jsonl" | head -n 1)
case "$src" in
*'"snapshot":"true","db":"postgres"'*) ;;
*) wh_fail "Debezium source of a backfill row: $src" ;;
esac
wh_pass "Debezium: unchanged TOAST placeholder, source.snapshot true for backfill rows, source.db, no schema event (native: one), source.lsn each change's own ($lsns)"
