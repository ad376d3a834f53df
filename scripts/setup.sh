#!/usr/bin/env bash
# Installs the Debian packages peft needs (when missing and running as root) and configures a build.
# Usage: scripts/setup.sh [--sanitize | --fuzz | --blas onednn|openblas|reference [DIR]]
#   (build dir: build/, build-asan/; --fuzz only installs clang; --blas configures DIR, default
#    build-BACKEND/, with -DPEFT_BLAS=BACKEND; the default backend is onednn)
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-}"
blas=onednn
if [ "$mode" = "--blas" ]; then
  blas="${2:-}"
  if [ "$blas" != onednn ] && [ "$blas" != openblas ] && [ "$blas" != reference ]; then
    echo "setup: --blas takes onednn, openblas or reference, not '$blas'" >&2
    exit 2
  fi
fi

PKGS=(build-essential cmake pkg-config libopenblas-dev libdnnl-dev libgtest-dev libbenchmark-dev libstb-dev
      libturbojpeg0-dev libfmt-dev nlohmann-json3-dev libcli11-dev zlib1g-dev libopenmpi-dev openmpi-bin)
[ "$mode" = "--fuzz" ] && PKGS+=(clang libclang-rt-14-dev)
missing=()
for p in "${PKGS[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing packages: ${missing[*]} (run as root or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

if [ "$mode" = "--fuzz" ]; then
  exit 0  # scripts/fuzz.sh configures its own clang build
elif [ "$mode" = "--blas" ]; then
  cmake -S . -B "${3:-build-$blas}" -DCMAKE_BUILD_TYPE=Release -DPEFT_BLAS="$blas" >/dev/null
elif [ "$mode" = "--sanitize" ]; then
  # -g1 (line tables: enough for ASan's stack traces) instead of RelWithDebInfo's full -g: the
  # code is the same (-O2), its objects 2-3x smaller and the build ~25% faster (trainer.cpp,
  # test_methods.cpp), which keeps CI's second full build short. -O1 would save another 20% but
  # rounds differently: MpiCli.ResumeWithAnotherNumberOfRanks then missed its 1e-6 by 1%.
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
    -DPEFT_SANITIZE=ON -DPEFT_BUILD_BENCH=OFF >/dev/null
else
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
