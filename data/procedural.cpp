// Procedural images: scenes drawn from seeded attributes with signed-distance shapes (anti-aliased edges).
#include "data/procedural.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/random.h"

namespace peft::data {

namespace {

const std::vector<std::string> kShapes = {"circle", "square", "triangle", "cross", "ring", "diamond"};
const std::vector<std::string> kShapePlurals = {"circles", "squares", "triangles", "crosses", "rings", "diamonds"};
const std::vector<std::string> kColors = {"red", "green", "blue", "yellow", "magenta", "cyan", "white", "orange"};
const std::array<std::array<float, 3>, 8> kColorRGB = {{{0.95f, 0.15f, 0.15f},
                                                        {0.15f, 0.85f, 0.20f},
                                                        {0.20f, 0.35f, 1.00f},
                                                        {0.95f, 0.90f, 0.10f},
                                                        {0.95f, 0.20f, 0.90f},
                                                        {0.10f, 0.90f, 0.95f},
                                                        {0.95f, 0.95f, 0.95f},
                                                        {1.00f, 0.55f, 0.05f}}};
const std::vector<std::string> kSizes = {"small", "large"};
const std::vector<std::string> kPositions = {"top left", "top right", "bottom left", "bottom right"};
const std::vector<std::string> kBackgrounds = {"plain", "stripes", "checker", "noise", "gradient"};
const std::vector<std::string> kBackgroundWords = {"plain", "striped", "checkered", "noisy", "gradient"};
const std::vector<std::string> kCounts = {"one", "two", "three", "four"};

enum Background { kPlain = 0, kStripes, kChecker, kNoise, kGradient };
enum TaskId { kTaskShapes = 0, kTaskShapesTextured, kTaskColors, kTaskCount, kTaskSizePosition, kTaskTextures, kTaskMixed };

std::vector<std::string> size_position_classes() {
  std::vector<std::string> c;
  for (const auto& s : kSizes)
    for (const auto& p : kPositions) c.push_back(s + " " + p);
  return c;
}

// splitmix64's finaliser: spreads (seed, task, split, index) over the whole 64-bit state.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

int pick(Generator& g, int n) { return static_cast<int>(g.uniform() * n); }  // uniform in [0, n)
float range(Generator& g, float lo, float hi) { return lo + (hi - lo) * static_cast<float>(g.uniform()); }

// Signed distances (negative inside) in units of the image side, p relative to the centre,
// y pointing down. Sizes are scaled so that every shape covers a similar area at one r.
float sd_box(float px, float py, float bx, float by) {
  const float qx = std::abs(px) - bx, qy = std::abs(py) - by;
  const float ox = std::max(qx, 0.0f), oy = std::max(qy, 0.0f);
  return std::sqrt(ox * ox + oy * oy) + std::min(std::max(qx, qy), 0.0f);
}
float sd_triangle(float px, float py, float r) {  // equilateral, apex up (Inigo Quilez's formula)
  const float k = std::sqrt(3.0f);
  float x = std::abs(px) - r, y = -py + r / k;  // flip y: the formula's y points up
  if (x + k * y > 0) {
    const float nx = (x - k * y) / 2, ny = (-k * x - y) / 2;
    x = nx, y = ny;
  }
  x -= std::clamp(x, -2 * r, 0.0f);
  const float len = std::sqrt(x * x + y * y);
  return y > 0 ? -len : len;
}
float shape_sdf(int shape, float px, float py, float r) {
  switch (shape) {
    case 0: return std::sqrt(px * px + py * py) - r;                                 // circle
    case 1: return sd_box(px, py, 0.85f * r, 0.85f * r);                              // square
    case 2: return sd_triangle(px, py, 1.1f * r);                                      // triangle
    case 3: return std::min(sd_box(px, py, r, 0.32f * r), sd_box(px, py, 0.32f * r, r));  // cross
    case 4: return std::abs(std::sqrt(px * px + py * py) - 0.75f * r) - 0.25f * r;     // ring
    default: return (std::abs(px) + std::abs(py) - 1.1f * r) * 0.70710678f;           // diamond
  }
}

// Object centres. Free layout (one object): anywhere inside its quadrant, fully inside the image.
// Grid layout (the count task, several objects): one small object per distinct quadrant, kept
// inside its cell, so objects never overlap and the count is always readable; a count task with
// one object uses the grid too, so that object size does not give the count away.
void place_objects(Scene& s, int count, bool grid, Generator& g) {
  std::array<int, 4> quads = {s.position, 0, 0, 0};
  if (grid) {
    quads = {0, 1, 2, 3};
    for (int i = 3; i > 0; --i) std::swap(quads[static_cast<size_t>(i)], quads[static_cast<size_t>(pick(g, i + 1))]);
  }
  s.objects.clear();
  for (int k = 0; k < count; ++k) {
    Scene::Object o;
    if (grid) {
      o.r = range(g, 0.08f, 0.12f);
    } else {
      o.r = s.size == 0 ? range(g, 0.10f, 0.15f) : range(g, 0.22f, 0.28f);
    }
    const float lo = grid ? o.r + 0.03f : o.r + 0.02f;
    const float hi = grid ? 0.5f - o.r - 0.03f : 0.45f;
    const float u = range(g, lo, std::max(lo, hi)), v = range(g, lo, std::max(lo, hi));
    const int q = quads[static_cast<size_t>(k)];
    o.cx = (q % 2 == 0) ? u : 1.0f - u;  // left or right half
    o.cy = (q / 2 == 0) ? v : 1.0f - v;  // top or bottom half
    s.objects.push_back(o);
  }
  s.position = quads[0];
}

// Approximately standard normal noise from one 64-bit draw: the sum of four 16-bit uniforms
// (Irwin-Hall, variance 4/12) rescaled to unit variance. Pixel noise needs the look of Gaussian
// noise, not its tails, and Box-Muller per pixel would dominate the rendering time.
float fast_normal(Generator& g) {
  const uint64_t r = g.next_u64();
  const float sum = static_cast<float>((r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48));
  return (sum * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;
}

}  // namespace

const std::vector<std::string>& procedural_shapes() { return kShapes; }
const std::vector<std::string>& procedural_colors() { return kColors; }
const std::vector<std::string>& procedural_sizes() { return kSizes; }
const std::vector<std::string>& procedural_positions() { return kPositions; }
const std::vector<std::string>& procedural_backgrounds() { return kBackgrounds; }

std::vector<std::string> procedural_vocabulary() {
  std::vector<std::string> v = {"a", "photo", "of", "in", "the", "on", "background", "top", "bottom", "left", "right"};
  for (const auto* list : {&kShapes, &kShapePlurals, &kColors, &kSizes, &kBackgroundWords, &kCounts})
    v.insert(v.end(), list->begin(), list->end());
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

// The order here is the TaskId order.
const std::vector<ProceduralTask>& procedural_tasks() {
  static const std::vector<ProceduralTask> tasks = {
      {"shapes", "shape of one object on a plain dark background (random colour, size, position)", kShapes},
      {"shapes-textured", "shape of one object on a striped, checkered, noisy or gradient background (shifted domain)",
       kShapes},
      {"colors", "colour of one object (random shape, size, position, plain background)", kColors},
      {"count", "number of small objects (1 to 4, same shape and colour, one per quadrant)", kCounts},
      {"size-position", "size (small/large) and quadrant of one object", size_position_classes()},
      {"textures", "background texture behind one random object", kBackgrounds},
      {"mixed", "shape, with every other attribute random (1 to 4 objects, any background): caption pretraining",
       kShapes},
  };
  return tasks;
}

const ProceduralTask& procedural_task(const std::string& name) {
  for (const auto& t : procedural_tasks())
    if (t.name == name) return t;
  std::string names;
  for (const auto& t : procedural_tasks()) names += (names.empty() ? "" : ", ") + t.name;
  throw ValueError("procedural: unknown task '" + name + "' (expected one of " + names +
                   "). Hint: `peft tasks` lists them");
}

Image render_scene(const Scene& s, int64_t S) {
  if (S <= 0) throw ValueError("render_scene: image size must be positive (got " + std::to_string(S) + ")");
  Image img(S, S, 3);
  const float inv = 1.0f / static_cast<float>(S);
  Generator noise(s.noise_seed);

  // value noise: random levels on a 6x6 grid of nodes, bilinearly interpolated
  constexpr int G = 6;
  std::array<float, (G + 1) * (G + 1)> nodes{};
  if (s.background == kNoise)
    for (auto& v : nodes) v = static_cast<float>(noise.uniform());
  const float dx = std::cos(s.bg_angle), dy = std::sin(s.bg_angle);

  for (int64_t y = 0; y < S; ++y) {
    const float py = (static_cast<float>(y) + 0.5f) * inv;
    for (int64_t x = 0; x < S; ++x) {
      const float px = (static_cast<float>(x) + 0.5f) * inv;
      float t = 0;  // blend from bg_a (0) to bg_b (1)
      switch (s.background) {
        case kStripes: {
          const float u = (px * dx + py * dy) / s.bg_period;
          t = (u - std::floor(u)) < 0.5f ? 0.0f : 1.0f;
          break;
        }
        case kChecker: {
          const auto cx = static_cast<int64_t>(std::floor(px / s.bg_period));
          const auto cy = static_cast<int64_t>(std::floor(py / s.bg_period));
          t = ((cx + cy) & 1) ? 1.0f : 0.0f;
          break;
        }
        case kNoise: {
          const float gx = px * G, gy = py * G;
          const int ix = std::min(static_cast<int>(gx), G - 1), iy = std::min(static_cast<int>(gy), G - 1);
          const float fx = gx - static_cast<float>(ix), fy = gy - static_cast<float>(iy);
          auto n = [&](int a, int b) { return nodes[static_cast<size_t>(b * (G + 1) + a)]; };
          t = (1 - fy) * ((1 - fx) * n(ix, iy) + fx * n(ix + 1, iy)) + fy * ((1 - fx) * n(ix, iy + 1) + fx * n(ix + 1, iy + 1));
          break;
        }
        case kGradient: t = std::clamp(0.5f + (px - 0.5f) * dx + (py - 0.5f) * dy, 0.0f, 1.0f); break;
        default: t = 0;
      }
      for (int c = 0; c < 3; ++c)
        img.at(y, x, c) = s.bg_a[static_cast<size_t>(c)] + t * (s.bg_b[static_cast<size_t>(c)] - s.bg_a[static_cast<size_t>(c)]);
    }
  }

  // objects: only the pixels of each bounding box are visited
  for (const auto& o : s.objects) {
    const float ext = 1.4f * o.r;
    const int64_t x0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor((o.cx - ext) * S)) - 1);
    const int64_t x1 = std::min<int64_t>(S, static_cast<int64_t>(std::ceil((o.cx + ext) * S)) + 1);
    const int64_t y0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor((o.cy - ext) * S)) - 1);
    const int64_t y1 = std::min<int64_t>(S, static_cast<int64_t>(std::ceil((o.cy + ext) * S)) + 1);
    for (int64_t y = y0; y < y1; ++y) {
      const float py = (static_cast<float>(y) + 0.5f) * inv - o.cy;
      for (int64_t x = x0; x < x1; ++x) {
        const float px = (static_cast<float>(x) + 0.5f) * inv - o.cx;
        // distance in pixels -> coverage of a one-pixel-wide edge ramp (cheap anti-aliasing)
        const float d = shape_sdf(s.shape, px, py, o.r) * static_cast<float>(S);
        const float cov = std::clamp(0.5f - d, 0.0f, 1.0f);
        if (cov <= 0) continue;
        for (int c = 0; c < 3; ++c) {
          float& v = img.at(y, x, c);
          v += cov * (s.object_rgb[static_cast<size_t>(c)] - v);
        }
      }
    }
  }

  if (s.pixel_noise > 0)
    for (auto& v : img.pixels) v = std::clamp(v + s.pixel_noise * fast_normal(noise), 0.0f, 1.0f);
  return img;
}

