#!/usr/bin/env bash
# The session settings that change the text of values are walhook's, on
# every connection of the ingestor, whatever the role, the DSN and the
# daemons' environment say: a role with extra_float_digits 0, search_path,
# TimeZone, DateStyle and IntervalStyle of its own; PGCLIENTENCODING,
# PGTZ and PGDATESTYLE in the environment; a DSN with client_encoding and
# an `options` of about 1000 characters. The snapshot's `read` and the
# stream's `insert` of the same row must both be docs/types.md's forms:
# floats exact (shortest round trip), timestamps ISO in UTC, intervals ISO
# 8601, text in UTF-8 (a character LATIN1 cannot hold included: the stream
# must not stop), reg* names schema-qualified. A float8 primary key read in
# chunks of one row must give each row exactly once (a rounded key text
# re-read or skipped rows).
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_pipeline_setup
pg_psql <<'SQL' >/dev/null || wh_fail "cannot create the tables"
CREATE SCHEMA app;
CREATE TYPE app.kind AS ENUM ('k');
CREATE TABLE app.thing (id int);
CREATE TABLE vals (id int PRIMARY KEY, f8 float8, f4 float4, ts timestamptz, d date,
                   iv interval, t text, j jsonb, rc regclass, rt regtype);
CREATE TABLE fk (k float8 PRIMARY KEY, v text);
INSERT INTO vals VALUES (1, 1/3::float8, 1/3::float4, '2026-01-02 03:04:05+00', '2026-01-02',
                         '1 day 2 hours', E'caf\u00e9 snow \u2603', E'{"k": "\u2603"}',
                         'app.thing', 'app.kind');
INSERT INTO fk VALUES (0.1::float8 + 0.2::float8, 'a'), (2/3::float8, 'b'),
                      (0.6666666666666667, 'c'), (0.9, 'd');
CREATE PUBLICATION walhook FOR TABLE vals, fk;
ALTER ROLE postgres SET extra_float_digits = 0;
ALTER ROLE postgres SET search_path = app, public;
ALTER ROLE postgres SET TimeZone = 'Asia/Kolkata';
ALTER ROLE postgres SET DateStyle = 'SQL, DMY';
ALTER ROLE postgres SET IntervalStyle = 'postgres_verbose';
SQL
# about 920 characters of the user's own options (schemas that need not exist; the
# DSN may have 1023): with walhook's own, longer than a fixed 1024-byte buffer
SP="-c search_path=$(seq -f 's%03g' -s , 0 180)"
DSN="host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres client_encoding=LATIN1 options='$SP'"
export PGCLIENTENCODING=LATIN1 PGTZ=America/New_York PGDATESTYLE='SQL, DMY'
WH_UP_DSN="$DSN" wh_up_receiver 'snapshot = "initial"; snapshot_chunk_rows = 1;'
unset PGCLIENTENCODING PGTZ PGDATESTYLE
pg_psql -c "INSERT INTO vals SELECT 2, f8, f4, ts, d, iv, t, j, rc, rt FROM vals WHERE id = 1" \
    -c "INSERT INTO vals (id, t) VALUES (3, 'after')" >/dev/null || wh_fail "cannot insert"

# OP ID: the `after` of event OP of vals row ID, as JSON ("" when none yet)
after() {
    python3 - "$WH_TMP/got.jsonl" "$1" "$2" <<'PY'
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    for e in json.loads(line):
        if e.get("table") == "vals" and e["op"] == sys.argv[2] and e["after"]["id"] == int(sys.argv[3]):
            print(json.dumps(e["after"], ensure_ascii=False, sort_keys=True))
            sys.exit(0)
PY
}
_got() { [ -n "$(after insert 3 2>/dev/null)" ]; }
wh_wait_until 60 _got || wh_fail "the inserts were not all delivered (log: $(grep -c ERROR \
    "$WH_TMP/walhook.log") errors; $(grep -m1 -o 'ERROR: [^;]*' "$WH_TMP/walhook.log"))"
want='{"d": "2026-01-02", "f4": 0.33333334, "f8": 0.3333333333333333, "id": ID, "iv": "P1DT2H", "j": {"k": "☃"}, "rc": "app.thing", "rt": "app.kind", "t": "café snow ☃", "ts": "2026-01-02T03:04:05Z"}'
for ev in "read 1" "insert 2"; do
    set -- $ev
    got=$(after "$1" "$2")
    [ "$got" = "${want/ID/$2}" ] || wh_fail "$1 of row $2:
  got  $got
  want ${want/ID/$2}"
done

# the float8 key, one row per chunk: every row once, its exact value
_snap_done() { grep -q "snapshot of public.fk done" "$WH_TMP/walhook.log"; }
wh_wait_until 60 _snap_done || wh_fail "the snapshot of fk did not end"
reads=$(python3 - "$WH_TMP/got.jsonl" <<'PY'
import json, sys
rows = []
for line in open(sys.argv[1]):
    for e in json.loads(line, parse_float=str):
        if e.get("table") == "fk" and e["op"] == "read":
            rows.append(e["after"]["k"] + "=" + e["after"]["v"])
print(" ".join(sorted(rows)))
PY
)
[ "$reads" = "0.30000000000000004=a 0.6666666666666666=b 0.6666666666666667=c 0.9=d" ] ||
    wh_fail "fk's read events: $reads"
for v in 'caf' 0.333 2026-01-02; do
    grep -qF -- "$v" "$WH_TMP/walhook.log" && wh_fail "a row value ($v) is in the log"
done
wh_pass "snapshot and stream: exact floats, ISO UTC timestamps, ISO 8601 intervals, UTF-8 text, qualified reg* names despite role, DSN and environment; float8 key chunks: each row once"
