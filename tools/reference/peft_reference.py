"""Reference forward/backward of the vision PEFT methods, written in PyTorch from
../shared/spec/methods.md sections 6-12 (not from the official repositories' code).

For a tiny timm ViT (image 8, patch 4, dim 16, depth 2, heads 2) it writes, under
tests/fixtures/peft/:
  config.json, config_mean.json    the model (pool cls / pool mean), num_classes 3
  base.safetensors                 base weights (head with 3 classes)
  batch.safetensors                images [2,3,8,8], labels [2]
  <case>/adapter.safetensors       the method's initial trainable tensors (non-trivial random
                                   values: LoRA B and AdaptFormer up non-zero), head with K = 4
                                   classes; metadata = method + options (+ "config")
  <case>/expected.safetensors      logits [2,4], loss [], grad.{name} for every trainable tensor
tests/peft/test_peft_parity.cpp and tests/apps/test_check_cli.cpp compare `peft check` against them.
Run with /usr/bin/python3 tools/reference/peft_reference.py from the repository root.
"""
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import st_io  # noqa: E402
from vit_reference import act, ln, patches, shapes  # noqa: E402

OUT = "tests/fixtures/peft"
K = 4  # the adapter's head rows (the base head has 3): check must build the head from the adapter


def attention(xq, xkv, w, b, wo, bo, heads):
    """MHA(xq, xkv) with the fused [3D, D] projection split q | k | v by rows (methods.md 0)."""
    B, Tq, D = xq.shape
    Tk = xkv.shape[1]
    hd = D // heads
    q = xq @ w[:D].T + b[:D]
    k = xkv @ w[D:2 * D].T + b[D:2 * D]
    v = xkv @ w[2 * D:].T + b[2 * D:]
    sh = lambda t, T: t.reshape(t.shape[0], T, heads, hd).transpose(1, 2)
    a = torch.softmax(sh(q, Tq) @ sh(k, Tk).transpose(-1, -2) * hd ** -0.5, dim=-1)
    o = (a @ sh(v, Tk).expand(B, -1, -1, -1)).transpose(1, 2).reshape(B, Tq, D)
    return o @ wo.T + bo


def ssf(p, op, y):
    """methods.md 10: y * ssf_scale + ssf_shift over the last dim, when the op has them."""
    if op + ".ssf_scale" in p:
        y = y * p[op + ".ssf_scale"] + p[op + ".ssf_shift"]
    return y


def lin(p, name, x, lora_scale):
    """A base linear with its LoRA update (methods.md 11) and SSF (methods.md 10)."""
    y = x @ p[name + ".weight"].T + p[name + ".bias"]
    if name + ".lora_A" in p:
        y = y + lora_scale * ((x @ p[name + ".lora_A"].T) @ p[name + ".lora_B"].T)
    return ssf(p, name, y)


