#!/usr/bin/env bash
# walhook benchmark (make bench): how fast, and at what CPU and memory cost,
# walhook drains a replication backlog, compared with pg_recvlogical
# decoding the same WAL to /dev/null.
#
# Backlogs (each on fresh slots created just before it is written):
#   pgbench  BENCH_PGBENCH_TXNS (200,000) one-row transactions from 4
#            concurrent pgbench clients into orders(id bigserial, customer,
#            amount numeric(12,2), note, created_at timestamptz)
#   small    BENCH_SMALL_TXNS (200,000) one-row transactions by one connection
#   big      one transaction of BENCH_BIG_TXN (1,000,000) rows
#   wide     BENCH_WIDE_UPDATES (100,000) updates of wide rows (20 columns,
#            about 1 KiB: text, jsonb, text[], timestamptz, numeric) with
#            REPLICA IDENTITY FULL, in one statement
# BENCH_PERF=DIR records a CPU profile (perf record -g) of the daemons of
# each backlog into DIR/perf-NAME.data.
# BENCH_METRICS=DIR keeps the admin's /metrics at the end of each backlog
# (DIR/metrics-CASE.txt: the store's append stages, the ingestor's window).
# BENCH_SOCKET=unix: both tools drain over PostgreSQL's Unix socket instead
# of loopback TCP (the backlogs are written over TCP either way). Over a
# Unix socket the sender pays no receiving side's TCP work, so
# pg_recvlogical's walsender loses the handicap it has over TCP (session
# 42) and walhook gains no batching from SO_RCVLOWAT (a Unix socket's
# poll ignores it): session 43 measured walhook at 0.71-0.94 of
# pg_recvlogical this way (its own times -31 % to +42 % against TCP's, the
# medians of each backlog). The admin's slot queries take the socket too
# (the same source.dsn).
# BENCH_RL_STREAMING=1 also times pg_recvlogical with pgoutput streaming on
# (protocol 2) on each backlog, for reference.
# BENCH_SCALE (1) multiplies every default size (BENCH_SCALE=0.1: a quick
# run); BENCH_CASES ("pgbench small big wide") picks backlogs; BENCH_REPEAT
# (1) drains each backlog that many times with each tool, alternately, and
# adds min / median / max of the ratios, the CPU total and the PSS sum;
# BENCH_TARGET_EVEN (see BENCH_TARGET below) gives the even repeats other
# target settings (bench/envelope.sh; BENCH_TARGET_ABBA=1: repeats 2, 3, 6,
# 7, ... instead, the order A B B A). PG_MAX_SLOTS: the test PostgreSQL's
# max_replication_slots (default: enough for BENCH_REPEAT).
#
# For each: pg_recvlogical's time and CPU (user+sys) to drain its slot up to
# the backlog's end LSN; walhook's time until every event is durably stored
# (walhook_events_stored_total) and acknowledged by a local walhook-receiver
# (walhook_events_delivered_total) and the ratios (pg_recvlogical time /
# walhook time); CPU-seconds per event of each daemon (utime+stime from
# /proc/PID/stat, start-up included) and their sum, and how much of that
# sum was spent before the first event arrived (start-up, and the wait
# while PostgreSQL decodes a large transaction); each daemon's peak PSS
# (/proc/PID/smaps_rollup sampled every 100 ms) and their sum; and walhook's
# start-up: when its walsender connected and the first events arrived (a
# backlog of one transaction, as (c) and (d), arrives only after PostgreSQL
# decoded all of it). For each tool's walsender: its CPU, how long it
# waited for a CPU (the daemons or pg_recvlogical on the other core) and how
# often it blocked; where the drain is the walsender's pace, as on (d), a
# tool's time is its walsender's CPU plus that wait plus the rest (rl_x,
# wh_x: its start-up and the walsender's blocks), a figure without the
# walsender's CPU noise.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib/helpers.sh
WH_TEST_NAME=bench
SCALE=${BENCH_SCALE:-1}
scaled() { awk -v n="$1" -v s="$SCALE" 'BEGIN { v = int(n * s); if (v < 4) v = 4; print v }'; }
N_PGBENCH=${BENCH_PGBENCH_TXNS:-$(scaled 200000)}
N_PGBENCH=$((N_PGBENCH / 4 * 4)) # 4 clients, the same count each
N_SMALL=${BENCH_SMALL_TXNS:-$(scaled 200000)}
N_BIG=${BENCH_BIG_TXN:-$(scaled 1000000)}
N_WIDE=${BENCH_WIDE_UPDATES:-$(scaled 100000)}
CASES=${BENCH_CASES:-pgbench small big wide}
REPEAT=${BENCH_REPEAT:-1}
SUMMARY=()
LIMIT=${BENCH_TIMEOUT:-900}
DAEMONS=(ingestor store dispatcher admin)
HZ=$(getconf CLK_TCK)
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-admin walhook-receiver tests/wh_pss
command -v pgbench >/dev/null || PATH="$PG_BIN:$PATH"
wh_tmpdir
echo "bench: $(nproc) CPUs, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
# Both tools read the walsender over loopback TCP, and the walsender sends
# each message as it is made: its CPU is mostly those sends, and how many
# segments they make depends on the connection's TCP state. The kernel
# keeps, per destination, the RTT and cwnd of the last connection that
# closed (tcp_metrics) and starts the next one from them: a drain inherited
# whatever the previous connection to 127.0.0.1 left (a psql, a scrape, the
# other tool), and with BBR the walsender's CPU on (a) moved by up to 1.7x
# between drains of the same tool (session 42). So each drain starts from
# none (as root; otherwise said here), and the congestion control is shown.
tcp_flush() { ip tcp_metrics flush 127.0.0.0/8 >/dev/null 2>&1; }
SOCKET=${BENCH_SOCKET:-tcp}
case $SOCKET in
tcp | unix) ;;
*) echo "bench: BENCH_SOCKET must be tcp or unix, not \"$SOCKET\"" >&2; exit 2 ;;
esac
TCP_FRESH=0
tcp_flush && TCP_FRESH=1
echo "bench: TCP congestion control $(cat /proc/sys/net/ipv4/tcp_congestion_control 2>/dev/null || echo ?)," \
    "$([ "$TCP_FRESH" = 1 ] && echo "cached TCP metrics of 127.0.0.0/8 flushed before each drain" ||
        echo "cached TCP metrics NOT flushed (needs root and ip): drains may inherit each other's TCP state")"
