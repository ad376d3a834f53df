// `peft clip-demo`: the embedded CLIP experiment, no downloads (README, scripts/demo.sh --clip);
// the experiment itself is peft/clip_demo.h. Prints one table and writes clip_demo.json,
// clip_demo.csv and a PNG plot of accuracy against shots.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "apps/peft/commands.h"
#include "core/atomic_file.h"
#include "peft/clip_demo.h"

namespace peft::app {

namespace {

// --shots "1,2,4,8,16" (add_list_option): positive numbers.
std::vector<int64_t> parse_shots(const std::vector<std::string>& items) {
  std::vector<int64_t> shots;
  for (const std::string& item : items) {
    if (item.empty() && items.size() == 1) break;  // --shots 
    try {
      shots.push_back(std::stoll(item));
    } catch (const std::exception&) {
      throw UsageError(fmt::format("--shots: '{}' is not a number", item));
    }
    if (shots.back() <= 0) throw UsageError(fmt::format("--shots: {} must be positive", shots.back()));
  }
  if (shots.empty()) throw UsageError("--shots: empty list");
  return shots;
}

int run_clip_demo_command(ClipDemoConfig c, const std::vector<std::string>& shots, const Common& common) {
  namespace fs = std::filesystem;
  const auto t0 = std::chrono::steady_clock::now();
  c.shots = parse_shots(shots);
  if (c.quick) c.shots = {1, 2};
  c.seed = common.seed;
  const ClipDemoReport r = run_clip_demo(c, [](const std::string& line) { fmt::print("{}\n", line); });
  fmt::print("\n{}", clip_demo_table(c, r));
  save_clip_demo_plot(r, (fs::path(c.out) / "accuracy_vs_shots.png").string());
  write_text_atomic((fs::path(c.out) / "clip_demo.json").string(), clip_demo_json(r) + "\n");
  write_text_atomic((fs::path(c.out) / "clip_demo.csv").string(), clip_demo_csv(r));
  fmt::print("plot: {}/accuracy_vs_shots.png (x: log2 shots per class, y: top-1 %, one series per method)\n", c.out);
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print("time: pretraining {:.0f}s, few-shot {:.0f}s, total {:.0f}s\n", r.pretrain_time_s, r.fewshot_time_s, total);
  if (common.json) {
    nlohmann::json summary = {{"zeroshot_top1", r.zeroshot_top1}, {"pretrain_time_s", r.pretrain_time_s},
                              {"fewshot_time_s", r.fewshot_time_s}, {"total_time_s", total},
                              {"methods", nlohmann::json::parse(clip_demo_json(r))}};
    fmt::print("{}\n", summary.dump());
  }
  return 0;
}

}  // namespace

void add_clip_demo_command(CLI::App& app, Common& common, Runner& run) {
  static ClipDemoConfig o;
  static std::vector<std::string> shots = {"1", "2", "4", "8", "16"};
  auto* cmd = app.add_subcommand("clip-demo", "built-in CLIP experiment: contrastive pretraining, zero-shot, few-shot methods");
  cmd->add_option("--out", o.out, "output folder")->capture_default_str();
  cmd->add_option("--target", o.target, "procedural target task (peft tasks)")->capture_default_str();
  add_list_option(cmd, "--shots", shots, "comma-separated shots per class");
  cmd->add_option("--pretrain-size", o.pretrain_size, "captioned images for contrastive pretraining")->capture_default_str();
  cmd->add_option("--pretrain-epochs", o.pretrain_epochs, "contrastive pretraining epochs")->capture_default_str();
  cmd->add_option("--weights", o.weights, "skip pretraining and load these clip-micro weights (OUT/clip.safetensors)");
  cmd->add_flag("--quick", o.quick, "tiny sizes (smoke test)");
  add_common_options(cmd, common);
  cmd->callback([&run, &common] { run = [&common] { return run_clip_demo_command(o, shots, common); }; });
}

}  // namespace peft::app
