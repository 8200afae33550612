#!/usr/bin/env bash
# A stream that the walsender ends right after it starts (a publication row
# filter fails on the same row every time) is retried with a growing delay,
# as a failed connect is, instead of every ~50 ms: the attempt counter
# starts over only after a stream ran for a while. The review counted 130
# reconnects in 6 s; with the backoff (100 ms doubling, full jitter, up to
# ingestor.reconnect_max_ms = 10 s) a 12 s window holds about 8.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
wh_rowfilter_error_up
wh_wait_until 30 bash -c "grep -q 'stream ended.*reconnecting' '$WH_TMP/walhook.log'" ||
    wh_fail "the stream never ended with the row filter's error"
sleep 12
n=$(grep -c 'stream ended.*reconnecting' "$WH_TMP/walhook.log")
wh_log "$n reconnects in $(($(date +%s) - T0)) s"
[ "$n" -le 20 ] || wh_fail "$n reconnects in $(($(date +%s) - T0)) s: no backoff"
[ "$n" -ge 3 ] || wh_fail "only $n reconnects in $(($(date +%s) - T0)) s: is it retried at all?"
wh_pass "$n reconnects in $(($(date +%s) - T0)) s of a stream that fails at once (backoff)"
