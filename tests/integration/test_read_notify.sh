#!/usr/bin/env bash
# Readers are woken by the store's durability notifications, not by polling
# (issue 10 "Reads", issue 6 latency): the store publishes one notification
# per synced append on its notify endpoint (store.endpoint + ".notify"); the
# dispatcher's readers read when their tenant moved. Checked on mechanisms,
# never on tight times:
#   - the dispatcher is subscribed (walhook_dispatcher_notify_connected 1);
#   - while nothing is written for 3 s, the store serves no Read at all (a
#     long-polling reader read again every 200 ms: ~15 reads);
#   - rows written after the idle time arrive, and the notifications the
#     dispatcher received grew with them;
#   - the notifications carried the events (pushed) and the dispatcher
#     posted batches taken from them (test_push_kill: the same under
#     SIGKILLs), in commit order; for a target with nothing in flight the
#     notification thread took them itself (push_fast).
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-admin walhook-receiver
wh_tmpdir
wh_items_pipeline
wh_wait_metric "$M" walhook_dispatcher_notify_connected 1 30 ||
    wh_fail "the dispatcher never subscribed to the store's notifications"

insert() { # FROM TO: one row per transaction
    for ((i = $1; i <= $2; i++)); do echo "INSERT INTO items VALUES ($i);"; done |
        pg_psql >/dev/null || wh_fail "inserts failed"
}
insert 1 20
wh_wait_metric "$M" walhook_events_delivered_total 20 60 || wh_fail "the first 20 rows not delivered"
sleep 1 # the readers go idle (their last Read found nothing)

r0=$(wh_metric "$M" walhook_store_reads_total)
n0=$(wh_metric "$M" walhook_dispatcher_notifications_total)
sleep 3
r1=$(wh_metric "$M" walhook_store_reads_total)
wh_log "store reads during 3 s of idleness: $((r1 - r0))"
# one read may be the fallback of a reader that saw no notification for 5 s
[ $((r1 - r0)) -le 1 ] || wh_fail "the store served $((r1 - r0)) reads while nothing was written (polling)"

insert 21 40
wh_wait_metric "$M" walhook_events_delivered_total 40 60 || wh_fail "rows written after idleness not delivered"
n1=$(wh_metric "$M" walhook_dispatcher_notifications_total)
wh_log "notifications received: $((n1 - n0)) for 20 rows"
[ "$n1" -gt "$n0" ] || wh_fail "no notification received for the new rows"
s=$(wh_metric "$M" walhook_store_notifications_total)
[ "$s" -ge "$n1" ] || wh_fail "the dispatcher counted $n1 notifications, the store published $s"
# the rows came with their notifications (pushed events): taken without a Read
pb=$(wh_metric "$M" walhook_dispatcher_push_batches_total)
ps=$(wh_metric "$M" walhook_store_notifications_pushed_total)
wh_log "pushed notifications: $ps; batches taken from them: $pb"
[ "$ps" -gt 0 ] || wh_fail "the store pushed no events with its notifications"
[ "$pb" -gt 0 ] || wh_fail "the dispatcher took no batch from pushed events"
# one row per transaction, the target idle in between: the notification
# thread took those batches itself (without waking the reader)
pf=$(wh_metric "$M" walhook_dispatcher_push_fast_total)
wh_log "batches the notification thread took: $pf"
[ "$pf" -gt 0 ] || wh_fail "no batch taken by the notification thread for the idle target"
[ "$pf" -le "$pb" ] || wh_fail "push_fast_total $pf over push_batches_total $pb"
n=$(grep -o '"after":{"id":[0-9]*' "$WH_TMP/received.jsonl" | cut -d: -f3 | sort -un | wc -l)
[ "$n" -eq 40 ] || wh_fail "receiver got $n distinct rows, want 40"
# nothing failed, so nothing was posted twice
n=$(grep -o '"after":{"id":' "$WH_TMP/received.jsonl" | wc -l)
[ "$n" -eq 40 ] || wh_fail "receiver got $n rows for 40 distinct ones (posted twice)"
grep -o '"after":{"id":[0-9]*' "$WH_TMP/received.jsonl" | cut -d: -f3 |
    awk 'NR > 1 && $1 < p { bad = 1 } { p = $1 } END { exit bad }' ||
    wh_fail "rows arrived out of commit order"
wh_pass "idle: $((r1 - r0)) reads in 3 s; $((n1 - n0)) notifications for 20 rows"
