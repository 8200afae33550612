#!/usr/bin/env bash
# The least-privilege first hour against a real PostgreSQL 15: a role `wh`
# that is not a superuser, a database `shop` whose table belongs to `app`.
# `walhook up` (its preflight) must exit 1, naming each missing privilege or
# object with the SQL that fixes it; the test applies exactly the printed
# fixes, round by round, until `walhook up` runs and delivers. Then
# `walhook setup --print-sql` on a fresh role/database is applied as printed
# and passes `walhook setup --check`. Finally permanent errors during the
# run: REPLICATION revoked (state `error` with the cause in /readyz and
# `walhook status`, the same ingestor process, back to streaming once it is
# granted again); the role's password changed (state `error`, not
# `connecting`: a configuration error); the publication dropped (state
# `error` naming it as missing, not the failed attempt to create it), then
# created again by a superuser: the changes written meanwhile cannot be
# decoded through the slot, the cause says so and how to skip them, and
# following it (pg_replication_slot_advance) the stream works again.
# The role authenticates with a password (scram-sha-256).
# In between, the table gets REPLICA IDENTITY FULL: the role reads its
# primary key from the catalog for the envelope key.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
wh_require_bins walhook walhook-store walhook-ingestor walhook-dispatcher walhook-admin \
    walhook-receiver
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
SUPER_SHOP="postgresql://postgres@127.0.0.1:$PG_PORT/shop"
pg_psql -c "CREATE ROLE app LOGIN" -c "CREATE ROLE wh LOGIN PASSWORD 'pw-lp-1'" -c "CREATE DATABASE shop OWNER app" \
    -c "REVOKE CONNECT ON DATABASE shop FROM PUBLIC" -c "GRANT CONNECT ON DATABASE shop TO app" ||
    wh_fail "role setup failed"
psql -X -q -v ON_ERROR_STOP=1 -d "postgresql://app@127.0.0.1:$PG_PORT/shop" \
    -c "CREATE TABLE public.orders (id int PRIMARY KEY, note text)" || wh_fail "table setup failed"
# wh (only) with a password
{ echo "host all wh 127.0.0.1/32 scram-sha-256"; echo "host replication wh 127.0.0.1/32 scram-sha-256"
  cat "$PG_DIR/data/pg_hba.conf"; } >"$WH_TMP/hba"
cp "$WH_TMP/hba" "$PG_DIR/data/pg_hba.conf"
_pg_run "$PG_BIN/pg_ctl" -D "$PG_DIR/data" reload >/dev/null || wh_fail "pg_hba reload failed"
DSN="postgresql://wh:pw-lp-1@127.0.0.1:$PG_PORT/shop"
RPORT=$(wh_free_port)
APORT=$(wh_free_port)
wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --out "$WH_TMP/received.jsonl"
UP_ARGS=(--source "$DSN" --tables public.orders --target "http://127.0.0.1:$RPORT/hook"
         --data "$WH_TMP/data" --admin "127.0.0.1:$APORT")

# One round: `walhook up` must refuse (exit 1) naming each of the patterns;
# then every printed fix is applied as a superuser connected to shop.
round() { # NAME PATTERN...
    local name=$1 out="$WH_TMP/round-$1.err" rc=0
    shift
    timeout -k 5 60 "$BIN/walhook" up "${UP_ARGS[@]}" >"$WH_TMP/round-$name.out" 2>"$out" || rc=$?
    [ "$rc" = 1 ] || { cat "$out" >&2; wh_fail "round $name: walhook up exited $rc, not 1"; }
    local p
    for p in "$@"; do
        grep -qE -- "$p" "$out" || { cat "$out" >&2; wh_fail "round $name: no '$p' in the report"; }
    done
    sed -n 's/^ *fix (as [^)]*): //p' "$out" >"$WH_TMP/fix-$name.sql"
    [ -s "$WH_TMP/fix-$name.sql" ] || { cat "$out" >&2; wh_fail "round $name: no fix printed"; }
    wh_log "round $name: $(grep -c '^  - ' "$out") problem(s); applying:"
    sed 's/^/    /' "$WH_TMP/fix-$name.sql" >&2
    psql -X -q -v ON_ERROR_STOP=1 -d "$SUPER_SHOP" -f "$WH_TMP/fix-$name.sql" ||
        wh_fail "round $name: the printed fix failed"
}

