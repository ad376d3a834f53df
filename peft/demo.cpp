// run_demo and its table, JSON and CSV (see demo.h).
#include "peft/demo.h"

#include <fmt/format.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/process_stats.h"
#include "data/procedural.h"
#include "nn/checkpoint.h"
#include "peft/method.h"
#include "peft/trainer.h"

namespace peft {

namespace fs = std::filesystem;

namespace {

// 1. Every parameter of vit-micro trains on the source task; returns the weights file.
std::string pretrain(const DemoConfig& c, nn::ViTConfig& cfg, const data::DatasetPtr& train, const data::DatasetPtr& val,
                     DemoReport& rep, const std::function<void(const std::string&)>& say) {
  const int64_t epochs = c.quick ? 1 : 10;
  cfg.num_classes = train->num_classes();
  nn::VisionTransformer base(cfg, c.seed);
  say(fmt::format("[1/2] pretraining vit-micro ({} parameters) on procedural:{} ({} images, {} epochs)", base.num_parameters(),
                  c.source, train->size(), epochs));
  TrainConfig pre;
  pre.epochs = epochs;
  pre.batch = 64;
  pre.lr = 2e-3;
  pre.weight_decay = 0.05;
  pre.warmup_epochs = c.quick ? 0 : 1;
  pre.augment = "flip";
  pre.seed = c.seed;
  pre.out_dir = (fs::path(c.out) / "pretrain").string();
  fs::create_directories(pre.out_dir);
  TrainResult pr = train_model(base, train, val, pre);
  const std::string weights = (fs::path(pre.out_dir) / "weights.safetensors").string();
  nn::save_weights(base, weights);
  write_text_atomic((fs::path(pre.out_dir) / "model.json").string(), nn::vit_config_to_json(cfg) + "\n");
  rep.source_top1 = pr.val.top1;
  say(fmt::format("      source val top1 {:.1f}% after {:.0f}s", pr.val.top1, pr.train_time_s));
  return weights;
}

// 2. One adaptation run: the method with its defaults and its demo learning rate.
DemoRow adapt(const DemoConfig& c, const nn::ViTConfig& cfg, const MethodDescriptor& d, const std::string& weights,
              const data::DatasetPtr& train, const data::DatasetPtr& val, int64_t epochs) {
  reset_peak_rss();  // each row's peak memory is its own
  MethodOptions mo;
  apply_method_defaults(d.name, mo, {});
  // A different random init for the random-backbone row (seed + 100).
  auto vit = build_model(cfg, d.name, mo, train->num_classes(), c.seed + 100, [&](nn::VisionTransformer& v) {
    if (!weights.empty()) nn::load_vit_weights(v, weights);
  });
  TrainConfig tc;
  tc.epochs = epochs;
  tc.batch = 64;
  tc.lr = d.demo_lr;
  tc.weight_decay = d.demo_weight_decay;
  tc.warmup_epochs = c.quick ? 0 : 1;
  tc.seed = c.seed;
  TrainResult res = train_model(*vit, train, val, tc);
  return {d.name, weights.empty() ? "random" : "pretrained", vit->num_parameters(true), vit->num_parameters(), res.val.top1,
          res.train_time_s, peak_rss_mb()};
}

// A row as JSON, to travel from the rank that trained it to rank 0 (doubles round-trip exactly).
std::string row_to_json(const DemoRow& r) {
  return nlohmann::json({{"method", r.method}, {"backbone", r.backbone}, {"trainable", r.trainable}, {"total", r.total},
                         {"top1", r.top1}, {"train_time_s", r.train_time_s}, {"peak_rss_mb", r.peak_rss_mb}})
      .dump();
}

DemoRow row_from_json(const std::string& s) {
  const nlohmann::json j = nlohmann::json::parse(s);
  return {j.at("method").get<std::string>(), j.at("backbone").get<std::string>(), j.at("trainable").get<int64_t>(),
          j.at("total").get<int64_t>(),      j.at("top1").get<double>(),           j.at("train_time_s").get<double>(),
          j.at("peak_rss_mb").get<double>()};
}

}  // namespace

DemoReport run_demo(const DemoConfig& c, const std::function<void(const std::string&)>& say_fn) {
  auto say = [&](const std::string& s) {
    if (say_fn) say_fn(s);
  };
  const bool spread = c.world && c.world->distributed(), root = !spread || c.world->is_root();
  if (root) fs::create_directories(c.out);
  DemoReport rep;
  nn::ViTConfig cfg = nn::load_vit_config("vit-micro");
  const int64_t n_src = c.quick ? 128 : 6000, n_tgt = c.quick ? 64 : 1000, n_val = c.quick ? 32 : 500;
  const int64_t S = cfg.image_size;
  auto src_train = std::make_shared<data::ProceduralDataset>(c.source, n_src, S, c.seed, data::Split::train);
  auto src_val = std::make_shared<data::ProceduralDataset>(c.source, n_val, S, c.seed, data::Split::val);
  auto tgt_train = std::make_shared<data::ProceduralDataset>(c.target, n_tgt, S, c.seed, data::Split::train);
  auto tgt_val = std::make_shared<data::ProceduralDataset>(c.target, n_val, S, c.seed, data::Split::val);
  // Rank 0 pretrains exactly as one process would (so the table is one process's); the others
  // wait for its weights file, as long as that takes, and learn its source top-1.
  std::string weights = (fs::path(c.out) / "pretrain" / "weights.safetensors").string();
  if (root) weights = pretrain(c, cfg, src_train, src_val, rep, say);
  if (spread) {
    cfg.num_classes = src_train->num_classes();
    c.world->barrier("the wait for rank 0's pretraining", std::max(c.world->timeout_s(), 86400.0));
    c.world->broadcast(&rep.source_top1, sizeof rep.source_top1, 0, "the pretraining's top-1 broadcast");
  }
  rep.config = cfg;
  rep.target_images = n_tgt;
  rep.epochs = c.quick ? 1 : 6;
  say(fmt::format("[2/2] adapting to procedural:{} ({} images, {} epochs per method)", c.target, n_tgt, rep.epochs));
  // A probe on a random backbone, then every method of the registry.
  std::vector<std::pair<const MethodDescriptor*, std::string>> runs = {{&vision_method("linear"), ""}};
  for (const MethodDescriptor& d : vision_method_registry()) runs.emplace_back(&d, weights);
  auto run_row = [&](size_t i) {
    const DemoRow row = adapt(c, cfg, *runs[i].first, runs[i].second, tgt_train, tgt_val, rep.epochs);
    say(fmt::format("      {:<12} {:<10} top1 {:5.1f}%  ({:.0f}s)", row.method, row.backbone, row.top1, row.train_time_s));
    return row;
  };
  if (!spread) {
    for (size_t i = 0; i < runs.size(); ++i) rep.rows.push_back(run_row(i));
    return rep;
  }
  for (const std::string& row : dist::spread_cells(
           *c.world, runs.size(), [&](size_t i) { return row_to_json(run_row(i)); }, "the demo's gather of its rows"))
    rep.rows.push_back(row_from_json(row));
  return rep;
}

std::string demo_table(const DemoConfig& c, const DemoReport& r) {
  const nn::ViTConfig& cfg = r.config;
  std::string s = fmt::format("procedural:{} -> procedural:{}, vit-micro (D{} L{} H{}), {} target images, {} epochs\n",
                              c.source, c.target, cfg.dim, cfg.depth, cfg.heads, r.target_images, r.epochs);
  s += fmt::format("{:<12} {:<11} {:>10} {:>8} {:>8} {:>11} {:>9}\n", "method", "backbone", "trainable", "%", "top1",
                   "train time", "peak MB");
  for (const DemoRow& row : r.rows) {
    const double pct = 100.0 * static_cast<double>(row.trainable) / static_cast<double>(row.total);
    s += fmt::format("{:<12} {:<11} {:>10} {:>7.2f}% {:>7.1f}% {:>10.1f}s {:>9.0f}\n", row.method, row.backbone,
                     row.trainable, pct, row.top1, row.train_time_s, row.peak_rss_mb);
  }
  return s;
}

std::string demo_json(const DemoReport& r) {
  nlohmann::json js = nlohmann::json::array();
  for (const DemoRow& row : r.rows)
    js.push_back({{"method", row.method}, {"backbone", row.backbone}, {"trainable_params", row.trainable},
                  {"total_params", row.total}, {"top1", row.top1}, {"train_time_s", row.train_time_s},
                  {"peak_rss_mb", row.peak_rss_mb}});
  return js.dump(2);
}

std::string demo_csv(const DemoReport& r) {
  std::string csv = "method,backbone,trainable,percent,top1,train_time_s,peak_rss_mb\n";
  for (const DemoRow& row : r.rows) {
    const double pct = 100.0 * static_cast<double>(row.trainable) / static_cast<double>(row.total);
    csv += fmt::format("{},{},{},{:.4f},{:.2f},{:.2f},{:.0f}\n", row.method, row.backbone, row.trainable, pct, row.top1,
                       row.train_time_s, row.peak_rss_mb);
  }
  return csv;
}

}  // namespace peft
