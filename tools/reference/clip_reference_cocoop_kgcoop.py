"""Reference CoCoOp and KgCoOp written from ../shared/spec/methods.md 25-26 and the official code
(KaiyangZhou/CoOp trainers/cocoop.py; htyao89/KgCoOp trainers/kgcoop.py), on a tiny random CLIP.

Reuses the text tower, image tower and helpers of clip_reference.py. CoCoOp's meta-net needs
E >= 16 (hidden size E/16), so this fixture has its own config (embed_dim 32) under
tests/fixtures/clip-cocoop-kgcoop/:
  config.json, weights.safetensors,
  texts.txt, kg_texts.txt    the class prompts and KgCoOp's hand-crafted prompts (procedural words),
  inputs.safetensors         tokens [K,T] and kg_tokens [K,T] (the ids of the two files under the
                             procedural word tokenizer; tests/peft/test_clip_cocoop.cpp checks that
                             the C++ tokenizer gives the same ids), image_features [B,E], images, labels,
  adapter_cocoop.safetensors, expected_cocoop.safetensors      (M = 4, the default),
  adapter_kgcoop.safetensors, expected_kgcoop.safetensors      (w = 8, hand-crafted = texts.txt),
  expected_kgcoop-kg.safetensors                               (w = 2.5, hand-crafted = kg_texts.txt),
  expected_cocoop-images.safetensors                           (images instead of image_features).
Each expected file holds logits, loss (KgCoOp's includes its term) and grad.<name> of exactly the
trainable tensors.

Run with /usr/bin/python3 tools/reference/clip_reference_cocoop_kgcoop.py from the repository root.
"""
import json
import math
import os
import re
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import st_io  # noqa: E402
from clip_reference import encode_image, f32, norm, shapes, text_tower  # noqa: E402

OUT = "tests/fixtures/clip-cocoop-kgcoop"

CFG = {
    "arch": "clip",
    "vision": {"style": "openai_clip_visual", "image_size": 8, "patch_size": 4, "in_chans": 3, "dim": 16,
               "depth": 1, "heads": 2, "mlp_ratio": 4.0, "num_classes": 0, "act": "quick_gelu", "ln_eps": 1e-5,
               "pool": "cls", "embed_dim": 32},
    "text": {"vocab_size": 64, "context_length": 12, "width": 16, "layers": 2, "heads": 2, "tokenizer": "procedural"},
    "embed_dim": 32,
}

TEXTS = ["a photo of a red circle", "a photo of a large blue square", "a photo of a ring"]
KG_TEXTS = ["a small red circle", "the blue square on the plain background", "two rings"]

# data/procedural.cpp procedural_vocabulary(): sorted unique words, ids from 2 (0 pad, 1 unk),
# then sot, eot (data/word_tokenizer.h).
_VOCAB = sorted(set(
    ["a", "photo", "of", "in", "the", "on", "background", "top", "bottom", "left", "right"]
    + ["circle", "square", "triangle", "cross", "ring", "diamond"]
    + ["circles", "squares", "triangles", "crosses", "rings", "diamonds"]
    + ["red", "green", "blue", "yellow", "magenta", "cyan", "white", "orange"]
    + ["small", "large"] + ["plain", "striped", "checkered", "noisy", "gradient"] + ["one", "two", "three", "four"]))
_IDS = {w: i + 2 for i, w in enumerate(_VOCAB)}
SOT, EOT = len(_VOCAB) + 2, len(_VOCAB) + 3


def tokenize(lines, T):
    # The word tokenizer on plain ASCII words: lower-case, split on spaces, unknown -> 1.
    out = torch.zeros(len(lines), T, dtype=torch.int64)
    for k, line in enumerate(lines):
        ids = [SOT] + [_IDS.get(w, 1) for w in re.findall(r"[a-z0-9]+", line.lower())] + [EOT]
        out[k, : len(ids)] = torch.tensor(ids)
    return out


def coop_embeddings(p, tokens, ctx):
    # methods.md 15: SOT, the M context rows at 1..M, then the rest of the line. ctx [M,W] or [K,M,W].
    e = p["token_embedding.weight"][tokens]
    M = ctx.shape[-2]
    if ctx.dim() == 2:
        ctx = ctx.unsqueeze(0).expand(e.shape[0], -1, -1)
    return torch.cat([e[:, :1], ctx, e[:, 1 + M:]], 1)


