#!/usr/bin/env bash
# The admin's HTTP server against hostile clients without a token (a real
# walhook-admin on 127.0.0.1, no other daemon needed):
#  1. a POST declaring a large body, without a token, gets its 401 before
#     any of the body is sent (the body is never read nor buffered);
#  2. a slow-loris (one header byte a second, under the idle timeout) is
#     closed by the request deadline (admin.request_timeout_s = 3), counted
#     in walhook_admin_http_connections_closed_total{reason="deadline"} and
#     logged;
#  3. a flood of connections over the cap (the admin runs with 256 files,
#     so a cap of 160), 200 POSTing 1 MiB bodies without a token, then 200
#     idle with half their headers: /livez still answers (the oldest
#     connection waiting for a request makes room), the eviction is counted
#     and logged, and the admin's RSS stays far below what the bodies took
#     before (about 170 MB; a generous bound: 100 MB, about 13 MB seen);
#  4. the per-client cap (64) holds for a non-loopback address (127.0.1.1):
#     refused connections are counted and logged.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
wh_require_bins walhook-admin
command -v python3 >/dev/null || wh_fail "python3 is missing"
wh_tmpdir
APORT=$(wh_free_port)
DATA="$WH_TMP/data"
mkdir -m 700 "$DATA"
CONF="$WH_TMP/walhook.conf"
# no PostgreSQL and no other daemon: the admin serves /livez regardless
wh_write_conf "$CONF" "postgresql://nobody@127.0.0.1:1/none" "$DATA" "$APORT" "http://127.0.0.1:1/x"
TOKEN=admin-token-$RANDOM-0123456789
A="http://127.0.0.1:$APORT"
# 256 files: the connection cap becomes 160 (adm_http.c conn_limit)
WALHOOK_ADMIN_ADMIN_TOKEN=$TOKEN WALHOOK_ADMIN_REQUEST_TIMEOUT_S=3 \
    wh_spawn admin bash -c "ulimit -n 256 && exec '$BIN/walhook-admin' -c '$CONF'"
wh_wait_http "$A/livez" 30 || wh_fail "the admin does not answer /livez"
APID=${WH_PIDS[admin]}
metric_of() { # NAME LABEL: the sample of NAME{LABEL} on /metrics (-1: none)
    curl -fsS --max-time 5 "$A/metrics" 2>/dev/null |
        awk -v k="$1{$2}" '$1 == k { v = $2 } END { print (v == "" ? -1 : v) }'
}

cat >"$WH_TMP/flood.py" <<'EOF'
import resource, select, socket, sys, time, urllib.request
mode, port = sys.argv[1], int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1

def closed_by_peer(s):
    """True when the peer closed (EOF or reset), False on timeout."""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False

if mode == "body401":
    # headers of a 1000000-byte POST, no token, and not a byte of the body:
    # the 401 must come anyway (the admin does not wait for the body)
    s = socket.create_connection(("127.0.0.1", port), timeout=8)
    s.sendall(b"POST /v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 1000000\r\n\r\n")
    try:
        head = s.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
    except socket.timeout:
        head = "no answer within 8 s"
    print(head)
elif mode == "loris":
    # a request line, then one header byte a second (idle timeout: 10 s)
    s = socket.create_connection(("127.0.0.1", port), timeout=1)
    s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    t0 = time.time()
    while time.time() - t0 < 20:
        try:
            s.sendall(b"a")
        except OSError:
            break
        if closed_by_peer(s):
            break
    took = time.time() - t0
    print(f"closed after {took:.1f} s" if took < 20 else "still open after 20 s")
elif mode == "flood":
    pid, n = int(sys.argv[3]), int(sys.argv[4])
    url = f"http://127.0.0.1:{port}/livez"
    rss0 = rss_kb(pid)
    socks, peak, body = [], rss0, b"x" * (1020 * 1024)
    for i in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.setblocking(False)
            if i < n // 2:  # bodies first: before the fix each took 1 MiB
                s.send(b"POST /v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n")
                try:
                    s.send(body)  # as much as the socket takes
                except OSError:
                    pass
            else:
                s.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            socks.append(s)
        except OSError:
            pass
        if i % 50 == 0:
            peak = max(peak, rss_kb(pid))
    ok = 0
    for _ in range(3):
        try:
            if urllib.request.urlopen(url, timeout=5).status == 200:
                ok += 1
        except Exception as e:
            print(f"/livez during the flood: {e!r}"[:200])
        peak = max(peak, rss_kb(pid))
        time.sleep(0.5)
    print(f"opened {len(socks)} livez_ok {ok} rss_before_kb {rss0} rss_peak_kb {peak}")
    for s in socks:
        s.close()
