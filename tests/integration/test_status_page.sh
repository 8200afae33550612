#!/usr/bin/env bash
# The status page at / rendered by a real browser: Debian's chromium in
# headless mode loads it from a running stack (PostgreSQL, store, ingestor,
# dispatcher, admin, receiver) and --dump-dom shows every target's name with
# its state, and the tenant's slot lag as a value. Skips (exit 0) when
# chromium is not installed (scripts/install-deps.sh --test installs it).
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-admin walhook-receiver \
    tests/wh_loadgen
CHROME=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROME" ]; then
    echo "SKIP $WH_TEST_NAME: chromium not installed (scripts/install-deps.sh --test)"
    exit 0
fi
wh_tmpdir
pg_start || wh_fail "cannot start PostgreSQL"
"$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --tables 1 --setup-only || wh_fail "table setup failed"
RPORT=$(wh_free_port)
APORT=$(wh_free_port)
CONF="$WH_TMP/walhook.conf"
mkdir -m 700 "$WH_TMP/data"
wh_write_conf "$CONF" "$PG_DSN" "$WH_TMP/data" "$APORT" "http://127.0.0.1:$RPORT/a" \
    "http://127.0.0.1:$RPORT/b"
TOKEN=admin-token-$RANDOM-0123456789
A="http://127.0.0.1:$APORT"
wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --out "$WH_TMP/received.jsonl"
wh_spawn store "$BIN/walhook-store" -c "$CONF"
sleep 0.3
wh_spawn ingestor "$BIN/walhook-ingestor" -c "$CONF"
wh_spawn dispatcher "$BIN/walhook-dispatcher" -c "$CONF"
WALHOOK_ADMIN_ADMIN_TOKEN=$TOKEN wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
wh_wait_http "$A/livez" 30 || wh_fail "the admin does not answer"
wh_wait_slot_active walhook 60 || wh_fail "the ingestor never started streaming"
"$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --changes 200 --seed 3 --tables 1 \
    --expect "$WH_TMP/expected.jsonl" >/dev/null || wh_fail "load generation failed"
# a third target added and paused over the API shows up too
curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    --data '{"name":"added-later","url":"http://127.0.0.1:1/x","paused":true}' \
    "$A/v1/tenants/default/targets" || wh_fail "cannot add a target"
wh_wait_metric "$A/metrics" walhook_events_delivered_total 1 60 || wh_fail "nothing delivered"

dump() {
    # a fresh profile per run; --no-sandbox: the tests may run as root
    timeout 90 "$CHROME" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
        --no-first-run --user-data-dir="$WH_TMP/chrome" --virtual-time-budget=3000 \
        --dump-dom "$A/" >"$WH_TMP/dom.html" 2>"$WH_TMP/chrome.log"
}
# the page shows rates from the second render on: load it twice
dump; sleep 1.2; dump || { tail -n 20 "$WH_TMP/chrome.log"; wh_fail "chromium failed to load the page"; }
grep -q '<h1>walhook</h1>' "$WH_TMP/dom.html" || wh_fail "the dump is not the status page: $(head -c 300 "$WH_TMP/dom.html")"
# the DOM as chromium rendered it: one row per target with name and state
for t in t0 t1; do
    grep -Eq "<td class=\"name\">$t</td><td class=\"ok\">active</td>" "$WH_TMP/dom.html" ||
        wh_fail "target $t is not shown as active"
done
grep -Eq '<td class="name">added-later</td><td class="paused">paused</td>' "$WH_TMP/dom.html" ||
    wh_fail "the paused target is not shown as paused"
lag=$(grep -o '<td class="lag num">[^<]*</td>' "$WH_TMP/dom.html" | head -n 1 | sed 's/<[^>]*>//g')
[ -n "$lag" ] && [[ "$lag" =~ ^[0-9.]+\ [KMGT]?i?B$ ]] || wh_fail "the slot lag is not a value: '$lag'"
grep -q 'http-equiv="refresh"' "$WH_TMP/dom.html" || wh_fail "the page does not refresh itself"
grep -Eq '<(script|link|img)[^>]+(src|href)="https?:' "$WH_TMP/dom.html" && wh_fail "the page loads an external asset"
delivered=$(grep -o '<td class="num">[0-9]\+</td></tr>' "$WH_TMP/dom.html" | head -n 1 | sed 's/<[^>]*>//g')
wh_pass "chromium rendered the status page: targets t0, t1 active, added-later paused, slot lag $lag, t0 delivered ${delivered:-?}"
