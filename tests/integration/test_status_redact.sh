#!/usr/bin/env bash
# The open status page and /readyz (no token) must not disclose what a
# libpq error names of the source: its host, port, database and user.
# A real PostgreSQL, the store and the admin; the tenant's DSN names a
# database that does not exist, so the admin's slot query fails with
# 'connection to server at "127.0.0.1", port N failed: FATAL: database
# "..." does not exist'. Without a token the page keeps the message's words
# ("does not exist") with the names masked; with a read token it shows them.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-admin
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
APORT=$(wh_free_port)
DATA="$WH_TMP/data"
mkdir -m 700 "$DATA"
CONF="$WH_TMP/walhook.conf"
DB=nosuchdb_$RANDOM
wh_write_conf "$CONF" "postgresql://postgres@127.0.0.1:$PG_PORT/$DB" "$DATA" "$APORT" \
    "http://127.0.0.1:1/x"
READ_TOKEN=read-token-$RANDOM-0123456789
A="http://127.0.0.1:$APORT"
wh_spawn store "$BIN/walhook-store" -c "$CONF"
WALHOOK_ADMIN_READ_TOKEN=$READ_TOKEN wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
wh_wait_http "$A/livez" 30 || wh_fail "the admin does not answer /livez"

page() { # [TOKEN]: the status page into $WH_TMP/page.html
    curl -s --max-time 20 ${1:+-H "Authorization: Bearer $1"} "$A/" >"$WH_TMP/page.html"
}
# the page lists the tenant once the store answers
has_error() { page "$READ_TOKEN" && grep -q "does not exist" "$WH_TMP/page.html"; }
wh_wait_until 30 has_error || wh_fail "the page never shows the source's error: $(grep -o 'class="bad">[^<]*' "$WH_TMP/page.html" | head -3)"
grep -q "$DB" "$WH_TMP/page.html" || wh_fail "with a read token the page does not name the database"
page
grep -q "does not exist" "$WH_TMP/page.html" ||
    wh_fail "without a token the page lost the error itself: $(grep -o 'class="bad">[^<]*' "$WH_TMP/page.html" | head -3)"
for leak in "$DB" ":$PG_PORT" "port $PG_PORT" "127.0.0.1"; do
    if grep -qF -- "$leak" "$WH_TMP/page.html"; then
        wh_fail "the open page shows '$leak': $(grep -F -- "$leak" "$WH_TMP/page.html" | head -2 | cut -c1-300)"
    fi
done
curl -s --max-time 20 "$A/readyz" >"$WH_TMP/readyz.json"
for leak in "$DB" "$DATA"; do
    if grep -qF -- "$leak" "$WH_TMP/readyz.json"; then
        wh_fail "the open /readyz shows '$leak': $(cut -c1-300 "$WH_TMP/readyz.json")"
    fi
done
wh_pass "the open page masks the source's host, port and database; a read token shows them"
