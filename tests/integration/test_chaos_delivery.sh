#!/usr/bin/env bash
# Chaos delivery (issue 8): CHANGES changes (default 100,000) stream to three
# targets while two dispatcher replicas share them through leases and are
# SIGKILLed KILLS times (default 10; each killed replica is replaced at once
# by a new one with a new id):
#   healthy  a normal receiver
#   flaky    answers 500 to every 5th request (retried)
#   down     nothing listens on its port until a third of the kills are done
#            (connection refused; breaker_cooldown_ms 500), then it is back
# Checked afterwards:
#   - every target got every change at least once, the first arrivals in
#     commit order with the right content (wh_check), and an order-sensitive
#     rolling checksum over the ids of the first arrivals is the same for the
#     three targets and for the expected stream's positions;
#   - nothing was skipped without a dead-letter record (ids missing from a
#     receiver must be in the target's DLQ; here none is missing);
#   - no committed offset moved backwards (sampled from the store every
#     ~300 ms during the run);
#   - no two replicas posted to the same target at the same time (each
#     receiver counts POSTs that overlap another one; strict ordering posts
#     one request at a time per target).
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
source "$(dirname "$0")/../lib/leases.sh"
CHANGES=${CHANGES:-100000}
KILLS=${KILLS:-10}
TTL=${TTL:-1500}
SEED=${SEED:-$RANDOM}
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-receiver \
    tests/wh_loadgen tests/wh_check tests/wh_statectl
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
"$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --tables 3 --setup-only || wh_fail "table setup failed"
export WALHOOK_DISPATCHER_ALLOW_PRIVATE_NETWORKS="127.0.0.1/32,::1"
export WALHOOK_DISPATCHER_LEASE_TTL_MS="$TTL"
NAMES=(healthy flaky down)
declare -A PORT
for t in "${NAMES[@]}"; do PORT[$t]=$(wh_free_port); done
rcv() { # NAME ARGS...
    local t=$1
    shift
    wh_spawn "r_$t" "$BIN/walhook-receiver" --listen "127.0.0.1:${PORT[$t]}" \
        --out "$WH_TMP/$t.jsonl" --delay-ms 2 "$@"
    wh_wait_http "http://127.0.0.1:${PORT[$t]}/" 10 || wh_fail "receiver $t cannot listen"
}
rcv healthy
rcv flaky --fail-every 5
u() { echo "http://127.0.0.1:${PORT[$1]}/hook"; }
CONF="$WH_TMP/walhook.conf"
cat >"$CONF" <<CONFEOF
data_dir = "$WH_TMP/data";
log_level = "info";
dispatcher = { batch_max_events = 500; retry_base_ms = 20; retry_max_ms = 300; };
tenants = (
  { name = "c";
    source = { dsn = "$PG_DSN"; slot = "walhook"; publication = "walhook"; create_slot = true; };
    targets = (
      { name = "healthy"; url = "$(u healthy)"; },
      { name = "flaky"; url = "$(u flaky)"; },
      { name = "down"; url = "$(u down)"; breaker_cooldown_ms = 500; }
    ); }
);
CONFEOF
mkdir -m 700 "$WH_TMP/data"
wh_spawn store "$BIN/walhook-store" -c "$CONF"
wh_wait_until 10 test -S "$WH_TMP/data/store.sock" || wh_fail "the store did not start ($(tail -3 "$WH_TMP/store.log"))"
wh_spawn ingestor "$BIN/walhook-ingestor" -c "$CONF" --tenant c
gen=0
start_dispatcher() { # SLOT (1 or 2): a new replica with a new id
    gen=$((gen + 1))
    local id="r$1g$gen"
    WALHOOK_DISPATCHER_ID="$id" wh_spawn "disp$1" "$BIN/walhook-dispatcher" -c "$CONF"
}
start_dispatcher 1
start_dispatcher 2
wh_wait_slot_active walhook 60 || wh_fail "the ingestor never started streaming ($(tail -3 "$WH_TMP/ingestor.log"))"

# committed offsets of every target, sampled from the store during the run
STATECTL=("$BIN/tests/wh_statectl" -c "$CONF")
sample_offsets() {
    while :; do
        for t in "${NAMES[@]}"; do
            o=$("${STATECTL[@]}" offset c "$t" 2>/dev/null) && echo "$t $o"
        done
        sleep 0.3
    done
}
sample_offsets >"$WH_TMP/offsets.txt" 2>/dev/null &
SAMPLER=$!
WH_PIDS[sampler]=$SAMPLER

t0=$SECONDS
wh_log "seed $SEED: $CHANGES changes, 3 targets, 2 dispatcher replicas (lease TTL $TTL ms), $KILLS SIGKILLs"
wh_spawn loadgen "$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --changes "$CHANGES" --seed "$SEED" \
    --max-txn 200 --tables 3 --expect "$WH_TMP/expected.jsonl"

check_alive() {
    local d
    for d in store ingestor r_healthy r_flaky; do
        wh_alive "$d" || wh_fail "$d exited during the test"
    done
}
received() { wh_count_events "$WH_TMP/healthy.jsonl"; }
reached() { check_alive; [ "$(received)" -ge "$1" ]; }
# kill moments: KILLS points of the healthy target's progress in [5 %, 85 %]
mapfile -t points < <(for ((k = 0; k < KILLS; k++)); do
    echo $(( CHANGES / 20 + (RANDOM * 32768 + RANDOM) % (CHANGES * 4 / 5) )); done | sort -n)
