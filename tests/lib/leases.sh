# Shared by the dispatcher lease tests (test_leases.sh, test_lease_*.sh,
# test_chaos_delivery.sh); source it after helpers.sh.

declare -gA PORT=()

# wh_lease_stack TABLES DELAY_MS NAME...: PostgreSQL with the loadgen's
# TABLES tables; a receiver per NAME on PORT[NAME] writing
# $WH_TMP/received-NAME.jsonl, answering after DELAY_MS (so that two POSTs to
# one target at once would overlap) and counting overlapping POSTs; the
# targets NAME=... in WALHOOK_TARGETS; the config CONF; the store and the
# ingestor. The dispatchers are the test's own (wh_lease_dispatcher).
# WH_LEASE_RECEIVER_ARGS (an array, optional): more options of the
# receivers.
wh_lease_stack() {
    local tables=$1 delay=$2 t targets=""
    shift 2
    wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-receiver \
        tests/wh_loadgen tests/wh_check
    wh_tmpdir
    pg_start || wh_fail "cannot start PostgreSQL"
    "$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --tables "$tables" --setup-only ||
        wh_fail "table setup failed"
    for t in "$@"; do
        wh_start_receiver "receiver-$t" "$WH_TMP/received-$t.jsonl" --delay-ms "$delay" \
            ${WH_LEASE_RECEIVER_ARGS[@]+"${WH_LEASE_RECEIVER_ARGS[@]}"}
        PORT[$t]=$WH_RPORT
        targets+="${targets:+,}$t=http://127.0.0.1:${PORT[$t]}/hook"
    done
    export WALHOOK_TARGETS="$targets"
    CONF="$WH_TMP/walhook.conf"
    wh_write_conf "$CONF" "$PG_DSN" "$WH_TMP/data" "$(wh_free_port)"
    mkdir -m 700 "$WH_TMP/data"
    wh_spawn store "$BIN/walhook-store" -c "$CONF"
    wh_wait_until 10 test -S "$WH_TMP/data/store.sock" || wh_fail "the store did not start"
    wh_spawn ingestor "$BIN/walhook-ingestor" -c "$CONF"
}

# wh_overlaps NAME...: POSTs that overlapped another POST to the same
# target, summed over the receivers of PORT[NAME].
wh_overlaps() {
    local t n sum=0
    for t in "$@"; do
        n=$(curl -fsS --max-time 3 "http://127.0.0.1:${PORT[$t]}/" |
            sed -n 's/.*stored, \([0-9]*\) overlapping.*/\1/p')
        sum=$((sum + ${n:-0}))
    done
    echo "$sum"
}

# wh_lease_dispatcher ID: a dispatcher with dispatcher.id ID on CONF (log
# $WH_TMP/dispatcher-ID.log, pid WH_PIDS[dispatcher-ID]); settings of its
# own go in the environment of the call.
wh_lease_dispatcher() {
    WALHOOK_DISPATCHER_ID="$1" wh_spawn "dispatcher-$1" "$BIN/walhook-dispatcher" -c "$CONF"
}

# wh_lease_first ID N: dispatcher ID alone, once the ingestor streams and ID
# holds N targets (fails the test otherwise).
wh_lease_first() {
    local id=$1 n=$2
    wh_lease_dispatcher "$id"
    wh_wait_slot_active walhook 60 || wh_fail "the ingestor never started streaming"
    _wh_lease_holds() { [ "$(grep -c "lease of default/.* acquired" "$WH_TMP/dispatcher-$id.log")" -ge "$n" ]; }
    wh_wait_until 20 _wh_lease_holds || wh_fail "$id did not take all $n targets"
}
