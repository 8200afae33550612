#!/usr/bin/env bash
# Schema registry pruning (st_db_schema.c "schema registry", README "Schema
# versions"): the store drops a version once no event at or above the
# tenant's GC watermark can carry it, never a table's current one, and a
# table that returns to an older shape keeps (or gets back) that version
# while its events are stored. With two SIGKILLs of the store.
#   A. p1: V1, V2 (ADD COLUMN b), V1 again (DROP COLUMN b), a sentinel;
#      once the target delivered them, the registry shrinks to V1 (the
#      current version, whose first use is the oldest of all); V2 is
#      listed as pruned, without columns (its tombstone). SIGKILL of the
#      ingestor: it loads the registry again, tombstone included.
#   B. the target paused: V2 again (no schema event: the restarted ingestor
#      knows it from its tombstone, its start registers it again), V1
#      again, V3 (ADD COLUMN c), all
#      stored and undelivered; SIGKILL of the store; every version an
#      undelivered event carries is listed, and stays listed.
#   C. the target resumed, a sentinel delivered, a SIGKILL of the store
#      right after (a prune may be cut short): the registry shrinks to V3.
#   D. V4 (ADD COLUMN d) started inside a streamed transaction: V3 stays
#      until a change decoded whole proves V4, then goes.
#   Every insert arrives once, and its columns are those of the version it
#   names (the schema events' descriptions); each version has one schema
#   event.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_pipeline_setup
PORT=$(wh_free_port)
APORT=$(wh_free_port)
CONF="$WH_TMP/walhook.conf"
cat >"$CONF" <<CONFEOF
tenant = "default";
data_dir = "$WH_TMP/data";
log_level = "info";
source = { dsn = "$PG_DSN"; slot = "walhook"; publication = "walhook"; create_slot = true;
           streaming = true; };
admin = { listen = "127.0.0.1:$APORT"; };
dispatcher = { retry_max_ms = 500; };
targets = ( { name = "t0"; url = "http://127.0.0.1:$PORT/hook"; } );
CONFEOF
# transactions over 64 kB are streamed (part D)
pg_psql -c "ALTER SYSTEM SET logical_decoding_work_mem = '64kB'" -c "SELECT pg_reload_conf()" \
    >/dev/null || wh_fail "cannot lower logical_decoding_work_mem"
pg_psql -c "CREATE TABLE p1 (id int PRIMARY KEY, a int)" >/dev/null || wh_fail "cannot create p1"
wh_spawn recv "$BIN/walhook-receiver" --listen "127.0.0.1:$PORT" --out "$WH_TMP/got.jsonl"
wh_up "$CONF" "$APORT"
TOKEN=$(cat "$WH_TMP/data/admin.token" 2>/dev/null)
api() { # METHOD PATH
    curl -fsS -X "$1" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$APORT$2" 2>/dev/null
}
sql() { pg_psql -c "$1" >/dev/null || wh_fail "SQL failed: $1"; }
# the fingerprints of p1's versions in the registry (not pruned), sorted,
# one line
p1_versions() {
    api GET /v1/tenants/default/schemas |
        jq -r '[.tables[] | select(.table == "public.p1") | .versions[] | select(.pruned == false)
               | .fingerprint] | sort | join(" ")'
}
# the same for the pruned ones (tombstones: no columns)
p1_pruned() {
    api GET /v1/tenants/default/schemas |
        jq -r '[.tables[] | select(.table == "public.p1") | .versions[]
               | select(.pruned == true and .columns == null) | .fingerprint] | sort | join(" ")'
}
_p1_is() { [ "$(p1_versions)" = "$1" ]; }
_got_id() { grep -q "\"id\":$1[,}]" "$WH_TMP/got.jsonl" 2>/dev/null; }
# the version the insert of id ID carries
version_of() {
    jq -r --argjson id "$1" '.[] | select(.op == "insert" and .after.id == $id) | .schema_version' \
        "$WH_TMP/got.jsonl" | head -n 1
}

