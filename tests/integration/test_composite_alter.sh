#!/usr/bin/env bash
# Composite types altered while changes stream (docs/INTERNALS.md "Types
# read again"), with source.ddl on: ALTER TYPE sends no Relation message for
# the tables using the type, so the ingestor must read the type again at
# the DDL capture's message. After each of
#   - ALTER TYPE pt ADD ATTRIBUTE z (a column of pt and one of pt[]),
#   - ALTER TYPE pr RENAME ATTRIBUTE a TO renamed_a (same field count),
#   - ALTER TYPE pj DROP ATTRIBUTE b (jsonb), ADD ATTRIBUTE b text (a text
#     that is not JSON where the old shape said jsonb),
#   - ALTER TYPE pt RENAME ATTRIBUTE in the transaction of the insert,
# checked on what the target received:
#   - every delivered body is valid JSON;
#   - each change's `after` has the type's new shape (objects with the new
#     field names, nothing sent as a string);
#   - the change after each ALTER has another schema_version than the one
#     before it, and its schema event lists the new fields of the column;
#   - no value is in the walhook log;
# and, with walhook a synchronous standby, a transaction creating an enum and
# six tables using arrays of it: the lookups do not wait for it, and the
# next transaction's rows have the type's shape.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_pipeline_setup
pg_psql -c "CREATE TYPE pt AS (x int, y int);
    CREATE TABLE c1 (id int PRIMARY KEY, p pt, ps pt[]);
    CREATE TYPE pr AS (a int, b text);
    CREATE TABLE c2 (id int PRIMARY KEY, q pr);
    CREATE TYPE pj AS (a int, b jsonb);
    CREATE TABLE cj (id int PRIMARY KEY, p pj);" >/dev/null || wh_fail "cannot create the tables"
wh_up_receiver "ddl = true;"
GOT="$WH_TMP/got.jsonl"
sql() { pg_psql -c "$1" >/dev/null || wh_fail "SQL failed: $1"; }

sql "INSERT INTO c1 VALUES (1, '(1,2)', ARRAY['(1,2)'::pt])"
sql "INSERT INTO c2 VALUES (1, '(1,one)')"
sql "INSERT INTO cj VALUES (1, '(1,\"{\"\"k\"\": 1}\")')"
# delivered: the ingestor has read the three types
wh_wait_until 60 wh_events_at_least "$GOT" 3 || wh_fail "the first inserts were not delivered"

sql "ALTER TYPE pt ADD ATTRIBUTE z int"
sql "INSERT INTO c1 VALUES (2, '(1,2,3)', ARRAY['(4,5,6)'::pt])"
sql "ALTER TYPE pr RENAME ATTRIBUTE a TO renamed_a"
sql "INSERT INTO c2 VALUES (2, '(2,two)')"
sql "ALTER TYPE pj DROP ATTRIBUTE b; ALTER TYPE pj ADD ATTRIBUTE b text"
sql "INSERT INTO cj VALUES (2, '(2,\"wh-secret value\")')"
sql "INSERT INTO cj VALUES (3, '(3,x)')"
pg_psql >/dev/null <<'SQL' || wh_fail "the RENAME ATTRIBUTE transaction failed"
BEGIN;
ALTER TYPE pt RENAME ATTRIBUTE y TO y2;
INSERT INTO c1 VALUES (3, '(7,8,9)', NULL);
COMMIT;
SQL
wh_wait_until 60 wh_events_at_least "$GOT" 8 || wh_fail "the inserts after the ALTERs were not delivered"

python3 - "$GOT" <<'PY' || wh_fail "what was delivered is wrong (above)"
import json, sys
want = {
    ("c1", 1): {"id": 1, "p": {"x": 1, "y": 2}, "ps": [{"x": 1, "y": 2}]},
    ("c1", 2): {"id": 2, "p": {"x": 1, "y": 2, "z": 3}, "ps": [{"x": 4, "y": 5, "z": 6}]},
    ("c1", 3): {"id": 3, "p": {"x": 7, "y2": 8, "z": 9}, "ps": None},
    ("c2", 1): {"id": 1, "q": {"a": 1, "b": "one"}},
    ("c2", 2): {"id": 2, "q": {"renamed_a": 2, "b": "two"}},
    ("cj", 1): {"id": 1, "p": {"a": 1, "b": {"k": 1}}},
    ("cj", 2): {"id": 2, "p": {"a": 2, "b": "wh-secret value"}},
    ("cj", 3): {"id": 3, "p": {"a": 3, "b": "x"}},
}
# the new fields of the column in the schema event of the version after each ALTER
fields = {("c1", 2): ("p", ["x", "y", "z"]), ("c1", 3): ("p", ["x", "y2", "z"]),
          ("c2", 2): ("q", ["renamed_a", "b"]), ("cj", 2): ("p", ["a", "b"])}
