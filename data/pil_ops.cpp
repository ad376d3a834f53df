// PIL 9.4's ImageOps / ImageEnhance / Blend / Filter / Geometry code paths on an 8-bit buffer.
// The float and double expressions keep PIL's order of operations and types: outputs are meant
// to be equal to PIL's byte for byte (tests/data/test_pil_ops.cpp). This file is compiled with
// -ffp-contract=off (CMakeLists.txt): a fused multiply-add would round differently from PIL.
#include "data/pil_ops.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "core/error.h"

namespace peft::data {

ImageU8 to_u8(const Image& img) {
  ImageU8 out;
  out.H = img.H;
  out.W = img.W;
  out.C = img.C;
  out.px = to_uint8(img);
  return out;
}

Image to_float(const ImageU8& img) { return from_uint8(img.px.data(), img.H, img.W, img.C); }

namespace pil {

namespace {

void check(const ImageU8& img, const char* op) {
  if (img.C != 1 && img.C != 3)
    throw ValueError(std::string(op) + ": expected a 1- or 3-channel image (got " + std::to_string(img.C) + ")");
  if (img.H <= 0 || img.W <= 0) throw ValueError(std::string(op) + ": empty image");
}

// Image.point with one 256-entry table per channel (values clipped to 0..255, as _point does).
ImageU8 apply_lut(const ImageU8& img, const std::vector<std::array<int, 256>>& luts) {
  ImageU8 out = img;
  const size_t C = static_cast<size_t>(img.C);
  for (size_t i = 0; i < out.px.size(); ++i) {
    const int v = luts[i % C][img.px[i]];
    out.px[i] = static_cast<uint8_t>(std::clamp(v, 0, 255));
  }
  return out;
}

ImageU8 same_lut(const ImageU8& img, const std::array<int, 256>& lut) {
  return apply_lut(img, std::vector<std::array<int, 256>>(static_cast<size_t>(img.C), lut));
}

std::vector<std::array<int64_t, 256>> histograms(const ImageU8& img) {
  std::vector<std::array<int64_t, 256>> h(static_cast<size_t>(img.C));
  for (auto& a : h) a.fill(0);
  const size_t C = static_cast<size_t>(img.C);
  for (size_t i = 0; i < img.px.size(); ++i) ++h[i % C][img.px[i]];
  return h;
}

std::array<int, 256> identity_lut() {
  std::array<int, 256> l{};
  for (int i = 0; i < 256; ++i) l[static_cast<size_t>(i)] = i;
  return l;
}

// Geometry.c's COORD and FLOOR.
int coord(double v) { return v < 0.0 ? -1 : static_cast<int>(v); }
int floor_int(double v) { return v < 0.0 ? static_cast<int>(std::floor(v)) : static_cast<int>(v); }

int clip_index(int v, int64_t n) { return v < 0 ? 0 : (v < n ? v : static_cast<int>(n) - 1); }

uint8_t clip_bicubic(double v) {
  if (v <= 0.0) return 0;
  if (v >= 255.0) return 255;
  return static_cast<uint8_t>(v);
}

// Geometry.c bilinear_filter32RGB / bilinear_filter8: false when (xin, yin) is outside.
bool bilinear_at(const ImageU8& im, double xin, double yin, uint8_t* out) {
  if (xin < 0.0 || xin >= static_cast<double>(im.W) || yin < 0.0 || yin >= static_cast<double>(im.H)) return false;
  xin -= 0.5;
  yin -= 0.5;
  const int x = floor_int(xin), y = floor_int(yin);
  const double dx = xin - x, dy = yin - y;
  const int x0 = clip_index(x, im.W), x1 = clip_index(x + 1, im.W), yc = clip_index(y, im.H);
  const bool second = y + 1 >= 0 && y + 1 < im.H;
  for (int64_t c = 0; c < im.C; ++c) {
    double a = im.at(yc, x0, c), b = im.at(yc, x1, c);
    double v1 = a + (b - a) * dx, v2 = v1;
    if (second) {
      a = im.at(y + 1, x0, c);
      b = im.at(y + 1, x1, c);
      v2 = a + (b - a) * dx;
    }
    v1 = v1 + (v2 - v1) * dy;
    out[c] = static_cast<uint8_t>(v1);
  }
  return true;
}

double cubic(double v1, double v2, double v3, double v4, double d) {
  const double p1 = v2;
  const double p2 = -v1 + v3;
  const double p3 = 2 * (v1 - v2) + v3 - v4;
  const double p4 = -v1 + v2 - v3 + v4;
  return p1 + d * (p2 + d * (p3 + d * p4));
}

// Geometry.c bicubic_filter32RGB / bicubic_filter8 (a = -1 cubic, rows past the edge repeat
// the last row computed, columns are clamped).
bool bicubic_at(const ImageU8& im, double xin, double yin, uint8_t* out) {
  if (xin < 0.0 || xin >= static_cast<double>(im.W) || yin < 0.0 || yin >= static_cast<double>(im.H)) return false;
  xin -= 0.5;
  yin -= 0.5;
  int x = floor_int(xin), y = floor_int(yin);
  const double dx = xin - x, dy = yin - y;
  --x;
  --y;
  const int xs[4] = {clip_index(x, im.W), clip_index(x + 1, im.W), clip_index(x + 2, im.W), clip_index(x + 3, im.W)};
  auto row = [&](int64_t yy, int64_t c) {
    return cubic(im.at(yy, xs[0], c), im.at(yy, xs[1], c), im.at(yy, xs[2], c), im.at(yy, xs[3], c), dx);
  };
  auto inside = [&](int yy) { return yy >= 0 && yy < im.H; };
  for (int64_t c = 0; c < im.C; ++c) {
    const double v1 = row(clip_index(y, im.H), c);
    const double v2 = inside(y + 1) ? row(y + 1, c) : v1;
    const double v3 = inside(y + 2) ? row(y + 2, c) : v2;
    const double v4 = inside(y + 3) ? row(y + 3, c) : v3;
    out[c] = clip_bicubic(cubic(v1, v2, v3, v4, dy));
  }
  return true;
}

void copy_pixel(const ImageU8& im, int64_t y, int64_t x, uint8_t* out) {
  for (int64_t c = 0; c < im.C; ++c) out[c] = im.at(y, x, c);
}

ImageU8 filled(const ImageU8& img, const std::array<uint8_t, 3>& fill) {
  ImageU8 out(img.H, img.W, img.C);
  for (int64_t p = 0; p < img.H * img.W; ++p)
    for (int64_t c = 0; c < img.C; ++c) out.px[static_cast<size_t>(p * img.C + c)] = fill[static_cast<size_t>(c)];
  return out;
}

// ImagingScaleAffine: nearest neighbour when the matrix has no rotation or shear terms; the
// source positions are accumulated step by step as PIL does.
void scale_affine_nearest(const ImageU8& in, ImageU8& out, const std::array<double, 6>& a) {
  std::vector<int> xintab(static_cast<size_t>(out.W), -1);
  double xo = a[2] + a[0] * 0.5;
  for (int64_t x = 0; x < out.W; ++x) {
    const int xin = coord(xo);
    if (xin >= 0 && xin < in.W) xintab[static_cast<size_t>(x)] = xin;
    xo += a[0];
  }
  double yo = a[5] + a[4] * 0.5;
  for (int64_t y = 0; y < out.H; ++y) {
    const int yi = coord(yo);
    if (yi >= 0 && yi < in.H)
      for (int64_t x = 0; x < out.W; ++x)
        if (xintab[static_cast<size_t>(x)] >= 0) copy_pixel(in, yi, xintab[static_cast<size_t>(x)], &out.at(y, x, 0));
    yo += a[4];
  }
}

bool fits_fixed(const std::array<double, 6>& a, double x, double y) {
  return std::fabs(x * a[0] + y * a[1] + a[2]) < 32768.0 && std::fabs(x * a[3] + y * a[4] + a[5]) < 32768.0;
}

// affine_fixed: nearest neighbour in 16.16 fixed point (PIL's path for small images), or the
// float fallback of ImagingTransformAffine when a corner does not fit.
void affine_nearest(const ImageU8& in, ImageU8& out, const std::array<double, 6>& a) {
  const double W = static_cast<double>(out.W), H = static_cast<double>(out.H);
  if (fits_fixed(a, 0, 0) && fits_fixed(a, W, H) && fits_fixed(a, 0, H) && fits_fixed(a, W, 0)) {
    auto fix = [](double v) { return floor_int(v * 65536.0 + 0.5); };
    const int a0 = fix(a[0]), a1 = fix(a[1]), a3 = fix(a[3]), a4 = fix(a[4]);
    int a2 = fix(a[2] + a[0] * 0.5 + a[1] * 0.5);
    int a5 = fix(a[5] + a[3] * 0.5 + a[4] * 0.5);
    for (int64_t y = 0; y < out.H; ++y) {
      int xx = a2, yy = a5;
      for (int64_t x = 0; x < out.W; ++x) {
        const int xin = xx >> 16;  // arithmetic shift: floor, as in PIL
        if (xin >= 0 && xin < in.W) {
          const int yin = yy >> 16;
          if (yin >= 0 && yin < in.H) copy_pixel(in, yin, xin, &out.at(y, x, 0));
        }
        xx += a0;
        yy += a3;
      }
      a2 += a1;
      a5 += a4;
    }
    return;
  }
  double xo = a[2] + a[1] * 0.5 + a[0] * 0.5;
  double yo = a[5] + a[4] * 0.5 + a[3] * 0.5;
  for (int64_t y = 0; y < out.H; ++y) {
    double xx = xo, yy = yo;
    for (int64_t x = 0; x < out.W; ++x) {
      const int xin = coord(xx);
      if (xin >= 0 && xin < in.W) {
        const int yin = coord(yy);
        if (yin >= 0 && yin < in.H) copy_pixel(in, yin, xin, &out.at(y, x, 0));
      }
      xx += a[0];
      yy += a[3];
    }
    xo += a[1];
    yo += a[4];
  }
}

// Python's round(v, 15) (correctly rounded through the decimal string, as CPython does).
double round15(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.15f", v);
  return std::strtod(buf, nullptr);
}

// Python's float %: the result takes the sign of the divisor.
double py_mod(double x, double m) {
  double r = std::fmod(x, m);
  if (r != 0.0) {
    if ((m < 0) != (r < 0)) r += m;
  } else {
    r = std::copysign(0.0, m);
  }
  return r;
}

ImageU8 transpose_rotate(const ImageU8& img, int quarter_turns) {
  const bool swap = quarter_turns % 2 == 1;
  ImageU8 out(swap ? img.W : img.H, swap ? img.H : img.W, img.C);
  for (int64_t y = 0; y < out.H; ++y)
    for (int64_t x = 0; x < out.W; ++x) {
      int64_t sy = y, sx = x;
      if (quarter_turns == 1) {  // ROTATE_90 (counter-clockwise)
        sy = x;
        sx = img.W - 1 - y;
      } else if (quarter_turns == 2) {
        sy = img.H - 1 - y;
        sx = img.W - 1 - x;
      } else if (quarter_turns == 3) {  // ROTATE_270
        sy = img.H - 1 - x;
        sx = y;
      }
      copy_pixel(img, sy, sx, &out.at(y, x, 0));
    }
  return out;
}

}  // namespace

Resample resample_by_name(const std::string& name, const std::string& what) {
  if (name == "nearest") return Resample::nearest;
  if (name == "bilinear") return Resample::bilinear;
  if (name == "bicubic") return Resample::bicubic;
  throw ValueError(what + ": unknown interpolation '" + name + "' (expected nearest, bilinear or bicubic)");
}

ImageU8 autocontrast(const ImageU8& img) {
  check(img, "autocontrast");
  std::vector<std::array<int, 256>> luts;
  for (const auto& h : histograms(img)) {
    int lo = 0, hi = 255;
    while (lo < 255 && h[static_cast<size_t>(lo)] == 0) ++lo;
    while (hi > 0 && h[static_cast<size_t>(hi)] == 0) --hi;
    if (hi <= lo) {
      luts.push_back(identity_lut());
      continue;
    }
    const double scale = 255.0 / (hi - lo);
    const double offset = -lo * scale;
    std::array<int, 256> l{};
    for (int i = 0; i < 256; ++i) l[static_cast<size_t>(i)] = std::clamp(static_cast<int>(i * scale + offset), 0, 255);
    luts.push_back(l);
  }
  return apply_lut(img, luts);
}

ImageU8 equalize(const ImageU8& img) {
  check(img, "equalize");
  std::vector<std::array<int, 256>> luts;
  for (const auto& h : histograms(img)) {
    int64_t total = 0, last = 0, nonzero = 0;
    for (int64_t v : h)
      if (v) {
        total += v;
        last = v;
        ++nonzero;
      }
    const int64_t step = nonzero <= 1 ? 0 : (total - last) / 255;
    if (step == 0) {
      luts.push_back(identity_lut());
      continue;
    }
    std::array<int, 256> l{};
    int64_t n = step / 2;
    for (size_t i = 0; i < 256; ++i) {
      l[i] = static_cast<int>(std::min<int64_t>(n / step, 1 << 20));
      n += h[i];
    }
    luts.push_back(l);
  }
  return apply_lut(img, luts);
}

ImageU8 invert(const ImageU8& img) {
  check(img, "invert");
  std::array<int, 256> l{};
  for (int i = 0; i < 256; ++i) l[static_cast<size_t>(i)] = 255 - i;
  return same_lut(img, l);
}

ImageU8 posterize(const ImageU8& img, int bits) {
  check(img, "posterize");
  if (bits < 0 || bits > 8) throw ValueError("posterize: bits must be in 0..8 (got " + std::to_string(bits) + ")");
  const int mask = ~((1 << (8 - bits)) - 1);
  std::array<int, 256> l{};
  for (int i = 0; i < 256; ++i) l[static_cast<size_t>(i)] = i & mask;
  return same_lut(img, l);
}

ImageU8 solarize(const ImageU8& img, int threshold) {
  check(img, "solarize");
  std::array<int, 256> l{};
  for (int i = 0; i < 256; ++i) l[static_cast<size_t>(i)] = i < threshold ? i : 255 - i;
  return same_lut(img, l);
}

ImageU8 solarize_add(const ImageU8& img, int add, int threshold) {
  check(img, "solarize_add");
  std::array<int, 256> l{};
  for (int i = 0; i < 256; ++i) l[static_cast<size_t>(i)] = i < threshold ? std::min(255, i + add) : i;
  return same_lut(img, l);
}

ImageU8 blend(const ImageU8& a, const ImageU8& b, double alpha_d) {
  if (a.H != b.H || a.W != b.W || a.C != b.C) throw ShapeError("blend: the two images differ in size");
  const float alpha = static_cast<float>(alpha_d);  // ImagingBlend takes a C float
  if (alpha == 0.0f) return a;
  if (alpha == 1.0f) return b;
  ImageU8 out = a;
  const bool inside = alpha >= 0 && alpha <= 1.0f;
  for (size_t i = 0; i < out.px.size(); ++i) {
    const int x1 = a.px[i], x2 = b.px[i];
    const float t = static_cast<float>(x1) + alpha * static_cast<float>(x2 - x1);
    if (inside) {
      out.px[i] = static_cast<uint8_t>(t);
    } else {
      out.px[i] = t <= 0.0f ? 0 : (t >= 255.0f ? 255 : static_cast<uint8_t>(t));
    }
  }
  return out;
}

ImageU8 to_luma(const ImageU8& img) {
  check(img, "convert(L)");
  if (img.C == 1) return img;
  ImageU8 out(img.H, img.W, 1);
  for (int64_t p = 0; p < img.H * img.W; ++p) {
    const uint8_t* rgb = &img.px[static_cast<size_t>(p * 3)];
    out.px[static_cast<size_t>(p)] =
        static_cast<uint8_t>((rgb[0] * 19595 + rgb[1] * 38470 + rgb[2] * 7471 + 0x8000) >> 16);
  }
  return out;
}

ImageU8 enhance_brightness(const ImageU8& img, double factor) {
  check(img, "enhance_brightness");
  return blend(ImageU8(img.H, img.W, img.C), img, factor);
}

ImageU8 enhance_contrast(const ImageU8& img, double factor) {
  check(img, "enhance_contrast");
  // ImageStat mean of the L image, rounded half up to an int grey level
  const ImageU8 l = to_luma(img);
  int64_t sum = 0;
  for (uint8_t v : l.px) sum += v;
  const double mean = static_cast<double>(sum) / static_cast<double>(l.px.size());
  ImageU8 grey(img.H, img.W, img.C);
  std::fill(grey.px.begin(), grey.px.end(), static_cast<uint8_t>(static_cast<int>(mean + 0.5)));
  return blend(grey, img, factor);
}

ImageU8 enhance_color(const ImageU8& img, double factor) {
  check(img, "enhance_color");
  const ImageU8 l = to_luma(img);
  ImageU8 grey(img.H, img.W, img.C);
  for (int64_t p = 0; p < img.H * img.W; ++p)
    for (int64_t c = 0; c < img.C; ++c) grey.px[static_cast<size_t>(p * img.C + c)] = l.px[static_cast<size_t>(p)];
  return blend(grey, img, factor);
}

ImageU8 enhance_sharpness(const ImageU8& img, double factor) {
  check(img, "enhance_sharpness");
  // ImageFilter.SMOOTH: 3x3 kernel (1 1 1 / 1 5 1 / 1 1 1) / 13 in float, + 0.5, truncated;
  // the border rows and columns are copied (ImagingFilter3x3), images under 3x3 are copied whole.
  ImageU8 smooth = img;
  if (img.H >= 3 && img.W >= 3) {
    const float k = 1.0f / 13.0f, kc = 5.0f / 13.0f;
    for (int64_t y = 1; y < img.H - 1; ++y)
      for (int64_t x = 1; x < img.W - 1; ++x)
        for (int64_t c = 0; c < img.C; ++c) {
          auto row = [&](int64_t yy, float mid) {
            return static_cast<float>(img.at(yy, x - 1, c)) * k + static_cast<float>(img.at(yy, x, c)) * mid +
                   static_cast<float>(img.at(yy, x + 1, c)) * k;
          };
          float ss = 0.5f;
          ss += row(y + 1, k);
          ss += row(y, kc);
          ss += row(y - 1, k);
          smooth.at(y, x, c) = ss <= 0.0f ? 0 : (ss >= 255.0f ? 255 : static_cast<uint8_t>(ss));
        }
  }
  return blend(smooth, img, factor);
}

ImageU8 affine(const ImageU8& img, const std::array<double, 6>& a, Resample resample,
               const std::array<uint8_t, 3>& fill) {
  check(img, "affine");
  ImageU8 out = filled(img, fill);
  if (resample == Resample::nearest) {
    if (a[1] == 0 && a[3] == 0)
      scale_affine_nearest(img, out, a);
    else
      affine_nearest(img, out, a);
    return out;
  }
  for (int64_t y = 0; y < out.H; ++y)
    for (int64_t x = 0; x < out.W; ++x) {
      const double xin = static_cast<double>(x) + 0.5, yin = static_cast<double>(y) + 0.5;
      const double xs = a[0] * xin + a[1] * yin + a[2];
      const double ys = a[3] * xin + a[4] * yin + a[5];
      uint8_t px[3];
      const bool ok = resample == Resample::bilinear ? bilinear_at(img, xs, ys, px) : bicubic_at(img, xs, ys, px);
      if (ok) std::copy(px, px + img.C, &out.at(y, x, 0));
    }
  return out;
}

ImageU8 rotate(const ImageU8& img, double degrees, Resample resample, const std::array<uint8_t, 3>& fill) {
  check(img, "rotate");
  const double angle = py_mod(degrees, 360.0);
  if (angle == 0) return img;
  if (angle == 180) return transpose_rotate(img, 2);
  if ((angle == 90 || angle == 270) && img.W == img.H) return transpose_rotate(img, angle == 90 ? 1 : 3);
  const double cx = static_cast<double>(img.W) / 2.0, cy = static_cast<double>(img.H) / 2.0;
  const double rad = -(angle * (M_PI / 180.0));  // -math.radians(angle)
  std::array<double, 6> m = {round15(std::cos(rad)), round15(std::sin(rad)), 0.0,
                             round15(-std::sin(rad)), round15(std::cos(rad)), 0.0};
  const double m2 = m[0] * -cx + m[1] * -cy + m[2];
  const double m5 = m[3] * -cx + m[4] * -cy + m[5];
  m[2] = m2 + cx;
  m[5] = m5 + cy;
  return affine(img, m, resample, fill);
}

}  // namespace pil
}  // namespace peft::data
