// SSF / LoRA merge: every fold is per output channel of the op it follows (methods.md 10, 11).
#include "peft/merge.h"

#include <fmt/format.h>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"

namespace peft {

bool is_mergeable_method(const std::string& method) { return method == "ssf" || method == "lora"; }

namespace {
bool is_slot(const std::string& name) {
  for (const char* s : {".lora_A", ".lora_B", ".ssf_scale", ".ssf_shift"}) {
    const std::string suffix(s);
    if (name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) return true;
  }
  return false;
}
}  // namespace

void merge_adapters(nn::VisionTransformer& vit) {
  if (vit.vpt || vit.cvpt) throw ValueError("merge: prompts (vpt, cvpt) cannot be folded into the weights");
  for (auto& b : vit.block_list)
    if (b->adaptmlp) throw ValueError("merge: AdaptFormer adapters cannot be folded into the weights (ReLU)");
  // An SSF shift after a linear without bias (a qkv_bias=False model) has nowhere to go in a
  // plain model of the same config: refuse before anything changes.
  for (auto& [name, m] : vit.named_modules())
    if (auto* lin = dynamic_cast<nn::Linear*>(m); lin && lin->ssf_scale.defined() && !lin->bias.defined())
      throw ValueError(fmt::format("merge: {} has no bias to take its SSF shift (a model without qkv bias); "
                                   "use the adapter unmerged",
                                   name));
  const DType dt = vit.pos_embed.dtype();
  vit.to(DType::f64);  // fold in float64, round once at the end
  for (auto& [name, m] : vit.named_modules()) {
    if (auto* lin = dynamic_cast<nn::Linear*>(m)) lin->merge_adapters();          // W' = W + s B A; sc*W, sc*b + sh
    if (auto* ln = dynamic_cast<nn::LayerNorm*>(m)) ln->merge_adapters();         // sc*gamma, sc*beta + sh
    // openai: the fused q|k|v linear is no module of its own (in_proj_weight sits on attn).
    if (auto* at = dynamic_cast<nn::Attention*>(m); at && at->openai_names) at->qkv->merge_adapters();
  }
  // Conv filters per channel. A conv without a bias (openai conv1) passes its SSF shift to the
  // patch rows of the position embedding, added right after it: the last N rows (openai: rows
  // 1..N of positional_embedding [1+N, D]; methods.md 18).
  if (vit.patch_embed->ssf_scale.defined()) {
    NoGradGuard ng;
    Tensor patch_rows;
    if (!vit.patch_embed->bias.defined() && vit.pos_embed.defined()) {
      const int64_t rows = vit.pos_embed.size(-2), n = vit.cfg.num_patches();
      if (rows >= n) patch_rows = narrow(reshape(vit.pos_embed, {rows, -1}), 0, rows - n, n);
    }
    vit.patch_embed->merge_adapters(patch_rows);
  }
  vit.to(dt);
}

nn::NamedTensors plain_state_dict(const nn::VisionTransformer& vit) {
  nn::NamedTensors out;
  for (auto& [n, t] : vit.state_dict())
    if (!is_slot(n)) out.emplace_back(n, t);
  return out;
}

}  // namespace peft
