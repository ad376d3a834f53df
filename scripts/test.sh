#!/usr/bin/env bash
# Set-up + build + every test. `scripts/test.sh --sanitize` does the same in an ASan+UBSan build.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh "$@"
dir=build
[ "${1:-}" = "--sanitize" ] && dir=build-asan
jobs=$(nproc 2>/dev/null || echo 2)
cmake --build "$dir" -j"$jobs"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
cd "$dir" && ctest --output-on-failure -j"$jobs" --timeout 900
