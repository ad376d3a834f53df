#!/usr/bin/env bash
# Side-by-side timing of `peft bench` against the PyTorch baseline ../shared/bench/torch_vit_bench.py.
#
# One process per measurement (so peak RSS is per measurement), the two programs alternating,
# the whole list repeated R times; the table shows medians over the repetitions, the kernel each
# side ran, and ours/PyTorch ratios (bf16 rows: against PyTorch's bf16 autocast and its f32 step).
#
#   scripts/compare.sh                      # tiny, T=1 and T=2, every method, train + infer, f32 + bf16, R=3
#   scripts/compare.sh --quick              # tiny, T=2, full/lora/linear training, f32 + bf16, R=1 (~3 min)
#   scripts/compare.sh --config base        # base shapes (slow: minutes per row on 2 cores)
#   scripts/compare.sh --sweep              # tiny training, cvpt vs vpt-deep at M = 0 1 10 50 100 200
#   scripts/compare.sh --threads 1 --methods "full linear lora" --phases train --precisions bf16 --reps 1
#   scripts/compare.sh --config base --phases train --checkpoint-activations   # peft with activation checkpointing
#
# Options: --config tiny|base, --sweep, --quick, --reps R, --threads "1 2", --methods "LIST",
#          --phases "train infer", --precisions "f32 bf16", --warmup W, --steps S, --out FILE (the
#          table; the raw JSON lines go to FILE.jsonl; default out/compare-CONFIG-DATE.md),
#          --timeout SEC (per process), --torch-2p (PyTorch with OMP_WAIT_POLICY=PASSIVE),
#          --torch-pinned (leave OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE set for PyTorch too),
#          --checkpoint-activations (peft bench with it: each block keeps its input only and is
#          recomputed in backward), --peft-args "ARGS" (more arguments for every peft bench),
#          --peft-passive (peft with OMP_WAIT_POLICY=PASSIVE: much faster on a loaded machine, see
#          docs/performance.md "OpenMP wait policy under load").
# The table's RSS ratios are ours over PyTorch's f32 peak RSS (the issue's memory target), also
# for bf16 rows.
# Environment: PEFT_BIN (default build/peft), TORCH_BENCH (default ../shared/bench/torch_vit_bench.py),
#              PYTHON (default /usr/bin/python3); CONFIG, REPS, THREADS, METHODS, PHASES,
#              PRECISIONS, WARMUP, STEPS give the defaults of the options of the same name.
# PyTorch runs at its best: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE (set on machines whose tests
# need OpenBLAS pinned to an older kernel) are unset for PyTorch's process only, so its OpenBLAS
# picks its kernel from CPUID (the JSON's openblas_core says which); its `--precision bf16` is
# PyTorch's CPU autocast (oneDNN bf16 matmuls). peft inherits the environment unchanged: its
# GEMMs are oneDNN's (gemm_backend in its JSON), which ignores both variables.
# PyTorch runs with OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=T: for T=2 that is the script's "2n"
# variant (spinning OpenMP beside OpenBLAS's pool); --torch-2p gives its "2p" variant instead.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

config="${CONFIG:-tiny}"
sweep=0
reps="${REPS:-3}"
threads="${THREADS:-1 2}"
methods="${METHODS:-}"
phases="${PHASES:-}"
precisions="${PRECISIONS:-f32 bf16}"
warmup="${WARMUP:-}"
steps="${STEPS:-}"
torch_unpin=1
out=""
timeout_s=900
torch_wait=""
peft_bin="${PEFT_BIN:-build/peft}"
torch_bench="${TORCH_BENCH:-../shared/bench/torch_vit_bench.py}"
python="${PYTHON:-/usr/bin/python3}"
peft_args=()
peft_wait=""

