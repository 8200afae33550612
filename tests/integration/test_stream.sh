#!/usr/bin/env bash
# Streamed transactions (source.streaming, pgoutput protocol 2): with
# logical_decoding_work_mem at 64 kB PostgreSQL sends large transactions
# while they run; walhook stages them in the store and turns them into
# events at their commit.
#   big   ROWS rows in one transaction, with a subtransaction rolled back in
#         the middle (its rows never delivered) and small transactions of
#         another session committing while it runs (delivered before it: they
#         commit first); the ingestor is SIGKILLed while the big one streams.
#   gone  a large transaction rolled back: nothing of it delivered.
#   late  after those: ROWS rows in one transaction while the store is
#         SIGKILLed (during its staging or its commit): each row once.
#   crash PostgreSQL crash-restarted while a large transaction streams (it
#         is implicitly aborted) and the ingestor SIGKILLed: nothing of it
#         delivered, the stream goes on, and the new ingestor process drops
#         the staging it left (none is left in the store at the end).
#   orig  large transactions with a replication origin: one carries it in
#         every event, one from an origin in source.skip_origins is not
#         delivered.
# Every delivered event has the head a non-streamed transaction's event
# would have (id = tenant:lsn:seq, seq contiguous from 0, commit_ts), each
# row exactly once, in commit order.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
ROWS=${ROWS:-40000}
WAIT=$((180 + ROWS / 4000)) # seconds: ROWS=2000000 runs outside CI
wh_pipeline_setup
pg_psql -c "ALTER SYSTEM SET logical_decoding_work_mem = '64kB'" -c "SELECT pg_reload_conf()" \
    -c "CREATE TABLE big (id int PRIMARY KEY, note text)" \
    -c "CREATE TABLE small (id int PRIMARY KEY)" -c "CREATE TABLE orig (id int PRIMARY KEY)" \
    -c "CREATE TABLE late (id int PRIMARY KEY)" \
    -c "SELECT pg_replication_origin_create('peer_keep')" \
    -c "SELECT pg_replication_origin_create('peer_skip')" >/dev/null || wh_fail "cannot set up"
PORT=$(wh_free_port)
APORT=$(wh_free_port)
wh_spawn recv "$BIN/walhook-receiver" --listen "127.0.0.1:$PORT" --out "$WH_TMP/got.jsonl"
CONF="$WH_TMP/walhook.conf"
cat >"$CONF" <<CONFEOF
tenant = "default";
source = { dsn = "$PG_DSN"; slot = "walhook"; publication = "walhook"; create_slot = true;
           streaming = true; skip_origins = "peer_skip"; };
data_dir = "$WH_TMP/data";
log_level = "info";
admin = { listen = "127.0.0.1:$APORT"; };
dispatcher = { batch_max_events = 500; };
targets = ( { name = "t"; url = "http://127.0.0.1:$PORT/hook"; } );
CONFEOF
wh_up "$CONF" "$APORT"