std::string scene_caption(const Scene& s) {
  const auto& bg = kBackgroundWords[static_cast<size_t>(s.background)];
  const auto& size = kSizes[static_cast<size_t>(s.size)];
  const auto& color = kColors[static_cast<size_t>(s.color)];
  const size_t count = s.objects.size();
  if (count <= 1)
    return "a photo of a " + size + " " + color + " " + kShapes[static_cast<size_t>(s.shape)] + " in the " +
           kPositions[static_cast<size_t>(s.position)] + " on a " + bg + " background";
  return "a photo of " + kCounts[count - 1] + " " + size + " " + color + " " + kShapePlurals[static_cast<size_t>(s.shape)] +
         " on a " + bg + " background";
}

ProceduralDataset::ProceduralDataset(const std::string& task, int64_t n, int64_t image_size, uint64_t seed, Split split,
                                     int64_t in_chans)
    : task_(&procedural_task(task)), n_(n), image_size_(image_size), seed_(seed), split_(split), in_chans_(in_chans) {
  task_id_ = static_cast<int>(task_ - procedural_tasks().data());
  if (n <= 0) throw ValueError("procedural: size must be positive (got " + std::to_string(n) + "). Hint: --train-size N");
  if (image_size < 8)
    throw ValueError("procedural: image size too small (got " + std::to_string(image_size) + ", expected >= 8)");
  if (in_chans != 1 && in_chans != 3)
    throw ValueError("procedural: in_chans must be 1 or 3 (got " + std::to_string(in_chans) + ")");
}

