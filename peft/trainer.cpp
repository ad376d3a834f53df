// The training loop: one epoch after another over the parts in peft/train/ (batch source,
// checkpoint, metrics log, progress, EMA), with AdamW/SGD, a learning-rate schedule, gradient
// accumulation, the best epoch's weights kept and early stopping.
#include "peft/trainer.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include "autograd/anomaly.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "nn/optim/layer_decay.h"
#include "nn/optim/lr_schedule.h"
#include "nn/optim/optimizer.h"
#include "peft/train/batch_source.h"
#include "peft/train/checkpoint.h"
#include "peft/train/grad_sync.h"
#include "peft/train/metrics_log.h"
#include "peft/train/model_ema.h"
#include "peft/train/progress.h"

namespace peft {

data::Normalization normalization_for(const nn::ViTConfig& c) { return nn::effective_preprocess(c).norm; }

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void check_train_inputs(const nn::VisionTransformer& model, const data::DatasetPtr& train, const data::DatasetPtr& val,
                        const TrainConfig& cfg) {
  if (train->size() == 0) throw ValueError("train: the training set is empty");
  if (cfg.epochs <= 0 || cfg.batch <= 0) throw ValueError("train: --epochs and --batch must be positive");
  if (cfg.accum_steps <= 0) throw ValueError(fmt::format("--accum-steps: must be positive (got {})", cfg.accum_steps));
  if (cfg.patience < 0) throw ValueError(fmt::format("--patience: must be >= 0 (got {})", cfg.patience));
  if ((cfg.patience > 0 || cfg.sched == "plateau") && !val)
    throw ValueError(cfg.patience > 0 ? "--patience: early stopping needs --val" : "--sched plateau: needs --val");
  if (cfg.model_ema && !(cfg.model_ema_decay >= 0 && cfg.model_ema_decay < 1))
    throw ValueError(fmt::format("--model-ema-decay: must be in [0, 1) (got {})", cfg.model_ema_decay));
  if (cfg.world && cfg.world->distributed() && cfg.batch % cfg.world->size() != 0)
    throw ValueError(fmt::format("--batch: the global batch {} does not divide by the {} ranks (each rank trains an "
                                 "equal share); use a multiple of {}",
                                 cfg.batch, cfg.world->size(), cfg.world->size()));
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

nn::LrSchedule make_schedule(const TrainConfig& cfg, int64_t batches_per_epoch) {
  nn::LrSchedule s;
  s.kind = cfg.sched;
  s.peak = cfg.lr;
  s.min_lr = cfg.min_lr;
  s.warmup_lr = cfg.warmup_lr;
  s.updates_per_epoch = (batches_per_epoch + cfg.accum_steps - 1) / cfg.accum_steps;
  s.warmup_updates = static_cast<int64_t>(std::llround(cfg.warmup_epochs * static_cast<double>(s.updates_per_epoch)));
  s.total_updates = s.updates_per_epoch * cfg.epochs;
  s.decay_epochs = cfg.decay_epochs;
  s.decay_rate = cfg.decay_rate;
  s.patience_epochs = cfg.patience_epochs;
  nn::check_lr_schedule(s);
  return s;
}

// The trainable tensors with their weight decay, and with --layer-decay their lr scales.
std::vector<nn::ParamSpec> train_param_groups(const nn::VisionTransformer& model, const TrainConfig& cfg) {
  std::vector<nn::ParamSpec> groups = nn::param_groups(model.named_parameters(), cfg.weight_decay);
  if (cfg.layer_decay > 0) nn::apply_layer_decay(groups, model.cfg.depth, cfg.layer_decay);
  return groups;
}

std::vector<Tensor> clone_all(const std::vector<Tensor>& ts) {
  std::vector<Tensor> out;
  for (auto& t : ts) out.push_back(t.detach().clone());
  return out;
}

// One call of train_model: the parts and the state they share.
class TrainLoop {
 public:
  TrainLoop(nn::VisionTransformer& model, const data::DatasetPtr& train, const data::DatasetPtr& val,
            const TrainConfig& cfg)
      : model_(model),
        cfg_(cfg),
        train_(train),
        has_val_(val != nullptr),
        groups_(train_param_groups(model, cfg)),
        opt_(make_optimizer(cfg, groups_)),
        src_(model, train, val, cfg),
        nb_(src_.batches_per_epoch()),
        sched_(make_schedule(cfg, nb_)),
        ckpt_(cfg.out_dir),
        log_(writer() ? cfg.out_dir : "") {
    if (cfg.model_ema) ema_ = std::make_unique<ModelEma>(groups_, cfg.model_ema_decay);
    if (cfg.world && cfg.world->distributed()) sync_ = std::make_unique<GradSync>(*cfg.world, groups_);
    if (cfg.resume) resume();
    if (sync_) own_rank_stream(model_.drop_gen, cfg.world->rank());  // dropout masks per rank, as DDP
  }

  TrainResult run() {
    TrainResult res;
    if (start_.epoch >= cfg_.epochs || stopped_early()) return finished_before();
    Progress progress(cfg_.progress && writer(), nb_ * cfg_.epochs, start_.epoch * nb_ + start_.step);
    model_.train();
    int64_t epoch = start_.epoch;
    for (; epoch < cfg_.epochs && !stopped_early(); ++epoch) {
      const bool resumed = epoch == start_.epoch && start_.step > 0;
      const int64_t encoded_before = src_.encoded();
      const auto t_epoch = Clock::now();
      res.steps += train_epoch(epoch, resumed ? start_ : TrainPosition{epoch, 0, {}, 0}, progress);
      res.train = sums_.result(seconds_since(t_epoch));
      res.last_val = src_.evaluate_val(model_, cfg_.batch);
      const EvalResult ema_val = ema_ && has_val_ ? evaluate_ema() : EvalResult{};
      record_epoch(epoch, res, ema_ ? ema_val : res.last_val, src_.encoded() > encoded_before);
      if (writer()) progress.line(epoch_line(epoch, res, ema_ ? ema_val : res.last_val, seconds_since(t_epoch)));
    }
    check_finite_weights();
    write_final_weights();
    res.val = has_val_ ? best_val_ : res.train;
    res.best_epoch = has_val_ ? best_epoch_ : epoch;
    res.epochs_run = epoch;
    res.train_time_s = elapsed();
    res.feature_cache = src_.feature_cache();
    res.backbone_images = src_.encoded();
    res.images_per_s = res.train.images_per_s;
    return res;
  }

 private:
  // Trains one epoch from `from` (its step and running sums); returns the batches trained.
  int64_t train_epoch(int64_t epoch, const TrainPosition& from, Progress& progress) {
    int64_t step = from.step;
    sums_ = from.partial;
    src_.start_epoch(epoch, step);
    data::Batch b;
    const auto t_epoch = Clock::now();
    while (src_.next(b)) {
      const int64_t n = cfg_.accum_steps, update = step / n;
      opt_->set_lr(nn::scheduled_lr(sched_, epoch * sched_.updates_per_epoch + update, reductions_));
      // Data parallel: this rank's shard of the global batch (a short last batch may leave it
      // none); its loss, correct count and size become the global batch's at the update.
      Tensor loss;
      double lv = 0;
      int64_t correct = 0, seen = b.labels.numel();
      if (seen > 0) {
        Tensor logits = src_.logits(model_, b);
        // mixed batches: soft targets, and no top-1 (the mixed images have no one true class)
        loss = b.targets.defined() ? soft_target_cross_entropy(logits, b.targets)
                                   : cross_entropy(logits, b.labels, cfg_.label_smoothing);
        lv = loss.item();
        correct = b.targets.defined() ? 0 : count_correct(logits, b.labels);
      }
      epoch_ = epoch;
      if (sync_) {  // the statistics travel with the update's gradients: checked and counted there
        sync_->add_batch(lv, correct, seen);
        accumulate(loss, seen, step, update);  // each rank's loss weighted by its shard's share
      } else {
        check_loss(lv, epoch, step);
        if (n == 1)
          update_from(loss);
        else
          accumulate(loss, seen, step, update);
        sums_.add(lv, correct, seen);
      }
      ++step;
      if (cfg_.save_every > 0 && step % cfg_.save_every == 0 && step % n == 0 && step < nb_) save(epoch, step, sums_);
      const double el = seconds_since(t_epoch);
      progress.update(epoch + 1, cfg_.epochs, step, nb_, sums_.loss(), mixing() ? NAN : sums_.top1(),
                      static_cast<double>(sums_.seen) / std::max(el, 1e-9), src_.note());
    }
    return step;
  }

  // One optimizer update from a batch loss.
  void update_from(const Tensor& loss) {
    opt_->zero_grad();
    if (cfg_.clip_grad > 0) {  // clipping needs every gradient before any update
      backward(loss);
      finish_update();
    } else {
      opt_->step_in_backward(loss);  // each update as soon as its gradient is final; same result
      if (ema_) ema_->update(groups_);
    }
  }

  // Batch `step` of an accumulation group (batches [update * n, update * n + n) of the epoch):
  // its mean loss weighted by its share of the group's examples, so that the summed gradient is
  // the gradient of the group's mean loss, as one batch of the group's size would give.
  void accumulate(const Tensor& loss, int64_t batch_size, int64_t step, int64_t update) {
    const int64_t n = cfg_.accum_steps, first = update * n, last = std::min(nb_, first + n) - 1;
    const int64_t group_examples =
        std::min(train_->size(), (last + 1) * cfg_.batch) - first * cfg_.batch;  // only the epoch's last batch is short
    if (step == first) opt_->zero_grad();
    if (loss.defined()) backward(mul(loss, static_cast<double>(batch_size) / static_cast<double>(group_examples)));
    first_of_update_ = first;
    if (step == last) finish_update();
  }

  void check_loss(double lv, int64_t epoch, int64_t step) const {
    if (!std::isfinite(lv))
      throw ValueError(fmt::format("train: the loss became {} at epoch {} step {}; {}. Hint: lower --lr (got {})", lv,
                                   epoch + 1, step + 1, ckpt_.state(), cfg_.lr));
  }

  // The update once every gradient of it is there (clipping, the step, the EMA).
  void finish_update() {
    if (sync_) {  // the sum over the ranks: the global batch's gradient, and its batches' statistics
      const std::vector<GlobalBatchStats> stats = sync_->allreduce(groups_);
      for (size_t i = 0; i < stats.size(); ++i) {
        check_loss(stats[i].mean_loss, epoch_, first_of_update_ + static_cast<int64_t>(i));  // before the step
        sums_.add(stats[i].mean_loss, stats[i].correct, stats[i].n);
      }
    }
    if (cfg_.clip_grad > 0) nn::clip_grad_norm(opt_->params(), cfg_.clip_grad);
    opt_->step();
    opt_->zero_grad();  // free the gradient buffers now: the next forward does not need them
    if (ema_) ema_->update(groups_);
  }

  // The validation result of the averaged weights (swapped in for the pass, and back).
  EvalResult evaluate_ema() {
    ema_->swap(groups_);
    struct Back {
      ModelEma& e;
      std::vector<nn::ParamSpec>& g;
      ~Back() { e.swap(g); }
    } back{*ema_, groups_};
    return src_.evaluate_val(model_, cfg_.batch);
  }

  // The weights the run keeps: the average with --model-ema, else the live ones.
  std::vector<Tensor> kept_weights() const {
    if (ema_) return ema_->weights();
    std::vector<Tensor> w;
    for (auto& g : groups_) w.push_back(g.param);
    return w;
  }

  // Metrics row, best epoch, --save-every snapshot, plateau and early-stopping state, checkpoint.
  void record_epoch(int64_t epoch, const TrainResult& r, const EvalResult& kept_val, bool computed_features) {
    nlohmann::json row = {{"epoch", epoch + 1},
                          {"step", (epoch + 1) * nb_},
                          {"lr", opt_->lr()},
                          {"train_loss", r.train.loss},
                          {"train_top1", mixing() ? nlohmann::json(nullptr) : nlohmann::json(r.train.top1)},
                          {"val_loss", has_val_ ? nlohmann::json(r.last_val.loss) : nlohmann::json(nullptr)},
                          {"val_top1", has_val_ ? nlohmann::json(r.last_val.top1) : nlohmann::json(nullptr)},
                          {"images_per_s", r.train.images_per_s},
                          {"elapsed_s", elapsed()}};
    row["world_size"] = cfg_.world ? cfg_.world->size() : 1;
    if (src_.feature_cache()) row["feature_cache"] = computed_features ? "computed" : "cached";
    if (ema_ && has_val_) {
      row["ema_val_loss"] = kept_val.loss;
      row["ema_val_top1"] = kept_val.top1;
    }
    log_.add(row);
    if (has_val_) {
      history_.push_back(kept_val.top1);
      if (best_epoch_ == 0 || kept_val.top1 > best_val_.top1) {
        best_val_ = kept_val;
        best_epoch_ = epoch + 1;
        best_ = clone_all(kept_weights());
      }
      if (cfg_.sched == "plateau") reductions_ = nn::plateau_reductions(history_, cfg_.patience_epochs);
    }
    if (cfg_.save_every_epochs > 0 && (epoch + 1) % cfg_.save_every_epochs == 0)
      write_weights(kept_weights(), fmt::format("{}-epoch{}{}", std::filesystem::path(cfg_.best_name).stem().string(),
                                                epoch + 1, std::filesystem::path(cfg_.best_name).extension().string()));
    save(epoch + 1, 0, {});
  }

  // Early stopping: cfg.patience epochs in a row without a better val top-1 than the best.
  bool stopped_early() const {
    return cfg_.patience > 0 && best_epoch_ > 0 && static_cast<int64_t>(history_.size()) - best_epoch_ >= cfg_.patience;
  }

  // The permanent line of an epoch, as timm prints it: what it trained, how it validated, where
  // the run stands.
  std::string epoch_line(int64_t epoch, const TrainResult& r, const EvalResult& kept_val, double seconds) const {
    std::string line = fmt::format("epoch {}/{}  train loss {:.4f}", epoch + 1, cfg_.epochs, r.train.loss);
    if (!mixing()) line += fmt::format(" top1 {:5.1f}%", r.train.top1);
    if (has_val_) line += fmt::format("  val loss {:.4f} top1 {:5.1f}%", r.last_val.loss, r.last_val.top1);
    if (ema_ && has_val_) line += fmt::format("  ema top1 {:5.1f}%", kept_val.top1);
    line += fmt::format("  lr {:.3g}  {:.0f} img/s  {}", opt_->lr(), r.train.images_per_s, hms(seconds));
    if (has_val_) line += fmt::format("  best {:.1f}% (epoch {})", best_val_.top1, best_epoch_);
    if (stopped_early()) line += fmt::format("  early stop: {} epochs without a better val top-1", cfg_.patience);
    return line;
  }

  // `weights` (in groups_ order) written through cfg.save_weights as DIR/name; the model's live
  // weights are put back afterwards.
  void write_weights(const std::vector<Tensor>& weights, const std::string& name) {
    if (!cfg_.save_weights || cfg_.out_dir.empty() || !writer()) return;
    std::vector<Tensor> live = clone_all(kept_live());
    set_live(weights);
    cfg_.save_weights((std::filesystem::path(cfg_.out_dir) / name).string());
    set_live(live);
  }

  // At the end: DIR/last_name holds the last epoch's kept weights, DIR/best_name the best
  // epoch's (the last without val), and the model is left holding the best.
  void write_final_weights() {
    const std::vector<Tensor> last = clone_all(kept_weights());
    const std::vector<Tensor>& best = has_val_ && !best_.empty() ? best_ : last;
    write_weights(last, cfg_.last_name);
    set_live(best);
    if (cfg_.save_weights && !cfg_.out_dir.empty() && writer())
      cfg_.save_weights((std::filesystem::path(cfg_.out_dir) / cfg_.best_name).string());
  }

  std::vector<Tensor> kept_live() const {
    std::vector<Tensor> w;
    for (auto& g : groups_) w.push_back(g.param);
    return w;
  }
  void set_live(const std::vector<Tensor>& w) {
    NoGradGuard ng;
    for (size_t i = 0; i < groups_.size(); ++i) Tensor(groups_[i].param).copy_(w[i]);
  }

  void save(int64_t epoch, int64_t step, const EpochSums& sums) {
    if (!writer()) return;
    std::vector<std::pair<std::string, Tensor>> extra;
    if (ema_) extra = ema_->state("ema.");
    for (size_t i = 0; i < best_.size(); ++i) extra.emplace_back("best." + groups_[i].name, best_[i]);
    extra.emplace_back("epochs", from_vector_i64({cfg_.epochs}, {1}));
    ckpt_.save(groups_, *opt_, model_.drop_gen, {epoch, step, sums, elapsed()}, extra,
               {{"run", settings_to_json(cfg_.settings)}});
  }

  // Continues from the checkpoint: weights, optimizer, position, EMA and best weights; the best
  // epoch, plateau and early-stopping state are recomputed from metrics.jsonl.
  void resume() {
    check_resume(cfg_.out_dir, cfg_.settings, cfg_.epochs, cfg_.extend, cfg_.sched);  // the CLI checked it first
    std::map<std::string, Tensor> extra;
    start_ = ckpt_.load(groups_, *opt_, model_.drop_gen, &extra);
    log_.keep_first(start_.epoch);
    if (!writer()) {  // the other ranks read rank 0's rows (before their first collective, so before it writes)
      MetricsLog rows(cfg_.out_dir);
      rows.keep_first(start_.epoch);
      for (auto& row : rows.rows()) log_.add(row);
    }
    if (ema_) ema_->load(extra, "ema.", ckpt_.path());
    const char* key = ema_ ? "ema_val_top1" : "val_top1";
    for (auto& row : log_.rows())
      if (has_val_ && row.contains(key) && row[key].is_number()) {
        history_.push_back(row[key].get<double>());
        if (best_epoch_ == 0 || history_.back() > best_val_.top1) {
          best_epoch_ = row["epoch"].get<int64_t>();
          best_val_.top1 = history_.back();
          best_val_.loss = row[ema_ ? "ema_val_loss" : "val_loss"].get<double>();
        }
      }
    for (auto& g : groups_)
      if (auto it = extra.find("best." + g.name); it != extra.end()) best_.push_back(it->second);
    if (cfg_.sched == "plateau") reductions_ = nn::plateau_reductions(history_, cfg_.patience_epochs);
  }

  TrainResult finished_before() const {
    TrainResult r;
    r.finished_before = true;
    r.epochs_run = start_.epoch;
    r.best_epoch = best_epoch_;
    r.val = best_val_;
    return r;
  }

  void check_finite_weights() const {
    for (auto& g : groups_)
      if (autograd::count_non_finite(g.param) > 0)
        throw ValueError(fmt::format("train: '{}' became non-finite (NaN/Inf) during the last epoch; {} and no weights "
                                     "were written. Hint: lower --lr (got {})",
                                     g.name, ckpt_.state(), cfg_.lr));
  }

  // --mixup/--cutmix: the training top-1 is not measured (timm reports only the loss).
  bool mixing() const { return cfg_.mixup.enabled(); }

  // Rank 0 of a data-parallel run, or a single process: the one that writes files and progress.
  bool writer() const { return !cfg_.world || cfg_.world->is_root(); }

  // Training time of the whole run, earlier processes (--resume) included.
  double elapsed() const { return start_.elapsed_s + seconds_since(t_start_); }

  nn::VisionTransformer& model_;
  const TrainConfig& cfg_;
  data::DatasetPtr train_;
  bool has_val_;
  std::vector<nn::ParamSpec> groups_;
  std::unique_ptr<nn::Optimizer> opt_;
  BatchSource src_;
  int64_t nb_;
  nn::LrSchedule sched_;
  TrainCheckpoint ckpt_;
  MetricsLog log_;
  std::unique_ptr<ModelEma> ema_;
  std::unique_ptr<GradSync> sync_;  // data parallel only
  int64_t epoch_ = 0, first_of_update_ = 0;  // where the pending update stands (its loss check)
  TrainPosition start_;
  EpochSums sums_;
  std::vector<double> history_;  // val top-1 of the kept weights, per finished epoch
  EvalResult best_val_;
  int64_t best_epoch_ = 0;    // 1-based; 0 = none yet
  std::vector<Tensor> best_;  // the best epoch's kept weights (with val)
  int64_t reductions_ = 0;    // plateau schedule
  Clock::time_point t_start_ = Clock::now();
};

}  // namespace

TrainResult train_model(nn::VisionTransformer& model, const data::DatasetPtr& train, const data::DatasetPtr& val,
                        const TrainConfig& cfg) {
  check_train_inputs(model, train, val, cfg);
  return TrainLoop(model, train, val, cfg).run();
}

}  // namespace peft
