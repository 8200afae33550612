#!/usr/bin/env bash
# Initial snapshot (source.snapshot = initial; docs/INTERNALS.md "Snapshots
# and backfills"): a table holding ROWS rows (default 50000; ROWS=1000000
# for the issue's size) is read as `read` events in the new slot's exported
# snapshot while inserts, updates (some moving a row's key) and deletes run
# on it. The store's write budget (store.tenant_rate_bytes) slows the
# snapshot down so that the ingestor is SIGKILLed in the middle of the
# exported snapshot's read (the rest then goes by watermark chunks while
# streaming); then the budget is lifted at runtime, and the ingestor is
# SIGKILLed once more during those chunks. Checks:
#  - replaying the delivered events in position order (read/insert/update
#    set the row, delete removes it) gives exactly the table's final content,
#    values included;
#  - an event id is never delivered with two different contents, and no
#    position holds two rows;
#  - every row that existed before and was never changed has a read event;
#  - the progress metrics reach state done with rows_total >= ROWS;
#  - the exported snapshot's rows come before every change, at the
#    position just below the slot's consistent point, with schema_version.
# Part 2 (on-demand backfill through the REST API) is at the end, with a
# partitioned table read as its partitions (publish_via_partition_root off)
# in part 1 and through its root (on) in part 2.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
ROWS=${ROWS:-50000}
CHUNK=${CHUNK:-500}
wh_pipeline_setup
pg_psql -c "CREATE TABLE snap (id int PRIMARY KEY, v text, n int, ts timestamptz)" \
    -c "INSERT INTO snap SELECT g, md5(g::text), g % 7, '2024-01-01'::timestamptz + g * interval '1 s'
        FROM generate_series(1, $ROWS) g WHERE g % 1000 <> 500" \
    -c "CREATE TABLE other (id int PRIMARY KEY, v text)" \
    -c "INSERT INTO other SELECT g, 'o' || g FROM generate_series(1, 100) g" \
    -c "CREATE TABLE nokey (a int, b text)" -c "INSERT INTO nokey VALUES (1, 'x')" \
    -c "CREATE TABLE ck (a int, b text, v int, PRIMARY KEY (a, b))" \
    -c "INSERT INTO ck SELECT g / 10, 'k' || (g % 10), g FROM generate_series(0, 1499) g" \
    -c "CREATE TYPE mood AS ENUM ('sad', 'ok')" -c "CREATE DOMAIN posint AS int CHECK (VALUE > 0)" \
    -c "CREATE TYPE pair AS (x int, y text)" \
    -c "CREATE TABLE typed (id int PRIMARY KEY, m mood, d posint, p pair, arr int[], ma mood[],
        js jsonb, ts timestamptz, iv interval, nu numeric, by bytea, f float8, bo bool, r int4range,
        tx text, g int GENERATED ALWAYS AS (id * 2) STORED)" \
    -c "INSERT INTO typed VALUES (1, 'ok', 5, ROW(1, 'a\"b'), '{1,NULL,3}', '{sad,ok}', '{\"k\": [1, 2.5]}',
        '2024-02-29 12:34:56.789+02', '1 day 02:03:04', 12345.678900, '\\x00ff', 'NaN', true,
        '[1,5)', E'line\\nbreak')" \
    -c "CREATE TABLE parted (id int PRIMARY KEY, v text) PARTITION BY RANGE (id)" \
    -c "CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (1000)" \
    -c "CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (1000) TO (2000)" \
    -c "INSERT INTO parted SELECT g, 'p' || g FROM generate_series(0, 1999) g" \
    -c "ANALYZE snap" >/dev/null || wh_fail "cannot create the tables"
PORT=$(wh_free_port)
APORT=$(wh_free_port)
wh_spawn recv "$BIN/walhook-receiver" --listen "127.0.0.1:$PORT" --out "$WH_TMP/got.jsonl"
CONF="$WH_TMP/walhook.conf"
cat >"$CONF" <<CONFEOF
tenant = "default";
source = { dsn = "$PG_DSN"; slot = "walhook"; publication = "walhook"; create_slot = true;
           snapshot = "initial"; snapshot_chunk_rows = $CHUNK; };
