#!/usr/bin/env bash
# Epoch times of head-only training with cached backbone features against PyTorch's ordinary loop
# (issue 7: "from the second epoch on, an epoch costs >= 20x less than PyTorch's ordinary loop").
#
# Vision, bench `tiny` shapes (32 px, patch 4, D192 L12 H3, batch 32), procedural:shapes, N images:
#   ours      `peft train --method linear`: epoch 1 (backbone runs once per image, features cached)
#             and epochs 2.. (head only, from the cache), from metrics.jsonl's images_per_s;
#             also the same run with --no-feature-cache (our ordinary loop) for reference.
#   PyTorch   tools/bench/torch_linear_epoch.py: a real ordinary epoch of torch_vit_bench.py's
#             `linear` step (frozen backbone forward + head forward/backward/AdamW) over N images.
# CLIP (unless --no-clip): build/bench_feature_cache times one epoch of TaskRes / CLIP-Adapter /
#   Tip-Adapter-F on cached features and the image tower's pass over the same images (what an
#   ordinary loop adds to every epoch), for clip-micro and clip-vit-b32. PyTorch's ordinary epoch
#   = its tower forward (no_grad, same GEMM shapes in timm layout) + its head epoch on the features
#   (tools/bench/torch_clip_head_epoch.py: the same heads, batch, AdamW and schedule).
#
#   scripts/compare_cache.sh                          # N=2048, T=1 and 2, 3 epochs, 1 repetition
#   scripts/compare_cache.sh --n 1024 --threads 1 --reps 3
#
# Options: --n N, --threads "1 2", --epochs E (ours, >= 2), --reps R (median over R), --no-clip,
#          --no-vision (the CLIP table only), --out FILE (the tables; default out/compare-cache-DATE.md).
# Environment: PEFT_BIN (default build/peft), BENCH_BIN (default: bench_feature_cache beside
#              PEFT_BIN), PYTHON (default /usr/bin/python3).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

n=2048
threads="1 2"
epochs=3
reps=1
clip=1
vision=1
out=""
peft_bin="${PEFT_BIN:-build/peft}"
bench_bin="${BENCH_BIN:-$(dirname "$peft_bin")/bench_feature_cache}"
python="${PYTHON:-/usr/bin/python3}"

usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --n) n="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --epochs) epochs="$2"; shift 2 ;;
    --reps) reps="$2"; shift 2 ;;
    --no-clip) clip=0; shift ;;
    --no-vision) vision=0; shift ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "compare_cache.sh: unknown option '$1'" >&2; usage ;;
  esac
done
(( epochs >= 2 )) || { echo "compare_cache.sh: --epochs must be >= 2 (got $epochs)" >&2; exit 2; }
[[ -x "$peft_bin" ]] || { echo "compare_cache.sh: no peft binary at '$peft_bin' (build it, or set PEFT_BIN)" >&2; exit 1; }
if (( clip )) && [[ ! -x "$bench_bin" ]]; then
  echo "compare_cache.sh: no bench_feature_cache at '$bench_bin' (build it, set BENCH_BIN, or pass --no-clip)" >&2
  exit 1
fi
mkdir -p out
out="${out:-out/compare-cache-$(date +%Y%m%d-%H%M%S).md}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
raw="$tmp/raw.jsonl"
: >"$raw"

# Base weights for bench-tiny: one full-training step from the seeded init (values do not change timings).
"$peft_bin" pretrain --config bench-tiny --data procedural:shapes --train-size 32 --epochs 1 --batch 32 \
  --out "$tmp/base" --no-progress --threads 1 >/dev/null
weights="$tmp/base/weights.safetensors"

# Appends one JSON line {prog, threads, rep, epoch_s: [...]} from a metrics.jsonl.
ours_epochs() {  # ours_epochs PROG T REP DIR
  "$python" - "$1" "$2" "$3" "$4/metrics.jsonl" "$n" >>"$raw" <<'EOF'
import json, sys
prog, T, rep, path, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
lines = [json.loads(l) for l in open(path) if l.strip()]
print(json.dumps(dict(prog=prog, threads=T, rep=rep, epoch_s=[n / l["images_per_s"] for l in lines],
                      cache=[l.get("feature_cache", "off") for l in lines])))
EOF
}

