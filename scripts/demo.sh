#!/usr/bin/env bash
# Set-up + build + the embedded default experiment (no downloads, a few minutes on 2 cores):
# pretrain a small ViT on procedural shapes, then adapt it to a shifted task with every method.
#   scripts/demo.sh            the ViT/PEFT demo (`peft demo`)
#   scripts/demo.sh --clip     the CLIP demo: tiny CLIP, zero-shot, few-shot adaptation (`peft clip-demo`)
# Other arguments go to the peft command (e.g. --quick, --threads 1, --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target peft
cmd=demo
if [ "${1:-}" = "--clip" ]; then
  cmd=clip-demo
  shift
fi
build/peft "$cmd" "$@"
