// LayerNorm, Dropout, DropPath and Embedding modules.
#include "nn/layers.h"

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"

namespace peft::nn {

LayerNorm::LayerNorm(int64_t d, double e) : dim(d), eps(e) {
  weight = register_parameter("weight", ones({d}));
  bias = register_parameter("bias", zeros({d}));
}

Tensor LayerNorm::forward(const Tensor& x) const { return layer_norm(x, weight, bias, eps); }

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
