// Reading hub checkpoints in their own naming: scheme detection, name mapping, config inference
// and sidecar files. Each scheme's mapping is written from its library's module tree (timm
// vision_transformer.py, dinov2 vision_transformer.py, torchvision vision_transformer.py,
// transformers modeling_vit.py / modeling_clip.py, open_clip model.py).
#include "nn/pretrained.h"

#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "autograd/ops.h"
#include "core/error.h"
#include "core/small_file.h"
#include "nn/checkpoint.h"
#include "nn/pos_embed.h"

namespace peft::nn {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using TensorMap = std::map<std::string, Tensor>;

// ------------------------------------------------------------------ small helpers

bool has(const TensorMap& sd, const std::string& n) { return sd.count(n) > 0; }

int64_t exact_sqrt(int64_t n) {
  if (n <= 0) return -1;
  const int64_t g = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
  return g * g == n ? g : -1;
}

// The number of indexed entries prefix{i}suffix, i = 0, 1, ... (contiguous from 0).
int64_t count_indexed(const TensorMap& sd, const std::string& prefix, const std::string& suffix) {
  int64_t n = 0;
  while (has(sd, prefix + std::to_string(n) + suffix)) ++n;
  return n;
}

std::string scheme_title(const std::string& s) {
  static const std::map<std::string, std::string> t = {
      {"peft", "peft"}, {"timm", "timm"}, {"dinov2", "DINOv2"}, {"torchvision", "torchvision"},
      {"hf_vit", "Hugging Face ViT"}, {"hf_clip", "Hugging Face CLIP"}, {"open_clip", "OpenAI/open_clip CLIP"},
      {"openai_visual", "OpenAI CLIP visual"}};
  auto it = t.find(s);
  return it == t.end() ? s : it->second;
}

// Builds one-line errors: "<file>: looks like a <scheme> checkpoint, but <what>".
struct Reader {
  std::string path, scheme;
  [[noreturn]] void fail(const std::string& what) const {
    throw IOError(fmt::format("{}: looks like a {} checkpoint, but {}", path, scheme_title(scheme), what));
  }
  const Tensor& need(const TensorMap& sd, const std::string& n, int64_t dims = -1) const {
    auto it = sd.find(n);
    if (it == sd.end()) fail(fmt::format("it has no tensor '{}'", n));
    if (dims >= 0 && it->second.dim() != dims)
      fail(fmt::format("'{}' has shape {} (expected {} dims)", n, shape_str(it->second.sizes()), dims));
    return it->second;
  }
};

std::optional<json> read_json(const fs::path& p) {
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) return std::nullopt;
  const std::string text = read_small_file(p.string(), "config", kMaxConfigBytes);  // bounded (issue 20)
  try {
    json j = json::parse(text, nullptr, true, /*ignore_comments=*/true);
    if (!j.is_object()) throw IOError(fmt::format("{}: expected a JSON object", p.string()));
    return j;
  } catch (const json::exception& e) {
    throw IOError(fmt::format("{}: invalid JSON ({})", p.string(), e.what()));
  }
}

// Reads a sidecar value, turning a type error into one line naming the file and key.
template <typename T>
T get(const json& j, const char* key, const T& dflt, const std::string& file) {
  if (!j.contains(key) || j[key].is_null()) return dflt;
  try {
    return j[key].get<T>();
  } catch (const json::exception&) {
    throw IOError(fmt::format("{}: '{}' has the wrong type ({})", file, key, j[key].dump().substr(0, 40)));
  }
}

std::array<float, 3> three(const json& v, const std::string& what) {
  std::array<float, 3> out{};
  if (v.is_number()) {  // Hugging Face allows one value for every channel
    out.fill(v.get<float>());
    return out;
  }
  if (!v.is_array() || v.size() != 3 || !v[0].is_number() || !v[1].is_number() || !v[2].is_number())
    throw IOError(fmt::format("{}: expected 3 numbers, got {}", what, v.dump().substr(0, 60)));
  for (size_t i = 0; i < 3; ++i) out[i] = v[i].get<float>();
  return out;
}

data::Preprocess preprocess_of(const std::string& interpolation, double crop_pct, const std::string& mode,
                               data::Normalization norm, const std::string& source) {
  data::Preprocess p;
  p.interpolation = interpolation;
  p.crop_pct = crop_pct;
  p.crop_mode = mode;
  p.norm = norm;
  p.source = source;
  return p;
}

data::Normalization norm_of(std::array<float, 3> mean, std::array<float, 3> std) {
  data::Normalization n;
  n.mean = mean;
  n.std = std;
  return n;
}

const std::array<float, 3> kHalf{0.5f, 0.5f, 0.5f};

// Heads of the well-known widths whose head dim is not 64 (ViT-H/14: 1280 / 16 = 80, ViT-g/14
// 1408 / 16 = 88, ViT-bigG/14 1664 / 16 = 104); every other ViT of timm, torchvision, DINOv2 and
// CLIP uses 64-wide heads.
int64_t default_heads(int64_t dim) {
  if (dim == 1280 || dim == 1408 || dim == 1664) return 16;
  return dim % 64 == 0 ? dim / 64 : 0;  // 0: unknown, the user is asked for --heads
}

// timm architecture names carry the size: vit_{tiny,small,base,large,huge,giant}_...
int64_t heads_from_timm_arch(const std::string& arch) {
  static const std::vector<std::pair<std::string, int64_t>> sizes = {
      {"_tiny_", 3}, {"_small_", 6}, {"_base_", 12}, {"_large_", 16}, {"_huge_", 16}, {"_giant_", 16}, {"_gigantic_", 16}};
  for (auto& [k, h] : sizes)
    if (arch.find(k) != std::string::npos) return h;
  return 0;
}

std::string interpolation_from_pil(int64_t resample) {
  switch (resample) {
    case 0: return "nearest";
    case 2: return "bilinear";
    case 3: return "bicubic";
    default: return "bicubic";  // LANCZOS (1), BOX (4), HAMMING (5): the closest we have
  }
}

// ------------------------------------------------------------------ scheme detection

