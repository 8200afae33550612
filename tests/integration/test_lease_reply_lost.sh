#!/usr/bin/env bash
# A takeover whose Acquire reply is lost still waits for the old holder's
# requests.
#   1. d0 alone holds a; the receiver holds its POST of the row "row-slow"
#      for 28 s (http_timeout_ms 30 s); d0 is stopped (SIGTERM) meanwhile
#      and releases the lease with requests abandoned.
#   2. d1 (lease TTL 15 s, ipc.timeout_ms 2 s) acquires a: the store grants
#      it as a takeover and stores it, but the write's WAL sync is held
#      (wh_syncgate) until d1 has given the call up, so the reply that says
#      "taken over" reaches nobody.
#   3. d1's next Acquire (a round later) is granted as d1's own lease.
# Checks: no POST overlaps d0's held one, and every row arrives. Before: the
# store told the takeover once, in the lost reply; the next grant said
# nothing of it and d1 posted at once while d0's request was still at the
# receiver. test_lease_reply_restart: the store restarts instead.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
source "$(dirname "$0")/../lib/leases.sh"
GATE=""
trap '[ -n "$GATE" ] && rm -f "$GATE"; wh_cleanup' EXIT
export WALHOOK_DISPATCHER_HTTP_TIMEOUT_MS=30000 WALHOOK_DISPATCHER_COMMIT_INTERVAL_MS=200
WH_LEASE_RECEIVER_ARGS=(--delay-match row-slow --delay-times 1)
WH_LEASE_GATED=1 wh_lease_stack 1 28000 a
wh_lease_reply_lost 0
wh_pass "a takeover whose Acquire reply was lost waited for the old holder's request when granted again: no overlapping POST, every row delivered"
