#!/usr/bin/env bash
# Store crash test (issue 10): the store is SIGKILLed KILLS (50) times at
# random moments while two ingestors (tenants a and b, two databases) append
# and the dispatcher reads and delivers both. Afterwards: every change of
# both tenants reached its target complete and in order (nothing the store
# acknowledged is lost); tenant a, whose GC is held by an idle consumer,
# holds every position exactly once in the store; tenant b (GC running, a
# small memtable so compactions happen) holds no position twice; sampled
# after every restart, no target's committed offset and no tenant's GC
# watermark ever went back.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
CHANGES=${CHANGES:-3000}
KILLS=${KILLS:-50}
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-receiver \
    tests/wh_loadgen tests/wh_check tests/wh_statectl
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
pg_psql -c "CREATE DATABASE shop_b" || wh_fail "cannot create the second database"
DSN_A="$PG_DSN"
DSN_B="${PG_DSN%/*}/shop_b"
for dsn in "$DSN_A" "$DSN_B"; do
    "$BIN/tests/wh_loadgen" --dsn "$dsn" --tables 2 --setup-only || wh_fail "table setup failed"
done

RA=$(wh_free_port) RB=$(wh_free_port)
CONF="$WH_TMP/walhook.conf"
mkdir -m 700 "$WH_TMP/data"
cat >"$CONF" <<EOF
tenant = "a";
data_dir = "$WH_TMP/data";
log_level = "info";
source = { dsn = "$DSN_A"; slot = "wh_a"; publication = "wh_a"; create_slot = true; };
store = { write_buffer_bytes = 262144; };
ipc = { timeout_ms = 2000; };
targets = ( { name = "ta"; url = "http://127.0.0.1:$RA/a"; } );
tenants = (
  { name = "b";
    source = { dsn = "$DSN_B"; slot = "wh_b"; publication = "wh_b"; create_slot = true; };
    targets = ( { name = "tb"; url = "http://127.0.0.1:$RB/b"; } ); }
);
EOF
wh_spawn receiver_a "$BIN/walhook-receiver" --listen "127.0.0.1:$RA" --out "$WH_TMP/a.jsonl"
wh_spawn receiver_b "$BIN/walhook-receiver" --listen "127.0.0.1:$RB" --out "$WH_TMP/b.jsonl"
start_store() { wh_spawn store "$BIN/walhook-store" -c "$CONF"; }
start_store
wh_wait_until 20 "$BIN/tests/wh_statectl" -c "$CONF" version >/dev/null ||
    wh_fail "the store never answered"
# a consumer that never reads ("hold", registered at (0,0)) holds tenant a's
# GC: its dump stays complete
"$BIN/tests/wh_statectl" -c "$CONF" set-offset a hold 0/0:0 >/dev/null ||
    wh_fail "cannot register the holding target"
wh_spawn ingestor_a "$BIN/walhook-ingestor" -c "$CONF" --tenant a
wh_spawn ingestor_b "$BIN/walhook-ingestor" -c "$CONF" --tenant b
wh_spawn dispatcher "$BIN/walhook-dispatcher" -c "$CONF"
wh_wait_slot_active wh_a 60 || wh_fail "tenant a's ingestor never streamed"
wh_wait_slot_active wh_b 60 || wh_fail "tenant b's ingestor never streamed"

wh_spawn load_a "$BIN/tests/wh_loadgen" --dsn "$DSN_A" --changes "$CHANGES" --seed 11 --max-txn 40 \
    --tables 2 --expect "$WH_TMP/expected_a.jsonl" --txn-pause-ms 250
wh_spawn load_b "$BIN/tests/wh_loadgen" --dsn "$DSN_B" --changes "$CHANGES" --seed 12 --max-txn 40 \
    --tables 2 --expect "$WH_TMP/expected_b.jsonl" --txn-pause-ms 250

