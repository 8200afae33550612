#!/usr/bin/env bash
# REPLICA IDENTITY FULL: the envelope's key is the table's primary key (read
# from the catalog on a second connection), not the whole old row.
#   acct  composite primary key (id, region), columns in another order,
#         REPLICA IDENTITY FULL: ROWS inserts, ROUNDS rounds of updates of
#         every row (non-key columns only, random row order, one transaction
#         per round), DELS deletes. Every event's key is exactly {id, region};
#         before is the whole old row (null for an insert); after the new one
#         (null for a delete).
#   nopk  REPLICA IDENTITY FULL and no primary key: key = every column (the
#         documented fallback), with one warning in the log.
# Two targets: "strict", and "lanes" (ordering by_key, 4 lanes, a slow
# receiver so lanes overlap): with a stable key each row's changes stay in
# one lane, so every row's changes arrive in order at "lanes".
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
ROWS=${ROWS:-8}
ROUNDS=${ROUNDS:-30}
DELS=${DELS:-3}
trap wh_cleanup EXIT
wh_require_bins walhook walhook-store walhook-ingestor walhook-dispatcher walhook-admin \
    walhook-receiver
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
pg_psql -c "CREATE TABLE acct (note text, id int, bal int NOT NULL, region text,
                               PRIMARY KEY (id, region))" \
    -c "ALTER TABLE acct REPLICA IDENTITY FULL" \
    -c "CREATE TABLE nopk (a int, b text)" -c "ALTER TABLE nopk REPLICA IDENTITY FULL" >/dev/null ||
    wh_fail "cannot create the tables"
SPORT=$(wh_free_port)
LPORT=$(wh_free_port)
APORT=$(wh_free_port)
wh_spawn r_strict "$BIN/walhook-receiver" --listen "127.0.0.1:$SPORT" --out "$WH_TMP/strict.jsonl"
wh_spawn r_lanes "$BIN/walhook-receiver" --listen "127.0.0.1:$LPORT" --out "$WH_TMP/lanes.jsonl" \
    --delay-ms 30
CONF="$WH_TMP/walhook.conf"
cat >"$CONF" <<CONFEOF
tenant = "default";
source = { dsn = "$PG_DSN"; slot = "walhook"; publication = "walhook"; create_slot = true; };
data_dir = "$WH_TMP/data";
log_level = "info";
admin = { listen = "127.0.0.1:$APORT"; };
dispatcher = { batch_max_events = 10; retry_base_ms = 20; retry_max_ms = 200; };
targets = (
  { name = "strict"; url = "http://127.0.0.1:$SPORT/hook"; },
  { name = "lanes"; url = "http://127.0.0.1:$LPORT/hook"; ordering = "by_key"; lanes = 4; max_connections = 4; }
);
CONFEOF
wh_spawn walhook "$BIN/walhook" up -c "$CONF"
wh_wait_http "http://127.0.0.1:$APORT/readyz" 90 || wh_fail "walhook never became ready"
wh_wait_slot_active walhook 60 || wh_fail "the slot is not streaming"

pg_psql -c "INSERT INTO acct SELECT 'n' || g, g, 0, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END
            FROM generate_series(1, $ROWS) g" >/dev/null || wh_fail "insert failed"
for ((r = 1; r <= ROUNDS; r++)); do
    echo "BEGIN;"
    for id in $(seq 1 "$ROWS" | shuf); do
        echo "UPDATE acct SET bal = $r, note = 'r$r' WHERE id = $id;"
    done
    echo "COMMIT;"
done | pg_psql >/dev/null || wh_fail "updates failed"
pg_psql -c "DELETE FROM acct WHERE id <= $DELS" \
    -c "INSERT INTO nopk VALUES (1, 'x'), (2, NULL)" -c "UPDATE nopk SET b = 'y' WHERE a = 1" \
    -c "DELETE FROM nopk WHERE a = 2" >/dev/null || wh_fail "changes failed"
