"""Reference forward/backward of DoRA, (IA)^3 and FacT-TT, written in PyTorch from
../shared/spec/methods.md sections 19, 21 and 23 (the formulations of the official code: HF peft's
DoRA `(mag_norm_scale - 1) * base + mag_norm_scale * lora * scaling` with the norm detached, HF's
IA3 output/input scaling, fact_tt.py's fact_forward_attn / fact_forward_mlp).

It reuses the tiny model and batch of tools/reference/peft_reference.py (run that first; this
script only reads tests/fixtures/peft/{config.json,base.safetensors,batch.safetensors}) and writes
  tests/fixtures/peft/<case>/adapter.safetensors   the trainable tensors (non-trivial random values:
                                                   DoRA B non-zero and m away from ||W||, IA3 scales
                                                   away from 1, FacT V non-zero), head with K = 4;
                                                   metadata = method + options + "config"
  tests/fixtures/peft/<case>/expected.safetensors  logits [2,4], loss [], grad.{name} of every
                                                   trainable tensor
for the cases dora, ia3 and fact. tests/peft/test_{dora,ia3,fact}.cpp compare `peft check` against them.
Run with /usr/bin/python3 tools/reference/peft_reference_dora_ia3_fact.py from the repository root.
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


def dora_linear(p, name, x, s):
    """methods.md 19, in HF peft's form (lora/dora.py DoraLinearLayer.forward)."""
    W, b = p[name + ".weight"], p[name + ".bias"]
    A, B, m = p[name + ".lora_A"], p[name + ".lora_B"], p[name + ".lora_magnitude_vector"]
    result = x @ W.T + b                       # base_layer(x), bias included
    lora_weight = B @ A
    weight_norm = torch.linalg.norm(W + s * lora_weight.detach(), dim=1).detach()  # detached: a constant
    mag_norm_scale = (m / weight_norm).view(1, -1)
    lora_result = (x @ A.T) @ B.T
    base_result = result - b                   # the bias is not rescaled
    return result + (mag_norm_scale - 1) * base_result + mag_norm_scale * lora_result * s


def linear(p, name, x, method, opts):
    if method == "dora" and name + ".lora_A" in p:
        return dora_linear(p, name, x, opts["alpha"] / opts["rank"])
    return x @ p[name + ".weight"].T + p[name + ".bias"]


def fact_path(p, x, core, s):
    """vit.FacTv(dp(core(vit.FacTu(x)))) * s, dropout off (eval)."""
    return ((x @ p["FacTu.weight"].T) @ core.T) @ p["FacTv.weight"].T * s


def forward(p, img, c, method, opts):
    L, P, eps, heads, D = c["depth"], c["patch_size"], c["ln_eps"], c["heads"], c["dim"]
    t = patches(img, p["patch_embed.proj.weight"], p["patch_embed.proj.bias"], P)
    Bsz = t.shape[0]
    x = torch.cat([p["cls_token"].expand(Bsz, -1, -1), t], 1) + p["pos_embed"]
    s = opts.get("alpha", 1.0)
    for i in range(L):
        g = f"blocks.{i}."
        h = ln(x, p[g + "norm1.weight"], p[g + "norm1.bias"], eps)
        Bn, N, C = h.shape
        hd = C // heads
        qkv = linear(p, g + "attn.qkv", h, method, opts)  # [B, N, 3D]
        if method == "ia3":  # methods.md 21: k and v rows scaled, bias included; q unchanged
            qkv = torch.cat([qkv[..., :D], qkv[..., D:2 * D] * p[g + "attn.qkv.ia3_k"],
                             qkv[..., 2 * D:] * p[g + "attn.qkv.ia3_v"]], -1)
        if method == "fact":  # fact_forward_attn
            q = fact_path(p, h, p[g + "attn.q_FacTs.weight"], 1.0)
            k = fact_path(p, h, p[g + "attn.k_FacTs.weight"], 1.0)
            v = fact_path(p, h, p[g + "attn.v_FacTs.weight"], 1.0)
            qkv = qkv + torch.cat([q, k, v], dim=2) * s
        qkv5 = qkv.reshape(Bn, N, 3, heads, hd).permute(2, 0, 3, 1, 4)
        a = torch.softmax(qkv5[0] @ qkv5[1].transpose(-2, -1) * hd ** -0.5, dim=-1)
        o = (a @ qkv5[2]).transpose(1, 2).reshape(Bn, N, C)
        y = linear(p, g + "attn.proj", o, method, opts)
        if method == "fact":
            y = y + fact_path(p, o, p[g + "attn.proj_FacTs.weight"], 1.0) * s
        x = x + y
        h2 = ln(x, p[g + "norm2.weight"], p[g + "norm2.bias"], eps)
        z = linear(p, g + "mlp.fc1", h2, method, opts)  # [B, N, F]
        Fh = z.shape[-1]
        mm = Fh // D
        if method == "fact":  # fact_forward_mlp: R(t), hidden unit c*D + d
            t1 = (h2 @ p["FacTu.weight"].T) @ p[g + "mlp.fc1_FacTs.weight"].T  # [B, N, m*r]
            z = z + (t1.reshape(Bn, N, mm, -1) @ p["FacTv.weight"].T).reshape(Bn, N, mm * C) * s
        gact = act(z, c["act"])
        if method == "ia3":  # methods.md 21: fc2's input scaled, fc2's bias not
            y = linear(p, g + "mlp.fc2", gact * p[g + "mlp.fc2.ia3_l"], method, opts)
        else:
            y = linear(p, g + "mlp.fc2", gact, method, opts)
        if method == "fact":  # Q(g)
            qg = (gact.reshape(Bn, N, mm, C) @ p["FacTu.weight"].T).reshape(Bn, N, -1)  # [B, N, m*r]
            y = y + ((qg @ p[g + "mlp.fc2_FacTs.weight"].T) @ p["FacTv.weight"].T) * s
        x = x + y
    x = ln(x, p["norm.weight"], p["norm.bias"], eps)
    f = x[:, 0] if c["pool"] == "cls" else x[:, 1:].mean(1)
    return f @ p["head.weight"].T + p["head.bias"]


