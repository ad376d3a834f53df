// DoRA (methods.md "DoRA"; huggingface/peft src/peft/tuners/lora/dora.py, variants.py): LoRA's
// rank-r update, then each output row rescaled by a learned magnitude over the row norm of the
// updated weight. The norm is a constant in backward (HF always detaches it); the bias is not
// rescaled. timm layout only. Mergeable: W' = (m / ||W + s B A||_row) (W + s B A).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "peft/methods/adapted.h"
#include "peft/methods/methods.h"

namespace peft::methods {

namespace {

// ||w[o, :]||_2 for each row of a [out, in] weight: [out]. Callers run it without autograd.
Tensor row_norms(const Tensor& w) { return sqrt(sum(mul(w, w), {1})); }

class DoraLinear : public nn::Linear, public Adapted {
 public:
  explicit DoraLinear(const nn::Linear& base) : nn::Linear(base) {}
  std::string method() const override { return "dora"; }
  bool mergeable() const override { return true; }
  // The row norms ||W + s B A|| read W elementwise: W stays float32 under --precision bf16.
  bool weight_only_in_gemms() const override { return false; }

  // x [..., in] -> [..., out]:  y = (m / n) * (x W^T + s (x A^T) B^T) + b.
  Tensor forward(const Tensor& x) const override {
    const Tensor n = held_norm_.defined() ? held_norm_ : norms();  // [out], a constant in backward
    // lin(x; V) without the bias as one op (autograd/ops/lora.cpp): [..., out].
    Tensor v = lora_linear(x, weight, Tensor(), lora_A, lora_B, scale);
    Tensor f = div(lora_magnitude_vector, n);  // [out]; gradient flows to m only (n is a constant)
    // The per-row rescale and the bias in one pass (autograd/ops/scale_shift.cpp): it saves the
    // GEMM output only because m trains; the bias (frozen) gets no gradient work.
    return bias.defined() ? scale_shift(v, f, bias) : mul(v, f);
  }
  // The update needs gelu(h) itself (DoRA on fc2).
  Tensor forward_after_gelu(Tensor h) const override { return forward(gelu(h)); }

  // W' = (m / ||W + s B A||_row) (W + s B A), bias unchanged. Afterwards B = 0 and m is the row
  // norm of W', so the layer computes lin(x; W', b): the plain model.
  void merge(nn::VisionTransformer&) override {
    NoGradGuard ng;
    Tensor v = add(weight, mul(matmul(lora_B, lora_A), scale));  // [out, in]
    Tensor merged = mul(v, unsqueeze(div(lora_magnitude_vector, row_norms(v)), 1));
    weight.copy_(merged);
    lora_B.fill_(0.0);
    lora_magnitude_vector.copy_(row_norms(weight));
    held_norm_ = Tensor();
  }

  // peft gradcheck: the norm held at its current value, so that central differences measure
  // the gradient DoRA defines (the norm is detached).
  void hold_detached(bool on) override { held_norm_ = on ? norms() : Tensor(); }

  Tensor lora_A, lora_B;         // [r, in], [out, r]
  Tensor lora_magnitude_vector;  // [out]
  double scale = 0.0;            // alpha / r

 private:
  // Row norms of V = W + s B A [out], without autograd: detached (methods.md "DoRA" "Decided").
  Tensor norms() const {
    NoGradGuard ng;
    return row_norms(add(weight, mul(matmul(lora_B, lora_A), scale)));
  }
  Tensor held_norm_;  // defined while held
};

void attach_dora(nn::VisionTransformer& vit, const MethodOptions& o, Generator& gen) {
  const double alpha = o.alpha < 0 ? static_cast<double>(o.rank) : o.alpha;  // default r: scale 1
  const std::vector<std::string> targets = lora_target_names(vit, o.targets);
  for (const LinearSite& site : linear_sites(vit)) {
    if (std::find(targets.begin(), targets.end(), site.name) == targets.end()) continue;
    auto w = std::make_shared<DoraLinear>(*site.linear);
    nn::Module& slot = install_linear(vit, site, w);
    const DType dt = w->weight.dtype();
    // HF registers lora_A, lora_B, then lora_magnitude_vector: the adapter file's order.
    Tensor a = empty({o.rank, w->in_features}, dt);
    kaiming_uniform_(a, gen, std::sqrt(5.0));  // U(+-1/sqrt(in))
    w->lora_A = add_tensor(*w, slot, site.name, "lora_A", a);
    w->lora_B = add_tensor(*w, slot, site.name, "lora_B", zeros({w->out_features, o.rank}, dt));
    Tensor m;
    {
      NoGradGuard ng;
      m = row_norms(w->weight);  // ||W + s B A|| = ||W|| as B = 0: training starts at the base model
    }
    w->lora_magnitude_vector = add_tensor(*w, slot, site.name, "lora_magnitude_vector", m);
    w->scale = alpha / static_cast<double>(o.rank);
  }
}

}  // namespace

MethodDescriptor dora_method() {
  MethodDescriptor d;
  d.name = "dora";
  d.description =
      "DoRA: LoRA's (alpha/r) B A, each output row rescaled by lora_magnitude_vector / ||W + (alpha/r) B A||_row "
      "(norm detached, bias not rescaled), and the head; timm layout; mergeable (peft merge)";
  d.options = {"rank", "alpha", "targets"};
  d.option_help =
      "--rank r (default 8), --alpha a (default r), --targets LIST (default attn.qkv; short names attn.qkv, "
      "attn.proj, mlp.fc1, mlp.fc2 or globs over full names)";
  d.timm_only = true;
  d.mergeable = true;
  d.demo_lr = 5e-3;
  d.attach = attach_dora;
  return d;
}

}  // namespace peft::methods
