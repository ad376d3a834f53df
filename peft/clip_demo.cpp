// run_clip_demo and its table, JSON, CSV and plot (see clip_demo.h).
#include "peft/clip_demo.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "data/loader.h"
#include "data/plot.h"
#include "data/procedural.h"
#include "nn/checkpoint.h"
#include "nn/clip.h"
#include "peft/clip_methods.h"
#include "peft/clip_pretrain.h"
#include "peft/feature_cache.h"

namespace peft {

namespace fs = std::filesystem;

namespace {

// The reference row: the zero-shot classifier from the prompts alone (peft/zeroshot.h).
constexpr const char* kZeroShot = "zeroshot";
// The classic few-shot baseline, not a PEFT method: logits = W norm(f) + b on cached features.
constexpr const char* kLinearProbe = "linear-probe";

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

class LinearProbeHead : public ClipHead {
 public:
  LinearProbeHead(nn::CLIP& clip, int64_t K) : ClipHead(clip, kLinearProbe) {
    num_classes = K;
    auto holder = std::make_shared<Module>();
    weight = holder->register_parameter("weight", zeros({K, clip.cfg.embed_dim}));
    bias = holder->register_parameter("bias", zeros({K}));
    register_module("head", holder);
  }
  Tensor forward(const Tensor& f) override { return linear(mul(l2_normalize(f), 10.0), weight, bias); }
  Tensor weight, bias;
};

// What every run reads: the pretrained CLIP, the class prompts and the evaluation features.
struct Context {
  const ClipDemoConfig& c;
  nn::CLIP& clip;
  std::map<std::string, Tensor> clip_state;  // for the fresh copies of the methods that change a tower
  Tensor tokens;                             // the class prompts [K, T]
  int64_t K = 0;
  FeatureSet test, val, test_images;
  double text_norm = 0;  // the mean norm of the raw text features u
  Generator gen;         // every head's init, in run order
};

// One shot count: the few-shot images, their features and the training schedule.
struct Shot {
  std::shared_ptr<data::Dataset> few;
  FeatureSet train, aug;  // aug: augmented views, the cache of the methods that keep one
  Tensor keys;
  ClipTrainConfig train_config;
};

double run_linear_probe(Context& x, const Shot& s, int64_t& trainable) {
  auto head = std::make_shared<LinearProbeHead>(x.clip, x.K);
  ClipTrainConfig c = s.train_config;
  c.lr = 1e-2;
  c.weight_decay = 1e-3;
  train_clip_head(*head, s.train.features, s.train.labels, c);
  trainable = head->num_parameters(true);
  return clip_head_accuracy(*head, x.test.features, x.test.labels);
}

// A method that changes the image tower (takes_images) trains and tests on the images (no feature
// cache), on its own copy of the pretrained CLIP.
double run_on_images(Context& x, const std::string& name, const ClipMethodOptions& opt, const Shot& s,
                     int64_t& trainable) {
  auto own = std::make_unique<nn::CLIP>(x.clip.cfg, x.c.seed);
  own->load_state_dict(x.clip_state);
  own->eval();
  auto head = make_clip_head(*own, name, opt, x.tokens, x.gen);
  ClipTrainConfig c = s.train_config;
  c.lr = clip_method(name).demo_lr;
  const FeatureSet imgs = load_images(*own, *s.few);
  train_clip_head(*head, imgs.features, imgs.labels, c);
  trainable = head->num_parameters(true);
  return clip_head_accuracy(*head, x.test_images.features, x.test_images.labels);
}

// One method at one shot count: its head trained on the shot's images, top-1 on the test set.
double run_method(Context& x, const std::string& name, const Shot& s, int64_t& trainable) {
  if (name == kLinearProbe) return run_linear_probe(x, s, trainable);
  const ClipMethodDescriptor& d = clip_method(name);
  ClipMethodOptions opt;
  if (d.demo_options) d.demo_options(opt, x.clip.cfg);
  if (d.takes_images(resolve_clip_options(name, opt))) return run_on_images(x, name, opt, s, trainable);
  Tensor keys, labels;
  if (d.needs_cache) {
    keys = s.keys;
    labels = s.aug.labels;
    // The official protocol: grid-search alpha and beta on the validation features.
    double best = -1;
    const ClipMethodOptions base = opt;
    for (double a : {0.5, 1.0, 2.0, 4.0, 8.0})
      for (double b : {1.0, 3.0, 5.5, 8.0}) {
        ClipMethodOptions t = base;
        t.alpha = a;
        t.beta = b;
        auto h = make_clip_head(x.clip, name, t, x.tokens, x.gen, keys, labels);
        const double v = clip_head_accuracy(*h, x.val.features, x.val.labels);
        if (v > best) best = v, opt = t;
      }
  }
  auto head = make_clip_head(x.clip, name, opt, x.tokens, x.gen, keys, labels);
  ClipTrainConfig c = s.train_config;
  c.lr = d.demo_lr * (d.demo_lr_per_text_norm ? x.text_norm : 1.0);
  train_clip_head(*head, s.train.features, s.train.labels, c);
  trainable = head->num_parameters(true);
  return clip_head_accuracy(*head, x.test.features, x.test.labels);
}

Shot make_shot(Context& x, FeatureCache& cache, const std::shared_ptr<data::Dataset>& pool, int64_t k) {
  Shot s;
  s.few = std::make_shared<data::Subset>(pool, data::few_shot_indices(*pool, k, x.c.seed + static_cast<uint64_t>(k)));
  s.train = cache.get(x.clip, *s.few);
  EncodeOptions views;
  views.views = x.c.quick ? 2 : 10;
  views.seed = x.c.seed;
  s.aug = cache.get(x.clip, *s.few, views);
  s.keys = tip_cache_keys(s.aug.features);
  s.train_config.seed = x.c.seed;
  s.train_config.batch = 32;
  // About 400 steps, 20 to 200 epochs.
  s.train_config.epochs =
      x.c.quick ? 2 : std::clamp<int64_t>(400 / std::max<int64_t>(1, (x.K * k + 31) / 32), 20, 200);
  return s;
}

// 1. clip-micro, pretrained contrastively or loaded; saved with its config under c.out.
void pretrain(const ClipDemoConfig& c, nn::CLIP& clip, ClipDemoReport& r,
              const std::function<void(const std::string&)>& say) {
  say(fmt::format("[1/3] contrastive pretraining of clip-micro ({} parameters) on captioned procedural:mixed",
                  clip.num_parameters()));
  const auto t0 = std::chrono::steady_clock::now();
  if (c.weights.empty()) {
    ClipPretrainConfig pc;
    pc.images = c.quick ? 256 : c.pretrain_size;
    pc.epochs = c.quick ? 1 : c.pretrain_epochs;
    pc.seed = c.seed;
    r.pretrain_loss = pretrain_clip(clip, pc, say).last_loss();
  } else {
    nn::load_weights(clip, c.weights);
    clip.eval();
    say(fmt::format("      loaded {} (no pretraining)", c.weights));
  }
  r.pretrain_time_s = seconds_since(t0);
  nn::save_weights(clip, (fs::path(c.out) / "clip.safetensors").string());
  write_text_atomic((fs::path(c.out) / "clip.json").string(), nn::clip_config_to_json(clip.cfg) + "\n");
}

// 2. The class prompts ("a photo of a {class}.", saved as prompts.txt) and their tokens.
Tensor class_prompt_tokens(const ClipDemoConfig& c, const nn::CLIP& clip, const data::ProceduralTask& task) {
  std::vector<std::string> prompts;
  std::string text;
  for (const std::string& name : task.classes) {
    prompts.push_back("a photo of a " + name + ".");
    text += prompts.back() + "\n";
  }
  write_text_atomic((fs::path(c.out) / "prompts.txt").string(), text);
  return nn::TextTokenizer(clip.cfg.text, "").tokenize(prompts);
}

// The rows: c.methods (checked before any training), or the reference, the baseline, then every
// other method of the registry.
std::vector<std::string> demo_methods(const ClipDemoConfig& c) {
  for (const std::string& m : c.methods)
    if (m != kLinearProbe) clip_method(m);  // ValueError naming an unknown one
  if (!c.methods.empty()) return c.methods;
  std::vector<std::string> names = {kZeroShot, kLinearProbe};
  for (const ClipMethodDescriptor& d : clip_method_registry())
    if (d.name != kZeroShot) names.push_back(d.name);
  return names;
}

}  // namespace

ClipDemoReport run_clip_demo(const ClipDemoConfig& c, const std::function<void(const std::string&)>& say_fn) {
  auto say = [&](const std::string& s) {
    if (say_fn) say_fn(s);
  };
  ClipDemoReport r;
  r.shots = c.shots;
  if (r.shots.empty()) throw ValueError("clip-demo: no shot counts to run");
  for (const std::string& name : demo_methods(c)) r.rows.push_back({name, 0, {}, 0});
  fs::create_directories(c.out);
  nn::CLIP clip(nn::load_clip_config("clip-micro"), c.seed);
  pretrain(c, clip, r, say);

  Context x{c, clip, {}, class_prompt_tokens(c, clip, data::procedural_task(c.target)), 0, {}, {}, {}, 0, Generator(c.seed)};
  x.K = x.tokens.size(0);
  const int64_t S = clip.cfg.vision.image_size, max_shots = *std::max_element(r.shots.begin(), r.shots.end());
  auto pool = std::make_shared<data::ProceduralDataset>(c.target, x.K * max_shots * 2, S, c.seed, data::Split::train);
  auto valset = std::make_shared<data::ProceduralDataset>(c.target, c.quick ? 60 : 300, S, c.seed, data::Split::val);
  auto testset = std::make_shared<data::ProceduralDataset>(c.target, c.quick ? 60 : 1200, S, c.seed, data::Split::test);
  FeatureCache cache((fs::path(c.out) / "feature_cache").string());
  x.test = cache.get(clip, *testset);
  x.val = cache.get(clip, *valset);
  x.test_images = load_images(clip, *testset);
  for (auto& [n, t] : clip.state_dict()) x.clip_state[n] = t;
  auto zs = make_clip_head(clip, kZeroShot, ClipMethodOptions(), x.tokens, x.gen);
  r.zeroshot_top1 = clip_head_accuracy(*zs, x.test.features, x.test.labels);
  {
    NoGradGuard ng;
    Tensor u = clip.encode_text(x.tokens);
    x.text_norm = sum(sqrt(sum(mul(u, u), {1}))).item() / static_cast<double>(u.size(0));
  }
  r.num_classes = x.K;
  r.test_images = testset->size();
  say(fmt::format("[2/3] zero-shot on procedural:{} ({} classes, {} test images): top1 {:.1f}%", c.target, x.K,
                  r.test_images, r.zeroshot_top1));

  // 3. Few-shot adaptation.
  say(fmt::format("[3/3] few-shot adaptation, shots {}", fmt::join(r.shots, ",")));
  const auto t_few = std::chrono::steady_clock::now();
  for (int64_t k : r.shots) {
    const Shot s = make_shot(x, cache, pool, k);
    std::string line = fmt::format("      {:>2} shots:", k);
    for (ClipDemoRow& row : r.rows) {
      const auto t0 = std::chrono::steady_clock::now();
      row.top1.push_back(run_method(x, row.method, s, row.trainable));
      row.time_s += seconds_since(t0);
      line += fmt::format(" {} {:.1f}", row.method, row.top1.back());
    }
    say(line);
  }
  r.fewshot_time_s = seconds_since(t_few);
  return r;
}

std::string clip_demo_table(const ClipDemoConfig& c, const ClipDemoReport& r) {
  std::string s = fmt::format("clip-micro, pretrained {:.0f}s (final contrastive loss {:.3f}); target procedural:{} ({} "
                              "classes), top1 % on {} test images\n",
                              r.pretrain_time_s, r.pretrain_loss, c.target, r.num_classes, r.test_images);
  s += fmt::format("{:<14} {:>9}", "method", "trainable");
  for (int64_t k : r.shots) s += fmt::format(" {:>6}", fmt::format("{}-shot", k));
  s += fmt::format(" {:>8}\n", "time");
  for (const ClipDemoRow& row : r.rows) {
    s += fmt::format("{:<14} {:>9}", row.method, row.trainable);
    for (double a : row.top1) s += fmt::format(" {:>6.1f}", a);
    s += fmt::format(" {:>7.1f}s\n", row.time_s);
  }
  return s;
}

std::string clip_demo_json(const ClipDemoReport& r) {
  nlohmann::json js = nlohmann::json::array();
  for (const ClipDemoRow& row : r.rows) {
    nlohmann::json top1 = nlohmann::json::object();
    for (size_t i = 0; i < r.shots.size(); ++i) top1[std::to_string(r.shots[i])] = row.top1[i];
    js.push_back({{"method", row.method}, {"trainable_params", row.trainable}, {"top1", top1}, {"time_s", row.time_s}});
  }
  return js.dump(2);
}

std::string clip_demo_csv(const ClipDemoReport& r) {
  std::string csv = "method,trainable";
  for (int64_t k : r.shots) csv += fmt::format(",shots_{}", k);
  csv += ",time_s\n";
  for (const ClipDemoRow& row : r.rows) {
    csv += fmt::format("{},{}", row.method, row.trainable);
    for (double a : row.top1) csv += fmt::format(",{:.2f}", a);
    csv += fmt::format(",{:.2f}\n", row.time_s);
  }
  return csv;
}

void save_clip_demo_plot(const ClipDemoReport& r, const std::string& path) {
  data::LinePlot p;
  p.title = "top-1 vs shots per class";
  p.xlabel = "log2(shots)";
  p.ylabel = "top-1 %";
  for (const ClipDemoRow& row : r.rows) {
    data::PlotSeries sr;
    sr.name = row.method;
    for (size_t i = 0; i < r.shots.size(); ++i) {
      sr.x.push_back(std::log2(static_cast<double>(r.shots[i])));
      sr.y.push_back(row.top1[i]);
    }
    p.series.push_back(std::move(sr));
  }
  data::save_line_plot(p, path);
}

}  // namespace peft