usage() { awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --config) config="$2"; shift 2 ;;
    --sweep) sweep=1; shift ;;
    --quick) reps=1; threads=2; methods="full lora linear"; phases=train; warmup=1; steps=3; shift ;;
    --precisions) precisions="$2"; shift 2 ;;
    --torch-pinned) torch_unpin=0; shift ;;
    --reps) reps="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --methods) methods="$2"; shift 2 ;;
    --phases) phases="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --timeout) timeout_s="$2"; shift 2 ;;
    --torch-2p) torch_wait=PASSIVE; shift ;;
    --peft-passive) peft_wait=PASSIVE; shift ;;
    --checkpoint-activations|--grad-checkpointing) peft_args+=(--checkpoint-activations); shift ;;
    --peft-args) read -r -a more <<<"$2"; peft_args+=("${more[@]}"); shift 2 ;;
    -h|--help) usage ;;
    *) echo "compare.sh: unknown option '$1'" >&2; usage ;;
  esac
done
[[ "$config" == tiny || "$config" == base ]] || { echo "compare.sh: --config must be tiny or base (got '$config')" >&2; exit 2; }
[[ -x "$peft_bin" ]] || { echo "compare.sh: no peft binary at '$peft_bin' (build it, or set PEFT_BIN)" >&2; exit 1; }
[[ -f "$torch_bench" ]] || { echo "compare.sh: no torch_vit_bench.py at '$torch_bench' (set TORCH_BENCH)" >&2; exit 1; }
for p in $precisions; do
  [[ "$p" == f32 || "$p" == bf16 ]] || { echo "compare.sh: --precisions takes f32 and/or bf16 (got '$p')" >&2; exit 2; }
done
# PyTorch at its best: the OpenBLAS pins are removed from its process alone.
torch_env=(env)
if [[ $torch_unpin == 1 ]]; then torch_env=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE); fi

# The job list: "method:M:phase" entries. Prompt counts as the script's suites: 10 (tiny), 50 (base).
if [[ $sweep == 1 ]]; then
  config=tiny
  : "${phases:=train}"
  : "${warmup:=2}" "${steps:=7}"
  jobs=()
  for m in ${methods:-vpt-deep cvpt}; do
    for M in 0 1 10 50 100 200; do
      for ph in $phases; do for p in $precisions; do jobs+=("$m:$M:$ph:$p"); done; done
    done
  done
else
  : "${phases:=train infer}"
  if [[ $config == tiny ]]; then M=10; : "${warmup:=3}" "${steps:=10}"; else M=50; : "${warmup:=1}" "${steps:=5}"; fi
  jobs=()
  for m in ${methods:-full linear vpt-deep ssf lora cvpt bitfit adaptformer dora adapter ia3 prefix fact lntune}; do
    for ph in $phases; do
      for p in $precisions; do
        case "$m" in vpt-deep|vpt-shallow|cvpt|vpt) jobs+=("$m:$M:$ph:$p") ;; *) jobs+=("$m:0:$ph:$p") ;; esac
      done
    done
  done
fi

stamp="$(date +%Y%m%d-%H%M%S)"
name="$config"; [[ $sweep == 1 ]] && name="sweep"
: "${out:=out/compare-$name-$stamp.md}"  # out/ is git-ignored
mkdir -p "$(dirname "$out")"
raw="$out.jsonl"
: > "$raw"

# torch_vit_bench.py's mode name for a method; empty when it has none (bitfit, adaptformer, vpt-shallow,
# dora, adapter, ia3, prefix, fact, lntune: ours alone, no PyTorch row).
torch_mode() {
  case "$1" in
    full|linear|ssf|lora|cvpt) echo "$1" ;;
    vpt-deep|vpt) echo vpt ;;
    *) echo "" ;;
  esac
}

