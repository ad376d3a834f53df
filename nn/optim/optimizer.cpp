// Optimizer state, parameter groups, clipping and the LR schedule.
#include "nn/optim/optimizer.h"

#include "core/threads.h"

#include <fmt/format.h>

#include <cmath>
#include <unordered_map>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"

namespace peft::nn {

std::vector<std::string> default_no_decay() {
  return {"*.bias", "*cls_token", "*pos_embed", "*class_embedding", "*positional_embedding", "*norm*.weight",
          "*ln_*.weight"};
}

std::vector<ParamSpec> param_groups(const NamedTensors& named, double wd, const std::vector<std::string>& globs) {
  std::vector<ParamSpec> out;
  for (auto& [n, t] : named) {
    if (!t.requires_grad()) continue;
    bool no_decay = t.dim() <= 1;
    for (auto& g : globs) no_decay = no_decay || glob_match(g, n);
    out.push_back({n, t, no_decay ? 0.0 : wd});
  }
  return out;
}

Optimizer::Optimizer(std::vector<ParamSpec> params) : params_(std::move(params)), state_(params_.size()) {
  for (auto& p : params_)
    if (!p.param.requires_grad())
      throw ValueError(fmt::format("optimizer: parameter '{}' does not require grad. Hint: pass trainable tensors only", p.name));
}

void Optimizer::zero_grad() {
  for (auto& p : params_) p.param.zero_grad(true);
}

void Optimizer::step() {
  NoGradGuard ng;
  begin_step();
  for (size_t i = 0; i < params_.size(); ++i)
    if (params_[i].param.grad().defined()) update_param(i);
}

void Optimizer::step_in_backward(const Tensor& loss) {
  std::unordered_map<const TensorImpl*, size_t> index;
  for (size_t i = 0; i < params_.size(); ++i) index[params_[i].param.impl()] = i;
  begin_step();
  backward(loss, [&](TensorImpl& leaf) {
    auto it = index.find(&leaf);
    if (it == index.end()) return;  // a leaf this optimizer does not own
    Tensor& p = params_[it->second].param;
    if (!p.grad().defined()) return;
    NoGradGuard ng;
    update_param(it->second);
    p.zero_grad(true);  // free it now: the rest of backward and the next forward do not need it
  });
}

int64_t Optimizer::state_bytes() const {
  int64_t n = 0;
  for (auto& slots : state_)
    for (auto& t : slots) n += static_cast<int64_t>(t.nbytes());
  return n;
}

NamedTensors Optimizer::state_dict() const {
  NamedTensors out;
  for (size_t i = 0; i < params_.size(); ++i)
    for (size_t s = 0; s < state_[i].size(); ++s) out.emplace_back(params_[i].name + "." + slot_names_[s], state_[i][s]);
  out.emplace_back("__step__", from_vector_i64({steps_}, {}));
  return out;
}

void Optimizer::load_state_dict(const std::map<std::string, Tensor>& sd) {
  auto it = sd.find("__step__");
  if (it == sd.end()) throw ValueError("optimizer: state has no __step__ entry");
  steps_ = static_cast<int64_t>(it->second.item());
  for (size_t i = 0; i < params_.size(); ++i) {
    state_[i].clear();
    for (auto& slot : slot_names_) {
      auto f = sd.find(params_[i].name + "." + slot);
      if (f == sd.end()) {
        state_[i].clear();
        break;
      }
      if (f->second.sizes() != params_[i].param.sizes())
        throw ValueError(fmt::format("optimizer: state '{}.{}' has shape {}, parameter has {}", params_[i].name, slot,
                                     shape_str(f->second.sizes()), shape_str(params_[i].param.sizes())));
      state_[i].push_back(f->second.to(params_[i].param.dtype()));
    }
  }
}

// ---------------------------------------------------------------- SGD

SGD::SGD(std::vector<ParamSpec> params, double lr, double mu, bool nest) : Optimizer(std::move(params)), momentum(mu), nesterov(nest) {
  lr_ = lr;
  slot_names_ = {"momentum_buffer"};
}

void SGD::update_param(size_t i) {
  Tensor p = params_[i].param, g = p.grad();
  Tensor d = params_[i].weight_decay != 0 ? add(g, mul(p, params_[i].weight_decay)) : g;
  if (momentum != 0) {
    if (state_[i].empty()) {
      state_[i].push_back(d.clone());
    } else {
      state_[i][0].copy_(add(mul(state_[i][0], momentum), d));
    }
    d = nesterov ? add(d, mul(state_[i][0], momentum)) : state_[i][0];
  }
  p.copy_(sub(p, mul(d, lr_ * params_[i].lr_scale)));
}

// ---------------------------------------------------------------- AdamW

AdamW::AdamW(std::vector<ParamSpec> params, double lr, double b1, double b2, double e)
    : Optimizer(std::move(params)), beta1(b1), beta2(b2), eps(e) {
  lr_ = lr;
  slot_names_ = {"exp_avg", "exp_avg_sq"};
}

namespace {
// One AdamW update over a contiguous slice: the same order of operations as torch.optim.AdamW's
// single-tensor path, in the parameter's dtype. decay is 1 - lr * wd, or exactly 1 when the
// tensor takes no weight decay (p * 1 == p, so no branch in the loop). The float32 version is
// compiled for AVX-512 / AVX2 too; the OpenMP split happens outside it, because the body of an
// OpenMP loop is outlined into a function that target_clones does not reach.
template <class T>
inline void adamw_slice_impl(T* __restrict p, T* __restrict m, T* __restrict v, const T* __restrict g, int64_t n,
                             T decay, T b1, T b2, T ss, T bs, T ep) {
  for (int64_t k = 0; k < n; ++k) {
    p[k] *= decay;
    m[k] = m[k] * b1 + g[k] * (T(1) - b1);  // exp_avg.lerp_(grad, 1-beta1)
    v[k] = v[k] * b2 + g[k] * g[k] * (T(1) - b2);
    const T denom = std::sqrt(v[k]) / bs + ep;
    p[k] -= ss * m[k] / denom;
  }
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void adamw_slice(float* p, float* m, float* v,
                                                                               const float* g, int64_t n, float decay,
                                                                               float b1, float b2, float ss, float bs,
                                                                               float ep) {
  adamw_slice_impl(p, m, v, g, n, decay, b1, b2, ss, bs, ep);
}
void adamw_slice(double* p, double* m, double* v, const double* g, int64_t n, double decay, double b1, double b2,
                 double ss, double bs, double ep) {
  adamw_slice_impl(p, m, v, g, n, decay, b1, b2, ss, bs, ep);
}

// Splits big tensors across the team in contiguous slices.
template <class T>
void adamw_update(T* p, T* m, T* v, const T* g, int64_t n, T decay, T b1, T b2, T ss, T bs, T ep) {
  const int64_t slices = n > 65536 ? std::max(1, num_threads()) : 1;
#pragma omp parallel for if (slices > 1)
  for (int64_t s = 0; s < slices; ++s) {
    const int64_t lo = n * s / slices, hi = n * (s + 1) / slices;
    adamw_slice(p + lo, m + lo, v + lo, g + lo, hi - lo, decay, b1, b2, ss, bs, ep);
  }
}
}  // namespace

void AdamW::begin_step() {
  ++steps_;
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(steps_));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(steps_));
  bc1_ = bc1;
  bc2_sqrt_ = std::sqrt(bc2);
}

