#!/usr/bin/env bash
# A target deleted and created again under its name through the admin's
# REST API while the dispatcher is stopped (SIGSTOP), so it reads only the
# version after both writes (what a busy or restarting dispatcher can do):
# it is a new target, not the old one kept.
#   gone  answers 410 Gone -> disabled. Its receiver is replaced by one
#         answering 200, then DELETE + POST of the same name and URL are
#         sent while the dispatcher is stopped. The new target must start
#         enabled and deliver the rows inserted after its creation; before,
#         the dispatcher matched it by name and kept the old one, disabled
#         by its 410 until someone resumed it (the resume count is 0 in both).
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_targets_api_setup admin-token-of-test-recreate-0123456789
N=20

wh_start_receiver gone "$WH_TMP/gone.jsonl" --status 410
GP=$WH_RPORT
BODYJ="{\"name\":\"gone\",\"url\":\"http://127.0.0.1:$GP/hook\"}"
wh_admin_api POST $TG "$BODYJ"
[ "$CODE" = 201 ] || wh_fail "create gone: $CODE $BODY"
C1=$(jfield "$BODY" 'd.get("created_version", 0)')
pg_psql -c "INSERT INTO items VALUES (0, 'before')" >/dev/null || wh_fail "insert failed"
wh_wait_until 20 wh_metric_label_is "$A/metrics" walhook_target_disabled 'target="gone"' = 1 ||
    wh_fail "target gone is not disabled after its 410"

# ---- its receiver answers 200 now; DELETE + POST the dispatcher never
# sees apart (stopped meanwhile, it reads only the version after both)
wh_kill gone
wh_spawn gone2 "$BIN/walhook-receiver" --listen "127.0.0.1:$GP" --out "$WH_TMP/gone2.jsonl"
wh_wait_http "http://127.0.0.1:$GP/" 5 || wh_fail "the second receiver of gone does not answer"
DPID=$(wh_child_pid "${WH_PIDS[walhook]}" dispatcher)
[ -n "$DPID" ] || wh_fail "no dispatcher under walhook up"
kill -STOP "$DPID"
wh_admin_api DELETE "$TG/gone"
c1=$CODE
wh_admin_api POST $TG "$BODYJ"
c2=$CODE
C2=$(jfield "$BODY" 'd.get("created_version", 0)')
kill -CONT "$DPID"
[ "$c1" = 200 ] || [ "$c1" = 204 ] || wh_fail "delete gone: $c1"
[ "$c2" = 201 ] || wh_fail "create gone again: $c2 $BODY"
wh_log "gone deleted and created again while the dispatcher was stopped (created_version ${C1:-none} -> ${C2:-none})"

# ---- rows after its creation reach the new receiver
pg_psql -c "INSERT INTO items SELECT g, 'after' || g FROM generate_series(1, $N) g" >/dev/null ||
    wh_fail "insert failed"
wh_wait_until 30 wh_events_at_least "$WH_TMP/gone2.jsonl" "$N" ||
    problem "gone, created again, got $(wh_count_events "$WH_TMP/gone2.jsonl") of $N rows (disabled=$(wh_metric_label "$A/metrics" walhook_target_disabled 'target="gone"'))"
wh_admin_api GET "$TG/gone"
st=$(jfield "$BODY" 'd["state"]')
[ "$st" = active ] || problem "GET target gone after it was created again: state '$st', expected active"
# the case under test: the dispatcher saw both writes as one version (it
# never removed gone on its own; the store's line goes on after "removed")
if grep -Eq 'target default/gone removed$' "$LOG"; then
    problem "the dispatcher saw the delete apart from the create: the test did not make the case (run it again)"
fi
grep -q 'target default/gone was deleted and created again' "$LOG" ||
    problem "no dispatcher line saying gone was deleted and created again"

[ ${#PROBLEMS[@]} -eq 0 ] || wh_fail "${#PROBLEMS[@]} problem(s): $(printf '%s; ' "${PROBLEMS[@]}")"
wh_pass "a 410-disabled target deleted and created again in one version the dispatcher read starts enabled: $N rows delivered"
