// Seeded generator and initialisers.
#include "core/random.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace peft {

namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// Fills t (any layout) element by element in logical order with gen-drawn values.
template <class F>
void fill_with(Tensor& t, const char* op, F draw) {
  if (!is_floating(t.dtype())) throw DTypeError(fmt::format("{}: expected a float tensor, got {}", op, dtype_name(t.dtype())));
  // Contiguous tensors (every freshly built parameter) are written in place: a float64 copy of
  // each weight would raise a ViT-B build's peak memory by its largest weights.
  if (t.is_contiguous()) {
    dispatch_float(t.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      T* p = t.data<T>();
      for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(draw());
    });
    return;
  }
  Tensor tmp = empty(t.sizes(), DType::f64);
  double* p = tmp.data<double>();
  for (int64_t i = 0; i < tmp.numel(); ++i) p[i] = draw();
  t.copy_(tmp);
}
}  // namespace

Generator::Generator(uint64_t seed) {
  uint64_t x = seed;
  for (auto& w : s_) w = splitmix64(x);
}

uint64_t Generator::next_u64() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Generator::uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

double Generator::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u1 = uniform(), u2 = uniform();
  if (u1 < 1e-300) u1 = 1e-300;  // log(0) guard
  double r = std::sqrt(-2.0 * std::log(u1)), th = 2.0 * M_PI * u2;
  spare_ = r * std::sin(th);
  has_spare_ = true;
  return r * std::cos(th);
}

Tensor rand(const Shape& sizes, Generator& gen, DType dtype, double lo, double hi) {
  Tensor t = empty(sizes, dtype);
  uniform_(t, gen, lo, hi);
  return t;
}

Tensor randn(const Shape& sizes, Generator& gen, DType dtype, double mean, double std) {
  Tensor t = empty(sizes, dtype);
  normal_(t, gen, mean, std);
  return t;
}

void uniform_(Tensor& t, Generator& gen, double lo, double hi) {
  fill_with(t, "uniform_", [&] { return lo + (hi - lo) * gen.uniform(); });
}

void normal_(Tensor& t, Generator& gen, double mean, double std) {
  fill_with(t, "normal_", [&] { return mean + std * gen.normal(); });
}

void trunc_normal_(Tensor& t, Generator& gen, double std, double mean, double a, double b) {
  if (!(a < b)) throw ValueError(fmt::format("trunc_normal_: need a < b, got a={} b={}", a, b));
  fill_with(t, "trunc_normal_", [&] {
    for (int tries = 0; tries < 1000; ++tries) {
      double v = mean + std * gen.normal();
      if (v >= a && v <= b) return v;
    }
    return std::clamp(mean, a, b);
  });
}

void fan_in_out(const Tensor& t, int64_t& fan_in, int64_t& fan_out) {
  if (t.dim() < 2)
    throw ShapeError(fmt::format("fan_in_out: needs a tensor with at least 2 dims, got {}", shape_str(t.sizes())));
  int64_t receptive = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive *= t.size(d);
  fan_in = t.size(1) * receptive;
  fan_out = t.size(0) * receptive;
}

void xavier_uniform_(Tensor& t, Generator& gen, double gain) {
  int64_t fi, fo;
  fan_in_out(t, fi, fo);
  double bound = gain * std::sqrt(6.0 / static_cast<double>(fi + fo));
  uniform_(t, gen, -bound, bound);
}

void kaiming_uniform_(Tensor& t, Generator& gen, double a) {
  int64_t fi, fo;
  fan_in_out(t, fi, fo);
  double gain = std::sqrt(2.0 / (1.0 + a * a));
  double bound = gain * std::sqrt(3.0 / static_cast<double>(fi));
  uniform_(t, gen, -bound, bound);
}

void kaiming_normal_(Tensor& t, Generator& gen, double a, bool fan_out) {
  int64_t fi, fo;
  fan_in_out(t, fi, fo);
  double gain = std::sqrt(2.0 / (1.0 + a * a));
  normal_(t, gen, 0.0, gain / std::sqrt(static_cast<double>(fan_out ? fo : fi)));
}

}  // namespace peft
