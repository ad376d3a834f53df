"""Hub-checkpoint reference fixtures (issue 13, "bring your own pretrained model").

Builds SMALL random models in the EXACT tensor naming and shapes of each library's published
checkpoints, computes their outputs with an independent PyTorch forward pass written here from
each library's own source (no library code is copied; the math is re-written), and writes
tests/fixtures/hub/<case>/ (model.safetensors, expected.safetensors, truth.json and the sidecar
files the hub repo would carry). Run from the repository root with

    /usr/bin/python3 tools/reference/hub_reference.py

(Debian's python3-torch 1.13 / python3-torchvision 0.14). Reruns are byte-identical (a fixed
seed per case, CPU float64 maths, float32 outputs).

Sources each forward pass follows (read at these commits):
  * timm: huggingface/pytorch-image-models @ aa4b5850c1543fa488abf260f18390eda46cf85d
    timm/models/vision_transformer.py (VisionTransformer.__init__: patch_embed bias=not pre_norm,
    norm vs fc_norm, embed_len; _pos_embed: no_embed_class adds pos then concats cls/reg, else
    concat then add; forward_features; pool/global_pool_nlc: 'token' = x[:, 0], 'avg' = mean over
    x[:, num_prefix_tokens:]; forward_head: pool -> fc_norm -> head; checkpoint_filter_fn,
    _convert_dinov2), timm/layers/attention.py (qkv Linear, reshape (B,N,3,H,hd)), timm/layers/norm.py
    (LayerNorm eps 1e-6), LayerScale (ls1/ls2.gamma), timm/models/_hub.py save_config_for_hf
    (config.json: architecture, num_classes, num_features, global_pool, label_names, model_args,
    pretrained_cfg).
  * DINOv2: facebookresearch/dinov2 @ b8931f7bf91576930313be2c6d6af376033b35f0
    dinov2/models/vision_transformer.py (LayerNorm eps 1e-6; interpolate_pos_encoding: bicubic,
    scale_factor ((w0 + offset) / M, (h0 + offset) / M) when interpolate_offset != 0, else
    size=(w0, h0); antialias = interpolate_antialias; prepare_tokens_with_masks: cls concat, add
    pos, THEN insert register tokens after the cls token; x_norm_clstoken = norm(x)[:, 0]),
    dinov2/hub/backbones.py (plain backbones: interpolate_antialias=False, interpolate_offset=0.1;
    *_reg backbones: interpolate_antialias=True, interpolate_offset=0.0), layers/{attention,block,
    layer_scale,mlp}.py.
  * torchvision 0.14.1 (Debian python3-torchvision): the REAL
    torchvision.models.vision_transformer.VisionTransformer; its state_dict and outputs are saved as
    they are (our own forward is checked against it to 1e-6 as a check of the shared primitives).
  * transformers: huggingface/transformers src/transformers/models/vit/modeling_vit.py
    @ d8b2b23c6ed11668acbcc9f498695665b780503b (ViTEmbeddings, ViTSelfAttention query/key/value,
    ViTLayer layernorm_before/after, ViTModel.layernorm + ViTPooler (dense + tanh on token 0),
    ViTForImageClassification: classifier(layernorm(x)[:, 0])), models/clip/modeling_clip.py
    @ 679021a6b0ded09d623a96e2bd2f822c5a548872 (CLIPVisionEmbeddings: class_embedding [D], conv
    without bias, position_embedding nn.Embedding; CLIPAttention q_proj * head_dim**-0.5;
    CLIPVisionTransformer: pre_layrnorm -> encoder -> post_layernorm(x[:, 0]); text: causal mask,
    final_layer_norm, pooled at input_ids.argmax(-1) when eos_token_id == 2 (legacy configs), else
    at the first eos_token_id; visual_projection / text_projection without bias).
  * open_clip: mlfoundations/open_clip @ 89fb801f1e6087880e951fc8354b8a2077b79c6d
    src/open_clip/model.py (CLIP, quick_gelu flag -> QuickGELU else nn.GELU, logit_scale 0-d),
    transformer.py (VisionTransformer: conv1 no bias, ln_pre, heads = width // head_width
    (head_width default 64), ln_post then pool 'tok' (final_ln_after_pool False), pooled @ proj;
    text_global_pool 'argmax'; LayerNorm eps 1e-5), push_to_hf_hub.py save_config_for_hf
    (open_clip_config.json = {"model_cfg": ..., "preprocess_cfg": {mean, std, interpolation,
    resize_mode}}). OpenAI's CLIP (openai/CLIP clip/model.py build_model) infers vision heads =
    width // 64 and text heads = transformer_width // 64 and always uses QuickGELU.

Each case asserts that a deliberate loader mistake (q/k swapped, layer scale dropped, a wrong
pos-embed resize, register tokens in the wrong place, wrong activation, wrong head count, ...)
moves the outputs by far more than 1e-4.
"""
import json
import math
import os
import shutil
import sys
import zlib
from collections import OrderedDict

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

OUT = "tests/fixtures/hub"
DT = torch.float64
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
LABELS5 = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead"]
MIN_EFFECT = 1e-3  # a deliberate mistake must move the outputs by at least this (>> 1e-4)


# ----------------------------------------------------------------------------------------------
# random weights
class Gen:
    def __init__(self, name):
        self.g = torch.Generator().manual_seed(zlib.crc32(name.encode()))

    def randn(self, *shape, std=0.1, mean=0.0):
        t = torch.randn(*shape, generator=self.g, dtype=DT) * std + mean
        return t.float().to(DT)  # exactly representable in float32

    def lin(self, out_f, in_f, std=None):
        return self.randn(out_f, in_f, std=std if std is not None else 0.8 / math.sqrt(in_f))

    def ln(self, d):
        return self.randn(d, std=0.1, mean=1.0), self.randn(d, std=0.1)


def put_ln(sd, g, name, d):
    sd[name + ".weight"], sd[name + ".bias"] = g.ln(d)


def put_lin(sd, g, name, out_f, in_f, bias=True):
    sd[name + ".weight"] = g.lin(out_f, in_f)
    if bias:
        sd[name + ".bias"] = g.randn(out_f, std=0.05)


# ----------------------------------------------------------------------------------------------
# primitives (float64)
def ln(x, sd, name, eps):
    return F.layer_norm(x, (x.shape[-1],), sd[name + ".weight"], sd[name + ".bias"], eps)


def linear(x, sd, name):
    return F.linear(x, sd[name + ".weight"], sd.get(name + ".bias"))


def gelu(x):
    return F.gelu(x)  # erf form (nn.GELU default, HF "gelu")


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def attend(q, k, v, heads, causal=False):
    B, T, D = q.shape
    hd = D // heads
    sh = lambda t: t.reshape(B, T, heads, hd).transpose(1, 2)
    s = (sh(q) * hd ** -0.5) @ sh(k).transpose(-1, -2)
    if causal:
        s = s + torch.full((T, T), float("-inf"), dtype=s.dtype).triu(1)
    o = torch.softmax(s, dim=-1) @ sh(v)
    return o.transpose(1, 2).reshape(B, T, D)


def packed_attn(x, w, b, heads):
    """qkv packed as [3D, D] rows q, k, v (timm qkv, nn.MultiheadAttention in_proj)."""
    D = x.shape[-1]
    qkv = F.linear(x, w, b)
    return attend(qkv[..., :D], qkv[..., D:2 * D], qkv[..., 2 * D:], heads)


def patchify(img, w, b, P):
    return F.conv2d(img, w, b, stride=P).flatten(2).transpose(1, 2)


def swap_qk_packed(sd, key):
    """Loader mistake: q and k rows of a packed qkv swapped."""
    sd = OrderedDict(sd)
    w = sd[key]
    D = w.shape[0] // 3
    sd[key] = torch.cat([w[D:2 * D], w[:D], w[2 * D:]], 0)
    return sd


def differs(a, b, what):
    d = (a - b).abs().max().item()
    assert d > MIN_EFFECT, f"{what}: the mistake changes the outputs by only {d:.2e}"
    return f"{what}: {d:.3g}"