# 1: neither REPLICATION nor CONNECT; both named at once with their fixes
round 1 'lacks the REPLICATION attribute' 'ALTER ROLE wh WITH REPLICATION;' \
    'no CONNECT privilege on database "shop"' 'GRANT CONNECT ON DATABASE shop TO wh;'
# 2: the publication is missing and wh cannot create it (app owns orders)
round 2 'publication "walhook" does not exist and role "wh" cannot create it' \
    'fix \(as the tables. owner app, or a superuser\)' 'CREATE PUBLICATION walhook FOR TABLE public.orders;'
# no other problem left: the preflight passes
"$BIN/walhook" setup --check --source "$DSN" --tables public.orders >"$WH_TMP/check.out" 2>&1 ||
    { cat "$WH_TMP/check.out" >&2; wh_fail "setup --check still fails after the printed fixes"; }
# the role is still no superuser and has no SELECT on the table
[ "$(pg_psql -At -c "SELECT rolsuper FROM pg_roles WHERE rolname = 'wh'")" = f ] || wh_fail "wh is superuser"

# 3: a clean run, and rows arrive (pgoutput needs no SELECT on orders)
wh_spawn walhook "$BIN/walhook" up "${UP_ARGS[@]}"
UP=${WH_PIDS[walhook]}
READYZ="http://127.0.0.1:$APORT/readyz"
wh_wait_http "$READYZ" 60 || wh_fail "walhook never became ready with the least-privilege role"
psql -X -q -d "$SUPER_SHOP" -c "INSERT INTO orders SELECT g, 'n' || g FROM generate_series(1, 50) g" ||
    wh_fail "insert failed"
wh_wait_until 60 bash -c "[ \$(grep -o '\"op\":\"insert\"' '$WH_TMP/received.jsonl' 2>/dev/null | wc -l) -ge 50 ]" ||
    wh_fail "the 50 inserts did not arrive"
ING=$(wh_child_pid "$UP" ingestor)
[ -n "$ING" ] || wh_fail "no ingestor child"
# REPLICA IDENTITY FULL: the key is the primary key, read from pg_index and
# pg_attribute (readable by every role; wh still has no SELECT on orders).
# First with pg_index unreadable: the lookup fails, key = every column and one
# warning; then readable again: the next Relation message (a new column)
# looks it up again and key = the primary key.
last_update() { grep -o '"op":"update"[^]]*' "$WH_TMP/received.jsonl" | tail -n 1; }
# waited for, not read once: the receiver writes a long request in pieces
# (a reader can see the start of its line), and an insert's key is the same
# {"id":N} as the update's
last_update_has() { last_update | grep -qF -- "$1"; }
psql -X -q -v ON_ERROR_STOP=1 -d "$SUPER_SHOP" -c "REVOKE SELECT ON pg_catalog.pg_index FROM PUBLIC" \
    -c "ALTER TABLE orders REPLICA IDENTITY FULL" \
    -c "UPDATE orders SET note = 'full' WHERE id = 7" || wh_fail "identity full update failed"
wh_wait_until 60 grep -q '"op":"update"' "$WH_TMP/received.jsonl" || wh_fail "the update did not arrive"
wh_wait_until 30 last_update_has '"key":{"id":7,"note":"n7"},"before":{"id":7,"note":"n7"}' ||
    wh_fail "identity full, catalog unreadable: the key is not every column: $(last_update | cut -c1-200)"
grep -q 'public.orders has REPLICA IDENTITY FULL and its primary key could not be read' \
    "$WH_TMP/walhook.log" || wh_fail "identity full: no warning about the failed primary key lookup"
psql -X -q -v ON_ERROR_STOP=1 -d "$SUPER_SHOP" -c "GRANT SELECT ON pg_catalog.pg_index TO PUBLIC" \
    -c "ALTER TABLE orders ADD COLUMN extra int" \
    -c "UPDATE orders SET note = 'full' WHERE id = 8" || wh_fail "identity full update 2 failed"
wh_wait_until 60 last_update_has '"key":{"id":8},' ||
    wh_fail "identity full: the key is not the primary key {\"id\":8} for the least-privilege role: $(last_update | cut -c1-200)"
wh_wait_until 30 last_update_has '"key":{"id":8},"before":{"id":8,"note":"n8","extra":null}' ||
    wh_fail "identity full: before is not the whole old row: $(last_update | cut -c1-200)"

