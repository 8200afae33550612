#!/usr/bin/env bash
# walhook_replication_lag_age_seconds while the ingestor is throttled: once
# ingestor.window_bytes are sent and not acknowledged (here the store's WAL
# syncs are held by wh_syncgate.so: nothing it is sent is acknowledged, its
# Stats still answer) the ingestor stops reading the replication stream, so
# walhook_replication_lag_bytes freezes while PostgreSQL goes on. The age
# counts from then, as while disconnected (it read 0 all along before), and
# is 0 again once the store acknowledged and the stream is read.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_syncgate_setup
wh_ingest_admin_setup "ingestor = { window_bytes = 65536; };"

age() { wh_metric "$M" walhook_replication_lag_age_seconds; }
current() { [ "$(age)" = 0 ]; }
aged() { [ "$(age)" -ge "$1" ] 2>/dev/null; }
full_for() { [ "$(wh_metric "$M" walhook_ingestor_window_full_seconds_total)" -ge "$1" ] 2>/dev/null; }
figures() { curl -s --max-time 5 "$M" | grep -E '^walhook_(replication_lag|ingestor_unacked|ingestor_window_full)' | tr '\n' ' '; }

pg_psql -c "CREATE TABLE big (id int PRIMARY KEY, v text)" >/dev/null ||
    wh_fail "cannot create the table"
wh_wait_until 30 current || wh_fail "walhook_replication_lag_age_seconds is not 0 while streaming: $(figures)"

touch "$GATE"
wh_log "the store's WAL syncs held"
# about 4 MiB of changes: many times the window (and the socket buffers)
pg_psql -c "INSERT INTO big SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, 4000) g" \
    >/dev/null || wh_fail "cannot insert"
END_LSN=$(pg_psql -At -c "SELECT pg_current_wal_lsn()")
wh_wait_until 60 full_for 2 || wh_fail "the ingestor's window did not fill: $(figures)"
wh_wait_until 30 aged 2 || wh_fail "the lag's age does not grow while the window is full: $(figures)"
first=$(age)
[ "$first" -ge 2 ] 2>/dev/null || first=2 # a scrape that timed out: -1
wh_wait_until 30 aged $((first + 2)) ||
    wh_fail "the lag's age stays at $first s while the window is full: $(figures)"
seen=$(age)
wh_log "the lag's age $seen s: $(figures)"

rm -f "$GATE"
wh_log "the store's WAL syncs pass again"
wh_wait_slot_flush "$END_LSN" 90 || wh_fail "the confirmed flush did not reach $END_LSN: $(figures)"
wh_wait_until 30 current || wh_fail "the lag's age is not 0 after the window drained: $(figures)"
wh_pass "the lag figure's age: 0 while streaming, ${seen} s and growing while the window was full (store syncs held), 0 again once it drained"
