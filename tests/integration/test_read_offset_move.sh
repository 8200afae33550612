#!/usr/bin/env bash
# A dispatcher's Read that an offset move spans. The dispatcher long-polls
# (its durability notifications point where nothing publishes): a Read
# takes the target's offset and epoch when it starts and waits up to 200 ms
# for events. The caught-up target is skipped to the end while the rows of
# an INSERT are held back (the ingestor stopped with SIGSTOP before the
# INSERT), so they reach the store just after the move and wake the Read
# that was waiting across it. Before, that Read replied with the epoch it
# had started with and those rows; the dispatcher posted them, its commit
# was refused for the epoch (409), it read again from the moved offset and
# posted them again: each row twice. Now the Read replies without events at
# the new epoch, and each row arrives once.
# Rounds 1 and 2: the store's SetOffset (wh_statectl) with its synced write
# held at a gate (wh_syncgate) until the rows' Append is sent: the Append
# waits behind the move's write, and the Read waiting when the gate opens
# is woken by it. Nothing else writes then (the ingestor stopped, the
# target's last commit and the store's watermark write done), so the held
# write is the move's (the store has workers enough for the dispatcher's
# Reads meanwhile). Round 3: the admin API (POST .../offset), ungated,
# the ingestor continued once it answered (the rows then come within the
# Read's wait most of the time, not always). Each round ends when a row
# inserted after the round's rows arrives (posted after any second post).
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_syncgate_setup
wh_require_bins tests/wh_statectl
wh_items_prepare
TOKEN=admin-token-$RANDOM-0123456789
export WALHOOK_ADMIN_ADMIN_TOKEN=$TOKEN
# more workers than the default 4: while the gate holds the move, the move,
# the rows' Append and the ingestor's slot reports each keep one, and the
# dispatcher's next Read must find one free (waiting for one, it would
# start after the move)
wh_spawn_gated_store WALHOOK_STORE_WORKERS=12
wh_wait_until 30 test -S "$DATA/store.sock" || wh_fail "the store did not start"
wh_spawn ingestor "$BIN/walhook-ingestor" -c "$CONF"
wh_spawn dispatcher env WALHOOK_STORE_NOTIFY_ENDPOINT="ipc://$WH_TMP/nothing.notify" \
    "$BIN/walhook-dispatcher" -c "$CONF"
wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
A="http://127.0.0.1:$APORT"
M="$A/metrics"
wh_wait_slot_active walhook 60 || wh_fail "the ingestor did not start streaming"

count() { grep -o "\"after\":{\"id\":$1}" "$WH_TMP/received.jsonl" 2>/dev/null | wc -l; }
received_all() { # FROM TO: each id at least once
    local i
    for ((i = $1; i <= $2; i++)); do
        [ "$(count "$i")" -ge 1 ] || return 1
    done
}
unacked() { [ "$(wh_metric "$M" walhook_ingestor_unacked_bytes)" -gt 0 ]; }

pg_psql -c "INSERT INTO items SELECT generate_series(1, 10)" >/dev/null || wh_fail "insert 1-10"
wh_wait_until 60 received_all 1 10 || wh_fail "rows 1-10 not delivered"
[ "$(wh_metric "$M" walhook_dispatcher_notify_connected)" = 0 ] ||
    wh_fail "the dispatcher has durability notifications: it does not long-poll"

for round in 1 2 3; do
    first=$((round * 100 + 1))
    last=$((round * 100 + 20))
    kill -STOP "${WH_PIDS[ingestor]}"
    if [ "$round" -lt 3 ]; then
        wh_wait_until 30 wh_store_settled || {
            kill -CONT "${WH_PIDS[ingestor]}"
            wh_fail "round $round: the store did not settle (watermark lag $(wh_store_metric 'walhook_store_watermark_lag_bytes{tenant="default"}'), write in progress $(wh_store_metric walhook_store_write_stalled_seconds) s)"
        }
    fi
    pg_psql -c "INSERT INTO items SELECT generate_series($first, $last)" >/dev/null || {
        kill -CONT "${WH_PIDS[ingestor]}"
        wh_fail "insert $first-$last"
    }
    if [ "$round" -lt 3 ]; then
        touch "$GATE"
        "$BIN/tests/wh_statectl" -c "$CONF" set-offset default t0 end >"$WH_TMP/setoff.log" 2>&1 &
        setoff=$!
        problem=""
        if wh_wait_until 20 test -e "$GATE.held"; then
            kill -CONT "${WH_PIDS[ingestor]}"
            wh_wait_until 20 unacked || problem="the ingestor did not send the rows' Append"
        else
            problem="the set offset's write did not reach the gate"
        fi
        rm -f "$GATE"
        kill -CONT "${WH_PIDS[ingestor]}"
        [ -z "$problem" ] || wh_fail "round $round: $problem"
        wait "$setoff" || wh_fail "round $round: set-offset failed: $(cat "$WH_TMP/setoff.log")"
    else
        wh_admin_api POST /v1/tenants/default/targets/t0/offset '{"to": "end"}'
        kill -CONT "${WH_PIDS[ingestor]}"
        [ "$CODE" = 200 ] || wh_fail "round $round: POST offset to the end: $CODE $BODY"
    fi
    wh_wait_until 60 received_all "$first" "$last" ||
        wh_fail "round $round: rows $first-$last not delivered after the offset move"
    pg_psql -c "INSERT INTO items VALUES ($((round * 100 + 99)))" >/dev/null ||
        wh_fail "insert $((round * 100 + 99))"
    wh_wait_until 60 received_all $((round * 100 + 99)) $((round * 100 + 99)) ||
        wh_fail "round $round: row $((round * 100 + 99)) not delivered"
    twice=""
    for ((i = first; i <= last; i++)); do
        [ "$(count "$i")" = 1 ] || twice+=" $i($(count "$i"))"
    done
    [ -z "$twice" ] ||
        wh_fail "round $round: rows posted more than once (id(times)):$twice (dispatcher: $(grep -c 'the offset was moved' "$WH_TMP/dispatcher.log") resets)"
    wh_log "round $round: rows $first-$last each posted once"
done
wh_pass "a Read spanning an offset move replied at the new epoch (two rounds with the move's write held, one through the admin API): each of the 60 rows posted once"
