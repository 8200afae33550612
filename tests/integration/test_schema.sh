#!/usr/bin/env bash
# Schema changes (docs/INTERNALS.md "Schema versions and DDL"): a DDL
# sequence mid-stream while inserts run (add, drop, rename and retype
# columns; create, truncate and drop a table), with source.ddl on, and a SIGKILL of
# the ingestor in the middle of it. Checked on what the target received and
# on GET /v1/tenants/{t}/schemas:
#   - every change carries schema_version, a version the registry holds, and
#     its columns are exactly that version's columns;
#   - a schema event precedes the first change of its version, one per
#     version (none twice after the SIGKILL), and the registry holds exactly
#     the versions the events name (t1: 6 shapes, t2: 1);
#   - ddl events come in their transactional position (the ADD COLUMN d
#     transaction: ddl, then schema, then its insert), one per DDL command;
#   - nothing is lost and nothing stored twice: every insert arrives once,
#     and every position the store holds was delivered (walhook-store --dump);
#   - the DDL statements' text (it may hold values) is in no log.
# Then without the trigger (source.ddl false, triggers dropped): a new shape
# still registers a version and emits its schema event, and no ddl event.
# Then a streamed transaction (source.streaming) that first used a version
# and rolled back: the version is forgotten with it, the next use announces
# it. Last, source.ddl as a role that is no superuser: an error naming what is
# missing (state error), and, once a superuser installed the triggers, a
# stream with ddl events.
# SCHEMA_ROWS (default 300): inserts of the background loop.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_pipeline_setup
ROWS=${SCHEMA_ROWS:-300}
SECRET="wh-secret-$RANDOM-7f3a"
pg_psql -c "CREATE TABLE t1 (id int PRIMARY KEY, a int, b text)" >/dev/null ||
    wh_fail "cannot create t1"
PORT=$(wh_free_port)
APORT=$(wh_free_port)
wh_spawn recv "$BIN/walhook-receiver" --listen "127.0.0.1:$PORT" --out "$WH_TMP/got.jsonl"
write_conf() { # DDL [DSN DATA_DIR STREAMING]
    cat >"$WH_TMP/walhook.conf" <<CONFEOF
tenant = "default";
source = { dsn = "${2:-$PG_DSN}"; slot = "walhook"; publication = "walhook"; create_slot = true;
           ddl = $1; streaming = ${4:-false}; };
data_dir = "${3:-$WH_TMP/data}";
log_level = "info";
# every version the events name stays listed (pruning: test_schema_prune.sh)
store = { schema_prune = false; };
admin = { listen = "127.0.0.1:$APORT"; };
targets = ( { name = "t"; url = "http://127.0.0.1:$PORT/hook"; } );
CONFEOF
}
write_conf true
wh_up "$WH_TMP/walhook.conf" "$APORT"
[ "$(pg_psql -At -c "SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'walhook_ddl_%'")" = 2 ] ||
    wh_fail "the DDL event triggers were not installed"

# the background inserts: each its own transaction, only the key (the
# other columns come and go)
{
    for i in $(seq 1 "$ROWS"); do
        echo "INSERT INTO t1 (id) VALUES ($((100000 + i)));"
        echo "SELECT pg_sleep(0.005);"
    done
} >"$WH_TMP/loop.sql"

ddl() { pg_psql -c "$1" >/dev/null || wh_fail "DDL failed: $1"; }
ddl "INSERT INTO t1 VALUES (1, 1, 'one')"
ddl "ALTER TABLE t1 ADD COLUMN c int"
ddl "INSERT INTO t1 (id, c) VALUES (2, 2)"
pg_psql >/dev/null <<SQL || wh_fail "the ADD COLUMN d transaction failed"
BEGIN;
ALTER TABLE t1 ADD COLUMN d text DEFAULT '$SECRET';
INSERT INTO t1 (id) VALUES (3);
COMMIT;
SQL
ddl "ALTER TABLE t1 RENAME COLUMN b TO b2"
ddl "INSERT INTO t1 (id, b2) VALUES (4, 'four')"
# the slot confirmed the first use of this version: PostgreSQL will not send
# it again, so a change of it after the restart is not its first use
wh_wait_slot_flush "$(pg_psql -At -c "SELECT pg_current_wal_lsn()")" 60 ||
    wh_fail "the slot never confirmed the insert of id 4"

