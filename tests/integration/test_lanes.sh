#!/usr/bin/env bash
# ordering = by_key, max_connections and dispatcher.max_inflight (issue 8),
# with slow receivers (each answers after DELAY ms and counts the POSTs in
# flight at once). KEYS rows are updated ROUNDS times (one transaction per
# round, so a batch holds several changes of each key):
#   strict   ordering strict                  -> one request at a time
#   bykey    by_key, 4 lanes, 4 connections   -> several requests in flight
#   capped   by_key, 8 lanes, 2 connections   -> never more than 2 in flight
#   wide     by_key, 16 lanes, 16 connections -> never more than the global
#            cap dispatcher.max_inflight = MAXIN (over every target)
#   slow     by_key, 4 lanes, 4 connections; only bodies holding a change of
#            key 7 wait DELAY ms: the other lanes, done with a batch, run
#            ahead into the next one (logged once) instead of waiting for
#            key 7's lane; order per key still holds
#   bad      by_key, 4 lanes; answers 400 to the first bodies (3 at most) holding the
#            change v=POISON of key 7 -> its lane fails for good, the rest of
#            that batch goes one event at a time (events the lanes delivered
#            are skipped), the poison change goes to the dead-letter queue
#            alone and every other change arrives, in order per key
#   shed     as bad with mode fast (backlog_max_ms 1, max_attempts 2): the
#            poison change is answered 503 every time, so after its lane
#            gives up the rest goes one event at a time and is shed to the
#            dead-letter queue while failing; never an event a lane already
#            delivered (each change arrives or is a dead letter, not both)
# Every target gets every change, and the first arrival of each change is in
# order per key (by_key) or in total (strict). The dispatcher is SIGKILLed
# once mid-stream and restarted by walhook up: the offsets it committed never
# passed an event a lane had not delivered, so nothing is missing after it.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
KEYS=${KEYS:-12}
ROUNDS=${ROUNDS:-100}
DELAY=${DELAY:-150}
MAXIN=${MAXIN:-6}
trap wh_cleanup EXIT
wh_require_bins walhook walhook-store walhook-ingestor walhook-dispatcher walhook-admin \
    walhook-receiver tests/wh_statectl
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
pg_psql -c "CREATE TABLE kv (id int PRIMARY KEY, v int NOT NULL)" >/dev/null ||
    wh_fail "cannot create the table"
export WALHOOK_DISPATCHER_ALLOW_PRIVATE_NETWORKS="127.0.0.1/32,::1"
POISON=${POISON:-50}
NAMES=(strict bykey capped wide slow bad shed)
declare -A PORT
for r in "${NAMES[@]}"; do PORT[$r]=$(wh_free_port); done
APORT=$(wh_free_port)
for r in "${NAMES[@]}"; do
    extra=()
    [ "$r" = bad ] && extra=(--reject-match "\"id\":7,\"v\":$POISON}" --reject-times 3)
    [ "$r" = shed ] && extra=(--reject-match "\"id\":7,\"v\":$POISON}" --reject-status 503)
    [ "$r" = slow ] && extra=(--delay-match '"id":7,"v"')
    wh_spawn "r_$r" "$BIN/walhook-receiver" --listen "127.0.0.1:${PORT[$r]}" \
        --out "$WH_TMP/$r.jsonl" --delay-ms "$DELAY" "${extra[@]}"
done
u() { echo "http://127.0.0.1:${PORT[$1]}/hook"; }
CONF="$WH_TMP/walhook.conf"
cat >"$CONF" <<CONFEOF
tenant = "main";
source = { dsn = "$PG_DSN"; slot = "wh_main"; publication = "wh_main"; create_slot = true; };
data_dir = "$WH_TMP/data";
log_level = "info";
admin = { listen = "127.0.0.1:$APORT"; };
dispatcher = { batch_max_events = 40; retry_base_ms = 20; retry_max_ms = 200; max_inflight = $MAXIN; };
tenants = (
  { name = "d";
    source = { dsn = "$PG_DSN"; slot = "wh_d"; publication = "wh_d"; create_slot = true; };
    targets = (
      { name = "strict"; url = "$(u strict)"; },
      { name = "bykey"; url = "$(u bykey)"; ordering = "by_key"; lanes = 4; max_connections = 4; },
      { name = "capped"; url = "$(u capped)"; ordering = "by_key"; lanes = 8; max_connections = 2; },
      { name = "wide"; url = "$(u wide)"; ordering = "by_key"; lanes = 16; max_connections = 16; },
      { name = "slow"; url = "$(u slow)"; ordering = "by_key"; lanes = 4; max_connections = 4; },
      { name = "bad"; url = "$(u bad)"; ordering = "by_key"; lanes = 4; max_connections = 4; on_failure = "dlq"; },
      { name = "shed"; url = "$(u shed)"; ordering = "by_key"; lanes = 4; max_connections = 4; on_failure = "dlq";
        mode = "fast"; backlog_max_ms = 1; max_attempts = 2; }
    ); }
);
CONFEOF
wh_spawn walhook "$BIN/walhook" up -c "$CONF"
UP=${WH_PIDS[walhook]}
wh_wait_http "http://127.0.0.1:$APORT/readyz" 90 ||
    wh_fail "walhook never became ready ($(curl -s "http://127.0.0.1:$APORT/readyz"))"
