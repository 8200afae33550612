#!/usr/bin/env bash
# Bad configuration and unreachable PostgreSQL: every daemon, `walhook check`
# and `walhook up` must exit non-zero with a message naming the problem
# (and must not hang).
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
wh_require_bins walhook walhook-store walhook-ingestor walhook-dispatcher walhook-admin
wh_tmpdir
DATA="$WH_TMP/data"
mkdir -m 700 "$DATA" # private, as every daemon requires
CLOSED=$(wh_free_port) # nothing listens there
APORT=$(wh_free_port)
GOOD_DSN="postgresql://postgres@127.0.0.1:$CLOSED/postgres"
base() { # base config with a given DSN, plus extra lines from stdin
    echo "data_dir = \"$DATA\";"
    echo "admin = { listen = \"127.0.0.1:$APORT\"; };"
    echo "source = { dsn = \"$1\"; };"
    echo "targets = ( { name = \"t0\"; url = \"http://127.0.0.1:9/hook\"; } );"
    cat
}
echo 'bogus_key = 1;' | base "$GOOD_DSN" >"$WH_TMP/unknown.conf"
echo 'store = { workers = "four"; };' | base "$GOOD_DSN" >"$WH_TMP/wrongtype.conf"
: | base 'postgresql://u@h:notaport/db' >"$WH_TMP/baddsn.conf"
: | base "$GOOD_DSN" >"$WH_TMP/unreachable.conf"

failures=0
checks=0
# expect NAME PATTERN CMD...: CMD must exit non-zero within 30 s and its
# output must match PATTERN (extended regex, case-insensitive).
expect() {
    local name=$1 pat=$2
    shift 2
    checks=$((checks + 1))
    local out rc
    out=$(cd "$WH_TMP" && timeout -k 5 30 "$@" </dev/null 2>&1)
    rc=$?
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        echo "  FAIL $name: '$*' did not exit within 30 s"
        failures=$((failures + 1))
    elif [ "$rc" = 0 ]; then
        echo "  FAIL $name: '$*' exited 0"
        failures=$((failures + 1))
    elif ! grep -qiE -- "$pat" <<<"$out"; then
        echo "  FAIL $name: '$*' exited $rc but its message does not match /$pat/:"
        sed 's/^/      /' <<<"$out" | head -n 5
        failures=$((failures + 1))
    else
        echo "  ok   $name: ${*##*/} -> exit $rc: $(grep -iE -m1 -- "$pat" <<<"$out" | cut -c1-150)"
    fi
}

for d in store ingestor dispatcher admin; do
    expect "unknown key ($d)" 'bogus_key' "$BIN/walhook-$d" -c "$WH_TMP/unknown.conf"
    expect "wrong type ($d)" 'store\.workers|workers' "$BIN/walhook-$d" -c "$WH_TMP/wrongtype.conf"
    expect "bad dsn ($d)" 'dsn|port' "$BIN/walhook-$d" -c "$WH_TMP/baddsn.conf"
done
expect "unknown key (check)" 'bogus_key' "$BIN/walhook" check -c "$WH_TMP/unknown.conf"
expect "wrong type (check)" 'workers' "$BIN/walhook" check -c "$WH_TMP/wrongtype.conf"
expect "bad dsn (check)" 'dsn|port' "$BIN/walhook" check -c "$WH_TMP/baddsn.conf"
expect "unknown key (up)" 'bogus_key' "$BIN/walhook" up -c "$WH_TMP/unknown.conf"
expect "wrong type (up)" 'workers' "$BIN/walhook" up -c "$WH_TMP/wrongtype.conf"
expect "bad dsn (up)" 'dsn|port' "$BIN/walhook" up -c "$WH_TMP/baddsn.conf"
expect "bad dsn (up --source)" 'dsn|port' "$BIN/walhook" up --source 'postgresql://u@h:notaport/db' \
    --target http://127.0.0.1:9/hook --data "$DATA" --admin "127.0.0.1:$APORT"
