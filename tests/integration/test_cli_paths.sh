#!/usr/bin/env bash
# The walhook command against a real store and admin: (1) the admin token
# never goes to a proxy named by the environment (http_proxy, HTTPS_PROXY,
# ALL_PROXY), only to one named for it (--proxy, WALHOOK_ADMIN_PROXY); (2) a
# name becomes one path segment or is refused: `walhook targets rm
# ../../t2` does not delete tenant t2, `walhook targets rm t0/dlq` does not
# purge t0's dead letters; (3) the admin refuses a new target named ".",
# ".." or "-x" with a 400 naming the field, as it does such tenant names.
# No PostgreSQL: tenants and targets are only written, never streamed.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
wh_require_bins walhook walhook-store walhook-admin
command -v jq >/dev/null || wh_fail "jq is missing (scripts/install-deps.sh --test)"
command -v python3 >/dev/null || wh_fail "python3 is missing"
wh_tmpdir

APORT=$(wh_free_port)
PX=$(wh_free_port)
CONF="$WH_TMP/walhook.conf"
DATA="$WH_TMP/data"
mkdir -m 700 "$DATA"
wh_write_conf "$CONF" "postgresql://u@127.0.0.1:1/x" "$DATA" "$APORT" "http://127.0.0.1:9/hook"
TOKEN=admin-token-$RANDOM-0123456789
A="http://127.0.0.1:$APORT"

wh_spawn store "$BIN/walhook-store" -c "$CONF"
WALHOOK_ADMIN_ADMIN_TOKEN=$TOKEN wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
wh_wait_http "$A/livez" 30 || wh_fail "the admin does not answer /livez"
wh_wait_until 30 wh_admin_api GET /v1/tenants/default/targets
[ "$CODE" = 200 ] || wh_fail "GET targets: $CODE $BODY"

# A fake proxy: one JSON line per request it gets (path and Authorization),
# answered 502.
python3 -c '
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    def any(self):
        with open(sys.argv[2], "a") as f:
            f.write(json.dumps({"path": self.path,
                                "authorization": self.headers.get("Authorization")}) + "\n")
        self.send_response(502)
        self.send_header("Content-Length", "0")
        self.end_headers()
    do_GET = do_POST = do_DELETE = do_PATCH = do_CONNECT = any
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
' "$PX" "$WH_TMP/proxy.req" >>"$WH_TMP/proxy.log" 2>&1 &
WH_PIDS[proxy]=$!
wh_wait_until 10 curl -s -o /dev/null "http://127.0.0.1:$PX/ready" || wh_fail "the fake proxy does not start"
: >"$WH_TMP/proxy.req"

# W VAR=VALUE... CMD...: CMD with the token and the environment's proxies
# cleared; cli ARGS...: the walhook command so, on the admin
W=(env -u http_proxy -u HTTP_PROXY -u https_proxy -u HTTPS_PROXY -u ALL_PROXY -u all_proxy
    -u NO_PROXY -u no_proxy -u WALHOOK_ADMIN_PROXY WALHOOK_ADMIN_TOKEN="$TOKEN")
cli() { "${W[@]}" "$BIN/walhook" "$@" --admin "$A"; }

# ---- (1) proxies from the environment are not used ----
for var in http_proxy HTTP_PROXY ALL_PROXY all_proxy; do
    out=$("${W[@]}" "$var=http://127.0.0.1:$PX" "$BIN/walhook" targets list --admin "$A" 2>&1) ||
        wh_fail "$var set: walhook targets list failed: $out"
    grep -q '^t0 ' <<<"$out" || wh_fail "$var set: no target t0 listed: $out"
done
[ -s "$WH_TMP/proxy.req" ] && wh_fail "the proxy of the environment got: $(cat "$WH_TMP/proxy.req")"
# ... but one named for it is
"${W[@]}" "$BIN/walhook" targets list --admin "$A" --proxy "http://127.0.0.1:$PX" >/dev/null 2>&1 &&
    wh_fail "--proxy: the fake proxy's 502 was taken for an answer"