got, schemas, bad = {}, {}, 0
for n, line in enumerate(open(sys.argv[1]), 1):
    try:
        events = json.loads(line)
    except ValueError as e:
        print(f"line {n}: invalid JSON: {e}")
        bad += 1
        continue
    for e in events:
        if e["op"] == "schema":
            schemas[e["schema_version"]] = e
        elif e["op"] == "insert":
            got[(e["table"], e["after"]["id"])] = e
for k, w in sorted(want.items()):
    if k not in got:
        print(f"{k}: not delivered")
        bad += 1
    elif got[k]["after"] != w:
        print(f"{k}: after = {json.dumps(got[k]['after'])}, want {json.dumps(w)}")
        bad += 1
for (t, i), (col, names) in sorted(fields.items()):
    if (t, i) not in got or (t, i - 1) not in got:
        continue
    sv = got[(t, i)]["schema_version"]
    if sv == got[(t, i - 1)]["schema_version"]:
        print(f"{t} id {i}: the same schema_version {sv} as before the ALTER")
        bad += 1
    s = schemas.get(sv)
    if s is None:
        print(f"{t} id {i}: no schema event of version {sv}")
        bad += 1
        continue
    c = [c for c in s["columns"] if c["name"] == col][0]
    have = [f["name"] for f in c.get("fields", [])]
    if have != names:
        print(f"{t} id {i}: schema event fields of {col} = {have}, want {names}")
        bad += 1
sys.exit(1 if bad else 0)
PY
if grep -q "wh-secret value" "$WH_TMP/walhook.log"; then
    wh_fail "a value is in a log"
fi

# The ingestor as a synchronous standby: a committing backend then keeps
# its transaction's lock until walhook acknowledges the commit, which comes
# after the lookups of the transaction's Relation messages. The lookups must
# not wait for it (one wait per lookup stalled the stream for seconds, and a
# dozen tables for the walsender's timeout); the types created in that
# transaction are read again at its Commit, so the next transaction's rows
# have their shapes.
pg_psql -c "ALTER SYSTEM SET synchronous_standby_names = '*'" -c "SELECT pg_reload_conf()" >/dev/null ||
    wh_fail "cannot make walhook a synchronous standby"
wh_wait_until 30 bash -c "[ \"\$(psql '$PG_DSN' -Atc \"SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'\")\" = 1 ]" ||
    wh_fail "walhook's walsender never became synchronous"
# (an enum, not a composite type: decoding a transaction that created a
# composite type waits for that type's relation lock, which the backend
# keeps while it waits for synchronous replication: PostgreSQL's own
# deadlock, pg_recvlogical's too; an array of an enum is rendered as a JSON
# array only once its type is read)
tx1="BEGIN; CREATE TYPE se AS ENUM ('a', 'b');"
tx2="BEGIN;"
for i in 1 2 3 4 5 6; do
    tx1="$tx1 CREATE TABLE s$i (id int PRIMARY KEY, e se[]); INSERT INTO s$i VALUES (1, '{a,b}');"
    tx2="$tx2 INSERT INTO s$i VALUES (2, '{b,a}');"
done
sql "$tx1 COMMIT;"
sql "$tx2 COMMIT;"
wh_wait_until 60 wh_events_at_least "$GOT" 20 || wh_fail "the synchronous transactions were not delivered"
pg_psql -c "ALTER SYSTEM RESET synchronous_standby_names" -c "SELECT pg_reload_conf()" >/dev/null
python3 - "$GOT" <<'PY' || wh_fail "the second synchronous transaction's enum arrays are wrong (above)"
import json, sys
bad = 0
got = {}
for line in open(sys.argv[1]):
    for e in json.loads(line):
        if e["op"] == "insert" and e["table"].startswith("s"):
            got[(e["table"], e["after"]["id"])] = e["after"]
for i in range(1, 7):
    a = got.get((f"s{i}", 2))
    if a != {"id": 2, "e": ["b", "a"]}:
        print(f"s{i} id 2: after = {json.dumps(a)}, want the enum array as a JSON array")
        bad += 1
sys.exit(1 if bad else 0)
PY
if grep -h "not visible to the catalog connection" "$WH_TMP"/*.log; then
    wh_fail "a lookup waited for a transaction held for synchronous replication"
fi
wh_pass
