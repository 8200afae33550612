#!/usr/bin/env bash
# max_connections counts every socket a target has open, idle pooled
# keep-alive connections included (issue 8: a connection pool per target).
# A store pre-filled with N orders-shaped events (wh_stagebench, no
# PostgreSQL) is posted by one dispatcher to a receiver that answers after
# DELAY ms:
#   t   ordering = by_key, 4 lanes, max_connections = 4  -> up to 4 sockets
#   u   strict, max_connections = 1, same receiver port   -> its own socket
# The sockets to the receiver's port (client side, /proc/net/tcp:
# ESTABLISHED, SYN_SENT or CLOSE_WAIT, i.e. open on the dispatcher's side)
# are sampled all along: never more than 4 + 1. Then t's max_connections is
# lowered to 1 at runtime (the store's state, as the admin API writes it):
# once its requests in flight are done it closes its pooled connections, and
# from then on the port never has more than 1 + 1 sockets open (before, the 4
# idle keep-alive connections stayed open). Every event still arrives.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
N=${N:-4000}
DELAY=${DELAY:-100}
trap wh_cleanup EXIT
wh_require_bins walhook-store walhook-dispatcher walhook-receiver tests/wh_stagebench \
    tests/wh_statectl
wh_tmpdir
export WALHOOK_DISPATCHER_ALLOW_PRIVATE_NETWORKS="127.0.0.1/32"
RPORT=$(wh_free_port)
DATA="$WH_TMP/data"
CONF="$WH_TMP/walhook.conf"
cat >"$CONF" <<CONFEOF
data_dir = "$DATA";
log_level = "info";
dispatcher = { batch_max_events = 40; retry_base_ms = 20; retry_max_ms = 200; };
tenants = (
  { name = "default";
    source = { dsn = "postgresql://unused@127.0.0.1:1/x"; slot = "w_default"; publication = "w_default"; create_slot = false; };
    targets = (
      { name = "t"; url = "http://127.0.0.1:$RPORT/t"; ordering = "by_key"; lanes = 4; max_connections = 4; },
      { name = "u"; url = "http://127.0.0.1:$RPORT/u"; max_connections = 1; }
    ); } );
CONFEOF
mkdir -p -m 700 "$DATA"
wh_spawn store "$BIN/walhook-store" -c "$CONF"
wh_wait_until 30 test -S "$DATA/store.sock" || wh_fail "the store did not start"
"$BIN/tests/wh_stagebench" append "ipc://$DATA/store.sock" "$N" >/dev/null ||
    wh_fail "appending $N events failed"
wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --delay-ms "$DELAY" \
    --out "$WH_TMP/got.jsonl"
# the dispatcher must not meet a refused connection (retries, an open
# breaker) before the receiver listens: that would leave t without sockets
wh_wait_http "http://127.0.0.1:$RPORT/" 10 || wh_fail "the receiver cannot listen"

# sockets of the dispatcher's side to the receiver's port
HEXPORT=$(printf '%04X' "$RPORT")
open_sockets() {
    awk -v p=":$HEXPORT" 'NR > 1 && substr($3, length($3) - 4) == p &&
        ($4 == "01" || $4 == "02" || $4 == "08") { n++ } END { print n + 0 }' /proc/net/tcp
}
# max of open_sockets over SECS seconds (every 50 ms)
sample_max() {
    local secs=$1 m=0 c end
    end=$(($(date +%s%N) + secs * 1000000000))
    while [ "$(date +%s%N)" -lt "$end" ]; do
        c=$(open_sockets)
        [ "$c" -gt "$m" ] && m=$c
        sleep 0.05
    done
    echo "$m"
}

got_ge() { [ "$(wh_count_events "$WH_TMP/got.jsonl")" -ge "$1" ]; }

# phase 1: t posts with its 4 lanes. The sockets are sampled from the
# dispatcher's start until 2 s after the first 200 events, so that a slow
# start (a loaded machine) cannot move the sampling past t's parallel part.
STOPF="$WH_TMP/sample.stop"
( m=0; while [ ! -e "$STOPF" ]; do
      c=$(open_sockets); [ "$c" -gt "$m" ] && m=$c && echo "$m" >"$WH_TMP/m1"
      sleep 0.05
  done ) &
SAMPLER=$!
wh_spawn dispatcher "$BIN/walhook-dispatcher" -c "$CONF"
wh_wait_until 30 got_ge 200 ||
    wh_fail "nothing delivered: $(tail -3 "$WH_TMP/dispatcher.log")"
sleep 2
touch "$STOPF"
wait "$SAMPLER"
m1=$(cat "$WH_TMP/m1" 2>/dev/null || echo 0)
wh_log "max_connections 4 + 1: at most $m1 sockets open"
[ "$m1" -le 5 ] || wh_fail "$m1 sockets open to the receiver, max_connections allows 4 + 1"
[ "$m1" -ge 3 ] || wh_fail "only $m1 sockets open: the lanes did not post in parallel"

# phase 2: t lowered to 1 connection while it posts
"$BIN/tests/wh_statectl" -c "$CONF" set-target default t max_connections=1 >/dev/null ||
    wh_fail "cannot set max_connections"
wh_wait_until 30 grep -q "target default/t: closed [0-9]* pooled connection" \
    "$WH_TMP/dispatcher.log" ||
    wh_fail "t never closed its pooled connections: $(tail -3 "$WH_TMP/dispatcher.log")"
left=$(( 2 * N - $(wh_count_events "$WH_TMP/got.jsonl") ))
[ "$left" -gt 0 ] || wh_fail "everything was delivered before the check (raise N)"
m2=$(sample_max 2)
wh_log "max_connections 1 + 1: at most $m2 sockets open ($left events were left)"
[ "$m2" -le 2 ] || wh_fail "$m2 sockets open to the receiver after max_connections = 1 (+ 1)"

# every event arrives (t and u each get all N)
wh_wait_until 120 got_ge $((2 * N)) ||
    wh_fail "not delivered: $(wh_count_events "$WH_TMP/got.jsonl") of $((2 * N))"
ids=$(grep -o '"id":"default:[^"]*"' "$WH_TMP/got.jsonl" | sort -u | wc -l)
[ "$ids" -eq "$N" ] || wh_fail "$ids distinct ids, expected $N"
m3=$(open_sockets)
[ "$m3" -le 2 ] || wh_fail "$m3 sockets open at the end"
wh_pass "sockets per target within max_connections, idle ones included ($m1 with 4 + 1, $m2 after 1 + 1); all $N events to both targets"
