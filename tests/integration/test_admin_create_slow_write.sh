#!/usr/bin/env bash
# A target create whose PutState waits for the disk longer than the admin's
# store timeout (3 s): the admin reads the state back to learn whether the
# write landed, and a create it takes as not written drops the start offset
# it set (undo_target_offset). The store's GetState answered at once with
# the version before the write still under way: the admin answered 503 and
# dropped the offset, the write then landed, and the target was named with
# its offset dropped and made new at 0/0 (its start position lost). The
# store's WAL syncs are held (wh_syncgate): the create's SetOffset passes,
# its PutState is held until the admin has given up on it (or 10 s). The
# store's GetState now waits for a state write under way.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_syncgate_setup
wh_require_bins tests/wh_statectl
export WALHOOK_ADMIN_ADMIN_TOKEN=admin-token-of-test-admin-create-slow-write-01
AUTH="Authorization: Bearer $WALHOOK_ADMIN_ADMIN_TOKEN"
APORT=$(wh_free_port)
CONF="$WH_TMP/walhook.conf"
DATA="$WH_TMP/data"
mkdir -m 700 "$DATA"
# the store and the admin alone: no source is read, no target posted to
wh_write_conf "$CONF" "host=127.0.0.1 port=9 dbname=none" "$DATA" "$APORT" "http://127.0.0.1:9/hook"
wh_spawn_gated_store
wh_wait_until 30 test -S "$DATA/store.sock" || wh_fail "the store did not start"
wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
wh_wait_http "http://127.0.0.1:$APORT/livez" 30 || wh_fail "the admin did not start"
ctl() { "$BIN/tests/wh_statectl" -c "$CONF" "$@"; }
V=$(ctl version) || wh_fail "GetState: $V"

echo 1 >"$GATE.pass" # the SetOffset's sync passes, the PutState's is held
touch "$GATE"
curl -s -o "$WH_TMP/post.out" -w '%{http_code}' --max-time 60 -X POST -H "$AUTH" \
    -H 'Content-Type: application/json' \
    --data '{"name":"g1","url":"http://127.0.0.1:9/g1","start":"0/100:0"}' \
    "http://127.0.0.1:$APORT/v1/tenants/default/targets" >"$WH_TMP/post.code" &
CP=$!
wh_wait_until 20 test -e "$GATE.held" || wh_fail "no WAL sync was held"
[ "$(ctl offset default g1)" = "256 0" ] ||
    wh_fail "the held sync is not the PutState's: g1's offset is $(ctl offset default g1)"
# the admin's PutState gives up after 3 s; on the old build it then read
# back version V at once and dropped the offset (logged once the drop,
# held at the gate too, answered or timed out: 3 s more)
wh_wait_until 10 grep -q "g1 was not created" "$WH_TMP/admin.log" || true
rm -f "$GATE" "$GATE.pass"
wait "$CP"
CODE=$(cat "$WH_TMP/post.code")
wh_log "the create answered $CODE: $(head -c 300 "$WH_TMP/post.out")"
at_version() { [ "$(ctl version)" = "$1" ]; }
wh_wait_until 10 at_version $((V + 1)) || wh_fail "the state write did not land: version $(ctl version)"
ctl get | grep -q '"name":"g1"' || wh_fail "the state does not name g1"
OFF=$(ctl offset default g1)
[ "$OFF" = "256 0" ] ||
    wh_fail "g1 is named at version $((V + 1)) but its start offset 0/100:0 is gone (offset '$OFF'; the create answered $CODE; admin: $(grep -h "g1" "$WH_TMP/admin.log" | tail -3))"
# held past the admin's read-back too (5 s): 201 or "the outcome is
# unknown", never "nothing written" for the write that landed
! grep -q "read back is still version" "$WH_TMP/post.out" ||
    wh_fail "the create answered that nothing was written, and it was: $(head -c 300 "$WH_TMP/post.out")"
wh_pass "a create whose state write outlasted the admin's timeout kept its start offset (answered $CODE)"
