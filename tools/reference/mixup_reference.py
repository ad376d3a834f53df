"""Mixup/CutMix and soft-target cross-entropy references -> tests/fixtures/mixup.json.

Written from timm's definitions (timm/data/mixup.py, timm/loss/cross_entropy.py), with the random
choices given as inputs so that the C++ code can be checked on the same lambdas and box centres:
  rand_bbox: cut = int(size * sqrt(1 - lam)); box = centre -+ cut // 2, clipped to the image
  correct_lam: lam = 1 - box area / image area
  batch mode: every row mixes with the reversed batch under one lambda
  pair mode: rows i and B-1-i share a lambda (and box) and swap content
  elem mode: row i mixes with the unmixed row B-1-i under its own lambda
  targets: smoothed one-hot y; t_i = lam_i y_i + (1 - lam_i) y_{B-1-i}
  SoftTargetCrossEntropy: sum(-t * log_softmax(x, -1), -1).mean()
Run from the repository root with /usr/bin/python3 (Debian python3-torch).
"""
import json
import math

import torch

torch.manual_seed(0)


def t2j(t):
    return {"shape": list(t.shape), "data": t.detach().double().flatten().tolist()}


def box(H, W, lam, cy, cx):
    r = math.sqrt(1.0 - lam)
    ch, cw = int(H * r) // 2, int(W * r) // 2
    clip = lambda v, hi: min(max(v, 0), hi)
    return clip(cy - ch, H), clip(cy + ch, H), clip(cx - cw, W), clip(cx + cw, W)


def mix(x, labels, K, smoothing, mode, lam, cut, cy, cx):
    B, C, H, W = x.shape
    orig = x.clone()
    out = x.clone()
    lam = list(lam)
    rows = range(B) if mode != "pair" else range(B // 2)
    for i in rows:
        j = B - 1 - i
        if lam[i] == 1.0:
            continue
        if cut[i]:
            y0, y1, x0, x1 = box(H, W, lam[i], cy[i], cx[i])
            out[i, :, y0:y1, x0:x1] = orig[j, :, y0:y1, x0:x1]
            if mode == "pair":
                out[j, :, y0:y1, x0:x1] = orig[i, :, y0:y1, x0:x1]
            lam[i] = 1.0 - (y1 - y0) * (x1 - x0) / float(H * W)
        else:
            out[i] = orig[i] * lam[i] + orig[j] * (1 - lam[i])
            if mode == "pair":
                out[j] = orig[j] * lam[i] + orig[i] * (1 - lam[i])
        if mode == "pair":
            lam[j] = lam[i]
    off = smoothing / K
    on = 1.0 - smoothing + off
    y = torch.full((B, K), off, dtype=torch.float64)
    y[torch.arange(B), torch.tensor(labels)] = on
    lam_t = torch.tensor(lam, dtype=torch.float64).unsqueeze(1)
    t = y * lam_t + y.flip(0) * (1 - lam_t)
    return out, t, lam


def soft_ce_case(name, B, K, target_shape):
    x = (torch.randn(B, K, dtype=torch.float64) * 2).requires_grad_()
    t = torch.rand(*target_shape, dtype=torch.float64)
    t = (t / t.sum(-1, keepdim=True)).requires_grad_()
    loss = torch.sum(-t * torch.log_softmax(x, dim=-1), dim=-1).mean()
    gx, gt = torch.autograd.grad(loss, [x, t])
    return {"name": name, "logits": t2j(x), "targets": t2j(t), "loss": loss.item(), "grad_logits": t2j(gx),
            "grad_targets": t2j(gt)}


out = {"soft_ce": [soft_ce_case("rows", 4, 5, (4, 5)), soft_ce_case("broadcast_k", 3, 6, (6,)),
                   soft_ce_case("broadcast_1k", 3, 4, (1, 4))]}

out["boxes"] = []
for H, W, lam, cy, cx in [(224, 224, 0.3, 112, 112), (224, 224, 0.7, 5, 220), (32, 24, 0.05, 0, 0),
                          (7, 9, 0.5, 6, 8), (16, 16, 0.999, 8, 3), (16, 16, 0.0, 8, 8), (10, 10, 0.0, 2, 7)]:
    y0, y1, x0, x1 = box(H, W, lam, cy, cx)
    out["boxes"].append({"H": H, "W": W, "lam": lam, "cy": cy, "cx": cx, "box": [y0, y1, x0, x1],
                         "lam_corrected": 1.0 - (y1 - y0) * (x1 - x0) / float(H * W)})

out["mixes"] = []
for mode, B in [("batch", 4), ("batch", 5), ("pair", 4), ("pair", 5), ("elem", 4), ("elem", 5)]:
    for cutmix_case in [False, True, None]:  # all mixup, all cutmix, mixed per element
        C, H, W, K = 2, 6, 5, 4
        x = torch.rand(B, C, H, W, dtype=torch.float32)
        labels = torch.randint(0, K, (B,)).tolist()
        if mode == "batch":
            lam = [0.37] * B
            cut = [bool(cutmix_case)] * B
            cy, cx = [2] * B, [3] * B
        else:
            lam = [0.37, 1.0, 0.62, 0.81, 0.15][:B]
            cut = [bool(cutmix_case) if cutmix_case is not None else (i % 2 == 0) for i in range(B)]
            cy, cx = [2, 4, 5, 0, 3][:B], [3, 0, 4, 1, 2][:B]
            if mode == "pair":  # the partner repeats the pair's draw
                for i in range(B // 2):
                    j = B - 1 - i
                    lam[j], cut[j], cy[j], cx[j] = lam[i], cut[i], cy[i], cx[i]
                if B % 2:
                    lam[B // 2], cut[B // 2] = 1.0, False
        mixed, t, lam_c = mix(x, labels, K, 0.1, mode, lam, cut, cy, cx)
        out["mixes"].append({"mode": mode, "K": K, "smoothing": 0.1, "images": t2j(x), "labels": labels, "lam": lam,
                             "cutmix": cut, "cy": cy, "cx": cx, "mixed": t2j(mixed), "targets": t2j(t),
                             "lam_corrected": lam_c})

with open("tests/fixtures/mixup.json", "w") as f:
    json.dump(out, f)
print("wrote tests/fixtures/mixup.json")
