// LayerNorm, Dropout, DropPath and Embedding modules.
#include "nn/layers.h"

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "nn/linear.h"

namespace peft::nn {

LayerNorm::LayerNorm(int64_t d, double e) : dim(d), eps(e) {
  weight = register_parameter("weight", ones({d}));
  bias = register_parameter("bias", zeros({d}));
}

Tensor LayerNorm::forward(const Tensor& x) const {
  if (ssf_scale.defined()) {
    // SSF after a LayerNorm folds into its affine: (xhat w + b) s + t = xhat (w s) + (b s + t),
    // computed on [D] vectors. The same math up to rounding, but the LayerNorm then saves only
    // its input and row statistics, not a [R, D] output for SSF's scale gradient (ViT-B/16,
    // batch 8: 116 MB less per step), and two [R, D] passes disappear.
    Tensor w = weight.defined() ? mul(weight, ssf_scale) : ssf_scale;
    Tensor b = bias.defined() ? add(mul(bias, ssf_scale), ssf_shift) : ssf_shift;
    return layer_norm(x, w, b, eps);
  }
  return layer_norm(x, weight, bias, eps);
}

void LayerNorm::add_ssf(Generator& gen) {
  ssf_scale = register_parameter("ssf_scale", randn({dim}, gen, weight.dtype(), 1.0, 0.02));
  ssf_shift = register_parameter("ssf_shift", randn({dim}, gen, weight.dtype(), 0.0, 0.02));
}

void LayerNorm::merge_adapters() {
  if (!ssf_scale.defined()) return;
  NoGradGuard ng;
  weight.copy_(mul(weight, ssf_scale));
  bias.copy_(add(mul(bias, ssf_scale), ssf_shift));
  ssf_scale.fill_(1.0);
  ssf_shift.fill_(0.0);
}

Tensor Dropout::forward(const Tensor& x) const {
  if (!is_training() || p <= 0.0) return x;  // identity: no generator needed
  if (!gen) throw StateError("Dropout: training with p > 0 needs a generator. Hint: pass the model's Generator");
  return dropout(x, p, true, *gen);
}

Tensor DropPath::forward(const Tensor& x) const {
  if (!is_training() || p <= 0.0) return x;
  if (!gen) throw StateError("DropPath: training with p > 0 needs a generator. Hint: pass the model's Generator");
  // One Bernoulli(1-p) draw per sample, broadcast over the rest of the sample.
  Shape ms(x.dim(), 1);
  ms[0] = x.size(0);
  Tensor mask = empty(ms, x.dtype());
  std::vector<double> v(x.size(0));
  for (auto& e : v) e = gen->uniform() < p ? 0.0 : 1.0 / (1.0 - p);
  mask.copy_(from_vector(v, ms, DType::f64));
  return mul(x, mask);
}

Embedding::Embedding(int64_t num, int64_t d, Generator& gen) {
  weight = register_parameter("weight", randn({num, d}, gen));
}

Tensor Embedding::forward(const Tensor& ids) const { return embedding(weight, ids); }

}  // namespace peft::nn
