#!/usr/bin/env bash
# Side-by-side timing of `peft bench` against the PyTorch baseline ../shared/bench/torch_vit_bench.py.
#
# One process per measurement (so peak RSS is per measurement), the two programs alternating,
# the whole list repeated R times; the table shows medians over the repetitions.
#
#   scripts/compare.sh                      # tiny, T=1 and T=2, every method, train + infer, R=3
#   scripts/compare.sh --config base        # base shapes (slow: minutes per row on 2 cores)
#   scripts/compare.sh --sweep              # tiny training, cvpt vs vpt-deep at M = 0 1 10 50 100 200
#   scripts/compare.sh --threads 1 --methods "full linear lora" --phases train --reps 1
#
# Options: --config tiny|base, --sweep, --reps R, --threads "1 2", --methods "LIST",
#          --phases "train infer", --warmup W, --steps S, --out FILE (the table; the raw JSON
#          lines go to FILE.jsonl; default out/compare-CONFIG-DATE.md),
#          --timeout SEC (per process), --torch-2p (PyTorch with OMP_WAIT_POLICY=PASSIVE).
# Environment: PEFT_BIN (default build/peft), TORCH_BENCH (default ../shared/bench/torch_vit_bench.py),
#              PYTHON (default /usr/bin/python3).
# PyTorch runs with OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=T: for T=2 that is the script's "2n"
# variant (spinning OpenMP beside OpenBLAS's pool); export OMP_WAIT_POLICY=PASSIVE to get its "2p"
# variant instead (both programs inherit it). peft pins OpenBLAS to one thread itself and splits
# GEMMs over its T OpenMP threads.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

config=tiny
sweep=0
reps=3
threads="1 2"
methods=""
phases=""
warmup=""
steps=""
out=""
timeout_s=900
torch_wait=""
peft_bin="${PEFT_BIN:-build/peft}"
torch_bench="${TORCH_BENCH:-../shared/bench/torch_vit_bench.py}"
python="${PYTHON:-/usr/bin/python3}"

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --config) config="$2"; shift 2 ;;
    --sweep) sweep=1; shift ;;
    --reps) reps="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --methods) methods="$2"; shift 2 ;;
    --phases) phases="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --timeout) timeout_s="$2"; shift 2 ;;
    --torch-2p) torch_wait=PASSIVE; shift ;;
    -h|--help) usage ;;
    *) echo "compare.sh: unknown option '$1'" >&2; usage ;;
  esac
done
[[ "$config" == tiny || "$config" == base ]] || { echo "compare.sh: --config must be tiny or base (got '$config')" >&2; exit 2; }
[[ -x "$peft_bin" ]] || { echo "compare.sh: no peft binary at '$peft_bin' (build it, or set PEFT_BIN)" >&2; exit 1; }
[[ -f "$torch_bench" ]] || { echo "compare.sh: no torch_vit_bench.py at '$torch_bench' (set TORCH_BENCH)" >&2; exit 1; }

# The job list: "method:M:phase" entries. Prompt counts as the script's suites: 10 (tiny), 50 (base).
if [[ $sweep == 1 ]]; then
  config=tiny
  : "${phases:=train}"
  : "${warmup:=2}" "${steps:=7}"
  jobs=()
  for m in ${methods:-vpt-deep cvpt}; do
    for M in 0 1 10 50 100 200; do
      for ph in $phases; do jobs+=("$m:$M:$ph"); done
    done
  done
else
  : "${phases:=train infer}"
  if [[ $config == tiny ]]; then M=10; : "${warmup:=3}" "${steps:=10}"; else M=50; : "${warmup:=1}" "${steps:=5}"; fi
  jobs=()
  for m in ${methods:-full linear vpt-deep ssf lora cvpt bitfit adaptformer}; do
    for ph in $phases; do
      case "$m" in vpt-deep|vpt-shallow|cvpt|vpt) jobs+=("$m:$M:$ph") ;; *) jobs+=("$m:0:$ph") ;; esac
    done
  done
fi

stamp="$(date +%Y%m%d-%H%M%S)"
name="$config"; [[ $sweep == 1 ]] && name="sweep"
: "${out:=out/compare-$name-$stamp.md}"  # out/ is git-ignored
mkdir -p "$(dirname "$out")"
raw="$out.jsonl"
: > "$raw"

# torch_vit_bench.py's mode name for a method; empty when it has none (bitfit, adaptformer, vpt-shallow).
torch_mode() {
  case "$1" in
    full|linear|ssf|lora|cvpt) echo "$1" ;;
    vpt-deep|vpt) echo vpt ;;
    *) echo "" ;;
  esac
}

