#!/usr/bin/env bash
# The admin REST API over real HTTP against a running stack (PostgreSQL,
# store, ingestor, dispatcher, admin): every route, the error contract
# (400/401/403/404/405/412/413/415, {"error":{"code","message","field"}}),
# ETag/If-Match and two concurrent PATCHes (exactly one wins, the other gets
# 412), If-Match on .../offset (SetOffset.expected_version, compared by the
# store), redaction, /v1/slots (an unreachable source is an "error" field of
# its tenant), docs/openapi.json against the server both ways, the walhook
# command (tables, --json, exit statuses), a generated token file when none
# is configured, and TLS with a self-signed certificate.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
wh_require_bins walhook walhook-store walhook-ingestor walhook-dispatcher walhook-admin \
    walhook-receiver tests/wh_statectl
command -v jq >/dev/null || wh_fail "jq is missing (scripts/install-deps.sh --test)"
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"

RPORT=$(wh_free_port)
APORT=$(wh_free_port)
CONF="$WH_TMP/walhook.conf"
DATA="$WH_TMP/data"
mkdir -m 700 "$DATA"
wh_write_conf "$CONF" "$PG_DSN" "$DATA" "$APORT" "http://127.0.0.1:$RPORT/hook"
ADMIN_TOKEN=admin-token-$RANDOM-0123456789
READ_TOKEN=read-token-$RANDOM-0123456789
SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
A="http://127.0.0.1:$APORT"

wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --out "$WH_TMP/received.jsonl"
wh_spawn store "$BIN/walhook-store" -c "$CONF"
sleep 0.3
wh_spawn ingestor "$BIN/walhook-ingestor" -c "$CONF"
wh_spawn dispatcher "$BIN/walhook-dispatcher" -c "$CONF"
WALHOOK_ADMIN_ADMIN_TOKEN=$ADMIN_TOKEN WALHOOK_ADMIN_READ_TOKEN=$READ_TOKEN \
    wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
wh_wait_http "$A/livez" 30 || wh_fail "the admin does not answer /livez"
wh_wait_slot_active walhook 60 || wh_fail "the ingestor never started streaming"

CODE=""
BODY=""
# api METHOD PATH [BODY] [TOKEN] [extra curl args...]: sets CODE, BODY, and
# the response headers in $WH_TMP/h.
api() {
    local method=$1 path=$2 body=${3:-} tok=${4-$ADMIN_TOKEN}
    shift 4 2>/dev/null || shift $#
    local args=(-sS -X "$method" -o "$WH_TMP/b" -D "$WH_TMP/h" -w '%{http_code}' --max-time 20)
    [ -n "$tok" ] && args+=(-H "Authorization: Bearer $tok")
    [ -n "$body" ] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
    CODE=$(curl "${args[@]}" "$@" "$A$path") || CODE=000
    BODY=$(cat "$WH_TMP/b" 2>/dev/null)
}
expect() { # CODE MESSAGE
    [ "$CODE" = "$1" ] || wh_fail "$2: expected $1, got $CODE: $BODY"
}
expect_error() { # CODE ERRCODE [FIELD] MESSAGE
    local want=$1 ecode=$2 field=$3 msg=$4
    expect "$want" "$msg"
    [ "$(jq -r .error.code <<<"$BODY")" = "$ecode" ] || wh_fail "$msg: error.code is not $ecode: $BODY"
    [ -n "$(jq -r .error.message <<<"$BODY")" ] || wh_fail "$msg: no error.message: $BODY"
    if [ -n "$field" ]; then
        jq -e --arg f "$field" '.error.field | contains($f)' <<<"$BODY" >/dev/null ||
            wh_fail "$msg: error.field does not name $field: $BODY"
    fi
}
etag() { sed -n 's/^[Ee][Tt][Aa][Gg]: *\([^[:space:]]*\).*/\1/p' "$WH_TMP/h"; }

