// run_sweep and its renderings (see prompt_sweep.h).
#include "peft/prompt_sweep.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

#include "data/plot.h"
#include "nn/config.h"
#include "peft/trainer.h"

namespace peft {

namespace {

constexpr double kMiB = 1024.0 * 1024.0;

std::string in_dir(const std::string& dir, const std::string& file) {
  return (std::filesystem::path(dir) / file).string();
}

// All rows: the baseline first.
std::vector<const SweepRow*> all_rows(const SweepResult& r) {
  std::vector<const SweepRow*> all = {&r.base};
  for (const auto& row : r.rows) all.push_back(&row);
  return all;
}

// One curve per method over M, starting at the M = 0 baseline.
template <class Value>
data::LinePlot curves(const SweepResult& r, const std::string& title, const std::string& ylabel, Value value,
                      const std::string& suffix) {
  data::LinePlot p;
  p.title = title;
  p.xlabel = "prompts M";
  p.ylabel = ylabel;
  for (const auto& m : r.methods) {
    data::PlotSeries ps;
    ps.name = m + suffix;
    ps.x.push_back(0);
    ps.y.push_back(value(r.base));
    for (const auto& row : r.rows)
      if (row.cost.method == m) {
        ps.x.push_back(static_cast<double>(row.cost.prompts));
        ps.y.push_back(value(row));
      }
    p.series.push_back(ps);
  }
  return p;
}

// A point as JSON, to travel from the rank that measured it to rank 0 (doubles round-trip exactly).
std::string row_to_json(const SweepRow& row) {
  nlohmann::json j = cost_json(row.cost);
  j["top1"] = std::isnan(row.top1) ? nlohmann::json(nullptr) : nlohmann::json(row.top1);
  return j.dump();
}

SweepRow row_from_json(const std::string& s) {
  const nlohmann::json j = nlohmann::json::parse(s);
  SweepRow row;
  CostReport& k = row.cost;
  k.method = j.at("method").get<std::string>();
  k.prompts = j.at("M").get<int64_t>();
  k.batch = j.at("batch").get<int64_t>();
  k.trainable = j.at("trainable").get<int64_t>();
  k.backbone = j.at("backbone").get<int64_t>();
  k.total = j.at("total").get<int64_t>();
  k.trainable_pct = j.at("trainable_pct").get<double>();
  k.flops_per_image = j.at("flops_per_image").get<int64_t>();
  k.train_step_s = j.at("train_step_s").get<double>();
  k.infer_batch_s = j.at("infer_batch_s").get<double>();
  k.train_peak_bytes = j.at("train_peak_bytes").get<int64_t>();
  k.infer_peak_bytes = j.at("infer_peak_bytes").get<int64_t>();
  k.peak_rss_mb = j.at("peak_rss_mb").get<double>();
  row.top1 = j.at("top1").is_null() ? NAN : j.at("top1").get<double>();
  return row;
}

}  // namespace

SweepData open_sweep_data(const nn::ViTConfig& c, const std::string& spec, int64_t train_size, int64_t val_size,
                          uint64_t seed) {
  SweepData d;
  d.classes = classes_of(c);
  if (spec.empty()) return d;
  d.train = data::open_dataset(spec, data::Split::train, nn::effective_preprocess(c), c.in_chans, train_size, seed);
  d.val = data::open_dataset(spec, data::Split::val, nn::effective_preprocess(c), c.in_chans, val_size, seed);
  d.classes = d.train->num_classes();
  return d;
}

SweepResult run_sweep(const SweepRequest& req, const SweepData& d) {
  // One point: a fresh model; M = 0 is the baseline (the method is then "linear").
  auto measure = [&](const std::string& method, int64_t M) {
    MethodOptions mo = req.opts;
    if (M > 0) mo.prompts = M;
    auto vit = build_on_base(req.base, method, mo, d.classes);
    SweepRow row;
    row.cost = measure_cost(*vit, req.batch, req.steps);
    row.cost.method = method;
    row.cost.prompts = M;
    if (d.train) {
      TrainConfig tc;  // one process per point (tc.world stays null)
      tc.epochs = req.epochs;
      tc.batch = req.batch;
      tc.lr = req.lr;
      tc.seed = req.base.seed;
      tc.progress = false;
      train_model(*vit, d.train, nullptr, tc);
      row.top1 = evaluate(*vit, d.val, req.batch).top1;
    }
    return row;
  };
  // The grid: the baseline, then each method by M.
  std::vector<std::pair<std::string, int64_t>> points = {{"linear", 0}};
  for (const auto& m : req.methods)
    for (int64_t M : req.counts) points.emplace_back(m, M);
  SweepResult r;
  r.methods = req.methods;
  r.trained = d.train != nullptr;
  if (!req.world || !req.world->distributed()) {
    r.base = measure(points[0].first, 0);
    for (size_t i = 1; i < points.size(); ++i) r.rows.push_back(measure(points[i].first, points[i].second));
    return r;
  }
  const std::vector<std::string> rows = dist::spread_cells(
      *req.world, points.size(), [&](size_t i) { return row_to_json(measure(points[i].first, points[i].second)); },
      "the sweep's gather of its points");
  if (rows.empty()) return r;  // not rank 0
  r.base = row_from_json(rows[0]);
  for (size_t i = 1; i < rows.size(); ++i) r.rows.push_back(row_from_json(rows[i]));
  return r;
}

std::string format_sweep_table(const SweepResult& r) {
  std::string out = fmt::format("{:<12} {:>5} {:>11} {:>11} {:>9} {:>10} {:>10} {:>8}\n", "method", "M", "trainable",
                                "MFLOPs/img", "step ms", "train MiB", "infer MiB", "top1");
  for (const SweepRow* row : all_rows(r)) {
    const CostReport& k = row->cost;
    const std::string top1 = std::isnan(row->top1) ? "-" : fmt::format("{:.2f}%", row->top1);
    out += fmt::format("{:<12} {:>5} {:>11} {:>11.3f} {:>9.2f} {:>10.2f} {:>10.2f} {:>8}\n", k.method, k.prompts,
                       k.trainable, static_cast<double>(k.flops_per_image) / 1e6, k.train_step_s * 1e3,
                       static_cast<double>(k.train_peak_bytes) / kMiB, static_cast<double>(k.infer_peak_bytes) / kMiB,
                       top1);
  }
  return out;
}

std::string sweep_csv(const SweepResult& r) {
  std::string csv =
      "method,prompts,trainable,flops_per_image,train_step_s,infer_batch_s,train_peak_bytes,infer_peak_bytes,peak_rss_mb,top1\n";
  for (const SweepRow* row : all_rows(r)) {
    const CostReport& k = row->cost;
    csv += fmt::format("{},{},{},{},{:.6g},{:.6g},{},{},{:.6g},{}\n", k.method, k.prompts, k.trainable, k.flops_per_image,
                       k.train_step_s, k.infer_batch_s, k.train_peak_bytes, k.infer_peak_bytes, k.peak_rss_mb,
                       std::isnan(row->top1) ? std::string() : fmt::format("{:.4f}", row->top1));
  }
  return csv;
}

nlohmann::json sweep_json_rows(const SweepResult& r) {
  nlohmann::json rows = nlohmann::json::array();
  for (const SweepRow* row : all_rows(r)) {
    nlohmann::json j = cost_json(row->cost);
    j["top1"] = std::isnan(row->top1) ? nlohmann::json(nullptr) : nlohmann::json(row->top1);
    rows.push_back(j);
  }
  return rows;
}

void save_sweep_plots(const SweepResult& r, const std::string& dir) {
  // GFLOPs for real models, MFLOPs for the small ones (readable tick numbers either way).
  int64_t max_flops = 0;
  for (const SweepRow* row : all_rows(r)) max_flops = std::max(max_flops, row->cost.flops_per_image);
  const bool giga = max_flops >= 1000000000;
  const double unit = giga ? 1e9 : 1e6;
  data::save_line_plot(curves(r, "FLOPs vs prompts", giga ? "GFLOPs/image" : "MFLOPs/image",
                              [unit](const SweepRow& s) { return static_cast<double>(s.cost.flops_per_image) / unit; }, ""),
                       in_dir(dir, "flops.png"));
  data::LinePlot mem = curves(r, "memory vs prompts", "peak MiB",
                              [](const SweepRow& s) { return static_cast<double>(s.cost.train_peak_bytes) / kMiB; }, " train");
  data::LinePlot inf =
      curves(r, "", "", [](const SweepRow& s) { return static_cast<double>(s.cost.infer_peak_bytes) / kMiB; }, " test");
  mem.series.insert(mem.series.end(), inf.series.begin(), inf.series.end());
  data::save_line_plot(mem, in_dir(dir, "memory.png"));
  data::save_line_plot(curves(r, "training step vs prompts", "ms/step",
                              [](const SweepRow& s) { return s.cost.train_step_s * 1e3; }, ""),
                       in_dir(dir, "step_time.png"));
  if (r.trained)
    data::save_line_plot(curves(r, "accuracy vs prompts", "top1 %", [](const SweepRow& s) { return s.top1; }, ""),
                         in_dir(dir, "accuracy.png"));
}

}  // namespace peft
