#!/usr/bin/env bash
# The BLIS backend's check (CI): installs libblis-dev, configures build-blis-ci/ with
# -DPEFT_BLAS=blis, builds only the core test executables (tests/core: blas::gemm against the
# reference loop, tensors) and runs them. The full suite runs on the default OpenBLAS build.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build-blis-ci
scripts/setup.sh --blas blis "$dir"
cmake -S . -B "$dir" -DPEFT_BUILD_BENCH=OFF >/dev/null  # tests only
targets=()
for src in tests/core/test_*.cpp; do targets+=("core_$(basename "$src" .cpp)"); done
jobs=$(nproc 2>/dev/null || echo 2)
cmake --build "$dir" -j"$jobs" --target "${targets[@]}"
# The tests accept either backend, so make sure this build really calls BLIS (and only BLIS).
# (ldd's output is captured first: `ldd | grep -q` under pipefail fails whenever grep exits before
# ldd has written everything and ldd dies of SIGPIPE.)
libs=$(ldd "$dir/core_test_blas")
grep -q libblis <<<"$libs" || { echo "test_blis: $dir is not linked to BLIS" >&2; exit 1; }
! grep -q libopenblas <<<"$libs" || { echo "test_blis: $dir also links OpenBLAS" >&2; exit 1; }
cd "$dir" && ctest -L core --output-on-failure -j"$jobs" --timeout 300
