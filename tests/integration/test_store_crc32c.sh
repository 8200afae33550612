#!/usr/bin/env bash
# walhook-store computes RocksDB's CRC32C itself (services/store/st_crc32c.cc,
# the SSE4.2 instruction instead of Debian's table-driven librocksdb). The
# checksums must be the library's: wide events are appended, the store is
# SIGKILLed with them only in its WAL, and Debian's own tool (ldb, from
# rocksdb-tools, with the library's CRC32C) reads every WAL record without a
# checksum error and finds every event; then the store reopens the same
# directory (its WAL replay checks the CRCs again) and serves them all.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
N=3000
trap wh_cleanup EXIT
wh_require_bins walhook-store tests/wh_stagebench
wh_tmpdir
DATA="$WH_TMP/data"
mkdir -m 700 "$DATA"
CONF="$WH_TMP/walhook.conf"
wh_write_conf "$CONF" "postgresql://unused@127.0.0.1:1/x" "$DATA" "$(wh_free_port)" \
    "http://127.0.0.1:9/hook"
URL="ipc://$DATA/store.sock"
start_store() {
    wh_spawn store "$BIN/walhook-store" -c "$CONF"
    wh_wait_until 30 test -S "$DATA/store.sock" || wh_fail "the store did not listen"
}
start_store
"$BIN/tests/wh_stagebench" --wide append "$URL" "$N" >"$WH_TMP/append.log" 2>&1 ||
    wh_fail "append: $(cat "$WH_TMP/append.log")"
wh_kill store KILL
rm -f "$DATA/store.sock"
ls "$DATA"/rocksdb/*.log >/dev/null 2>&1 || wh_fail "no WAL file left to check"
checked="ldb not installed (rocksdb-tools): the library's cross-check skipped"
if command -v ldb >/dev/null; then
    for f in "$DATA"/rocksdb/*.log; do
        ldb dump_wal --walfile="$f" >"$WH_TMP/wal.txt" 2>&1 || wh_fail "ldb dump_wal $f failed: $(tail -3 "$WH_TMP/wal.txt")"
        if grep -qiE 'corrupt|checksum|mismatch' "$WH_TMP/wal.txt"; then
            wh_fail "ldb found a bad record in $f: $(grep -iE 'corrupt|checksum|mismatch' "$WH_TMP/wal.txt" | head -2)"
        fi
    done
    # the table files the store flushed: every block's checksum verified.
    # Only the live ones, as its MANIFEST names them: a flush the SIGKILL
    # cut short leaves a partial file that no version names (RocksDB never
    # reads it)
    live=$(ldb manifest_dump --path="$DATA/rocksdb/$(cat "$DATA/rocksdb/CURRENT")" 2>"$WH_TMP/manifest.err" |
        sed -n 's/^ \([0-9][0-9]*\):[0-9][0-9]*\[.*/\1/p') ||
        wh_fail "ldb manifest_dump failed: $(tail -3 "$WH_TMP/manifest.err")"
    nsst=0
    for f in "$DATA"/rocksdb/*.sst; do
        [ -e "$f" ] || continue
        num=$(basename "$f" .sst)
        grep -qx "$((10#$num))" <<<"$live" || continue
        sst_dump --file="$f" --command=verify >"$WH_TMP/sst.txt" 2>&1 ||
            wh_fail "sst_dump verify $f failed: $(tail -3 "$WH_TMP/sst.txt")"
        grep -qiE 'corrupt|checksum|mismatch' "$WH_TMP/sst.txt" &&
            wh_fail "sst_dump found a bad block in $f: $(grep -iE 'corrupt|checksum|mismatch' "$WH_TMP/sst.txt" | head -2)"
        nsst=$((nsst + 1))
    done
    # a copy: ldb's open replays the WAL into a new one; the store's own
    # replay below must read the files the store wrote
    cp -a "$DATA/rocksdb" "$WH_TMP/copy"
    got=$(ldb --db="$WH_TMP/copy" --column_family=e:default scan 2>"$WH_TMP/ldb.err" | wc -l)
    [ "$got" -eq "$N" ] || wh_fail "ldb scanned $got events of $N: $(head -3 "$WH_TMP/ldb.err")"
    checked="Debian's ldb read every WAL record (no checksum error) and $got events, sst_dump verified $nsst table file(s)"
fi
start_store
"$BIN/tests/wh_stagebench" --wide read "$URL" "$N" >"$WH_TMP/read.log" 2>&1 ||
    wh_fail "read after the restart: $(cat "$WH_TMP/read.log")"
wh_pass "$N wide events in the WAL of a SIGKILLed store: $checked; the store reopened and read all $N"