TOTAL=$((ROWS * (ROUNDS + 1) + DELS + 4))
wh_log "$TOTAL changes made"

# CHECK FILE: prints a reason and exits non-zero when an event is wrong, a
# change is missing, or (first arrivals) a row's changes are out of order.
check() {
    python3 - "$1" "$ROWS" "$ROUNDS" "$DELS" <<'PY'
import json, sys
path, rows, rounds, dels = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def fail(msg, code=1):
    print(msg); sys.exit(code)
try:
    lines = open(path).read().splitlines()
except OSError:
    lines = []
seen, per_key, nopk = set(), {}, []
for line in lines:
    for e in json.loads(line):
        if e.get("op") in ("schema", "ddl"):  # schema registry events (test_schema.sh)
            continue
        if e["id"] in seen:
            continue
        seen.add(e["id"])
        op, key, before, after = e["op"], e["key"], e["before"], e["after"]
        if e["table"] == "nopk":
            nopk.append(e)
            continue
        row = before if op == "delete" else after
        if op == "insert" and before is not None:
            fail(f"insert with before {before}")
        if op == "delete" and after is not None:
            fail(f"delete with after {after}")
        if op == "update" and (before is None or after is None):
            fail(f"update without before or after: {e}")
        want = {"id": row["id"], "region": row["region"]}
        if key != want:
            fail(f"{op}: key {key}, expected the primary key {want}")
        for t in (before, after):
            if t is not None and set(t) != {"note", "id", "bal", "region"}:
                fail(f"{op}: a row image is not the whole row: {t}")
        if op == "update" and (before["bal"] != after["bal"] - 1 or before["id"] != after["id"]):
            fail(f"update: before {before} is not the old row of after {after}")
        k = (row["id"], row["region"])
        per_key.setdefault(k, []).append("d" if op == "delete" else row["bal"])
if len(per_key) != rows:
    fail(f"{len(per_key)} of {rows} rows seen", 2)
for (i, reg), seq in sorted(per_key.items()):
    want = list(range(rounds + 1)) + (["d"] if i <= dels else [])
    if len(seq) < len(want) and seq == want[:len(seq)]:
        fail(f"row {i}: {len(seq)} of {len(want)} changes", 2)
    if seq != want:
        fail(f"row {i}/{reg}: changes arrived in the order {seq}, expected {want}")
if len(nopk) < 4:
    fail(f"{len(nopk)} of 4 nopk changes", 2)
full = lambda r: {"a": r["a"], "b": r["b"]}
for e in nopk:
    src = e["after"] if e["op"] == "insert" else e["before"]
    if e["key"] != full(src):
        fail(f"nopk {e['op']}: key {e['key']}, expected every column {full(src)}")
PY
}
_complete() { check "$1" >/dev/null; }
for t in strict lanes; do
    wh_wait_until 120 _complete "$WH_TMP/$t.jsonl"
    out=$(check "$WH_TMP/$t.jsonl") || wh_fail "target $t: $out"
done
n=$(grep -c 'public.nopk has REPLICA IDENTITY FULL and no primary key' "$WH_TMP/walhook.log")
[ "$n" = 1 ] || wh_fail "$n warnings about nopk's missing primary key in the log, expected 1"
grep -q 'public.acct has REPLICA IDENTITY FULL' "$WH_TMP/walhook.log" &&
    wh_fail "a warning about acct, whose primary key is readable"
size=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    for e in json.loads(line):
        if e.get("op") in ("schema", "ddl"):  # schema registry events (test_schema.sh)
            continue
        if e["table"] == "acct" and e["op"] == "update":
            print(len(json.dumps(e, separators=(",", ":")))); sys.exit(0)' "$WH_TMP/strict.jsonl")
wh_log "one acct update event: $size bytes"
wh_kill walhook TERM
wh_kill r_strict TERM
wh_kill r_lanes TERM
wh_pass "$TOTAL changes; REPLICA IDENTITY FULL: key = the primary key (composite), before/after whole rows, each row in order over 4 by_key lanes; no primary key: key = every column"
