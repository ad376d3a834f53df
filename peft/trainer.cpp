// Training loop: AdamW/SGD with warm-up + cosine, metrics.jsonl, progress bar, resumable epochs.
#include "peft/trainer.h"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/anomaly.h"
#include "autograd/ops.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "data/loader.h"
#include "nn/checkpoint.h"
#include "nn/optim/optimizer.h"
#include "nn/safetensors.h"
#include "peft/head_cache.h"

namespace peft {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Counts correct top-1 predictions in a batch.
int64_t count_correct(const Tensor& logits, const Tensor& labels) {
  Tensor pred = argmax(logits.detach(), 1);
  const int64_t* p = pred.data<int64_t>();
  const int64_t* y = labels.data<int64_t>();
  int64_t c = 0;
  for (int64_t i = 0; i < labels.numel(); ++i) c += p[i] == y[i];
  return c;
}

std::string hms(double s) {
  int64_t t = static_cast<int64_t>(s + 0.5);
  return t >= 3600 ? fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60) : fmt::format("{}:{:02}", t / 60, t % 60);
}

// One status line on stderr, redrawn in place (only when stderr is a terminal).
class ProgressBar {
 public:
  explicit ProgressBar(bool on) : on_(on && isatty(2)) {}
  void update(int64_t epoch, int64_t epochs, int64_t step, int64_t steps, double elapsed, double loss, double acc, double ips,
              const char* note = "") {
    if (!on_) return;
    const int width = 24;
    int filled = steps > 0 ? static_cast<int>(width * step / steps) : width;
    double eta = step > 0 ? elapsed / static_cast<double>(step) * static_cast<double>(steps - step) : 0;
    fmt::print(stderr, "\repoch {}/{} [{}{}] {}/{} ETA {} loss {:.4f} acc {:5.1f}% {:.0f} img/s {}", epoch, epochs,
               std::string(filled, '#'), std::string(width - filled, '.'), step, steps, hms(eta), loss, acc, ips, note);
    std::fflush(stderr);
  }
  void done() {
    if (on_) fmt::print(stderr, "\n");
  }

 private:
  bool on_;
};

// The model's own preprocessing (nn::effective_preprocess): its normalisation, and with rrc a
// random resized crop of the original image resized with its interpolation.
data::DataLoader make_loader(const data::DatasetPtr& ds, int64_t batch, bool shuffle, uint64_t seed,
                             const data::Augment& aug, const data::Preprocess& pre) {
  data::LoaderOptions o;
  o.batch_size = batch;
  o.shuffle = shuffle;
  o.seed = seed;
  data::set_pipeline(o, aug, pre);
  return data::DataLoader(ds, o);
}

Tensor rng_tensor(const Generator& g) {
  auto s = g.state();
  std::vector<int64_t> v(4);
  std::memcpy(v.data(), s.data(), sizeof(uint64_t) * 4);
  return from_vector_i64(v, {4});
}

std::array<uint64_t, 4> rng_from(const Tensor& t) {
  std::array<uint64_t, 4> s{};
  auto v = t.to_vector<int64_t>();
  std::memcpy(s.data(), v.data(), sizeof(uint64_t) * 4);
  return s;
}

}  // namespace

data::Normalization normalization_for(const nn::ViTConfig& c) { return nn::effective_preprocess(c).norm; }

namespace {

void check_eval_data(const nn::VisionTransformer& model, const data::DatasetPtr& ds) {
  if (ds->size() == 0) throw ValueError("eval: the dataset is empty");
  if (model.head && ds->num_classes() > model.head->out_features)
    throw ValueError(fmt::format("eval: the data has {} classes but the model's head has {}", ds->num_classes(),
                                 model.head->out_features));
}

// The summary of an evaluation pass over n images that began at t0.
EvalResult eval_result(int64_t n, int64_t correct, double loss_sum, Clock::time_point t0) {
  EvalResult r;
  r.n = n;
  r.top1 = 100.0 * static_cast<double>(correct) / static_cast<double>(n);
  r.loss = loss_sum / static_cast<double>(n);
  r.images_per_s = static_cast<double>(n) / std::max(seconds_since(t0), 1e-9);
  return r;
}

// evaluate() for a frozen backbone: the head on cached features. The first call encodes the
// images (in the batches evaluate() uses); later calls only run the head.
EvalResult evaluate_cached(nn::VisionTransformer& model, const data::DatasetPtr& ds, int64_t batch,
                           HeadFeatureCache& cache, const std::vector<int64_t>& labels) {
  check_eval_data(model, ds);
  NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  double loss_sum = 0;
  int64_t correct = 0, n = 0;
  auto add = [&](const Tensor& logits, const Tensor& y) {
    loss_sum += cross_entropy(logits, y).item() * static_cast<double>(y.numel());
    correct += count_correct(logits, y);
    n += y.numel();
  };
  auto t0 = Clock::now();
  if (!cache.complete()) {
    auto loader = make_loader(ds, batch, false, 0, data::parse_augment("none"), nn::effective_preprocess(model.cfg));
    loader.start_epoch(0);
    data::Batch b;
    while (loader.next(b)) add(model.forward_head(cache.features(model, b.indices, b.images)), b.labels);
  } else {
    for (int64_t begin = 0; begin < ds->size(); begin += batch) {
      const int64_t end = std::min(ds->size(), begin + batch);
      std::vector<int64_t> idx, y;
      for (int64_t i = begin; i < end; ++i) {
        idx.push_back(i);
        y.push_back(labels[static_cast<size_t>(i)]);
      }
      add(model.forward_head(cache.gather(idx)), from_vector_i64(y, {end - begin}));
    }
  }
  model.train(was_training);
  return eval_result(n, correct, loss_sum, t0);
}

}  // namespace

