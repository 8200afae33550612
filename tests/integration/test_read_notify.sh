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
#     SIGKILLs), in commit order; for a target with nothing in flight they
#     were taken as the notification arrived (push_fast), read by the
#     delivery loop itself over the direct connection (notifications_loop);
#   - after the store is SIGKILLed and restarted, the dispatcher subscribes
#     again, the loop reads the new connection's notifications (not the
#     old one's descriptor) and the store is again not polled.
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
# rows_once_in_order N CONTEXT: the receiver got rows 1..N, each exactly
# once (nothing failed, so nothing may be posted twice), in commit order
rows_once_in_order() {
    local ids n
    ids=$(grep -o '"after":{"id":[0-9]*' "$WH_TMP/received.jsonl" | cut -d: -f3)
    n=$(echo "$ids" | sort -un | wc -l)
    [ "$n" -eq "$1" ] || wh_fail "receiver got $n distinct rows, want $1$2"
    n=$(echo "$ids" | wc -l)
    [ "$n" -eq "$1" ] || wh_fail "receiver got $n rows for $1 distinct ones (posted twice)$2"
    echo "$ids" | awk 'NR > 1 && $1 < p { bad = 1 } { p = $1 } END { exit bad }' ||
        wh_fail "rows arrived out of commit order$2"
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
# one row per transaction, the target idle in between: those batches were
# taken as their notification arrived (without waking the reader)
pf=$(wh_metric "$M" walhook_dispatcher_push_fast_total)
wh_log "batches taken as their notification arrived: $pf"
[ "$pf" -gt 0 ] || wh_fail "no batch taken as its notification arrived for the idle target"
[ "$pf" -le "$pb" ] || wh_fail "push_fast_total $pf over push_batches_total $pb"
# the delivery loop read them itself (the direct connection, the default);
# both counters from one scrape
curl -fsS --max-time 3 "$M" >"$WH_TMP/m.txt" || wh_fail "no metrics"
nl=$(wh_metric "file://$WH_TMP/m.txt" walhook_dispatcher_notifications_loop_total)
nt=$(wh_metric "file://$WH_TMP/m.txt" walhook_dispatcher_notifications_total)
wh_log "notifications the delivery loop read itself: $nl of $nt"
[ "$nl" -gt 0 ] || wh_fail "the delivery loop read no notification itself"
[ "$nl" -le "$nt" ] || wh_fail "notifications_loop_total $nl over notifications_total $nt"
rows_once_in_order 40 ""

# The notification's taker (the delivery loop) and the reader take turns on the target's
# batches: rows one per transaction while the target's envelope flips at
# runtime (the reader compiles the new format; a batch due then is left to
# it): every row exactly once, in commit order, and the rows after the
# last change in its envelope
wh_wait_until 20 test -s "$WH_TMP/data/admin.token" || wh_fail "the admin wrote no token file"
TOKEN=$(grep -v '^read:' "$WH_TMP/data/admin.token" | head -n 1)
swapped() { grep -c "target default/t0: URL, secrets and delivery settings swapped in" "$WH_TMP/dispatcher.log"; }
sw0=$(swapped)
for ((i = 41; i <= 240; i++)); do # ~2 s: one row every 10 ms
    echo "INSERT INTO items VALUES ($i); SELECT pg_sleep(0.01);"
done | pg_psql >/dev/null &
ins=$!
for env in debezium native debezium native debezium native; do
    sleep 0.3
    curl -fsS --max-time 10 -X PATCH -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' -d "{\"envelope\":\"$env\"}" \
        "http://127.0.0.1:$APORT/v1/tenants/default/targets/t0" >>"$WH_TMP/api.log" 2>&1 ||
        wh_fail "PATCH envelope=$env failed: $(tail -n 2 "$WH_TMP/api.log")"
done
wait "$ins" || wh_fail "inserts 41-240 failed"
wh_wait_metric "$M" walhook_events_delivered_total 240 60 || wh_fail "rows 41-240 not delivered"
pf2=$(wh_metric "$M" walhook_dispatcher_push_fast_total)
rows_once_in_order 240 " while the envelope changed"
grep -q '"source":{' "$WH_TMP/received.jsonl" || wh_fail "no Debezium envelope was posted"
wh_log "200 rows while the envelope flipped 6 times: batches taken as their notification arrived $((pf2 - pf))"
[ "$pf2" -gt "$pf" ] || wh_fail "no batch was taken as its notification arrived while the envelope flipped"
# once the last change (native) is in, the next rows go in it
wh_wait_until 20 test "$(swapped)" -ge $((sw0 + 6)) || wh_fail "the envelope changes were not applied"
insert 241 245
wh_wait_metric "$M" walhook_events_delivered_total 245 60 || wh_fail "rows 241-245 not delivered"
grep -E '"after":\{"id":24[1-5]' "$WH_TMP/received.jsonl" | grep -q '"source":{' &&
    wh_fail "rows after the change back to native came in the Debezium envelope"

# The store SIGKILLed and restarted: the loop gives the dead connection
# back, the notification thread connects again (every target noted once:
# notifications were lost) and hands the new one over
nl0=$(wh_metric "$M" walhook_dispatcher_notifications_loop_total)
rs0=$(wh_metric "$M" walhook_dispatcher_notify_resyncs_total)
[ "$rs0" -ge 1 ] || wh_fail "no resync counted for the first subscription ($rs0)"
kill -KILL "${WH_PIDS[store]}" 2>/dev/null
wait "${WH_PIDS[store]}" 2>/dev/null
wh_spawn store "$BIN/walhook-store" -c "$CONF"
wh_wait_metric "$M" walhook_dispatcher_notify_resyncs_total $((rs0 + 1)) 30 ||
    wh_fail "the dispatcher did not note every target after the store restarted"
insert 246 260
wh_wait_metric "$M" walhook_events_delivered_total 260 60 || wh_fail "rows after the store restart not delivered"
sleep 1
nl1=$(wh_metric "$M" walhook_dispatcher_notifications_loop_total)
wh_log "after the store restart the delivery loop read $((nl1 - nl0)) notifications"
[ "$nl1" -gt "$nl0" ] || wh_fail "after the store restart the delivery loop read no notification"
r2=$(wh_metric "$M" walhook_store_reads_total)
sleep 3
r3=$(wh_metric "$M" walhook_store_reads_total)
[ $((r3 - r2)) -le 1 ] || wh_fail "after the store restart it served $((r3 - r2)) reads in 3 idle s (polling)"
# a commit lost with the store may post a row again; none may be missing
n=$(grep -o '"after":{"id":[0-9]*' "$WH_TMP/received.jsonl" | cut -d: -f3 | sort -un | wc -l)
[ "$n" -eq 260 ] || wh_fail "receiver got $n distinct rows after the store restart, want 260"
wh_pass "idle: $((r1 - r0)) reads in 3 s; $((n1 - n0)) notifications for 20 rows; 245 rows once each, in order; after a store SIGKILL $((nl1 - nl0)) notifications read by the loop, $((r3 - r2)) reads in 3 idle s"
