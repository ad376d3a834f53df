"""Reference CLIP-LoRA and MaPLe written from ../shared/spec/methods.md 27 and 28 (the official
MaxZanella/CLIP-LoRA loralib and muzairkhattak/multimodal-prompt-learning math), on a tiny random
CLIP built the way tools/reference/clip_reference.py builds its own, but deeper (3 layers in each
tower, so that MaPLe's deep prompts at depth J = 3 replace rows before blocks 1 and 2) and with a
visual width (12) different from the text width (16), so that MaPLe's projections are not square.

Writes tests/fixtures/clip_lora_maple/: config.json, weights.safetensors, inputs.safetensors
(tokens [K,T], images [B,3,8,8], image_features [B,E], labels [B]) and per case
adapter_<case>.safetensors (the starting values of the trainable tensors, non-zero B so that every
path is exercised; the options in the metadata) and expected_<case>.safetensors (logits, loss,
grad.<name> for exactly the trainable tensors). tests/peft/test_clip_lora.cpp and
test_clip_maple.cpp compare against them at 1e-4 abs + 1e-3 rel.

Run with /usr/bin/python3 tools/reference/clip_reference_lora_maple.py from the repository root.
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import st_io  # noqa: E402
from clip_reference import f32, norm, quick_gelu, shapes  # noqa: E402
from vit_reference import ln, patches  # noqa: E402

OUT = "tests/fixtures/clip_lora_maple"

CFG = {
    "arch": "clip",
    "vision": {"style": "openai_clip_visual", "image_size": 8, "patch_size": 4, "in_chans": 3, "dim": 12,
               "depth": 3, "heads": 2, "mlp_ratio": 4.0, "num_classes": 0, "act": "quick_gelu", "ln_eps": 1e-5,
               "pool": "cls", "embed_dim": 8},
    "text": {"vocab_size": 64, "context_length": 12, "width": 16, "layers": 3, "heads": 2, "tokenizer": "procedural"},
    "embed_dim": 8,
}


def attention(x, g, heads, mask, lora, scale):
    """methods.md 0 MHA on LN'd x; lora: {"q_proj": (A, B), ..., "out_proj": (A, B)} of this block.

    CLIP-LoRA's PlainMultiheadAttentionLoRA: q|k|v are the row blocks of in_proj, each a LinearLoRA
    F.linear(x, W, b) + scale * (x @ A^T) @ B^T (dropout off in eval), and out_proj likewise."""
    B, T, D = x.shape
    hd = D // heads
    w, b = g("attn.in_proj_weight"), g("attn.in_proj_bias")
    out = []
    for j, name in enumerate(["q_proj", "k_proj", "v_proj"]):
        y = x @ w[j * D:(j + 1) * D].T + b[j * D:(j + 1) * D]
        if name in lora:
            A, Bm = lora[name]
            y = y + scale * (x @ A.T) @ Bm.T
        out.append(y)
    q, k, v = out
    sh = lambda t: t.reshape(B, T, heads, hd).transpose(1, 2)
    s = sh(q) @ sh(k).transpose(-1, -2) * hd ** -0.5
    if mask is not None:
        s = s + mask
    o = (torch.softmax(s, dim=-1) @ sh(v)).transpose(1, 2).reshape(B, T, D)
    y = o @ g("attn.out_proj.weight").T + g("attn.out_proj.bias")
    if "out_proj" in lora:
        A, Bm = lora["out_proj"]
        y = y + scale * (o @ A.T) @ Bm.T
    return y


def block(x, g, heads, eps, mask, lora, scale):
    x = x + attention(ln(x, g("ln_1.weight"), g("ln_1.bias"), eps), g, heads, mask, lora, scale)
    h = ln(x, g("ln_2.weight"), g("ln_2.bias"), eps)
    return x + quick_gelu(h @ g("mlp.c_fc.weight").T + g("mlp.c_fc.bias")) @ g("mlp.c_proj.weight").T + g("mlp.c_proj.bias")


def text_tower(p, emb, tokens, c, lora=None, scale=0.0, before_block=None):
    """methods.md 2.3 on input embeddings [K,T,W]; lora[i] = the block's LoRA tensors;
    before_block(i, x) -> x edits the sequence before block i (MaPLe's deep prompts)."""
    x = emb + p["positional_embedding"][: emb.shape[1]]
    T = x.shape[1]
    mask = torch.full((T, T), float("-inf"), dtype=x.dtype).triu(1)
    for i in range(c["layers"]):
        if before_block:
            x = before_block(i, x)
        g = lambda n, i=i: p[f"transformer.resblocks.{i}.{n}"]
        x = block(x, g, c["heads"], 1e-5, mask, (lora or {}).get(i, {}), scale)
    x = ln(x, p["ln_final.weight"], p["ln_final.bias"], 1e-5)
    return x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ p["text_projection"]


def image_tower(p, img, c, lora=None, scale=0.0, after_embed=None, before_block=None):
    """methods.md 2.2; after_embed(x) runs after the pos-embed, before ln_pre (MaPLe's visual prompts)."""
    x = patches(img, p["visual.conv1.weight"], None, c["patch_size"])
    B, _, W = x.shape
    x = torch.cat([p["visual.class_embedding"].reshape(1, 1, W).expand(B, -1, -1), x], 1) + p["visual.positional_embedding"]
    if after_embed:
        x = after_embed(x)
    x = ln(x, p["visual.ln_pre.weight"], p["visual.ln_pre.bias"], c["ln_eps"])
    for i in range(c["depth"]):
        if before_block:
            x = before_block(i, x)
        g = lambda n, i=i: p[f"visual.transformer.resblocks.{i}.{n}"]
        x = block(x, g, c["heads"], c["ln_eps"], None, (lora or {}).get(i, {}), scale)
    return ln(x[:, 0], p["visual.ln_post.weight"], p["visual.ln_post.bias"], c["ln_eps"]) @ p["visual.proj"]


def main():
    c = CFG
    g = torch.Generator().manual_seed(17)
    p = {}
    for n, shp in shapes(c).items():
        t = torch.randn(shp, generator=g, dtype=torch.float64) * 0.3
        if n.endswith(".weight") and ("ln_" in n):
            t = 1.0 + 0.1 * t
        p[n] = f32(t)
    p["logit_scale"] = f32(torch.tensor(math.log(20.0), dtype=torch.float64))
    K, T, B, E = 3, c["text"]["context_length"], 4, c["embed_dim"]
    W, Wv = c["text"]["width"], c["vision"]["dim"]
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
    s = p["logit_scale"].exp()

    def emit(case, adapter, logits_fn, metadata):
        for t in adapter.values():
            t.requires_grad_(True)
        logits = logits_fn(adapter)
        loss = F.cross_entropy(logits, labels)
        names = list(adapter)
        grads = torch.autograd.grad(loss, [adapter[n] for n in names])
        exp = {"logits": logits.detach().float(), "loss": loss.detach().float()}
        exp.update({"grad." + n: gr.float() for n, gr in zip(names, grads)})
        st_io.save(os.path.join(OUT, f"expected_{case}.safetensors"), exp)
        st_io.save(os.path.join(OUT, f"adapter_{case}.safetensors"), {n: t.detach().float() for n, t in adapter.items()},
                   {k: str(v) for k, v in metadata.items()})
        print(case, "loss", float(loss))

    # ---- CLIP-LoRA (methods.md 27): c = alpha / sqrt(r); logits = 100 norm(f) norm(u)^T.
    def lora_case(case, encoder, targets, r, alpha):
        names = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "out_proj"}
        adapter = {}
        towers = []
        if encoder in ("both", "vision"):
            towers.append(("visual.", c["vision"]["depth"], Wv))
        if encoder in ("both", "text"):
            towers.append(("", c["text"]["layers"], W))
        for prefix, L, C in towers:
            for i in range(L):
                for t in targets.split(","):
                    base = f"{prefix}transformer.resblocks.{i}.attn.{names[t]}"
                    adapter[base + ".lora_A"] = f32(torch.randn(r, C, generator=g, dtype=torch.float64) * 0.4)
                    adapter[base + ".lora_B"] = f32(torch.randn(C, r, generator=g, dtype=torch.float64) * 0.4)
        scale = alpha / math.sqrt(r)

        def per_block(a, prefix, L):
            out = {}
            for i in range(L):
                d = {}
                for t in targets.split(","):
                    base = f"{prefix}transformer.resblocks.{i}.attn.{names[t]}"
                    if base + ".lora_A" in a:
                        d[names[t]] = (a[base + ".lora_A"], a[base + ".lora_B"])
                out[i] = d
            return out

        def logits(a):
            if encoder == "text":
                f = image_features
            else:
                f = image_tower(p, images, c["vision"], per_block(a, "visual.", c["vision"]["depth"]), scale)
            emb = p["token_embedding.weight"][tokens]
            u = text_tower(p, emb, tokens, c["text"], per_block(a, "", c["text"]["layers"]), scale)
            return 100.0 * norm(f) @ norm(u).T

        emit(case, adapter, logits,
             {"method": "clip-lora", "rank": r, "alpha": alpha, "targets": targets, "encoder": encoder})

    lora_case("lora-both", "both", "q,k,v", 2, 3.0)
    lora_case("lora-vision", "vision", "q,v", 2, 3.0)
    lora_case("lora-text", "text", "q,k,v", 2, 1.0)
    lora_case("lora-o", "both", "k,o", 3, 2.0)

    # ---- MaPLe (methods.md 28): logits = s norm(f) norm(u)^T.
    def maple_case(case, M, J):
        adapter = {"maple.ctx": f32(torch.randn(M, W, generator=g, dtype=torch.float64) * 0.3),
                   "maple.proj.weight": f32(torch.randn(Wv, W, generator=g, dtype=torch.float64) * 0.3),
                   "maple.proj.bias": f32(torch.randn(Wv, generator=g, dtype=torch.float64) * 0.3)}
        if J > 1:
            adapter["maple.deep_text"] = f32(torch.randn(J - 1, M, W, generator=g, dtype=torch.float64) * 0.3)
            adapter["maple.deep_proj.weight"] = f32(torch.randn(J - 1, Wv, W, generator=g, dtype=torch.float64) * 0.3)
            adapter["maple.deep_proj.bias"] = f32(torch.randn(J - 1, Wv, generator=g, dtype=torch.float64) * 0.3)

        def logits(a):
            deep = [a["maple.deep_text"][j] for j in range(J - 1)] if J > 1 else []
            # compound_prompt_projections[j](compound_prompts_text[j])
            vdeep = [deep[j] @ a["maple.deep_proj.weight"][j].T + a["maple.deep_proj.bias"][j] for j in range(J - 1)]
            shared = a["maple.ctx"] @ a["maple.proj.weight"].T + a["maple.proj.bias"]  # [M, Wv]

            def text_bb(i, x):  # ResidualAttentionBlock_MaPLe, text_layer: rows 1..M <- deep_text[i-1]
                if 1 <= i <= J - 1:
                    x = torch.cat([x[:, :1], deep[i - 1].unsqueeze(0).expand(x.shape[0], -1, -1), x[:, 1 + M:]], 1)
                return x

            def vis_ae(x):  # VisionTransformer_MaPLe: concat the visual ctx at the end, before ln_pre
                return torch.cat([x, shared.unsqueeze(0).expand(x.shape[0], -1, -1)], 1)

            def vis_bb(i, x):  # the last M rows <- the projected deep prompt
                if 1 <= i <= J - 1:
                    x = torch.cat([x[:, : x.shape[1] - M], vdeep[i - 1].unsqueeze(0).expand(x.shape[0], -1, -1)], 1)
                return x

            emb = p["token_embedding.weight"][tokens]
            emb = torch.cat([emb[:, :1], a["maple.ctx"].unsqueeze(0).expand(K, -1, -1), emb[:, 1 + M:]], 1)
            u = text_tower(p, emb, tokens, c["text"], before_block=text_bb)
            f = image_tower(p, images, c["vision"], after_embed=vis_ae, before_block=vis_bb)
            return s * norm(f) @ norm(u).T

        emit(case, adapter, logits, {"method": "maple", "prompts": M, "depth": J})

    maple_case("maple", 2, 3)
    maple_case("maple-j1", 3, 1)


if __name__ == "__main__":
    main()
