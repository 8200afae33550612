#!/usr/bin/env bash
# Every type's JSON form (docs/types.md) against PostgreSQL's own to_jsonb:
# a table with a column of every built-in type a table can have, an enum,
# domains over int, text and int[], composite types (nested, with a dropped
# attribute, in arrays), arrays of many element types (multi-dimensional,
# NULL, quoted and escaped elements, empty, [l:u]= bounds, box's ';'),
# ranges and multiranges, and hstore when the extension is installed.
# Rows with typical values, all NULL, and edge values (infinity, NaN, empty,
# BC, 5-digit years, unicode, quotes, backslashes, control characters) go
# through `walhook up` to a receiver; each column of each delivered insert's
# `after` must equal the same row's to_jsonb(row) (read in a session with
# the replication connection's settings: TimeZone=UTC, DateStyle=ISO,
# IntervalStyle=iso_8601) but for docs/types.md's documented differences:
#   numeric   walhook: a string, exactly PostgreSQL's text; to_jsonb: a number
#   float4/8  numbers compared by value (to_jsonb rewrites 1e+300 as digits)
#   oid       walhook: a number; to_jsonb: a string of the same digits
#   timestamptz  walhook: "...Z"; to_jsonb: "...+00:00"
#   bytea     walhook: base64; to_jsonb: "\\x" hex
#   json      compared as parsed JSON (to_jsonb goes through jsonb: key
#             order, duplicate keys, white space, number spelling)
# Anything else must be identical, number texts included. Then a second
# walhook whose catalog connection is refused (pg_hba) must send the
# columns of non-built-in types as their text, built-in arrays still as
# arrays, with one warning per table and no row value in the log.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_pipeline_setup
HSTORE=0
if pg_psql -c "CREATE EXTENSION hstore" >/dev/null 2>&1; then
    HSTORE=1
fi
pg_psql <<'SQL' >/dev/null || wh_fail "cannot create the types and the table"
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'a "q" \ b');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE DOMAIN dtext AS text;
CREATE DOMAIN dintarr AS int[];
CREATE TYPE comp AS (i int, "t x" text, ts timestamptz, n numeric, arr int[], m mood, b bytea,
                     dropped int, j jsonb);
ALTER TYPE comp DROP ATTRIBUTE dropped;
CREATE TYPE comp2 AS (c comp, cs comp[], d posint);
CREATE TABLE types_t (
  id int PRIMARY KEY,
  c_bool bool, c_bytea bytea, c_char "char", c_name name, c_int8 int8, c_int2 int2,
  c_int2vector int2vector, c_int4 int4, c_regproc regproc, c_text text, c_oid oid, c_tid tid,
  c_xid xid, c_cid cid, c_oidvector oidvector, c_json json, c_xml xml, c_point point,
  c_lseg lseg, c_path path, c_box box, c_polygon polygon, c_line line, c_float4 float4,
  c_float8 float8, c_circle circle, c_money money, c_macaddr macaddr, c_inet inet, c_cidr cidr,
  c_macaddr8 macaddr8, c_aclitem aclitem, c_bpchar char(5), c_varchar varchar(20), c_date date,
  c_time time, c_timestamp timestamp, c_timestamptz timestamptz, c_interval interval,
  c_timetz timetz, c_bit bit(4), c_varbit varbit, c_numeric numeric, c_refcursor refcursor,
  c_regprocedure regprocedure, c_regoper regoper, c_regoperator regoperator,
  c_regclass regclass, c_regtype regtype, c_regrole regrole, c_regnamespace regnamespace,
  c_regcollation regcollation, c_uuid uuid, c_pg_lsn pg_lsn, c_tsvector tsvector,
  c_tsquery tsquery, c_regconfig regconfig, c_regdictionary regdictionary, c_jsonb jsonb,
  c_jsonpath jsonpath, c_txid_snapshot txid_snapshot, c_pg_snapshot pg_snapshot, c_xid8 xid8,
  c_int4range int4range, c_numrange numrange, c_tsrange tsrange, c_tstzrange tstzrange,
  c_daterange daterange, c_int8range int8range, c_int4multirange int4multirange,
  c_nummultirange nummultirange, c_tsmultirange tsmultirange,
  c_tstzmultirange tstzmultirange, c_datemultirange datemultirange,
  c_int8multirange int8multirange,
  c_mood mood, c_posint posint, c_dtext dtext, c_dintarr dintarr, c_comp comp, c_comp2 comp2,
  a_int int[], a_int2d int[][], a_text text[], a_numeric numeric[], a_float8 float8[],
  a_bool bool[], a_tstz timestamptz[], a_bytea bytea[], a_jsonb jsonb[], a_box box[],
  a_mood mood[], a_comp comp[], a_posint posint[], a_dtext dtext[], a_int4range int4range[],
  a_interval interval[], a_uuid uuid[], a_int2vector int2vector[], a_date date[],
  a_money money[], a_name name[], a_char "char"[], a_ts timestamp[]
);
SQL
if [ "$HSTORE" = 1 ]; then
    pg_psql -c "ALTER TABLE types_t ADD COLUMN c_hstore hstore, ADD COLUMN a_hstore hstore[]" \
        >/dev/null || wh_fail "cannot add the hstore columns"
