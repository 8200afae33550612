#!/usr/bin/env bash
# walhook dispatcher benchmark (make bench-dispatch), for the bars of issue 8:
#  (i)  CPU per event of walhook-dispatcher posting a pre-filled store
#       (BENCH_DISPATCH_EVENTS, 200,000 orders-shaped events appended by
#       wh_stagebench) to a local walhook-receiver that answers at once:
#         native     the native envelope, no filter
#         debezium   the Debezium envelope and the filter expression
#                    table == "orders" && op == "insert" && after.amount > 1
#                    (passes ~all rows: every event is filtered and rendered)
#       utime+stime of the dispatcher process (/proc/PID/stat, start-up
#       included) over the events. This is the dispatcher's own part of
#       issue 8's first bar, which is on the hot-path bench's measure, the
#       four daemons' total CPU per event (Debezium + filter at most 20 %
#       above native: bench/envelope.sh); the ingestor and the store do the
#       same work for every envelope.
#  (ii) peak PSS of walhook-dispatcher (/proc/PID/smaps_rollup, sampled every
#       100 ms) while BENCH_PSS_TARGETS (100) targets read a store of
#       BENCH_PSS_EVENTS (10,000) events: BENCH_PSS_FAILING (30) of them post
#       to a receiver answering 503 (retries, breaker), the others to a
#       healthy receiver, until the healthy ones delivered everything, plus
#       3 s; bar: below 48 MiB. BENCH_PSS_BATCH (100: the issue's seed
#       micro-batcher, 100 events / 1 MiB) events per request.
# Both with dispatcher.batch_max_events = BENCH_DISPATCH_BATCH (1000) in (i).
# BENCH_DISPATCH_ROUNDS (1) repeats the pair in (i), alternating native and
# Debezium + filter (each round has its own two targets over the same
# store), and prints each round's difference and their range: on a shared
# machine CPU per event moves between runs by more than the difference.
# BENCH_DISPATCH_WIDE=1: the events of bench/run.sh's backlog (d) instead
# (updates of a 20-column ~1 KiB row with REPLICA IDENTITY FULL, ~2.1 KiB of
# JSON each; wh_stagebench --wide), the Debezium target's filter then
# table == "wide" && op == "update" && after.n1 > 1 (passes ~all rows).
# BENCH_DISPATCH_PSS=0 skips (ii).
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/lib/helpers.sh
WH_TEST_NAME=bench-dispatch
N=${BENCH_DISPATCH_EVENTS:-200000}
BATCH=${BENCH_DISPATCH_BATCH:-1000}
ROUNDS=${BENCH_DISPATCH_ROUNDS:-1}
NP=${BENCH_PSS_EVENTS:-10000}
NT=${BENCH_PSS_TARGETS:-100}
NF=${BENCH_PSS_FAILING:-30}
PBATCH=${BENCH_PSS_BATCH:-100}
FILTER='table == \"orders\" && op == \"insert\" && after.amount > 1'
WIDE=()
if [ "${BENCH_DISPATCH_WIDE:-0}" = 1 ]; then
    WIDE=(--wide)
    FILTER='table == \"wide\" && op == \"update\" && after.n1 > 1'
fi
HZ=$(getconf CLK_TCK)
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-dispatcher walhook-admin walhook-receiver \
    tests/wh_stagebench tests/wh_statectl
