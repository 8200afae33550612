#!/usr/bin/env bash
# Reconnect test: a stream of 50,000 changes while PostgreSQL drops the
# replication connection under the ingestor: its walsender is terminated twice
# (pg_terminate_backend), once during each half of the stream, and the server
# itself is restarted once in immediate mode (crash + WAL recovery) between the
# two halves, while the store is frozen (SIGSTOP) so that the slot is behind
# and PostgreSQL has to resend unconfirmed changes after recovery. The
# ingestor must reconnect with backoff by itself (same process, never
# restarted); afterwards the receiver has every change at least once, in
# order, with the right values, and the slot's confirmed_flush_lsn reached the
# end of the WAL.
#
# The generator holds one connection, so the server restart happens while it
# is idle: the first half goes to tables t1..t3 of schema public, the second
# half to tables t1..t3 of schema s2 (envelopes are compared on op, table,
# before and after, so the expected files simply concatenate).
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
CHANGES=${CHANGES:-50000}
SEED=${SEED:-$RANDOM}
STORE_STOPPED=0
trap '[ "$STORE_STOPPED" = 1 ] && kill -CONT "${WH_PIDS[store]}" 2>/dev/null; wh_cleanup' EXIT
wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-admin \
    walhook-receiver tests/wh_loadgen tests/wh_check
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
DSN2="$PG_DSN?options=-csearch_path%3Ds2"
pg_psql -c "CREATE SCHEMA s2" || wh_fail "cannot create schema s2"
"$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --tables 3 --setup-only || wh_fail "table setup failed"
"$BIN/tests/wh_loadgen" --dsn "$DSN2" --tables 3 --setup-only || wh_fail "table setup (s2) failed"
[ "$(pg_psql -At -c "SELECT count(*) FROM pg_tables WHERE schemaname = 's2'")" = 3 ] ||
    wh_fail "the s2 tables were not created in schema s2"

RPORT=$(wh_free_port)
APORT=$(wh_free_port)
CONF="$WH_TMP/walhook.conf"
wh_write_conf "$CONF" "$PG_DSN" "$WH_TMP/data" "$APORT" "http://127.0.0.1:$RPORT/hook"
mkdir -m 700 "$WH_TMP/data" # private, as every daemon requires
wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --out "$WH_TMP/received.jsonl"
DAEMONS=(store ingestor dispatcher admin)
for d in "${DAEMONS[@]}"; do
    wh_spawn "$d" "$BIN/walhook-$d" -c "$CONF"
    [ "$d" = store ] && { wh_wait_until 10 test -S "$WH_TMP/data/store.sock" || sleep 0.3; }
done
ING_PID=${WH_PIDS[ingestor]}
wh_wait_slot_active walhook 60 || wh_fail "the ingestor never started streaming"

# Every daemon must stay up the whole time (nothing restarts them here).
check_alive() {
    local d
    for d in "${DAEMONS[@]}"; do
        wh_alive "$d" || wh_fail "walhook-$d exited during the test (it must ride out the disconnects)"
    done
}

# Waits until the slot is streaming again from a walsender other than $1.
wait_new_walsender() {
    _new_ws() { local p; p=$(wh_slot_pid); [ -n "$p" ] && [ "$p" != "$1" ]; }
    wh_wait_until 60 _new_ws "$1"
}

# Terminates the walsender at a random moment while the generator runs.
terminated=0
terminate_during_load() {
    local r old
    r=$(( RANDOM % 10 + 2 ))
    sleep "$((r / 10)).$((r % 10))"
    check_alive
    wh_wait_slot_active walhook 30 || wh_fail "slot not active before a termination"
    old=$(wh_terminate_walsender) || wh_fail "could not terminate the walsender"
    terminated=$((terminated + 1))
    wh_log "terminated walsender pid $old (generator still running: $(wh_alive loadgen && echo yes || echo no))"
    wait_new_walsender "$old" || wh_fail "the ingestor did not reconnect after a termination"
    wh_log "streaming again from walsender $(wh_slot_pid)"
}

