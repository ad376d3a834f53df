// gradcheck_method: see method_gradcheck.h.
#include "peft/method_gradcheck.h"

#include <fmt/format.h>

#include <cmath>

#include "autograd/backward.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "nn/module.h"
#include "peft/methods/adapted.h"

namespace peft {

namespace {

// The absolute tolerance for one tensor: --atol scaled by its largest gradient when that is below 1.
// A model's input gradients are often ~1e-4, where a fixed atol of 1e-5 would let a 10% error
// through; the floor of 1e-9 stays above float64 central-difference round-off (~1e-10 for a loss
// of order 1 and eps 1e-6).
double scaled_atol(const GradcheckFn& fn, const Tensor& t, double atol) {
  Tensor(t).zero_grad(true);
  backward(fn({t}));
  double gmax = 0;
  if (t.grad().defined())
    for (double v : t.grad().to_vector<double>()) gmax = std::max(gmax, std::fabs(v));
  Tensor(t).zero_grad(true);
  return std::max(1e-9, atol * std::min(1.0, gmax));
}

}  // namespace

MethodGradcheckReport gradcheck_method(const MethodGradcheckRequest& r, const std::function<void(int64_t)>& on_start,
                                       const std::function<void(const MethodGradcheckRow&)>& on_row) {
  const nn::ViTConfig& c = r.config;
  const int64_t K = c.num_classes > 0 ? c.num_classes : 10;
  auto model = build_model(c, r.method, r.options, K, r.seed);
  nn::VisionTransformer& vit = *model;
  vit.to(DType::f64);
  vit.eval();  // dropout, drop-path and prompt dropout off: the checked function must be deterministic

  struct Item {
    std::string name;
    Tensor t;
  };
  std::vector<Item> items;
  for (auto& [n, p] : vit.named_parameters())
    if (p.requires_grad() && nn::glob_match(r.tensors, n)) items.push_back({n, p});
  // Trainable tensors get a small seeded nudge, so that a zero-initialised one (LoRA B,
  // AdaptFormer's up projection) does not make the gradients of the others exactly zero.
  if (r.perturb) {
    NoGradGuard ng;
    Generator nudge(r.seed + 3);
    for (auto& [n, p] : vit.named_parameters())
      if (p.requires_grad()) Tensor(p).copy_(add(p, randn(p.sizes(), nudge, DType::f64, 0.0, 0.02)));
  }
  // Values a method detaches in backward (DoRA's row norm) stay fixed while checking, so the
  // differences measure the gradient the method defines (peft/methods/adapted.h).
  for (methods::Adapted* m : methods::adapted_modules(vit)) m->hold_detached(true);

  // One random batch: images [B, C, S, S] float64, labels [B] in [0, K).
  Generator data_gen(r.seed + 2);
  Tensor images = randn({r.batch, c.in_chans, c.image_size, c.image_size}, data_gen, DType::f64);
  std::vector<int64_t> y(static_cast<size_t>(r.batch));
  for (auto& v : y) v = static_cast<int64_t>(data_gen.next_u64() % static_cast<uint64_t>(K));
  Tensor labels = from_vector_i64(y, {r.batch});
  if (r.input) items.push_back({"input (images)", images});
  if (items.empty())
    throw ValueError(fmt::format("--tensors '{}': matches no trainable tensor of method '{}'", r.tensors, r.method));

  MethodGradcheckReport rep;
  for (auto& it : items) rep.elements += it.t.numel();
  if (on_start) on_start(rep.elements);
  // The loss of one training step; gradcheck perturbs the checked tensor in place.
  GradcheckFn loss = [&](const std::vector<Tensor>&) { return cross_entropy(vit.forward(images), labels); };
  for (auto& it : items) {
    const bool is_input = it.t.impl() == images.impl();
    if (is_input) images.requires_grad_(true);  // only now: parameter checks see the real training tape
    GradcheckOptions opt = r.check;
    opt.atol = scaled_atol(loss, it.t, r.check.atol);
    MethodGradcheckRow row{it.name, it.t.sizes(), it.t.numel(), opt.atol, gradcheck(loss, {it.t}, opt)};
    if (is_input) images.requires_grad_(false);
    rep.worst_abs = std::max(rep.worst_abs, row.result.max_abs_error);
    rep.worst_rel = std::max(rep.worst_rel, row.result.max_rel_error);
    rep.failed += !row.result.ok;
    if (on_row) on_row(row);
    rep.rows.push_back(std::move(row));
  }
  vit.zero_grad();
  return rep;
}

}  // namespace peft
