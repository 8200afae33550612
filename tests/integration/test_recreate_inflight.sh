#!/usr/bin/env bash
# A target deleted and created again (same name, same URL) through the
# admin's REST API while a request of its old incarnation is still at the
# receiver: the new incarnation posts nothing before that request has
# ended, so the receiver never sees two requests to the target at once, and
# the rows inserted after the creation all arrive, after the old request's.
# The receiver answers the old incarnation's request (its rows are "old-")
# after DELAY ms, the others at once, and counts POSTs that overlap another.
# Four rounds on one target:
#   plain    one dispatcher without leases;
#   leased   two dispatcher replicas sharing the target through leases;
# each once with the dispatchers stopped (SIGSTOP) across the DELETE and
# the POST, so they read both writes as one state version (the new
# created_version), and once with the POST sent after the dispatcher
# applied the removal (two versions; with leases the holder keeps the
# lease of the removed target while its request is at the receiver).
# Last, rt is deleted for good: the replica holding its lease releases it
# once a request timeout has passed (dispatcher.http_timeout_ms, 5 s here).
# Before: the old request was abandoned and the new incarnation posted at
# once (and with leases the removal freed the lease for any replica to take
# at once), so the new rows overlapped the old request and arrived before
# it.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
source "$(dirname "$0")/../lib/recreate.sh"
N=12
DELAY=2500
export WALHOOK_DISPATCHER_HTTP_TIMEOUT_MS=5000
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-admin walhook-receiver
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
pg_psql -c "CREATE TABLE items (id int PRIMARY KEY, v text); CREATE PUBLICATION walhook FOR ALL TABLES;" \
    >/dev/null || wh_fail "cannot create the table"
OUT="$WH_TMP/rt.jsonl"
wh_start_receiver recv "$OUT" --delay-ms "$DELAY" --delay-match '"old-'
RP=$WH_RPORT
APORT=$(wh_free_port)
CONF="$WH_TMP/walhook.conf"
wh_write_conf "$CONF" "$PG_DSN" "$WH_TMP/data" "$APORT"
mkdir -m 700 "$WH_TMP/data"
export WALHOOK_ADMIN_ADMIN_TOKEN=admin-token-of-test-recreate-inflight-0123
TOKEN=$WALHOOK_ADMIN_ADMIN_TOKEN
A="http://127.0.0.1:$APORT"
TG=/v1/tenants/default/targets
BODYJ="{\"name\":\"rt\",\"url\":\"http://127.0.0.1:$RP/hook\"}"
wh_spawn store "$BIN/walhook-store" -c "$CONF"
wh_wait_until 30 test -S "$WH_TMP/data/store.sock" || wh_fail "the store did not start"
wh_spawn ingestor "$BIN/walhook-ingestor" -c "$CONF"
wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
wh_wait_http "$A/livez" 30 || wh_fail "the admin does not answer /livez"
wh_wait_slot_active walhook 60 || wh_fail "the ingestor never started streaming"
wh_admin_api POST $TG "$BODYJ"
[ "$CODE" = 201 ] || wh_fail "create rt: $CODE $BODY"

PROBLEMS=()
problem() { PROBLEMS+=("$1"); wh_log "PROBLEM: $1"; }
ID=0
insert() { ID=$((ID + 1)); pg_psql -c "INSERT INTO items VALUES ($ID, '$1')" >/dev/null ||
    wh_fail "insert of $1 failed"; }

