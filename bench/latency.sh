#!/usr/bin/env bash
# walhook latency benchmark (make bench-latency): pgbench -R writes one-row
# transactions into orders from 4 clients at BENCH_RATES ("1000 3000 max",
# max = unthrottled) for BENCH_SECONDS (20) each, with walhook streaming to a
# local walhook-receiver that answers at once; the receiver records, for every
# event, the time from its commit_ts to its arrival. Prints p50/p99/max per
# rate, and the four daemons' CPU per event. PostgreSQL and walhook run on
# the same host (one clock). WH_LAT_TRACE=1: every hop logs each event's
# time (common/wh_lattrace.h) and a per-hop breakdown of the age
# (now - commit_ts) of the events is printed for each rate: PostgreSQL ->
# ingestor (ing_commit), Append sent (ing_send), received by the store
# (st_recv), synced (st_synced), acked (ing_acked), read for the dispatcher
# (st_read: only events that went by a Read), pushed events received by the
# dispatcher's notification thread (dsp_note), taken by a reader (dsp_read: by
# a Read or pushed with the durability notification), POST started
# (dsp_post), 2xx (dsp_ok).
# BENCH_SYNC_COMMIT (on) is the writers' synchronous_commit: with off, WAL is
# flushed (and so decoded) only every wal_writer_delay (200 ms).
# BENCH_DISK_FLOOR=0 skips the disk's own fdatasync latency (wh_synclat at
# BENCH_SYNC_RATE, 1000/s, while PostgreSQL commits at the rate), printed
# under the PostgreSQL floor.
# BENCH_FLOOD=1: while each rate runs, another tenant ("flood") floods the
# same store with ~512 KiB appends as fast as it takes them (wh_stagebench
# tenants-flood, as a second ingestor with a backlog would), from 1 s
# before pgbench starts to its end: issue 10's isolation seen end to end
# (the store's isolation guard holds the flood back; with
# WALHOOK_STORE_ISOLATION_TARGET_PCT=0 it does not).
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib/helpers.sh
WH_TEST_NAME=bench-latency
RATES=${BENCH_RATES:-1000 3000 max}
SECS=${BENCH_SECONDS:-20}
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-admin walhook-receiver \
    tests/wh_pglat tests/wh_synclat
FLOOD=${BENCH_FLOOD:-0}
[ "$FLOOD" = 1 ] && wh_require_bins tests/wh_stagebench
command -v pgbench >/dev/null || PATH="$PG_BIN:$PATH"
wh_tmpdir
echo "bench-latency: $(nproc) CPUs, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
pg_start
pg_psql -c "CREATE TABLE orders (id bigserial PRIMARY KEY, customer text,
                                 amount numeric(12,2), note text,
                                 created_at timestamptz DEFAULT now());
            CREATE PUBLICATION walhook FOR ALL TABLES;"
cat >"$WH_TMP/orders.sql" <<'SQL'
\set c random(1, 100000)
INSERT INTO orders (customer, amount, note) VALUES ('customer ' || :c, :c * 0.37, 'note for order of customer ' || :c);
SQL
# pgbench at RATE (max = unthrottled) for SECS; prints the transactions done
run_pgbench() {
    local rate=$1 args=(-n -c 4 -j 2 -T "$SECS" -f "$WH_TMP/orders.sql")
    [ "$rate" != max ] && args+=(-R "$rate")
    PGOPTIONS="-c synchronous_commit=${BENCH_SYNC_COMMIT:-on}" pgbench "${args[@]}" "$PG_DSN" \
        >"$WH_TMP/pgbench-$rate.log" 2>&1 || { cat "$WH_TMP/pgbench-$rate.log" >&2; return 1; }
    awk '/number of transactions actually processed/ { print $NF }' "$WH_TMP/pgbench-$rate.log" |
        cut -d/ -f1
}
# "RATE EVENTS EV/S P50 P99 MAX" (ms) of a file of microseconds, one a line
percentiles() { # FILE RATE
    sort -n "$1" | awk -v r="$2" -v s="$SECS" '
        { v[NR] = $1 }
        END {
            if (NR == 0) { printf "%-6s no events recorded", r; exit }
            p50 = v[int(NR * 0.50) > 0 ? int(NR * 0.50) : 1]
            p99 = v[int(NR * 0.99) > 0 ? int(NR * 0.99) : 1]
            printf "%-6s %8d %8.0f %8.2f %8.2f %8.2f", r, NR, NR / s, p50 / 1000, p99 / 1000, v[NR] / 1000
        }'
}

