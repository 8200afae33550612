#!/usr/bin/env bash
# walhook demo (make demo): a throwaway PostgreSQL, `walhook up` and a webhook
# receiver that prints what it gets; a few inserts, updates and deletes; a
# look at /metrics; then everything stops. Takes well under a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${WH_DEMO_SKIP_BUILD:-0}" != 1 ]; then
    if [ "$(id -u)" = 0 ]; then scripts/install-deps.sh; fi
    make -s -j2 >/dev/null
fi
source tests/lib/helpers.sh
WH_TEST_NAME=demo
trap wh_cleanup EXIT
wh_tmpdir
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "starting a throwaway PostgreSQL 15 (wal_level=logical)"
pg_start
echo "   $PG_DSN"
pg_psql -c "CREATE TABLE orders (id bigint PRIMARY KEY, customer text, total numeric(10,2),
                                 paid bool DEFAULT false, created timestamptz DEFAULT now());"

RPORT=$(wh_free_port)
APORT=$(wh_free_port)
say "starting walhook-receiver on 127.0.0.1:$RPORT and walhook up (admin on 127.0.0.1:$APORT)"
"$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --print &
WH_PIDS[receiver]=$!
wh_spawn walhook "$BIN/walhook" up --source "$PG_DSN" --target "http://127.0.0.1:$RPORT/hook" \
    --data "$WH_TMP/data" --admin "127.0.0.1:$APORT"
echo "   WALHOOK_DISPATCHER_ALLOW_PRIVATE_NETWORKS=$WALHOOK_DISPATCHER_ALLOW_PRIVATE_NETWORKS $BIN/walhook up --source $PG_DSN --target http://127.0.0.1:$RPORT/hook --data $WH_TMP/data --admin 127.0.0.1:$APORT"
if ! wh_wait_http "http://127.0.0.1:$APORT/readyz" 30; then
    tail -n 20 "$WH_TMP/walhook.log"
    echo "demo: walhook did not become ready" >&2
    exit 1
fi
echo "   ready: $(curl -s "http://127.0.0.1:$APORT/readyz" | head -c 200)"

say "making changes in PostgreSQL (the receiver prints each event it gets)"
sql() { echo "   psql> $1"; pg_psql -c "$1"; sleep 0.3; }
sql "INSERT INTO orders (id, customer, total) VALUES (1, 'ada', 12.50), (2, 'grace', 99.95)"
sql "UPDATE orders SET paid = true WHERE id = 1"
sql "BEGIN; INSERT INTO orders (id, customer, total) VALUES (3, 'linus', 5.00); DELETE FROM orders WHERE id = 2; COMMIT"
sql "UPDATE orders SET total = total * 2"
wh_wait_metric "http://127.0.0.1:$APORT/metrics" walhook_events_delivered_total 7 20 || true
sleep 0.3

say "a few metrics from http://127.0.0.1:$APORT/metrics"
curl -s "http://127.0.0.1:$APORT/metrics" |
    grep -E '^walhook_(changes_received_total|events_stored_total|events_delivered_total|confirmed_flush_lsn|replication_lag_bytes)' || true

say "stopping"
wh_kill walhook TERM
wh_kill receiver TERM
echo "   done"
