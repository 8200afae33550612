#!/usr/bin/env bash
# Values too large for the store's copy of the TOAST cache: the request
# that carries an event and the cache op of its value (as large) must fit
# ipc.max_msg_bytes (64 MiB), or the store refuses it and the stream
# stalls for good. A 40 MiB text value (no store copy: above a quarter of
# the limit) and a row of three 15 MiB values (their ops go in a request
# of their own) must be delivered, then the rows after them; an update
# that leaves the wide values unchanged gets them whole or lists them as
# unchanged, never a stale value.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_pipeline_setup
pg_psql -c "CREATE TABLE w (id int PRIMARY KEY, n int, a text, b text, c text)" \
    -c "CREATE PUBLICATION walhook FOR ALL TABLES" >/dev/null || wh_fail "cannot create the table"
wh_up_receiver
# MIB: a value of that many MiB (md5 hex, so it does not compress away)
val() { echo "(SELECT string_agg(md5(g::text || '$2'), '') FROM generate_series(1, $1 * 32768) g)"; }
pg_psql -c "INSERT INTO w (id, n, a) VALUES (1, 0, $(val 40 x))" \
    -c "INSERT INTO w (id, n) VALUES (2, 0)" \
    -c "INSERT INTO w VALUES (3, 0, $(val 15 a), $(val 15 b), $(val 15 c))" \
    -c "INSERT INTO w (id, n) VALUES (4, 0)" >/dev/null || wh_fail "cannot insert"
pg_psql -c "UPDATE w SET n = 1 WHERE id IN (1, 3)" -c "INSERT INTO w (id, n) VALUES (5, 0)" \
    >/dev/null || wh_fail "cannot update"
# the events: op id n and the length of each wide column present ("-": absent)
events() {
    python3 - "$WH_TMP/got.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    for e in json.loads(line):
        if e.get("table") != "w" or e.get("op") not in ("insert", "update"):
            continue
        a = e["after"]
        cols = [str(len(a[c])) if a.get(c) is not None else "-" for c in ("a", "b", "c")]
        print(e["op"], a["id"], a["n"], *cols, ",".join(e.get("unchanged", [])) or "none")
PY
}
_five() { events 2>/dev/null | grep -q '^insert 5 '; }
wh_wait_until 120 _five || wh_fail "the rows after the wide ones were not delivered ($(grep -o \
    'request of [0-9]* bytes is larger[^;]*' "$WH_TMP/walhook.log" | tail -1)); got: $(events | tr '\n' ';')"
ev=$(events)
M40=$((40 * 1048576))
M15=$((15 * 1048576))
printf '%s\n' "$ev" | grep -qx "insert 1 0 $M40 - - none" || wh_fail "row 1: $ev"
printf '%s\n' "$ev" | grep -qx "insert 2 0 - - - none" || wh_fail "row 2: $ev"
printf '%s\n' "$ev" | grep -qx "insert 3 0 $M15 $M15 $M15 none" || wh_fail "row 3: $ev"
u1=$(printf '%s\n' "$ev" | grep '^update 1 ')
[ "$u1" = "update 1 1 $M40 - - none" ] || [ "$u1" = "update 1 1 - - - a" ] || wh_fail "update of row 1: $u1"
u3=$(printf '%s\n' "$ev" | grep '^update 3 ')
case "$u3" in
"update 3 1 $M15 $M15 $M15 none" | "update 3 1 "*[abc]) ;;
*) wh_fail "update of row 3: $u3" ;;
esac
grep -q "larger than ipc.max_msg_bytes" "$WH_TMP/walhook.log" && wh_fail "a request was too large"
wh_pass "40 MiB value and 3 x 15 MiB row delivered, rows after them too; updates: $u1 / $u3"
