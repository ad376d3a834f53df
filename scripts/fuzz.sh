#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz) with clang + ASan + UBSan into build-fuzz and runs
# each one for a bounded time. Any finding (crash, sanitizer report, an exception that is not a
# peft::Error, a timeout or an out-of-memory) fails the script; the input that triggered it is
# left in build-fuzz/artifacts/<harness>/ (turn it into a regression test, see tests/fuzz/).
#
#   scripts/fuzz.sh [SECONDS_PER_HARNESS (default 60)] [HARNESS...]
#   e.g. scripts/fuzz.sh 120 fuzz_config
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
harnesses=("$@")
[ ${#harnesses[@]} -eq 0 ] && harnesses=(fuzz_safetensors fuzz_config fuzz_image fuzz_tokenizer fuzz_clip_config fuzz_adapter_metadata fuzz_image_folder
  fuzz_model_config fuzz_cli)
dir=${PEFT_FUZZ_BUILD:-build-fuzz}
jobs=$(nproc 2>/dev/null || echo 2)

# -gline-tables-only: file:line in a finding's stack trace is all a report needs (smaller, faster build).
CXX=${CXX_FUZZ:-clang++} cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPEFT_FUZZ=ON -DPEFT_BLAS=openblas \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -gline-tables-only -DNDEBUG" \
  -DPEFT_SANITIZE=ON -DPEFT_BUILD_BENCH=OFF >/dev/null
cmake --build "$dir" -j"$jobs" --target "${harnesses[@]}"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=()
for h in "${harnesses[@]}"; do
  name=${h#fuzz_}
  work="$dir/corpus/$name"       # grows as the fuzzer finds new coverage (not committed)
  art="$dir/artifacts/$name/"
  mkdir -p "$work" "$art"
  echo "== $h: ${secs}s"
  # Seeds from tests/fuzz/corpus/<name> are read but never written.
  if ! "$dir/tests/fuzz/$h" "$work" "tests/fuzz/corpus/$name" -max_total_time="$secs" -timeout=25 -rss_limit_mb=3072 \
      -malloc_limit_mb=2048 -max_len=8192 -artifact_prefix="$art" -print_final_stats=1 2>"$dir/$h.log"; then
    tail -n 60 "$dir/$h.log"
    echo "== $h: FINDING (input in $art)"
    failed+=("$h")
  else
    grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ *DONE)" "$dir/$h.log" || true
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: findings in ${failed[*]}"
  exit 1
fi
echo "fuzz: no findings (${#harnesses[@]} harnesses, ${secs}s each)"
