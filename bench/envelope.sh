#!/usr/bin/env bash
# walhook envelope benchmark (make bench-envelope), for issue 8's bar "the
# hot-path bench bars still hold with a filter and the Debezium envelope on
# (CPU per event at most 20% above the native envelope without a filter)":
# runs bench/run.sh on the same backlogs (BENCH_CASES, default "pgbench":
# 200,000 one-row transactions from 4 pgbench clients into orders) twice,
#   native    the native envelope, no filter
#   debezium  envelope = "debezium" and the filter
#             table == "orders" && op == "insert" && after.amount > 1
#             (passes ~all rows, so every event is filtered and rendered;
#             small and big: the same on table bench, after.n >= 0; wide: on
#             table wide, op update, after.n1 >= 0)
# and prints, per backlog, the four daemons' total CPU per event of each, the
# dispatcher's own, and the differences. The hot-path bars apply to both
# (bench/run.sh prints them). BENCH_ROUNDS (1) repeats the pair (alternating;
# with more than one, a line "all" gives each variant's mean over its
# rounds and their difference, and a line "median" the median of the
# rounds' differences); every other bench/run.sh variable (BENCH_SCALE, ...)
# is passed through. Over loopback TCP the ingestor's and the store's CPU
# per event moves between drains with the walsender's TCP state (session
# 42), by more than the envelope changes it; BENCH_SOCKET=unix (both tools
# drain over PostgreSQL's Unix socket) measures the same difference
# without the walsender's TCP state (other noise remains: session 43's
# single rounds -12.9 % to +22.5 %).
# BENCH_ENVELOPE_MODE: "same" (the default) writes each backlog once and
# drains it 2 x BENCH_ROUNDS times, native and debezium in turn, in the
# order N D D N N D D N ... (one bench/run.sh with BENCH_REPEAT,
# BENCH_TARGET_EVEN and BENCH_TARGET_ABBA), so the two
# variants of a round share the backlog and run a minute apart;
# "separate" runs bench/run.sh once per variant and round, each on a
# backlog of its own, as this script did first.
set -uo pipefail
cd "$(dirname "$0")/.."
CASES=${BENCH_CASES:-pgbench}
ROUNDS=${BENCH_ROUNDS:-1}
DBZ='envelope = "debezium"; filter_expr = "table == \"orders\" && op == \"insert\" && after.amount > 1";'
# the filter of each backlog: the same shape on its own table, passing
# ~every row (a filter on orders would drop every event of the others, and
# bench/run.sh would wait for them)
dbz_of() {
    case $1 in
    small | big) echo 'envelope = "debezium"; filter_expr = "table == \"bench\" && op == \"insert\" && after.n >= 0";' ;;
    wide) echo 'envelope = "debezium"; filter_expr = "table == \"wide\" && op == \"update\" && after.n1 >= 0";' ;;
    *) echo "$DBZ" ;;
    esac
}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "bench-envelope: $(nproc) CPUs, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
MODE=${BENCH_ENVELOPE_MODE:-same}
if [ "$MODE" = same ]; then
    for c in $CASES; do
        echo "== $c: $ROUNDS round(s) on one backlog, native and debezium in turn"
        BENCH_CASES=$c BENCH_REPEAT=$((2 * ROUNDS)) BENCH_TARGET="" BENCH_TARGET_EVEN=$(dbz_of "$c") \
            BENCH_TARGET_ABBA=1 bench/run.sh >"$out/$c.log" 2>&1 ||
            { echo "bench-envelope: bench/run.sh ($c) failed:" >&2; tail -20 "$out/$c.log" >&2; exit 1; }
        sed -n '/^case /,/^$/p' "$out/$c.log" | sed '/^$/d'
        # rows NAME_R in the order native, debezium, debezium, native, ...
        # (BENCH_TARGET_ABBA): debezium when R mod 4 is 2 or 3; round (R + 1) / 2
        sed -n '/^case /,/^$/p' "$out/$c.log" | sed '1d;/^$/d' | awk '{
            r = $1; sub(/^.*_/, "", r); name = $1; sub(/_[0-9]+$/, "", name); $1 = name
            print (r % 4 == 2 || r % 4 == 3 ? "debezium" : "native"), int((r + 1) / 2), $0 }' >>"$out/table"
    done
elif [ "$MODE" = separate ]; then
    for r in $(seq 1 "$ROUNDS"); do
        for v in native debezium; do
            echo "== round $r: $v"
            if [ "$v" = native ]; then
                BENCH_CASES=$CASES BENCH_TARGET="" bench/run.sh >"$out/$v-$r.log" 2>&1
            else
                BENCH_CASES=$CASES BENCH_TARGET=$DBZ bench/run.sh >"$out/$v-$r.log" 2>&1
            fi || { echo "bench-envelope: bench/run.sh ($v) failed:" >&2; tail -20 "$out/$v-$r.log" >&2; exit 1; }
            # the summary table: case events rl_s rl_us stored_s deliv_s r_st r_dl ing sto dsp adm total pss
            sed -n '/^case /,$p' "$out/$v-$r.log" | tail -n +2 | sed "s/^/$v $r /" >>"$out/table"
            sed -n '/^case /,$p' "$out/$v-$r.log"
        done
    done