data_dir = "$WH_TMP/data";
log_level = "info";
admin = { listen = "127.0.0.1:$APORT"; };
store = { tenant_rate_bytes = $((ROWS * 12)); };
ingestor = { window_bytes = 131072; };
targets = ( { name = "t"; url = "http://127.0.0.1:$PORT/hook"; } );
CONFEOF

# live changes during the snapshot: one session, each statement its own
# transaction, a little apart; ids above ROWS are new rows
python3 - "$ROWS" >"$WH_TMP/live.sql" <<'PY'
import random, sys
rows = int(sys.argv[1]); r = random.Random(7); nxt = rows + 1
# first the keys the table left out (k % 1000 = 500), in key ranges the
# snapshot has not read yet: a read taken outside the slot's snapshot would
# have them before their insert
for k in range(500, rows + 1, 1000):
    print(f"INSERT INTO snap VALUES ({k}, 'gap{k}', 0, now());")
for i in range(3000):
    k = r.random()
    if k < 0.45:
        print(f"UPDATE snap SET n = n + 1, v = md5(random()::text) WHERE id = {r.randint(1, rows)};")
    elif k < 0.60:
        print(f"DELETE FROM snap WHERE id = {r.randint(1, rows)};")
    elif k < 0.85:
        print(f"INSERT INTO snap VALUES ({nxt}, 'new{nxt}', {i}, now()) ON CONFLICT DO NOTHING;"); nxt += 1
    elif k < 0.90:  # move a row to another key
        a = r.randint(1, rows); print(f"UPDATE snap SET id = {10**8 + a} WHERE id = {a};")
    else:
        print(f"BEGIN; UPDATE snap SET n = -1 WHERE id = {r.randint(1, rows)}; "
              f"INSERT INTO snap VALUES ({nxt}, NULL, NULL, NULL); COMMIT;"); nxt += 1
    if i % 10 == 0:
        print("SELECT pg_sleep(0.01);")
