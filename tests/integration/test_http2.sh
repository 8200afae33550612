#!/usr/bin/env bash
# HTTP/2 where the target speaks it (issue 8), per target `http_version`:
# "auto" (default: HTTP/2 over TLS by ALPN, HTTP/1.1 over cleartext), "1.1",
# or "2" (over TLS by ALPN; over cleartext http:// with prior knowledge, h2c,
# when libcurl is 8.0 or later: 7.88, Debian 12's, fails every request that
# reuses an h2c connection, curl issue 10634, so there it posts with HTTP/1.1
# and says so). A store pre-filled with N orders-shaped events (wh_stagebench,
# no PostgreSQL) is posted by one dispatcher to target h, by_key, 4 lanes,
# max_connections = 2:
#   phase 1  http_version = "2" to http://: with libcurl >= 8 an HTTP/2-only
#            cleartext server (node's http2 module, which refuses HTTP/1.1)
#            gets every request as HTTP/2 over at most 2 sessions; with an
#            older libcurl the warning is logged and an HTTP/1.1 receiver
#            (walhook-receiver) gets them; walhook_target_connections reports
#            1..2 sockets while posting;
#   phase 2  at runtime, h moves to http_version = "auto" and another
#            HTTP/1.1 receiver: the pooled connections of the old version
#            are closed once idle and the rest arrives there.
# A second target s posts to https:// (http_version "auto"), an HTTP/2-only
# TLS server (node, certificate of a throwaway CA given to the dispatcher as
# dispatcher.ca_file): every request arrives as HTTP/2 (ALPN), multiplexed
# over at most max_connections = 2 sessions. A dispatcher.ca_file that
# cannot be read stops the dispatcher with exit 2 naming the setting.
# Every event arrives at each target, none twice. Skips when node is not
# installed.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
N=${N:-6000}
trap wh_cleanup EXIT
if ! command -v node >/dev/null 2>&1; then
    echo "SKIP $WH_TEST_NAME: node not installed (scripts/install-deps.sh --test)"
    exit 0
fi
wh_require_bins walhook-store walhook-dispatcher walhook-admin walhook-receiver \
    tests/wh_stagebench tests/wh_statectl
wh_tmpdir
export WALHOOK_DISPATCHER_ALLOW_PRIVATE_NETWORKS="127.0.0.1/32"
HPORT=$(wh_free_port)
RPORT=$(wh_free_port)
SPORT=$(wh_free_port)
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1" -keyout "$WH_TMP/tls.key" -out "$WH_TMP/tls.crt" \
    >/dev/null 2>&1 || wh_fail "openssl could not make a certificate"
VERNUM=$(curl-config --vernum 2>/dev/null || echo 0)
H2C=0
[ $((16#$VERNUM)) -ge $((16#080000)) ] && H2C=1
APORT=$(wh_free_port)
DATA="$WH_TMP/data"
CONF="$WH_TMP/walhook.conf"
cat >"$CONF" <<CONFEOF
data_dir = "$DATA";
log_level = "info";
admin = { listen = "127.0.0.1:$APORT"; };
dispatcher = { batch_max_events = 20; retry_base_ms = 20; retry_max_ms = 200; ca_file = "$WH_TMP/tls.crt"; };
tenants = (
  { name = "default";
    source = { dsn = "postgresql://unused@127.0.0.1:1/x"; slot = "w_default"; publication = "w_default"; create_slot = false; };
    targets = (
      { name = "h"; url = "http://127.0.0.1:$HPORT/h"; http_version = "2"; ordering = "by_key"; lanes = 4; max_connections = 2; },
      { name = "s"; url = "https://127.0.0.1:$SPORT/s"; ordering = "by_key"; lanes = 4; max_connections = 2; }
    ); } );
CONFEOF
# an HTTP/2-only cleartext server: appends each body as a line, counts
# requests per HTTP version and sessions (connections), answers 200 after
# 30 ms (so requests overlap and share sessions)
cat >"$WH_TMP/h2.js" <<'JSEOF'
const http2 = require('http2');
const fs = require('fs');
const [port, out, stats, cert, key] = process.argv.slice(2);
let sessions = 0, open = 0, maxOpen = 0;
const versions = {};
const server = cert ? http2.createSecureServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) })
                    : http2.createServer();
