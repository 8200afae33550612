#!/usr/bin/env bash
# Fuzz smoke test: builds every libFuzzer target tests/fuzz/fuzz_*.c
# (tests/fuzz/run.sh, clang ASan+UBSan) into a temp dir and runs each on a
# copy of its seed corpus (tests/fuzz/seeds/<target>/) for FUZZ_SECONDS
# (default 20), all targets at once. Fails on any crash, leak, timeout or
# sanitizer report; artifacts and logs are kept in build-fuzz/smoke-failures/.
# Skips (exit 0) only when clang or the libFuzzer runtime is missing.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
SECS=${FUZZ_SECONDS:-20}

if ! command -v clang >/dev/null 2>&1; then
    echo "SKIP $WH_TEST_NAME: clang not found (apt-get install clang)"
    exit 0
fi
wh_tmpdir
printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' \
    >"$WH_TMP/probe.c"
if ! clang -fsanitize=fuzzer,address,undefined -o "$WH_TMP/probe" "$WH_TMP/probe.c" \
        >"$WH_TMP/probe.log" 2>&1; then
    echo "SKIP $WH_TEST_NAME: clang has no libFuzzer/ASan runtime ($(head -n 1 "$WH_TMP/probe.log"))"
    exit 0
fi

OUT="$WH_TMP/build"
wh_log "building fuzz targets into $OUT"
if ! FUZZ_OUT="$OUT" FUZZ_BUILD_ONLY=1 "$ROOT/tests/fuzz/run.sh" >"$WH_TMP/build.log" 2>&1; then
    tail -n 30 "$WH_TMP/build.log"
    wh_fail "fuzz targets do not build (tests/fuzz/run.sh)"
fi

targets=()
declare -A PIDS=()
for src in "$ROOT"/tests/fuzz/fuzz_*.c; do
    t=$(basename "$src" .c)
    [ -x "$OUT/$t" ] || wh_fail "missing $OUT/$t after build"
    targets+=("$t")
    mkdir -p "$WH_TMP/corpus-$t"
    if [ -d "$ROOT/tests/fuzz/seeds/$t" ]; then
        cp "$ROOT/tests/fuzz/seeds/$t"/* "$WH_TMP/corpus-$t"/ 2>/dev/null || true
    fi
    dict=()
    [ -f "$ROOT/tests/fuzz/$t.dict" ] && dict=(-dict="$ROOT/tests/fuzz/$t.dict")
    # -timeout: one input taking 25 s counts as a hang
    UBSAN_OPTIONS=print_stacktrace=1 "$OUT/$t" -max_total_time="$SECS" -max_len=65536 \
        -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" \
        -artifact_prefix="$WH_TMP/$t-" "$WH_TMP/corpus-$t" >"$WH_TMP/$t.fuzzlog" 2>&1 &
    PIDS[$t]=$!
done
wh_log "running ${#targets[@]} targets for ${SECS}s each: ${targets[*]}"

failures=0
total=0
summary=()
SAN_RE='ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|libFuzzer)|runtime error:|deadly signal|SUMMARY: '
for t in "${targets[@]}"; do
    rc=0
    wait "${PIDS[$t]}" || rc=$?
    log="$WH_TMP/$t.fuzzlog"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    if [ "$rc" != 0 ] || grep -qE "$SAN_RE" "$log"; then
        failures=$((failures + 1))
        keep="$ROOT/build-fuzz/smoke-failures"
        mkdir -p "$keep"
        cp "$log" "$keep/$t.log"
        cp "$WH_TMP/$t-"* "$keep"/ 2>/dev/null || true
        echo "  FAIL $t (exit $rc): $(grep -m1 -E "$SAN_RE" "$log" | cut -c1-200)"
        grep -E '^ *#[0-9]+ ' "$log" | head -n 8 | sed 's/^/      /'
        arts=""
        for a in "$WH_TMP/$t-"*; do
            [ -e "$a" ] && arts+=" $(basename "$a")"
        done
        echo "      log and reproducer kept in ${keep#"$ROOT"/}/:${arts:- (no artifact)}"
    else
        echo "  ok   $t: ${execs:-?} executions (${rate:-?}/s)"
        total=$((total + ${execs:-0}))
        summary+=("$t")
    fi
done

if [ "$failures" -gt 0 ]; then
    echo "FAIL $WH_TEST_NAME: $failures of ${#targets[@]} fuzz targets crashed or reported a sanitizer error"
    exit 1
fi
wh_pass "${#targets[@]} fuzz targets x ${SECS}s, $total executions, no crash/leak/sanitizer report"
