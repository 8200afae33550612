#!/usr/bin/env bash
# Runs every unit test program (BIN/tests/test_*, cmocka) and, unless --unit,
# every integration script (tests/integration/test_*.sh, each with a timeout)
# plus the docker-compose config check when docker-compose exists. Prints each
# program's output and ends with exactly one line "N passed, N failed".
#   tests/run.sh [--unit] [--integration] [NAME-FILTER]
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
export BIN="${BIN:-bin}"
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
UNIT=1
INTEG=1
FILTER=""
for a in "$@"; do
    case "$a" in
    --unit) INTEG=0 ;;
    --integration) UNIT=0 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) FILTER="$a" ;;
    esac
done
TIMEOUT=${WH_TEST_TIMEOUT:-420}
passed=0
failed=0
failed_names=()

run_one() { # NAME CMD...
    local name=$1
    shift
    echo "==== $name"
    local t0=$SECONDS rc=0
    "$@" </dev/null 2>&1 || rc=$?
    if [ "$rc" = 0 ]; then
        passed=$((passed + 1))
        echo "==== $name: passed ($((SECONDS - t0)) s)"
    else
        failed=$((failed + 1))
        failed_names+=("$name")
        [ "$rc" = 124 ] && echo "==== $name: TIMED OUT after $TIMEOUT s"
        echo "==== $name: FAILED (exit $rc, $((SECONDS - t0)) s)"
    fi
}

# The sanitizer build (make asan, done by scripts/test.sh): its unit tests,
# and the end-to-end test, run again on it. Its unit tests run beside the
# plain ones, two lanes on two CPUs (the programs bind port 0 and work in
# directories of their own); their output follows the plain ones'.
ASAN_BIN="$ROOT/build-asan/bin"
ASAN_ON=0
if [ "${WH_ASAN:-1}" = 1 ] && [ -x "$ASAN_BIN/walhook" ] && [ "$BIN" != "$ASAN_BIN" ]; then
    ASAN_ON=1
fi
asan_env() {
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=23"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
}
asan_units() { # in a subshell: the output, and "passed failed names..." into $1
    asan_env
    passed=0
    failed=0
    failed_names=()
    for t in "$ASAN_BIN"/tests/test_*; do
        [ -x "$t" ] || continue
        [ -n "$FILTER" ] && [[ "asan_$(basename "$t")" != *"$FILTER"* ]] && continue
        run_one "asan_$(basename "$t")" timeout -k 10 180 "$t"
    done
    echo "$passed $failed ${failed_names[*]}" >"$1"
}
ASAN_PID=""
if [ "$UNIT" = 1 ] && [ "$ASAN_ON" = 1 ]; then
    ASAN_OUT=$(mktemp)
    ASAN_COUNTS=$(mktemp)
    asan_units "$ASAN_COUNTS" >"$ASAN_OUT" 2>&1 &
    ASAN_PID=$!
fi

