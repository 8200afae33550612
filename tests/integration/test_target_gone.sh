#!/usr/bin/env bash
# A target that answers 410 Gone is disabled, and an operator's resume brings
# it back whatever state versions the dispatcher saw in between; a target
# that refuses every event logs its dead letters in one line, then a summary.
#   gone  410 -> disabled: GET target, `walhook targets list` and the status
#         page say "disabled" with the last error (HTTP 410). Its receiver is
#         replaced by one answering 200, then pause and resume are sent while
#         the dispatcher is stopped (SIGSTOP), so it never sees the paused
#         version (what a fast pause + resume can do): the resume must still
#         re-enable it and every row must arrive. A second 410 and a resume
#         alone (no pause) re-enable it too.
#   bad   400 on every event -> N dead letters, one dispatcher line for the
#         first and one summary line for the next ones (not a line each);
#         no row value in the log.
#   bad2  the same, removed before its summary is due: the dead letters
#         counted for it are logged as it stops.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_targets_api_setup admin-token-of-test-gone-0123456789
N=60

wh_start_receiver gone "$WH_TMP/gone.jsonl" --status 410
GP=$WH_RPORT
wh_start_receiver bad "$WH_TMP/bad.jsonl" --status 400
for t in "gone:$GP" "bad:$WH_RPORT"; do
    wh_admin_api POST $TG "{\"name\":\"${t%%:*}\",\"url\":\"http://127.0.0.1:${t#*:}/hook\"}"
    [ "$CODE" = 201 ] || wh_fail "create ${t%%:*}: $CODE $BODY"
done
pg_psql -c "INSERT INTO items SELECT g, 'secretvalue' || g FROM generate_series(1, $N) g" >/dev/null ||
    wh_fail "insert failed"

# ---- 410: disabled, and said so with its last error
wh_wait_until 20 wh_metric_label_is "$A/metrics" walhook_target_disabled 'target="gone"' = 1 ||
    wh_fail "target gone is not disabled after its 410"
wh_admin_api GET "$TG/gone"
st=$(jfield "$BODY" 'd["state"]')
le=$(jfield "$BODY" 'd["last_error"]["error"]')
[ "$st" = disabled ] || problem "GET target gone while disabled: state '$st', expected disabled: $BODY"
[[ "$le" == *410* ]] || problem "GET target gone: last_error '$le' does not name the 410"
WALHOOK_ADMIN_TOKEN=$TOKEN "$BIN/walhook" targets list -c "$CONF" >"$WH_TMP/list.txt" 2>&1
grep -Eq '^gone +disabled .*410' "$WH_TMP/list.txt" ||
    problem "walhook targets list does not show gone disabled with its 410: $(grep '^gone' "$WH_TMP/list.txt")"
curl -fsS --max-time 10 "$A/" >"$WH_TMP/page.html" || problem "the status page does not answer"
grep -q 'disabled (410 Gone' "$WH_TMP/page.html" || problem "the status page does not show gone disabled"
grep -q 'HTTP 410' "$WH_TMP/page.html" || problem "the status page does not show gone's last error"

# ---- its receiver answers 200 again; pause + resume the dispatcher never
# sees apart (stopped meanwhile, it reads only the resumed version)
wh_kill gone
wh_spawn gone2 "$BIN/walhook-receiver" --listen "127.0.0.1:$GP" --out "$WH_TMP/gone2.jsonl"
wh_wait_http "http://127.0.0.1:$GP/" 5 || wh_fail "the second receiver of gone does not answer"
DPID=$(wh_child_pid "${WH_PIDS[walhook]}" dispatcher)
[ -n "$DPID" ] || wh_fail "no dispatcher under walhook up"
V0=$(jfield "$BODY" 'd.get("resumes", 0)')
kill -STOP "$DPID"
wh_admin_api POST "$TG/gone/pause"
c1=$CODE
wh_admin_api POST "$TG/gone/resume"
c2=$CODE
kill -CONT "$DPID"
[ "$c1 $c2" = "200 200" ] || wh_fail "pause, resume: $c1 $c2"
wh_log "pause + resume sent while the dispatcher was stopped (resumes was ${V0:-0})"
wh_wait_until 20 wh_events_at_least "$WH_TMP/gone2.jsonl" "$N" ||
    problem "gone got $(wh_count_events "$WH_TMP/gone2.jsonl") of $N rows after pause + resume (disabled=$(wh_metric_label "$A/metrics" walhook_target_disabled 'target="gone"'))"