tcp_fresh() { [ "$TCP_FRESH" = 1 ] && tcp_flush || true; }
# each repeat drains the backlog from two slots of its own (and
# BENCH_RL_STREAMING one more): room for them besides any slot of the tests
PG_MAX_SLOTS=${PG_MAX_SLOTS:-$((2 * REPEAT + 3 > 10 ? 2 * REPEAT + 3 : 10))}
export PG_MAX_SLOTS
pg_start
# the DSN both tools drain with (BENCH_SOCKET, checked above)
if [ "$SOCKET" = unix ]; then
    DRAIN_DSN="postgresql://postgres@/postgres?host=$PG_DIR&port=$PG_PORT"
    echo "bench: both tools drain over PostgreSQL's Unix socket"
else
    DRAIN_DSN=$PG_DSN
    echo "bench: both tools drain over loopback TCP"
fi
pg_psql -c "CREATE TABLE bench (id bigint PRIMARY KEY, n int, t text);
            CREATE TABLE orders (id bigserial PRIMARY KEY, customer text,
                                 amount numeric(12,2), note text,
                                 created_at timestamptz DEFAULT now());
            CREATE TABLE wide (id int PRIMARY KEY, c1 text, c2 text, c3 text, c4 text,
                               c5 text, j1 jsonb, j2 jsonb, a1 text[], a2 text[],
                               t1 timestamptz, t2 timestamptz, t3 timestamptz,
                               n1 numeric, n2 numeric, n3 numeric, n4 numeric,
                               c6 text, c7 text, c8 text);
            ALTER TABLE wide REPLICA IDENTITY FULL;
            CREATE PUBLICATION walhook FOR ALL TABLES;
            CREATE PROCEDURE bench_small(n int) LANGUAGE plpgsql AS \$\$
            BEGIN
              SET synchronous_commit = off; -- session-wide: the WAL is the same, the backlog faster
              FOR i IN 1..n LOOP
                INSERT INTO bench VALUES (i, i, 'row ' || i);
                COMMIT;
              END LOOP;
            END \$\$;"
cat >"$WH_TMP/orders.sql" <<'SQL'
\set c random(1, 100000)
INSERT INTO orders (customer, amount, note) VALUES ('customer ' || :c, :c * 0.37, 'note for order of customer ' || :c);
SQL
RPORT=$(wh_free_port)
# --requests: one line per POST with its arrival time (unix ms) and batch
# size, so "delivered" is the arrival of the last event, not the next poll
REQLOG="$WH_TMP/requests.log"
: >"$REQLOG"
wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --requests "$REQLOG"

