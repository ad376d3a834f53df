"""Reference ViT forward/backward written from ../shared/spec/methods.md 2.1/2.2 in PyTorch.

Writes tiny timm-layout and OpenAI-visual-layout fixtures (config, weights, batch, expected
logits/loss/gradients) that tests/nn/test_vit_parity.cpp compares against. Run with
/usr/bin/python3 tools/reference/vit_reference.py from the repository root.
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import st_io  # noqa: E402

OUT = "tests/fixtures/vit"


def ln(x, w, b, eps):
    return F.layer_norm(x, (x.shape[-1],), w, b, eps)


def act(x, kind):
    return F.gelu(x) if kind == "gelu" else x * torch.sigmoid(1.702 * x)


def mha(x, wqkv, bqkv, wo, bo, heads):
    B, T, D = x.shape
    hd = D // heads
    qkv = x @ wqkv.T + bqkv
    q, k, v = qkv[..., :D], qkv[..., D:2 * D], qkv[..., 2 * D:]
    sh = lambda t: t.reshape(B, T, heads, hd).transpose(1, 2)
    a = torch.softmax(sh(q) @ sh(k).transpose(-1, -2) * hd ** -0.5, dim=-1)
    o = (a @ sh(v)).transpose(1, 2).reshape(B, T, D)
    return o @ wo.T + bo


def patches(img, w, b, P):
    t = F.conv2d(img, w, b, stride=P)
    return t.flatten(2).transpose(1, 2)


def timm_forward(p, img, c):
    x = patches(img, p["patch_embed.proj.weight"], p["patch_embed.proj.bias"], c["patch_size"])
    B = x.shape[0]
    x = torch.cat([p["cls_token"].expand(B, -1, -1), x], 1) + p["pos_embed"]
    for i in range(c["depth"]):
        g = lambda n: p[f"blocks.{i}.{n}"]
        h = ln(x, g("norm1.weight"), g("norm1.bias"), c["ln_eps"])
        x = x + mha(h, g("attn.qkv.weight"), g("attn.qkv.bias"), g("attn.proj.weight"), g("attn.proj.bias"), c["heads"])
        h = ln(x, g("norm2.weight"), g("norm2.bias"), c["ln_eps"])
        x = x + act(h @ g("mlp.fc1.weight").T + g("mlp.fc1.bias"), c["act"]) @ g("mlp.fc2.weight").T + g("mlp.fc2.bias")
    x = ln(x, p["norm.weight"], p["norm.bias"], c["ln_eps"])
    f = x[:, 0] if c["pool"] == "cls" else x[:, 1:].mean(1)
    return f @ p["head.weight"].T + p["head.bias"]


def openai_forward(p, img, c):
    x = patches(img, p["conv1.weight"], None, c["patch_size"])
    B, _, W = x.shape
    x = torch.cat([p["class_embedding"].reshape(1, 1, W).expand(B, -1, -1), x], 1) + p["positional_embedding"]
    x = ln(x, p["ln_pre.weight"], p["ln_pre.bias"], c["ln_eps"])
    for i in range(c["depth"]):
        g = lambda n: p[f"transformer.resblocks.{i}.{n}"]
        h = ln(x, g("ln_1.weight"), g("ln_1.bias"), c["ln_eps"])
        x = x + mha(h, g("attn.in_proj_weight"), g("attn.in_proj_bias"), g("attn.out_proj.weight"), g("attn.out_proj.bias"), c["heads"])
        h = ln(x, g("ln_2.weight"), g("ln_2.bias"), c["ln_eps"])
        x = x + act(h @ g("mlp.c_fc.weight").T + g("mlp.c_fc.bias"), c["act"]) @ g("mlp.c_proj.weight").T + g("mlp.c_proj.bias")
    f = ln(x[:, 0], p["ln_post.weight"], p["ln_post.bias"], c["ln_eps"]) @ p["proj"]
    return f @ p["head.weight"].T + p["head.bias"]


def shapes(c):
    D, C, P, N, Fh, K = c["dim"], c["in_chans"], c["patch_size"], (c["image_size"] // c["patch_size"]) ** 2, int(c["dim"] * c["mlp_ratio"]), c["num_classes"]
    if c["style"] == "timm":
        s = {"cls_token": [1, 1, D], "pos_embed": [1, 1 + N, D], "patch_embed.proj.weight": [D, C, P, P], "patch_embed.proj.bias": [D]}
        for i in range(c["depth"]):
            b = f"blocks.{i}."
            s.update({b + "norm1.weight": [D], b + "norm1.bias": [D], b + "attn.qkv.weight": [3 * D, D], b + "attn.qkv.bias": [3 * D],
                      b + "attn.proj.weight": [D, D], b + "attn.proj.bias": [D], b + "norm2.weight": [D], b + "norm2.bias": [D],
                      b + "mlp.fc1.weight": [Fh, D], b + "mlp.fc1.bias": [Fh], b + "mlp.fc2.weight": [D, Fh], b + "mlp.fc2.bias": [D]})
        s.update({"norm.weight": [D], "norm.bias": [D], "head.weight": [K, D], "head.bias": [K]})
    else:
        E = c["embed_dim"]
        s = {"conv1.weight": [D, C, P, P], "class_embedding": [D], "positional_embedding": [1 + N, D], "ln_pre.weight": [D], "ln_pre.bias": [D]}
        for i in range(c["depth"]):
            b = f"transformer.resblocks.{i}."
            s.update({b + "ln_1.weight": [D], b + "ln_1.bias": [D], b + "attn.in_proj_weight": [3 * D, D], b + "attn.in_proj_bias": [3 * D],
                      b + "attn.out_proj.weight": [D, D], b + "attn.out_proj.bias": [D], b + "ln_2.weight": [D], b + "ln_2.bias": [D],
                      b + "mlp.c_fc.weight": [Fh, D], b + "mlp.c_fc.bias": [Fh], b + "mlp.c_proj.weight": [D, Fh], b + "mlp.c_proj.bias": [D]})
        s.update({"ln_post.weight": [D], "ln_post.bias": [D], "proj": [D, E], "head.weight": [K, E], "head.bias": [K]})
    return s


def make(name, c, forward, seed):
    g = torch.Generator().manual_seed(seed)
    params = {}
    for n, shp in shapes(c).items():
        t = torch.randn(shp, generator=g, dtype=torch.float64) * 0.3
        if n.endswith("norm1.weight") or n.endswith("norm2.weight") or n.endswith("ln_1.weight") or n.endswith("ln_2.weight") or n in ("norm.weight", "ln_pre.weight", "ln_post.weight"):
            t = 1.0 + 0.1 * t
        params[n] = t.float().double().requires_grad_()  # exactly representable in float32
    B = 2
    img = torch.randn(B, c["in_chans"], c["image_size"], c["image_size"], generator=g, dtype=torch.float64).float().double()
    labels = torch.tensor([1, 2], dtype=torch.int64)
    logits = forward(params, img, c)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(c, f, indent=1)
    st_io.save(os.path.join(d, "weights.safetensors"), {n: t.detach().float() for n, t in params.items()})
    st_io.save(os.path.join(d, "batch.safetensors"), {"images": img.float(), "labels": labels})
    exp = {"logits": logits.detach().float(), "loss": loss.detach().float()}
    exp.update({"grad." + n: t.grad.float() for n, t in params.items()})
    st_io.save(os.path.join(d, "expected.safetensors"), exp)
    print(name, "loss", float(loss))


def main():
    base = {"arch": "vit", "image_size": 8, "patch_size": 4, "in_chans": 3, "dim": 16, "depth": 2, "heads": 2,
            "mlp_ratio": 4.0, "num_classes": 3}
    make("timm", dict(base, style="timm", act="gelu", ln_eps=1e-6, pool="cls"), timm_forward, 1)
    make("timm_mean", dict(base, style="timm", act="gelu", ln_eps=1e-6, pool="mean"), timm_forward, 2)
    make("openai", dict(base, style="openai_clip_visual", act="quick_gelu", ln_eps=1e-5, pool="cls", embed_dim=8), openai_forward, 3)


if __name__ == "__main__":
    main()
