#!/usr/bin/env bash
# The ingestor's start against a real PostgreSQL 15: it opens its
# replication connection and runs the preflight on it while it waits for the
# store (ing_early), for the source of its configuration file; the runtime
# state in the store decides which source is used.
# 1. the slot exists but is physical: exit 1, the preflight names it;
# 2. a role without REPLICATION (the early connection fails): exit 1, the
#    preflight's own connection names the missing attribute;
# 3. the store's state names the bad slot, the ingestor's file a good one:
#    exit 1 naming the state's slot (the file's checked connection is not used);
# 4. the store's state names one good slot, the ingestor's file another,
#    and the server has one WAL sender free: the file's early connection
#    (its preflight passed) is closed before the state's source is checked; it streams from the
#    state's slot, and the flush LSN confirmed to PostgreSQL passes rows
#    inserted (the store synced them);
# 5. the early connection is the one that streams: started before the
#    store, the ingestor has a walsender while it waits, and that walsender
#    is the slot's once the store is up;
# 6. SIGTERM while the early connection hangs (a listener that never
#    answers) and the store is not up: the ingestor stops without its
#    shutdown watchdog.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-ingestor walhook-receiver
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
pg_psql -c "CREATE TABLE items (id int PRIMARY KEY);
            CREATE PUBLICATION walhook FOR ALL TABLES;
            CREATE ROLE norepl LOGIN;
            SELECT pg_create_physical_replication_slot('wh_phys');" >/dev/null ||
    wh_fail "setup failed"
NOREPL_DSN="postgresql://norepl@127.0.0.1:$PG_PORT/postgres"

conf() { # FILE DSN DATA SLOT
    wh_write_conf "$1" "$2" "$3" "$(wh_free_port)"
    sed -i "s/slot = \"walhook\"/slot = \"$4\"/" "$1"
}
# ingestor FILE LOG: runs it until it exits (at most 60 s); prints the code
ingestor() {
    local rc=0
    timeout -k 5 60 "$BIN/walhook-ingestor" -c "$1" >"$2" 2>&1 || rc=$?
    echo "$rc"
}
store_start() { # NAME FILE DATA
    mkdir -p -m 700 "$3"
    wh_spawn "$1" "$BIN/walhook-store" -c "$2"
    wh_wait_until 30 test -S "$3/store.sock" || wh_fail "$1 did not start"
}

# refused ROUND STORE-CONF INGESTOR-CONF DATA PATTERN...: with a store on
# STORE-CONF's state, the ingestor on INGESTOR-CONF exits 1, its log naming
# every PATTERN
refused() {
    local round=$1 sconf=$2 iconf=$3 data=$4 rc p
    shift 4
    store_start "store$round" "$sconf" "$data"
    rc=$(ingestor "$iconf" "$WH_TMP/ing$round.log")
    [ "$rc" = 1 ] || { cat "$WH_TMP/ing$round.log" >&2; wh_fail "round $round: the ingestor exited $rc, not 1"; }
    for p in "$@"; do
        grep -qF -- "$p" "$WH_TMP/ing$round.log" ||
            { cat "$WH_TMP/ing$round.log" >&2; wh_fail "round $round: no '$p' in its log"; }
    done
    wh_kill "store$round"
}

# 1: the file's source, checked early: the physical slot
conf "$WH_TMP/bad1.conf" "$PG_DSN" "$WH_TMP/d1" wh_phys
refused 1 "$WH_TMP/bad1.conf" "$WH_TMP/bad1.conf" "$WH_TMP/d1" \
    'preflight: - replication slot "wh_phys" exists but is not a logical pgoutput slot'

# 2: no REPLICATION attribute: the early replication connection fails
conf "$WH_TMP/norepl.conf" "$NOREPL_DSN" "$WH_TMP/d2" wh_ok
refused 2 "$WH_TMP/norepl.conf" "$WH_TMP/norepl.conf" "$WH_TMP/d2" \
    'preflight: - role "norepl" lacks the REPLICATION attribute' \
    'fix (as a superuser): ALTER ROLE norepl WITH REPLICATION;'

# 3: the store's state is bad, the ingestor's file good: the state decides
conf "$WH_TMP/bad3.conf" "$PG_DSN" "$WH_TMP/d3" wh_phys
conf "$WH_TMP/good3.conf" "$PG_DSN" "$WH_TMP/d3" wh_ok
refused 3 "$WH_TMP/bad3.conf" "$WH_TMP/good3.conf" "$WH_TMP/d3" \
    'replication slot "wh_phys" exists but is not a logical pgoutput slot'