# Runs one measurement; appends its JSON line, tagged with the program, to $raw.
measure() {  # prog method M phase T precision
  local prog="$1" m="$2" M="$3" ph="$4" T="$5" p="$6" line log
  log="$(mktemp)"
  if [[ $prog == torch ]]; then
    if ! OPENBLAS_NUM_THREADS="$T" OMP_NUM_THREADS="$T" "${torch_env[@]}" ${torch_wait:+OMP_WAIT_POLICY=$torch_wait} timeout "$timeout_s" "$python" "$torch_bench" one --config "$config" \
        --mode "$(torch_mode "$m")" --prompts "$M" --threads "$T" --phase "$ph" --precision "$p" --warmup "$warmup" --steps "$steps" >"$log" 2>&1; then
      echo "  FAILED: torch $m M=$M $ph T=$T: $(tail -c 300 "$log")" >&2; rm -f "$log"; return 0
    fi
  else
    if ! ${peft_wait:+env OMP_WAIT_POLICY=$peft_wait} timeout "$timeout_s" "$peft_bin" bench --config "$config" --method "$m" --prompts "$M" --threads "$T" --phase "$ph" \
        --precision "$p" --warmup "$warmup" --steps "$steps" --json ${peft_args[@]+"${peft_args[@]}"} >"$log" 2>&1; then
      echo "  FAILED: peft $m M=$M $ph T=$T: $(tail -c 300 "$log")" >&2; rm -f "$log"; return 0
    fi
  fi
  line="$(grep '^{' "$log" | tail -n 1)"
  rm -f "$log"
  [[ -n "$line" ]] || { echo "  FAILED: $prog $m: no JSON line" >&2; return 0; }
  "$python" -c 'import json,sys; r=json.loads(sys.argv[1]); r.update(prog=sys.argv[2], method=sys.argv[3], rep=int(sys.argv[4]), precision=sys.argv[5]); print(json.dumps(r))' \
    "$line" "$prog" "$m" "$rep" "$p" >>"$raw"
  # The kernel this side ran: PyTorch's OpenBLAS core (bf16 autocast: oneDNN matmuls), ours from peft bench.
  "$python" -c '
import json, sys
r = json.loads(sys.argv[1])
if sys.argv[2] == "torch":
    k = "torch %s, OpenBLAS %s, OPENBLAS_CORETYPE=%s" % (r.get("torch", "?"), r.get("openblas_core", "?"), r.get("coretype_env", "?"))
    if r.get("precision") == "bf16": k += ", autocast bf16 (oneDNN matmul)"
else:
    k = r.get("gemm_backend", "?")
    if r.get("peak_share") is not None: k += "; %.0f%% of the FMA peak" % (100 * r["peak_share"])
print("  %-5s %-4s %9.1f ms %6.1f GFLOP/s %7.0f MB  [%s]" % (sys.argv[2], r.get("precision", "f32"), r["median_s"] * 1e3, r["gflops"], r["peak_rss_mb"], k))' "$line" "$prog"
}

echo "compare: config=$config reps=$reps threads=($threads) precisions=($precisions) warmup=$warmup steps=$steps${torch_wait:+ torch OMP_WAIT_POLICY=$torch_wait}${peft_wait:+ peft OMP_WAIT_POLICY=$peft_wait}${peft_args[*]:+ peft ${peft_args[*]}}; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ $torch_unpin == 1 ]]; then
  echo "PyTorch: OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset for its process (its best kernel); ours: environment as is (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset})"
else
  echo "PyTorch: environment as is (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}), --torch-pinned"
fi
echo "raw results: $raw"
for ((rep = 1; rep <= reps; rep++)); do
  for T in $threads; do
    for job in "${jobs[@]}"; do
      IFS=: read -r m M ph p <<<"$job"
      echo "[rep $rep/$reps] $config $m M=$M T=$T $ph $p"
      # Alternate which program goes first, so a slow drift in machine load does not favour one.
      if (( rep % 2 == 1 )); then order="torch peft"; else order="peft torch"; fi
      for prog in $order; do
        if [[ $prog == torch && -z "$(torch_mode "$m")" ]]; then continue; fi
        measure "$prog" "$m" "$M" "$ph" "$T" "$p"
      done
    done
  done
done

