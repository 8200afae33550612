#!/usr/bin/env bash
# The micro-batcher's batch_max_age_ms is a bound, never a wait (issue 8).
# Rows are inserted one per transaction, about one every 50 ms, to two
# targets whose receivers answer after DELAY ms:
#   grow   batch_max_age_ms = 30000 -> the first request goes out at once (it
#          does not wait 30 s), and while a request is in flight the next
#          batch grows: the second request carries many rows
#   bound  batch_max_age_ms = 100   -> the next batch stops growing after
#          ~100 ms: its second request carries fewer rows than grow's
# Checked from the X-Batch-Size of each request and that every row arrives
# (no bound here is tighter than seconds).
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
ROWS=${ROWS:-80}
DELAY=${DELAY:-1500}
trap wh_cleanup EXIT
wh_require_bins walhook walhook-store walhook-ingestor walhook-dispatcher walhook-admin \
    walhook-receiver
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
pg_psql -c "CREATE TABLE items (id int PRIMARY KEY)" >/dev/null || wh_fail "cannot create the table"
export WALHOOK_DISPATCHER_ALLOW_PRIVATE_NETWORKS="127.0.0.1/32,::1"
declare -A PORT
for r in grow bound; do PORT[$r]=$(wh_free_port); done
APORT=$(wh_free_port)
for r in grow bound; do
    wh_spawn "r_$r" "$BIN/walhook-receiver" --listen "127.0.0.1:${PORT[$r]}" \
        --out "$WH_TMP/$r.jsonl" --requests "$WH_TMP/$r.req" --delay-ms "$DELAY"
done
u() { echo "http://127.0.0.1:${PORT[$1]}/hook"; }
CONF="$WH_TMP/walhook.conf"
cat >"$CONF" <<CONFEOF
tenant = "main";
source = { dsn = "$PG_DSN"; slot = "wh_main"; publication = "wh_main"; create_slot = true; };
data_dir = "$WH_TMP/data";
log_level = "info";
admin = { listen = "127.0.0.1:$APORT"; };
dispatcher = { batch_max_events = 100; };
tenants = (
  { name = "d";
    source = { dsn = "$PG_DSN"; slot = "wh_d"; publication = "wh_d"; create_slot = true; };
    targets = (
      { name = "grow"; url = "$(u grow)"; batch_max_age_ms = 30000; },
      { name = "bound"; url = "$(u bound)"; batch_max_age_ms = 100; }
    ); }
);
CONFEOF
wh_spawn walhook "$BIN/walhook" up -c "$CONF"
wh_wait_http "http://127.0.0.1:$APORT/readyz" 90 ||
    wh_fail "walhook never became ready ($(curl -s "http://127.0.0.1:$APORT/readyz"))"
wh_wait_slot_active wh_d 60 || wh_fail "the slot wh_d is not streaming"

start=$(date +%s%3N)
for ((i = 1; i <= ROWS; i++)); do
    echo "INSERT INTO items VALUES ($i); SELECT pg_sleep(0.05);"
done | pg_psql >/dev/null || wh_fail "inserts failed"
wh_log "$ROWS rows inserted in $(( $(date +%s%3N) - start )) ms"

ids() { grep -o '"after":{"id":[0-9]*' "$1" 2>/dev/null | cut -d: -f3 | sort -un | wc -l; }
_all() { [ "$(ids "$WH_TMP/$1.jsonl")" -ge "$ROWS" ]; }
for r in grow bound; do
    wh_wait_until 60 _all "$r" || wh_fail "target $r: $(ids "$WH_TMP/$r.jsonl") of $ROWS rows"
done
sizes() { awk '$2 == 200 { printf "%s ", $3 }' "$WH_TMP/$1.req"; }
wh_log "X-Batch-Size per request: grow: $(sizes grow); bound: $(sizes bound)"
first_ms=$(awk 'NR == 1 { print $1 }' "$WH_TMP/grow.req")
g1=$(awk '$2 == 200 { n++; if (n == 1) print $3 }' "$WH_TMP/grow.req")
g2=$(awk '$2 == 200 { n++; if (n == 2) print $3 }' "$WH_TMP/grow.req")
b2=$(awk '$2 == 200 { n++; if (n == 2) print $3 }' "$WH_TMP/bound.req")
# never a wait: the first request left long before batch_max_age_ms (30 s)
[ $((first_ms - start)) -lt 15000 ] ||
    wh_fail "the first request of grow left $((first_ms - start)) ms after the first insert (batch_max_age_ms 30000 is a bound, not a wait)"
[ "${g1:-0}" -lt "${g2:-0}" ] || wh_fail "grow: the first request ($g1 rows) was not sent at once with what was ready"
# while a request was in flight the next batch grew
[ "${g2:-0}" -ge 5 ] || wh_fail "grow: the second request carries $g2 rows: the batch did not grow while the first was in flight"
[ "${b2:-0}" -lt "$g2" ] || wh_fail "bound: the second request carries $b2 rows, grow's $g2: batch_max_age_ms = 100 did not bound the batch"
wh_kill walhook TERM
for r in grow bound; do wh_kill "r_$r" TERM; done
wh_pass "batch_max_age_ms: first request at once ($g1 rows, $((first_ms - start)) ms), the next grew while one was in flight ($g2 rows; with a 100 ms bound $b2)"
