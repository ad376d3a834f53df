// Line plots and heatmaps drawn pixel by pixel into a data::Image, text in a 5x7 bitmap font.
#include "data/plot.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "core/error.h"

namespace peft::data {

namespace {

using Color = std::array<float, 3>;
const Color kWhite{1, 1, 1}, kBlack{0, 0, 0}, kGrid{0.88f, 0.88f, 0.88f}, kGray{0.35f, 0.35f, 0.35f};

// tab10, the matplotlib default cycle: distinguishable on white.
const Color kPalette[] = {{0.122f, 0.467f, 0.706f}, {1.000f, 0.498f, 0.055f}, {0.173f, 0.627f, 0.173f},
                          {0.839f, 0.153f, 0.157f}, {0.580f, 0.404f, 0.741f}, {0.549f, 0.337f, 0.294f},
                          {0.890f, 0.467f, 0.761f}, {0.498f, 0.498f, 0.498f}};
constexpr int kPaletteSize = sizeof(kPalette) / sizeof(kPalette[0]);

// 5x7 glyphs: 7 rows, the low 5 bits of each row are the pixels, bit 4 = leftmost.
struct Glyph {
  char c;
  uint8_t rows[7];
};
const Glyph kFont[] = {
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}}, {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}}, {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}}, {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}}, {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}}, {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}}, {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}}, {'D', {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}}, {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}}, {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}}, {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}}, {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}}, {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}}, {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}}, {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}}, {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}}, {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}}, {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}}, {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}}, {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}},
    {'+', {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}}, {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}}, {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
    {'/', {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}}, {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}},
    {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}}, {',', {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08}},
    {'=', {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00}}, {'x', {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11}},
};

const uint8_t* glyph(char c) {
  if (c >= 'a' && c <= 'z' && c != 'x') c = static_cast<char>(c - 'a' + 'A');
  for (const Glyph& g : kFont)
    if (g.c == c) return g.rows;
  return nullptr;  // space and unknown characters: blank
}

constexpr int64_t kCharW = 6, kCharH = 7;  // 5 px glyph + 1 px gap

// An RGB image with clipped drawing primitives; coordinates are pixels, y down.
struct Canvas {
  Image img;
  Canvas(int64_t w, int64_t h) : img(h, w, 3) { std::fill(img.pixels.begin(), img.pixels.end(), 1.0f); }

  void px(int64_t x, int64_t y, const Color& c) {
    if (x < 0 || y < 0 || x >= img.W || y >= img.H) return;
    for (int64_t k = 0; k < 3; ++k) img.at(y, x, k) = c[static_cast<size_t>(k)];
  }
  void rect(int64_t x0, int64_t y0, int64_t x1, int64_t y1, const Color& c) {  // filled, inclusive
    for (int64_t y = y0; y <= y1; ++y)
      for (int64_t x = x0; x <= x1; ++x) px(x, y, c);
  }
  void frame(int64_t x0, int64_t y0, int64_t x1, int64_t y1, const Color& c) {
    line(x0, y0, x1, y0, c);
    line(x1, y0, x1, y1, c);
    line(x1, y1, x0, y1, c);
    line(x0, y1, x0, y0, c);
  }
  // Bresenham; `thick` > 1 draws a small square brush at every point.
  void line(int64_t x0, int64_t y0, int64_t x1, int64_t y1, const Color& c, int64_t thick = 1) {
    const int64_t dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int64_t err = dx + dy;
    const int64_t r0 = -(thick - 1) / 2, r1 = thick / 2;
    while (true) {
      rect(x0 + r0, y0 + r0, x0 + r1, y0 + r1, c);
      if (x0 == x1 && y0 == y1) break;
      const int64_t e2 = 2 * err;
      if (e2 >= dy) {
        err += dy;
        x0 += sx;
      }
      if (e2 <= dx) {
        err += dx;
        y0 += sy;
      }
    }
  }
  // Filled markers of radius r: 0 square, 1 diamond, 2 triangle, 3 circle, 4 cross.
  void marker(int64_t x, int64_t y, int kind, const Color& c, int64_t r = 3) {
    for (int64_t dy = -r; dy <= r; ++dy)
      for (int64_t dx = -r; dx <= r; ++dx) {
        bool on = false;
        switch (kind % 5) {
          case 0: on = true; break;
          case 1: on = std::abs(dx) + std::abs(dy) <= r; break;
          case 2: on = dy >= -r && 2 * std::abs(dx) <= dy + r; break;
          case 3: on = dx * dx + dy * dy <= r * r; break;
          default: on = std::abs(std::abs(dx) - std::abs(dy)) <= 0; break;
        }
        if (on) px(x + dx, y + dy, c);
      }
  }
  static int64_t text_width(const std::string& s, int64_t scale = 1) {
    return s.empty() ? 0 : (static_cast<int64_t>(s.size()) * kCharW - 1) * scale;
  }
  // Top-left corner at (x, y).
  void text(int64_t x, int64_t y, const std::string& s, const Color& c, int64_t scale = 1) {
    for (char ch : s) {
      if (const uint8_t* g = glyph(ch))
        for (int64_t row = 0; row < kCharH; ++row)
          for (int64_t col = 0; col < 5; ++col)
            if (g[row] & (0x10 >> col)) rect(x + col * scale, y + row * scale, x + col * scale + scale - 1, y + row * scale + scale - 1, c);
      x += kCharW * scale;
    }
  }
};

