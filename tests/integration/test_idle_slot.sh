#!/usr/bin/env bash
# An idle walhook never pins WAL: the published table is idle while another,
# unpublished table is busy (PostgreSQL decodes its transactions and sends
# walhook nothing of them). The slot's confirmed_flush_lsn must follow the
# WAL, and restart_lsn move on with it, without any event delivered; then a
# change to the published table is still delivered.
# Then with source.heartbeat_interval_ms, as a role with only LOGIN and
# REPLICATION: an idle source gets a heartbeat message (consumed, never an
# event) that comes back through the stream; a heartbeat statement that
# fails is logged and counted, and the stream goes on.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_pipeline_setup
pg_psql -c "CREATE TABLE pub_t (id int PRIMARY KEY)" -c "CREATE TABLE busy (id serial, v text)" \
    >/dev/null || wh_fail "cannot create the tables"
PORT=$(wh_free_port)
APORT=$(wh_free_port)
wh_spawn recv "$BIN/walhook-receiver" --listen "127.0.0.1:$PORT" --out "$WH_TMP/got.jsonl"
CONF="$WH_TMP/walhook.conf"
cat >"$CONF" <<CONFEOF
tenant = "default";
source = { dsn = "$PG_DSN"; slot = "walhook"; publication = "walhook"; create_slot = true;
           tables = "public.pub_t"; };
data_dir = "$WH_TMP/data";
log_level = "info";
admin = { listen = "127.0.0.1:$APORT"; };
targets = ( { name = "t"; url = "http://127.0.0.1:$PORT/hook"; } );
CONFEOF
wh_up "$CONF" "$APORT"
restart0=$(pg_psql -At -c "SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'walhook'")
# 40 transactions on the unpublished table, with a checkpoint in between
# (restart_lsn can only move past WAL the slot no longer needs)
for i in $(seq 1 40); do
    echo "INSERT INTO busy (v) SELECT repeat('x', 100) FROM generate_series(1, 200);"
    if [ "$i" = 20 ]; then echo "CHECKPOINT;"; fi
done | pg_psql >/dev/null || wh_fail "the busy table's inserts failed"
pg_psql -c "CHECKPOINT" >/dev/null
wal=$(pg_psql -At -c "SELECT pg_current_wal_lsn()")
wh_log "WAL at $wal after the busy table's writes (restart_lsn was $restart0)"
wh_wait_slot_flush "$wal" 60 walhook ||
    wh_fail "confirmed_flush_lsn stays at $(pg_psql -At -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'walhook'") behind $wal: the idle slot pins WAL"
_restart_moved() {
    [ "$(pg_psql -At -c "SELECT restart_lsn > '$restart0'::pg_lsn FROM pg_replication_slots WHERE slot_name = 'walhook'")" = t ]
}
wh_wait_until 60 _restart_moved || wh_fail "restart_lsn stays at $restart0"
[ "$(wh_count_events "$WH_TMP/got.jsonl")" = 0 ] || wh_fail "events delivered for an unpublished table"
pg_psql -c "INSERT INTO pub_t VALUES (1)" >/dev/null
_one() { [ "$(wh_count_events "$WH_TMP/got.jsonl")" -ge 1 ]; }
wh_wait_until 60 _one || wh_fail "the published table's insert was not delivered"
wh_kill walhook TERM

# heartbeats, as a least-privileged role
pg_psql -c "CREATE ROLE hb LOGIN REPLICATION" >/dev/null || wh_fail "cannot create the role hb"
HB_DSN="postgresql://hb@127.0.0.1:$PG_PORT/postgres"
run_hb() { # QUERY: walhook with heartbeats every 300 ms
    sed -e "s|dsn = \"[^\"]*\"|dsn = \"$HB_DSN\"|" \
        -e "s|tables = \"public.pub_t\";|tables = \"public.pub_t\"; heartbeat_interval_ms = 300; heartbeat_query = \"$1\";|" \
        "$CONF" >"$WH_TMP/hb.conf"
    wh_up "$WH_TMP/hb.conf" "$APORT"
}
hb_metric() { # NAME [LABEL]
    curl -fsS "http://127.0.0.1:$APORT/metrics" |
        awk -v n="$1" -v l="${2:-}" '$1 ~ "^"n && index($1, l) { s += $NF } END { print s + 0 }'
}
run_hb ""
_hb_seen() { [ "$(hb_metric walhook_ingestor_heartbeats_seen_total)" -ge 3 ]; }
wh_wait_until 30 _hb_seen ||
    wh_fail "$(hb_metric walhook_ingestor_heartbeats_seen_total) heartbeats came back; log: $(grep -i heartbeat "$WH_TMP/walhook.log" | tail -2)"
wal=$(pg_psql -At -c "SELECT pg_current_wal_lsn()")
wh_wait_slot_flush "$wal" 30 walhook || wh_fail "confirmed_flush_lsn does not follow the heartbeats to $wal"
last=$(hb_metric walhook_ingestor_last_heartbeat_timestamp_seconds)
[ "${last%.*}" -gt 0 ] || wh_fail "no last heartbeat time ($last)"
[ "$(wh_count_events "$WH_TMP/got.jsonl")" = 1 ] || wh_fail "a heartbeat became an event"
wh_kill walhook TERM

run_hb "SELECT no_such_function()"
_hb_failed() { [ "$(hb_metric walhook_ingestor_heartbeats_total 'result="error"')" -ge 2 ]; }
wh_wait_until 30 _hb_failed || wh_fail "no failed heartbeat counted"
n=$(grep -c 'heartbeat (source.heartbeat_query) failed: ERROR:  function no_such_function() does not exist' "$WH_TMP/walhook.log")
[ "$n" = 1 ] || wh_fail "$n warnings about the failing heartbeat, expected 1 (logged once)"
pg_psql -c "INSERT INTO pub_t VALUES (2)" >/dev/null
_two() { [ "$(wh_count_events "$WH_TMP/got.jsonl")" -ge 2 ]; }
wh_wait_until 60 _two || wh_fail "a change after failing heartbeats was not delivered"
wh_kill walhook TERM
wh_kill recv TERM
wh_pass "an unpublished busy table: confirmed_flush_lsn reached the WAL and restart_lsn moved, no event; heartbeats as a REPLICATION-only role came back through the stream (no event) and the slot followed; a failing heartbeat logged once, counted, the stream went on"
