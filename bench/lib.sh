# Shared by the bench scripts (sourced after tests/lib/helpers.sh; HZ set).
fmt() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }
rate() { awk -v n="$1" -v t="$2" 'BEGIN { if (t > 0) printf "%.0f", n / t; else print "inf" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
us_per() { awk -v s="$1" -v n="$2" 'BEGIN { printf "%.1f", s * 1e6 / n }'; }
cpu_s() { awk -v hz="$HZ" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# bench_daemons_report N UNIT TOTALUNIT PSSFILE: one line of each daemon's
# CPU-seconds (and microseconds per UNIT) and their total, and one of each
# daemon's peak PSS (the samples of wh_pss in PSSFILE) and their sum; from
# the caller's arrays DAEMONS, pids, cpu and its total. BENCH_PSS_SUM gets
# the sum in KiB.
bench_daemons_report() {
    local n=$1 unit=$2 tunit=$3 pf=$4 line="   CPU:" pss="   peak PSS:" sum=0 k i
    for i in "${!DAEMONS[@]}"; do
        line+=" ${DAEMONS[$i]} ${cpu[$i]} s ($(us_per "${cpu[$i]}" "$n") us/$unit);"
        k=$(awk -v p="${pids[$i]}" '$1 == p && $2 > m { m = $2 } END { print m + 0 }' "$pf")
        sum=$((sum + k))
        pss+=" ${DAEMONS[$i]} $(mib "$k") MiB;"
    done
    echo "$line total $total s ($(us_per "$total" "$n") us/$tunit)"
    echo "$pss sum $(mib "$sum") MiB"
    BENCH_PSS_SUM=$sum
}
