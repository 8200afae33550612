#!/usr/bin/env bash
# A DSN's password never leaves through libpq's messages. libpq quotes a URI
# it cannot parse (an empty IPv6 host "[]", a character after "]", a bad
# percent-escape in the password) whole or its password alone. Such a DSN is
# refused with an error naming the problem without quoting it: by `walhook
# setup --check` and `walhook up` (stderr), and by the admin's tenants API
# (400). Meanwhile the running pipeline (whose own DSN has a password,
# ignored by trust authentication) shows no marker password in any log, in
# /v1/slots, /v1/tenants, the status page, /readyz or `walhook slots`.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_items_conf
GOOD="postgresql://postgres:GOODPWMARK@127.0.0.1:$PG_PORT/postgres"
BAD=("postgresql://walhook:BADPW1MARK@[]:5432/db"
    "postgresql://walhook:BADPW2MARK@[::1]x:5432/db"
    "postgresql://walhook:BAD%zzPW3MARK@127.0.0.1:1/db")
MARKS='GOODPWMARK|BADPW[0-9]MARK|PW3MARK'

# 1. the command line, no server needed
for i in "${!BAD[@]}"; do
    out="$WH_TMP/setup_$i.txt"
    "$BIN/walhook" setup --check --source "${BAD[$i]}" >"$out" 2>&1 &&
        wh_fail "walhook setup --check accepted ${BAD[$i]}"
    grep -q "source.dsn" "$out" || wh_fail "setup --check does not name source.dsn: $(cat "$out")"
    out="$WH_TMP/up_$i.txt"
    timeout 30 "$BIN/walhook" up --source "${BAD[$i]}" --target http://127.0.0.1:1/h \
        --data "$WH_TMP/bad$i" --admin "127.0.0.1:$(wh_free_port)" >"$out" 2>&1 &&
        wh_fail "walhook up accepted ${BAD[$i]}"
done

# 2. a running pipeline; the bad DSNs through the tenants API
sed -i "s|dsn = \"[^\"]*\"|dsn = \"$GOOD\"|" "$CONF"
grep -q GOODPWMARK "$CONF" || wh_fail "the configuration has no DSN to replace"
wh_up "$CONF" "$APORT"
A="http://127.0.0.1:$APORT"
TOK=$(cat "$WH_TMP/data/admin.token")
H=(-H "Authorization: Bearer $TOK" -H "Content-Type: application/json")
for i in "${!BAD[@]}"; do
    body="{\"name\":\"t$i\",\"source\":{\"dsn\":\"${BAD[$i]}\",\"slot\":\"t$i\",\"publication\":\"walhook\"}}"
    code=$(curl -s -o "$WH_TMP/post_$i.json" -w '%{http_code}' -X POST "${H[@]}" -d "$body" \
        "$A/v1/tenants")
    [ "$code" = 400 ] || wh_fail "POST /v1/tenants with ${BAD[$i]}: HTTP $code, not 400: $(cat "$WH_TMP/post_$i.json")"
    grep -q "source.dsn" "$WH_TMP/post_$i.json" ||
        wh_fail "the 400 does not name source.dsn: $(cat "$WH_TMP/post_$i.json")"
done
sleep 4 # the admin's slot queries and the ingestors' attempts, had a tenant been added
curl -s "${H[@]}" "$A/v1/slots" >"$WH_TMP/slots.json"
curl -s "${H[@]}" "$A/v1/tenants" >"$WH_TMP/tenants.json"
curl -s "$A/" >"$WH_TMP/page.html"
curl -s "$A/readyz" >"$WH_TMP/readyz.json"
WALHOOK_ADMIN_TOKEN=$TOK "$BIN/walhook" slots --admin "$A" >"$WH_TMP/cli_slots.txt" 2>&1
grep -q '"slot"' "$WH_TMP/slots.json" || wh_fail "/v1/slots: $(cat "$WH_TMP/slots.json")"
wh_stop_all
hits=$(grep -l -E "$MARKS" "$WH_TMP"/*.log "$WH_TMP"/*.txt "$WH_TMP"/*.json "$WH_TMP"/*.html)
if [ -n "$hits" ]; then
    grep -h -o -E ".{0,100}($MARKS).{0,20}" $hits | head -n 5
    wh_fail "a DSN password in: $(echo $hits | xargs -n1 basename | tr '\n' ' ')"
fi
wh_pass "3 unparsable DSNs refused (setup --check, up, API 400) without their password; none in logs, /v1/slots, /, /readyz"