# ---- probes open, API closed ----
api GET /livez "" ""; expect 200 "/livez without a token"
api GET /metrics "" ""; expect 200 "/metrics without a token"
api GET /readyz "" ""
[ "$CODE" = 200 ] || [ "$CODE" = 503 ] || wh_fail "/readyz answered $CODE"
api GET /v1/tenants "" ""
expect_error 401 unauthorized Authorization "GET without a token"
grep -qi '^WWW-Authenticate: Bearer' "$WH_TMP/h" || wh_fail "401 without WWW-Authenticate: Bearer"
api GET /v1/tenants "" "wrong-token-0123456789"; expect_error 401 unauthorized "" "a wrong token"
api GET /config "" ""; expect 401 "/config without a token"
api GET /v1/tenants "" "$READ_TOKEN"; expect 200 "GET with the read token"
api POST /v1/tenants/default/targets/t0/pause "" "$READ_TOKEN"
expect_error 403 forbidden "" "a write with the read token"
api GET /v1/nothing; expect_error 404 not_found "" "an unknown path"
api PUT /v1/tenants; expect_error 405 method_not_allowed "" "PUT /v1/tenants"
grep -qi '^Allow: GET, HEAD, POST' "$WH_TMP/h" || wh_fail "405 without Allow"
api DELETE /v1/settings; expect 405 "DELETE /v1/settings"

# ---- tenants ----
api GET /v1/tenants; expect 200 "GET /v1/tenants"
V1=$(etag)
[ -n "$V1" ] || wh_fail "GET /v1/tenants without ETag"
[ "$(jq -r '.tenants[0].name' <<<"$BODY")" = default ] || wh_fail "tenant default missing: $BODY"
api GET /v1/tenants/default; expect 200 "GET a tenant"
api GET /v1/tenants/nope; expect_error 404 not_found tenant "GET an unknown tenant"
api POST /v1/tenants '{"name":"far","source":{"dsn":"postgresql://u:pw-secret-77@127.0.0.1:1/x","slot":"far_slot"}}'
expect 201 "POST a tenant"
grep -q pw-secret-77 <<<"$BODY" && wh_fail "a DSN password came back: $BODY"
api POST /v1/tenants '{"name":"far","source":{"dsn":"postgresql://127.0.0.1:1/x"}}'
expect_error 409 conflict name "a duplicate tenant"
api POST /v1/tenants '{"name":"bad name","source":{"dsn":"postgresql://127.0.0.1:1/x"}}'
expect_error 400 bad_request "" "a bad tenant name"
api PATCH /v1/tenants/far '{"source":{"publication":"far_pub"}}'; expect 200 "PATCH a tenant"
[ "$(jq -r .source.publication <<<"$BODY")" = far_pub ] || wh_fail "PATCH tenant not applied: $BODY"
api PATCH /v1/tenants/far '{"source":{"port":5}}'; expect_error 400 bad_request source.port "an unknown source field"

# ---- slots: a reachable and an unreachable source ----
api GET /v1/slots "" "$READ_TOKEN"; expect 200 "GET /v1/slots"
jq -e '.slots[] | select(.tenant == "default") | .exists == true and (.lag_bytes | type) == "number" and .wal_status != null' \
    <<<"$BODY" >/dev/null || wh_fail "/v1/slots: no lag for the default tenant: $BODY"
jq -e '.slots[] | select(.tenant == "far") | .error | length > 0' <<<"$BODY" >/dev/null ||
    wh_fail "/v1/slots: the unreachable tenant has no error: $BODY"
grep -q pw-secret-77 <<<"$BODY" && wh_fail "/v1/slots shows a DSN password"
api DELETE /v1/tenants/far; expect 200 "DELETE a tenant"
api GET /v1/tenants/far; expect 404 "a deleted tenant"

