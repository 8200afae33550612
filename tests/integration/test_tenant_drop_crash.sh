#!/usr/bin/env bash
# A store that stops between the synced state write that removes a tenant
# and the drop of the tenant's data, even when it starts again with a
# configuration file naming the tenant (the test hook
# WH_TEST_STORE_EXIT_AFTER_TENANT_REMOVAL=1 makes it _exit(137) right
# there, as a crash would) drops that data when it starts again: a tenant
# re-created under the same name then gets only its own new changes, none
# of the removed tenant's undelivered events.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-admin walhook-receiver
command -v jq >/dev/null || wh_fail "jq is missing (scripts/install-deps.sh --test)"
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
pg_psql -c "CREATE DATABASE shop_b" >/dev/null || wh_fail "cannot create the second database"
DSN_B="${PG_DSN%/*}/shop_b"
psql -X -q "$DSN_B" -c "CREATE TABLE items (id int PRIMARY KEY, v text)" >/dev/null ||
    wh_fail "table setup failed"
DATA="$WH_TMP/data"
mkdir -m 700 "$DATA"
APORT=$(wh_free_port)
A="http://127.0.0.1:$APORT"
CONF="$WH_TMP/walhook.conf"
# the file's tenant has no database to stream from: only tenant b runs
wh_write_conf "$CONF" "postgresql://unused@127.0.0.1:1/x" "$DATA" "$APORT" "http://127.0.0.1:9/hook"
TOKEN=admin-token-$RANDOM-0123456789
WH_TEST_STORE_EXIT_AFTER_TENANT_REMOVAL=1 wh_spawn store "$BIN/walhook-store" -c "$CONF"
wh_wait_until 20 test -S "$DATA/store.sock" || wh_fail "the store did not start"
WALHOOK_ADMIN_ADMIN_TOKEN=$TOKEN wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
wh_wait_http "$A/livez" 30 || wh_fail "the admin does not answer /livez"
wh_spawn dispatcher "$BIN/walhook-dispatcher" -c "$CONF"
wh_start_receiver recv "$WH_TMP/got.jsonl"
api() { wh_admin_api "$@"; }

# tenant b, its target paused: 20 OLD rows stored, none delivered
api POST /v1/tenants "{\"name\":\"b\",\"source\":{\"dsn\":\"$DSN_B\",\"slot\":\"wh_b\",\"publication\":\"wh_b\"},\"targets\":[{\"name\":\"tb\",\"url\":\"http://127.0.0.1:$WH_RPORT/b\",\"paused\":true}]}"
[ "$CODE" = 201 ] || wh_fail "creating tenant b: $CODE: $BODY"
wh_spawn ingestor "$BIN/walhook-ingestor" -c "$CONF" --tenant b
wh_wait_slot_active wh_b 60 || wh_fail "tenant b's slot is not streaming"
for i in $(seq 1 20); do
    psql -X -q "$DSN_B" -c "INSERT INTO items VALUES ($i, 'OLD')" || wh_fail "insert failed"
done
LSN=$(pg_psql -At -c "SELECT pg_current_wal_lsn()")
wh_wait_slot_flush "$LSN" 60 wh_b || wh_fail "tenant b's changes were not stored (slot not confirmed)"
wh_kill ingestor

# the removal: the store exits right after its state write
STORE_PID=${WH_PIDS[store]}
api DELETE /v1/tenants/b
wh_wait_until 30 bash -c "! kill -0 $STORE_PID 2>/dev/null" ||
    wh_fail "the store did not exit at the test hook (DELETE answered $CODE: $BODY)"
wait "$STORE_PID"
rc=$?
[ "$rc" = 137 ] || wh_fail "the store exited $rc, not 137"
grep -q "test hook WH_TEST_STORE_EXIT_AFTER_TENANT_REMOVAL: exiting" "$WH_TMP/store.log" ||
    wh_fail "the store did not log its test hook"
grep -q "tenant b: column families dropped" "$WH_TMP/store.log" &&
    wh_fail "tenant b's data was dropped before the exit: the hook is in the wrong place"

# started again (without the hook): tenant b is not in the state, its data
# goes, though the configuration file names a tenant b now (its removal was
# marked with the state write, so the file does not keep the old data)
cp "$CONF" "$CONF.b"
cat >>"$CONF.b" <<CONFEOF
tenants = (
  { name = "b";
    source = { dsn = "$DSN_B"; slot = "wh_b_file"; publication = "wh_b"; create_slot = false; };
    targets = ( { name = "tf"; url = "http://127.0.0.1:9/file"; paused = true; } ); }
);
CONFEOF
wh_spawn store "$BIN/walhook-store" -c "$CONF.b"
started_twice() { [ "$(grep -c "store running on" "$WH_TMP/store.log")" -ge 2 ]; }
wh_wait_until 30 started_twice || wh_fail "the store did not start again"
grep -q "state: tenant b was being removed" "$WH_TMP/store.log" ||
    wh_fail "the restarted store did not drop tenant b's leftover data: $(grep -m3 'tenant b' "$WH_TMP/store.log")"
gone() { api GET /v1/tenants/b; [ "$CODE" = 404 ]; }
wh_wait_until 30 gone || wh_fail "tenant b is still in the state: $CODE: $BODY"

# tenant b again: another slot, its target not paused
recreate() {
    api POST /v1/tenants "{\"name\":\"b\",\"source\":{\"dsn\":\"$DSN_B\",\"slot\":\"wh_b2\",\"publication\":\"wh_b\"},\"targets\":[{\"name\":\"tb\",\"url\":\"http://127.0.0.1:$WH_RPORT/b\"}]}"
    [ "$CODE" = 201 ]
}
wh_wait_until 30 recreate || wh_fail "re-creating tenant b: $CODE: $BODY"
wh_spawn ingestor "$BIN/walhook-ingestor" -c "$CONF" --tenant b
wh_wait_slot_active wh_b2 60 || wh_fail "the new tenant b's slot is not streaming"
for i in 101 102 103; do
    psql -X -q "$DSN_B" -c "INSERT INTO items VALUES ($i, 'NEW')" || wh_fail "insert failed"
done
got_new() { [ "$(grep -o '"NEW"' "$WH_TMP/got.jsonl" 2>/dev/null | wc -l)" -ge 3 ]; }
wh_wait_until 60 got_new || wh_fail "the new tenant b's target did not get its 3 NEW rows"
OLD=$(grep -o '"OLD"' "$WH_TMP/got.jsonl" | wc -l)
[ "$OLD" = 0 ] || wh_fail "the new tenant b's target got $OLD OLD rows of the removed tenant"
wh_pass "store exit between the state write and the drop: the restarted store dropped the leftover data; re-created tenant b got 3 NEW rows and 0 of the 20 OLD ones"
