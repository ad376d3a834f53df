// LoRA (methods.md "LoRA"; huggingface/peft LoRA semantics): a rank-r update (alpha/r) B A added to
// each target linear's output. On the openai layout (methods.md "What must match") the fused q|k|v projection is
// named {attn}.in_proj. Mergeable: W' = W + (alpha/r) B A.
#include <fmt/format.h>

#include <cmath>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "peft/methods/adapted.h"
#include "peft/methods/methods.h"

namespace peft::methods {

namespace {

class LoraLinear : public nn::Linear, public Adapted {
 public:
  explicit LoraLinear(const nn::Linear& base) : nn::Linear(base) {}
  std::string method() const override { return "lora"; }
  bool mergeable() const override { return true; }
  // One fused op (autograd/ops/lora.cpp), the same math as
  // add(linear(x, W, b), mul(linear(linear(x, A), B), scale)).
  Tensor forward(const Tensor& x) const override { return lora_linear(x, weight, bias, lora_A, lora_B, scale); }
  Tensor forward_after_gelu(Tensor h) const override { return forward(gelu(h)); }  // the update needs gelu(h)
  void merge(nn::VisionTransformer&) override {  // W' = W + (alpha/r) B A
    NoGradGuard ng;
    weight.copy_(add(weight, mul(matmul(lora_B, lora_A), scale)));
    lora_B.fill_(0.0);
  }
  Tensor lora_A, lora_B;  // [r, in], [out, r]
  double scale = 0.0;
};

void attach_lora(nn::VisionTransformer& vit, const MethodOptions& o, Generator& gen) {
  const double alpha = o.alpha < 0 ? static_cast<double>(o.rank) : o.alpha;
  const std::vector<std::string> targets = lora_target_names(vit, o.targets);
  for (const LinearSite& site : linear_sites(vit)) {
    if (std::find(targets.begin(), targets.end(), site.name) == targets.end()) continue;
    auto w = std::make_shared<LoraLinear>(*site.linear);
    nn::Module& slot = install_linear(vit, site, w);  // openai qkv: {attn}.in_proj.lora_A [r, W], .lora_B [3W, r]
    Tensor a = empty({o.rank, w->in_features}, w->weight.dtype());
    kaiming_uniform_(a, gen, std::sqrt(5.0));  // U(+-1/sqrt(in))
    w->lora_A = add_tensor(*w, slot, site.name, "lora_A", a);
    w->lora_B = add_tensor(*w, slot, site.name, "lora_B", zeros({w->out_features, o.rank}, w->weight.dtype()));
    w->scale = alpha / static_cast<double>(o.rank);
  }
}

}  // namespace

MethodDescriptor lora_method() {
  MethodDescriptor d;
  d.name = "lora";
  d.description = "LoRA: (alpha/r) B A added to the target linears, and the head; mergeable (peft merge)";
  d.options = {"rank", "alpha", "targets"};
  d.option_help =
      "--rank r (default 8), --alpha a (default r), --targets LIST (default attn.qkv; short names attn.qkv, "
      "attn.proj, mlp.fc1, mlp.fc2 (openai layout: attn.in_proj, attn.out_proj, mlp.c_fc, mlp.c_proj) or globs "
      "over full names)";
  d.mergeable = true;
  // rank from lora_A [r, in], targets the linears that carry one (their full names)
  d.options_from_tensors = [](const TensorShapes& tensors, MethodOptions& o) {
    std::string targets;
    for (const auto& [n, shape] : tensors) {
      if (!n.ends_with(".lora_A")) continue;
      if (!o.given.count("rank") && !shape.empty()) o.rank = shape[0];
      targets += (targets.empty() ? "" : ",") + n.substr(0, n.size() - 7);
    }
    if (!o.given.count("targets") && !targets.empty()) o.targets = targets;
  };
  d.attach = attach_lora;
  d.script_flops_mode = "lora";
  return d;
}

}  // namespace peft::methods