removals() { cat "$WH_TMP"/dispatcher*.log 2>/dev/null | grep -c 'target default/rt removed$'; }
removed_since() { [ "$(removals)" -gt "$1" ]; }
# round NAME HOW PID...: the target delivers, a request of it waits at the
# receiver, DELETE + POST (HOW stop: while PID... are stopped; apart: the
# POST once a dispatcher applied the removal), then N rows in 4
# transactions
round() {
    local r=$1 how=$2 p i ov0 ov c1 c2 rm0
    shift 2
    insert "warm-$r"
    wh_wait_until 30 has "warm-$r" || wh_fail "$r: rt delivers nothing"
    ov0=$(overlaps)
    insert "old-$r"
    wh_wait_until 10 posting || wh_fail "$r: no request of rt at the receiver"
    if [ "$how" = stop ]; then for p in "$@"; do kill -STOP "$p"; done; fi
    rm0=$(removals)
    wh_admin_api DELETE "$TG/rt"
    c1=$CODE
    if [ "$how" = apart ]; then
        wh_wait_until 10 removed_since "$rm0" || wh_fail "$r: no dispatcher removed rt"
    fi
    wh_admin_api POST $TG "$BODYJ"
    c2=$CODE
    if [ "$how" = stop ]; then for p in "$@"; do kill -CONT "$p"; done; fi
    [ "$c1" = 200 ] || [ "$c1" = 204 ] || wh_fail "$r: delete rt: $c1"
    [ "$c2" = 201 ] || wh_fail "$r: create rt again: $c2 $BODY"
    for i in 0 1 2 3; do
        pg_psql -c "INSERT INTO items SELECT $ID + g, 'new-$r-' || g FROM generate_series($((i * N / 4 + 1)), $(((i + 1) * N / 4))) g" \
            >/dev/null || wh_fail "$r: insert failed"
    done
    ID=$((ID + N))
    wh_wait_until 30 new_all "$r" ||
        problem "$r: the new incarnation delivered $(new_count "$r") of the $N rows inserted after its creation"
    ov=$(overlaps)
    [ "${ov:-x}" = "${ov0:-y}" ] ||
        problem "$r: $((ov - ov0)) POST(s) to rt overlapped another (the old incarnation's request was still at the receiver)"
    wh_wait_until 10 has "old-$r" || problem "$r: the old incarnation's request never completed"
    local lo ln
    lo=$(line_of "old-$r")
    ln=$(line_of "new-$r-")
    if [ -n "$lo" ] && [ -n "$ln" ] && [ "$ln" -lt "$lo" ]; then
        problem "$r: rows of the new incarnation arrived before the old incarnation's request ended"
    fi
    wh_log "$r: $(new_count "$r")/$N new rows, overlaps $((${ov:-0} - ${ov0:-0}))"
}

# ---- one dispatcher, no leases
wh_spawn dispatcher "$BIN/walhook-dispatcher" -c "$CONF"
round plain-1v stop "${WH_PIDS[dispatcher]}"
round plain-2v apart
grep -q "target default/rt was deleted and created again" "$WH_TMP/dispatcher.log" ||
    problem "plain: no dispatcher line saying rt was deleted and created again (the one-version case was not made)"
wh_kill dispatcher

# ---- two replicas sharing the target through leases
export WALHOOK_DISPATCHER_LEASE_TTL_MS=2000
for d in d1 d2; do
    WALHOOK_DISPATCHER_ID=$d wh_spawn "dispatcher-$d" "$BIN/walhook-dispatcher" -c "$CONF"
done
round leased-1v stop "${WH_PIDS[dispatcher-d1]}" "${WH_PIDS[dispatcher-d2]}"
round leased-2v apart
grep -q "target default/rt was deleted and created again" "$WH_TMP"/dispatcher-d*.log ||
    problem "leased: no dispatcher line saying rt was deleted and created again (the one-version case was not made)"
# deleted for good: its lease is kept while a request may be at the
# receiver, then released
wh_admin_api DELETE "$TG/rt"
[ "$CODE" = 200 ] || [ "$CODE" = 204 ] || wh_fail "delete rt: $CODE"
# the admin's /metrics answered with the replicas' leases, none of rt held
rt_free() {
    local m
    m=$(curl -fsS --max-time 3 "$A/metrics") || return 1
    grep -q '^walhook_dispatcher_leases_held' <<<"$m" &&
        ! grep -q '^walhook_target_lease_held{.*target="rt"} 1$' <<<"$m"
}
wh_wait_until 20 rt_free || problem "the lease of rt, deleted, is still held"

[ ${#PROBLEMS[@]} -eq 0 ] || wh_fail "${#PROBLEMS[@]} problem(s): $(printf '%s; ' "${PROBLEMS[@]}")"
wh_pass "rt deleted and created again 4 times with a request at the receiver (no leases, leases; one state version, two): no overlapping POST, the new incarnation's $N rows each time after the old request"