# ---- targets ----
T=/v1/tenants/default/targets
api GET $T; expect 200 "GET targets"
[ "$(jq -r '.targets[0].name' <<<"$BODY")" = t0 ] || wh_fail "target t0 missing: $BODY"
api POST $T "{\"name\":\"t1\",\"url\":\"http://127.0.0.1:$RPORT/t1\",\"secrets\":[\"$SECRET\"]}"
expect 201 "POST a target"
jq -e '.start_position | test("^[0-9A-F]+/[0-9A-F]+:[0-9]+$")' <<<"$BODY" >/dev/null ||
    wh_fail "a new target without start_position: $BODY"
grep -q "${SECRET#whsec_}" <<<"$BODY" && wh_fail "a secret came back: $BODY"
api POST $T "{\"name\":\"t2\",\"url\":\"http://127.0.0.1:$RPORT/t2\",\"start\":\"0/0:0\"}"
expect 201 "POST a target with a start position"
[ "$(jq -r .start_position <<<"$BODY")" = "0/0:0" ] || wh_fail "start position not used: $BODY"
api POST $T "{\"name\":\"t1\",\"url\":\"http://127.0.0.1:$RPORT/x\"}"; expect_error 409 conflict name "a duplicate target"
api POST $T '{"name":"t3","url":"gopher://x"}'; expect_error 400 bad_request url "a bad URL"
api POST $T '{"name":"t3","url":"http://h/","colour":"red"}'; expect_error 400 bad_request colour "an unknown field"
api POST $T '{"name":"t3","url":'; expect_error 400 bad_request body "broken JSON"
api POST $T "" "$ADMIN_TOKEN" -H 'Content-Type: text/plain' --data-binary '{"name":"t3","url":"http://h/"}'
expect_error 415 unsupported_media_type "" "a text/plain body"
head -c 1100000 /dev/zero | tr '\0' 'x' >"$WH_TMP/big"
api POST $T "" "$ADMIN_TOKEN" -H 'Content-Type: application/json' --data-binary @"$WH_TMP/big"
expect_error 413 payload_too_large "" "a 1.1 MB body"
api GET $T/t1; expect 200 "GET a target"
api GET $T/nope; expect_error 404 not_found target "GET an unknown target"
api GET /v1/tenants/nope/targets/t1; expect 404 "a target of an unknown tenant"

# ETag / If-Match, and two concurrent PATCHes with the same If-Match
api GET $T/t1; TAG=$(etag)
api PATCH $T/t1 '{"batch_max_events":50}' "$ADMIN_TOKEN" -H "If-Match: $TAG"; expect 200 "PATCH with a current If-Match"
api PATCH $T/t1 '{"batch_max_events":60}' "$ADMIN_TOKEN" -H "If-Match: $TAG"
expect_error 412 precondition_failed "" "PATCH with a stale If-Match"
api GET $T/t1; TAG=$(etag)
pids=()
for i in 1 2; do
    curl -sS -o /dev/null -w '%{http_code}\n' -X PATCH -H "Authorization: Bearer $ADMIN_TOKEN" \
        -H 'Content-Type: application/json' -H "If-Match: $TAG" \
        --data-binary "{\"url\":\"http://127.0.0.1:$RPORT/race$i\"}" "$A$T/t1" >"$WH_TMP/race$i" &
    pids[$i]=$!
done
wait "${pids[1]}" "${pids[2]}"
races=$(cat "$WH_TMP/race1" "$WH_TMP/race2" | sort | tr '\n' ' ')
[ "$races" = "200 412 " ] || wh_fail "two concurrent PATCHes with one If-Match answered: $races"
# without If-Match both apply, one after the other
for i in 1 2; do
    curl -sS -o /dev/null -w '%{http_code}\n' -X PATCH -H "Authorization: Bearer $ADMIN_TOKEN" \
        -H 'Content-Type: application/json' --data-binary "{\"batch_max_events\":$((70 + i))}" \
        "$A$T/t1" >"$WH_TMP/race$i" &
    pids[$i]=$!
done
wait "${pids[1]}" "${pids[2]}"
races=$(cat "$WH_TMP/race1" "$WH_TMP/race2" | sort | tr '\n' ' ')
[ "$races" = "200 200 " ] || wh_fail "two concurrent PATCHes without If-Match answered: $races"

