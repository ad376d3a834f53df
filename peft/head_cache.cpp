// Head feature cache: one backbone pass per image for head-only training (see head_cache.h).
#include "peft/head_cache.h"

#include "peft/methods/adapted.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "data/transforms.h"
#include "peft/memory_guard.h"

namespace peft {

HeadFeatureCache::HeadFeatureCache(int64_t num_examples, int64_t feature_dim)
    : n_(num_examples), dim_(feature_dim), have_(static_cast<size_t>(std::max<int64_t>(num_examples, 0)), 0) {
  if (num_examples <= 0 || feature_dim <= 0)
    throw ValueError(fmt::format("head_cache: need a positive number of examples and feature size (got {} x {})",
                                 num_examples, feature_dim));
  store_ = empty({n_, dim_}, DType::f32);
}

Tensor HeadFeatureCache::gather(const std::vector<int64_t>& indices) const {
  const int64_t B = static_cast<int64_t>(indices.size());
  Tensor out = empty({B, dim_}, DType::f32);
  const float* src = store_.data<float>();
  float* dst = out.data<float>();
  for (int64_t r = 0; r < B; ++r) {
    const int64_t i = indices[static_cast<size_t>(r)];
    if (i < 0 || i >= n_ || !have_[static_cast<size_t>(i)])
      throw StateError(fmt::format("head_cache: example {} is not cached (cache of {} examples, {} filled)", i, n_,
                                   filled_));
    std::memcpy(dst + r * dim_, src + i * dim_, static_cast<size_t>(dim_) * sizeof(float));
  }
  return out;
}

Tensor HeadFeatureCache::features(nn::VisionTransformer& model, const std::vector<int64_t>& indices,
                                  const Tensor& images) {
  const int64_t B = static_cast<int64_t>(indices.size());
  if (images.dim() != 4 || images.size(0) != B || images.dtype() != DType::f32)
    throw ShapeError(fmt::format("head_cache: images {} {} do not match {} indices (expected [B, C, S, S] float32)",
                                 shape_str(images.sizes()), dtype_name(images.dtype()), B));
  std::vector<int64_t> missing;  // rows of `images` to encode
  for (int64_t r = 0; r < B; ++r) {
    const int64_t i = indices[static_cast<size_t>(r)];
    if (i < 0 || i >= n_) throw ValueError(fmt::format("head_cache: example index {} out of range [0, {})", i, n_));
    if (!have_[static_cast<size_t>(i)]) missing.push_back(r);
  }
  if (!missing.empty()) {
    // Only the missing rows go through the backbone (all of them in a first epoch; a few after
    // a resume that started mid-epoch). An index repeated within a batch is stored once.
    const int64_t M = static_cast<int64_t>(missing.size());
    Tensor src = images.is_contiguous() ? images : images.clone();
    Tensor sub = src;
    if (M != B) {
      const int64_t per = images.numel() / B;
      sub = empty({M, images.size(1), images.size(2), images.size(3)}, DType::f32);
      for (int64_t k = 0; k < M; ++k)
        std::memcpy(sub.data<float>() + k * per, src.data<float>() + missing[static_cast<size_t>(k)] * per,
                    static_cast<size_t>(per) * sizeof(float));
    }
    Tensor f;
    {
      NoGradGuard ng;  // the backbone is frozen: no graph, nothing saved for backward
      f = model.forward_features(sub);
    }
    if (f.dim() != 2 || f.size(0) != M || f.size(1) != dim_ || f.dtype() != DType::f32)
      throw ShapeError(fmt::format("head_cache: the backbone returned {} {} (expected [{}, {}] float32)",
                                   shape_str(f.sizes()), dtype_name(f.dtype()), M, dim_));
    if (!f.is_contiguous()) f = f.clone();
    for (int64_t k = 0; k < M; ++k) {
      const int64_t i = indices[static_cast<size_t>(missing[static_cast<size_t>(k)])];
      if (have_[static_cast<size_t>(i)]) continue;
      std::memcpy(store_.data<float>() + i * dim_, f.data<float>() + k * dim_, static_cast<size_t>(dim_) * sizeof(float));
      have_[static_cast<size_t>(i)] = 1;
      ++filled_;
    }
  }
  return gather(indices);
}

int64_t head_cache_bytes(int64_t n_train, int64_t n_val, int64_t feature_dim) {
  return (n_train + n_val) * feature_dim * static_cast<int64_t>(sizeof(float));
}

int64_t default_head_cache_limit() {
  const int64_t cap = int64_t{4} << 30;
  const int64_t avail = available_memory_bytes();
  return avail > 0 ? std::min(cap, avail / 4) : cap;
}

namespace {

// Why the backbone's output is not a fixed function of the image during training ("" when it is).
std::string backbone_blocker(const nn::VisionTransformer& model) {
  if (!model.head) return "the model has no head";
  for (auto& [name, p] : model.named_parameters())
    if (p.requires_grad() && name.rfind("head.", 0) != 0)
      return fmt::format("the backbone has trainable tensors (e.g. {})", name);
  for (size_t i = 0; i < model.block_list.size(); ++i) {
    const nn::Block& b = *model.block_list[i];
    if (b.drop_path->p > 0) return fmt::format("drop-path is active in training (block {}: p = {})", i, b.drop_path->p);
    if (b.mlp->drop->p > 0) return fmt::format("dropout is active in training (block {}: p = {})", i, b.mlp->drop->p);
  }
  for (methods::Adapted* a : methods::adapted_modules(const_cast<nn::VisionTransformer&>(model)))
    if (std::string why = a->training_noise(); !why.empty()) return why;
  return "";
}

}  // namespace

HeadCachePlan plan_head_cache(const nn::VisionTransformer& model, const data::DatasetPtr& train,
                              const data::DatasetPtr& val, const std::string& augment, bool wanted,
                              int64_t limit_bytes) {
  return plan_head_cache(model, train, val, data::parse_augment(augment), wanted, limit_bytes);
}

HeadCachePlan plan_head_cache(const nn::VisionTransformer& model, const data::DatasetPtr& train,
                              const data::DatasetPtr& val, const data::Augment& augment, bool wanted,
                              int64_t limit_bytes) {
  HeadCachePlan p;
  if (!wanted) {
    p.why_not = "--no-feature-cache";
    return p;
  }
  p.why_not = backbone_blocker(model);
  if (!p.why_not.empty()) return p;
  if (data::augments(augment)) {
    p.why_not = fmt::format("--augment {} changes the images every epoch", data::augment_str(augment));
    return p;
  }
  p.bytes = head_cache_bytes(train ? train->size() : 0, val ? val->size() : 0, model.cfg.feature_dim());
  const int64_t limit = limit_bytes > 0 ? limit_bytes : default_head_cache_limit();
  if (p.bytes > limit) {
    p.why_not = fmt::format("the features would take {} (limit {})", format_bytes(p.bytes), format_bytes(limit));
    return p;
  }
  p.on = true;
  return p;
}

}  // namespace peft