server.on('session', (s) => {
  sessions++; open++; if (open > maxOpen) maxOpen = open;
  s.on('close', () => { open--; });
  s.on('error', (e) => console.log('session error: ' + e.message));
  s.on('frameError', (t, c, id) => console.log('frame error: type ' + t + ' code ' + c + ' stream ' + id));
  s.on('goaway', (c) => console.log('goaway ' + c));
});
server.on('sessionError', (e) => console.log('sessionError: ' + e.message));
server.on('request', (req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    versions[req.httpVersion] = (versions[req.httpVersion] || 0) + 1;
    fs.appendFileSync(out, Buffer.concat(chunks).toString() + '\n');
    fs.writeFileSync(stats, JSON.stringify({ versions, sessions, maxOpen, open }) + '\n');
    setTimeout(() => { res.writeHead(200); res.end(); }, 30);
  });
});
server.listen(Number(port), '127.0.0.1', () => console.log('h2 server listening on ' + port));
JSEOF
mkdir -p -m 700 "$DATA"
wh_spawn store "$BIN/walhook-store" -c "$CONF"
wh_wait_until 30 test -S "$DATA/store.sock" || wh_fail "the store did not start"
"$BIN/tests/wh_stagebench" append "ipc://$DATA/store.sock" "$N" >/dev/null ||
    wh_fail "appending $N events failed"
if [ "$H2C" = 1 ]; then
    wh_spawn h2 node "$WH_TMP/h2.js" "$HPORT" "$WH_TMP/h2.jsonl" "$WH_TMP/h2.stats"
    wh_wait_until 20 grep -q listening "$WH_TMP/h2.log" || wh_fail "the node h2c server did not start"
else
    # the first target's receiver speaks HTTP/1.1 only, as walhook will
    wh_spawn h1 "$BIN/walhook-receiver" --listen "127.0.0.1:$HPORT" --delay-ms 30 --out "$WH_TMP/h2.jsonl"
fi
wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --out "$WH_TMP/r.jsonl"
wh_spawn tls node "$WH_TMP/h2.js" "$SPORT" "$WH_TMP/s.jsonl" "$WH_TMP/s.stats" "$WH_TMP/tls.crt" \
    "$WH_TMP/tls.key"
wh_wait_until 20 grep -q listening "$WH_TMP/tls.log" || wh_fail "the node h2 TLS server did not start"
# an unreadable dispatcher.ca_file: exit 2, named
sed "s|ca_file = \"$WH_TMP/tls.crt\"|ca_file = \"$WH_TMP/missing.crt\"|" "$CONF" >"$WH_TMP/bad.conf"
"$BIN/walhook-dispatcher" -c "$WH_TMP/bad.conf" >"$WH_TMP/bad.log" 2>&1
rc=$?
[ "$rc" -eq 2 ] && grep -q "setting 'dispatcher.ca_file': cannot read $WH_TMP/missing.crt" "$WH_TMP/bad.log" ||
    wh_fail "an unreadable dispatcher.ca_file gave exit $rc: $(tail -2 "$WH_TMP/bad.log")"
wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
wh_spawn dispatcher "$BIN/walhook-dispatcher" -c "$CONF"

s_all() { [ "$(wh_count_events "$WH_TMP/s.jsonl")" -ge "$N" ]; }
h2_ge() { [ "$(wh_count_events "$WH_TMP/h2.jsonl")" -ge "$1" ]; }
all_in() {
    [ $(($(wh_count_events "$WH_TMP/h2.jsonl") + $(wh_count_events "$WH_TMP/r.jsonl"))) -ge "$N" ]
}
# phase 1: HTTP/2 with prior knowledge
wh_wait_until 60 h2_ge $((N / 4)) ||
    wh_fail "nothing delivered over h2c: $(tail -3 "$WH_TMP/dispatcher.log")"
conns=-1
for _ in 1 2 3 4 5 6 7 8 9 10; do
    conns=$(wh_metric_label "http://127.0.0.1:$APORT/metrics" walhook_target_connections 'target="h"')
    [ "$conns" -ge 1 ] 2>/dev/null && break
    sleep 0.2
done
[ "$conns" -ge 1 ] && [ "$conns" -le 2 ] ||
    wh_fail "walhook_target_connections{target=h} = $conns while posting (want 1..2)"
