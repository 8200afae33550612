#!/usr/bin/env bash
# The status page at / answers while the store is stopped (SIGSTOP: it
# neither answers nor closes its sockets), and says so: the store's row is
# down with why, and the tenants' part is "runtime state unavailable"
# naming the store. Before, the page asked the daemons' Stats (2 s), then
# read the state from the store (its client's 3 s timeout, one read at a
# time behind a mutex), then the slots, one step after another: one page
# took 4 to 7 s, and pages loaded at once (browser tabs refreshing every
# 5 s, a probe) queued behind each other's state read, 3 s each: of 8 at
# once the last two had no answer after 20 s (the test loads 10). Now the state read runs on a
# task of its own beside the Stats (adm_bg), waited for 2 s like /metrics,
# and waits for another read under way until then at most.
# curl's --max-time is a hang guard only: no assertion on time.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
STOPPED_PID=""
trap '[ -n "$STOPPED_PID" ] && kill -CONT "$STOPPED_PID" 2>/dev/null; wh_cleanup' EXIT
wh_tmpdir
wh_ingest_admin_setup
A="http://127.0.0.1:$APORT"
N=10

page_shows_state() { # the page, the store answering: the tenant and its targets
    curl -fsS --max-time 20 -o "$WH_TMP/page.html" "$A/" &&
        grep -q '<tr class="tenant"><td class="name">default</td>' "$WH_TMP/page.html"
}
wh_wait_until 30 page_shows_state || wh_fail "the page does not show the tenant: $(head -c 400 "$WH_TMP/page.html")"

STOPPED_PID=${WH_PIDS[store]}
kill -STOP "$STOPPED_PID" || wh_fail "cannot stop the store"
wh_log "store $STOPPED_PID stopped; $N page loads at once"
pids=()
for i in $(seq 1 $N); do
    curl -sS -o "$WH_TMP/p$i.html" -w '%{http_code} %{time_total}' --max-time 20 "$A/" >"$WH_TMP/code$i" 2>/dev/null &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
for i in $(seq 1 $N); do
    read -r code took <"$WH_TMP/code$i"
    wh_log "page load $i: $code after ${took:-?} s"
done
for i in $(seq 1 $N); do
    read -r code _ <"$WH_TMP/code$i"
    [ "$code" = 200 ] ||
        wh_fail "page load $i of $N did not answer while the store is stopped (curl: $code)"
    grep -Eq '<tr><td>store</td><td class="bad">no</td><td>no</td><td></td><td>[^<]+</td></tr>' "$WH_TMP/p$i.html" ||
        wh_fail "page load $i does not show the store down with why: $(grep -o '<tr><td>store</td>.*</tr>' "$WH_TMP/p$i.html")"
    grep -q '<p class="bad">runtime state unavailable: [^<]*store' "$WH_TMP/p$i.html" ||
        wh_fail "page load $i does not say the state is unavailable: $(grep -o '<p class="bad">[^<]*' "$WH_TMP/p$i.html")"
done
why=$(grep -o '<p class="bad">runtime state unavailable: [^<]*' "$WH_TMP/p1.html" | sed 's/<[^>]*>//')
wh_log "all $N page loads answered: $why"

kill -CONT "$STOPPED_PID"
STOPPED_PID=""
wh_wait_until 30 page_shows_state || wh_fail "the page does not show the tenant after the store resumed"
wh_pass "$N status pages at once answered with the store stopped, each with the store down and '$why'"
