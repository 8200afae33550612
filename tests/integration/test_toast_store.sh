#!/usr/bin/env bash
# The store-backed level of the TOAST value cache (services/store/st_toast.h,
# services/ingestor/ing_tstore.h): after the ingestor restarts (cleanly or
# by SIGKILL) its memory is empty, and updates that leave a TOASTed column
# unchanged are filled from the store; never with a stale value.
#
# Table t: id, n, doc (a big() value stored out of line), dk (the key of
# the doc's big() value, written with every doc change). Every event whose
# after has doc must have doc == big(dk) (or null when dk is null): a stale
# value shows as a doc that does not match its own row's dk. n marks the
# phase of each update:
#   100  after a clean restart of walhook: every row filled (from="store")
#   200  after a SIGKILL of the ingestor: every row filled
#   300  row 3 after an update PostgreSQL did not send (the publication
#        stopped publishing updates meanwhile): its Relation message again
#        drops the row's value: listed, never the old doc
#   400  after ALTER TABLE (a Relation message of another shape): listed
#   500  after an ALTER TABLE while the ingestor was down: listed
#   600  row 4 deleted and inserted again with another doc, after a SIGKILL:
#        the new doc (from the insert), never the old one
#   700  new docs for every row while the store is SIGKILLed mid-stream
#   800  after a SIGKILL of the ingestor: every row filled (the store's
#        cache holds what its stored events say)
#   900  row 1 while the store is stopped (SIGSTOP): the lookup times out,
#        the doc is listed, the event arrives once the store is back
#   then a delete after an ingestor SIGKILL drops the row's store entry
#   1000 new docs after store.toast_cache_bytes is lowered at runtime: the
#        store's entries stay within it (evictions move)
# Every event arrives (distinct ids), none is lost. Rows: WH_TOAST_ROWS
# (default 20).
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
ROWS=${WH_TOAST_ROWS:-20}
wh_pipeline_setup
pg_psql -c "CREATE TABLE t (id int PRIMARY KEY, n int, doc text, dk text)" \
    -c "ALTER TABLE t ALTER doc SET STORAGE EXTERNAL" \
    -c "ALTER TABLE t SET (autovacuum_enabled = false)" \
    -c "CREATE FUNCTION big(k text) RETURNS text LANGUAGE sql IMMUTABLE AS
        \$\$ SELECT repeat(md5(k), 100) \$\$" >/dev/null ||
    wh_fail "cannot create the table"
PORT=$(wh_free_port)
APORT=$(wh_free_port)
ATOKEN=admin-token-$RANDOM-0123456789
wh_spawn recv "$BIN/walhook-receiver" --listen "127.0.0.1:$PORT" --out "$WH_TMP/got.jsonl"
CONF="$WH_TMP/walhook.conf"
cat >"$CONF" <<CONFEOF
tenant = "default";
source = { dsn = "$PG_DSN"; slot = "walhook"; publication = "walhook"; create_slot = true; };
data_dir = "$WH_TMP/data";
log_level = "info";
admin = { listen = "127.0.0.1:$APORT"; admin_token = "$ATOKEN"; };
targets = ( { name = "t"; url = "http://127.0.0.1:$PORT/hook"; } );
CONFEOF
wh_up "$CONF" "$APORT"

distinct() { # events received, each id once
    python3 - "$WH_TMP/got.jsonl" <<'PY'
import json, sys
ids = set()
try:
    for line in open(sys.argv[1]):
        for e in json.loads(line):
            if e["op"] not in ("schema", "ddl"):  # changes only
                ids.add(e["id"])
except FileNotFoundError:
    pass
print(len(ids))
PY
}
EXPECT=0
wait_events() { # N more events than before
    EXPECT=$((EXPECT + $1))
    _enough() { [ "$(distinct)" -ge "$EXPECT" ]; }
    wh_wait_until 90 _enough || wh_fail "$(distinct) of $EXPECT events"
}
toast_metric() { # FROM
    curl -fsS --max-time 10 "http://127.0.0.1:$APORT/metrics" | awk -v f="from=\"$1\"" \
        '/^walhook_ingestor_unchanged_toast_total/ && index($0, f) { s += $NF } END { print s + 0 }'
}
_from_store() { [ "$(toast_metric store)" -gt 0 ]; }
kill_ingestor() {
    local ing lsn
    # every event so far confirmed to PostgreSQL first: none is sent again
    # (a resent update would fill the ingestor's memory before the phase)
    lsn=$(wh_last_lsn "$WH_TMP/got.jsonl")
    wh_wait_slot_flush "$lsn" 30 || wh_fail "the slot's flush did not reach $lsn"
    wh_kill_child ingestor
    wh_wait_restarted ingestor
    wh_wait_slot_active walhook 60 || wh_fail "the slot is not streaming after the restart"
}
each_row() { # SQL with {i}: one statement (transaction) per row
    local i
    for i in $(seq 1 "$ROWS"); do echo "${1//\{i\}/$i}"; done
}