# 4: REPLICATION revoked while running: state error with the cause, no restart
pg_psql -c "ALTER ROLE wh NOREPLICATION" || wh_fail "alter role failed"
wh_terminate_walsender walhook >/dev/null
not_ready_with() { # PATTERN: /readyz is 503 and names it
    local body code
    body=$(curl -s --max-time 3 -w '\n%{http_code}' "$READYZ")
    code=${body##*$'\n'}
    [ "$code" = 503 ] && grep -qE -- "$1" <<<"$body"
}
wh_wait_until 60 not_ready_with 'replication role' ||
    { curl -s "$READYZ" >&2; wh_fail "/readyz does not name the missing REPLICATION attribute"; }
"$BIN/walhook" status --config <(printf 'data_dir = "%s";\nadmin = { listen = "127.0.0.1:%s"; };\n' \
    "$WH_TMP/data" "$APORT") >"$WH_TMP/status.out" 2>&1
grep -E '^ingestor \(default\) +error +no +.*replication role' "$WH_TMP/status.out" >/dev/null ||
    { cat "$WH_TMP/status.out" >&2; wh_fail "walhook status does not show state error with the cause"; }
"$BIN/walhook" health --daemon ingestor -c <(printf 'data_dir = "%s";\n' "$WH_TMP/data") >/dev/null ||
    wh_fail "walhook health: the ingestor in state error still answers (exit 0 expected)"
"$BIN/walhook" health --daemon ingestor --ready -c <(printf 'data_dir = "%s";\n' "$WH_TMP/data") >/dev/null &&
    wh_fail "walhook health --ready: exit 0 for an ingestor in state error"
wh_metric "http://127.0.0.1:$APORT/metrics" walhook_ingestor_state | grep -qx 2 ||
    wh_fail "walhook_ingestor_state is not 2 (error)"
[ "$(wh_child_pid "$UP" ingestor)" = "$ING" ] || wh_fail "the ingestor was restarted (state error must retry in place)"
pg_psql -c "ALTER ROLE wh REPLICATION" || wh_fail "alter role failed"
wh_wait_http "$READYZ" 90 || wh_fail "not ready again after REPLICATION was granted back"
[ "$(wh_child_pid "$UP" ingestor)" = "$ING" ] || wh_fail "the ingestor was restarted during recovery"
grep -q 'the source works again' "$WH_TMP/walhook.log" || wh_fail "no recovery line in the log"

# 4b: the role's password changed: a configuration error, state error (not
# connecting) with libpq's cause, retried in place; back once it matches
state_is() { [ "$(wh_metric "http://127.0.0.1:$APORT/metrics" walhook_ingestor_state)" = "$1" ]; }
pg_psql -c "ALTER ROLE wh PASSWORD 'pw-lp-2'" >/dev/null || wh_fail "alter password failed"
wh_terminate_walsender walhook >/dev/null
wh_wait_until 60 not_ready_with 'password authentication failed for user' ||
    { curl -s "$READYZ" >&2; wh_fail "/readyz does not name the failed password authentication"; }
wh_wait_until 10 state_is 2 ||
    wh_fail "wrong password: walhook_ingestor_state is $(wh_metric "http://127.0.0.1:$APORT/metrics" walhook_ingestor_state), not 2 (error)"
curl -s --max-time 3 "$READYZ" | grep -q '"state":"error (default)"' ||
    { curl -s "$READYZ" >&2; wh_fail "wrong password: /readyz does not show state error"; }
pg_psql -c "ALTER ROLE wh PASSWORD 'pw-lp-1'" >/dev/null || wh_fail "alter password failed"
wh_wait_http "$READYZ" 60 || wh_fail "not ready again after the password was set back"
[ "$(wh_child_pid "$UP" ingestor)" = "$ING" ] || wh_fail "the ingestor was restarted (wrong password)"

# 5: the publication dropped during the run: state error naming it as
# missing; the failed attempt to create it comes second
psql -X -q -v ON_ERROR_STOP=1 -d "$SUPER_SHOP" -c "DROP PUBLICATION walhook" \
    -c "INSERT INTO orders VALUES (1000, 'after drop')" || wh_fail "drop failed"
wh_wait_until 60 not_ready_with 'publication \\"walhook\\" does not exist \(dropped\?\), and creating it failed: .*permission denied' ||
    { curl -s "$READYZ" >&2; wh_fail "/readyz does not name the dropped publication first"; }
[ "$(wh_child_pid "$UP" ingestor)" = "$ING" ] || wh_fail "the ingestor was restarted after the publication drop"
# 5b: created again: the row written while it was missing cannot be
# decoded through the slot; the cause says so and how to skip it
psql -X -q -v ON_ERROR_STOP=1 -d "$SUPER_SHOP" -c "CREATE PUBLICATION walhook FOR TABLE public.orders" ||
    wh_fail "create publication failed"
LSN=$(psql -X -At -d "$SUPER_SHOP" -c "SELECT pg_current_wal_lsn()")
psql -X -q -v ON_ERROR_STOP=1 -d "$SUPER_SHOP" -c "INSERT INTO orders VALUES (1001, 'after create')" ||
    wh_fail "insert failed"
wh_wait_until 60 not_ready_with 'does not exist.*it exists now, but changes after the slot.s position [0-9A-F/]+ were written while it was missing.*pg_replication_slot_advance' ||
    { curl -s "$READYZ" >&2; wh_fail "/readyz does not explain the re-created publication"; }
# the way out it gives: advance the slot past the CREATE PUBLICATION (it
# is inactive between the ingestor's attempts)
_advance() { psql -X -q -At -d "$SUPER_SHOP" -c "SELECT pg_replication_slot_advance('walhook', '$LSN')" >/dev/null 2>&1; }
wh_wait_until 30 _advance || wh_fail "pg_replication_slot_advance never succeeded"
wh_wait_http "$READYZ" 90 || wh_fail "not ready again after the slot was advanced past the missing publication"
wh_wait_until 30 grep -q '"id":1001' "$WH_TMP/received.jsonl" || wh_fail "row 1001 (after the re-create) was not delivered"
grep -qE '"id":1000[,}]' "$WH_TMP/received.jsonl" && wh_fail "row 1000 (written while the publication was missing) was delivered"
[ "$(wh_child_pid "$UP" ingestor)" = "$ING" ] || wh_fail "the ingestor was restarted after the publication drop"
grep -q 'pw-lp-' "$WH_TMP/walhook.log" && wh_fail "the password is in the log"
wh_kill walhook TERM
wh_wait_until 20 bash -c "! kill -0 $UP 2>/dev/null" || wh_fail "walhook up did not stop"

# 6: `walhook setup --print-sql` for a fresh role and database, applied as printed
pg_psql -c "CREATE ROLE app2 LOGIN" -c "CREATE DATABASE shop2 OWNER app2" \
    -c "REVOKE CONNECT ON DATABASE shop2 FROM PUBLIC" -c "GRANT CONNECT ON DATABASE shop2 TO app2" || wh_fail "setup 2"
psql -X -q -v ON_ERROR_STOP=1 -d "postgresql://app2@127.0.0.1:$PG_PORT/shop2" \
    -c "CREATE TABLE items (id int PRIMARY KEY)" || wh_fail "table 2"
DSN2="postgresql://wh2:pw-not-printed@127.0.0.1:$PG_PORT/shop2"
"$BIN/walhook" setup --print-sql --source "$DSN2" --tables public.items --slot wh2 \
    --publication wh2 >"$WH_TMP/setup.sql" || wh_fail "setup --print-sql failed"
grep -q 'pw-not-printed' "$WH_TMP/setup.sql" && wh_fail "setup --print-sql printed the password"
grep -q 'CREATE ROLE wh2 WITH LOGIN REPLICATION;' "$WH_TMP/setup.sql" || wh_fail "no CREATE ROLE"
grep -q 'CREATE PUBLICATION wh2 FOR TABLE public.items;' "$WH_TMP/setup.sql" || wh_fail "no CREATE PUBLICATION"
grep -v '^\\' "$WH_TMP/setup.sql" | psql -X -q -v ON_ERROR_STOP=1 -d "postgresql://postgres@127.0.0.1:$PG_PORT/shop2" ||
    wh_fail "the printed setup SQL failed"
"$BIN/walhook" setup --check --source "postgresql://wh2@127.0.0.1:$PG_PORT/shop2" --tables public.items \
    --slot wh2 --publication wh2 >"$WH_TMP/check2.out" 2>&1 ||
    { cat "$WH_TMP/check2.out" >&2; wh_fail "the source set up by --print-sql does not pass the check"; }
wh_pass "least privilege: 2 rounds of named fixes, clean run, error states (REPLICATION, password, publication) and recovery, setup SQL"
