#!/usr/bin/env bash
# Slot safety (docs/SLOTS.md): source.slot_policy, lag thresholds,
# force_resync and backpressure zones, with real receivers for three
# targets: a (reliable, always up), b (reliable, down at times), f (mode
# fast, backlog_max_ms 10 min so only the red zone can make it shed).
#  1. track: with b's receiver down, PostgreSQL's confirmed_flush_lsn stays
#     at or behind b's delivered position while a and f get everything;
#     once b is back and caught up it advances to the last commit.
#  2. a SIGKILL of the ingestor in track mode while b is down: the flush LSN
#     never passed b, nothing acknowledged is lost and nothing is stored
#     twice (every row has one event id).
#  3. track with source.lag_warn_bytes: the slot lag crosses it, the policy
#     switches to independent (log, metric), the slot advances past b; when
#     b catches up it switches back to track (hysteresis).
#  4. force_resync: b down with source.disconnected_resync_after_s = 2 is
#     marked NEEDS_SNAPSHOT (store log, metrics) while a keeps delivering and
#     the store's GC watermark passes b; a set offset resumes b. Then the
#     hard cap with lag_max_action = force_resync marks b again.
#  5. zones: warn/max of 256 KiB / 1 MiB with no policy action; f down holds
#     the slot: green -> yellow -> red (log, metric); in red f sheds to its
#     DLQ, the slot advances, the zone returns to green, and a kept order.
#  6. the tenant's own slot_policy in the state document (PATCH over the
#     admin API) wins over the ingestor's file and environment.
# SLOT_TEST_PHASE1_ONLY=1 stops after phase 1 (to repeat it alone).
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
wh_require_bins walhook walhook-store walhook-ingestor walhook-dispatcher walhook-admin walhook-receiver \
    tests/wh_statectl
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
pg_psql -c "CREATE TABLE t (id int PRIMARY KEY, pad text)" >/dev/null || wh_fail "table"

RA=$(wh_free_port)
RB=$(wh_free_port)
RF=$(wh_free_port)
APORT=$(wh_free_port)
CONF="$WH_TMP/walhook.conf"
cat >"$CONF" <<CONFEOF
tenant = "default";
data_dir = "$WH_TMP/data";
log_level = "info";
source = { dsn = "$PG_DSN"; slot = "walhook"; publication = "walhook"; create_slot = true;
           tables = "public.t"; slot_check_ms = 200; };
admin = { listen = "127.0.0.1:$APORT"; };
targets = (
  { name = "a"; url = "http://127.0.0.1:$RA/hook"; },
  { name = "b"; url = "http://127.0.0.1:$RB/hook"; breaker_cooldown_ms = 300; },
  { name = "f"; url = "http://127.0.0.1:$RF/hook"; mode = "fast"; backlog_max_ms = 600000;
    breaker_cooldown_ms = 300; }
);
CONFEOF
export WALHOOK_DISPATCHER_RETRY_MAX_MS=300
mkdir -m 700 "$WH_TMP/data"
M="http://127.0.0.1:$APORT/metrics"

