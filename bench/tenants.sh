#!/usr/bin/env bash
# walhook two-tenant store bench (make bench-tenants), issue 10's bars:
#  1. isolation: tenant "steady" appends 1,000 events/s (10 every 10 ms)
#     alone, then while tenant "flood" appends ~512 KiB requests as fast as
#     the store takes them; the steady tenant's append p99 with the flood
#     on should stay within 2x of its p99 alone. The steady tenant goes on
#     appending while the flood starts; its p99 with the flood is taken from
#     0.5 s after the flood's start, and that first 0.5 s is printed apart.
#     The store's isolation guard (store.isolation_target_pct) is on as by
#     default; WALHOOK_STORE_ISOLATION_TARGET_PCT=0 runs it off.
#  2. append throughput through the IPC path with fsync (orders-shaped
#     events, ~512 KiB AppendBatch requests) against Debian rocksdb-tools'
#     `db_bench --benchmarks=fillseq --sync=1` with the same value size and
#     batch size, in the same run (bar: >= 0.8x).
# BENCH_TENANT_SECS (10) seconds per phase; BENCH_APPEND_EVENTS (300000).
# BENCH_TENANT_BUDGET=BYTES: in (1), every tenant's write budget
# (store.tenant_rate_bytes; default none): the flood then gets "slow down"
# answers and waits as an ingestor does (the steady tenant stays far below).
# BENCH_TENANT_TRACE=1: each steady append over 2 ms, with its time in the
# phase (on stderr).
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib/helpers.sh
WH_TEST_NAME=bench-tenants
SECS=${BENCH_TENANT_SECS:-10}
N=${BENCH_APPEND_EVENTS:-300000}
trap wh_cleanup EXIT
wh_require_bins walhook-store tests/wh_stagebench
wh_tmpdir
echo "bench-tenants: $(nproc) CPUs, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

start_store() { # DIR [BUDGET]
    mkdir -p -m 700 "$1"
    local conf="$1.conf"
    wh_write_conf "$conf" "postgresql://unused@127.0.0.1:1/x" "$1" "$(wh_free_port)" "http://127.0.0.1:9/x"
    wh_spawn "store_$(basename "$1")" env WALHOOK_STORE_TENANT_RATE_BYTES="${2:-0}" \
        "$BIN/walhook-store" -c "$conf"
    for _ in $(seq 1 100); do [ -S "$1/store.sock" ] && break; sleep 0.1; done
}

start_store "$WH_TMP/iso" "${BENCH_TENANT_BUDGET:-0}"
"$BIN/tests/wh_stagebench" tenants "ipc://$WH_TMP/iso/store.sock" "$SECS"
wh_kill store_iso TERM

start_store "$WH_TMP/thr"
out=$("$BIN/tests/wh_stagebench" append "ipc://$WH_TMP/thr/store.sock" "$N")
echo "$out"
wh_kill store_thr TERM
rate=$(echo "$out" | awk '/^append /{ for (i = 1; i <= NF; i++) if ($i == "events/s,") print $(i - 1) }')
vsize=$(echo "$out" | awk '/append shape/{ print $4 }')
bsize=$(echo "$out" | awk '/append shape/{ print $NF }')
DB_BENCH=$(command -v db_bench || command -v rocksdb_db_bench || true)
if [ -z "$DB_BENCH" ]; then
    echo "db_bench: not installed (Debian rocksdb-tools; scripts/install-deps.sh --bench): no comparison"
    exit 0
fi
# fillseq with the same value size, batch size and number of keys, synced
dbout=$("$DB_BENCH" --benchmarks=fillseq --sync=1 --value_size="$vsize" --batch_size="$bsize" \
    --num="$N" --key_size=16 --compression_type=none --db="$WH_TMP/db_bench" 2>&1 || true)
dbrate=$(echo "$dbout" | awk '/^fillseq/{ for (i = 1; i <= NF; i++) if ($i == "ops/sec;" || $i == "ops/sec") print $(i - 1) }' | head -n 1)
echo "db_bench fillseq --sync=1 --value_size=$vsize --batch_size=$bsize: ${dbrate:-?} ops/s"
[ -n "$dbrate" ] && awk -v a="$rate" -v b="$dbrate" \
    'BEGIN { printf "append through IPC / db_bench fillseq: %.2f (bar: >= 0.8)\n", a / b }'
exit 0
