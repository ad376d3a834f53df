// `peft compare`, `peft sweep` and `peft attention` (issue 5): the cost of every method side by
// side, cost and accuracy against the number of prompts (the CVPT paper's Figures 1 and 4), and
// the share of the CLS token's attention that goes to VPT-deep's prompts (its Figure 2). The
// experiments are library code (peft/compare.h, peft/prompt_sweep.h, peft/prompt_attention.h);
// this file parses and checks the options, calls them and prints or writes what they return.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "apps/peft/commands.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "nn/config.h"
#include "nn/pretrained.h"
#include "peft/compare.h"
#include "peft/method.h"
#include "peft/prompt_attention.h"
#include "peft/prompt_sweep.h"

namespace peft::app {

namespace {

namespace fs = std::filesystem;

// --config, or the config inferred from --weights (nn/pretrained.h) when only weights are given.
nn::ViTConfig config_of(const std::string& config, const std::string& weights) {
  if (!config.empty()) return nn::load_vit_config(config);
  if (weights.empty()) throw UsageError("--config or --weights is required");
  return nn::read_pretrained(weights).config;
}

bool uses_prompts(const std::string& m) { return is_vision_method(m) && vision_method(m).uses("prompts"); }

std::string prompt_methods() {
  std::string names;
  for (const MethodDescriptor& d : vision_method_registry())
    if (d.uses("prompts")) names += (names.empty() ? "" : ", ") + d.name;
  return names;
}

// The items of a list option (add_list_option), empty ones skipped ("1,,2").
std::vector<std::string> list_items(const std::vector<std::string>& v) {
  std::vector<std::string> out;
  for (const std::string& item : v)
    if (!item.empty()) out.push_back(item);
  return out;
}

std::vector<int64_t> parse_counts(const std::vector<std::string>& s, const char* option, bool allow_zero) {
  std::vector<int64_t> out;
  for (const std::string& item : list_items(s)) {
    size_t used = 0;
    int64_t v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || v < (allow_zero ? 0 : 1))
      throw UsageError(fmt::format("{}: '{}' is not a {} integer (expected a comma-separated list like 1,10,50)", option,
                                   item, allow_zero ? "non-negative" : "positive"));
    out.push_back(v);
  }
  if (out.empty()) throw UsageError(fmt::format("{}: empty list (expected e.g. 1,10,50)", option));
  return out;
}

// Not given, "" or "all": every vision method.
std::vector<std::string> parse_methods(const std::vector<std::string>& s) {
  std::vector<std::string> out;
  if (s.empty() || s == std::vector<std::string>{""} || s == std::vector<std::string>{"all"}) {
    for (auto& m : vision_methods()) out.push_back(m.name);
    return out;
  }
  for (const std::string& m : list_items(s)) {
    if (!is_vision_method(m))
      throw UsageError(fmt::format("--methods: unknown method '{}' (available: {})", m, vision_method_list()));
    out.push_back(m);
  }
  if (out.empty()) throw UsageError("--methods: empty list (expected e.g. vpt-deep,cvpt)");
  return out;
}

// Runs a library call, bad method options (MethodError) being usage errors (exit 2).
template <class F>
auto as_usage(F&& f) {
  try {
    return f();
  } catch (const MethodError& e) {
    throw UsageError(e.what());
  }
}

void make_dir(const std::string& out) {
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) throw IOError(fmt::format("--out '{}': cannot create the folder ({})", out, ec.message()));
}

std::string in_dir(const std::string& dir, const std::string& file) { return (fs::path(dir) / file).string(); }

void check_measure(int64_t batch, int steps) {
  if (batch <= 0) throw UsageError(fmt::format("--batch: must be positive (got {})", batch));
  if (steps <= 0) throw UsageError(fmt::format("--steps: must be positive (got {})", steps));
}

// ------------------------------------------------------------------ compare

struct CompareArgs {
  std::string config, weights, csv, json_out;
  std::vector<std::string> methods;
  int64_t batch = 8;
  int steps = 3;
  MethodOptions opts;
  bool checkpoint_activations = false;
};

