#!/usr/bin/env bash
# Concurrent scrapes while the store's disk hangs (wh_syncgate.so holds its
# WAL syncs): the store's Stats answers (a probe), its GetState and
# LeaseList wait for their 1 s timeout. Before, each request's ingestor and
# dispatcher queries queued behind the one that waited (the GetState that
# finds the tenants' ingestors, the LeaseList that finds the dispatcher
# replicas, the slot metrics' state read), one thread each, so with 6
# scrapers every scrape took the full 2 s, the ingestor and the dispatcher
# were down (walhook_daemon_up 0) in most of them although both answered,
# and the admin's threads grew by about 5 a second for as long as the disk
# hung (214 after 40 s). Now one request at a time makes each of those
# store calls, the others go on with the last answer, and a query that
# cannot have its daemon's lock by its request's deadline gives up.
# Checked: 60 scrapes (6 at once) each answer with the three daemons up and
# the slot metrics, and the admin's threads do not pile up; the disk
# answers again and the rows arrive.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_syncgate_setup
wh_items_prepare
wh_spawn_gated_store
for d in ingestor dispatcher admin; do
    wh_spawn "$d" "$BIN/walhook-$d" -c "$CONF"
done
A="http://127.0.0.1:$APORT"
wh_wait_slot_active walhook 60 || wh_fail "the ingestor did not start streaming"
wh_wait_http "$A/readyz" 60 || wh_fail "not ready: $(curl -s --max-time 20 "$A/readyz")"
APID=${WH_PIDS[admin]}
threads() { awk '/^Threads:/ { print $2 }' "/proc/$APID/status"; }
received_all() { # FROM TO
    local i
    for ((i = $1; i <= $2; i++)); do
        grep -q "\"after\":{\"id\":$i}" "$WH_TMP/received.jsonl" 2>/dev/null || return 1
    done
}
all_up() { # FILE: a scrape with the three daemons up and the slot read
    local d
    for d in store ingestor dispatcher; do
        grep -qx "walhook_daemon_up{daemon=\"$d\"} 1" "$1" || return 1
    done
    grep -qx 'walhook_slot_query_ok{tenant="default",slot="walhook"} 1' "$1"
}
scrape_up() { # a scrape now, all_up
    curl -s --max-time 30 -o "$WH_TMP/m.now" "$A/metrics" && all_up "$WH_TMP/m.now"
}
wh_wait_until 30 scrape_up || wh_fail "not every daemon up before the stall"
pg_psql -c "INSERT INTO items SELECT generate_series(1, 10)" >/dev/null || wh_fail "insert 1-10 failed"
wh_wait_until 60 received_all 1 10 || wh_fail "rows 1-10 not delivered"
before=$(threads)

# the disk hangs: a WAL sync of the store waits at the gate
touch "$GATE"
pg_psql -c "INSERT INTO items SELECT generate_series(11, 20)" >/dev/null || wh_fail "insert 11-20 failed"
wh_wait_until 30 test -e "$GATE.held" || wh_fail "no WAL sync of the store reached the gate"

# 6 scrapers, 10 scrapes each, back to back
pids=()
for k in 1 2 3 4 5 6; do
    (for i in $(seq 1 10); do
        code=$(curl -s -o "$WH_TMP/m.$k.$i" -w '%{http_code}' --max-time 30 "$A/metrics") || code=000
        echo "$code" >"$WH_TMP/code.$k.$i"
    done) &
    pids+=($!)
done
max=0
while kill -0 "${pids[@]}" 2>/dev/null; do
    n=$(threads)
    [ "${n:-0}" -gt "$max" ] && max=$n
    sleep 0.5
done
wait "${pids[@]}"
after=$(threads)
[ -e "$GATE.held" ] || wh_fail "the WAL sync was not held for every scrape"
for k in 1 2 3 4 5 6; do
    for i in $(seq 1 10); do
        [ "$(cat "$WH_TMP/code.$k.$i")" = 200 ] ||
            wh_fail "scrape $k.$i did not answer: $(cat "$WH_TMP/code.$k.$i")"
        all_up "$WH_TMP/m.$k.$i" ||
            wh_fail "scrape $k.$i with the store's disk hung: $(grep -E '^walhook_(daemon_up|slot_query_ok)' "$WH_TMP/m.$k.$i" | tr '\n' ' ')"
    done
done
# a request's tasks are a few threads each (its daemons', its sources'):
# 6 requests at once hold a few dozen at most, whatever the disk does
[ "$max" -le $((before + 60)) ] && [ "$after" -le $((before + 60)) ] ||
    wh_fail "the admin's threads piled up: $before before, up to $max during the scrapes, $after after"
wh_log "60 scrapes with the disk hung: every daemon up; threads $before before, $max at most, $after after"

# the disk answers again
rm -f "$GATE"
wh_wait_until 60 received_all 11 20 || wh_fail "rows 11-20 not delivered after the gate opened"
wh_wait_until 30 scrape_up || wh_fail "not every daemon up after the stall"
wh_pass "60 concurrent scrapes while the store's disk hung: each with the three daemons up and the slot metrics; the admin's threads $before before, $max at most"
