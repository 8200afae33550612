#!/usr/bin/env bash
# Supervision test: `walhook up` with one target; during a 30,000-change
# stream each child daemon (store, ingestor, dispatcher, admin, in random
# order, at random moments) is SIGKILLed once, after `walhook up` logged it
# ready. `walhook up` must log the death naming the daemon, restart it at
# once (it was ready: no backoff), as a new child running walhook-NAME, and
# /readyz must answer 200 again; every change arrives in order with the right
# values (wh_check). Finally SIGTERM to `walhook up`: exit 0 within 15 s and no
# daemon process left behind.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
CHANGES=${CHANGES:-30000}
SEED=${SEED:-$RANDOM}
trap wh_cleanup EXIT
wh_require_bins walhook walhook-store walhook-ingestor walhook-dispatcher walhook-admin \
    walhook-receiver tests/wh_loadgen tests/wh_check
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
"$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --tables 3 --setup-only || wh_fail "table setup failed"

RPORT=$(wh_free_port)
APORT=$(wh_free_port)
wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --out "$WH_TMP/received.jsonl"
wh_spawn walhook "$BIN/walhook" up --source "$PG_DSN" --target "http://127.0.0.1:$RPORT/hook" \
    --data "$WH_TMP/data" --admin "127.0.0.1:$APORT"
UP=${WH_PIDS[walhook]}
READYZ="http://127.0.0.1:$APORT/readyz"
wh_wait_http "$READYZ" 60 || wh_fail "walhook never became ready"
LOG="$WH_TMP/walhook.log"

DAEMONS=(store ingestor dispatcher admin)
declare -A SEEN=() # every daemon pid ever seen, to check none survives the end
have_all_children() {
    local d p
    for d in "${DAEMONS[@]}"; do
        p=$(wh_child_pid "$UP" "$d")
        [ -n "$p" ] || return 1
        SEEN[$p]=$d
    done
}
wh_wait_until 30 have_all_children || wh_fail "walhook up does not run all four daemons"

victims=("${DAEMONS[@]}")
for i in 3 2 1; do # shuffle
    j=$(( RANDOM % (i + 1) ))
    t=${victims[i]}; victims[i]=${victims[j]}; victims[j]=$t
done
# Kill moments: random points of the delivery progress in [5 %, 70 %] of CHANGES.
mapfile -t points < <(for _ in 1 2 3 4; do
    echo $(( CHANGES / 20 + (RANDOM * 32768 + RANDOM) % (CHANGES * 13 / 20) )); done | sort -n)
wh_log "seed $SEED: $CHANGES changes; SIGKILL order: ${victims[*]} at ${points[*]} changes received"
wh_spawn loadgen "$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --changes "$CHANGES" --seed "$SEED" \
    --max-txn 100 --tables 3 --expect "$WH_TMP/expected.jsonl"

restarted_child() { # NAME OLDPID: a new child runs walhook-NAME
    local p
    p=$(wh_child_pid "$UP" "$1")
    [ -n "$p" ] && [ "$p" != "$2" ] && SEEN[$p]=$1
}
received() { wh_count_events "$WH_TMP/received.jsonl"; }
reached() { wh_alive walhook || wh_fail "walhook up exited"; [ "$(received)" -ge "$1" ]; }
midstream=0
for k in 0 1 2 3; do
    v=${victims[$k]}
    wh_wait_until 60 reached "${points[$k]}" || wh_fail "delivery stalled at $(received) changes"
    [ "$(received)" -lt "$CHANGES" ] && midstream=$((midstream + 1))
    old=$(wh_child_pid "$UP" "$v")
    [ -n "$old" ] || wh_fail "no walhook-$v child of walhook up (pid $UP)"
    wh_wait_until 30 grep -q "walhook-$v (pid $old) is ready" "$LOG" ||
        wh_fail "walhook up never saw walhook-$v (pid $old) ready"
    kill -KILL "$old" || wh_fail "cannot kill walhook-$v (pid $old)"
    wh_log "SIGKILL walhook-$v (pid $old), $(received) envelopes received so far"
    wh_wait_until 15 grep -q "walhook-$v (pid $old) killed by signal 9" "$LOG" ||
        wh_fail "walhook up did not log the death of walhook-$v (pid $old)"
    grep "walhook-$v (pid $old) killed by signal 9" "$LOG" | grep -q "restarting walhook-$v at once" ||
        wh_fail "walhook-$v (pid $old) was ready but not restarted at once"
    wh_wait_until 30 restarted_child "$v" "$old" || wh_fail "walhook up did not restart walhook-$v"
    new=$(wh_child_pid "$UP" "$v")
    # (walhook up logs the start after its fork: the child may exec first)
    wh_wait_until 15 grep -q "started walhook-$v (pid $new)" "$LOG" ||
        wh_fail "no start log line for walhook-$v (pid $new)"
    wh_wait_http "$READYZ" 60 || wh_fail "/readyz not 200 again after restarting walhook-$v"
    wh_log "walhook-$v restarted as pid $new; /readyz is 200"
done

wait "${WH_PIDS[loadgen]}" || wh_fail "load generation failed"
unset "WH_PIDS[loadgen]"
wh_log "generator done; waiting for the receiver to have everything"
wh_wait_received 60 "$WH_TMP/expected.jsonl" "$WH_TMP/received.jsonl" || {
    "$BIN/tests/wh_check" --expect "$WH_TMP/expected.jsonl" --received "$WH_TMP/received.jsonl"
    wh_fail "receiver did not get every change ($(wh_count_events "$WH_TMP/received.jsonl") envelopes)"
}
"$BIN/tests/wh_check" --expect "$WH_TMP/expected.jsonl" --received "$WH_TMP/received.jsonl" ||
    wh_fail "received stream does not match the expected changes"
have_all_children || wh_fail "a daemon is missing before the stop"
nrestarts=$(grep 'killed by signal 9' "$LOG" | grep -c 'at once')

wh_alive walhook || wh_fail "walhook up exited early"
kill -TERM "$UP"
t0=$(date +%s%N)
for _ in $(seq 1 150); do kill -0 "$UP" 2>/dev/null || break; sleep 0.1; done
kill -0 "$UP" 2>/dev/null && wh_fail "walhook up did not stop within 15 s of SIGTERM"
rc=0
wait "$UP" || rc=$?
unset "WH_PIDS[walhook]"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$rc" = 0 ] || wh_fail "walhook up exited with $rc after SIGTERM"
left=""
for p in "${!SEEN[@]}"; do
    if kill -0 "$p" 2>/dev/null && grep -q "walhook-${SEEN[$p]}" "/proc/$p/cmdline" 2>/dev/null; then
        left+=" walhook-${SEEN[$p]}:$p"
    fi
done
[ -z "$left" ] || wh_fail "daemon processes left after walhook up exited:$left"
wh_pass "$CHANGES changes, each of ${victims[*]} SIGKILLed once and restarted by walhook up ($nrestarts immediate restarts logged, $midstream kills before the receiver had everything), all delivered in order; SIGTERM: exit 0 in $ms ms, no daemon left (${#SEEN[@]} daemon pids checked)"
