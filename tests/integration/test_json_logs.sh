#!/usr/bin/env bash
# log_format = "json": a full stream (`walhook up`, 2,000 changes, the
# dispatcher killed once so that warnings and restarts are logged too,
# SIGTERM) writes only JSON lines. jq parses
# every line of every daemon; each has timestamp, severity_text,
# severity_number, service.name, body and attributes (OpenTelemetry's log
# data model names), severity_number matches severity_text, and no line holds
# a row value or the DSN's password.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
wh_require_bins walhook walhook-store walhook-ingestor walhook-dispatcher walhook-admin \
    walhook-receiver tests/wh_loadgen
command -v jq >/dev/null || wh_fail "jq is missing (scripts/install-deps.sh)"
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
"$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --tables 2 --setup-only || wh_fail "table setup failed"
pg_psql -c "CREATE TABLE marker (id int PRIMARY KEY, v text)" || wh_fail "marker table"
# trust authentication ignores the password: it must still never be logged
DSN="postgresql://postgres:pw-never-logged@127.0.0.1:$PG_PORT/postgres"
RPORT=$(wh_free_port)
APORT=$(wh_free_port)
wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --out "$WH_TMP/received.jsonl"
export WALHOOK_LOG_FORMAT=json
wh_spawn walhook "$BIN/walhook" up --source "$DSN" \
    --target "http://127.0.0.1:$RPORT/hook" --data "$WH_TMP/data" --admin "127.0.0.1:$APORT"
UP=${WH_PIDS[walhook]}
unset WALHOOK_LOG_FORMAT
wh_wait_http "http://127.0.0.1:$APORT/readyz" 60 || wh_fail "walhook never became ready"
"$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --changes 2000 --seed 7 --max-txn 50 --tables 2 \
    --expect "$WH_TMP/expected.jsonl" || wh_fail "load generation failed"
pg_psql -c "INSERT INTO marker VALUES (1, 'row-value-never-logged')" || wh_fail "marker insert"
METRICS="http://127.0.0.1:$APORT/metrics"
wh_wait_metric "$METRICS" walhook_events_delivered_total 2001 120 || wh_fail "not all delivered"
d=$(wh_child_pid "$UP" dispatcher)
[ -n "$d" ] && kill -KILL "$d"
wh_wait_until 30 bash -c "p=\$(pgrep -P $UP -f '/walhook-dispatcher( |\$)'); [ -n \"\$p\" ] && [ \"\$p\" != '$d' ]" ||
    wh_fail "the dispatcher was not restarted"
wh_wait_http "http://127.0.0.1:$APORT/readyz" 60 || wh_fail "not ready after the restart"
kill -TERM "$UP"
wh_wait_until 20 bash -c "! kill -0 $UP 2>/dev/null" || wh_fail "walhook up did not stop"
unset "WH_PIDS[walhook]"

LOG="$WH_TMP/walhook.log"
total=$(wc -l <"$LOG")
[ "$total" -ge 10 ] || wh_fail "only $total log lines"
n=0
while IFS= read -r line; do
    n=$((n + 1))
    jq -e '
      (.timestamp | type == "string" and test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$")) and
      (.severity_text | IN("DEBUG", "INFO", "WARN", "ERROR")) and
      (.severity_number == ({"DEBUG": 5, "INFO": 9, "WARN": 13, "ERROR": 17}[.severity_text])) and
      (."service.name" | type == "string" and startswith("walhook")) and
      (.body | type == "string" and length > 0) and
      (.attributes | type == "object") and
      (.attributes["process.pid"] | type == "number")' <<<"$line" >/dev/null 2>&1 ||
        wh_fail "log line $n is not a valid JSON log record: $line"
done <"$LOG"
services=$(jq -r '."service.name"' "$LOG" | sort -u | tr '\n' ' ')
for s in walhook walhook-store walhook-ingestor walhook-dispatcher walhook-admin; do
    grep -qw -- "$s" <<<"$services" || wh_fail "no log line of $s (services: $services)"
done
jq -r 'select(.severity_text == "ERROR" or .severity_text == "WARN") | .body' "$LOG" | grep -q . ||
    wh_fail "no WARN/ERROR line (the killed dispatcher should be reported)"
grep -q 'pw-never-logged' "$LOG" && wh_fail "the DSN password is in the log"
grep -q 'row-value-never-logged' "$LOG" && wh_fail "a row value is in the log"
wh_pass "$n JSON log lines parsed (services: $services)"