wh_tmpdir
export WALHOOK_DISPATCHER_ALLOW_PRIVATE_NETWORKS="127.0.0.1/32"
echo "bench-dispatch: $(nproc) CPUs, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
cpu_s() { awk -v hz="$HZ" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"; }
# user and system CPU seconds of PID: "U S"
cpu_us() { awk -v hz="$HZ" '{ printf "%.3f %.3f", $14 / hz, $15 / hz }' "/proc/$1/stat"; }
now() { date +%s.%N; }

# CONF DATA ADMINPORT BATCH TARGETS...: tenant "default" (no source: the
# store is filled by wh_stagebench) with the given target lines
write_conf() {
    local conf=$1 data=$2 aport=$3 batch=$4
    shift 4
    {
        echo "data_dir = \"$data\";"
        echo "log_level = \"info\";"
        echo "admin = { listen = \"127.0.0.1:$aport\"; };"
        echo "dispatcher = { batch_max_events = $batch; retry_base_ms = 100; retry_max_ms = 2000; };"
        echo "tenants = ("
        local l tsep="" sep=""
        # "TENANT:" starts a tenant (a tenant holds at most 32 targets)
        for l in "$@"; do
            if [ "${l%:}" != "$l" ]; then
                [ -n "$tsep" ] && echo "  ); }"
                echo "  $tsep{ name = \"${l%:}\";"
                echo "    source = { dsn = \"postgresql://unused@127.0.0.1:1/x\"; slot = \"w_${l%:}\"; publication = \"w_${l%:}\"; create_slot = false; };"
                echo "    targets = ("
                tsep=","
                sep=""
                continue
            fi
            echo "      $sep$l"
            sep=","
        done
        echo "  ); } );"
    } >"$conf"
}
start_store() { # CONF DATA
    mkdir -p -m 700 "$2"
    wh_spawn store "$BIN/walhook-store" -c "$1"
    for _ in $(seq 1 300); do [ -S "$2/store.sock" ] && return 0; sleep 0.1; done
    echo "bench-dispatch: the store did not start: $(tail -3 "$WH_TMP/store.log")" >&2
    exit 1
}
# sum of NAME{target=~T} over the targets in the admin's metrics
metric_sum() { # URL NAME REGEX
    { curl -fsS --max-time 30 "$1" 2>/dev/null || true; } |
        awk -v m="$2" -v r="$3" 'index($1, m "{") == 1 && $1 ~ r { s += $NF } END { printf "%.0f\n", s }'
}

# ---- (i) CPU per event: native vs Debezium + filter ------------------------
RPORT=$(wh_free_port)
APORT=$(wh_free_port)
DATA="$WH_TMP/data"
CONF="$WH_TMP/cpu.conf"
# round r's targets: native and debezium (r = 1), nativeR and debeziumR
tl=()
for ((r = 1; r <= ROUNDS; r++)); do
    sfx=$([ "$r" = 1 ] || echo "$r")
    tl+=("{ name = \"native$sfx\"; url = \"http://127.0.0.1:$RPORT/n$sfx\"; $([ "$r" = 1 ] || echo 'paused = true;') }"
        "{ name = \"debezium$sfx\"; url = \"http://127.0.0.1:$RPORT/d$sfx\"; envelope = \"debezium\"; filter_expr = \"$FILTER\"; paused = true; }")
done
write_conf "$CONF" "$DATA" "$APORT" "$BATCH" default: "${tl[@]}"
start_store "$CONF" "$DATA"
"$BIN/tests/wh_stagebench" "${WIDE[@]}" append "ipc://$DATA/store.sock" "$N" >/dev/null || { echo "bench-dispatch: append failed" >&2; exit 1; }
REQLOG="$WH_TMP/requests.log" # one line per POST (walhook-receiver --requests)
: >"$REQLOG"
wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --requests "$REQLOG"
wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
wh_wait_http "http://127.0.0.1:$APORT/livez" 30 >/dev/null 2>&1 || true
declare -A US
run_cpu() { # TARGET
    local t=$1 t0 t1 c deadline
    R0=$(wc -l <"$REQLOG")
    t0=$(now)
    wh_spawn dispatcher "$BIN/walhook-dispatcher" -c "$CONF"
    local dp=${WH_PIDS[dispatcher]}
    deadline=$(($(date +%s) + 600))
    # done when the receiver's log holds every event (native) or stops
    # growing past 99 % (the filter drops a few): the CPU is read then, not
    # after the admin has noticed the new dispatcher (seconds later, idle);
    # the admin's delivered + filtered counters then confirm the count
    local got prev=-1
    while :; do
        got=$(wh_reqlog_events "$REQLOG" "$R0")
        [ "$got" -ge "$N" ] && break
        [ "$got" -ge $((N * 99 / 100)) ] && [ "$got" = "$prev" ] && break
        prev=$got
        [ "$(date +%s)" -ge "$deadline" ] && { echo "bench-dispatch: $t not delivered in time ($got)" >&2; exit 1; }
        sleep 0.05
    done
    t1=$(now)
    c=$(cpu_s "$dp")
    local us
    us=$(cpu_us "$dp")
    local done_=0
    while [ "$done_" -lt "$N" ]; do
        done_=$(wh_metric_done "$APORT" "target=\"$t\"")
        [ "$(date +%s)" -ge "$deadline" ] && { echo "bench-dispatch: $t: delivered + filtered $done_ of $N" >&2; exit 1; }
        [ "$done_" -lt "$N" ] && sleep 0.25
    done
    wh_kill dispatcher TERM
    US[$t]=$(awk -v c="$c" -v n="$N" 'BEGIN { printf "%.2f", c * 1e6 / n }')
    awk -v t="$t" -v n="$N" -v s="$(awk -v a="$t1" -v b="$t0" 'BEGIN { print a - b }')" -v u="${US[$t]}" \
        -v us="$us" \
        'BEGIN { split(us, x, " "); printf "%-9s %8d events in %6.2f s: %9.0f events/s, %6.2f us CPU/event (walhook-dispatcher; user %.2f, system %.2f)\n", t, n, s, n / s, u, x[1] * 1e6 / n, x[2] * 1e6 / n }'
}
ratios=()
for ((r = 1; r <= ROUNDS; r++)); do
    sfx=$([ "$r" = 1 ] || echo "$r")
    if [ "$r" -gt 1 ]; then
        "$BIN/tests/wh_statectl" -c "$CONF" set-target default "native$sfx" paused=0 >/dev/null
    fi
    run_cpu "native$sfx"
    "$BIN/tests/wh_statectl" -c "$CONF" set-target default "native$sfx" paused=1 >/dev/null
    "$BIN/tests/wh_statectl" -c "$CONF" set-target default "debezium$sfx" paused=0 >/dev/null
    run_cpu "debezium$sfx"
    "$BIN/tests/wh_statectl" -c "$CONF" set-target default "debezium$sfx" paused=1 >/dev/null
    ratio=$(awk -v a="${US[debezium$sfx]}" -v b="${US[native$sfx]}" 'BEGIN { printf "%.1f", (a / b - 1) * 100 }')
    ratios+=("$ratio")
    diff=$(awk -v a="${US[debezium$sfx]}" -v b="${US[native$sfx]}" 'BEGIN { printf "%+.2f", a - b }')
    echo "debezium + filter vs native: $(printf '%+.1f' "$ratio") % of the dispatcher's own CPU per event (${diff} us/event;" \
        "issue 8's 20 % bar is on the four daemons' total: bench/envelope.sh)"
done
if [ "$ROUNDS" -gt 1 ]; then
    printf '%s\n' "${ratios[@]}" | sort -n |
        awk '{ v[NR] = $1 } END { printf "over %d rounds: %+.1f %% to %+.1f %% (median %+.1f %%)\n", NR, v[1], v[NR], (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
fi
for d in admin receiver store; do wh_kill "$d" TERM; done
if [ "${BENCH_DISPATCH_PSS:-1}" = 0 ]; then
    echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    exit 0
fi

# ---- (ii) peak PSS with NT targets, NF failing ------------------------------
GPORT=$(wh_free_port)
FPORT=$(wh_free_port)
APORT=$(wh_free_port)
DATA="$WH_TMP/data-pss"
CONF="$WH_TMP/pss.conf"
lines=()
PER=25 # targets per tenant
for ((i = 0; i < NT; i++)); do
    [ $((i % PER)) = 0 ] && lines+=("d$((i / PER)):")
    if [ "$i" -lt "$NF" ]; then
        lines+=("{ name = \"f$i\"; url = \"http://127.0.0.1:$FPORT/f$i\"; }")
    else
        lines+=("{ name = \"g$i\"; url = \"http://127.0.0.1:$GPORT/g$i\"; }")
    fi
done
write_conf "$CONF" "$DATA" "$APORT" "$PBATCH" "${lines[@]}"
start_store "$CONF" "$DATA"
for ((k = 0; k * PER < NT; k++)); do
    "$BIN/tests/wh_stagebench" append "ipc://$DATA/store.sock" "$NP" "d$k" >/dev/null
done
wh_spawn good "$BIN/walhook-receiver" --listen "127.0.0.1:$GPORT"
wh_spawn failing "$BIN/walhook-receiver" --listen "127.0.0.1:$FPORT" --status 503
wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
wh_wait_http "http://127.0.0.1:$APORT/livez" 30 >/dev/null 2>&1 || true
METRICS="http://127.0.0.1:$APORT/metrics"
t0=$(now)
wh_spawn dispatcher "$BIN/walhook-dispatcher" -c "$CONF"
DP=${WH_PIDS[dispatcher]}
# PSS sampled every 100 ms in the background (the admin's /metrics may take
# seconds to answer with 100 targets on a loaded machine)
( while kill -0 "$DP" 2>/dev/null; do
      awk '/^Pss:/ { print $2 }' "/proc/$DP/smaps_rollup" 2>/dev/null
      sleep 0.1
  done ) >"$WH_TMP/pss.samples" &
SAMPLER=$!
want=$(( (NT - NF) * NP ))
deadline=$(($(date +%s) + ${BENCH_PSS_TIMEOUT:-600}))
while :; do
    got=$(metric_sum "$METRICS" walhook_events_delivered_total 'target="g')
    [ "${got:-0}" -ge "$want" ] && break
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "bench-dispatch: PSS run not delivered in time ($got of $want)" >&2
        exit 1
    fi
    sleep 1
done
t1=$(now)
sleep 3
peak=$(sort -n "$WH_TMP/pss.samples" | tail -n 1)
nsamp=$(wc -l <"$WH_TMP/pss.samples")
fails=$(metric_sum "$METRICS" walhook_delivery_failures_total 'target="f')
wh_kill dispatcher TERM
wait "$SAMPLER" 2>/dev/null
awk -v p="$peak" -v ns="$nsamp" -v nt="$NT" -v nf="$NF" -v np="$NP" -v b="$PBATCH" -v f="$fails" \
    -v s="$(awk -v a="$t1" -v b="$t0" 'BEGIN { print a - b }')" \
    'BEGIN { printf "peak PSS  %.1f MiB with %d targets (%d failing: %d failed attempts), %d events each to the healthy ones in %.1f s, %d events per request (%s the 48 MiB bar; %d samples)\n", p / 1024, nt, nf, f, np, s, b, (p / 1024 < 48 ? "under" : "OVER"), ns }'
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
