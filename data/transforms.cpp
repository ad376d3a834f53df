// Image transforms: the geometry of torchvision / F.interpolate re-done on HWC float images.
#include "data/transforms.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/error.h"
#include "data/train_augment.h"

namespace peft::data {

namespace {

// A uniform integer in [0, n) without modulo bias (rejection of the incomplete last block).
int64_t uniform_int(Generator& gen, int64_t n) {
  const uint64_t un = static_cast<uint64_t>(n);
  const uint64_t limit = UINT64_MAX - UINT64_MAX % un;
  uint64_t r = gen.next_u64();
  while (r >= limit) r = gen.next_u64();
  return static_cast<int64_t>(r % un);
}

double uniform_range(Generator& gen, double lo, double hi) { return lo + (hi - lo) * gen.uniform(); }

// PyTorch's compute_source_index_and_lambda for one output coordinate (align_corners=False).
struct Tap {
  int64_t i0, i1;
  float l0, l1;
};
std::vector<Tap> linear_taps(int64_t in, int64_t out) {
  std::vector<Tap> taps(static_cast<size_t>(out));
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int64_t o = 0; o < out; ++o) {
    Tap& t = taps[static_cast<size_t>(o)];
    if (in == out) {  // PyTorch copies when the size does not change
      t = {o, o, 1.0f, 0.0f};
      continue;
    }
    float src = scale * (static_cast<float>(o) + 0.5f) - 0.5f;
    if (src < 0) src = 0;  // left of the first pixel centre: clamp (not cubic)
    t.i0 = static_cast<int64_t>(src);
    t.i1 = t.i0 + (t.i0 < in - 1 ? 1 : 0);
    t.l1 = std::min(std::max(src - static_cast<float>(t.i0), 0.0f), 1.0f);
    t.l0 = 1.0f - t.l1;
  }
  return taps;
}

}  // namespace

Image resize_bilinear(const Image& img, int64_t out_h, int64_t out_w) {
  if (out_h <= 0 || out_w <= 0)
    throw ValueError("resize_bilinear: output size must be positive (got " + std::to_string(out_h) + "x" +
                     std::to_string(out_w) + ")");
  if (img.H <= 0 || img.W <= 0 || img.C <= 0)
    throw ValueError("resize_bilinear: empty input image (got " + std::to_string(img.H) + "x" +
                     std::to_string(img.W) + "x" + std::to_string(img.C) + ")");
  if (img.H == out_h && img.W == out_w) return img;
  const std::vector<Tap> ty = linear_taps(img.H, out_h), tx = linear_taps(img.W, out_w);
  Image out(out_h, out_w, img.C);
  const int64_t C = img.C;
  for (int64_t y = 0; y < out_h; ++y) {
    const Tap& a = ty[static_cast<size_t>(y)];
    const float* r0 = &img.pixels[static_cast<size_t>(a.i0 * img.W * C)];
    const float* r1 = &img.pixels[static_cast<size_t>(a.i1 * img.W * C)];
    float* dst = &out.pixels[static_cast<size_t>(y * out_w * C)];
    for (int64_t x = 0; x < out_w; ++x) {
      const Tap& b = tx[static_cast<size_t>(x)];
      for (int64_t c = 0; c < C; ++c) {
        // same association as PyTorch's kernel: h-lambdas outside, w-lambdas inside
        dst[x * C + c] = a.l0 * (b.l0 * r0[b.i0 * C + c] + b.l1 * r0[b.i1 * C + c]) +
                         a.l1 * (b.l0 * r1[b.i0 * C + c] + b.l1 * r1[b.i1 * C + c]);
      }
    }
  }
  return out;
}

Image crop(const Image& img, int64_t top, int64_t left, int64_t h, int64_t w) {
  if (h <= 0 || w <= 0)
    throw ValueError("crop: window size must be positive (got " + std::to_string(h) + "x" + std::to_string(w) + ")");
  Image out(h, w, img.C);
  const int64_t C = img.C;
  // the overlap of the window with the image; everything else stays black
  const int64_t y0 = std::max<int64_t>(0, -top), y1 = std::min<int64_t>(h, img.H - top);
  const int64_t x0 = std::max<int64_t>(0, -left), x1 = std::min<int64_t>(w, img.W - left);
  if (y0 >= y1 || x0 >= x1) return out;
  for (int64_t y = y0; y < y1; ++y) {
    const float* src = &img.pixels[static_cast<size_t>(((y + top) * img.W + (x0 + left)) * C)];
    float* dst = &out.pixels[static_cast<size_t>((y * w + x0) * C)];
    std::copy(src, src + (x1 - x0) * C, dst);
  }
  return out;
}

