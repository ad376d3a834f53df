#!/usr/bin/env python3
"""PyTorch reference values for the unary, softmax, layer_norm, cross_entropy and l2_normalize ops.

Writes tests/fixtures/ops_a.json, read by tests/autograd/test_{unary,softmax,layer_norm,loss,normalize}.cpp.
Every case holds small fixed inputs, an upstream gradient `gout`, the forward output and the
gradients of every float input (computed in float64). Tensors are {"shape": [...], "data": [...]}
with data in row-major order.

Run: /usr/bin/python3 tools/reference/make_op_fixtures_a.py
"""
import json
import os

import torch
import torch.nn.functional as F

torch.manual_seed(1234)
DT = torch.float64


def enc(t):
    t = t.detach().to(DT).contiguous()
    return {"shape": list(t.shape), "data": [float(v) for v in t.reshape(-1).tolist()]}


def enc_i64(t):
    return {"shape": list(t.shape), "data": [int(v) for v in t.reshape(-1).tolist()]}


def run(fn, inputs, gout=None):
    """Forward fn(*inputs) and backward with gout (random if None); returns out, gout, grads."""
    leaves = [x.clone().requires_grad_(True) if x is not None else None for x in inputs]
    out = fn(*leaves)
    if gout is None:
        gout = torch.randn(out.shape, dtype=DT)
    out.backward(gout)
    return out, gout, [x.grad if x is not None else None for x in leaves]


def unary_cases():
    # Includes exact zeros (relu/abs/gelu at the kink) and values well outside [-1, 1].
    x = torch.tensor([[-3.0, -1.5, -0.25, 0.0, 0.5, 2.0],
                      [1.25, -0.75, 0.0, 4.0, -6.0, 0.1],
                      [0.3, -0.3, 9.0, -9.0, 1e-3, -2.5],
                      [0.8, 1.7, -1.1, 0.05, -0.05, 3.3]], dtype=DT)
    pos = x.abs() + 0.1  # domain of log, sqrt, rsqrt
    ops = {
        "exp": (torch.exp, x),
        "log": (torch.log, pos),
        "sqrt": (torch.sqrt, pos),
        "rsqrt": (torch.rsqrt, pos),
        "tanh": (torch.tanh, x),
        "sigmoid": (torch.sigmoid, x),
        "relu": (torch.relu, x),
        "gelu": (lambda v: F.gelu(v, approximate="none"), x),
        "quick_gelu": (lambda v: v * torch.sigmoid(1.702 * v), x),
        "abs": (torch.abs, x),
    }
    cases = {}
    for name, (fn, inp) in ops.items():
        out, gout, (gx,) = run(fn, [inp])
        cases[name] = {"x": enc(inp), "gout": enc(gout), "out": enc(out), "grad": enc(gx)}
    return cases


def softmax_cases():
    cases = []
    x2 = torch.randn(3, 5, dtype=DT) * 3
    x3 = torch.randn(2, 3, 4, dtype=DT) * 2
    for x, dim in [(x2, -1), (x2, 0), (x3, 1), (x3, -1)]:
        for name, fn in [("softmax", torch.softmax), ("log_softmax", torch.log_softmax)]:
            out, gout, (gx,) = run(lambda v: fn(v, dim), [x])
            cases.append({"op": name, "dim": dim, "x": enc(x), "gout": enc(gout), "out": enc(out), "grad": enc(gx)})
    return cases


def layer_norm_cases():
    cases = []
    D = 8
    x = torch.randn(3, D, dtype=DT) * 2 + 0.5
    w = torch.randn(D, dtype=DT)
    b = torch.randn(D, dtype=DT)
    x3 = torch.randn(2, 2, D, dtype=DT)
    for name, xx, ww, bb, eps in [("affine", x, w, b, 1e-5), ("no_affine", x, None, None, 1e-5),
                                  ("affine_3d", x3, w, b, 1e-6), ("offset", x + 1000.0, w, b, 1e-5)]:
        out, gout, (gx, gw, gb) = run(
            lambda v, ww_, bb_: F.layer_norm(v, (D,), ww_, bb_, eps), [xx, ww, bb])
        c = {"name": name, "eps": eps, "x": enc(xx), "gout": enc(gout), "out": enc(out), "grad_x": enc(gx)}
        if ww is not None:
            c.update({"weight": enc(ww), "bias": enc(bb), "grad_weight": enc(gw), "grad_bias": enc(gb)})
        cases.append(c)
    return cases


def cross_entropy_cases():
    cases = []
    logits = torch.randn(4, 5, dtype=DT) * 2
    labels = torch.tensor([0, 3, 4, 3], dtype=torch.int64)
    big = torch.tensor([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 999.0]], dtype=DT)
    big_labels = torch.tensor([1, 2], dtype=torch.int64)
    for name, lg, lb, s in [("plain", logits, labels, 0.0), ("smooth", logits, labels, 0.1),
                            ("large", big, big_labels, 0.2)]:
        out, gout, (gl,) = run(lambda v: F.cross_entropy(v, lb, label_smoothing=s), [lg],
                               gout=torch.tensor(1.0, dtype=DT))
        cases.append({"name": name, "label_smoothing": s, "logits": enc(lg), "labels": enc_i64(lb),
                      "out": enc(out), "grad": enc(gl)})
    return cases


def normalize_cases():
    cases = []
    x = torch.randn(3, 4, dtype=DT)
    x3 = torch.randn(2, 3, 2, dtype=DT)
    for xx, dim in [(x, -1), (x, 0), (x3, 1)]:
        out, gout, (gx,) = run(lambda v: F.normalize(v, p=2.0, dim=dim, eps=1e-12), [xx])
        cases.append({"dim": dim, "eps": 1e-12, "x": enc(xx), "gout": enc(gout), "out": enc(out), "grad": enc(gx)})
    return cases


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(root, "tests", "fixtures", "ops_a.json")
    fixture = {
        "generator": "tools/reference/make_op_fixtures_a.py",
        "torch_version": torch.__version__,
        "unary": unary_cases(),
        "softmax": softmax_cases(),
        "layer_norm": layer_norm_cases(),
        "cross_entropy": cross_entropy_cases(),
        "l2_normalize": normalize_cases(),
    }
    text = json.dumps(fixture, allow_nan=False, separators=(",", ":"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text + "\n")
    print(f"wrote {path} ({len(text)} bytes)")


if __name__ == "__main__":
    main()
