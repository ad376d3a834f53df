// Linear layer.
#include "nn/linear.h"

#include <cmath>

#include "autograd/ops.h"

namespace peft::nn {

Linear::Linear(int64_t in, int64_t out, bool has_bias, Generator& gen) : in_features(in), out_features(out) {
  Tensor w = empty({out, in});
  kaiming_uniform_(w, gen, std::sqrt(5.0));
  weight = register_parameter("weight", w);
  if (has_bias) {
    double bound = 1.0 / std::sqrt(static_cast<double>(in));
    bias = register_parameter("bias", rand({out}, gen, DType::f32, -bound, bound));
  }
}

Tensor Linear::forward(const Tensor& x) const { return linear(x, weight, bias); }

Tensor Linear::forward_after_gelu(Tensor h) const { return gelu_linear(std::move(h), weight, bias); }

}  // namespace peft::nn
