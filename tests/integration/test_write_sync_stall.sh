#!/usr/bin/env bash
# Requests that wait for a stalled WAL sync do not take every store worker
# (store.workers, 4) from the requests that wait for no disk: with the
# syncs held longer than the callers' timeouts (ipc.timeout_ms 1 s here),
# the ingestor's Append and its retries, the dispatcher's commits and
# their retries and the slot reports pile up; GetState, the store's Stats
# and the admin's /metrics must still be answered, and once the syncs pass
# every row is delivered once, stored once and acknowledged.
#   1. The pipeline (store with wh_syncgate.so) delivers rows 1-10.
#   2. The store's WAL syncs are held; a runtime setting is PATCHed (its
#      state write waits at the gate: GetState waits for it) and rows
#      11-20 are inserted, a transaction each. For eight caller timeouts:
#      - GetState (wh_statectl get, 5 s) is answered, three times: the
#        state, or refused at once (a state write under way waits for the
#        disk), never no answer (the state watchers of the four daemons,
#        each GetState waiting for the held write, held every worker);
#      - the admin's /metrics answers with the store's metrics in it;
#      - the store refused writes for want of a place
#        (walhook_store_disk_requests_refused_total > 0) and the ingestor
#        logged its refused Append (no row value in the log).
#   3. The gate opens: rows 1-20 reach the receiver, each once under one
#      id, the slot's confirmed flush passes them, the store settles
#      (every offset committed), and the store holds each event once
#      (as many as the receiver's distinct ids, each of them).
# Before: the Append's and the commits' retries held every worker at the
# gate and GetState got no answer within its 5 s.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_syncgate_setup
export WH_SYNCGATE="$GATE" LD_PRELOAD="$BIN/tests/wh_syncgate.so" WALHOOK_IPC_TIMEOUT_MS=1000
wh_items_pipeline
unset LD_PRELOAD WALHOOK_IPC_TIMEOUT_MS
ctl() { "$BIN/tests/wh_statectl" -c "$CONF" "$@"; }

insert() { # FROM TO: one row per transaction
    local i
    for ((i = $1; i <= $2; i++)); do echo "INSERT INTO items VALUES ($i);"; done |
        pg_psql >/dev/null || wh_fail "inserts $1-$2 failed"
}
received_all() { # FROM TO
    local i
    for ((i = $1; i <= $2; i++)); do
        grep -q "\"after\":{\"id\":$i}" "$WH_TMP/received.jsonl" 2>/dev/null || return 1
    done
}
state_read() { # STEP: a GetState answered within wh_statectl's 5 s
    local t0=$SECONDS
    ctl get >"$WH_TMP/get.out" 2>&1 && return 0
    grep -q "refused, nothing done" "$WH_TMP/get.out" && return 0
    wh_fail "$1: GetState got no answer while writes wait for the held WAL sync ($((SECONDS - t0)) s): $(tail -n 2 "$WH_TMP/get.out")"
}

# 1. rows delivered, nothing of them still to sync
insert 1 10
wh_wait_until 60 received_all 1 10 || wh_fail "rows 1-10 not delivered"
wh_wait_until 30 wh_store_settled || wh_fail "the store did not settle (a write in progress)"

# 2. syncs held: the Append of rows 11-20 and its retries, commits and
# slot reports pile up
touch "$GATE"
TOKEN=$(grep -v '^read:' "$WH_TMP/data/admin.token" | head -n 1)
curl -sS -m 60 -o "$WH_TMP/patch.out" -w '%{http_code}' -X PATCH -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d '{"ingestor.flush_age_us":900}' \
    "http://127.0.0.1:$APORT/v1/settings" >"$WH_TMP/patch.code" 2>&1 &
patch_pid=$!
wh_wait_until 30 test -e "$GATE.held" || wh_fail "the state write's WAL sync did not reach the gate"
insert 11 20
END=$(pg_psql -At -c "SELECT pg_current_wal_lsn()")
wh_wait_until 30 test -e "$GATE.held" || wh_fail "no WAL sync of the store reached the gate"
wh_log "the store's WAL syncs held; rows 11-20 inserted"
sleep 8 # eight caller timeouts: each caller gave its request up and sent it again
[ -e "$GATE.held" ] || wh_fail "the gate let the sync go (the scenario did not run)"
for i in 1 2 3; do
    state_read "GetState $i"
    sleep 1
done
code=$(curl -sS -m 10 -o "$WH_TMP/metrics.out" -w '%{http_code}' "$M")
[ "$code" = 200 ] || wh_fail "the admin's /metrics answered HTTP $code while the syncs are held"
grep -q '^walhook_store_disk_requests ' "$WH_TMP/metrics.out" ||
    wh_fail "the admin's /metrics has no store metrics while the syncs are held: $(grep -c . "$WH_TMP/metrics.out") lines"
refused=$(wh_store_metric walhook_store_disk_requests_refused_total)
awk -v r="$refused" 'BEGIN { exit !(r > 0) }' ||
    wh_fail "the store refused no write while the syncs were held (refused: $refused)"
grep -q "the store refused it, its writes are waiting for the disk" "$WH_TMP/ingestor.log" ||
    wh_fail "the ingestor did not log its refused Append: $(grep -i append "$WH_TMP/ingestor.log" | tail -n 3)"
[ -e "$GATE.held" ] || wh_fail "the gate let the sync go (the scenario did not run)"
wait "$patch_pid"
wh_log "the PATCH whose state write waited at the gate: HTTP $(cat "$WH_TMP/patch.code")"
wh_log "while held: GetState and /metrics answered, $refused writes refused, $(wh_store_metric walhook_store_disk_requests) waiting"

# 3. the gate opens: everything delivered once and acknowledged
rm -f "$GATE"
wh_log "the gate is open"
wh_wait_until 60 received_all 1 20 || wh_fail "not every row 1-20 reached the receiver"
wh_wait_slot_flush "$END" 60 || wh_fail "the gate opened, yet the confirmed flush never reached $END"
wh_wait_until 30 wh_store_settled || wh_fail "the store did not settle: an offset not committed"
# every event (the rows' and the table's schema event) stored once and
# delivered once
wh_items_stored_once 20 delivered_once
wh_pass "with the WAL syncs held past the callers' timeouts, GetState and /metrics were answered ($refused writes refused); after, 20 rows delivered once, stored once, acknowledged"
