#!/usr/bin/env bash
# Targets and settings changed at runtime while a stream runs (docs/CONTROL.md),
# through the admin REST API (the admin writes the runtime state to the
# store, the daemons apply it), with real PostgreSQL, store, ingestor,
# dispatcher, admin and HTTP receivers:
#   - pz is paused (gets nothing while paused) and resumed (then everything,
#     in order);
#   - late is added (it starts at the tenant's end) and gets the rest of the
#     stream, in order; then it is removed and gets nothing more;
#   - t0's URL moves to a second receiver and gets a secret: the two
#     receivers together hold the whole stream in order, the new one's
#     requests carry a valid Standard Webhooks signature;
#   - dispatcher.batch_max_events and ingestor.flush_bytes are patched and
#     applied;
#   - nothing is lost or stored twice (walhook-store --dump), and after a
#     restart of every daemon the runtime state is kept.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
CHANGES=${CHANGES:-20000} # with a 10 ms pause after each transaction: about 30 s
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-admin walhook-receiver \
    tests/wh_loadgen tests/wh_check tests/wh_statectl
command -v openssl >/dev/null || wh_fail "openssl is needed to check signatures"
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
"$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --tables 2 --setup-only || wh_fail "table setup failed"

# receivers first, each on a port it could bind (another test may take a
# free port between wh_free_port and the bind)
start_receiver() { # N: sets R<N>
    local n=$1 port try
    for try in 1 2 3 4 5; do
        port=$(wh_free_port)
        wh_spawn "receiver$n" "$BIN/walhook-receiver" --listen "127.0.0.1:$port" \
            --out "$WH_TMP/r$n.jsonl" --headers "$WH_TMP/r$n.headers"
        if wh_wait_http "http://127.0.0.1:$port/" 5; then
            printf -v "R$n" '%s' "$port"
            return 0
        fi
        wh_kill "receiver$n"
    done
    wh_fail "receiver $n could not listen"
}
for r in 1 2 3 4; do start_receiver "$r"; done
APORT=$(wh_free_port)
CONF="$WH_TMP/walhook.conf"
wh_write_conf "$CONF" "$PG_DSN" "$WH_TMP/data" "$APORT" "http://127.0.0.1:$R1/one" \
    "http://127.0.0.1:$R4/pz"
sed -i 's/name = "t1"/name = "pz"/' "$CONF"
mkdir -m 700 "$WH_TMP/data" # private, as every daemon requires
start_daemons() {
    wh_spawn store "$BIN/walhook-store" -c "$CONF"
    sleep 0.3
    wh_spawn ingestor "$BIN/walhook-ingestor" -c "$CONF"
    wh_spawn dispatcher "$BIN/walhook-dispatcher" -c "$CONF"
    wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
}
start_daemons
wh_wait_slot_active walhook 60 || wh_fail "the ingestor never started streaming"
# a consumer that never reads holds the GC at (0,0): step 8 checks that the
# store holds every position once, which needs them all kept
"$BIN/tests/wh_statectl" -c "$CONF" set-offset default hold 0/0:0 >/dev/null ||
    wh_fail "cannot register the consumer that holds the GC"
METRICS="http://127.0.0.1:$APORT/metrics"
SC=("$BIN/tests/wh_statectl" -c "$CONF")
# the admin made a token for the API (no token configured)
wh_wait_until 20 test -s "$WH_TMP/data/admin.token" || wh_fail "the admin wrote no token file"
TOKEN=$(grep -v '^read:' "$WH_TMP/data/admin.token" | head -n 1)
API="http://127.0.0.1:$APORT"
api() { # METHOD PATH [JSON]: fails unless 2xx
    local m=$1 path=$2
    shift 2
    curl -fsS --max-time 10 -X "$m" -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' ${1:+-d "$1"} "$API$path" >>"$WH_TMP/api.log" 2>&1 &&
        echo >>"$WH_TMP/api.log"
}
T=/v1/tenants/default/targets
# effect_ms CMD...: polls CMD every 50 ms (up to 20 s); prints the ms it took
# from the call (the API answered before) - a figure for the log, not a bound
effect_ms() {
    local t0 now
    t0=$(date +%s%3N)
    for _ in $(seq 1 400); do
        if "$@"; then
            now=$(date +%s%3N)
            echo $(( now - t0 ))
            return 0
        fi
        sleep 0.05
    done
    return 1
}
lines() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
has_lines() { [ "$(lines "$1")" -gt 0 ]; }
paused_metric() { [ "$(wh_metric_label "$METRICS" walhook_target_paused 'target="pz"')" = "$1" ]; }
t0_complete() { [ $(( $(wh_count_events "$WH_TMP/r1.jsonl") + $(wh_count_events "$WH_TMP/r2.jsonl") )) -ge "$1" ]; }