wh_wait_slot_active wh_d 60 || wh_fail "the slot wh_d is not streaming"

pg_psql -c "INSERT INTO kv SELECT g, 0 FROM generate_series(1, $KEYS) g" >/dev/null ||
    wh_fail "insert failed"
# updates in a random key order per round: a lane's request holds changes of
# several keys, and changes of one key land in different batches
for ((r = 1; r <= ROUNDS; r++)); do
    echo "UPDATE kv SET v = $r WHERE id IN (SELECT id FROM kv ORDER BY random());"
done | pg_psql >/dev/null || wh_fail "updates failed"
TOTAL=$((KEYS * (ROUNDS + 1)))
wh_log "$TOTAL changes of $KEYS keys made"

# CHECK FILE MODE: every (id, v) arrived; first arrivals in order per key
# (mode key) or in total (mode all). Prints a reason on failure.
check() {
    python3 - "$1" "$2" "$KEYS" "$ROUNDS" "${3:-}" <<'PY'
import json, sys
path, mode, keys, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
skip = tuple(int(x) for x in sys.argv[5].split(",")) if sys.argv[5] else None
seen, last, order = set(), {}, []
try:
    lines = open(path).read().splitlines()
except OSError:
    lines = []
for line in lines:
    for e in json.loads(line):
        if e.get("op") in ("schema", "ddl"):  # schema registry events (test_schema.sh)
            continue
        a = e.get("after") or {}
        k, v = a.get("id"), a.get("v")
        if (k, v) in seen:
            continue
        seen.add((k, v))
        if mode == "key" and v <= last.get(k, -1):
            print(f"key {k}: change v={v} arrived after v={last[k]}"); sys.exit(1)
        last[k] = v
        order.append(e["lsn"] + "/" + str(e.get("seq", 0)))
want = keys * (rounds + 1) - (1 if skip else 0)
if skip in seen:
    print(f"the dead-lettered change {skip} arrived"); sys.exit(1)
if len(seen) != want:
    print(f"{len(seen)} of {want} changes"); sys.exit(2)
if mode == "all":
    pos = [tuple(int(x, 16) for x in p.split("/")[:2]) + (int(p.split("/")[2]),) for p in order]
    if pos != sorted(pos):
        print("first arrivals not in commit order"); sys.exit(1)
PY
}
_complete() { check "$WH_TMP/$1.jsonl" "$2" "${3:-}" >/dev/null; }

# SIGKILL the dispatcher while the by_key target is mid-stream
received() { wh_count_events "$WH_TMP/bykey.jsonl"; }
_third() { [ "$(received)" -ge $((TOTAL / 3)) ]; }
wh_wait_until 60 _third || wh_fail "delivery to bykey stalled at $(received)"
old=$(wh_child_pid "$UP" dispatcher)
[ -n "$old" ] || wh_fail "no dispatcher child of walhook up"
maxc() { curl -fsS --max-time 3 "http://127.0.0.1:${PORT[$1]}/${2:-}" | sed -n 's/.*, \([0-9]*\) max concurrent.*/\1/p'; }
declare -A BEFORE
for t in strict bykey capped wide; do BEFORE[$t]=$(maxc $t); done
kill -KILL "$old"
wh_log "SIGKILL walhook-dispatcher (pid $old) at $(received) of $TOTAL changes received by bykey"
# the dead dispatcher's requests stay in the receiver for DELAY ms: count the
# concurrency after the kill from when they are gone
sleep $(((DELAY * 4 + 999) / 1000))
for t in strict bykey capped wide; do maxc $t reset-max >/dev/null; done