each_row "INSERT INTO t VALUES ({i}, 0, big('a{i}'), 'a{i}');" | pg_psql >/dev/null ||
    wh_fail "inserts failed"
wait_events "$ROWS"
# the last transaction's TOAST ops are durable once it is: its events came
wh_log "clean restart of walhook"
wh_kill walhook TERM
wh_up "$CONF" "$APORT"
pg_psql -c "UPDATE t SET n = 100" >/dev/null || wh_fail "phase 100 failed"
wait_events "$ROWS"
wh_wait_until 30 _from_store || wh_fail "no value from the store after a clean restart"

kill_ingestor
pg_psql -c "UPDATE t SET n = 200" >/dev/null || wh_fail "phase 200 failed"
wait_events "$ROWS"
wh_wait_until 30 _from_store || wh_fail "no value from the store after a SIGKILL"

# an update PostgreSQL does not send, then a Relation message again
pg_psql <<'SQL' >/dev/null || wh_fail "phase 300 failed"
ALTER PUBLICATION walhook SET (publish = 'insert');
UPDATE t SET doc = big('hidden3'), dk = 'hidden3' WHERE id = 3;
ALTER PUBLICATION walhook SET (publish = 'insert, update, delete, truncate');
UPDATE t SET n = 300 WHERE id = 3;
SQL
wait_events 1
kill_ingestor
pg_psql -c "UPDATE t SET n = 301 WHERE id = 3" >/dev/null || wh_fail "phase 301 failed"
wait_events 1

pg_psql -c "ALTER TABLE t ADD COLUMN extra int" -c "UPDATE t SET n = 400 WHERE id <= 5" \
    >/dev/null || wh_fail "phase 400 failed"
wait_events 5
# new docs (entries in the generation after the ALTER), then an ALTER
# TABLE and updates while the ingestor is stopped: its next session's first
# Relation message of t has another shape than the store's
pg_psql -c "UPDATE t SET doc = big('b' || id), dk = 'b' || id WHERE id > 5" >/dev/null ||
    wh_fail "new docs failed"
wait_events $((ROWS - 5))
ing=$(wh_child_pid "${WH_PIDS[walhook]}" ingestor)
wh_log "ALTER TABLE while the ingestor is stopped ($ing)"
kill -STOP "$ing"
pg_psql -c "ALTER TABLE t ADD COLUMN extra2 int" -c "UPDATE t SET n = 500 WHERE id > 5" \
    >/dev/null || wh_fail "phase 500 failed"
kill -KILL "$ing"
kill -CONT "$ing" 2>/dev/null
WH_KILLED=$ing
wh_wait_restarted ingestor
wh_wait_slot_active walhook 60 || wh_fail "the slot is not streaming after the restart"
wait_events $((ROWS - 5))

# the docs again, so every row has an entry in the new generation
each_row "UPDATE t SET doc = big('c{i}'), dk = 'c{i}' WHERE id = {i};" | pg_psql >/dev/null ||
    wh_fail "docs c failed"
wait_events "$ROWS"
kill_ingestor
pg_psql <<'SQL' >/dev/null || wh_fail "phase 600 failed"
DELETE FROM t WHERE id = 4;
INSERT INTO t VALUES (4, 0, big('r4'), 'r4');
UPDATE t SET n = 600 WHERE id = 4;
SQL
wait_events 3

# new docs while the store is SIGKILLed mid-stream
st=$(wh_child_pid "${WH_PIDS[walhook]}" store)
[ -n "$st" ] || wh_fail "no store process under walhook up"
(each_row "UPDATE t SET doc = big('s{i}'), dk = 's{i}', n = 700 WHERE id = {i};" |
    pg_psql >/dev/null) &
sql=$!
sleep 0.2
wh_log "SIGKILL the store ($st)"
kill -KILL "$st"
wait "$sql" || wh_fail "phase 700 failed"
wait_events "$ROWS"
kill_ingestor
pg_psql -c "UPDATE t SET n = 800" >/dev/null || wh_fail "phase 800 failed"
wait_events "$ROWS"
wh_wait_until 30 _from_store || wh_fail "no value from the store after the store's SIGKILL"

# a store that does not answer a lookup: listed after ING_TSTORE_TIMEOUT_MS
# (never a wrong value), and the stream goes on once the store is back
kill_ingestor
st=$(wh_child_pid "${WH_PIDS[walhook]}" store)
wh_log "SIGSTOP the store ($st) for a lookup"
kill -STOP "$st"
pg_psql -c "UPDATE t SET n = 900 WHERE id = 1" >/dev/null || wh_fail "phase 900 failed"
_failed() {
    [ "$(curl -fsS --max-time 10 "http://127.0.0.1:$APORT/metrics" |
        awk '/^walhook_ingestor_toast_store_failed_total/ { s += $NF } END { print s + 0 }')" -gt 0 ]
}
wh_wait_until 30 _failed || { kill -CONT "$st"; wh_fail "no failed lookup counted"; }
kill -CONT "$st"
wait_events 1

