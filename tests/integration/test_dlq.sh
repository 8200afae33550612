#!/usr/bin/env bash
# Dead-letter queue contract over the admin REST API and `walhook dlq`, with
# the real store: dead letters are written the way the dispatcher writes
# them (wh_statectl dlq-write: records + offset in one DlqWrite), then
# listed (paged with ?after=&limit=), shown, replayed (by id and all: the
# replay queue holds them in order with their original ids), purged (by id
# and all), checked for their errors (4xx naming the field, 404 for unknown
# ones, 403 for a read token), and dropped with their target.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
wh_require_bins walhook walhook-store walhook-ingestor walhook-admin tests/wh_loadgen \
    tests/wh_statectl
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
"$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --tables 1 --setup-only || wh_fail "table setup failed"
APORT=$(wh_free_port)
CONF="$WH_TMP/walhook.conf"
# no dispatcher runs: the offsets and dead letters are the test's
wh_write_conf "$CONF" "$PG_DSN" "$WH_TMP/data" "$APORT" "http://127.0.0.1:9/a" "http://127.0.0.1:9/b"
mkdir -m 700 "$WH_TMP/data"
wh_spawn store "$BIN/walhook-store" -c "$CONF"
wh_wait_until 10 test -S "$WH_TMP/data/store.sock" || wh_fail "the store did not start"
wh_spawn ingestor "$BIN/walhook-ingestor" -c "$CONF"
RTOKEN=read-token-of-test-dlq-0123456789
TOKEN=admin-token-of-test-dlq-0123456789
WALHOOK_ADMIN_READ_TOKEN=$RTOKEN WALHOOK_ADMIN_ADMIN_TOKEN=$TOKEN \
    wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
wh_wait_slot_active walhook 60 || wh_fail "the ingestor never started streaming"
wh_wait_http "http://127.0.0.1:$APORT/livez" 20 || wh_fail "the admin does not answer"
"$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --changes 20 --seed 1 --max-txn 1 --tables 1 \
    --expect "$WH_TMP/expected.jsonl" >"$WH_TMP/loadgen.log" 2>&1 || wh_fail "load generation failed"
STATECTL=("$BIN/tests/wh_statectl" -c "$CONF")
_stored() { "$BIN/walhook-store" --dump -c "$CONF" 2>/dev/null | wc -l | grep -qv '^0$'; }
# 8 dead letters of target t0 (retried until the ingestor stored enough)
_dead() { "${STATECTL[@]}" dlq-write default t0 8 >"$WH_TMP/dlq-write.out" 2>&1; }
wh_wait_until 30 _dead || wh_fail "dlq-write failed: $(cat "$WH_TMP/dlq-write.out")"
wh_log "8 dead letters written, offset of t0 now $(cat "$WH_TMP/dlq-write.out")"

BASE="http://127.0.0.1:$APORT/v1/tenants/default/targets/t0/dlq"
api() { # METHOD URL [BODY] -> prints "STATUS BODY" (body on one line)
    local m=$1 u=$2 b=${3:-} tok=${TOK:-$TOKEN} args=()
    [ -n "$b" ] && args=(-H 'Content-Type: application/json' --data "$b")
    curl -sS --max-time 10 -o "$WH_TMP/body" -w '%{http_code}' -X "$m" \
        -H "Authorization: Bearer $tok" "${args[@]}" "$u"
}
expect() { # STATUS METHOD URL [BODY]
    local want=$1
    shift
    local got
    got=$(api "$@")
    [ "$got" = "$want" ] || wh_fail "$1 $2: status $got, expected $want: $(head -c 400 "$WH_TMP/body")"
}
jq_() { python3 -c "import json,sys; d=json.load(open('$WH_TMP/body')); print($1)"; }

expect 200 GET "$BASE"
[ "$(jq_ 'd["total"]')" = 8 ] || wh_fail "total $(jq_ 'd["total"]'), expected 8"
[ "$(jq_ 'len(d["items"])')" = 8 ] || wh_fail "the list does not hold 8 items"
[ "$(jq_ 'd["items"][0]["last_error"]["status"]')" = 500 ] || wh_fail "last_error.status is not 500"
[ "$(jq_ 'd["items"][0]["first_error"]["body_excerpt"]')" = boom ] || wh_fail "body excerpt lost"
[ "$(jq_ 'd["items"][0]["attempts"]')" = 3 ] || wh_fail "attempts lost"
[ "$(jq_ 'd["items"][0]["event"]["id"] == d["items"][0]["event_id"]')" = True ] ||
    wh_fail "the event's id is not the dead letter's event_id"
