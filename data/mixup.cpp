// Mixup / CutMix: parameters drawn per batch from a seeded generator, applied to the image rows,
// and the mixed soft targets.
#include "data/mixup.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>

#include "core/error.h"

namespace peft::data {

void check_mixup_options(const MixupOptions& o) {
  auto bad = [](const char* opt, double v, const char* want) {
    throw ValueError(fmt::format("{}: must be {} (got {})", opt, want, v));
  };
  if (!(o.mixup_alpha >= 0) || !std::isfinite(o.mixup_alpha)) bad("--mixup", o.mixup_alpha, "finite and >= 0 (0 = off)");
  if (!(o.cutmix_alpha >= 0) || !std::isfinite(o.cutmix_alpha)) bad("--cutmix", o.cutmix_alpha, "finite and >= 0 (0 = off)");
  if (!(o.prob >= 0 && o.prob <= 1)) bad("--mixup-prob", o.prob, "in [0, 1]");
  if (!(o.switch_prob >= 0 && o.switch_prob <= 1)) bad("--mixup-switch-prob", o.switch_prob, "in [0, 1]");
  if (!(o.label_smoothing >= 0 && o.label_smoothing < 1)) bad("--smoothing", o.label_smoothing, "in [0, 1)");
  if (o.mode != "batch" && o.mode != "pair" && o.mode != "elem")
    throw ValueError(fmt::format("--mixup-mode: unknown mode '{}' (batch | pair | elem)", o.mode));
}

MixBox cutmix_box(int64_t H, int64_t W, double lam, int64_t cy, int64_t cx) {
  const double ratio = std::sqrt(1.0 - lam);
  // int() truncates like timm's int(img_h * ratio); the box spans cut // 2 each way
  const int64_t ch = static_cast<int64_t>(static_cast<double>(H) * ratio) / 2;
  const int64_t cw = static_cast<int64_t>(static_cast<double>(W) * ratio) / 2;
  auto clip = [](int64_t v, int64_t hi) { return std::min(std::max<int64_t>(v, 0), hi); };
  return {clip(cy - ch, H), clip(cy + ch, H), clip(cx - cw, W), clip(cx + cw, W)};
}

double box_lam(const MixBox& b, int64_t H, int64_t W) {
  return 1.0 - static_cast<double>((b.y1 - b.y0) * (b.x1 - b.x0)) / static_cast<double>(H * W);
}

namespace {

// Gamma(a, 1): Marsaglia and Tsang's squeeze for a >= 1; a < 1 boosted by U^(1/a).
double sample_gamma(Generator& gen, double a) {
  if (a < 1) return sample_gamma(gen, a + 1) * std::pow(1.0 - gen.uniform(), 1.0 / a);
  const double d = a - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    const double x = gen.normal(), v0 = 1.0 + c * x;
    if (v0 <= 0) continue;
    const double v = v0 * v0 * v0, u = 1.0 - gen.uniform();  // u in (0, 1]
    if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v;
  }
}

// uniform integer in [0, n), as numpy's randint(0, n)
int64_t rand_below(Generator& gen, int64_t n) {
  return std::min<int64_t>(n - 1, static_cast<int64_t>(gen.uniform() * static_cast<double>(n)));
}

// One mixing decision (timm's _params_per_batch / one element of _params_per_elem): lam 1 when
// the coin with probability prob says no.
void draw_one(const MixupOptions& o, Generator& gen, double& lam, bool& cutmix) {
  const bool mix = gen.uniform() < o.prob;
  cutmix = o.cutmix_alpha > 0 && (o.mixup_alpha <= 0 || gen.uniform() < o.switch_prob);
  const double l = sample_beta(gen, cutmix ? o.cutmix_alpha : o.mixup_alpha);
  lam = mix ? l : 1.0;
  cutmix = cutmix && mix;
}

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

double sample_beta(Generator& gen, double a) {
  const double x = sample_gamma(gen, a), y = sample_gamma(gen, a);
  return x + y > 0 ? x / (x + y) : 0.5;  // both underflow only for tiny a
}

MixParams draw_mix_params(const MixupOptions& o, int64_t B, int64_t H, int64_t W, Generator& gen) {
  check_mixup_options(o);
  if (!o.enabled()) throw ValueError("mixup: neither --mixup nor --cutmix is > 0");
  MixParams p;
  p.lam.assign(static_cast<size_t>(B), 1.0);
  p.cutmix.assign(static_cast<size_t>(B), false);
  p.cy.assign(static_cast<size_t>(B), 0);
  p.cx.assign(static_cast<size_t>(B), 0);
  // batch: one draw for all rows; pair: one per pair (i, B-1-i); elem: one per row
  const int64_t draws = o.mode == "batch" ? 1 : o.mode == "pair" ? B / 2 : B;
  for (int64_t i = 0; i < draws; ++i) {
    double lam = 1;
    bool cut = false;
    draw_one(o, gen, lam, cut);
    const int64_t cy = cut ? rand_below(gen, H) : 0, cx = cut ? rand_below(gen, W) : 0;
    const int64_t first = o.mode == "batch" ? 0 : i, last = o.mode == "batch" ? B : i + 1;
    for (int64_t r = first; r < last; ++r) {
      const auto k = static_cast<size_t>(r);
      p.lam[k] = lam, p.cutmix[k] = cut, p.cy[k] = cy, p.cx[k] = cx;
      if (o.mode == "pair") {
        const auto m = static_cast<size_t>(B - 1 - r);
        p.lam[m] = lam, p.cutmix[m] = cut, p.cy[m] = cy, p.cx[m] = cx;
      }
    }
  }
  return p;
}

Tensor apply_mix(Tensor& images, const std::vector<int64_t>& labels, int64_t K, const MixupOptions& o,
                 const MixParams& p) {
  if (images.dtype() != DType::f32 || images.dim() != 4 || !images.is_contiguous())
    throw ShapeError(fmt::format("mixup: images must be a contiguous [B, C, H, W] float32 (got {} {})",
                                 shape_str(images.sizes()), dtype_name(images.dtype())));
  const int64_t B = images.size(0), C = images.size(1), H = images.size(2), W = images.size(3);
  if (static_cast<int64_t>(labels.size()) != B || static_cast<int64_t>(p.lam.size()) != B)
    throw ShapeError(fmt::format("mixup: {} images but {} labels and {} lambdas", B, labels.size(), p.lam.size()));
  // Every row reads the unmixed partner: mix from a copy of the batch.
  const Tensor orig = images.clone();
  const float* src = orig.data<float>();
  float* dst = images.data<float>();
  const int64_t plane = H * W, per = C * plane;
  std::vector<double> lam = p.lam;
  for (int64_t i = 0; i < B; ++i) {
    const auto k = static_cast<size_t>(i);
    const int64_t j = B - 1 - i;
    if (lam[k] == 1.0) continue;
    float* di = dst + i * per;
    const float* sj = src + j * per;
    if (p.cutmix[k]) {
      const MixBox b = cutmix_box(H, W, lam[k], p.cy[k], p.cx[k]);
      lam[k] = box_lam(b, H, W);
      for (int64_t c = 0; c < C; ++c)
        for (int64_t y = b.y0; y < b.y1; ++y)
          std::memcpy(di + c * plane + y * W + b.x0, sj + c * plane + y * W + b.x0,
                      static_cast<size_t>(b.x1 - b.x0) * sizeof(float));
    } else {
      const float l = static_cast<float>(lam[k]), r = static_cast<float>(1.0 - lam[k]);
      const float* si = src + i * per;
      for (int64_t e = 0; e < per; ++e) di[e] = si[e] * l + sj[e] * r;
    }
  }
  // targets: smoothed one-hot rows, y_i * lam_i + y_{B-1-i} * (1 - lam_i)
  const double off = o.label_smoothing / static_cast<double>(K), on = 1.0 - o.label_smoothing + off;
  Tensor t = empty({B, K}, DType::f32);
  float* pt = t.data<float>();
  for (int64_t i = 0; i < B; ++i) {
    const int64_t a = labels[static_cast<size_t>(i)], b = labels[static_cast<size_t>(B - 1 - i)];
    if (a < 0 || a >= K || b < 0 || b >= K)
      throw ValueError(fmt::format("mixup: label {} out of range for {} classes", a < 0 || a >= K ? a : b, K));
    const double l = lam[static_cast<size_t>(i)];
    for (int64_t c = 0; c < K; ++c)
      pt[i * K + c] = static_cast<float>((c == a ? on : off) * l + (c == b ? on : off) * (1.0 - l));
  }
  return t;
}

Tensor mix_batch(Tensor& images, const std::vector<int64_t>& labels, int64_t K, const MixupOptions& o, uint64_t seed,
                 int64_t epoch, int64_t batch) {
  // A stream of its own per (seed, epoch, batch), apart from the loader's shuffle/augment streams.
  const uint64_t s = mix64(mix64(mix64(seed ^ 0x6d69787570ULL) ^ static_cast<uint64_t>(epoch)) ^
                           static_cast<uint64_t>(batch));
  Generator gen(s);
  const MixParams p = draw_mix_params(o, images.size(0), images.size(2), images.size(3), gen);
  return apply_mix(images, labels, K, o, p);
}

}  // namespace peft::data