else
    wh_log "hstore is not installed: its columns are not tested"
fi
RPORT=$(wh_free_port)
APORT=$(wh_free_port)
wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --out "$WH_TMP/received.jsonl"
wh_write_conf "$WH_TMP/walhook.conf" "$PG_DSN" "$WH_TMP/data" "$APORT" \
    "http://127.0.0.1:$RPORT/hook"
wh_up "$WH_TMP/walhook.conf" "$APORT"

pg_psql <<'SQL' >/dev/null || wh_fail "cannot insert the rows"
INSERT INTO types_t VALUES (1,
  true, '\x00ff10', 'a', 'pg', 9223372036854775807, -32768,
  '1 2 3', 2147483647, 'now', E'h\u00e9llo "q" \\ back', 4294967295, '(0,1)',
  '12', '3', '1 2', '{"b":1, "a":[1,2.50,{"c":null}], "a":3}', '<a x="1">t &amp; u</a>', '(1.5,2)',
  '[(0,0),(1,1)]', '((0,0),(1,1),(2,0))', '(1,1),(0,0)', '((0,0),(1,1),(1,0))', '{1,-1,0}', '1.5e-07',
  '1e+300', '<(1,1),2>', '1234.56', '08:00:2b:01:02:03', '192.168.0.1/24', '10.0.0.0/8',
  '08:00:2b:01:02:03:04:05', 'postgres=arwdDxt/postgres', 'ab', 'x,y', '2026-11-22',
  '01:02:03.5', '2026-11-22 01:02:03.123456', '2026-11-22 01:02:03.123456+05:30', '1 year 2 mons 3 days 04:05:06.5',
  '01:02:03+05:30', '1010', '101', '12345678901234567890.123456789012345678901234567890', 'cur',
  'now()', '||/', '+(integer,integer)',
  'pg_class', 'integer', 'postgres', 'pg_catalog',
  '"C"', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '16/B374D848', 'a fat:2,4 cat',
  'fat & (rat | cat)', 'english', 'simple', '{"a": [1, "x", null, true], "b": {"c": 1.50}}',
  '$.a[*] ? (@ > 1)', '10:20:10,14,15', '10:20:10,14,15', '123456789012',
  '[1,10)', '(1.5,2.5]', '[2026-01-01 00:00,2026-02-01 00:00)', '[2026-01-01 00:00+00,infinity)',
  '[2026-01-01,2026-02-01)', '[1,)', '{[1,3),[5,7)}',
  '{}', '{[2026-01-01,2026-01-02)}',
  '{(,2026-01-01 00:00+00)}', '{[2026-01-01,2026-01-05)}',
  '{[1,2)}',
  'happy', 5, 'd', '{1,2}', ROW(1, 'a b', '2026-11-22 01:02:03+00', 1.50, '{1,NULL}', 'ok', '\x01', '{"k": [1, 2]}'),
  ROW(ROW(2, 'x"y\z', NULL, NULL, '{}', 'a "q" \ b', NULL, NULL)::comp,
      ARRAY[ROW(3, '', 'infinity', 'NaN', '{{1,2},{3,4}}', NULL, '\x', 'null')::comp, NULL], 7),
  '{1,NULL,3}', '{{1,2},{3,4}}', ARRAY['a b', NULL, '', 'NULL', 'x"y\z', '{', E'\u00e9', ',', ' lead', 'tab	'],
  '{1.50,NaN,-0.000001,100000000000000000000}', '{1.5,Infinity,-Infinity,NaN,-0,1e-320}',
  '{t,f,NULL}', '{"2026-11-22 01:02:03+00",infinity,"0001-01-01 00:00:00+00 BC"}', ARRAY['\x01'::bytea, '\x', NULL],
  ARRAY['{"a": 1}'::jsonb, '"s"', 'null', '[1, "x"]'], '{(1,1),(0,0);(2,2),(1,1)}',
  '{sad,NULL,ok,"a \"q\" \\ b"}', ARRAY[ROW(4, 'w', NULL, 0.1, NULL, 'sad', NULL, NULL)::comp, NULL], '{1,2}', '{"x y",z}',
  '{"[1,3)",empty}', '{"1 day",PT-1S}', '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}', '{"1 2","3"}',
  '{2026-01-01,infinity,"0044-03-15 BC"}', '{1.5,-2}', '{a,"b c",""}', '{a,b}',
  '{"2026-11-22 01:02:03.5","10000-01-01 00:00:00"}'
);
INSERT INTO types_t (id) VALUES (2);
INSERT INTO types_t (id, c_bool, c_bytea, c_char, c_name, c_int8, c_int2, c_int2vector, c_int4,
  c_text, c_oid, c_oidvector, c_json, c_xml, c_float4, c_float8, c_money, c_bpchar, c_varchar,
  c_date, c_time, c_timestamp, c_timestamptz, c_interval, c_timetz, c_varbit, c_numeric,
  c_tsvector, c_jsonb, c_numrange, c_int4multirange, c_mood, c_dtext, c_dintarr, c_comp, c_comp2,
  a_int, a_int2d, a_text, a_numeric, a_float8, a_comp, a_dtext, a_name, a_ts)