# ---- A ----
sql "INSERT INTO p1 VALUES (1, 1)"
sql "ALTER TABLE p1 ADD COLUMN b text"
sql "INSERT INTO p1 VALUES (2, 2, 'two')"
sql "ALTER TABLE p1 DROP COLUMN b"
sql "INSERT INTO p1 VALUES (3, 3)"
sql "INSERT INTO p1 VALUES (4, 4)" # the sentinel: the watermark passes V1's return
wh_wait_until 60 _got_id 4 || wh_fail "the inserts of part A were not delivered"
V1=$(version_of 1)
V2=$(version_of 2)
[ -n "$V1" ] && [ -n "$V2" ] && [ "$V1" != "$V2" ] || wh_fail "versions of ids 1, 2: '$V1' '$V2'"
[ "$(version_of 3)" = "$V1" ] || wh_fail "id 3 (after DROP COLUMN b) is not of V1 $V1"
wh_wait_until 30 _p1_is "$V1" ||
    wh_fail "part A: p1's registry is [$(p1_versions)], expected only V1 $V1 (V2 $V2 pruned)"
[ "$(p1_pruned)" = "$V2" ] || wh_fail "part A: p1's pruned versions are [$(p1_pruned)], expected V2 $V2"
wh_log "A: V2 $V2 pruned (listed as pruned), V1 $V1 (current, first used before V2) kept"
# the ingestor restarted knows V2 from its tombstone: going back to V2 (part
# B) emits no second schema event of it
wh_kill_child ingestor "with V2 pruned"
wh_wait_restarted ingestor
_loaded() { grep -qE 'schema registry of tenant default: [0-9]+ versions? \([1-9][0-9]* pruned\)' \
    "$WH_TMP/walhook.log"; }
wh_wait_until 60 _loaded || wh_fail "the restarted ingestor did not load V2's tombstone"

# ---- B ----
api POST /v1/tenants/default/targets/t0/pause >/dev/null || wh_fail "cannot pause t0"
sleep 1 # (a delivery already under way ends)
sql "ALTER TABLE p1 ADD COLUMN b text"
sql "INSERT INTO p1 VALUES (5, 5, 'five')"
sql "ALTER TABLE p1 DROP COLUMN b"
sql "INSERT INTO p1 VALUES (6, 6)"
sql "ALTER TABLE p1 ADD COLUMN c int"
sql "INSERT INTO p1 VALUES (7, 7, 7)"
wh_wait_slot_flush "$(pg_psql -At -c "SELECT pg_current_wal_lsn()")" 60 ||
    wh_fail "part B's changes were never stored"
_got_id 5 && wh_fail "part B: id 5 was delivered to the paused target"
wh_kill_child store "with part B stored and undelivered"
wh_wait_restarted store
_listed() { api GET /v1/tenants/default/schemas >/dev/null; }
wh_wait_until 30 _listed || wh_fail "no registry after the store restarted"
B=$(p1_versions)
[ "$(wc -w <<<"$B")" = 3 ] && grep -qw "$V1" <<<"$B" && grep -qw "$V2" <<<"$B" ||
    wh_fail "part B: p1's registry is [$B], expected V1 $V1, V2 $V2 (used again) and V3"
sleep 3 # maintenance passes: nothing may go while the events are stored
[ "$(p1_versions)" = "$B" ] || wh_fail "part B: the registry changed to [$(p1_versions)] from [$B]"
wh_log "B: [$B] kept while their events are undelivered"

# ---- C ----
api POST /v1/tenants/default/targets/t0/resume >/dev/null || wh_fail "cannot resume t0"
sql "INSERT INTO p1 VALUES (8, 8, 8)"
wh_wait_until 60 _got_id 8 || wh_fail "part C: the inserts were not delivered after the resume"
wh_kill_child store "right after the delivery (a prune may be under way)"
wh_wait_restarted store
V3=$(version_of 7)
wh_wait_until 30 _p1_is "$V3" ||
    wh_fail "part C: p1's registry is [$(p1_versions)], expected only V3 $V3"
