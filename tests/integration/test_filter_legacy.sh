#!/usr/bin/env bash
# A target stored by an older walhook with a filter that does not compile
# (README "Filters"), with real PostgreSQL, the four daemons and HTTP
# receivers. The document is written into the stopped store's RocksDB with
# Debian's ldb, as such a walhook left it; then:
#   - it loads; t1 (its filter_expr does not compile) is refused: GET shows
#     "state":"refused" with config_error, the status page says so, the
#     dispatcher's walhook_target_config_error is 1; nothing is delivered
#     to it and its offset does not move (the events are not committed
#     past as filtered); t0 goes on delivering;
#   - the writes that leave t1 as it is are stored: a target added (t2,
#     which then delivers), t0 PATCHed, a tenant added and removed through
#     the API and straight through the store (wh_statectl), a setting;
#   - a PATCH that changes t1 and leaves its filter bad, and a new bad
#     filter on t0, are answered 400 naming the filter; nothing is stored;
#   - a PATCH with a good filter mends t1: it gets the events held back
#     that its filter passes (and only those), the gauge goes to 0.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_pipeline_setup
wh_require_bins tests/wh_statectl
command -v ldb >/dev/null ||
    wh_fail "ldb (Debian's rocksdb-tools, scripts/install-deps.sh --test) is needed to write the older walhook's document"
command -v jq >/dev/null || wh_fail "jq is needed (scripts/install-deps.sh --test)"
pg_psql -c "CREATE TABLE orders (id bigint PRIMARY KEY, amount numeric, note text);
  CREATE PUBLICATION walhook FOR ALL TABLES;" >/dev/null || wh_fail "cannot create the table"
wh_start_receivers 3
APORT=$(wh_free_port)
CONF="$WH_TMP/walhook.conf"
DATA="$WH_TMP/data"
wh_write_conf "$CONF" "$PG_DSN" "$DATA" "$APORT" "http://127.0.0.1:$R0/t0" "http://127.0.0.1:$R1/t1"
mkdir -m 700 "$DATA"
SC=("$BIN/tests/wh_statectl" -c "$CONF")
API="http://127.0.0.1:$APORT"
M="$API/metrics"
T=/v1/tenants/default/targets
start_all() {
    local d
    for d in store ingestor dispatcher admin; do
        wh_spawn "$d" "$BIN/walhook-$d" -c "$CONF"
    done
    wh_wait_slot_active walhook 60 || wh_fail "the ingestor did not start streaming"
    wh_wait_http "$API/livez" 30 || wh_fail "the admin did not answer"
}
api() { # METHOD PATH [BODY]: prints the status code; the body in $WH_TMP/api.out
    curl -sS -o "$WH_TMP/api.out" -w '%{http_code}' --max-time 10 -X "$1" \
        -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        ${3:+-d "$3"} "$API$2"
}
has() { grep -q "$1" "$2" 2>/dev/null; }

start_all
wh_wait_until 20 test -s "$DATA/admin.token" || wh_fail "no admin token"
TOKEN=$(grep -v '^read:' "$DATA/admin.token" | head -n 1)
# both targets deliver a first row: t1 has an offset of its own
pg_psql -c "INSERT INTO orders VALUES (1, '1', 'first');" >/dev/null || wh_fail "insert"
wh_wait_until 30 has first "$WH_TMP/r0.jsonl" || wh_fail "t0 never got the first row"
wh_wait_until 30 has first "$WH_TMP/r1.jsonl" || wh_fail "t1 never got the first row"
wh_wait_until 20 bash -c "[ \"\$(\"\$0\" -c '$CONF' offset default t1)\" != '0 0' ]" "$BIN/tests/wh_statectl" ||
    wh_fail "t1 never committed the first row"

# the document an older walhook could store: t1's filter does not compile
ver=$("${SC[@]}" version) || wh_fail "cannot read the state version"
"${SC[@]}" get >"$WH_TMP/doc.json" || wh_fail "cannot read the state"
for d in admin dispatcher ingestor store; do
    wh_kill "$d"
done
nv=$((ver + 1))
jq -c --argjson v "$nv" '.version = $v |
    (.tenants[] | select(.name == "default") | .targets[] | select(.name == "t1"))
        += {"filter_expr": "after.amount => 5"}' "$WH_TMP/doc.json" >"$WH_TMP/legacy.json" ||
    wh_fail "jq: $(cat "$WH_TMP/legacy.json")"
grep -q '"filter_expr":"after.amount => 5"' "$WH_TMP/legacy.json" || wh_fail "no t1 in $(cat "$WH_TMP/doc.json")"
hex=$(printf '%016x' "$nv")$(od -An -v -tx1 <"$WH_TMP/legacy.json" | tr -d ' \n')
ldb --db="$DATA/rocksdb" put --value_hex Sstate "0x$hex" >"$WH_TMP/ldb.log" 2>&1 ||
    wh_fail "ldb put: $(cat "$WH_TMP/ldb.log")"
start_all
[ "$("${SC[@]}" version)" = "$nv" ] || wh_fail "the store does not serve version $nv"

# refused: shown, counted, nothing delivered, its offset held
code=$(api GET $T/t1)
[ "$code" = 200 ] || wh_fail "GET t1: $code $(cat "$WH_TMP/api.out")"
grep -q '"state":"refused"' "$WH_TMP/api.out" || wh_fail "t1 is not shown refused: $(cat "$WH_TMP/api.out")"
grep -q '"config_error":"filter_expr: position' "$WH_TMP/api.out" ||
    wh_fail "t1's config_error does not name its filter: $(cat "$WH_TMP/api.out")"