std::string detect_scheme(const TensorMap& sd) {
  if (has(sd, "visual.conv1.weight")) return "open_clip";
  if (has(sd, "conv1.weight") && has(sd, "class_embedding")) return "openai_visual";
  if (has(sd, "vision_model.embeddings.patch_embedding.weight")) return "hf_clip";
  if (has(sd, "vit.embeddings.patch_embeddings.projection.weight") || has(sd, "embeddings.patch_embeddings.projection.weight"))
    return "hf_vit";
  if (has(sd, "conv_proj.weight") && has(sd, "encoder.pos_embedding")) return "torchvision";
  if (has(sd, "patch_embed.proj.weight")) {
    if (has(sd, "mask_token") || has(sd, "register_tokens")) return "dinov2";
    return "timm";
  }
  return "";
}

// Variants of the timm family that this ViT does not implement: one line each.
void refuse_unsupported_timm(const Reader& r, const TensorMap& sd) {
  auto any_with = [&](const std::string& part) {
    for (auto& [n, _] : sd)
      if (n.find(part) != std::string::npos) return true;
    return false;
  };
  if (has(sd, "dist_token") || any_with("head_dist."))
    r.fail("distilled DeiT (dist_token, head_dist) is not supported. Hint: use the non-distilled DeiT or another ViT");
  if (any_with(".attn.q_bias") || any_with(".attn.relative_position"))
    r.fail("BEiT-style attention (q_bias/v_bias, relative position bias) is not supported");
  if (any_with(".attn.q_norm.") || any_with(".attn.k_norm."))
    r.fail("attention with q/k normalisation (qk_norm) is not supported");
  if (any_with(".mlp.fc1_g.") || any_with(".mlp.w12.") || any_with(".mlp.w3."))
    r.fail("a SwiGLU MLP (fc1_g / w12) is not supported (e.g. DINOv2 ViT-g)");
  if (any_with("attn_pool.")) r.fail("an attention-pooling head (attn_pool, SigLIP) is not supported");
  if (any_with("head.fc.") || any_with("pre_logits.")) r.fail("a pre-logits layer before the head is not supported");
  if (any_with(".norm1.") == false) r.fail("its blocks have no norm1 (not a timm VisionTransformer)");
}

// ------------------------------------------------------------------ timm family (and this project's files)

// Infers the config of a state dict in timm names (blocks.i.attn.qkv ...).
ViTConfig infer_timm(const Reader& r, const TensorMap& sd, std::vector<std::string>& notes) {
  ViTConfig c;
  const Tensor& pe = r.need(sd, "patch_embed.proj.weight", 4);
  c.dim = pe.size(0);
  c.in_chans = pe.size(1);
  c.patch_size = pe.size(2);
  if (pe.size(3) != c.patch_size) r.fail(fmt::format("patch_embed.proj.weight {} has non-square patches", shape_str(pe.sizes())));
  c.depth = count_indexed(sd, "blocks.", ".norm1.weight");
  if (c.depth == 0) r.fail("it has no blocks.0.norm1.weight");
  const Tensor& fc1 = r.need(sd, "blocks.0.mlp.fc1.weight", 2);
  c.mlp_ratio = static_cast<double>(fc1.size(0)) / static_cast<double>(c.dim);
  c.class_token = has(sd, "cls_token");
  c.reg_tokens = has(sd, "reg_token") ? r.need(sd, "reg_token", 3).size(1) : 0;
  c.norm_pre = has(sd, "norm_pre.weight");
  c.layer_scale = has(sd, "blocks.0.ls1.gamma");
  c.fc_norm = has(sd, "fc_norm.weight") && !has(sd, "norm.weight");
  c.qkv_bias = has(sd, "blocks.0.attn.qkv.bias");
  const Tensor& pos = r.need(sd, "pos_embed", 3);
  const int64_t rows = pos.size(1), prefix = c.num_prefix_tokens();
  int64_t g = exact_sqrt(rows - prefix);
  // timm's register-token models embed the patches only (no_embed_class); a grid of the whole
  // row count with prefix tokens present means the same.
  if (prefix > 0 && exact_sqrt(rows) > 0 && (g < 0 || c.reg_tokens > 0)) {
    g = exact_sqrt(rows);
    c.no_embed_class = true;
  }
  if (g < 0)
    r.fail(fmt::format("pos_embed {} is not {} prefix rows + a square grid of patches", shape_str(pos.sizes()), prefix));
  c.image_size = g * c.patch_size;
  c.pool = c.class_token && !c.fc_norm ? "cls" : "mean";
  c.num_classes = has(sd, "head.weight") ? r.need(sd, "head.weight", 2).size(0) : 0;
  c.heads = default_heads(c.dim);
  c.act = "gelu";
  c.ln_eps = 1e-6;
  notes.push_back(fmt::format("from the tensors: D {}, depth {}, patch {}, {} px ({}x{} grid), MLP ratio {}{}{}{}{}{}{}",
                              c.dim, c.depth, c.patch_size, c.image_size, g, g, c.mlp_ratio,
                              c.class_token ? "" : ", no class token",
                              c.reg_tokens ? fmt::format(", {} register tokens", c.reg_tokens) : "",
                              c.no_embed_class ? ", pos-embed on patches only" : "", c.norm_pre ? ", norm_pre" : "",
                              c.layer_scale ? ", layer scale" : "", c.fc_norm ? ", fc_norm after average pooling" : ""));
  return c;
}

// DINOv2's own checkpoints -> timm names (timm's _convert_dinov2): registers become reg_token,
// and the model embeds patches only, with the CLS position folded into cls_token.
TensorMap map_dinov2(const Reader& r, TensorMap sd, std::vector<std::string>& notes) {
  sd.erase("mask_token");  // masked-image modelling only
  if (has(sd, "register_tokens")) {
    Tensor pos = r.need(sd, "pos_embed", 3);
    Tensor cls = r.need(sd, "cls_token", 3);
    NoGradGuard ng;
    sd["cls_token"] = contiguous(add(cls, narrow(pos, 1, 0, 1)));
    sd["pos_embed"] = contiguous(narrow(pos, 1, 1, pos.size(1) - 1));
    sd["reg_token"] = sd["register_tokens"];
    sd.erase("register_tokens");
    notes.push_back("DINOv2 registers: reg_token after the class token, CLS position folded into cls_token (as timm)");
  }
  return sd;
}

// ------------------------------------------------------------------ torchvision