[ "$(version_of 5)" = "$V2" ] && [ "$(version_of 6)" = "$V1" ] ||
    wh_fail "ids 5, 6 carry $(version_of 5) $(version_of 6), expected V2 $V2, V1 $V1"

# ---- D: a version started in a streamed transaction (its ALTER inside
# it): its start only protects until a change decoded whole proves it ----
pg_psql >/dev/null <<'SQL' || wh_fail "the streamed transaction failed"
BEGIN;
ALTER TABLE p1 ADD COLUMN d int;
INSERT INTO p1 SELECT i, i, i, i FROM generate_series(1001, 4000) i;
COMMIT;
SQL
wh_wait_until 60 _got_id 4000 || wh_fail "part D: the streamed transaction was not delivered"
V4=$(version_of 4000)
streamed=$(pg_psql -At -c "SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = 'walhook'")
[ "${streamed:-0}" -gt 0 ] || wh_fail "PostgreSQL streamed no transaction (stream_txns ${streamed:-none})"
sleep 2 # maintenance passes: V3 stays, V4's only start is streamed (proves nothing)
_p1_is "$(tr ' ' '\n' <<<"$V3 $V4" | sort | tr '\n' ' ' | sed 's/ $//')" ||
    wh_fail "part D: p1's registry is [$(p1_versions)], expected V3 $V3 and V4 $V4"
sql "INSERT INTO p1 VALUES (9, 9, 9, 9)" # decoded whole: V4 proven at its commit
sql "INSERT INTO p1 VALUES (10, 10, 10, 10)"
wh_wait_until 60 _got_id 10 || wh_fail "part D: the inserts after the streamed one were not delivered"
wh_wait_until 30 _p1_is "$V4" ||
    wh_fail "part D: p1's registry is [$(p1_versions)], expected only V4 $V4"
wh_log "D: V4 $V4 (started streamed) kept V3 until proven, then V3 pruned"
wh_wait_metric "http://127.0.0.1:$APORT/metrics" walhook_store_schema_versions_pruned_total 1 30 ||
    wh_fail "walhook_store_schema_versions_pruned_total stays 0 after V3 went"

# every insert once, with the columns of the version it names; one schema
# event per version (none again after the ingestor's restart)
out=$(python3 - "$WH_TMP/got.jsonl" 2>&1 <<'PY'
import json, sys
desc, ids, seen, nschema = {}, [], set(), {}
for line in open(sys.argv[1]):
    for e in json.loads(line):
        if e["id"] in seen:
            continue
        seen.add(e["id"])
        if e["op"] == "schema":
            desc[e["schema_version"]] = [c["name"] for c in e["columns"]]
            nschema[e["schema_version"]] = nschema.get(e["schema_version"], 0) + 1
        elif e["op"] == "insert":
            ids.append((e["after"]["id"], e["schema_version"], sorted(e["after"])))
got = sorted(i for i, _, _ in ids)
if got != list(range(1, 11)) + list(range(1001, 4001)):
    sys.exit(f"inserts: {len(got)}, expected 1..10 and 1001..4000 once each")
for i, fp, cols in ids:
    if sorted(desc.get(fp, [])) != cols:
        sys.exit(f"id {i}: columns {cols}, its version {fp} has {desc.get(fp)}")
twice = {fp: n for fp, n in nschema.items() if n != 1}
if twice:
    sys.exit(f"versions with more than one schema event: {twice}")
print(f"ok: {len(got)} inserts once, {len(desc)} schema events")
PY
) || wh_fail "$out"
wh_log "$out"
wh_kill walhook TERM
wh_kill recv TERM
wh_pass