# ----------------------------------------------------------------------------------------------
# writing
def f32(t):
    return t.detach().to(torch.float32) if t.is_floating_point() else t.detach()


def write_case(name, model_sd, truth, expected=None, sidecars=None):
    d = os.path.join(OUT, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    st_io.save(os.path.join(d, "model.safetensors"), {k: f32(v) for k, v in model_sd.items()}, {"format": "pt"})
    if expected is not None:
        for k, v in expected.items():
            assert torch.isfinite(v.double()).all(), f"{name}: {k} not finite"
        st_io.save(os.path.join(d, "expected.safetensors"), {k: f32(v) for k, v in expected.items()}, {"format": "pt"})
    for fname, obj in (sidecars or {}).items():
        with open(os.path.join(d, fname), "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
    with open(os.path.join(d, "truth.json"), "w") as f:
        json.dump(truth, f, indent=2)
        f.write("\n")


def vcfg(image_size, patch_size, dim, depth, heads, mlp_ratio, num_classes, act="gelu", ln_eps=1e-6, pool="cls",
         class_token=True, reg_tokens=0, no_embed_class=False, layer_scale=False, fc_norm=False, norm_pre=False,
         qkv_bias=True):
    return OrderedDict(image_size=image_size, patch_size=patch_size, dim=dim, depth=depth, heads=heads,
                       mlp_ratio=mlp_ratio, num_classes=num_classes, act=act, ln_eps=ln_eps, pool=pool,
                       class_token=class_token, reg_tokens=reg_tokens, no_embed_class=no_embed_class,
                       layer_scale=layer_scale, fc_norm=fc_norm, norm_pre=norm_pre, qkv_bias=qkv_bias)


def preprocess(size, interpolation, crop_pct, crop_mode, mean, std):
    return OrderedDict(size=size, interpolation=interpolation, crop_pct=crop_pct, crop_mode=crop_mode, mean=mean,
                       std=std)


def images(g, n, s):
    return g.randn(n, 3, s, s, std=1.0)


# ----------------------------------------------------------------------------------------------
# timm
def timm_state(g, c, prefix_cls=True, dist_token=False):
    D, P, S = c["dim"], c["patch_size"], c["image_size"]
    N = (S // P) ** 2
    Fh = int(D * c["mlp_ratio"])
    n_prefix = (1 if c["class_token"] else 0) + c["reg_tokens"] + (1 if dist_token else 0)
    sd = OrderedDict()
    if c["class_token"]:
        sd["cls_token"] = g.randn(1, 1, D, std=0.2)
    if dist_token:
        sd["dist_token"] = g.randn(1, 1, D, std=0.2)
    if c["reg_tokens"]:
        sd["reg_token"] = g.randn(1, c["reg_tokens"], D, std=0.2)
    sd["pos_embed"] = g.randn(1, N if c["no_embed_class"] else N + n_prefix, D, std=0.2)
    sd["patch_embed.proj.weight"] = g.randn(D, 3, P, P, std=0.8 / math.sqrt(3 * P * P))
    if not c["norm_pre"]:  # timm: PatchEmbed(bias=not pre_norm)
        sd["patch_embed.proj.bias"] = g.randn(D, std=0.05)
    if c["norm_pre"]:
        put_ln(sd, g, "norm_pre", D)
    for i in range(c["depth"]):
        b = f"blocks.{i}."
        put_ln(sd, g, b + "norm1", D)
        put_lin(sd, g, b + "attn.qkv", 3 * D, D, bias=c["qkv_bias"])
        put_lin(sd, g, b + "attn.proj", D, D)
        if c["layer_scale"]:
            sd[b + "ls1.gamma"] = g.randn(D, std=0.3, mean=0.5)
        put_ln(sd, g, b + "norm2", D)
        put_lin(sd, g, b + "mlp.fc1", Fh, D)
        put_lin(sd, g, b + "mlp.fc2", D, Fh)
        if c["layer_scale"]:
            sd[b + "ls2.gamma"] = g.randn(D, std=0.3, mean=0.5)
    put_ln(sd, g, "fc_norm" if c["fc_norm"] else "norm", D)
    if c["num_classes"]:
        put_lin(sd, g, "head", c["num_classes"], D)
    if dist_token:
        put_lin(sd, g, "head_dist", c["num_classes"], D)
    return sd


def timm_forward(sd, img, c, heads=None, drop_ls=False, reg_before_cls=False):
    """VisionTransformer.forward_features + forward_head (eval)."""
    heads = heads or c["heads"]
    eps = c["ln_eps"]
    x = patchify(img, sd["patch_embed.proj.weight"], sd.get("patch_embed.proj.bias"), c["patch_size"])
    B = x.shape[0]
    to_cat = []
    if c["class_token"]:
        to_cat.append(sd["cls_token"].expand(B, -1, -1))
    if c["reg_tokens"]:
        to_cat.append(sd["reg_token"].expand(B, -1, -1))
    if reg_before_cls:
        to_cat = to_cat[::-1]
    if c["no_embed_class"]:
        x = torch.cat(to_cat + [x + sd["pos_embed"]], 1)
    else:
        x = torch.cat(to_cat + [x], 1) + sd["pos_embed"]
    if c["norm_pre"]:
        x = ln(x, sd, "norm_pre", eps)
    act = gelu if c["act"] == "gelu" else quick_gelu
    for i in range(c["depth"]):
        b = f"blocks.{i}."
        ls = (lambda n, t: t) if (not c["layer_scale"] or drop_ls) else (lambda n, t: t * sd[b + n + ".gamma"])
        h = ln(x, sd, b + "norm1", eps)
        x = x + ls("ls1", linear(packed_attn(h, sd[b + "attn.qkv.weight"], sd.get(b + "attn.qkv.bias"), heads), sd, b + "attn.proj"))
        h = ln(x, sd, b + "norm2", eps)
        x = x + ls("ls2", linear(act(linear(h, sd, b + "mlp.fc1")), sd, b + "mlp.fc2"))
    if not c["fc_norm"]:
        x = ln(x, sd, "norm", eps)
    n_prefix = (1 if c["class_token"] else 0) + c["reg_tokens"]
    f = x[:, 0] if c["pool"] == "cls" else x[:, n_prefix:].mean(1)
    if c["fc_norm"]:
        f = ln(f, sd, "fc_norm", eps)
    return linear(f, sd, "head") if c["num_classes"] else f


def timm_case(name, c, notes, sidecars=None, pre=None, class_names=None, checks=()):
    g = Gen(name)
    sd = timm_state(g, c)
    img = images(g, 2, c["image_size"])
    out = timm_forward(sd, img, c)
    msgs = []
    for what, fn in checks:
        msgs.append(differs(out, fn(sd, img, c), what))
    # every case: q and k swapped in block 0 must show
    msgs.append(differs(out, timm_forward(swap_qk_packed(sd, "blocks.0.attn.qkv.weight"), img, c), "q<->k swapped"))
    truth = OrderedDict(scheme="timm", config=c)
    if pre:
        truth["preprocess"] = pre
    if class_names:
        truth["class_names"] = class_names
    truth["eval_image_size"] = c["image_size"]
    truth["notes"] = notes
    key = "logits" if c["num_classes"] else "features"
    write_case(name, sd, truth, OrderedDict(images=img, **{key: out}), sidecars)
    print(f"{name}: {key} {tuple(out.shape)}; " + "; ".join(msgs))


def timm_cases():
    # 1. timm_plain: with a timm hub config.json (heads != dim / 64: model_args carries num_heads)
    c = vcfg(32, 8, 64, 2, 4, 4.0, 5)
    hub = OrderedDict(
        architecture="vit_tiny_patch8_32",
        num_classes=5,
        num_features=64,
        global_pool="token",
        label_names=LABELS5,
        model_args=OrderedDict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, mlp_ratio=4.0),
        pretrained_cfg=OrderedDict(
            tag="fixture", custom_load=False, input_size=[3, 32, 32], fixed_input_size=True, interpolation="bicubic",
            crop_pct=0.9, crop_mode="center", mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5], num_classes=5,
            pool_size=None, first_conv="patch_embed.proj", classifier="head"),
    )
    timm_case("timm_plain", c,
              "timm VisionTransformer, class token, pos_embed [1, 1+N, D] with the cls row (concat then add), qkv "
              "bias, final norm then x[:, 0], head. LayerNorm eps 1e-6, erf GELU. heads = 4 != dim/64: the "
              "architecture name cannot give it; config.json's model_args.num_heads does (model_args override "
              "the architecture's defaults). preprocess from pretrained_cfg (input_size, bicubic, crop_pct 0.9, "
              "crop_mode center, mean/std 0.5); class names from label_names.",
              sidecars={"config.json": hub},
              pre=preprocess(32, "bicubic", 0.9, "center", [0.5] * 3, [0.5] * 3), class_names=LABELS5,
              checks=[("heads 1 instead of 4", lambda sd, img, c: timm_forward(sd, img, c, heads=1))])
    # 2. fc_norm: global_pool avg, no norm.*, fc_norm.*
    c = vcfg(32, 8, 64, 1, 1, 2.0, 4, pool="mean", fc_norm=True)
    timm_case("timm_fc_norm", c,
              "timm global_pool='avg' with fc_norm: there is no norm.* (final norm is Identity); the mean is over "
              "the patch tokens only (x[:, num_prefix_tokens:], the class token is excluded), then fc_norm, then "
              "head. heads = dim/64 = 1. No sidecar.",
              checks=[("mean including the class token", _timm_mean_incl_prefix)])
    # 3. norm_pre
    c = vcfg(32, 8, 64, 1, 1, 2.0, 3, norm_pre=True)
    timm_case("timm_norm_pre", c,
              "timm pre_norm=True (CLIP-style): norm_pre.* applied after pos-embed, before the blocks; the patch "
              "embedding has NO bias (timm builds PatchEmbed(bias=not pre_norm)): patch_embed.proj.bias is "
              "absent. Class token, final norm, x[:, 0], head. No sidecar.",
              checks=[("norm_pre skipped", lambda sd, img, c: timm_forward(sd, img, dict(c, norm_pre=False)))])
    # 4. layer scale
    c = vcfg(32, 8, 64, 1, 1, 2.0, 3, layer_scale=True)
    timm_case("timm_layer_scale", c,
              "timm init_values set: blocks.i.ls1.gamma / ls2.gamma [D] multiply the attention and MLP branch "
              "outputs before the residual add. No sidecar.",
              checks=[("layer scale dropped", lambda sd, img, c: timm_forward(sd, img, c, drop_ls=True))])
    # 5. register tokens (as timm's vit_*_reg4_dinov2: class token, reg4, no_embed_class, layer scale)
    c = vcfg(32, 8, 64, 2, 1, 2.0, 3, reg_tokens=4, no_embed_class=True, layer_scale=True)
    timm_case("timm_reg_tokens", c,
              "timm reg_tokens=4 with no_embed_class=True (vit_*_reg4_dinov2 layout): pos_embed [1, N, D] is added "
              "to the patch tokens only, then [cls, reg_token x4, patches] are concatenated (cls first, registers "
              "next); layer scale; final norm; pool = x[:, 0]; head. No sidecar.",
              checks=[("registers before cls", lambda sd, img, c: timm_forward(sd, img, c, reg_before_cls=True)),
                      ("layer scale dropped", lambda sd, img, c: timm_forward(sd, img, c, drop_ls=True))])
    # 6. DeiT-III style no_embed_class
    c = vcfg(32, 8, 64, 1, 1, 2.0, 3, no_embed_class=True, layer_scale=True)
    timm_case("timm_no_embed_class", c,
              "timm no_embed_class=True (DeiT-III): pos_embed is [1, N, D] (no class row) and is added to the patch "
              "tokens before the class token is prepended; layer scale; final norm; x[:, 0]; head. No sidecar.",
              checks=[("pos-embed rows shifted by one (as if the first row were the class row)",
                       lambda sd, img, c: timm_forward(_shift_pos(sd), img, c))])
    # 7. no class token
    c = vcfg(32, 8, 64, 1, 1, 2.0, 3, pool="mean", class_token=False, fc_norm=True)
    timm_case("timm_no_class_token", c,
              "timm class_token=False, global_pool='avg', fc_norm: no cls_token, pos_embed [1, N, D], mean over all "
              "tokens, fc_norm, head (no norm.*). No sidecar.",
              checks=[("norm before the mean instead of fc_norm after it", _timm_norm_before_mean)])
    # 10. DeiT distilled: unsupported
    g = Gen("timm_dist_token")
    c = vcfg(32, 8, 64, 1, 1, 2.0, 3)
    sd = timm_state(g, c, dist_token=True)
    write_case("timm_dist_token", sd, OrderedDict(
        scheme="unsupported", config=c, eval_image_size=32,
        notes="DeiT distilled (timm VisionTransformerDistilled): cls_token AND dist_token [1, 1, D], pos_embed "
              "[1, N+2, D], head and head_dist (eval averages the two heads). Not supported: the loader must "
              "refuse it with one clear line naming dist_token / head_dist."))
    print("timm_dist_token: model only (unsupported)")


def _timm_mean_incl_prefix(sd, img, c):
    """Loader mistake: the mean over all tokens, class token included (timm averages x[:, 1:])."""
    eps = c["ln_eps"]
    x = patchify(img, sd["patch_embed.proj.weight"], sd.get("patch_embed.proj.bias"), c["patch_size"])
    x = torch.cat([sd["cls_token"].expand(x.shape[0], -1, -1), x], 1) + sd["pos_embed"]
    for i in range(c["depth"]):
        b = f"blocks.{i}."
        h = ln(x, sd, b + "norm1", eps)
        x = x + linear(packed_attn(h, sd[b + "attn.qkv.weight"], sd.get(b + "attn.qkv.bias"), c["heads"]), sd, b + "attn.proj")
        h = ln(x, sd, b + "norm2", eps)
        x = x + linear(gelu(linear(h, sd, b + "mlp.fc1")), sd, b + "mlp.fc2")
    return linear(ln(x.mean(1), sd, "fc_norm", eps), sd, "head")


def _timm_norm_before_mean(sd, img, c):
    sd2 = OrderedDict(sd)
    sd2["norm.weight"], sd2["norm.bias"] = sd["fc_norm.weight"], sd["fc_norm.bias"]
    c2 = dict(c, fc_norm=False, num_classes=0)
    f = timm_forward(sd2, img, c2)
    return linear(f, sd, "head")


def _shift_pos(sd):
    sd = OrderedDict(sd)
    p = sd["pos_embed"]
    sd["pos_embed"] = torch.cat([p[:, 1:], p[:, :1]], 1)
    return sd


# ----------------------------------------------------------------------------------------------
# DINOv2 (original facebookresearch names)
def dinov2_state(g, c, M):
    D, P = c["dim"], c["patch_size"]
    Fh = int(D * c["mlp_ratio"])
    sd = OrderedDict()
    sd["cls_token"] = g.randn(1, 1, D, std=0.2)
    sd["pos_embed"] = g.randn(1, 1 + M * M, D, std=0.2)
    if c["reg_tokens"]:
        sd["register_tokens"] = g.randn(1, c["reg_tokens"], D, std=0.2)
    sd["mask_token"] = g.randn(1, D, std=0.2)
    sd["patch_embed.proj.weight"] = g.randn(D, 3, P, P, std=0.8 / math.sqrt(3 * P * P))
    sd["patch_embed.proj.bias"] = g.randn(D, std=0.05)
    for i in range(c["depth"]):
        b = f"blocks.{i}."
        put_ln(sd, g, b + "norm1", D)
        put_lin(sd, g, b + "attn.qkv", 3 * D, D)
        put_lin(sd, g, b + "attn.proj", D, D)
        sd[b + "ls1.gamma"] = g.randn(D, std=0.3, mean=0.5)
        put_ln(sd, g, b + "norm2", D)
        put_lin(sd, g, b + "mlp.fc1", Fh, D)
        put_lin(sd, g, b + "mlp.fc2", D, Fh)
        sd[b + "ls2.gamma"] = g.randn(D, std=0.3, mean=0.5)
    put_ln(sd, g, "norm", D)
    return sd


def dinov2_pos(sd, w, h, P, offset, antialias):
    """DinoVisionTransformer.interpolate_pos_encoding for an image w x h (as the source names them)."""
    pos = sd["pos_embed"]
    N = pos.shape[1] - 1
    w0, h0 = w // P, h // P
    if w0 * h0 == N and w == h:
        return pos
    D = pos.shape[-1]
    M = int(math.sqrt(N))
    grid = pos[:, 1:].reshape(1, M, M, D).permute(0, 3, 1, 2)
    if offset:
        kw = dict(scale_factor=(float(w0 + offset) / M, float(h0 + offset) / M))
    else:
        kw = dict(size=(w0, h0))
    grid = F.interpolate(grid, mode="bicubic", antialias=antialias, **kw)
    assert grid.shape[-2:] == (w0, h0)
    return torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, D)], 1)


