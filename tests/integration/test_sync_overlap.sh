#!/usr/bin/env bash
# The store's Appends are delivered while their WAL sync runs, and
# acknowledged only after it (issue 6, latency: the sync is off the
# delivery path; the flush-LSN rule unchanged). The store runs with
# wh_syncgate.so preloaded: while the gate file exists its WAL syncs wait
# (GATE.held exists while one waits). Checked:
#   - rows inserted while a sync is held reach the receiver, and the
#     slot's confirmed flush does not pass them until the gate opens;
#   - the store SIGKILLed while such a sync is held (rows delivered, none
#     acknowledged): restarted, the rows are acknowledged;
#   - a WAL sync that fails (EIO) makes the store exit (logged), nothing of
#     it acknowledged; restarted, the rows are acknowledged;
#   - so does a failed sync of any other synced write (a state write);
#   - a backfill's chunk (ids not stable across a lost WAL tail) is not
#     delivered while its sync is held, and is once it passes;
#   - in the end the receiver has every row, and each row is one event (one
#     id) in the store and at the receiver: nothing stored twice, nothing
#     acknowledged lost.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_syncgate_setup
export WH_SYNCGATE="$GATE" LD_PRELOAD="$BIN/tests/wh_syncgate.so"
wh_items_pipeline
unset LD_PRELOAD
restart_store() { # after a SIGKILL: its gate files go, the library stays
    rm -f "$GATE" "$GATE.held"
    wh_spawn store env LD_PRELOAD="$BIN/tests/wh_syncgate.so" "$BIN/walhook-store" -c "$CONF"
}

insert() { # FROM TO: one row per transaction
    local i
    for ((i = $1; i <= $2; i++)); do echo "INSERT INTO items VALUES ($i);"; done |
        pg_psql >/dev/null || wh_fail "inserts $1-$2 failed"
}
received() { # ROW: the receiver has it
    grep -q "\"after\":{\"id\":$1}" "$WH_TMP/received.jsonl" 2>/dev/null
}
received_all() { # FROM TO
    local i
    for ((i = $1; i <= $2; i++)); do received "$i" || return 1; done
}
confirmed() {
    pg_psql -At -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'walhook'"
}
# held FROM TO: rows FROM-TO inserted in one transaction while the store's
# WAL syncs wait at the gate; sets END (the WAL's end after them). The first
# Append after the gate holds row FROM (and those of FROM-TO that reached
# the ingestor with it: a transaction may be split over Appends); the
# ingestor has one Append in flight, so the rest wait for its ack, which
# waits for the sync: row FROM, not all of FROM-TO, must be delivered while
# the sync is held.
held() {
    # the sync held must be the Append's: none of an earlier write (the
    # target's offset commit, the watermark's write) still to come
    wh_wait_until 30 wh_store_settled ||
        wh_fail "the store did not settle before rows $1-$2 (watermark lag" \
            "$(wh_store_metric 'walhook_store_watermark_lag_bytes{tenant="default"}')," \
            "write in progress $(wh_store_metric walhook_store_write_stalled_seconds) s)"
    touch "$GATE"
    pg_psql -c "INSERT INTO items SELECT generate_series($1, $2)" >/dev/null ||
        wh_fail "insert $1-$2 failed"
    END=$(pg_psql -At -c "SELECT pg_current_wal_lsn()")
    wh_wait_until 30 test -e "$GATE.held" || wh_fail "no WAL sync of the store reached the gate"
    wh_wait_until 30 received "$1" ||
        wh_fail "row $1, written but its WAL sync held, was not delivered (delivery waits for the sync)"
    test -e "$GATE.held" || wh_fail "a WAL sync passed the gate"
    _wh_slot_flushed "$END" walhook &&
        wh_fail "the slot's confirmed flush ($(confirmed)) passed rows $1-$2 while their WAL sync was held"
    local i n=0
    for ((i = $1; i <= $2; i++)); do received "$i" && n=$((n + 1)); done
    wh_log "$n of rows $1-$2 delivered while the WAL sync was held; confirmed flush $(confirmed), rows end at $END"
}

insert 1 10
wh_wait_until 60 received_all 1 10 || wh_fail "rows 1-10 not delivered"

held 11 20
sleep 1 # the sync still held: the flush LSN must not move meanwhile
_wh_slot_flushed "$END" walhook && wh_fail "the slot's confirmed flush passed rows 11-20 (sync held)"
rm -f "$GATE"
wh_wait_slot_flush "$END" 60 || wh_fail "the gate opened, yet the confirmed flush never reached $END"
wh_wait_until 60 received_all 11 20 || wh_fail "the gate opened, yet not every row 11-20 was delivered"
wh_log "gate open: confirmed flush $(confirmed)"

held 21 30
wh_kill store KILL
wh_log "store SIGKILLed with rows 21-30 delivered and not acknowledged"
restart_store
wh_wait_slot_flush "$END" 90 || wh_fail "after the store's restart the confirmed flush never reached $END"
insert 31 40
wh_wait_until 60 received_all 1 40 || wh_fail "not every row 1-40 reached the receiver"

