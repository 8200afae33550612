#!/usr/bin/env bash
# LeaseAcquires waiting for a stalled WAL sync do not take the store's
# workers (store.workers, 4) from the lease calls that need no sync: a
# LeaseList and the renewals of a lease already held are still answered,
# and the lease stays with its holder.
#   1. d0 (lease TTL 3 s: a round every second, held 2.4 s after each
#      renewal; ipc.timeout_ms 1 s) holds target a and delivered a row.
#   2. The store's WAL syncs are held (wh_syncgate). Six LeaseAcquires of
#      free consumers (owner "other", as replicas asking for free targets)
#      are sent at once: each needs a synced write of its lease.
# Checks: while the syncs are held, no Acquire is granted (a grant is
# answered only once its write is durable), a LeaseList is answered and
# shows a held by d0, still (renewed) after three TTLs, and d0 never gave a
# up; once the gate opens a second row reaches a, and d0 acquired a only
# once. Before: the Acquires held every worker at the gate, the List got no
# answer, d0's renewals neither, and d0 gave a up 2.4 s after its last one.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
source "$(dirname "$0")/../lib/leases.sh"
wh_lease_gated_stack a
log="$WH_TMP/dispatcher-d0.log"

# 1. d0 holds a and delivers
WALHOOK_DISPATCHER_LEASE_TTL_MS=3000 WALHOOK_IPC_TIMEOUT_MS=1000 wh_lease_first d0 1
pg_psql -c "CREATE TABLE tl (id int primary key, v text); INSERT INTO tl VALUES (1, 'row-one')" ||
    wh_fail "cannot insert the first row"
wh_wait_until 30 grep -q row-one "$WH_TMP/received-a.jsonl" || wh_fail "d0 did not deliver the first row"
held_a() { ctl lease-list 2>"$WH_TMP/list.err" | awk '$1 == "default" && $2 == "a" && $3 ~ /^d0/ && $5 > 0 { f = 1 } END { exit !f }'; }
held_a || wh_fail "the store does not list a as d0's: $(ctl lease-list 2>&1)"
epoch0=$(ctl lease-list | awk '$2 == "a" { print $4 }')

# 2. syncs held; six Acquires, each waiting for its lease write's sync
wh_lease_held_acquires
grep -qx "granted [0-9]*" "$WH_TMP"/acq*.out &&
    wh_fail "an Acquire was granted while its lease write was not synced: $(cat "$WH_TMP"/acq*.out)"
wh_log "the Acquires: $(grep -c "no reply" "$WH_TMP"/acq*.out | grep -c ":1$") without an answer, $(grep -c "status" "$WH_TMP"/acq*.out | grep -c ":1$") refused"
[ -e "$GATE.held" ] || wh_fail "the gate let the sync go (the scenario did not run)"

held_a || wh_fail "no LeaseList answer showing a as d0's while lease writes wait at the gate: $(cat "$WH_TMP/list.err") $(grep "lease" "$log" | tail -n 3)"
# three TTLs with the syncs held: the store's expiry of a (3 s after its
# last renewal) is still ahead at the end only if d0's renewals were answered
for _ in 1 2 3 4 5 6 7 8 9; do
    sleep 1
    held_a || wh_fail "a not listed as d0's while the syncs are held: $(cat "$WH_TMP/list.err") $(grep "lease" "$log" | tail -n 3)"
done
grep -q "lease of default/a: not renewed" "$log" &&
    wh_fail "d0 gave a up while the store's syncs were held: $(grep "lease" "$log" | tail -n 3)"
[ -e "$GATE.held" ] || wh_fail "the gate let the sync go (the scenario did not run)"

rm -f "$GATE"
wh_log "the gate is open"
pg_psql -c "INSERT INTO tl VALUES (2, 'row-two')" || wh_fail "cannot insert the second row"
wh_wait_until 30 grep -q row-two "$WH_TMP/received-a.jsonl" || wh_fail "the second row did not reach a"
[ "$(grep -c "lease of default/a acquired" "$log")" = 1 ] ||
    wh_fail "a changed hands: $(grep "lease of default/a" "$log" | tail -n 3)"
epoch1=$(ctl lease-list | awk '$2 == "a" { print $4 }')
[ "$epoch1" = "$epoch0" ] || wh_fail "a's epoch moved from $epoch0 to $epoch1"
wh_pass "six LeaseAcquires waiting for a held WAL sync left the lease calls that need none answered: a listed and renewed by d0 through three TTLs, kept at epoch $epoch0"
