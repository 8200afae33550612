#!/usr/bin/env bash
# walhook start-up and idle CPU: the four daemons started as `walhook up`
# starts them (the store and the ingestor at once, the dispatcher and the
# admin once the store listens) on a fresh slot of an empty publication
# with one walhook-receiver target; once the slot streams and the admin
# listens, each daemon's CPU (utime+stime from /proc/PID/stat, and the more
# precise sum of its live threads' run time from /proc/PID/task/*/schedstat)
# at 1 s and at 5 s after ready. STARTUP_REPEAT (5) runs; per daemon
# min / median / max in ms. Nothing else runs: no event, no scrape.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib/helpers.sh
WH_TEST_NAME=startup
REPEAT=${STARTUP_REPEAT:-5}
DAEMONS=(store ingestor dispatcher admin)
HZ=$(getconf CLK_TCK)
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-admin walhook-receiver
wh_tmpdir
PG_MAX_SLOTS=$((REPEAT + 4))
export PG_MAX_SLOTS
pg_start
pg_psql -c "CREATE TABLE items (id int PRIMARY KEY); CREATE PUBLICATION walhook FOR ALL TABLES;" >/dev/null
RPORT=$(wh_free_port)
wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT"

# PID: "TICKS_MS SCHED_MS", CPU by /proc/PID/stat and by its threads' schedstat
cpu_ms() {
    local stat t s=0 v
    stat=$(awk -v hz="$HZ" '{ printf "%.0f", ($14 + $15) * 1000 / hz }' "/proc/$1/stat")
    for t in /proc/"$1"/task/*/schedstat; do
        read -r v _ <"$t" 2>/dev/null && s=$((s + v))
    done
    echo "$stat $((s / 1000000))"
}

OUT="$WH_TMP/samples"
: >"$OUT"
for r in $(seq 1 "$REPEAT"); do
    data="$WH_TMP/data-$r"
    conf="$WH_TMP/walhook-$r.conf"
    aport=$(wh_free_port)
    wh_write_conf "$conf" "$PG_DSN" "$data" "$aport" "http://127.0.0.1:$RPORT/hook"
    sed -i "s/slot = \"walhook\"/slot = \"walhook_$r\"/" "$conf"
    mkdir -p -m 700 "$data"
    wh_spawn "store-$r" "$BIN/walhook-store" -c "$conf"
    wh_spawn "ingestor-$r" "$BIN/walhook-ingestor" -c "$conf"
    until=$((EPOCHSECONDS + 60))
    while [ ! -S "$data/store.sock" ] && [ "$EPOCHSECONDS" -lt "$until" ]; do sleep 0.002; done
    wh_spawn "dispatcher-$r" "$BIN/walhook-dispatcher" -c "$conf"
    wh_spawn "admin-$r" "$BIN/walhook-admin" -c "$conf"
    wh_wait_slot_active "walhook_$r" 60 || wh_fail "repeat $r: the ingestor did not stream"
    until=$((EPOCHSECONDS + 60))
    while ! grep -q "listening on" "$WH_TMP/admin-$r.log" && [ "$EPOCHSECONDS" -lt "$until" ]; do
        sleep 0.01
    done
    sleep 1
    for d in "${DAEMONS[@]}"; do
        echo "$r $d 1 $(cpu_ms "${WH_PIDS[$d-$r]}")" >>"$OUT"
    done
    sleep 4
    for d in "${DAEMONS[@]}"; do
        echo "$r $d 5 $(cpu_ms "${WH_PIDS[$d-$r]}")" >>"$OUT"
    done
    for d in admin dispatcher ingestor store; do
        wh_kill "$d-$r"
    done
    pg_psql -c "SELECT pg_drop_replication_slot('walhook_$r')" >/dev/null
done

[ -n "${STARTUP_SAMPLES:-}" ] && cp "$OUT" "$STARTUP_SAMPLES"
echo "startup: $REPEAT runs, CPU ms per daemon, min / median / max (stat ticks at ${HZ} Hz; schedstat)"
for d in "${DAEMONS[@]}" total; do
    for at in 1 5; do
        awk -v d="$d" -v at="$at" '
            function mmm(a, n,   i, j, t) {
                for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
                return sprintf("%4d / %4d / %4d", a[1], n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2, a[n]) }
            $3 == at && (d == "total" || $2 == d) { st[$1] += $4; sc[$1] += $5; if (!($1 in seen)) { seen[$1] = 1; runs[++n] = $1 } }
            END { for (i = 1; i <= n; i++) { a[i] = st[runs[i]]; b[i] = sc[runs[i]] }
                  printf "%-10s %d s idle: stat %s   schedstat %s\n", d, at, mmm(a, n), mmm(b, n) }' "$OUT"
    done
done
