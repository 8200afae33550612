#!/usr/bin/env bash
# walhook stage benchmarks (make bench-stages): each stage of the hot path
# alone, with events shaped like the rows of
#   orders(id bigserial, customer text, amount numeric(12,2), note text,
#          created_at timestamptz)
# in events/s and CPU microseconds per event (target: >= 300,000 events/s).
#   ingest     the ingestor's pgoutput decode + JSON render (no network)
#   append     the store's AppendBatch over IPC, ~512 KiB requests, fsync on
#              (walhook-store's CPU from /proc, and the client's)
#   read       the store's Read over IPC, 1000 events per request
#   dispatch   walhook-dispatcher posting the pre-filled store to a local
#              walhook-receiver that answers at once (its CPU, and the store's
#              CPU serving its Reads and Commits)
# BENCH_STAGE_EVENTS (300000) events per stage. BENCH_STAGE_WIDE=1: events
# shaped like make bench's backlog (d) instead (updates of 20-column rows,
# REPLICA IDENTITY FULL, about 3 KiB of JSON each; wh_stagebench --wide).
# BENCH_STAGES ("ingest append read dispatch"): the stages to run, e.g.
# BENCH_STAGES=dispatch (read and dispatch need the store filled: append
# then runs too, and is printed).
# BENCH_STAGE_ENVELOPE=debezium: the dispatch stage's target renders the
# Debezium envelope with a filter of make bench-envelope's shape that
# passes every event (table == "orders" && op == "insert" &&
# after.amount >= 0; with BENCH_STAGE_WIDE=1: table == "wide" && op ==
# "update" && after.n1 >= 0); "native" or unset: neither.
# BENCH_STAGE_TARGET: other settings of that target instead, as written
# in the configuration (e.g. 'envelope = "cloudevents";'; wins over
# BENCH_STAGE_ENVELOPE). Events a filter drops count as done.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib/helpers.sh
WH_TEST_NAME=bench-stages
N=${BENCH_STAGE_EVENTS:-300000}
HZ=$(getconf CLK_TCK)
SHAPE=()
[ -n "${BENCH_STAGE_WIDE:-}" ] && SHAPE=(--wide)
STAGES=" ${BENCH_STAGES:-ingest append read dispatch} "
want() { [[ "$STAGES" == *" $1 "* ]]; }
TARGET=${BENCH_STAGE_TARGET:-}
case "${BENCH_STAGE_ENVELOPE:-native}" in
native) ;;
debezium)
    if [ -z "$TARGET" ] && [ -n "${BENCH_STAGE_WIDE:-}" ]; then
        TARGET='envelope = "debezium"; filter_expr = "table == \"wide\" && op == \"update\" && after.n1 >= 0";'
    elif [ -z "$TARGET" ]; then
        TARGET='envelope = "debezium"; filter_expr = "table == \"orders\" && op == \"insert\" && after.amount >= 0";'
    fi
    ;;
*) echo "bench-stages: BENCH_STAGE_ENVELOPE is native or debezium" >&2; exit 2 ;;
esac
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-dispatcher walhook-admin walhook-receiver tests/wh_stagebench
wh_tmpdir
echo "bench-stages: $(nproc) CPUs, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
cpu_s() { awk -v hz="$HZ" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }
per() { awk -v a="$1" -v b="$2" -v n="$N" 'BEGIN { printf "%.2f", (b - a) * 1e6 / n }'; }
now() { date +%s.%N; }

want ingest && "$BIN/tests/wh_stagebench" "${SHAPE[@]}" ingest "$N"
want append || want read || want dispatch || exit 0

DATA="$WH_TMP/data"
mkdir -p -m 700 "$DATA"
RPORT=$(wh_free_port)
APORT=$(wh_free_port)
CONF="$WH_TMP/walhook.conf"
wh_write_conf "$CONF" "postgresql://unused@127.0.0.1:1/x" "$DATA" "$APORT" "http://127.0.0.1:$RPORT/hook"
if [ -n "$TARGET" ]; then # the target's settings right after its name
    TARGET=$TARGET awk '{ i = index($0, "{ name = \"t0\"; ")
        if (i) $0 = substr($0, 1, i + 14) ENVIRON["TARGET"] " " substr($0, i + 15)
        print }' "$CONF" >"$CONF.t" && mv "$CONF.t" "$CONF"
    grep -qF "$TARGET" "$CONF" || { echo "bench-stages: BENCH_STAGE_TARGET not applied" >&2; exit 2; }
    echo "bench-stages: target t0: $TARGET"
fi
wh_spawn store "$BIN/walhook-store" -c "$CONF"
URL="ipc://$DATA/store.sock"
for _ in $(seq 1 100); do [ -S "$DATA/store.sock" ] && break; sleep 0.1; done
SP=${WH_PIDS[store]}
c0=$(cpu_s "$SP")
"$BIN/tests/wh_stagebench" "${SHAPE[@]}" append "$URL" "$N"
c1=$(cpu_s "$SP")
echo "        walhook-store: $(per "$c0" "$c1") us CPU/event for Append (fsync on)"
if want read; then
    "$BIN/tests/wh_stagebench" "${SHAPE[@]}" read "$URL" "$N"
    c2=$(cpu_s "$SP")
    echo "        walhook-store: $(per "$c1" "$c2") us CPU/event for Read"
fi
want dispatch || exit 0
c2=$(cpu_s "$SP")

wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT"
wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
wh_wait_http "http://127.0.0.1:$APORT/livez" 30 >/dev/null 2>&1 || true
t0=$(now)
wh_spawn dispatcher "$BIN/walhook-dispatcher" -c "$CONF"
DP=${WH_PIDS[dispatcher]}
deadline=$(($(date +%s) + 300))
# 4 Hz, without curl: each scrape makes the dispatcher render its metrics
# (and again for the filtered total when the target has settings of its own)
done_events() {
    if [ -n "$TARGET" ]; then wh_metric_done "$APORT"; else wh_metric_tcp "$APORT" walhook_events_delivered_total; fi
}
while [ "$(done_events)" -lt "$N" ]; do
    [ "$(date +%s)" -ge "$deadline" ] && { echo "bench-stages: not delivered in time" >&2; exit 1; }
    sleep 0.25
done
t1=$(now)
c3=$(cpu_s "$SP")
d=$(cpu_s "$DP")
awk -v n="$N" -v t="$(awk -v a="$t1" -v b="$t0" 'BEGIN { print a - b }')" -v d="$d" \
    'BEGIN { printf "%-7s %8d events in %6.2f s: %9.0f events/s, %6.2f us CPU/event (walhook-dispatcher, start-up included)\n", "dispatch", n, t, n / t, d * 1e6 / n }'
echo "        walhook-store: $(per "$c2" "$c3") us CPU/event serving the dispatcher's Reads and Commits"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
