#!/usr/bin/env bash
# A SQL_ASCII source database: PostgreSQL converts nothing, so a value may
# hold bytes that are not UTF-8. Every delivered body must still be UTF-8
# (valid JSON): such bytes in text, json, jsonb and array elements are sent
# as U+FFFD, in the snapshot and in the stream alike; the ingestor warns
# once that the database is SQL_ASCII and counts the replaced bytes
# (walhook_ingestor_invalid_utf8_total), with no value in the log.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_pipeline_setup
pg_psql -c "CREATE DATABASE sa ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0" \
    >/dev/null || wh_fail "cannot create the SQL_ASCII database"
PG_DSN="${PG_DSN%/*}/sa"
psql -X -q -d "$PG_DSN" <<'SQL' >/dev/null || wh_fail "cannot create the table"
CREATE TABLE s (id int PRIMARY KEY, t text, j json, jb jsonb, a text[]);
CREATE PUBLICATION walhook FOR ALL TABLES;
INSERT INTO s VALUES (1, E'caf\xe9', E'{"k": "caf\xe9", "n": 1}', E'{"k": "caf\xe9"}',
                      ARRAY[E'caf\xe9', 'ok']);
SQL
wh_up_receiver 'snapshot = "initial";'
psql -X -q -d "$PG_DSN" -c "INSERT INTO s SELECT 2, t, j, jb, a FROM s WHERE id = 1" >/dev/null ||
    wh_fail "cannot insert"
_got() { grep -q '"op":"insert"' "$WH_TMP/got.jsonl" 2>/dev/null; }
wh_wait_until 60 _got || wh_fail "the insert was not delivered"
out=$(python3 - "$WH_TMP/got.jsonl" <<'PY'
import json, sys
raw = open(sys.argv[1], "rb").read()
try:
    text = raw.decode("utf-8")
except UnicodeDecodeError as e:
    print("a delivered body is not UTF-8:", e)
    sys.exit(1)
want = {"t": "caf\ufffd", "j": {"k": "caf\ufffd", "n": 1}, "jb": {"k": "caf\ufffd"},
        "a": ["caf\ufffd", "ok"]}
seen = set()
for line in text.splitlines():
    for e in json.loads(line):
        if e.get("table") != "s" or e.get("op") not in ("read", "insert"):
            continue
        a = dict(e["after"])
        rid = a.pop("id")
        if a != want:
            print(e["op"], rid, json.dumps(a, ensure_ascii=False))
            sys.exit(1)
        seen.add(e["op"])
if seen != {"read", "insert"}:
    print("events seen:", sorted(seen))
    sys.exit(1)
PY
) || wh_fail "$out"
n=$(grep -c "encoding is SQL_ASCII" "$WH_TMP/walhook.log")
[ "$n" -ge 1 ] || wh_fail "no warning about SQL_ASCII in the log"
v=$(wh_metric "http://127.0.0.1:$APORT/metrics" walhook_ingestor_invalid_utf8_total)
[ "$v" -ge 8 ] 2>/dev/null || wh_fail "walhook_ingestor_invalid_utf8_total is $v, expected 8 or more"
grep -qa 'caf' "$WH_TMP/walhook.log" && wh_fail "a row value is in the log"
wh_pass "SQL_ASCII: bodies UTF-8, invalid bytes as U+FFFD in text, json, jsonb, arrays (snapshot and stream), warned, counted ($v)"
