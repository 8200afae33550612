#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, runs every test.
# Ends with the test runner's summary line "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
make -j"$(nproc)" all
make -j"$(nproc)" asan   # sanitizer build: tests/run.sh runs its unit tests and e2e too
exec tests/run.sh "$@"
