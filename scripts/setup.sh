#!/usr/bin/env bash
# Installs the Debian packages peft needs (when missing and running as root) and configures a build.
# Usage: scripts/setup.sh [--sanitize | --fuzz]   (build dir: build/, build-asan/; --fuzz only installs clang)
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake pkg-config libopenblas-dev libgtest-dev libbenchmark-dev libstb-dev
      libfmt-dev nlohmann-json3-dev libcli11-dev zlib1g-dev)
[ "${1:-}" = "--fuzz" ] && PKGS+=(clang libclang-rt-14-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
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

if [ "${1:-}" = "--fuzz" ]; then
  exit 0  # scripts/fuzz.sh configures its own clang build
elif [ "${1:-}" = "--sanitize" ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPEFT_SANITIZE=ON -DPEFT_BUILD_BENCH=OFF >/dev/null
else
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