else
    echo "bench-envelope: BENCH_ENVELOPE_MODE is $MODE (same or separate)" >&2
    exit 2
fi
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "CPU us/event: total = the four daemons, dsp = walhook-dispatcher; diff = debezium over native"
# fields: variant round case events rl_s rl_us stored_s deliv_s r_st r_dl ing sto dsp adm total pss
awk '{ k = $3 " " $2; if ($1 == "native") { nt[k] = $15; nd[k] = $13; nr[k] = $10 } else { dt[k] = $15; dd[k] = $13; dr[k] = $10 } }
     END {
       printf "%-8s %5s %8s %8s %7s %6s %6s %7s %8s %8s\n", "case", "round", "native", "debezium", "diff", "dsp_n", "dsp_d", "diff", "ratio_n", "ratio_d"
       for (k in nt) { split(k, a, " ")
         printf "%-8s %5s %8.2f %8.2f %+6.1f%% %6.2f %6.2f %+6.1f%% %8s %8s\n", a[1], a[2], nt[k], dt[k],
                (dt[k] / nt[k] - 1) * 100, nd[k], dd[k], (dd[k] / nd[k] - 1) * 100, nr[k], dr[k] } }' "$out/table" | sort
# every round at once: the mean CPU per event of each variant over all its
# rounds (the same number of events each), so the rounds' noise in the
# daemons that render no envelope averages out
[ "$ROUNDS" -gt 1 ] && awk '{ c = $3; if ($1 == "native") { nt[c] += $15; nd[c] += $13; n[c]++ } else { dt[c] += $15; dd[c] += $13 } }
     END { for (c in nt)
       printf "%-8s %5s %8.2f %8.2f %+6.1f%% %6.2f %6.2f %+6.1f%%   (mean of %d rounds)\n", c, "all",
              nt[c] / n[c], dt[c] / n[c], (dt[c] / nt[c] - 1) * 100, nd[c] / n[c], dd[c] / n[c],
              (dd[c] / nd[c] - 1) * 100, n[c] }' "$out/table"
# the median of the rounds' differences in the four daemons' total and in
# the dispatcher's own (the rounds' noise is in the daemons that render no
# envelope: one round's outlier moves a mean, not a median)
[ "$ROUNDS" -gt 1 ] && awk '{ k = $3 " " $2; if ($1 == "native") { nt[k] = $15; nd[k] = $13 } else { dt[k] = $15; dd[k] = $13 } }
     function med(a, n,   i, j, t) {
       for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
       return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
     END { for (k in nt) if (k in dt) { split(k, a, " "); c = a[1]; m[c]++; tot[c, m[c]] = (dt[k] / nt[k] - 1) * 100
             dsp[c, m[c]] = (dd[k] / nd[k] - 1) * 100; seen[c] = 1 }
       for (c in seen) { delete x; delete y
         for (i = 1; i <= m[c]; i++) { x[i] = tot[c, i]; y[i] = dsp[c, i] }
         lo = x[1]; hi = x[1]; for (i = 2; i <= m[c]; i++) { if (x[i] < lo) lo = x[i]; if (x[i] > hi) hi = x[i] }
         printf "%-8s %5s total %+6.1f%% (rounds %+.1f%% to %+.1f%%), dispatcher %+6.1f%%   (median of %d rounds)\n",
                c, "median", med(x, m[c]), lo, hi, med(y, m[c]), m[c] } }' "$out/table"
# the envelope's own cost: the ingestor and the store do the same work in
# both variants (neither knows a target's envelope or filter), yet their CPU
# per event moves by up to 1 us from drain to drain with the walsender's
# TCP segment sizes (bench/run.sh); the dispatcher alone renders and
# filters. So: the dispatcher's mean difference over the native total, and
# the other daemons' means side by side (no systematic gap between them)
[ "$ROUNDS" -gt 1 ] && awk '{ c = $3; o = $11 + $12 + $14
         if ($1 == "native") { nt[c] += $15; nd[c] += $13; no[c] += o; n[c]++ } else { dd[c] += $13; do_[c] += o } }
     END { for (c in nt)
       printf "%-8s %5s dispatcher %+.2f us/event = %+5.1f%% of the native total; the other daemons %.2f (native), %.2f (debezium)   (mean of %d rounds)\n",
              c, "own", (dd[c] - nd[c]) / n[c], (dd[c] - nd[c]) / nt[c] * 100, no[c] / n[c], do_[c] / n[c], n[c] }' "$out/table"
exit 0
