#!/usr/bin/env bash
# A target behind its tenant's retention cap (store.retention_age_s = 2) while
# its receiver is down is marked NEEDS_SNAPSHOT by the store; once the
# receiver is back the dispatcher delivers what it had already read, then
# posts nothing more (changes it had not read may be gone, and posting what
# is left would hide the gap): walhook_target_needs_snapshot is 1 and changes
# made meanwhile do not arrive.
# Once its offset is set (to the end, as an operator does), the mark is gone
# and later changes arrive; none made while it was marked is posted, also
# by a Read that ran while the move's synced write was held (wh_syncgate).
# Marked again, it stays marked while on_needs_snapshot is "wait" (the
# default); set to "resync" at runtime (PATCH), the store resyncs it by
# itself: its offset to the end and a backfill of every table, so every row
# of the table arrives once as a read. The store is SIGKILLed in that
# resync once the backfill request's state write is in the WAL (its sync
# held by wh_syncgate) and before the offset moved: the store started again
# moves the offset and requests no second backfill (each row still read
# once, once every backfill job is done).
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-admin walhook-receiver \
    tests/wh_statectl tests/wh_syncgate.so
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
pg_psql -c "CREATE TABLE t (id int PRIMARY KEY)" || wh_fail "table"

RPORT=$(wh_free_port)
APORT=$(wh_free_port)
CONF="$WH_TMP/walhook.conf"
cat >"$CONF" <<CONFEOF
data_dir = "$WH_TMP/data";
log_level = "info";
admin = { listen = "127.0.0.1:$APORT"; };
tenants = (
  { name = "default";
    source = { dsn = "$PG_DSN"; slot = "walhook"; publication = "walhook"; create_slot = true; };
    targets = ( { name = "t0"; url = "http://127.0.0.1:$RPORT/hook"; breaker_cooldown_ms = 300; } ); }
);
CONFEOF
export WALHOOK_STORE_RETENTION_AGE_S=2 WALHOOK_DISPATCHER_RETRY_MAX_MS=500
TOKEN=admin-token-$RANDOM-0123456789
export WALHOOK_ADMIN_ADMIN_TOKEN=$TOKEN
mkdir -m 700 "$WH_TMP/data"
GATE="$WH_TMP/gate"
start_store() {
    wh_spawn_gated_store
    wh_wait_until 20 "$BIN/tests/wh_statectl" -c "$CONF" version >/dev/null ||
        wh_fail "the store did not start"
}
start_store
wh_spawn ingestor "$BIN/walhook-ingestor" -c "$CONF"
# (its store calls give up after 2 s: a Read that fails, below)
WALHOOK_IPC_TIMEOUT_MS=2000 wh_spawn dispatcher "$BIN/walhook-dispatcher" -c "$CONF"
wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
M="http://127.0.0.1:$APORT/metrics"
wh_wait_slot_active walhook 60 || wh_fail "the ingestor never started streaming"

# the receiver is down: these changes wait, age past the cap, the target is marked
pg_psql -c "INSERT INTO t SELECT generate_series(1, 100)" || wh_fail "insert 1..100"
wh_wait_metric "$M" walhook_store_needs_snapshot_targets 1 60 || wh_fail "the store never marked the target"

# the receiver comes back: the dispatcher delivers what it had read before
# the mark (a read-ahead that is complete), then its next Read shows the mark
wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --out "$WH_TMP/received.jsonl"
wh_wait_http "http://127.0.0.1:$RPORT/" 10 || true
wh_wait_metric "$M" walhook_target_needs_snapshot 1 60 || wh_fail "the dispatcher never reported the mark"
# (the reader sets the gauge, then writes the warning)
wh_wait_until 15 grep -q "NEEDS_SNAPSHOT" "$WH_TMP/dispatcher.log" ||
    wh_fail "the dispatcher did not log the mark"
