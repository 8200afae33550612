#!/usr/bin/env bash
# Operator metrics through the admin's /metrics: every daemon exports
# walhook_build_info{version,revision} and the standard process metrics;
# a target whose receiver is down accumulates walhook_target_backlog_events
# (exactly the changes made) and a growing
# walhook_target_oldest_undelivered_age_seconds; once the receiver is up
# both fall to 0.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
wh_require_bins walhook walhook-store walhook-ingestor walhook-dispatcher walhook-admin \
    walhook-receiver
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
pg_psql -c "CREATE TABLE t (id int PRIMARY KEY)" || wh_fail "table"
RPORT=$(wh_free_port)
APORT=$(wh_free_port)
wh_spawn walhook "$BIN/walhook" up --source "$PG_DSN" --target "down=http://127.0.0.1:$RPORT/hook" \
    --data "$WH_TMP/data" --admin "127.0.0.1:$APORT"
M="http://127.0.0.1:$APORT/metrics"
wh_wait_http "http://127.0.0.1:$APORT/readyz" 60 || wh_fail "walhook never became ready"
curl -fsS "$M" >"$WH_TMP/m1.txt" || wh_fail "no metrics"
VERSION=$(cat "$(dirname "$0")/../../VERSION")
for d in store ingestor dispatcher; do
    grep -qE "^walhook_build_info\{daemon=\"$d\",version=\"$VERSION\",revision=\"[0-9a-z]+\"\} 1$" "$WH_TMP/m1.txt" ||
        wh_fail "no walhook_build_info for $d"
    for m in process_cpu_seconds_total process_resident_memory_bytes process_open_fds process_start_time_seconds; do
        v=$(awk -v n="$m{daemon=\"$d\"}" '$1 == n { print $2 }' "$WH_TMP/m1.txt")
        [ -n "$v" ] || wh_fail "no $m for $d"
        awk -v v="$v" -v m="$m" 'BEGIN { exit !(v + 0 > 0 || m == "process_cpu_seconds_total") }' ||
            wh_fail "$m of $d is $v"
    done
done
start=$(awk '$1 == "process_start_time_seconds{daemon=\"store\"}" { print int($2) }' "$WH_TMP/m1.txt")
now=$(date +%s)
[ $((now - start)) -ge 0 ] && [ $((now - start)) -lt 300 ] || wh_fail "process_start_time_seconds $start is not recent"

pg_psql -c "INSERT INTO t SELECT generate_series(1, 300)" -c "INSERT INTO t SELECT generate_series(301, 350)" ||
    wh_fail "insert"
backlog_is() { [ "$(wh_metric_label "$M" walhook_target_backlog_events 'target="down"')" = "$1" ]; }
# 350 changes and the schema event of t's first version (before its first change)
wh_wait_until 30 backlog_is 351 || wh_fail "backlog is $(wh_metric_label "$M" walhook_target_backlog_events 'target="down"'), not 351"
age1=$(curl -fsS "$M" | awk -F'} ' '/^walhook_target_oldest_undelivered_age_seconds\{.*target="down"/ { print $2 }')
sleep 2
age2=$(curl -fsS "$M" | awk -F'} ' '/^walhook_target_oldest_undelivered_age_seconds\{.*target="down"/ { print $2 }')
awk -v a="$age1" -v b="$age2" 'BEGIN { exit !(a > 0 && b >= a + 1) }' ||
    wh_fail "oldest undelivered age does not grow ($age1 then $age2)"
wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --out "$WH_TMP/received.jsonl"
wh_wait_until 90 backlog_is 0 || wh_fail "backlog did not fall to 0 after the receiver came up"
age3=$(curl -fsS "$M" | awk -F'} ' '/^walhook_target_oldest_undelivered_age_seconds\{.*target="down"/ { print $2 }')
[ "$age3" = 0.000 ] || wh_fail "oldest undelivered age is $age3 with nothing undelivered"
wh_pass "build_info + process metrics for every daemon; backlog 351 -> 0, age ${age1}s -> ${age2}s -> 0"
