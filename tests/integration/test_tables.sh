#!/usr/bin/env bash
# Tables and identities: which key, before and table name each kind of table
# gives, TRUNCATE's options, and replication origins (docs/INTERNALS.md
# "Event identity and envelope", README "What a webhook receives").
#   t_def      REPLICA IDENTITY DEFAULT (primary key id): key {id}; before null
#              for an update that keeps the key, {id} (the old key only) for
#              one that changes it and for a delete
#   t_idx      REPLICA IDENTITY USING INDEX on (a, b), primary key id: key
#              {a, b}; before the old {a, b}
#   t_nothing  REPLICA IDENTITY NOTHING: inserts delivered with key null; an
#              UPDATE or DELETE fails in PostgreSQL while the publication
#              publishes updates/deletes ("does not have a replica identity");
#              with an insert-only publication it succeeds and is not sent
#   t_nopk     DEFAULT without a primary key: as NOTHING
#   meas       partitioned (meas_eu; meas_us attached with another column
#              order): publish_via_partition_root off names the leaves (each
#              with its own column order; a row moved between partitions is
#              a delete and an insert; TRUNCATE meas is one event per leaf),
#              on (ALTER PUBLICATION mid-stream) names meas, rows in meas's
#              column order (TRUNCATE meas: one event, meas; TRUNCATE of one
#              leaf: none, pgoutput does not send it)
#   TRUNCATE parent_t, other_t RESTART IDENTITY CASCADE (child_t references
#              parent_t) between two inserts of one transaction: one event
#              per table, cascade and restart_identity true, in order; a
#              plain TRUNCATE: both false
#   origins    sessions with pg_replication_origin_session_setup: peer_keep's
#              changes carry "origin":"peer_keep"; peer_skip is listed in
#              source.skip_origins: its transactions are not delivered (and
#              counted), the slot still confirms past them; the setting
#              patched at runtime to skip peer_keep too; a bad value refused.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_pipeline_setup
pg_psql <<'SQL' >/dev/null || wh_fail "cannot create the tables"
CREATE TABLE t_def (id int PRIMARY KEY, v text, w int);
CREATE TABLE t_idx (id serial PRIMARY KEY, a int NOT NULL, b text NOT NULL, v text);
CREATE UNIQUE INDEX t_idx_ab ON t_idx (a, b);
ALTER TABLE t_idx REPLICA IDENTITY USING INDEX t_idx_ab;
CREATE TABLE t_nothing (id int PRIMARY KEY, v text);
ALTER TABLE t_nothing REPLICA IDENTITY NOTHING;
CREATE TABLE t_nopk (a int, b text);
CREATE TABLE meas (id int, region text, v int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE meas_eu PARTITION OF meas FOR VALUES IN ('eu');
CREATE TABLE meas_us (v int, region text NOT NULL, id int NOT NULL);
ALTER TABLE meas ATTACH PARTITION meas_us FOR VALUES IN ('us');
CREATE TABLE parent_t (id serial PRIMARY KEY, n int);
CREATE TABLE child_t (id serial PRIMARY KEY, pid int REFERENCES parent_t (id), n int);
CREATE TABLE other_t (id serial PRIMARY KEY, n int);
CREATE TABLE t_orig (id int PRIMARY KEY, src text);
CREATE PUBLICATION walhook FOR ALL TABLES WITH (publish_via_partition_root = false);
SELECT pg_replication_origin_create('peer_keep');
SELECT pg_replication_origin_create('peer_skip');
SQL
RPORT=$(wh_free_port)
APORT=$(wh_free_port)
wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --out "$WH_TMP/got.jsonl"
CONF="$WH_TMP/walhook.conf"
cat >"$CONF" <<CONFEOF
tenant = "default";
source = { dsn = "$PG_DSN"; slot = "walhook"; publication = "walhook"; create_slot = true;
           skip_origins = "peer_skip"; };
data_dir = "$WH_TMP/data";
log_level = "info";
admin = { listen = "127.0.0.1:$APORT"; };
dispatcher = { batch_max_events = 50; retry_base_ms = 20; retry_max_ms = 200;
               allow_private_networks = "127.0.0.0/8"; };
targets = ( { name = "r"; url = "http://127.0.0.1:$RPORT/hook"; } );
CONFEOF
wh_up "$CONF" "$APORT"

# psql_err SQL: runs SQL that must fail; prints PostgreSQL's error
psql_err() {
    local out
    if out=$(pg_psql -c "$1" 2>&1); then
        wh_fail "expected an error from: $1"
    fi
    echo "$out"
}

# 1. identities
pg_psql <<'SQL' >/dev/null || wh_fail "identity changes failed"
INSERT INTO t_def VALUES (1, 'a', 1);
UPDATE t_def SET v = 'b' WHERE id = 1;
UPDATE t_def SET id = 2 WHERE id = 1;
DELETE FROM t_def WHERE id = 2;
INSERT INTO t_idx (a, b, v) VALUES (1, 'x', 'v1');
UPDATE t_idx SET v = 'v2' WHERE a = 1;
UPDATE t_idx SET a = 2 WHERE a = 1;
DELETE FROM t_idx WHERE a = 2;
INSERT INTO t_nothing VALUES (1, 'n');
INSERT INTO t_nopk VALUES (1, 'x');
SQL
e=$(psql_err "UPDATE t_nothing SET v = 'm' WHERE id = 1")
grep -q 'cannot update table "t_nothing" because it does not have a replica identity and publishes updates' <<<"$e" ||
    wh_fail "UPDATE of t_nothing: unexpected error: $e"
e=$(psql_err "DELETE FROM t_nothing WHERE id = 1")
grep -q 'cannot delete from table "t_nothing" because it does not have a replica identity and publishes deletes' <<<"$e" ||
    wh_fail "DELETE of t_nothing: unexpected error: $e"
e=$(psql_err "UPDATE t_nopk SET b = 'y'")
grep -q 'cannot update table "t_nopk" because it does not have a replica identity and publishes updates' <<<"$e" ||
    wh_fail "UPDATE of t_nopk: unexpected error: $e"
# an insert-only publication: the UPDATE works and is not sent
pg_psql -c "ALTER PUBLICATION walhook SET (publish = 'insert')" \
    -c "UPDATE t_nothing SET v = 'm' WHERE id = 1" -c "INSERT INTO t_nothing VALUES (2, 'n2')" \
    -c "ALTER PUBLICATION walhook SET (publish = 'insert, update, delete, truncate')" \
    >/dev/null || wh_fail "the insert-only publication step failed"

# 2. partitions: leaves, then the root
pg_psql <<'SQL' >/dev/null || wh_fail "partition changes failed"
INSERT INTO meas VALUES (1, 'eu', 10), (2, 'us', 20);
UPDATE meas SET v = 11 WHERE id = 1;
UPDATE meas SET region = 'us' WHERE id = 1;
TRUNCATE meas;
INSERT INTO meas VALUES (1, 'us', 12), (2, 'us', 20);
ALTER PUBLICATION walhook SET (publish_via_partition_root = true);
INSERT INTO meas VALUES (3, 'us', 30), (4, 'eu', 40);
UPDATE meas SET v = 31 WHERE id = 3;
UPDATE meas SET region = 'eu' WHERE id = 3;
DELETE FROM meas WHERE id = 2;
TRUNCATE meas_eu;
TRUNCATE meas;
SQL

# 3. truncate
pg_psql <<'SQL' >/dev/null || wh_fail "truncates failed"
SET client_min_messages = warning;
INSERT INTO parent_t (n) VALUES (1), (2);
INSERT INTO child_t (pid, n) VALUES (1, 1);
BEGIN;
INSERT INTO other_t (n) VALUES (1);
TRUNCATE parent_t, other_t RESTART IDENTITY CASCADE;
INSERT INTO other_t (n) VALUES (2);
COMMIT;
TRUNCATE t_nopk;
SQL

# 4. origins: peer_keep delivered with its name, peer_skip skipped
pg_psql <<'SQL' >/dev/null || wh_fail "changes from peer_keep failed"
SELECT pg_replication_origin_session_setup('peer_keep');
INSERT INTO t_orig VALUES (1, 'keep');
BEGIN;
INSERT INTO t_orig VALUES (2, 'keep');
UPDATE t_orig SET src = 'keep2' WHERE id = 1;
COMMIT;
SQL
pg_psql <<'SQL' >/dev/null || wh_fail "changes from peer_skip failed"
SELECT pg_replication_origin_session_setup('peer_skip');
INSERT INTO t_orig VALUES (10, 'skip');
BEGIN;
UPDATE t_orig SET src = 'skip-upd' WHERE id = 1;
SELECT pg_logical_emit_message(true, 'skip', 'x');
COMMIT;
SQL
pg_psql -c "INSERT INTO t_orig VALUES (20, 'local')" -c "INSERT INTO t_def VALUES (99, 'end', 0)" \
    >/dev/null || wh_fail "the last inserts failed"

# check FILE PHASE: prints why the events received so far are not what the
# statements above make (exit 2: some not arrived yet)
check() {
    python3 - "$1" "$2" <<'PY'
import json, sys
path, phase = sys.argv[1], sys.argv[2]
def fail(msg, code=1):
    print(msg); sys.exit(code)
ev, seen = [], set()
try:
    for line in open(path):
        for e in json.loads(line):
            if e.get("op") in ("schema", "ddl"):  # schema registry events (test_schema.sh)
                continue
            if e["id"] not in seen:
                seen.add(e["id"]); ev.append(e)
except OSError:
    pass
def tab(t):
    return [e for e in ev if e["table"] == t]
def need(t, n):
    got = tab(t)
    if len(got) < n:
        fail(f"{t}: {len(got)} of {n} events", 2)
    return got
def same(what, got, want):
    if got != want:
        fail(f"{what}: {json.dumps(got)}, expected {json.dumps(want)}")
def ops(evs):
    return [e["op"] for e in evs]
if phase == "late":
    if not any(e["table"] == "t_def" and e["op"] == "insert" and e["after"]["id"] == 100 for e in ev):
        fail("the sentinel after the runtime change has not arrived", 2)
    late = [e for e in tab("t_orig") if e["key"]["id"] >= 30]
    ids = sorted(e["key"]["id"] for e in late)
    same("t_orig rows 30+ delivered (peer_keep skipped at runtime, local kept)", ids, [31])
    same("row 31's origin", late[0].get("origin"), None)
    sys.exit(0)
if not any(e["table"] == "t_def" and e["op"] == "insert" and e["after"]["id"] == 99 for e in ev):
    fail("the last insert has not arrived", 2)
# DEFAULT
d = need("t_def", 5)
same("t_def ops", ops(d), ["insert", "update", "update", "delete", "insert"])
same("t_def keys", [e["key"] for e in d[:4]], [{"id": 1}, {"id": 1}, {"id": 1}, {"id": 2}])
same("t_def before", [e["before"] for e in d[:4]], [None, None, {"id": 1}, {"id": 2}])
same("t_def update after", d[2]["after"], {"id": 2, "v": "b", "w": 1})
same("t_def delete after", d[3]["after"], None)
# INDEX
x = need("t_idx", 4)
same("t_idx ops", ops(x), ["insert", "update", "update", "delete"])
same("t_idx keys", [e["key"] for e in x],
     [{"a": 1, "b": "x"}, {"a": 1, "b": "x"}, {"a": 1, "b": "x"}, {"a": 2, "b": "x"}])
same("t_idx before", [e["before"] for e in x], [None, None, {"a": 1, "b": "x"}, {"a": 2, "b": "x"}])
same("t_idx after", x[2]["after"], {"id": 1, "a": 2, "b": "x", "v": "v2"})
# NOTHING, no primary key
n = need("t_nothing", 2)
same("t_nothing", [(e["op"], e["key"], e["before"], e["after"]) for e in n],
     [("insert", None, None, {"id": 1, "v": "n"}), ("insert", None, None, {"id": 2, "v": "n2"})])
p = tab("t_nopk")
same("t_nopk", [(e["op"], e["key"], e["before"], e["after"]) for e in p],
     [("insert", None, None, {"a": 1, "b": "x"}), ("truncate", None, None, None)])
same("t_nopk truncate options", p[1]["options"], {"cascade": False, "restart_identity": False})
# partitions
leaves = [e for e in ev if e["table"] in ("meas_eu", "meas_us")]
same("leaf events (root off)", [(e["table"], e["op"], e["key"]) for e in leaves],
     [("meas_eu", "insert", {"id": 1, "region": "eu"}), ("meas_us", "insert", {"id": 2, "region": "us"}),
      ("meas_eu", "update", {"id": 1, "region": "eu"}), ("meas_eu", "delete", {"id": 1, "region": "eu"}),
      ("meas_us", "insert", {"id": 1, "region": "us"}), ("meas_eu", "truncate", None),
      ("meas_us", "truncate", None), ("meas_us", "insert", {"id": 1, "region": "us"}),
      ("meas_us", "insert", {"id": 2, "region": "us"})])
same("the leaves' truncate", [(e["lsn"], e["seq"]) for e in leaves[5:7]],
     [(leaves[5]["lsn"], 0), (leaves[5]["lsn"], 1)])
same("meas_us column order", list(leaves[1]["after"]), ["v", "region", "id"])
same("meas_eu delete before", leaves[3]["before"], {"id": 1, "region": "eu"})
root = tab("meas")
same("root events (root on)", [(e["op"], e["key"]) for e in root],
     [("insert", {"id": 3, "region": "us"}), ("insert", {"id": 4, "region": "eu"}),
      ("update", {"id": 3, "region": "us"}), ("delete", {"id": 3, "region": "us"}),
      ("insert", {"id": 3, "region": "eu"}), ("delete", {"id": 2, "region": "us"}),
      ("truncate", None)])
same("meas row (root's column order)", root[0]["after"], {"id": 3, "region": "us", "v": 30})
if list(root[0]["after"]) != ["id", "region", "v"]:
    fail(f"meas row not in the root's column order: {list(root[0]['after'])}")
# truncate of several tables, in commit order inside its transaction
o = tab("other_t")
tx = o[0]["lsn"]
inner = sorted((e for e in ev if e["lsn"] == tx), key=lambda e: e["seq"])
# (the seqs the schema events of the tables' first changes take are left out)
same("the truncate transaction", [(e["op"], e["table"]) for e in inner],
     [("insert", "other_t"), ("truncate", "parent_t"), ("truncate", "other_t"),
      ("truncate", "child_t"), ("insert", "other_t")])
for e in inner[1:4]:
    same(f"{e['table']} truncate", (e["key"], e["before"], e["after"], e["options"]),
         (None, None, None, {"cascade": True, "restart_identity": True}))
same("other_t after RESTART IDENTITY", inner[4]["after"], {"id": 1, "n": 2})
# origins
r = tab("t_orig")
same("t_orig", [(e["op"], e["key"]["id"], e.get("origin", "(none)")) for e in r],
     [("insert", 1, "peer_keep"), ("insert", 2, "peer_keep"), ("update", 1, "peer_keep"),
      ("insert", 20, "(none)")])
if any(e.get("origin") == "peer_skip" or e["op"] == "message" for e in ev):
    fail("an event of peer_skip was delivered")
keys = list(r[0])
if keys.index("origin") != keys.index("commit_ts") + 1:
    fail(f"origin is not right after commit_ts: {keys}")
if any("origin" in e for e in ev if e["table"] != "t_orig"):
    fail("an event without a replication origin carries one")
# every position in order, once
pos = [(int(e["lsn"].split("/")[0], 16) << 32 | int(e["lsn"].split("/")[1], 16), e["seq"]) for e in ev]
if pos != sorted(pos):
    fail("events out of commit order")
print(len(ev))
PY
}
_complete() { # every event arrived, or a definite failure
    check "$WH_TMP/got.jsonl" "$1" >/dev/null
    [ $? -ne 2 ]
}
wh_wait_until 60 _complete main
out=$(check "$WH_TMP/got.jsonl" main) || wh_fail "$out"
nev=$out
wh_log "$nev events checked"
skipped=$(wh_metric_label "http://127.0.0.1:$APORT/metrics" walhook_changes_skipped_total 'tenant="default"')
[ "$skipped" = 3 ] || wh_fail "walhook_changes_skipped_total is $skipped, expected 3 (insert, update, message)"

# a skipped transaction last: the slot is still confirmed past it
pg_psql <<'SQL' >/dev/null || wh_fail "the last skipped transaction failed"
SELECT pg_replication_origin_session_setup('peer_skip');
INSERT INTO t_orig VALUES (11, 'skip');
SQL
lsn=$(pg_psql -At -c "SELECT pg_current_wal_lsn()")
wh_wait_slot_flush "$lsn" 30 || wh_fail "the slot was not confirmed past a skipped transaction ($lsn)"

# a bad value is refused by name; a good one applies at runtime
wh_wait_until 20 test -s "$WH_TMP/data/admin.token" || wh_fail "the admin wrote no token file"
TOKEN=$(grep -v '^read:' "$WH_TMP/data/admin.token" | head -n 1)
bad=$(curl -sS --max-time 10 -X PATCH -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d '{"source.skip_origins":"peer_skip,,x"}' \
    "http://127.0.0.1:$APORT/v1/settings")
grep -q 'source.skip_origins: item 2 is empty' <<<"$bad" || wh_fail "bad skip_origins answer: $bad"
curl -fsS --max-time 10 -X PATCH -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d '{"source.skip_origins":"peer_skip, peer_keep"}' \
    "http://127.0.0.1:$APORT/v1/settings" >/dev/null || wh_fail "patching source.skip_origins failed"
wh_wait_until 20 grep -q 'source.skip_origins is now "peer_skip, peer_keep"' "$WH_TMP/walhook.log" ||
    wh_fail "the ingestor did not apply source.skip_origins"
pg_psql <<'SQL' >/dev/null || wh_fail "the changes after the patch failed"
SELECT pg_replication_origin_session_setup('peer_keep');
INSERT INTO t_orig VALUES (30, 'keep, now skipped');
SELECT pg_replication_origin_session_reset();
INSERT INTO t_orig VALUES (31, 'local');
INSERT INTO t_def VALUES (100, 'end2', 0);
SQL
wh_wait_until 60 _complete late
out=$(check "$WH_TMP/got.jsonl" late) || wh_fail "$out"
grep -E 'ERROR|WARN' "$WH_TMP/walhook.log" | grep -v 'dispatcher' | head -n 3 | grep -q . &&
    wh_log "warnings in the log: $(grep -E 'ERROR|WARN' "$WH_TMP/walhook.log" | head -n 3)"
wh_kill walhook TERM
wh_kill receiver TERM
wh_pass "$nev events: DEFAULT/INDEX/NOTHING/no primary key keys and befores, partitions named by leaf then root, TRUNCATE of 3 tables with CASCADE and RESTART IDENTITY in order, origin on events, peer_skip skipped (3 changes, slot confirmed past), skip list changed at runtime"
