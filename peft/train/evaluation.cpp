// Evaluation passes (no autograd, model in eval mode, mode restored afterwards).
#include "peft/train/evaluation.h"

#include <fmt/format.h>

#include <chrono>

#include "autograd/ops.h"
#include "core/distributed.h"
#include "core/error.h"
#include "peft/head_cache.h"
#include "peft/train/batch_source.h"

namespace peft {

namespace {

using Clock = std::chrono::steady_clock;

void check_eval_data(const nn::VisionTransformer& model, const data::DatasetPtr& ds) {
  if (ds->size() == 0) throw ValueError("eval: the dataset is empty");
  if (model.head && ds->num_classes() > model.head->out_features)
    throw ValueError(fmt::format("eval: the data has {} classes but the model's head has {}", ds->num_classes(),
                                 model.head->out_features));
}

// Accumulates an evaluation pass and summarises it.
struct EvalSums {
  double loss_sum = 0;
  int64_t correct = 0, n = 0;
  Clock::time_point t0 = Clock::now();

  void add(const Tensor& logits, const Tensor& y) {
    loss_sum += cross_entropy(logits, y).item() * static_cast<double>(y.numel());
    correct += count_correct(logits, y);
    n += y.numel();
  }
  // Sums of every rank's shard (images/s stays this rank's: its share of the time).
  void reduce(dist::World* world) {
    if (!world || !world->distributed()) return;
    double v[3] = {loss_sum, static_cast<double>(correct), static_cast<double>(n)};
    world->allreduce_sum(v, 3, "the evaluation's allreduce");
    loss_sum = v[0];
    correct = static_cast<int64_t>(v[1]);
    n = static_cast<int64_t>(v[2]);
  }
  EvalResult result() const {
    EvalResult r;
    r.n = n;
    r.top1 = 100.0 * static_cast<double>(correct) / static_cast<double>(n);
    r.loss = loss_sum / static_cast<double>(n);
    r.images_per_s = static_cast<double>(n) / std::max(std::chrono::duration<double>(Clock::now() - t0).count(), 1e-9);
    return r;
  }
};

// Eval mode and no autograd for the scope; the model's mode is restored when it ends.
struct EvalScope {
  nn::VisionTransformer& model;
  NoGradGuard ng;
  bool was_training;
  explicit EvalScope(nn::VisionTransformer& m) : model(m), was_training(m.is_training()) { model.eval(); }
  ~EvalScope() { model.train(was_training); }
};

}  // namespace

int64_t count_correct(const Tensor& logits, const Tensor& labels) {
  Tensor pred = argmax(logits.detach(), 1);
  const int64_t* p = pred.data<int64_t>();
  const int64_t* y = labels.data<int64_t>();
  int64_t c = 0;
  for (int64_t i = 0; i < labels.numel(); ++i) c += p[i] == y[i];
  return c;
}

EvalResult evaluate(nn::VisionTransformer& model, const data::DatasetPtr& ds, int64_t batch, dist::World* world) {
  check_eval_data(model, ds);
  EvalScope scope(model);
  const bool dp = world && world->distributed();
  auto loader = make_loader(ds, batch, false, 0, data::parse_augment("none"), nn::effective_preprocess(model.cfg),
                            dp ? world->rank() : 0, dp ? world->size() : 1);
  loader.start_epoch(0);
  data::Batch b;
  EvalSums sums;
  while (loader.next(b))
    if (b.labels.numel() > 0) sums.add(model.forward(b.images), b.labels);  // a short last batch may leave a rank none
  sums.reduce(world);
  return sums.result();
}

EvalResult evaluate_cached(nn::VisionTransformer& model, const data::DatasetPtr& ds, int64_t batch,
                           HeadFeatureCache& cache, const std::vector<int64_t>& labels) {
  check_eval_data(model, ds);
  EvalScope scope(model);
  EvalSums sums;
  if (!cache.complete()) {
    auto loader = make_loader(ds, batch, false, 0, data::parse_augment("none"), nn::effective_preprocess(model.cfg));
    loader.start_epoch(0);
    data::Batch b;
    while (loader.next(b)) sums.add(model.forward_head(cache.features(model, b.indices, b.images)), b.labels);
  } else {
    for (int64_t begin = 0; begin < ds->size(); begin += batch) {
      const int64_t end = std::min(ds->size(), begin + batch);
      std::vector<int64_t> idx, y;
      for (int64_t i = begin; i < end; ++i) {
        idx.push_back(i);
        y.push_back(labels[static_cast<size_t>(i)]);
      }
      sums.add(model.forward_head(cache.gather(idx)), from_vector_i64(y, {end - begin}));
    }
  }
  return sums.result();
}

}  // namespace peft