# PostgreSQL alone, before walhook starts (BENCH_PG_FLOOR=0 skips it): the
# same pgbench runs streamed to wh_pglat, a libpq client that only records
# commit_ts -> arrival of each Commit message. That is what PostgreSQL takes
# before any logical client can act on a transaction (its commit and WAL
# flush, the walsender's wake-up and decoding): the floor under walhook's
# figures below, which add the ingestor, the store's synced write, the
# dispatcher and the HTTP POST.
FLOOR=()
if [ "${BENCH_PG_FLOOR:-1}" = 1 ]; then
    for rate in $RATES; do
        "$BIN/tests/wh_pglat" --dsn "$PG_DSN" --out "$WH_TMP/pglat-$rate" \
            >"$WH_TMP/pglat-$rate.log" 2>&1 &
        pl=$!
        for _ in $(seq 1 100); do
            grep -q streaming "$WH_TMP/pglat-$rate.log" && break
            kill -0 "$pl" 2>/dev/null || { cat "$WH_TMP/pglat-$rate.log" >&2; exit 1; }
            sleep 0.1
        done
        run_pgbench "$rate" >/dev/null
        sleep 0.5
        kill -TERM "$pl"
        wait "$pl" || { cat "$WH_TMP/pglat-$rate.log" >&2; exit 1; }
        FLOOR+=("$(percentiles "$WH_TMP/pglat-$rate" "$rate")")
        echo "PostgreSQL alone: ${FLOOR[-1]}"
    done
fi

# The disk alone (BENCH_DISK_FLOOR=0 skips it): while the same pgbench runs
# again, with nothing reading its WAL, wh_synclat overwrites 512 bytes of
# written blocks and fdatasyncs them BENCH_SYNC_RATE (1000) times a second
# in the directory the store's data goes to. A synced Append of the store
# waits for such an fdatasync (and PostgreSQL's commits for their own WAL
# flush): its p99 is the share of walhook's p99 that no change to walhook
# removes.
DISK=()
if [ "${BENCH_DISK_FLOOR:-1}" = 1 ]; then
    for rate in $RATES; do
        "$BIN/tests/wh_synclat" --dir "$WH_TMP" --out "$WH_TMP/synclat-$rate" \
            --rate "${BENCH_SYNC_RATE:-1000}" --seconds 3600 >"$WH_TMP/synclat-$rate.log" 2>&1 &
        sl=$!
        run_pgbench "$rate" >/dev/null
        kill -TERM "$sl"
        wait "$sl" || { cat "$WH_TMP/synclat-$rate.log" >&2; exit 1; }
        DISK+=("$(percentiles "$WH_TMP/synclat-$rate" "$rate")")
        echo "disk alone: ${DISK[-1]}"
    done
fi

LAT="$WH_TMP/latency"
: >"$LAT"
RPORT=$(wh_free_port)
wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --latency "$LAT"
APORT=$(wh_free_port)
CONF="$WH_TMP/walhook.conf"
DATA="$WH_TMP/data"
wh_write_conf "$CONF" "$PG_DSN" "$DATA" "$APORT" "http://127.0.0.1:$RPORT/hook"
[ -n "${BENCH_CONF:-}" ] && echo "$BENCH_CONF" >>"$CONF"
mkdir -p -m 700 "$DATA"
for d in store ingestor dispatcher admin; do
    wh_spawn "$d" "$BIN/walhook-$d" -c "$CONF"
done
M="http://127.0.0.1:$APORT/metrics"
wh_wait_slot_active walhook 60 || { echo "bench-latency: the ingestor did not start streaming" >&2; exit 1; }