TensorMap map_torchvision(const Reader& r, const TensorMap& sd) {
  TensorMap out;
  static const std::map<std::string, std::string> block = {
      {"ln_1.weight", "norm1.weight"}, {"ln_1.bias", "norm1.bias"},
      {"self_attention.in_proj_weight", "attn.qkv.weight"}, {"self_attention.in_proj_bias", "attn.qkv.bias"},
      {"self_attention.out_proj.weight", "attn.proj.weight"}, {"self_attention.out_proj.bias", "attn.proj.bias"},
      {"ln_2.weight", "norm2.weight"}, {"ln_2.bias", "norm2.bias"},
      {"mlp.0.weight", "mlp.fc1.weight"}, {"mlp.0.bias", "mlp.fc1.bias"},
      {"mlp.3.weight", "mlp.fc2.weight"}, {"mlp.3.bias", "mlp.fc2.bias"},
      // torchvision < 0.13 named the MLP's linears linear_1 / linear_2
      {"mlp.linear_1.weight", "mlp.fc1.weight"}, {"mlp.linear_1.bias", "mlp.fc1.bias"},
      {"mlp.linear_2.weight", "mlp.fc2.weight"}, {"mlp.linear_2.bias", "mlp.fc2.bias"}};
  static const std::map<std::string, std::string> top = {
      {"conv_proj.weight", "patch_embed.proj.weight"}, {"conv_proj.bias", "patch_embed.proj.bias"},
      {"class_token", "cls_token"}, {"encoder.pos_embedding", "pos_embed"},
      {"encoder.ln.weight", "norm.weight"}, {"encoder.ln.bias", "norm.bias"},
      {"heads.head.weight", "head.weight"}, {"heads.head.bias", "head.bias"}};
  std::vector<std::string> unknown;
  for (auto& [n, t] : sd) {
    // encoder.layers.encoder_layer_{i}.{rest}
    const std::string layer = "encoder.layers.encoder_layer_";
    const size_t dot = n.rfind(layer, 0) == 0 ? n.find('.', layer.size()) : std::string::npos;
    const std::string index = dot == std::string::npos ? "" : n.substr(layer.size(), dot - layer.size());
    const bool numeric = !index.empty() && index.find_first_not_of("0123456789") == std::string::npos;
    if (auto it = top.find(n); it != top.end()) {
      out[it->second] = t;
    } else if (numeric && block.count(n.substr(dot + 1))) {
      out["blocks." + index + "." + block.at(n.substr(dot + 1))] = t;
    } else {
      unknown.push_back(n);
    }
  }
  if (has(sd, "heads.pre_logits.weight"))
    r.fail("a representation layer (heads.pre_logits) is not supported. Hint: torchvision's ImageNet weights have none");
  if (!unknown.empty()) r.fail(fmt::format("tensors of no known torchvision ViT module: {}", name_list(unknown)));
  return out;
}

// A name mapping in progress: the tensors taken so far under their new names, and which source
// names were used (whatever is left over is reported).
struct Renamer {
  const Reader& r;
  const TensorMap& sd;
  TensorMap out;
  std::set<std::string> used;
  void take(const std::string& from, const std::string& to) {
    out[to] = r.need(sd, from);
    used.insert(from);
  }
  void mark(const std::string& from) { used.insert(from); }
};

// ------------------------------------------------------------------ Hugging Face ViT

// Stacks Hugging Face's separate query, key and value into the fused [3D, D] projection
// (rows q | k | v, methods.md "Notation").
void fuse_qkv(const Reader& r, const TensorMap& sd, const std::string& q, const std::string& k, const std::string& v,
              TensorMap& out, const std::string& w_name, const std::string& b_name) {
  out[w_name] = cat({r.need(sd, q + ".weight", 2), r.need(sd, k + ".weight", 2), r.need(sd, v + ".weight", 2)}, 0);
  const bool qb = has(sd, q + ".bias"), kb = has(sd, k + ".bias"), vb = has(sd, v + ".bias");
  if (qb && kb && vb) {
    out[b_name] = cat({sd.at(q + ".bias"), sd.at(k + ".bias"), sd.at(v + ".bias")}, 0);
  } else if (qb || vb) {
    // CLIP-style q and v bias without a k bias could be written as a zero k bias; no hub ViT has it.
    r.fail(fmt::format("'{}' has biases on only some of q, k, v", q));
  }
}

TensorMap map_hf_vit(const Reader& r, const TensorMap& sd, std::vector<std::string>& notes) {
  const std::string p = has(sd, "vit.embeddings.patch_embeddings.projection.weight") ? "vit." : "";
  Renamer m{r, sd, {}, {}};
  TensorMap& out = m.out;
  std::set<std::string>& used = m.used;
  auto take = [&](const std::string& from, const std::string& to) { m.take(from, to); };
  take(p + "embeddings.cls_token", "cls_token");
  take(p + "embeddings.position_embeddings", "pos_embed");
  take(p + "embeddings.patch_embeddings.projection.weight", "patch_embed.proj.weight");
  if (has(sd, p + "embeddings.patch_embeddings.projection.bias"))
    take(p + "embeddings.patch_embeddings.projection.bias", "patch_embed.proj.bias");
  const int64_t L = count_indexed(sd, p + "encoder.layer.", ".layernorm_before.weight");
  if (L == 0) r.fail(fmt::format("it has no {}encoder.layer.0.layernorm_before.weight", p));
  for (int64_t i = 0; i < L; ++i) {
    const std::string h = fmt::format("{}encoder.layer.{}.", p, i), b = fmt::format("blocks.{}.", i);
    for (const char* wb : {"weight", "bias"}) {
      const std::string s = wb;
      take(h + "layernorm_before." + s, b + "norm1." + s);
      take(h + "attention.output.dense." + s, b + "attn.proj." + s);
      take(h + "layernorm_after." + s, b + "norm2." + s);
      take(h + "intermediate.dense." + s, b + "mlp.fc1." + s);
      take(h + "output.dense." + s, b + "mlp.fc2." + s);
    }
    const std::string a = h + "attention.attention.";
    fuse_qkv(r, sd, a + "query", a + "key", a + "value", out, b + "attn.qkv.weight", b + "attn.qkv.bias");
    for (const char* n : {"query", "key", "value"})
      for (const char* wb : {".weight", ".bias"}) used.insert(a + n + wb);
  }
  take(p + "layernorm.weight", "norm.weight");
  take(p + "layernorm.bias", "norm.bias");
  if (has(sd, "classifier.weight")) {
    take("classifier.weight", "head.weight");
    if (has(sd, "classifier.bias")) take("classifier.bias", "head.bias");
  }
  std::vector<std::string> unknown;
  bool pooler = false;
  for (auto& [n, _] : sd) {
    if (used.count(n)) continue;
    if (n.rfind(p + "pooler.", 0) == 0) {  // ViTModel's tanh pooler: not part of the features
      pooler = true;
      continue;
    }
    if (n == p + "embeddings.mask_token") continue;  // masked image modelling only
    unknown.push_back(n);
  }
  if (pooler) notes.push_back("the pooler (dense + tanh) is not used: features are the final LayerNorm's CLS row");
  if (!unknown.empty()) r.fail(fmt::format("tensors of no known ViTModel module: {}", name_list(unknown)));
  return out;
}

