#!/usr/bin/env bash
# walhook benchmark (make bench): how fast walhook drains a replication backlog
# compared with pg_recvlogical decoding the same WAL to /dev/null.
#
# Two backlogs, each measured on fresh slots created before the backlog:
#   (a) BENCH_SMALL_TXNS (200,000) one-row transactions
#   (b) one transaction of BENCH_BIG_TXN (1,000,000) rows
# For each: pg_recvlogical's time to drain its slot up to the backlog's end
# LSN; walhook's time until every event is durably stored
# (walhook_events_stored_total) and until every event was acknowledged by a
# local walhook-receiver (walhook_events_delivered_total); rates, ratios and
# the peak RSS (VmHWM) of each daemon.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib/helpers.sh
WH_TEST_NAME=bench
SMALL=${BENCH_SMALL_TXNS:-200000}
BIG=${BENCH_BIG_TXN:-1000000}
LIMIT=${BENCH_TIMEOUT:-900}
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-admin walhook-receiver
wh_tmpdir
pg_start
pg_psql -c "CREATE TABLE bench (id bigint PRIMARY KEY, n int, t text);
            CREATE PUBLICATION walhook FOR ALL TABLES;
            CREATE PROCEDURE bench_small(n int) LANGUAGE plpgsql AS \$\$
            BEGIN
              SET synchronous_commit = off; -- session-wide: the WAL is the same, the backlog faster
              FOR i IN 1..n LOOP
                INSERT INTO bench VALUES (i, i, 'row ' || i);
                COMMIT;
              END LOOP;
            END \$\$;"
RPORT=$(wh_free_port)
wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT"