HALF=$((ROWS / 2))
# the big transaction, in the background: a first half, a rolled-back
# subtransaction, a pause (the small ones commit meanwhile), the rest
pg_psql >"$WH_TMP/big.log" 2>&1 <<SQL &
BEGIN;
INSERT INTO big SELECT g, 'first' FROM generate_series(1, $HALF) g;
SAVEPOINT s;
INSERT INTO big SELECT g, 'rolled back' FROM generate_series($ROWS + 1, $ROWS + 5000) g;
ROLLBACK TO SAVEPOINT s;
SELECT pg_sleep(2);
INSERT INTO big SELECT g, 'second' FROM generate_series($HALF + 1, $ROWS) g;
COMMIT;
SQL
bigpid=$!
sleep 0.5
for i in 1 2 3 4 5; do pg_psql -c "INSERT INTO small VALUES ($i)" >/dev/null; done
# the ingestor killed while the big transaction streams
ing=$(wh_child_pid "${WH_PIDS[walhook]}" ingestor)
[ -n "$ing" ] || wh_fail "no ingestor process"
wh_log "SIGKILL the ingestor ($ing) while the big transaction streams"
kill -KILL "$ing"
wait "$bigpid" || wh_fail "the big transaction failed: $(cat "$WH_TMP/big.log")"
pg_psql <<SQL >/dev/null || wh_fail "the rolled-back transaction failed"
BEGIN;
INSERT INTO big SELECT g, 'gone' FROM generate_series($ROWS + 10001, $ROWS + 30000) g;
ROLLBACK;
SELECT pg_replication_origin_session_setup('peer_skip');
INSERT INTO orig SELECT g FROM generate_series(100001, 103000) g;
SELECT pg_replication_origin_session_reset();
SELECT pg_replication_origin_session_setup('peer_keep');
INSERT INTO orig SELECT g FROM generate_series(1, 3000) g;
SELECT pg_replication_origin_session_reset();
INSERT INTO small VALUES (6);
SQL
WANT=$((ROWS + 3006))
_all() { [ "$(wh_count_events "$WH_TMP/got.jsonl")" -ge "$WANT" ]; }
wh_wait_until "$WAIT" _all || wh_fail "$(wh_count_events "$WH_TMP/got.jsonl") of $WANT events delivered"
sleep 1 # anything extra (a rolled-back row) would arrive with the last ones

out=$(python3 - "$WH_TMP/got.jsonl" "$ROWS" <<'PY'
import json, sys
path, rows = sys.argv[1], int(sys.argv[2])
def fail(m):
    print(m); sys.exit(1)
def lsn(s):
    a, b = s.split("/")
    return int(a, 16) << 32 | int(b, 16)
seen, order, per_txn, ids = set(), [], {}, {}
for line in open(path):
    for e in json.loads(line):
        if e["id"] in seen:
            continue  # a redelivery (at-least-once) of the same event
        seen.add(e["id"])
        order.append((lsn(e["lsn"]), e["seq"]))
        if e["id"] != f'{e["tenant"]}:{e["lsn"]}:{e["seq"]}':
            fail(f"id {e['id']} does not match its lsn and seq")
        if not e.get("commit_ts"):
            fail(f"{e['id']}: no commit_ts")
        per_txn.setdefault(e["lsn"], []).append(e)
        if e["table"] == "orig":
            if e["after"]["id"] > 100000:
                fail(f"{e['id']}: a row from the skipped origin was delivered")
            if e.get("origin") != "peer_keep":
                fail(f"{e['id']}: origin {e.get('origin')}, expected peer_keep")
        elif "origin" in e:
            fail(f"{e['id']}: origin {e['origin']} on a change without one")
        k = (e["table"], e["after"]["id"])
        if k in ids:
            fail(f"row {k} delivered twice, as {ids[k]} and {e['id']}")
        ids[k] = e["id"]
        if e["after"].get("note") in ("rolled back", "gone"):
            fail(f"{e['id']}: a rolled-back row was delivered: {e['after']}")
if order != sorted(order):
    fail("events arrived out of commit order")
big = [e for e in (ev for t in per_txn.values() for ev in t) if e["table"] == "big"]
if len(big) != rows:
    fail(f"{len(big)} rows of big, expected {rows}")
if len({e["lsn"] for e in big}) != 1:
    fail("big's rows are not one transaction")
seqs = sorted(e["seq"] for e in big)
if seqs != list(range(rows)):
    fail(f"big's seq is not 0..{rows - 1}")
if sorted(e["after"]["id"] for e in big) != list(range(1, rows + 1)):
    fail("big's rows are not ids 1..ROWS")
xid = {e["xid"] for e in big}
if len(xid) != 1 or 0 in xid:
    fail(f"big's xid {xid}")
small = [e for t in per_txn.values() for e in t if e["table"] == "small"]
if sorted(e["after"]["id"] for e in small) != [1, 2, 3, 4, 5, 6]:
    fail(f"small rows {sorted(e['after']['id'] for e in small)}")
blsn = lsn(big[0]["lsn"])
early = [e for e in small if e["after"]["id"] <= 5 and lsn(e["lsn"]) > blsn]
if early:
    fail("a small transaction that committed before big comes after it")
orig = sorted(e["after"]["id"] for t in per_txn.values() for e in t if e["table"] == "orig")
if orig != list(range(1, 3001)):
    fail(f"{len(orig)} rows of orig, expected ids 1..3000")
print(f"ok: {rows} rows of big in one transaction (seq 0..{rows - 1}), 6 small ones around it")
PY
) || wh_fail "$out"
wh_log "$out"
# the store killed while a big transaction is staged and committed
pg_psql -c "INSERT INTO late SELECT g FROM generate_series(1, $ROWS) g" >/dev/null &
latepid=$!
sleep 0.7
st=$(wh_child_pid "${WH_PIDS[walhook]}" store)
[ -n "$st" ] || wh_fail "no store process"
wh_log "SIGKILL the store ($st) while a big transaction is staged or committed"
kill -KILL "$st"
wait "$latepid" || wh_fail "the late transaction failed"
_late() {
    python3 - "$WH_TMP/got.jsonl" "$ROWS" <<'PY'
import json, sys
ids = {}
for line in open(sys.argv[1]):
    for e in json.loads(line):
        if e["table"] == "late":
            ids.setdefault(e["after"]["id"], set()).add(e["id"])
if any(len(v) != 1 for v in ids.values()):
    print("a late row stored twice (two ids)"); sys.exit(3)
sys.exit(0 if sorted(ids) == list(range(1, int(sys.argv[2]) + 1)) else 1)
PY
}
wh_wait_until "$WAIT" _late || wh_fail "the late transaction's rows are not all delivered once (exit $?)"
# (before the crash below: a crash restart resets PostgreSQL's statistics)
streamed=$(pg_psql -At -c "SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = 'walhook'")
wh_log "PostgreSQL streamed $streamed transactions"
[ "${streamed:-0}" -gt 0 ] || wh_fail "PostgreSQL streamed no transaction (stream_txns $streamed)"
# PostgreSQL crashes while a large transaction streams
pg_psql -c "CREATE TABLE crashed (id int)" >/dev/null
pg_psql -c "BEGIN" -c "INSERT INTO crashed SELECT g FROM generate_series(1, $ROWS) g" \
    -c "SELECT pg_sleep(30)" -c "COMMIT" >/dev/null 2>&1 &