# the ingestor takes its source from the runtime state in the store: without
# a store it fails naming the store; with one, on the unreachable source
expect "no store (ingestor)" 'store' "$BIN/walhook-ingestor" -c "$WH_TMP/unreachable.conf"
wh_spawn store "$BIN/walhook-store" -c "$WH_TMP/unreachable.conf"
expect "unreachable (ingestor)" 'connect|refused|unreachable' \
    "$BIN/walhook-ingestor" -c "$WH_TMP/unreachable.conf"
wh_kill store TERM
expect "unreachable (up)" 'connect|refused|unreachable' "$BIN/walhook" up -c "$WH_TMP/unreachable.conf"
expect "env override (ingestor)" 'WALHOOK_STORE_WORKERS|store\.workers' \
    env WALHOOK_STORE_WORKERS=lots "$BIN/walhook-ingestor" -c "$WH_TMP/unreachable.conf"
expect "missing config file" 'nonexistent|no such|cannot|open|read' \
    "$BIN/walhook-store" -c "$WH_TMP/nonexistent.conf"
echo 'memory_budget_bytes = 1048576;' | base "$GOOD_DSN" >"$WH_TMP/budget.conf"
for d in store ingestor dispatcher; do
    expect "memory budget ($d)" 'memory_budget_bytes' "$BIN/walhook-$d" -c "$WH_TMP/budget.conf"
done

# Issue 5, defect 3: a bad target is refused up front, by `walhook check`,
# `walhook up` and every daemon, with exit 2 and the same message naming the
# target and the field (one validation function). Before, `walhook check`
# accepted these and the dispatcher then exited 2 at every restart.
badtarget() { # NAME URL SECRET: a good target, then the bad one
    {
        echo "data_dir = \"$DATA\";"
        echo "admin = { listen = \"127.0.0.1:$APORT\"; };"
        echo "source = { dsn = \"$GOOD_DSN\"; };"
        echo "targets = ( { name = \"good\"; url = \"http://127.0.0.1:9/hook\"; },"
        echo "  { name = \"$1\"; url = \"$2\"; secret = \"$3\"; } );"
    } >"$WH_TMP/$1.conf"
}
badtarget badsecret "http://127.0.0.1:9/hook" 'whsec_!!!'
badtarget crlf 'http://127.0.0.1:9/hook\r\nX-Injected: 1' ""
badtarget ftp "ftp://127.0.0.1/hook" ""
badtarget nohost "http://:9/hook" ""
declare -A field=([badsecret]="secret: not whsec_" [crlf]="url: byte 23 is a control character"
    [ftp]="url: must start with http:// or https://" [nohost]="url: no host")
for t in badsecret crlf ftp nohost; do
    conf="$WH_TMP/$t.conf"
    want="config file $conf: targets\[1\] \(line 5\): target '$t' ${field[$t]}"
    ref=$(timeout -k 5 30 "$BIN/walhook" check -c "$conf" 2>&1)
    rc=$?
    checks=$((checks + 1))
    if [ "$rc" != 2 ] || ! grep -qE -- "$want" <<<"$ref"; then
        echo "  FAIL bad target $t (check): exit $rc, message: $ref"
        failures=$((failures + 1))
        continue
    fi
    msg=${ref#*: config file } # the message without the command's own prefix
    echo "  ok   bad target $t (check) -> exit 2: config file $msg"
    for cmd in walhook-store walhook-ingestor walhook-dispatcher walhook-admin "walhook up"; do
        checks=$((checks + 1))
        # shellcheck disable=SC2086
        out=$(cd "$WH_TMP" && timeout -k 5 30 "$BIN"/$cmd -c "$conf" </dev/null 2>&1)
        rc=$?
        if [ "$rc" != 2 ] || ! grep -qF -- "config file $msg" <<<"$out"; then
            echo "  FAIL bad target $t ($cmd): exit $rc, not the message of walhook check:"
            sed 's/^/      /' <<<"$out" | head -n 3
            failures=$((failures + 1))
        fi
    done
done

if [ "$failures" -gt 0 ]; then
    echo "FAIL $WH_TEST_NAME: $failures of $checks bad-input checks failed"
    exit 1
fi
wh_pass "$checks bad-input checks: every command exits non-zero naming the problem"