wh_admin_api GET "$TG/gone"
st=$(jfield "$BODY" 'd["state"]')
[ "$st" = active ] || problem "GET target gone after the resume: state '$st', expected active"

# ---- a second 410, then a resume alone (it was never paused)
wh_kill gone2
wh_spawn gone3 "$BIN/walhook-receiver" --listen "127.0.0.1:$GP" --out "$WH_TMP/gone3.jsonl" --status 410
wh_wait_http "http://127.0.0.1:$GP/" 5 || wh_fail "the third receiver of gone does not answer"
pg_psql -c "INSERT INTO items VALUES ($((N + 1)), 'secretvalue')" >/dev/null || wh_fail "insert failed"
if wh_wait_until 20 wh_metric_label_is "$A/metrics" walhook_target_disabled 'target="gone"' = 1; then
    wh_kill gone3
    wh_spawn gone4 "$BIN/walhook-receiver" --listen "127.0.0.1:$GP" --out "$WH_TMP/gone4.jsonl"
    wh_wait_http "http://127.0.0.1:$GP/" 5 || wh_fail "the fourth receiver of gone does not answer"
    wh_admin_api POST "$TG/gone/resume"
    [ "$CODE" = 200 ] || wh_fail "resume: $CODE $BODY"
    wh_wait_until 20 wh_events_at_least "$WH_TMP/gone4.jsonl" 1 ||
        problem "a resume alone did not re-enable gone after its second 410"
else
    problem "gone was not disabled by its second 410"
fi

# ---- dead letters: every event of bad, counted in a few lines
wh_wait_until 30 wh_metric_label_is "$A/metrics" walhook_target_dead_letters_total 'target="bad"' -ge "$N" ||
    wh_fail "bad has $(wh_metric_label "$A/metrics" walhook_target_dead_letters_total 'target="bad"') dead letters, expected $N"
wh_wait_until 15 grep -q 'default/bad: [0-9]* more event(s) went to the dead-letter queue' "$LOG" ||
    problem "no dead-letter summary line for bad"
lines=$(grep -c 'default/bad: .*dead-letter queue' "$LOG")
wh_log "$N dead letters of bad took $lines dispatcher line(s)"
[ "$lines" -le 3 ] || problem "$N dead letters of bad took $lines dispatcher log lines (want at most 3)"

# ---- dead letters counted for a summary, then the target is removed
# before it is due: they are logged as it stops (before: never)
BP=$WH_RPORT
wh_admin_api POST $TG "{\"name\":\"bad2\",\"url\":\"http://127.0.0.1:$BP/hook\"}"
[ "$CODE" = 201 ] || wh_fail "create bad2: $CODE $BODY"
N2=30
pg_psql -c "INSERT INTO items SELECT g, 'secretvalue' || g FROM generate_series(1001, $((1000 + N2))) g" \
    >/dev/null || wh_fail "insert for bad2 failed"
wh_wait_until 30 wh_metric_label_is "$A/metrics" walhook_target_dead_letters_total 'target="bad2"' -ge "$N2" ||
    wh_fail "bad2 has $(wh_metric_label "$A/metrics" walhook_target_dead_letters_total 'target="bad2"') dead letters, expected $N2"
wh_admin_api DELETE "$TG/bad2"
[ "$CODE" = 200 ] || [ "$CODE" = 204 ] || wh_fail "delete bad2: $CODE $BODY"
bad2_logged() { # the first line's count plus the summaries' make N2
    local n
    n=$(grep -oE 'default/bad2: [0-9]+ (more )?event\(s\) (go|went) to the dead-letter queue' "$LOG" |
        awk '{ s += $2 } END { print s + 0 }')
    [ "$n" -ge "$N2" ]
}
wh_wait_until 15 bad2_logged ||
    problem "bad2's $N2 dead letters are not all in the log after it was removed: $(grep 'default/bad2: ' "$LOG" | grep -c dead-letter) line(s)"
[ "$(grep -c secretvalue "$LOG")" -eq 0 ] || problem "a row value is in the log"

[ ${#PROBLEMS[@]} -eq 0 ] || wh_fail "${#PROBLEMS[@]} problem(s): $(printf '%s; ' "${PROBLEMS[@]}")"
wh_pass "410: disabled and shown so (API, CLI, page) with its last error; resumed after a pause + resume the dispatcher did not see apart, and by a resume alone; $N dead letters in $lines log line(s)"