def rnd(g, shape, scale, mean=0.0):
    t = mean + scale * torch.randn(shape, generator=g, dtype=torch.float64)
    return t.float().double()  # exactly representable in float32


def method_tensors(g, method, c, opts, base):
    """The method's trainable tensors (beyond the head) in registration order, non-trivial values."""
    D, L, Fh = c["dim"], c["depth"], int(c["dim"] * c["mlp_ratio"])
    out = {}
    if method == "dora":
        r = opts["rank"]
        dims = {"attn.qkv": (D, 3 * D), "attn.proj": (D, D), "mlp.fc1": (D, Fh), "mlp.fc2": (Fh, D)}
        for i in range(L):
            for tgt in opts["targets"].split(","):
                fin, fout = dims[tgt]
                n = f"blocks.{i}.{tgt}"
                out[n + ".lora_A"] = rnd(g, [r, fin], 0.3)
                out[n + ".lora_B"] = rnd(g, [fout, r], 0.3)  # non-zero: the update and the norm matter
                # around ||W||_row but not equal: m / n != 1
                norms = torch.linalg.norm(base[n + ".weight"], dim=1)
                out[n + ".lora_magnitude_vector"] = (norms * (1.0 + 0.3 * torch.randn(fout, generator=g,
                                                                                     dtype=torch.float64))).float().double()
    if method == "ia3":
        for i in range(L):
            out[f"blocks.{i}.attn.qkv.ia3_k"] = rnd(g, [D], 0.3, 1.0)
            out[f"blocks.{i}.attn.qkv.ia3_v"] = rnd(g, [D], 0.3, 1.0)
            out[f"blocks.{i}.mlp.fc2.ia3_l"] = rnd(g, [Fh], 0.3, 1.0)
    if method == "fact":
        r, m = opts["rank"], Fh // D
        for i in range(L):
            a = f"blocks.{i}."
            for n in ("q", "k", "v", "proj"):
                out[a + f"attn.{n}_FacTs.weight"] = rnd(g, [r, r], 0.5)
            out[a + "mlp.fc1_FacTs.weight"] = rnd(g, [m * r, r], 0.5)
            out[a + "mlp.fc2_FacTs.weight"] = rnd(g, [r, m * r], 0.5)
        out["FacTu.weight"] = rnd(g, [r, D], 0.5)
        out["FacTv.weight"] = rnd(g, [D, r], 0.5)  # non-zero: the path matters
    return out


def make_case(name, method, opts, base, img, labels, c, config_file, seed):
    g = torch.Generator().manual_seed(seed)
    D = c["dim"]
    trainable = method_tensors(g, method, c, opts, base)
    head = {"head.weight": rnd(g, [K, D], 0.3), "head.bias": rnd(g, [K], 0.1)}
    if method == "fact":  # fact_tt.py registers FacTu, FacTv on the built model, after the head
        tail = {n: trainable.pop(n) for n in ("FacTu.weight", "FacTv.weight")}
        trainable.update(head)
        trainable.update(tail)
    else:
        trainable.update(head)
    p = {n: t.clone() for n, t in base.items() if not n.startswith("head.")}
    for n, t in trainable.items():
        p[n] = t.clone().requires_grad_()
    logits = forward(p, img, c, method, opts)
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
    base = {n: t.double() for n, t in st_io.load(os.path.join(OUT, "base.safetensors")).items()}
    batch = st_io.load(os.path.join(OUT, "batch.safetensors"))
    img, labels = batch["images"].double(), batch["labels"]
    cases = [
        ("dora", "dora", {"rank": 2, "alpha": 3.0, "targets": "attn.qkv,attn.proj,mlp.fc1,mlp.fc2"}),
        ("ia3", "ia3", {}),
        ("fact", "fact", {"rank": 2, "alpha": 0.7}),
    ]
    for i, (name, method, opts) in enumerate(cases):
        make_case(name, method, opts, base, img, labels, c, "config.json", 300 + i)


if __name__ == "__main__":
    main()
