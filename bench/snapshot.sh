#!/usr/bin/env bash
# walhook initial-snapshot benchmark (make bench-snapshot): a table of
# BENCH_SNAPSHOT_ROWS (1,000,000) rows shaped like the hot-path bench's
# `orders` (id bigserial primary key, customer text, amount numeric(12,2),
# note text, created_at timestamptz) is read by walhook's initial snapshot
# (source.snapshot = "initial": the new slot's exported snapshot, before
# streaming) and delivered to a local walhook-receiver that answers at once.
# Compared in the same run with PostgreSQL sending the same rows in key
# order to psql (COPY (SELECT ... ORDER BY id) TO STDOUT > /dev/null), the
# least any snapshot costs. Prints: PostgreSQL's time; walhook's time to
# store every read (its log's "stored in X s") and to deliver the last one
# (the receiver's request log), with ratios; CPU-seconds per row of each
# daemon; peak PSS of each daemon and their sum (sampled every 100 ms).
# BENCH_SNAPSHOT_CHUNK: source.snapshot_chunk_rows (default the setting's).
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/lib/helpers.sh
WH_TEST_NAME=bench-snapshot
N=${BENCH_SNAPSHOT_ROWS:-1000000}
DAEMONS=(ingestor store dispatcher admin)
HZ=$(getconf CLK_TCK)
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-admin walhook-receiver tests/wh_pss
wh_tmpdir
echo "bench-snapshot: $(nproc) CPUs, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
source bench/lib.sh

pg_start
pg_psql -c "CREATE TABLE orders (id bigserial PRIMARY KEY, customer text, amount numeric(12,2),
                                 note text, created_at timestamptz DEFAULT now());
            INSERT INTO orders (customer, amount, note)
              SELECT 'customer ' || (g % 100000), (g % 100000) * 0.37,
                     'note for order of customer ' || (g % 100000)
              FROM generate_series(1, $N) g;
            CREATE PUBLICATION walhook FOR ALL TABLES;" -c "VACUUM ANALYZE orders" >/dev/null || exit 1
echo "== $N rows in orders"

# PostgreSQL alone: the same rows, in key order, to a client that drops them
TIMEFORMAT='%R %U %S'
{ time pg_psql -c "COPY (SELECT * FROM orders ORDER BY id) TO STDOUT" >/dev/null; } 2>"$WH_TMP/copy.time"
t_pg=$(awk '{ printf "%.2f", $1 }' "$WH_TMP/copy.time")
echo "   PostgreSQL: COPY (SELECT * FROM orders ORDER BY id) TO STDOUT in $t_pg s" \
    "($(rate "$N" "$t_pg") rows/s; psql's CPU $(awk '{ printf "%.2f", $2 + $3 }' "$WH_TMP/copy.time") s)"

RPORT=$(wh_free_port)
REQLOG="$WH_TMP/requests.log"
: >"$REQLOG"
wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --requests "$REQLOG"
aport=$(wh_free_port)
conf="$WH_TMP/snap.conf"
data="$WH_TMP/data"
wh_write_conf "$conf" "$PG_DSN" "$data" "$aport" "http://127.0.0.1:$RPORT/hook"
sed -i 's/create_slot = true;/create_slot = true; snapshot = "initial";/' "$conf"
grep -q 'snapshot = "initial"' "$conf" || { echo "bench: snapshot setting not applied" >&2; exit 2; }
[ -n "${BENCH_SNAPSHOT_CHUNK:-}" ] &&
    sed -i "s/snapshot = \"initial\";/snapshot = \"initial\"; snapshot_chunk_rows = $BENCH_SNAPSHOT_CHUNK;/" "$conf"
mkdir -p -m 700 "$data"
t0=$EPOCHREALTIME
pids=()
for d in "${DAEMONS[@]}"; do
    wh_spawn "$d" "$BIN/walhook-$d" -c "$conf"
    pids+=("${WH_PIDS[$d]}")
done
"$BIN/tests/wh_pss" 100 "${pids[@]}" >"$WH_TMP/pss" &
sampler=$!
deadline=$((EPOCHSECONDS + ${BENCH_TIMEOUT:-900}))
# the schema event comes with the reads: N + 1 events
want=$((N + 1))
while :; do
    [ "$EPOCHSECONDS" -ge "$deadline" ] && { echo "bench: timed out" >&2; exit 1; }
    for d in "${DAEMONS[@]}"; do
        wh_alive "$d" || { echo "bench: walhook-$d died" >&2; tail "$WH_TMP/$d.log" >&2; exit 1; }
    done
    v=$(wh_reqlog_events "$REQLOG" 0) || v=-1
    [ "${v:--1}" -ge "$want" ] 2>/dev/null && break
    sleep 0.25
done
cpu=() total=0
for i in "${!DAEMONS[@]}"; do
    c=$(cpu_s "${pids[$i]}")
    cpu+=("$c")
    total=$(awk -v a="$total" -v b="$c" 'BEGIN { print a + b }')
done
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
t_dl=$(awk -v n="$want" -v t0="$t0" '$2 ~ /^2/ && $3 ~ /^[0-9]+$/ { s += $3; if (s >= n) { printf "%.2f", $1 / 1000 - t0; exit } }' "$REQLOG")
line=$(grep -h "initial snapshot in the slot's exported snapshot" "$WH_TMP"/ingestor.log | tail -1)
t_read=$(sed -n 's/.* rows stored in \([0-9.]*\) s.*/\1/p' <<<"$line")
[ -n "$t_read" ] || { echo "bench: the ingestor logged no end of the exported snapshot: $line" >&2; exit 1; }
echo "   walhook: every row read and stored in $t_read s ($(rate "$N" "$t_read") rows/s," \
    "PostgreSQL's COPY time / this: $(ratio "$t_pg" "$t_read"))"
echo "   walhook: every row delivered $t_dl s after start ($(rate "$N" "$t_dl") rows/s, ratio $(ratio "$t_pg" "$t_dl"))"
bench_daemons_report "$N" row row "$WH_TMP/pss"
