// One flat float buffer for every trainable gradient and the batch statistics: one MPI call per
// update instead of one per tensor (a LoRA model has ~100 small tensors, where per-call latency
// would dominate) plus one for the statistics.
#include "peft/train/grad_sync.h"

#include <fmt/format.h>

#include <cmath>
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
  grads_ = n + groups.size();
}

void GradSync::add_batch(double mean_loss, int64_t correct, int64_t n) {
  stats_.push_back(n > 0 ? static_cast<float>(mean_loss * static_cast<double>(n)) : 0.0f);
  stats_.push_back(static_cast<float>(correct));  // exact up to 2^24 examples per batch
  stats_.push_back(static_cast<float>(n));
}

std::vector<GlobalBatchStats> GradSync::allreduce(const std::vector<nn::ParamSpec>& groups) {
  buf_.resize(grads_ + stats_.size());
  const size_t flags = grads_ - groups.size();
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
  std::copy(stats_.begin(), stats_.end(), buf_.begin() + static_cast<std::ptrdiff_t>(grads_));
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
  std::vector<GlobalBatchStats> out;
  for (size_t b = grads_; b < buf_.size(); b += 3) {
    GlobalBatchStats s;
    s.n = std::llround(buf_[b + 2]);
    s.correct = std::llround(buf_[b + 1]);
    s.mean_loss = static_cast<double>(buf_[b]) / static_cast<double>(s.n);
    out.push_back(s);
  }
  stats_.clear();
  return out;
}

void own_rank_stream(Generator& drop_gen, int rank) {
  if (rank == 0) return;
  // A fresh xoshiro state seeded from the shared stream's next value and the rank (the golden
  // ratio multiple spreads nearby ranks far apart).
  Generator copy = drop_gen;
  drop_gen = Generator(copy.next_u64() ^ (0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(rank)));
}

}  // namespace peft