def forward(p, img, c, method, M, lora_scale):
    L, P, eps, heads = c["depth"], c["patch_size"], c["ln_eps"], c["heads"]
    t = ssf(p, "patch_embed.proj", patches(img, p["patch_embed.proj.weight"], p["patch_embed.proj.bias"], P))
    B = t.shape[0]
    x = torch.cat([p["cls_token"].expand(B, -1, -1), t], 1) + p["pos_embed"]
    if method in ("vpt-shallow", "vpt-deep"):  # methods.md 7: between CLS and patches, no pos-embed
        x = torch.cat([x[:, :1], p["vpt.prompts"][0:1].expand(B, -1, -1), x[:, 1:]], 1)
    for i in range(L):
        g = f"blocks.{i}."
        if method == "vpt-deep" and i > 0:  # methods.md 8: rows 1..M replaced before block i
            x = torch.cat([x[:, :1], p["vpt.prompts"][i:i + 1].expand(B, -1, -1), x[:, 1 + M:]], 1)
        h = ssf(p, g + "norm1", ln(x, p[g + "norm1.weight"], p[g + "norm1.bias"], eps))
        T = h.shape[1]
        D = h.shape[2]
        hd = D // heads
        qkv = lin(p, g + "attn.qkv", h, lora_scale)
        sh = lambda u: u.reshape(B, T, heads, hd).transpose(1, 2)
        a = torch.softmax(sh(qkv[..., :D]) @ sh(qkv[..., D:2 * D]).transpose(-1, -2) * hd ** -0.5, dim=-1)
        o = (a @ sh(qkv[..., 2 * D:])).transpose(1, 2).reshape(B, T, D)
        x = x + lin(p, g + "attn.proj", o, lora_scale)
        if method == "cvpt":  # methods.md 9: raw stream queries the block's prompts, frozen shared weights
            x = x + attention(x, p["cvpt.prompts"][i:i + 1], p[g + "attn.qkv.weight"], p[g + "attn.qkv.bias"],
                              p[g + "attn.proj.weight"], p[g + "attn.proj.bias"], heads)
        h = ssf(p, g + "norm2", ln(x, p[g + "norm2.weight"], p[g + "norm2.bias"], eps))
        y = lin(p, g + "mlp.fc2", act(lin(p, g + "mlp.fc1", h, lora_scale), c["act"]), lora_scale)
        if method == "adaptformer":  # methods.md 12: parallel, fed the post-attention x, scale 0.1
            d = torch.relu(x @ p[g + "adaptmlp.down_proj.weight"].T + p[g + "adaptmlp.down_proj.bias"])
            y = y + 0.1 * (d @ p[g + "adaptmlp.up_proj.weight"].T + p[g + "adaptmlp.up_proj.bias"])
        x = x + y
    x = ssf(p, "norm", ln(x, p["norm.weight"], p["norm.bias"], eps))
    m = M if method in ("vpt-shallow", "vpt-deep") else 0
    f = x[:, 0] if c["pool"] == "cls" else x[:, 1 + m:].mean(1)
    return f @ p["head.weight"].T + p["head.bias"]


def rnd(g, shape, scale, mean=0.0):
    t = mean + scale * torch.randn(shape, generator=g, dtype=torch.float64)
    return t.float().double()  # exactly representable in float32


def method_tensors(g, method, c, opts):
    """The method's own trainable tensors (beyond the head), with non-trivial values."""
    D, L, Fh = c["dim"], c["depth"], int(c["dim"] * c["mlp_ratio"])
    out = {}
    if method in ("vpt-shallow", "vpt-deep", "cvpt"):
        rows = 1 if method == "vpt-shallow" else L
        out["cvpt.prompts" if method == "cvpt" else "vpt.prompts"] = rnd(g, [rows, opts["prompts"], D], 0.5)
    if method == "ssf":
        ops = [("patch_embed.proj", D)]
        for i in range(L):
            b = f"blocks.{i}."
            ops += [(b + "norm1", D), (b + "attn.qkv", 3 * D), (b + "attn.proj", D), (b + "norm2", D),
                    (b + "mlp.fc1", Fh), (b + "mlp.fc2", D)]
        ops.append(("norm", D))
        for op, C in ops:
            out[op + ".ssf_scale"] = rnd(g, [C], 0.1, 1.0)
            out[op + ".ssf_shift"] = rnd(g, [C], 0.1)
    if method == "lora":
        r = opts["rank"]
        dims = {"attn.qkv": (D, 3 * D), "attn.proj": (D, D), "mlp.fc1": (D, Fh), "mlp.fc2": (Fh, D)}
        for i in range(L):
            for tgt in opts["targets"].split(","):
                fin, fout = dims[tgt]
                out[f"blocks.{i}.{tgt}.lora_A"] = rnd(g, [r, fin], 0.3)
                out[f"blocks.{i}.{tgt}.lora_B"] = rnd(g, [fout, r], 0.3)  # non-zero: the update matters
    if method == "adaptformer":
        b = opts["bottleneck"]
        for i in range(L):
            a = f"blocks.{i}.adaptmlp."
            out[a + "down_proj.weight"] = rnd(g, [b, D], 0.3)
            out[a + "down_proj.bias"] = rnd(g, [b], 0.1)
            out[a + "up_proj.weight"] = rnd(g, [D, b], 0.3)  # non-zero
            out[a + "up_proj.bias"] = rnd(g, [D], 0.1)
    return out