# the loop runs across the SIGKILL: after the restart, changes of the
# version in force are sent again or come new, and must not announce it
# again
wh_spawn loop psql -X -q -v ON_ERROR_STOP=1 -d "$PG_DSN" -o /dev/null -f "$WH_TMP/loop.sql"
sleep 0.5
wh_kill_child ingestor "in the middle of the sequence"
ddl "INSERT INTO t1 (id) VALUES (41)"
wh_wait_restarted ingestor
_forty_one() { grep -q '"id":41,' "$WH_TMP/got.jsonl" 2>/dev/null; }
wh_wait_until 60 _forty_one || wh_fail "the insert of id 41 (after the SIGKILL) never arrived"
ddl "ALTER TABLE t1 ALTER COLUMN a TYPE bigint"
ddl "INSERT INTO t1 (id, a) VALUES (5, 5000000000)"
ddl "ALTER TABLE t1 DROP COLUMN c"
ddl "INSERT INTO t1 (id) VALUES (6)"
ddl "CREATE TABLE t2 (k int PRIMARY KEY, v text)"
# a TRUNCATE makes PostgreSQL send t2's Relation message again in the
# transaction of its first use: still one schema event
pg_psql >/dev/null <<'SQL' || wh_fail "the t2 transaction failed"
BEGIN;
INSERT INTO t2 VALUES (1, 'x');
TRUNCATE t2;
INSERT INTO t2 VALUES (2, 'y');
COMMIT;
SQL
ddl "DROP TABLE t2"
wh_wait_until 120 bash -c "! kill -0 ${WH_PIDS[loop]} 2>/dev/null" || wh_fail "the insert loop hangs"
ddl "INSERT INTO t1 (id) VALUES (999999)"
_sentinel() { grep -q '"id":999999' "$WH_TMP/got.jsonl" 2>/dev/null; }
wh_wait_until 90 _sentinel || wh_fail "the last insert never arrived"

TOKEN=$(cat "$WH_TMP/data/admin.token" 2>/dev/null)
schemas() {
    curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$APORT/v1/tenants/default/schemas"
}
schemas >"$WH_TMP/schemas1.json" || wh_fail "GET /v1/tenants/default/schemas failed"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
    "http://127.0.0.1:$APORT/v1/tenants/nosuch/schemas")
[ "$code" = 404 ] || wh_fail "schemas of a missing tenant: HTTP $code, expected 404"

