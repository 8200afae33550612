#!/usr/bin/env bash
# POST /v1/tenants/{t}/backfill checks on the tenant's source that the
# table is published, and answers even when that source stops answering
# once connected: 504 naming the tenant's source and the bound, and no
# backfill recorded. Before, the connect was bounded (3 s) but the query
# after it blocked (PQexecParams): the request never answered and its
# thread hung for good. Two sources that do so, each a proxy to the real
# PostgreSQL that relays the connection's start-up (SSL refusal,
# authentication, up to ReadyForQuery):
#  1. "silent" then swallows what the client sends (a proxy or a host that
#     takes the query and never replies);
#  2. "stopped" holds the client's first query until the test has stopped
#     (SIGSTOP) the backend the connection has, then relays it to that
#     backend, which does not answer.
# The default tenant's backfill check, on the real source, still answers
# 202 afterwards.
# curl's --max-time is a hang guard only: no assertion on time.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
STOPPED_PID=""
trap '[ -n "$STOPPED_PID" ] && kill -CONT "$STOPPED_PID" 2>/dev/null; wh_cleanup' EXIT
command -v python3 >/dev/null || wh_fail "python3 is missing"
wh_tmpdir
TOKEN=admin-token-$RANDOM-0123456789
export WALHOOK_ADMIN_ADMIN_TOKEN=$TOKEN
wh_ingest_admin_setup
A="http://127.0.0.1:$APORT"
pg_psql -c "CREATE TABLE items (id int PRIMARY KEY)" >/dev/null || wh_fail "cannot create the table"

# proxy.py PORT PG_PORT MODE: MODE swallow, or hold:FILE (the first query
# waits until FILE exists; the backend's pid is printed first)
cat >"$WH_TMP/proxy.py" <<'PYEOF'
import os, socket, struct, sys, threading, time
lport, pport, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
RFQ = b"Z\x00\x00\x00\x05"  # ReadyForQuery: the start-up is over
KEY = b"K\x00\x00\x00\x0c"  # BackendKeyData: the backend's pid
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", lport))
l.listen(64)
print("listening", flush=True)

def serve(c):
    s = socket.create_connection(("127.0.0.1", pport))
    ready = threading.Event()
    info = {}
    def down():  # the server's bytes to the client, as they come
        seen = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            if not ready.is_set():
                seen = (seen + d)[-4096:]
                k = seen.find(KEY)
                if k >= 0 and len(seen) >= k + 9:
                    info["pid"] = struct.unpack("!i", seen[k + 5:k + 9])[0]
                if RFQ in seen:
                    ready.set()  # before the client can see it and send a query
                    print("ready for query", flush=True)
            c.sendall(d)
    threading.Thread(target=down, daemon=True).start()
    held = False
    while True:
        d = c.recv(65536)
        if not d:
            break
        if ready.is_set() and mode == "swallow":
            print("swallowed %d bytes" % len(d), flush=True)
            continue
        if ready.is_set() and mode.startswith("hold:") and not held:
            held = True
            print("held the query of backend %d" % info.get("pid", 0), flush=True)
            while not os.path.exists(mode[5:]):
                time.sleep(0.05)
            print("relayed it", flush=True)
        s.sendall(d)
    s.close()
    c.close()

while True:
    c, _ = l.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PYEOF
# proxy_tenant NAME MODE: a proxy in MODE and tenant NAME whose source it is
proxy_tenant() {
    local port
    port=$(wh_free_port)
    wh_spawn "$1" python3 "$WH_TMP/proxy.py" "$port" "$PG_PORT" "$2"
    wh_wait_until 30 grep -q listening "$WH_TMP/$1.log" || wh_fail "proxy $1 did not start"
    wh_admin_api POST /v1/tenants \
        "{\"name\":\"$1\",\"source\":{\"dsn\":\"postgresql://postgres@127.0.0.1:$port/postgres?sslmode=disable&gssencmode=disable\",\"slot\":\"$1\"}}"
    [ "$CODE" = 201 ] || wh_fail "POST tenant $1: $CODE $BODY"
    printf -v "PORT_$1" '%s' "$port"
}
# check_504 NAME: the backfill request of tenant NAME (CODE, BODY) answered
# 504 naming its source and the bound (kept in MSG), and recorded nothing
check_504() {
    local port want
    port=PORT_$1
    [ "$CODE" != 000 ] ||
        wh_fail "the backfill request of tenant $1, whose source does not answer the query, did not answer"
    grep -q "ready for query" "$WH_TMP/$1.log" ||
        wh_fail "the check of tenant $1 never got past the connect through the proxy ($CODE $BODY)"
    [ "$CODE" = 504 ] || wh_fail "tenant $1, a source that does not answer: $CODE $BODY (want 504)"
    for want in "'$1'" ":${!port})" "did not answer" "within"; do
        case $BODY in *"$want"*) ;; *) wh_fail "the 504 of tenant $1 does not say '$want': $BODY" ;; esac
    done
    wh_log "tenant $1: $CODE $BODY"
    MSG=$BODY
    wh_admin_api GET "/v1/tenants/$1/backfill"
    [ "$CODE" = 200 ] || wh_fail "GET backfill of $1: $CODE $BODY"
    case $BODY in *public.items*) wh_fail "a backfill of $1 was recorded though the check did not answer: $BODY" ;; esac
}

# (1) the query swallowed
proxy_tenant silent swallow
wh_admin_api POST /v1/tenants/silent/backfill '{"table":"public.items"}'
check_504 silent

# (2) the query relayed to a stopped backend
proxy_tenant stopped "hold:$WH_TMP/release"
( wh_admin_api POST /v1/tenants/stopped/backfill '{"table":"public.items"}'
  echo "$CODE" >"$WH_TMP/stopped.code"; printf '%s' "$BODY" >"$WH_TMP/stopped.body" ) &
REQ=$!
wh_wait_until 30 grep -q "held the query of backend" "$WH_TMP/stopped.log" ||
    wh_fail "the check of tenant stopped did not reach its query"
STOPPED_PID=$(sed -n 's/^held the query of backend \([0-9]*\)$/\1/p' "$WH_TMP/stopped.log" | head -n 1)
[ -n "$STOPPED_PID" ] && [ "$STOPPED_PID" != 0 ] || wh_fail "no backend pid: $(cat "$WH_TMP/stopped.log")"
kill -STOP "$STOPPED_PID" || wh_fail "cannot stop backend $STOPPED_PID"
touch "$WH_TMP/release"
wait "$REQ"
CODE=$(cat "$WH_TMP/stopped.code")
BODY=$(cat "$WH_TMP/stopped.body")
grep -q "relayed it" "$WH_TMP/stopped.log" || wh_fail "the held query was not relayed"
check_504 stopped
kill -CONT "$STOPPED_PID"
STOPPED_PID=""

# the real source: checked, recorded
wh_admin_api POST /v1/tenants/default/backfill '{"table":"public.items"}'
[ "$CODE" = 202 ] || wh_fail "backfill on the default tenant: $CODE $BODY"
wh_pass "a source that swallows the table check's query and one whose backend is stopped: 504 each ($(printf '%s' "$MSG" | cut -c1-200)); the default tenant's backfill 202"
