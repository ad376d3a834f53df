// Linear layer y = x W^T + b. Wrappable: forward is virtual, so a PEFT method installs a subclass
// (copy-constructed from the base layer, sharing its tensors) with Module::replace_module, and
// the tensor names stay those of the base layer.
#pragma once
#include "core/random.h"
#include "nn/module.h"

namespace peft::nn {

class Linear : public Module {
 public:
  // PyTorch's default init: W, b ~ U(+-1/sqrt(in)).
  Linear(int64_t in, int64_t out, bool bias, Generator& gen);
  std::string type_name() const override { return "Linear"; }

  // x: [..., in] -> [..., out]
  virtual Tensor forward(const Tensor& x) const;
  // forward(gelu(h)), fused (autograd/ops/gelu_linear.h: saves h, not gelu(h)). A subclass that
  // needs gelu(h) itself overrides this with forward(gelu(h)).
  virtual Tensor forward_after_gelu(Tensor h) const;  // pass std::move(h) to let inference reuse it

  // True when forward reads `weight` only as a GEMM operand, so --precision bf16 may store it in
  // bfloat16 while frozen (nn/bf16_storage.h). A subclass that reads W elementwise says false.
  virtual bool weight_only_in_gemms() const { return true; }

  int64_t in_features, out_features;
  Tensor weight, bias;  // [out, in], [out] (bias undefined when absent)
};

}  // namespace peft::nn
