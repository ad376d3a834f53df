// The method registry: names, descriptions, option checks, attaching and the adapter metadata.
#include "peft/method.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"
#include "peft/methods/methods.h"

namespace peft {

const std::vector<MethodInfo>& vision_methods() {
  static const std::vector<MethodInfo> m = {
      {"linear", "linear probe: frozen backbone, trains the head", ""},
      {"full", "full fine-tuning: every tensor trains", ""},
      {"bitfit",
       "BitFit: trains every *.bias (LayerNorm and patch_embed.proj biases included; openai layout: also "
       "attn.in_proj_bias) and the head",
       ""},
      {"vpt-shallow",
       "VPT-shallow: M prompts between the prefix tokens (CLS, registers) and the patches before block 0 (no "
       "pos-embed), and the head",
       "--prompts M (default 10), --prompt-dropout p"},
      {"vpt-deep", "VPT-deep: vpt.prompts [L,M,D], row i replaces the prompt rows before block i, and the head",
       "--prompts M (default 10), --prompt-dropout p"},
      {"cvpt", "CVPT: tokens cross-attend to cvpt.prompts [L,M,D] with each block's frozen attention, and the head",
       "--prompts M (default 10), --prompt-dropout p"},
      {"ssf",
       "SSF: scale and shift after the 6L+2 ops (patch_embed.proj, norm1, attn.qkv, attn.proj, norm2, mlp.fc1, "
       "mlp.fc2, norm; openai layout: conv1, ln_1, attn.in_proj, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj, "
       "ln_post), and the head; mergeable (peft merge)",
       ""},
      {"lora", "LoRA: (alpha/r) B A added to the target linears, and the head; mergeable (peft merge)",
       "--rank r (default 8), --alpha a (default r), --targets LIST (default attn.qkv; short names attn.qkv, "
       "attn.proj, mlp.fc1, mlp.fc2 (openai layout: attn.in_proj, attn.out_proj, mlp.c_fc, mlp.c_proj) or globs "
       "over full names)"},
      {"adaptformer", "AdaptFormer: 0.1 * up(relu(down(x))) parallel to each MLP, fed the post-attention stream, "
                      "and the head",
       "--bottleneck b (default 64)"},
  };
  return m;
}

bool is_vision_method(const std::string& name) {
  for (auto& m : vision_methods())
    if (m.name == name) return true;
  return false;
}

namespace {
bool uses_prompts(const std::string& m) { return m == "vpt-shallow" || m == "vpt-deep" || m == "cvpt"; }
}  // namespace

void validate_method_options(const std::string& method, const MethodOptions& o) {
  if (!is_vision_method(method)) {
    std::string names;
    for (auto& m : vision_methods()) names += (names.empty() ? "" : ", ") + m.name;
    throw MethodError(fmt::format("--method: unknown method '{}' (available: {})", method, names));
  }
  if (uses_prompts(method)) {
    if (o.prompts <= 0) throw MethodError(fmt::format("--prompts must be >= 1 for {} (got {})", method, o.prompts));
    if (!(o.prompt_dropout >= 0.0 && o.prompt_dropout < 1.0))
      throw MethodError(fmt::format("--prompt-dropout must be in [0, 1) (got {})", o.prompt_dropout));
  }
  if (method == "lora") {
    if (o.rank <= 0) throw MethodError(fmt::format("--rank must be >= 1 for lora (got {})", o.rank));
    if (o.targets.find_first_not_of(", ") == std::string::npos)
      throw MethodError("--targets is empty. Hint: e.g. --targets attn.qkv,mlp.fc1");
  }
  if (method == "adaptformer" && o.bottleneck <= 0)
    throw MethodError(fmt::format("--bottleneck must be >= 1 for adaptformer (got {})", o.bottleneck));
}

std::vector<std::string> lora_target_names(nn::VisionTransformer& vit, const std::string& targets) {
  // Short names per layout (methods.md 11, 18). On the openai layout the timm short names are
  // aliases of their openai counterparts, so the default --targets attn.qkv means attn.in_proj.
  const bool openai = vit.cfg.style == "openai_clip_visual";
  const std::vector<std::string> short_names = openai
      ? std::vector<std::string>{"attn.in_proj", "attn.out_proj", "mlp.c_fc", "mlp.c_proj"}
      : std::vector<std::string>{"attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"};
  const std::vector<std::string> timm_names = {"attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"};
  const std::string block_glob = openai ? "transformer.resblocks.*." : "blocks.*.";
  // Candidates: the backbone's linears under their base names (not the head, not adapters). The
  // openai fused projection is no module of its own: it is listed as {attn}.in_proj, where its
  // LoRA tensors go (methods.md 18).
  std::vector<std::string> linears;
  for (auto& [name, m] : vit.named_modules()) {
    if (name == "head" || name.find("adaptmlp") != std::string::npos) continue;
    if (auto* at = dynamic_cast<nn::Attention*>(m); at && at->openai_names) linears.push_back(name + ".in_proj");
    if (dynamic_cast<nn::Linear*>(m)) linears.push_back(name);
  }
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

void apply_method(nn::VisionTransformer& vit, const std::string& method, const MethodOptions& o, int64_t k,
                  Generator& gen) {
  validate_method_options(method, o);
  if (k <= 0) throw ValueError(fmt::format("{}: needs a classifier head (got {} classes)", method, k));
  const DType dt = vit.dtype();
  if (method == "ssf" || method == "lora") {
    // Both layouts are defined: timm by methods.md 10/11, openai_clip_visual by methods.md 18
    // ("Chosen here for the openai layout": no official code defines those).
    if (vit.cfg.style != "timm" && vit.cfg.style != "openai_clip_visual")
      throw MethodError(fmt::format("--method {}: not defined for style {} (methods.md 18). Hint: use a timm or "
                                    "openai_clip_visual model",
                                    method, vit.cfg.style));
  }
  // LoRA targets are resolved before anything changes, so a bad --targets leaves the model as it was.
  std::vector<std::string> lora_linears;
  if (method == "lora") lora_linears = lora_target_names(vit, o.targets);

  vit.reset_head(k, gen);  // fresh head for K classes (its init is open, methods.md 18)
  if (dt != DType::f32) vit.head->to(dt);
  if (method == "full") {
    for (auto& [_, p] : vit.named_parameters()) Tensor(p).requires_grad_(true);
    return;
  }
  vit.freeze_all();
  // Each attach registers its tensors as trainable leaves (or unfreezes base biases for BitFit).
  if (method == "bitfit") methods::attach_bitfit(vit);
  if (method == "vpt-shallow" || method == "vpt-deep")
    methods::attach_vpt(vit, o.prompts, method == "vpt-deep", o.prompt_dropout, gen);
  if (method == "cvpt") methods::attach_cvpt(vit, o.prompts, o.prompt_dropout, gen);
  if (method == "ssf") methods::attach_ssf(vit, gen);
  if (method == "lora") methods::attach_lora(vit, lora_linears, o.rank, o.alpha < 0 ? static_cast<double>(o.rank) : o.alpha, gen);
  if (method == "adaptformer") methods::attach_adaptformer(vit, o.bottleneck, gen);
  vit.unfreeze("head.*");
}

std::map<std::string, std::string> method_metadata(const std::string& method, const MethodOptions& o) {
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
    field = std::stod(f->second);
  } catch (const std::exception&) {
    throw ValueError(fmt::format("adapter: metadata '{}' = '{}' is not a number", key, f->second));
  }
}

void read_metadata_number(const std::map<std::string, std::string>& md, const char* key, int64_t& field) {
  double v = static_cast<double>(field);
  read_metadata_number(md, key, v);
  field = static_cast<int64_t>(v);
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
