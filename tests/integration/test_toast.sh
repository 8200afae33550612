#!/usr/bin/env bash
# Unchanged TOAST values (docs/INTERNALS.md "Unchanged TOAST values"): an
# update that leaves a TOASTed column unchanged carries its current value
# whenever walhook can know it, and lists the column under "unchanged" only
# when it cannot; never a wrong or silently null value.
#   doc_d  REPLICA IDENTITY DEFAULT, doc stored out of line (STORAGE
#          EXTERNAL, ~3 KiB): inserts, updates of another column (filled
#          from the ingestor's cache), a new doc, a key change, a delete and
#          re-insert of the same key (the old value must not come back).
#   doc_f  REPLICA IDENTITY FULL: filled from the old row.
#   doc_x  a row written before the slot existed: walhook never saw its doc,
#          so an update lists it as unchanged.
# Then the ingestor is SIGKILLed: its memory is gone, so the first update
# of a row after the restart is filled from the store's level of the cache
# (store.toast_cache_bytes, from="store"), and the next ones from memory
# again. (Autovacuum is off for the tables: an ANALYZE makes PostgreSQL
# send the Relation message again, which drops the table's kept values.)
# test_toast_store covers the store's level further.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_pipeline_setup
pg_psql -c "CREATE TABLE doc_d (id int PRIMARY KEY, n int, doc text)" \
    -c "ALTER TABLE doc_d ALTER doc SET STORAGE EXTERNAL" \
    -c "CREATE TABLE doc_f (id int PRIMARY KEY, n int, doc text)" \
    -c "ALTER TABLE doc_f ALTER doc SET STORAGE EXTERNAL" \
    -c "ALTER TABLE doc_f REPLICA IDENTITY FULL" \
    -c "CREATE TABLE doc_x (id int PRIMARY KEY, n int, doc text)" \
    -c "ALTER TABLE doc_x ALTER doc SET STORAGE EXTERNAL" \
    -c "ALTER TABLE doc_d SET (autovacuum_enabled = false)" \
    -c "ALTER TABLE doc_f SET (autovacuum_enabled = false)" \
    -c "CREATE FUNCTION big(k text) RETURNS text LANGUAGE sql IMMUTABLE AS
        \$\$ SELECT repeat(md5(k), 100) \$\$" \
    -c "INSERT INTO doc_x VALUES (1, 0, big('x1'))" >/dev/null ||
    wh_fail "cannot create the tables"
PORT=$(wh_free_port)
APORT=$(wh_free_port)
wh_spawn recv "$BIN/walhook-receiver" --listen "127.0.0.1:$PORT" --out "$WH_TMP/got.jsonl"
CONF="$WH_TMP/walhook.conf"
cat >"$CONF" <<CONFEOF
tenant = "default";
source = { dsn = "$PG_DSN"; slot = "walhook"; publication = "walhook"; create_slot = true; };
data_dir = "$WH_TMP/data";
log_level = "info";
admin = { listen = "127.0.0.1:$APORT"; };
targets = ( { name = "t"; url = "http://127.0.0.1:$PORT/hook"; } );
CONFEOF
wh_up "$CONF" "$APORT"

# Each statement its own transaction. The expected doc of every update is
# computed by the check below from the same big() keys.
pg_psql <<'SQL' >/dev/null || wh_fail "changes failed"
INSERT INTO doc_d VALUES (1, 0, big('d1a')), (2, 0, big('d2a')), (3, 0, big('d3a'));
UPDATE doc_d SET n = 1 WHERE id = 1;
UPDATE doc_d SET n = 1 WHERE id = 2;
UPDATE doc_d SET n = 1 WHERE id = 3;
UPDATE doc_d SET doc = big('d2b') WHERE id = 2;
UPDATE doc_d SET n = 2 WHERE id = 1;
UPDATE doc_d SET n = 2 WHERE id = 2;
UPDATE doc_d SET n = 2 WHERE id = 3;
UPDATE doc_d SET id = 4 WHERE id = 3;
UPDATE doc_d SET n = 3 WHERE id = 4;
DELETE FROM doc_d WHERE id = 1;
INSERT INTO doc_d VALUES (1, 0, NULL);
UPDATE doc_d SET n = 4 WHERE id = 1;
INSERT INTO doc_f VALUES (1, 0, big('f1a'));
UPDATE doc_f SET n = 1;
UPDATE doc_x SET n = 1;
SQL
_n_events() { [ "$(wh_count_events "$WH_TMP/got.jsonl")" -ge "$1" ]; }
wh_wait_until 60 _n_events 18 || wh_fail "$(wh_count_events "$WH_TMP/got.jsonl") of 18 events"
# filled from the cache and from the old row, listed for doc_x (the
# counters are the ingestor's: read them before it is killed)
toast_metric() { # FROM
    curl -fsS "http://127.0.0.1:$APORT/metrics" | awk -v f="from=\"$1\"" \
        '/^walhook_ingestor_unchanged_toast_total/ && index($0, f) { s += $NF } END { print s + 0 }'
}
for from in cache old_row listed; do
    v=$(toast_metric $from)
    wh_log "unchanged TOAST values from=$from: $v"
    [ "$v" -gt 0 ] || wh_fail "walhook_ingestor_unchanged_toast_total{from=\"$from\"} is $v"