now() { echo "$EPOCHREALTIME"; }
source bench/lib.sh
# nofork_sleeper: opens a FIFO read-write on fd SLEEP_FD (nothing ever
# writes it), so that `read -t SECONDS -u "$SLEEP_FD"` sleeps without a fork
nofork_sleeper() {
    local f="$WH_TMP/sleep.$BASHPID.$RANDOM"
    mkfifo "$f" && exec {SLEEP_FD}<>"$f" && rm -f "$f"
}
# ws_read PID: WS_WAIT, the ns the process waited for a CPU so far (the
# second field of /proc/PID/schedstat), and WS_VOL, its voluntary context
# switches (it blocked: a full socket, no WAL yet), by builtins; 1 when
# they cannot be read (it exited)
ws_read() {
    local line
    WS_WAIT="" WS_VOL=""
    read -r _ WS_WAIT _ <"/proc/$1/schedstat" 2>/dev/null || return 1
    while read -r line; do
        case $line in voluntary_ctxt_switches:*) WS_VOL=${line##*[[:space:]]} ;; esac
    done <"/proc/$1/status" 2>/dev/null
    [ -n "$WS_VOL" ]
}
# proc_sample FILE PGREP-ARGS...: while the newest process pgrep finds runs
# (the only walsender, pg_recvlogical's; pg_recvlogical itself), keeps its
# ws_read figures in FILE ("WAIT VOL"), read every 0.1 s (no fork but the
# pgrep that finds it): they cannot be read once it has exited
proc_sample() {
    local f=$1 p="" i
    shift
    for i in $(seq 100); do
        p=$(pgrep -n "$@") && break
        sleep 0.05
    done
    [ -n "$p" ] || return 0
    nofork_sleeper
    while ws_read "$p"; do
        echo "$WS_WAIT $WS_VOL" >"$f"
        read -r -t 0.1 -u "$SLEEP_FD" _ || true
    done
}
# proc_wait PID-OR-FILE (proc_sample's): "W N", the seconds the process
# waited for a CPU and the times it blocked ("? ?" when unknown)
proc_wait() {
    WS_WAIT="" WS_VOL=""
    if [ -f "$1" ]; then
        read -r WS_WAIT WS_VOL <"$1"
    else
        ws_read "$1" || true
    fi
    [ -n "$WS_WAIT" ] && [ -n "$WS_VOL" ] || { echo "? ?"; return; }
    awk -v w="$WS_WAIT" -v v="$WS_VOL" 'BEGIN { printf "%.2f %d", w / 1e9, v }'
}
# beyond TIME WALSENDER-CPU "W N": the time a tool took beyond its
# walsender's CPU and wait for a CPU (its start-up and the walsender's
# blocks), "?" when unknown
beyond() {
    awk -v t="$1" -v c="$2" -v w="${3%% *}" 'BEGIN {
        if (w == "?" || t == "" || c == "") print "?"; else printf "%.2f", t - c - w }'
}
# CPU-seconds of the postmaster's exited children (walsenders and backends
# that ended: pg_recvlogical's walsender, the admin's per-scrape connections)
pg_children_cpu() {
    awk -v hz="$HZ" '{ printf "%.2f", ($16 + $17) / hz }' "/proc/$(head -1 "$PG_DIR/data/postmaster.pid")/stat"
}

write_pgbench() {
    PGOPTIONS="-c synchronous_commit=off" pgbench -n -c 4 -j 2 -t $((N_PGBENCH / 4)) \
        -f "$WH_TMP/orders.sql" "$PG_DSN" >"$WH_TMP/pgbench.log" 2>&1 ||
        { cat "$WH_TMP/pgbench.log" >&2; exit 1; }
}
prep_wide() {
    pg_psql -c "TRUNCATE wide;
        INSERT INTO wide SELECT i, repeat(md5(i::text), 3), repeat(md5((i+1)::text), 3),
          repeat(md5((i+2)::text), 2), 'customer ' || i, repeat('x', 64),
          jsonb_build_object('id', i, 'name', 'item ' || i, 'tags', jsonb_build_array('a', 'b', i),
                             'price', i * 1.25, 'ok', true),
          jsonb_build_object('address', repeat(md5(i::text), 2), 'zip', i % 100000),
          ARRAY['alpha', 'beta', md5(i::text), 'gamma'], ARRAY[md5((i*7)::text), 'delta'],
          now(), now() - interval '1 day', now() + i * interval '1 second',
          i * 3.14159, i / 7.0, 12345678.9, i % 1000,
          repeat(md5((i*3)::text), 2), 'status ' || (i % 10), 'x'
        FROM generate_series(1, $N_WIDE) i;" >/dev/null
}