Image center_crop(const Image& img, int64_t size) {
  if (size <= 0) throw ValueError("center_crop: size must be positive (got " + std::to_string(size) + ")");
  // torchvision pads (size - H) // 2 on top when the image is smaller, else rounds half to even
  auto offset = [size](int64_t n) -> int64_t {
    if (size > n) return -((size - n) / 2);
    return static_cast<int64_t>(std::nearbyint(static_cast<double>(n - size) / 2.0));
  };
  return crop(img, offset(img.H), offset(img.W), size, size);
}

Image hflip(const Image& img) {
  Image out(img.H, img.W, img.C);
  const int64_t C = img.C;
  for (int64_t y = 0; y < img.H; ++y)
    for (int64_t x = 0; x < img.W; ++x)
      for (int64_t c = 0; c < C; ++c) out.at(y, x, c) = img.at(y, img.W - 1 - x, c);
  return out;
}

Image pad_random_crop(const Image& img, int64_t pad, Generator& gen) {
  if (pad < 0) throw ValueError("pad_random_crop: pad must be >= 0 (got " + std::to_string(pad) + ")");
  if (pad == 0) return img;
  // offsets in the padded image are uniform in [0, 2*pad]; in the original they start at -pad
  const int64_t top = uniform_int(gen, 2 * pad + 1) - pad;
  const int64_t left = uniform_int(gen, 2 * pad + 1) - pad;
  return crop(img, top, left, img.H, img.W);
}

CropBox random_resized_crop_box(int64_t H, int64_t W, Generator& gen, std::array<double, 2> scale,
                                std::array<double, 2> ratio) {
  if (H <= 0 || W <= 0) throw ValueError("random_resized_crop: empty image");
  if (!(scale[0] > 0 && scale[0] <= scale[1]) || !(ratio[0] > 0 && ratio[0] <= ratio[1]))
    throw ValueError("random_resized_crop: scale and ratio must be positive (lo, hi) pairs with lo <= hi");
  const double area = static_cast<double>(H * W);
  const double log_r0 = std::log(ratio[0]), log_r1 = std::log(ratio[1]);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * uniform_range(gen, scale[0], scale[1]);
    const double aspect = std::exp(uniform_range(gen, log_r0, log_r1));
    const auto w = static_cast<int64_t>(std::nearbyint(std::sqrt(target_area * aspect)));
    const auto h = static_cast<int64_t>(std::nearbyint(std::sqrt(target_area / aspect)));
    if (0 < w && w <= W && 0 < h && h <= H) {
      const int64_t top = uniform_int(gen, H - h + 1);
      const int64_t left = uniform_int(gen, W - w + 1);
      return {top, left, h, w};
    }
  }
  // fallback: the whole image, narrowed to the allowed aspect ratio range, centred
  const double in_ratio = static_cast<double>(W) / static_cast<double>(H);
  int64_t w = W, h = H;
  if (in_ratio < ratio[0]) {
    h = static_cast<int64_t>(std::nearbyint(static_cast<double>(w) / ratio[0]));
  } else if (in_ratio > ratio[1]) {
    w = static_cast<int64_t>(std::nearbyint(static_cast<double>(h) * ratio[1]));
  }
  return {(H - h) / 2, (W - w) / 2, h, w};
}

Image random_resized_crop(const Image& img, int64_t size, Generator& gen, std::array<double, 2> scale,
                          std::array<double, 2> ratio) {
  if (size <= 0) throw ValueError("random_resized_crop: size must be positive (got " + std::to_string(size) + ")");
  const CropBox b = random_resized_crop_box(img.H, img.W, gen, scale, ratio);
  return resize_bilinear(crop(img, b.top, b.left, b.h, b.w), size, size);
}

