#!/usr/bin/env bash
# The other GEMM backends' check (CI): the full suite runs on the default oneDNN build; here the
# core and autograd tests (blas::gemm against the plain loops, every op's forward values and
# float64 gradchecks) run again on -DPEFT_BLAS=openblas and -DPEFT_BLAS=reference, each in its
# own build folder (build-openblas-ci/, build-reference-ci/), building only those test executables.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
for backend in openblas reference; do
  dir=build-$backend-ci
  scripts/setup.sh --blas "$backend" "$dir"
  # tests only; the reference build is also the build without MPI (-DPEFT_MPI=OFF, issue 18), so
  # core/distributed.cpp's single-process code is compiled and tested at no extra cost
  mpi=auto
  [ "$backend" = reference ] && mpi=OFF
  cmake -S . -B "$dir" -DPEFT_BUILD_BENCH=OFF -DPEFT_MPI="$mpi" >/dev/null
  targets=()
  for src in tests/core/test_*.cpp; do targets+=("core_$(basename "$src" .cpp)"); done
  for src in tests/autograd/test_*.cpp; do targets+=("autograd_$(basename "$src" .cpp)"); done
  cmake --build "$dir" -j"$jobs" --target "${targets[@]}"
  # The tests accept any backend, so make sure this build really calls the one it names.
  # (ldd's output is captured first: `ldd | grep -q` under pipefail fails whenever grep exits before
  # ldd has written everything and ldd dies of SIGPIPE.)
  libs=$(ldd "$dir/core_test_blas")
  ! grep -q libdnnl <<<"$libs" || { echo "test_backends: $dir links oneDNN" >&2; exit 1; }
  if [ "$backend" = openblas ]; then
    grep -q libopenblas <<<"$libs" || { echo "test_backends: $dir is not linked to OpenBLAS" >&2; exit 1; }
  fi
  (cd "$dir" && ctest -L 'core|autograd' --output-on-failure -j"$jobs" --timeout 600)
done
