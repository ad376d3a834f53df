// `peft clip-demo`: the embedded CLIP experiment, no downloads. A tiny CLIP (clip-micro) is
// trained contrastively (symmetric InfoNCE, learned temperature) on captioned procedural images;
// then it classifies a target task zero-shot from prompts, and every CLIP method adapts it with
// 1/2/4/8/16 shots per class. Prints one table and writes demo.json, demo.csv and a PNG plot of
// accuracy against shots.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "apps/peft/commands.h"
#include "data/plot.h"
#include "autograd/ops.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "data/image.h"
#include "data/loader.h"
#include "data/procedural.h"
#include "data/transforms.h"
#include "nn/checkpoint.h"
#include "nn/clip.h"
#include "nn/optim/optimizer.h"
#include "peft/clip_methods.h"
#include "peft/feature_cache.h"

namespace peft::app {

namespace {

struct ClipDemoOptions {
  std::string out = "clip_demo_out";
  std::string target = "colors";
  std::string shots = "1,2,4,8,16";
  int64_t pretrain_size = 12000, pretrain_epochs = 6;
  std::string weights;  // skip pretraining: start from these clip-micro weights (a previous run's clip.safetensors)
  bool quick = false;  // reduced sizes for the smoke test
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Symmetric InfoNCE over a batch of (image, caption) pairs with the learned temperature.
double pretrain_clip(nn::CLIP& clip, const ClipDemoOptions& o, uint64_t seed) {
  const int64_t n = o.quick ? 256 : o.pretrain_size, epochs = o.quick ? 1 : o.pretrain_epochs, B = 128;
  auto ds = std::make_shared<data::ProceduralDataset>("mixed", n, clip.cfg.vision.image_size, seed, data::Split::train);
  nn::TextTokenizer tok(clip.cfg.text, "");
  std::vector<std::string> captions;
  for (int64_t i = 0; i < n; ++i) captions.push_back(ds->caption(i));
  Tensor all_tokens = tok.tokenize(captions);  // [n, T]
  data::LoaderOptions lo;
  lo.batch_size = B;
  lo.drop_last = true;
  lo.seed = seed;
  lo.transform = data::make_transform(data::parse_augment("none"), data::clip_normalization());
  data::DataLoader loader(ds, lo);
  clip.train();
  auto specs = nn::param_groups(clip.named_parameters(), 0.1);
  nn::AdamW opt(specs, 1e-3, 0.9, 0.98, 1e-6);  // CLIP's betas / eps
  const int64_t total = loader.num_batches() * epochs, warm = std::min<int64_t>(50, total / 5);
  int64_t step = 0;
  double last = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t e = 0; e < epochs; ++e) {
    loader.start_epoch(e);
    data::Batch b;
    double sum = 0;
    int64_t nb = 0;
    while (loader.next(b)) {
      opt.set_lr(nn::warmup_cosine_lr(step, warm, total, 1e-3));
      Tensor f = l2_normalize(clip.encode_image(b.images));                                   // [B, E]
      Tensor u = l2_normalize(clip.encode_text(index_select(all_tokens, 0, from_vector_i64(b.indices, {B}))));
      Tensor logits = mul(matmul(f, transpose(u, 0, 1)), exp(clip.logit_scale));              // [B, B]
      Tensor target = arange(B).to(DType::i64);
      Tensor loss = mul(add(cross_entropy(logits, target), cross_entropy(transpose(logits, 0, 1), target)), 0.5);
      opt.zero_grad();
      backward(loss);
      opt.step();
      {  // OpenAI clamps the multiplier at 100
        NoGradGuard ng;
        if (clip.logit_scale.item() > std::log(100.0)) clip.logit_scale.fill_(std::log(100.0));
      }
      sum += loss.item();
      ++nb;
      ++step;
    }
    last = nb ? sum / static_cast<double>(nb) : 0.0;
    fmt::print("      epoch {}/{}  contrastive loss {:.3f}  temperature x{:.1f}  ({:.0f}s)\n", e + 1, epochs, last,
               clip.logit_scale_exp(), seconds_since(t0));
  }
  clip.eval();
  return last;
}

// Linear probe on normalised cached features (the classic few-shot baseline): logits = W norm(f) + b.
class LinearProbeHead : public ClipHead {
 public:
  LinearProbeHead(nn::CLIP& clip, int64_t K) : ClipHead(clip, "linear-probe") {
    num_classes = K;
    auto holder = std::make_shared<Module>();
    weight = holder->register_parameter("weight", zeros({K, clip.cfg.embed_dim}));
    bias = holder->register_parameter("bias", zeros({K}));
    register_module("head", holder);
  }
  Tensor forward(const Tensor& f) override { return linear(mul(l2_normalize(f), 10.0), weight, bias); }
  Tensor weight, bias;
};

// The plot (data/plot.h, the charts every report uses): top-1 against shots per class, one series
// per method in table order, zero-shot flat.
void save_plot(const std::vector<std::string>& methods, const std::vector<std::vector<double>>& rows,
               const std::vector<int64_t>& shots, const std::string& path) {
  data::LinePlot p;
  p.title = "top-1 vs shots per class";
  p.xlabel = "log2(shots)";
  p.ylabel = "top-1 %";
  for (size_t m = 0; m < rows.size(); ++m) {
    data::PlotSeries sr;
    sr.name = methods[m];
    for (size_t s = 0; s < shots.size(); ++s) {
      sr.x.push_back(std::log2(static_cast<double>(shots[s])));
      sr.y.push_back(rows[m][s]);
    }
    p.series.push_back(std::move(sr));
  }
  data::save_line_plot(p, path);
}

}  // namespace

void add_clip_demo_command(CLI::App& app, Common& common, Runner& run) {
  static ClipDemoOptions o;
  auto* cmd = app.add_subcommand("clip-demo", "built-in CLIP experiment: contrastive pretraining, zero-shot, few-shot methods");
  cmd->add_option("--out", o.out, "output folder")->capture_default_str();
  cmd->add_option("--target", o.target, "procedural target task (peft tasks)")->capture_default_str();
  cmd->add_option("--shots", o.shots, "comma-separated shots per class")->capture_default_str();
  cmd->add_option("--pretrain-size", o.pretrain_size, "captioned images for contrastive pretraining")->capture_default_str();
  cmd->add_option("--pretrain-epochs", o.pretrain_epochs, "contrastive pretraining epochs")->capture_default_str();
  cmd->add_option("--weights", o.weights, "skip pretraining and load these clip-micro weights (OUT/clip.safetensors)");
  cmd->add_flag("--quick", o.quick, "tiny sizes (smoke test)");
  add_common_options(cmd, common);
  cmd->callback([&run, &common] {
    run = [&common] {
      namespace fs = std::filesystem;
      const auto t_all = std::chrono::steady_clock::now();
      std::vector<int64_t> shots;
      {
        std::stringstream ss(o.shots);
        std::string item;
        while (std::getline(ss, item, ',')) {
          try {
            shots.push_back(std::stoll(item));
          } catch (const std::exception&) {
            throw UsageError(fmt::format("--shots: '{}' is not a number", item));
          }
          if (shots.back() <= 0) throw UsageError(fmt::format("--shots: {} must be positive", shots.back()));
        }
        if (shots.empty()) throw UsageError("--shots: empty list");
      }
      if (o.quick) shots = {1, 2};
      fs::create_directories(o.out);
      const uint64_t seed = common.seed;
      nn::CLIPConfig cfg = nn::load_clip_config("clip-micro");
      nn::CLIP clip(cfg, seed);
      fmt::print("[1/3] contrastive pretraining of clip-micro ({} parameters) on captioned procedural:mixed\n",
                 clip.num_parameters());
      const auto t_pre = std::chrono::steady_clock::now();
      double pre_loss = 0;
      if (o.weights.empty()) {
        pre_loss = pretrain_clip(clip, o, seed);
      } else {
        nn::load_weights(clip, o.weights);
        clip.eval();
        fmt::print("      loaded {} (no pretraining)\n", o.weights);
      }
      const double pre_time = seconds_since(t_pre);
      nn::save_weights(clip, (fs::path(o.out) / "clip.safetensors").string());
      write_text_atomic((fs::path(o.out) / "clip.json").string(), nn::clip_config_to_json(cfg) + "\n");

      // 2. Zero-shot on the target task with one prompt per class.
      const data::ProceduralTask& task = data::procedural_task(o.target);
      std::vector<std::string> prompts;
      for (const std::string& c : task.classes) prompts.push_back("a photo of a " + c + ".");
      write_text_atomic((fs::path(o.out) / "prompts.txt").string(), [&] {
        std::string s;
        for (auto& p : prompts) s += p + "\n";
        return s;
      }());
      nn::TextTokenizer tok(cfg.text, "");
      Tensor tokens = tok.tokenize(prompts);
      const int64_t K = static_cast<int64_t>(prompts.size()), S = cfg.vision.image_size;
      const int64_t max_shots = *std::max_element(shots.begin(), shots.end());
      auto pool = std::make_shared<data::ProceduralDataset>(o.target, K * max_shots * 2, S, seed, data::Split::train);
      auto valset = std::make_shared<data::ProceduralDataset>(o.target, o.quick ? 60 : 300, S, seed, data::Split::val);
      auto testset = std::make_shared<data::ProceduralDataset>(o.target, o.quick ? 60 : 1200, S, seed, data::Split::test);
      FeatureCache cache((fs::path(o.out) / "feature_cache").string());
      FeatureSet test = cache.get(clip, *testset), val = cache.get(clip, *valset);
      const FeatureSet test_images = load_images(clip, *testset);  // for the methods that change the image tower
      std::map<std::string, Tensor> clip_state;                    // their fresh copies of the pretrained CLIP
      for (auto& [n, t] : clip.state_dict()) clip_state[n] = t;
      Generator gen(seed);
      ClipMethodOptions mo;
      auto zs = make_clip_head(clip, "zeroshot", mo, tokens, gen);
      const double zs_acc = clip_head_accuracy(*zs, test.features, test.labels);
      double taskres_lr_scale = 0;
      {
        NoGradGuard ng;
        Tensor u = clip.encode_text(tokens);
        taskres_lr_scale = sum(sqrt(sum(mul(u, u), {1}))).item() / static_cast<double>(u.size(0));
      }
      fmt::print("[2/3] zero-shot on procedural:{} ({} classes, {} test images): top1 {:.1f}%\n", o.target, K,
                 testset->size(), zs_acc);

      // 3. Few-shot adaptation.
      const std::vector<std::string> methods = {"zeroshot",     "linear-probe", "coop",   "clip-adapter",
                                                "tip-adapter", "tip-adapter-f", "taskres",
                                                "cocoop",      "kgcoop",
                                                "clip-lora",   "maple"};
      std::vector<std::vector<double>> acc(methods.size(), std::vector<double>(shots.size(), 0.0));
      std::vector<double> time_s(methods.size(), 0.0);
      std::vector<int64_t> trainable(methods.size(), 0);
      fmt::print("[3/3] few-shot adaptation, shots {}\n", fmt::join(shots, ","));
      const auto t_few = std::chrono::steady_clock::now();
      for (size_t si = 0; si < shots.size(); ++si) {
        const int64_t k = shots[si];
        auto few = std::make_shared<data::Subset>(pool, data::few_shot_indices(*pool, k, seed + static_cast<uint64_t>(k)));
        FeatureSet train = cache.get(clip, *few);
        EncodeOptions views;
        views.views = o.quick ? 2 : 10;
        views.seed = seed;
        FeatureSet aug = cache.get(clip, *few, views);
        Tensor keys = tip_cache_keys(aug.features);
        ClipTrainConfig tc;
        tc.seed = seed;
        tc.batch = 32;
        tc.epochs = o.quick ? 2 : std::clamp<int64_t>(400 / std::max<int64_t>(1, (K * k + 31) / 32), 20, 200);
        for (size_t m = 0; m < methods.size(); ++m) {
          const std::string& name = methods[m];
          const auto t0 = std::chrono::steady_clock::now();
          std::unique_ptr<nn::CLIP> own;  // a fresh copy of the pretrained CLIP for a method that changes a tower
          std::shared_ptr<ClipHead> head;
          ClipMethodOptions opt;
          ClipTrainConfig c = tc;
          const bool images_in = name != "linear-probe" && clip_method(name).takes_images(resolve_clip_options(name, opt));
          if (images_in) {
            // clip-lora, maple: the image tower changes, so they train and test on the images (no
            // feature cache), each on its own copy of the pretrained CLIP.
            own = std::make_unique<nn::CLIP>(cfg, seed);
            own->load_state_dict(clip_state);
            own->eval();
            if (name == "maple") opt.depth = std::min(cfg.text.layers, cfg.vision.depth);  // default 9 > clip-micro's 2
            head = make_clip_head(*own, name, opt, tokens, gen);
            c.lr = 1e-3;
            const FeatureSet imgs = load_images(*own, *few);
            train_clip_head(*head, imgs.features, imgs.labels, c);
            acc[m][si] = clip_head_accuracy(*head, test_images.features, test_images.labels);
          } else if (name == "linear-probe") {
            head = std::make_shared<LinearProbeHead>(clip, K);
            c.lr = 1e-2;
            c.weight_decay = 1e-3;
          } else if (name == "tip-adapter" || name == "tip-adapter-f") {
            // Official protocol: grid-search alpha and beta on the validation features.
            double best = -1;
            for (double a : {0.5, 1.0, 2.0, 4.0, 8.0})
              for (double b : {1.0, 3.0, 5.5, 8.0}) {
                ClipMethodOptions t;
                t.alpha = a;
                t.beta = b;
                auto h = make_clip_head(clip, "tip-adapter", t, tokens, gen, keys, aug.labels);
                const double v = clip_head_accuracy(*h, val.features, val.labels);
                if (v > best) best = v, opt = t;
              }
            head = make_clip_head(clip, name, opt, tokens, gen, keys, aug.labels);
            c.lr = 1e-3;
          } else {
            if (name == "coop") opt.prompts = 4;  // "a photo of a" -> 4 learned context vectors
            head = make_clip_head(clip, name, opt, tokens, gen);
            c.lr = name == "coop" || name == "cocoop" || name == "kgcoop" ? 2e-3 : 1e-3;  // the prompt learners: CoOp's
            // TaskRes's base is the raw text feature: its scale sets how far a residual step moves
            // the classifier, so the step follows the mean norm of u (official: lr 2e-3 on RN50's u).
            if (name == "taskres") c.lr = 2e-3 * taskres_lr_scale;
          }
          if (!images_in) {
            train_clip_head(*head, train.features, train.labels, c);
            acc[m][si] = clip_head_accuracy(*head, test.features, test.labels);
          }
          time_s[m] += seconds_since(t0);
          trainable[m] = head->num_parameters(true);
        }
        std::string line = fmt::format("      {:>2} shots:", k);
        for (size_t m = 0; m < methods.size(); ++m) line += fmt::format(" {} {:.1f}", methods[m], acc[m][si]);
        fmt::print("{}\n", line);
      }
      const double few_time = seconds_since(t_few);

      fmt::print("\nclip-micro, pretrained {:.0f}s (final contrastive loss {:.3f}); target procedural:{} ({} classes), "
                 "top1 % on {} test images\n",
                 pre_time, pre_loss, o.target, K, testset->size());
      std::string head_line = fmt::format("{:<14} {:>9}", "method", "trainable");
      for (int64_t k : shots) head_line += fmt::format(" {:>6}", fmt::format("{}-shot", k));
      fmt::print("{} {:>8}\n", head_line, "time");
      nlohmann::json js = nlohmann::json::array();
      std::string csv = "method,trainable";
      for (int64_t k : shots) csv += fmt::format(",shots_{}", k);
      csv += ",time_s\n";
      for (size_t m = 0; m < methods.size(); ++m) {
        std::string row = fmt::format("{:<14} {:>9}", methods[m], trainable[m]);
        csv += fmt::format("{},{}", methods[m], trainable[m]);
        nlohmann::json accj = nlohmann::json::object();
        for (size_t s = 0; s < shots.size(); ++s) {
          row += fmt::format(" {:>6.1f}", acc[m][s]);
          csv += fmt::format(",{:.2f}", acc[m][s]);
          accj[std::to_string(shots[s])] = acc[m][s];
        }
        fmt::print("{} {:>7.1f}s\n", row, time_s[m]);
        csv += fmt::format(",{:.2f}\n", time_s[m]);
        js.push_back({{"method", methods[m]}, {"trainable_params", trainable[m]}, {"top1", accj}, {"time_s", time_s[m]}});
      }
      save_plot(methods, acc, shots, (fs::path(o.out) / "accuracy_vs_shots.png").string());
      write_text_atomic((fs::path(o.out) / "clip_demo.json").string(), js.dump(2) + "\n");
      write_text_atomic((fs::path(o.out) / "clip_demo.csv").string(), csv);
      fmt::print("plot: {}/accuracy_vs_shots.png (x: log2 shots per class, y: top-1 %, one series per method)\n", o.out);
      fmt::print("time: pretraining {:.0f}s, few-shot {:.0f}s, total {:.0f}s\n", pre_time, few_time, seconds_since(t_all));
      if (common.json) {
        nlohmann::json summary = {{"zeroshot_top1", zs_acc}, {"pretrain_time_s", pre_time}, {"fewshot_time_s", few_time},
                                  {"total_time_s", seconds_since(t_all)}, {"methods", js}};
        fmt::print("{}\n", summary.dump());
      }
      return 0;
    };
  });
}

}  // namespace peft::app
