// Few-shot training and evaluation of a CLIP head on cached image features (or on the images, for
// a method that changes the image tower).
#include <fmt/format.h>

#include <chrono>
#include <cmath>

#include "autograd/anomaly.h"
#include "autograd/backward.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "data/loader.h"
#include "nn/optim/optimizer.h"
#include "peft/clip_methods.h"
#include "peft/train/grad_sync.h"

namespace peft {

ClipTrainResult train_clip_head(ClipHead& head, const Tensor& features, const Tensor& labels, const ClipTrainConfig& c) {
  ClipTrainResult res;
  auto specs = nn::param_groups(head.named_parameters(), c.weight_decay);
  if (specs.empty()) return res;
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<nn::Optimizer> opt;
  if (c.optimizer == "sgd")
    opt = std::make_unique<nn::SGD>(specs, c.lr, 0.9);
  else if (c.optimizer == "adamw")
    opt = std::make_unique<nn::AdamW>(specs, c.lr);
  else
    throw ValueError(fmt::format("--optimizer: unknown '{}' (adamw | sgd)", c.optimizer));
  const DType dt = specs[0].param.dtype();
  const int64_t N = features.size(0), B = std::max<int64_t>(1, std::min(c.batch, N));
  const int64_t per_epoch = (N + B - 1) / B, total = per_epoch * c.epochs;
  Tensor f_all = features.to(dt);
  Generator gen(c.seed ^ 0x7a11ULL);
  // Data parallel: every rank draws the same order and takes rows [n r / R, n (r + 1) / R) of
  // each batch of n; its mean loss (the knowledge term included) is weighted by its share n_r / n,
  // so the summed gradient is the batch's, as one process computes it.
  std::unique_ptr<GradSync> sync;
  const int64_t ranks = c.world && c.world->distributed() ? c.world->size() : 1, me = ranks > 1 ? c.world->rank() : 0;
  if (ranks > 1) sync = std::make_unique<GradSync>(*c.world, specs);
  auto bad_loss = [&](double lv, int64_t e, int64_t b) {  // issue 20: --lr 1e10 exited 0 with an all-NaN adapter
    return ValueError(fmt::format("{}: the loss became {} at epoch {} step {}; nothing written. Hint: lower --lr "
                                  "(got {}) or check --alpha/--beta",
                                  head.method, lv, e + 1, b + 1, c.lr));
  };
  head.train();
  for (int64_t e = 0; e < c.epochs; ++e) {
    std::vector<int64_t> order = data::random_permutation(N, gen);
    double sum = 0;
    for (int64_t b = 0; b < per_epoch; ++b) {
      const int64_t n = std::min(B, N - b * B), lo = b * B + n * me / ranks, k = b * B + n * (me + 1) / ranks - lo;
      opt->set_lr(nn::warmup_cosine_lr(res.steps, per_epoch, total, c.lr));
      opt->zero_grad();
      double lv = 0;
      if (k > 0) {
        Tensor idx = from_vector_i64(std::vector<int64_t>(order.begin() + lo, order.begin() + lo + k), {k});
        Tensor loss = cross_entropy(head.forward(index_select(f_all, 0, idx)), index_select(labels, 0, idx));
        if (Tensor extra = head.extra_loss(); extra.defined()) loss = add(loss, extra);  // e.g. KgCoOp's knowledge term
        lv = loss.item();
        backward(sync ? mul(loss, static_cast<double>(k) / static_cast<double>(n)) : loss);
      }
      if (sync) {
        sync->add_batch(lv, 0, k);
        lv = sync->allreduce(specs)[0].mean_loss;  // one allreduce: the gradients and the loss
        if (!std::isfinite(lv)) throw bad_loss(lv, e, b);
      }
      opt->step();
      if (!std::isfinite(lv)) throw bad_loss(lv, e, b);
      sum += lv * static_cast<double>(n);
      ++res.steps;
    }
    res.last_loss = sum / static_cast<double>(N);
  }
  for (const auto& s : specs)  // the last step's update is not seen by any loss
    if (const int64_t bad = autograd::count_non_finite(s.param); bad > 0)
      throw ValueError(fmt::format("{}: trained tensor {} holds {} NaN/Inf values after the last step; nothing "
                                   "written. Hint: lower --lr (got {})",
                                   head.method, s.name, bad, c.lr));
  head.eval();
  res.train_time_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

double clip_head_accuracy(ClipHead& head, const Tensor& features, const Tensor& labels, int64_t batch) {
  NoGradGuard ng;
  const int64_t N = features.size(0);
  if (N == 0) return 0.0;
  const DType dt = head.clip.text_projection.dtype();
  const std::vector<int64_t> y = labels.to_vector<int64_t>();
  int64_t correct = 0;
  for (int64_t lo = 0; lo < N; lo += batch) {
    const int64_t n = std::min(batch, N - lo);
    Tensor logits = head.forward(narrow(features, 0, lo, n).to(dt));
    std::vector<int64_t> pred = argmax(logits, 1).to_vector<int64_t>();
    for (int64_t i = 0; i < n; ++i) correct += pred[static_cast<size_t>(i)] == y[static_cast<size_t>(lo + i)];
  }
  return 100.0 * static_cast<double>(correct) / static_cast<double>(N);
}

}  // namespace peft
