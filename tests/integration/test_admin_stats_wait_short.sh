#!/usr/bin/env bash
# admin.stats_wait_ms below the time the slot queries leave for rendering
# (300 ms): the slot queries got a deadline already past, timed out at
# once ("the source did not answer within 0 ms", the kept connection
# closed) and /metrics never had walhook_slot_query_ok 1, whatever the
# source did. The setting's range starts at 100 ms: a short wait must
# still leave the slot queries some of it.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
export WALHOOK_ADMIN_STATS_WAIT_MS=250
wh_ingest_admin_setup
query_ok() { [ "$(wh_metric "$M" walhook_slot_query_ok)" = 1 ]; }
wh_wait_until 20 query_ok ||
    wh_fail "admin.stats_wait_ms=250: walhook_slot_query_ok is not 1 ($(curl -s "$M" | grep -m 3 walhook_slot_query_ok); admin: $(grep -h -m 2 'slot' "$WH_TMP/admin.log"))"
wh_pass "admin.stats_wait_ms=250: the slot metrics are read (walhook_slot_query_ok 1)"