// ------------------------------------------------------------------ CLIP (OpenAI names as the internal form)

// Hugging Face CLIPModel -> OpenAI names. Linear projections without bias are [E, W] in PyTorch
// layout; OpenAI keeps proj / text_projection as [W, E] (applied as x @ proj).
TensorMap map_hf_clip(const Reader& r, const TensorMap& sd) {
  Renamer m{r, sd, {}, {}};
  TensorMap& out = m.out;
  std::set<std::string>& used = m.used;
  auto take = [&](const std::string& from, const std::string& to) { m.take(from, to); };
  auto tower = [&](const std::string& hf, const std::string& oa) {
    const int64_t L = count_indexed(sd, hf + "encoder.layers.", ".layer_norm1.weight");
    if (L == 0) r.fail(fmt::format("it has no {}encoder.layers.0.layer_norm1.weight", hf));
    for (int64_t i = 0; i < L; ++i) {
      const std::string h = fmt::format("{}encoder.layers.{}.", hf, i), b = fmt::format("{}transformer.resblocks.{}.", oa, i);
      for (const char* wb : {"weight", "bias"}) {
        const std::string s = wb;
        take(h + "layer_norm1." + s, b + "ln_1." + s);
        take(h + "self_attn.out_proj." + s, b + "attn.out_proj." + s);
        take(h + "layer_norm2." + s, b + "ln_2." + s);
        take(h + "mlp.fc1." + s, b + "mlp.c_fc." + s);
        take(h + "mlp.fc2." + s, b + "mlp.c_proj." + s);
        for (const char* n : {"q_proj.", "k_proj.", "v_proj."}) used.insert(h + "self_attn." + n + s);
      }
      fuse_qkv(r, sd, h + "self_attn.q_proj", h + "self_attn.k_proj", h + "self_attn.v_proj", out,
               b + "attn.in_proj_weight", b + "attn.in_proj_bias");
    }
  };
  const std::string v = "vision_model.";
  take(v + "embeddings.class_embedding", "visual.class_embedding");
  take(v + "embeddings.patch_embedding.weight", "visual.conv1.weight");
  take(v + "embeddings.position_embedding.weight", "visual.positional_embedding");
  take(v + "pre_layrnorm.weight", "visual.ln_pre.weight");  // sic: transformers spells it so
  take(v + "pre_layrnorm.bias", "visual.ln_pre.bias");
  tower(v, "visual.");
  take(v + "post_layernorm.weight", "visual.ln_post.weight");
  take(v + "post_layernorm.bias", "visual.ln_post.bias");
  out["visual.proj"] = contiguous(transpose(r.need(sd, "visual_projection.weight", 2), 0, 1));
  used.insert("visual_projection.weight");
  if (has(sd, "text_model.embeddings.token_embedding.weight")) {
    const std::string t = "text_model.";
    take(t + "embeddings.token_embedding.weight", "token_embedding.weight");
    take(t + "embeddings.position_embedding.weight", "positional_embedding");
    tower(t, "");
    take(t + "final_layer_norm.weight", "ln_final.weight");
    take(t + "final_layer_norm.bias", "ln_final.bias");
    out["text_projection"] = contiguous(transpose(r.need(sd, "text_projection.weight", 2), 0, 1));
    used.insert("text_projection.weight");
    take("logit_scale", "logit_scale");
  }
  std::vector<std::string> unknown;
  for (auto& [n, _] : sd)
    if (!used.count(n) && n.find("position_ids") == std::string::npos) unknown.push_back(n);
  if (!unknown.empty()) r.fail(fmt::format("tensors of no known CLIPModel module: {}", name_list(unknown)));
  return out;
}

// The CLIP config from OpenAI names (clip/model.py build_model's inference).
CLIPConfig infer_clip(const Reader& r, const TensorMap& sd, std::vector<std::string>& notes) {
  CLIPConfig c;
  ViTConfig& v = c.vision;
  v.style = "openai_clip_visual";
  const Tensor& conv = r.need(sd, "visual.conv1.weight", 4);
  v.dim = conv.size(0);
  v.in_chans = conv.size(1);
  v.patch_size = conv.size(2);
  v.depth = count_indexed(sd, "visual.transformer.resblocks.", ".ln_1.weight");
  if (v.depth == 0) r.fail("it has no visual.transformer.resblocks.0.ln_1.weight");
  v.mlp_ratio = static_cast<double>(r.need(sd, "visual.transformer.resblocks.0.mlp.c_fc.weight", 2).size(0)) /
                static_cast<double>(v.dim);
  const int64_t g = exact_sqrt(r.need(sd, "visual.positional_embedding", 2).size(0) - 1);
  if (g < 0) r.fail("visual.positional_embedding is not 1 + a square grid of rows");
  v.image_size = g * v.patch_size;
  v.heads = default_heads(v.dim);
  v.act = "quick_gelu";
  v.ln_eps = 1e-5;
  v.num_classes = 0;
  c.embed_dim = r.need(sd, "visual.proj", 2).size(1);
  v.embed_dim = c.embed_dim;
  if (has(sd, "token_embedding.weight")) {
    c.text.vocab_size = r.need(sd, "token_embedding.weight", 2).size(0);
    c.text.context_length = r.need(sd, "positional_embedding", 2).size(0);
    c.text.width = r.need(sd, "ln_final.weight", 1).size(0);
    c.text.layers = count_indexed(sd, "transformer.resblocks.", ".ln_1.weight");
    // OpenAI: width / 64; open_clip's text default is 8 heads (its config says otherwise when it differs).
    c.text.heads = default_heads(c.text.width) > 0 ? default_heads(c.text.width) : (c.text.width % 8 == 0 ? 8 : 1);
    if (r.need(sd, "text_projection", 2).size(1) != c.embed_dim)
      r.fail(fmt::format("text_projection {} and visual.proj {} disagree on the embed dim",
                         shape_str(sd.at("text_projection").sizes()), shape_str(sd.at("visual.proj").sizes())));
  }
  notes.push_back(fmt::format("from the tensors: vision W {} depth {} patch {} {} px, embed dim {}; text W {} depth {} "
                              "context {} vocab {}",
                              v.dim, v.depth, v.patch_size, v.image_size, c.embed_dim, c.text.width, c.text.layers,
                              c.text.context_length, c.text.vocab_size));
  return c;
}

