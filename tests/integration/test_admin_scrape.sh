#!/usr/bin/env bash
# /metrics answers while a daemon is stopped (SIGSTOP: it neither answers
# nor closes its sockets), rows streaming meanwhile, with what it has: the
# other daemons' samples, walhook_daemon_up 0 for the stopped one, and the
# sources' slot metrics. Before, with the store stopped a scrape took 4 s
# (the Stats, then the state read of the slot metrics, 3 s), and once the
# store's listen backlog was full (every client's retry leaves a
# connection in it: about 30 s into a stream) the admin's connect() to it
# blocked until the store ran again, so no scrape answered at all; the same
# held for a stopped ingestor or dispatcher once the admin's own probes had
# filled its control socket's backlog. The test fills each stopped daemon's
# backlog itself (what those retries do), then scrapes. Checked for the
# store (the ingestor throttled by it: ingestor.window_bytes unacknowledged),
# the ingestor and the dispatcher in turn; each one resumed (SIGCONT), every
# daemon answers again, and every row inserted meanwhile is delivered.
# curl's --max-time is a hang guard only: no assertion on time.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap 'stream_stop; wh_cleanup' EXIT
wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-admin walhook-receiver
command -v python3 >/dev/null || wh_fail "python3 is missing"
wh_tmpdir
wh_items_prepare
# a small window: the ingestor is throttled soon after the store stops
echo 'ingestor = { window_bytes = 65536; };' >>"$CONF"
for d in store ingestor dispatcher admin; do
    wh_spawn "$d" "$BIN/walhook-$d" -c "$CONF"
done
A="http://127.0.0.1:$APORT"
M="$A/metrics"
wh_wait_slot_active walhook 60 || wh_fail "the ingestor did not start streaming"
wh_wait_http "$A/readyz" 60 || wh_fail "not ready: $(curl -s --max-time 20 "$A/readyz")"

# rows inserted in the background, 100 every 0.1 s, ids from a sequence
pg_psql -c "CREATE SEQUENCE ids" >/dev/null || wh_fail "cannot create the sequence"
STREAM=""
stream_start() {
    (while [ ! -e "$WH_TMP/stream.stop" ]; do
        pg_psql -c "INSERT INTO items SELECT nextval('ids') FROM generate_series(1, 100)" \
            >/dev/null 2>&1
        sleep 0.1
    done) &
    STREAM=$!
}
stream_stop() { # the INSERT under way, if any, finishes first
    [ -n "$STREAM" ] || return 0
    touch "$WH_TMP/stream.stop"
    wait "$STREAM" 2>/dev/null
    STREAM=""
}

