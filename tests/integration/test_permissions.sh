#!/usr/bin/env bash
# Data directory permissions (issue 5, defect 2). The data directory holds
# stored rows: a directory group or others may enter (0755, 0750) is refused
# by every daemon, `walhook check` and `walhook up` (exit 2, a message naming
# the path and the fix "chmod 700 DIR"); a missing one is created 0700 and
# everything the store writes in it (RocksDB files, socket, pid file) is 0600
# whatever the caller's umask.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
wh_require_bins walhook walhook-store walhook-ingestor walhook-dispatcher walhook-admin
wh_tmpdir
umask 022
APORT=$(wh_free_port)
conf() { # FILE DATA
    {
        echo "data_dir = \"$2\";"
        echo "admin = { listen = \"127.0.0.1:$APORT\"; };"
        echo "source = { dsn = \"postgresql://postgres@127.0.0.1:1/postgres\"; };"
        echo "targets = ( { name = \"t0\"; url = \"http://127.0.0.1:9/hook\"; } );"
    } >"$1"
}

failures=0
checks=0
# refused CMD...: exits 2 within 10 s naming $DIR and "chmod 700 $DIR"
refused() {
    checks=$((checks + 1))
    local out rc=0
    out=$(timeout -k 5 10 "$@" </dev/null 2>&1) || rc=$?
    if [ "$rc" != 2 ] || ! grep -qF "chmod 700 $DIR" <<<"$out"; then
        echo "  FAIL ${*##*/}: exit $rc, output:"
        sed 's/^/      /' <<<"$out" | head -n 5
        failures=$((failures + 1))
    else
        echo "  ok   $(basename "$1") ${2:-}: exit 2: $(grep -F -m1 "$DIR" <<<"$out" | cut -c1-160)"
    fi
}
for mode in 755 750 701; do
    DIR="$WH_TMP/open$mode"
    mkdir -m "$mode" "$DIR"
    conf "$WH_TMP/open$mode.conf" "$DIR"
    for d in store ingestor dispatcher admin; do
        refused "$BIN/walhook-$d" -c "$WH_TMP/open$mode.conf"
    done
    refused "$BIN/walhook" check -c "$WH_TMP/open$mode.conf"
    refused "$BIN/walhook" up -c "$WH_TMP/open$mode.conf"
    [ -z "$(ls -A "$DIR")" ] || { echo "  FAIL files written into the refused $DIR"; failures=$((failures + 1)); }
done
[ "$failures" = 0 ] || wh_fail "$failures of $checks refusals failed"

# A fresh data directory (and its missing parent) is created 0700; the
# store's files are 0600 although this shell's umask is 022.
DIR="$WH_TMP/fresh/data"
conf "$WH_TMP/fresh.conf" "$DIR"
wh_spawn store "$BIN/walhook-store" -c "$WH_TMP/fresh.conf"
wh_wait_until 30 grep -q "store running" "$WH_TMP/store.log" || wh_fail "the store did not start"
check_modes() { # WHEN
    local bad
    [ "$(stat -c %a "$DIR")" = 700 ] || wh_fail "$1: $DIR has mode $(stat -c %a "$DIR"), not 700"
    bad=$(find "$DIR" -mindepth 1 \( -type d ! -perm 700 \) -o \( ! -type d ! -perm 600 \) \
        -printf '%m %p\n')
    [ -z "$bad" ] || wh_fail "$1: not private: $bad"
}
check_modes "running"
nfiles=$(find "$DIR" -type f | wc -l)
[ -n "$(find "$DIR/rocksdb" -name 'MANIFEST-*')" ] || wh_fail "no RocksDB files in $DIR/rocksdb"
[ -f "$DIR/store.pid" ] || wh_fail "no pid file $DIR/store.pid"
wh_kill store TERM
check_modes "after stop"
[ ! -e "$DIR/store.pid" ] || wh_fail "the pid file outlived a clean stop"
wh_pass "$checks refusals of data dirs 0755/0750/0701 (exit 2, 'chmod 700 DIR'); a fresh data dir" \
    "is 0700 and its $nfiles store files are 0600 under umask 022"
