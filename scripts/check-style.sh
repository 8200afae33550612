#!/usr/bin/env bash
# The style checker (docs/STYLE.md): clang-format clean, module prefixes on
# every exported symbol, no unbounded string functions in product code.
# Needs a build in BUILD (default build/). Exit 0 clean, 1 with findings.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
bad=0
report() { echo "style: $*"; bad=1; }

# 1. formatting
if command -v clang-format >/dev/null 2>&1; then
    # many files a run, one run per CPU; a file that is not formatted is
    # named in clang-format's "FILE:LINE:COL: error: code should be
    # clang-formatted" lines
    while IFS= read -r f; do
        report "$f is not clang-formatted (make format)"
    done < <(git ls-files '*.c' '*.cc' '*.h' | grep -v '^tests/unit/data/' |
        xargs -P "$(nproc 2>/dev/null || echo 2)" -n 16 clang-format --dry-run --Werror 2>&1 >/dev/null |
        sed -n 's/^\([^:]*\):[0-9]*:[0-9]*: error: .*clang-format.*/\1/p' | sort -u)
else
    echo "style: clang-format not installed; formatting not checked"
fi

# 2. exported symbols carry their module's prefix
check_prefix() { # DIR PREFIX
    local dir=$1 prefix=$2 o sym
    for o in "$BUILD/$dir"/*.o; do
        [ -f "$o" ] || { report "no objects in $BUILD/$dir (run make)"; return; }
        while read -r sym; do
            [ "$sym" = main ] && continue
            # the store's st_crc32c.cc defines librocksdb's own CRC32C
            # functions (namespace rocksdb::crc32c) to replace them at link time
            [ "$dir" = services/store ] && [[ "$sym" == _ZN7rocksdb6crc32c* ]] && continue
            # (weak symbols, W and V, are not listed: the inline functions and
            # templates a C++ header instantiates, e.g. st_gcfilter.cc's)
            [[ "$sym" == "$prefix"* ]] || report "$o exports '$sym' without the prefix '$prefix'"
        done < <(nm -g --defined-only "$o" | awk '$2 != "W" && $2 != "V" {print $3}')
    done
}
check_prefix common wh_
check_prefix services/ingestor ing_
check_prefix services/store st_
check_prefix services/dispatcher dsp_
check_prefix services/admin adm_
check_prefix tools/walhook cli_

# 3. no unbounded string functions, no shell-outs, in product code
while IFS= read -r hit; do
    report "banned call: $hit"
done < <(grep -nE '(^|[^a-z_])(sprintf|vsprintf|strcpy|strcat|gets|strtok|system)\(' \
    common/*.c services/*/*.c tools/*.c tools/*/*.c | grep -vE 'snprintf|vsnprintf')

if [ "$bad" = 0 ]; then
    echo "style: clean"
fi
exit "$bad"
