// Antialiased bicubic resampling of position embeddings, separable, in float64.
#include "nn/pos_embed.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
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

}  // namespace

Tensor resample_pos_embed(const Tensor& pos, int64_t new_grid, int64_t num_prefix) {
  const bool batched = pos.dim() == 3;
  if (!(pos.dim() == 2 || (batched && pos.size(0) == 1)))
    throw ShapeError(fmt::format("resample_pos_embed: expected [1, T, D] or [T, D], got {}", shape_str(pos.sizes())));
  const int64_t T = pos.size(-2), D = pos.size(-1), n = T - num_prefix;
  const int64_t g = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(std::max<int64_t>(n, 0)))));
  if (n <= 0 || g * g != n)
    throw ShapeError(fmt::format("resample_pos_embed: {} rows after {} prefix rows are not a square grid (shape {})", n,
                                 num_prefix, shape_str(pos.sizes())));
  std::vector<double> src = pos.to_vector<double>();  // [T, D]
  if (g == new_grid) return pos.clone();
  Taps tw = taps(g, new_grid);
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

}  // namespace peft::nn