done

wh_kill_child ingestor
wh_wait_restarted ingestor
wh_wait_slot_active walhook 60 || wh_fail "the slot is not streaming after the restart"
pg_psql <<'SQL' >/dev/null || wh_fail "changes after the restart failed"
UPDATE doc_d SET n = 5 WHERE id = 2;
UPDATE doc_d SET doc = big('d2c') WHERE id = 2;
UPDATE doc_d SET n = 6 WHERE id = 2;
SQL
wh_wait_until 60 _n_events 21 || wh_fail "$(wh_count_events "$WH_TMP/got.jsonl") of 21 events"
_from_store() { [ "$(toast_metric store)" -gt 0 ]; }
wh_wait_until 30 _from_store ||
    wh_fail "walhook_ingestor_unchanged_toast_total{from=\"store\"} is $(toast_metric store) after the restart"

out=$(python3 - "$WH_TMP/got.jsonl" <<'PY'
import hashlib, json, sys
big = lambda k: hashlib.md5(k.encode()).hexdigest() * 100
evs, seen = [], set()
for line in open(sys.argv[1]):
    for e in json.loads(line):
        if e.get("op") in ("schema", "ddl"):  # schema registry events (test_schema.sh)
            continue
        if e["id"] not in seen:
            seen.add(e["id"])
            evs.append(e)
evs.sort(key=lambda e: (int(e["lsn"].split("/")[0], 16) << 32 | int(e["lsn"].split("/")[1], 16), e["seq"]))
want = [  # (table, op, id, doc: a big() key, None for NULL, "U" listed as unchanged)
    ("doc_d", "insert", 1, "d1a"), ("doc_d", "insert", 2, "d2a"), ("doc_d", "insert", 3, "d3a"),
    ("doc_d", "update", 1, "d1a"), ("doc_d", "update", 2, "d2a"), ("doc_d", "update", 3, "d3a"),
    ("doc_d", "update", 2, "d2b"),
    ("doc_d", "update", 1, "d1a"), ("doc_d", "update", 2, "d2b"), ("doc_d", "update", 3, "d3a"),
    ("doc_d", "update", 4, "d3a"), ("doc_d", "update", 4, "d3a"),
    ("doc_d", "delete", 1, None), ("doc_d", "insert", 1, None), ("doc_d", "update", 1, None),
    ("doc_f", "insert", 1, "f1a"), ("doc_f", "update", 1, "f1a"),
    ("doc_x", "update", 1, "U"),
    # after the SIGKILL: from the store's cache
    ("doc_d", "update", 2, "d2b"), ("doc_d", "update", 2, "d2c"), ("doc_d", "update", 2, "d2c"),
]
if len(evs) != len(want):
    print(f"{len(evs)} events, expected {len(want)}"); sys.exit(1)
got_rows = {}
for e, (table, op, id_, doc) in zip(evs, want):
    where = f"{table} {op} id {id_} at {e['lsn']}/{e['seq']}"
    if e["table"] != table or e["op"] != op:
        print(f"expected {where}, got {e['table']} {e['op']}"); sys.exit(1)
    if op == "delete":
        continue
    a = e["after"]
    if a["id"] != id_:
        print(f"{where}: after.id {a['id']}"); sys.exit(1)
    listed = e.get("unchanged", [])
    if doc == "U":
        if listed != ["doc"] or "doc" in a:
            print(f"{where}: doc should be listed as unchanged: unchanged={listed}, doc in after: {'doc' in a}"); sys.exit(1)
        continue
    if listed:
        print(f"{where}: unchanged={listed}, expected the value"); sys.exit(1)
    if "doc" not in a:
        print(f"{where}: no doc"); sys.exit(1)
    exp = None if doc is None else big(doc)
    if a["doc"] != exp:
        print(f"{where}: doc is {str(a['doc'])[:40]}..., expected big('{doc}')" if exp else f"{where}: doc {str(a['doc'])[:40]}, expected null"); sys.exit(1)
print("ok")
PY
) || wh_fail "$out"
wh_kill walhook TERM
wh_kill recv TERM
wh_pass "21 events: unchanged TOAST values filled from the cache (DEFAULT) and the old row (FULL), from the store after an ingestor SIGKILL, listed only where walhook never saw the value (before the slot); no stale value after a key change or a delete and re-insert"