# scrape: /metrics into $WH_TMP/m.txt; fails the test when it does not answer
SCRAPES=0
scrape() {
    local t0 code
    t0=$(date +%s%N)
    code=$(curl -sS -o "$WH_TMP/m.txt" -w '%{http_code}' --max-time 30 "$M") || code=000
    SCRAPES=$((SCRAPES + 1))
    LAST_MS=$((($(date +%s%N) - t0) / 1000000))
    [ "$code" = 200 ] || wh_fail "/metrics did not answer ($code, after ${LAST_MS} ms) while $STOPPED is stopped"
}
sample() { # NAME{LABELS}: its value in the last scrape, empty when absent
    awk -v k="$1" '$1 == k { print $2 }' "$WH_TMP/m.txt"
}
sum_of() { # NAME: the sum of its samples in the last scrape (-1: none)
    awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $NF; f = 1 }
        END { if (f) printf "%.3f\n", s; else print -1 }' "$WH_TMP/m.txt"
}
# check_scrape STOPPED: the stopped daemon is down and has no samples of its
# own; the others are up with theirs; the slots were read
check_scrape() {
    local d
    scrape
    for d in store ingestor dispatcher; do
        if [ "$d" = "$1" ]; then
            [ "$(sample "walhook_daemon_up{daemon=\"$d\"}")" = 0 ] ||
                wh_fail "walhook_daemon_up of the stopped $d is '$(sample "walhook_daemon_up{daemon=\"$d\"}")', not 0"
            [ -z "$(sample "walhook_up{daemon=\"$d\"}")" ] ||
                wh_fail "the stopped $d has samples of its own"
        else
            [ "$(sample "walhook_daemon_up{daemon=\"$d\"}")" = 1 ] ||
                wh_fail "walhook_daemon_up of $d is '$(sample "walhook_daemon_up{daemon=\"$d\"}")' while the $1 is stopped"
            [ "$(sample "walhook_up{daemon=\"$d\"}")" = 1 ] ||
                wh_fail "no samples of $d while the $1 is stopped"
        fi
    done
    [ "$(sample 'walhook_slot_query_ok{tenant="default",slot="walhook"}')" = 1 ] ||
        wh_fail "no slot metrics while the $1 is stopped"
    wh_log "/metrics with the $1 stopped: 200, the $1 down, the others up (${LAST_MS} ms)"
}
all_up() {
    scrape
    local d
    for d in store ingestor dispatcher; do
        [ "$(sample "walhook_daemon_up{daemon=\"$d\"}")" = 1 ] || return 1
    done
}
throttled() { # the ingestor does not read the stream (window full)
    scrape
    awk -v v="$(sum_of walhook_replication_lag_age_seconds)" 'BEGIN { exit !(v > 0) }'
}

# fill_backlog NAME PATH: connections to the stopped daemon's unix socket
# PATH, none accepted, until its listen backlog is full (a connect() would
# wait): what the retries of its clients leave there. Process NAME holds them.
cat >"$WH_TMP/fill.py" <<'EOF'
import socket, sys, time
held = []
while len(held) < 4096:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect(sys.argv[1])
    except BlockingIOError:
        s.close()
        print("full after", len(held), flush=True)
        break
    held.append(s)
else:
    print("never full", flush=True)
time.sleep(3600)
EOF
fill_backlog() {
    wh_spawn "$1" python3 "$WH_TMP/fill.py" "$2"
    wh_wait_until 30 grep -q "full after" "$WH_TMP/$1.log" ||
        wh_fail "the backlog of $2 did not fill: $(cat "$WH_TMP/$1.log")"
    wh_log "$2: $(cat "$WH_TMP/$1.log")"
}

stream_start
wh_wait_until 60 wh_events_at_least "$WH_TMP/received.jsonl" 500 || wh_fail "no rows delivered"
STOPPED=none
wh_wait_until 30 all_up || wh_fail "not every daemon up before the stops"

# stop_case DAEMON: DAEMON SIGSTOPped mid-stream (the store: with the
# ingestor throttled by it); every scrape answers, with it down, also once
# its connection backlog is full; all up again after SIGCONT
stop_case() {
    local d=$1
    STOPPED=$d
    kill -STOP "${WH_PIDS[$d]}"
    if [ "$d" = store ]; then
        wh_wait_until 60 throttled || wh_fail "the ingestor was not throttled by the stopped store"
    fi
    check_scrape "$d"
    fill_backlog "fill_$d" "$DATA/$d.sock.direct"
    for _ in 1 2 3; do check_scrape "$d"; done
    wh_kill "fill_$d"
    kill -CONT "${WH_PIDS[$d]}"
    STOPPED=none
    wh_wait_until 60 all_up || wh_fail "not every daemon up after the $d resumed"
}
for d in store ingestor dispatcher; do stop_case "$d"; done

# nothing lost: every row inserted, the ones of the stops too, delivered
stream_stop
pg_psql -At -c "SELECT id FROM items" >"$WH_TMP/ids.raw" || wh_fail "cannot read the rows' ids"
LC_ALL=C sort "$WH_TMP/ids.raw" >"$WH_TMP/ids.txt"
N=$(wc -l <"$WH_TMP/ids.txt")
undelivered() { # the ids in the table that did not arrive
    grep -o '"after":{"id":[0-9]*}' "$WH_TMP/received.jsonl" | grep -o '[0-9]*' |
        LC_ALL=C sort -u | LC_ALL=C comm -23 "$WH_TMP/ids.txt" -
}
none_undelivered() { [ -z "$(undelivered | head -n 1)" ]; }
wh_wait_until 120 none_undelivered ||
    wh_fail "$(undelivered | wc -l) of $N rows not delivered (e.g. id $(undelivered | head -n 1))"
wh_wait_until 30 all_up || wh_fail "not every daemon up at the end"
curl -fsS --max-time 30 -o /dev/null "$A/readyz" || wh_fail "/readyz is not 200 at the end"
wh_pass "$SCRAPES scrapes answered with the store, the ingestor, the dispatcher stopped in turn (their backlogs full), each reported down and the others' samples there; $N rows delivered"