crashpid=$!
sleep 2
# the ingestor dies with PostgreSQL: the next ingestor process does not know
# the transaction that was streaming, and still drops its staging
ing=$(wh_child_pid "${WH_PIDS[walhook]}" ingestor)
[ -n "$ing" ] || wh_fail "no ingestor process"
wh_log "SIGKILL the ingestor ($ing) and crash-restart PostgreSQL while a transaction streams"
kill -KILL "$ing"
pg_restart || wh_fail "PostgreSQL did not restart"
wait "$crashpid" 2>/dev/null
pg_psql -c "INSERT INTO small VALUES (7)" >/dev/null || wh_fail "insert after the restart failed"
_seven() { grep -q '"table":"small","key":{"id":7}' "$WH_TMP/got.jsonl"; }
wh_wait_until "$WAIT" _seven || wh_fail "the change after PostgreSQL's restart was not delivered"
grep -q '"table":"crashed"' "$WH_TMP/got.jsonl" && wh_fail "a row of the crashed transaction was delivered"
wh_kill walhook TERM
wh_kill recv TERM
staged=$("$BIN/walhook-store" --dump-staged -c "$CONF" 2>&1) || wh_fail "--dump-staged: $staged"
[ -z "$staged" ] || wh_fail "staging left in the store (tenant xid events): $staged"
wh_pass "$ROWS rows streamed in one transaction with a subtransaction rolled back and an ingestor SIGKILL: each row once, seq contiguous, heads as unstreamed; a rolled-back streamed transaction delivered nothing; streamed transactions carry their origin, a skipped origin's not delivered; a store SIGKILL during a streamed transaction lost and doubled nothing; a transaction streaming when PostgreSQL crashed delivered nothing"