store_metric() { # NAME
    curl -fsS --max-time 10 "http://127.0.0.1:$APORT/metrics" | awk -v m="$1" \
        '$1 == m || index($1, m "{") == 1 { s += $NF } END { print s + 0 }'
}
# a delete after a restart (the ingestor's memory empty) drops the row's
# entry in the store
kill_ingestor
e0=$(store_metric walhook_store_toast_entries)
pg_psql -c "DELETE FROM t WHERE id = $ROWS" >/dev/null || wh_fail "delete failed"
wait_events 1
_dropped() { [ "$(store_metric walhook_store_toast_entries)" -eq $((e0 - 1)) ]; }
wh_wait_until 30 _dropped ||
    wh_fail "the store's entries: $(store_metric walhook_store_toast_entries), expected $((e0 - 1))"

# store.toast_cache_bytes at runtime: a bound of about six entries holds
code=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -X PATCH -H "Authorization: Bearer $ATOKEN" \
    -H 'Content-Type: application/json' --data-binary '{"store.toast_cache_bytes":20000}' \
    "http://127.0.0.1:$APORT/v1/settings")
[ "$code" = 200 ] || wh_fail "PATCH store.toast_cache_bytes: HTTP $code"
_applied() { [ "$(store_metric walhook_store_toast_bytes)" -le 20000 ]; }
ev0=$(store_metric walhook_store_toast_evictions_total)
EXPECT=$((EXPECT + ROWS - 1))
pg_psql -c "UPDATE t SET doc = big('e' || id), dk = 'e' || id, n = 1000" >/dev/null ||
    wh_fail "phase 1000 failed"
wait_events 0
wh_wait_until 30 _applied || wh_fail "the store's TOAST cache holds \
$(store_metric walhook_store_toast_bytes) bytes, over store.toast_cache_bytes = 20000"
ev1=$(store_metric walhook_store_toast_evictions_total)
[ "$ev1" -gt "$ev0" ] || wh_fail "no eviction ($ev0 -> $ev1)"
wh_log "store TOAST cache: $(store_metric walhook_store_toast_entries) entries, \
$(store_metric walhook_store_toast_bytes) bytes, evictions $ev0 -> $ev1"

out=$(python3 - "$WH_TMP/got.jsonl" "$ROWS" <<'PY'
import hashlib, json, sys
rows = int(sys.argv[2])
big = lambda k: hashlib.md5(k.encode()).hexdigest() * 100
evs, seen = [], set()
for line in open(sys.argv[1]):
    for e in json.loads(line):
        if e["id"] not in seen:
            seen.add(e["id"])
            evs.append(e)
filled, listed = {}, {}
for e in evs:
    a = e.get("after")
    if a is None:
        continue
    where = f"{e['op']} id {a['id']} n {a['n']} at {e['lsn']}/{e['seq']}"
    un = e.get("unchanged", [])
    if "doc" in a:
        want = None if a["dk"] is None else big(a["dk"])
        if a["doc"] != want:
            print(f"{where}: STALE doc {str(a['doc'])[:16]}..., the row's is big({a['dk']})")
            sys.exit(1)
        if e["op"] == "update":
            filled.setdefault(a["n"], set()).add(a["id"])
    elif un == ["doc"]:
        listed.setdefault(a["n"], set()).add(a["id"])
    else:
        print(f"{where}: no doc and unchanged={un}")
        sys.exit(1)
allr = set(range(1, rows + 1))
def need(n, ids, what):
    got = filled.get(n, set()) if what == "filled" else listed.get(n, set())
    if got != ids:
        print(f"n={n}: {what} for ids {sorted(got)}, expected {sorted(ids)}")
        sys.exit(1)
need(100, allr, "filled")
need(200, allr, "filled")
need(300, {3}, "listed")
need(301, {3}, "listed")
need(400, set(range(1, 6)), "listed")
need(500, allr - set(range(1, 6)), "listed")
need(600, {4}, "filled")
need(800, allr, "filled")
need(900, {1}, "listed")
print(f"ok: {len(evs)} events")
PY
) || wh_fail "$out"
[ "$(distinct)" -eq "$EXPECT" ] || wh_fail "$(distinct) events, expected $EXPECT"
wh_kill walhook TERM
wh_kill recv TERM
wh_pass "$out: unchanged TOAST values filled from the store after a clean restart and SIGKILLs of the ingestor and the store; listed (never stale) after an unsent update, a lookup timeout, ALTER TABLE (live and while down); delete and re-insert of a key gives the new doc"
