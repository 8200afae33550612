#!/usr/bin/env bash
# Issue 5, defect 5: readiness that tells the truth. The data dir is a small
# tmpfs of its own (a real file system that fills up); while the store cannot
# write ("No space left on device") the admin's /readyz is 503 naming the
# store and the cause; once space is back it is 200 again, and every change
# arrives in order. Needs the right to mount (root, as in CI); skips
# otherwise.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
CHANGES=${CHANGES:-40000}
MNT=""
cleanup() {
    wh_stop_all
    if [ -n "$MNT" ]; then
        umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
    fi
    wh_cleanup
}
trap cleanup EXIT
wh_require_bins walhook-store walhook-ingestor walhook-dispatcher walhook-admin walhook-receiver \
    tests/wh_loadgen tests/wh_check
wh_tmpdir
DATA="$WH_TMP/data"
mkdir -p "$DATA"
if ! mount -t tmpfs -o size=32m,mode=0700 walhook-test "$DATA" 2>"$WH_TMP/mount.err"; then
    echo "SKIP $WH_TEST_NAME: cannot mount a tmpfs for the data dir ($(head -c 200 "$WH_TMP/mount.err")); this test needs root"
    exit 0
fi
MNT=$DATA
pg_start || wh_fail "cannot start PostgreSQL"
"$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --tables 2 --setup-only || wh_fail "table setup failed"

RPORT=$(wh_free_port)
APORT=$(wh_free_port)
ADMIN="http://127.0.0.1:$APORT"
CONF="$WH_TMP/walhook.conf"
wh_write_conf "$CONF" "$PG_DSN" "$DATA" "$APORT" "http://127.0.0.1:$RPORT/hook"
echo 'store = { write_buffer_bytes = 1048576; };' >>"$CONF"
wh_spawn store "$BIN/walhook-store" -c "$CONF"
sleep 0.3
wh_spawn ingestor "$BIN/walhook-ingestor" -c "$CONF"
wh_spawn dispatcher "$BIN/walhook-dispatcher" -c "$CONF"
wh_spawn admin "$BIN/walhook-admin" -c "$CONF"
wh_wait_http "$ADMIN/readyz" 60 || wh_fail "never ready before the disk filled"

# Fill the file system but 2 MiB, then write more than that. The receiver
# starts only once space is back: with a live target the watermark follows
# the stream, the GC filter drops events at flush and the store's disk use
# can stay below 2 MiB, so the disk would not fill on a fast machine.
avail_kib=$(df -k --output=avail "$DATA" | tail -n 1 | tr -d ' ')
dd if=/dev/zero of="$DATA/filler" bs=1024 count=$((avail_kib - 2048)) status=none ||
    wh_fail "cannot fill the data dir"
wh_spawn loadgen "$BIN/tests/wh_loadgen" --dsn "$PG_DSN" --changes "$CHANGES" --seed 5 \
    --max-txn 200 --tables 2 --expect "$WH_TMP/expected.jsonl"

_store_not_ready() {
    local code
    code=$(curl -s -o "$WH_TMP/readyz.json" -w '%{http_code}' --max-time 3 "$ADMIN/readyz")
    [ "$code" = 503 ] && grep -q '"not_ready":"store"' "$WH_TMP/readyz.json" &&
        grep -q 'No space left on device' "$WH_TMP/readyz.json"
}
wh_wait_until 60 _store_not_ready ||
    wh_fail "/readyz did not turn 503 naming the store and the cause: $(cat "$WH_TMP/readyz.json" 2>/dev/null)"
wh_log "while full: $(cut -c1-300 "$WH_TMP/readyz.json")"
# the store is not ready from its first failing write on; the failing
# Append's line is written after that (and the first failing write may be
# another one than an Append)
wh_wait_until 15 grep -q "append .* failed: .*No space left on device" "$WH_TMP/store.log" ||
    wh_fail "the store did not log the failing appends"
errors=$(wh_metric "$ADMIN/metrics" walhook_store_write_errors_total)
[ "$errors" -ge 1 ] 2>/dev/null || wh_fail "walhook_store_write_errors_total is $errors"
wh_alive store || wh_fail "the store died on a full disk"
# the ingestor stops confirming to PostgreSQL: the slot holds while the disk
# is full (it confirms only what the store acknowledged)
_slot_flush() { pg_psql -At -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'walhook'"; }
# RocksDB recovers from the error by itself when its own housekeeping frees
# space (a flush retried once the WALs it obsoletes are gone): the store
# then writes, durably, for a moment ("writes succeed again" in its log) and
# may acknowledge. The slot must hold over 2 s in which the store did not
# write at all; an interval with such a recovery in it is measured again.
_recoveries() { grep -c "writes succeed again" "$WH_TMP/store.log"; }
for try in 1 2 3 4 5; do
    r1=$(_recoveries)
    f1=$(_slot_flush)
    sleep 2
    _store_not_ready || wh_fail "the store became writable again by itself while the disk was full"
    f2=$(_slot_flush)
    [ "$(_recoveries)" = "$r1" ] && break
    wh_log "the store wrote again for a moment (RocksDB freed space) between two samples: measuring again"
    [ "$try" = 5 ] && wh_fail "the store kept recovering: no 2 s without a write to measure the slot over"
done
[ "$f1" = "$f2" ] || wh_fail "the slot's confirmed flush moved from $f1 to $f2 while the store could not write"
# (the ingestor logs once the store's error reply is back)
wh_wait_until 15 grep -q "append of batches .* failed: .*No space left on device" \
    "$WH_TMP/ingestor.log" ||
    wh_fail "the ingestor did not report the store's clear error"

# Space comes back: ready again, and everything arrives in order.
rm -f "$DATA/filler"
wh_spawn receiver "$BIN/walhook-receiver" --listen "127.0.0.1:$RPORT" --out "$WH_TMP/received.jsonl"
wh_wait_http "$ADMIN/readyz" 60 ||
    wh_fail "/readyz not 200 again after space came back: $(curl -s "$ADMIN/readyz")"
wait "${WH_PIDS[loadgen]}" || wh_fail "load generation failed"
unset "WH_PIDS[loadgen]"
wh_wait_received 120 "$WH_TMP/expected.jsonl" "$WH_TMP/received.jsonl" ||
    wh_fail "not every change arrived in order after space came back"
wh_pass "/readyz was 503 naming the store and 'No space left on device' while the disk was full ($errors failed writes), the slot held at $f1, 200 again after space came back; $CHANGES changes delivered in order"
