#!/usr/bin/env bash
# Tenants and replication slots over the admin REST API: a tenant that
# would take the slot another tenant uses on the same PostgreSQL server
# (another database of it, as slots belong to the whole server) is refused
# with 409 naming both tenants and the slot, when created and when patched;
# a tenant created without a slot gets its own ("walhook_" and its name),
# streams from it and delivers its own changes while the first tenant keeps
# its slot. Tenant names that start with '.' or '-' ("." and ".." among
# them) are refused with 400 naming the field.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
wh_require_bins walhook walhook-store walhook-ingestor walhook-dispatcher walhook-admin \
    walhook-receiver
command -v jq >/dev/null || wh_fail "jq is missing (scripts/install-deps.sh --test)"
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
pg_psql -c "CREATE DATABASE shop_b" >/dev/null || wh_fail "cannot create the second database"
DSN_B="${PG_DSN%/*}/shop_b"
pg_psql -c "CREATE TABLE items (id int PRIMARY KEY, v text); CREATE PUBLICATION walhook FOR ALL TABLES" \
    >/dev/null || wh_fail "table setup failed"
psql -X -q "$DSN_B" -c "CREATE TABLE items (id int PRIMARY KEY, v text)" >/dev/null ||
    wh_fail "table setup failed (shop_b)"
wh_up_receiver # tenant default on slot walhook, its target on $PORT
wh_start_receiver recv_b "$WH_TMP/b.jsonl"
RB=$WH_RPORT
A="http://127.0.0.1:$APORT"
wh_wait_until 20 test -s "$WH_TMP/data/admin.token" || wh_fail "no admin token"
TOKEN=$(grep -v '^read:' "$WH_TMP/data/admin.token" | head -n 1)
api() { wh_admin_api "$@"; }

# 1. tenant b on another database of the same server with tenant default's slot
api POST /v1/tenants "{\"name\":\"b\",\"source\":{\"dsn\":\"$DSN_B\",\"slot\":\"walhook\"}}"
[ "$CODE" = 409 ] || wh_fail "a second tenant on slot walhook of the same server: $CODE, not 409: $BODY"
MSG=$(jq -r .error.message <<<"$BODY")
grep -q "tenants 'default' and 'b' would share replication slot 'walhook'" <<<"$MSG" ||
    wh_fail "the 409 does not name both tenants and the slot: $BODY"
[ "$(jq -r .error.field <<<"$BODY")" = "tenants[1].source.slot" ] ||
    wh_fail "the 409 does not name the field: $BODY"
api GET /v1/tenants/b
[ "$CODE" = 404 ] || wh_fail "the refused tenant exists ($CODE): $BODY"

# 2. without a slot: its own, derived from its name
api POST /v1/tenants "{\"name\":\"b\",\"source\":{\"dsn\":\"$DSN_B\"},\"targets\":[{\"name\":\"tb\",\"url\":\"http://127.0.0.1:$RB/b\"}]}"
[ "$CODE" = 201 ] || wh_fail "tenant b without a slot: $CODE: $BODY"
[ "$(jq -r .source.slot <<<"$BODY")" = walhook_b ] || wh_fail "tenant b's slot is not walhook_b: $BODY"
wh_wait_slot_active walhook_b 60 || wh_fail "tenant b's slot walhook_b is not streaming"
wh_wait_slot_active walhook 10 || wh_fail "tenant default lost its slot"
for i in 1 2 3; do
    psql -X -q "$DSN_B" -c "INSERT INTO items VALUES ($i, 'b$i')" || wh_fail "insert into shop_b failed"
    pg_psql -c "INSERT INTO items VALUES ($i, 'a$i')" >/dev/null || wh_fail "insert failed"
done
got_b() { [ "$(grep -c '"op":"insert"' "$WH_TMP/b.jsonl" 2>/dev/null)" -ge 3 ]; }
got_a() { [ "$(grep -c '"op":"insert"' "$WH_TMP/got.jsonl" 2>/dev/null)" -ge 3 ]; }
wh_wait_until 60 got_b || wh_fail "tenant b's target did not get its 3 inserts"
wh_wait_until 60 got_a || wh_fail "tenant default's target did not get its 3 inserts"
grep -q '"id":"b:' "$WH_TMP/got.jsonl" && wh_fail "tenant default's target got tenant b's events"
grep -q '"v":"a[0-9]"' "$WH_TMP/b.jsonl" && wh_fail "tenant b's target got tenant default's rows"

# 3. a PATCH onto the other tenant's slot
api PATCH /v1/tenants/b '{"source":{"slot":"walhook"}}'
[ "$CODE" = 409 ] || wh_fail "PATCH of b onto slot walhook: $CODE, not 409: $BODY"
grep -q "'default' and 'b'" <<<"$BODY" || wh_fail "the 409 of the PATCH does not name both: $BODY"
api GET /v1/tenants/b
[ "$(jq -r .source.slot <<<"$BODY")" = walhook_b ] || wh_fail "b's slot changed: $BODY"

# 4. the derived slot of a name with characters a slot cannot have
api POST /v1/tenants '{"name":"Shop.EU-1","source":{"dsn":"postgresql://u@127.0.0.1:1/x"}}'
[ "$CODE" = 201 ] || wh_fail "tenant Shop.EU-1: $CODE: $BODY"
[ "$(jq -r .source.slot <<<"$BODY")" = walhook_shop_eu_1 ] || wh_fail "Shop.EU-1's slot: $BODY"
api DELETE /v1/tenants/Shop.EU-1
[ "$CODE" = 200 ] || wh_fail "DELETE Shop.EU-1: $CODE: $BODY"

# 5. names a path or the CLI cannot take
for n in . .. ... .x -x --x; do
    api POST /v1/tenants "{\"name\":\"$n\",\"source\":{\"dsn\":\"postgresql://u@127.0.0.1:1/x\",\"slot\":\"s_x\"}}"
    [ "$CODE" = 400 ] || wh_fail "tenant name '$n': $CODE, not 400: $BODY"
    jq -r .error.field <<<"$BODY" | grep -q 'name$' || wh_fail "the 400 for '$n' does not name the field: $BODY"
done
api GET /v1/tenants
[ "$(jq -r '[.tenants[].name] | join(",")' <<<"$BODY")" = "default,b" ] ||
    wh_fail "unexpected tenants: $BODY"
wh_pass "a shared slot refused with 409 naming both tenants (POST and PATCH); a tenant without a slot got walhook_<name> and delivered its own changes; names starting with '.' or '-' refused"