recv_up() { # NAME PORT
    wh_spawn "recv_$1" "$BIN/walhook-receiver" --listen "127.0.0.1:$2" --out "$WH_TMP/$1.jsonl"
    wh_wait_http "http://127.0.0.1:$2/" 10 || true
}
ING_N=0
ing_up() { # VAR=VALUE...: the ingestor with these source settings
    ING_N=$((ING_N + 1))
    wh_spawn ingestor env "$@" "$BIN/walhook-ingestor" -c "$CONF"
    wh_wait_slot_active walhook 60 || wh_fail "the ingestor never started streaming ($*)"
}
ing_down() {
    wh_kill ingestor "${1:-TERM}"
    wh_wait_until 30 wh_slot_free walhook || wh_fail "the slot stays active"
}
flush_lsn() { pg_psql -At -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'walhook'"; }
lsn_le() { [ "$(wh_lsn_num "$1")" -le "$(wh_lsn_num "$2")" ]; }
rows() { # FILE: distinct row ids received
    grep -o '"id":[0-9]\+' "$1" 2>/dev/null | cut -d: -f2 | sort -n | uniq | wc -l
}
has_rows() { [ "$(rows "$1")" -ge "$2" ]; }
insert() { # FROM TO [PAD]: one transaction
    pg_psql -c "INSERT INTO t SELECT g, repeat('x', ${3:-10}) FROM generate_series($1, $2) g" \
        >/dev/null || wh_fail "insert $1..$2"
}
# b's delivered position: the highest commit LSN b's receiver acknowledged
b_pos() { wh_last_lsn "$WH_TMP/b.jsonl" || echo "$B0"; }
# the first commit LSN b still lacks: of the events a (always up) got, the
# lowest one b's receiver has not acknowledged ("" when none)
b_needs() {
    python3 - "$WH_TMP/a.jsonl" "$WH_TMP/b.jsonl" <<'PY'
import json, os, sys
def events(p):
    if not os.path.exists(p):
        return {}
    out = {}
    for line in open(p):
        for e in json.loads(line):
            a, b = e["lsn"].split("/")
            out[e["id"]] = ((int(a, 16) << 32) | int(b, 16), e["lsn"])
    return out
a, b = events(sys.argv[1]), events(sys.argv[2])
lack = sorted(v for k, v in a.items() if k not in b)
print(lack[0][1] if lack else "")
PY
}
# the flush never passes b: PostgreSQL may forget a transaction only once
# b has it (flush <= the commit LSN of the first one b lacks); sampled for
# S seconds
check_held() { # S WHAT
    local end=$(($(date +%s) + $1)) f p
    while [ "$(date +%s)" -lt "$end" ]; do
        f=$(flush_lsn)
        p=$(b_needs)
        [ -z "$p" ] || lsn_le "$f" "$p" ||
            wh_fail "$2: confirmed_flush_lsn $f passed $p, a commit b's receiver never acknowledged (the store's b: offset, watermark, end: $("$BIN/tests/wh_statectl" -c "$CONF" positions default b 2>&1 | tr '\n' ' '))"
        sleep 0.2
    done
}

# GET /v1/slots: the default tenant's object satisfies a Python expression on t
slots_has() {
    curl -fsS --max-time 5 -H "Authorization: Bearer $(cat "$WH_TMP/data/admin.token")" \
        "http://127.0.0.1:$APORT/v1/slots" 2>/dev/null |
        python3 -c 'import json, sys
t = [x for x in json.load(sys.stdin)["slots"] if x["tenant"] == "default"][0]
sys.exit(0 if eval(sys.argv[1]) else 1)' "$1"
}
page_has() { curl -fsS --max-time 5 "http://127.0.0.1:$APORT/" 2>/dev/null | grep -q "$1"; }
# GET PATH of the admin API: the answer satisfies a Python expression on j
api_has() { # PATH EXPR
    curl -fsS --max-time 5 -H "Authorization: Bearer $(cat "$WH_TMP/data/admin.token")" \
        "http://127.0.0.1:$APORT$1" 2>/dev/null |
        python3 -c 'import json, sys
j = json.load(sys.stdin)
sys.exit(0 if eval(sys.argv[1]) else 1)' "$2"
}
# b's state in GET /v1/tenants/default/targets/b and in the targets list
b_state_is() { # STATE [REASON]
    local e="j[\"state\"] == \"$1\""
    [ -n "${2:-}" ] && e="$e and j[\"needs_snapshot\"][\"reason\"] == \"$2\" and j[\"needs_snapshot\"][\"since\"].endswith(\"Z\")"
    [ -z "${2:-}" ] && e="$e and j[\"needs_snapshot\"] is None"
    api_has /v1/tenants/default/targets/b "$e" &&
        api_has /v1/tenants/default/targets "[t[\"state\"] for t in j[\"targets\"] if t[\"name\"] == \"b\"] == [\"$1\"]"
}

wh_spawn store "$BIN/walhook-store" -c "$CONF"
wh_wait_until 10 test -S "$WH_TMP/data/store.sock" || wh_fail "the store did not start"
wh_spawn dispatcher "$BIN/walhook-dispatcher" -c "$CONF"
wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
recv_up a "$RA"
recv_up b "$RB"
recv_up f "$RF"

# ---- 1. track: the flush follows the slowest target ----
ing_up WALHOOK_SOURCE_SLOT_POLICY=track
B0=$(flush_lsn)
insert 1 10
wh_wait_until 60 has_rows "$WH_TMP/b.jsonl" 10 || wh_fail "b did not get rows 1..10"
wh_kill recv_b KILL
for i in 0 1 2 3; do insert $((11 + i * 50)) $((60 + i * 50)); done
wh_wait_until 60 has_rows "$WH_TMP/a.jsonl" 210 || wh_fail "a did not get rows 1..210"
wh_wait_until 60 has_rows "$WH_TMP/f.jsonl" 210 || wh_fail "f did not get rows 1..210"
check_held 3 "track with b down"
held=$(flush_lsn)
wh_log "track: flush held at $held, b at $(b_pos), a at $(wh_last_lsn "$WH_TMP/a.jsonl")"
last=$(wh_last_lsn "$WH_TMP/a.jsonl")
recv_up b "$RB"
wh_wait_until 60 has_rows "$WH_TMP/b.jsonl" 210 || wh_fail "b did not catch up"
wh_wait_slot_flush "$last" 30 walhook ||
    wh_fail "confirmed_flush_lsn stays at $(flush_lsn) after b caught up (last commit $last)"
[ "$(wh_metric "$M" walhook_slot_policy_track)" = 1 ] || wh_fail "walhook_slot_policy_track is not 1"
[ "${SLOT_TEST_PHASE1_ONLY:-0}" = 1 ] && wh_pass "phase 1"

# ---- 2. SIGKILL of the ingestor in track mode ----
wh_kill recv_b KILL
insert 211 260
ing_down KILL
insert 261 310
ing_up WALHOOK_SOURCE_SLOT_POLICY=track
insert 311 360
wh_wait_until 60 has_rows "$WH_TMP/a.jsonl" 360 || wh_fail "a did not get rows 1..360 after the SIGKILL"
check_held 2 "track after a SIGKILL of the ingestor"
recv_up b "$RB"
wh_wait_until 60 has_rows "$WH_TMP/b.jsonl" 360 || wh_fail "b did not get rows 1..360"
# one event id per row: a replay after the SIGKILL was stored at the same position
one_id() { # FILE: rows that arrived under two event ids, then events out of position order
    python3 - "$1" <<'PY'
import json, sys
ids, seen, order, back = {}, set(), [], 0
for line in open(sys.argv[1]):
    for e in json.loads(line):
        if e["op"] in ("schema", "ddl"):
            continue
        ids.setdefault(e["after"]["id"], set()).add(e["id"])
        if e["id"] not in seen:
            seen.add(e["id"])
            a, b = e["lsn"].split("/")
            order.append(((int(a, 16) << 32) | int(b, 16), e["seq"]))
back = sum(1 for i in range(1, len(order)) if order[i] < order[i - 1])
print(sum(1 for v in ids.values() if len(v) > 1), back)
PY
}
for g in a b; do
    read -r dup back < <(one_id "$WH_TMP/$g.jsonl")
    [ "$dup" = 0 ] || wh_fail "$g: $dup rows arrived under two event ids (stored twice)"
done

# ---- 3. the warn threshold: track -> independent -> track ----
ing_down
ing_up WALHOOK_SOURCE_SLOT_POLICY=track WALHOOK_SOURCE_LAG_WARN_BYTES=262144 \
    WALHOOK_SOURCE_LAG_MAX_BYTES=67108864
wh_kill recv_b KILL
b3=$(b_pos)
for i in 0 1 2 3; do insert $((361 + i * 100)) $((460 + i * 100)) 1000; done
wh_wait_until 30 grep -q "slot policy track -> independent" "$WH_TMP/ingestor.log" ||
    wh_fail "no switch to independent past lag_warn_bytes (flush $(flush_lsn))"
wh_wait_until 10 wh_metric_label_is "$M" walhook_slot_policy_track 'tenant="default"' = 0 ||
    wh_fail "walhook_slot_policy_track did not become 0"
wh_wait_until 10 slots_has 't["slot_policy"] == {"configured": "track", "effective": "independent"}' ||
    wh_fail "/v1/slots does not show the effective policy independent"
last=$(wh_last_lsn "$WH_TMP/a.jsonl")
_past_b() { ! lsn_le "$(flush_lsn)" "$b3"; }
wh_wait_until 30 _past_b || wh_fail "independent: the flush stays at b's position $b3"
# hysteresis: the slot lag is small now, but b is still behind: no way back
# to track while it is (a negative check, sampled for 2 s)
for _ in 1 2 3 4 5 6 7 8 9 10; do
    grep -q "slot policy independent -> track" "$WH_TMP/ingestor.log" &&
        wh_fail "back to track while b is still down (no hysteresis)"
    sleep 0.2
done
recv_up b "$RB"
wh_wait_until 60 has_rows "$WH_TMP/b.jsonl" 760 || wh_fail "b did not catch up to 760"
wh_wait_until 30 grep -q "slot policy independent -> track" "$WH_TMP/ingestor.log" ||
    wh_fail "no switch back to track once b caught up"
wh_wait_until 10 wh_metric_label_is "$M" walhook_slot_policy_track 'tenant="default"' = 1 ||
    wh_fail "walhook_slot_policy_track did not return to 1"

# ---- 4. force_resync of a disconnected target ----
ing_down
ing_up WALHOOK_SOURCE_SLOT_POLICY=track WALHOOK_SOURCE_DISCONNECTED_RESYNC_AFTER_S=2
wh_kill recv_b KILL
insert 761 800
wh_wait_until 30 grep -q "target default/b: NEEDS_SNAPSHOT (force_resync" "$WH_TMP/store.log" ||
    wh_fail "b was not marked NEEDS_SNAPSHOT after disconnected_resync_after_s"
wh_wait_metric "$M" walhook_slot_force_resyncs_total 1 10 || wh_fail "walhook_slot_force_resyncs_total"
wh_wait_metric "$M" walhook_store_needs_snapshot_targets 1 30 || wh_fail "the store's needs_snapshot metric"
wh_wait_until 10 slots_has 't["needs_snapshot"] == ["b"]' || wh_fail "/v1/slots does not list b as needs_snapshot"
wh_wait_until 10 page_has '<td class="name">b</td><td class="bad">NEEDS_SNAPSHOT</td>' ||
    wh_fail "the status page does not show b as NEEDS_SNAPSHOT"
wh_wait_until 10 b_state_is needs_snapshot force_resync_disconnected ||
    wh_fail "GET /v1/tenants/default/targets/b does not say needs_snapshot (force_resync_disconnected): $(curl -sS -H "Authorization: Bearer $(cat "$WH_TMP/data/admin.token")" "http://127.0.0.1:$APORT/v1/tenants/default/targets/b")"
wh_metric_label_is "$M" walhook_store_target_needs_snapshot_since_seconds \
    'target="b",reason="force_resync_disconnected"' -gt 0 ||
    wh_fail "walhook_store_target_needs_snapshot_since_seconds does not show b's mark"
"$BIN/walhook" targets -c "$CONF" >"$WH_TMP/targets.txt" 2>&1 &&
    grep -Eq '^b +needs_snapshot ' "$WH_TMP/targets.txt" ||
    wh_fail "walhook targets does not show b as needs_snapshot: $(cat "$WH_TMP/targets.txt")"
insert 801 850
wh_wait_until 60 has_rows "$WH_TMP/a.jsonl" 850 || wh_fail "a stopped delivering while b was marked"
last=$(wh_last_lsn "$WH_TMP/a.jsonl")
wh_wait_slot_flush "$last" 30 walhook || wh_fail "the marked b still holds the slot at $(flush_lsn)"
read -r bl _ wl _ < <("$BIN/tests/wh_statectl" -c "$CONF" positions default b)
[ "${wl:-0}" -gt "${bl:-0}" ] 2>/dev/null || wh_fail "GC watermark $wl is held at b's offset $bl"
recv_up b "$RB"
wh_wait_metric "$M" walhook_target_needs_snapshot 1 30 || wh_fail "the dispatcher never reported b's mark"
"$BIN/tests/wh_statectl" -c "$CONF" set-offset default b end >"$WH_TMP/setoff.log" 2>&1 ||
    wh_fail "set-offset failed: $(cat "$WH_TMP/setoff.log")"
_cleared() { [ "$(wh_metric "$M" walhook_target_needs_snapshot)" = 0 ]; }
wh_wait_until 30 _cleared || wh_fail "b still NEEDS_SNAPSHOT after the set offset"
wh_wait_until 10 b_state_is active || wh_fail "GET of target b does not say active after the set offset"
insert 851 860
_b_new() { grep -q '"id":860[,}]' "$WH_TMP/b.jsonl"; }
wh_wait_until 60 _b_new || wh_fail "b did not resume after the set offset"

# ---- 4b. the hard cap with lag_max_action = force_resync ----
ing_down
ing_up WALHOOK_SOURCE_SLOT_POLICY=track WALHOOK_SOURCE_LAG_WARN_BYTES=0 \
    WALHOOK_SOURCE_LAG_MAX_BYTES=524288 WALHOOK_SOURCE_LAG_MAX_ACTION=force_resync
wh_kill recv_b KILL
for i in 0 1 2 3 4 5; do insert $((861 + i * 100)) $((960 + i * 100)) 1000; done
wh_wait_until 30 grep -q "target default/b: NEEDS_SNAPSHOT (force_resync: behind the source" \
    "$WH_TMP/store.log" || wh_fail "the hard cap did not force_resync b"
wh_wait_until 10 b_state_is needs_snapshot force_resync_lag ||
    wh_fail "GET of target b does not say needs_snapshot (force_resync_lag)"
last=$(wh_last_lsn "$WH_TMP/a.jsonl")
wh_wait_until 60 has_rows "$WH_TMP/a.jsonl" 1460 || wh_fail "a did not get rows 1..1460"
last=$(wh_last_lsn "$WH_TMP/a.jsonl")
wh_wait_slot_flush "$last" 30 walhook || wh_fail "b, force_resynced at the hard cap, still holds the slot"
"$BIN/tests/wh_statectl" -c "$CONF" set-offset default b end >"$WH_TMP/setoff.log" 2>&1 ||
    wh_fail "set-offset failed: $(cat "$WH_TMP/setoff.log")"
recv_up b "$RB"
wh_wait_until 30 _cleared || wh_fail "b still NEEDS_SNAPSHOT after the second set offset"

# ---- 5. backpressure zones; red sheds the fast target ----
ing_down
L5=$(wc -l <"$WH_TMP/ingestor.log")
ing_up WALHOOK_SOURCE_SLOT_POLICY=track WALHOOK_SOURCE_LAG_WARN_BYTES=262144 \
    WALHOOK_SOURCE_LAG_MAX_BYTES=1048576 WALHOOK_SOURCE_LAG_WARN_ACTION=none \
    WALHOOK_SOURCE_LAG_MAX_ACTION=none
wh_kill recv_f KILL
since5() { tail -n +$((L5 + 1)) "$WH_TMP/ingestor.log"; }
zone() { since5 | grep -c "backpressure zone $1"; }
n=1461
while [ "$(zone "yellow -> red")$(zone "green -> red")" = 00 ] && [ "$n" -lt 4461 ]; do
    insert "$n" $((n + 99)) 1000
    n=$((n + 100))
    sleep 0.3
done
[ "$(zone "green -> yellow")" -ge 1 ] || wh_fail "the zone never went green -> yellow"
[ "$(zone "yellow -> red")" -ge 1 ] || wh_fail "the zone never went yellow -> red"
# each change was published to the dispatchers with the report (a zone
# note), not left for their next Read or Backlog poll (every 5 s): the store
# published them and the dispatcher took them
wh_wait_metric "$M" walhook_store_zone_notes_total 2 10 || wh_fail "the store published no zone notes"
wh_wait_metric "$M" walhook_dispatcher_zone_notes_total 1 10 || wh_fail "the dispatcher received no zone note"
wh_wait_until 10 grep -q "tenant default: backpressure zone .* -> red" "$WH_TMP/dispatcher.log" ||
    wh_fail "the dispatcher never noted the red zone"
# and took the changes from the notes (a Read's answer may come first for
# one change now and then, not for all of them); a note is counted before
# its line is written, and the red line above may come from a reader thread
wh_wait_until 15 grep -q "tenant default: backpressure zone .* (store notification)" \
    "$WH_TMP/dispatcher.log" ||
    wh_fail "the dispatcher took no zone change from a store notification"
wh_wait_until 30 wh_metric_label_is "$M" walhook_target_shed_total 'target="f"' -gt 0 ||
    wh_fail "f did not shed in the red zone"
_back_green() { since5 | grep -q "backpressure zone red -> green\|backpressure zone yellow -> green"; }
wh_wait_until 30 _back_green || wh_fail "the zone did not return to green after f shed"
_green() { [ "$(wh_metric "$M" walhook_backpressure_zone)" = 0 ]; }
wh_wait_until 10 _green || wh_fail "walhook_backpressure_zone is $(wh_metric "$M" walhook_backpressure_zone), not 0"
wh_wait_until 10 slots_has 't["backpressure_zone"] == "green" and t["needs_snapshot"] == []' ||
    wh_fail "/v1/slots does not show the zone green"
page_has '<td class="zone ok">green</td><td class="policy">track</td>' ||
    wh_fail "the status page does not show the zone and the policy"
"$BIN/walhook" slots -c "$CONF" >"$WH_TMP/slots.txt" 2>&1 &&
    grep -Eq '^default .* green +track ' "$WH_TMP/slots.txt" ||
    wh_fail "walhook slots does not show the zone and the policy: $(cat "$WH_TMP/slots.txt")"
last_row=$((n - 1))
wh_wait_until 60 has_rows "$WH_TMP/a.jsonl" "$last_row" || wh_fail "a did not get rows 1..$last_row"
# a kept its order: every event's first arrival is in position order
read -r dup back < <(one_id "$WH_TMP/a.jsonl")
[ "$back" = 0 ] || wh_fail "a received $back events out of order"
[ "$dup" = 0 ] || wh_fail "a: $dup rows arrived under two event ids"
dl=$("$BIN/tests/wh_statectl" -c "$CONF" dlq-ids default f | wc -l)
[ "$dl" -gt 0 ] || wh_fail "f's DLQ is empty"

# ---- 6. the tenant's own setting, changed at runtime over the admin API ----
patch() { # BODY: prints the HTTP status
    curl -sS -o "$WH_TMP/patch.out" -w '%{http_code}' -X PATCH --max-time 20 \
        -H "Authorization: Bearer $(cat "$WH_TMP/data/admin.token")" \
        -H 'Content-Type: application/json' --data-binary "$1" \
        "http://127.0.0.1:$APORT/v1/tenants/default"
}
code=$(patch '{"source":{"slot_policy":"sometimes"}}')
[ "$code" = 400 ] && grep -q "source.slot_policy" "$WH_TMP/patch.out" ||
    wh_fail "a bad slot_policy: $code $(cat "$WH_TMP/patch.out")"
code=$(patch '{"source":{"slot_policy":"independent","lag_warn_bytes":524288}}')
[ "$code" = 200 ] || wh_fail "PATCH of the tenant's slot_policy: $code $(cat "$WH_TMP/patch.out")"
wh_wait_until 30 wh_metric_label_is "$M" walhook_slot_policy_effective 'configured="independent"' = 1 ||
    wh_fail "the tenant's slot_policy from the state document was not applied"
# (the metric shows the new settings before the slot thread's start is logged)
wh_wait_until 15 grep -q "lag warn 524288 bytes" "$WH_TMP/ingestor.log" ||
    wh_fail "the tenant's lag_warn_bytes was not applied"
wh_pass "track holds the flush at the slowest target and survives a SIGKILL; lag_warn switches to independent and back; force_resync marks a dead target while another delivers; zones green->yellow->red->green with f shedding $dl events in red while a kept order"
