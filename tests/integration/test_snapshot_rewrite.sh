#!/usr/bin/env bash
# An initial snapshot read in the slot's exported snapshot meets a table
# rewritten after the slot's consistent point (ALTER TABLE ... TYPE: not
# MVCC-safe, the exported snapshot would see it empty). The store's write
# budget slows the read of table `big` down so that the rewrite of `zz`
# (read after it) commits in between. Checks: the ingestor notices the
# rewrite by name and leaves the rest to watermark chunks; every row of
# both tables is delivered as a read exactly once, none lost; no row value
# in a log.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
ROWS=${ROWS:-20000}
wh_pipeline_setup
pg_psql -c "CREATE TABLE big (id int PRIMARY KEY, v text)" \
    -c "INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, $ROWS) g" \
    -c "CREATE TABLE zz (id int PRIMARY KEY, n int, v text)" \
    -c "INSERT INTO zz SELECT g, g, 'z' || g FROM generate_series(1, 500) g" >/dev/null ||
    wh_fail "cannot create the tables"
PORT=$(wh_free_port)
APORT=$(wh_free_port)
wh_spawn recv "$BIN/walhook-receiver" --listen "127.0.0.1:$PORT" --out "$WH_TMP/got.jsonl"
CONF="$WH_TMP/walhook.conf"
cat >"$CONF" <<CONFEOF
tenant = "default";
source = { dsn = "$PG_DSN"; slot = "walhook"; publication = "walhook"; create_slot = true;
           snapshot = "initial"; snapshot_chunk_rows = 500; };
data_dir = "$WH_TMP/data";
log_level = "info";
admin = { listen = "127.0.0.1:$APORT"; };
store = { tenant_rate_bytes = $((ROWS * 10)); };
ingestor = { window_bytes = 65536; };
targets = ( { name = "t"; url = "http://127.0.0.1:$PORT/hook"; } );
CONFEOF
TOKEN=admin-token-$RANDOM-0123456789
export WALHOOK_ADMIN_ADMIN_TOKEN=$TOKEN
# lifts the write budget at runtime once the slow part is over
unbudget() {
    local code
    code=$(curl -sS -o "$WH_TMP/patch.out" -w '%{http_code}' -X PATCH -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' -d '{"store.tenant_rate_bytes": 0}' "http://127.0.0.1:$APORT/v1/settings")
    [ "$code" = 200 ] || wh_fail "PATCH store.tenant_rate_bytes: HTTP $code ($(cat "$WH_TMP/patch.out"))"
}
wh_spawn walhook "$BIN/walhook" up -c "$CONF"
wh_wait_http "http://127.0.0.1:$APORT/readyz" 90 || wh_fail "walhook never became ready"
# the export is reading big (slowly): rewrite zz now
pg_psql -c "ALTER TABLE zz ALTER COLUMN n TYPE bigint" >/dev/null || wh_fail "cannot rewrite zz"
_rewrite_seen() { grep -q 'public.zz was rewritten (ALTER TABLE, VACUUM FULL, CLUSTER) after the slot.s consistent point' "$WH_TMP/walhook.log"; }
wh_wait_until 120 _rewrite_seen ||
    wh_fail "the ingestor did not notice the rewrite of zz: $(grep -i 'snapshot' "$WH_TMP/walhook.log" | tail -3)"
unbudget
reads() { # TABLE: distinct ids read, and the count of read events
    python3 -c '
import json, sys
ids, n = set(), 0
for line in open(sys.argv[1]):
    for e in json.loads(line):
        if e.get("table") == sys.argv[2] and e["op"] == "read":
            ids.add(e["after"]["id"]); n += 1
print(len(ids), n)' "$WH_TMP/got.jsonl" "$1" 2>/dev/null
}
_all_read() { [ "$(reads zz)" = "500 500" ] && [ "$(reads big)" = "$ROWS $ROWS" ]; }
wh_wait_until 180 _all_read || wh_fail "reads: zz $(reads zz), big $(reads big) (want 500 and $ROWS, each once)"
! grep -rq "$(printf 1 | md5sum | cut -c1-32)" "$WH_TMP"/*.log || wh_fail "a row value is in a log"
wh_kill walhook TERM

# part 2: source.snapshot_export_max_s ends the exported read early (a new
# slot, tenant and store); the rest goes by watermark chunks
: >"$WH_TMP/got.jsonl"
sed -i -e 's/slot = "walhook";/slot = "walhook2"; snapshot_export_max_s = 1;/' \
    -e "s|data_dir = .*|data_dir = \"$WH_TMP/data2\";|" "$CONF"
mv "$WH_TMP/walhook.log" "$WH_TMP/walhook1.log"
wh_spawn walhook "$BIN/walhook" up -c "$CONF"
wh_wait_http "http://127.0.0.1:$APORT/readyz" 90 || wh_fail "walhook (part 2) never became ready"
_budget_seen() { grep -q 'stopped after [0-9]* rows: source.snapshot_export_max_s (1 s) reached' "$WH_TMP/walhook.log"; }
wh_wait_until 60 _budget_seen || wh_fail "the exported read did not stop at source.snapshot_export_max_s"
unbudget
wh_wait_until 180 _all_read || wh_fail "part 2 reads: zz $(reads zz), big $(reads big) (want 500 and $ROWS, each once)"
wh_kill walhook TERM
wh_kill recv TERM
wh_pass "a table rewritten after the consistent point is noticed and read by watermark chunks, and source.snapshot_export_max_s hands the rest of a slow exported read to them: 500 + $ROWS rows read once each, twice"
