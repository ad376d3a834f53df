"""Reference CLIP text tower and CLIP PEFT methods written from ../shared/spec/methods.md 2.2-2.4, 13-17.

Writes a tiny random CLIP (tests/fixtures/clip/): config.json, weights.safetensors,
inputs.safetensors (tokens [K,T], image_features [B,E], images, labels), and per method
adapter_<m>.safetensors (initial trainable / cache tensors) and expected_<m>.safetensors (logits,
loss, grad.<name>, text_features, encode_image of the images). tests/nn/test_clip.cpp and
tests/peft/test_clip_methods.cpp compare against them at 1e-4.

The fixture uses the "procedural" word tokenizer's small id space (vocab_size 64) instead of the
49408-id BPE vocabulary, so the token embedding stays tiny; the tokens are given explicitly (EOT =
63 = the largest id, so argmax pooling finds it, as with the real tokenizers).

Run with /usr/bin/python3 tools/reference/clip_reference.py from the repository root.
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import st_io  # noqa: E402
from vit_reference import ln, mha, patches  # noqa: E402

OUT = "tests/fixtures/clip"

CFG = {
    "arch": "clip",
    "vision": {"style": "openai_clip_visual", "image_size": 8, "patch_size": 4, "in_chans": 3, "dim": 16,
               "depth": 1, "heads": 2, "mlp_ratio": 4.0, "num_classes": 0, "act": "quick_gelu", "ln_eps": 1e-5,
               "pool": "cls", "embed_dim": 8},
    "text": {"vocab_size": 64, "context_length": 12, "width": 16, "layers": 2, "heads": 2, "tokenizer": "procedural"},
    "embed_dim": 8,
}


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def masked_mha(x, wqkv, bqkv, wo, bo, heads):
    # methods.md 0 MHA with the causal mask of 2.3 (-inf above the diagonal).
    B, T, D = x.shape
    hd = D // heads
    qkv = x @ wqkv.T + bqkv
    q, k, v = qkv[..., :D], qkv[..., D:2 * D], qkv[..., 2 * D:]
    sh = lambda t: t.reshape(B, T, heads, hd).transpose(1, 2)
    mask = torch.full((T, T), float("-inf"), dtype=x.dtype).triu(1)
    a = torch.softmax(sh(q) @ sh(k).transpose(-1, -2) * hd ** -0.5 + mask, dim=-1)
    return (a @ sh(v)).transpose(1, 2).reshape(B, T, D) @ wo.T + bo


def text_tower(p, emb, tokens, c):
    # emb: [K,T,W] input embeddings (token lookup, or CoOp's), tokens: [K,T] for argmax pooling.
    x = emb + p["positional_embedding"][: emb.shape[1]]
    for i in range(c["layers"]):
        g = lambda n: p[f"transformer.resblocks.{i}.{n}"]
        h = ln(x, g("ln_1.weight"), g("ln_1.bias"), 1e-5)
        x = x + masked_mha(h, g("attn.in_proj_weight"), g("attn.in_proj_bias"), g("attn.out_proj.weight"), g("attn.out_proj.bias"), c["heads"])
        h = ln(x, g("ln_2.weight"), g("ln_2.bias"), 1e-5)
        x = x + quick_gelu(h @ g("mlp.c_fc.weight").T + g("mlp.c_fc.bias")) @ g("mlp.c_proj.weight").T + g("mlp.c_proj.bias")
    x = ln(x, p["ln_final.weight"], p["ln_final.bias"], 1e-5)
    eot = tokens.argmax(dim=-1)
    return x[torch.arange(x.shape[0]), eot] @ p["text_projection"]


def encode_text(p, tokens, c):
    return text_tower(p, p["token_embedding.weight"][tokens], tokens, c)


def encode_image(p, img, c):
    x = patches(img, p["visual.conv1.weight"], None, c["patch_size"])
    B, _, W = x.shape
    x = torch.cat([p["visual.class_embedding"].reshape(1, 1, W).expand(B, -1, -1), x], 1) + p["visual.positional_embedding"]
    x = ln(x, p["visual.ln_pre.weight"], p["visual.ln_pre.bias"], c["ln_eps"])
    for i in range(c["depth"]):
        g = lambda n: p[f"visual.transformer.resblocks.{i}.{n}"]
        h = ln(x, g("ln_1.weight"), g("ln_1.bias"), c["ln_eps"])
        x = x + mha(h, g("attn.in_proj_weight"), g("attn.in_proj_bias"), g("attn.out_proj.weight"), g("attn.out_proj.bias"), c["heads"])
        h = ln(x, g("ln_2.weight"), g("ln_2.bias"), c["ln_eps"])
        x = x + quick_gelu(h @ g("mlp.c_fc.weight").T + g("mlp.c_fc.bias")) @ g("mlp.c_proj.weight").T + g("mlp.c_proj.bias")
    return ln(x[:, 0], p["visual.ln_post.weight"], p["visual.ln_post.bias"], c["ln_eps"]) @ p["visual.proj"]


def norm(x):
    return x / x.norm(dim=-1, keepdim=True)


def shapes(c):
    v, t, E = c["vision"], c["text"], c["embed_dim"]
    s = {}

    def block(prefix, D):
        return {prefix + "ln_1.weight": [D], prefix + "ln_1.bias": [D], prefix + "attn.in_proj_weight": [3 * D, D],
                prefix + "attn.in_proj_bias": [3 * D], prefix + "attn.out_proj.weight": [D, D], prefix + "attn.out_proj.bias": [D],
                prefix + "ln_2.weight": [D], prefix + "ln_2.bias": [D], prefix + "mlp.c_fc.weight": [4 * D, D],
                prefix + "mlp.c_fc.bias": [4 * D], prefix + "mlp.c_proj.weight": [D, 4 * D], prefix + "mlp.c_proj.bias": [D]}

    D, N = v["dim"], (v["image_size"] // v["patch_size"]) ** 2
    s.update({"visual.conv1.weight": [D, v["in_chans"], v["patch_size"], v["patch_size"]], "visual.class_embedding": [D],
              "visual.positional_embedding": [1 + N, D], "visual.ln_pre.weight": [D], "visual.ln_pre.bias": [D]})
    for i in range(v["depth"]):
        s.update(block(f"visual.transformer.resblocks.{i}.", D))
    s.update({"visual.ln_post.weight": [D], "visual.ln_post.bias": [D], "visual.proj": [D, E]})
    W = t["width"]
    s.update({"token_embedding.weight": [t["vocab_size"], W], "positional_embedding": [t["context_length"], W]})
    for i in range(t["layers"]):
        s.update(block(f"transformer.resblocks.{i}.", W))
    s.update({"ln_final.weight": [W], "ln_final.bias": [W], "text_projection": [W, E], "logit_scale": []})
    return s


def f32(t):
    return t.float().double()  # exactly representable in float32


def main():
    c = CFG
    g = torch.Generator().manual_seed(5)
    p = {}
    for n, shp in shapes(c).items():
        t = torch.randn(shp, generator=g, dtype=torch.float64) * 0.3
        if n.endswith("ln_1.weight") or n.endswith("ln_2.weight") or "ln_" in n and n.endswith(".weight") and "resblocks" not in n:
            t = 1.0 + 0.1 * t
        p[n] = f32(t)
    p["logit_scale"] = f32(torch.tensor(math.log(20.0), dtype=torch.float64))
    K, T, B, E, W = 3, c["text"]["context_length"], 4, c["embed_dim"], c["text"]["width"]
    EOT = c["text"]["vocab_size"] - 1
    SOT = EOT - 1
    rows = [[SOT, 5, 9, 12, 30, EOT], [SOT, 7, 2, 40, 41, 17, 3, EOT], [SOT, 11, 11, 4, 22, 8, 19, 23, 6, 50, EOT]]
    tokens = torch.zeros(K, T, dtype=torch.int64)
    for k, r in enumerate(rows):
        tokens[k, : len(r)] = torch.tensor(r)
    images = f32(torch.randn(B, 3, 8, 8, generator=g, dtype=torch.float64))
    image_features = f32(torch.randn(B, E, generator=g, dtype=torch.float64))
    labels = torch.tensor([0, 2, 1, 2], dtype=torch.int64)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "config.json"), "w") as fh:
        json.dump(c, fh, indent=1)
    st_io.save(os.path.join(OUT, "weights.safetensors"), {n: t.float() for n, t in p.items()})
    st_io.save(os.path.join(OUT, "inputs.safetensors"),
               {"tokens": tokens, "images": images.float(), "image_features": image_features.float(), "labels": labels})

    u = encode_text(p, tokens, c["text"])
    fimg = encode_image(p, images, c["vision"])
    s = p["logit_scale"].exp()
    common = {"text_features": u, "encoded_images": fimg}

    def emit(method, adapter, logits_fn, metadata):
        for t in adapter.values():
            if t.dtype == torch.float64:
                t.requires_grad_(True)
        logits = logits_fn(adapter)
        loss = F.cross_entropy(logits, labels)
        train = [n for n, t in adapter.items() if t.dtype == torch.float64 and n not in metadata.get("frozen", [])]
        grads = torch.autograd.grad(loss, [adapter[n] for n in train]) if train else []
        exp = {"logits": logits.detach().float(), "loss": loss.detach().float()}
        exp.update({"grad." + n: gr.float() for n, gr in zip(train, grads)})
        exp.update({n: t.float() for n, t in common.items()})
        st_io.save(os.path.join(OUT, f"expected_{method}.safetensors"), exp)
        if adapter:
            st_io.save(os.path.join(OUT, f"adapter_{method}.safetensors"),
                       {n: (t.detach().float() if t.dtype == torch.float64 else t) for n, t in adapter.items()},
                       {k: str(v) for k, v in metadata.items() if k != "frozen"})
        print(method, "loss", float(loss))

    f = image_features
    emit("zeroshot", {}, lambda a: s * norm(f) @ norm(u).T, {"method": "zeroshot"})
    R = f32(torch.randn(K, E, generator=g, dtype=torch.float64) * 0.5)
    emit("taskres", {"taskres.residual": R}, lambda a: s * norm(f) @ norm(u + 0.5 * a["taskres.residual"]).T,
         {"method": "taskres", "alpha": 0.5})
    M = 2
    ctx = f32(torch.randn(M, W, generator=g, dtype=torch.float64) * 0.3)

    def coop(a):
        e = p["token_embedding.weight"][tokens].clone()
        e = torch.cat([e[:, :1], a["coop.ctx"].unsqueeze(0).expand(K, -1, -1), e[:, 1 + M:]], 1)
        return s * norm(f) @ norm(text_tower(p, e, tokens, c["text"])).T
    emit("coop", {"coop.ctx": ctx}, coop, {"method": "coop", "prompts": M})
    fc1 = f32(torch.randn(E // 4, E, generator=g, dtype=torch.float64) * 0.5)
    fc2 = f32(torch.randn(E, E // 4, generator=g, dtype=torch.float64) * 0.5)

    def adapter(a):
        h = F.relu(F.relu(f @ a["clip_adapter.fc1.weight"].T) @ a["clip_adapter.fc2.weight"].T)
        return s * norm(0.2 * h + 0.8 * f) @ norm(u).T
    emit("clip-adapter", {"clip_adapter.fc1.weight": fc1, "clip_adapter.fc2.weight": fc2}, adapter,
         {"method": "clip-adapter", "alpha": 0.2})
    NK = 6
    keys = f32(norm(torch.randn(NK, E, generator=g, dtype=torch.float64)))
    cl = torch.tensor([0, 0, 1, 1, 2, 2], dtype=torch.int64)
    Y = F.one_hot(cl, K).double()

    def tip(a):
        aff = norm(f) @ a["tip.cache_keys"].T
        return 100.0 * norm(f) @ norm(u).T + 1.17 * torch.exp(-1.0 * (1 - aff)) @ Y
    emit("tip-adapter", {"tip.cache_keys": keys.clone(), "tip.cache_labels": cl}, tip,
         {"method": "tip-adapter", "alpha": 1.17, "beta": 1.0, "frozen": ["tip.cache_keys"]})
    emit("tip-adapter-f", {"tip.cache_keys": keys.clone(), "tip.cache_labels": cl}, tip,
         {"method": "tip-adapter-f", "alpha": 1.17, "beta": 1.0})


if __name__ == "__main__":
    main()