// Axis range [lo, hi] widened to whole tick steps; a degenerate range gets some width.
void widen(double& lo, double& hi) {
  if (!(hi > lo)) {
    const double pad = lo == 0 ? 1.0 : std::abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
}

double tick_step(double lo, double hi, int target) {
  const double raw = (hi - lo) / std::max(target, 1);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

// Viridis, by linear interpolation between five of its colours.
Color viridis(double t) {
  static const Color stops[] = {{0.267f, 0.005f, 0.329f}, {0.229f, 0.322f, 0.546f}, {0.128f, 0.567f, 0.551f},
                                {0.369f, 0.789f, 0.383f}, {0.993f, 0.906f, 0.144f}};
  t = std::clamp(std::isfinite(t) ? t : 0.0, 0.0, 1.0) * 4.0;
  const int i = std::min(3, static_cast<int>(t));
  const float f = static_cast<float>(t - i);
  Color c;
  for (size_t k = 0; k < 3; ++k) c[k] = stops[i][k] * (1 - f) + stops[i + 1][k] * f;
  return c;
}

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) throw ValueError("nice_ticks: the range must be finite");
  widen(lo, hi);
  const double step = tick_step(lo, hi, target);
  std::vector<double> t;
  // k * step rather than repeated addition: no accumulated rounding (0.30000000000000004).
  for (double k = std::floor(lo / step + 1e-9); k <= std::ceil(hi / step - 1e-9); k += 1) t.push_back(k * step);
  return t;
}

std::string tick_label(double v) {
  if (std::abs(v) < 1e-12) return "0";
  if (v == std::round(v) && std::abs(v) < 1e6) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{:.3g}", v);
}

