// CLIP: config parsing and presets, the text tower (causal transformer, EOT pooling), the model.
#include "nn/clip.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "core/small_file.h"
#include "data/procedural.h"

namespace peft::nn {

// ---------------------------------------------------------------- config

void CLIPConfig::validate() const {
  auto bad = [](const std::string& what) { throw ValueError("clip config: " + what); };
  if (vision.style != "openai_clip_visual")
    bad(fmt::format("vision.style must be \"openai_clip_visual\" (got '{}')", vision.style));
  if (vision.num_classes != 0) bad(fmt::format("vision.num_classes must be 0 (got {})", vision.num_classes));
  vision.validate();
  if (embed_dim <= 0) bad(fmt::format("embed_dim must be positive, got {}", embed_dim));
  if (vision.feature_dim() != embed_dim)
    bad(fmt::format("vision.embed_dim {} differs from embed_dim {}", vision.feature_dim(), embed_dim));
  const CLIPTextConfig& t = text;
  if (t.vocab_size < 3) bad(fmt::format("text.vocab_size must be >= 3, got {}", t.vocab_size));
  if (t.context_length < 2) bad(fmt::format("text.context_length must be >= 2, got {}", t.context_length));
  if (t.width <= 0 || t.heads <= 0 || t.width % t.heads != 0)
    bad(fmt::format("text.heads {} must divide text.width {}", t.heads, t.width));
  if (t.layers <= 0) bad(fmt::format("text.layers must be positive, got {}", t.layers));
  // Upper bounds like the ViT config's: far beyond any real CLIP (OpenAI: 49408, 77, 512..1280,
  // 12..32 layers, embed_dim 512..1024), small enough that products of sizes cannot overflow
  // (context_length 2^58 + 1 ended in "double free or corruption", issue 20).
  constexpr int64_t kMax = int64_t{1} << 20;
  auto at_most = [&](const char* key, int64_t v, int64_t max) {
    if (v > max) bad(fmt::format("{} must be <= {}, got {}", key, max, v));
  };
  at_most("embed_dim", embed_dim, kMax);
  at_most("text.vocab_size", t.vocab_size, int64_t{1} << 24);
  at_most("text.context_length", t.context_length, int64_t{1} << 14);
  at_most("text.width", t.width, kMax);
  at_most("text.layers", t.layers, int64_t{1} << 12);
  at_most("text.heads", t.heads, kMax);
  if (t.tokenizer != "bpe" && t.tokenizer != "procedural")
    bad(fmt::format("unknown text.tokenizer '{}' (bpe | procedural)", t.tokenizer));
}

CLIPConfig clip_config_from_json(const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text, nullptr, true, /*ignore_comments=*/true);
  } catch (const std::exception& e) {
    throw IOError(fmt::format("{}: invalid JSON ({})", source, e.what()));
  }
  if (!j.is_object()) throw IOError(fmt::format("{}: expected a JSON object", source));
  for (auto& [k, v] : j.items())
    if (k != "arch" && k != "vision" && k != "text" && k != "embed_dim")
      throw ValueError(fmt::format("{}: unknown key '{}' in a CLIP config (arch, vision, text, embed_dim)", source, k));
  // "arch" of another type (an object) made value() throw a json type_error (found by fuzz_clip_config).
  if (!j.contains("arch") || !j["arch"].is_string() || j["arch"].get<std::string>() != "clip")
    throw ValueError(fmt::format("{}: \"arch\" must be \"clip\" for a CLIP model", source));
  if (!j.contains("vision") || !j["vision"].is_object() || !j.contains("text") || !j["text"].is_object())
    throw ValueError(fmt::format("{}: a CLIP config needs \"vision\" and \"text\" objects", source));
  CLIPConfig c;
  try {
    // Integer keys: whole numbers only (a float such as 1e70 would overflow the conversion).
    auto get_int = [&](const nlohmann::json& obj, const char* key, const std::string& name, int64_t& field) {
      if (!obj.contains(key)) return;
      const nlohmann::json& v = obj[key];
      if (v.is_number_integer()) {
        if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
          throw ValueError(fmt::format("{}: '{}' = {} is out of range", source, name, v.dump()));
        field = v.get<int64_t>();
        return;
      }
      if (v.is_number_float()) {
        const double d = v.get<double>();
        if (d == std::floor(d) && std::fabs(d) < 9.0e15) {
          field = static_cast<int64_t>(d);
          return;
        }
      }
      throw ValueError(fmt::format("{}: '{}' must be an integer (got {})", source, name, v.dump()));
    };
    get_int(j, "embed_dim", "embed_dim", c.embed_dim);
    // The vision tower is a ViT config with CLIP's defaults filled in.
    nlohmann::json v = j["vision"];
    if (!v.contains("arch")) v["arch"] = "vit";
    if (!v.contains("style")) v["style"] = "openai_clip_visual";
    if (!v.contains("act")) v["act"] = "quick_gelu";
    if (!v.contains("ln_eps")) v["ln_eps"] = 1e-5;
    if (!v.contains("num_classes")) v["num_classes"] = 0;
    if (!v.contains("embed_dim")) v["embed_dim"] = c.embed_dim;
    c.vision = vit_config_from_json(v.dump(), source + " (vision)");
    const nlohmann::json& t = j["text"];
    static const std::set<std::string> known = {"vocab_size", "context_length", "width", "layers", "heads", "tokenizer"};
    for (auto& [k, _] : t.items())
      if (!known.count(k)) throw ValueError(fmt::format("{}: unknown key 'text.{}'", source, k));
    get_int(t, "vocab_size", "text.vocab_size", c.text.vocab_size);
    get_int(t, "context_length", "text.context_length", c.text.context_length);
    get_int(t, "width", "text.width", c.text.width);
    get_int(t, "layers", "text.layers", c.text.layers);
    get_int(t, "heads", "text.heads", c.text.heads);
    c.text.tokenizer = t.value("tokenizer", c.text.tokenizer);
  } catch (const nlohmann::json::exception& e) {
    throw ValueError(fmt::format("{}: wrong value type ({})", source, e.what()));
  }
  try {
    c.validate();
  } catch (const ValueError& e) {
    throw ValueError(fmt::format("{}: {}", source, e.what()));
  }
  return c;
}

