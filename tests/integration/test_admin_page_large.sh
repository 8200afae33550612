#!/usr/bin/env bash
# The status page on a large state (40 tenants of 31 targets: each target's
# backlog is two calls to the store, one at a time on the admin's client),
# the store answering:
#  1. 20 pages loaded at once, three times, each show the tenants. Before,
#     the page used what its task read only when the task had returned,
#     and the task read the backlogs after the slots until the very
#     deadline the page waits for: a task that had the state was still
#     reading then, and the page said "runtime state unavailable: the
#     store did not answer within 2000 ms" (12 to 18 of 20 here).
#  2. Pages loaded while the store is stopped (SIGSTOP) do not leave tasks
#     queued for the store's client behind it: the admin then stops
#     cleanly. Before, the tasks caught in their backlog reads waited for
#     the client one after another, 3 s each (up to a minute after 20
#     clients' pages), past the admin's shutdown: "the backend is left
#     open".
# Each tenant but the first has a source that refuses connections (its
# slot an error at once). curl's --max-time is a hang guard only: no
# assertion on time.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
STOPPED_PID=""
trap '[ -n "$STOPPED_PID" ] && kill -CONT "$STOPPED_PID" 2>/dev/null; rm -f "$WH_TMP/go"; wh_cleanup' EXIT
wh_tmpdir
N=20
NX=39 # tenants besides the first
targets=""
for i in $(seq 1 31); do targets+="${targets:+, }{ name = \"t$i\"; url = \"http://127.0.0.1:9/t$i\"; }"; done
more=""
for k in $(seq 1 $NX); do
    more+="${more:+,} { name = \"x$k\"; source = { dsn = \"postgresql://postgres@127.0.0.1:1/postgres\"; slot = \"x$k\"; publication = \"walhook\"; }; targets = ( $targets ); }"
done
# (1) is about what the page shows, not how fast: the admin waits 15 s
# (admin.stats_wait_ms) so a loaded machine cannot make a page miss its
# deadline; (2) runs an admin with the default 2 s
export WALHOOK_ADMIN_STATS_WAIT_MS=15000
wh_ingest_admin_setup "tenants = ( $more );"
A="http://127.0.0.1:$APORT"
shows() { grep -q "<tr class=\"tenant\"><td class=\"name\">x$NX</td>" "$1"; }

page_alone() { curl -sS -o "$WH_TMP/one.html" --max-time 20 "$A/" && shows "$WH_TMP/one.html"; }
wh_wait_until 60 page_alone || wh_fail "a page alone does not show the tenants: $(grep -o '<p class="bad">[^<]*' "$WH_TMP/one.html")"

# (1) pages at once, the store answering, three rounds
for round in 1 2 3; do
    pids=()
    for i in $(seq 1 $N); do
        curl -sS -o "$WH_TMP/p$i.html" -w '%{http_code}' --max-time 20 "$A/" >"$WH_TMP/code$i" 2>/dev/null &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    bad=0
    for i in $(seq 1 $N); do
        shows "$WH_TMP/p$i.html" && continue
        bad=$((bad + 1))
        wh_log "round $round, page $i: $(cat "$WH_TMP/code$i") $(grep -o '<p class="bad">[^<]*' "$WH_TMP/p$i.html")"
    done
    [ "$bad" = 0 ] ||
        wh_fail "round $round: $bad of $N pages loaded at once do not show the tenants, the store answering"
done
wh_log "3 x $N pages at once show the $((NX + 1)) tenants"
wh_kill admin TERM
unset WALHOOK_ADMIN_STATS_WAIT_MS
wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
wh_wait_http "$A/livez" 30 || wh_fail "the admin does not answer /livez after its restart"

# (2) pages loaded while the store stops, then the admin stopped
touch "$WH_TMP/go"
load() {
    while [ -e "$WH_TMP/go" ]; do
        curl -sS -o /dev/null --max-time 20 "$A/" 2>/dev/null && echo >>"$WH_TMP/served"
    done
}
pids=()
for i in $(seq 1 $N); do load & pids+=($!); done
busy() { [ "$(wc -l <"$WH_TMP/served" 2>/dev/null || echo 0)" -ge $((2 * N)) ]; }
wh_wait_until 60 busy || wh_fail "the admin does not serve the pages"
STOPPED_PID=${WH_PIDS[store]}
kill -STOP "$STOPPED_PID" || wh_fail "cannot stop the store"
wh_log "store stopped under $N clients' pages"
# a few pages of this one's meanwhile (answering, the store down)
for r in 1 2 3; do curl -sS -o /dev/null --max-time 20 "$A/" 2>/dev/null; done
rm -f "$WH_TMP/go"
for p in "${pids[@]}"; do wait "$p"; done
wh_kill admin TERM
! grep -E "left open|did not finish" "$WH_TMP/admin.log" ||
    wh_fail "the admin did not stop cleanly after pages loaded with the store stopped"
kill -CONT "$STOPPED_PID"
STOPPED_PID=""
wh_pass "$N status pages at once show $((NX + 1)) tenants of 31 targets; pages loaded with the store stopped left nothing behind at the admin's stop"
