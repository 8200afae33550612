#!/usr/bin/env bash
# A transaction sent streamed, then whole, keeps its event ids. X first uses
# table t's version and is streamed (pgoutput protocol 2, streaming = true,
# logical_decoding_work_mem 64kB), so its schema event is staged at seq 0;
# its Stream Commit is stored, and before its end is confirmed (slot_policy
# track, the target down) the ingestor reconnects. The slot's confirmed
# position is past X's changes (W committed and was confirmed meanwhile), so
# PostgreSQL sends X again whole (Begin..Commit, it does not stream below the
# confirmed position). The whole form must announce t's version again at
# seq 0 (its first use is X, matched by xid while its commit LSN was not
# known): else every row moves by one seq, each stored under two ids.
# DDL_MSG=1: t's version is known before X, and X begins with a
# transactional walhook.ddl message (another slot's DDL capture; source.ddl
# is off here). SUB_ABORT=1: t's version is known before X, and X begins
# with a subtransaction, rolled back, whose rows of table u (u's first use)
# were streamed: its schema event must go with them. test_stream_resend_sub
# runs both.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
source "$(dirname "$0")/../lib/stream_track.sh"
N=20000
DDL_MSG=${DDL_MSG:-0}
SUB_ABORT=${SUB_ABORT:-0}
wh_stream_track_up
# w's version registered first; t's is first used inside X (with DDL_MSG,
# before X too: no schema event inside X)
SETUP=1
if [ "$DDL_MSG" = 1 ] || [ "$SUB_ABORT" = 1 ]; then
    pg_psql -c "INSERT INTO t VALUES (0, 'known')" >/dev/null
    SETUP=2
fi
pg_psql -c "INSERT INTO w VALUES (0)" >/dev/null
_k() { [ "$(wh_count_events "$WH_TMP/got.jsonl")" -ge "$SETUP" ]; }
wh_wait_until 30 _k || wh_fail "setup rows not delivered"

wh_psql_session x 3
MSG=""
[ "$DDL_MSG" = 1 ] && MSG="SELECT pg_logical_emit_message(true, 'walhook.ddl', '{}');"
if [ "$SUB_ABORT" = 1 ]; then
    pg_psql -c "CREATE TABLE u (id int PRIMARY KEY, note text)" >/dev/null || wh_fail "no table u"
    MSG="$MSG SAVEPOINT a; INSERT INTO u SELECT g, repeat('u', 200) FROM generate_series(1, 5000) g;
         SELECT pg_sleep(2); ROLLBACK TO SAVEPOINT a;"
fi
wh_log "X: BEGIN; ${MSG:+$MSG }$N rows of t (streamed)"
echo "BEGIN; $MSG INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, $N) g;" >&3
sleep 4
pg_psql -c "INSERT INTO w VALUES (1)" >/dev/null || wh_fail "W failed"
_w() { grep -q '"key":{"id":1}' "$WH_TMP/got.jsonl" 2>/dev/null; }
wh_wait_until 30 _w || wh_fail "W not delivered"
WLSN=$(python3 -c "
import json
for l in open('$WH_TMP/got.jsonl'):
    for e in json.loads(l):
        if e.get('table')=='w' and e['key']=={'id':1}: print(e['lsn'])" | head -1)
wh_wait_slot_flush "$WLSN" 30 || wh_fail "the slot never confirmed $WLSN"
wh_log "W at $WLSN confirmed; confirmed_flush_lsn $(pg_psql -At -c "SELECT confirmed_flush_lsn FROM pg_replication_slots"); receiver stopped"
wh_kill recv
echo "COMMIT; SELECT pg_current_wal_lsn();" >&3
sleep 5
wh_log "X committed (end near $(tail -1 "$WH_TMP/x.out")); confirmed_flush_lsn $(pg_psql -At -c "SELECT confirmed_flush_lsn FROM pg_replication_slots")"
wh_log "stream_txns so far: $(pg_psql -At -c "SELECT stream_txns FROM pg_stat_replication_slots")"
"$BIN/walhook-store" --dump -c "$CONF" >"$WH_TMP/dump1.txt" 2>&1
wh_log "store before the reconnect: $(grep -c "0/${WLSN#0/}" "$WH_TMP/dump1.txt") events at W; events per LSN: $(awk '{print $2}' "$WH_TMP/dump1.txt" | sort | uniq -c | tr '\n' ' ')"
wh_terminate_walsender >/dev/null || wh_fail "no walsender"
sleep 1
wh_wait_slot_active walhook 30 || wh_fail "the slot is not streaming again"
sleep 5
wh_log "after the reconnect: stream_txns $(pg_psql -At -c "SELECT stream_txns FROM pg_stat_replication_slots")"
"$BIN/walhook-store" --dump -c "$CONF" >"$WH_TMP/dump2.txt" 2>&1
wh_log "store after the reconnect: events per LSN: $(awk '{print $2}' "$WH_TMP/dump2.txt" | sort | uniq -c | tr '\n' ' ')"
wh_spawn recv "$BIN/walhook-receiver" --listen "127.0.0.1:$PORT" --out "$WH_TMP/got.jsonl"
_all() { [ "$(wh_count_events "$WH_TMP/got.jsonl")" -ge $((N + SETUP + 1)) ]; }
wh_wait_until 120 _all || wh_fail "X's rows were not all delivered"
exec 3>&-
kill $xpid 2>/dev/null
out=$(python3 - "$WH_TMP/got.jsonl" <<'PY'
import json, sys
ids, seen = {}, set()
for line in open(sys.argv[1]):
    for e in json.loads(line):
        if e["id"] in seen or e.get("op") in ("schema", "ddl"):
            continue
        seen.add(e["id"])
        if e.get("table") == "t":
            ids.setdefault(e["after"]["id"], []).append(e["id"])
dups = {k: v for k, v in ids.items() if len(v) > 1}
print("rows of t:", len(ids), "rows stored under two ids:", dups)
sys.exit(1 if dups else 0)
PY
)
rc=$?
echo "$out"
[ $rc = 0 ] || wh_fail "a row of X stored under two ids after it was sent again whole"
streamed=$(pg_psql -At -c "SELECT stream_txns FROM pg_stat_replication_slots")
wh_pass "$N rows of a transaction streamed (stream_txns $streamed) and sent again whole: each row under one id"
