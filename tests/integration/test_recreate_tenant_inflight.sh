#!/usr/bin/env bash
# A tenant removed over the admin's REST API while a request of its target
# tb is still at the receiver, with two dispatcher replicas sharing tb
# through leases, and created again with tb under the same name and URL
# (and a new slot). The receiver answers the old request (its row is
# "old-") after DELAY ms and counts POSTs that overlap another. Two rounds:
#   live  the replica holding tb's lease keeps it through the removal (as
#         for a removed target) and posts to the tb created again once its
#         old request ended;
#   dead  the replica holding it dies right after the removal (kill -9: its
#         request stays at the receiver, which goes on handling it): the
#         lease stays with it until it lapses, and the other replica's
#         takeover wait then covers the request timeout.
# Each time no POST overlaps another and the new rows arrive after the old
# request's.
# Before: removing the tenant freed its targets' leases in the store (a
# removed target's lease was kept, a removed tenant's not): the holder's
# renewal failed ("lost"), and the other replica could acquire tb of the
# tenant created again at once, without a takeover wait, and post the new
# rows while the old request was still at the receiver (dead: always).
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
source "$(dirname "$0")/../lib/recreate.sh"
N=6
DELAY=8000
export WALHOOK_DISPATCHER_HTTP_TIMEOUT_MS=10000
export WALHOOK_DISPATCHER_LEASE_TTL_MS=2000
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-admin walhook-receiver
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
pg_psql -c "CREATE DATABASE shop_b" >/dev/null || wh_fail "cannot create the second database"
DSN_B="${PG_DSN%/*}/shop_b"
psql -X -q "$DSN_B" -c "CREATE TABLE items (id int PRIMARY KEY, v text)" >/dev/null ||
    wh_fail "table setup failed"
OUT="$WH_TMP/got.jsonl"
wh_start_receiver recv "$OUT" --delay-ms "$DELAY" --delay-match '"old-'
RP=$WH_RPORT
DATA="$WH_TMP/data"
mkdir -m 700 "$DATA"
APORT=$(wh_free_port)
A="http://127.0.0.1:$APORT"
CONF="$WH_TMP/walhook.conf"
# the file's tenant has no database to stream from and no target: only
# tenant b runs
wh_write_conf "$CONF" "postgresql://unused@127.0.0.1:1/x" "$DATA" "$APORT"
export WALHOOK_ADMIN_ADMIN_TOKEN=admin-token-of-test-recreate-tenant-0123
TOKEN=$WALHOOK_ADMIN_ADMIN_TOKEN
wh_spawn store "$BIN/walhook-store" -c "$CONF"
wh_wait_until 30 test -S "$DATA/store.sock" || wh_fail "the store did not start"
wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
wh_wait_http "$A/livez" 30 || wh_fail "the admin does not answer /livez"
for d in d1 d2; do
    WALHOOK_DISPATCHER_ID=$d wh_spawn "dispatcher-$d" "$BIN/walhook-dispatcher" -c "$CONF"
done
tenant_b() { # $1: slot
    wh_admin_api POST /v1/tenants "{\"name\":\"b\",\"source\":{\"dsn\":\"$DSN_B\",\"slot\":\"$1\",\"publication\":\"wh_b\"},\"targets\":[{\"name\":\"tb\",\"url\":\"http://127.0.0.1:$RP/b\"}]}"
    [ "$CODE" = 201 ]
}
tenant_b wh_b || wh_fail "creating tenant b: $CODE: $BODY"
wh_spawn ingestor-b1 "$BIN/walhook-ingestor" -c "$CONF" --tenant b
wh_wait_slot_active wh_b 60 || wh_fail "tenant b's slot is not streaming"

insert() { psql -X -q "$DSN_B" -c "INSERT INTO items VALUES ($1, '$2')" >/dev/null ||
    wh_fail "insert of $2 failed"; }

