#!/usr/bin/python3
"""PyTorch's ordinary epoch for a frozen backbone (linear probe), timed as a real loop.

Imports the model builder of /work/shared/bench/torch_vit_bench.py (not copied) and runs
ceil(N / batch) training steps of its `linear` mode over N random images: the frozen backbone's
forward (its parameters need no gradient, so autograd records nothing for it) and the head's
forward, backward and AdamW step, exactly the step `torch_vit_bench.py one --mode linear` times.
Every epoch runs the backbone again: that is what an ordinary loop does.

  OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 /usr/bin/python3 tools/bench/torch_linear_epoch.py \
      --n 2048 --threads 1 --epochs 2

Prints one JSON line: {"n", "threads", "batch", "epoch_s": [...], "median_epoch_s", ...}.
--encode-only times just the backbone forward under no_grad (the part an ordinary CLIP
adaptation loop repeats every epoch); --shape picks other ViT shapes for that (e.g. CLIP towers).
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.environ.get("PEFT_TORCH_BENCH_DIR", "/work/shared/bench"))
import torch_vit_bench  # noqa: E402  (the shared baseline: build_model, CONFIGS)

SHAPES = {
    # the bench `tiny` config of torch_vit_bench.py
    "tiny": None,
    # vision towers of the CLIP presets (timm layout, same GEMM shapes; `classes` = embed dim)
    "clip-micro": dict(img=32, patch=8, chans=3, dim=64, depth=2, heads=4, classes=64, batch=32),
    "clip-vit-b32": dict(img=224, patch=32, chans=3, dim=768, depth=12, heads=12, classes=512, batch=32),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2048, help="images per epoch")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs (after one warm-up step)")
    ap.add_argument("--shape", default="tiny", choices=sorted(SHAPES))
    ap.add_argument("--encode-only", action="store_true", help="time the backbone forward (no_grad) only")
    a = ap.parse_args()

    import torch
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = SHAPES[a.shape] or torch_vit_bench.CONFIGS["tiny"]
    B = cfg["batch"]
    model = torch_vit_bench.build_model(torch, cfg, "linear", 0)
    images = torch.randn(a.n, cfg["chans"], cfg["img"], cfg["img"])
    labels = torch.randint(0, cfg["classes"], (a.n,))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.05)
    lossf = torch.nn.CrossEntropyLoss()
    steps = (a.n + B - 1) // B

    def train_step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(x), y)
        loss.backward()
        opt.step()

    def encode(x, _y=None):
        with torch.no_grad():
            model(x)

    step = encode if a.encode_only else train_step
    model.eval() if a.encode_only else model.train()
    step(images[:B], labels[:B])  # warm-up (allocator, OpenBLAS buffers)
    times = []
    for e in range(a.epochs):
        perm = torch.randperm(a.n)  # an ordinary shuffled epoch
        t0 = time.perf_counter()
        for s in range(steps):
            idx = perm[s * B:(s + 1) * B]
            step(images[idx], labels[idx])
        times.append(time.perf_counter() - t0)
    print(json.dumps(dict(n=a.n, threads=a.threads, batch=B, shape=a.shape, encode_only=a.encode_only, steps=steps,
                          epoch_s=times, median_epoch_s=statistics.median(times), torch=torch.__version__)))


if __name__ == "__main__":
    main()
