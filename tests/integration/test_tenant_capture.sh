#!/usr/bin/env bash
# A tenant's own capture settings (docs/CONTROL.md): two tenants on one
# database (each its own slot and publication), tenant a with ddl = true,
# snapshot = "initial" and snapshot_chunk_rows in its source (the file's
# tenants list), tenant b with neither. Then source.ddl switched at runtime
# over the REST API (and the walhook command) while inserts run.
#  1. each gets what its settings say: a the `read` events of the rows that
#     existed before (each once), b none; a ddl events, b none (b's slot
#     decodes a's trigger messages and makes no event of them);
#  2. b on (the walhook command): both get ddl events, and the triggers
#     walhook created list both slots (the comment of walhook_ddl_end);
#     a off: only b gets them, the triggers stay for b; b back to inherit
#     (null, the daemon's false): the triggers and the function are dropped,
#     nobody gets ddl events, schema events still come; a on again: the
#     triggers are created again, a gets ddl events, b not; b moves to a
#     copy of its slot made before a transaction with a DDL and an insert,
#     with ddl on: PostgreSQL sends that transaction again, its insert keeps
#     its position (stored once), only a ddl event is new; a's
#     snapshot_chunk_rows applies at once, without a reconnect;
#  3. bad values are refused by name (400);
#  4. nothing lost, nothing twice: every insert of the loop that ran across
#     the switches reaches each tenant once, every position the store holds
#     was delivered (but the ddl events of the resend, behind b's offset).
# CAPTURE_ROWS (default 200): the rows that exist before the start.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_pipeline_setup
wh_require_bins tests/wh_statectl
ROWS=${CAPTURE_ROWS:-200}
pg_psql -c "CREATE TABLE pre (id int PRIMARY KEY, v text)" \
    -c "INSERT INTO pre SELECT g, 'p' || g FROM generate_series(1, $ROWS) g" \
    -c "CREATE TABLE t (id int PRIMARY KEY, v text)" -c "CREATE TABLE loop_stop (x int)" \
    >/dev/null || wh_fail "cannot create the tables"
RA=$(wh_free_port) RB=$(wh_free_port) APORT=$(wh_free_port)
CONF="$WH_TMP/walhook.conf"
# b is the file's top-level tenant (its source.* are the daemons' own
# settings: ddl false, snapshot never); a overrides them in its source
cat >"$CONF" <<EOF
tenant = "b";
data_dir = "$WH_TMP/data";
log_level = "info";
admin = { listen = "127.0.0.1:$APORT"; };
source = { dsn = "$PG_DSN"; slot = "wh_b"; publication = "wh_b"; create_slot = true; };
targets = ( { name = "tb"; url = "http://127.0.0.1:$RB/b"; } );
tenants = (
  { name = "a";
    source = { dsn = "$PG_DSN"; slot = "wh_a"; publication = "wh_a"; create_slot = true;
               ddl = true; snapshot = "initial"; snapshot_chunk_rows = 64; };
    targets = ( { name = "ta"; url = "http://127.0.0.1:$RA/a"; } ); }
);
EOF
wh_spawn receiver_a "$BIN/walhook-receiver" --listen "127.0.0.1:$RA" --out "$WH_TMP/a.jsonl"
wh_spawn receiver_b "$BIN/walhook-receiver" --listen "127.0.0.1:$RB" --out "$WH_TMP/b.jsonl"
wh_spawn walhook "$BIN/walhook" up -c "$CONF"
wh_wait_http "http://127.0.0.1:$APORT/readyz" 90 ||
    wh_fail "walhook never became ready ($(curl -s "http://127.0.0.1:$APORT/readyz"))"
wh_wait_slot_active wh_a 30 || wh_fail "tenant a's slot is not streaming"
wh_wait_slot_active wh_b 30 || wh_fail "tenant b's slot is not streaming"
for t in a b; do # every position stays in the store for the check at the end
    "$BIN/tests/wh_statectl" -c "$CONF" set-offset "$t" hold 0/0:0 >/dev/null ||
        wh_fail "cannot register the consumer that holds tenant $t's GC"
done
wh_wait_until 20 test -s "$WH_TMP/data/admin.token" || wh_fail "the admin wrote no token file"
TOKEN=$(grep -v '^read:' "$WH_TMP/data/admin.token" | head -n 1)
A="http://127.0.0.1:$APORT"

