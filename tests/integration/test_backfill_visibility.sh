#!/usr/bin/env bash
# The visibility case of a backfill chunk (docs/INTERNALS.md): an update
# whose commit record is written and delivered while its backend is still in
# the proc array (it waits for a synchronous standby that never answers)
# is not visible to the chunk's SELECT. The chunk must be read again until
# that transaction is gone, never delivered with the older row after the
# update. Two ways the ingestor can lack the transaction in its history:
#   1. it was decoded while no job ran (the snapshot module idle);
#   2. it was decoded by the ingestor's previous process (SIGKILL after the
#      slot confirmed it: the stream never sends it again).
# Checks, for each: the chunk is read again while the update waits; once it
# is gone, replaying the delivered events of the row gives the table's row.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_pipeline_setup
pg_psql -c "CREATE TABLE bf1 (id int PRIMARY KEY, n int)" \
    -c "INSERT INTO bf1 SELECT g, 0 FROM generate_series(1, 10) g" \
    -c "CREATE TABLE bf2 (id int PRIMARY KEY, n int)" \
    -c "INSERT INTO bf2 SELECT g, 0 FROM generate_series(1, 10) g" \
    -c "CREATE PUBLICATION walhook FOR ALL TABLES" >/dev/null || wh_fail "setup"
# only the sessions that ask for it wait for a (never present) synchronous standby
pg_psql -c "ALTER SYSTEM SET synchronous_commit = local" \
    -c "ALTER SYSTEM SET synchronous_standby_names = 'nosuch'" \
    -c "SELECT pg_reload_conf()" >/dev/null || wh_fail "alter system"
TOKEN=admin-token-$RANDOM-0123456789
export WALHOOK_ADMIN_ADMIN_TOKEN=$TOKEN
wh_up_receiver 'snapshot = "never";'

events() { # TABLE OP: the LSN of the first such event, or nothing
    python3 -c '
import json, sys
for line in open(sys.argv[1]):
    for e in json.loads(line):
        if e.get("table") == sys.argv[2] and e["op"] == sys.argv[3]:
            print(e["lsn"]); sys.exit(0)' "$WH_TMP/got.jsonl" "$1" "$2" 2>/dev/null
}
has_update() { [ -n "$(events "$1" update)" ]; }
reads() { # TABLE: distinct ids read
    python3 -c '
import json, sys
ids = set()
for line in open(sys.argv[1]):
    for e in json.loads(line):
        if e.get("table") == sys.argv[2] and e["op"] == "read":
            ids.add(e["after"]["id"])
print(len(ids))' "$WH_TMP/got.jsonl" "$1" 2>/dev/null || echo 0
}
all_read() { [ "$(reads "$1")" = 10 ]; }
discarded() { wh_metric_tcp "$APORT" walhook_ingestor_snapshot_chunks_discarded_total; }
# read again at least once, or (the bug) read
met_or_read() { [ "$(discarded)" -ge 1 ] 2>/dev/null || all_read "$1"; }
# the last delivered image of row 1 of TABLE, in log order: n
last_n() {
    python3 -c '
import json, sys
evs = {}
for line in open(sys.argv[1]):
    for e in json.loads(line):
        evs[e["id"]] = e
def pos(e):
    hi, lo = e["lsn"].split("/"); return (int(hi, 16) << 32 | int(lo, 16), e["seq"])
last = None
for e in sorted(evs.values(), key=pos):
    if e.get("table") == sys.argv[2] and e["op"] in ("insert", "update", "read") and e["after"]["id"] == 1:
        last = e
print(last["after"]["n"] if last else "none")' "$WH_TMP/got.jsonl" "$1"
}
waiting_update() { # TABLE: starts the update of row 1 that waits for sync rep, UPD its pid
    psql -X -q -d "$PG_DSN" -c "SET synchronous_commit = on" -c "UPDATE $1 SET n = 1 WHERE id = 1" \
        >"$WH_TMP/upd_$1.log" 2>&1 &
    UPD=$!
    wh_wait_until 30 has_update "$1" || wh_fail "$1: the update was not delivered"
    [ "$(pg_psql -At -c "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'")" = 1 ] ||
        wh_fail "$1: the update is not waiting for the synchronous standby"
}
backfill() {
    local code
    code=$(curl -sS -o "$WH_TMP/post.out" -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' -d "{\"table\":\"public.$1\"}" \
        "http://127.0.0.1:$APORT/v1/tenants/default/backfill")
    [ "$code" = 202 ] || wh_fail "backfill POST $1: HTTP $code ($(cat "$WH_TMP/post.out"))"
}
finish() { # TABLE: the update's wait ends; every row read; row 1 ends as the table has it
    wh_wait_until 30 met_or_read "$1" || wh_fail "$1: the backfill neither read nor read again"
    all_read "$1" && wh_log "$1: read while the update was still in progress for its snapshot"
    pg_psql -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE wait_event = 'SyncRep'" >/dev/null
    wait "$UPD"
    [ "$(pg_psql -At -c "SELECT n FROM $1 WHERE id = 1")" = 1 ] || wh_fail "$1: the update did not commit"
    wh_wait_until 30 all_read "$1" || wh_fail "$1: the backfill did not read every row ($(reads "$1") of 10)"
    local n
    n=$(last_n "$1")
    [ "$n" = 1 ] ||
        wh_fail "$1: replaying the delivered events ends with row 1 n=$n, the table has n=1 (a read older than the update before it)"
}

# 1. decoded while the snapshot module is idle
waiting_update bf1
backfill bf1
finish bf1
grep -q 'snapshot of public.bf1: chunk read again: transaction [0-9]* committed before its low watermark' \
    "$WH_TMP/walhook.log" || wh_fail "bf1: no line about the chunk read again"

# 2. decoded by the previous ingestor process, confirmed by the slot
waiting_update bf2
LSN=$(events bf2 update)
wh_wait_slot_flush "$LSN" 30 || wh_fail "the slot did not confirm the update of bf2"
wh_kill_child ingestor "after the update of bf2 was confirmed"
wh_wait_restarted ingestor
wh_wait_slot_active walhook 60 || wh_fail "the slot is not streaming after the restart"
backfill bf2
finish bf2
grep -q 'snapshot of public.bf2: chunk read again: transaction [0-9]* may have committed before the ingestor.s kept history' \
    "$WH_TMP/walhook.log" || wh_fail "bf2: no line about the chunk read again"
wh_pass "a chunk is read again while a transaction delivered before it is still in progress for its snapshot (idle, and after a restart); no read older than an update before it"
