// Linear layer y = x W^T + b, with optional PEFT slots: a LoRA update and an SSF scale/shift.
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
  Tensor forward(const Tensor& x) const;
  // forward(gelu(h)), fused (autograd/ops/gelu_linear.h: saves h, not gelu(h)) unless a LoRA
  // update needs gelu(h) itself.
  Tensor forward_after_gelu(Tensor h) const;  // pass std::move(h) to let inference reuse it

  // LoRA (methods.md 11): y += (alpha / r) * (x A^T) B^T. Registers lora_A [r,in] (kaiming
  // uniform a=sqrt(5)) and lora_B [out,r] (zeros) on this module.
  void add_lora(int64_t rank, double alpha, Generator& gen);
  // SSF (methods.md 10): y = y * ssf_scale + ssf_shift over the last dim. Registers
  // ssf_scale ~ N(1, 0.02^2) and ssf_shift ~ N(0, 0.02^2) on this module.
  void add_ssf(Generator& gen);
  // Folds LoRA and SSF into weight and bias (exact), then removes the slots' effect.
  void merge_adapters();

  int64_t in_features, out_features;
  Tensor weight, bias;        // [out, in], [out] (bias undefined when absent)
  Tensor lora_A, lora_B;      // undefined unless add_lora
  double lora_scale = 0.0;
  Tensor ssf_scale, ssf_shift;  // undefined unless add_ssf
};

// y = x * scale + shift over the last dim (SSF's modulation; shared by Linear, LayerNorm, PatchEmbed).
Tensor ssf_apply(const Tensor& y, const Tensor& scale, const Tensor& shift);

}  // namespace peft::nn