// ------------------------------------------------------------------ sidecars

struct Sidecars {
  std::optional<json> config, preprocessor, open_clip, peft_model;
  std::string config_path, preprocessor_path, open_clip_path, peft_model_path;
};

Sidecars read_sidecars(const std::string& weights, std::vector<std::string>& read) {
  Sidecars s;
  const fs::path dir = fs::path(weights).parent_path();
  auto load = [&](const char* name, std::optional<json>& into, std::string& path) {
    const fs::path p = dir / name;
    into = read_json(p);
    if (into) {
      path = p.string();
      read.push_back(path);
    }
  };
  load("config.json", s.config, s.config_path);
  load("preprocessor_config.json", s.preprocessor, s.preprocessor_path);
  load("open_clip_config.json", s.open_clip, s.open_clip_path);
  // This project's config beside its weights: <stem>.json (what peft merge writes), else model.json.
  const std::string stem = fs::path(weights).stem().string() + ".json";
  if (stem != "config.json") load(stem.c_str(), s.peft_model, s.peft_model_path);
  if (!s.peft_model) load("model.json", s.peft_model, s.peft_model_path);
  // A config.json in this project's own format (interop.md) is the model's config too.
  if (s.config && s.config->contains("arch") && !s.peft_model) {
    s.peft_model = s.config;
    s.peft_model_path = s.config_path;
    s.config.reset();
  }
  return s;
}

// Hugging Face preprocessor_config.json (ViTImageProcessor, CLIPImageProcessor).
data::Preprocess hf_preprocess(const json& j, const std::string& file, data::Preprocess p, int64_t* size_out) {
  if (j.contains("image_mean")) p.norm.mean = three(j["image_mean"], file + ": image_mean");
  if (j.contains("image_std")) p.norm.std = three(j["image_std"], file + ": image_std");
  if (!get<bool>(j, "do_normalize", true, file)) p.norm = data::no_normalization();
  if (j.contains("resample")) p.interpolation = interpolation_from_pil(get<int64_t>(j, "resample", 3, file));
  auto size_of = [&](const json& v, const char* what) -> std::pair<int64_t, bool> {  // (size, is shortest_edge)
    if (v.is_number_integer()) return {v.get<int64_t>(), true};
    if (v.is_object()) {
      if (v.contains("shortest_edge")) return {get<int64_t>(v, "shortest_edge", 0, file), true};
      if (v.contains("height")) return {get<int64_t>(v, "height", 0, file), false};
    }
    throw IOError(fmt::format("{}: '{}' is not a size ({})", file, what, v.dump().substr(0, 60)));
  };
  const bool center = get<bool>(j, "do_center_crop", false, file);
  if (j.contains("size")) {
    auto [resize, shortest] = size_of(j["size"], "size");
    if (center && j.contains("crop_size")) {
      auto [crop, _] = size_of(j["crop_size"], "crop_size");
      p.crop_mode = "center";
      p.crop_pct = resize > 0 ? static_cast<double>(crop) / static_cast<double>(resize) : 1.0;
      if (size_out) *size_out = crop;
    } else {
      p.crop_mode = shortest ? "center" : "squash";
      p.crop_pct = 1.0;
      if (size_out) *size_out = resize;
    }
  }
  p.source = file;
  return p;
}

}  // namespace

// ------------------------------------------------------------------ public

std::vector<std::pair<std::string, std::string>> pretrained_schemes() {
  return {{"timm", "timm VisionTransformer: patch_embed.proj, blocks.N.attn.qkv, (fc_norm, norm_pre, ls1.gamma, reg_token)"},
          {"dinov2", "facebookresearch/dinov2: timm names plus mask_token (and register_tokens)"},
          {"torchvision", "torchvision vit_*: conv_proj, class_token, encoder.layers.encoder_layer_N, heads.head"},
          {"hf_vit", "transformers ViTModel / ViTForImageClassification: [vit.]embeddings, encoder.layer.N, classifier"},
          {"hf_clip", "transformers CLIPModel: vision_model.*, text_model.*, visual_projection, text_projection"},
          {"open_clip", "OpenAI CLIP / open_clip: visual.conv1, visual.transformer.resblocks.N, token_embedding"},
          {"openai_visual", "an OpenAI CLIP visual tower without the visual. prefix (style openai_clip_visual)"}};
}

std::string Pretrained::describe() const {
  const ViTConfig& c = config;
  std::string s = fmt::format("{} ViT D{} L{} H{} patch {} {} px", scheme_title(scheme), c.dim, c.depth, c.heads,
                              c.patch_size, c.image_size);
  if (is_clip) s += fmt::format(" (CLIP: embed dim {}, text W{} L{})", clip.embed_dim, clip.text.width, clip.text.layers);
  s += c.num_classes > 0 ? fmt::format(", {} classes", c.num_classes) : ", no head";
  return s;
}