int run_compare(const CompareArgs& a, const Common& common) {
  check_measure(a.batch, a.steps);
  const std::vector<std::string> methods = parse_methods(a.methods);
  for (const auto& m : methods) as_usage([&] { validate_method_options(m, a.opts); });
  const BaseModel base{config_of(a.config, a.weights), a.weights, common.seed, a.checkpoint_activations};
  const std::vector<CostReport> reports = as_usage([&] { return compare_methods(base, methods, a.opts, a.batch, a.steps); });
  fmt::print("compare: {} methods, batch {}, median of {} steps ({} of {} backbone parameters)\n", reports.size(), a.batch,
             a.steps, a.weights.empty() ? "random init" : a.weights, reports.front().backbone);
  fmt::print("{}", format_cost_table(reports));
  nlohmann::json j = {{"config", a.config}, {"batch", a.batch}, {"steps", a.steps}, {"methods", nlohmann::json::array()}};
  for (const auto& r : reports) j["methods"].push_back(cost_json(r));
  if (!a.csv.empty()) write_text_atomic(a.csv, format_cost_csv(reports));
  if (!a.json_out.empty()) write_text_atomic(a.json_out, j.dump(2) + "\n");
  if (common.json) fmt::print("{}\n", j.dump());
  return 0;
}

// ------------------------------------------------------------------ sweep

struct SweepArgs {
  std::string config, weights, data, out;
  std::vector<std::string> methods = {"vpt-deep", "cvpt"}, prompts = {"1", "10", "50", "100", "200"};
  int64_t batch = 8, epochs = 1, train_size = 256, val_size = 256;
  int steps = 3;
  double lr = 1e-3;
  MethodOptions opts;
};

int run_sweep_command(const SweepArgs& a, const Common& common) {
  check_measure(a.batch, a.steps);
  if (a.epochs <= 0) throw UsageError(fmt::format("--epochs: must be positive (got {})", a.epochs));
  SweepRequest req{{}, parse_methods(a.methods), parse_counts(a.prompts, "--prompts", false), a.opts, a.batch, a.steps,
                   a.epochs, a.lr};
  for (const auto& m : req.methods)
    if (!uses_prompts(m)) throw UsageError(fmt::format("--methods: {} has no prompts to sweep (use {})", m, prompt_methods()));
  MethodOptions o = a.opts;
  for (int64_t M : req.counts) {
    o.prompts = M;
    for (const auto& m : req.methods) as_usage([&] { validate_method_options(m, o); });
  }
  req.base = {config_of(a.config, a.weights), a.weights, common.seed};
  req.world = &dist::World::get();  // under mpirun the points are spread over the ranks
  const SweepData d = open_sweep_data(req.base.config, a.data, a.train_size, a.val_size, common.seed);
  if (!a.out.empty() && req.world->is_root()) make_dir(a.out);
  const SweepResult r = as_usage([&] { return run_sweep(req, d); });
  if (!req.world->is_root()) return 0;  // rank 0 has every point: it prints and writes
  fmt::print("sweep: {} on {} ({}), batch {}\n", fmt::join(a.methods, ","), a.config,
             a.weights.empty() ? "random init" : a.weights, a.batch);
  fmt::print("{}", format_sweep_table(r));
  if (!a.out.empty()) {
    write_text_atomic(in_dir(a.out, "sweep.csv"), sweep_csv(r));
    save_sweep_plots(r, a.out);
    fmt::print("wrote {}/sweep.csv and {}/{{flops,memory,step_time{}}}.png\n", a.out, a.out, r.trained ? ",accuracy" : "");
  }
  if (common.json)
    fmt::print("{}\n", nlohmann::json({{"config", a.config}, {"batch", a.batch}, {"rows", sweep_json_rows(r)}}).dump());
  return 0;
}

// ------------------------------------------------------------------ attention

struct AttentionArgs {
  std::string config, weights, data, out;
  std::vector<std::string> prompts = {"1", "10", "50"};
  int64_t batch = 16, epochs = 0, train_size = 256;
  double lr = 1e-3;
};

int run_attention(const AttentionArgs& a, const Common& common) {
  if (a.batch <= 0) throw UsageError(fmt::format("--batch: must be positive (got {})", a.batch));
  if (a.epochs < 0) throw UsageError(fmt::format("--epochs: must be >= 0 (got {})", a.epochs));
  if (a.epochs > 0 && a.data.empty()) throw UsageError("--epochs needs --data (the prompts are trained on it)");
  std::vector<int64_t> counts = parse_counts(a.prompts, "--prompts", true);
  if (counts.front() != 0) counts.insert(counts.begin(), 0);  // M = 0: the plain model, share 0
  const BaseModel base{config_of(a.config, a.weights), a.weights, common.seed};
  for (int64_t M : counts)
    if (M > 0) {
      MethodOptions o;
      o.prompts = M;
      as_usage([&] { validate_method_options("vpt-deep", o); });
    }
  const PromptAttentionResult r =
      as_usage([&] { return prompt_attention({base, counts, a.data, a.batch, a.epochs, a.train_size, a.lr}); });
  fmt::print("attention: share of the CLS token's attention on the VPT-deep prompts ({}, {} images{})\n", a.weights,
             r.images, r.trained ? fmt::format(", prompts trained {} epochs", a.epochs) : ", prompts at init");
  fmt::print("{}", format_prompt_attention(r));
  if (!a.out.empty()) {
    make_dir(a.out);
    write_text_atomic(in_dir(a.out, "attention.csv"), prompt_attention_csv(r));
    save_prompt_attention_heatmap(r, in_dir(a.out, "attention.png"));
    fmt::print("wrote {}/attention.csv and {}/attention.png\n", a.out, a.out);
  }
  if (common.json) fmt::print("{}\n", nlohmann::json({{"config", a.config}, {"prompts", counts}, {"share", r.share}}).dump());
  return 0;
}

}  // namespace