VALUES (3, false, '\x', 'z', '', -9223372036854775808, 0, '', -2147483648,
  '', 0, '', '[]', '', 'NaN', '-Infinity', '-0.01', '', '',
  'infinity', '24:00:00', '-infinity', 'infinity', '-1 days -00:00:01', '00:00:00-12', '', 'NaN',
  '', 'null', 'empty', '{}', 'sad', '', '{}', ROW(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  ROW(NULL, '{}', NULL),
  '{}', '[0:1][1:2]={{1,2},{3,4}}', '{}', '{}', '{}', '{}', '{}', '{}', '{}');
INSERT INTO types_t (id, c_bytea, c_name, c_text, c_json, c_float4, c_float8, c_numeric,
  c_date, c_timestamp, c_timestamptz, c_interval, c_bpchar, c_jsonb, c_xml, c_comp, a_text, a_dtext, a_numeric, c_time, c_timetz)
VALUES (4, '\x5c22', 'a"b', E'\u00fc \U0001F600 \\ " \t\n\r\u0001 end', '{"x": "\u00e9\\n", "y": 1e2}',
  'Infinity', '-0', '-Infinity',
  '0044-03-15 BC', '0044-03-15 12:00:00 BC', '0001-01-01 00:00:00+00 BC', 'P0D', 'a"\',
  E'{"s": "\u00fc\\u0001x"}', '<?xml version="1.0"?><r/>',
  ROW(-1, E'\\"', '1999-12-31 23:59:59.999999-08', -0.0, '[2:3]={5,6}', NULL, '\x5c', '[]'),
  ARRAY[E'\\', '"', E'\\"', ' ', 'a b c', E'\u00e9\u00e9', ')', '('], ARRAY['(', ')'],
  '{1e-30,-1.000}', '23:59:59.999999', '23:59:59.999999+14:59');
SQL
if [ "$HSTORE" = 1 ]; then
    pg_psql <<'SQL' >/dev/null || wh_fail "cannot insert the hstore row"
INSERT INTO types_t (id, c_hstore, a_hstore) VALUES
  (5, '"a"=>"1", "b"=>NULL, "c d"=>"x\"y\\z", ""=>"", "NULL"=>"null"',
   ARRAY['k=>v'::hstore, '', NULL]);
SQL
fi
ROWS=$(pg_psql -At -c "SELECT count(*) FROM types_t")
# what to_jsonb says, in the replication connection's session settings
PGOPTIONS="-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=iso_8601 -c bytea_output=hex" \
    pg_psql -At -c "SELECT to_jsonb(t) FROM types_t t ORDER BY id" >"$WH_TMP/to_jsonb.jsonl" ||
    wh_fail "cannot read to_jsonb"

# COMPARE MODE RECEIVED TO_JSONB: MODE json (the JSON forms) or text (the
# catalog was unreachable). Prints what differs; exit 2 while events are
# missing, 1 when a value is wrong.
compare() {
    python3 - "$@" <<'PY'
import base64, binascii, json, re, sys
from decimal import Decimal

mode, got_path, want_path, nrows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
texts = {}  # mode text: row id -> column -> PostgreSQL's text of the value
if mode == "text":
    for line in open(sys.argv[5]):
        row = json.loads(line)
        texts[str(row["id"])] = row

class Num:
    """A JSON number with its exact text."""
    def __init__(self, raw):
        self.raw = raw
    def __repr__(self):
        return self.raw

def load(s):
    return json.loads(s, parse_int=Num, parse_float=Num, parse_constant=Num)

def same(a, b, by_value=False):
    if isinstance(a, Num) or isinstance(b, Num):
        if not (isinstance(a, Num) and isinstance(b, Num)):
            return False
        return Decimal(a.raw) == Decimal(b.raw) if by_value else a.raw == b.raw
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(
            same(x, y, by_value) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(
            same(a[k], b[k], by_value) for k in a)
    return type(a) is type(b) and a == b

# the documented differences, per column (default: identical)
TSTZ = "tstz"
COMP = ("record", {"ts": TSTZ, "n": "numeric", "b": "bytea"})
SPEC = {
    "c_numeric": "numeric", "a_numeric": ("array", "numeric"),
    "c_float4": "float", "c_float8": "float", "a_float8": ("array", "float"),
    "c_oid": "oid", "c_oidvector": ("array", "oid"),
    "c_timestamptz": TSTZ, "a_tstz": ("array", TSTZ),
    "c_bytea": "bytea", "a_bytea": ("array", "bytea"),
    "c_json": "json",
    "c_comp": COMP, "a_comp": ("array", COMP),
    "c_comp2": ("record", {"c": COMP, "cs": ("array", COMP)}),
}
# with the catalog unreachable: the text form of these
NOT_BUILT_IN = {"c_mood", "c_posint", "c_dtext", "c_dintarr", "c_comp", "c_comp2", "a_mood",
                "a_comp", "a_posint", "a_dtext", "c_hstore", "a_hstore"}

def show(v):
    if isinstance(v, Num):
        return v.raw
    if isinstance(v, list):
        return "[" + ",".join(show(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(json.dumps(k) + ":" + show(x) for k, x in v.items()) + "}"
    return json.dumps(v, ensure_ascii=False)

def cmp(spec, w, p):
    if w is None or p is None:
        return w is None and p is None
    kind = spec[0] if isinstance(spec, tuple) else spec
    if kind == "array":
        return isinstance(w, list) and isinstance(p, list) and len(w) == len(p) and all(
            cmp(spec[1], x, y) for x, y in zip(w, p))
    if kind == "record":
        return isinstance(w, dict) and isinstance(p, dict) and set(w) == set(p) and all(
            cmp(spec[1].get(k, "same"), w[k], p[k]) for k in w)
    if kind == "numeric":  # a string, PostgreSQL's text exactly
        return isinstance(w, str) and (
            (isinstance(p, Num) and w == p.raw) or (isinstance(p, str) and w == p))
    if kind == "float":
        return same(w, p, by_value=True)
    if kind == "oid":
        return isinstance(w, Num) and isinstance(p, str) and w.raw == p
    if kind == TSTZ:
        return isinstance(w, str) and isinstance(p, str) and w == re.sub(
            r"\+00:00( BC)?$", r"Z\1", p)
    if kind == "bytea":
        if not (isinstance(w, str) and isinstance(p, str) and p.startswith("\\x")):
            return False
        try:
            return base64.b64decode(w, validate=True) == bytes.fromhex(p[2:])
        except (binascii.Error, ValueError):
            return False
    if kind == "json":
        return same(w, p, by_value=True)
    return same(w, p)

want = {}
for line in open(want_path):
    row = load(line)
    want[row["id"].raw] = row
first = int(sys.argv[6]) if len(sys.argv) > 6 else 0  # rows from this id on
got = {}
try:
    lines = open(got_path).read().splitlines()
except OSError:
    lines = []
for line in lines:
    for e in load(line):
        if e["table"] == "types_t" and e["op"] == "insert" and int(e["after"]["id"].raw) >= first:
            got[e["after"]["id"].raw] = e["after"]
if len(got) < nrows:
    print(f"{len(got)} of {nrows} rows delivered")
    sys.exit(2)
bad, ncols = [], 0
for rid, p in sorted((k, v) for k, v in want.items() if int(k) >= first):
    w = got.get(rid)
    if w is None:
        bad.append(f"row {rid}: not delivered")
        continue
    if set(w) != set(p):
        bad.append(f"row {rid}: columns {sorted(set(w) ^ set(p))} differ")
    for col in sorted(set(w) & set(p)):
        ncols += 1
        if mode == "text" and col in NOT_BUILT_IN:
            ok = w[col] == texts[rid][col]
        else:
            ok = cmp(SPEC.get(col, "same"), w[col], p[col])
        if not ok:
            bad.append(f"row {rid} {col}: walhook {show(w[col])}, to_jsonb {show(p[col])}")
if bad:
    print("\n".join(bad[:40]))
    sys.exit(1)
print(f"{ncols} values in {len(got)} rows")
PY
}
_delivered() { compare json "$WH_TMP/received.jsonl" "$WH_TMP/to_jsonb.jsonl" "$ROWS" >/dev/null; [ $? != 2 ]; }
wh_wait_until 60 _delivered || wh_fail "not every row was delivered: $(compare json \
    "$WH_TMP/received.jsonl" "$WH_TMP/to_jsonb.jsonl" "$ROWS")"
out=$(compare json "$WH_TMP/received.jsonl" "$WH_TMP/to_jsonb.jsonl" "$ROWS") ||
    wh_fail "values differ from to_jsonb:
$out"
wh_log "JSON forms: $out"
grep -q "could not be read" "$WH_TMP/walhook.log" && wh_fail "a type lookup failed"
wh_kill walhook TERM
wh_kill receiver TERM

# The catalog unreadable: a role `wr` that may not read pg_type. Its
# walhook sends the columns of non-built-in types as their text (built-in
# ones as before), says so once, without a value in the log; after a
# reconnect (the Relation message comes again) with pg_type readable, the
# JSON forms are back.
pg_psql -c "CREATE ROLE wr LOGIN REPLICATION" -c "CREATE PUBLICATION walhook2 FOR TABLE types_t" \
    -c "REVOKE SELECT ON pg_catalog.pg_type FROM PUBLIC" >/dev/null || wh_fail "cannot set up role wr"
WR_DSN="postgresql://wr@127.0.0.1:$PG_PORT/postgres"
R2PORT=$(wh_free_port)
A2PORT=$(wh_free_port)
wh_spawn receiver2 "$BIN/walhook-receiver" --listen "127.0.0.1:$R2PORT" --out "$WH_TMP/received2.jsonl"
wh_write_conf "$WH_TMP/walhook2.conf" "$WR_DSN" "$WH_TMP/data2" "$A2PORT" \
    "http://127.0.0.1:$R2PORT/hook"
sed -i 's/slot = "walhook"; publication = "walhook"/slot = "walhook2"; publication = "walhook2"/' \
    "$WH_TMP/walhook2.conf"
wh_spawn walhook2 "$BIN/walhook" up -c "$WH_TMP/walhook2.conf"
wh_wait_http "http://127.0.0.1:$A2PORT/readyz" 60 || wh_fail "the second walhook never became ready"
wh_wait_slot_active walhook2 60 || wh_fail "slot walhook2 is not streaming"
# copy ROW of row 1 (every column set) as id ID
copy_row() {
    pg_psql -c "CREATE TEMP TABLE x AS SELECT * FROM types_t WHERE id = 1;
                UPDATE x SET id = $1; INSERT INTO types_t SELECT * FROM x" >/dev/null
}
copy_row 101 || wh_fail "cannot insert row 101"
PGOPTIONS="-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=iso_8601 -c bytea_output=hex" \
    pg_psql -At -c "SELECT to_jsonb(t) FROM types_t t ORDER BY id" >"$WH_TMP/to_jsonb.jsonl" ||
    wh_fail "cannot read to_jsonb"
# PostgreSQL's text of the columns of non-built-in types
cols="c_mood c_posint c_dtext c_dintarr c_comp c_comp2 a_mood a_comp a_posint a_dtext"
[ "$HSTORE" = 1 ] && cols="$cols c_hstore a_hstore"
sel="'id', id"
for c in $cols; do sel="$sel, '$c', $c::text"; done
PGOPTIONS="-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=iso_8601 -c bytea_output=hex" \
    pg_psql -At -c "SELECT json_build_object($sel) FROM types_t ORDER BY id" >"$WH_TMP/texts.jsonl" ||
    wh_fail "cannot read the texts"
_delivered2() {
    compare text "$WH_TMP/received2.jsonl" "$WH_TMP/to_jsonb.jsonl" 1 "$WH_TMP/texts.jsonl" 101 \
        >/dev/null
    [ $? != 2 ]
}
wh_wait_until 60 _delivered2 || wh_fail "row 101 was not delivered"
out2=$(compare text "$WH_TMP/received2.jsonl" "$WH_TMP/to_jsonb.jsonl" 1 "$WH_TMP/texts.jsonl" 101) ||
    wh_fail "catalog unreadable: values differ:
$out2"
n=$(grep -c 'public.types_t: the types of its columns that are not built in could not be read' \
    "$WH_TMP/walhook2.log")
[ "$n" = 1 ] || wh_fail "$n warnings about types_t's types in the log, expected 1"
for v in happy a0eebc99 'fat & ' '08:00:2b' 16/B374D848; do
    grep -qF -- "$v" "$WH_TMP/walhook2.log" && wh_fail "a row value ($v) is in the log"
done
wh_log "catalog unreadable: $out2 (non-built-in types as their text)"

pg_psql -c "GRANT SELECT ON pg_catalog.pg_type TO PUBLIC" >/dev/null || wh_fail "cannot grant"
wh_terminate_walsender walhook2 >/dev/null || wh_fail "no walsender of walhook2"
wh_wait_until 60 grep -q 'public.types_t: the types of its columns were read' "$WH_TMP/walhook2.log" &
waiter=$!
copy_row 102 || wh_fail "cannot insert row 102"
wait "$waiter" || wh_fail "the types were not read after the reconnect"
PGOPTIONS="-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=iso_8601 -c bytea_output=hex" \
    pg_psql -At -c "SELECT to_jsonb(t) FROM types_t t ORDER BY id" >"$WH_TMP/to_jsonb.jsonl" ||
    wh_fail "cannot read to_jsonb"
_delivered3() {
    compare json "$WH_TMP/received2.jsonl" "$WH_TMP/to_jsonb.jsonl" 1 "" 102 >/dev/null
    [ $? != 2 ]
}
wh_wait_until 60 _delivered3 || wh_fail "row 102 was not delivered"
out3=$(compare json "$WH_TMP/received2.jsonl" "$WH_TMP/to_jsonb.jsonl" 1 "" 102) ||
    wh_fail "after the reconnect: values differ:
$out3"
wh_kill walhook2 TERM
wh_pass "$out equal to to_jsonb (documented differences only); catalog unreadable: text forms, one warning, JSON forms again after a reconnect"