wh_spawn loadgen "$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --changes "$CHANGES" --seed 11 \
    --max-txn 20 --tables 2 --txn-pause-ms 10 --expect "$WH_TMP/expected.jsonl"
wh_wait_until 30 has_lines "$WH_TMP/r1.jsonl" || wh_fail "t0 received nothing"

# 1. pause pz: no request starts any more (one in flight may still land)
api POST "$T/pz/pause" || wh_fail "pause failed"
ms_pause=$(effect_ms grep -q "target default/pz paused" "$WH_TMP/dispatcher.log") ||
    wh_fail "the dispatcher did not pause pz"
wh_wait_until 10 paused_metric 1 ||
    wh_fail "walhook_target_paused{target=pz} is not 1"
sleep 1
paused_at=$(lines "$WH_TMP/r4.jsonl")

# 2. add `late`: it starts at the tenant's current end
api POST "$T" "{\"name\":\"late\",\"url\":\"http://127.0.0.1:$R3/late\"}" ||
    wh_fail "adding a target failed"
ms_add=$(effect_ms has_lines "$WH_TMP/r3.jsonl") || wh_fail "the new target got nothing"

# 3. t0 moves to a second receiver and gets a secret
SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
api PATCH "$T/t0" "{\"url\":\"http://127.0.0.1:$R2/two\",\"secrets\":[\"$SECRET\"]}" ||
    wh_fail "changing t0 failed"
ms_url=$(effect_ms has_lines "$WH_TMP/r2.jsonl") || wh_fail "t0's new URL got nothing"

# 4. runtime settings
api PATCH /v1/settings '{"dispatcher.batch_max_events":5,"ingestor.flush_bytes":65536}' ||
    wh_fail "patching the settings failed"
ms_set=$(effect_ms grep -q "target default/t0: .*swapped in (batch_max_events=5 " \
    "$WH_TMP/dispatcher.log") || wh_fail "the dispatcher did not apply batch_max_events=5"
wh_wait_until 10 grep -q "runtime settings: flush_bytes=65536 " "$WH_TMP/ingestor.log" ||
    wh_fail "the ingestor did not apply flush_bytes=65536"
r2_at_patch=$(lines "$WH_TMP/r2.jsonl")
# the store's rate limiter of compaction writes, retuned running
io_rate_is() { [ "$(wh_metric "$METRICS" walhook_store_io_rate_bytes)" = "$1" ]; }
io_rate_is 134217728 || wh_fail "walhook_store_io_rate_bytes is not the default 128 MiB/s"
api PATCH /v1/settings '{"store.io_rate_bytes":8388608}' || wh_fail "patching store.io_rate_bytes failed"
wh_wait_until 10 io_rate_is 8388608 ||
    wh_fail "the store did not apply store.io_rate_bytes=8388608 (walhook_store_io_rate_bytes)"

# 5. pz got nothing while paused; resume it
[ "$(lines "$WH_TMP/r4.jsonl")" = "$paused_at" ] ||
    wh_fail "pz received requests while paused ($paused_at, then $(lines "$WH_TMP/r4.jsonl"))"
api POST "$T/pz/resume" || wh_fail "resume failed"
wh_wait_until 10 paused_metric 0 || wh_fail "walhook_target_paused{target=pz} is not 0 after the resume"

# 6. remove late
api DELETE "$T/late" || wh_fail "removing late failed"
wh_wait_until 10 grep -q "target default/late removed" "$WH_TMP/dispatcher.log" ||
    wh_fail "the dispatcher did not remove late"
sleep 1
late_at=$(lines "$WH_TMP/r3.jsonl")

wait "${WH_PIDS[loadgen]}" || wh_fail "load generation failed"
unset "WH_PIDS[loadgen]"
N=$(wc -l <"$WH_TMP/expected.jsonl")
wh_wait_received 120 "$WH_TMP/expected.jsonl" "$WH_TMP/r4.jsonl" ||
    wh_fail "pz did not get every change in order after its resume"
wh_wait_until 120 t0_complete "$N" ||
    wh_fail "t0 did not get every change"
sleep 0.5
cat "$WH_TMP/r1.jsonl" "$WH_TMP/r2.jsonl" >"$WH_TMP/t0.jsonl"
"$BIN/tests/wh_check" --expect "$WH_TMP/expected.jsonl" --received "$WH_TMP/t0.jsonl" ||
    wh_fail "t0's two receivers together do not hold the stream in order"
[ "$(lines "$WH_TMP/r3.jsonl")" = "$late_at" ] || wh_fail "late received requests after its removal"

