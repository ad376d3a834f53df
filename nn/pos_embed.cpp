// Antialiased bicubic resampling of position embeddings, separable, in float64.
#include "nn/pos_embed.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "core/error.h"

namespace peft::nn {

namespace {

// PIL's bicubic kernel (a = -0.5), the one PyTorch uses when antialias=True.
double cubic_aa(double x) {
  const double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

// For every output index: the first input index and the normalised weights of its taps
// (PyTorch's _compute_indices_weights_aa with align_corners=False).
struct Taps {
  std::vector<int64_t> start;
  std::vector<std::vector<double>> w;
};

Taps taps(int64_t in, int64_t out) {
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  const double support = scale >= 1.0 ? 2.0 * scale : 2.0;
  const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
  Taps t;
  for (int64_t i = 0; i < out; ++i) {
    const double center = scale * (static_cast<double>(i) + 0.5);
    const int64_t xmin = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5), 0);
    const int64_t xmax = std::min<int64_t>(static_cast<int64_t>(center + support + 0.5), in);
    std::vector<double> w;
    double total = 0;
    for (int64_t j = xmin; j < xmax; ++j) {
      w.push_back(cubic_aa((static_cast<double>(j) - center + 0.5) * invscale));
      total += w.back();
    }
    for (double& v : w) v = total != 0.0 ? v / total : 0.0;
    t.start.push_back(xmin);
    t.w.push_back(std::move(w));
  }
  return t;
}

// PyTorch's upsample_bicubic2d (no antialias) for one axis: 4 taps with clamped indices.
Taps cubic_taps(int64_t in, int64_t out, double scale_factor) {
  const double A = -0.75;
  auto conv1 = [A](double x) { return ((A + 2) * x - (A + 3)) * x * x + 1; };          // |x| <= 1
  auto conv2 = [A](double x) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; };    // 1 < |x| < 2
  const double scale = 1.0 / scale_factor;
  Taps t;
  for (int64_t i = 0; i < out; ++i) {
    const double real = scale * (static_cast<double>(i) + 0.5) - 0.5;
    const double fl = std::floor(real);
    const double f = real - fl;
    const double w[4] = {conv2(f + 1), conv1(f), conv1(1 - f), conv2(2 - f)};
    // Clamped taps become weights on the edge pixels: expand to a dense row of `in` weights.
    std::vector<double> row(static_cast<size_t>(in), 0.0);
    for (int k = 0; k < 4; ++k) {
      const int64_t j = std::clamp<int64_t>(static_cast<int64_t>(fl) - 1 + k, 0, in - 1);
      row[static_cast<size_t>(j)] += w[k];
    }
    t.start.push_back(0);
    t.w.push_back(std::move(row));
  }
  return t;
}

// Separable resampling of the g x g grid after the prefix rows with the given taps.
Tensor resample_grid(const Tensor& pos, int64_t new_grid, int64_t num_prefix, const std::function<Taps(int64_t)>& make_taps,
                     const char* op);

}  // namespace

namespace {
Tensor resample_grid(const Tensor& pos, int64_t new_grid, int64_t num_prefix, const std::function<Taps(int64_t)>& make_taps,
                     const char* op) {
  const bool batched = pos.dim() == 3;
  if (!(pos.dim() == 2 || (batched && pos.size(0) == 1)))
    throw ShapeError(fmt::format("{}: expected [1, T, D] or [T, D], got {}", op, shape_str(pos.sizes())));
  const int64_t T = pos.size(-2), D = pos.size(-1), n = T - num_prefix;
  const int64_t g = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(std::max<int64_t>(n, 0)))));
  if (n <= 0 || g * g != n)
    throw ShapeError(fmt::format("{}: {} rows after {} prefix rows are not a square grid (shape {})", op, n,
                                 num_prefix, shape_str(pos.sizes())));
  std::vector<double> src = pos.to_vector<double>();  // [T, D]
  if (g == new_grid) return pos.clone();
  Taps tw = make_taps(g);
  // Width pass: [g, g, D] -> [g, new, D]; then height pass: -> [new, new, D].
  std::vector<double> mid(static_cast<size_t>(g * new_grid * D), 0.0);
  for (int64_t r = 0; r < g; ++r)
    for (int64_t c = 0; c < new_grid; ++c)
      for (size_t k = 0; k < tw.w[c].size(); ++k) {
        const double w = tw.w[c][k];
        const double* s = &src[static_cast<size_t>((num_prefix + r * g + tw.start[c] + static_cast<int64_t>(k)) * D)];
        double* d = &mid[static_cast<size_t>((r * new_grid + c) * D)];
        for (int64_t e = 0; e < D; ++e) d[e] += w * s[e];
      }
  std::vector<double> out(static_cast<size_t>((num_prefix + new_grid * new_grid) * D), 0.0);
  std::copy(src.begin(), src.begin() + num_prefix * D, out.begin());
  for (int64_t r = 0; r < new_grid; ++r)
    for (size_t k = 0; k < tw.w[r].size(); ++k) {
      const double w = tw.w[r][k];
      for (int64_t c = 0; c < new_grid; ++c) {
        const double* s = &mid[static_cast<size_t>(((tw.start[r] + static_cast<int64_t>(k)) * new_grid + c) * D)];
        double* d = &out[static_cast<size_t>((num_prefix + r * new_grid + c) * D)];
        for (int64_t e = 0; e < D; ++e) d[e] += w * s[e];
      }
    }
  Shape shape = batched ? Shape{1, num_prefix + new_grid * new_grid, D} : Shape{num_prefix + new_grid * new_grid, D};
  return from_vector(out, shape, pos.dtype());
}
}  // namespace

Tensor resample_pos_embed(const Tensor& pos, int64_t new_grid, int64_t num_prefix) {
  return resample_grid(pos, new_grid, num_prefix, [&](int64_t g) { return taps(g, new_grid); }, "resample_pos_embed");
}

Tensor resample_pos_embed_dinov2(const Tensor& pos, int64_t new_grid, int64_t num_prefix, double offset) {
  return resample_grid(
      pos, new_grid, num_prefix,
      [&](int64_t g) { return cubic_taps(g, new_grid, (static_cast<double>(new_grid) + offset) / static_cast<double>(g)); },
      "resample_pos_embed_dinov2");
}

}  // namespace peft::nn
