#!/usr/bin/env bash
# Two tenants (two databases on the same PostgreSQL server, each with its own
# slot and publication) through one store and one dispatcher, under
# `walhook up`, which runs one ingestor per tenant of the runtime state: each
# tenant's changes reach its own target complete and in order, with its own
# ids; the store holds each tenant's positions once; /readyz covers both
# ingestors; a changed source (tenant b moves to another slot, over the REST
# API) makes its ingestor reconnect there; removing a tenant from the state
# stops its ingestor.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
CHANGES=${CHANGES:-5000}
trap wh_cleanup EXIT
wh_require_bins walhook walhook-store walhook-ingestor walhook-dispatcher walhook-admin \
    walhook-receiver tests/wh_loadgen tests/wh_check tests/wh_statectl
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
pg_psql -c "CREATE DATABASE shop_b" || wh_fail "cannot create the second database"
DSN_A="$PG_DSN"
DSN_B="${PG_DSN%/*}/shop_b"
for dsn in "$DSN_A" "$DSN_B"; do
    "$BIN/tests/wh_loadgen" --dsn "$dsn" --tables 2 --setup-only || wh_fail "table setup failed"
done

RA=$(wh_free_port) RB=$(wh_free_port) APORT=$(wh_free_port)
CONF="$WH_TMP/walhook.conf"
cat >"$CONF" <<EOF
tenant = "a";
data_dir = "$WH_TMP/data";
log_level = "info";
source = { dsn = "$DSN_A"; slot = "wh_a"; publication = "wh_a"; create_slot = true; };
admin = { listen = "127.0.0.1:$APORT"; };
targets = ( { name = "ta"; url = "http://127.0.0.1:$RA/a"; } );
tenants = (
  { name = "b";
    source = { dsn = "$DSN_B"; slot = "wh_b"; publication = "wh_b"; create_slot = true; };
    targets = ( { name = "tb"; url = "http://127.0.0.1:$RB/b"; } ); }
);
EOF
wh_spawn receiver_a "$BIN/walhook-receiver" --listen "127.0.0.1:$RA" --out "$WH_TMP/a.jsonl"
wh_spawn receiver_b "$BIN/walhook-receiver" --listen "127.0.0.1:$RB" --out "$WH_TMP/b.jsonl"
wh_spawn walhook "$BIN/walhook" up -c "$CONF"
wh_wait_http "http://127.0.0.1:$APORT/readyz" 90 ||
    wh_fail "walhook never became ready ($(curl -s "http://127.0.0.1:$APORT/readyz"))"
wh_wait_slot_active wh_a 30 || wh_fail "tenant a's slot is not streaming"
wh_wait_slot_active wh_b 30 || wh_fail "tenant b's slot is not streaming"
grep -q "started walhook-ingestor for tenant b" "$WH_TMP/walhook.log" ||
    wh_fail "walhook up did not start an ingestor for tenant b"
# a consumer of tenant a that never reads holds its GC, so the dump at the
# end can show every position of a stored once
"$BIN/tests/wh_statectl" -c "$CONF" set-offset a hold 0/0:0 >/dev/null ||
    wh_fail "cannot register the consumer that holds tenant a's GC"

wh_spawn load_a "$BIN/tests/wh_loadgen" --dsn "$DSN_A" --changes "$CHANGES" --seed 1 --max-txn 100 \
    --tables 2 --expect "$WH_TMP/expected_a.jsonl"
wh_spawn load_b "$BIN/tests/wh_loadgen" --dsn "$DSN_B" --changes "$CHANGES" --seed 2 --max-txn 100 \
    --tables 2 --expect "$WH_TMP/expected_b.jsonl"
wait "${WH_PIDS[load_a]}" || wh_fail "load generation on tenant a failed"
wait "${WH_PIDS[load_b]}" || wh_fail "load generation on tenant b failed"
unset "WH_PIDS[load_a]" "WH_PIDS[load_b]"

_tenant_received() { # TENANT EXPECT FILE
    [ "$(wh_count_events "$3")" -ge "$(wc -l <"$2")" ] &&
        "$BIN/tests/wh_check" --expect "$2" --received "$3" --tenant "$1" >/dev/null 2>&1
}
wh_wait_until 120 _tenant_received a "$WH_TMP/expected_a.jsonl" "$WH_TMP/a.jsonl" ||
    wh_fail "tenant a's target did not get its changes complete and in order"
wh_wait_until 120 _tenant_received b "$WH_TMP/expected_b.jsonl" "$WH_TMP/b.jsonl" ||
    wh_fail "tenant b's target did not get its changes complete and in order"
grep -q '"tenant":"b"' "$WH_TMP/a.jsonl" && wh_fail "tenant a's target got events of tenant b"
grep -q '"tenant":"a"' "$WH_TMP/b.jsonl" && wh_fail "tenant b's target got events of tenant a"
METRICS="http://127.0.0.1:$APORT/metrics"
[ "$(wh_metric_label "$METRICS" walhook_changes_received_total 'tenant="b"')" -ge "$CHANGES" ] ||
    wh_fail "/metrics has no walhook_changes_received_total{tenant=b}"