def dinov2_forward(sd, img, c, offset, antialias, reg_before_pos=False):
    B, _, w, h = img.shape
    x = patchify(img, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], c["patch_size"])
    x = torch.cat([sd["cls_token"].expand(B, -1, -1), x], 1)
    pos = dinov2_pos(sd, w, h, c["patch_size"], offset, antialias)
    if c["reg_tokens"] and reg_before_pos:  # mistake: registers inserted before pos-embed (would need 4 more rows)
        x = x + pos
        x = torch.cat([x[:, :1], sd["register_tokens"].expand(B, -1, -1) + pos[:, :1], x[:, 1:]], 1)
    else:
        x = x + pos
        if c["reg_tokens"]:
            x = torch.cat([x[:, :1], sd["register_tokens"].expand(B, -1, -1), x[:, 1:]], 1)
    eps = c["ln_eps"]
    for i in range(c["depth"]):
        b = f"blocks.{i}."
        h_ = ln(x, sd, b + "norm1", eps)
        x = x + linear(packed_attn(h_, sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"], c["heads"]), sd, b + "attn.proj") * sd[b + "ls1.gamma"]
        h_ = ln(x, sd, b + "norm2", eps)
        x = x + linear(gelu(linear(h_, sd, b + "mlp.fc1")), sd, b + "mlp.fc2") * sd[b + "ls2.gamma"]
    return ln(x, sd, "norm", eps)[:, 0]  # x_norm_clstoken


def _cubic(t, a):
    t = abs(t)
    if t <= 1:
        return ((a + 2) * t - (a + 3)) * t * t + 1
    if t < 2:
        return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return 0.0


def resize_matrix(n_in, n_out, scale, antialias):
    """The 1-D weights F.interpolate(mode='bicubic', align_corners=False) applies, written out so the C++
    side has the exact formula (checked against F.interpolate in dinov2_cases). scale = input/output
    step (n_in / n_out for size=, 1 / scale_factor for scale_factor=)."""
    W = torch.zeros(n_out, n_in, dtype=DT)
    for d in range(n_out):
        if not antialias:  # a = -0.75, 4 taps, indices clamped to the border
            src = (d + 0.5) * scale - 0.5
            f = math.floor(src)
            for k in range(-1, 3):
                W[d, min(max(f + k, 0), n_in - 1)] += _cubic(k - (src - f), -0.75)
        else:  # PIL-style: a = -0.5, support 2*max(scale,1), taps inside the image, weights normalised
            c = (d + 0.5) * scale
            sup, inv = 2.0 * max(scale, 1.0), 1.0 / max(scale, 1.0)
            lo, hi = max(int(c - sup + 0.5), 0), min(int(c + sup + 0.5), n_in)
            ws = [_cubic((j - c + 0.5) * inv, -0.5) for j in range(lo, hi)]
            for j, w in zip(range(lo, hi), ws):
                W[d, j] = w / sum(ws)
    return W


def dinov2_cases():
    train_size, eval_size, P = 48, 40, 8
    M = train_size // P
    w0 = eval_size // P
    grid = Gen("resize-check").randn(1, 5, M, M, std=1.0)
    for kw, W in ((dict(scale_factor=((w0 + 0.1) / M,) * 2), resize_matrix(M, w0, M / (w0 + 0.1), False)),
                  (dict(size=(w0, w0), antialias=True), resize_matrix(M, w0, M / w0, True))):
        err = (F.interpolate(grid, mode="bicubic", align_corners=False, **kw) - W @ grid @ W.T).abs().max().item()
        assert err < 1e-12, f"resize formula: {err}"
    dino_pre = preprocess(eval_size, "bicubic", 0.875, "center", IMAGENET_MEAN, IMAGENET_STD)
    for name, regs, offset, aa in (("dinov2", 0, 0.1, False), ("dinov2_reg", 4, 0.0, True)):
        c = vcfg(train_size, P, 64, 2 if not regs else 1, 1, 2.0, 0, reg_tokens=regs, layer_scale=True)
        g = Gen(name)
        sd = dinov2_state(g, c, M)
        img = images(g, 2, eval_size)
        out = dinov2_forward(sd, img, c, offset, aa)
        msgs = [differs(out, dinov2_forward(swap_qk_packed(sd, "blocks.0.attn.qkv.weight"), img, c, offset, aa), "q<->k swapped")]
        if offset:
            msgs.append(differs(out, dinov2_forward(sd, img, c, 0.0, False), "size=(w0,h0) instead of the 0.1 scale-factor offset"))
            msgs.append(differs(out, dinov2_forward(sd, img, c, offset, True), "antialias=True"))
            interp = ("interpolate_offset=0.1, interpolate_antialias=False (the plain dinov2_vit*14 hub backbones): "
                      "F.interpolate(grid [1,D,M,M], mode='bicubic', align_corners=False, antialias=False, "
                      "scale_factor=((w0+0.1)/M, (h0+0.1)/M)); the output size is floor(M*(w0+0.1)/M) = w0, but the "
                      "sampling uses that scale factor: src = (dst+0.5)*M/(w0+0.1) - 0.5 (NOT M/w0), taps floor(src)-1..floor(src)+2 "
                      "clamped to the border, cubic a=-0.75 (resize_matrix() in tools/reference/hub_reference.py)")
        else:
            msgs.append(differs(out, dinov2_forward(sd, img, c, 0.0, False), "antialias=False"))
            msgs.append(differs(out, dinov2_forward(sd, img, c, 0.1, False), "0.1 offset, no antialias (plain backbone rule)"))
            msgs.append(differs(out, dinov2_forward(sd, img, c, offset, aa, reg_before_pos=True), "registers given the cls pos row"))
            interp = ("interpolate_offset=0.0, interpolate_antialias=True (the dinov2_vit*14_reg hub backbones): "
                      "F.interpolate(grid [1,D,M,M], size=(w0,h0), mode='bicubic', align_corners=False, "
                      "antialias=True) - PyTorch's antialiased bicubic, separable, per output index d: s = M/w0, "
                      "c = (d+0.5)*s, support = 2*max(s,1), taps j in [max(int(c-support+0.5),0), "
                      "min(int(c+support+0.5),M)), weight cubic_{a=-0.5}((j-c+0.5)/max(s,1)), normalised to sum 1 "
                      "(resize_matrix() in tools/reference/hub_reference.py, checked against F.interpolate)")
        truth = OrderedDict(
            scheme="dinov2", config=c, preprocess=dino_pre, eval_image_size=eval_size,
            notes=("Original facebookresearch/dinov2 checkpoint names (no head, mask_token unused at inference, "
                   "blocks.i.* unchunked as in the hub weights). pos_embed [1, 1+M*M, D] with M = %d (trained at "
                   "%d px) while images are %d px (grid %d): the patch rows are resized with DINOv2's "
                   "interpolate_pos_encoding, the class row is kept. This case: %s. Tokens: cls + pos[0], patches "
                   "+ resized pos%s. Layer scale always (ls1/ls2.gamma), LayerNorm eps 1e-6, erf GELU, qkv bias. "
                   "features = x_norm_clstoken = norm(x)[:, 0]. No sidecar; preprocess = DINOv2's eval transform "
                   "(Resize(256, bicubic) + CenterCrop(224) -> crop_pct 0.875, ImageNet mean/std) at the eval size. "
                   "timm's own dinov2 port (_convert_dinov2) instead folds pos[0] into cls and uses timm's "
                   "resample_abs_pos_embed (antialias=True, size=) - not what this fixture follows." % (
                       M, train_size, eval_size, eval_size // P, interp,
                       "; then register_tokens [1,4,D] are inserted right after the cls token AFTER the pos-embed "
                       "add (registers get no position)" if regs else "")))
        write_case(name, sd, truth, OrderedDict(images=img, features=out))
        print(f"{name}: features {tuple(out.shape)}; " + "; ".join(msgs))


# ----------------------------------------------------------------------------------------------
# torchvision (the real library)
def torchvision_cases():
    from torchvision.models.vision_transformer import VisionTransformer
    for name, heads in (("torchvision", 1), ("torchvision_heads2", 2)):
        g = Gen(name)
        m = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=heads, hidden_dim=64, mlp_dim=128,
                              num_classes=5)
        sd = OrderedDict()
        for k, v in m.state_dict().items():
            if k.endswith(("ln_1.weight", "ln_2.weight", "encoder.ln.weight")):
                sd[k] = g.randn(*v.shape, std=0.1, mean=1.0)
            elif k in ("class_token", "encoder.pos_embedding"):
                sd[k] = g.randn(*v.shape, std=0.2)
            elif v.dim() >= 2:
                fan_in = v[0].numel()
                sd[k] = g.randn(*v.shape, std=0.8 / math.sqrt(fan_in))
            else:
                sd[k] = g.randn(*v.shape, std=0.05)
        m.load_state_dict({k: v.float() for k, v in sd.items()})
        m = m.double().eval()
        img = images(g, 2, 32)
        with torch.no_grad():
            real = m(img)
        c = vcfg(32, 8, 64, 2, heads, 2.0, 5)
        mine = tv_forward(sd, img, c)
        err = (mine - real).abs().max().item()
        assert err < 1e-9, f"{name}: our forward vs torchvision {err}"
        other = tv_forward(sd, img, dict(c, heads=3 - heads))
        msgs = [differs(real, other, f"heads {3 - heads} instead of {heads}"),
                differs(real, tv_forward(swap_qk_packed(sd, "encoder.layers.encoder_layer_0.self_attention.in_proj_weight"), img, c), "q<->k swapped")]
        truth = OrderedDict(
            scheme="torchvision", config=c,
            preprocess=preprocess(32, "bilinear", 0.875, "center", IMAGENET_MEAN, IMAGENET_STD),
            eval_image_size=32,
            notes=("Real torchvision 0.14 VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=%d, "
                   "hidden_dim=64, mlp_dim=128, num_classes=5) state_dict and eval outputs: conv_proj (with bias), "
                   "class_token [1,1,D], encoder.pos_embedding [1,1+N,D] (cls row included, concat then add), "
                   "encoder.layers.encoder_layer_i.{ln_1, self_attention.in_proj_weight/in_proj_bias (packed q,k,v "
                   "rows), self_attention.out_proj, ln_2, mlp.0 (fc1), mlp.3 (fc2)}, encoder.ln, heads.head; "
                   "LayerNorm eps 1e-6, erf GELU, x[:, 0] -> heads.head. Nothing in the file gives the head count%s. "
                   "preprocess = the torchvision ViT weights' transforms (ImageClassification: Resize(256, "
                   "bilinear) + CenterCrop(224) -> crop_pct 0.875, ImageNet mean/std) scaled to S." % (
                       heads, " (torchvision's vit_b_*/l_* builders use dim/64; here 1 = 64/64)" if heads == 1 else
                       ": 2 != dim/64, so the C++ side needs a --heads 2 override (without it heads=1 gives wrong "
                       "logits)")))
        write_case(name, sd, truth, OrderedDict(images=img, logits=real))
        print(f"{name}: logits {tuple(real.shape)} (ours vs torchvision {err:.1e}); " + "; ".join(msgs))


def tv_forward(sd, img, c):
    eps = 1e-6
    x = patchify(img, sd["conv_proj.weight"], sd["conv_proj.bias"], c["patch_size"])
    x = torch.cat([sd["class_token"].expand(x.shape[0], -1, -1), x], 1) + sd["encoder.pos_embedding"]
    for i in range(c["depth"]):
        b = f"encoder.layers.encoder_layer_{i}."
        h = ln(x, sd, b + "ln_1", eps)
        x = x + linear(packed_attn(h, sd[b + "self_attention.in_proj_weight"], sd[b + "self_attention.in_proj_bias"], c["heads"]), sd, b + "self_attention.out_proj")
        h = ln(x, sd, b + "ln_2", eps)
        x = x + linear(gelu(linear(h, sd, b + "mlp.0")), sd, b + "mlp.3")
    x = ln(x, sd, "encoder.ln", eps)
    return linear(x[:, 0], sd, "heads.head")


# ----------------------------------------------------------------------------------------------
# Hugging Face transformers ViT
def hf_vit_state(g, c, prefix, pooler):
    D, P, S = c["dim"], c["patch_size"], c["image_size"]
    N = (S // P) ** 2
    Fh = int(D * c["mlp_ratio"])
    sd = OrderedDict()
    e = prefix + "embeddings."
    sd[e + "cls_token"] = g.randn(1, 1, D, std=0.2)
    sd[e + "position_embeddings"] = g.randn(1, N + 1, D, std=0.2)
    sd[e + "patch_embeddings.projection.weight"] = g.randn(D, 3, P, P, std=0.8 / math.sqrt(3 * P * P))
    sd[e + "patch_embeddings.projection.bias"] = g.randn(D, std=0.05)
    for i in range(c["depth"]):
        b = f"{prefix}encoder.layer.{i}."
        for n in ("query", "key", "value"):
            put_lin(sd, g, b + "attention.attention." + n, D, D)
        put_lin(sd, g, b + "attention.output.dense", D, D)
        put_lin(sd, g, b + "intermediate.dense", Fh, D)
        put_lin(sd, g, b + "output.dense", D, Fh)
        put_ln(sd, g, b + "layernorm_before", D)
        put_ln(sd, g, b + "layernorm_after", D)
    put_ln(sd, g, prefix + "layernorm", D)
    if pooler:
        put_lin(sd, g, "pooler.dense", D, D)
    if c["num_classes"]:
        put_lin(sd, g, "classifier", c["num_classes"], D)
    return sd


def hf_vit_forward(sd, img, c, prefix, eps=None, swap_qk=False):
    eps = c["ln_eps"] if eps is None else eps
    e = prefix + "embeddings."
    x = patchify(img, sd[e + "patch_embeddings.projection.weight"], sd[e + "patch_embeddings.projection.bias"], c["patch_size"])
    x = torch.cat([sd[e + "cls_token"].expand(x.shape[0], -1, -1), x], 1) + sd[e + "position_embeddings"]
    for i in range(c["depth"]):
        b = f"{prefix}encoder.layer.{i}."
        h = ln(x, sd, b + "layernorm_before", eps)
        q, k, v = (linear(h, sd, b + "attention.attention." + n) for n in ("query", "key", "value"))
        if swap_qk:
            q, k = k, q
        x = x + linear(attend(q, k, v, c["heads"]), sd, b + "attention.output.dense")
        h = ln(x, sd, b + "layernorm_after", eps)
        x = x + linear(gelu(linear(h, sd, b + "intermediate.dense")), sd, b + "output.dense")
    x = ln(x, sd, prefix + "layernorm", eps)[:, 0]
    return linear(x, sd, "classifier") if c["num_classes"] else x


def hf_vit_config(c, arch, id2label=None):
    cfg = OrderedDict(
        _name_or_path="fixture/" + arch.lower(), architectures=[arch], attention_probs_dropout_prob=0.0,
        encoder_stride=c["patch_size"], hidden_act="gelu", hidden_dropout_prob=0.0, hidden_size=c["dim"])
    if id2label:
        cfg["id2label"] = OrderedDict((str(i), n) for i, n in enumerate(id2label))
    cfg.update(image_size=c["image_size"], initializer_range=0.02, intermediate_size=int(c["dim"] * c["mlp_ratio"]))
    if id2label:
        cfg["label2id"] = OrderedDict((n, i) for i, n in enumerate(id2label))
    cfg.update(layer_norm_eps=1e-12, model_type="vit", num_attention_heads=c["heads"], num_channels=3,
               num_hidden_layers=c["depth"], patch_size=c["patch_size"], qkv_bias=True, torch_dtype="float32",
               transformers_version="4.40.0")
    return cfg


def hf_vit_cases():
    # 12. classifier
    name = "hf_vit_classifier"
    c = vcfg(32, 8, 48, 2, 3, 2.0, 5, ln_eps=1e-12)
    g = Gen(name)
    sd = hf_vit_state(g, c, "vit.", pooler=False)
    img = images(g, 2, 32)
    out = hf_vit_forward(sd, img, c, "vit.")
    msgs = [differs(out, hf_vit_forward(sd, img, c, "vit.", swap_qk=True), "query<->key swapped"),
            differs(out, hf_vit_forward(sd, img, dict(c, heads=1), "vit."), "heads 1 (dim/64) instead of 3")]
    pp = OrderedDict(do_normalize=True, do_rescale=True, do_resize=True, image_mean=[0.5, 0.5, 0.5],
                     image_processor_type="ViTImageProcessor", image_std=[0.5, 0.5, 0.5], resample=2,
                     rescale_factor=0.00392156862745098, size=OrderedDict(height=32, width=32))
    truth = OrderedDict(
        scheme="hf_vit", config=c, preprocess=preprocess(32, "bilinear", 1.0, "squash", [0.5] * 3, [0.5] * 3),
        class_names=LABELS5, eval_image_size=32,
        notes=("transformers ViTForImageClassification names (vit. prefix, no pooler): separate "
               "attention.attention.{query,key,value} Linear layers (concatenate q,k,v for a packed qkv), "
               "attention.output.dense, layernorm_before (pre-attention), intermediate.dense (fc1), output.dense "
               "(fc2), layernorm_after (pre-MLP), vit.layernorm, classifier on layernorm(x)[:, 0]. LayerNorm eps "
               "from config.json layer_norm_eps = 1e-12 (not 1e-6); hidden_act 'gelu' = erf GELU; heads from "
               "num_attention_heads (3 != dim/64). Class names from id2label. preprocessor_config.json: "
               "ViTImageProcessor resize to size {height, width} with resample 2 (bilinear) and no crop = a "
               "'squash' resize, mean/std 0.5."))
    write_case(name, sd, truth, OrderedDict(images=img, logits=out),
               {"config.json": hf_vit_config(c, "ViTForImageClassification", LABELS5), "preprocessor_config.json": pp})
    print(f"{name}: logits {tuple(out.shape)}; " + "; ".join(msgs))

    # 13. bare ViTModel with pooler
    name = "hf_vit_model"
    c = vcfg(32, 8, 32, 2, 2, 4.0, 0, ln_eps=1e-12)
    g = Gen(name)
    sd = hf_vit_state(g, c, "", pooler=True)
    img = images(g, 2, 32)
    out = hf_vit_forward(sd, img, c, "")
    pooled = torch.tanh(linear(out, sd, "pooler.dense"))
    msgs = [differs(out, hf_vit_forward(sd, img, c, "", swap_qk=True), "query<->key swapped"),
            differs(out, pooled, "pooler output instead of the layernormed CLS")]
    truth = OrderedDict(
        scheme="hf_vit", config=c, eval_image_size=32,
        notes=("transformers ViTModel names (no 'vit.' prefix: embeddings.*, encoder.layer.N.*, layernorm.*) with "
               "pooler.dense.* (ViTPooler: tanh(dense(x[:, 0]))). features = layernorm(x)[:, 0], the CLS token "
               "after the final layernorm; the pooler is NOT part of the features (it is what a "
               "ViTForImageClassification would NOT use either), so pooler.dense.* is to be ignored. LayerNorm eps "
               "1e-12 (config.json layer_norm_eps); heads 2 from num_attention_heads. No preprocessor_config.json: "
               "no preprocess is defined."))
    write_case(name, sd, truth, OrderedDict(images=img, features=out), {"config.json": hf_vit_config(c, "ViTModel")})
    print(f"{name}: features {tuple(out.shape)}; " + "; ".join(msgs))


# ----------------------------------------------------------------------------------------------
# CLIP: transformers CLIPModel and OpenAI / open_clip
def make_tokens(g, K, T, vocab):
    toks = torch.zeros(K, T, dtype=torch.int64)
    lens = [3, 6, 9][:K]
    for r in range(K):
        n = lens[r % len(lens)]
        ids = (torch.rand(n, generator=g.g) * (vocab - 3)).long() + 1
        row = [vocab - 2] + ids.tolist() + [vocab - 1]
        toks[r, :len(row)] = torch.tensor(row)
    return toks


def hf_clip_state(g, vc, tc, E):
    sd = OrderedDict()
    Dt, Dv, P, S = tc["width"], vc["dim"], vc["patch_size"], vc["image_size"]
    N = (S // P) ** 2

    def layers(prefix, D, depth, Fh):
        for i in range(depth):
            b = f"{prefix}encoder.layers.{i}."
            for n in ("k_proj", "v_proj", "q_proj", "out_proj"):
                put_lin(sd, g, b + "self_attn." + n, D, D)
            put_ln(sd, g, b + "layer_norm1", D)
            put_lin(sd, g, b + "mlp.fc1", Fh, D)
            put_lin(sd, g, b + "mlp.fc2", D, Fh)
            put_ln(sd, g, b + "layer_norm2", D)

    sd["text_model.embeddings.position_ids"] = torch.arange(tc["context_length"]).reshape(1, -1)
    sd["text_model.embeddings.token_embedding.weight"] = g.randn(tc["vocab_size"], Dt, std=0.2)
    sd["text_model.embeddings.position_embedding.weight"] = g.randn(tc["context_length"], Dt, std=0.2)
    layers("text_model.", Dt, tc["layers"], 4 * Dt)
    put_ln(sd, g, "text_model.final_layer_norm", Dt)
    sd["vision_model.embeddings.position_ids"] = torch.arange(N + 1).reshape(1, -1)
    sd["vision_model.embeddings.class_embedding"] = g.randn(Dv, std=0.2)
    sd["vision_model.embeddings.patch_embedding.weight"] = g.randn(Dv, 3, P, P, std=0.8 / math.sqrt(3 * P * P))
    sd["vision_model.embeddings.position_embedding.weight"] = g.randn(N + 1, Dv, std=0.2)
    put_ln(sd, g, "vision_model.pre_layrnorm", Dv)
    layers("vision_model.", Dv, vc["depth"], int(Dv * vc["mlp_ratio"]))
    put_ln(sd, g, "vision_model.post_layernorm", Dv)
    sd["visual_projection.weight"] = g.lin(E, Dv)
    sd["text_projection.weight"] = g.lin(E, Dt)
    sd["logit_scale"] = torch.tensor(math.log(1 / 0.07), dtype=torch.float32).to(DT)
    return sd


def hf_clip_encoder(sd, x, prefix, depth, heads, act, eps, causal, swap_qk=False):
    for i in range(depth):
        b = f"{prefix}encoder.layers.{i}."
        h = ln(x, sd, b + "layer_norm1", eps)
        q, k, v = (linear(h, sd, b + "self_attn." + n) for n in ("q_proj", "k_proj", "v_proj"))
        if swap_qk:
            q, k = k, q
        x = x + linear(attend(q, k, v, heads, causal), sd, b + "self_attn.out_proj")
        h = ln(x, sd, b + "layer_norm2", eps)
        x = x + linear(act(linear(h, sd, b + "mlp.fc1")), sd, b + "mlp.fc2")
    return x


def hf_clip_forward(sd, img, toks, vc, tc, act=quick_gelu, swap_qk=False, pool_last=False):
    eps = 1e-5
    e = "vision_model.embeddings."
    x = patchify(img, sd[e + "patch_embedding.weight"], None, vc["patch_size"])
    x = torch.cat([sd[e + "class_embedding"].reshape(1, 1, -1).expand(x.shape[0], -1, -1), x], 1)
    x = x + sd[e + "position_embedding.weight"][sd[e + "position_ids"][0]]
    x = ln(x, sd, "vision_model.pre_layrnorm", eps)
    x = hf_clip_encoder(sd, x, "vision_model.", vc["depth"], vc["heads"], act, eps, False, swap_qk)
    x = ln(x[:, 0], sd, "vision_model.post_layernorm", eps)
    img_f = linear(x, sd, "visual_projection")
    t = sd["text_model.embeddings.token_embedding.weight"][toks]
    t = t + sd["text_model.embeddings.position_embedding.weight"][: toks.shape[1]]
    t = hf_clip_encoder(sd, t, "text_model.", tc["layers"], tc["heads"], act, eps, True, swap_qk)
    t = ln(t, sd, "text_model.final_layer_norm", eps)
    idx = toks.argmax(-1) if not pool_last else torch.full((toks.shape[0],), toks.shape[1] - 1)
    txt_f = linear(t[torch.arange(toks.shape[0]), idx], sd, "text_projection")
    return img_f, txt_f


def openai_clip_state(g, vc, tc, E, jit_extras=False):
    sd = OrderedDict()
    Dt, Dv, P, S = tc["width"], vc["dim"], vc["patch_size"], vc["image_size"]
    N = (S // P) ** 2

    def resblocks(prefix, D, depth, Fh):
        for i in range(depth):
            b = f"{prefix}transformer.resblocks.{i}."
            sd[b + "attn.in_proj_weight"] = g.lin(3 * D, D)
            sd[b + "attn.in_proj_bias"] = g.randn(3 * D, std=0.05)
            put_lin(sd, g, b + "attn.out_proj", D, D)
            put_ln(sd, g, b + "ln_1", D)
            put_lin(sd, g, b + "mlp.c_fc", Fh, D)
            put_lin(sd, g, b + "mlp.c_proj", D, Fh)
            put_ln(sd, g, b + "ln_2", D)

    sd["positional_embedding"] = g.randn(tc["context_length"], Dt, std=0.2)
    sd["text_projection"] = g.randn(Dt, E, std=0.8 / math.sqrt(Dt))
    sd["logit_scale"] = torch.tensor(math.log(1 / 0.07), dtype=torch.float32).to(DT)
    if jit_extras:  # OpenAI's JIT archives carry these; clip.model.build_model deletes them
        sd["input_resolution"] = torch.tensor(S, dtype=torch.int64)
        sd["context_length"] = torch.tensor(tc["context_length"], dtype=torch.int64)
        sd["vocab_size"] = torch.tensor(tc["vocab_size"], dtype=torch.int64)
    sd["visual.class_embedding"] = g.randn(Dv, std=0.2)
    sd["visual.positional_embedding"] = g.randn(N + 1, Dv, std=0.2)
    sd["visual.proj"] = g.randn(Dv, E, std=0.8 / math.sqrt(Dv))
    sd["visual.conv1.weight"] = g.randn(Dv, 3, P, P, std=0.8 / math.sqrt(3 * P * P))
    put_ln(sd, g, "visual.ln_pre", Dv)
    resblocks("visual.", Dv, vc["depth"], int(Dv * vc["mlp_ratio"]))
    put_ln(sd, g, "visual.ln_post", Dv)
    resblocks("", Dt, tc["layers"], 4 * Dt)
    sd["token_embedding.weight"] = g.randn(tc["vocab_size"], Dt, std=0.2)
    put_ln(sd, g, "ln_final", Dt)
    return sd


def openai_resblocks(sd, x, prefix, depth, heads, act, causal, swap_qk=False):
    eps = 1e-5
    for i in range(depth):
        b = f"{prefix}transformer.resblocks.{i}."
        h = ln(x, sd, b + "ln_1", eps)
        w, bb = sd[b + "attn.in_proj_weight"], sd[b + "attn.in_proj_bias"]
        D = x.shape[-1]
        qkv = F.linear(h, w, bb)
        q, k, v = qkv[..., :D], qkv[..., D:2 * D], qkv[..., 2 * D:]
        if swap_qk:
            q, k = k, q
        x = x + linear(attend(q, k, v, heads, causal), sd, b + "attn.out_proj")
        h = ln(x, sd, b + "ln_2", eps)
        x = x + linear(act(linear(h, sd, b + "mlp.c_fc")), sd, b + "mlp.c_proj")
    return x


def openai_clip_forward(sd, img, toks, vc, tc, act, swap_qk=False, vheads=None):
    eps = 1e-5
    x = patchify(img, sd["visual.conv1.weight"], None, vc["patch_size"])
    x = torch.cat([sd["visual.class_embedding"].reshape(1, 1, -1).expand(x.shape[0], -1, -1), x], 1)
    x = ln(x + sd["visual.positional_embedding"], sd, "visual.ln_pre", eps)
    x = openai_resblocks(sd, x, "visual.", vc["depth"], vheads or vc["heads"], act, False, swap_qk)
    img_f = ln(x, sd, "visual.ln_post", eps)[:, 0] @ sd["visual.proj"]  # open_clip: ln_post then pool 'tok'
    t = sd["token_embedding.weight"][toks] + sd["positional_embedding"][: toks.shape[1]]
    t = openai_resblocks(sd, t, "", tc["layers"], tc["heads"], act, True, swap_qk)
    t = ln(t, sd, "ln_final", eps)
    txt_f = t[torch.arange(toks.shape[0]), toks.argmax(-1)] @ sd["text_projection"]
    return img_f, txt_f


def clip_truth(scheme, vc, tc, E, pre, notes):
    return OrderedDict(scheme=scheme, config=vc, text=tc, embed_dim=E, preprocess=pre,
                       eval_image_size=vc["image_size"], notes=notes)


def clip_cases():
    K = 3
    # 14. transformers CLIPModel
    name = "hf_clip"
    vc = vcfg(32, 8, 48, 2, 3, 4.0, 0, act="quick_gelu", ln_eps=1e-5, norm_pre=True, qkv_bias=True)
    tc = OrderedDict(vocab_size=1000, context_length=16, width=32, layers=2, heads=2)
    E = 24
    g = Gen(name)
    sd = hf_clip_state(g, vc, tc, E)
    img = images(g, 2, 32)
    toks = make_tokens(g, K, tc["context_length"], tc["vocab_size"])
    fi, ft = hf_clip_forward(sd, img, toks, vc, tc)
    msgs = []
    for what, kw in (("q<->k swapped", dict(swap_qk=True)), ("erf GELU instead of quick_gelu", dict(act=gelu)),
                     ("text pooled at the last position", dict(pool_last=True))):
        a, b = hf_clip_forward(sd, img, toks, vc, tc, **kw)
        msgs.append(differs(torch.cat([fi.flatten(), ft.flatten()]), torch.cat([a.flatten(), b.flatten()]), what))

    def sub(D, H, L, I, extra):
        d = OrderedDict(attention_dropout=0.0, hidden_act="quick_gelu", hidden_size=D, initializer_factor=1.0,
                        initializer_range=0.02, intermediate_size=I, layer_norm_eps=1e-05)
        d.update(extra)
        d.update(num_attention_heads=H, num_hidden_layers=L, projection_dim=E)
        return d

    cfg = OrderedDict(
        _name_or_path="fixture/clip-vit-tiny-patch8", architectures=["CLIPModel"], initializer_factor=1.0,
        logit_scale_init_value=2.6592, model_type="clip", projection_dim=E,
        text_config=sub(32, 2, 2, 128, OrderedDict(bos_token_id=0, eos_token_id=2, max_position_embeddings=16,
                                                  model_type="clip_text_model", pad_token_id=1, vocab_size=1000)),
        torch_dtype="float32", transformers_version="4.40.0",
        vision_config=sub(48, 3, 2, 192, OrderedDict(image_size=32, model_type="clip_vision_model", num_channels=3,
                                                    patch_size=8)))
    pp = OrderedDict(crop_size=OrderedDict(height=32, width=32), do_center_crop=True, do_convert_rgb=True,
                     do_normalize=True, do_rescale=True, do_resize=True, image_mean=CLIP_MEAN,
                     image_processor_type="CLIPImageProcessor", image_std=CLIP_STD, resample=3,
                     rescale_factor=0.00392156862745098, size=OrderedDict(shortest_edge=32))
    truth = clip_truth("hf_clip", vc, tc, E, preprocess(32, "bicubic", 1.0, "center", CLIP_MEAN, CLIP_STD),
                       "transformers CLIPModel names. Vision: class_embedding [D] (a vector), patch_embedding conv "
                       "WITHOUT bias, position_embedding.weight [1+N, D] (nn.Embedding), pre_layrnorm (sic) after the "
                       "embeddings, encoder.layers.N.{self_attn.{q,k,v,out}_proj (separate, with bias), layer_norm1, "
                       "mlp.fc1, mlp.fc2, layer_norm2}, post_layernorm applied to x[:, 0] only, visual_projection "
                       "[E, Dv] without bias. Text: token_embedding + position_embedding[:T], causal mask, no padding "
                       "mask, final_layer_norm, pooled at input_ids.argmax(-1) (config eos_token_id == 2: the legacy "
                       "rule; EOT = vocab-1 is each row's largest id), text_projection [E, Dt] without bias. "
                       "hidden_act quick_gelu (x*sigmoid(1.702x)) in both towers, LayerNorm eps 1e-5. *.position_ids "
                       "are I64 buffers (old checkpoints carry them): ignore. logit_scale 0-d (log value); "
                       "image_features / text_features are the raw projections (unnormalised). Heads from "
                       "num_attention_heads (vision 3, text 2). preprocessor: CLIPImageProcessor resize "
                       "shortest_edge 32 bicubic (resample 3) + center crop 32, CLIP mean/std.")
    write_case(name, sd, truth,
               OrderedDict(images=img, tokens=toks, image_features=fi, text_features=ft, features=fi,
                           logit_scale=sd["logit_scale"]),
               {"config.json": cfg, "preprocessor_config.json": pp})
    print(f"{name}: image {tuple(fi.shape)} text {tuple(ft.shape)}; " + "; ".join(msgs))

    # 15. open_clip (OpenAI names) with open_clip_config.json, plain GELU; and openai_clip without sidecar
    for name, quick, sidecar in (("open_clip", False, True), ("openai_clip", True, False)):
        if sidecar:
            vc = vcfg(32, 8, 64, 2, 2, 2.0, 0, act="gelu", ln_eps=1e-5, norm_pre=True)
            tc = OrderedDict(vocab_size=1000, context_length=16, width=32, layers=2, heads=2)
        else:
            vc = vcfg(32, 8, 64, 1, 1, 4.0, 0, act="quick_gelu", ln_eps=1e-5, norm_pre=True)
            tc = OrderedDict(vocab_size=500, context_length=16, width=64, layers=1, heads=1)
        E = 24
        g = Gen(name)
        sd = openai_clip_state(g, vc, tc, E, jit_extras=not sidecar)
        img = images(g, 2, 32)
        toks = make_tokens(g, K, tc["context_length"], tc["vocab_size"])
        act = quick_gelu if quick else gelu
        fi, ft = openai_clip_forward(sd, img, toks, vc, tc, act)
        both = lambda a, b: torch.cat([a.flatten(), b.flatten()])
        msgs = [differs(both(fi, ft), both(*openai_clip_forward(sd, img, toks, vc, tc, act, swap_qk=True)), "q<->k swapped"),
                differs(both(fi, ft), both(*openai_clip_forward(sd, img, toks, vc, tc, gelu if quick else quick_gelu)),
                        "the other GELU")]
        if sidecar:
            msgs.append(differs(fi, openai_clip_forward(sd, img, toks, vc, tc, act, vheads=1)[0],
                                "vision heads width//64 = 1 instead of width//head_width = 2"))
            side = {"open_clip_config.json": OrderedDict(
                model_cfg=OrderedDict(
                    embed_dim=E, quick_gelu=False,
                    vision_cfg=OrderedDict(image_size=32, layers=2, width=64, head_width=32, mlp_ratio=2.0, patch_size=8),
                    text_cfg=OrderedDict(context_length=16, vocab_size=1000, width=32, heads=2, layers=2)),
                preprocess_cfg=OrderedDict(mean=CLIP_MEAN, std=CLIP_STD, interpolation="bicubic",
                                           resize_mode="shortest"))}
            pre = preprocess(32, "bicubic", 1.0, "center", CLIP_MEAN, CLIP_STD)
            notes = ("open_clip checkpoint in OpenAI names, with open_clip_config.json as push_to_hf_hub writes it. "
                     "quick_gelu false: plain erf GELU (open_clip's LAION models). Vision heads = width // head_width "
                     "= 64 // 32 = 2 (head_width defaults to 64 when absent); text heads from text_cfg.heads; vision "
                     "MLP width = mlp_ratio 2.0 x width (default 4.0), text MLP 4 x width. preprocess_cfg: resize_mode 'shortest' + "
                     "interpolation bicubic = resize the short side to image_size then center crop (crop_pct 1.0). ")
        else:
            side, pre = None, preprocess(32, "bicubic", 1.0, "center", CLIP_MEAN, CLIP_STD)
            notes = ("OpenAI CLIP state dict without sidecar: as openai/CLIP build_model infers it - vision width "
                     "from visual.conv1, patch from its kernel, grid from visual.positional_embedding, layers by "
                     "counting resblocks, vision heads = width // 64 = 1, text width from ln_final, text heads = "
                     "width // 64 = 1, context from positional_embedding, vocab from token_embedding, embed_dim from "
                     "text_projection; QuickGELU always. The file also carries the I64 0-d scalars input_resolution, "
                     "context_length and vocab_size that OpenAI's JIT archives hold (build_model deletes them): "
                     "ignore them. preprocess = OpenAI's _transform: Resize(S, bicubic) + CenterCrop(S), CLIP "
                     "mean/std. ")
        notes += ("Layout: visual.conv1 (no bias), visual.class_embedding [D], visual.positional_embedding [1+N, D] "
                  "(2-D, cls row first), visual.ln_pre, visual.transformer.resblocks.N.{ln_1, attn.in_proj_weight "
                  "[3D, D] packed q,k,v rows, attn.in_proj_bias, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}, "
                  "visual.ln_post on x[:, 0], visual.proj [D, E] used as x @ proj (no transpose, no bias); text: "
                  "token_embedding + positional_embedding[:T], causal mask, ln_final, pooled at tokens.argmax(-1), "
                  "@ text_projection [W, E]. LayerNorm eps 1e-5. logit_scale 0-d log value; features unnormalised.")
        truth = clip_truth("open_clip", vc, tc, E, pre, notes)
        write_case(name, sd, truth,
                   OrderedDict(images=img, tokens=toks, image_features=fi, text_features=ft, features=fi,
                               logit_scale=sd["logit_scale"]), side)
        print(f"{name}: image {tuple(fi.shape)} text {tuple(ft.shape)}; " + "; ".join(msgs))


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    timm_cases()
    torchvision_cases()
    hf_vit_cases()
    dinov2_cases()
    clip_cases()
    total = 0
    for root, _, files in os.walk(OUT):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    print(f"total {total / 1e6:.2f} MB")
    assert total < 6e6


if __name__ == "__main__":
    main()
