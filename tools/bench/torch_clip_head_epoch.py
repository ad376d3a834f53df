#!/usr/bin/python3
"""PyTorch's head epoch for the CLIP methods that keep the image tower frozen, timed as a real loop.

An ordinary PyTorch adaptation loop runs, every epoch, the image tower over the images
(tools/bench/torch_linear_epoch.py --encode-only times that) and then this: the method's head on
the batch's features, cross-entropy, backward and AdamW. Same shapes and schedule as our
bench_feature_cache (apps/bench/bench_feature_cache.cpp): N features of width E, K = 10 classes,
batch 32, AdamW lr 1e-3 with warm-up + cosine, weight decay 0. The heads follow methods.md 14, 16
and 17 (the official TaskRes, CLIP-Adapter and Tip-Adapter-F forward passes):

  taskres        c = u + alpha R;  logits = s norm(f) norm(c)^T                      (R trains)
  clip-adapter   g = relu(fc2(relu(fc1 f)));  f' = a g + (1-a) f;  s norm(f') c^T      (fc1, fc2 train)
  tip-adapter-f  100 norm(f) c^T + alpha exp((-1) (beta - beta norm(f) Fk^T)) Y       (Fk trains)

  OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 /usr/bin/python3 tools/bench/torch_clip_head_epoch.py \
      --shape clip-micro --n 1024 --threads 1

Prints one JSON line per method: {"method", "shape", "n", "threads", "epoch_s": [...], "median_epoch_s"}.
"""
import argparse
import json
import math
import statistics
import time

EMBED = {"clip-micro": 64, "clip-vit-b32": 512}  # embed_dim of the CLIP presets (nn/clip.cpp)
ALPHA = {"taskres": 0.5, "clip-adapter": 0.2, "tip-adapter-f": 1.17}  # our defaults (methods.md)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="clip-micro", choices=sorted(EMBED))
    ap.add_argument("--n", type=int, default=1024, help="features per epoch (and Tip-Adapter's cache size)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=5, help="timed epochs (after one warm-up epoch)")
    ap.add_argument("--methods", default="taskres,clip-adapter,tip-adapter-f")
    a = ap.parse_args()

    import torch
    import torch.nn.functional as F
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    E, K, B, N = EMBED[a.shape], 10, 32, a.n
    feats = torch.randn(N, E)
    labels = torch.randint(0, K, (N,))
    u = torch.randn(K, E)                      # the frozen text features of the K prompts
    c = F.normalize(u, dim=-1)                 # zero-shot classifier
    scale = 100.0

    for method in a.methods.split(","):
        alpha = ALPHA[method]
        if method == "taskres":
            R = torch.zeros(K, E, requires_grad=True)
            params = [R]

            def head(f):
                return scale * F.normalize(f, dim=-1) @ F.normalize(u + alpha * R, dim=-1).t()
        elif method == "clip-adapter":
            fc1 = torch.nn.Linear(E, E // 4, bias=False)
            fc2 = torch.nn.Linear(E // 4, E, bias=False)
            params = list(fc1.parameters()) + list(fc2.parameters())

            def head(f):
                g = F.relu(fc2(F.relu(fc1(f))))
                return scale * F.normalize(alpha * g + (1 - alpha) * f, dim=-1) @ c.t()
        elif method == "tip-adapter-f":
            keys = F.normalize(feats, dim=-1).clone().requires_grad_(True)   # the cache: every training feature
            Y = F.one_hot(labels, K).float()
            beta = 1.0
            params = [keys]

            def head(f):
                nf = F.normalize(f, dim=-1)
                affinity = nf @ keys.t()
                return 100.0 * nf @ c.t() + alpha * ((-1) * (beta - beta * affinity)).exp() @ Y
        else:
            raise SystemExit(f"unknown method {method}")
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
        per_epoch = (N + B - 1) // B
        total = per_epoch * (a.epochs + 1)

        def lr_at(step):  # linear warm-up over the first epoch, then cosine to 0 (ours: nn::warmup_cosine_lr)
            if step < per_epoch:
                return 1e-3 * (step + 1) / per_epoch
            return 0.5 * 1e-3 * (1 + math.cos(math.pi * (step - per_epoch) / max(1, total - per_epoch)))

        step, times = 0, []
        for e in range(a.epochs + 1):  # epoch 0 warms up (allocator, OpenBLAS buffers)
            perm = torch.randperm(N)
            t0 = time.perf_counter()
            for s in range(per_epoch):
                idx = perm[s * B:(s + 1) * B]
                for g in opt.param_groups:
                    g["lr"] = lr_at(step)
                loss = F.cross_entropy(head(feats[idx]), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
            if e > 0:
                times.append(time.perf_counter() - t0)
        print(json.dumps(dict(method=method, shape=a.shape, n=N, threads=a.threads, batch=B, epoch_s=times,
                              median_epoch_s=statistics.median(times), torch=torch.__version__)))


if __name__ == "__main__":
    main()
