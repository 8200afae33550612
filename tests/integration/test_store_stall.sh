#!/usr/bin/env bash
# A disk that hangs (a frozen file system, a stalled network volume) fails
# nothing: before, /readyz stayed 200 while no write completed. The store
# runs with wh_syncgate.so preloaded: while the gate file exists its WAL
# syncs wait. store.write_stall_ms and ingestor.append_fail_ms are runtime
# settings: the daemons start with their defaults (10 s) and the test sets
# them low with PATCH /v1/settings (the store applies its bound with the
# state write, the ingestor logs its hook). Checked:
#   - while a sync is held, /readyz turns 503 naming the store and the
#     stalled write ("... waited N s for the disk"), and
#     walhook_store_write_stalled_seconds shows its age (the store's Stats
#     answers meanwhile);
#   - once the ingestor's append has failed (timed out) for longer than its
#     bound, the ingestor is not ready either, naming the store's error;
#   - the gate opened, /readyz is 200 again, and every row arrives (nothing
#     lost), the slot's confirmed flush passing them.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_syncgate_setup
wh_items_prepare
cat >>"$CONF" <<'EOF'
ipc = { timeout_ms = 3000; };
EOF
TOKEN=admin-token-$RANDOM-0123456789
export WALHOOK_ADMIN_ADMIN_TOKEN=$TOKEN
wh_spawn_gated_store
for d in ingestor dispatcher admin; do
    wh_spawn "$d" "$BIN/walhook-$d" -c "$CONF"
done
A="http://127.0.0.1:$APORT"
M="$A/metrics"
wh_wait_slot_active walhook 60 || wh_fail "the ingestor did not start streaming"

received_all() { # FROM TO
    local i
    for ((i = $1; i <= $2; i++)); do
        grep -q "\"after\":{\"id\":$i}" "$WH_TMP/received.jsonl" 2>/dev/null || return 1
    done
}
readyz() { # sets CODE; the body in $WH_TMP/readyz.json
    CODE=$(curl -s -o "$WH_TMP/readyz.json" -w '%{http_code}' --max-time 5 "$A/readyz") || CODE=000
}
# not_ready PATTERN: /readyz is 503 and its body matches PATTERN
not_ready() {
    readyz
    [ "$CODE" = 503 ] && grep -qE "$1" "$WH_TMP/readyz.json"
}
ready() {
    readyz
    [ "$CODE" = 200 ]
}
metric_s() { # NAME: its value (seconds, summed over its series) on the admin's /metrics
    curl -fsS --max-time 5 "$M" |
        awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $NF } END { printf "%.1f\n", s }'
}

pg_psql -c "INSERT INTO items SELECT generate_series(1, 10)" >/dev/null || wh_fail "insert 1-10 failed"
wh_wait_until 60 received_all 1 10 || wh_fail "rows 1-10 not delivered"
wh_wait_until 30 ready || wh_fail "/readyz not 200 before the stall: $(cat "$WH_TMP/readyz.json")"

# both bounds changed at runtime, no restart
wh_admin_api PATCH /v1/settings '{"store.write_stall_ms": 1500, "ingestor.append_fail_ms": 1000}'
[ "$CODE" = 200 ] || wh_fail "PATCH store.write_stall_ms and ingestor.append_fail_ms: $CODE $BODY"
wh_wait_until 30 grep -q 'runtime settings: .*append_fail_ms=1000' "$WH_TMP/ingestor.log" ||
    wh_fail "the ingestor did not apply ingestor.append_fail_ms 1000"

# the disk hangs: every WAL sync of the store waits at the gate
touch "$GATE"
pg_psql -c "INSERT INTO items SELECT generate_series(11, 20)" >/dev/null ||
    wh_fail "insert 11-20 failed"
END=$(pg_psql -At -c "SELECT pg_current_wal_lsn()")
wh_wait_until 30 test -e "$GATE.held" || wh_fail "no WAL sync of the store reached the gate"
wh_wait_until 20 not_ready '"daemon":"store","up":true,"ready":false,"state":"write-stalled","reason":"a write has waited [0-9.]+ s for the disk' ||
    wh_fail "/readyz did not turn 503 naming the store's stalled write while its WAL sync was held: $CODE $(cat "$WH_TMP/readyz.json")"
wh_log "sync held: /readyz $CODE $(cut -c1-400 "$WH_TMP/readyz.json")"
stalled=$(metric_s walhook_store_write_stalled_seconds)
awk -v s="${stalled:-0}" 'BEGIN { exit !(s >= 1.5) }' ||
    wh_fail "walhook_store_write_stalled_seconds is '${stalled}' while a sync has been held past 1.5 s"
# the ingestor's append times out (ipc.timeout_ms 3 s), is retried and
# fails on: past ingestor.append_fail_ms the ingestor is not ready too
wh_wait_until 20 not_ready '"daemon":"ingestor","up":true,"ready":false,"state":"append-failing[^"]*","reason":"[^"]*appends to the store have failed for [0-9.]+ s: [^"]*no reply within 3000 ms' ||
    wh_fail "/readyz does not name the ingestor's failing appends: $CODE $(cat "$WH_TMP/readyz.json")"
failing=$(metric_s walhook_ingestor_append_failing_seconds)
awk -v s="${failing:-0}" 'BEGIN { exit !(s >= 1) }' ||
    wh_fail "walhook_ingestor_append_failing_seconds is '${failing}' while appends fail"
wh_log "appends failing: $(grep -o '"daemon":"ingestor"[^}]*' "$WH_TMP/readyz.json")"
_wh_slot_flushed "$END" walhook && wh_fail "the slot's confirmed flush passed rows whose sync is held"

# the disk answers again
rm -f "$GATE"
wh_wait_until 30 ready || wh_fail "/readyz not 200 after the gate opened: $CODE $(cat "$WH_TMP/readyz.json")"
wh_wait_slot_flush "$END" 60 || wh_fail "the gate opened, yet the confirmed flush never reached $END"
pg_psql -c "INSERT INTO items SELECT generate_series(21, 25)" >/dev/null || wh_fail "insert 21-25 failed"
wh_wait_until 60 received_all 1 25 || wh_fail "not every row 1-25 reached the receiver"
grep -q "appends to the store succeed again after" "$WH_TMP/ingestor.log" ||
    wh_fail "the ingestor did not log that its appends succeed again"
ready || wh_fail "/readyz not 200 at the end: $CODE $(cat "$WH_TMP/readyz.json")"
wh_pass "bounds set at runtime; a held WAL sync made /readyz 503 naming the store's stalled write, then the ingestor's failing appends; 200 again once it passed, rows 1-25 all delivered"
