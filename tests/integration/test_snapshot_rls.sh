#!/usr/bin/env bash
# Row-level security and the snapshot: walhook connects as role wh
# (REPLICATION, SELECT on the tables, not their owner, no BYPASSRLS).
# Table r has RLS with a policy that shows wh half of its rows: its
# snapshot must not be read in part (which would be reported as done):
# the table is refused, logged with its name and what the role needs
# (ownership or BYPASSRLS), no row value in the log; its stream goes on.
# Table o has RLS too but wh owns it, table p has none: both are read
# whole.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_pipeline_setup
pg_psql <<'SQL' >/dev/null || wh_fail "cannot set up"
CREATE ROLE wh LOGIN REPLICATION;
CREATE TABLE r (id int PRIMARY KEY, owner text);
INSERT INTO r SELECT g, CASE WHEN g % 2 = 0 THEN 'wh' ELSE 'alice' END FROM generate_series(1, 10) g;
ALTER TABLE r ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON r USING (owner = current_user);
CREATE TABLE o (id int PRIMARY KEY, owner text);
INSERT INTO o SELECT g, 'alice' FROM generate_series(1, 10) g;
ALTER TABLE o ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON o USING (owner = current_user);
ALTER TABLE o OWNER TO wh;
CREATE TABLE p (id int PRIMARY KEY);
INSERT INTO p SELECT generate_series(1, 10);
GRANT SELECT ON r, p TO wh;
CREATE PUBLICATION walhook FOR TABLE r, o, p;
SQL
ADMIN_DSN=$PG_DSN
PG_DSN="postgresql://wh@127.0.0.1:$PG_PORT/postgres" # walhook's (wh_up_receiver)
wh_up_receiver 'snapshot = "initial";'
PG_DSN=$ADMIN_DSN
state() { wh_metric_tcp "$APORT" walhook_ingestor_snapshot_state %.0f "table=\"public.$1\".*state=\"$2\""; }
_all() { [ "$(state o done)" = 1 ] && [ "$(state p done)" = 1 ] &&
    { [ "$(state r refused)" = 1 ] || [ "$(state r done)" = 1 ]; }; }
wh_wait_until 60 _all || wh_fail "the snapshot jobs did not end (r refused $(state r refused), done $(state r done))"
pg_psql -c "INSERT INTO r VALUES (11, 'alice'), (12, 'wh')" >/dev/null || wh_fail "cannot insert"
_ins() { [ "$(grep -o '"op":"insert"' "$WH_TMP/got.jsonl" 2>/dev/null | wc -l)" -ge 2 ]; }
wh_wait_until 60 _ins || wh_fail "the stream did not deliver r's inserts"
counts=$(python3 - "$WH_TMP/got.jsonl" <<'PY'
import json, sys, collections
c = collections.Counter()
for line in open(sys.argv[1]):
    for e in json.loads(line):
        if e.get("op") in ("read", "insert"):
            c[e["table"] + ":" + e["op"]] += 1
print(" ".join(f"{k}={c[k]}" for k in sorted(c)))
PY
)
[ "$counts" = "o:read=10 p:read=10 r:insert=2" ] ||
    wh_fail "events: $counts (want o and p read whole, r refused, not read in part)"
[ "$(state r refused)" = 1 ] || wh_fail "public.r is not refused"
grep -q "snapshot of public.r refused: row-level security .*BYPASSRLS" "$WH_TMP/walhook.log" ||
    wh_fail "no refusal of public.r naming row-level security and BYPASSRLS in the log"
grep -q alice "$WH_TMP/walhook.log" && wh_fail "a row value is in the log"
wh_pass "RLS: a table whose policies hide rows is refused (logged: ownership or BYPASSRLS), not read in part; owned and plain tables read whole; $counts"