triggers() { pg_psql -At -c "SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'walhook_ddl_%'"; }
mark() {
    pg_psql -At -c "SELECT coalesce(obj_description(oid, 'pg_event_trigger'), '') FROM pg_event_trigger
                    WHERE evtname = 'walhook_ddl_end'"
}
mark_is() { [ "$(mark)" = "$1" ]; }
triggers_are() { [ "$(triggers)" = "$1" ]; }
got() { grep -q "$2" "$WH_TMP/$1.jsonl" 2>/dev/null; }
# a DDL, then an insert of KEY: once both tenants have the insert, each has
# what it gets of the DDL (in order per target)
step() { # DDL KEY
    pg_psql -c "$1" >/dev/null || wh_fail "DDL failed: $1"
    pg_psql -c "INSERT INTO t (id) VALUES ($2)" >/dev/null || wh_fail "insert of $2 failed"
    wh_wait_until 60 got a "\"id\":$2," || wh_fail "tenant a did not get the insert of $2"
    wh_wait_until 60 got b "\"id\":$2," || wh_fail "tenant b did not get the insert of $2"
}
patch_t() { # TENANT JSON -> HTTP code, body in patch.out
    curl -s -o "$WH_TMP/patch.out" -w '%{http_code}' -X PATCH -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' -d "$2" "$A/v1/tenants/$1"
}

# ---- 1. the settings of each tenant's source ----
[ "$(triggers)" = 2 ] || wh_fail "tenant a's ddl = true did not install the event triggers"
mark_is "walhook ddl capture; slots: wh_a" || wh_fail "the triggers' mark: '$(mark)'"
_reads_a() { [ "$(grep -o '"op":"read"' "$WH_TMP/a.jsonl" 2>/dev/null | wc -l)" -ge "$ROWS" ]; }
wh_wait_until 60 _reads_a || wh_fail "tenant a did not get the read events of the $ROWS rows"
step "ALTER TABLE t ADD COLUMN c int" 1

# the inserts that run across the switches, each its own transaction,
# until a row in loop_stop (empty until then: no read event) says so
wh_spawn loop psql -X -q -v ON_ERROR_STOP=1 -d "$PG_DSN" -o /dev/null -c "DO \$\$
BEGIN
  FOR i IN 1001..200000 LOOP
    EXIT WHEN EXISTS (SELECT 1 FROM loop_stop);
    INSERT INTO t (id) VALUES (i);
    COMMIT;
    PERFORM pg_sleep(0.005);
  END LOOP;
END \$\$"

# ---- 2. source.ddl at runtime ----
# b on, with the walhook command: b's ingestor reconnects and registers
out=$(WALHOOK_ADMIN_TOKEN=$TOKEN "$BIN/walhook" tenants set b ddl=true --admin "$A" 2>&1) ||
    wh_fail "walhook tenants set b ddl=true: $out"
wh_wait_until 30 mark_is "walhook ddl capture; slots: wh_a,wh_b" ||
    wh_fail "tenant b's ingestor did not register with the triggers: '$(mark)'"
step "ALTER TABLE t ADD COLUMN d int" 2
# a off: the triggers stay for b
code=$(patch_t a '{"source":{"ddl":false}}')
[ "$code" = 200 ] || wh_fail "PATCH a ddl=false: $code $(cat "$WH_TMP/patch.out")"
wh_wait_until 30 mark_is "walhook ddl capture; slots: wh_b" ||
    wh_fail "tenant a's ingestor did not leave the triggers' users: '$(mark)'"
triggers_are 2 || wh_fail "the triggers went while tenant b uses them"
step "ALTER TABLE t ADD COLUMN e int" 3
# b back to the daemon's setting (false): the last user, the capture goes
code=$(patch_t b '{"source":{"ddl":null}}')
[ "$code" = 200 ] || wh_fail "PATCH b ddl=null: $code $(cat "$WH_TMP/patch.out")"
jq -e '.source | has("ddl") | not' "$WH_TMP/patch.out" >/dev/null ||
    wh_fail "ddl null did not unset b's own ddl: $(cat "$WH_TMP/patch.out")"
wh_wait_until 30 triggers_are 0 || wh_fail "source.ddl off on the last user left the triggers"
[ "$(pg_psql -At -c "SELECT count(*) FROM pg_proc WHERE proname = 'walhook_ddl_capture'")" = 0 ] ||
    wh_fail "the function walhook_ddl_capture() is still there"
grep -q "dropped the event triggers walhook_ddl_end" "$WH_TMP/walhook.log" ||
    wh_fail "the drop was not logged"