std::string clip_config_to_json(const CLIPConfig& c) {
  nlohmann::json v = nlohmann::json::parse(vit_config_to_json(c.vision));
  nlohmann::json j = {{"arch", "clip"},
                      {"vision", v},
                      {"text",
                       {{"vocab_size", c.text.vocab_size},
                        {"context_length", c.text.context_length},
                        {"width", c.text.width},
                        {"layers", c.text.layers},
                        {"heads", c.text.heads},
                        {"tokenizer", c.text.tokenizer}}},
                      {"embed_dim", c.embed_dim}};
  return j.dump(2);
}

namespace {
std::map<std::string, CLIPConfig> clip_presets() {
  std::map<std::string, CLIPConfig> p;
  CLIPConfig micro;  // `peft clip-demo`: trains contrastively in about a minute on one core
  micro.vision.style = "openai_clip_visual";
  micro.vision.act = "quick_gelu";
  micro.vision.ln_eps = 1e-5;
  micro.vision.num_classes = 0;
  micro.vision.image_size = 32;
  micro.vision.patch_size = 8;
  micro.vision.dim = 64;
  micro.vision.depth = 2;
  micro.vision.heads = 4;
  micro.embed_dim = 64;
  micro.vision.embed_dim = 64;
  micro.text.tokenizer = "procedural";
  micro.text.vocab_size = static_cast<int64_t>(data::procedural_vocabulary().size()) + 4;  // WordTokenizer ids
  micro.text.context_length = 24;  // captions are at most 15 words + sot + eot
  micro.text.width = 64;
  micro.text.layers = 2;
  micro.text.heads = 4;
  p["clip-micro"] = micro;
  CLIPConfig b32;  // OpenAI ViT-B/32
  b32.vision = micro.vision;
  b32.vision.image_size = 224;
  b32.vision.patch_size = 32;
  b32.vision.dim = 768;
  b32.vision.depth = 12;
  b32.vision.heads = 12;
  b32.vision.embed_dim = 512;
  b32.embed_dim = 512;
  b32.text = CLIPTextConfig{};  // 49408, 77, 512, 12, 8, bpe
  p["clip-vit-b32"] = b32;
  return p;
}

std::string read_file_text(const std::string& path) {
  return read_small_file(path, "CLIP config", kMaxConfigBytes);  // bounded, regular files only (issue 20)
}
}  // namespace

std::vector<std::string> clip_preset_names() {
  std::vector<std::string> n;
  for (auto& [k, _] : clip_presets()) n.push_back(k);
  return n;
}

CLIPConfig load_clip_config(const std::string& name) {
  auto p = clip_presets();
  if (auto it = p.find(name); it != p.end()) return it->second;
  if (!std::filesystem::exists(name))
    throw IOError(fmt::format("config '{}': neither a CLIP preset ({}) nor an existing file", name,
                              fmt::join(clip_preset_names(), ", ")));
  return clip_config_from_json(read_file_text(name), name);
}

