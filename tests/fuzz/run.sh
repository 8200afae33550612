#!/usr/bin/env bash
# Builds every libFuzzer target tests/fuzz/fuzz_*.c (clang, ASan+UBSan) against
# the common sources and runs each for N seconds (default 30).
#   tests/fuzz/run.sh [SECONDS]
# A target names the service sources it needs and extra libraries in its
# header comment, one or more lines each:
#   fuzz-sources: services/x/a.c services/x/b.c
#   fuzz-libs: -lrocksdb
# Seeds: tests/fuzz/seeds/<target>/ (copied into the working corpus);
# dictionary: tests/fuzz/<target>.dict when present.
# Environment:
#   FUZZ_SECONDS     run time per target when no argument is given
#   FUZZ_OUT         build/corpus directory (default build-fuzz)
#   FUZZ_TARGETS     space-separated target names (default: all)
#   FUZZ_BUILD_ONLY  1: build, do not run
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS="${1:-${FUZZ_SECONDS:-30}}"
OUT="${FUZZ_OUT:-build-fuzz}"
mkdir -p "$OUT/gen"
command -v clang >/dev/null || { echo "fuzz: clang not found (scripts/install-deps.sh)"; exit 1; }
if [ ! -f "$OUT/gen/walhook.pb-c.c" ] || [ proto/walhook.proto -nt "$OUT/gen/walhook.pb-c.c" ]; then
    protoc-c --proto_path=proto --c_out="$OUT/gen" proto/walhook.proto
fi
# walhook_build_info (common/wh_daemon.c) wants the build's version text
printf 'const char wh_build_version[] = "%s";\nconst char wh_build_revision[] = "fuzz";\n' \
    "$(cat VERSION 2>/dev/null || echo 0.0.0)" >"$OUT/gen/wh_build_info.c"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
# shellcheck disable=SC2054
CFLAGS=(-g -O1 -std=gnu11 -D_GNU_SOURCE -Icommon -I"$OUT/gen" -I/usr/include/postgresql
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)
LIBS=(-lprotobuf-c -lnng -lpq -lconfig -ljansson -lpthread)
# Each source is compiled once (in parallel, one job per CPU) and every
# target is linked from those objects: the common sources are shared by all.
sources_of() { sed -n "s/^.*$1:\\(.*\\)$/\\1/p" "$2"; }
selected=()
for src in tests/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    if [ -n "${FUZZ_TARGETS:-}" ] && [[ " $FUZZ_TARGETS " != *" $name "* ]]; then
        continue
    fi
    selected+=("$src")
done
declare -A SEEN=()
units=()
incs=()
for s in common/*.c "$OUT/gen/walhook.pb-c.c" "$OUT/gen/wh_build_info.c" "${selected[@]}" \
    $(for src in "${selected[@]}"; do sources_of fuzz-sources "$src"; done); do
    [ -n "${SEEN[$s]:-}" ] && continue
    SEEN[$s]=1
    units+=("$s")
    d=$(dirname "$s")
    [ -n "${SEEN[-I$d]:-}" ] || { SEEN[-I$d]=1; incs+=(-I"$d"); }
done
objdir="$OUT/obj"
mkdir -p "$objdir"
obj_of() { local o=${1//\//_}; echo "$objdir/${o%.*}.o"; }
compile_one() {
    local s=$1 o
    o=$(obj_of "$s")
    case "$s" in
    *.cc)
        # C++ for a RocksDB class
        clang++ -g -O1 -std=gnu++17 -fno-exceptions -Icommon "${incs[@]}" \
            -fsanitize=address,undefined -fno-sanitize=vptr,function -c "$s" -o "$o"
        ;;
    *) clang "${CFLAGS[@]/-fsanitize=fuzzer,/-fsanitize=fuzzer-no-link,}" "${incs[@]}" -c "$s" -o "$o" ;;
    esac || { echo "fuzz: $s does not compile"; return 1; }
}
status=0
jobs_max=$(nproc 2>/dev/null || echo 2)
running=0
for s in "${units[@]}"; do
    if [ "$running" -ge "$jobs_max" ]; then
        wait -n || status=1
        running=$((running - 1))
    fi
    compile_one "$s" &
    running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
    wait -n || status=1
    running=$((running - 1))
done
[ "$status" = 0 ] || { echo "fuzz: build failed"; exit 1; }
shared=()
for s in common/*.c "$OUT/gen/walhook.pb-c.c" "$OUT/gen/wh_build_info.c"; do
    shared+=("$(obj_of "$s")")
done
for src in "${selected[@]}"; do
    name=$(basename "$src" .c)
    # shellcheck disable=SC2207
    extra_src=($(sources_of fuzz-sources "$src"))
    # shellcheck disable=SC2207
    extra_libs=($(sources_of fuzz-libs "$src"))
    objs=("$(obj_of "$src")")
    cxx=()
    for s in "${extra_src[@]}"; do
        objs+=("$(obj_of "$s")")
        case "$s" in *.cc) cxx=(-lstdc++) ;; esac
    done
    echo "== linking $name"
    if ! clang "${CFLAGS[@]}" -o "$OUT/$name" "${objs[@]}" "${shared[@]}" "${cxx[@]}" \
            "${extra_libs[@]}" "${LIBS[@]}"; then
        echo "fuzz: $name does not build"
        status=1
        continue
    fi
    [ "${FUZZ_BUILD_ONLY:-0}" = 1 ] && continue
    corpus="$OUT/corpus-$name"
    mkdir -p "$corpus"
    seeds="tests/fuzz/seeds/$name"
    [ -d "$seeds" ] && cp -n "$seeds"/* "$corpus"/ 2>/dev/null || true
    dict=()
    [ -f "tests/fuzz/$name.dict" ] && dict=(-dict="tests/fuzz/$name.dict")
    echo "== running $name for ${SECS}s"
    if ! "$OUT/$name" -max_total_time="$SECS" -max_len=65536 -print_final_stats=1 \
            "${dict[@]}" -artifact_prefix="$OUT/$name-" "$corpus" 2>"$OUT/$name.log"; then
        tail -n 40 "$OUT/$name.log"
        echo "fuzz: $name FAILED (artifacts in $OUT/)"
        status=1
    else
        grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|Done)' "$OUT/$name.log" || true
        echo "fuzz: $name ok"
    fi
done
exit $status
