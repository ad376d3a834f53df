// The CLIP method registry, option resolution, the heads' shared helpers, building a head and the
// adapter metadata. Each method's head is in peft/methods/clip_*.cpp.
#include "peft/clip_methods.h"

#include <fmt/format.h>

#include <cmath>
#include <memory>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "nn/bf16_storage.h"
#include "peft/methods/clip_methods.h"

namespace peft {

const std::vector<ClipMethodDescriptor>& clip_method_registry() {
  // One entry per file in peft/methods/clip_*.cpp; this list is the listing order.
  static const std::vector<ClipMethodDescriptor> r = {
      methods::clip_zeroshot_method(),          methods::clip_taskres_method(), methods::clip_coop_method(),
      methods::clip_adapter_method(),           methods::clip_tip_adapter_method(false),
      methods::clip_tip_adapter_method(true),
      methods::clip_cocoop_method(),
      methods::clip_kgcoop_method(),
      methods::clip_lora_method(),
      methods::clip_maple_method(),
  };
  return r;
}

const std::vector<MethodInfo>& clip_methods() {
  static const std::vector<MethodInfo> m = [] {
    std::vector<MethodInfo> out;
    for (const ClipMethodDescriptor& d : clip_method_registry()) out.push_back({d.name, d.description, d.option_help});
    return out;
  }();
  return m;
}

bool is_clip_method(const std::string& name) {
  for (auto& m : clip_method_registry())
    if (m.name == name) return true;
  return false;
}

const ClipMethodDescriptor& clip_method(const std::string& name) {
  for (auto& m : clip_method_registry())
    if (m.name == name) return m;
  throw ValueError(fmt::format("unknown CLIP method '{}' (see peft methods)", name));
}

ClipMethodOptions resolve_clip_options(const std::string& method, const ClipMethodOptions& o) {
  const ClipMethodDescriptor& d = clip_method(method);
  ClipMethodOptions r = o;
  if (r.prompts < 0) r.prompts = d.default_prompts;
  if (d.uses_prompts && (r.prompts <= 0 || r.prompts > (int64_t{1} << 16)))
    throw ValueError(fmt::format("{}: --prompts must be in [1, 65536] (got {})", method, r.prompts));
  // Non-finite hyper-parameters give an all-NaN adapter that "trains" with exit 0 (issue 20).
  if (!std::isfinite(o.alpha)) throw ValueError(fmt::format("{}: --alpha must be a finite number (got {})", method, o.alpha));
  if (!std::isfinite(o.beta)) throw ValueError(fmt::format("{}: --beta must be a finite number (got {})", method, o.beta));
  if (!std::isfinite(o.kg_weight))
    throw ValueError(fmt::format("{}: --kg-weight must be a finite number (got {})", method, o.kg_weight));
  if (r.alpha < 0) r.alpha = d.default_alpha;
  if (r.rank < 0) r.rank = d.default_rank;
  if (r.targets.empty()) r.targets = d.default_targets;
  return r;
}

double resolve_alpha(const std::string& method, const ClipMethodOptions& o) { return resolve_clip_options(method, o).alpha; }

void ClipHead::check_features(const Tensor& f) const {
  const int64_t E = clip.cfg.embed_dim;
  if (f.dim() != 2 || f.size(1) != E)
    throw ShapeError(fmt::format("{}: image features {} (expected [B, {}]). Hint: pass raw encode_image outputs",
                                 method, shape_str(f.sizes()), E));
}

namespace methods {

DType model_dtype(const nn::CLIP& clip) { return clip.text_projection.dtype(); }

Tensor frozen_text_features(nn::CLIP& clip, const Tensor& tokens) {
  NoGradGuard ng;
  return clip.encode_text(tokens);
}

Tensor context_prompt_tokens(const std::string& method, const Tensor& tokens0, int64_t M) {
  std::vector<int64_t> eot = nn::eot_positions(tokens0);
  int64_t Tm = 0;
  for (size_t k = 0; k < eot.size(); ++k) {
    if (eot[k] <= M)
      throw ValueError(fmt::format("{}: prompt line {} has its EOT at position {} <= M = {}: it has only {} tokens to "
                                   "replace. Hint: lower --prompts or use longer lines (e.g. 'a photo of a {{class}}.')",
                                   method, k + 1, eot[k], M, eot[k] - 1));
    Tm = std::max(Tm, eot[k] + 1);
  }
  return contiguous(narrow(tokens0, 1, 0, Tm));
}

Tensor zero_shot_classifier(nn::CLIP& clip, const PromptTokens& p) {
  return ensemble_classifier(encode_text_rows(clip, p.ensemble), p.per_class);
}

}  // namespace methods

std::shared_ptr<ClipHead> make_clip_head(nn::CLIP& clip, const std::string& method, const ClipMethodOptions& o,
                                         const Tensor& tokens, Generator& gen, const Tensor& cache_keys,
                                         const Tensor& cache_labels) {
  return make_clip_head(clip, method, o, PromptTokens::from_tokens(tokens), gen, cache_keys, cache_labels);
}

std::shared_ptr<ClipHead> make_clip_head(nn::CLIP& clip, const std::string& method, const ClipMethodOptions& o,
                                         const PromptTokens& p, Generator& gen, const Tensor& cache_keys,
                                         const Tensor& cache_labels, const Tensor& kg_tokens) {
  const ClipMethodOptions ro = resolve_clip_options(method, o);  // also rejects unknown methods
  const ClipMethodDescriptor& d = clip_method(method);
  const Tensor& tokens = p.single;
  if (!tokens.defined() || tokens.dim() != 2 || tokens.size(0) == 0)
    throw ValueError(fmt::format("{}: no class prompts (tokens {}). Hint: --texts needs one prompt per line", method,
                                 tokens.defined() ? shape_str(tokens.sizes()) : std::string("undefined")));
  if (!p.ensemble.defined() || p.ensemble.dim() != 2 || p.per_class < 1 || p.ensemble.size(0) != tokens.size(0) * p.per_class)
    throw ValueError(fmt::format("{}: {} ensemble prompt rows for {} classes x {} templates", method,
                                 p.ensemble.defined() ? p.ensemble.size(0) : 0, tokens.size(0), p.per_class));
  clip.freeze_all();  // the backbone and logit_scale are frozen in every method
  if (d.validate) d.validate(ro, clip.cfg);
  ClipHeadInputs in{p, cache_keys, cache_labels, kg_tokens.defined() ? kg_tokens : tokens};
  std::shared_ptr<ClipHead> h = d.make(clip, ro, in, gen);
  nn::store_frozen_weights_bf16(clip);  // --precision bf16: frozen GEMM weights held once, in bf16
  h->eval();
  return h;
}

Tensor tip_cache_keys(const Tensor& features) {
  NoGradGuard ng;
  if (features.dim() == 2) return l2_normalize(features);
  if (features.dim() != 3)
    throw ShapeError(fmt::format("tip_cache_keys: features {} (expected [NK, E] or [NK, views, E])",
                                 shape_str(features.sizes())));
  return l2_normalize(mean(features, {1}));
}

std::map<std::string, std::string> clip_method_metadata(const std::string& method, const ClipMethodOptions& raw) {
  const ClipMethodOptions o = resolve_clip_options(method, raw);  // what the method used
  return {{"method", method},
          {"alpha", fmt::format("{}", o.alpha)},
          {"beta", fmt::format("{}", o.beta)},
          {"prompts", std::to_string(o.prompts)},
          {"rank", std::to_string(o.rank)},
          {"targets", o.targets},
          {"encoder", o.encoder},
          {"depth", std::to_string(o.depth)},
          {"kg_weight", fmt::format("{}", o.kg_weight)}};
}

std::string clip_method_from_metadata(const std::map<std::string, std::string>& md, ClipMethodOptions& o) {
  const std::string method = metadata_method(md);
  auto num = [&](const char* k, auto& field) { read_metadata_number(md, k, field); };
  num("alpha", o.alpha);
  num("beta", o.beta);
  num("prompts", o.prompts);
  num("rank", o.rank);
  num("depth", o.depth);
  num("kg_weight", o.kg_weight);
  if (auto it = md.find("targets"); it != md.end()) o.targets = it->second;
  if (auto it = md.find("encoder"); it != md.end()) o.encoder = it->second;
  return method;
}

}  // namespace peft
