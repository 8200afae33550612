#!/usr/bin/env bash
# A row whose event is larger than one IPC message (ipc.max_msg_bytes, here
# 2 MiB: batches of at most 1.75 MiB; the row has 3 MiB of text). The
# ingestor goes to state error with a cause that names the table and the
# setting, and says what to raise it to and its maximum. Every retry
# streams the same change again and fails on it: across the retries no
# "the source works again" line is logged, /readyz stays 503 (it used to
# turn 200 for a moment at each reconnect) and the cause is logged once.
# The row before it is delivered.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_pipeline_setup
pg_psql -c "CREATE TABLE items (id int PRIMARY KEY, v text)" \
    -c "CREATE PUBLICATION walhook FOR ALL TABLES" >/dev/null || wh_fail "cannot create the table"
wh_up_receiver "" "ipc = { max_msg_bytes = 2097152; }; ingestor = { flush_bytes = 524288; };"
A="http://127.0.0.1:$APORT"
LOG="$WH_TMP/walhook.log"
pg_psql -c "INSERT INTO items VALUES (1, 'small')" >/dev/null || wh_fail "insert 1 failed"
wh_wait_until 30 wh_events_at_least "$WH_TMP/got.jsonl" 1 || wh_fail "row 1 was not delivered"
L0=$(wc -l <"$LOG")
# /readyz sampled every 0.1 s from now on: one code per line
(while :; do
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 3 "$A/readyz"
    sleep 0.1
done) >"$WH_TMP/readyz.codes" 2>/dev/null &
POLL=$!
# 3 MiB of md5 hex (it does not compress away)
pg_psql -c "INSERT INTO items VALUES (2, (SELECT 'secretvalue' || string_agg(md5(g::text), '') FROM generate_series(1, 3 * 32768) g))" \
    -c "INSERT INTO items VALUES (3, 'after')" >/dev/null || wh_fail "insert 2 failed"
not_ready_with() { # PATTERN: /readyz is 503 and names it
    local body code
    body=$(curl -s --max-time 3 -w '\n%{http_code}' "$A/readyz")
    code=${body##*$'\n'}
    [ "$code" = 503 ] && grep -qE -- "$1" <<<"$body"
}
ADVICE='public\.items at [0-9A-F/]+ cannot be delivered.*ipc\.max_msg_bytes 2097152\): raise ipc\.max_msg_bytes to at least 4194304 \(its maximum is 1073741824\)'
wh_wait_until 30 not_ready_with "$ADVICE" ||
    { curl -s "$A/readyz" >&2; wh_fail "/readyz does not name the row and the value to raise ipc.max_msg_bytes to"; }
# three retries after the failure, each one streaming up to the row again
_retries() { [ "$(tail -n +"$((L0 + 1))" "$LOG" | grep -c 'streaming from slot')" -ge 3 ]; }
wh_wait_until 40 _retries || wh_fail "the ingestor did not retry 3 times: $(tail -n +"$((L0 + 1))" "$LOG" | grep -c 'streaming from slot')"
# and the last retry met the row again
_met_again() { [ "$(wh_metric "$A/metrics" walhook_ingestor_state)" = 2 ]; }
wh_wait_until 20 _met_again || wh_fail "walhook_ingestor_state is not 2 (error) after the retries"
kill "$POLL" 2>/dev/null
wait "$POLL" 2>/dev/null
NEW=$(tail -n +"$((L0 + 1))" "$LOG")
grep -q 'the source works again' <<<"$NEW" &&
    wh_fail "\"works again\" logged at a retry that met the same row: $(grep 'works again' <<<"$NEW" | head -n 2)"
first503=$(grep -n '^503$' "$WH_TMP/readyz.codes" | head -n 1 | cut -d: -f1)
[ -n "$first503" ] || wh_fail "/readyz never answered 503"
tail -n +"$first503" "$WH_TMP/readyz.codes" | grep -q '^200$' &&
    wh_fail "/readyz answered 200 during a retry ($(tail -n +"$first503" "$WH_TMP/readyz.codes" | grep -c '^200$') of $(tail -n +"$first503" "$WH_TMP/readyz.codes" | wc -l) samples)"
n=$(grep -c 'cannot be delivered' <<<"$NEW")
[ "$n" = 1 ] || wh_fail "the cause was logged $n times across the retries (once expected)"
grep -q secretvalue "$LOG" && wh_fail "a row value in the log"
wh_pass "a row too large for ipc.max_msg_bytes: state error with the advice, $(tail -n +"$first503" "$WH_TMP/readyz.codes" | wc -l) /readyz samples all 503 across the retries, no \"works again\""