def main():
    c = CFG
    g = torch.Generator().manual_seed(7)
    p = {}
    for n, shp in shapes(c).items():
        t = torch.randn(shp, generator=g, dtype=torch.float64) * 0.3
        if "ln_" in n and n.endswith(".weight"):
            t = 1.0 + 0.1 * t
        p[n] = f32(t)
    p["logit_scale"] = f32(torch.tensor(math.log(20.0), dtype=torch.float64))
    T, B, E, W = c["text"]["context_length"], 4, c["embed_dim"], c["text"]["width"]
    K = len(TEXTS)
    tokens, kg_tokens = tokenize(TEXTS, T), tokenize(KG_TEXTS, T)
    images = f32(torch.randn(B, 3, 8, 8, generator=g, dtype=torch.float64))
    image_features = f32(torch.randn(B, E, generator=g, dtype=torch.float64))
    labels = torch.tensor([0, 2, 1, 2], dtype=torch.int64)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "config.json"), "w") as fh:
        json.dump(c, fh, indent=1)
    for name, lines in (("texts.txt", TEXTS), ("kg_texts.txt", KG_TEXTS)):
        with open(os.path.join(OUT, name), "w") as fh:
            fh.write("\n".join(lines) + "\n")
    st_io.save(os.path.join(OUT, "weights.safetensors"), {n: t.float() for n, t in p.items()})
    st_io.save(os.path.join(OUT, "inputs.safetensors"),
               {"tokens": tokens, "kg_tokens": kg_tokens, "images": images.float(),
                "image_features": image_features.float(), "labels": labels})
    s = p["logit_scale"].exp()
    tt = lambda emb, tok: text_tower(p, emb, tok, c["text"])

    def emit(name, adapter, metadata, loss_fn, f):
        for t in adapter.values():
            t.requires_grad_(True)
        logits, loss = loss_fn(adapter, f)
        names = list(adapter)
        grads = torch.autograd.grad(loss, [adapter[n] for n in names])
        exp = {"logits": logits.detach().float(), "loss": loss.detach().float()}
        exp.update({"grad." + n: gr.float() for n, gr in zip(names, grads)})
        st_io.save(os.path.join(OUT, f"expected_{name}.safetensors"), exp)
        if metadata is not None:
            st_io.save(os.path.join(OUT, f"adapter_{name}.safetensors"),
                       {n: t.detach().float() for n, t in adapter.items()}, {k: str(v) for k, v in metadata.items()})
        print(name, "loss", float(loss))

    # ---- CoCoOp (trainers/cocoop.py CustomCLIP.forward): the meta-net reads the normalised
    # feature; its output shifts every context row; one prompt set per image.
    M, H = 4, E // 16
    cocoop = {"cocoop.ctx": f32(torch.randn(M, W, generator=g, dtype=torch.float64) * 0.3),
              "cocoop.meta_net.linear1.weight": f32(torch.randn(H, E, generator=g, dtype=torch.float64) * 0.4),
              "cocoop.meta_net.linear1.bias": f32(torch.randn(H, generator=g, dtype=torch.float64) * 0.2),
              "cocoop.meta_net.linear2.weight": f32(torch.randn(W, H, generator=g, dtype=torch.float64) * 0.4),
              "cocoop.meta_net.linear2.bias": f32(torch.randn(W, generator=g, dtype=torch.float64) * 0.2)}

    def cocoop_loss(a, f):
        meta = nn.Sequential(nn.Linear(E, H), nn.ReLU(), nn.Linear(H, W)).double()
        for mod, key in ((meta[0], "linear1"), (meta[2], "linear2")):  # use the adapter tensors themselves
            del mod.weight, mod.bias
            mod.weight, mod.bias = a[f"cocoop.meta_net.{key}.weight"], a[f"cocoop.meta_net.{key}.bias"]
        imf = f / f.norm(dim=-1, keepdim=True)
        bias = meta(imf).unsqueeze(1)                        # [B,1,W]
        ctx_shifted = a["cocoop.ctx"].unsqueeze(0) + bias    # [B,M,W]
        rows = []
        for ctx_i, imf_i in zip(ctx_shifted, imf):           # the official per-image loop
            tf = tt(coop_embeddings(p, tokens, ctx_i), tokens)
            tf = tf / tf.norm(dim=-1, keepdim=True)
            rows.append(s * imf_i @ tf.t())
        logits = torch.stack(rows)
        return logits, F.cross_entropy(logits, labels)

    emit("cocoop", cocoop, {"method": "cocoop", "prompts": M}, cocoop_loss, image_features)
    fimg = encode_image(p, images, c["vision"]).detach()
    emit("cocoop-images", {n: t.detach().clone() for n, t in cocoop.items()}, None, cocoop_loss, fimg)

    # ---- KgCoOp (trainers/kgcoop.py): CoOp's logits plus w * (1 - mean cos) to the frozen
    # hand-crafted prompts' features.
    ctx = f32(torch.randn(M, W, generator=g, dtype=torch.float64) * 0.3)

    def kgcoop_loss(w, hand):
        with torch.no_grad():
            ori = tt(p["token_embedding.weight"][hand], hand)
            old = ori / ori.norm(dim=-1, keepdim=True)

        def fn(a, f):
            tf = tt(coop_embeddings(p, tokens, a["coop.ctx"]), tokens)
            tf = tf / tf.norm(dim=-1, keepdim=True)
            imf = f / f.norm(dim=-1, keepdim=True)
            logits = s * imf @ tf.t()
            cos = torch.nn.CosineSimilarity(dim=1, eps=1e-07)
            score = 1.0 - torch.mean(cos(tf, old))
            return logits, F.cross_entropy(logits, labels) + w * score
        return fn

    emit("kgcoop", {"coop.ctx": ctx.clone()}, {"method": "kgcoop", "prompts": M, "kg_weight": 8.0},
         kgcoop_loss(8.0, tokens), image_features)
    emit("kgcoop-kg", {"coop.ctx": ctx.clone()}, None, kgcoop_loss(2.5, kg_tokens), image_features)


if __name__ == "__main__":
    main()