int64_t ProceduralDataset::label(int64_t i) const {
  check_index(i, "procedural");
  return i % num_classes();
}

Scene ProceduralDataset::scene(int64_t i) const {
  check_index(i, "procedural");
  uint64_t h = mix64(seed_ + 0x9e3779b97f4a7c15ULL);
  h = mix64(h ^ (static_cast<uint64_t>(task_id_ + 1) * 0xd1b54a32d192ed03ULL));
  h = mix64(h ^ (static_cast<uint64_t>(split_) + 1) * 0xabc98388fb8fac03ULL);
  h = mix64(h ^ static_cast<uint64_t>(i) * 0x8cb92ba72f3d8dd7ULL);
  Generator g(h);

  Scene s;
  s.label = label(i);
  // every attribute is drawn (so the stream does not depend on the task), then the task
  // overrides the ones it controls
  s.shape = pick(g, static_cast<int>(kShapes.size()));
  s.color = pick(g, static_cast<int>(kColors.size()));
  s.size = pick(g, 2);
  s.position = pick(g, 4);
  s.background = kPlain;
  const int textured = 1 + pick(g, 4);   // one of the four textures
  const int any_bg = pick(g, 5);         // any background, plain included
  const int many = 1 + pick(g, 4);       // 1..4 objects
  int count = 1;
  bool grid = false;
  const auto L = static_cast<int>(s.label);
  switch (task_id_) {
    case kTaskShapes: s.shape = L; break;
    case kTaskShapesTextured: s.shape = L, s.background = textured; break;
    case kTaskColors: s.color = L; break;
    case kTaskCount: count = L + 1, s.size = 0, grid = true; break;
    case kTaskSizePosition: s.size = L / 4, s.position = L % 4; break;
    case kTaskTextures: s.background = L; break;
    default:  // mixed: several objects only fit when small
      s.shape = L, s.background = any_bg, count = many;
      if (count > 1) s.size = 0, grid = true;
  }
  place_objects(s, count, grid, g);

  const auto& rgb = kColorRGB[static_cast<size_t>(s.color)];
  for (size_t c = 0; c < 3; ++c) {
    s.object_rgb[c] = std::clamp(rgb[c] + range(g, -0.05f, 0.05f), 0.0f, 1.0f);
    s.bg_a[c] = range(g, 0.0f, 0.3f);  // dark, so every object colour stands out
    s.bg_b[c] = range(g, 0.15f, 0.5f);
  }
  s.bg_period = range(g, 0.12f, 0.3f);
  s.bg_angle = s.background == kStripes ? static_cast<float>(pick(g, 4)) * 0.78539816f
                                        : range(g, 0.0f, 6.2831853f);
  s.noise_seed = g.next_u64();
  return s;
}

Image ProceduralDataset::load(int64_t i) const {
  Image img = render_scene(scene(i), image_size_);
  return in_chans_ == 3 ? img : convert_channels(img, in_chans_);
}

std::string ProceduralDataset::caption(int64_t i) const { return scene_caption(scene(i)); }

std::string ProceduralDataset::describe() const {
  return "procedural:" + task_->name + " (" + std::to_string(num_classes()) + " classes, " + std::to_string(n_) + " " +
         split_name(split_) + " images, seed " + std::to_string(seed_) + ")";
}

}  // namespace peft::data
