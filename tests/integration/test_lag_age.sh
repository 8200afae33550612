#!/usr/bin/env bash
# walhook_replication_lag_bytes is the ingestor's figure from the
# replication stream: while the ingestor is disconnected from PostgreSQL it
# keeps its last value. walhook_replication_lag_age_seconds says how old it
# is: 0 while the stream is read, growing with the wall clock while
# PostgreSQL is down, 0 again once the ingestor reconnected by itself.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_ingest_admin_setup

age() { wh_metric "$M" walhook_replication_lag_age_seconds; }
current() { [ "$(age)" = 0 ]; }
wh_wait_until 30 current || wh_fail "walhook_replication_lag_age_seconds is not 0 while streaming: $(curl -s "$M" | grep replication_lag)"

pg_halt immediate || wh_fail "cannot stop PostgreSQL"
wh_log "PostgreSQL stopped"
aged() { [ "$(age)" -ge "$1" ] 2>/dev/null; }
wh_wait_until 30 aged 2 || wh_fail "the lag's age did not grow while PostgreSQL is down: $(curl -s "$M" | grep replication_lag)"
first=$(age)
wh_wait_until 30 aged $((first + 2)) || wh_fail "the lag's age stays at $first while PostgreSQL is down"
[ "$(wh_metric "$M" walhook_replication_lag_bytes)" -ge 0 ] ||
    wh_fail "walhook_replication_lag_bytes is no longer exported while disconnected"
grep -q "reconnecting" "$WH_TMP/ingestor.log" || wh_fail "the ingestor did not notice the disconnect"
seen=$(age)

pg_resume || wh_fail "cannot start PostgreSQL again"
wh_wait_until 90 current || wh_fail "the lag's age is $(age) s, not 0, after PostgreSQL came back: $(tail -3 "$WH_TMP/ingestor.log")"
wh_wait_slot_active walhook 30 || wh_fail "the slot is not active after the reconnect"
wh_pass "the lag figure's age: 0 while streaming, ${seen} s and growing while PostgreSQL was down, 0 again after the reconnect"
