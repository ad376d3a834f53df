#!/usr/bin/env python3
"""PyTorch reference values for attention, conv2d_patch, indexing ops -> tests/fixtures/ops_b.json.

Every case is float64 with a fixed seed. A case holds its inputs, the forward output and the
gradients of loss = sum(out * gy) for a random upstream gradient gy (so gradients are not all
ones). Tensors are stored as {"shape": [...], "data": [...]} in row-major order.

Run: /usr/bin/python3 tools/reference/make_op_fixtures_b.py
"""
import json
import math
import os

import torch

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "ops_b.json")


def enc(t):
    t = t.detach()
    data = t.reshape(-1).tolist()
    return {"shape": list(t.shape), "data": data}


def leaf(*shape):
    return torch.randn(*shape).requires_grad_()


def run(out, inputs):
    """Backward of sum(out * gy); returns gy and the gradients of inputs (dict name -> tensor)."""
    gy = torch.randn(out.shape)
    (out * gy).sum().backward()
    return gy, {"d" + k: v.grad for k, v in inputs.items() if v.requires_grad}


def case(out, inputs, extra=None):
    gy, grads = run(out, inputs)
    c = {k: enc(v) for k, v in inputs.items()}
    c.update({k: enc(v) for k, v in grads.items()})
    c["out"] = enc(out)
    c["gy"] = enc(gy)
    for k, v in (extra or {}).items():
        c[k] = enc(v) if torch.is_tensor(v) else v
    return c


fx = {}

# ---- attention: softmax(q k^T * scale + mask) v with a causal -inf mask [T, T]
B, H, T, hd = 2, 2, 5, 4
q, k, v = leaf(B, H, T, hd), leaf(B, H, T, hd), leaf(B, H, T, hd)
causal = torch.triu(torch.full((T, T), -math.inf), diagonal=1)
scale = hd ** -0.5
out = torch.softmax(q @ k.transpose(-1, -2) * scale + causal, dim=-1) @ v
fx["attn_causal"] = case(out, {"q": q, "k": k, "v": v}, {"scale": scale})

# ---- attention: cross attention, Tq != Tk, dv != hd, learnable additive mask [B, 1, Tq, Tk]
B, H, Tq, Tk, hd, dv = 1, 3, 3, 6, 4, 2
q, k, v = leaf(B, H, Tq, hd), leaf(B, H, Tk, hd), leaf(B, H, Tk, dv)
mask = leaf(B, 1, Tq, Tk)
scale = 0.3
out = torch.softmax(q @ k.transpose(-1, -2) * scale + mask, dim=-1) @ v
fx["attn_cross"] = case(out, {"q": q, "k": k, "v": v, "mask": mask}, {"scale": scale})

# ---- conv2d_patch == conv2d(stride=P).flatten(2).transpose(1, 2) on a non-square grid
Bc, C, Hh, W, P, D = 2, 3, 8, 12, 4, 5
x, w, b = leaf(Bc, C, Hh, W), leaf(D, C, P, P), leaf(D)
out = torch.nn.functional.conv2d(x, w, b, stride=P).flatten(2).transpose(1, 2)
fx["conv2d_patch"] = case(out, {"x": x, "w": w, "b": b}, {"P": P})

# ---- cat / stack
a, b2 = leaf(2, 3), leaf(2, 2)
fx["cat"] = case(torch.cat([a, b2], dim=1), {"a": a, "b": b2}, {"dim": 1})
a, b2 = leaf(2, 3), leaf(2, 3)
fx["stack"] = case(torch.stack([a, b2], dim=1), {"a": a, "b": b2}, {"dim": 1})

# ---- index_select along dim 1 with a repeated index (its gradient is the sum of both)
x = leaf(3, 4)
idx = torch.tensor([2, 0, 2])
fx["index_select"] = case(torch.index_select(x, 1, idx), {"x": x}, {"dim": 1, "idx": idx})

# ---- gather along dim 1, index narrower than x in dim 0 and 1
x = leaf(3, 4)
idx = torch.tensor([[3, 0], [1, 1]])
fx["gather"] = case(torch.gather(x, 1, idx), {"x": x}, {"dim": 1, "idx": idx})

# ---- embedding with repeated ids
weight = leaf(5, 3)
ids = torch.tensor([[4, 0, 4], [2, 2, 1]])
fx["embedding"] = case(torch.nn.functional.embedding(ids, weight), {"weight": weight}, {"ids": ids})

# ---- where with broadcasting: cond [3, 1] (float, nonzero = true), a [3, 4], b [4]
cond = torch.tensor([[0.0], [2.5], [-1.0]])
a, b2 = leaf(3, 4), leaf(4)
fx["where"] = case(torch.where(cond != 0, a, b2), {"a": a, "b": b2}, {"cond": cond})

# ---- masked_fill with a broadcast mask [3, 4] over x [2, 3, 4]
x = leaf(2, 3, 4)
m = torch.rand(3, 4) < 0.4
fx["masked_fill"] = case(x.masked_fill(m, -2.5), {"x": x}, {"mask": m.to(torch.float64), "value": -2.5})

with open(OUT, "w") as f:
    json.dump(fx, f)
print(f"wrote {os.path.relpath(OUT)} ({os.path.getsize(OUT)} bytes), torch {torch.__version__}")