now() { date +%s.%N; }
fmt() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }
rate() { awk -v n="$1" -v t="$2" 'BEGIN { if (t > 0) printf "%.0f", n / t; else print "inf" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
hwm_kib() { awk '/VmHWM/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
# BENCH_MEMINFO=1: also print each daemon's current anonymous / file-backed RSS
meminfo() {
    awk '/RssAnon|RssFile/ { printf " %s %.1f MiB", $1, $2 / 1024 }' "/proc/$1/status" 2>/dev/null
    awk -v hz="$(getconf CLK_TCK)" '{ printf ", cpu %.2f s", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null
}

RESULTS=()
run_case() { # NAME EVENTS SQL
    local name=$1 events=$2 sql=$3
    local slot="walhook_$name" rl="rl_$name" data="$WH_TMP/data-$name"
    echo "== backlog ($name): $events events"
    pg_psql -c "SELECT pg_create_logical_replication_slot('$rl', 'pgoutput')" >/dev/null
    pg_psql -c "SELECT pg_create_logical_replication_slot('$slot', 'pgoutput')" >/dev/null
    pg_psql -c "TRUNCATE bench" >/dev/null
    # the TRUNCATE above is decoded too (one event) before the backlog
    events=$((events + 1))
    local t0 t1
    t0=$(now)
    pg_psql -c "$sql" >/dev/null
    t1=$(now)
    local end
    end=$(pg_psql -At -c "SELECT pg_current_wal_lsn()")
    echo "   backlog written in $(fmt "$t1" "$t0") s, end LSN $end"

    t0=$(now)
    pg_recvlogical -d "$PG_DSN" -S "$rl" --start -o proto_version=1 -o publication_names=walhook \
        -E "$end" -f /dev/null --no-loop
    t1=$(now)
    local t_rl
    t_rl=$(fmt "$t1" "$t0")
    echo "   pg_recvlogical drained its slot in $t_rl s ($(rate "$events" "$t_rl") changes/s)"

    local aport conf
    aport=$(wh_free_port)
    conf="$WH_TMP/$name.conf"
    wh_write_conf "$conf" "$PG_DSN" "$data" "$aport" "http://127.0.0.1:$RPORT/hook"
    sed -i "s/slot = \"walhook\"/slot = \"$slot\"/" "$conf"
    # BENCH_CONF: extra config lines (e.g. 'ingestor = { window_bytes = 8388608; };');
    # WALHOOK_* environment variables work too
    [ -n "${BENCH_CONF:-}" ] && echo "$BENCH_CONF" >>"$conf"
    mkdir -p -m 700 "$data" # private, as every daemon requires
    local m="http://127.0.0.1:$aport/metrics" d
    t0=$(now)
    for d in store ingestor dispatcher admin; do
        wh_spawn "$d-$name" "$BIN/walhook-$d" -c "$conf"
    done
    local t_st="" t_dl="" deadline=$(( $(date +%s) + LIMIT )) v
    while [ -z "$t_dl" ]; do
        [ "$(date +%s)" -ge "$deadline" ] && { echo "bench: timed out" >&2; exit 1; }
        for d in store ingestor dispatcher admin; do
            wh_alive "$d-$name" || { echo "bench: walhook-$d died" >&2; tail "$WH_TMP/$d-$name.log" >&2; exit 1; }
        done
        if [ -z "$t_st" ]; then
            v=$(wh_metric "$m" walhook_events_stored_total) || v=-1
            [ "${v:--1}" -ge "$events" ] 2>/dev/null && t_st=$(fmt "$(now)" "$t0")
        fi
        if [ -n "$t_st" ]; then
            v=$(wh_metric "$m" walhook_events_delivered_total) || v=-1
            [ "${v:--1}" -ge "$events" ] 2>/dev/null && t_dl=$(fmt "$(now)" "$t0")
        fi
        [ -z "$t_dl" ] && sleep 0.1
    done
    # rate ratio = walhook rate / pg_recvlogical rate = t_recvlogical / t_walhook
    # (1.00: as fast as pg_recvlogical; bars: stored >= 0.90, delivered >= 0.80)
    local r_st r_dl
    r_st=$(ratio "$t_rl" "$t_st")
    r_dl=$(ratio "$t_rl" "$t_dl")
    echo "   walhook: all stored in $t_st s ($(rate "$events" "$t_st") changes/s, rate ratio $r_st of pg_recvlogical's)"
    echo "   walhook: all delivered in $t_dl s ($(rate "$events" "$t_dl") changes/s, rate ratio $r_dl of pg_recvlogical's)"
    local rss="" k sum=0
    for d in store ingestor dispatcher admin; do
        k=$(hwm_kib "${WH_PIDS[$d-$name]}")
        sum=$((sum + ${k:-0}))
        rss+=" $d $(mib "$k") MiB;"
        [ "${BENCH_MEMINFO:-0}" = 1 ] && echo "   $d now:$(meminfo "${WH_PIDS[$d-$name]}")"
    done
    echo "   peak RSS:$rss sum $(mib "$sum") MiB"
    RESULTS+=("$(printf '%-8s %9d %9s %9s %9s %9s %9s %9s' "$name" "$events" "$t_rl" "$t_st" "$t_dl" \
        "$r_st" "$r_dl" "$(mib "$sum")")")
    for d in admin dispatcher ingestor store; do wh_kill "$d-$name" TERM; done
    pg_psql -c "SELECT pg_drop_replication_slot('$rl'), pg_drop_replication_slot('$slot')" >/dev/null
}

run_case small "$SMALL" "CALL bench_small($SMALL)"
run_case big "$BIG" "INSERT INTO bench SELECT i, i, 'row ' || i FROM generate_series(1, $BIG) i"

echo
echo "rate ratio = walhook rate / pg_recvlogical rate (= recvlog_s / walhook_s; bars: stored >= 0.90, delivered >= 0.80)"
echo "peak RSS = sum of the four daemons' VmHWM (bar: < 64 MiB)"
printf '%-8s %9s %9s %9s %9s %9s %9s %9s\n' case events recvlog_s stored_s deliv_s rate_st rate_dl rss_MiB
for r in "${RESULTS[@]}"; do echo "$r"; done
