// Small PNG charts for reports (peft sweep, peft attention): line plots with axes, numbered
// ticks, coloured series with markers and a legend, and heatmaps with a colour bar. Text uses a
// built-in 5x7 bitmap font (digits, letters (drawn upper-case) and . - + % ( ) / : _ , = e).
#pragma once
#include <string>
#include <vector>

#include "data/image.h"

namespace peft::data {

struct PlotSeries {
  std::string name;       // legend entry
  std::vector<double> x;  // same length as y; non-finite points are skipped
  std::vector<double> y;
};

struct LinePlot {
  std::string title, xlabel, ylabel;
  std::vector<PlotSeries> series;
  int64_t width = 640, height = 420;
  bool y_from_zero = true;  // include 0 in the y range (costs, accuracies)
};

// rows x cols values (rows[i][j]), drawn as coloured cells; row labels left, column labels below.
struct Heatmap {
  std::string title, xlabel, ylabel;
  std::vector<std::string> row_labels, col_labels;
  std::vector<std::vector<double>> values;
  double vmin = 0, vmax = 1;  // colour range (values are clamped); vmin < vmax
  int64_t cell = 40;          // cell size in pixels
};

// RGB images, white background. Throw ValueError for empty or inconsistent input.
Image render_line_plot(const LinePlot& p);
Image render_heatmap(const Heatmap& h);

// render + save_png (IOError naming the file when it cannot be written).
void save_line_plot(const LinePlot& p, const std::string& path);
void save_heatmap(const Heatmap& h, const std::string& path);

// "Nice" tick positions (1, 2, 5 x 10^k steps) covering [lo, hi], about `target` of them.
std::vector<double> nice_ticks(double lo, double hi, int target = 5);
// A short tick label: integers plainly, otherwise up to 3 significant digits (1.5, 0.025, 2.5E+06).
std::string tick_label(double v);

}  // namespace peft::data
