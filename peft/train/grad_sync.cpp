// One flat float buffer for every trainable gradient: one MPI call per update instead of one per
// tensor (a LoRA model has ~100 small tensors, where per-call latency would dominate).
#include "peft/train/grad_sync.h"

#include <fmt/format.h>

#include <cstring>

#include "core/error.h"

namespace peft {

GradSync::GradSync(dist::World& world, const std::vector<nn::ParamSpec>& groups) : world_(world) {
  size_t n = 0;
  for (auto& g : groups) {
    if (g.param.dtype() != DType::f32)
      throw DTypeError(fmt::format("data-parallel training: '{}' is {} (only float32 tensors are all-reduced)", g.name,
                                   dtype_name(g.param.dtype())));
    n += static_cast<size_t>(g.param.numel());
  }
  buf_.assign(n + groups.size(), 0.0f);
}

void GradSync::allreduce(const std::vector<nn::ParamSpec>& groups) {
  const size_t flags = buf_.size() - groups.size();
  size_t off = 0;
  for (size_t i = 0; i < groups.size(); ++i) {
    const Tensor& p = groups[i].param;
    const size_t k = static_cast<size_t>(p.numel());
    Tensor g = p.grad();
    if (g.defined()) {
      Tensor c = g.is_contiguous() ? g : g.clone();
      std::memcpy(buf_.data() + off, c.data<float>(), k * sizeof(float));
    } else {
      std::memset(buf_.data() + off, 0, k * sizeof(float));
    }
    buf_[flags + i] = g.defined() ? 1.0f : 0.0f;
    off += k;
  }
  world_.allreduce_sum(buf_.data(), buf_.size(), "the gradient allreduce");
  off = 0;
  for (size_t i = 0; i < groups.size(); ++i) {
    Tensor p = groups[i].param;
    const size_t k = static_cast<size_t>(p.numel());
    if (buf_[flags + i] > 0) {
      Tensor g = p.grad();
      if (!g.defined() || !g.is_contiguous()) {
        g = empty(p.sizes(), DType::f32);
        p.set_grad(g);
      }
      std::memcpy(g.data<float>(), buf_.data() + off, k * sizeof(float));
    }
    off += k;
  }
}

void reduce_batch_stats(dist::World& world, double& mean_loss, int64_t& correct, int64_t& n) {
  double v[3] = {n > 0 ? mean_loss * static_cast<double>(n) : 0.0, static_cast<double>(correct), static_cast<double>(n)};
  world.allreduce_sum(v, 3, "the batch statistics' allreduce");
  n = static_cast<int64_t>(v[2]);
  correct = static_cast<int64_t>(v[1]);
  mean_loss = v[0] / static_cast<double>(n);
}

}  // namespace peft