Pretrained read_pretrained(const std::string& path, const PretrainedOptions& o) {
  Pretrained pre;
  pre.path = path;
  TensorMap sd = read_tensors(path);
  // DataParallel / Lightning wrappers prefix every name.
  for (const char* wrap : {"module.", "model."}) {
    const std::string w = wrap;
    if (!sd.empty() && std::all_of(sd.begin(), sd.end(), [&](auto& kv) { return kv.first.rfind(w, 0) == 0; })) {
      TensorMap un;
      for (auto& [n, t] : sd) un[n.substr(w.size())] = t;
      sd = std::move(un);
      pre.notes.push_back(fmt::format("every name had the prefix '{}': stripped", w));
    }
  }
  std::string scheme = detect_scheme(sd);
  Reader r{path, scheme};
  if (scheme.empty()) {
    std::vector<std::string> names;
    for (auto& [n, _] : sd) names.push_back(n);
    throw IOError(fmt::format("{}: no known checkpoint layout (timm, DINOv2, torchvision, Hugging Face ViT/CLIP, "
                              "OpenAI/open_clip CLIP); its tensors: {}",
                              path, names.empty() ? std::string("none") : name_list(names)));
  }
  Sidecars side = read_sidecars(path, pre.sidecars);
  ViTConfig c;
  data::Preprocess pp;
  bool have_pp = false;
  auto set_pp = [&](data::Preprocess p) {
    pp = std::move(p);
    have_pp = true;
  };

  if (scheme == "timm" || scheme == "dinov2") {
    if (scheme == "dinov2") sd = map_dinov2(r, std::move(sd), pre.notes);
    refuse_unsupported_timm(r, sd);
    c = infer_timm(r, sd, pre.notes);
    pre.tensors = std::move(sd);
    if (scheme == "dinov2") {
      // DINOv2 is trained at 518 px (37 x 37 patches of 14) and evaluated at 224 (resize 256,
      // centre crop); its position embedding is interpolated to the input as DINOv2 does.
      c.image_size = 224 / c.patch_size * c.patch_size;
      pre.notes.push_back(fmt::format("DINOv2: evaluated at {} px (its eval transform: resize 256, crop 224); "
                                      "pos_embed interpolated DINOv2's way (bicubic, no antialias). --image-size overrides",
                                      c.image_size));
      set_pp(preprocess_of("bicubic", 0.875, "center", data::imagenet_normalization(), "DINOv2's eval transform"));
    } else if (side.config) {  // a timm hub config.json
      const json& j = *side.config;
      const std::string& f = side.config_path;
      const std::string arch = get<std::string>(j, "architecture", "", f);
      int64_t heads = 0;
      if (j.contains("model_args") && j["model_args"].is_object()) heads = get<int64_t>(j["model_args"], "num_heads", 0, f);
      if (heads == 0) heads = heads_from_timm_arch(arch);
      if (heads > 0) {
        c.heads = heads;
        pre.notes.push_back(fmt::format("heads {} from {} ({})", heads, f, arch.empty() ? "model_args" : arch));
      }
      const std::string gp = get<std::string>(j, "global_pool", "", f);
      if (gp == "avg") c.pool = "mean";
      else if (gp == "token") c.pool = "cls";
      if (j.contains("pretrained_cfg") && j["pretrained_cfg"].is_object()) {
        const json& pc = j["pretrained_cfg"];
        data::Preprocess p = preprocess_of(get<std::string>(pc, "interpolation", "bicubic", f), get<double>(pc, "crop_pct", 0.9, f),
                                           get<std::string>(pc, "crop_mode", "center", f),
                                           norm_of(pc.contains("mean") ? three(pc["mean"], f + ": mean") : kHalf,
                                                   pc.contains("std") ? three(pc["std"], f + ": std") : kHalf),
                                           f + " (timm pretrained_cfg)");
        if (pc.contains("input_size")) {
          const json& is = pc["input_size"];
          if (!is.is_array() || is.size() != 3 || !is[2].is_number_integer())
            throw IOError(fmt::format("{}: pretrained_cfg.input_size must be [C, H, W]", f));
          const int64_t s = is[2].get<int64_t>();
          if (s != c.image_size) {
            pre.notes.push_back(fmt::format("input size {} from {} (the position embedding is for {})", s, f, c.image_size));
            c.image_size = s;
          }
        }
        set_pp(p);
      }
      if (j.contains("label_names") && j["label_names"].is_array())
        pre.class_names = get<std::vector<std::string>>(j, "label_names", {}, f);
    }
    if (!have_pp && scheme == "timm")
      set_pp(preprocess_of("bicubic", 0.9, "center", norm_of(kHalf, kHalf),
                           "timm's ViT defaults (no config.json: mean/std 0.5, bicubic, crop_pct 0.9; --mean/--std override)"));
  } else if (scheme == "torchvision") {
    pre.tensors = map_torchvision(r, sd);
    r.scheme = "torchvision";
    c = infer_timm(r, pre.tensors, pre.notes);
    c.ln_eps = 1e-6;
    set_pp(preprocess_of("bilinear", 224.0 / 256.0, "center", data::imagenet_normalization(),
                         "torchvision's ImageClassification preset (resize 256 bilinear, crop 224)"));
  } else if (scheme == "hf_vit") {
    pre.tensors = map_hf_vit(r, sd, pre.notes);
    c = infer_timm(r, pre.tensors, pre.notes);
    c.ln_eps = 1e-12;  // ViTConfig.layer_norm_eps default
    set_pp(preprocess_of("bilinear", 1.0, "squash", norm_of(kHalf, kHalf), "ViTImageProcessor defaults"));
    if (side.config) {
      const json& j = *side.config;
      const std::string& f = side.config_path;
      c.heads = get<int64_t>(j, "num_attention_heads", c.heads, f);
      c.ln_eps = get<double>(j, "layer_norm_eps", c.ln_eps, f);
      const std::string act = get<std::string>(j, "hidden_act", "gelu", f);
      if (act != "gelu")
        throw IOError(fmt::format("{}: hidden_act '{}' is not supported (gelu, the erf form, is)", f, act));
      c.qkv_bias = get<bool>(j, "qkv_bias", c.qkv_bias, f);
      const int64_t s = get<int64_t>(j, "image_size", c.image_size, f);
      if (s != c.image_size) c.image_size = s;
      if (j.contains("id2label") && j["id2label"].is_object() && c.num_classes > 0) {
        std::vector<std::string> names(static_cast<size_t>(c.num_classes));
        for (auto& [k, v] : j["id2label"].items()) {
          int64_t i = -1;
          try {
            i = std::stoll(k);
          } catch (const std::exception&) {
          }
          if (i < 0 || i >= c.num_classes || !v.is_string())
            throw IOError(fmt::format("{}: id2label entry '{}' is not a class index below {}", f, k, c.num_classes));
          names[static_cast<size_t>(i)] = v.get<std::string>();
        }
        pre.class_names = names;
      }
      pre.notes.push_back(fmt::format("heads {}, layer_norm_eps {} from {}", c.heads, c.ln_eps, f));
    }
    if (side.preprocessor) {
      int64_t size = 0;
      set_pp(hf_preprocess(*side.preprocessor, side.preprocessor_path, pp, &size));
    }
  } else if (scheme == "hf_clip" || scheme == "open_clip") {
    TensorMap oa = scheme == "hf_clip" ? map_hf_clip(r, sd) : std::move(sd);
    // OpenAI's released state dicts carry the build hyper-parameters as 0-d tensors
    // (clip/model.py build_model deletes them); some exports keep the causal mask buffer.
    for (const char* k : {"input_resolution", "context_length", "vocab_size", "attn_mask"}) oa.erase(k);
    pre.clip = infer_clip(r, oa, pre.notes);
    pre.is_clip = has(oa, "token_embedding.weight");
    set_pp(preprocess_of("bicubic", 1.0, "center", data::clip_normalization(), "CLIP's preprocessing (OpenAI)"));
    if (scheme == "hf_clip" && side.config) {
      const json& j = *side.config;
      const std::string& f = side.config_path;
      if (j.contains("vision_config") && j["vision_config"].is_object()) {
        const json& vc = j["vision_config"];
        pre.clip.vision.heads = get<int64_t>(vc, "num_attention_heads", pre.clip.vision.heads, f);
        pre.clip.vision.ln_eps = get<double>(vc, "layer_norm_eps", pre.clip.vision.ln_eps, f);
        pre.clip.vision.act = get<std::string>(vc, "hidden_act", pre.clip.vision.act, f);
      }
      if (j.contains("text_config") && j["text_config"].is_object())
        pre.clip.text.heads = get<int64_t>(j["text_config"], "num_attention_heads", pre.clip.text.heads, f);
      pre.notes.push_back(fmt::format("heads {} (vision) / {} (text), act {} from {}", pre.clip.vision.heads,
                                      pre.clip.text.heads, pre.clip.vision.act, f));
    }
    if (scheme == "hf_clip" && side.preprocessor) set_pp(hf_preprocess(*side.preprocessor, side.preprocessor_path, pp, nullptr));
    if (scheme == "open_clip") {
      if (side.open_clip) {
        const json& j = *side.open_clip;
        const std::string& f = side.open_clip_path;
        if (j.contains("model_cfg") && j["model_cfg"].is_object()) {
          const json& mc = j["model_cfg"];
          pre.clip.vision.act = get<bool>(mc, "quick_gelu", false, f) ? "quick_gelu" : "gelu";
          if (mc.contains("vision_cfg") && mc["vision_cfg"].is_object()) {
            const int64_t hw = get<int64_t>(mc["vision_cfg"], "head_width", 64, f);
            if (hw > 0 && pre.clip.vision.dim % hw == 0) pre.clip.vision.heads = pre.clip.vision.dim / hw;
          }
          if (mc.contains("text_cfg") && mc["text_cfg"].is_object())
            pre.clip.text.heads = get<int64_t>(mc["text_cfg"], "heads", pre.clip.text.heads, f);
        }
        if (j.contains("preprocess_cfg") && j["preprocess_cfg"].is_object()) {
          const json& pc = j["preprocess_cfg"];
          data::Preprocess p = pp;
          if (pc.contains("mean")) p.norm.mean = three(pc["mean"], f + ": mean");
          if (pc.contains("std")) p.norm.std = three(pc["std"], f + ": std");
          p.interpolation = get<std::string>(pc, "interpolation", p.interpolation, f);
          const std::string mode = get<std::string>(pc, "resize_mode", "shortest", f);
          p.crop_mode = mode == "squash" ? "squash" : "center";
          p.source = f;
          set_pp(p);
        }
        pre.notes.push_back(fmt::format("act {}, heads {} / {} from {}", pre.clip.vision.act, pre.clip.vision.heads,
                                        pre.clip.text.heads, f));
      } else {
        pre.notes.push_back("no open_clip_config.json: OpenAI's QuickGELU assumed (open_clip's LAION models use GELU: --act gelu)");
      }
    }
    c = pre.clip.vision;
    c.num_classes = 0;
    for (auto& [n, t] : oa)
      if (n.rfind("visual.", 0) == 0) pre.tensors[n.substr(7)] = t;
    if (pre.is_clip) pre.clip_tensors = std::move(oa);
  } else if (scheme == "openai_visual") {
    TensorMap pref;
    for (auto& [n, t] : sd) pref["visual." + n] = t;
    CLIPConfig cc = infer_clip(r, pref, pre.notes);
    c = cc.vision;
    c.num_classes = has(sd, "head.weight") ? r.need(sd, "head.weight", 2).size(0) : 0;
    pre.tensors = std::move(sd);
  }

  // This project's own files: the config written beside them is exact.
  if (side.peft_model && (scheme == "timm" || scheme == "openai_visual")) {
    std::string text = side.peft_model->dump();
    if (side.peft_model->value("arch", std::string()) == "vit") {
      c = vit_config_from_json(text, side.peft_model_path);
      scheme = "peft";
      have_pp = c.preprocess.size > 0;
      if (have_pp) pp = c.preprocess;
      pre.notes.push_back(fmt::format("config from {}", side.peft_model_path));
    }
  }
  // This project's CLIP files: a CLIP config beside them (tokenizer included) is exact.
  if (side.peft_model && pre.is_clip && side.peft_model->value("arch", std::string()) == "clip") {
    pre.clip = clip_config_from_json(side.peft_model->dump(), side.peft_model_path);
    c.dim = pre.clip.vision.dim;
    const data::Preprocess keep = c.preprocess;
    c = pre.clip.vision;
    c.num_classes = 0;
    c.preprocess = keep;
    pre.notes.push_back(fmt::format("CLIP config from {}", side.peft_model_path));
  }
  if (!o.config.empty() && is_clip_config(o.config) && pre.is_clip) {
    pre.clip = load_clip_config(o.config);
    c = pre.clip.vision;
    c.num_classes = 0;
    pre.notes.push_back(fmt::format("CLIP config from --config {}", o.config));
  } else if (!o.config.empty()) {
    const ViTConfig given = load_vit_config(o.config);
    pre.notes.push_back(fmt::format("config from --config {}", o.config));
    if (!have_pp || scheme == "peft") {
      have_pp = given.preprocess.size > 0;
      pp = given.preprocess;
    }
    c = given;
  }
  if (o.heads > 0) c.heads = o.heads;
  if (c.heads == 0 && o.check_config)
    throw IOError(fmt::format("{}: the number of attention heads of this {} checkpoint (width {}) is not in its tensors and no "
                              "config file beside it says; give --heads N",
                              path, scheme_title(scheme), c.dim));
  if (!o.act.empty()) c.act = o.act;
  if (o.image_size > 0) c.image_size = o.image_size;
  if (pre.is_clip) {
    pre.clip.vision.heads = c.heads;
    pre.clip.vision.act = c.act;
    pre.clip.vision.image_size = c.image_size;
  }
  if (c.class_names.empty() && static_cast<int64_t>(pre.class_names.size()) == c.num_classes) c.class_names = pre.class_names;
  if (c.class_names.size() != static_cast<size_t>(c.num_classes)) c.class_names.clear();  // a head replaced by --config
  pre.class_names = c.class_names;
  if (have_pp) {
    c.preprocess = pp;
    c.preprocess.size = c.image_size;
  }
  pre.scheme = scheme;
  if (!o.check_config) {
    pre.config = c;
    return pre;
  }
  try {
    c.validate();
    if (pre.is_clip) pre.clip.validate();
  } catch (const ValueError& e) {
    throw IOError(fmt::format("{}: the inferred {} config is invalid ({}); give --heads / --image-size / --config", path,
                              scheme_title(scheme), e.what()));
  }
  pre.config = c;
  return pre;
}

