// Explicit, seeded random numbers and the weight initialisers built on them (no hidden global state).
#pragma once
#include <array>
#include <cstdint>

#include "core/tensor.h"

namespace peft {

// xoshiro256** seeded through splitmix64: fast, high quality, and its whole state can be saved in
// a training checkpoint so that --resume continues the same stream.
class Generator {
 public:
  explicit Generator(uint64_t seed = 0);
  uint64_t next_u64();
  double uniform();  // [0, 1) with 53 random bits
  double normal();   // standard normal (Box-Muller, both values used)
  std::array<uint64_t, 4> state() const { return s_; }
  void set_state(const std::array<uint64_t, 4>& s) { s_ = s; has_spare_ = false; }

 private:
  std::array<uint64_t, 4> s_{};
  bool has_spare_ = false;
  double spare_ = 0;
};

Tensor rand(const Shape& sizes, Generator& gen, DType dtype = DType::f32, double lo = 0, double hi = 1);
Tensor randn(const Shape& sizes, Generator& gen, DType dtype = DType::f32, double mean = 0, double std = 1);

// In-place initialisers (like torch.nn.init); they bump the version like any in-place write.
void uniform_(Tensor& t, Generator& gen, double lo, double hi);
void normal_(Tensor& t, Generator& gen, double mean, double std);
// Normal(mean, std) redrawn until inside [a, b] (timm's trunc_normal_ uses absolute a, b = -2, 2).
void trunc_normal_(Tensor& t, Generator& gen, double std, double mean = 0, double a = -2, double b = 2);
// PyTorch fan rule: fan_in = size(1) * receptive, fan_out = size(0) * receptive,
// receptive = product of sizes[2:].
void fan_in_out(const Tensor& t, int64_t& fan_in, int64_t& fan_out);
void xavier_uniform_(Tensor& t, Generator& gen, double gain = 1.0);
// kaiming_uniform_(a = sqrt(5)) is PyTorch's nn.Linear default: U(+-1/sqrt(fan_in)).
void kaiming_uniform_(Tensor& t, Generator& gen, double a = 0.0);
void kaiming_normal_(Tensor& t, Generator& gen, double a = 0.0, bool fan_out = false);

}  // namespace peft
