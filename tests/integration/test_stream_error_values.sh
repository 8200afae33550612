#!/usr/bin/env bash
# A walsender error that quotes a row's value never reaches a log or a page.
# A publication row filter fails on a row (n = 987654322: "date out of
# range: 987654322-01-01"), so the walsender ends every stream with that
# error. The ingestor logs and shows (its state reason: /readyz, the status
# page, `walhook status`) the severity and SQLSTATE 22008 with the message
# withheld and a pointer to the server log; 987654322 is nowhere.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_rowfilter_error_up
wh_wait_until 30 bash -c "curl -s '$A/readyz' | grep -q 'stream ended'" ||
    wh_fail "the stream error never showed on /readyz: $(curl -s "$A/readyz")"
sleep 3 # a few more reconnects and failures
curl -s "$A/readyz" >"$WH_TMP/readyz.json"
curl -s "$A/" >"$WH_TMP/page.html"
"$BIN/walhook" status -c "$CONF" >"$WH_TMP/cli_status.txt" 2>&1
grep -q '22008' "$WH_TMP/readyz.json" ||
    wh_fail "/readyz does not name the SQLSTATE: $(cat "$WH_TMP/readyz.json")"
grep -q 'server log' "$WH_TMP/readyz.json" ||
    wh_fail "/readyz does not point at the server log: $(cat "$WH_TMP/readyz.json")"
grep -q 'stream ended.*22008' "$WH_TMP/walhook.log" ||
    wh_fail "the log does not name the stream's end with its SQLSTATE"
wh_stop_all
hits=$(grep -l '987654322' "$WH_TMP"/*.log "$WH_TMP"/*.json "$WH_TMP"/*.html "$WH_TMP"/*.txt)
if [ -n "$hits" ]; then
    grep -h -o -E '.{0,100}987654322.{0,20}' $hits | sort | uniq -c | head -n 5
    wh_fail "a row value in: $(echo $hits | xargs -n1 basename | tr '\n' ' ')"
fi
wh_pass "a walsender error quoting a row value: SQLSTATE 22008 shown, the value in no log, /readyz, / or walhook status"