Normalization no_normalization() { return {}; }
Normalization imagenet_normalization() { return {{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}}; }
Normalization clip_normalization() {
  return {{0.48145466f, 0.4578275f, 0.40821073f}, {0.26862954f, 0.26130258f, 0.27577711f}};
}
Normalization normalization_by_name(const std::string& name) {
  if (name == "none") return no_normalization();
  if (name == "imagenet") return imagenet_normalization();
  if (name == "clip") return clip_normalization();
  throw ValueError("normalization: unknown name '" + name + "' (expected none, imagenet or clip)");
}

void to_chw(const Image& img, const Normalization& norm, float* out) {
  if (img.C != 1 && img.C != 3)
    throw ValueError("to_tensor: unsupported channel count (got " + std::to_string(img.C) +
                     ", expected 1 or 3). Hint: convert_channels() first");
  std::array<float, 3> mean = norm.mean, std = norm.std;
  if (img.C == 1) {
    mean[0] = (norm.mean[0] + norm.mean[1] + norm.mean[2]) / 3.0f;
    std[0] = (norm.std[0] + norm.std[1] + norm.std[2]) / 3.0f;
  }
  const int64_t HW = img.H * img.W, C = img.C;
  for (int64_t c = 0; c < C; ++c) {
    // multiply by 1/std would differ from torchvision's (x - m) / s in the last bit: divide
    const float m = mean[static_cast<size_t>(c)], s = std[static_cast<size_t>(c)];
    float* dst = out + c * HW;
    for (int64_t p = 0; p < HW; ++p) dst[p] = (img.pixels[static_cast<size_t>(p * C + c)] - m) / s;
  }
}

Tensor to_tensor(const Image& img, const Normalization& norm) {
  Tensor t = empty({img.C, img.H, img.W}, DType::f32);
  to_chw(img, norm, t.data<float>());
  return t;
}

Augment parse_augment(const std::string& list) {
  Augment a;
  std::stringstream ss(list);
  std::string item;
  bool any = false;
  while (std::getline(ss, item, ',')) {
    any = true;
    if (item == "none") continue;
    if (item == "flip") {
      a.flip = true;
    } else if (item == "rrc") {
      a.rrc = true;
    } else if (item.rfind("shift:", 0) == 0) {
      const std::string n = item.substr(6);
      size_t used = 0;
      long long v = -1;
      try {
        v = std::stoll(n, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != n.size() || n.empty() || v < 1)
        throw ValueError("--augment: bad shift '" + item + "' (expected shift:N with N >= 1 pixels). Hint: shift:4");
      a.shift = v;
    } else {
      throw ValueError("--augment: unknown augmentation '" + item +
                       "' (expected none, flip, shift:N or rrc, comma-separated)");
    }
  }
  if (!any) throw ValueError("--augment: empty list. Hint: use none");
  return a;
}

std::string augment_str(const Augment& a) {
  std::string s;
  auto add = [&s](const std::string& x) { s += (s.empty() ? "" : ",") + x; };
  if (a.rrc) add("rrc");
  if (a.flip) add("flip");
  if (a.shift > 0) add("shift:" + std::to_string(a.shift));
  if (!a.aa.empty()) add("aa:" + a.aa);
  if (a.aa.empty() && a.color_jitter > 0) add(fmt::format("jitter:{:g}", a.color_jitter));
  if (a.reprob > 0) add(fmt::format("reprob:{:g}:{}:{}", a.reprob, a.remode, a.recount));
  return s.empty() ? "none" : s;
}

bool augments(const Augment& a) { return augment_str(a) != "none"; }

Image apply_augment(const Image& img, const Augment& a, Generator& gen) {
  Image out = img;
  if (a.rrc) out = random_resized_crop(out, img.H, gen);
  if (a.rrc && img.W != img.H) out = resize_bilinear(out, img.H, img.W);
  if (a.flip && gen.uniform() < 0.5) out = hflip(out);
  if (a.shift > 0) out = pad_random_crop(out, a.shift, gen);
  return out;
}

Transform make_transform(const Augment& a, const Normalization& norm) {
  const TrainAugment later(a, norm, "bicubic");
  return [a, later](const Image& img, Generator& gen) { return later(apply_augment(img, a, gen), gen); };
}

}  // namespace peft::data