mapfile -t IDS < <(jq_ '"\n".join(i["id"] for i in d["items"])')
mapfile -t EVIDS < <(jq_ '"\n".join(i["event_id"] for i in d["items"])')
# the ids are in position order (the expected file is in commit order)
first_expected=$(head -n 1 "$WH_TMP/expected.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("id",""))' 2>/dev/null || true)
wh_log "ids ${IDS[0]} .. ${IDS[7]} (events ${EVIDS[0]} .. ${EVIDS[7]}) ${first_expected:+first expected $first_expected}"

# paging: 3 + 3 + 2, `next` null on the last page
expect 200 GET "$BASE?limit=3"
p1=$(jq_ '",".join(i["id"] for i in d["items"])')
n1=$(jq_ 'd["next"]')
expect 200 GET "$BASE?limit=3&after=$n1"
p2=$(jq_ '",".join(i["id"] for i in d["items"])')
n2=$(jq_ 'd["next"]')
expect 200 GET "$BASE?limit=3&after=$n2"
p3=$(jq_ '",".join(i["id"] for i in d["items"])')
[ "$(jq_ 'd["next"]')" = None ] || wh_fail "the last page has a next"
[ "$p1,$p2,$p3" = "$(IFS=,; echo "${IDS[*]}")" ] || wh_fail "pages $p1 | $p2 | $p3 do not make the list"
# the "X/X:seq" form is accepted as after= too
expect 200 GET "$BASE?limit=1&after=${n1/-//}"
[ "$(jq_ 'd["items"][0]["id"]')" = "${IDS[3]}" ] || wh_fail "after=X/X:seq did not page"

# show
expect 200 GET "$BASE/${IDS[2]}"
[ "$(jq_ 'd["event_id"]')" = "${EVIDS[2]}" ] || wh_fail "show returned another dead letter"
expect 404 GET "$BASE/FFFF-FFFF:9"
expect 400 GET "$BASE/not-an-id"
[ "$(jq_ 'd["error"]["field"]')" = id ] || wh_fail "a bad id does not name the field"
expect 400 GET "$BASE?limit=0"
[ "$(jq_ 'd["error"]["field"]')" = limit ] || wh_fail "a bad limit does not name the field"
expect 400 GET "$BASE?after=zz"
expect 404 GET "http://127.0.0.1:$APORT/v1/tenants/default/targets/nosuch/dlq"
expect 404 GET "http://127.0.0.1:$APORT/v1/tenants/nosuch/targets/t0/dlq"
expect 405 PUT "$BASE"

# replay: bad bodies, then two ids (the replay queue holds them in order)
expect 400 POST "$BASE/replay" '{}'
expect 400 POST "$BASE/replay" '{"all":true,"ids":["'"${IDS[0]}"'"]}'
expect 400 POST "$BASE/replay" '{"ids":["x"]}'
expect 400 POST "$BASE/replay" '{"every":1}'
[ "$(jq_ 'd["error"]["field"]')" = every ] || wh_fail "an unknown field is not named"
TOK=$RTOKEN expect 403 POST "$BASE/replay" '{"all":true}'
expect 200 POST "$BASE/replay" '{"ids":["'"${IDS[4]}"'","'"${IDS[1]}"'","FFFF-FFFF:1"]}'
[ "$(jq_ 'd["replayed"]')" = 2 ] || wh_fail "replayed $(jq_ 'd["replayed"]'), expected 2"
expect 200 GET "$BASE"
[ "$(jq_ 'd["total"]')" = 6 ] && [ "$(jq_ 'd["replay_pending"]')" = 2 ] ||
    wh_fail "after replaying 2: total $(jq_ 'd["total"]'), pending $(jq_ 'd["replay_pending"]')"
got=$("${STATECTL[@]}" replay-read default t0 | paste -sd,)
[ "$got" = "${EVIDS[1]},${EVIDS[4]}" ] ||
    wh_fail "replay queue holds '$got', expected ${EVIDS[1]},${EVIDS[4]} (original ids, in order)"

# purge: one id, then the CLI's list/show/replay/purge
TOK=$RTOKEN expect 403 DELETE "$BASE"
expect 200 DELETE "$BASE?ids=${IDS[0]}"
[ "$(jq_ 'd["purged"]')" = 1 ] || wh_fail "purged $(jq_ 'd["purged"]') by id, expected 1"
export WALHOOK_ADMIN_TOKEN=$TOKEN
CLI=("$BIN/walhook" --admin "127.0.0.1:$APORT" -c "$CONF")
out=$("$BIN/walhook" dlq list t0 -c "$CONF" --admin "127.0.0.1:$APORT") || wh_fail "walhook dlq list failed"
echo "$out" | grep -q "total: 5, waiting for replay: 2" || wh_fail "walhook dlq list: $out"
echo "$out" | grep -q "${EVIDS[2]}" || wh_fail "walhook dlq list does not show ${EVIDS[2]}"
out=$("$BIN/walhook" dlq list t0 limit=2 -c "$CONF" --admin "127.0.0.1:$APORT") || wh_fail "walhook dlq list limit=2 failed"
echo "$out" | grep -q "more: after=${IDS[3]}" || wh_fail "walhook dlq list limit=2: $out"
out=$("$BIN/walhook" dlq show t0 "${IDS[2]/-//}" -c "$CONF" --admin "127.0.0.1:$APORT") || wh_fail "walhook dlq show failed"
echo "$out" | grep -q "last_error.status: 500" || wh_fail "walhook dlq show: $out"
"$BIN/walhook" dlq show t0 FFFF-FFFF:9 -c "$CONF" --admin "127.0.0.1:$APORT" 2>"$WH_TMP/cli.err"
[ $? = 2 ] && grep -q "404" "$WH_TMP/cli.err" || wh_fail "walhook dlq show of an unknown id: $(cat "$WH_TMP/cli.err")"
"$BIN/walhook" dlq replay t0 "${IDS[2]}" -c "$CONF" --admin "127.0.0.1:$APORT" | grep -q "replayed: 1" ||
    wh_fail "walhook dlq replay ID"
"$BIN/walhook" dlq purge t0 "${IDS[3]}" -c "$CONF" --admin "127.0.0.1:$APORT" | grep -q "purged: 1" ||
    wh_fail "walhook dlq purge ID"
"$BIN/walhook" dlq replay t0 all -c "$CONF" --admin "127.0.0.1:$APORT" | grep -q "replayed: 3" ||
    wh_fail "walhook dlq replay all"
got=$("${STATECTL[@]}" replay-read default t0 | paste -sd,)
want="${EVIDS[1]},${EVIDS[2]},${EVIDS[4]},${EVIDS[5]},${EVIDS[6]},${EVIDS[7]}"
[ "$got" = "$want" ] || wh_fail "replay queue '$got', expected $want"
"$BIN/walhook" dlq bogus t0 -c "$CONF" --admin "127.0.0.1:$APORT" 2>/dev/null
[ $? = 2 ] || wh_fail "walhook dlq bogus did not exit 2"

# more dead letters, purge all, then removal of the target drops them
wh_wait_until 10 "${STATECTL[@]}" dlq-write default t0 4 >/dev/null 2>&1 || wh_fail "second dlq-write failed"
expect 200 DELETE "$BASE"
[ "$(jq_ 'd["purged"]')" = 4 ] || wh_fail "purge all removed $(jq_ 'd["purged"]'), expected 4"
"${STATECTL[@]}" dlq-write default t1 3 >/dev/null 2>&1 || wh_fail "dlq-write t1 failed"
B1="http://127.0.0.1:$APORT/v1/tenants/default/targets/t1"
expect 200 GET "$B1/dlq"
[ "$(jq_ 'd["total"]')" = 3 ] || wh_fail "t1 has $(jq_ 'd["total"]') dead letters, expected 3"
expect 200 DELETE "$B1"
expect 201 POST "http://127.0.0.1:$APORT/v1/tenants/default/targets" '{"name":"t1","url":"http://127.0.0.1:9/b"}'
expect 200 GET "$B1/dlq"
[ "$(jq_ 'd["total"]')" = 0 ] || wh_fail "a removed target kept $(jq_ 'd["total"]') dead letters"
for d in admin ingestor store; do wh_kill "$d" TERM; done
wh_pass "dead letters listed (paged), shown, replayed in order with their ids, purged, refused with named fields, and dropped with their target; walhook dlq list/show/replay/purge"
