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
# receivers. WH_LEASE_GATED=1: the store's WAL syncs pass through
# wh_syncgate.so, held while the file GATE ($WH_TMP/gate) exists
# (wh_spawn_gated_store; the caller's EXIT trap removes GATE).
wh_lease_stack() {
    local tables=$1 delay=$2 t targets=""
    shift 2
    wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-receiver \
        tests/wh_loadgen tests/wh_check
    wh_tmpdir
    if [ "${WH_LEASE_GATED:-0}" = 1 ]; then
        [ -f "$BIN/tests/wh_syncgate.so" ] || wh_fail "no $BIN/tests/wh_syncgate.so (run make)"
        GATE="$WH_TMP/gate"
    fi
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
    if [ "${WH_LEASE_GATED:-0}" = 1 ]; then
        wh_spawn_gated_store
    else
        wh_spawn store "$BIN/walhook-store" -c "$CONF"
    fi
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

# wh_lease_slow_stop: on a stack of wh_lease_stack with one target a whose
# receiver holds the first POST of "row-slow" (WH_LEASE_RECEIVER_ARGS), d0
# (lease TTL 1 s) takes a, delivers a first row to it, and is stopped
# (SIGTERM) while the receiver holds its POST of the slow row: it releases
# the lease with requests abandoned. Table tl holds rows 1 and 2.
wh_lease_slow_stop() {
    local file="$WH_TMP/received-a.jsonl"
    WALHOOK_DISPATCHER_LEASE_TTL_MS=1000 wh_lease_first d0 1
    pg_psql -c "CREATE TABLE tl (id int primary key, v text); INSERT INTO tl VALUES (1, 'row-one')" ||
        wh_fail "cannot insert the first row"
    wh_wait_until 30 grep -q row-one "$file" || wh_fail "d0 did not deliver the first row"
    pg_psql -c "INSERT INTO tl VALUES (2, 'row-slow')" || wh_fail "cannot insert the slow row"
    _wh_held() { curl -fsS --max-time 3 "http://127.0.0.1:${PORT[a]}/reset-max" | grep -q " 1 max concurrent"; }
    wh_wait_until 20 _wh_held || wh_fail "the receiver never held d0's POST of the slow row"
    wh_kill dispatcher-d0 TERM
    wh_log "d0 stopped while the receiver holds its POST"
}

# wh_lease_reply_lost RESTART: the scenario of test_lease_reply_lost.sh and
# test_lease_reply_restart.sh, on a stack of wh_lease_stack
# (WH_LEASE_GATED=1, one target a whose receiver
# holds the first POST of "row-slow" for 28 s; http_timeout_ms 30 s): d0
# stops (SIGTERM) while the receiver holds its POST, releasing the lease
# with requests abandoned; d1 (TTL 15 s, ipc.timeout_ms 2 s) takes a over,
# but that Acquire's synced lease write is held at the gate until d1 has
# given the call up (no answer). Then the store writes it and its reply
# goes to nobody (RESTART 0), or the store is killed while the write waits
# and started again (RESTART 1: the lease, written, is loaded as d1's). d1's
# next Acquire is granted by the store as d1's own lease. Fails the test
# when a POST overlaps d0's held one or a row does not arrive.
wh_lease_reply_lost() {
    local restart=$1 file="$WH_TMP/received-a.jsonl" d1log="$WH_TMP/dispatcher-d1.log"
    wh_lease_slow_stop
    [ -e "$GATE.held" ] && wh_fail "a WAL sync is held before the gate was set"

    # d1's takeover Acquire: its lease write held until d1 gave the call up
    touch "$GATE"
    WALHOOK_DISPATCHER_LEASE_TTL_MS=15000 WALHOOK_IPC_TIMEOUT_MS=2000 wh_lease_dispatcher d1
    wh_wait_until 20 test -e "$GATE.held" || wh_fail "no WAL sync of the store reached the gate"
    wh_wait_until 20 grep -q "lease: store: .*no reply" "$d1log" ||
        wh_fail "d1's store call did not time out at the gate: $(grep "lease" "$d1log" | tail -n 3)"
    grep -q "lease of default/a acquired" "$d1log" &&
        wh_fail "d1 acquired a while the store's sync was held (the test needs the Acquire's reply lost)"
    if [ "$restart" = 1 ]; then
        wh_kill store KILL
        rm -f "$GATE"
        # the scenario needs d1's lease in the WAL (written, its sync held):
        # when another write's sync held the gate (a retention write of the
        # store's maintenance, say), the lease write waited behind it unwritten,
        # the kill lost it, and the store started again had d0's release only:
        # d1's next Acquire was a first takeover, told on any build (the test
        # passed for nothing)
        grep -aqF "d1#" "$WH_TMP"/data/rocksdb/*.log ||
            wh_fail "d1's lease write was not in the store's WAL at the kill (another write's sync held the gate): the scenario did not run"
        wh_log "the store killed while the takeover's lease write waited for its sync"
        wh_spawn_gated_store
        wh_wait_until 20 test -S "$WH_TMP/data/store.sock" || wh_fail "the store did not start again"
    else
        rm -f "$GATE"
        wh_log "the sync passes: the takeover's reply goes to nobody"
    fi
    wh_wait_until 30 grep -q "lease of default/a acquired" "$d1log" ||
        wh_fail "d1 did not acquire a: $(grep "lease" "$d1log" | tail -n 5)"
    wh_log "d1: $(grep "lease of default/a acquired" "$d1log" | head -n 1 | cut -d" " -f4-)"

    pg_psql -c "INSERT INTO tl VALUES (3, 'row-last')" || wh_fail "cannot insert the last row"
    wh_wait_until 90 grep -q row-last "$file" || wh_fail "the row inserted last did not arrive"
    wh_wait_until 20 grep -q row-slow "$file" || wh_fail "the slow row never arrived"
    local ov
    ov=$(wh_overlaps a)
    [ "$ov" = 0 ] ||
        wh_fail "$ov POST(s) overlapped d0's held one: $(grep "lease of default/a" "$d1log" | cut -d" " -f4- | tail -n 4)"
}

# wh_lease_gated_stack NAME...: wh_lease_stack 1 0 NAME... with the store's
# WAL syncs behind the gate (WH_LEASE_GATED=1; the EXIT trap opens it), and
# log ID (a dispatcher's log file) and ctl (wh_statectl on CONF) defined.
wh_lease_gated_stack() {
    GATE=""
    trap '[ -n "$GATE" ] && rm -f "$GATE"; wh_cleanup' EXIT
    WH_LEASE_GATED=1 wh_lease_stack 1 0 "$@"
    log() { echo "$WH_TMP/dispatcher-$1.log"; }
    ctl() { "$BIN/tests/wh_statectl" -c "$CONF" "$@"; }
}

# wh_lease_d0_holds_b: on wh_lease_gated_stack a b, d1 alone (lease TTL
# 2 s) takes both; d0 (TTL 6 s: a round every 2 s; ipc.timeout_ms 1.8 s)
# starts and d1 gives b up to balance, d0 takes it; d1 stops (SIGTERM: a is
# released, free).
wh_lease_d0_holds_b() {
    WALHOOK_DISPATCHER_LEASE_TTL_MS=2000 wh_lease_first d1 2
    WALHOOK_DISPATCHER_LEASE_TTL_MS=6000 WALHOOK_IPC_TIMEOUT_MS=1800 wh_lease_dispatcher d0
    wh_wait_until 20 grep -q "lease of default/b acquired" "$(log d0)" ||
        wh_fail "d0 did not take b from d1: $(grep "lease of" "$(log d1)" | tail -n 3)"
    grep -q "lease of default/a acquired" "$(log d0)" &&
        wh_fail "d0 took a too (the test needs a held by d1)"
    wh_kill dispatcher-d1 TERM
}

# wh_lease_held_acquires: with the store settled, its WAL syncs held (GATE)
# and six LeaseAcquires of free consumers (owner "other") sent at once, each
# waiting for its lease write's sync or refused; returns once each was
# answered or given up (wh_statectl's 5 s). Their outputs: $WH_TMP/acqN.out.
wh_lease_held_acquires() {
    wh_wait_until 20 wh_store_settled || wh_fail "the store did not settle (a write in progress)"
    touch "$GATE"
    wh_log "the store's WAL syncs held; six LeaseAcquires sent"
    local i p pids=()
    for i in 1 2 3 4 5 6; do
        ctl lease-acquire default "free$i" other 60000 >"$WH_TMP/acq$i.out" 2>&1 &
        pids+=($!)
    done
    wh_wait_until 20 test -e "$GATE.held" || wh_fail "no WAL sync of the store reached the gate"
    for p in "${pids[@]}"; do wait "$p"; done
}