RESULTS=()
# BENCH_REPEAT=N: pg_recvlogical and walhook each drain the same backlog N
# times, alternately (a pair of fresh slots per repeat, all created before
# the backlog is written; a fresh store each time); one row per repeat and a
# line of min / median / max. The host's noise moves both sides of a ratio.
sfx_of() { [ "$REPEAT" -gt 1 ] && echo "_$1" || true; }
run_case() { # NAME EVENTS PREP WRITE: PREP runs before the slots exist, WRITE is the backlog
    local name=$1 events=$2 prep=$3 write=$4 r sfx
    echo "== backlog ($name): $events events"
    local slots
    slots=$(pg_psql -At -c "SELECT current_setting('max_replication_slots')::int - count(*) FROM pg_replication_slots")
    [ $((2 * REPEAT)) -le "$slots" ] ||
        { echo "bench: BENCH_REPEAT=$REPEAT needs $((2 * REPEAT)) replication slots, $slots are free" >&2; exit 2; }
    "$prep"
    pg_psql -c "CHECKPOINT" >/dev/null
    for r in $(seq 1 "$REPEAT"); do
        sfx=$(sfx_of "$r")
        pg_psql -c "SELECT pg_create_logical_replication_slot('rl_$name$sfx', 'pgoutput')" >/dev/null
        pg_psql -c "SELECT pg_create_logical_replication_slot('walhook_$name$sfx', 'pgoutput')" >/dev/null
    done
    [ "${BENCH_RL_STREAMING:-0}" = 1 ] &&
        pg_psql -c "SELECT pg_create_logical_replication_slot('rl_${name}_s', 'pgoutput')" >/dev/null
    local t0 t1
    t0=$(now)
    "$write"
    t1=$(now)
    local end
    end=$(pg_psql -At -c "SELECT pg_current_wal_lsn()")
    echo "   backlog written in $(fmt "$t1" "$t0") s, end LSN $end"
    # PostgreSQL settles before either tool drains: autovacuum of the table
    # just written and the checkpoint of its dirty buffers otherwise run
    # beside whichever tool drains then (on (d), 1.3 s of an autovacuum
    # worker's CPU beside walhook's first repeat, its walsender waiting for
    # a CPU: ratio 0.92 against 1.03 for the next two repeats)
    pg_psql -c "VACUUM ANALYZE" >/dev/null
    pg_psql -c "CHECKPOINT" >/dev/null
    local first=${#RESULTS[@]}
    for r in $(seq 1 "$REPEAT"); do
        sfx=$(sfx_of "$r")
        # BENCH_TARGET_EVEN: the target's settings on even repeats instead
        # of BENCH_TARGET (bench/envelope.sh: two variants drain the same
        # backlog in turn)
        local tgt=${BENCH_TARGET:-}
        # (BENCH_TARGET_ABBA=1: on repeats 2, 3, 6, 7, ...: the order A B B A,
        # so that a drift along the repeats, such as the page cache warming
        # up, weighs on both alike)
        local alt=$((r % 2 == 0))
        [ "${BENCH_TARGET_ABBA:-0}" = 1 ] && alt=$((r % 4 == 2 || r % 4 == 3))
        [ -n "${BENCH_TARGET_EVEN+set}" ] && [ "$alt" = 1 ] && tgt=$BENCH_TARGET_EVEN
        [ "$REPEAT" -gt 1 ] && echo "-- repeat $r of $REPEAT${tgt:+ (target settings: $tgt)}"
        BENCH_TARGET=$tgt run_pair "$name" "$events" "$end" "$sfx" "$r"
    done
    [ "$REPEAT" -gt 1 ] && SUMMARY+=("$(printf '%s\n' "${RESULTS[@]:$first}" | awk -v name="$name" '
        # "min / median / max" of a[1..n] (sorted in place)
        function mmm(a, n, f,   i, j, t) {
            for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
            return sprintf(f " / " f " / " f, a[1], n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2, a[n]) }
        { n++; st[n] = $7; dl[n] = $8; to[n] = $13; ps[n] = $14; if ($16 != "?") wx[++m] = $16 }
        END { printf "%-8s r_st %s   r_dl %s   total %s   pss %s   wh_x %s", name,
                  mmm(st, n, "%.2f"), mmm(dl, n, "%.2f"), mmm(to, n, "%.1f"), mmm(ps, n, "%.1f"),
                  m ? mmm(wx, m, "%.2f") : "?" }')")
    return 0
}

# One pg_recvlogical run and one walhook run over a backlog already written
run_pair() { # NAME EVENTS END-LSN SUFFIX REPEAT
    local name=$1 events=$2 end=$3 sfx=$4 rep=$5
    local slot="walhook_$name$sfx" rl="rl_$name$sfx" data="$WH_TMP/data-$name$sfx" t0

    local tf="$WH_TMP/time-$name" TIMEFORMAT='%R %U %S' pgc0 pgc1
    pgc0=$(pg_children_cpu)
    rm -f "$WH_TMP/rl-ws-$name" "$WH_TMP/rl-self-$name"
    tcp_fresh
    proc_sample "$WH_TMP/rl-ws-$name" -f "postgres: walsender" &
    local wss=$!
    # and pg_recvlogical itself: how often it slept for data (see below)
    proc_sample "$WH_TMP/rl-self-$name" -x pg_recvlogical &
    local rss=$!
    { time pg_recvlogical -d "$DRAIN_DSN" -S "$rl" --start -o proto_version=1 \
        -o publication_names=walhook -E "$end" -f /dev/null --no-loop; } 2>"$tf"
    kill "$wss" "$rss" 2>/dev/null || true
    wait "$wss" "$rss" 2>/dev/null || true
    # its walsender's CPU counts once the postmaster has reaped it
    local i
    for i in $(seq 40); do pgrep -f "postgres: walsender" >/dev/null || break; sleep 0.05; done
    pgc1=$(pg_children_cpu)
    if [ "${BENCH_RL_STREAMING:-0}" = 1 ] && [ "$rep" = 1 ]; then
        # what pgoutput's streaming of large in-progress transactions (protocol
        # 2, which walhook does not use yet) would give PostgreSQL's side
        { time pg_recvlogical -d "$DRAIN_DSN" -S "rl_${name}_s" --start -o proto_version=2 -o streaming=on \
            -o publication_names=walhook -E "$end" -f /dev/null --no-loop; } 2>"$tf.s"
        pg_psql -c "SELECT pg_drop_replication_slot('rl_${name}_s')" >/dev/null
        echo "   pg_recvlogical with streaming=on (protocol 2): $(awk '{ printf "%.2f s, CPU %.2f s", $1, $2 + $3 }' "$tf.s")"
    fi
    local t_rl rl_cpu
    t_rl=$(awk '{ printf "%.2f", $1 }' "$tf")
    rl_cpu=$(awk '{ printf "%.2f", $2 + $3 }' "$tf")
    echo "   pg_recvlogical drained its slot in $t_rl s ($(rate "$events" "$t_rl") changes/s)," \
        "CPU $rl_cpu s ($(us_per "$rl_cpu" "$events") us/event)"
    # how often pg_recvlogical slept waiting for data. Over loopback TCP the
    # sending walsender does the receiving side's TCP work in its own
    # system call, and wakes a reader that sleeps: a reader that sleeps for
    # each few messages costs its walsender CPU (session 42: the sends were
    # 73 % of pg_recvlogical's walsender's samples, 44 % of walhook's,
    # whose ingestor sleeps until 128 KiB are buffered), and a drain where
    # it falls behind (fewer sleeps) is faster
    local rl_sl
    rl_sl=$(proc_wait "$WH_TMP/rl-self-$name")
    echo "   pg_recvlogical slept for data ${rl_sl#* } times" \
        "($(awk -v n="${rl_sl#* }" -v e="$events" 'BEGIN { if (n == "?") print "?"; else printf "%.3f", n / e }') per event)"

    local aport conf
    aport=$(wh_free_port)
    conf="$WH_TMP/$name.conf"
    wh_write_conf "$conf" "$DRAIN_DSN" "$data" "$aport" "http://127.0.0.1:$RPORT/hook"
    sed -i "s/slot = \"walhook\"/slot = \"$slot\"/" "$conf"
    # BENCH_CONF: extra config lines (e.g. 'ingestor = { window_bytes = 8388608; };');
    # WALHOOK_* environment variables work too
    [ -n "${BENCH_CONF:-}" ] && echo "$BENCH_CONF" >>"$conf"
    # BENCH_TARGET: extra settings of the one target (e.g. 'envelope = "debezium";
    # filter_expr = "...";', see bench/envelope.sh)
    if [ -n "${BENCH_TARGET:-}" ]; then
        BENCH_TARGET=$BENCH_TARGET awk '{ i = index($0, "{ name = \"t0\"; ")
            if (i) $0 = substr($0, 1, i + 14) ENVIRON["BENCH_TARGET"] " " substr($0, i + 15)
            print }' "$conf" >"$conf.t" && mv "$conf.t" "$conf"
        grep -qF "$BENCH_TARGET" "$conf" || { echo "bench: BENCH_TARGET not applied" >&2; exit 2; }
    fi
    mkdir -p -m 700 "$data" # private, as every daemon requires
    local m="http://127.0.0.1:$aport/metrics" d
    local pgc2
    pgc2=$(pg_children_cpu)
    local req0
    req0=$(wc -l <"$REQLOG")
    local rcv0
    rcv0=$(cpu_s "${WH_PIDS[receiver]}")
    tcp_fresh
    t0=$(now)
    # in `walhook up`'s order: the store and the ingestor (which waits for
    # the store itself) at once, the dispatcher and the admin once the
    # store listens (its socket polled by builtins every 2 ms)
    local pids=()
    wh_spawn "store-$name" "$BIN/walhook-store" -c "$conf"
    wh_spawn "ingestor-$name" "$BIN/walhook-ingestor" -c "$conf"
    nofork_sleeper
    local until=$((EPOCHSECONDS + 60))
    while [ ! -S "$data/store.sock" ] && wh_alive "store-$name" && [ "$EPOCHSECONDS" -lt "$until" ]; do
        read -r -t 0.002 -u "$SLEEP_FD" _ || true
    done
    exec {SLEEP_FD}<&-
    wh_spawn "dispatcher-$name" "$BIN/walhook-dispatcher" -c "$conf"
    wh_spawn "admin-$name" "$BIN/walhook-admin" -c "$conf"
    for d in "${DAEMONS[@]}"; do
        pids+=("${WH_PIDS[$d-$name]}")
    done
    # peak PSS every 100 ms, by a small program: a shell loop forking awk
    # ten times a second took ~0.3 s from walhook's run on (d)
    # (and the daemons' CPU at each sample: what they spent before the first
    # event arrived, start-up and any wait while PostgreSQL decodes, is
    # printed apart from the rest)
    WH_PSS_CPU_LOG="$WH_TMP/cpu-$name$sfx" "$BIN/tests/wh_pss" 100 "${pids[@]}" >"$WH_TMP/pss-$name" &
    local sampler=$! perfpid=""
    if [ -n "${BENCH_PERF:-}" ]; then # BENCH_PERF=DIR: perf record -g of each daemon into DIR
        mkdir -p "$BENCH_PERF"
        perf record -q ${BENCH_PERF_OPTS:--F 1999 -g} -o "$BENCH_PERF/perf-$name$sfx.data" \
            -p "$(IFS=,; echo "${pids[*]}")" >/dev/null 2>&1 &
        perfpid=$!
    fi
    # the poll forks as little as it can (its CPU is taken from walhook and
    # the walsender): bash's clocks and one awk over the receiver's request
    # log; the admin is asked only at the end of a BENCH_TARGET run (a
    # filter's dropped events count as done), since each scrape gathers
    # every daemon's metrics. The exact times are read afterwards.
    local t_dl="" deadline=$((EPOCHSECONDS + LIMIT)) v
    while [ -z "$t_dl" ]; do
        [ "$EPOCHSECONDS" -ge "$deadline" ] && { echo "bench: timed out" >&2; exit 1; }
        for d in "${DAEMONS[@]}"; do
            wh_alive "$d-$name" || { echo "bench: walhook-$d died" >&2; tail "$WH_TMP/$d-$name.log" >&2; exit 1; }
        done
        v=$(wh_reqlog_events "$REQLOG" "$req0") || v=-1
        # with a filter (BENCH_TARGET) some events never arrive: once 99 %
        # have, the admin's delivered + filtered counters decide
        if [ -n "${BENCH_TARGET:-}" ] && [ "${v:-0}" -ge $((events * 99 / 100)) ]; then
            v=$(wh_metric_done "$aport")
        fi
        [ "${v:--1}" -ge "$events" ] 2>/dev/null && t_dl=$(fmt "$EPOCHREALTIME" "$t0")
        [ -z "$t_dl" ] && sleep 0.25
    done
    # the store counts an append once its WAL sync is done, and its events
    # may reach the receiver before (they are readable once written): the
    # counter gets a moment to catch up
    local try
    for try in 1 2 3 4 5 6 7 8 9 10; do
        v=$(wh_metric_tcp "$aport" walhook_events_stored_total) || v=-1
        [ "$v" -ge "$events" ] && break
        sleep 0.2
    done
    [ "$v" -ge "$events" ] || { echo "bench: $v events stored, $events expected" >&2; exit 1; }
    local wsp pgc3 rcv1
    pgc3=$(pg_children_cpu)
    rcv1=$(cpu_s "${WH_PIDS[receiver]}")
    wsp=$(pg_psql -At -c "SELECT active_pid FROM pg_replication_slots WHERE slot_name = '$slot'")
    local t_ws
    t_ws=$(pg_psql -At -c "SELECT extract(epoch FROM backend_start) - $t0 FROM pg_stat_activity WHERE pid = ${wsp:-0}")
    local rl_ws rl_ww wh_ws wh_ww
    rl_ws=$(fmt "$pgc1" "$pgc0")
    rl_ww=$(proc_wait "$WH_TMP/rl-ws-$name")
    wh_ws=$(cpu_s "${wsp:-0}")
    wh_ww=$(proc_wait "${wsp:-0}")
    echo "   PostgreSQL CPU: pg_recvlogical's walsender $rl_ws s (waited ${rl_ww% *} s for a CPU," \
        "blocked ${rl_ww#* } times); walhook's walsender $wh_ws s (waited ${wh_ww% *} s, blocked" \
        "${wh_ww#* } times), exited backends meanwhile (the admin's" \
        "per-scrape slot queries) $(fmt "$pgc3" "$pgc2") s; the local receiver (a real target" \
        "runs elsewhere) $(fmt "$rcv1" "$rcv0") s"
    local cpu=() total=0 c i flt="" csw=""
    for i in "${!DAEMONS[@]}"; do
        flt+=" ${DAEMONS[$i]} $(awk '{ print $10 }' "/proc/${pids[$i]}/stat");"
        # context switches of the live threads (a PV guest pays dearly for each)
        csw+=" ${DAEMONS[$i]} $(cat /proc/"${pids[$i]}"/task/*/status 2>/dev/null |
            awk '/ctxt_switches/ { s += $2 } END { printf "%.2f", s / '"$events"' }');"
        c=$(cpu_s "${pids[$i]}")
        cpu+=("$c")
        total=$(awk -v a="$total" -v b="$c" 'BEGIN { print a + b }')
    done
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    if [ -n "$perfpid" ]; then
        kill -INT "$perfpid" 2>/dev/null || true
        wait "$perfpid" 2>/dev/null || true
    fi
    # the exact time: the POST that brought the events' count (2xx answers,
    # X-Batch-Size) to all of them; the poll above only saw it up to 0.25 s
    # later (a filter drops events: then the poll's time stays)
    local t_arr
    t_arr=$(awk -v skip="$req0" -v n="$events" -v t0="$t0" \
        'NR > skip && $2 ~ /^2/ && $3 ~ /^[0-9]+$/ { s += $3; if (s >= n) { printf "%.2f", $1 / 1000 - t0; exit } }' \
        "$REQLOG")
    [ -n "$t_arr" ] && t_dl=$t_arr
    # the start-up: the first POST's arrival (the daemons start, connect,
    # and the walsender begins decoding; pg_recvlogical's time has its own)
    local t_first
    t_first=$(awk -v skip="$req0" -v t0="$t0" 'NR > skip && $2 ~ /^2/ { printf "%.3f", $1 / 1000 - t0; exit }' "$REQLOG")
    # the exact stored time: the store's last synced append of events, at
    # most the delivered time
    local t_la t_st
    t_la=$(wh_metric_tcp "$aport" walhook_store_last_append_timestamp_seconds %.6f) || t_la=-1
    t_st=$(awk -v b="$t_dl" -v l="$t_la" -v t0="$t0" 'BEGIN {
        printf "%.2f", (l > 0 && l - t0 < b ? l - t0 : b) }')
    local r_st r_dl
    r_st=$(ratio "$t_rl" "$t_st")
    r_dl=$(ratio "$t_rl" "$t_dl")
    echo "   walhook: all stored in $t_st s ($(rate "$events" "$t_st") changes/s, ratio $r_st)"
    local rl_x wh_x
    rl_x=$(beyond "$t_rl" "$rl_ws" "$rl_ww")
    wh_x=$(beyond "$t_st" "$wh_ws" "$wh_ww")
    echo "   beyond its walsender's CPU and wait for a CPU (start-up, the walsender's blocks):" \
        "pg_recvlogical $rl_x s, walhook (stored) $wh_x s"
    echo "   walhook: all delivered in $t_dl s (the last one's arrival at the receiver, $(rate "$events" "$t_dl") changes/s, ratio $r_dl)"
    [ -n "$t_ws" ] && t_ws=$(awk -v t="$t_ws" 'BEGIN { printf "%.3f", t }')
    echo "   walhook: its walsender connected after ${t_ws:-?} s," \
        "the first events arrived at the receiver after ${t_first:-?} s"
    bench_daemons_report "$events" ev event "$WH_TMP/pss-$name"
    # the CPU of the last sample before the first event's arrival: a fixed
    # cost of the run, not of its events (the per-event figures above keep it)
    local c_first
    c_first=$(awk -v t="$(awk -v a="$t0" -v b="${t_first:-0}" 'BEGIN { printf "%.0f", (a + b) * 1000 }')" \
        -v hz="$HZ" '$1 <= t { c = $2 } END { printf "%.2f", c / hz }' "$WH_TMP/cpu-$name$sfx")
    echo "   of which before the first event arrived (start-up, and any wait while PostgreSQL" \
        "decodes): $c_first s; from then on $(awk -v a="$total" -v b="$c_first" 'BEGIN { printf "%.2f", a - b }') s" \
        "($(us_per "$(awk -v a="$total" -v b="$c_first" 'BEGIN { print a - b }')" "$events") us/event)"
    # each daemon's minor page faults at the last sample before the first
    # event's arrival (start-up); the rest are the drain's: the first touch
    # of memory a daemon then keeps (the same count on a backlog twice as
    # long) or churn, memory returned to the kernel and faulted in again
    # (a count that grows with the events)
    local f_first
    f_first=$(awk -v t="$(awk -v a="$t0" -v b="${t_first:-0}" 'BEGIN { printf "%.0f", (a + b) * 1000 }')" \
        -v names="${DAEMONS[*]}" '$1 <= t { l = $0 } END { split(names, d, " "); n = split(l, f, " ")
            for (i = 3; i <= n; i++) printf " %s %s;", d[i - 2], f[i] }' "$WH_TMP/cpu-$name$sfx")
    echo "   minor page faults:$flt of which before the first event arrived:${f_first:- ?}"
    echo "   context switches per event:$csw"
    if [ -n "${BENCH_THREADS:-}" ]; then # per thread name: context switches, CPU-s
        for i in "${!DAEMONS[@]}"; do
            for t in /proc/"${pids[$i]}"/task/*; do
                printf '%s %s %s %s\n' "${DAEMONS[$i]}" "$(cat "$t/comm")" \
                    "$(awk '/ctxt_switches/ { s += $2 } END { print s }' "$t/status")" \
                    "$(awk -v hz="$HZ" '{ printf "%.2f", ($14 + $15) / hz }' "$t/stat")"
            done
        done | awk '{ k = $1 "/" $2; n[k] += $3; c[k] += $4 }
                    END { for (k in n) printf "     %-28s %8d switches %6.2f CPU-s\n", k, n[k], c[k] }' | sort
    fi
    echo "   store: $(wh_metric "$m" walhook_store_appends_total) appends," \
        "$(wh_metric "$m" walhook_store_reads_total) reads," \
        "$(wh_metric "$m" walhook_store_gc_dropped_total) events dropped by GC;" \
        "ingestor: $(wh_metric "$m" walhook_ingestor_batches_sent_total) batches," \
        "WAL not read for $(wh_metric_tcp "$aport" walhook_ingestor_window_full_seconds_total %.3f) s (window full)"
    # BENCH_METRICS=DIR: keep the admin's /metrics at the end of each case
    [ -n "${BENCH_METRICS:-}" ] && curl -s "$m" >"$BENCH_METRICS/metrics-$name$sfx.txt"
    RESULTS+=("$(printf '%-8s %8d %7s %7s %7s %7s %6s %6s %6s %6s %6s %6s %6s %7s %5s %5s' "$name$sfx" "$events" \
        "$t_rl" "$(us_per "$rl_cpu" "$events")" "$t_st" "$t_dl" "$r_st" "$r_dl" \
        "$(us_per "${cpu[0]}" "$events")" "$(us_per "${cpu[1]}" "$events")" \
        "$(us_per "${cpu[2]}" "$events")" "$(us_per "${cpu[3]}" "$events")" \
        "$(us_per "$total" "$events")" "$(mib "$BENCH_PSS_SUM")" "$rl_x" "$wh_x")")
    for d in admin dispatcher ingestor store; do wh_kill "$d-$name" TERM; done
    # the drain's data directory goes with it: kept, its files' dirty pages
    # would be written back during the next drains (BENCH_KEEP_DATA=1 keeps)
    [ "${BENCH_KEEP_DATA:-0}" = 1 ] || rm -rf "$data"
    pg_psql -c "SELECT pg_drop_replication_slot('$rl'), pg_drop_replication_slot('$slot')" >/dev/null
}

prep_orders() { pg_psql -c "TRUNCATE orders" >/dev/null; }
prep_bench() { pg_psql -c "TRUNCATE bench" >/dev/null; }
write_small() { pg_psql -c "CALL bench_small($N_SMALL)" >/dev/null; }
write_big() {
    pg_psql -c "INSERT INTO bench SELECT i, i, 'row ' || i FROM generate_series(1, $N_BIG) i" >/dev/null
}
write_wide() { pg_psql -c "UPDATE wide SET n1 = n1 + 1, c8 = 'updated ' || id" >/dev/null; }
for c in $CASES; do
    case $c in
    pgbench) run_case pgbench "$N_PGBENCH" prep_orders write_pgbench ;;
    small) run_case small "$N_SMALL" prep_bench write_small ;;
    big) run_case big "$N_BIG" prep_bench write_big ;;
    wide) run_case wide "$N_WIDE" prep_wide write_wide ;;
    *) echo "bench: unknown case $c (pgbench small big wide)" >&2; exit 2 ;;
    esac
done

echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "ratio = pg_recvlogical time / walhook time (bars: stored >= 0.95, delivered >= 0.9);"
echo "us/ev = CPU (user+sys) microseconds per event: rl = pg_recvlogical, ing/sto/dsp/adm = the"
echo "daemons, total = their sum (bars: <= 10 pgbench/small, <= 6 big, <= 15 wide);"
echo "pss = sum of the four daemons' peak PSS in MiB (bar: <= 64);"
echo "rl_x, wh_x = pg_recvlogical's and walhook's (stored) time beyond their walsender's CPU"
echo "  and its wait for a CPU, in s: start-up and blocks, without the walsender's CPU noise"
printf '%-8s %8s %7s %7s %7s %7s %6s %6s %6s %6s %6s %6s %6s %7s %5s %5s\n' case events rl_s rl_us \
    stored_s deliv_s r_st r_dl ing sto dsp adm total pss rl_x wh_x
for r in "${RESULTS[@]}"; do echo "$r"; done
if [ "$REPEAT" -gt 1 ]; then
    echo
    echo "each backlog over its $REPEAT repeats: min / median / max"
    for r in "${SUMMARY[@]}"; do echo "$r"; done
fi