if [ "$H2C" = 1 ]; then
    stats1=$(cat "$WH_TMP/h2.stats")
    wh_log "phase 1 (h2c, libcurl $VERNUM): $stats1; walhook_target_connections = $conns"
    echo "$stats1" | grep -q '"2.0":' || wh_fail "no HTTP/2 request seen: $stats1"
    echo "$stats1" | grep -q '"1.1":' && wh_fail "an HTTP/1.1 request reached the h2-only server: $stats1"
    max_open=$(echo "$stats1" | sed 's/.*"maxOpen":\([0-9]*\).*/\1/')
    [ "$max_open" -le 2 ] || wh_fail "$max_open h2 sessions open at once (max_connections = 2)"
    how="as HTTP/2 (h2c) over at most $max_open session(s)"
else
    grep -q 'target default/h: http_version = "2" over cleartext (h2c) needs libcurl 8.0' \
        "$WH_TMP/dispatcher.log" || wh_fail "no warning that h2c needs libcurl 8.0 (libcurl $VERNUM)"
    wh_log "phase 1 (libcurl $VERNUM < 8.0: HTTP/1.1, warned); walhook_target_connections = $conns"
    how="as HTTP/1.1 (libcurl $VERNUM cannot reuse h2c connections; warned)"
fi

# phase 2: auto (HTTP/1.1 over cleartext) to another receiver, changed at runtime
"$BIN/tests/wh_statectl" -c "$CONF" set-target default h http_version=auto \
    "url=http://127.0.0.1:$RPORT/h" >/dev/null || wh_fail "cannot change the target"
wh_wait_until 30 grep -q "target default/h: closed [0-9]* pooled connection(s) made before http_version changed" \
    "$WH_TMP/dispatcher.log" ||
    wh_fail "the h2 connections were not closed: $(tail -3 "$WH_TMP/dispatcher.log")"
wh_wait_until 120 all_in ||
    wh_fail "not delivered: $(wh_count_events "$WH_TMP/h2.jsonl") + $(wh_count_events "$WH_TMP/r.jsonl") of $N"
nr=$(wh_count_events "$WH_TMP/r.jsonl")
# the https:// target: HTTP/2 by ALPN, multiplexed
wh_wait_until 120 s_all ||
    wh_fail "https target: $(wh_count_events "$WH_TMP/s.jsonl") of $N: $(grep 'default/s' "$WH_TMP/dispatcher.log" | tail -2)"
stats_s=$(cat "$WH_TMP/s.stats")
wh_log "https target: $stats_s"
echo "$stats_s" | grep -q '"2.0":' || wh_fail "https target: no HTTP/2 request: $stats_s"
echo "$stats_s" | grep -q '"1.1":' && wh_fail "https target: HTTP/1.1 requests: $stats_s"
s_open=$(echo "$stats_s" | sed 's/.*"maxOpen":\([0-9]*\).*/\1/')
s_req=$(echo "$stats_s" | sed 's/.*"2.0":\([0-9]*\).*/\1/')
[ "$s_open" -le 2 ] || wh_fail "https target: $s_open sessions at once (max_connections = 2)"
s_ids=$(grep -o '"id":"default:[^"]*"' "$WH_TMP/s.jsonl" | sort | uniq | wc -l)
s_dups=$(grep -o '"id":"default:[^"]*"' "$WH_TMP/s.jsonl" | sort | uniq -d | wc -l)
[ "$s_ids" -eq "$N" ] && [ "$s_dups" -eq 0 ] ||
    wh_fail "https target: $s_ids distinct ids of $N, $s_dups twice"
[ "$nr" -gt 0 ] || wh_fail "everything was delivered before the switch (raise N)"
ids=$(cat "$WH_TMP/h2.jsonl" "$WH_TMP/r.jsonl" | grep -o '"id":"default:[^"]*"' | sort | uniq | wc -l)
dups=$(cat "$WH_TMP/h2.jsonl" "$WH_TMP/r.jsonl" | grep -o '"id":"default:[^"]*"' | sort | uniq -d | wc -l)
[ "$ids" -eq "$N" ] || wh_fail "$ids distinct ids, expected $N"
[ "$dups" -eq 0 ] || wh_fail "$dups ids delivered twice"
wh_pass "http_version = 2 over cleartext: $((N - nr)) events $how, walhook_target_connections $conns; switched to auto and another receiver at runtime (old connections closed): $nr events there; $N ids once each; https target (dispatcher.ca_file): $N events in $s_req HTTP/2 requests over at most $s_open session(s)"