# late: in order, no duplicate, a contiguous run of the stream (its first
# event is where the end was when it was added)
ids() { grep -o '"id":"[^"]*"' "$1" | cut -d'"' -f4; }
ids "$WH_TMP/t0.jsonl" | awk '!s[$0]++' >"$WH_TMP/all.ids"
ids "$WH_TMP/r3.jsonl" >"$WH_TMP/late.ids"
[ "$(sort "$WH_TMP/late.ids" | uniq -d | wc -l)" = 0 ] || wh_fail "late got an event twice"
first=$(head -n 1 "$WH_TMP/late.ids")
nlate=$(wc -l <"$WH_TMP/late.ids")
grep -n -x -F "$first" "$WH_TMP/all.ids" >/dev/null || wh_fail "late's first event is not in the stream"
start=$(grep -n -x -F "$first" "$WH_TMP/all.ids" | cut -d: -f1)
sed -n "${start},$(( start + nlate - 1 ))p" "$WH_TMP/all.ids" | cmp -s - "$WH_TMP/late.ids" ||
    wh_fail "late's events are not a contiguous, ordered run of the stream"

# t0's new receiver: every request signed with the new secret
key=$(printf '%s' "${SECRET#whsec_}" | base64 -d | od -An -tx1 | tr -d ' \n')
paste -d '\t' "$WH_TMP/r2.headers" "$WH_TMP/r2.jsonl" | sed -n 1,20p | while IFS=$'\t' read -r id ts sig body; do
    want=$(printf '%s.%s.%s' "$id" "$ts" "$body" |
        openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key" -binary | base64)
    [ "$sig" = "v1,$want" ] || { echo "bad signature for $id: $sig"; exit 1; }
done || wh_fail "t0's requests after the change are not signed with the new secret"
# batch_max_events = 5 after the patch (a read already pending may be larger)
big=$(sed -n "$(( r2_at_patch + 3 )),\$p" "$WH_TMP/r2.jsonl" | awk -F'"id":"' 'NF - 1 > 5 { n++ } END { print n + 0 }')
[ "$big" = 0 ] || wh_fail "$big requests carried more than batch_max_events = 5 events after the patch"

# 7. restart every daemon: the runtime state is kept
v_before=$("${SC[@]}" version)
dl=$(lines "$WH_TMP/dispatcher.log")
applied_after_restart() { sed -n "$(( dl + 1 )),\$p" "$WH_TMP/dispatcher.log" | grep -q "$1"; }
for d in ingestor dispatcher admin store; do wh_kill "$d" TERM; done
start_daemons
wh_wait_slot_active walhook 60 || wh_fail "the ingestor did not stream after the restart"
wh_wait_until 20 applied_after_restart "state version $v_before applied: 2 target(s)" ||
    wh_fail "the dispatcher did not start from state version $v_before"
"${SC[@]}" get >"$WH_TMP/state.json" || wh_fail "cannot read the state after the restart"
grep -q "127.0.0.1:$R2/two" "$WH_TMP/state.json" || wh_fail "t0's URL was lost in the restart"
grep -q '"late"' "$WH_TMP/state.json" && wh_fail "the removed target came back after the restart"
grep -Eq '"dispatcher.batch_max_events": ?5' "$WH_TMP/state.json" ||
    wh_fail "the patched setting was lost in the restart"
r2=$(lines "$WH_TMP/r2.jsonl")
r1=$(lines "$WH_TMP/r1.jsonl")
pg_psql -c "SELECT pg_logical_emit_message(false, 'wh-restart', 'x')" >/dev/null ||
    wh_fail "cannot emit a message"
wh_wait_until 20 grep -q '"prefix":"wh-restart"' "$WH_TMP/r2.jsonl" ||
    wh_fail "t0 did not deliver to its runtime URL after the restart"
[ "$(lines "$WH_TMP/r1.jsonl")" = "$r1" ] || wh_fail "t0's old URL got requests after the restart"
wh_wait_until 20 grep -q '"prefix":"wh-restart"' "$WH_TMP/r4.jsonl" ||
    wh_fail "pz did not deliver after the restart"

# 8. the store holds every position once
for d in ingestor dispatcher admin store; do wh_kill "$d" TERM; done
"$BIN/walhook-store" --dump -c "$CONF" >"$WH_TMP/dump.txt" || wh_fail "walhook-store --dump failed"
"$BIN/tests/wh_check" --dump "$WH_TMP/dump.txt" --count "$(( N + 1 ))" ||
    wh_fail "the store does not hold every position exactly once"
wh_log "from the API's answer to the effect: pause ${ms_pause} ms, new target's first request ${ms_add} ms, new URL's first request ${ms_url} ms, setting applied ${ms_set} ms"
wh_pass "$N changes (effects after ${ms_pause}/${ms_add}/${ms_url}/${ms_set} ms): pause/resume, add at the end/remove, URL and secret change, settings patched (batch_max_events=5, flush_bytes=65536), state version $v_before kept across a restart, every position stored once ($(( r2 - r2_at_patch )) requests after the patch)"