void add_compare_commands(CLI::App& app, Common& common, Runner& run) {
  static CompareArgs ca;
  auto* cmp = app.add_subcommand("compare", "cost of every method side by side: parameters, FLOPs, time, memory");
  cmp->add_option("--config", ca.config, "model config: preset name or JSON file (default: inferred from --weights)");
  cmp->add_option("--weights", ca.weights, "base weights (safetensors; default: seeded random init)");
  add_list_option(cmp, "--methods", ca.methods, "comma-separated methods (default: all ViT methods)");
  cmp->add_option("--batch", ca.batch, "images per measured batch")->capture_default_str();
  cmp->add_option("--steps", ca.steps, "timed steps (median)")->capture_default_str();
  cmp->add_flag("--checkpoint-activations,--grad-checkpointing", ca.checkpoint_activations,
                "train steps keep only each block's input and recompute the block in backward (less memory, one "
                "more forward)");
  cmp->add_option("--csv", ca.csv, "also write the table as CSV");
  cmp->add_option("--json-out", ca.json_out, "also write the table as JSON");
  add_method_options(cmp, ca.opts);
  add_common_options(cmp, common);
  cmp->callback([&run, &common] { run = [&common] { return run_compare(ca, common); }; });

  static SweepArgs sa;
  auto* sw = app.add_subcommand("sweep", "cost (and accuracy) against the number of prompts, with PNG plots");
  sw->add_option("--config", sa.config, "model config: preset name or JSON file (default: inferred from --weights)");
  sw->add_option("--weights", sa.weights, "base weights (safetensors; default: seeded random init)");
  add_list_option(sw, "--methods", sa.methods, "prompt methods to sweep");
  add_list_option(sw, "--prompts", sa.prompts, "prompt counts M");
  sw->add_option("--data", sa.data, "also train and evaluate: FOLDER | cifar10:PATH | cifar100:PATH | procedural:TASK");
  sw->add_option("--epochs", sa.epochs, "training epochs per point (with --data)")->capture_default_str();
  sw->add_option("--train-size", sa.train_size, "procedural training images")->capture_default_str();
  sw->add_option("--val-size", sa.val_size, "procedural validation images")->capture_default_str();
  sw->add_option("--lr", sa.lr, "peak learning rate (with --data)")->capture_default_str();
  sw->add_option("--batch", sa.batch, "batch size")->capture_default_str();
  sw->add_option("--steps", sa.steps, "timed steps (median)")->capture_default_str();
  sw->add_option("--out", sa.out, "write DIR/sweep.csv and DIR/{flops,memory,step_time,accuracy}.png");
  add_method_options(sw, sa.opts, /*with_prompts=*/false);  // --prompts is the list of counts here
  add_common_options(sw, common);
  sw->callback([&run, &common] { run = [&common] { return run_sweep_command(sa, common); }; });

  static AttentionArgs aa;
  auto* at = app.add_subcommand("attention", "share of the CLS token's attention on VPT-deep's prompts, per layer and M");
  at->add_option("--config", aa.config, "model config: preset name or JSON file (default: inferred from --weights)");
  at->add_option("--weights", aa.weights, "base weights (safetensors)")->required();
  add_list_option(at, "--prompts", aa.prompts, "prompt counts M (M = 0, the plain model, is always included)");
  at->add_option("--data", aa.data, "probe (and training) images: FOLDER | cifar10:PATH | procedural:TASK (default: noise)");
  at->add_option("--epochs", aa.epochs, "train the prompts and head this many epochs first (needs --data)")->capture_default_str();
  at->add_option("--train-size", aa.train_size, "procedural training images")->capture_default_str();
  at->add_option("--lr", aa.lr, "peak learning rate (with --epochs)")->capture_default_str();
  at->add_option("--batch", aa.batch, "probe images")->capture_default_str();
  at->add_option("--out", aa.out, "write DIR/attention.csv and DIR/attention.png");
  add_common_options(at, common);
  at->callback([&run, &common] { run = [&common] { return run_attention(aa, common); }; });
}

}  // namespace peft::app