Image render_line_plot(const LinePlot& p) {
  if (p.series.empty()) throw ValueError("render_line_plot: no series. Hint: add at least one PlotSeries");
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (const PlotSeries& s : p.series) {
    if (s.x.size() != s.y.size())
      throw ValueError(fmt::format("render_line_plot: series '{}' has {} x values but {} y values", s.name, s.x.size(), s.y.size()));
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      xlo = std::min(xlo, s.x[i]), xhi = std::max(xhi, s.x[i]);
      ylo = std::min(ylo, s.y[i]), yhi = std::max(yhi, s.y[i]);
    }
  }
  if (!std::isfinite(xlo)) throw ValueError("render_line_plot: no finite points to draw");
  if (p.y_from_zero) ylo = std::min(ylo, 0.0), yhi = std::max(yhi, 0.0);
  const std::vector<double> xt = nice_ticks(xlo, xhi), yt = nice_ticks(ylo, yhi);
  xlo = std::min(xlo, xt.front()), xhi = std::max(xhi, xt.back());
  ylo = std::min(ylo, yt.front()), yhi = std::max(yhi, yt.back());

  int64_t legend_w = 0;
  for (const PlotSeries& s : p.series) legend_w = std::max(legend_w, Canvas::text_width(s.name) + 36);
  int64_t ytick_w = 0;
  for (double v : yt) ytick_w = std::max(ytick_w, Canvas::text_width(tick_label(v)));
  const int64_t x0 = ytick_w + 18, x1 = p.width - legend_w - 16, y0 = 40, y1 = p.height - 42;
  if (x1 - x0 < 40 || y1 - y0 < 40)
    throw ValueError(fmt::format("render_line_plot: {}x{} px is too small for the plot. Hint: make it larger", p.width, p.height));
  auto X = [&](double x) { return x0 + static_cast<int64_t>(std::lround((x - xlo) / (xhi - xlo) * static_cast<double>(x1 - x0))); };
  auto Y = [&](double y) { return y1 - static_cast<int64_t>(std::lround((y - ylo) / (yhi - ylo) * static_cast<double>(y1 - y0))); };

  Canvas cv(p.width, p.height);
  cv.text((p.width - Canvas::text_width(p.title, 2)) / 2, 6, p.title, kBlack, 2);
  cv.text(4, y0 - 14, p.ylabel, kGray);
  cv.text((x0 + x1 - Canvas::text_width(p.xlabel)) / 2, p.height - 12, p.xlabel, kGray);
  for (double v : xt) {
    cv.line(X(v), y0, X(v), y1, kGrid);
    cv.line(X(v), y1, X(v), y1 + 4, kBlack);
    const std::string l = tick_label(v);
    cv.text(X(v) - Canvas::text_width(l) / 2, y1 + 8, l, kBlack);
  }
  for (double v : yt) {
    cv.line(x0, Y(v), x1, Y(v), kGrid);
    cv.line(x0 - 4, Y(v), x0, Y(v), kBlack);
    const std::string l = tick_label(v);
    cv.text(x0 - 7 - Canvas::text_width(l), Y(v) - 3, l, kBlack);
  }
  cv.frame(x0, y0, x1, y1, kBlack);
  for (size_t si = 0; si < p.series.size(); ++si) {
    const PlotSeries& s = p.series[si];
    const Color& c = kPalette[si % kPaletteSize];
    bool have_prev = false;
    int64_t px = 0, py = 0;
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) {
        have_prev = false;
        continue;
      }
      const int64_t qx = X(s.x[i]), qy = Y(s.y[i]);
      if (have_prev) cv.line(px, py, qx, qy, c, 2);
      px = qx, py = qy, have_prev = true;
    }
    for (size_t i = 0; i < s.x.size(); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) cv.marker(X(s.x[i]), Y(s.y[i]), static_cast<int>(si), c);
    // Legend to the right of the plot area.
    const int64_t ly = y0 + 6 + static_cast<int64_t>(si) * 16, lx = x1 + 12;
    cv.line(lx, ly + 3, lx + 22, ly + 3, c, 2);
    cv.marker(lx + 11, ly + 3, static_cast<int>(si), c);
    cv.text(lx + 28, ly, s.name, kBlack);
  }
  return cv.img;
}