for ((r = 1; r <= reps; r++)); do
  for T in $threads; do
    echo "rep $r/$reps, threads $T (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    if (( vision )); then
      "$peft_bin" train --config bench-tiny --weights "$weights" --method linear --data procedural:shapes \
        --train-size "$n" --epochs "$epochs" --batch 32 --out "$tmp/ours" --no-progress --threads "$T" >/dev/null
      ours_epochs ours "$T" "$r" "$tmp/ours"
      "$peft_bin" train --config bench-tiny --weights "$weights" --method linear --data procedural:shapes \
        --train-size "$n" --epochs 2 --batch 32 --out "$tmp/plain" --no-progress --threads "$T" --no-feature-cache >/dev/null
      ours_epochs ours-plain "$T" "$r" "$tmp/plain"
      line="$(OPENBLAS_NUM_THREADS="$T" OMP_NUM_THREADS="$T" "$python" tools/bench/torch_linear_epoch.py --n "$n" \
        --threads "$T" --epochs 1 | tail -1)"
      "$python" -c 'import json,sys; r=json.loads(sys.argv[1]); r.update(prog="torch", rep=int(sys.argv[2])); print(json.dumps(r))' \
        "$line" "$r" >>"$raw"
    fi
    if (( clip )); then
      PEFT_THREADS="$T" "$bench_bin" --benchmark_format=json --benchmark_min_time=0.5 2>/dev/null \
        | "$python" -c 'import json,sys; d=json.load(sys.stdin); [print(json.dumps(dict(prog="clip", threads=int(sys.argv[1]), rep=int(sys.argv[2]), name=b["name"], label=b.get("label",""), ms=b["real_time"], images=b.get("images",0)))) for b in d["benchmarks"]]' \
          "$T" "$r" >>"$raw"
      for shape in clip-micro clip-vit-b32; do
        cn=1024; [[ "$shape" == clip-vit-b32 ]] && cn=64
        line="$(OPENBLAS_NUM_THREADS="$T" OMP_NUM_THREADS="$T" "$python" tools/bench/torch_linear_epoch.py --n "$cn" \
          --threads "$T" --epochs 1 --shape "$shape" --encode-only | tail -1)"
        "$python" -c 'import json,sys; r=json.loads(sys.argv[1]); r.update(prog="torch-encode", rep=int(sys.argv[2])); print(json.dumps(r))' \
          "$line" "$r" >>"$raw"
        OPENBLAS_NUM_THREADS="$T" OMP_NUM_THREADS="$T" "$python" tools/bench/torch_clip_head_epoch.py --n "$cn" \
          --threads "$T" --shape "$shape" \
          | "$python" -c 'import json,sys; [print(json.dumps(dict(json.loads(l), prog="torch-head", rep=int(sys.argv[1])))) for l in sys.stdin if l.strip()]' \
          "$r" >>"$raw"
      done
    fi
  done
done
cp "$raw" "$out.jsonl"

"$python" - "$raw" "$n" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'EOF' | tee "$out"
import json, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
n, load = int(sys.argv[2]), sys.argv[3]
med = statistics.median
threads = sorted({r["threads"] for r in recs})
vision = any(r["prog"] == "torch" for r in recs)
if vision:
    print(f"Vision, bench tiny shapes (32 px, D192 L12 H3, batch 32), procedural:shapes, N = {n}; "
          f"medians over repetitions; load at the end {load}\n")
    print("| N | threads | PyTorch epoch s | ours epoch 1 s (features computed) | ours cached epoch s | "
          "PyTorch / ours cached | ours ordinary loop epoch s |")
    print("|---|---|---|---|---|---|---|")
for T in (threads if vision else []):
    tor = med([r["median_epoch_s"] for r in recs if r["prog"] == "torch" and r["threads"] == T])
    ours = [r for r in recs if r["prog"] == "ours" and r["threads"] == T]
    e1 = med([r["epoch_s"][0] for r in ours])
    cached = med([med(r["epoch_s"][1:]) for r in ours])
    plain = med([med(r["epoch_s"]) for r in recs if r["prog"] == "ours-plain" and r["threads"] == T])
    print(f"| {n} | {T} | {tor:.2f} | {e1:.2f} | {cached:.4f} | {tor / cached:.0f}x | {plain:.2f} |")
clip = [r for r in recs if r["prog"] == "clip"]
if clip:
    print("\nCLIP heads on cached image features (bench_feature_cache; random weights, procedural:shapes, batch 32)\n")
    print("| model | N | threads | method | image tower pass ms (ours) | cached epoch ms | ordinary epoch ms "
          "(tower + head) | ordinary / cached | PyTorch tower pass ms | PyTorch head epoch ms | PyTorch ordinary "
          "epoch ms (tower + head) | PyTorch ordinary / ours cached |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for T in threads:
        for p, preset in enumerate(["clip-micro", "clip-vit-b32"]):
            enc = [r for r in clip if r["threads"] == T and r["name"].startswith(f"BM_ClipEncodeEpoch/{p}/")]
            if not enc:
                continue
            enc_ms = med([r["ms"] for r in enc])
            images = int(enc[0]["images"])
            tor = [r["median_epoch_s"] * 1e3 for r in recs if r["prog"] == "torch-encode" and r["threads"] == T
                   and r["shape"] == preset]
            tor_ms = med(tor) if tor else float("nan")
            for m, method in enumerate(["taskres", "clip-adapter", "tip-adapter-f"]):
                head = [r["ms"] for r in clip if r["threads"] == T and r["name"].startswith(f"BM_ClipHeadEpoch/{p}/{m}/")]
                if not head:
                    continue
                h = med(head)
                th = [r["median_epoch_s"] * 1e3 for r in recs if r["prog"] == "torch-head" and r["threads"] == T
                      and r["shape"] == preset and r["method"] == method]
                th_ms = med(th) if th else float("nan")
                print(f"| {preset} | {images} | {T} | {method} | {enc_ms:.1f} | {h:.2f} | {enc_ms + h:.1f} | "
                      f"{(enc_ms + h) / h:.0f}x | {tor_ms:.1f} | {th_ms:.1f} | {tor_ms + th_ms:.1f} | "
                      f"{(tor_ms + th_ms) / h:.1f}x |")
EOF
echo "table: $out (raw: $out.jsonl)" >&2
