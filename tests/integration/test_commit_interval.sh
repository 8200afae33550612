#!/usr/bin/env bash
# dispatcher.commit_interval_ms: a target's offset is committed at most
# that often, and a commit held back is never lost where the dispatcher
# knows what it delivered. With the interval at its maximum (60 s) every
# commit after the first is held back, so each step below fails if the
# held commit is dropped (the rows are then delivered a second time):
#   - a pause and a resume (a reset of the target) with deliveries not yet
#     committed: the reader reads again only after the held commit is in;
#   - a SIGTERM of the dispatcher: its last commit is sent before it exits
#     (no "giving up the last commit" in its log), so the dispatcher started
#     again delivers only the rows written after;
# and at the end the receiver has every row exactly once.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-admin walhook-receiver
wh_tmpdir
export WALHOOK_DISPATCHER_COMMIT_INTERVAL_MS=60000
wh_items_pipeline
wh_wait_http "http://127.0.0.1:$APORT/livez" 30 || wh_fail "the admin does not answer /livez"
TOKEN=$(cat "$DATA/admin.token" 2>/dev/null)
api() { # METHOD PATH
    curl -fsS -X "$1" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$APORT$2" >/dev/null 2>&1
}
insert() { # FROM TO: one row per transaction
    for ((i = $1; i <= $2; i++)); do echo "INSERT INTO items VALUES ($i);"; done |
        pg_psql >/dev/null || wh_fail "inserts failed"
}
# events received (every one, not distinct rows)
received() { grep -o '"after":{"id":[0-9]*' "$WH_TMP/received.jsonl" 2>/dev/null | wc -l; }
want() { # N STEP: exactly N events received
    local n
    n=$(received)
    [ "$n" -eq "$1" ] || wh_fail "$2: the receiver got $n events, want $1 (a held-back commit was lost)"
}

insert 1 20
wh_wait_metric "$M" walhook_events_delivered_total 20 60 || wh_fail "rows 1-20 not delivered"
insert 21 40
wh_wait_metric "$M" walhook_events_delivered_total 40 60 || wh_fail "rows 21-40 not delivered"
sleep 1
want 40 "before the pause"

# a pause and a resume reset the target: it reads from its committed offset
api POST /v1/tenants/default/targets/t0/pause || wh_fail "cannot pause t0"
wh_wait_metric "$M" walhook_target_paused 1 30 || wh_fail "the dispatcher did not pause t0"
api POST /v1/tenants/default/targets/t0/resume || wh_fail "cannot resume t0"
_resumed() { [ "$(wh_metric "$M" walhook_target_paused)" = 0 ]; }
wh_wait_until 30 _resumed || wh_fail "the dispatcher did not resume t0"
insert 41 50
wh_wait_metric "$M" walhook_events_delivered_total 50 60 || wh_fail "rows 41-50 not delivered"
sleep 2
want 50 "after a pause and a resume"

# a stop sends the commit it held back
wh_kill dispatcher TERM
grep -q "giving up the last commit" "$WH_TMP/dispatcher.log" &&
    wh_fail "the dispatcher gave up its last commit at a SIGTERM"
wh_spawn dispatcher "$BIN/walhook-dispatcher" -c "$CONF"
insert 51 60
_all() { [ "$(received)" -ge 60 ]; }
wh_wait_until 60 _all || wh_fail "rows 51-60 not delivered after the restart ($(received) events)"
sleep 2
want 60 "after a SIGTERM and a restart"
n=$(grep -o '"after":{"id":[0-9]*' "$WH_TMP/received.jsonl" | cut -d: -f3 | sort -un | wc -l)
[ "$n" -eq 60 ] || wh_fail "the receiver got $n distinct rows, want 60"
wh_pass "60 rows, each once, across a pause, a resume and a SIGTERM with commits held back"