Image render_heatmap(const Heatmap& h) {
  const int64_t rows = static_cast<int64_t>(h.values.size());
  if (rows == 0 || h.values[0].empty()) throw ValueError("render_heatmap: no values. Hint: give at least one row and column");
  const int64_t cols = static_cast<int64_t>(h.values[0].size());
  for (const auto& r : h.values)
    if (static_cast<int64_t>(r.size()) != cols)
      throw ValueError(fmt::format("render_heatmap: rows have different lengths (got {}, expected {})", r.size(), cols));
  if (!h.row_labels.empty() && static_cast<int64_t>(h.row_labels.size()) != rows)
    throw ValueError(fmt::format("render_heatmap: {} row labels for {} rows", h.row_labels.size(), rows));
  if (!h.col_labels.empty() && static_cast<int64_t>(h.col_labels.size()) != cols)
    throw ValueError(fmt::format("render_heatmap: {} column labels for {} columns", h.col_labels.size(), cols));
  if (!(h.vmax > h.vmin)) throw ValueError(fmt::format("render_heatmap: vmin {} must be below vmax {}", h.vmin, h.vmax));
  if (h.cell < 4) throw ValueError(fmt::format("render_heatmap: cell {} px is too small (expected >= 4)", h.cell));

  int64_t label_w = 0;
  for (const auto& l : h.row_labels) label_w = std::max(label_w, Canvas::text_width(l));
  const std::vector<double> bt = nice_ticks(h.vmin, h.vmax, 4);
  int64_t bar_label_w = 0;
  for (double v : bt) bar_label_w = std::max(bar_label_w, Canvas::text_width(tick_label(v)));
  const int64_t x0 = label_w + 16, y0 = 44, gw = cols * h.cell, gh = rows * h.cell;
  const int64_t bar_x = x0 + gw + 20, bar_w = 16;
  const int64_t W = std::max(bar_x + bar_w + 10 + bar_label_w + 10, Canvas::text_width(h.title, 2) + 20);
  const int64_t H = y0 + gh + 40;

  Canvas cv(W, H);
  cv.text((W - Canvas::text_width(h.title, 2)) / 2, 6, h.title, kBlack, 2);
  cv.text(4, y0 - 14, h.ylabel, kGray);
  cv.text(x0 + (gw - Canvas::text_width(h.xlabel)) / 2, H - 12, h.xlabel, kGray);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const double v = h.values[static_cast<size_t>(i)][static_cast<size_t>(j)];
      const double t = (v - h.vmin) / (h.vmax - h.vmin);
      const int64_t cx = x0 + j * h.cell, cy = y0 + i * h.cell;
      cv.rect(cx, cy, cx + h.cell - 1, cy + h.cell - 1, viridis(t));
      // The value in the cell when it fits, dark on the bright end of the map.
      const std::string s = fmt::format("{:.2f}", v);
      if (Canvas::text_width(s) + 4 <= h.cell && kCharH + 4 <= h.cell)
        cv.text(cx + (h.cell - Canvas::text_width(s)) / 2, cy + (h.cell - kCharH) / 2, s, t > 0.6 ? kBlack : kWhite);
    }
  cv.frame(x0 - 1, y0 - 1, x0 + gw, y0 + gh, kBlack);
  for (int64_t i = 0; i < static_cast<int64_t>(h.row_labels.size()); ++i) {
    const std::string& l = h.row_labels[static_cast<size_t>(i)];
    cv.text(x0 - 6 - Canvas::text_width(l), y0 + i * h.cell + (h.cell - kCharH) / 2, l, kBlack);
  }
  for (int64_t j = 0; j < static_cast<int64_t>(h.col_labels.size()); ++j) {
    const std::string& l = h.col_labels[static_cast<size_t>(j)];
    cv.text(x0 + j * h.cell + (h.cell - Canvas::text_width(l)) / 2, y0 + gh + 6, l, kBlack);
  }
  // Colour bar: vmax at the top.
  for (int64_t y = 0; y < gh; ++y)
    cv.rect(bar_x, y0 + y, bar_x + bar_w - 1, y0 + y, viridis(1.0 - static_cast<double>(y) / static_cast<double>(std::max<int64_t>(gh - 1, 1))));
  cv.frame(bar_x - 1, y0 - 1, bar_x + bar_w, y0 + gh, kBlack);
  for (double v : bt) {
    if (v < h.vmin - 1e-12 || v > h.vmax + 1e-12) continue;
    const int64_t y = y0 + gh - 1 - static_cast<int64_t>(std::lround((v - h.vmin) / (h.vmax - h.vmin) * static_cast<double>(gh - 1)));
    cv.line(bar_x + bar_w, y, bar_x + bar_w + 3, y, kBlack);
    cv.text(bar_x + bar_w + 6, y - 3, tick_label(v), kBlack);
  }
  return cv.img;
}

void save_line_plot(const LinePlot& p, const std::string& path) { save_png(render_line_plot(p), path); }
void save_heatmap(const Heatmap& h, const std::string& path) { save_png(render_heatmap(h), path); }

}  // namespace peft::data
