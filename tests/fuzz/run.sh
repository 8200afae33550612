#!/usr/bin/env bash
# Builds every libFuzzer target tests/fuzz/fuzz_*.c (clang, ASan+UBSan) against
# the common sources and runs each for N seconds (default 30).
#   tests/fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS="${1:-${FUZZ_SECONDS:-30}}"
OUT=build-fuzz
mkdir -p "$OUT/gen"
command -v clang >/dev/null || { echo "fuzz: clang not found (scripts/install-deps.sh)"; exit 1; }
if [ ! -f "$OUT/gen/walhook.pb-c.c" ]; then
    protoc-c --proto_path=proto --c_out="$OUT/gen" proto/walhook.proto
fi
# shellcheck disable=SC2054
CFLAGS=(-g -O1 -std=gnu11 -D_GNU_SOURCE -Icommon -I"$OUT/gen" -I/usr/include/postgresql
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)
LIBS=(-lprotobuf-c -lnng -lpq -lconfig -lpthread)
status=0
for src in tests/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    echo "== building $name"
    clang "${CFLAGS[@]}" -o "$OUT/$name" "$src" common/*.c "$OUT/gen/walhook.pb-c.c" "${LIBS[@]}"
    corpus="$OUT/corpus-$name"
    mkdir -p "$corpus"
    seeds="tests/fuzz/seeds/$name"
    [ -d "$seeds" ] && cp -n "$seeds"/* "$corpus"/ 2>/dev/null || true
    echo "== running $name for ${SECS}s"
    if ! "$OUT/$name" -max_total_time="$SECS" -max_len=65536 -print_final_stats=1 \
            -artifact_prefix="$OUT/$name-" "$corpus" 2>"$OUT/$name.log"; then
        tail -n 40 "$OUT/$name.log"
        echo "fuzz: $name FAILED (artifacts in $OUT/)"
        status=1
    else
        grep -E '^(stat::number_of_executed_units|Done)' "$OUT/$name.log" || true
        echo "fuzz: $name ok"
    fi
done
exit $status
