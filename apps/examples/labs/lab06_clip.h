// Lab 6 exercises (docs/labs/06-clip.md): zero-shot CLIP and the few-shot heads TaskRes and
// Tip-Adapter, written from methods.md "CLIP logits", "TaskRes" and 17. Reference solutions filled in so that
// tests/labs/test_lab06.cpp passes.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "core/error.h"
#include "nn/clip.h"
#include "nn/config.h"

namespace lab06 {

using peft::Tensor;

// The tiny CLIP preset (procedural word tokenizer: no vocabulary file), randomly initialised with
// `seed`, in eval mode. Run `peft clip-demo` for a contrastively trained one.
inline std::unique_ptr<peft::nn::CLIP> make_clip(uint64_t seed = 0) {
  auto clip = std::make_unique<peft::nn::CLIP>(peft::nn::load_clip_config("clip-micro"), seed);
  clip->eval();
  return clip;
}

// Prompt templates in the procedural vocabulary; "{}" is replaced by the class name.
inline std::vector<std::string> templates() {
  return {"a photo of a {}", "a photo of a small {}", "a photo of a large {}"};
}

inline std::string fill_template(const std::string& tmpl, const std::string& class_name) {
  std::string s = tmpl;
  const size_t at = s.find("{}");
  if (at == std::string::npos) throw peft::ValueError("fill_template: '" + tmpl + "' has no {} for the class name");
  return s.replace(at, 2, class_name);
}

// tokens [K, context_length]: one prompt per class from one template.
inline Tensor class_tokens(const peft::nn::CLIP& clip, const std::vector<std::string>& classes, const std::string& tmpl) {
  peft::nn::TextTokenizer tok(clip.cfg.text, "");
  std::vector<std::string> lines;
  for (const auto& k : classes) lines.push_back(fill_template(tmpl, k));
  return tok.tokenize(lines);
}

// Exercise 1: the zero-shot classifier of methods.md "CLIP logits" over several templates,
//   c_k = norm( mean_t norm(u(p_kt)) )   [K, E]
// where u = CLIP::encode_text (raw text features) of class k's prompt from template t. No autograd.
inline Tensor zero_shot_classifier(peft::nn::CLIP& clip, const std::vector<std::string>& classes,
                                   const std::vector<std::string>& tmpls) {
  using namespace peft;
  NoGradGuard ng;
  Tensor acc;
  for (const auto& t : tmpls) {
    Tensor u = l2_normalize(clip.encode_text(class_tokens(clip, classes, t)));  // [K, E], one per class
    acc = acc.defined() ? add(acc, u) : u;
  }
  return l2_normalize(mul(acc, 1.0 / static_cast<double>(tmpls.size())));
}

// ... and its logits: s * norm(f) c^T with s = exp(logit_scale), f raw image features [B, E].
inline Tensor zero_shot_logits(const peft::nn::CLIP& clip, const Tensor& f, const Tensor& c) {
  using namespace peft;
  return mul(matmul(l2_normalize(f), transpose(c, 0, 1)), clip.logit_scale_exp());
}

// Exercise 2: TaskRes (methods.md "TaskRes"). The base is the raw, unnormalised text features [K, E]; the
// classifier base + alpha * residual is normalised only after the sum:
//   logits = s * norm(f) norm(base + alpha R)^T
// Differentiable in `residual` (the only trainable tensor).
inline Tensor taskres_logits(const peft::nn::CLIP& clip, const Tensor& f, const Tensor& base, const Tensor& residual,
                             double alpha) {
  using namespace peft;
  Tensor c = add(base, mul(residual, alpha));  // [K, E]
  return mul(matmul(l2_normalize(f), transpose(l2_normalize(c), 0, 1)), clip.logit_scale_exp());
}

// Exercise 3: Tip-Adapter (methods.md "Tip-Adapter"). c: the normalised zero-shot classifier [K, E]; keys: the
// cache keys [NK, E] (already normalised, not re-normalised here: Tip-Adapter-F trains them);
// labels [NK] int64 in [0, K).
//   Aff = norm(f) keys^T                                                 [B, NK]
//   logits = 100 * norm(f) c^T + alpha * exp(-beta * (1 - Aff)) Y        Y = one_hot(labels) [NK, K]
// Differentiable in `keys`.
inline Tensor tip_adapter_logits(const Tensor& f, const Tensor& c, const Tensor& keys, const Tensor& labels,
                                 double alpha, double beta) {
  using namespace peft;
  const int64_t K = c.size(0), NK = keys.size(0);
  const std::vector<int64_t> y = labels.to_vector<int64_t>();
  std::vector<double> onehot(static_cast<size_t>(NK * K), 0.0);
  for (int64_t n = 0; n < NK; ++n) onehot[static_cast<size_t>(n * K + y[static_cast<size_t>(n)])] = 1.0;
  Tensor Y = from_vector(onehot, {NK, K}, DType::f64).to(f.dtype());
  Tensor nf = l2_normalize(f);
  Tensor clip_part = mul(matmul(nf, transpose(c, 0, 1)), 100.0);  // the official constant, not s
  Tensor aff = matmul(nf, transpose(keys, 0, 1));                 // [B, NK]
  Tensor w = exp(mul(add(neg(aff), 1.0), -beta));                 // exp(-beta (1 - Aff))
  return add(clip_part, mul(matmul(w, Y), alpha));
}

}  // namespace lab06
