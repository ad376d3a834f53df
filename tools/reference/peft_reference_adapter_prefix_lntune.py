"""Reference forward/backward of `adapter`, `prefix` and `lntune`, written in PyTorch from
../shared/spec/methods.md sections 20, 22 and 24 (V-PETL Bench's Adapter Block, NOAH's prefix
keys/values, V-PETL's LN-TUNE filter).

It reuses the tiny model of tools/reference/peft_reference.py (tests/fixtures/peft/config.json,
config_mean.json, base.safetensors, batch.safetensors; run that script first if they are missing)
and writes, under tests/fixtures/peft/:
  <case>/adapter.safetensors    the method's trainable tensors with non-trivial random values
                                (adapter: non-zero biases; lntune: LayerNorm weights around 1),
                                head with K = 4 classes; metadata = method + options + "config"
  <case>/expected.safetensors   logits [2,4], loss [], grad.{name} for every trainable tensor
  adapter-quick/config.json     the model with act quick_gelu: the adapter's GELU stays erf
tests/peft/test_adapter.cpp, test_prefix.cpp and test_lntune.cpp compare `peft check` against them.
Run with /usr/bin/python3 tools/reference/peft_reference_adapter_prefix_lntune.py from the
repository root.
"""
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import st_io  # noqa: E402
from vit_reference import act, ln, patches  # noqa: E402

OUT = "tests/fixtures/peft"
K = 4  # the adapter's head rows (the base head has 3)


def gelu_erf(x):
    return 0.5 * x * (1.0 + torch.erf(x / 2.0 ** 0.5))


def lin(p, name, x):
    return x @ p[name + ".weight"].T + p[name + ".bias"]


def forward(p, img, c, method):
    L, P, eps, H = c["depth"], c["patch_size"], c["ln_eps"], c["heads"]
    t = patches(img, p["patch_embed.proj.weight"], p["patch_embed.proj.bias"], P)
    B = t.shape[0]
    x = torch.cat([p["cls_token"].expand(B, -1, -1), t], 1) + p["pos_embed"]
    for i in range(L):
        g = f"blocks.{i}."
        h = ln(x, p[g + "norm1.weight"], p[g + "norm1.bias"], eps)
        T, D = h.shape[1], h.shape[2]
        hd = D // H
        qkv = lin(p, g + "attn.qkv", h)                     # [B, T, 3D]
        q, k, v = qkv[..., :D], qkv[..., D:2 * D], qkv[..., 2 * D:]
        if method == "prefix":  # methods.md 22: append block i's rows to the projected k, v
            M = p["prefix.keys"].shape[1]
            k = torch.cat([k, p["prefix.keys"][i:i + 1].expand(B, M, D)], 1)    # [B, T+M, D]
            v = torch.cat([v, p["prefix.values"][i:i + 1].expand(B, M, D)], 1)
        sh = lambda u: u.reshape(B, u.shape[1], H, hd).transpose(1, 2)  # head h: columns [h*hd,(h+1)*hd)
        a = torch.softmax(sh(q) @ sh(k).transpose(-1, -2) * hd ** -0.5, dim=-1)
        o = (a @ sh(v)).transpose(1, 2).reshape(B, T, D)
        x = x + lin(p, g + "attn.proj", o)
        h = ln(x, p[g + "norm2.weight"], p[g + "norm2.bias"], eps)
        m = lin(p, g + "mlp.fc2", act(lin(p, g + "mlp.fc1", h), c["act"]))
        if method == "adapter":  # methods.md 20: after the MLP, own skip, erf GELU whatever act is
            a_ = g + "adapter_module."
            m = m + lin(p, a_ + "adapter_upsample", gelu_erf(lin(p, a_ + "adapter_downsample", m)))
        x = x + m
    x = ln(x, p["norm.weight"], p["norm.bias"], eps)
    f = x[:, 0] if c["pool"] == "cls" else x[:, 1:].mean(1)  # prefixes add no rows (pool mean: patches)
    return f @ p["head.weight"].T + p["head.bias"]