if [ "$UNIT" = 1 ]; then
    shopt -s nullglob
    units=("$BIN"/tests/test_*)
    if [ ${#units[@]} -eq 0 ]; then
        echo "no unit test programs in $BIN/tests (run make)"
        failed=$((failed + 1))
        failed_names+=("unit-tests-missing")
    fi
    for t in "${units[@]}"; do
        [ -x "$t" ] || continue
        [ -n "$FILTER" ] && [[ "$(basename "$t")" != *"$FILTER"* ]] && continue
        run_one "$(basename "$t")" timeout -k 10 120 "$t"
    done
fi

if [ -n "$ASAN_PID" ]; then
    wait "$ASAN_PID"
    cat "$ASAN_OUT"
    read -r ap af an <"$ASAN_COUNTS" || { ap=0; af=1; an="asan-unit-lane"; }
    passed=$((passed + ap))
    failed=$((failed + af))
    # shellcheck disable=SC2206 # names without spaces
    [ -n "${an:-}" ] && failed_names+=($an)
    rm -f "$ASAN_OUT" "$ASAN_COUNTS"
fi

if [ "$ASAN_ON" = 1 ]; then
    asan_env
    if [ "$INTEG" = 1 ] && { [ -z "$FILTER" ] || [[ asan_test_e2e == *"$FILTER"* ]]; }; then
        run_one "asan_test_e2e" env BIN="$ASAN_BIN" timeout -k 20 "$TIMEOUT" bash tests/integration/test_e2e.sh
    fi
    unset ASAN_OPTIONS UBSAN_OPTIONS
fi

# Integration tests in two lanes: these, which spend most of their time
# waiting (slow receivers, lease TTLs, retention ages, SIGKILLs and
# restarts), run in a second lane beside the others, about half of the
# integration tests' time in each (a fresh clone: 1,217 s against 415 s
# before the second line of these names; 1,190 s against 925 s before the
# last line); every test has its own directories,
# PostgreSQL and ports (wh_free_port). WH_TEST_LANES=1: one lane.
LANE2=(test_chaos_delivery test_up_sigkill test_lease_takeover test_leases test_lease_lapse
    test_admin_replicas_stats test_lease_handover test_lease_same_id test_admin_flood
    test_lease_timeout test_lanes test_conn_pool test_slot_policy
    test_http2 test_runtime_targets test_least_privilege test_schema_pending
    test_stream_resend test_snapshot_rewrite test_ops_metrics test_store_crash
    test_recreate_inflight test_recreate_tenant_inflight test_lease_balance_idle
    test_lease_forget_reacquire test_lease_lapse_wait test_lease_reply_lost
    test_lease_reply_restart test_admin_slot_hang test_lease_acquire_unanswered
    test_lease_round_long test_lease_sync_stall test_write_sync_stall
    test_lease_refused_unanswered test_lease_release_refused)
in_lane2() {
    local x
    for x in "${LANE2[@]}"; do [ "$x" = "$1" ] && return 0; done
    return 1
}
integ_lane() { # 1|2 COUNTS-FILE: the integration tests of that lane
    passed=0
    failed=0
    failed_names=()
    local t n
    for t in tests/integration/test_*.sh; do
        n=$(basename "$t" .sh)
        [ -n "$FILTER" ] && [[ "$n" != *"$FILTER"* ]] && continue
        if [ "${WH_TEST_LANES:-2}" = 2 ]; then
            if in_lane2 "$n"; then [ "$1" = 2 ] || continue; else [ "$1" = 1 ] || continue; fi
        elif [ "$1" = 2 ]; then
            continue
        fi
        run_one "$n" timeout -k 20 "$TIMEOUT" bash "$t"
    done
    echo "$passed $failed ${failed_names[*]}" >"$2"
}

if [ "$INTEG" = 1 ]; then
    L2_OUT=$(mktemp)
    L2_COUNTS=$(mktemp)
    integ_lane 2 "$L2_COUNTS" >"$L2_OUT" 2>&1 &
    L2_PID=$!
    L1_COUNTS=$(mktemp)
    sp=$passed sf=$failed sn=("${failed_names[@]}")
    integ_lane 1 "$L1_COUNTS"
    passed=$sp failed=$sf failed_names=("${sn[@]}")
    wait "$L2_PID"
    cat "$L2_OUT"
    for c in "$L1_COUNTS" "$L2_COUNTS"; do
        read -r lp lf ln <"$c" || { lp=0; lf=1; ln="integration-lane"; }
        passed=$((passed + lp))
        failed=$((failed + lf))
        # shellcheck disable=SC2206 # names without spaces
        [ -n "${ln:-}" ] && failed_names+=($ln)
    done
    rm -f "$L2_OUT" "$L2_COUNTS" "$L1_COUNTS"
    if [ -z "$FILTER" ] || [[ style == *"$FILTER"* ]]; then
        run_one "style" env BUILD="${BUILD:-build}" scripts/check-style.sh
    fi
    if command -v docker-compose >/dev/null 2>&1 && { [ -z "$FILTER" ] || [[ compose == *"$FILTER"* ]]; }; then
        run_one "compose_config" docker-compose -f deploy/compose/docker-compose.yml config -q
    fi
fi

if [ ${#failed_names[@]} -gt 0 ]; then
    echo "failed: ${failed_names[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