# tenant b's source moves to another slot: its ingestor drains, reconnects
# there and streams on
wh_wait_until 20 test -s "$WH_TMP/data/admin.token" || wh_fail "the admin wrote no token file"
TOKEN=$(grep -v '^read:' "$WH_TMP/data/admin.token" | head -n 1)
curl -fsS --max-time 10 -X PATCH -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"source":{"slot":"wh_b2"}}' "http://127.0.0.1:$APORT/v1/tenants/b" >/dev/null ||
    wh_fail "PATCH of tenant b's source failed"
wh_wait_slot_active wh_b2 30 || wh_fail "tenant b's ingestor did not move to slot wh_b2"
grep -q "tenant b: the source changed" "$WH_TMP/walhook.log" ||
    wh_fail "the ingestor did not log the source change"
wh_wait_until 20 wh_slot_free wh_b || wh_fail "the old slot wh_b is still in use"
psql -X -q -d "$DSN_B" -c "SELECT pg_logical_emit_message(false, 'wh-moved', 'x')" >/dev/null ||
    wh_fail "cannot emit a message on tenant b"
wh_wait_until 20 grep -q '"prefix":"wh-moved"' "$WH_TMP/b.jsonl" ||
    wh_fail "tenant b's target got nothing through the new slot"
pg_psql -c "SELECT pg_drop_replication_slot('wh_b')" >/dev/null || true

# removing tenant b from the state stops its ingestor (and only that one)
cursors() { wh_metric "http://127.0.0.1:$APORT/metrics" walhook_store_reader_cursors; }
cursors_le() { [ "$(cursors)" -le "$1" ] 2>/dev/null; }
c0=$(cursors)
# ... while it streams: its ingestor Appends until it sees the removal, and a
# late Append must not bring the dropped column families back (the store
# refuses it: "tenant b was removed")
psql -X -q -d "$DSN_B" -c "DO \$\$ BEGIN FOR i IN 1..6000 LOOP
    PERFORM pg_logical_emit_message(false, 'wh-late', i::text); PERFORM pg_sleep(0.005);
    END LOOP; END \$\$" >/dev/null 2>&1 &
late=$!
wh_wait_until 20 grep -q '"prefix":"wh-late"' "$WH_TMP/b.jsonl" ||
    wh_fail "tenant b's target got none of the messages emitted during its removal"
"$BIN/tests/wh_statectl" -c "$CONF" del-tenant b >/dev/null || wh_fail "cannot remove tenant b"
# its reader cursor (which pins its column families' files) closes at once,
# not after the 30 s idle time
[ "$c0" -ge 2 ] 2>/dev/null || wh_fail "expected a reader cursor per tenant, the store has $c0"
wh_wait_until 5 cursors_le $((c0 - 1)) ||
    wh_fail "tenant b's reader cursor still open 5 s after its removal ($(cursors) of $c0)"
wh_log "reader cursors: $c0 before tenant b's removal, $(cursors) after"
wh_wait_until 20 grep -q "walhook-ingestor of tenant b (pid [0-9]*) exited with code 0" \
    "$WH_TMP/walhook.log" || wh_fail "tenant b's ingestor did not stop after its removal"
wh_wait_until 20 wh_slot_free wh_b || wh_fail "tenant b's slot is still in use"
kill "$late" 2>/dev/null
wait "$late" 2>/dev/null
wh_log "late requests of removed tenant b refused: $(grep -c 'tenant b was removed (its data is dropped)' "$WH_TMP/walhook.log")"
[ -n "$(wh_slot_pid wh_a)" ] || wh_fail "tenant a's ingestor stopped too"

pid=${WH_PIDS[walhook]}
kill -TERM "$pid"
for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && wh_fail "walhook up did not stop within 20 s"
wait "$pid" || wh_fail "walhook up exited with an error"
unset "WH_PIDS[walhook]"
"$BIN/walhook-store" --dump -c "$CONF" >"$WH_TMP/dump.txt" || wh_fail "walhook-store --dump failed"
"$BIN/tests/wh_check" --dump "$WH_TMP/dump.txt" --count "$CHANGES" --tenant a ||
    wh_fail "the store does not hold tenant a's positions exactly once"
# the removed tenant's column families went with it; a's stayed
grep -q '^b ' "$WH_TMP/dump.txt" && wh_fail "the store still holds events of removed tenant b"
grep -q 'tenant b: column families dropped' "$WH_TMP/walhook.log" ||
    wh_fail "the store did not log dropping tenant b's column families"
wh_pass "2 tenants x $CHANGES changes, each complete and in order at its own target; each stored once; a changed source reconnected; removing a tenant stopped its ingestor and dropped its data, not the other's"