check() { # PART SCHEMAS_FILE
    python3 - "$1" "$2" "$WH_TMP/got.jsonl" "$ROWS" <<'PY'
import json, sys
part, sfile, gfile, rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
reg = json.load(open(sfile))
versions = {}
for t in reg["tables"]:
    for v in t["versions"]:
        if v["fingerprint"] in versions:
            sys.exit(f"version {v['fingerprint']} listed twice")
        versions[v["fingerprint"]] = (t["table"], v)
def lsn(s):
    hi, lo = s.split("/")
    return int(hi, 16) << 32 | int(lo, 16)
evs, seen = [], set()
for line in open(gfile):
    for e in json.loads(line):
        if e["id"] not in seen:
            seen.add(e["id"])
            evs.append(e)
evs.sort(key=lambda e: (lsn(e["lsn"]), e["seq"]))
pos = lambda e: (lsn(e["lsn"]), e["seq"])
schema_at = {}  # fingerprint -> positions of its schema events
first_use = {}
ids = set()
for e in evs:
    op = e["op"]
    if op == "schema":
        fp = e["schema_version"]
        schema_at.setdefault(fp, []).append(pos(e))
        if fp not in versions:
            sys.exit(f"schema event of {fp} ({e['table']}): not in the registry")
        t, v = versions[fp]
        if e["columns"] != v["columns"] or e["key_columns"] != v["key_columns"]:
            sys.exit(f"schema event of {fp}: columns differ from the registry's")
        continue
    if op not in ("insert", "update", "delete", "truncate"):
        continue
    fp = e.get("schema_version")
    if fp is None:
        sys.exit(f"{op} at {e['lsn']}/{e['seq']} has no schema_version")
    if fp not in versions:
        sys.exit(f"{op} at {e['lsn']}/{e['seq']}: schema_version {fp} not in the registry")
    t, v = versions[fp]
    if t != f"{e['schema']}.{e['table']}":
        sys.exit(f"{op} at {e['lsn']}/{e['seq']}: version {fp} is of {t}")
    cols = [c["name"] for c in v["columns"]]
    if op == "insert" and sorted(e["after"].keys()) != sorted(cols):
        sys.exit(f"insert at {e['lsn']}/{e['seq']}: columns {sorted(e['after'])}, version {fp} has {cols}")
    first_use.setdefault(fp, pos(e))
    if e["table"] == "t1" and op == "insert":
        if e["after"]["id"] in ids:  # stored twice (at two positions)
            sys.exit(f"the insert of id {e['after']['id']} arrived twice (at {e['lsn']}/{e['seq']})")
        ids.add(e["after"]["id"])
for fp, p in first_use.items():
    if fp not in schema_at:
        sys.exit(f"no schema event for version {fp} ({versions[fp][0]})")
    if min(schema_at[fp]) >= p:
        sys.exit(f"the schema event of {fp} comes after its first change")
for fp, ps in schema_at.items():
    if len(ps) != 1:
        sys.exit(f"{len(ps)} schema events for version {fp}")
per_table = {}
for fp, (t, v) in versions.items():
    per_table.setdefault(t, set()).add(fp)
if set(versions) != set(schema_at):
    sys.exit(f"registry {sorted(versions)} != versions with schema events {sorted(schema_at)}")
ddl = [e for e in evs if e["op"] == "ddl"]
if part == "1":
    if len(per_table.get("public.t1", ())) != 6 or len(per_table.get("public.t2", ())) != 1:
        sys.exit(f"versions per table: { {t: len(s) for t, s in per_table.items()} }, expected t1 6, t2 1")
    want = set(range(1, 7)) | set(range(100001, 100001 + rows)) | {41, 999999}
    if ids != want:
        sys.exit(f"inserts of t1: missing {sorted(want - ids)[:10]}, unexpected {sorted(ids - want)[:10]}")
    tags = [e["ddl"]["command_tag"] for e in ddl]
    # ADD c, ADD d, RENAME, ALTER TYPE, DROP c: ALTER TABLE; CREATE TABLE (and
    # its index); DROP TABLE: sql_drop, one message per dropped object
    if tags.count("ALTER TABLE") < 5 or "CREATE TABLE" not in tags or "DROP TABLE" not in tags:
        sys.exit(f"ddl command tags: {tags}")
    for stmt in ("ADD COLUMN c", "ADD COLUMN d", "RENAME COLUMN b TO b2", "ALTER COLUMN a TYPE bigint",
                 "DROP COLUMN c", "CREATE TABLE t2", "DROP TABLE t2"):
        if not any(stmt in (e["ddl"]["statement"] or "") for e in ddl):
            sys.exit(f"no ddl event of {stmt}: {[e['ddl']['statement'] for e in ddl]}")
    addd = [e for e in ddl if "ADD COLUMN d" in (e["ddl"]["statement"] or "")]
    if len(addd) != 1:
        sys.exit(f"{len(addd)} ddl events of ADD COLUMN d")
    same = [e for e in evs if e["lsn"] == addd[0]["lsn"]]
    ops = [(e["op"], e.get("after", {}) and e["after"].get("id") if e["op"] == "insert" else None) for e in same]
    if [o for o, _ in ops] != ["ddl", "schema", "insert"] or ops[2][1] != 3:
        sys.exit(f"the ADD COLUMN d transaction: {ops}, expected ddl, schema, insert of id 3")
    for e in ddl:
        if e["ddl"]["event"] not in ("ddl_command_end", "sql_drop"):
            sys.exit(f"ddl event {e['ddl']}")
        if "walhook_ddl_capture" in (e["ddl"]["object_identity"] or ""):
            sys.exit("the ingestor's reconnect replaced its own DDL function (a ddl event of it)")
else:
    if len(per_table.get("public.t1", ())) != 7:
        sys.exit(f"t1 versions: {len(per_table.get('public.t1', ()))}, expected 7")
    late = [e for e in ddl if "ADD COLUMN e" in (e["ddl"]["statement"] or "")]
    if late:
        sys.exit("a ddl event without the trigger")
print(f"ok: {len(evs)} events, {len(versions)} versions, {len(ddl)} ddl events")
PY
}
out=$(check 1 "$WH_TMP/schemas1.json" 2>&1) || wh_fail "$out"
wh_log "$out"
grep -l "$SECRET" "$WH_TMP"/*.log 2>/dev/null && wh_fail "a DDL statement's text is in a log"

# ---- without the trigger: schema events still come ----
wh_kill walhook TERM
# every stored position was delivered: an event written at a position the
# target had passed (a change that moved to another seq on the resend) is
# stored twice and never seen by the target
"$BIN/walhook-store" --dump -c "$WH_TMP/walhook.conf" >"$WH_TMP/dump.txt" 2>"$WH_TMP/dump.log" ||
    wh_fail "walhook-store --dump failed"
out=$(python3 - "$WH_TMP/dump.txt" "$WH_TMP/got.jsonl" <<'PY'
import json, sys
stored, marked = set(), set()
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] == "default":
        stored.add(f"{f[1]}:{f[2]}")
        if len(f) > 3:
            marked.add(f"{f[1]}:{f[2]}")
got, meta = set(), set()
for line in open(sys.argv[2]):
    for e in json.loads(line):
        got.add(e["id"].split(":", 1)[1])
        if e["op"] in ("schema", "ddl"):
            meta.add(e["id"].split(":", 1)[1])
extra = sorted(stored - got)
if extra:
    sys.exit(f"{len(extra)} stored events never delivered (stored twice?): {extra[:5]}")
if marked != meta:
    sys.exit(f"the dump marks {len(marked)} schema/ddl events, {len(meta)} were delivered")
print(f"ok: {len(stored)} stored positions, all delivered")
PY
) || wh_fail "$out"
wh_log "$out"
pg_psql -c "DROP EVENT TRIGGER walhook_ddl_end" -c "DROP EVENT TRIGGER walhook_ddl_drop" \
    >/dev/null || wh_fail "cannot drop the event triggers"
write_conf false
wh_up "$WH_TMP/walhook.conf" "$APORT"
ddl "ALTER TABLE t1 ADD COLUMN e int"
ddl "INSERT INTO t1 (id, e) VALUES (7, 7)"
_seven() { grep -q '"id":7,' "$WH_TMP/got.jsonl" 2>/dev/null; }
wh_wait_until 60 _seven || wh_fail "the insert after ADD COLUMN e never arrived"
schemas >"$WH_TMP/schemas2.json" || wh_fail "GET /v1/tenants/default/schemas failed"
out=$(check 2 "$WH_TMP/schemas2.json" 2>&1) || wh_fail "$out"
wh_log "$out"
[ "$(pg_psql -At -c "SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'walhook_ddl_%'")" = 0 ] ||
    wh_fail "source.ddl = false installed the triggers"
wh_kill walhook TERM

# ---- a streamed transaction that first used a version, rolled back: the
# version is forgotten with it, and the next use announces it ----
pg_psql -c "ALTER SYSTEM SET logical_decoding_work_mem = '64kB'" -c "SELECT pg_reload_conf()" \
    >/dev/null || wh_fail "cannot lower logical_decoding_work_mem"
write_conf false "$PG_DSN" "$WH_TMP/data" true
wh_up "$WH_TMP/walhook.conf" "$APORT"
ddl "ALTER TABLE t1 ADD COLUMN g int"
# open until PostgreSQL streamed it (a transaction already rolled back when
# decoding reaches it is not streamed: a concurrent abort; on a loaded
# machine decoding can be that late)
wh_psql_session big 5
echo "BEGIN; INSERT INTO t1 (id, g) SELECT i, i FROM generate_series(200001, 203000) i;" >&5
_g_shape() { [ "$(grep -c 'of public.t1 (6 columns' "$WH_TMP/walhook.log")" -ge "$1" ]; }
wh_wait_until 60 _g_shape 1 || wh_fail "the streamed transaction's schema event was not staged"
echo "ROLLBACK;" >&5
exec 5>&-
wh_wait_until 30 bash -c "! kill -0 $bigpid 2>/dev/null" || wh_fail "the streamed transaction hangs"
ddl "INSERT INTO t1 (id, g) VALUES (9, 9)"
wh_wait_until 30 _g_shape 2 || wh_fail "the version of the rolled-back transaction was not announced again"
_nine() { grep -q '"id":9,' "$WH_TMP/got.jsonl" 2>/dev/null; }
wh_wait_until 60 _nine || wh_fail "the insert after the rolled-back streamed transaction never arrived"
streamed=$(pg_psql -At -c "SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = 'walhook'")
[ "${streamed:-0}" -gt 0 ] || wh_fail "PostgreSQL streamed no transaction (stream_txns ${streamed:-none})"
schemas >"$WH_TMP/schemas4.json" || wh_fail "GET /v1/tenants/default/schemas failed"
out=$(python3 - "$WH_TMP/schemas4.json" "$WH_TMP/got.jsonl" <<'PY' 2>&1
import json, sys
reg = {v["fingerprint"]: v for t in json.load(open(sys.argv[1]))["tables"] for v in t["versions"]}
evs, seen = [], set()
for line in open(sys.argv[2]):
    for e in json.loads(line):
        if e["id"] not in seen:
            seen.add(e["id"]); evs.append(e)
nine = [e for e in evs if e["op"] == "insert" and e["table"] == "t1" and e["after"]["id"] == 9]
if len(nine) != 1:
    sys.exit(f"{len(nine)} inserts of id 9")
fp = nine[0]["schema_version"]
if fp not in reg or reg[fp]["first_lsn"] != nine[0]["lsn"]:
    sys.exit(f"version {fp}: first use {reg.get(fp, {}).get('first_lsn')}, expected {nine[0]['lsn']}")
ann = [e for e in evs if e["op"] == "schema" and e["schema_version"] == fp]
if len(ann) != 1 or ann[0]["lsn"] != nine[0]["lsn"] or ann[0]["seq"] >= nine[0]["seq"]:
    sys.exit(f"schema events of {fp}: {[(e['lsn'], e['seq']) for e in ann]}, expected one before id 9")
if any(e["op"] == "insert" and e["table"] == "t1" and 200000 < e["after"]["id"] <= 203000 for e in evs):
    sys.exit("a row of the rolled-back transaction was delivered")
print("ok: the version first used by the rolled-back streamed transaction is announced by id 9")
PY
) || wh_fail "$out"
wh_log "$out"
wh_kill walhook TERM

# ---- source.ddl as a role that is no superuser: a clear error naming what
# is missing; once a superuser installed the triggers, it streams ----
pg_psql -c "CREATE ROLE whddl LOGIN REPLICATION" -c "GRANT SELECT ON t1 TO whddl" >/dev/null ||
    wh_fail "cannot create the role"
# (a data directory of its own: the tenant's source is runtime state)
WHDDL="postgresql://whddl@127.0.0.1:$PG_PORT/postgres"
write_conf true "$WHDDL" "$WH_TMP/data3"
wh_spawn walhook "$BIN/walhook" up -c "$WH_TMP/walhook.conf"
_refused() { grep -q 'needs a superuser, and user "whddl" is not one' "$WH_TMP/walhook.log"; }
wh_wait_until 60 _refused || wh_fail "no error naming the missing superuser for source.ddl"
grep -q "state error" "$WH_TMP/walhook.log" || wh_fail "the ingestor is not in state error"
wh_log "as whddl: $(grep -o 'source.ddl: creating[^;]*' "$WH_TMP/walhook.log" | head -1)"
wh_kill walhook TERM
write_conf true "$PG_DSN" "$WH_TMP/data4" # the superuser installs the triggers once ...
wh_up "$WH_TMP/walhook.conf" "$APORT"
wh_kill walhook TERM
write_conf true "$WHDDL" "$WH_TMP/data3" # ... then whddl streams with them
wh_up "$WH_TMP/walhook.conf" "$APORT"
ddl "ALTER TABLE t1 ADD COLUMN f int"
ddl "INSERT INTO t1 (id, f) VALUES (8, 8)"
_eight() { grep -q '"id":8,' "$WH_TMP/got.jsonl" 2>/dev/null && grep -q 'ADD COLUMN f' "$WH_TMP/got.jsonl"; }
wh_wait_until 60 _eight || wh_fail "as whddl: the insert after ADD COLUMN f, or its ddl event, never arrived"
wh_kill walhook TERM
wh_kill recv TERM
wh_pass