elif mode == "perclient":
    held, refused = [], 0
    for i in range(70):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2,
                                         source_address=("127.0.1.1", 0))
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            held.append(s)
        except OSError:
            refused += 1
    # a refused connection is accepted by the kernel, then closed at once
    # (readable: EOF); the others wait for their request (deadline: 3 s)
    t0, closed = time.time(), 0
    while closed < 70 - 64 and time.time() - t0 < 1.5:
        time.sleep(0.1)
        closed = len(select.select(held, [], [], 0)[0])
    print(f"held {len(held)} closed {closed}")
    for s in held:
        s.close()
EOF

wh_log "1. an unauthenticated POST of a large body"
out=$(python3 "$WH_TMP/flood.py" body401 "$APORT")
case "$out" in
"HTTP/1.1 401"*) ;;
*) wh_fail "a POST without a token waits for its body: '$out' (want HTTP/1.1 401 before the body)" ;;
esac
# and one with a token still reads its body (a JSON error about it, not a 401)
code=$(curl -s -o "$WH_TMP/post.out" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' --data '{"name":' "$A/v1/tenants")
[ "$code" = 400 ] && grep -q '"field":"body"' "$WH_TMP/post.out" ||
    wh_fail "a POST with a token: $code $(cat "$WH_TMP/post.out")"

wh_log "2. slow-loris against a 3 s request deadline"
out=$(python3 "$WH_TMP/flood.py" loris "$APORT")
wh_log "$out"
case "$out" in
"closed after"*) ;;
*) wh_fail "a header trickle of a byte a second is never closed: $out" ;;
esac
wh_wait_until 10 grep -q "did not arrive within the deadline" "$WH_TMP/admin.log" ||
    wh_fail "no log line about the closed slow request"
n=$(metric_of walhook_admin_http_connections_closed_total 'reason="deadline"')
[ "${n%.*}" -ge 1 ] 2>/dev/null || wh_fail "deadline closures not counted: $n"

wh_log "3. a flood over the connection cap"
max=$(metric_of walhook_admin_http_connections 'kind="max"')
[ "$max" = 160 ] || wh_fail "the connection cap with 256 files is $max, not 160"
out=$(python3 "$WH_TMP/flood.py" flood "$APORT" "$APID" 400)
wh_log "$out"
echo "$out" | grep -q "livez_ok 3 " || wh_fail "/livez does not answer during the flood: $out"
peak=$(echo "$out" | sed -n 's/.*rss_peak_kb \([0-9]*\).*/\1/p')
[ -n "$peak" ] && [ "$peak" -lt 102400 ] ||
    wh_fail "the admin's RSS reached ${peak:-?} kB in the flood (bound: 100 MB)"
wh_wait_until 10 grep -q "closed to make room" "$WH_TMP/admin.log" ||
    wh_fail "no log line about connections replaced at the cap"
n=$(metric_of walhook_admin_http_connections_closed_total 'reason="evicted"')
[ "${n%.*}" -ge 1 ] 2>/dev/null || wh_fail "evictions at the cap not counted: $n"

wh_log "4. the per-client cap"
out=$(python3 "$WH_TMP/flood.py" perclient "$APORT")
wh_log "$out"
closed=$(echo "$out" | sed -n 's/.*closed \([0-9]*\).*/\1/p')
[ "${closed:-0}" = 6 ] || wh_fail "70 connections from 127.0.1.1: want 6 refused (cap 64): $out"
n=$(metric_of walhook_admin_http_connections_refused_total 'reason="per_client"')
[ "${n%.*}" -ge 6 ] 2>/dev/null || wh_fail "per-client refusals not counted: $n"
grep -q "the per-client cap" "$WH_TMP/admin.log" || wh_fail "no log line about the per-client cap"
wh_wait_http "$A/livez" 10 || wh_fail "the admin does not answer after the tests"
wh_pass "401 before the body, loris closed by the deadline, /livez at the cap (RSS peak ${peak} kB), per-client cap"