PY
# a hot updater: one row in the middle of every 5th chunk, updated again
# and again while the snapshot runs, so chunks meet changes of their own
# rows between their watermarks (the key filter's case)
python3 - "$ROWS" "$CHUNK" >"$WH_TMP/hot.sql" <<'PY'
import sys
rows, chunk = int(sys.argv[1]), int(sys.argv[2])
keys = ",".join(str(k) for k in range(chunk // 2, rows, chunk * 5))
for i in range(2000):
    print(f"UPDATE snap SET n = n + 1000 WHERE id IN ({keys});")
    print("SELECT pg_sleep(0.003);")
PY
TOKEN=admin-token-$RANDOM-0123456789
export WALHOOK_ADMIN_ADMIN_TOKEN=$TOKEN
# ready while it reads the exported snapshot (state snapshotting; the slot
# is not active until streaming starts)
wh_spawn walhook "$BIN/walhook" up -c "$CONF"
wh_wait_http "http://127.0.0.1:$APORT/readyz" 90 || wh_fail "walhook never became ready"
pg_psql -q -f "$WH_TMP/live.sql" >/dev/null 2>&1 &
LIVE=$!
pg_psql -q -f "$WH_TMP/hot.sql" >/dev/null 2>&1 &
HOT=$!

snap_rows() { wh_metric_tcp "$APORT" walhook_ingestor_snapshot_rows_total; }
rows_at_least() { [ "$(snap_rows)" -ge "$1" ]; }
kill_ingestor() {
    wh_kill_child ingestor "at $(snap_rows) rows read"
    wh_wait_restarted ingestor
}
wh_wait_until 120 rows_at_least $((ROWS / 4)) || wh_fail "snapshot stuck at $(snap_rows) rows"
grep -q 'snapshot of public.snap (initial, in the slot.s exported snapshot) started' "$WH_TMP/walhook.log" ||
    wh_fail "the initial snapshot did not start in the slot's exported snapshot"
grep -qE 'initial snapshot in the slot.s exported snapshot (\(consistent point|stopped after)' "$WH_TMP/walhook.log" &&
    wh_fail "the exported snapshot's read ended before the kill (store.tenant_rate_bytes too high?)"
kill_ingestor
code=$(curl -sS -o "$WH_TMP/patch.out" -w '%{http_code}' -X PATCH -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d '{"store.tenant_rate_bytes": 0}' "http://127.0.0.1:$APORT/v1/settings")
[ "$code" = 200 ] || wh_fail "PATCH store.tenant_rate_bytes: HTTP $code ($(cat "$WH_TMP/patch.out"))"
wh_wait_until 120 rows_at_least $((ROWS / 2)) || wh_fail "snapshot stuck at $(snap_rows) rows after the first kill"
grep -qE 'snapshot progress read from the store: plan 2, [0-9]+ tables?, [1-9][0-9]* to do' "$WH_TMP/walhook.log" ||
    wh_fail "after the kill, the ingestor did not find the snapshot unfinished in the store"
kill_ingestor
snap_done() { [ "$(wh_metric_tcp "$APORT" walhook_ingestor_snapshot_state %.0f 'table="public.snap".*state="done"')" = 1 ]; }
wh_wait_until 300 snap_done || wh_fail "the snapshot of public.snap never finished ($(snap_rows) rows)"
wait "$LIVE" || wh_fail "the live changes failed"
wait "$HOT" || wh_fail "the hot updates failed"
wh_log "snapshot done, live changes over: $(snap_rows) rows read, $(wh_metric_tcp "$APORT" walhook_ingestor_snapshot_chunks_discarded_total) chunks read again since the last restart"
[ "$(snap_rows)" -ge "$ROWS" ] || true # rows read counts chunks stored, >= ROWS minus deleted

pg_psql -At -c "SELECT json_agg(json_build_object('id', id, 'v', v, 'n', n, 'ts', ts) ORDER BY id)
                FROM snap" >"$WH_TMP/final.json" || wh_fail "cannot read the table"
pg_psql -At -c "SELECT json_agg(id) FROM other" >"$WH_TMP/other.json" || wh_fail "cannot read other"

check() { # TABLE FINAL ROWS [OTHER]
    python3 - "$WH_TMP/got.jsonl" "$2" "$3" "${4:-}" "$1" <<'PY'
import json, sys
got, final, rows, other, tname = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
byid, bypos = {}, {}
for line in open(got):
    for e in json.loads(line):
        raw = json.dumps(e, sort_keys=True)
        if byid.setdefault(e["id"], raw) != raw:
            print(f"event {e['id']} delivered with two different contents"); sys.exit(2)
def lsn(e):
    hi, lo = e["lsn"].split("/")
    return (int(hi, 16) << 32 | int(lo, 16), e["seq"])
evs = sorted((json.loads(r) for r in byid.values()), key=lsn)
for e in evs:
    p = lsn(e)
    if bypos.setdefault(p, e["id"]) != e["id"]:
        print(f"position {p} holds two events"); sys.exit(2)
# last[k]: the row as the changes before this point left it (None: deleted);
# a read must never be older than a change delivered before it
table, changed, reads, last = {}, set(), {}, {}
for e in evs:
    if e.get("table") != tname or e["op"] in ("schema", "ddl"):
        continue
    op = e["op"]
    if op == "delete":
        table.pop(e["key"]["id"], None)
        changed.add(e["key"]["id"])
        last[e["key"]["id"]] = None
        continue
    a = e["after"]
    if op == "read":
        if a["id"] in reads:
            print(f"row {a['id']} read twice"); sys.exit(2)
        reads[a["id"]] = e
        if a["id"] in last and last[a["id"]] != a:
            print(f"row {a['id']}: read at {e['lsn']}/{e['seq']} is older than the change before it "
                  f"(n {a['n']} vs {None if last[a['id']] is None else last[a['id']]['n']})"); sys.exit(2)
    else:
        if op == "insert" and a["id"] in table:
            print(f"row {a['id']} inserted at {e['lsn']}/{e['seq']} while a read had it already "
                  f"(a read from after the insert)"); sys.exit(2)
        changed.add(a["id"])
        if e.get("before") or (e["key"] and e["key"]["id"] != a["id"]):
            old = (e.get("before") or e["key"])["id"]
            if old != a["id"]:
                table.pop(old, None); changed.add(old); last[old] = None
        last[a["id"]] = a
    table[a["id"]] = a
want = {r["id"]: r for r in json.loads(open(final).read() or "[]")}
if set(table) != set(want):
    miss, extra = sorted(set(want) - set(table)), sorted(set(table) - set(want))
    print(f"replayed {len(table)} rows, table has {len(want)}: missing {miss[:5]} ({len(miss)}), extra {extra[:5]} ({len(extra)})"); sys.exit(1)
for k, r in want.items():
    a = table[k]
    # timestamptz: walhook's form (ISO 8601, UTC) vs json_build_object's
    if a["v"] != r["v"] or a["n"] != r["n"] or (a["ts"] is None) != (r["ts"] is None):
        print(f"row {k}: replayed {a}, table {r}"); sys.exit(1)
for k in range(1, rows + 1):
    if k not in changed and k not in reads:
        print(f"row {k} existed, was never changed, and has no read event"); sys.exit(1)
if not other:
    print(f"ok {tname}: {len(evs)} events, {len(reads)} reads, {len(changed)} keys changed, {len(table)} rows"); sys.exit(0)
otherids = set(json.loads(open(other).read()))
oreads = {e["after"]["id"] for e in evs if e.get("table") == "other" and e["op"] == "read"}
if oreads != otherids:
    print(f"table other: {len(oreads)} rows read, {len(otherids)} in the table"); sys.exit(1)
print(f"ok {len(evs)} events, {len(reads)} reads, {len(changed)} keys changed, {len(table)} rows")
PY
}
# what is delivered converges to the table; exit 2 is a wrong event (no
# waiting helps)
deadline=$(($(date +%s) + 120))
until check snap "$WH_TMP/final.json" "$ROWS" "$WH_TMP/other.json" >"$WH_TMP/check.out" 2>&1; do
    [ $? -eq 2 ] && wh_fail "$(cat "$WH_TMP/check.out")"
    [ "$(date +%s)" -ge "$deadline" ] && wh_fail "$(cat "$WH_TMP/check.out")"
    sleep 0.5
done
wh_log "$(cat "$WH_TMP/check.out")"
# the exported snapshot's rows (ck and other were read in it whole, before
# the kill in public.snap): at (consistent point - 2, seq), before every
# change; every read event has its table's schema_version, the one the
# stream's changes of the same shape carry, announced by a schema event
# before the table's first read
CP=$(sed -n 's/.*created logical replication slot "walhook" at \([0-9A-F]*\/[0-9A-F]*\).*/\1/p' "$WH_TMP/walhook.log" | head -1)
[ -n "$CP" ] || wh_fail "no log line gives the slot's consistent point"
python3 - "$WH_TMP/got.jsonl" "$CP" <<'PY' || wh_fail "the exported snapshot's read events are wrong"
import json, sys
def num(l):
    hi, lo = l.split("/"); return int(hi, 16) << 32 | int(lo, 16)
cp = num(sys.argv[2])
evs = {}
for line in open(sys.argv[1]):
    for e in json.loads(line):
        evs[e["id"]] = e
evs = sorted(evs.values(), key=lambda e: (num(e["lsn"]), e["seq"]))
first_change = min((num(e["lsn"]), e["seq"]) for e in evs if e["op"] in ("insert", "update", "delete"))
versions, first_read, schema_at = {}, {}, {}
for e in evs:
    t, pos = e.get("table"), (num(e["lsn"]), e["seq"])
    if e["op"] == "schema":
        schema_at.setdefault((t, e["schema_version"]), pos)
    if e["op"] == "read":
        v = e.get("schema_version")
        if not v:
            print(f"read event {e['id']} has no schema_version"); sys.exit(1)
        first_read.setdefault((t, v), pos)
        if t in ("ck", "other") and num(e["lsn"]) != cp - 2:
            print(f"{t}: read event {e['id']} is not at the consistent point - 2 ({cp - 2:X})"); sys.exit(1)
        if t in ("ck", "other") and pos >= first_change:
            print(f"{t}: read event {e['id']} after the first change"); sys.exit(1)
    if e["op"] in ("insert", "update", "delete", "read"):
        versions.setdefault(t, set()).add(e.get("schema_version"))
for (t, v), pos in first_read.items():
    if (t, v) not in schema_at or schema_at[(t, v)] > pos:
        print(f"{t}: version {v} read before any schema event announced it"); sys.exit(1)
if len(versions["snap"]) != 1:
    print(f"snap: its reads and changes carry {len(versions['snap'])} schema versions: {versions['snap']}"); sys.exit(1)
n = sum(1 for e in evs if e["op"] == "read" and num(e["lsn"]) == cp - 2)
print(f"{n} rows read in the exported snapshot, before the first change")
PY
# a composite key is read whole (chunks of CHUNK rows by (a, b))
ckreads=$(python3 -c '
import json, sys
ids = set()
for line in open(sys.argv[1]):
    for e in json.loads(line):
        if e.get("table") == "ck" and e["op"] == "read":
            ids.add((e["after"]["a"], e["after"]["b"]))
print(len(ids))' "$WH_TMP/got.jsonl")
[ "$ckreads" = 1500 ] || wh_fail "table ck (key a, b): $ckreads of 1500 rows read"
# a partitioned table, publish_via_partition_root off (the publication's
# default): each partition is a table of its own, read whole, named as the
# stream names its changes
reads_of() { # FILE TABLE: distinct ids read of TABLE
    python3 -c '
import json, sys
ids = set()
for line in open(sys.argv[1]):
    for e in json.loads(line):
        if e.get("table") == sys.argv[2] and e["op"] == "read":
            ids.add(e["after"]["id"])
print(len(ids))' "$1" "$2"
}
[ "$(reads_of "$WH_TMP/got.jsonl" parted_1)" = 1000 ] && [ "$(reads_of "$WH_TMP/got.jsonl" parted_2)" = 1000 ] ||
    wh_fail "partitions: $(reads_of "$WH_TMP/got.jsonl" parted_1) and $(reads_of "$WH_TMP/got.jsonl" parted_2) of 1000 rows each read"
[ "$(reads_of "$WH_TMP/got.jsonl" parted)" = 0 ] || wh_fail "the partitioned root was read too (rows twice)"
# a read renders exactly as an insert of the same values (types that are
# not built in, arrays, generated column left out as pgoutput does)
pg_psql -c "INSERT INTO typed SELECT 2, m, d, p, arr, ma, js, ts, iv, nu, by, f, bo, r, tx FROM typed
            WHERE id = 1" >/dev/null || wh_fail "cannot insert the typed row"
typed_same() {
    python3 -c '
import json, sys
rows = {}
for line in open(sys.argv[1]):
    for e in json.loads(line):
        if e.get("table") == "typed" and e["op"] in ("read", "insert"):
            rows[(e["op"], e["after"]["id"])] = e
r, i = rows.get(("read", 1)), rows.get(("insert", 2))
if not r or not i:
    sys.exit(1)
a, b = dict(r["after"]), dict(i["after"])
a.pop("id"); b.pop("id")
if a != b or "g" in a or r["key"] != {"id": 1} or r["before"] is not None:
    print(f"read {r}"); print(f"insert {i}"); sys.exit(2)
' "$WH_TMP/got.jsonl" >"$WH_TMP/typed.out" 2>&1
}
deadline=$(($(date +%s) + 30))
until typed_same; do
    [ $? -eq 2 ] && wh_fail "the read row differs from the insert: $(cat "$WH_TMP/typed.out")"
    [ "$(date +%s)" -ge "$deadline" ] && wh_fail "no read of typed 1 or no insert of typed 2"
    sleep 0.3
done
# a table without a key is refused, by name, never read in part
[ "$(wh_metric_tcp "$APORT" walhook_ingestor_snapshot_state %.0f 'table="public.nokey".*state="refused"')" = 1 ] ||
    wh_fail "public.nokey (no key) is not refused"
grep -q 'snapshot of public.nokey refused: it has no primary key nor replica identity index' "$WH_TMP/walhook.log" ||
    wh_fail "no log line names the refusal of public.nokey"
# no row value in any log (row 1's v)
! grep -rq "$(printf 1 | md5sum | cut -c1-32)" "$WH_TMP"/*.log || wh_fail "a row value is in a log"

# ---- part 2: a backfill through the REST API of a table that streams ----
BF=${BF_ROWS:-5000}
pg_psql -c "CREATE TABLE bf (id int PRIMARY KEY, v text, n int, ts timestamptz)" \
    -c "INSERT INTO bf SELECT g, 'b' || g, 0, now() FROM generate_series(1, $BF) g" >/dev/null ||
    wh_fail "cannot create table bf"
API="http://127.0.0.1:$APORT/v1/tenants/default/backfill"
AUTH="Authorization: Bearer $TOKEN"
# the status page lists the jobs
curl -fsS -H "$AUTH" "http://127.0.0.1:$APORT/" >"$WH_TMP/page.html" || wh_fail "no status page"
grep -q '<table id="snapshots">' "$WH_TMP/page.html" && grep -q '<td class="name">public.snap</td><td>initial</td><td class="ok">done</td>' "$WH_TMP/page.html" ||
    wh_fail "the status page has no snapshot row for public.snap: $(grep -o '<table id="snapshots">.*' "$WH_TMP/page.html" | head -c 400)"
post() { curl -sS -o "$WH_TMP/post.out" -w '%{http_code}' -X POST -H "$AUTH" -H 'Content-Type: application/json' -d "$2" "$1"; }
for bad in '{}' '{"table": 5}' '{"table": "nodot"}' '{"table": "public.bf", "x": 1}' '[1]' 'not json'; do
    code=$(post "$API" "$bad")
    [ "$code" = 400 ] || wh_fail "POST $bad: HTTP $code, expected 400 ($(cat "$WH_TMP/post.out"))"
done
code=$(post "$API" '{"table": "public.nosuch"}')
[ "$code" = 404 ] || wh_fail "backfill of an unknown table: HTTP $code, expected 404"
code=$(post "http://127.0.0.1:$APORT/v1/tenants/nosuch/backfill" '{"table": "public.bf"}')
[ "$code" = 404 ] || wh_fail "backfill of an unknown tenant: HTTP $code, expected 404"
python3 - "$BF" >"$WH_TMP/bflive.sql" <<'PY'
import random, sys
rows = int(sys.argv[1]); r = random.Random(11)
for i in range(600):
    k = r.random(); a = r.randint(1, rows)
    if k < 0.7:
        print(f"UPDATE bf SET n = n + 1, v = md5(random()::text) WHERE id = {a};")
    elif k < 0.85:
        print(f"DELETE FROM bf WHERE id = {a};")
    else:
        print(f"INSERT INTO bf VALUES ({rows + i + 1}, 'x', {i}, now());")
    if i % 5 == 0:
        print("SELECT pg_sleep(0.01);")
PY
# the chunk size is a runtime setting: the backfill reads chunks of 300
code=$(curl -sS -o "$WH_TMP/patch.out" -w '%{http_code}' -X PATCH -H "$AUTH" -H 'Content-Type: application/json' \
    -d '{"source.snapshot_chunk_rows": 300}' "http://127.0.0.1:$APORT/v1/settings")
[ "$code" = 200 ] || wh_fail "PATCH source.snapshot_chunk_rows: HTTP $code ($(cat "$WH_TMP/patch.out"))"
_chunk_rows_applied() { grep -q 'source.snapshot_chunk_rows=300' "$WH_TMP/walhook.log"; }
wh_wait_until 30 _chunk_rows_applied || wh_fail "the ingestor did not apply source.snapshot_chunk_rows"
pg_psql -q -f "$WH_TMP/bflive.sql" >/dev/null 2>&1 &
LIVE=$!
code=$(post "$API" '{"table": "public.bf"}')
[ "$code" = 202 ] || wh_fail "backfill request: HTTP $code ($(cat "$WH_TMP/post.out"))"
BFID=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["id"])' "$WH_TMP/post.out")
[[ "$BFID" =~ ^bf-[0-9]+$ ]] || wh_fail "backfill reply: $(cat "$WH_TMP/post.out")"
bf_done() {
    curl -fsS -H "$AUTH" "$API" 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if any(j["id"] == sys.argv[1] and j["state"] == "done" for j in d["jobs"] or []) else 1)' "$BFID"
}
wh_wait_until 120 bf_done || wh_fail "the backfill never finished: $(curl -sS -H "$AUTH" "$API")"
wait "$LIVE" || wh_fail "the live changes on bf failed"
wh_log "backfill: $(curl -sS -H "$AUTH" "$API" | tr -d '\n' | cut -c1-300)"
pg_psql -At -c "SELECT json_agg(json_build_object('id', id, 'v', v, 'n', n, 'ts', ts) ORDER BY id)
                FROM bf" >"$WH_TMP/bf.json" || wh_fail "cannot read bf"
deadline=$(($(date +%s) + 60))
until check bf "$WH_TMP/bf.json" "$BF" >"$WH_TMP/check.out" 2>&1; do
    [ $? -eq 2 ] && wh_fail "backfill: $(cat "$WH_TMP/check.out")"
    [ "$(date +%s)" -ge "$deadline" ] && wh_fail "backfill: $(cat "$WH_TMP/check.out")"
    sleep 0.5
done
wh_log "$(cat "$WH_TMP/check.out")"
# publish_via_partition_root on: the root is the published table; a
# backfill of it reads every partition's rows under its name
pg_psql -c "ALTER PUBLICATION walhook SET (publish_via_partition_root = true)" >/dev/null ||
    wh_fail "cannot set publish_via_partition_root"
code=$(post "$API" '{"table": "public.parted"}')
[ "$code" = 202 ] || wh_fail "backfill of public.parted: HTTP $code ($(cat "$WH_TMP/post.out"))"
parted_done() {
    curl -fsS -H "$AUTH" "$API" 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if any(j["table"] == "public.parted" and j["state"] == "done" for j in d["jobs"] or []) else 1)'
}
wh_wait_until 60 parted_done || wh_fail "the backfill of public.parted never finished: $(curl -sS -H "$AUTH" "$API")"
_parted_read() { [ "$(reads_of "$WH_TMP/got.jsonl" parted)" = 2000 ]; }
wh_wait_until 30 _parted_read ||
    wh_fail "publish_via_partition_root: $(reads_of "$WH_TMP/got.jsonl" parted) of 2000 rows read as parted"
wh_kill walhook TERM
wh_kill recv TERM
wh_pass "$ROWS rows snapshotted (exported snapshot, then watermark chunks) with live changes and two ingestor SIGKILLs, a partitioned table read by partitions and through its root, and a $BF-row table backfilled through the REST API while it streams: replays equal the tables, every untouched row read once, no read older than a change before it, no id with two contents"
