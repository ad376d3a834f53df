// Linear layer and its LoRA / SSF slots.
#include "nn/linear.h"

#include <cmath>

#include "autograd/grad_mode.h"
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

// One fused op (autograd/ops/scale_shift.cpp), the same math as add(mul(y, scale), shift).
Tensor ssf_apply(const Tensor& y, const Tensor& scale, const Tensor& shift) { return scale_shift(y, scale, shift); }

Tensor Linear::forward(const Tensor& x) const {
  // LoRA: one fused op (autograd/ops/lora.cpp), the same math as
  // add(linear(x, W, b), mul(linear(linear(x, A), B), scale)).
  Tensor y = lora_A.defined() ? lora_linear(x, weight, bias, lora_A, lora_B, lora_scale) : linear(x, weight, bias);
  if (ssf_scale.defined()) y = ssf_apply(y, ssf_scale, ssf_shift);
  return y;
}

Tensor Linear::forward_after_gelu(Tensor h) const {
  if (lora_A.defined()) return forward(gelu(h));
  Tensor y = gelu_linear(std::move(h), weight, bias);
  if (ssf_scale.defined()) y = ssf_apply(y, ssf_scale, ssf_shift);
  return y;
}

void Linear::add_lora(int64_t rank, double alpha, Generator& gen) {
  Tensor a = empty({rank, in_features}, weight.dtype());
  kaiming_uniform_(a, gen, std::sqrt(5.0));
  lora_A = register_parameter("lora_A", a);
  lora_B = register_parameter("lora_B", zeros({out_features, rank}, weight.dtype()));
  lora_scale = alpha / static_cast<double>(rank);
}

void Linear::add_ssf(Generator& gen) {
  ssf_scale = register_parameter("ssf_scale", randn({out_features}, gen, weight.dtype(), 1.0, 0.02));
  ssf_shift = register_parameter("ssf_shift", randn({out_features}, gen, weight.dtype(), 0.0, 0.02));
}

void Linear::merge_adapters() {
  NoGradGuard ng;
  if (lora_A.defined()) {  // W' = W + (alpha/r) B A
    weight.copy_(add(weight, mul(matmul(lora_B, lora_A), lora_scale)));
    lora_B.fill_(0.0);
  }
  if (ssf_scale.defined()) {  // W'[c,:] = sc_c W[c,:], b' = sc*b + sh
    weight.copy_(mul(weight, unsqueeze(ssf_scale, 1)));
    if (bias.defined()) bias.copy_(add(mul(bias, ssf_scale), ssf_shift));
    ssf_scale.fill_(1.0);
    ssf_shift.fill_(0.0);
  }
}

}  // namespace peft::nn
