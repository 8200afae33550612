#!/usr/bin/env bash
# walhook_replication_lag_age_seconds while a backfill fills the window: a
# backfill's watermark chunks go through the same window as the stream
# (ingestor.window_bytes), and with the store's WAL syncs held by
# wh_syncgate.so nothing is acknowledged, so the ingestor stops reading the
# stream and the lag figures freeze as in test_lag_age_window. The age
# counts from then, and is 0 again once the store acknowledged, the
# backfill finished and the stream is read. (The only other wait for window
# room, a chunk of the initial snapshot's export, comes before streaming,
# while the age counts since the ingestor started.)
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
TOKEN=admin-token-$RANDOM-0123456789
export WALHOOK_ADMIN_ADMIN_TOKEN=$TOKEN
export WALHOOK_SOURCE_SNAPSHOT_CHUNK_ROWS=100 # many chunks: the backfill is still running when the syncs are held
wh_syncgate_setup
wh_ingest_admin_setup "ingestor = { window_bytes = 65536; };"

age() { wh_metric "$M" walhook_replication_lag_age_seconds; }
current() { [ "$(age)" = 0 ]; }
aged() { [ "$(age)" -ge "$1" ] 2>/dev/null; }
figures() { curl -s --max-time 5 "$M" | grep -E '^walhook_(replication_lag|ingestor_unacked|ingestor_window_full)' | tr '\n' ' '; }

# about 20 MiB of rows, streamed first as inserts while the store syncs
pg_psql -c "CREATE TABLE bf (id int PRIMARY KEY, v text)" \
    -c "INSERT INTO bf SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, 20000) g" \
    >/dev/null || wh_fail "cannot create the table"
END_LSN=$(pg_psql -At -c "SELECT pg_current_wal_lsn()")
wh_wait_slot_flush "$END_LSN" 90 || wh_fail "the inserts were not confirmed: $(figures)"
wh_wait_until 30 current || wh_fail "walhook_replication_lag_age_seconds is not 0 while streaming: $(figures)"

API="http://127.0.0.1:$APORT/v1/tenants/default/backfill"
code=$(curl -sS -o "$WH_TMP/post.out" -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d '{"table": "public.bf"}' "$API")
[ "$code" = 202 ] || wh_fail "backfill request: HTTP $code ($(cat "$WH_TMP/post.out"))"
touch "$GATE" # after the request: the state's write syncs too
wh_log "backfill requested, the store's WAL syncs held"
wh_wait_until 60 aged 2 || wh_fail "the lag's age does not grow while the backfill waits for window room: $(figures)"
first=$(age)
[ "$first" -ge 2 ] 2>/dev/null || first=2 # a scrape that timed out: -1
wh_wait_until 30 aged $((first + 2)) ||
    wh_fail "the lag's age stays at $first s while the backfill waits: $(figures)"
seen=$(age)
wh_log "the lag's age $seen s: $(figures)"

rm -f "$GATE"
wh_log "the store's WAL syncs pass again"
bf_done() {
    curl -fsS -H "Authorization: Bearer $TOKEN" "$API" 2>/dev/null | grep -q '"state": *"done"'
}
wh_wait_until 120 bf_done || wh_fail "the backfill never finished: $(curl -sS -H "Authorization: Bearer $TOKEN" "$API" | head -c 400)"
pg_psql -c "INSERT INTO bf VALUES (0, 'x')" >/dev/null || wh_fail "cannot insert"
END_LSN=$(pg_psql -At -c "SELECT pg_current_wal_lsn()")
wh_wait_slot_flush "$END_LSN" 90 || wh_fail "the confirmed flush did not reach $END_LSN: $(figures)"
wh_wait_until 30 current || wh_fail "the lag's age is not 0 after the backfill: $(figures)"
wh_pass "the lag figure's age: 0 while streaming, ${seen} s and growing while a backfill waited for window room (store syncs held), 0 again once it finished"