std::shared_ptr<CLIP> load_clip_model(const std::string& config, const std::string& weights, uint64_t seed,
                                      data::Preprocess* preprocess, std::string* describe,
                                      const ClipConfigCheck& before_build) {
  if (config.empty() && weights.empty()) throw ValueError("--config or --weights is required (a CLIP preset or checkpoint)");
  CLIPConfig cfg;
  std::map<std::string, Tensor> tensors;
  data::Preprocess pp;
  std::string what;
  if (!weights.empty()) {
    PretrainedOptions o;
    o.config = config;
    Pretrained pre = read_pretrained(weights, o);
    if (!pre.is_clip)
      throw IOError(fmt::format("{}: a {} without a text tower, not a whole CLIP. Hint: the vision methods (peft train) "
                                "take it as a ViT",
                                weights, pre.describe()));
    cfg = pre.clip;
    tensors = std::move(pre.clip_tensors);
    pp = pre.config.preprocess;
    what = fmt::format("{} ({})", pre.describe(), weights);
  } else {
    cfg = load_clip_config(config);
    what = fmt::format("CLIP {} (no weights)", config);
  }
  if (pp.size == 0) {
    pp = effective_preprocess(cfg.vision);
  }
  pp.size = cfg.vision.image_size;
  cfg.validate();  // its own message first: the check below computes sizes from it
  // a given config decides the shapes, else the checkpoint's tensors do
  if (before_build) before_build(cfg, config.empty() ? "'" + weights + "'" : "config '" + config + "'");
  auto clip = std::make_shared<CLIP>(cfg, seed);
  if (!tensors.empty()) {
    LoadResult r = clip->load_state_dict(tensors, /*strict=*/false);
    if (!r.ok()) throw IOError(fmt::format("{}: does not fit the CLIP config ({})", weights, r.summary()));
  }
  if (preprocess) *preprocess = pp;
  if (describe) *describe = what;
  return clip;
}

