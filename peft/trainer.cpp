// The training loop: one epoch after another over the parts in peft/train/ (batch source,
// checkpoint, metrics log, progress), with AdamW/SGD and warm-up + cosine.
#include "peft/trainer.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>

#include "autograd/anomaly.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "nn/optim/optimizer.h"
#include "peft/train/batch_source.h"
#include "peft/train/checkpoint.h"
#include "peft/train/metrics_log.h"
#include "peft/train/progress.h"

namespace peft {

data::Normalization normalization_for(const nn::ViTConfig& c) { return nn::effective_preprocess(c).norm; }

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void check_train_inputs(const nn::VisionTransformer& model, const data::DatasetPtr& train, const TrainConfig& cfg) {
  if (train->size() == 0) throw ValueError("train: the training set is empty");
  if (cfg.epochs <= 0 || cfg.batch <= 0) throw ValueError("train: --epochs and --batch must be positive");
  if (!model.head) throw ValueError("train: the model has no head (num_classes 0)");
  if (train->num_classes() > model.head->out_features)
    throw ValueError(fmt::format("train: the data has {} classes but the model's head has {}", train->num_classes(),
                                 model.head->out_features));
}

std::unique_ptr<nn::Optimizer> make_optimizer(const TrainConfig& cfg, const std::vector<nn::ParamSpec>& groups) {
  if (groups.empty()) throw ValueError("train: no trainable parameter");
  if (cfg.optimizer == "adamw") return std::make_unique<nn::AdamW>(groups, cfg.lr);
  if (cfg.optimizer == "sgd") return std::make_unique<nn::SGD>(groups, cfg.lr, 0.9);
  throw ValueError(fmt::format("train: unknown optimizer '{}' (adamw | sgd)", cfg.optimizer));
}

// One call of train_model: the parts and the state they share.
class TrainLoop {
 public:
  TrainLoop(nn::VisionTransformer& model, const data::DatasetPtr& train, const data::DatasetPtr& val,
            const TrainConfig& cfg)
      : model_(model),
        cfg_(cfg),
        has_val_(val != nullptr),
        groups_(nn::param_groups(model.named_parameters(), cfg.weight_decay)),
        opt_(make_optimizer(cfg, groups_)),
        src_(model, train, val, cfg),
        nb_(src_.batches_per_epoch()),
        warmup_(static_cast<int64_t>(std::llround(cfg.warmup_epochs * static_cast<double>(nb_)))),
        ckpt_(cfg.out_dir),
        log_(cfg.out_dir) {
    if (cfg.resume) {
      start_ = ckpt_.load(groups_, *opt_, model.drop_gen);
      log_.keep_first(start_.epoch);
    }
  }

  TrainResult run() {
    TrainResult res;
    Progress progress(cfg_.progress, nb_ * cfg_.epochs, start_.epoch * nb_ + start_.step);
    model_.train();
    for (int64_t epoch = start_.epoch; epoch < cfg_.epochs; ++epoch) {
      const bool resumed = epoch == start_.epoch && start_.step > 0;
      const int64_t encoded_before = src_.encoded();
      auto t_epoch = Clock::now();
      const int64_t steps = train_epoch(epoch, resumed ? start_ : TrainPosition{epoch, 0, {}, 0}, progress);
      res.train = sums_.result(seconds_since(t_epoch));
      res.steps += steps;
      res.val = src_.evaluate_val(model_, cfg_.batch);
      record_epoch(epoch, res, src_.encoded() > encoded_before);
    }
    check_finite_weights();
    res.train_time_s = elapsed();
    res.feature_cache = src_.feature_cache();
    res.backbone_images = src_.encoded();
    res.images_per_s = res.train.images_per_s;
    if (!has_val_) res.val = res.train;
    return res;
  }

