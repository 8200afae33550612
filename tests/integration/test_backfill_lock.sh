#!/usr/bin/env bash
# A backfill of a table another session holds locked (ACCESS EXCLUSIVE, as a
# migration does) must not stop the tenant's stream: the chunk's query runs
# on the replication thread, so it gives up on lock_timeout and is read
# again later. Checks: while the lock is held, an insert into another table
# is delivered and the walsender is not replaced (no wal_sender_timeout);
# the ingestor warns naming the table; once the lock goes, the backfill
# delivers every row.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_pipeline_setup
pg_psql -c "CREATE TABLE bf (id int PRIMARY KEY, n int)" \
    -c "INSERT INTO bf SELECT g, 0 FROM generate_series(1, 10) g" \
    -c "CREATE TABLE other (id int PRIMARY KEY)" \
    -c "CREATE PUBLICATION walhook FOR ALL TABLES" \
    -c "ALTER SYSTEM SET wal_sender_timeout = '10s'" -c "SELECT pg_reload_conf()" >/dev/null ||
    wh_fail "setup"
TOKEN=admin-token-$RANDOM-0123456789
export WALHOOK_ADMIN_ADMIN_TOKEN=$TOKEN
wh_up_receiver 'snapshot = "never";'
got_other() {
    python3 -c '
import json, sys
for line in open(sys.argv[1]):
    for e in json.loads(line):
        if e.get("table") == "other" and e["op"] == "insert" and e["after"]["id"] == int(sys.argv[2]):
            sys.exit(0)
sys.exit(1)' "$WH_TMP/got.jsonl" "$1" 2>/dev/null
}
bf_reads() {
    python3 -c '
import json, sys
ids = set()
for line in open(sys.argv[1]):
    for e in json.loads(line):
        if e.get("table") == "bf" and e["op"] == "read":
            ids.add(e["after"]["id"])
print(len(ids))' "$WH_TMP/got.jsonl" 2>/dev/null || echo 0
}
pg_psql -c "INSERT INTO other VALUES (1)" >/dev/null
wh_wait_until 30 got_other 1 || wh_fail "the first insert into other was not delivered"
WALSENDER=$(wh_slot_pid)
[ -n "$WALSENDER" ] || wh_fail "no walsender"

# a session holds bf locked (ended by the test once checked)
pg_psql -c "BEGIN; LOCK TABLE bf IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(50); COMMIT;" \
    >/dev/null 2>&1 &
LOCKER=$!
locker_pid() {
    pg_psql -At -c "SELECT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                    WHERE c.relname = 'bf' AND l.mode = 'AccessExclusiveLock' AND l.granted"
}
has_locker() { [ -n "$(locker_pid)" ]; }
wh_wait_until 20 has_locker || wh_fail "the locking session did not get its lock"
LPID=$(locker_pid)
code=$(curl -sS -o "$WH_TMP/post.out" -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d '{"table":"public.bf"}' \
    "http://127.0.0.1:$APORT/v1/tenants/default/backfill")
[ "$code" = 202 ] || wh_fail "backfill POST: HTTP $code ($(cat "$WH_TMP/post.out"))"
chunk_waits() {
    [ "$(pg_psql -At -c "SELECT count(*) FROM pg_stat_activity WHERE application_name =
                         'walhook-snapshot' AND wait_event_type = 'Lock'")" -ge 1 ]
}
wh_wait_until 30 chunk_waits || wh_fail "the backfill's chunk never waited for the lock"
pg_psql -c "INSERT INTO other VALUES (2)" >/dev/null
wh_wait_until 30 got_other 2 ||
    wh_fail "the insert into other was not delivered while bf is locked (the stream waits for the backfill's lock)"
[ "$(locker_pid)" = "$LPID" ] || wh_fail "the lock went before the insert was delivered: nothing shown"
[ "$(wh_slot_pid)" = "$WALSENDER" ] ||
    wh_fail "the walsender changed while bf was locked (wal_sender_timeout?): $WALSENDER -> $(wh_slot_pid)"
warned() { grep -q 'snapshot of public.bf: the chunk.s query gave up after waiting for a lock' "$WH_TMP/walhook.log"; }
wh_wait_until 20 warned || wh_fail "no warning naming the table"
[ "$(bf_reads)" = 0 ] || wh_fail "rows of bf read while it is locked?"

pg_psql -c "SELECT pg_terminate_backend($LPID)" >/dev/null
wait "$LOCKER" 2>/dev/null
all_read() { [ "$(bf_reads)" = 10 ]; }
wh_wait_until 40 all_read || wh_fail "the backfill did not deliver every row once the lock went ($(bf_reads) of 10)"
grep -q 'snapshot of public.bf: the chunk was read after [0-9]* lock or statement timeout' "$WH_TMP/walhook.log" ||
    wh_fail "no line saying the chunk was read after the timeouts"
wh_pass "the stream went on while the backfilled table was locked; the chunk was read after the lock"