# changes made now must not be posted past the gap
pg_psql -c "INSERT INTO t SELECT generate_series(101, 150)" || wh_fail "insert 101..150"
sleep 4 # negative check: a stopped target must stay stopped (long enough for a read and a post)
ids() { grep -o '"id":[0-9]\+' "$WH_TMP/received.jsonl" 2>/dev/null | cut -d: -f2 | sort -n | uniq; }
late=$(ids | awk '$1 > 100' | wc -l)
[ "$late" = 0 ] || wh_fail "$late changes made while NEEDS_SNAPSHOT were posted"
[ "$(wh_metric "$M" walhook_target_needs_snapshot)" = 1 ] || wh_fail "the mark went away by itself"
# a Read that fails (the store stopped) says nothing about the mark: the
# target stays marked (it was "no longer marked; delivering again", and
# pushed events could then be taken past the gap)
kill -STOP "${WH_PIDS[store]}"
wh_wait_until 30 grep -q "t0: Read from store failed" "$WH_TMP/dispatcher.log"
rf=$?
kill -CONT "${WH_PIDS[store]}"
[ "$rf" = 0 ] || wh_fail "no Read failed while the store was stopped"
wh_wait_metric "$M" walhook_target_needs_snapshot 1 30 || wh_fail "the mark is not reported after the store came back"
! grep -q "no longer marked" "$WH_TMP/dispatcher.log" ||
    wh_fail "a failed Read cleared the mark: $(grep 'no longer marked' "$WH_TMP/dispatcher.log")"

# the operator skips to the end: the mark is cleared and delivery resumes.
# The move's synced write is held at the gate until a Read of the target
# ran inside it: the store clears the mark before that write and shows the
# new epoch only after it, and such a Read replied with the old epoch, no
# mark and the changes from the old offset, which the dispatcher posted
# (101..150 across the gap, checked below). The dispatcher is stopped until
# the mark is gone (its next Read comes after), the ingestor until the gate
# opens (no append or slot report takes the gate or a worker of the store).
kill -STOP "${WH_PIDS[ingestor]}" "${WH_PIDS[dispatcher]}"
touch "$GATE"
"$BIN/tests/wh_statectl" -c "$CONF" set-offset default t0 end >"$WH_TMP/setoff.log" 2>&1 &
setoff=$!
store_stats() { "$BIN/tests/wh_statectl" -c "$CONF" stats >"$WH_TMP/stats.txt" 2>&1; }
mark_gone() { # the store's series of the target's mark, read live
    store_stats &&
        ! grep -q '^walhook_store_target_needs_snapshot{tenant="default",target="t0"}' "$WH_TMP/stats.txt"
}
cursor_reads() { store_stats && awk '$1 == "walhook_store_cursor_reads_total" { print $2 }' "$WH_TMP/stats.txt"; }
read_since() { [ "$(cursor_reads)" -gt "$1" ]; }
problem=""
if wh_wait_until 20 test -e "$GATE.held" && wh_wait_until 20 mark_gone; then
    reads0=$(cursor_reads)
    kill -CONT "${WH_PIDS[dispatcher]}"
    wh_wait_until 20 read_since "${reads0:-0}" || problem="no Read of the target while the move was held"
else
    problem="the set offset's write did not reach the gate, or the mark stayed ($(cat "$WH_TMP/stats.txt" | head -3))"
fi
rm -f "$GATE"
kill -CONT "${WH_PIDS[ingestor]}" "${WH_PIDS[dispatcher]}"
[ -z "$problem" ] || wh_fail "$problem"
wait "$setoff" || wh_fail "set-offset failed: $(cat "$WH_TMP/setoff.log")"
cleared() { [ "$(wh_metric "$M" walhook_target_needs_snapshot)" = 0 ]; }
wh_wait_until 30 cleared ||
    wh_fail "the dispatcher still reports NEEDS_SNAPSHOT after the offset was set"
pg_psql -c "INSERT INTO t SELECT generate_series(151, 200)" || wh_fail "insert 151..200"
arrived() { [ "$(ids | awk '$1 > 150' | wc -l)" -ge 50 ]; }
wh_wait_until 60 arrived ||
    wh_fail "changes after the set offset did not arrive ($(ids | awk '$1 > 150' | wc -l) of 50)"
gap=$(ids | awk '$1 > 100 && $1 <= 150' | wc -l)
[ "$gap" = 0 ] || wh_fail "$gap changes from before the set offset were posted"