HZ=$(getconf CLK_TCK)
cpu_ticks() { # each daemon's utime+stime in clock ticks: ingestor store dispatcher admin
    local d
    for d in ingestor store dispatcher admin; do
        awk '{ printf "%d ", $14 + $15 }' "/proc/${WH_PIDS[$d]}/stat" 2>/dev/null || printf '0 '
    done
}
RESULTS=()
for rate in $RATES; do
    c0=$(cpu_ticks)
    m0=$(for k in walhook_store_appends_total walhook_store_reads_total \
        walhook_dispatcher_notifications_total walhook_dispatcher_push_batches_total; do
        wh_metric "$M" $k; done | tr '\n' ' ')
    t_start=$(date +%s%6N)
    d0=$(wh_metric "$M" walhook_events_delivered_total)
    [ "$d0" -lt 0 ] && d0=0
    : >"$LAT"
    if [ "$FLOOD" = 1 ]; then
        "$BIN/tests/wh_stagebench" tenants-flood "ipc://$DATA/store.sock" \
            >"$WH_TMP/flood-$rate.out" 2>"$WH_TMP/flood-$rate.err" &
        FPID=$!
        sleep 1 # the flood is going (and held back, with the guard on)
    fi
    n=$(run_pgbench "$rate")
    if [ "$FLOOD" = 1 ]; then
        kill -TERM "$FPID" 2>/dev/null || true
        wait "$FPID" || { echo "bench-latency: the flood failed: $(cat "$WH_TMP/flood-$rate.err")" >&2; exit 1; }
        read -r fev fslow fsec <"$WH_TMP/flood-$rate.out"
        awk -v e="$fev" -v s="$fslow" -v t="$fsec" 'BEGIN {
            printf "  flood tenant meanwhile: %.0f events/s (%d \"slow down\" answers)\n", (t > 0 ? e / t : 0), s }'
    fi
    want=$((d0 + n))
    deadline=$(($(date +%s) + 120))
    while [ "$(wh_metric "$M" walhook_events_delivered_total)" -lt "$want" ]; do
        [ "$(date +%s)" -ge "$deadline" ] && { echo "bench-latency: events not delivered" >&2; exit 1; }
        sleep 0.2
    done
    sleep 0.3 # the receiver writes its lines before answering; let the last flush land
    # total and per daemon (ingestor/store/dispatcher/admin), us per event
    cpu_us=$(awk -v a="$c0" -v b="$(cpu_ticks)" -v hz="$HZ" -v n="$n" 'BEGIN {
        split(a, x, " "); split(b, y, " "); t = 0; per = ""
        for (i = 1; i <= 4; i++) {
            u = (n > 0 ? (y[i] - x[i]) / hz * 1e6 / n : 0); t += u
            per = per (i > 1 ? "/" : "") sprintf("%.0f", u)
        }
        printf "%.0f (%s)", t, per }')
    line="$(percentiles "$LAT" "$rate")  $cpu_us"
    echo "$line"
    RESULTS+=("$line")
    m1=$(for k in walhook_store_appends_total walhook_store_reads_total \
        walhook_dispatcher_notifications_total walhook_dispatcher_push_batches_total; do
        wh_metric "$M" $k; done | tr '\n' ' ')
    awk -v a="$m0" -v b="$m1" -v n="$n" 'BEGIN { split(a, x, " "); split(b, y, " ")
        printf "  per 100 events: %.1f appends, %.1f reads, %.1f notifications, %.1f batches from pushes\n",
            (y[1] - x[1]) * 100 / n, (y[2] - x[2]) * 100 / n, (y[3] < 0 ? 0 : y[3] - x[3]) * 100 / n,
            (y[4] < 0 ? 0 : y[4] - (x[4] < 0 ? 0 : x[4])) * 100 / n }'
    if [ "${WH_LAT_TRACE:-0}" = 1 ]; then
        # per-hop breakdown (WH_LAT_TRACE=1: every hop writes one LAT line
        # per event): the age (now - commit_ts) of the events as they pass
        # each hop, p50 and p99
        cat "$WH_TMP"/ingestor.log "$WH_TMP"/store.log "$WH_TMP"/dispatcher.log |
            awk -v t0="$t_start" '$1 == "LAT" && $3 >= t0 { print $2, $3 - $4 }' >"$WH_TMP/lat-$rate"
        for hop in ing_commit ing_send st_recv st_synced ing_acked st_read dsp_note dsp_read dsp_post dsp_ok; do
            awk -v h=$hop '$1 == h { print $2 }' "$WH_TMP/lat-$rate" | sort -n | awk -v h=$hop '
                { a[NR] = $1 } END {
                    if (NR == 0) exit
                    printf "  %-10s events %7d  age p50 %7.2f p99 %7.2f ms\n",
                        h, NR, a[int(NR * 0.5) + 1] / 1000, a[int(NR * 0.99) + 1] / 1000 }'
        done
    fi
done
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "commit_ts -> arrival at the receiver, ms (bars at 1000/s and 3000/s: p50 <= 2, p99 <= 10);"
echo "cpu_us_ev: CPU of the four daemons per event during the rate (and its drain), and"
echo "  per daemon (ingestor/store/dispatcher/admin)"
printf '%-6s %8s %8s %8s %8s %8s %8s\n' rate events ev_per_s p50_ms p99_ms max_ms cpu_us_ev
for r in "${RESULTS[@]}"; do echo "$r"; done
if [ ${#FLOOR[@]} -gt 0 ]; then
    echo "PostgreSQL alone (wh_pglat: commit_ts -> a libpq client's receipt of the Commit):"
    for r in "${FLOOR[@]}"; do echo "$r"; done
fi
if [ ${#DISK[@]} -gt 0 ]; then
    echo "the disk alone (wh_synclat: 512-byte write + fdatasync, ${BENCH_SYNC_RATE:-1000}/s, while"
    echo "  PostgreSQL commits at the rate; events = syncs, ms per sync):"
    for r in "${DISK[@]}"; do echo "$r"; done
fi
