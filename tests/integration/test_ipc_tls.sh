#!/usr/bin/env bash
# NNG over TLS between the daemons on loopback: a throwaway CA (openssl)
# signs one certificate (SAN DNS:localhost, server and client use); every
# endpoint (store, ingestor and dispatcher control) is tls+tcp://localhost:P.
# `walhook up` streams 1,000 changes end to end through them; `walhook
# health` gets answers with the CA, none with another CA (the peer is
# verified) and none over plain tcp:// to the TLS port; a tls+tcp://
# endpoint without ipc.tls_* is refused by name (exit 2).
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
wh_require_bins walhook walhook-store walhook-ingestor walhook-dispatcher walhook-admin \
    walhook-receiver tests/wh_loadgen tests/wh_check
command -v openssl >/dev/null || wh_fail "openssl is missing"
wh_tmpdir
PKI="$WH_TMP/pki"
mkdir -p "$PKI"
mkca() { # NAME
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=walhook test $1" \
        -keyout "$PKI/$1.key" -out "$PKI/$1.crt" 2>/dev/null
}
mkca ca || wh_fail "CA generation failed"
mkca otherca || wh_fail "second CA generation failed"
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$PKI/node.key" \
    -out "$PKI/node.csr" 2>/dev/null || wh_fail "csr failed"
printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >"$PKI/ext.cnf"
openssl x509 -req -in "$PKI/node.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 2 -extfile "$PKI/ext.cnf" -out "$PKI/node.crt" 2>/dev/null || wh_fail "signing failed"

pg_start || wh_fail "cannot start PostgreSQL"
"$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --tables 2 --setup-only || wh_fail "table setup failed"
RPORT=$(wh_free_port)
APORT=$(wh_free_port)
SPORT=$(wh_free_port)
IPORT=$(wh_free_port)
DPORT=$(wh_free_port)
NPORT=$(wh_free_port)
CONF="$WH_TMP/walhook.conf"
wh_write_conf "$CONF" "$PG_DSN" "$WH_TMP/data" "$APORT" "http://127.0.0.1:$RPORT/hook"
cat >>"$CONF" <<EOC
store = { endpoint = "tls+tcp://localhost:$SPORT"; notify_endpoint = "tls+tcp://localhost:$NPORT"; };
ingestor = { control = "tls+tcp://localhost:$IPORT"; };
dispatcher = { control = "tls+tcp://localhost:$DPORT"; };
ipc = { tls_cert = "$PKI/node.crt"; tls_key = "$PKI/node.key"; tls_ca = "$PKI/ca.crt"; };
EOC
# without the certificates: refused by name
grep -v '^ipc = ' "$CONF" >"$WH_TMP/nocert.conf"
rc=0
"$BIN/walhook" check -c "$WH_TMP/nocert.conf" >"$WH_TMP/nocert.out" 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q 'ipc.tls_cert' "$WH_TMP/nocert.out" ||
    { cat "$WH_TMP/nocert.out" >&2; wh_fail "a tls+tcp:// endpoint without certificates was not refused (exit $rc)"; }

wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --out "$WH_TMP/received.jsonl"
wh_spawn walhook "$BIN/walhook" up -c "$CONF"
wh_wait_http "http://127.0.0.1:$APORT/readyz" 60 || wh_fail "walhook never became ready over TLS"
"$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --changes 1000 --seed 3 --max-txn 50 --tables 2 \
    --expect "$WH_TMP/expected.jsonl" || wh_fail "load generation failed"
wh_wait_metric "http://127.0.0.1:$APORT/metrics" walhook_events_delivered_total 1000 120 ||
    wh_fail "not all events delivered over the TLS links"
"$BIN/tests/wh_check" --expect "$WH_TMP/expected.jsonl" --received "$WH_TMP/received.jsonl" ||
    wh_fail "received stream does not match"
# the durability notifications over TLS too: the dispatcher is subscribed and
# was notified (it reads when notified instead of long-polling)
M=$(curl -fsS --max-time 5 "http://127.0.0.1:$APORT/metrics")
grep -q '^walhook_dispatcher_notify_connected 1' <<<"$M" ||
    wh_fail "the dispatcher is not subscribed to the store's notifications over tls+tcp://"
n=$(sed -n 's/^walhook_dispatcher_notifications_total \([0-9]*\).*/\1/p' <<<"$M")
[ "${n:-0}" -ge 1 ] || wh_fail "the dispatcher got no notification over tls+tcp:// (${n:-none})"
for d in store ingestor dispatcher; do
    "$BIN/walhook" health --daemon "$d" --ready -c "$CONF" >"$WH_TMP/h.out" 2>&1 ||
        { cat "$WH_TMP/h.out" >&2; wh_fail "walhook health --daemon $d over TLS failed"; }
done
WALHOOK_IPC_TLS_CA="$PKI/otherca.crt" WALHOOK_IPC_TLS_CERT="$PKI/otherca.crt" \
    WALHOOK_IPC_TLS_KEY="$PKI/otherca.key" \
    "$BIN/walhook" health --daemon store -c "$CONF" >/dev/null 2>&1 &&
    wh_fail "a peer with a certificate of another CA got an answer"
WALHOOK_STORE_ENDPOINT="tcp://localhost:$SPORT" \
    "$BIN/walhook" health --daemon store -c "$CONF" >/dev/null 2>&1 &&
    wh_fail "plain tcp:// to the TLS port got an answer"
kill -TERM "${WH_PIDS[walhook]}"
wh_wait_until 20 bash -c "! kill -0 ${WH_PIDS[walhook]} 2>/dev/null" || wh_fail "walhook up did not stop"
unset "WH_PIDS[walhook]"
wh_pass "1000 changes over tls+tcp:// links (notifications too: $n received); foreign CA and plain tcp refused"
