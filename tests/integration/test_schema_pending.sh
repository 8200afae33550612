#!/usr/bin/env bash
# Pending announcements (ing_schema.h). A non-streamed transaction Y uses a
# table version whose first use is a streamed transaction X still in
# progress: Y announces it too (its own schema event) and takes the first
# use over, since it commits first. X rolls back: the version stays in the
# registry (Y's stored event names it). Then Y is sent again after a
# reconnect (slot_policy track: not confirmed yet): the same events at the
# same seqs. Before, Y got no schema event, X's rollback dropped the
# version, and the resent Y announced it: Y's row at a second seq, its first
# id overwritten with the schema event.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
source "$(dirname "$0")/../lib/stream_track.sh"
wh_stream_track_up
TOKEN=$(cat "$WH_TMP/data/admin.token" 2>/dev/null)
schemas() { curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$APORT/v1/tenants/default/schemas"; }

wh_psql_session x 3
wh_psql_session y 4

wh_log "X: a large transaction on t (streamed: the first use of t's version)"
echo "BEGIN; INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;" >&3
sleep 3
wh_log "Y: BEGIN; INSERT INTO t (-1)"
echo "BEGIN; INSERT INTO t VALUES (-1, 'y');" >&4
sleep 0.5
wh_log "W: INSERT INTO w (1), autocommit"
pg_psql -c "INSERT INTO w VALUES (1)" >/dev/null || wh_fail "W failed"
_w() { grep -q '"table":"w"' "$WH_TMP/got.jsonl" 2>/dev/null; }
wh_wait_until 30 _w || wh_fail "W not delivered"
WLSN=$(python3 -c "
import json,sys
for l in open('$WH_TMP/got.jsonl'):
    for e in json.loads(l):
        if e.get('table')=='w': print(e['lsn'])" | head -1)
wh_log "W delivered at $WLSN; waiting for the slot to confirm it"
wh_wait_slot_flush "$WLSN" 30 || wh_fail "the slot never confirmed $WLSN"
wh_log "confirmed_flush_lsn: $(pg_psql -At -c "SELECT confirmed_flush_lsn FROM pg_replication_slots")"
wh_log "receiver stopped (track: nothing after this is confirmed)"
wh_kill recv
echo "COMMIT; SELECT pg_current_wal_lsn();" >&4
sleep 3
wh_log "Y committed (end near $(tail -1 "$WH_TMP/y.out")); confirmed_flush_lsn: $(pg_psql -At -c "SELECT confirmed_flush_lsn FROM pg_replication_slots")"
wh_log "X: ROLLBACK"
echo "ROLLBACK;" >&3
sleep 3
schemas >"$WH_TMP/schemas.json" || wh_fail "GET schemas failed"
reg=$(python3 -c "
import json
d=json.load(open('$WH_TMP/schemas.json'))
print([(t['table'], [(v['fingerprint'], v.get('pruned')) for v in t['versions']]) for t in d['tables']])")
wh_log "registry after X's rollback: $reg"
case "$reg" in *"'public.t'"*) ;; *) wh_fail "X's rollback dropped t's version from the registry" ;; esac
wh_log "terminating the walsender (the ingestor reconnects, PostgreSQL resends from the confirmed LSN)"
wh_terminate_walsender >/dev/null || wh_fail "no walsender"
sleep 1
wh_wait_slot_active walhook 30 || wh_fail "the slot is not streaming again"
sleep 3
wh_spawn recv "$BIN/walhook-receiver" --listen "127.0.0.1:$PORT" --out "$WH_TMP/got.jsonl"
_y() { grep -q '"key":{"id":-1}' "$WH_TMP/got.jsonl" 2>/dev/null; }
wh_wait_until 60 _y || wh_fail "Y not delivered"
sleep 5
exec 3>&- 4>&-
kill $xpid $ypid 2>/dev/null
out=$(python3 - "$WH_TMP/got.jsonl" <<'PY'
import json, sys
ids, schema_t = {}, {}
for line in open(sys.argv[1]):
    for e in json.loads(line):
        if e.get("op") == "schema":
            if e["table"] == "t":
                schema_t[e["id"]] = e["schema_version"]
            continue
        if e.get("table") == "t":
            ids.setdefault(e["after"]["id"], set()).add((e["id"], e.get("schema_version")))
print("schema events of t:", sorted(schema_t.items()))
y = sorted(ids.get(-1, []))
print("Y's row (id -1) stored as:", y)
print("rows of X delivered:", len([k for k in ids if k > 0]))
if len(y) != 1:
    sys.exit("Y's row stored under %d ids" % len(y))
yid, ver = y[0]
lsn, seq = yid.rsplit(":", 1)
if schema_t.get("%s:%d" % (lsn, int(seq) - 1)) != ver:
    sys.exit("no schema event of %s right before Y's row" % ver)
PY
)
rc=$?
echo "$out"
[ $rc = 0 ] || wh_fail "$(echo "$out" | tail -1)"
wh_pass "Y announced the version X still held, kept it after X's rollback, and was sent again at the same seqs"