api POST $T/t1/pause; expect 200 "pause"
[ "$(jq -r .paused <<<"$BODY")" = true ] || wh_fail "pause did not pause: $BODY"
api POST $T/t1/resume; expect 200 "resume"
[ "$(jq -r .paused <<<"$BODY")" = false ] || wh_fail "resume did not resume: $BODY"
api POST $T/nope/pause; expect 404 "pause an unknown target"
api POST $T/t1/offset '{"position":"0/10:1"}'; expect 200 "offset to a position"
[ "$(jq -r .position <<<"$BODY")" = "0/10:1" ] || wh_fail "offset not moved: $BODY"
jq -e 'has("previous")' <<<"$BODY" >/dev/null || wh_fail "offset answer without previous: $BODY"
api POST $T/t1/offset '{"to":"end"}'; expect 200 "offset to the end"
[ "$(jq -r .previous <<<"$BODY")" = "0/10:1" ] || wh_fail "offset previous is not the old position: $BODY"
api POST $T/t1/offset '{"position":"later"}'; expect_error 400 bad_request position "a bad position"
# If-Match on .../offset: a stale one is 412 and moves nothing; the admin
# sends it to the store as SetOffset.expected_version, which the store
# compares under its state lock when it moves the offset (checked straight
# over IPC below: a write landing after the admin's own read is refused
# there). Paused, so no commit of the dispatcher moves the offset meanwhile.
api POST $T/t1/pause; expect 200 "pause for the offset If-Match checks"
api GET $T/t1; TAG=$(etag)
api POST $T/t1/offset '{"position":"0/20:1"}' "$ADMIN_TOKEN" -H "If-Match: $TAG"
expect 200 "offset with a current If-Match"
[ "$(etag)" = "$TAG" ] || wh_fail "the offset answer's ETag is not the If-Match version: $(etag), $TAG"
api PATCH $T/t1 '{"batch_max_events":80}'; expect 200 "a state write after the ETag was read"
api POST $T/t1/offset '{"position":"0/30:1"}' "$ADMIN_TOKEN" -H "If-Match: $TAG"
expect_error 412 precondition_failed If-Match "offset with a stale If-Match"
api POST $T/t1/offset '{"position":"0/40:1"}'; expect 200 "offset without If-Match"
[ "$(jq -r .previous <<<"$BODY")" = "0/20:1" ] || wh_fail "a stale If-Match moved the offset: $BODY"
STATECTL=("$BIN/tests/wh_statectl" -c "$CONF")
V=$("${STATECTL[@]}" version) || wh_fail "wh_statectl version"
"${STATECTL[@]}" set-offset default t1 0/50:1 $((V - 1)) >"$WH_TMP/setoff.log" 2>&1 &&
    wh_fail "SetOffset with an older expected_version moved the offset: $(cat "$WH_TMP/setoff.log")"
grep -q "status 412: .*version conflict: current is $V, the request names $((V - 1))" \
    "$WH_TMP/setoff.log" || wh_fail "SetOffset with an older expected_version: $(cat "$WH_TMP/setoff.log")"
[ "$("${STATECTL[@]}" offset default t1)" = "64 1" ] ||
    wh_fail "a refused SetOffset moved the offset: $("${STATECTL[@]}" offset default t1)"
"${STATECTL[@]}" set-offset default t1 0/50:1 "$V" >"$WH_TMP/setoff.log" 2>&1 ||
    wh_fail "SetOffset at the current version: $(cat "$WH_TMP/setoff.log")"
[ "$("${STATECTL[@]}" offset default t1)" = "80 1" ] ||
    wh_fail "SetOffset at the current version did not move: $("${STATECTL[@]}" offset default t1)"
api POST $T/t1/resume; expect 200 "resume after the offset If-Match checks"

