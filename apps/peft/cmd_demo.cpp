// `peft demo`: the embedded default experiment, no downloads (README, scripts/demo.sh).
// Pretrains a small ViT on the procedural source task, then adapts it to a shifted target task
// with each method, next to a linear probe on a random backbone, and prints one table.
#include <fmt/format.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "apps/peft/commands.h"
#include "core/atomic_file.h"
#include "core/process_stats.h"
#include "data/procedural.h"
#include "nn/checkpoint.h"
#include "nn/config.h"
#include "peft/method.h"
#include "peft/trainer.h"

namespace peft::app {

namespace {
struct DemoOptions {
  std::string out = "demo_out";
  std::string source = "shapes", target = "shapes-textured";
  bool quick = false;  // a reduced size for CI smoke tests
};

struct Row {
  std::string method, backbone;
  int64_t trainable = 0, total = 0;
  double top1 = 0, train_time = 0, peak_mb = 0;
};
}  // namespace

void add_demo_command(CLI::App& app, Common& common, Runner& run) {
  static DemoOptions o;
  auto* cmd = app.add_subcommand("demo", "the built-in experiment: pretrain on procedural data, then adapt with each method");
  cmd->add_option("--out", o.out, "output folder")->capture_default_str();
  cmd->add_option("--source", o.source, "procedural source task (peft tasks)")->capture_default_str();
  cmd->add_option("--target", o.target, "procedural target task")->capture_default_str();
  cmd->add_flag("--quick", o.quick, "tiny sizes (smoke test)");
  add_common_options(cmd, common);
  cmd->callback([&run, &common] {
    run = [&common] {
      namespace fs = std::filesystem;
      fs::create_directories(o.out);
      nn::ViTConfig cfg = nn::load_vit_config("vit-micro");
      const int64_t n_src = o.quick ? 128 : 6000, n_tgt = o.quick ? 64 : 1000, n_val = o.quick ? 32 : 500;
      const int64_t pre_epochs = o.quick ? 1 : 10, ft_epochs = o.quick ? 1 : 6;
      auto src_train = std::make_shared<data::ProceduralDataset>(o.source, n_src, cfg.image_size, common.seed, data::Split::train);
      auto src_val = std::make_shared<data::ProceduralDataset>(o.source, n_val, cfg.image_size, common.seed, data::Split::val);
      auto tgt_train = std::make_shared<data::ProceduralDataset>(o.target, n_tgt, cfg.image_size, common.seed, data::Split::train);
      auto tgt_val = std::make_shared<data::ProceduralDataset>(o.target, n_val, cfg.image_size, common.seed, data::Split::val);

      // 1. Pretrain every parameter on the source task.
      cfg.num_classes = src_train->num_classes();
      nn::VisionTransformer base(cfg, common.seed);
      fmt::print("[1/2] pretraining {} ({} parameters) on procedural:{} ({} images, {} epochs)\n", "vit-micro",
                 base.num_parameters(), o.source, n_src, pre_epochs);
      TrainConfig pre;
      pre.epochs = pre_epochs;
      pre.batch = 64;
      pre.lr = 2e-3;
      pre.weight_decay = 0.05;
      pre.warmup_epochs = o.quick ? 0 : 1;
      pre.augment = "flip";
      pre.seed = common.seed;
      pre.out_dir = (fs::path(o.out) / "pretrain").string();
      fs::create_directories(pre.out_dir);
      TrainResult pr = train_model(base, src_train, src_val, pre);
      const std::string weights = (fs::path(pre.out_dir) / "weights.safetensors").string();
      nn::save_weights(base, weights);
      write_text_atomic((fs::path(pre.out_dir) / "model.json").string(), nn::vit_config_to_json(cfg) + "\n");
      fmt::print("      source val top1 {:.1f}% after {:.0f}s\n", pr.val.top1, pr.train_time_s);

      // 2. Adapt to the target task with each method (and a probe on a random backbone).
      std::vector<Row> rows;
      struct Run {
        std::string method;
        bool pretrained;
        double lr;
      };
      // A probe on a random backbone, then every method of the registry at its demo learning rate
      // (AdamW, warm-up + cosine) and its default options.
      std::vector<Run> runs = {{"linear", false, vision_method("linear").demo_lr}};
      for (const MethodDescriptor& d : vision_method_registry()) runs.push_back({d.name, true, d.demo_lr});
      fmt::print("[2/2] adapting to procedural:{} ({} images, {} epochs per method)\n", o.target, n_tgt, ft_epochs);
      for (const Run& r : runs) {
        reset_peak_rss();  // each row's peak memory is its own
        nn::VisionTransformer vit(cfg, common.seed + 100);  // a different random init for the random row
        if (r.pretrained) nn::load_vit_weights(vit, weights);
        Generator gen(common.seed + 1);
        MethodOptions mo;
        apply_method_defaults(r.method, mo, {});
        apply_method(vit, r.method, mo, tgt_train->num_classes(), gen);
        TrainConfig tc;
        tc.epochs = ft_epochs;
        tc.batch = 64;
        tc.lr = r.lr;
        tc.weight_decay = r.method == "full" ? 0.05 : 0.0;
        tc.warmup_epochs = o.quick ? 0 : 1;
        tc.seed = common.seed;
        TrainResult res = train_model(vit, tgt_train, tgt_val, tc);
        rows.push_back({r.method, r.pretrained ? "pretrained" : "random", vit.num_parameters(true), vit.num_parameters(),
                        res.val.top1, res.train_time_s, peak_rss_mb()});
        fmt::print("      {:<12} {:<10} top1 {:5.1f}%  ({:.0f}s)\n", r.method, rows.back().backbone, res.val.top1, res.train_time_s);
      }

      fmt::print("\nprocedural:{} -> procedural:{}, vit-micro (D{} L{} H{}), {} target images, {} epochs\n", o.source, o.target,
                 cfg.dim, cfg.depth, cfg.heads, n_tgt, ft_epochs);
      fmt::print("{:<12} {:<11} {:>10} {:>8} {:>8} {:>11} {:>9}\n", "method", "backbone", "trainable", "%", "top1", "train time",
                 "peak MB");
      nlohmann::json js = nlohmann::json::array();
      std::string csv = "method,backbone,trainable,percent,top1,train_time_s,peak_rss_mb\n";
      for (auto& r : rows) {
        double pct = 100.0 * static_cast<double>(r.trainable) / static_cast<double>(r.total);
        fmt::print("{:<12} {:<11} {:>10} {:>7.2f}% {:>7.1f}% {:>10.1f}s {:>9.0f}\n", r.method, r.backbone, r.trainable, pct, r.top1,
                   r.train_time, r.peak_mb);
        js.push_back({{"method", r.method}, {"backbone", r.backbone}, {"trainable_params", r.trainable},
                      {"total_params", r.total}, {"top1", r.top1}, {"train_time_s", r.train_time}, {"peak_rss_mb", r.peak_mb}});
        csv += fmt::format("{},{},{},{:.4f},{:.2f},{:.2f},{:.0f}\n", r.method, r.backbone, r.trainable, pct, r.top1, r.train_time,
                           r.peak_mb);
      }
      write_text_atomic((fs::path(o.out) / "demo.json").string(), js.dump(2) + "\n");
      write_text_atomic((fs::path(o.out) / "demo.csv").string(), csv);
      fmt::print("results: {}/demo.json, {}/demo.csv\n", o.out, o.out);
      if (common.json) fmt::print("{}\n", js.dump());
      return 0;
    };
  });
}

}  // namespace peft::app
