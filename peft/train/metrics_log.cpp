// metrics.jsonl, metrics.csv and curves.png after each epoch.
#include "peft/train/metrics_log.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/atomic_file.h"
#include "data/plot.h"

namespace peft {

namespace fs = std::filesystem;

namespace {

// cli.md's metrics.jsonl keys, in the order a person reads them.
const std::vector<std::string> kFirstColumns = {"epoch",   "step",     "lr",           "train_loss", "train_top1",
                                                "val_loss", "val_top1", "images_per_s", "elapsed_s"};

std::string cell(const nlohmann::json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string q = "\"";
    for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
  }
  return v.dump();
}

// Loss and top-1 against the epoch, side by side in one image: two line plots.
void save_curves(const std::vector<nlohmann::json>& rows, const std::string& path) {
  auto series = [&](const std::string& name, const std::string& key) {
    data::PlotSeries s;
    s.name = name;
    for (auto& r : rows) {
      if (!r.contains(key) || !r[key].is_number()) continue;
      s.x.push_back(r["epoch"].get<double>());
      s.y.push_back(r[key].get<double>());
    }
    return s;
  };
  auto plot = [&](const std::string& what, const std::string& key) {
    data::LinePlot p;
    p.title = what;
    p.xlabel = "epoch";
    p.ylabel = what;
    for (auto* split : {"train", "val"}) {
      auto s = series(split, std::string(split) + "_" + key);
      if (!s.x.empty()) p.series.push_back(s);
    }
    return p;
  };
  std::vector<data::Image> panels = {data::render_line_plot(plot("loss", "loss"))};
  // No top-1 is measured while mixing (--mixup/--cutmix): without --val the loss plot stands alone.
  if (data::LinePlot acc = plot("top-1 %", "top1"); !acc.series.empty()) panels.push_back(data::render_line_plot(acc));
  int64_t H = 0, W = 0;
  for (auto& p : panels) H = std::max(H, p.H), W += p.W;
  data::Image both(H, W, 3);
  std::fill(both.pixels.begin(), both.pixels.end(), 1.0f);
  int64_t x0 = 0;
  for (auto& src : panels) {
    for (int64_t y = 0; y < src.H; ++y)
      for (int64_t x = 0; x < src.W; ++x)
        for (int64_t c = 0; c < 3; ++c) both.at(y, x0 + x, c) = src.at(y, x, c);
    x0 += src.W;
  }
  // Written beside and renamed over, like every other output: a killed run leaves a whole file.
  const std::string tmp = path + ".tmp";
  data::save_png(both, tmp);
  fs::rename(tmp, path);
}

}  // namespace

std::string metrics_csv(const std::vector<nlohmann::json>& rows) {
  std::vector<std::string> cols = kFirstColumns, extra;
  for (auto& r : rows)
    for (auto& [k, v] : r.items())
      if (std::find(cols.begin(), cols.end(), k) == cols.end() && std::find(extra.begin(), extra.end(), k) == extra.end())
        extra.push_back(k);
  std::sort(extra.begin(), extra.end());
  cols.insert(cols.end(), extra.begin(), extra.end());
  std::string out;
  for (size_t i = 0; i < cols.size(); ++i) out += (i ? "," : "") + cols[i];
  out += "\n";
  for (auto& r : rows) {
    for (size_t i = 0; i < cols.size(); ++i) out += (i ? "," : "") + (r.contains(cols[i]) ? cell(r[cols[i]]) : "");
    out += "\n";
  }
  return out;
}

MetricsLog::MetricsLog(const std::string& out_dir) : dir_(out_dir) {}

std::string MetricsLog::jsonl_path() const { return dir_.empty() ? "" : (fs::path(dir_) / "metrics.jsonl").string(); }
std::string MetricsLog::csv_path() const { return dir_.empty() ? "" : (fs::path(dir_) / "metrics.csv").string(); }
std::string MetricsLog::plot_path() const { return dir_.empty() ? "" : (fs::path(dir_) / "curves.png").string(); }

void MetricsLog::keep_first(int64_t epochs) {
  rows_.clear();
  if (dir_.empty() || !fs::exists(jsonl_path())) return;
  std::ifstream f(jsonl_path());
  std::string line;
  for (int64_t e = 0; e < epochs && std::getline(f, line); ++e) rows_.push_back(nlohmann::json::parse(line));
}

void MetricsLog::add(const nlohmann::json& row) {
  rows_.push_back(row);
  write();
}

void MetricsLog::write() const {
  if (dir_.empty()) return;
  std::string jsonl;
  for (auto& r : rows_) jsonl += r.dump() + "\n";
  write_text_atomic(jsonl_path(), jsonl);
  write_text_atomic(csv_path(), metrics_csv(rows_));
  save_curves(rows_, plot_path());
}

}  // namespace peft