step "ALTER TABLE t ADD COLUMN f int" 4
# a on again: created again at the reconnect
code=$(patch_t a '{"source":{"ddl":true}}')
[ "$code" = 200 ] || wh_fail "PATCH a ddl=true: $code $(cat "$WH_TMP/patch.out")"
wh_wait_until 30 triggers_are 2 || wh_fail "tenant a's ddl = true did not install the triggers again"
wh_wait_until 10 mark_is "walhook ddl capture; slots: wh_a" || wh_fail "the triggers' mark: '$(mark)'"
step "ALTER TABLE t ADD COLUMN g int" 5

# a switch that PostgreSQL answers with a resend: b moves to a copy of its
# slot made before a transaction with a DDL (a's capture) and an insert,
# and turns ddl on. The copy sends that transaction (and every later one)
# again: b's insert of 6 keeps its position (the ddl message that was no
# event kept its seq), only the ddl event is new, at its own position
pg_psql -c "SELECT pg_copy_logical_replication_slot('wh_b', 'wh_b_copy')" >/dev/null ||
    wh_fail "cannot copy slot wh_b"
step "BEGIN; ALTER TABLE t ADD COLUMN h int; INSERT INTO t (id, h) VALUES (6, 6); COMMIT" 7
code=$(patch_t b '{"source":{"slot":"wh_b_copy","ddl":true}}')
[ "$code" = 200 ] || wh_fail "PATCH b slot=wh_b_copy ddl=true: $code $(cat "$WH_TMP/patch.out")"
wh_wait_until 30 mark_is "walhook ddl capture; slots: wh_a,wh_b_copy" ||
    wh_fail "tenant b's ingestor did not register slot wh_b_copy: '$(mark)'"
pg_psql -c "INSERT INTO t (id) VALUES (8)" >/dev/null || wh_fail "insert of 8 failed"
wh_wait_until 60 got b '"id":8,' || wh_fail "tenant b did not get the insert of 8 through the copy"

# a's snapshot_chunk_rows: applied at once through the hook, no reconnect
n0=$(grep -c "tenant a: the source changed" "$WH_TMP/walhook.log")
code=$(patch_t a '{"source":{"snapshot_chunk_rows":77}}')
[ "$code" = 200 ] || wh_fail "PATCH a snapshot_chunk_rows: $code $(cat "$WH_TMP/patch.out")"
wh_wait_until 30 grep -q "source.snapshot_chunk_rows=77" "$WH_TMP/walhook.log" ||
    wh_fail "tenant a's ingestor did not apply its snapshot_chunk_rows"
[ "$(grep -c "tenant a: the source changed" "$WH_TMP/walhook.log")" = "$n0" ] ||
    wh_fail "a change of snapshot_chunk_rows reconnected the ingestor"

# ---- 3. bad values, by name ----
for bad in '{"source":{"snapshot":"sometimes"}}|source.snapshot' \
    '{"source":{"ddl":"yes"}}|source.ddl: expected true or false' \
    '{"source":{"snapshot_chunk_rows":0}}|source.snapshot_chunk_rows'; do
    code=$(patch_t b "${bad%|*}")
    [ "$code" = 400 ] && grep -qF "${bad#*|}" "$WH_TMP/patch.out" ||
        wh_fail "PATCH ${bad%|*}: $code $(cat "$WH_TMP/patch.out")"