def make_case(name, method, opts, base, img, labels, c, config_file, seed):
    g = torch.Generator().manual_seed(seed)
    D = c["dim"]
    trainable = method_tensors(g, method, c, opts)
    if method == "bitfit":  # methods.md 6: every *.bias of the backbone, new values
        for n, t in base.items():
            if n.endswith(".bias") and not n.startswith("head."):
                trainable[n] = rnd(g, list(t.shape), 0.3)
    trainable["head.weight"] = rnd(g, [K, D], 0.3)
    trainable["head.bias"] = rnd(g, [K], 0.1)
    p = {n: t.clone() for n, t in base.items() if not n.startswith("head.")}
    for n, t in trainable.items():
        p[n] = t.clone().requires_grad_()
    M = opts.get("prompts", 0)
    alpha = opts.get("alpha", opts.get("rank", 1))
    scale = alpha / opts["rank"] if "rank" in opts else 0.0
    logits = forward(p, img, c, method, M, scale)
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
    c = {"arch": "vit", "style": "timm", "image_size": 8, "patch_size": 4, "in_chans": 3, "dim": 16, "depth": 2,
         "heads": 2, "mlp_ratio": 4.0, "num_classes": 3, "act": "gelu", "ln_eps": 1e-6, "pool": "cls"}
    cm = dict(c, pool="mean")
    os.makedirs(OUT, exist_ok=True)
    for fname, cfg in (("config.json", c), ("config_mean.json", cm)):
        with open(os.path.join(OUT, fname), "w") as f:
            json.dump(cfg, f, indent=1)
    g = torch.Generator().manual_seed(7)
    base = {}
    for n, shp in shapes(c).items():
        t = torch.randn(shp, generator=g, dtype=torch.float64) * 0.3
        if n.endswith("norm1.weight") or n.endswith("norm2.weight") or n == "norm.weight":
            t = 1.0 + 0.1 * t
        base[n] = t.float().double()
    img = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64).float().double()
    labels = torch.tensor([1, 3], dtype=torch.int64)  # 3 exists only in the adapter's 4-class head
    st_io.save(os.path.join(OUT, "base.safetensors"), {n: t.float() for n, t in base.items()})
    st_io.save(os.path.join(OUT, "batch.safetensors"), {"images": img.float(), "labels": labels})
    cases = [
        ("bitfit", "bitfit", {}, c, "config.json"),
        ("vpt-shallow", "vpt-shallow", {"prompts": 3}, c, "config.json"),
        ("vpt-deep", "vpt-deep", {"prompts": 3}, c, "config.json"),
        ("vpt-deep-mean", "vpt-deep", {"prompts": 2}, cm, "config_mean.json"),
        ("cvpt", "cvpt", {"prompts": 3}, c, "config.json"),
        ("ssf", "ssf", {}, c, "config.json"),
        ("ssf-mean", "ssf", {}, cm, "config_mean.json"),
        ("lora", "lora", {"rank": 2, "alpha": 3.0, "targets": "attn.qkv,mlp.fc2"}, c, "config.json"),
        ("adaptformer", "adaptformer", {"bottleneck": 4}, c, "config.json"),
    ]
    for i, (name, method, opts, cfg, cfile) in enumerate(cases):
        make_case(name, method, opts, base, img, labels, cfg, cfile, 100 + i)


if __name__ == "__main__":
    main()
