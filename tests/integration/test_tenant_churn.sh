#!/usr/bin/env bash
# Tenants created and removed over the admin REST API, one at a time, under
# 270 distinct names (more than the 256 tenants with data a store keeps at
# once), all in one store process: a removed tenant no longer counts, so a
# tenant created after them stores its changes and delivers them. The
# churn goes through the store and the admin alone (no ingestor per
# tenant); the last tenant then gets an ingestor and the dispatcher.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-admin walhook-receiver
command -v jq >/dev/null || wh_fail "jq is missing (scripts/install-deps.sh --test)"
NAMES=${NAMES:-270}
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
pg_psql -c "CREATE TABLE items (id int PRIMARY KEY, v text)" >/dev/null || wh_fail "table setup failed"
DATA="$WH_TMP/data"
mkdir -m 700 "$DATA"
APORT=$(wh_free_port)
A="http://127.0.0.1:$APORT"
CONF="$WH_TMP/walhook.conf"
wh_write_conf "$CONF" "postgresql://unused@127.0.0.1:1/x" "$DATA" "$APORT" "http://127.0.0.1:9/hook"
TOKEN=admin-token-$RANDOM-0123456789
wh_spawn store "$BIN/walhook-store" -c "$CONF"
wh_wait_until 20 test -S "$DATA/store.sock" || wh_fail "the store did not start"
WALHOOK_ADMIN_ADMIN_TOKEN=$TOKEN wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
wh_wait_http "$A/livez" 30 || wh_fail "the admin does not answer /livez"
api() { wh_admin_api "$@"; }

STORE_PID=${WH_PIDS[store]}
for i in $(seq 1 "$NAMES"); do
    api POST /v1/tenants "{\"name\":\"c$i\",\"source\":{\"dsn\":\"postgresql://u@127.0.0.1:1/x\",\"slot\":\"c$i\"}}"
    [ "$CODE" = 201 ] || wh_fail "creating tenant c$i: $CODE: $BODY"
    api DELETE "/v1/tenants/c$i"
    [ "$CODE" = 200 ] || wh_fail "removing tenant c$i: $CODE: $BODY"
done
wh_alive store && [ "${WH_PIDS[store]}" = "$STORE_PID" ] || wh_fail "the store did not live through the churn"
grep -q "too many tenants" "$WH_TMP/store.log" && wh_fail "the store ran out of tenants: $(grep -m1 'too many tenants' "$WH_TMP/store.log")"

# a tenant after them, on the real database: it stores and delivers
wh_start_receiver recv "$WH_TMP/got.jsonl"
api POST /v1/tenants "{\"name\":\"zz\",\"source\":{\"dsn\":\"$PG_DSN\",\"slot\":\"wh_zz\",\"publication\":\"wh_zz\"},\"targets\":[{\"name\":\"t\",\"url\":\"http://127.0.0.1:$WH_RPORT/zz\"}]}"
[ "$CODE" = 201 ] || wh_fail "creating tenant zz after the churn: $CODE: $BODY"
wh_spawn ingestor "$BIN/walhook-ingestor" -c "$CONF" --tenant zz
wh_spawn dispatcher "$BIN/walhook-dispatcher" -c "$CONF"
wh_wait_slot_active wh_zz 60 || wh_fail "tenant zz's slot is not streaming"
for i in 1 2 3 4 5; do
    pg_psql -c "INSERT INTO items VALUES ($i, 'zz$i')" >/dev/null || wh_fail "insert failed"
done
got() { [ "$(grep -c '"op":"insert"' "$WH_TMP/got.jsonl" 2>/dev/null)" -ge 5 ]; }
wh_wait_until 60 got ||
    wh_fail "tenant zz's target got $(grep -c '"op":"insert"' "$WH_TMP/got.jsonl" 2>/dev/null) of 5 inserts; store: $(grep -m1 ERROR "$WH_TMP/store.log")"
grep -q ERROR "$WH_TMP/store.log" && wh_fail "store errors: $(grep -m2 ERROR "$WH_TMP/store.log")"
wh_pass "$NAMES tenants created and removed in one store process; tenant zz after them stored and delivered 5/5"