void AdamW::update_param(size_t i) {
  Tensor p = params_[i].param, g = p.grad();
  if (state_[i].empty()) state_[i] = {zeros_like(p), zeros_like(p)};
  Tensor& m = state_[i][0];
  Tensor& v = state_[i][1];
  const double wd = params_[i].weight_decay, lr = lr_ * params_[i].lr_scale;
  Tensor gc = g.is_contiguous() ? g : g.clone();
  dispatch_float(p.dtype(), "adamw", [&](auto tag) {
    using T = decltype(tag);
    T* pp = p.data<T>();
    T* pm = m.data<T>();
    T* pv = v.data<T>();
    const T* pg = gc.data<T>();
    const int64_t n = p.numel();
    const T b1 = static_cast<T>(beta1), b2 = static_cast<T>(beta2);
    // step size lr / bc1 with this tensor's lr, as torch computes it per parameter group
    const T decay = wd != 0 ? static_cast<T>(1.0 - lr * wd) : T(1), ss = static_cast<T>(lr / bc1_),
            bs = static_cast<T>(bc2_sqrt_), ep = static_cast<T>(eps);
    adamw_update<T>(pp, pm, pv, pg, n, decay, b1, b2, ss, bs, ep);
  });
  p.bump_version();
}

// ---------------------------------------------------------------- helpers

double clip_grad_norm(const std::vector<ParamSpec>& params, double max_norm) {
  double total = 0;
  for (auto& p : params) {
    Tensor g = p.param.grad();
    if (!g.defined()) continue;
    for (double v : g.to_vector<double>()) total += v * v;
  }
  double norm = std::sqrt(total);
  if (max_norm > 0 && norm > max_norm) {
    NoGradGuard ng;
    double s = max_norm / (norm + 1e-6);
    for (auto& p : params) {
      Tensor g = p.param.grad();
      if (g.defined()) g.copy_(mul(g, s));
    }
  }
  return norm;
}

double warmup_cosine_lr(int64_t step, int64_t warmup, int64_t total, double peak) {
  if (warmup > 0 && step < warmup) return peak * static_cast<double>(step + 1) / static_cast<double>(warmup);
  if (total <= warmup) return peak;
  double t = static_cast<double>(step - warmup) / static_cast<double>(total - warmup);
  t = std::min(1.0, std::max(0.0, t));
  return 0.5 * peak * (1.0 + std::cos(M_PI * t));
}

}  // namespace peft::nn

namespace peft::nn {
std::vector<ParamSpec> param_groups(const NamedTensors& named, double wd) { return param_groups(named, wd, default_no_decay()); }

std::vector<ParamSpec> param_groups(const Module& m, double wd) {
  std::vector<std::string> globs = default_no_decay();
  for (std::string& n : m.no_weight_decay_names()) globs.push_back(std::move(n));
  return param_groups(m.named_parameters(), wd, globs);
}
}  // namespace peft::nn