[ -z "$(wh_slot_pid wh_ok)" ] || wh_fail "round 3: the file's slot wh_ok is in use"

# 4: the store's state names wh_ok, the ingestor's file wh_other: it streams
# from wh_ok
D4="$WH_TMP/d4"
conf "$WH_TMP/good4.conf" "$PG_DSN" "$D4" wh_ok
conf "$WH_TMP/other4.conf" "$PG_DSN" "$D4" wh_other
store_start store4 "$WH_TMP/good4.conf" "$D4"
# every WAL sender but one busy (max_wal_senders = 10, tests/lib/pg.sh)
walsenders() { pg_psql -At -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'"; }
for i in 1 2 3 4 5 6 7 8 9; do
    wh_spawn "busy$i" psql -X -q -d "$PG_DSN?replication=database" -c "SELECT pg_sleep(300)"
done
nine_busy() { [ "$(walsenders)" -ge 9 ]; }
wh_wait_until 30 nine_busy ||
    wh_fail "round 4: the 9 busy WAL senders did not start ($(walsenders))"
wh_spawn ingestor4 "$BIN/walhook-ingestor" -c "$WH_TMP/other4.conf"
wh_wait_slot_active wh_ok 30 || { cat "$WH_TMP/ingestor4.log" >&2; wh_fail "round 4: no stream on wh_ok"; }
pg_psql -c "INSERT INTO items SELECT generate_series(1, 20)" >/dev/null || wh_fail "insert failed"
# the flush LSN moves only once the store has synced the changes
LSN=$(pg_psql -At -c "SELECT pg_current_wal_lsn()")
confirmed() {
    [ "$(pg_psql -At -c "SELECT confirmed_flush_lsn >= '$LSN' FROM pg_replication_slots WHERE slot_name = 'wh_ok'")" = t ]
}
wh_wait_until 30 confirmed || { cat "$WH_TMP/ingestor4.log" >&2; wh_fail "round 4: the rows were not stored and confirmed"; }
wh_kill ingestor4
for i in 1 2 3 4 5 6 7 8 9; do wh_kill "busy$i"; done
grep -q "preflight" "$WH_TMP/ingestor4.log" && { cat "$WH_TMP/ingestor4.log" >&2; wh_fail "round 4: a preflight problem"; }
wh_log "round 4: streamed from the state's slot wh_ok"
wh_kill store4

# 5: started before the store: its walsender exists while it waits, and is
# the one that streams
D5="$WH_TMP/d5"
conf "$WH_TMP/good5.conf" "$PG_DSN" "$D5" wh_five
mkdir -p -m 700 "$D5"
early_pid() {
    pg_psql -At -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'walsender' AND application_name = 'walhook-ingestor'"
}
wh_spawn ingestor5 "$BIN/walhook-ingestor" -c "$WH_TMP/good5.conf"
has_early() { [ -n "$(early_pid)" ]; }
wh_wait_until 8 has_early ||
    { cat "$WH_TMP/ingestor5.log" >&2; wh_fail "round 5: no walsender while the ingestor waits for the store"; }
P5=$(early_pid)
store_start store5 "$WH_TMP/good5.conf" "$D5"
wh_wait_slot_active wh_five 30 || { cat "$WH_TMP/ingestor5.log" >&2; wh_fail "round 5: no stream on wh_five"; }
[ "$(wh_slot_pid wh_five)" = "$P5" ] ||
    wh_fail "round 5: the slot streams on walsender $(wh_slot_pid wh_five), not the early one ($P5)"
wh_log "round 5: the early walsender $P5 streams"
wh_kill ingestor5
wh_kill store5

# 6: SIGTERM while the early connection hangs and the store is not up
HPORT=$(wh_free_port)
wh_spawn hang "$BIN/walhook-receiver" --listen "127.0.0.1:$HPORT" --hang
wh_wait_until 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$HPORT" 2>/dev/null || wh_fail "round 6: no listener"
D6="$WH_TMP/d6"
conf "$WH_TMP/hang6.conf" "postgresql://postgres@127.0.0.1:$HPORT/postgres?sslmode=disable" "$D6" wh_six
mkdir -p -m 700 "$D6"
wh_spawn ingestor6 "$BIN/walhook-ingestor" -c "$WH_TMP/hang6.conf"
sleep 1
wh_kill ingestor6 TERM
grep -q "shutdown did not finish" "$WH_TMP/ingestor6.log" &&
    { cat "$WH_TMP/ingestor6.log" >&2; wh_fail "round 6: the stop waited for the hanging connection"; }
wh_log "round 6: stopped while connecting"
echo "PASS test_ingestor_start"
