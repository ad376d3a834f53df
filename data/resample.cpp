// PIL's separable resampling (libImaging/Resample.c: precompute_coeffs, ImagingResampleHorizontal
// / Vertical) on HWC float images.
#include "data/resample.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace peft::data {

namespace {

double bicubic_filter(double x) {
  constexpr double a = -0.5;  // PIL's and PyTorch's aa kernels (Keys); F.interpolate's plain bicubic uses -0.75
  x = std::abs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

double triangle_filter(double x) {
  x = std::abs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

// The taps of every output index along one axis: out[o] = sum_k w[o*K + k] * in[first[o] + k].
struct Taps {
  int64_t K = 0;
  std::vector<int64_t> first, count;
  std::vector<double> w;
};

Taps filter_taps(int64_t in, int64_t out, double (*filter)(double), double filter_support) {
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  const double filterscale = std::max(scale, 1.0);  // antialias: widen the filter only when shrinking
  const double support = filter_support * filterscale;
  const double ss = 1.0 / filterscale;
  Taps t;
  t.K = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  t.first.resize(static_cast<size_t>(out));
  t.count.resize(static_cast<size_t>(out));
  t.w.assign(static_cast<size_t>(out * t.K), 0.0);
  for (int64_t o = 0; o < out; ++o) {
    const double center = (static_cast<double>(o) + 0.5) * scale;
    // PIL rounds with (int)(v + 0.5), which truncates toward zero: keep that for negative v
    const int64_t lo = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5), 0);
    const int64_t hi = std::min<int64_t>(static_cast<int64_t>(center + support + 0.5), in);
    const int64_t n = std::min(hi - lo, t.K);
    double* w = &t.w[static_cast<size_t>(o * t.K)];
    double total = 0.0;
    for (int64_t k = 0; k < n; ++k) {
      w[k] = filter((static_cast<double>(k + lo) - center + 0.5) * ss);
      total += w[k];
    }
    if (total != 0.0)
      for (int64_t k = 0; k < n; ++k) w[k] /= total;
    t.first[static_cast<size_t>(o)] = lo;
    t.count[static_cast<size_t>(o)] = n;
  }
  return t;
}

Taps nearest_taps(int64_t in, int64_t out) {
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  Taps t;
  t.K = 1;
  t.first.resize(static_cast<size_t>(out));
  t.count.assign(static_cast<size_t>(out), 1);
  t.w.assign(static_cast<size_t>(out), 1.0);
  // PIL's ImagingScaleAffine: the source coordinate is accumulated (x += scale), not multiplied,
  // which decides the ties (e.g. 80 -> 28 picks 49 where floor(17.5 * 80 / 28) = 50)
  double src = scale * 0.5;
  for (int64_t o = 0; o < out; ++o, src += scale)
    t.first[static_cast<size_t>(o)] = std::clamp<int64_t>(static_cast<int64_t>(src), 0, in - 1);
  return t;
}

Taps make_taps(int64_t in, int64_t out, const std::string& interpolation) {
  if (interpolation == "bicubic") return filter_taps(in, out, bicubic_filter, 2.0);
  if (interpolation == "bilinear") return filter_taps(in, out, triangle_filter, 1.0);
  return nearest_taps(in, out);
}

// Horizontal pass on rows [y0, y1) of `img` -> (y1 - y0) x out_w.
Image resample_rows(const Image& img, int64_t y0, int64_t y1, const Taps& t, int64_t out_w) {
  const int64_t C = img.C;
  Image out(y1 - y0, out_w, C);
  for (int64_t y = y0; y < y1; ++y) {
    const float* src = &img.pixels[static_cast<size_t>(y * img.W * C)];
    float* dst = &out.pixels[static_cast<size_t>((y - y0) * out_w * C)];
    for (int64_t x = 0; x < out_w; ++x) {
      const double* w = &t.w[static_cast<size_t>(x * t.K)];
      const float* s = src + t.first[static_cast<size_t>(x)] * C;
      const int64_t n = t.count[static_cast<size_t>(x)];
      for (int64_t c = 0; c < C; ++c) {
        // double accumulation: a solid image stays exactly solid (the weights sum to 1)
        double acc = 0.0;
        for (int64_t k = 0; k < n; ++k) acc += w[k] * s[k * C + c];
        dst[x * C + c] = static_cast<float>(acc);
      }
    }
  }
  return out;
}

// Vertical pass: row o of the output mixes rows first[o] - y0 ... of `img`.
Image resample_cols(const Image& img, int64_t y0, const Taps& t, int64_t out_h) {
  const int64_t C = img.C, row = img.W * C;
  Image out(out_h, img.W, C);
  std::vector<double> acc(static_cast<size_t>(row));
  for (int64_t o = 0; o < out_h; ++o) {
    const double* w = &t.w[static_cast<size_t>(o * t.K)];
    const int64_t first = t.first[static_cast<size_t>(o)] - y0, n = t.count[static_cast<size_t>(o)];
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t k = 0; k < n; ++k) {
      const float* s = &img.pixels[static_cast<size_t>((first + k) * row)];
      const double wk = w[k];
      for (int64_t j = 0; j < row; ++j) acc[static_cast<size_t>(j)] += wk * s[j];
    }
    float* dst = &out.pixels[static_cast<size_t>(o * row)];
    for (int64_t j = 0; j < row; ++j) dst[j] = static_cast<float>(acc[static_cast<size_t>(j)]);
  }
  return out;
}

}  // namespace

void check_interpolation(const std::string& interpolation, const std::string& what) {
  if (interpolation != "bicubic" && interpolation != "bilinear" && interpolation != "nearest")
    throw ValueError(what + ": unknown interpolation '" + interpolation +
                     "' (expected bicubic, bilinear or nearest)");
}

Image resize(const Image& img, int64_t out_h, int64_t out_w, const std::string& interpolation) {
  check_interpolation(interpolation, "resize");
  if (out_h <= 0 || out_w <= 0)
    throw ValueError("resize: output size must be positive (got " + std::to_string(out_h) + "x" +
                     std::to_string(out_w) + ")");
  if (img.H <= 0 || img.W <= 0 || img.C <= 0)
    throw ValueError("resize: empty input image (got " + std::to_string(img.H) + "x" + std::to_string(img.W) + "x" +
                     std::to_string(img.C) + ")");
  const bool horizontal = out_w != img.W, vertical = out_h != img.H;
  if (!horizontal && !vertical) return img;
  if (!vertical) return resample_rows(img, 0, img.H, make_taps(img.W, out_w, interpolation), out_w);
  const Taps ty = make_taps(img.H, out_h, interpolation);
  // as PIL: the horizontal pass only computes the rows the vertical pass reads
  int64_t y0 = img.H, y1 = 0;
  for (int64_t o = 0; o < out_h; ++o) {
    y0 = std::min(y0, ty.first[static_cast<size_t>(o)]);
    y1 = std::max(y1, ty.first[static_cast<size_t>(o)] + ty.count[static_cast<size_t>(o)]);
  }
  if (!horizontal) {
    return resample_cols(img, 0, ty, out_h);
  }
  const Image rows = resample_rows(img, y0, y1, make_taps(img.W, out_w, interpolation), out_w);
  return resample_cols(rows, y0, ty, out_h);
}

}  // namespace peft::data