bool is_clip_config(const std::string& name) {
  if (clip_presets().count(name)) return true;
  if (!std::filesystem::is_regular_file(name)) return false;
  try {
    auto j = nlohmann::json::parse(read_file_text(name), nullptr, true, true);
    return j.is_object() && j.value("arch", std::string()) == "clip";
  } catch (const std::exception&) {
    return false;
  }
}

// ---------------------------------------------------------------- text tower

std::vector<int64_t> eot_positions(const Tensor& tokens) {
  if (tokens.dtype() != DType::i64 || tokens.dim() != 2)
    throw ShapeError(fmt::format("clip: tokens must be int64 [K, T] (got {} {}). Hint: tokenize the prompts first",
                                 dtype_name(tokens.dtype()), shape_str(tokens.sizes())));
  const int64_t K = tokens.size(0), T = tokens.size(1);
  std::vector<int64_t> ids = tokens.to_vector<int64_t>(), eot(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) {
    int64_t best = 0;
    for (int64_t t = 1; t < T; ++t)
      if (ids[static_cast<size_t>(k * T + t)] > ids[static_cast<size_t>(k * T + best)]) best = t;  // first maximum
    eot[static_cast<size_t>(k)] = best;
  }
  return eot;
}

// ---------------------------------------------------------------- CLIP

CLIP::CLIP(const CLIPConfig& c, uint64_t seed) : cfg(c), drop_gen_(seed ^ 0xc11bULL) {
  c.validate();
  Generator gen(seed);
  const CLIPTextConfig& t = c.text;
  const int64_t W = t.width;
  // The vision tower draws from its own seed so that its weights do not depend on the text sizes.
  visual = register_module("visual", std::make_shared<VisionTransformer>(c.vision, seed + 1));

  // OpenAI CLIP.initialize_parameters: embeddings N(0, .02^2) / N(0, .01^2); attention in_proj
  // std W^-0.5, out_proj and c_proj std W^-0.5 (2L)^-0.5, c_fc std (2W)^-0.5, biases 0.
  token_embedding = register_module("token_embedding", std::make_shared<Embedding>(t.vocab_size, W, gen));
  normal_(token_embedding->weight, gen, 0.0, 0.02);
  positional_embedding = register_parameter("positional_embedding", randn({t.context_length, W}, gen, DType::f32, 0.0, 0.01));

  ViTConfig layout;  // the text blocks reuse the openai ViT block (names, fused qkv, QuickGELU)
  layout.style = "openai_clip_visual";
  layout.dim = W;
  layout.heads = t.heads;
  layout.depth = t.layers;
  layout.mlp_ratio = 4.0;
  layout.act = c.vision.act;  // one activation for both towers (OpenAI: QuickGELU; open_clip LAION: GELU)
  layout.ln_eps = 1e-5;
  layout.num_classes = 0;
  const double attn_std = std::pow(static_cast<double>(W), -0.5);
  const double proj_std = attn_std * std::pow(2.0 * static_cast<double>(t.layers), -0.5);
  const double fc_std = std::pow(2.0 * static_cast<double>(W), -0.5);
  resblocks = std::make_shared<ModuleList>();
  for (int64_t i = 0; i < t.layers; ++i) {
    auto b = resblocks->push_back(std::make_shared<Block>(layout, 0.0, gen, &drop_gen_));
    normal_(b->attn->qkv->weight, gen, 0.0, attn_std);
    b->attn->qkv->bias.fill_(0.0);
    normal_(b->attn->proj->weight, gen, 0.0, proj_std);
    b->attn->proj->bias.fill_(0.0);
    normal_(b->mlp->fc1->weight, gen, 0.0, fc_std);
    b->mlp->fc1->bias.fill_(0.0);
    normal_(b->mlp->fc2->weight, gen, 0.0, proj_std);
    b->mlp->fc2->bias.fill_(0.0);
    text_blocks.push_back(b);
  }
  auto transformer = std::make_shared<Module>();
  transformer->register_module("resblocks", resblocks);
  register_module("transformer", transformer);
  ln_final = register_module("ln_final", std::make_shared<LayerNorm>(W, 1e-5));
  text_projection = register_parameter("text_projection", randn({W, c.embed_dim}, gen, DType::f32, 0.0, attn_std));
  logit_scale = register_parameter("logit_scale", scalar_tensor(std::log(1.0 / 0.07)));
}

data::TokenizerSpec tokenizer_spec(const CLIPTextConfig& c) { return {c.tokenizer, c.vocab_size, c.context_length}; }