HALF=$((CHANGES / 2))
wh_log "seed $SEED: first $HALF changes (schema public), one walsender termination"
wh_spawn loadgen "$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --changes "$HALF" --seed "$SEED" \
    --max-txn 500 --tables 3 --expect "$WH_TMP/expected1.jsonl"
terminate_during_load
# Freeze the store (SIGSTOP) for the rest of the first half: the ingestor gets
# no acks, so the slot's confirmed flush stays behind and the crash restart
# below must make PostgreSQL resend what was not confirmed.
r=$(( RANDOM % 5 ))
sleep "0.$r"
kill -STOP "${WH_PIDS[store]}" || wh_fail "cannot SIGSTOP the store"
STORE_STOPPED=1
wh_log "store frozen (generator still running: $(wh_alive loadgen && echo yes || echo no))"
wait "${WH_PIDS[loadgen]}" || wh_fail "load generation (first half) failed"
unset "WH_PIDS[loadgen]"

old=$(wh_slot_pid)
lag=$(pg_psql -At -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)
                      FROM pg_replication_slots WHERE slot_name = 'walhook'")
wh_log "restarting PostgreSQL in immediate mode (walsender $old, slot behind by $lag bytes)"
pg_restart immediate || wh_fail "PostgreSQL did not restart"
check_alive
wait_new_walsender "$old" || wh_fail "the ingestor did not reconnect after the PostgreSQL restart"
wh_log "streaming again from walsender $(wh_slot_pid) after the restart; thawing the store"
kill -CONT "${WH_PIDS[store]}"
STORE_STOPPED=0

wh_log "second $((CHANGES - HALF)) changes (schema s2), one walsender termination"
wh_spawn loadgen "$BIN/tests/wh_loadgen" --dsn "$DSN2" --changes "$((CHANGES - HALF))" \
    --seed "$((SEED + 1))" --max-txn 500 --tables 3 --expect "$WH_TMP/expected2.jsonl"
terminate_during_load
wait "${WH_PIDS[loadgen]}" || wh_fail "load generation (second half) failed"
unset "WH_PIDS[loadgen]"
cat "$WH_TMP/expected1.jsonl" "$WH_TMP/expected2.jsonl" >"$WH_TMP/expected.jsonl"
END_LSN=$(pg_psql -At -c "SELECT pg_current_wal_lsn()")
wh_log "generator done at $END_LSN; waiting for the confirmed flush and the deliveries"
wh_wait_slot_flush "$END_LSN" 60 || {
    check_alive
    wh_fail "confirmed_flush_lsn never reached $END_LSN (it is $(pg_psql -At -c \
        "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'walhook'"))"
}
wh_log "confirmed flush reached $END_LSN"
wh_wait_received 60 "$WH_TMP/expected.jsonl" "$WH_TMP/received.jsonl" || {
    check_alive
    "$BIN/tests/wh_check" --expect "$WH_TMP/expected.jsonl" --received "$WH_TMP/received.jsonl"
    wh_fail "receiver did not get every change in order ($(wh_count_events "$WH_TMP/received.jsonl") envelopes)"
}
check_alive
[ "${WH_PIDS[ingestor]}" = "$ING_PID" ] || wh_fail "the ingestor was restarted"
"$BIN/tests/wh_check" --expect "$WH_TMP/expected.jsonl" --received "$WH_TMP/received.jsonl" ||
    wh_fail "received stream does not match the expected changes"
reconnects=$(grep -c 'reconnecting' "$WH_TMP/ingestor.log")
[ "$reconnects" -ge 3 ] ||
    wh_fail "the ingestor logged $reconnects disconnects, expected at least 3"
# Stop in the order of `walhook up` (consumers before the store), so that no
# daemon waits for a reply from a store that is already gone.
for d in dispatcher admin ingestor store receiver; do wh_kill "$d" TERM; done
wh_pass "$CHANGES changes, $terminated walsender terminations and 1 immediate PostgreSQL restart: ingestor reconnected by itself ($reconnects reconnects), confirmed flush reached $END_LSN, all delivered in order"