done
code=$(curl -s -o "$WH_TMP/post.out" -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' \
    -d "{\"name\":\"c\",\"source\":{\"dsn\":\"$PG_DSN\",\"snapshot\":\"all\"}}" "$A/v1/tenants")
[ "$code" = 400 ] && grep -q "source.snapshot" "$WH_TMP/post.out" ||
    wh_fail "POST of a tenant with snapshot 'all': $code $(cat "$WH_TMP/post.out")"

# ---- 4. nothing lost, nothing twice ----
wh_alive loop || wh_fail "the insert loop stopped before the last switch"
pg_psql -c "INSERT INTO loop_stop VALUES (1)" >/dev/null || wh_fail "cannot stop the insert loop"
wh_wait_until 60 bash -c "! kill -0 ${WH_PIDS[loop]} 2>/dev/null" || wh_fail "the insert loop hangs"
wait "${WH_PIDS[loop]}" || wh_fail "the insert loop failed"
unset "WH_PIDS[loop]"
pg_psql -c "INSERT INTO t (id) VALUES (999999)" >/dev/null || wh_fail "the last insert failed"
wh_wait_until 60 got a '"id":999999,' || wh_fail "tenant a did not get the last insert"
wh_wait_until 60 got b '"id":999999,' || wh_fail "tenant b did not get the last insert"
pg_psql -At -c "SELECT id FROM t" >"$WH_TMP/t_ids.txt" || wh_fail "cannot read t"
wh_kill walhook TERM
"$BIN/walhook-store" --dump -c "$CONF" >"$WH_TMP/dump.txt" 2>"$WH_TMP/dump.log" ||
    wh_fail "walhook-store --dump failed"
out=$(python3 - "$WH_TMP" "$ROWS" <<'PY' 2>&1
import json, sys
tmp, rows = sys.argv[1], int(sys.argv[2])
stored = {"a": set(), "b": set()}
marked = {"a": set(), "b": set()}  # ddl events
for line in open(f"{tmp}/dump.txt"):
    f = line.split()
    if len(f) >= 3 and f[0] in stored:
        stored[f[0]].add(f"{f[1]}:{f[2]}")
        if len(f) > 3 and f[3] == "ddl":
            marked[f[0]].add(f"{f[1]}:{f[2]}")
want_ddl = {"a": {"c", "d", "g", "h"}, "b": {"d", "e"}}
loop = {int(x) for x in open(f"{tmp}/t_ids.txt").read().split()}  # every insert into t
if len(loop) < 100:
    sys.exit(f"only {len(loop)} rows in t")
msg = []
for t in ("a", "b"):
    seen, evs = set(), []
    for line in open(f"{tmp}/{t}.jsonl"):
        for e in json.loads(line):
            if e["id"] not in seen:
                seen.add(e["id"])
                evs.append(e)
    if any(not e["id"].startswith(t + ":") for e in evs):
        sys.exit(f"tenant {t} got another tenant's event")
    reads = [e["after"]["id"] for e in evs if e["op"] == "read" and e["table"] == "pre"]
    if any(e["op"] == "read" and e["table"] != "pre" for e in evs):
        sys.exit(f"tenant {t}: a read event of another table")
    if t == "a" and sorted(reads) != list(range(1, rows + 1)):
        sys.exit(f"tenant a: {len(reads)} read events ({len(set(reads))} rows), expected each of {rows} once")
    if t == "b" and reads:
        sys.exit(f"tenant b (snapshot never) got {len(reads)} read events")
    # the other ingestor's CREATE PUBLICATION may come after a's triggers
    ddl = [e for e in evs if e["op"] == "ddl" and e["ddl"]["command_tag"] != "CREATE PUBLICATION"]
    cols = []
    for e in ddl:
        st = e["ddl"]["statement"] or ""
        if "ADD COLUMN" not in st:
            sys.exit(f"tenant {t}: a ddl event of {e['ddl']['command_tag']} {e['ddl']['object_identity']}")
        cols.append(st.split("ADD COLUMN ")[1].split()[0])
    if sorted(cols) != sorted(want_ddl[t]):
        sys.exit(f"tenant {t}: ddl events of ADD COLUMN {sorted(cols)}, expected {sorted(want_ddl[t])}")
    ins = [e["after"]["id"] for e in evs if e["op"] == "insert" and e["table"] == "t"]
    if len(ins) != len(set(ins)):
        dup = sorted({i for i in ins if ins.count(i) > 1})
        sys.exit(f"tenant {t}: inserts delivered twice (at two positions): {dup[:10]}")
    if set(ins) != loop:
        sys.exit(f"tenant {t}: inserts missing {sorted(loop - set(ins))[:10]}, unexpected {sorted(set(ins) - loop)[:10]}")
    schema = [e for e in evs if e["op"] == "schema" and e["table"] == "t"]
    if len(schema) != 6:  # a shape per ADD COLUMN (the first one had no change)
        sys.exit(f"tenant {t}: {len(schema)} schema events of t, expected one per shape used (6)")
    got = {e["id"].split(":", 1)[1] for e in evs}
    extra = sorted(stored[t] - got - marked[t])
    if not stored[t] or extra:
        sys.exit(f"tenant {t}: {len(stored[t])} stored positions, {len(extra)} never delivered: {extra[:5]}")
    late = sorted((stored[t] - got) & marked[t])  # ddl events of the resend, behind the offset
    if t == "b":
        six = [e for e in evs if e["op"] == "insert" and e["table"] == "t" and e["after"]["id"] == 6]
        if f"{six[0]['lsn']}:0" not in late:
            sys.exit(f"tenant b: no ddl event stored at {six[0]['lsn']}:0 by the resend (late: {late})")
    elif late:
        sys.exit(f"tenant a: ddl events stored and never delivered: {late}")
    msg.append(f"{t}: {len(evs)} events, {len(reads)} reads, ddl {sorted(cols)}, {len(ins)} inserts, "
               f"{len(late)} ddl events of the resend")
print("ok: " + "; ".join(msg))
PY
) || wh_fail "$out"
wh_log "$out"
wh_pass "$out"