# Runs one measurement; appends its JSON line, tagged with the program, to $raw.
measure() {  # prog method M phase T
  local prog="$1" m="$2" M="$3" ph="$4" T="$5" line log
  log="$(mktemp)"
  if [[ $prog == torch ]]; then
    if ! OPENBLAS_NUM_THREADS="$T" OMP_NUM_THREADS="$T" env ${torch_wait:+OMP_WAIT_POLICY=$torch_wait} timeout "$timeout_s" "$python" "$torch_bench" one --config "$config" \
        --mode "$(torch_mode "$m")" --prompts "$M" --threads "$T" --phase "$ph" --warmup "$warmup" --steps "$steps" >"$log" 2>&1; then
      echo "  FAILED: torch $m M=$M $ph T=$T: $(tail -c 300 "$log")" >&2; rm -f "$log"; return 0
    fi
  else
    if ! timeout "$timeout_s" "$peft_bin" bench --config "$config" --method "$m" --prompts "$M" --threads "$T" --phase "$ph" \
        --warmup "$warmup" --steps "$steps" --json >"$log" 2>&1; then
      echo "  FAILED: peft $m M=$M $ph T=$T: $(tail -c 300 "$log")" >&2; rm -f "$log"; return 0
    fi
  fi
  line="$(grep '^{' "$log" | tail -n 1)"
  rm -f "$log"
  [[ -n "$line" ]] || { echo "  FAILED: $prog $m: no JSON line" >&2; return 0; }
  "$python" -c 'import json,sys; r=json.loads(sys.argv[1]); r.update(prog=sys.argv[2], method=sys.argv[3], rep=int(sys.argv[4])); print(json.dumps(r))' \
    "$line" "$prog" "$m" "$rep" >>"$raw"
  "$python" -c 'import json,sys; r=json.loads(sys.argv[1]); print("  %-5s %9.1f ms %6.1f GFLOP/s %7.0f MB" % (sys.argv[2], r["median_s"] * 1e3, r["gflops"], r["peak_rss_mb"]))' "$line" "$prog"
}

echo "compare: config=$config reps=$reps threads=($threads) warmup=$warmup steps=$steps${torch_wait:+ torch OMP_WAIT_POLICY=$torch_wait}; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "raw results: $raw"
for ((rep = 1; rep <= reps; rep++)); do
  for T in $threads; do
    for job in "${jobs[@]}"; do
      IFS=: read -r m M ph <<<"$job"
      echo "[rep $rep/$reps] $config $m M=$M T=$T $ph"
      # Alternate which program goes first, so a slow drift in machine load does not favour one.
      if (( rep % 2 == 1 )); then order="torch peft"; else order="peft torch"; fi
      for prog in $order; do
        if [[ $prog == torch && -z "$(torch_mode "$m")" ]]; then continue; fi
        measure "$prog" "$m" "$M" "$ph" "$T"
      done
    done
  done
done

# The table: medians over repetitions of each program's median step time, GFLOP/s and peak RSS.
"$python" - "$raw" "$config" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'EOF' | tee "$out"
import json, statistics, sys
from collections import defaultdict
raw, config, load = sys.argv[1], sys.argv[2], sys.argv[3]
recs = [json.loads(l) for l in open(raw) if l.strip()]
groups = defaultdict(lambda: {"torch": [], "peft": []})
order = []
for r in recs:
    key = (r["method"], r["M"], r["threads"], r["phase"])
    if key not in groups:
        order.append(key)
    groups[key][r["prog"]].append(r)
med = lambda rs, k: statistics.median(r[k] for r in rs) if rs else None
fmt = lambda v, f: "–" if v is None else format(v, f)
print(f"config {config}; medians over repetitions; load average at the end {load}")
print()
print("| method | M | threads | phase | PyTorch ms | ours ms | ours/PyTorch | PyTorch GFLOP/s | ours GFLOP/s | ours sgemm GFLOP/s | PyTorch peak RSS MB | ours peak RSS MB | n |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for key in order:
    g = groups[key]
    t_ms = med(g["torch"], "median_s")
    p_ms = med(g["peft"], "median_s")
    ratio = p_ms / t_ms if (t_ms and p_ms) else None
    sg = med([r for r in g["peft"] if "sgemm_gflops" in r], "sgemm_gflops")
    m, M, T, ph = key
    print(f"| {m} | {M} | {T} | {ph} | {fmt(t_ms and t_ms*1e3, '.1f')} | {fmt(p_ms and p_ms*1e3, '.1f')} | {fmt(ratio, '.2f')} | "
          f"{fmt(med(g['torch'], 'gflops'), '.1f')} | {fmt(med(g['peft'], 'gflops'), '.1f')} | {fmt(sg, '.1f')} | "
          f"{fmt(med(g['torch'], 'peak_rss_mb'), '.0f')} | {fmt(med(g['peft'], 'peak_rss_mb'), '.0f')} | "
          f"{len(g['torch'])}/{len(g['peft'])} |")
EOF
echo "table written to $out"
