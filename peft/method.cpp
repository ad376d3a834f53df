// The method registry: names, descriptions, option checks, attaching and the adapter metadata.
#include "peft/method.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <tuple>

#include "core/error.h"
#include "nn/bf16_storage.h"
#include "peft/methods/adapted.h"
#include "peft/methods/methods.h"

namespace peft {

const std::vector<OptionSpec>& method_option_specs() {
  static const std::vector<OptionSpec> s = {
      {"prompts", "--prompts", "prompts M"},
      {"prompt_dropout", "--prompt-dropout", "prompt dropout (training only)"},
      {"rank", "--rank", "rank r"},
      {"alpha", "--alpha", "LoRA/DoRA alpha (default: rank); FacT scale (default 1)"},
      {"targets", "--targets", "target linears (names or globs, comma-separated)"},
      {"bottleneck", "--bottleneck", "bottleneck width b"},
  };
  return s;
}

bool MethodDescriptor::uses(const std::string& key) const {
  return std::find(options.begin(), options.end(), key) != options.end();
}

const std::vector<MethodDescriptor>& vision_method_registry() {
  // One entry per file in peft/methods/; this list is the listing order.
  static const std::vector<MethodDescriptor> r = {
      methods::linear_method(), methods::full_method(),        methods::bitfit_method(),
      methods::vpt_shallow_method(), methods::vpt_deep_method(), methods::cvpt_method(),
      methods::ssf_method(),    methods::lora_method(),        methods::adaptformer_method(),
      methods::dora_method(),     methods::ia3_method(),         methods::fact_method(),
      methods::adapter_method(),  methods::prefix_method(),      methods::lntune_method(),
  };
  return r;
}

const std::vector<MethodInfo>& vision_methods() {
  static const std::vector<MethodInfo> m = [] {
    std::vector<MethodInfo> out;
    for (const MethodDescriptor& d : vision_method_registry()) out.push_back({d.name, d.description, d.option_help});
    return out;
  }();
  return m;
}

bool is_vision_method(const std::string& name) {
  for (auto& m : vision_method_registry())
    if (m.name == name) return true;
  return false;
}

const MethodDescriptor& vision_method(const std::string& name) {
  for (auto& m : vision_method_registry())
    if (m.name == name) return m;
  std::string names;
  for (auto& m : vision_method_registry()) names += (names.empty() ? "" : ", ") + m.name;
  throw MethodError(fmt::format("--method: unknown method '{}' (available: {})", name, names));
}

void apply_method_defaults(const std::string& method, MethodOptions& o, const std::set<std::string>& given) {
  const MethodDescriptor& d = vision_method(method);
  if (!d.defaults) return;
  MethodOptions def = o;
  d.defaults(def);
  if (!given.count("prompts")) o.prompts = def.prompts;
  if (!given.count("prompt_dropout")) o.prompt_dropout = def.prompt_dropout;
  if (!given.count("rank")) o.rank = def.rank;
  if (!given.count("alpha")) o.alpha = def.alpha;
  if (!given.count("targets")) o.targets = def.targets;
  if (!given.count("bottleneck")) o.bottleneck = def.bottleneck;
}

MethodOptions overlay_given(const MethodOptions& base, const MethodOptions& typed) {
  MethodOptions o = base;
  for (const std::string& key : typed.given) {
    if (key == "prompts") o.prompts = typed.prompts;
    if (key == "prompt_dropout") o.prompt_dropout = typed.prompt_dropout;
    if (key == "rank") o.rank = typed.rank;
    if (key == "alpha") o.alpha = typed.alpha;
    if (key == "targets") o.targets = typed.targets;
    if (key == "bottleneck") o.bottleneck = typed.bottleneck;
  }
  o.given.insert(typed.given.begin(), typed.given.end());
  o.use_method_defaults = false;
  return o;
}

MethodOptions resolved_options(const std::string& method, const MethodOptions& o) {
  MethodOptions r = o;
  if (r.use_method_defaults) apply_method_defaults(method, r, r.given);
  r.use_method_defaults = false;
  return r;
}

void validate_method_options(const std::string& method, const MethodOptions& raw) {
  const MethodDescriptor& d = vision_method(method);
  const MethodOptions o = resolved_options(method, raw);
  if (d.uses("prompts") && o.prompts <= 0)
    throw MethodError(fmt::format("--prompts must be >= 1 for {} (got {})", method, o.prompts));
  if (d.uses("prompt_dropout") && !(o.prompt_dropout >= 0.0 && o.prompt_dropout < 1.0))
    throw MethodError(fmt::format("--prompt-dropout must be in [0, 1) (got {})", o.prompt_dropout));
  if (d.uses("rank") && o.rank <= 0) throw MethodError(fmt::format("--rank must be >= 1 for {} (got {})", method, o.rank));
  if (d.uses("targets") && o.targets.find_first_not_of(", ") == std::string::npos)
    throw MethodError("--targets is empty. Hint: e.g. --targets attn.qkv,mlp.fc1");
  if (d.uses("bottleneck") && o.bottleneck <= 0)
    throw MethodError(fmt::format("--bottleneck must be >= 1 for {} (got {})", method, o.bottleneck));
  // Upper bounds: a wrapped size product crashed (issue 20, rank 2^56); no real adapter comes near.
  constexpr int64_t kMax = int64_t{1} << 16;
  for (auto [key, flag, v] : {std::tuple{"prompts", "--prompts", o.prompts}, std::tuple{"rank", "--rank", o.rank},
                              std::tuple{"bottleneck", "--bottleneck", o.bottleneck}})
    if (d.uses(key) && v > kMax) throw MethodError(fmt::format("{} must be <= {} for {} (got {})", flag, kMax, method, v));
  if (d.uses("alpha") && !std::isfinite(o.alpha))
    throw MethodError(fmt::format("--alpha must be a finite number for {} (got {})", method, o.alpha));
}

std::vector<std::string> lora_target_names(nn::VisionTransformer& vit, const std::string& targets) {
  // Short names per layout (methods.md "LoRA", "What must match"). On the openai layout the timm short names are
  // aliases of their openai counterparts, so the default --targets attn.qkv means attn.in_proj.
  const bool openai = vit.cfg.style == "openai_clip_visual";
  const std::vector<std::string> short_names = openai
      ? std::vector<std::string>{"attn.in_proj", "attn.out_proj", "mlp.c_fc", "mlp.c_proj"}
      : std::vector<std::string>{"attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"};
  const std::vector<std::string> timm_names = {"attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"};
  const std::string block_glob = openai ? "transformer.resblocks.*." : "blocks.*.";
  // Candidates: the backbone's linears under their base names (not the head, not adapters). The
  // openai fused projection is no module of its own: it is listed as {attn}.in_proj, where its
  // LoRA tensors go (methods.md "What must match").
  std::vector<std::string> linears;
  for (const methods::LinearSite& s : methods::linear_sites(vit)) linears.push_back(s.name);
  std::vector<bool> chosen(linears.size(), false);
  size_t start = 0;
  while (start <= targets.size()) {
    size_t end = targets.find(',', start);
    if (end == std::string::npos) end = targets.size();
    std::string t = targets.substr(start, end - start);
    t.erase(0, t.find_first_not_of(' '));
    t.erase(t.find_last_not_of(' ') + 1);
    start = end + 1;
    if (t.empty()) continue;
    std::string pattern = t;
    for (size_t i = 0; i < short_names.size(); ++i)
      if (t == short_names[i] || (openai && t == timm_names[i])) pattern = block_glob + short_names[i];
    int hits = 0;
    for (size_t i = 0; i < linears.size(); ++i)
      if (nn::glob_match(pattern, linears[i])) {
        chosen[i] = true;
        ++hits;
      }
    if (hits == 0) {
      std::string shorts;
      for (const auto& n : short_names) shorts += (shorts.empty() ? "" : ", ") + n;
      throw MethodError(fmt::format(
          "--targets: '{}' matches no linear layer (short names: {}; or globs over full names such as {}0.{})", t,
          shorts, block_glob.substr(0, block_glob.size() - 2), short_names[0]));
    }
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < linears.size(); ++i)
    if (chosen[i]) out.push_back(linears[i]);
  if (out.empty()) throw MethodError("--targets is empty. Hint: e.g. --targets attn.qkv,mlp.fc1");
  return out;
}

std::vector<std::string> trainable_names(const nn::Module& m) {
  std::vector<std::string> out;
  for (auto& [n, t] : m.named_parameters())
    if (t.requires_grad()) out.push_back(n);
  return out;
}

void apply_method(nn::VisionTransformer& vit, const std::string& method, const MethodOptions& raw, int64_t k,
                  Generator& gen) {
  validate_method_options(method, raw);
  const MethodOptions o = resolved_options(method, raw);
  const MethodDescriptor& d = vision_method(method);
  if (k <= 0) throw ValueError(fmt::format("{}: needs a classifier head (got {} classes)", method, k));
  if (d.timm_only && vit.cfg.style != "timm")
    throw MethodError(fmt::format("--method {}: defined for style timm only, not {} (methods.md 19-24, Layout). Hint: "
                                  "use a timm model",
                                  method, vit.cfg.style));
  if (vit.cfg.style != "timm" && vit.cfg.style != "openai_clip_visual")
    throw MethodError(fmt::format("--method {}: not defined for style {} (methods.md 18). Hint: use a timm or "
                                  "openai_clip_visual model",
                                  method, vit.cfg.style));
  if (d.validate) d.validate(o, vit.cfg);
  // Checks that need the model (LoRA targets) run before anything changes: a bad option leaves
  // the model as it was.
  if (d.uses("targets")) lora_target_names(vit, o.targets);
  const DType dt = vit.dtype();
  vit.reset_head(k, gen);  // fresh head for K classes (its init is open, methods.md "What must match")
  if (dt != DType::f32) vit.head->to(dt);
  vit.freeze_all();
  d.attach(vit, o, gen);
  vit.unfreeze("head.*");
  nn::store_frozen_weights_bf16(vit);  // --precision bf16: frozen GEMM weights held once, in bf16
}

std::unique_ptr<nn::VisionTransformer> build_model(const nn::ViTConfig& c, const std::string& method,
                                                   const MethodOptions& o, int64_t k, uint64_t seed,
                                                   const std::function<void(nn::VisionTransformer&)>& load_fn) {
  auto vit = std::make_unique<nn::VisionTransformer>(c, seed);
  if (load_fn) load_fn(*vit);
  Generator gen(seed + 1);
  apply_method(*vit, method, o, k, gen);
  return vit;
}

std::map<std::string, std::string> method_metadata(const std::string& method, const MethodOptions& raw) {
  const MethodOptions o = is_vision_method(method) ? resolved_options(method, raw) : raw;  // what the method used
  return {{"method", method},
          {"prompts", std::to_string(o.prompts)},
          {"prompt_dropout", fmt::format("{}", o.prompt_dropout)},
          {"rank", std::to_string(o.rank)},
          {"alpha", fmt::format("{}", o.alpha)},
          {"targets", o.targets},
          {"bottleneck", std::to_string(o.bottleneck)}};
}

void read_metadata_number(const std::map<std::string, std::string>& md, const char* key, double& field) {
  auto f = md.find(key);
  if (f == md.end()) return;
  try {
    size_t used = 0;
    field = std::stod(f->second, &used);
    if (used != f->second.size() || !std::isfinite(field)) throw ValueError("");
  } catch (const std::exception&) {
    throw ValueError(fmt::format("adapter: metadata '{}' = '{}' is not a finite number", key, f->second));
  }
}

void read_metadata_number(const std::map<std::string, std::string>& md, const char* key, int64_t& field) {
  auto f = md.find(key);
  if (f == md.end()) return;
  // Whole numbers only, in range (a double cast of 1e300 is undefined behaviour).
  const std::string& s = f->second;
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size())
    throw ValueError(fmt::format("adapter: metadata '{}' = '{}' is not an integer in int64 range", key, s));
  field = v;
}

std::string metadata_method(const std::map<std::string, std::string>& md) {
  auto it = md.find("method");
  if (it == md.end()) throw ValueError("adapter: its metadata names no method");
  return it->second;
}

std::string method_from_metadata(const std::map<std::string, std::string>& md, MethodOptions& o) {
  const std::string method = metadata_method(md);
  auto num = [&](const char* k, auto& field) { read_metadata_number(md, k, field); };
  num("prompts", o.prompts);
  num("prompt_dropout", o.prompt_dropout);
  num("rank", o.rank);
  num("alpha", o.alpha);
  num("bottleneck", o.bottleneck);
  if (auto f = md.find("targets"); f != md.end()) o.targets = f->second;
  return method;
}

}  // namespace peft