 private:
  // Trains one epoch from `from` (its step and running sums); returns the batches trained.
  int64_t train_epoch(int64_t epoch, const TrainPosition& from, Progress& progress) {
    int64_t step = from.step;
    sums_ = from.partial;
    src_.start_epoch(epoch, step);
    data::Batch b;
    auto t_epoch = Clock::now();
    while (src_.next(b)) {
      opt_->set_lr(nn::warmup_cosine_lr(epoch * nb_ + step, warmup_, nb_ * cfg_.epochs, cfg_.lr));
      Tensor logits = src_.logits(model_, b);
      Tensor loss = cross_entropy(logits, b.labels, cfg_.label_smoothing);
      const double lv = loss.item();
      if (!std::isfinite(lv))
        throw ValueError(fmt::format("train: the loss became {} at epoch {} step {}; {}. Hint: lower --lr (got {})", lv,
                                     epoch + 1, step + 1, ckpt_.state(), cfg_.lr));
      update(loss);
      sums_.add(lv, count_correct(logits, b.labels), b.labels.numel());
      ++step;
      if (cfg_.save_every > 0 && step % cfg_.save_every == 0 && step < nb_) save(epoch, step, sums_);
      const double el = seconds_since(t_epoch);
      progress.update(epoch + 1, cfg_.epochs, step, nb_, sums_.loss(), sums_.top1(),
                      static_cast<double>(sums_.seen) / std::max(el, 1e-9), src_.note());
    }
    return step;
  }

  // One optimizer update from a batch loss.
  void update(const Tensor& loss) {
    opt_->zero_grad();
    if (cfg_.clip_grad > 0) {  // clipping needs every gradient before any update
      backward(loss);
      nn::clip_grad_norm(opt_->params(), cfg_.clip_grad);
      opt_->step();
      opt_->zero_grad();  // free the gradient buffers now: the next forward does not need them
    } else {
      opt_->step_in_backward(loss);  // each update as soon as its gradient is final; same result
    }
  }

  void record_epoch(int64_t epoch, const TrainResult& r, bool computed_features) {
    nlohmann::json row = {{"epoch", epoch + 1},
                          {"step", (epoch + 1) * nb_},
                          {"lr", opt_->lr()},
                          {"train_loss", r.train.loss},
                          {"train_top1", r.train.top1},
                          {"val_loss", has_val_ ? nlohmann::json(r.val.loss) : nlohmann::json(nullptr)},
                          {"val_top1", has_val_ ? nlohmann::json(r.val.top1) : nlohmann::json(nullptr)},
                          {"images_per_s", r.train.images_per_s},
                          {"elapsed_s", elapsed()}};
    if (src_.feature_cache()) row["feature_cache"] = computed_features ? "computed" : "cached";
    log_.add(row);
    save(epoch + 1, 0, {});
  }

  void save(int64_t epoch, int64_t step, const EpochSums& sums) {
    ckpt_.save(groups_, *opt_, model_.drop_gen, {epoch, step, sums, elapsed()});
  }

  void check_finite_weights() const {
    for (auto& g : groups_)
      if (autograd::count_non_finite(g.param) > 0)
        throw ValueError(fmt::format("train: '{}' became non-finite (NaN/Inf) during the last epoch; {} and no weights "
                                     "were written. Hint: lower --lr (got {})",
                                     g.name, ckpt_.state(), cfg_.lr));
  }

  // Training time of the whole run, earlier processes (--resume) included.
  double elapsed() const { return start_.elapsed_s + seconds_since(t_start_); }

  nn::VisionTransformer& model_;
  const TrainConfig& cfg_;
  bool has_val_;
  std::vector<nn::ParamSpec> groups_;
  std::unique_ptr<nn::Optimizer> opt_;
  BatchSource src_;
  int64_t nb_, warmup_;
  TrainCheckpoint ckpt_;
  MetricsLog log_;
  TrainPosition start_;
  EpochSums sums_;
  Clock::time_point t_start_ = Clock::now();
};

}  // namespace

TrainResult train_model(nn::VisionTransformer& model, const data::DatasetPtr& train, const data::DatasetPtr& val,
                        const TrainConfig& cfg) {
  check_train_inputs(model, train, cfg);
  return TrainLoop(model, train, val, cfg).run();
}

}  // namespace peft
