#!/usr/bin/env bash
# The admin with dispatcher replicas it can reach: two dispatchers
# (distinct dispatcher.id, each with its own control socket) share two
# targets through leases, one each. Each announces its control endpoint in
# the store's lease table, and the admin asks every live replica for its
# Stats: /metrics carries the delivery counters of both targets (each
# series labelled with the replica that holds it), the dispatcher's state
# is "running", not the lease table's "leasing", and
# walhook_dispatcher_replicas_answering is 2. After one replica is
# SIGKILLed, the admin names it as not answering while its owner entry
# lives (the lease TTL), and once the other replica took its target over,
# /metrics shows that target's deliveries from the survivor.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
source "$(dirname "$0")/../lib/leases.sh"
TTL=${TTL:-2000}
trap wh_cleanup EXIT
wh_require_bins walhook-admin
export WALHOOK_DISPATCHER_LEASE_TTL_MS="$TTL"
wh_lease_stack 1 0 a b
APORT=$(sed -n 's/.*listen = "127.0.0.1:\([0-9]*\)".*/\1/p' "$CONF" | head -1)
[ -n "$APORT" ] || wh_fail "no admin port in the config"
for d in d1 d2; do
    WALHOOK_DISPATCHER_ID="$d" wh_spawn "dispatcher-$d" "$BIN/walhook-dispatcher" -c "$CONF"
done
wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
M="http://127.0.0.1:$APORT/metrics"
READYZ="http://127.0.0.1:$APORT/readyz"
wh_wait_slot_active walhook 60 || wh_fail "the ingestor never started streaming"

# one target each: d1 holds one, d2 the other
holds_one_each() {
    local d n
    for d in d1 d2; do
        n=$(curl -fsS --max-time 3 "$M" 2>/dev/null |
            grep -c "^walhook_target_lease_held{replica=\"$d#[0-9a-f]*\",.*} 1$")
        [ "$n" = 1 ] || return 1
    done
}
wh_wait_until 30 holds_one_each ||
    wh_fail "the admin's /metrics does not show one lease held by each replica: $(curl -fsS --max-time 3 "$M" | grep walhook_target_lease_held)"

"$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --changes 200 --max-txn 10 --tables 1 \
    --expect "$WH_TMP/expected.jsonl" >/dev/null || wh_fail "load generation failed"
wh_wait_received 60 "$WH_TMP/expected.jsonl" "$WH_TMP/received-a.jsonl" "$WH_TMP/received-b.jsonl" ||
    wh_fail "the receivers did not get every change"

# delivered per target, from the replica holding it
delivered() { # TARGET [REPLICA-ID]: the target's delivered events in /metrics
    curl -fsS --max-time 3 "$M" 2>/dev/null |
        awk -v t="$1" -v r="${2:-}" '$1 ~ /^walhook_events_delivered_total\{/ &&
            index($1, "target=\"" t "\"") && (r == "" || index($1, "replica=\"" r "#")) { s += $NF; f = 1 }
            END { if (f) printf "%.0f\n", s; else print -1 }'
}
both_counted() { [ "$(delivered a)" -ge 200 ] && [ "$(delivered b)" -ge 200 ]; }
wh_wait_until 20 both_counted ||
    wh_fail "/metrics does not count both targets' deliveries (a: $(delivered a), b: $(delivered b)): the admin did not reach both replicas"
page=$(curl -fsS --max-time 3 "$M")
[ "$(grep -c '^walhook_dispatcher_replicas' <<<"$page")" = 2 ] && grep -q '^walhook_dispatcher_replicas 2$' <<<"$page" ||
    wh_fail "walhook_dispatcher_replicas is not one series of 2 (the store's count): $(grep '^walhook_dispatcher_replicas' <<<"$page")"
grep -q '^walhook_dispatcher_replicas_answering 2$' <<<"$page" ||
    wh_fail "walhook_dispatcher_replicas_answering is not 2: $(grep replicas_answering <<<"$page")"
dups=$(grep -v '^#' <<<"$page" | awk '{ print $1 }' | sort | uniq -d | head -3)
[ -z "$dups" ] || wh_fail "/metrics repeats a series (a scraper refuses it): $dups"
status=$(curl -fsS --max-time 3 "$READYZ" 2>/dev/null || true)
[[ "$status" == *'"daemon":"dispatcher","up":true,"ready":true,"state":"running"'* ]] ||
    wh_fail "/readyz does not show the dispatcher running: $status"
held_by_d1=$(curl -fsS --max-time 3 "$M" | sed -n 's/^walhook_target_lease_held{replica="d1#[0-9a-f]*",tenant="default",target="\([ab]\)"} 1$/\1/p')
[ -n "$held_by_d1" ] || wh_fail "no target held by d1 in /metrics"

wh_kill dispatcher-d1 KILL
# while d1's owner entry lives, the admin says which replica does not answer
named_d1() { curl -s --max-time 3 "$READYZ" | grep -q 'replica d1#[0-9a-f]*'; }
wh_wait_until 10 named_d1 ||
    wh_fail "/readyz does not name the SIGKILLed replica: $(curl -s --max-time 3 "$READYZ")"
# d2 takes d1's target over; new changes to it are counted from d2
pg_psql -c "CREATE TABLE after_kill (id int PRIMARY KEY);
            INSERT INTO after_kill SELECT generate_series(1, 50)" >/dev/null ||
    wh_fail "insert after the SIGKILL"
arrived() { [ "$(grep -o '"table":"after_kill"' "$WH_TMP/received-$held_by_d1.jsonl" | wc -l)" -ge 50 ]; }
wh_wait_until 60 arrived || wh_fail "the rows made after the SIGKILL did not reach target $held_by_d1"
from_d2() { [ "$(delivered "$held_by_d1" d2)" -ge 1 ]; }
wh_wait_until 20 from_d2 ||
    wh_fail "target $held_by_d1 (d1's) shows no deliveries from d2 after the takeover"
gone() { ! curl -fsS --max-time 3 "$M" | grep -q 'replica="d1#'; }
wh_wait_until 20 gone || wh_fail "/metrics still carries series of the SIGKILLed replica d1"
# a replica whose announced endpoint refuses: named, and not asked again
# at once (one Stats timeout per ADM_REPLICA_RETRY_MS, not one per request)
WALHOOK_DISPATCHER_ID=d3 WALHOOK_DISPATCHER_ADVERTISE="tcp://127.0.0.1:$(wh_free_port)" \
    wh_spawn dispatcher-d3 "$BIN/walhook-dispatcher" -c "$CONF"
named_d3() { curl -s --max-time 3 "$READYZ" | grep -q '"state":"degraded","reason":"replica d3#'; }
wh_wait_until 20 named_d3 || wh_fail "/readyz does not name d3, whose endpoint refuses: $(curl -s --max-time 3 "$READYZ")"
again=$(curl -s --max-time 3 "$READYZ")
[[ "$again" == *'replica d3#'*'(asked again within 5 s)'* ]] ||
    wh_fail "the admin asked d3 again at once: $again"
wh_pass "two replicas reached at their announced control endpoints: both targets' deliveries in /metrics (labelled by replica, no repeated series), state running, 2 answering; d1 SIGKILLed: named in /readyz, its target's deliveries then counted from d2, its series gone after the lease TTL; a replica whose endpoint refuses is named and not asked again at once"
