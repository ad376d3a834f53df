// timm's RandAugment: config parsing, op lists, level-to-argument rules and the per-op draws.
#include "data/rand_augment.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "core/error.h"

namespace peft::data {

namespace {

constexpr double kLevelDenom = 10.0;  // timm's _LEVEL_DENOM: magnitude 10 is the strongest level

[[noreturn]] void bad_section(const std::string& config, const std::string& section, const std::string& why) {
  throw ValueError("--aa: bad section '" + section + "' in '" + config + "': " + why +
                   ". Hint: rand-m9-mstd0.5 (keys m, n, p, mstd, mmax, inc)");
}

int64_t parse_int(const std::string& config, const std::string& section, const std::string& v) {
  size_t used = 0;
  long long x = 0;
  try {
    x = std::stoll(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v.size() || v.empty()) bad_section(config, section, "'" + v + "' is not an integer");
  return x;
}

double parse_float(const std::string& config, const std::string& section, const std::string& v) {
  size_t used = 0;
  double x = 0;
  try {
    x = std::stod(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v.size() || v.empty() || !std::isfinite(x)) bad_section(config, section, "'" + v + "' is not a number");
  return x;
}

bool negates(const std::string& name) {
  return name == "Rotate" || name == "ShearX" || name == "ShearY" || name == "TranslateXRel" ||
         name == "TranslateYRel" || name == "ColorIncreasing" || name == "ContrastIncreasing" ||
         name == "BrightnessIncreasing" || name == "SharpnessIncreasing";
}

// Python's round() of a double to an integer: half to even.
double round_half_even(double v) { return std::nearbyint(v); }

}  // namespace

RandAugmentConfig parse_rand_augment(const std::string& config) {
  RandAugmentConfig c;
  c.text = config;
  std::vector<std::string> parts;
  std::stringstream ss(config);
  std::string s;
  while (std::getline(ss, s, '-')) parts.push_back(s);
  if (parts.empty() || parts[0] != "rand")
    throw ValueError("--aa: '" + config + "' is not a RandAugment config (it must start with 'rand'). Hint: rand-m9-mstd0.5");
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string& sec = parts[i];
    // timm: re.split(r'(\d.*)', section): the key is everything before the first digit
    const size_t d = sec.find_first_of("0123456789");
    if (d == std::string::npos || d == 0) {
      if (!sec.empty() && sec[0] == 't')
        bad_section(config, sec, "transform sets (t...) are not supported; the default and inc sets are");
      bad_section(config, sec, "expected a key followed by a number");
    }
    const std::string key = sec.substr(0, d), val = sec.substr(d);
    if (key == "mstd") {
      c.magnitude_std = parse_float(config, sec, val);
      if (c.magnitude_std < 0) bad_section(config, sec, "mstd must be >= 0");
      if (c.magnitude_std > 100) c.magnitude_std = std::numeric_limits<double>::infinity();
    } else if (key == "mmax") {
      const int64_t v = parse_int(config, sec, val);
      if (v < 0) bad_section(config, sec, "mmax must be >= 0");
      c.magnitude_max = v == 0 ? kLevelDenom : static_cast<double>(v);  // timm: magnitude_max or 10
    } else if (key == "inc") {
      c.increasing = true;  // timm tests bool(val) on the string: any value, "inc0" included
    } else if (key == "m") {
      c.magnitude = static_cast<double>(parse_int(config, sec, val));
    } else if (key == "n") {
      c.num_layers = parse_int(config, sec, val);
      if (c.num_layers < 0) bad_section(config, sec, "n must be >= 0");
    } else if (key == "p") {
      c.prob = parse_float(config, sec, val);
      if (c.prob < 0 || c.prob > 1) bad_section(config, sec, "p must be in [0, 1]");
    } else {
      bad_section(config, sec, "unknown key '" + key + "'");
    }
  }
  return c;
}

std::array<uint8_t, 3> fill_from_mean(const std::array<float, 3>& mean) {
  std::array<uint8_t, 3> f{};
  for (size_t c = 0; c < 3; ++c)
    f[c] = static_cast<uint8_t>(std::clamp(round_half_even(255.0 * static_cast<double>(mean[c])), 0.0, 255.0));
  return f;
}

const std::vector<std::string>& rand_augment_ops(bool increasing) {
  static const std::vector<std::string> plain = {
      "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
      "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"};
  static const std::vector<std::string> inc = {
      "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing", "SolarizeAdd",
      "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY",
      "TranslateXRel", "TranslateYRel"};
  return increasing ? inc : plain;
}

double rand_augment_arg(const std::string& name, double m, bool negate, const RandAugmentHParams& hp) {
  const double level = m / kLevelDenom;
  const double sign = negate ? -1.0 : 1.0;
  if (name == "AutoContrast" || name == "Equalize" || name == "Invert") return 0;
  if (name == "Rotate") return sign * (level * 30.0);
  if (name == "Posterize") return std::trunc(level * 4);
  if (name == "PosterizeIncreasing") return 4 - std::trunc(level * 4);
  if (name == "Solarize") return std::min(256.0, std::trunc(level * 256));
  if (name == "SolarizeIncreasing") return 256 - std::min(256.0, std::trunc(level * 256));
  if (name == "SolarizeAdd") return std::min(128.0, std::trunc(level * 110));
  if (name == "Color" || name == "Contrast" || name == "Brightness" || name == "Sharpness") return level * 1.8 + 0.1;
  if (name == "ColorIncreasing" || name == "ContrastIncreasing" || name == "BrightnessIncreasing" ||
      name == "SharpnessIncreasing")
    return std::max(0.1, 1.0 + sign * (level * 0.9));
  if (name == "ShearX" || name == "ShearY") return sign * (level * 0.3);
  if (name == "TranslateXRel" || name == "TranslateYRel") return sign * (level * hp.translate_pct);
  throw ValueError("rand_augment: unknown op '" + name + "'");
}

ImageU8 apply_rand_augment_op(const std::string& name, const ImageU8& img, double arg, const RandAugmentHParams& hp) {
  if (name == "AutoContrast") return pil::autocontrast(img);
  if (name == "Equalize") return pil::equalize(img);
  if (name == "Invert") return pil::invert(img);
  if (name == "Rotate") return pil::rotate(img, arg, hp.resample, hp.fill);
  if (name == "Posterize" || name == "PosterizeIncreasing") {
    const int bits = static_cast<int>(arg);
    if (bits >= 8) return img;                      // timm's posterize leaves 8 bits alone
    return pil::posterize(img, std::max(bits, 0));  // PIL's mask is 0 for any bits <= 0
  }
  if (name == "Solarize" || name == "SolarizeIncreasing") return pil::solarize(img, static_cast<int>(arg));
  if (name == "SolarizeAdd") return pil::solarize_add(img, static_cast<int>(arg), 128);
  if (name == "Color" || name == "ColorIncreasing") return pil::enhance_color(img, arg);
  if (name == "Contrast" || name == "ContrastIncreasing") return pil::enhance_contrast(img, arg);
  if (name == "Brightness" || name == "BrightnessIncreasing") return pil::enhance_brightness(img, arg);
  if (name == "Sharpness" || name == "SharpnessIncreasing") return pil::enhance_sharpness(img, arg);
  if (name == "ShearX") return pil::affine(img, {1, arg, 0, 0, 1, 0}, hp.resample, hp.fill);
  if (name == "ShearY") return pil::affine(img, {1, 0, 0, arg, 1, 0}, hp.resample, hp.fill);
  if (name == "TranslateXRel")
    return pil::affine(img, {1, 0, arg * static_cast<double>(img.W), 0, 1, 0}, hp.resample, hp.fill);
  if (name == "TranslateYRel")
    return pil::affine(img, {1, 0, 0, 0, 1, arg * static_cast<double>(img.H)}, hp.resample, hp.fill);
  throw ValueError("rand_augment: unknown op '" + name + "'");
}

ImageU8 rand_augment(const ImageU8& img, const RandAugmentConfig& cfg, const RandAugmentHParams& hp, Generator& gen) {
  const std::vector<std::string>& ops = rand_augment_ops(cfg.increasing);
  const uint64_t n_ops = ops.size();
  ImageU8 out = img;
  for (int64_t layer = 0; layer < cfg.num_layers; ++layer) {
    // np.random.choice(ops, n, replace=True): uniform, independent picks
    const std::string& name = ops[static_cast<size_t>(gen.next_u64() % n_ops)];
    if (cfg.prob < 1.0 && gen.uniform() > cfg.prob) continue;
    double m = cfg.magnitude;
    if (cfg.magnitude_std > 0) {
      if (std::isinf(cfg.magnitude_std))
        m = gen.uniform() * m;
      else
        m = m + cfg.magnitude_std * gen.normal();
    }
    m = std::max(0.0, std::min(m, cfg.magnitude_max));
    const bool negate = negates(name) && gen.uniform() > 0.5;
    out = apply_rand_augment_op(name, out, rand_augment_arg(name, m, negate, hp), hp);
  }
  return out;
}

}  // namespace peft::data
