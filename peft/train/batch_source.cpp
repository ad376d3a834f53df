// Training batches from the loader or from the head feature caches.
#include "peft/train/batch_source.h"

#include "peft/head_cache.h"
#include "peft/trainer.h"

namespace peft {

data::DataLoader make_loader(const data::DatasetPtr& ds, int64_t batch, bool shuffle, uint64_t seed,
                             const data::Augment& aug, const data::Preprocess& pre, int64_t shard, int64_t shards,
                             int64_t workers) {
  data::LoaderOptions o;
  o.workers = workers;
  o.batch_size = batch;
  o.shard = shard;
  o.shards = shards;
  o.shuffle = shuffle;
  o.seed = seed;
  data::set_pipeline(o, aug, pre);
  return data::DataLoader(ds, o);
}

data::Augment train_augment(const TrainConfig& cfg) {
  data::Augment a = data::parse_augment(cfg.augment);
  a.aa = cfg.aa;
  a.color_jitter = cfg.color_jitter;
  a.reprob = cfg.reprob;
  a.remode = cfg.remode;
  a.recount = cfg.recount;
  return a;
}

BatchSource::BatchSource(nn::VisionTransformer& model, data::DatasetPtr train, data::DatasetPtr val,
                         const TrainConfig& cfg)
    : train_(std::move(train)),
      val_(std::move(val)),
      batch_(cfg.batch),
      world_(cfg.world && cfg.world->distributed() ? cfg.world : nullptr),
      loader_(make_loader(train_, cfg.batch, true, cfg.seed, train_augment(cfg),
                          nn::effective_preprocess(model.cfg), world_ ? world_->rank() : 0, world_ ? world_->size() : 1,
                          cfg.workers)),
      nb_(loader_.num_batches()),
      mixup_(cfg.mixup),
      mix_seed_(cfg.seed + 0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(world_ ? world_->rank() : 0)),
      num_classes_(model.head ? model.head->out_features : 0) {
  mixup_.label_smoothing = cfg.label_smoothing;  // timm smooths the mixed targets with --smoothing
  if (mixup_.enabled()) data::check_mixup_options(mixup_);
  // Data parallel: every rank would need every image's features (the shards move each epoch).
  // Mixed batches: the images differ in every epoch.
  if (world_ || mixup_.enabled()) return;
  // Head-only training on a deterministic pipeline: encode each image once (peft/head_cache.h).
  const HeadCachePlan plan = plan_head_cache(model, train_, val_, train_augment(cfg), cfg.feature_cache, cfg.feature_cache_limit);
  if (!plan.on) return;
  train_cache_ = std::make_unique<HeadFeatureCache>(train_->size(), model.cfg.feature_dim());
  train_labels_ = train_->labels();
  if (val_) {
    val_cache_ = std::make_unique<HeadFeatureCache>(val_->size(), model.cfg.feature_dim());
    val_labels_ = val_->labels();
  }
}

BatchSource::~BatchSource() = default;

int64_t BatchSource::encoded() const {
  return (train_cache_ ? train_cache_->encoded() : 0) + (val_cache_ ? val_cache_->encoded() : 0);
}

void BatchSource::start_epoch(int64_t epoch, int64_t first) {
  epoch_ = epoch;
  step_ = first;
  from_cache_ = train_cache_ && train_cache_->complete();
  if (from_cache_)
    order_ = loader_.epoch_order(epoch);
  else
    loader_.start_epoch(epoch, first);
}

bool BatchSource::next(data::Batch& out) {
  if (!from_cache_) {
    if (!loader_.next(out)) return false;
    if (mixup_.enabled() && out.labels.numel() > 0)
      out.targets = data::mix_batch(out.images, out.labels.to_vector<int64_t>(), num_classes_, mixup_, mix_seed_,
                                    out.epoch, out.index);
    return true;
  }
  if (step_ >= nb_) return false;
  const int64_t begin = step_ * batch_, end = std::min(train_->size(), begin + batch_);
  out.indices.assign(order_.begin() + begin, order_.begin() + end);
  std::vector<int64_t> y;
  for (int64_t i : out.indices) y.push_back(train_labels_[static_cast<size_t>(i)]);
  out.labels = from_vector_i64(y, {end - begin});
  out.images = Tensor();
  out.epoch = epoch_;
  out.index = step_++;
  return true;
}

Tensor BatchSource::logits(nn::VisionTransformer& model, const data::Batch& b) {
  if (!train_cache_) return model.forward(b.images);
  if (from_cache_) return model.forward_head(train_cache_->gather(b.indices));
  return model.forward_head(train_cache_->features(model, b.indices, b.images));
}

const char* BatchSource::note() const {
  return !train_cache_ ? "" : from_cache_ ? "(cached features) " : "(computing features) ";
}

EvalResult BatchSource::evaluate_val(nn::VisionTransformer& model, int64_t batch) {
  if (!val_) return EvalResult{};
  return val_cache_ ? evaluate_cached(model, val_, batch, *val_cache_, val_labels_) : evaluate(model, val_, batch, world_);
}

}  // namespace peft