# round NAME KILL SLOT: tb delivers, a request of it waits at the
# receiver, tenant b is removed (KILL=1: then its lease holder dies), and
# created again with slot SLOT; N new rows are inserted
ID=0
round() {
    local r=$1 kill=$2 slot=$3 ov0 ov lo ln h
    ID=$((ID + 1))
    insert $ID "warm-$r"
    wh_wait_until 30 has "warm-$r" || wh_fail "$r: tb delivers nothing"
    ov0=$(overlaps)
    ID=$((ID + 1))
    insert $ID "old-$r"
    wh_wait_until 10 posting || wh_fail "$r: no request of tb at the receiver"
    for h in "$WH_TMP"/dispatcher-d*.log; do wc -l <"$h" >"$h.mark"; done
    wh_admin_api DELETE /v1/tenants/b
    [ "$CODE" = 200 ] || [ "$CODE" = 204 ] || wh_fail "$r: removing tenant b: $CODE: $BODY"
    # the replica holding tb lets its request end (the other never had it)
    wh_wait_until 10 has_holder || wh_fail "$r: no dispatcher let tb's request end after the removal"
    H=$(basename "$(holder)" .log)
    if [ "$kill" = 1 ]; then
        wh_log "$r: tb's request is at the receiver; its holder ($H) dies"
        wh_kill "$H" KILL
    fi
    wh_kill "$ING"
    tenant_b "$slot" || wh_fail "$r: creating tenant b again: $CODE: $BODY"
    ING=ingestor-$slot
    wh_spawn "$ING" "$BIN/walhook-ingestor" -c "$CONF" --tenant b
    wh_wait_slot_active "$slot" 60 || wh_fail "$r: the new tenant b's slot is not streaming"
    psql -X -q "$DSN_B" -c "INSERT INTO items SELECT $ID + g, 'new-$r-' || g FROM generate_series(1, $N) g" \
        >/dev/null || wh_fail "$r: insert failed"
    ID=$((ID + N))
    wh_wait_until 60 new_all "$r" ||
        wh_fail "$r: the target of the tenant created again delivered $(new_count "$r") of the $N new rows"
    ov=$(overlaps)
    [ "${ov:-x}" = "${ov0:-y}" ] ||
        wh_fail "$r: $((ov - ov0)) POST(s) to tb overlapped another: another incarnation posted while the old request was still at the receiver"
    wh_wait_until 10 has "old-$r" || wh_fail "$r: the old request never completed at the receiver"
    lo=$(line_of "old-$r")
    ln=$(line_of "new-$r-")
    [ -n "$lo" ] && [ -n "$ln" ] && [ "$ln" -gt "$lo" ] ||
        wh_fail "$r: the new rows arrived before the old request ended (lines $ln, $lo)"
    wh_log "$r: $(new_count "$r")/$N new rows after the old request, no overlap (holder $H)"
}
# the lines a dispatcher logged since the round's mark
since_mark() { tail -n +$(($(cat "$1.mark" 2>/dev/null || echo 0) + 1)) "$1" 2>/dev/null; }
holder() {
    local h
    for h in "$WH_TMP"/dispatcher-d*.log; do
        since_mark "$h" | grep -q 'target b/tb: letting its' && { echo "$h"; return; }
    done
}
has_holder() { [ -n "$(holder)" ]; }
ING=ingestor-b1
round live 0 wh_b2
# the holder kept the lease through the removal: no renewal was refused
grep -q 'lease of b/tb lost' "$WH_TMP"/dispatcher-d*.log &&
    wh_fail "live: a replica lost the lease of tb across the removal of its tenant"
round dead 1 wh_b3
grep -q 'lease of b/tb: posting starts in' "$WH_TMP"/dispatcher-d*.log ||
    wh_fail "dead: the replica that took tb over did not wait (no 'posting starts in' line)"
wh_pass "tenant b removed with tb's request at the receiver and created again, its lease holder alive (kept the lease) and killed (the other replica waited): no overlapping POST, the $N new rows after the old request each time"