# positions T C -> "off_lsn off_seq wm_lsn wm_seq end_lsn" (decimal)
declare -A LAST_OFF=() LAST_WM=()
check_positions() {
    local t c out ol os wl ws el
    for tc in a:ta b:tb; do
        t=${tc%%:*} c=${tc#*:}
        out=$("$BIN/tests/wh_statectl" -c "$CONF" positions "$t" "$c" 2>/dev/null) || return 1
        read -r ol os wl ws el <<<"$out"
        local po=${LAST_OFF[$t]:-"0 0"} pw=${LAST_WM[$t]:-"0 0"}
        read -r pol pos <<<"$po"
        read -r pwl pws <<<"$pw"
        if [ "$ol" -lt "$pol" ] || { [ "$ol" -eq "$pol" ] && [ "$os" -lt "$pos" ]; }; then
            wh_fail "offset of $t/$c went back: $pol:$pos -> $ol:$os"
        fi
        if [ "$wl" -lt "$pwl" ] || { [ "$wl" -eq "$pwl" ] && [ "$ws" -lt "$pws" ]; }; then
            wh_fail "GC watermark of $t went back: $pwl:$pws -> $wl:$ws"
        fi
        LAST_OFF[$t]="$ol $os"
        LAST_WM[$t]="$wl $ws"
        : "$el"
    done
}

t0=$SECONDS
for k in $(seq 1 "$KILLS"); do
    r=$(( RANDOM % 9 + 2 )) # 0.2 .. 1.0 s of running
    sleep "0.$r"
    wh_alive store || wh_fail "the store exited by itself before kill $k ($(tail -n 3 "$WH_TMP/store.log"))"
    kill -KILL "${WH_PIDS[store]}" 2>/dev/null
    wait "${WH_PIDS[store]}" 2>/dev/null
    start_store
    wh_wait_until 20 check_positions || wh_fail "the store did not answer after kill $k"
done
wh_log "$KILLS SIGKILLs of the store in $((SECONDS - t0)) s; offsets a=${LAST_OFF[a]} b=${LAST_OFF[b]}, watermarks a=${LAST_WM[a]} b=${LAST_WM[b]}"

wait "${WH_PIDS[load_a]}" || wh_fail "load generation on tenant a failed"
wait "${WH_PIDS[load_b]}" || wh_fail "load generation on tenant b failed"
unset "WH_PIDS[load_a]" "WH_PIDS[load_b]"
END_LSN=$(pg_psql -At -c "SELECT pg_current_wal_lsn()")
_flushed() {
    [ "$(pg_psql -At -c "SELECT bool_and(confirmed_flush_lsn >= '$END_LSN'::pg_lsn)
                          FROM pg_replication_slots WHERE slot_name IN ('wh_a', 'wh_b')")" = t ]
}
wh_wait_until 60 _flushed || wh_fail "the slots' confirmed flush never reached $END_LSN"
_received() { # TENANT
    "$BIN/tests/wh_check" --expect "$WH_TMP/expected_$1.jsonl" --received "$WH_TMP/$1.jsonl" \
        --tenant "$1" >/dev/null 2>&1
}
wh_wait_until 90 _received a || wh_fail "tenant a's target did not get every change in order"
wh_wait_until 90 _received b || wh_fail "tenant b's target did not get every change in order"
check_positions || wh_fail "the store did not answer at the end"

for d in dispatcher ingestor_a ingestor_b store; do wh_kill "$d" TERM; done
"$BIN/walhook-store" --dump -c "$CONF" >"$WH_TMP/dump.txt" 2>"$WH_TMP/dump.log" ||
    wh_fail "walhook-store --dump failed"
"$BIN/tests/wh_check" --dump "$WH_TMP/dump.txt" --count "$CHANGES" --tenant a ||
    wh_fail "the store does not hold tenant a's positions exactly once"
dups=$(grep '^b ' "$WH_TMP/dump.txt" | sort | uniq -d | wc -l)
[ "$dups" = 0 ] || wh_fail "the store holds $dups positions of tenant b twice"
kept_b=$(grep -c '^b ' "$WH_TMP/dump.txt")
wh_pass "$KILLS SIGKILLs of the store under two ingestors and a dispatcher: both tenants delivered complete and in order, tenant a stored exactly once, tenant b nothing twice (events left after GC: $kept_b), offsets and watermarks never went back"
