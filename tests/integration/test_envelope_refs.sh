#!/usr/bin/env bash
# walhook's request formats checked by reference implementations from npm:
# the CloudEvents SDK (`cloudevents`, HTTP.toEvent) parses walhook's
# structured (one event and a batch) and binary requests and finds the
# required attributes; the Standard Webhooks verifier (`standardwebhooks`)
# accepts walhook's signature with EVERY active secret (rotation: several
# signatures in one header) and refuses a changed body. The requests come
# from the dispatcher's own modules (tests/wh_render). Skips, saying why,
# when node/npm are missing or the packages cannot be installed.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
wh_require_bins tests/wh_render
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "SKIP $WH_TEST_NAME: node/npm not installed (scripts/install-deps.sh --test)"
    exit 0
fi
wh_tmpdir
NODE_DIR="$WH_TMP/node"
mkdir -p "$NODE_DIR"
if ! (cd "$NODE_DIR" && timeout 180 npm install --no-audit --no-fund --silent \
        cloudevents@8 standardwebhooks@1 >"$WH_TMP/npm.log" 2>&1); then
    echo "SKIP $WH_TEST_NAME: npm install cloudevents standardwebhooks failed: $(tail -n 3 "$WH_TMP/npm.log" | tr '\n' ' ')"
    exit 0
fi
S1=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
S2=whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD
render() { # NAME ENVELOPE EVENTS
    mkdir -p "$WH_TMP/$1"
    "$BIN/tests/wh_render" --envelope "$2" --events "$3" --secret "$S1" --secret "$S2" \
        --out "$WH_TMP/$1" || wh_fail "wh_render $2 failed"
}
render structured cloudevents 1
render batch cloudevents 3
render binary cloudevents-binary 3
render native native 3
render debezium debezium 2
cat >"$NODE_DIR/check.js" <<'JS'
const fs = require('fs');
const path = require('path');
const { HTTP } = require('cloudevents');
const { Webhook } = require('standardwebhooks');
const dir = process.argv[2];
const secrets = process.argv.slice(3);
function load(name) {
  const body = fs.readFileSync(path.join(dir, name, 'body'), 'utf8');
  const headers = {};
  for (const line of fs.readFileSync(path.join(dir, name, 'headers'), 'utf8').split('\n')) {
    const i = line.indexOf(': ');
    if (i > 0) headers[line.slice(0, i).toLowerCase()] = line.slice(i + 2);
  }
  return { headers, body };
}
let failures = 0;
function check(cond, what) {
  if (!cond) { console.log('FAIL ' + what); failures++; } else console.log('ok   ' + what);
}
function required(ev, what, id, type, source) {
  check(ev.specversion === '1.0', what + ': specversion 1.0');
  check(ev.id === id, what + ': id ' + ev.id);
  check(ev.type === type, what + ': type ' + ev.type);
  check(ev.source === source, what + ': source ' + ev.source);
  check(ev.time && !isNaN(Date.parse(ev.time)), what + ': time ' + ev.time);
  const data = typeof ev.data === 'string' ? JSON.parse(ev.data) : ev.data;
  check(data && data.id === id, what + ': data is the walhook event');
}
// structured mode, one event
{
  const m = load('structured');
  const ev = HTTP.toEvent(m);
  check(!Array.isArray(ev), 'structured: one event');
  required(ev, 'structured', 'default:0/1A2B3C8:0', 'com.walhook.insert', '/walhook/default/public/orders');
  check(m.headers['content-type'] === 'application/cloudevents+json', 'structured: content type');
  ev.validate();
}
// structured batch
{
  const m = load('batch');
  const evs = HTTP.toEvent(m);
  check(Array.isArray(evs) && evs.length === 3, 'batch: 3 events');
  required(evs[1], 'batch[1]', 'default:0/1A2B3C8:1', 'com.walhook.update', '/walhook/default/public/order%20lines');
  required(evs[2], 'batch[2]', 'default:0/1A2B3D0:0', 'com.walhook.delete', '/walhook/default/public/orders');
  for (const e of evs) e.validate();
}
// binary mode: one event per request, attributes in ce-* headers
{
  const m = load('binary');
  const ev = HTTP.toEvent(m);
  check(HTTP.isEvent(m), 'binary: recognised as a CloudEvent');
  required(ev, 'binary', 'default:0/1A2B3C8:0', 'com.walhook.insert', '/walhook/default/public/orders');
  check(m.headers['x-batch-size'] === '1', 'binary: one event per request');
  ev.validate();
}
// Standard Webhooks: every secret verifies every request; a changed body fails
for (const name of ['structured', 'batch', 'binary', 'native', 'debezium']) {
  const m = load(name);
  const sigs = (m.headers['webhook-signature'] || '').split(' ');
  check(sigs.length === secrets.length, name + ': one signature per secret (' + sigs.length + ')');
  secrets.forEach((s, i) => {
    let ok = true;
    try { new Webhook(s).verify(m.body, m.headers); } catch (e) { ok = false; console.log(String(e)); }
    check(ok, name + ': verified with secret ' + (i + 1));
  });
  let refused = false;
  try { new Webhook(secrets[0]).verify(m.body + ' ', m.headers); } catch (e) { refused = true; }
  check(refused, name + ': a changed body is refused');
}
// Debezium: the documented field list
{
  const d = JSON.parse(load('debezium').body);
  for (const f of ['before', 'after', 'source', 'op', 'ts_ms']) check(f in d[0], 'debezium: ' + f);
  for (const f of ['version', 'connector', 'name', 'ts_ms', 'db', 'schema', 'table', 'txId', 'lsn'])
    check(f in d[0].source, 'debezium: source.' + f);
  check(d[0].op === 'c' && d[1].op === 'u', 'debezium: op c, u');
}
process.exit(failures ? 1 : 0);
JS
if ! node "$NODE_DIR/check.js" "$WH_TMP" "$S1" "$S2" >"$WH_TMP/check.log" 2>&1; then
    grep -v '^ok' "$WH_TMP/check.log" | head -n 30
    wh_fail "the reference implementations refused walhook's requests"
fi
n=$(grep -c '^ok' "$WH_TMP/check.log")
wh_pass "$n checks: CloudEvents SDK HTTP.toEvent (structured, batch, binary) and the Standard Webhooks verifier (2 active secrets, 5 envelopes) accept walhook's requests"