# marked again, with on_needs_snapshot = wait (the default): it stays marked
wh_kill receiver TERM
pg_psql -c "INSERT INTO t SELECT generate_series(201, 300)" || wh_fail "insert 201..300"
wh_wait_metric "$M" walhook_store_needs_snapshot_targets 1 60 || wh_fail "the store never marked the target again"
wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --out "$WH_TMP/received2.jsonl"
wh_wait_http "http://127.0.0.1:$RPORT/" 10 || true
sleep 3 # negative check: nothing resyncs a target set to wait
[ "$(wh_metric "$M" walhook_store_needs_snapshot_targets)" = 1 ] || wh_fail "the mark went away with on_needs_snapshot = wait"
grep -q "automatic resync" "$WH_TMP/store.log" && wh_fail "the store resynced a target set to wait"
code=$(curl -sS -o "$WH_TMP/patch.out" -w '%{http_code}' -X PATCH -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d '{"on_needs_snapshot": "now"}' \
    "http://127.0.0.1:$APORT/v1/tenants/default/targets/t0")
[ "$code" = 400 ] && grep -q on_needs_snapshot "$WH_TMP/patch.out" ||
    wh_fail "PATCH on_needs_snapshot = now: HTTP $code ($(cat "$WH_TMP/patch.out")), expected a 400 naming it"
# the PATCH's state write passes the gate, the resync's next one is held
# (the ingestor stopped meanwhile: no append takes the gate's place)
kill -STOP "${WH_PIDS[ingestor]}"
echo 1 >"$GATE.pass"
touch "$GATE"
code=$(curl -sS -o "$WH_TMP/patch.out" -w '%{http_code}' -X PATCH -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d '{"on_needs_snapshot": "resync"}' \
    "http://127.0.0.1:$APORT/v1/tenants/default/targets/t0")
_held() { test -e "$GATE.held"; }
[ "$code" = 200 ] && wh_wait_until 20 _held || {
    rm -f "$GATE"
    kill -CONT "${WH_PIDS[ingestor]}"
    wh_fail "PATCH on_needs_snapshot: HTTP $code ($(cat "$WH_TMP/patch.out")), or no resync write held"
}
wh_kill store KILL
rm -f "$GATE" "$GATE.pass"
wh_log "store SIGKILLed with the automatic resync's state write in its WAL, not synced"
kill -CONT "${WH_PIDS[ingestor]}"
start_store
reads() { # distinct ids read, read events
    python3 -c '
import json, sys
ids, n = set(), 0
for line in open(sys.argv[1]):
    for e in json.loads(line):
        if e.get("table") == "t" and e["op"] == "read":
            ids.add(e["key"]["id"]); n += 1
print(len(ids), n)' "$WH_TMP/received2.jsonl" 2>/dev/null
}
_all() { [ "$(reads | cut -d' ' -f1)" = 300 ]; }
wh_wait_until 90 _all || wh_fail "after the automatic resync: $(reads) (want 300 distinct ids read, 300 reads)"
# every backfill job done (a second one, requested again after the restart,
# would read every row again)
A="http://127.0.0.1:$APORT"
_jobs_done() {
    wh_admin_api GET /v1/tenants/default/backfill
    [ "$CODE" = 200 ] && python3 -c '
import json, sys
d = json.loads(sys.argv[1])
sys.exit(0 if d["jobs"] and all(j["state"] == "done" for j in d["jobs"]) else 1)' "$BODY"
}
wh_wait_until 60 _jobs_done || wh_fail "the backfill jobs never all finished: $BODY"
[ "$(reads)" = "300 300" ] || wh_fail "after the store's restart in the resync: $(reads) (distinct ids read, reads; want 300 300): jobs $BODY"
grep -q "t0: automatic resync (on_needs_snapshot = resync)" "$WH_TMP/store.log" ||
    wh_fail "the store did not log the automatic resync"
unmarked() { [ "$(wh_metric "$M" walhook_store_needs_snapshot_targets)" = 0 ] && cleared; }
wh_wait_until 30 unmarked || wh_fail "still marked after the resync (store $(wh_metric "$M" walhook_store_needs_snapshot_targets), dispatcher $(wh_metric "$M" walhook_target_needs_snapshot))"
wh_pass "NEEDS_SNAPSHOT stops posting (0 of 50 changes posted while marked), the metric and the log say so; a set offset clears it and the next 50 changes arrive; with on_needs_snapshot = resync the store resyncs it by itself: 300 rows read once each"
