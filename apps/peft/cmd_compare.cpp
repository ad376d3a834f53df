// `peft compare`, `peft sweep` and `peft attention` (issue 5): the cost of every method side by
// side, cost and accuracy against the number of prompts (the CVPT paper's Figures 1 and 4), and
// the share of the CLS token's attention that goes to VPT-deep's prompts (its Figure 2).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "apps/peft/commands.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/random.h"
#include "data/dataset.h"
#include "data/plot.h"
#include "data/transforms.h"
#include "nn/checkpoint.h"
#include "nn/config.h"
#include "nn/pretrained.h"
#include "peft/cost.h"
#include "peft/method.h"
#include "peft/trainer.h"

namespace peft::app {

namespace {

// --config, or the config inferred from --weights (nn/pretrained.h) when only weights are given.
nn::ViTConfig config_of(const std::string& config, const std::string& weights) {
  if (!config.empty()) return nn::load_vit_config(config);
  if (weights.empty()) throw UsageError("--config or --weights is required");
  return nn::read_pretrained(weights).config;
}


namespace fs = std::filesystem;
constexpr double kMiB = 1024.0 * 1024.0;

bool uses_prompts(const std::string& m) { return is_vision_method(m) && vision_method(m).uses("prompts"); }

std::string prompt_methods() {
  std::string names;
  for (const MethodDescriptor& d : vision_method_registry())
    if (d.uses("prompts")) names += (names.empty() ? "" : ", ") + d.name;
  return names;
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    std::string item = s.substr(start, end - start);
    if (!item.empty()) out.push_back(item);
    start = end + 1;
  }
  return out;
}

std::vector<int64_t> parse_counts(const std::string& s, const char* option, bool allow_zero) {
  std::vector<int64_t> out;
  for (const std::string& item : split_list(s)) {
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

std::vector<std::string> parse_methods(const std::string& s) {
  std::vector<std::string> out;
  if (s.empty() || s == "all") {
    for (auto& m : vision_methods()) out.push_back(m.name);
    return out;
  }
  for (const std::string& m : split_list(s)) {
    if (!is_vision_method(m))
      throw UsageError(fmt::format("--methods: unknown method '{}' (available: {})", m, vision_method_list()));
    out.push_back(m);
  }
  if (out.empty()) throw UsageError("--methods: empty list (expected e.g. vpt-deep,cvpt)");
  return out;
}

// A fresh model with `method` attached: backbone from `weights` (seeded random init when none).
std::unique_ptr<nn::VisionTransformer> build(const nn::ViTConfig& c, const std::string& weights, const std::string& method,
                                             const MethodOptions& o, int64_t classes, uint64_t seed) {
  try {
    return build_model(c, method, o, classes, seed, [&](nn::VisionTransformer& vit) {
      if (!weights.empty()) nn::load_vit_weights(vit, weights);
    });
  } catch (const MethodError& e) {
    throw UsageError(e.what());
  }
}

void validate(const std::string& method, const MethodOptions& o) {
  try {
    validate_method_options(method, o);
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

nlohmann::json cost_json(const CostReport& r) {
  return {{"method", r.method},
          {"M", r.prompts},
          {"batch", r.batch},
          {"trainable", r.trainable},
          {"backbone", r.backbone},
          {"total", r.total},
          {"trainable_pct", r.trainable_pct},
          {"flops_per_image", r.flops_per_image},
          {"train_step_s", r.train_step_s},
          {"infer_batch_s", r.infer_batch_s},
          {"train_peak_bytes", r.train_peak_bytes},
          {"infer_peak_bytes", r.infer_peak_bytes},
          {"peak_rss_mb", r.peak_rss_mb}};
}

int64_t classes_of(const nn::ViTConfig& c) { return c.num_classes > 0 ? c.num_classes : 10; }

void check_measure(int64_t batch, int steps) {
  if (batch <= 0) throw UsageError(fmt::format("--batch: must be positive (got {})", batch));
  if (steps <= 0) throw UsageError(fmt::format("--steps: must be positive (got {})", steps));
}

// ------------------------------------------------------------------ compare

struct CompareArgs {
  std::string config, weights, methods, csv, json_out;
  int64_t batch = 8;
  int steps = 3;
  MethodOptions opts;
};

int run_compare(const CompareArgs& a, const Common& common) {
  check_measure(a.batch, a.steps);
  const std::vector<std::string> methods = parse_methods(a.methods);
  for (const auto& m : methods) validate(m, a.opts);
  const nn::ViTConfig c = config_of(a.config, a.weights);
  std::vector<CostReport> reports;
  for (const auto& m : methods) {
    auto vit = build(c, a.weights, m, a.opts, classes_of(c), common.seed);
    CostReport r = measure_cost(*vit, a.batch, a.steps);
    r.method = m;
    r.prompts = uses_prompts(m) ? a.opts.prompts : 0;
    reports.push_back(r);
  }
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
  std::string config, weights, methods = "vpt-deep,cvpt", prompts = "1,10,50,100,200", data, out;
  int64_t batch = 8, epochs = 1, train_size = 256, val_size = 256;
  int steps = 3;
  double lr = 1e-3;
  MethodOptions opts;
};

struct SweepRow {
  CostReport cost;
  double top1 = NAN;
};

int run_sweep(const SweepArgs& a, const Common& common) {
  check_measure(a.batch, a.steps);
  if (a.epochs <= 0) throw UsageError(fmt::format("--epochs: must be positive (got {})", a.epochs));
  const std::vector<std::string> methods = parse_methods(a.methods);
  const std::vector<int64_t> counts = parse_counts(a.prompts, "--prompts", false);
  for (const auto& m : methods)
    if (!uses_prompts(m)) throw UsageError(fmt::format("--methods: {} has no prompts to sweep (use {})", m, prompt_methods()));
  MethodOptions o = a.opts;
  for (int64_t M : counts) {
    o.prompts = M;
    for (const auto& m : methods) validate(m, o);
  }
  const nn::ViTConfig c = config_of(a.config, a.weights);
  data::DatasetPtr train, val;
  int64_t classes = classes_of(c);
  if (!a.data.empty()) {
    train = data::open_dataset(a.data, data::Split::train, nn::effective_preprocess(c), c.in_chans, a.train_size, common.seed);
    val = data::open_dataset(a.data, data::Split::val, nn::effective_preprocess(c), c.in_chans, a.val_size, common.seed);
    classes = train->num_classes();
  }
  if (!a.out.empty()) make_dir(a.out);

  // M = 0 is the frozen backbone with a head alone (linear probe): where every curve starts.
  auto measure = [&](const std::string& method, int64_t M) {
    MethodOptions mo = a.opts;
    if (M > 0) mo.prompts = M;
    auto vit = build(c, a.weights, method, mo, classes, common.seed);
    SweepRow row;
    row.cost = measure_cost(*vit, a.batch, a.steps);
    row.cost.method = method;
    row.cost.prompts = M;
    if (train) {
      TrainConfig tc;
      tc.epochs = a.epochs;
      tc.batch = a.batch;
      tc.lr = a.lr;
      tc.seed = common.seed;
      tc.progress = false;
      train_model(*vit, train, nullptr, tc);
      row.top1 = evaluate(*vit, val, a.batch).top1;
    }
    return row;
  };
  const SweepRow base = measure("linear", 0);
  std::vector<SweepRow> rows;
  for (const auto& m : methods)
    for (int64_t M : counts) rows.push_back(measure(m, M));

  // Table (and CSV): the baseline, then each method by prompt count.
  std::vector<const SweepRow*> all = {&base};
  for (const auto& r : rows) all.push_back(&r);
  fmt::print("sweep: {} on {} ({}), batch {}\n", a.methods, a.config, a.weights.empty() ? "random init" : a.weights, a.batch);
  fmt::print("{:<12} {:>5} {:>11} {:>11} {:>9} {:>10} {:>10} {:>8}\n", "method", "M", "trainable", "MFLOPs/img", "step ms",
             "train MiB", "infer MiB", "top1");
  std::string csv = "method,prompts,trainable,flops_per_image,train_step_s,infer_batch_s,train_peak_bytes,infer_peak_bytes,peak_rss_mb,top1\n";
  nlohmann::json jrows = nlohmann::json::array();
  for (const SweepRow* r : all) {
    const CostReport& k = r->cost;
    const std::string top1 = std::isnan(r->top1) ? "-" : fmt::format("{:.2f}%", r->top1);
    fmt::print("{:<12} {:>5} {:>11} {:>11.3f} {:>9.2f} {:>10.2f} {:>10.2f} {:>8}\n", k.method, k.prompts, k.trainable,
               static_cast<double>(k.flops_per_image) / 1e6, k.train_step_s * 1e3,
               static_cast<double>(k.train_peak_bytes) / kMiB, static_cast<double>(k.infer_peak_bytes) / kMiB, top1);
    csv += fmt::format("{},{},{},{},{:.6g},{:.6g},{},{},{:.6g},{}\n", k.method, k.prompts, k.trainable, k.flops_per_image,
                       k.train_step_s, k.infer_batch_s, k.train_peak_bytes, k.infer_peak_bytes, k.peak_rss_mb,
                       std::isnan(r->top1) ? std::string() : fmt::format("{:.4f}", r->top1));
    nlohmann::json j = cost_json(k);
    j["top1"] = std::isnan(r->top1) ? nlohmann::json(nullptr) : nlohmann::json(r->top1);
    jrows.push_back(j);
  }

  if (!a.out.empty()) {
    write_text_atomic(in_dir(a.out, "sweep.csv"), csv);
    // One curve per method over M (starting at the M = 0 baseline).
    auto curves = [&](const std::string& title, const std::string& ylabel, auto value, const std::string& suffix) {
      std::vector<data::PlotSeries> s;
      for (const auto& m : methods) {
        data::PlotSeries ps;
        ps.name = m + suffix;
        ps.x.push_back(0);
        ps.y.push_back(value(base));
        for (const auto& r : rows)
          if (r.cost.method == m) {
            ps.x.push_back(static_cast<double>(r.cost.prompts));
            ps.y.push_back(value(r));
          }
        s.push_back(ps);
      }
      data::LinePlot p;
      p.title = title;
      p.xlabel = "prompts M";
      p.ylabel = ylabel;
      p.series = s;
      return p;
    };
    // GFLOPs for real models, MFLOPs for the small ones (readable tick numbers either way).
    int64_t max_flops = base.cost.flops_per_image;
    for (const auto& r : rows) max_flops = std::max(max_flops, r.cost.flops_per_image);
    const bool giga = max_flops >= 1000000000;
    const double unit = giga ? 1e9 : 1e6;
    data::save_line_plot(curves("FLOPs vs prompts", giga ? "GFLOPs/image" : "MFLOPs/image",
                                [unit](const SweepRow& r) { return static_cast<double>(r.cost.flops_per_image) / unit; }, ""),
                         in_dir(a.out, "flops.png"));
    data::LinePlot mem = curves("memory vs prompts", "peak MiB",
                                [](const SweepRow& r) { return static_cast<double>(r.cost.train_peak_bytes) / kMiB; }, " train");
    data::LinePlot inf = curves("", "", [](const SweepRow& r) { return static_cast<double>(r.cost.infer_peak_bytes) / kMiB; }, " test");
    mem.series.insert(mem.series.end(), inf.series.begin(), inf.series.end());
    data::save_line_plot(mem, in_dir(a.out, "memory.png"));
    data::save_line_plot(curves("training step vs prompts", "ms/step",
                                [](const SweepRow& r) { return r.cost.train_step_s * 1e3; }, ""),
                         in_dir(a.out, "step_time.png"));
    if (train)
      data::save_line_plot(curves("accuracy vs prompts", "top1 %", [](const SweepRow& r) { return r.top1; }, ""),
                           in_dir(a.out, "accuracy.png"));
    fmt::print("wrote {}/sweep.csv and {}/{{flops,memory,step_time{}}}.png\n", a.out, a.out, train ? ",accuracy" : "");
  }
  if (common.json) fmt::print("{}\n", nlohmann::json({{"config", a.config}, {"batch", a.batch}, {"rows", jrows}}).dump());
  return 0;
}

// ------------------------------------------------------------------ attention

struct AttentionArgs {
  std::string config, weights, prompts = "1,10,50", data, out;
  int64_t batch = 16, epochs = 0, train_size = 256;
  double lr = 1e-3;
};

// Per layer, the mean (over images and heads) of the attention probability mass that the CLS
// query (row 0) puts on the prompt keys 1..M. maps[l]: [B, H, T, T].
std::vector<double> cls_prompt_share(const nn::VisionTransformer& vit, int64_t M) {
  std::vector<double> share;
  for (const auto& blk : vit.block_list) {
    const Tensor& p = blk->attn->last_attention;
    const int64_t B = p.size(0), H = p.size(1), T = p.size(2);
    const std::vector<double> a = p.to(DType::f64).to_vector<double>();
    double sum = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h) {
        const double* row0 = a.data() + ((b * H + h) * T) * T;  // the CLS query's row
        for (int64_t j = 1; j <= M; ++j) sum += row0[j];
      }
    share.push_back(sum / static_cast<double>(B * H));
  }
  return share;
}

int run_attention(const AttentionArgs& a, const Common& common) {
  if (a.batch <= 0) throw UsageError(fmt::format("--batch: must be positive (got {})", a.batch));
  if (a.epochs < 0) throw UsageError(fmt::format("--epochs: must be >= 0 (got {})", a.epochs));
  if (a.epochs > 0 && a.data.empty()) throw UsageError("--epochs needs --data (the prompts are trained on it)");
  std::vector<int64_t> counts = parse_counts(a.prompts, "--prompts", true);
  if (counts.front() != 0) counts.insert(counts.begin(), 0);  // M = 0: the plain model, share 0
  const nn::ViTConfig c = config_of(a.config, a.weights);
  for (int64_t M : counts)
    if (M > 0) {
      MethodOptions o;
      o.prompts = M;
      validate("vpt-deep", o);
    }

  // The probe batch: validation images when --data is given, else seeded noise.
  data::DatasetPtr train, val;
  int64_t classes = classes_of(c);
  Tensor images;
  if (!a.data.empty()) {
    val = data::open_dataset(a.data, data::Split::val, nn::effective_preprocess(c), c.in_chans, a.batch, common.seed);
    if (a.epochs > 0) train = data::open_dataset(a.data, data::Split::train, nn::effective_preprocess(c), c.in_chans, a.train_size, common.seed);
    classes = val->num_classes();
    std::vector<Tensor> xs;
    const data::Normalization norm = normalization_for(c);
    for (int64_t i = 0; i < std::min(a.batch, val->size()); ++i) xs.push_back(data::to_tensor(val->load(i), norm));
    images = stack(xs, 0);
  } else {
    Generator g(common.seed + 7);
    images = randn({a.batch, c.in_chans, c.image_size, c.image_size}, g);
  }

  std::vector<std::vector<double>> share(static_cast<size_t>(c.depth));  // [layer][count]
  for (int64_t M : counts) {
    MethodOptions o;
    o.prompts = std::max<int64_t>(M, 1);
    auto vit = build(c, a.weights, M > 0 ? "vpt-deep" : "linear", o, classes, common.seed);
    if (train) {
      TrainConfig tc;
      tc.epochs = a.epochs;
      tc.batch = std::min<int64_t>(a.batch, train->size());
      tc.lr = a.lr;
      tc.seed = common.seed;
      tc.progress = false;
      train_model(*vit, train, nullptr, tc);
    }
    for (auto& blk : vit->block_list) blk->attn->keep_attention = true;
    NoGradGuard ng;
    vit->eval();
    vit->forward(images);
    const std::vector<double> s = cls_prompt_share(*vit, M);
    for (size_t l = 0; l < s.size(); ++l) share[l].push_back(s[l]);
  }

  fmt::print("attention: share of the CLS token's attention on the VPT-deep prompts ({}, {} images{})\n",
             a.weights, images.size(0), train ? fmt::format(", prompts trained {} epochs", a.epochs) : ", prompts at init");
  std::string head = fmt::format("{:<7}", "layer");
  for (int64_t M : counts) head += fmt::format(" {:>8}", fmt::format("M={}", M));
  fmt::print("{}\n", head);
  std::string csv = "layer,prompts,share\n";
  for (size_t l = 0; l < share.size(); ++l) {
    std::string line = fmt::format("{:<7}", l);
    for (size_t j = 0; j < counts.size(); ++j) {
      line += fmt::format(" {:>8.4f}", share[l][j]);
      csv += fmt::format("{},{},{:.6g}\n", l, counts[j], share[l][j]);
    }
    fmt::print("{}\n", line);
  }
  if (!a.out.empty()) {
    make_dir(a.out);
    write_text_atomic(in_dir(a.out, "attention.csv"), csv);
    data::Heatmap h;
    h.title = "CLS attention on prompts";
    h.xlabel = "prompts M";
    h.ylabel = "layer";
    for (size_t l = 0; l < share.size(); ++l) h.row_labels.push_back(std::to_string(l));
    for (int64_t M : counts) h.col_labels.push_back(std::to_string(M));
    h.values = share;
    data::save_heatmap(h, in_dir(a.out, "attention.png"));
    fmt::print("wrote {}/attention.csv and {}/attention.png\n", a.out, a.out);
  }
  if (common.json) {
    nlohmann::json j = {{"config", a.config}, {"prompts", counts}, {"share", share}};
    fmt::print("{}\n", j.dump());
  }
  return 0;
}


}  // namespace

void add_compare_commands(CLI::App& app, Common& common, Runner& run) {
  static CompareArgs ca;
  auto* cmp = app.add_subcommand("compare", "cost of every method side by side: parameters, FLOPs, time, memory");
  cmp->add_option("--config", ca.config, "model config: preset name or JSON file (default: inferred from --weights)");
  cmp->add_option("--weights", ca.weights, "base weights (safetensors; default: seeded random init)");
  cmp->add_option("--methods", ca.methods, "comma-separated methods (default: all ViT methods)");
  cmp->add_option("--batch", ca.batch, "images per measured batch")->capture_default_str();
  cmp->add_option("--steps", ca.steps, "timed steps (median)")->capture_default_str();
  cmp->add_option("--csv", ca.csv, "also write the table as CSV");
  cmp->add_option("--json-out", ca.json_out, "also write the table as JSON");
  add_method_options(cmp, ca.opts);
  add_common_options(cmp, common);
  cmp->callback([&run, &common] { run = [&common] { return run_compare(ca, common); }; });

  static SweepArgs sa;
  auto* sw = app.add_subcommand("sweep", "cost (and accuracy) against the number of prompts, with PNG plots");
  sw->add_option("--config", sa.config, "model config: preset name or JSON file (default: inferred from --weights)");
  sw->add_option("--weights", sa.weights, "base weights (safetensors; default: seeded random init)");
  sw->add_option("--methods", sa.methods, "prompt methods to sweep")->capture_default_str();
  sw->add_option("--prompts", sa.prompts, "prompt counts M")->capture_default_str();
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
  sw->callback([&run, &common] { run = [&common] { return run_sweep(sa, common); }; });

  static AttentionArgs aa;
  auto* at = app.add_subcommand("attention", "share of the CLS token's attention on VPT-deep's prompts, per layer and M");
  at->add_option("--config", aa.config, "model config: preset name or JSON file (default: inferred from --weights)");
  at->add_option("--weights", aa.weights, "base weights (safetensors)")->required();
  at->add_option("--prompts", aa.prompts, "prompt counts M (M = 0, the plain model, is always included)")->capture_default_str();
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