# ---- settings ----
api GET /v1/settings "" "$READ_TOKEN"; expect 200 "GET settings"
jq -e '.settings["ingestor.flush_bytes"] | type == "number"' <<<"$BODY" >/dev/null || wh_fail "settings: $BODY"
api PATCH /v1/settings '{"ingestor.flush_bytes":1048576,"ingestor.flush_age_us":800}'; expect 200 "PATCH runtime settings"
[ "$(jq -r '.settings["ingestor.flush_bytes"]' <<<"$BODY")" = 1048576 ] || wh_fail "setting not applied: $BODY"
api PATCH /v1/settings '{"store.workers":8}'; expect_error 400 bad_request store.workers "a non-runtime setting"
api PATCH /v1/settings '{"no.such":1}'; expect_error 400 bad_request no.such "an unknown setting"
api PATCH /v1/settings '{"ingestor.flush_bytes":-1}'; expect_error 400 bad_request ingestor.flush_bytes "out of range"
api GET /config "" "$READ_TOKEN"; expect 200 "GET /config"
[ "$(jq -r '.["ingestor.flush_bytes"]' <<<"$BODY")" = 1048576 ] || wh_fail "/config does not show the runtime setting: $BODY"
grep -q "${SECRET#whsec_}\|$ADMIN_TOKEN\|$READ_TOKEN" <<<"$BODY" && wh_fail "/config shows a secret or token"

# ---- OpenAPI: every documented route answers, every route is documented ----
api GET /v1/openapi.json "" "$READ_TOKEN"; expect 200 "GET /v1/openapi.json"
cp "$WH_TMP/b" "$WH_TMP/openapi.json"
cmp -s "$WH_TMP/openapi.json" "$ROOT/docs/openapi.json" || wh_fail "/v1/openapi.json differs from docs/openapi.json"
[ "$(jq -r .openapi "$WH_TMP/openapi.json")" = 3.1.0 ] || wh_fail "not an OpenAPI 3.1 document"
checked=0
while read -r path method; do
    p=${path//\{tenant\}/default}
    p=${p//\{target\}/t2}
    m=$(tr '[:lower:]' '[:upper:]' <<<"$method")
    body=""
    case "$m $path" in
    "POST /v1/tenants") body='{"name":"oa","source":{"dsn":"postgresql://127.0.0.1:1/x"}}' ;;
    "POST /v1/tenants/{tenant}/targets") body="{\"name\":\"oa\",\"url\":\"http://127.0.0.1:$RPORT/oa\"}" ;;
    "PATCH /v1/tenants/{tenant}") body='{"source":{"tables":""}}' ;;
    "PATCH /v1/tenants/{tenant}/targets/{target}") body='{"paused":false}' ;;
    "POST /v1/tenants/{tenant}/targets/{target}/offset") body='{"to":"end"}' ;;
    "PATCH /v1/settings") body='{"log_level":"info"}' ;;
    "DELETE "*) continue ;; # answered above; keep the fixtures
    esac
    api "$m" "$p" "$body"
    case "$CODE" in 404 | 405 | 000) wh_fail "documented $m $path answered $CODE: $BODY" ;; esac
    checked=$((checked + 1))
done < <(jq -r '.paths | to_entries[] | .key as $p | .value | keys[] | select(. != "parameters") | "\($p) \(.)"' "$WH_TMP/openapi.json")
# every route the server answers (on names that do not exist, so nothing is
# changed; a 404 that names no field is "no such endpoint") is documented
for p in / /livez /readyz /metrics /config /v1/openapi.json /v1/tenants /v1/tenants/zz \
    /v1/tenants/zz/targets /v1/tenants/zz/targets/zz /v1/tenants/zz/targets/zz/pause \
    /v1/tenants/zz/targets/zz/resume /v1/tenants/zz/targets/zz/offset /v1/settings /v1/slots \
    /v1 /v1/tenants/zz/targets/zz/zz /v1/tenants/zz/zz; do
    for m in GET POST PATCH DELETE PUT; do
        [ "$m $p" = "POST /v1/tenants" ] && continue
        api "$m" "$p" '{"zz":1}'
        [ "$CODE" = 405 ] && continue
        [ "$CODE" = 404 ] && [ "$(jq -r '.error.field // ""' <<<"$BODY")" = "" ] && continue
        key=$(tr '[:upper:]' '[:lower:]' <<<"$m")
        tp=$(sed -e 's|/v1/tenants/zz/targets/zz|/v1/tenants/{tenant}/targets/{target}|' \
            -e 's|/v1/tenants/zz|/v1/tenants/{tenant}|' <<<"$p")
        jq -e --arg p "$tp" --arg m "$key" '.paths[$p][$m]' "$WH_TMP/openapi.json" >/dev/null ||
            wh_fail "$m $p answered $CODE but is not in docs/openapi.json"
    done