def rnd(g, shape, scale, mean=0.0):
    t = mean + scale * torch.randn(shape, generator=g, dtype=torch.float64)
    return t.float().double()  # exactly representable in float32


def method_tensors(g, method, c, opts, base):
    D, L = c["dim"], c["depth"]
    out = {}
    if method == "adapter":
        b = opts["bottleneck"]
        for i in range(L):
            a = f"blocks.{i}.adapter_module."
            out[a + "adapter_downsample.weight"] = rnd(g, [b, D], 0.3)
            out[a + "adapter_downsample.bias"] = rnd(g, [b], 0.1)
            out[a + "adapter_upsample.weight"] = rnd(g, [D, b], 0.3)
            out[a + "adapter_upsample.bias"] = rnd(g, [D], 0.1)
    if method == "prefix":
        M = opts["prompts"]
        out["prefix.keys"] = rnd(g, [L, M, D], 0.5)
        out["prefix.values"] = rnd(g, [L, M, D], 0.5)
    if method == "lntune":  # methods.md 24: 'norm' in the name, base names, new values
        for n, t in base.items():
            if "norm" in n and not n.startswith("head."):
                out[n] = rnd(g, list(t.shape), 0.2, 1.0 if n.endswith(".weight") else 0.0)
    return out


def make_case(name, method, opts, base, img, labels, c, config_file, seed):
    g = torch.Generator().manual_seed(seed)
    D = c["dim"]
    trainable = method_tensors(g, method, c, opts, base)
    trainable["head.weight"] = rnd(g, [K, D], 0.3)
    trainable["head.bias"] = rnd(g, [K], 0.1)
    p = {n: t.clone() for n, t in base.items() if not n.startswith("head.")}
    for n, t in trainable.items():
        p[n] = t.clone().requires_grad_()
    logits = forward(p, img, c, method)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    meta = {"method": method, "config": config_file}
    meta.update({k: str(v) for k, v in opts.items()})
    st_io.save(os.path.join(d, "adapter.safetensors"), {n: t.float() for n, t in trainable.items()}, meta)
    exp = {"logits": logits.detach().float(), "loss": loss.detach().float()}
    exp.update({"grad." + n: p[n].grad.float() for n in trainable})
    st_io.save(os.path.join(d, "expected.safetensors"), exp)
    print(f"{name:<16} loss {float(loss):.6f}  trainable tensors {len(trainable)}")


def main():
    with open(os.path.join(OUT, "config.json")) as f:
        c = json.load(f)
    with open(os.path.join(OUT, "config_mean.json")) as f:
        cm = json.load(f)
    cq = dict(c, act="quick_gelu")
    os.makedirs(os.path.join(OUT, "adapter-quick"), exist_ok=True)
    with open(os.path.join(OUT, "adapter-quick", "config.json"), "w") as f:
        json.dump(cq, f, indent=1)
    base = {n: t.double() for n, t in st_io.load(os.path.join(OUT, "base.safetensors")).items()}
    batch = st_io.load(os.path.join(OUT, "batch.safetensors"))
    img, labels = batch["images"].double(), batch["labels"]
    cases = [
        ("adapter", "adapter", {"bottleneck": 4}, c, "config.json"),
        ("adapter-quick", "adapter", {"bottleneck": 3}, cq, "adapter-quick/config.json"),
        ("prefix", "prefix", {"prompts": 3}, c, "config.json"),
        ("prefix-mean", "prefix", {"prompts": 2}, cm, "config_mean.json"),
        ("lntune", "lntune", {}, c, "config.json"),
        ("lntune-mean", "lntune", {}, cm, "config_mean.json"),
    ]
    for i, (name, method, opts, cfg, cfile) in enumerate(cases):
        make_case(name, method, opts, base, img, labels, cfg, cfile, 200 + i)


if __name__ == "__main__":
    main()