LoadResult load_pretrained(VisionTransformer& vit, const Pretrained& pre, std::string* note) {
  TensorMap sd = pre.tensors;
  auto say = [&](const std::string& s) {
    if (note) *note += (note->empty() ? "" : "; ") + s;
  };
  if (vit.head) {
    auto w = sd.find("head.weight");
    if (w != sd.end() && w->second.dim() == 2 && w->second.size(0) != vit.head->out_features) {
      say(fmt::format("head replaced: {} has {} classes, the model {}", pre.path, w->second.size(0), vit.head->out_features));
      sd.erase("head.weight");
      sd.erase("head.bias");
    }
  } else {
    sd.erase("head.weight");
    sd.erase("head.bias");
  }
  // Another image size: resample the position embedding, DINOv2's way for DINOv2, else timm's
  // (bicubic, antialiased).
  for (const char* name : {"pos_embed", "positional_embedding"}) {
    auto it = sd.find(name);
    if (it == sd.end() || !vit.has_parameter(name)) continue;
    Tensor mine = vit.parameter(name);
    if (it->second.sizes() == mine.sizes() || it->second.dim() != mine.dim() || it->second.size(-1) != mine.size(-1)) continue;
    const int64_t old_rows = it->second.size(-2);
    const int64_t prefix = vit.cfg.style == "openai_clip_visual" ? 1 : (vit.cfg.no_embed_class ? 0 : vit.cfg.num_prefix_tokens());
    // DINOv2's plain backbones interpolate with the 0.1 scale-factor offset and no antialias;
    // its register backbones (hub/backbones.py: interpolate_antialias=True, offset 0) as timm does.
    const bool dinov2 = pre.scheme == "dinov2" && vit.cfg.reg_tokens == 0;
    try {
      it->second = dinov2 ? resample_pos_embed_dinov2(it->second, vit.cfg.grid(), prefix)
                          : resample_pos_embed(it->second, vit.cfg.grid(), prefix);
    } catch (const ShapeError& e) {
      throw IOError(fmt::format("{}: {} {} does not fit the model ({} prefix tokens + a {}x{} grid): {}", pre.path, name,
                                shape_str(it->second.sizes()), prefix, vit.cfg.grid(), vit.cfg.grid(), e.what()));
    }
    say(fmt::format("{} resampled from {} to {} tokens ({})", name, old_rows, mine.size(-2),
                    dinov2 ? "bicubic, DINOv2's interpolate_pos_encoding" : "bicubic"));
  }
  LoadResult r = vit.load_state_dict(sd, false);
  std::vector<std::string> missing;
  for (auto& n : r.missing)
    if (n != "head.weight" && n != "head.bias") missing.push_back(n);
  if (!missing.empty() || !r.unexpected.empty() || !r.mismatched.empty()) {
    LoadResult bad = r;
    bad.missing = missing;
    throw IOError(fmt::format("{}: {} checkpoint does not fit the config ({})", pre.path, scheme_title(pre.scheme),
                              bad.summary()));
  }
  if (vit.head && !sd.count("head.weight")) say(fmt::format("{} has no head: the model keeps a fresh head", pre.path));
  return r;
}

}  // namespace peft::nn
