#!/usr/bin/env bash
# The admin with dispatcher replicas it cannot reach over Stats: two
# dispatchers (distinct dispatcher.id, each with its own control socket, as
# replicas on a host network have, and each announcing a control endpoint
# the admin cannot reach, as a socket in a container's private directory
# would be) share one target through leases. Neither the announced
# endpoints nor the admin's dispatcher.control answer, so the admin falls
# back to the store's lease table: /readyz is 200 and shows the dispatcher's state as "leasing", and
# walhook_dispatcher_replicas counts the live replicas; it drops to 1 after
# one replica is SIGKILLed (its owner entry expires with the lease TTL), and
# with none left /readyz is 503 naming the dispatcher.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
TTL=${TTL:-2000}
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-admin walhook-receiver
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
pg_psql -c "CREATE TABLE t (id int PRIMARY KEY)" || wh_fail "table"

RPORT=$(wh_free_port)
APORT=$(wh_free_port)
wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --out "$WH_TMP/received.jsonl"
CONF="$WH_TMP/walhook.conf"
wh_write_conf "$CONF" "$PG_DSN" "$WH_TMP/data" "$APORT" "http://127.0.0.1:$RPORT/hook"
export WALHOOK_DISPATCHER_LEASE_TTL_MS="$TTL"
mkdir -m 700 "$WH_TMP/data"
wh_spawn store "$BIN/walhook-store" -c "$CONF"
wh_wait_until 10 test -S "$WH_TMP/data/store.sock" || wh_fail "the store did not start"
wh_spawn ingestor "$BIN/walhook-ingestor" -c "$CONF"
for d in d1 d2; do
    WALHOOK_DISPATCHER_ID="$d" WALHOOK_DISPATCHER_ADVERTISE="ipc://$WH_TMP/private-$d.sock" \
        wh_spawn "dispatcher-$d" "$BIN/walhook-dispatcher" -c "$CONF"
done
wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
M="http://127.0.0.1:$APORT/metrics"
READYZ="http://127.0.0.1:$APORT/readyz"
wh_wait_slot_active walhook 60 || wh_fail "the ingestor never started streaming"
wh_wait_metric "$M" walhook_dispatcher_replicas 2 30 ||
    wh_fail "walhook_dispatcher_replicas never reached 2"
wh_wait_http "$READYZ" 30 || wh_fail "/readyz not 200 with two leasing replicas: $(curl -s "$READYZ")"
status=$(curl -fsS --max-time 3 "$READYZ" 2>/dev/null || true)
[[ "$status" == *'"daemon":"dispatcher","up":true,"ready":true,"state":"leasing"'* ]] ||
    wh_fail "/readyz does not show the dispatcher leasing: $status"

# an admin whose dispatcher.control reaches one replica: when no announced
# endpoint answers, it asks there before falling back to the lease table
APORT2=$(wh_free_port)
WALHOOK_ADMIN_LISTEN="127.0.0.1:$APORT2" WALHOOK_DISPATCHER_CONTROL="ipc://$WH_TMP/data/dispatcher-d2.sock" \
    wh_spawn admin2 "$BIN/walhook-admin" -c "$CONF"
running2() { curl -fsS --max-time 3 "http://127.0.0.1:$APORT2/readyz" 2>/dev/null | grep -q '"daemon":"dispatcher","up":true,"ready":true,"state":"running"'; }
wh_wait_until 30 running2 ||
    wh_fail "the admin with dispatcher.control at d2 does not show it running: $(curl -s --max-time 3 "http://127.0.0.1:$APORT2/readyz")"
wh_kill admin2

pg_psql -c "INSERT INTO t SELECT generate_series(1, 100)" || wh_fail "insert"
wh_wait_until 30 wh_events_at_least "$WH_TMP/received.jsonl" 100 ||
    wh_fail "the 100 changes did not arrive"

wh_kill dispatcher-d1 KILL
ok=0
for _ in $(seq 1 100); do
    [ "$(wh_metric "$M" walhook_dispatcher_replicas)" = 1 ] && { ok=1; break; }
    sleep 0.2
done
[ "$ok" = 1 ] || wh_fail "walhook_dispatcher_replicas did not fall to 1 after a SIGKILL"
wh_wait_http "$READYZ" 10 || wh_fail "/readyz not 200 with one replica left"

wh_kill dispatcher-d2 KILL
code=000
for _ in $(seq 1 100); do
    code=$(curl -s -o "$WH_TMP/readyz.txt" -w '%{http_code}' --max-time 3 "$READYZ")
    [ "$code" = 503 ] && break
    sleep 0.2
done
[ "$code" = 503 ] || wh_fail "/readyz is $code with no dispatcher left"
grep -q dispatcher "$WH_TMP/readyz.txt" || wh_fail "/readyz does not name the dispatcher: $(cat "$WH_TMP/readyz.txt")"
wh_pass "two unreachable replicas counted from the store's leases (readyz 200, status leasing; an admin whose dispatcher.control reaches one shows it running, replicas 2 -> 1 after a SIGKILL), none left: 503 naming the dispatcher"