"${W[@]}" WALHOOK_ADMIN_PROXY="http://127.0.0.1:$PX" "$BIN/walhook" targets list --admin "$A" \
    >/dev/null 2>&1 && wh_fail "WALHOOK_ADMIN_PROXY: the fake proxy's 502 was taken for an answer"
n=$(grep -c "Bearer $TOKEN" "$WH_TMP/proxy.req")
[ "$n" = 2 ] || wh_fail "the named proxy got $n requests, wanted 2: $(cat "$WH_TMP/proxy.req")"
grep -q "\"path\": \"$A/v1/tenants/default/targets\"" "$WH_TMP/proxy.req" ||
    wh_fail "the named proxy got another path: $(cat "$WH_TMP/proxy.req")"

# ---- (2) names are path segments ----
wh_admin_api POST /v1/tenants '{"name":"t2","source":{"dsn":"postgresql://u@127.0.0.1:1/x","slot":"s2"}}'
[ "$CODE" = 201 ] || wh_fail "POST tenant t2: $CODE $BODY"
for bad in ../../t2 ../t2 t0/dlq t0/pause "t0?x=1" "t0#x" "a b" "" "%2e%2e"; do
    out=$(cli targets rm "$bad" 2>&1)
    rc=$?
    [ "$rc" = 2 ] || wh_fail "walhook targets rm '$bad': exit $rc (wanted 2): $out"
    grep -q "is not a target name" <<<"$out" || wh_fail "walhook targets rm '$bad': $out"
done
out=$(cli targets get ../../t2 2>&1) && wh_fail "walhook targets get ../../t2 answered: $out"
out=$(cli tenants rm t2/targets/t0 2>&1) && wh_fail "walhook tenants rm t2/targets/t0: $out"
grep -q "is not a tenant name" <<<"$out" || wh_fail "walhook tenants rm t2/targets/t0: $out"
out=$(cli targets list --tenant ../.. 2>&1) && wh_fail "walhook targets list --tenant ../..: $out"
out=$(cli dlq list ../x 2>&1) && wh_fail "walhook dlq list ../x: $out"
out=$(cli dlq show t0 "0-1/../../x" 2>&1) && wh_fail "walhook dlq show with a path: $out"
wh_admin_api GET /v1/tenants/t2
[ "$CODE" = 200 ] || wh_fail "tenant t2 is gone: $CODE $BODY"
wh_admin_api GET /v1/tenants/default/targets/t0
[ "$CODE" = 200 ] || wh_fail "target t0 is gone: $CODE $BODY"
# a valid name still works, through the CLI
out=$(cli targets pause t0 2>&1) || wh_fail "walhook targets pause t0: $out"
out=$(cli targets get t0 --json 2>&1) || wh_fail "walhook targets get t0: $out"
[ "$(jq -r .paused <<<"$out")" = true ] || wh_fail "t0 not paused: $out"
out=$(cli tenants rm t2 2>&1) || wh_fail "walhook tenants rm t2: $out"

# ---- (3) new targets named like path segments or options: 400, naming the field ----
for bad in . .. ... .hidden -x; do
    wh_admin_api POST /v1/tenants/default/targets "{\"name\":\"$bad\",\"url\":\"http://127.0.0.1:9/x\"}"
    [ "$CODE" = 400 ] || wh_fail "POST target '$bad': $CODE $BODY"
    jq -e '.error.field | test("^tenants\\[0\\]\\.targets\\[[0-9]+\\]\\.name$")' <<<"$BODY" \
        >/dev/null || wh_fail "POST target '$bad': the field is not named: $BODY"
    grep -q "must not start with" <<<"$BODY" || wh_fail "POST target '$bad': $BODY"
done
out=$(cli targets add x.y "http://127.0.0.1:9/x" 2>&1) || wh_fail "target x.y refused: $out"

wh_pass "no proxy from the environment, --proxy/WALHOOK_ADMIN_PROXY honoured; names with '/' refused by the CLI; new target names '.', '..', '-x' refused (400, field named)"