# A WAL sync fails (EIO): the store exits, as PostgreSQL PANICs on a
# failed fsync (what the sync covered is readable already and may never be
# synced: a retry must not be answered from it). Nothing of it was
# acknowledged; restarted, the store recovers the WAL from disk and the
# rows are acknowledged and delivered.
touch "$GATE.fail"
pg_psql -c "INSERT INTO items SELECT generate_series(41, 50)" >/dev/null || wh_fail "insert 41-50 failed"
END=$(pg_psql -At -c "SELECT pg_current_wal_lsn()")
wh_wait_until 30 bash -c "! kill -0 ${WH_PIDS[store]} 2>/dev/null" ||
    wh_fail "the store did not exit after a failed WAL sync"
test -e "$GATE.fail" && wh_fail "no WAL sync failed"
grep -q "walhook-store exits (a failed WAL sync cannot be retried safely)" "$WH_TMP/store.log" ||
    wh_fail "the store's exit on a failed WAL sync was not logged"
_wh_slot_flushed "$END" walhook &&
    wh_fail "the slot's confirmed flush ($(confirmed)) passed rows whose WAL sync failed"
wh_log "the store exited on the failed WAL sync; confirmed flush $(confirmed), rows end at $END"
insert 51 55
END=$(pg_psql -At -c "SELECT pg_current_wal_lsn()")
restart_store
wh_wait_slot_flush "$END" 90 || wh_fail "after the store's restart the confirmed flush never reached $END"
wh_wait_until 60 received_all 1 55 || wh_fail "not every row 1-55 reached the receiver"

# Any synced write whose WAL sync fails ends the store the same way, not
# only an Append's: here a runtime setting's state write. Before, RocksDB
# kept the failed sync as its background error and refused every write
# after it while the store stayed up (appends failed for ever).
TOKEN=$(grep -v '^read:' "$WH_TMP/data/admin.token" | head -n 1)
wh_wait_until 30 wh_store_settled || wh_fail "the store did not settle before the state write"
touch "$GATE.fail"
code=$(curl -sS -o "$WH_TMP/patch.out" -w '%{http_code}' -X PATCH -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d '{"ingestor.flush_age_us":900}' \
    "http://127.0.0.1:$APORT/v1/settings")
wh_wait_until 30 bash -c "! kill -0 ${WH_PIDS[store]} 2>/dev/null" ||
    wh_fail "the store did not exit after the state write's WAL sync failed (PATCH: HTTP $code)"
test -e "$GATE.fail" && wh_fail "no WAL sync failed"
grep -q "state write: .*walhook-store exits (a failed WAL sync cannot be retried safely)" \
    "$WH_TMP/store.log" || wh_fail "the store's exit on the state write's failed sync was not logged"
[ "$code" != 200 ] || wh_fail "the PATCH whose state write failed its sync answered 200"
wh_log "a state write's failed WAL sync: the store exited (PATCH: HTTP $code)"
restart_store
insert 56 60
wh_wait_until 60 received_all 1 60 || wh_fail "not every row 1-60 reached the receiver"

# A backfill's chunk is written with its sync (its ids would not survive a
# loss of the unsynced WAL): nothing of it reaches the receiver while that
# sync is held, all of it once it passes.
pg_psql -c "CREATE TABLE bf (id int PRIMARY KEY); INSERT INTO bf SELECT generate_series(1, 5)" \
    >/dev/null || wh_fail "cannot create table bf"
wh_wait_until 60 grep -q '"table":"bf","key":{"id":5}' "$WH_TMP/received.jsonl" ||
    wh_fail "bf's inserts were not delivered"
# the backfill's read waits for a lock on bf until the gate is closed (its
# request's own state write must pass first)
wh_psql_session lk 3
echo "BEGIN; LOCK TABLE bf IN ACCESS EXCLUSIVE MODE; SELECT 'locked';" >&3
wh_wait_until 10 grep -q locked "$WH_TMP/lk.out" || wh_fail "cannot lock bf"
code=$(curl -sS -o "$WH_TMP/post.out" -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d '{"table":"public.bf"}' \
    "http://127.0.0.1:$APORT/v1/tenants/default/backfill")
[ "$code" = 202 ] || wh_fail "backfill POST: HTTP $code ($(cat "$WH_TMP/post.out"))"
sleep 1
touch "$GATE"
echo "COMMIT;" >&3
wh_wait_until 30 test -e "$GATE.held" || wh_fail "the backfill's chunk reached no WAL sync"
sleep 2
reads() { grep -o '"op":"read","schema":"public","table":"bf"' "$WH_TMP/received.jsonl" | wc -l; }
[ "$(reads)" -eq 0 ] || wh_fail "$(reads) backfill rows were delivered before their chunk's WAL sync"
rm -f "$GATE"
reads_all() { [ "$(reads)" -ge 5 ]; }
wh_wait_until 60 reads_all || wh_fail "the backfill's rows were not delivered after the sync ($(reads) of 5)"
wh_log "backfill: no row delivered while its chunk's sync was held, $(reads) after"

# each row is one event: one id at the receiver, one key in the store
wh_items_stored_once 60
wh_log "store holds $STORED events, the receiver $IDS distinct ids ($(grep -c . "$WH_TMP/received.jsonl") requests)"
wh_pass "rows delivered while their WAL sync was held, acknowledged after it; a SIGKILL then lost none and stored none twice"