done
for a in pause resume offset; do
    api GET "$T/t2/$a"; expect 405 "GET $T/t2/$a"
done

# ---- the walhook command ----
export WALHOOK_ADMIN_TOKEN=$ADMIN_TOKEN
W=("$BIN/walhook")
out=$("${W[@]}" targets list -c "$CONF") || wh_fail "walhook targets list failed"
grep -q '^TARGET' <<<"$out" && grep -q '^t1 ' <<<"$out" || wh_fail "walhook targets list: $out"
out=$("${W[@]}" targets list -c "$CONF" --json) || wh_fail "walhook targets list --json failed"
jq -e '.targets | length >= 3' <<<"$out" >/dev/null || wh_fail "walhook --json: $out"
"${W[@]}" targets add cli1 "http://127.0.0.1:$RPORT/cli1" batch_max_events=5 -c "$CONF" >/dev/null ||
    wh_fail "walhook targets add"
"${W[@]}" targets pause cli1 -c "$CONF" | grep -q 'paused: true' || wh_fail "walhook targets pause"
"${W[@]}" targets resume cli1 -c "$CONF" >/dev/null || wh_fail "walhook targets resume"
"${W[@]}" targets set cli1 url="http://127.0.0.1:$RPORT/cli1b" -c "$CONF" | grep -q cli1b ||
    wh_fail "walhook targets set"
"${W[@]}" targets offset cli1 end -c "$CONF" | grep -q '^previous: ' || wh_fail "walhook targets offset"
"${W[@]}" targets rm cli1 -c "$CONF" >/dev/null || wh_fail "walhook targets rm"
"${W[@]}" settings set ingestor.flush_age_us=600 --admin "$A" | grep -q 'ingestor.flush_age_us *600' ||
    wh_fail "walhook settings set"
"${W[@]}" tenants list --admin "$A" | grep -q '^default ' || wh_fail "walhook tenants list"
"${W[@]}" slots -c "$CONF" | grep -q '^default ' || wh_fail "walhook slots"
rc=0; err=$("${W[@]}" targets get nope -c "$CONF" 2>&1) || rc=$?
[ "$rc" = 2 ] && grep -q "404 not_found: tenant 'default' has no target 'nope'" <<<"$err" ||
    wh_fail "walhook on a 404: exit $rc, $err"
rc=0; "${W[@]}" targets frobnicate -c "$CONF" 2>/dev/null || rc=$?
[ "$rc" = 2 ] || wh_fail "walhook with a bad subcommand: exit $rc"
rc=0; WALHOOK_ADMIN_TOKEN=$READ_TOKEN "${W[@]}" targets rm t1 -c "$CONF" 2>/dev/null || rc=$?
[ "$rc" = 2 ] || wh_fail "walhook with a read token on a write: exit $rc"
rc=0; "${W[@]}" slots --admin "127.0.0.1:$(wh_free_port)" 2>/dev/null || rc=$?
[ "$rc" = 1 ] || wh_fail "walhook against no admin: exit $rc"
unset WALHOOK_ADMIN_TOKEN

# ---- no token configured: one is generated into data_dir/admin.token (0600) ----
APORT2=$(wh_free_port)
DATA2="$WH_TMP/data2"
mkdir -m 700 "$DATA2"
wh_spawn admin2 env WALHOOK_DATA_DIR="$DATA2" WALHOOK_STORE_ENDPOINT="ipc://$DATA/store.sock" \
    WALHOOK_ADMIN_LISTEN="127.0.0.1:$APORT2" "$BIN/walhook-admin" -c "$CONF"