curl -fsS --max-time 5 "$API/" | grep -q 'refused: filter_expr: position' ||
    wh_fail "the status page does not show t1 refused"
wh_wait_until 20 wh_metric_label_is "$M" walhook_target_config_error 'target="t1"' -eq 1 ||
    wh_fail "walhook_target_config_error{target=t1} is $(wh_metric_label "$M" walhook_target_config_error 'target="t1"')"
off1=$("${SC[@]}" offset default t1) || wh_fail "cannot read t1's offset"
pg_psql -c "INSERT INTO orders VALUES (2, '2', 'held-high'), (3, '0.5', 'held-low');" >/dev/null ||
    wh_fail "insert"
wh_wait_until 30 has held-low "$WH_TMP/r0.jsonl" || wh_fail "t0 did not deliver next to the refused t1"

# writes that leave t1 as it is
code=$(api POST $T "{\"name\":\"t2\",\"url\":\"http://127.0.0.1:$R2/t2\",\"filter_ops\":\"insert\"}")
[ "$code" = 201 ] || wh_fail "adding t2 next to the legacy t1 was answered $code $(cat "$WH_TMP/api.out")"
code=$(api PATCH $T/t0 '{"batch_max_events":50}')
[ "$code" = 200 ] || wh_fail "PATCH t0 was answered $code $(cat "$WH_TMP/api.out")"
code=$(api POST /v1/tenants '{"name":"far","source":{"dsn":"postgresql://127.0.0.1:1/x","slot":"far_slot"}}')
[ "$code" = 201 ] || wh_fail "adding tenant far was answered $code $(cat "$WH_TMP/api.out")"
code=$(api DELETE /v1/tenants/far)
[ "$code" = 200 ] || wh_fail "removing tenant far was answered $code $(cat "$WH_TMP/api.out")"
code=$(api PATCH /v1/settings '{"dispatcher.retry_base_ms":150}')
[ "$code" = 200 ] || wh_fail "PATCH settings was answered $code $(cat "$WH_TMP/api.out")"
"${SC[@]}" add-tenant near "postgresql://127.0.0.1:1/y" near_slot walhook >"$WH_TMP/sc.log" 2>&1 ||
    wh_fail "the store refused a tenant added over IPC: $(cat "$WH_TMP/sc.log")"
"${SC[@]}" del-tenant near >"$WH_TMP/sc.log" 2>&1 ||
    wh_fail "the store refused a tenant removed over IPC: $(cat "$WH_TMP/sc.log")"

# changes of t1 that leave its filter bad, a new bad filter: 400, nothing stored
v0=$("${SC[@]}" version)
code=$(api PATCH $T/t1 "{\"url\":\"http://127.0.0.1:$R1/t1b\"}")
[ "$code" = 400 ] || wh_fail "a PATCH of t1 leaving its filter bad was answered $code $(cat "$WH_TMP/api.out")"
grep -q 'targets\[1\]\.filter_expr: position' "$WH_TMP/api.out" ||
    wh_fail "the 400 does not name t1's filter: $(cat "$WH_TMP/api.out")"
code=$(api POST $T/t1/pause)
[ "$code" = 400 ] || wh_fail "pausing t1 with its filter bad was answered $code $(cat "$WH_TMP/api.out")"
code=$(api PATCH $T/t0 '{"filter_expr":"op =="}')
[ "$code" = 400 ] || wh_fail "a new bad filter on t0 was answered $code $(cat "$WH_TMP/api.out")"
grep -q 'filter_expr' "$WH_TMP/api.out" || wh_fail "the 400 does not name filter_expr: $(cat "$WH_TMP/api.out")"
[ "$("${SC[@]}" version)" = "$v0" ] || wh_fail "a refused write was stored"

sleep 1
has held "$WH_TMP/r1.jsonl" && wh_fail "the refused t1 got events: $(grep held "$WH_TMP/r1.jsonl")"
[ "$("${SC[@]}" offset default t1)" = "$off1" ] ||
    wh_fail "the refused t1's offset moved from $off1 to $("${SC[@]}" offset default t1)"

# mended: t1 gets what it held back and its filter passes
code=$(api PATCH $T/t1 '{"filter_expr":"after.amount >= 2"}')
[ "$code" = 200 ] || wh_fail "the mending PATCH was answered $code $(cat "$WH_TMP/api.out")"
pg_psql -c "INSERT INTO orders VALUES (4, '9', 'after-mend');" >/dev/null || wh_fail "insert"
wh_wait_until 30 has after-mend "$WH_TMP/r1.jsonl" || wh_fail "the mended t1 got no new event"
has held-high "$WH_TMP/r1.jsonl" || wh_fail "the mended t1 did not get the event held while it was refused"
has held-low "$WH_TMP/r1.jsonl" && wh_fail "the mended t1 got an event its filter drops"
wh_wait_until 30 has after-mend "$WH_TMP/r2.jsonl" || wh_fail "t2 (added next to the legacy t1) got nothing"
wh_wait_until 20 wh_metric_label_is "$M" walhook_target_config_error 'target="t1"' -le 0 ||
    wh_fail "walhook_target_config_error{target=t1} stays $(wh_metric_label "$M" walhook_target_config_error 'target="t1"')"
code=$(api GET $T/t1)
grep -q '"state":"refused"' "$WH_TMP/api.out" && wh_fail "the mended t1 is still shown refused"
wh_pass "a legacy target whose filter does not compile is refused (nothing delivered, offset held) and blocks no other write; changes leaving it bad are refused; a good filter mends it"