void CLIP::set_text_hook(const std::string& name, std::shared_ptr<TokenHook> hook) {
  if (text_hook)
    throw StateError(fmt::format("clip: the text tower already has a token hook; cannot add '{}'. Hint: attach one "
                                 "method to a fresh model",
                                 name));
  text_hook = register_module(name, std::move(hook));
}

void CLIP::replace_text_block(size_t i, std::shared_ptr<Block> b) {
  resblocks->set(i, b);
  text_blocks.at(i) = std::move(b);
}

Tensor CLIP::encode_image(const Tensor& images) { return visual->forward_features(images); }

double CLIP::logit_scale_exp() const { return std::exp(logit_scale.item()); }

Tensor CLIP::encode_text(const Tensor& tokens) {
  std::vector<int64_t> eot = eot_positions(tokens);
  const int64_t T = tokens.size(1);
  if (T > cfg.text.context_length)
    throw ShapeError(fmt::format("clip.encode_text: tokens {} are longer than the context length {}. Hint: tokenize "
                                 "with context_length {}",
                                 shape_str(tokens.sizes()), cfg.text.context_length, cfg.text.context_length));
  for (int64_t id : tokens.to_vector<int64_t>())
    if (id < 0 || id >= cfg.text.vocab_size)
      throw ValueError(fmt::format("clip.encode_text: token id {} is outside the vocabulary [0, {}). Hint: use the "
                                   "tokenizer of this config ({})",
                                   id, cfg.text.vocab_size, cfg.text.tokenizer));
  // Only positions up to the last EOT can reach a pooled feature (causal mask, methods.md "CLIP text tower").
  int64_t Tm = 0;
  for (int64_t e : eot) Tm = std::max(Tm, e + 1);
  Tensor ids = contiguous(narrow(tokens, 1, 0, Tm));
  return pooled_text_features(token_embedding->forward(ids), eot);  // [K, Tm, W] -> [K, E]
}

Tensor CLIP::encode_text_embeddings(const Tensor& embeddings, const Tensor& tokens) {
  std::vector<int64_t> eot = eot_positions(tokens);
  const int64_t W = cfg.text.width;
  if (embeddings.dim() != 3 || embeddings.size(0) != tokens.size(0) || embeddings.size(1) != tokens.size(1) ||
      embeddings.size(2) != W)
    throw ShapeError(fmt::format("clip.encode_text_embeddings: embeddings {} do not match tokens {} (expected [{}, {}, {}])",
                                 shape_str(embeddings.sizes()), shape_str(tokens.sizes()), tokens.size(0),
                                 tokens.size(1), W));
  if (tokens.size(1) > cfg.text.context_length)
    throw ShapeError(fmt::format("clip.encode_text_embeddings: {} positions exceed the context length {}",
                                 tokens.size(1), cfg.text.context_length));
  int64_t Tm = 0;
  for (int64_t e : eot) Tm = std::max(Tm, e + 1);
  return pooled_text_features(narrow(embeddings, 1, 0, Tm), eot);
}

Tensor CLIP::pooled_text_features(const Tensor& emb, const std::vector<int64_t>& eot) {
  // emb: [K, T, W] input embeddings; eot: the pooling position of each row.
  const int64_t K = emb.size(0), T = emb.size(1), W = emb.size(2);
  const DType dt = positional_embedding.dtype();
  Tensor x = add(emb, narrow(positional_embedding, 0, 0, T));  // [K, T, W]
  // Causal mask [T, T]: -inf above the diagonal, added to every head's scores.
  Tensor mask = zeros({T, T}, dt);
  {
    Tensor m = zeros({T, T}, DType::f64);
    double* p = m.data<double>();
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = i + 1; j < T; ++j) p[i * T + j] = -std::numeric_limits<double>::infinity();
    mask.copy_(m);
  }
  if (text_hook) x = text_hook->after_embed(x);
  for (size_t i = 0; i < text_blocks.size(); ++i) {
    if (text_hook) x = text_hook->before_block(static_cast<int64_t>(i), x);
    x = text_blocks[i]->forward(x, mask);  // causal: row i sees keys 0..i
  }
  // Pool at the EOT rows first, then ln_final: LayerNorm acts per row, so this equals
  // LN over all rows followed by the gather, at K rows of cost instead of K*T.
  std::vector<int64_t> rows(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) rows[static_cast<size_t>(k)] = k * T + eot[static_cast<size_t>(k)];
  Tensor pooled = index_select(reshape(x, {K * T, W}), 0, from_vector_i64(rows, {K}));  // [K, W]
  return matmul(ln_final->forward(pooled), text_projection);                            // [K, E]
}

}  // namespace peft::nn