wh_wait_http "http://127.0.0.1:$APORT2/livez" 30 || wh_fail "admin without tokens did not start"
[ -s "$DATA2/admin.token" ] || wh_fail "no generated $DATA2/admin.token"
[ "$(stat -c %a "$DATA2/admin.token")" = 600 ] || wh_fail "admin.token is not mode 0600"
grep -q "generated one into $DATA2/admin.token" "$WH_TMP/admin2.log" || wh_fail "the token path is not logged"
grep -qf "$DATA2/admin.token" "$WH_TMP/admin2.log" && wh_fail "the generated token is in the log"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$APORT2/v1/tenants")" = 401 ] ||
    wh_fail "admin without tokens answers without a token"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(cat "$DATA2/admin.token")" \
    "http://127.0.0.1:$APORT2/v1/tenants")" = 200 ] || wh_fail "the generated token is refused"
WALHOOK_DATA_DIR="$DATA2" "$BIN/walhook" tenants list --admin "127.0.0.1:$APORT2" | grep -q '^default ' ||
    wh_fail "walhook does not use <data_dir>/admin.token"
wh_kill admin2

# ---- TLS with a self-signed certificate ----
if command -v openssl >/dev/null; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
        -addext "subjectAltName=IP:127.0.0.1" -keyout "$WH_TMP/key.pem" -out "$WH_TMP/cert.pem" \
        >/dev/null 2>&1 || wh_fail "openssl cannot make a certificate"
    APORT3=$(wh_free_port)
    wh_spawn admin3 env WALHOOK_ADMIN_LISTEN="127.0.0.1:$APORT3" WALHOOK_ADMIN_TLS_CERT="$WH_TMP/cert.pem" \
        WALHOOK_ADMIN_TLS_KEY="$WH_TMP/key.pem" WALHOOK_ADMIN_READ_TOKEN=$READ_TOKEN \
        "$BIN/walhook-admin" -c "$CONF"
    wh_wait_until 30 curl -fsS -o /dev/null --cacert "$WH_TMP/cert.pem" "https://127.0.0.1:$APORT3/livez" ||
        wh_fail "the admin does not answer HTTPS"
    [ "$(curl -sS --cacert "$WH_TMP/cert.pem" -H "Authorization: Bearer $READ_TOKEN" \
        "https://127.0.0.1:$APORT3/v1/tenants" | jq -r '.tenants[0].name')" = default ] ||
        wh_fail "GET over HTTPS"
    curl -s -o /dev/null "http://127.0.0.1:$APORT3/livez" && wh_fail "plain HTTP answered on the TLS port"
    WALHOOK_ADMIN_TOKEN=$READ_TOKEN "$BIN/walhook" tenants list --admin "https://127.0.0.1:$APORT3" \
        --cacert "$WH_TMP/cert.pem" | grep -q '^default ' || wh_fail "walhook over HTTPS"
    rc=0; WALHOOK_ADMIN_TLS_CERT="$WH_TMP/cert.pem" "$BIN/walhook-admin" -c "$CONF" \
        >"$WH_TMP/notls.log" 2>&1 || rc=$?
    [ "$rc" = 2 ] && grep -q "admin.tls_key" "$WH_TMP/notls.log" ||
        wh_fail "a certificate without a key was not refused by name (exit $rc)"
    wh_kill admin3
    TLS="TLS checked"
else
    TLS="TLS skipped (no openssl)"
fi

# the daemons survived all of it
for d in store ingestor dispatcher admin; do
    wh_alive "$d" || wh_fail "$d died"
done
wh_pass "every route over HTTP: 400/401/403/404/405/409/412/413/415 with error bodies, concurrent PATCHes (one 412), $checked documented operations answered, CLI exit statuses, generated token, $TLS"
