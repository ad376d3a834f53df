#!/usr/bin/env bash
# Set-up + build + the embedded default experiment (no downloads, a few minutes on 2 cores):
# pretrain a small ViT on procedural shapes, adapt it to a shifted task with each method.
# Extra arguments go to `peft demo` (e.g. --quick, --threads 1, --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target peft
build/peft demo "$@"
