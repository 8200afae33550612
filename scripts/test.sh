#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, runs every test.
# Ends with the test runner's summary line "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
make -j"$(nproc)" all
exec tests/run.sh "$@"