EvalResult evaluate(nn::VisionTransformer& model, const data::DatasetPtr& ds, int64_t batch) {
  check_eval_data(model, ds);
  NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  auto loader = make_loader(ds, batch, false, 0, data::parse_augment("none"), nn::effective_preprocess(model.cfg));
  loader.start_epoch(0);
  data::Batch b;
  double loss_sum = 0;
  int64_t correct = 0, n = 0;
  auto t0 = Clock::now();
  while (loader.next(b)) {
    Tensor logits = model.forward(b.images);
    loss_sum += cross_entropy(logits, b.labels).item() * static_cast<double>(b.labels.numel());
    correct += count_correct(logits, b.labels);
    n += b.labels.numel();
  }
  model.train(was_training);
  return eval_result(n, correct, loss_sum, t0);
}

TrainResult train_model(nn::VisionTransformer& model, const data::DatasetPtr& train, const data::DatasetPtr& val,
                        const TrainConfig& cfg) {
  if (train->size() == 0) throw ValueError("train: the training set is empty");
  if (cfg.epochs <= 0 || cfg.batch <= 0) throw ValueError("train: --epochs and --batch must be positive");
  if (!model.head) throw ValueError("train: the model has no head (num_classes 0)");
  if (train->num_classes() > model.head->out_features)
    throw ValueError(fmt::format("train: the data has {} classes but the model's head has {}", train->num_classes(),
                                 model.head->out_features));
  auto groups = nn::param_groups(model.named_parameters(), cfg.weight_decay);
  if (groups.empty()) throw ValueError("train: no trainable parameter");
  std::unique_ptr<nn::Optimizer> opt;
  if (cfg.optimizer == "adamw")
    opt = std::make_unique<nn::AdamW>(groups, cfg.lr);
  else if (cfg.optimizer == "sgd")
    opt = std::make_unique<nn::SGD>(groups, cfg.lr, 0.9);
  else
    throw ValueError(fmt::format("train: unknown optimizer '{}' (adamw | sgd)", cfg.optimizer));

  auto loader = make_loader(train, cfg.batch, true, cfg.seed, data::parse_augment(cfg.augment),
                            nn::effective_preprocess(model.cfg));
  const int64_t nb = loader.num_batches(), total = nb * cfg.epochs;

  // Head-only training on a deterministic pipeline: encode each image once (peft/head_cache.h).
  const HeadCachePlan cache_plan =
      plan_head_cache(model, train, val, cfg.augment, cfg.feature_cache, cfg.feature_cache_limit);
  std::unique_ptr<HeadFeatureCache> train_cache, val_cache;
  std::vector<int64_t> train_labels, val_labels;
  if (cache_plan.on) {
    train_cache = std::make_unique<HeadFeatureCache>(train->size(), model.cfg.feature_dim());
    train_labels = train->labels();
    if (val) {
      val_cache = std::make_unique<HeadFeatureCache>(val->size(), model.cfg.feature_dim());
      val_labels = val->labels();
    }
  }
  auto encoded = [&] {
    return (train_cache ? train_cache->encoded() : 0) + (val_cache ? val_cache->encoded() : 0);
  };
  const int64_t warmup = static_cast<int64_t>(std::llround(cfg.warmup_epochs * static_cast<double>(nb)));

  namespace fs = std::filesystem;
  const std::string ckpt = cfg.out_dir.empty() ? "" : (fs::path(cfg.out_dir) / "checkpoint.safetensors").string();
  // For failure messages: name the checkpoint only when one exists (issue 20).
  auto checkpoint_state = [&] {
    return !ckpt.empty() && fs::exists(ckpt) ? "the last checkpoint " + ckpt + " is intact"
                                             : std::string("no checkpoint was written yet");
  };
  const std::string metrics_path = cfg.out_dir.empty() ? "" : (fs::path(cfg.out_dir) / "metrics.jsonl").string();
  std::string metrics;  // the whole file, rewritten atomically after each epoch
  auto t_start = Clock::now();
  int64_t first_epoch = 0, first_step = 0;
  double elapsed_before = 0;
  std::vector<double> partial{0, 0, 0};  // loss_sum, correct, seen of an interrupted epoch
  if (cfg.resume) {
    if (ckpt.empty() || !fs::exists(ckpt)) throw IOError(fmt::format("--resume: no checkpoint at '{}'", ckpt));
    auto sd = nn::read_tensors(ckpt);
    std::map<std::string, Tensor> params, optim;
    for (auto& [n, t] : sd) {
      if (n.rfind("param.", 0) == 0) params[n.substr(6)] = t;
      if (n.rfind("optim.", 0) == 0) optim[n.substr(6)] = t;
    }
    NoGradGuard ng;
    for (auto& g : groups) {
      auto it = params.find(g.name);
      if (it == params.end()) throw IOError(fmt::format("{}: no tensor for trainable '{}'", ckpt, g.name));
      g.param.copy_(it->second);
    }
    opt->load_state_dict(optim);
    first_epoch = static_cast<int64_t>(sd.at("progress").at({0}));
    first_step = static_cast<int64_t>(sd.at("progress").at({1}));
    // Running sums are float64 in the file; read_tensors converts floats to float32.
    SafetensorsFile f = SafetensorsFile::open(ckpt);
    partial = f.get("partial", DType::f64).to_vector<double>();
    elapsed_before = f.get("progress_time", DType::f64).item();
    model.drop_gen.set_state(rng_from(sd.at("rng")));
    if (fs::exists(metrics_path)) {
      std::ifstream f(metrics_path);
      std::string line;
      for (int64_t e = 0; e < first_epoch && std::getline(f, line); ++e) metrics += line + "\n";
    }
  }

  auto all_finite = [&groups] {
    for (auto& g : groups)
      if (autograd::count_non_finite(g.param) > 0) return false;
    return true;
  };
  // Everything needed to continue exactly: trainable tensors, optimizer state, the position
  // (epoch, step within it), the partial epoch's running sums and the dropout stream.
  auto save_checkpoint = [&](int64_t epoch, int64_t step, double loss_sum, int64_t correct, int64_t seen) {
    if (ckpt.empty()) return;
    // A step can turn the weights non-finite while the loss still was finite: such weights must
    // never replace the last good checkpoint. Skip the save; the next forward reports the NaN.
    if (!all_finite()) return;
    std::vector<std::pair<std::string, Tensor>> out;
    for (auto& g : groups) out.emplace_back("param." + g.name, g.param);
    for (auto& [n, t] : opt->state_dict()) out.emplace_back("optim." + n, t);
    out.emplace_back("progress", from_vector_i64({epoch, step}, {2}));
    out.emplace_back("partial", from_vector({loss_sum, static_cast<double>(correct), static_cast<double>(seen)}, {3}, DType::f64));
    out.emplace_back("progress_time", from_vector({elapsed_before + seconds_since(t_start)}, {}, DType::f64));
    out.emplace_back("rng", rng_tensor(model.drop_gen));
    save_safetensors(ckpt, out, {{"format", "peft-train-checkpoint"}});
  };

  TrainResult res;
  ProgressBar bar(cfg.progress);
  model.train();
  for (int64_t epoch = first_epoch; epoch < cfg.epochs; ++epoch) {
    const bool resumed = epoch == first_epoch && first_step > 0;
    int64_t step = resumed ? first_step : 0;
    // Once every training image is cached, an epoch needs only the order of its examples and
    // their labels: the loader builds no images. Until then (the first epoch, and the epoch
    // after a resume that began mid-epoch) the loader runs and the cache fills from its batches.
    const bool from_cache = train_cache && train_cache->complete();
    const int64_t encoded_before = encoded();
    std::vector<int64_t> order;
    if (from_cache)
      order = loader.epoch_order(epoch);
    else
      loader.start_epoch(epoch, step);
    auto next_batch = [&](data::Batch& out) {
      if (!from_cache) return loader.next(out);
      if (step >= nb) return false;
      const int64_t begin = step * cfg.batch, end = std::min(train->size(), begin + cfg.batch);
      out.indices.assign(order.begin() + begin, order.begin() + end);
      std::vector<int64_t> y;
      for (int64_t i : out.indices) y.push_back(train_labels[static_cast<size_t>(i)]);
      out.labels = from_vector_i64(y, {end - begin});
      out.images = Tensor();
      out.epoch = epoch;
      out.index = step;
      return true;
    };
    data::Batch b;
    double loss_sum = resumed ? partial[0] : 0;
    int64_t correct = resumed ? static_cast<int64_t>(partial[1]) : 0, seen = resumed ? static_cast<int64_t>(partial[2]) : 0;
    auto t_epoch = Clock::now();
    while (next_batch(b)) {
      const int64_t gstep = epoch * nb + step;
      opt->set_lr(nn::warmup_cosine_lr(gstep, warmup, total, cfg.lr));
      Tensor logits = !train_cache ? model.forward(b.images)
                      : from_cache ? model.forward_head(train_cache->gather(b.indices))
                                   : model.forward_head(train_cache->features(model, b.indices, b.images));
      Tensor loss = cross_entropy(logits, b.labels, cfg.label_smoothing);
      double lv = loss.item();
      if (!std::isfinite(lv))
        throw ValueError(fmt::format("train: the loss became {} at epoch {} step {}; {}. Hint: lower --lr (got {})",
                                     lv, epoch + 1, step + 1, checkpoint_state(), cfg.lr));
      opt->zero_grad();
      if (cfg.clip_grad > 0) {  // clipping needs every gradient before any update
        backward(loss);
        nn::clip_grad_norm(opt->params(), cfg.clip_grad);
        opt->step();
        opt->zero_grad();  // free the gradient buffers now: the next forward does not need them
      } else {
        opt->step_in_backward(loss);  // each update as soon as its gradient is final; same result
      }
      loss_sum += lv * static_cast<double>(b.labels.numel());
      correct += count_correct(logits, b.labels);
      seen += b.labels.numel();
      ++step;
      if (cfg.save_every > 0 && step % cfg.save_every == 0 && step < nb) save_checkpoint(epoch, step, loss_sum, correct, seen);
      double el = seconds_since(t_epoch);
      bar.update(epoch + 1, cfg.epochs, step, nb, el, loss_sum / seen, 100.0 * correct / seen, seen / std::max(el, 1e-9),
                 !train_cache ? "" : from_cache ? "(cached features) " : "(computing features) ");
    }
    double epoch_time = seconds_since(t_epoch);
    res.train = {100.0 * correct / static_cast<double>(seen), loss_sum / static_cast<double>(seen),
                 static_cast<double>(seen) / std::max(epoch_time, 1e-9), seen};
    res.steps += step;
    EvalResult v = !val         ? EvalResult{}
                   : val_cache ? evaluate_cached(model, val, cfg.batch, *val_cache, val_labels)
                               : evaluate(model, val, cfg.batch);
    nlohmann::json line = {{"epoch", epoch + 1},
                           {"step", (epoch + 1) * nb},
                           {"lr", opt->lr()},
                           {"train_loss", res.train.loss},
                           {"train_top1", res.train.top1},
                           {"val_loss", val ? nlohmann::json(v.loss) : nlohmann::json(nullptr)},
                           {"val_top1", val ? nlohmann::json(v.top1) : nlohmann::json(nullptr)},
                           {"images_per_s", res.train.images_per_s},
                           {"elapsed_s", elapsed_before + seconds_since(t_start)}};
    if (train_cache) line["feature_cache"] = encoded() > encoded_before ? "computed" : "cached";
    metrics += line.dump() + "\n";
    if (!cfg.out_dir.empty()) {
      write_text_atomic(metrics_path, metrics);
      save_checkpoint(epoch + 1, 0, 0, 0, 0);
    }
    res.val = v;
  }
  bar.done();
  for (auto& g : groups)
    if (autograd::count_non_finite(g.param) > 0)
      throw ValueError(fmt::format("train: '{}' became non-finite (NaN/Inf) during the last epoch; {} and no weights "
                                   "were written. Hint: lower --lr (got {})",
                                   g.name, checkpoint_state(), cfg.lr));
  res.train_time_s = elapsed_before + seconds_since(t_start);
  res.feature_cache = cache_plan.on;
  res.backbone_images = encoded();
  res.images_per_s = res.train.images_per_s;
  if (!val) res.val = res.train;
  return res;
}

}  // namespace peft