# The table: medians over repetitions of each program's median step time, GFLOP/s and peak RSS.
"$python" - "$raw" "$config" "$(cut -d' ' -f1-3 /proc/loadavg)" "${peft_wait:+OMP_WAIT_POLICY=$peft_wait }${peft_args[*]:-}" <<'EOF' | tee "$out"
import json, statistics, sys
from collections import defaultdict
raw, config, load, peft_args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
recs = [json.loads(l) for l in open(raw) if l.strip()]
groups = defaultdict(lambda: {"torch": [], "peft": []})
order = []
for r in recs:
    key = (r["method"], r["M"], r["threads"], r["phase"], r.get("precision", "f32"))
    if key not in groups:
        order.append(key)
    groups[key][r["prog"]].append(r)
def med(rs, k):
    v = [r[k] for r in rs if r.get(k) is not None]
    return statistics.median(v) if v else None
fmt = lambda v, f: "–" if v is None else format(v, f)
print(f"config {config}; medians over repetitions; load average at the end {load}")
if peft_args:
    print(f"peft bench ran with: {peft_args}")
print()
print("Kernels:")
kern = set()
for r in recs:
    if r["prog"] == "torch":
        k = f"PyTorch {r.get('torch', '?')} {r.get('precision', 'f32')}: OpenBLAS {r.get('openblas_core', '?')} (OPENBLAS_CORETYPE={r.get('coretype_env', '?')})"
        if r.get("precision") == "bf16":
            k += "; autocast bf16 matmuls in oneDNN"
    else:
        k = f"peft {r.get('precision', 'f32')}: {r.get('gemm_backend', '?')}"
    kern.add(k)
for k in sorted(kern):
    print(f"- {k}")
peaks = [r for r in recs if r["prog"] == "peft" and r.get("peak_gflops_avx2") is not None]
for T in sorted({r["threads"] for r in peaks}):
    rs = [r for r in peaks if r["threads"] == T]
    print(f"- FMA peak measured by peft bench, T={T}: AVX2 {fmt(med(rs, 'peak_gflops_avx2'), '.0f')}, "
          f"AVX-512 {fmt(med(rs, 'peak_gflops_avx512'), '.0f')} GFLOP/s")
print()
print("| method | M | threads | phase | precision | PyTorch ms | ours ms | ours/PyTorch | ours/PyTorch f32 | PyTorch GFLOP/s | ours GFLOP/s | ours % of FMA peak | ours sgemm GFLOP/s | PyTorch peak RSS MB | ours peak RSS MB | RSS ours/PyTorch f32 | n |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for key in order:
    g = groups[key]
    m, M, T, ph, prec = key
    t_ms = med(g["torch"], "median_s")
    p_ms = med(g["peft"], "median_s")
    ratio = p_ms / t_ms if (t_ms and p_ms) else None
    f32 = groups.get((m, M, T, ph, "f32"))
    t32 = med(f32["torch"], "median_s") if f32 else None
    rss32 = med(f32["torch"], "peak_rss_mb") if f32 else None
    p_rss = med(g["peft"], "peak_rss_mb")
    rss_ratio = p_rss / rss32 if (rss32 and p_rss) else None
    ratio32 = p_ms / t32 if (t32 and p_ms) else None
    sg = med(g["peft"], "sgemm_gflops")
    share = med(g["peft"], "peak_share")
    print(f"| {m} | {M} | {T} | {ph} | {prec} | {fmt(t_ms and t_ms*1e3, '.1f')} | {fmt(p_ms and p_ms*1e3, '.1f')} | {fmt(ratio, '.2f')} | "
          f"{fmt(ratio32, '.2f')} | {fmt(med(g['torch'], 'gflops'), '.1f')} | {fmt(med(g['peft'], 'gflops'), '.1f')} | "
          f"{fmt(share and share * 100, '.0f')} | {fmt(sg, '.1f')} | "
          f"{fmt(med(g['torch'], 'peak_rss_mb'), '.0f')} | {fmt(p_rss, '.0f')} | {fmt(rss_ratio, '.2f')} | "
          f"{len(g['torch'])}/{len(g['peft'])} |")
EOF
echo "table written to $out"