for t in "${NAMES[@]}"; do
    [ "$t" = shed ] && continue
    mode=key skip=""
    [ "$t" = strict ] && mode=all
    [ "$t" = bad ] && skip="7,$POISON"
    wh_wait_until 120 _complete "$t" "$mode" "$skip" ||
        wh_fail "target $t: $(check "$WH_TMP/$t.jsonl" "$mode" "$skip")"
done
# the poison change alone is in bad's dead-letter queue
_dead() { [ "$("$BIN/tests/wh_statectl" -c "$CONF" dlq-ids d bad 2>/dev/null | wc -l)" -ge 1 ]; }
wh_wait_until 20 _dead || wh_fail "target bad: no dead letter"
dl=$("$BIN/tests/wh_statectl" -c "$CONF" dlq-ids d bad)
[ "$(wc -l <<<"$dl")" = 1 ] || wh_fail "target bad: $(wc -l <<<"$dl") dead letters, expected the poison change only"
# shed: each change arrived or is a dead letter, never both
_shed_done() {
    local n
    n=$("$BIN/tests/wh_statectl" -c "$CONF" dlq-ids d shed 2>/dev/null | wc -l)
    [ "$n" -ge 1 ] && [ $(($(python3 - "$WH_TMP/shed.jsonl" <<'PY'
import json, sys
seen = set()
for line in open(sys.argv[1]).read().splitlines():
    for e in json.loads(line):
        a = e.get("after") or {}
        if "id" in a:
            seen.add((a["id"], a.get("v")))
print(len(seen))
PY
) + n)) -ge "$TOTAL" ]
}
wh_wait_until 120 _shed_done || wh_fail "target shed: changes neither delivered nor dead-lettered"
python3 - "$WH_TMP/shed.jsonl" "$TOTAL" <("$BIN/tests/wh_statectl" -c "$CONF" dlq-ids d shed) <<'PY' ||
import json, sys
got, dead = {}, set(l.strip() for l in open(sys.argv[3]) if l.strip())
for line in open(sys.argv[1]).read().splitlines():
    for e in json.loads(line):
        a = e.get("after") or {}
        if "id" in a:
            got[e["id"]] = (a["id"], a.get("v"))
both = dead & set(got)
if both:
    print(f"{len(both)} dead letter(s) the target had acknowledged, e.g. {sorted(both)[0]}"); sys.exit(1)
if len(set(got.values())) + len(dead) != int(sys.argv[2]):
    print(f"{len(set(got.values()))} delivered + {len(dead)} dead letters != {sys.argv[2]}"); sys.exit(1)
print(f"shed: {len(set(got.values()))} delivered, {len(dead)} dead letters")
PY
    wh_fail "target shed: dead letters overlap what was delivered"
grep -q "lane .* failed for good" "$WH_TMP"/walhook.log ||
    wh_fail "target bad: no log line of a lane failing for good"
grep -q "target d/slow: a lane done with its batch runs ahead" "$WH_TMP"/walhook.log ||
    wh_fail "target slow: no lane ran ahead of key 7's slow lane"
most() { local m; m=$(maxc "$1"); [ "${BEFORE[$1]:-0}" -gt "${m:-0}" ] && m=${BEFORE[$1]}; echo "$m"; }
s=$(most strict) b=$(most bykey) c=$(most capped) w=$(most wide)
wh_log "most POSTs in flight at once: strict $s, bykey $b, capped $c, wide $w"
[ "$s" = 1 ] || wh_fail "strict ordering had $s requests in flight at once"
[ "${b:-0}" -ge 2 ] && [ "$b" -le 4 ] || wh_fail "by_key with 4 lanes had $b requests in flight at once (want 2..4)"
[ "${c:-0}" -ge 1 ] && [ "$c" -le 2 ] || wh_fail "max_connections = 2 but $c requests were in flight at once"
[ "${w:-0}" -ge 2 ] && [ "$w" -le "$MAXIN" ] || wh_fail "dispatcher.max_inflight = $MAXIN but $w requests of one target were in flight at once"
wh_kill walhook TERM
for r in "${NAMES[@]}"; do wh_kill "r_$r" TERM; done
wh_pass "$TOTAL changes of $KEYS keys; in order per key with by_key (at most $b, $c, $w in flight; lanes run ahead of a slow one), in total with strict; a lane failing for good dead-letters the poison change alone; a dispatcher SIGKILL lost nothing"