back_after=$(( KILLS / 3 ))
for ((k = 0; k < KILLS; k++)); do
    wh_wait_until 90 reached "${points[$k]}" || wh_fail "delivery stalled at $(received) changes (kill $((k + 1)))"
    slot=$(( RANDOM % 2 + 1 ))
    pid=${WH_PIDS[disp$slot]}
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    unset "WH_PIDS[disp$slot]"
    wh_log "kill $((k + 1)): SIGKILL replica $slot (pid $pid) at $(received) changes received by healthy"
    start_dispatcher "$slot"
    if [ "$k" = "$back_after" ]; then
        rcv down
        wh_log "target down is back"
    fi
done
[ "$KILLS" -le "$back_after" ] && rcv down

wait "${WH_PIDS[loadgen]}" || wh_fail "load generation failed"
unset "WH_PIDS[loadgen]"
files=()
for t in "${NAMES[@]}"; do files+=("$WH_TMP/$t.jsonl"); done
all_received() {
    local f args=()
    for f in "${files[@]}"; do
        [ "$(wh_count_events "$f")" -ge "$CHANGES" ] || return 1
        args+=(--received "$f")
    done
    "$BIN/tests/wh_check" --tenant c --expect "$WH_TMP/expected.jsonl" "${args[@]}" >/dev/null 2>&1
}
wh_wait_until 120 all_received || {
    check_alive
    for t in "${NAMES[@]}"; do
        echo "target $t, DLQ: $("${STATECTL[@]}" dlq-ids c "$t" | wc -l) record(s)"
        "$BIN/tests/wh_check" --tenant c --expect "$WH_TMP/expected.jsonl" --received "$WH_TMP/$t.jsonl" || true
    done
    wh_fail "a target did not get every change (see wh_check above)"
}
took=$((SECONDS - t0))
sleep 1
kill "$SAMPLER" 2>/dev/null
wait "$SAMPLER" 2>/dev/null
unset "WH_PIDS[sampler]"

# rolling checksums of the first arrivals, and dead letters for any gap
for t in "${NAMES[@]}"; do "${STATECTL[@]}" dlq-ids c "$t" >"$WH_TMP/$t.dlq" || wh_fail "dlq-ids $t failed"; done
sums=$(python3 - "$WH_TMP" "${NAMES[@]}" <<'PY'
import json, sys
d, names = sys.argv[1], sys.argv[2:]
M = (1 << 64) - 1
out, idsets = [], {}
for n in names:
    h, seen, order = 0, set(), []
    for line in open(f"{d}/{n}.jsonl"):
        for e in json.loads(line):
            if e.get("op") in ("schema", "ddl"):  # schema registry events (test_schema.sh)
                continue
            i = e["id"]
            if i in seen:
                continue
            seen.add(i)
            order.append(i)
            for ch in i.encode():
                h = ((h * 1099511628211) ^ ch) & M
            h = (h * 31 + 7) & M
    idsets[n] = seen
    dlq = set(l.strip() for l in open(f"{d}/{n}.dlq") if l.strip())
    out.append((n, h, len(order), len(dlq)))
allids = set().union(*idsets.values())
for n, h, cnt, ndlq in out:
    dlq = set(l.strip() for l in open(f"{d}/{n}.dlq") if l.strip())
    missing = allids - idsets[n] - dlq
    if missing:
        print(f"FAIL target {n}: {len(missing)} id(s) neither received nor dead-lettered")
    print(f"{n} {h:016x} {cnt} {ndlq}")
PY
) || wh_fail "checksum script failed"
wh_log "rolling checksums (target, checksum, ids, dead letters): $(echo "$sums" | tr '\n' ';')"
grep -q '^FAIL' <<<"$sums" && wh_fail "$(grep '^FAIL' <<<"$sums")"
[ "$(awk '{print $2}' <<<"$sums" | sort -u | wc -l)" = 1 ] ||
    wh_fail "the targets' rolling checksums differ: not the same ids in the same order"

# no committed offset moved backwards
back=$(awk '{ key = $1; pos = $2 * 4294967296 + $3
              if ((key in last) && pos < last[key]) { print key ": " last[key] " -> " pos; bad++ }
              last[key] = pos } END { exit bad > 0 }' "$WH_TMP/offsets.txt") ||
    wh_fail "a committed offset moved backwards: $back"
nsamples=$(wc -l <"$WH_TMP/offsets.txt")
[ "$nsamples" -ge 10 ] || wh_fail "only $nsamples offset samples"

ov=$(wh_overlaps "${NAMES[@]}")
[ "$ov" = 0 ] || wh_fail "$ov POST(s) overlapped another POST to the same target: two replicas posted at once"
dups=0
for f in "${files[@]}"; do dups=$((dups + $(wh_count_events "$f") - CHANGES)); done
for d in disp1 disp2 ingestor store r_healthy r_flaky r_down; do wh_kill "$d" TERM; done
wh_pass "$CHANGES changes to 3 targets (healthy, flaky every 5th, down then back) with $KILLS SIGKILLs of 2 replicas in ${took} s: every change in order per target (equal rolling checksums), nothing skipped, $nsamples offset samples never backwards, no overlapping POSTs, $dups redelivered"
