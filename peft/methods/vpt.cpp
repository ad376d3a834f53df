// VPT-shallow and VPT-deep (methods.md "VPT-shallow", "VPT-deep"; KMnP/vpt src/models/vit_prompt/vit.py): M learned
// prompt tokens inserted after the prefix tokens (CLS, registers) before block 0, with no
// position embedding; VPT-deep replaces those rows with a fresh set before every later block.
#include <fmt/format.h>

#include <cmath>

#include "autograd/ops.h"
#include "peft/methods/adapted.h"
#include "peft/methods/methods.h"

namespace peft::methods {

namespace {

// vpt.prompts [1 or L, M, D]; a token hook on the ViT.
class VptPrompts : public nn::TokenHook, public Adapted {
 public:
  VptPrompts(Tensor p, bool deep, int64_t prefix, double dropout_p, Generator* gen)
      : deep_(deep), prefix_(prefix), p_(dropout_p), gen_(gen) {
    prompts = register_parameter("prompts", std::move(p));
    no_weight_decay("prompts");
  }
  std::string type_name() const override { return "Prompts"; }
  std::string method() const override { return deep_ ? "vpt-deep" : "vpt-shallow"; }
  bool added_module() const override { return true; }
  std::string training_noise() const override { return p_ > 0 ? "prompt dropout is active in training" : ""; }
  int64_t tokens_after_prefix() const override { return prompts.size(1); }

  // x [B, P+N, D] -> [B, P+M+N, D] before block 0; deep: rows [P, P+M) replaced before block i > 0.
  Tensor before_block(int64_t i, const Tensor& x) override {
    if (i > 0 && !deep_) return x;
    const int64_t B = x.size(0), M = prompts.size(1), P = prefix_;
    const int64_t keep_from = i == 0 ? P : P + M;  // block 0: insert; later blocks: replace
    std::vector<Tensor> parts;
    if (P > 0) parts.push_back(narrow(x, 1, 0, P));
    parts.push_back(rows(i, B));
    parts.push_back(narrow(x, 1, keep_from, x.size(1) - keep_from));
    return cat(parts, 1);
  }

  Tensor prompts;

 private:
  // Row `layer` [1, M, D] broadcast to the batch; prompt dropout draws a mask per sample, so
  // then the prompts are materialised per sample.
  Tensor rows(int64_t layer, int64_t B) {
    Tensor row = narrow(prompts, 0, layer, 1);
    Tensor r = expand(row, {B, row.size(1), row.size(2)});
    if (p_ > 0 && is_training()) r = dropout(contiguous(r), p_, true, *gen_);
    return r;
  }
  bool deep_;
  int64_t prefix_;
  double p_;
  Generator* gen_;
};

void attach_vpt(nn::VisionTransformer& vit, const MethodOptions& o, bool deep, Generator& gen) {
  const int64_t D = vit.cfg.dim, L = vit.cfg.depth, P = vit.cfg.patch_size, M = o.prompts;
  // Xavier-uniform with fan-in 3*P*P (the official code writes 3 whatever in_chans is) and fan-out D.
  const double v = std::sqrt(6.0 / static_cast<double>(3 * P * P + D));
  Tensor p = empty({deep ? L : 1, M, D}, vit.dtype());
  uniform_(p, gen, -v, v);
  auto hook = std::make_shared<VptPrompts>(p, deep, vit.cfg.num_prefix_tokens(), o.prompt_dropout, &vit.drop_gen);
  hook->added_names = {"vpt.prompts"};
  hook->train(vit.is_training());
  vit.set_token_hook("vpt", hook);  // vpt.prompts, trainable
}

MethodDescriptor vpt_descriptor(bool deep) {
  MethodDescriptor d;
  d.name = deep ? "vpt-deep" : "vpt-shallow";
  d.description = deep ? "VPT-deep: vpt.prompts [L,M,D], row i replaces the prompt rows before block i, and the head"
                       : "VPT-shallow: M prompts between the prefix tokens (CLS, registers) and the patches before "
                         "block 0 (no pos-embed), and the head";
  d.options = {"prompts", "prompt_dropout"};
  d.option_help = "--prompts M (default 10), --prompt-dropout p";
  d.demo_lr = 1e-2;
  d.attach = deep ? [](nn::VisionTransformer& vit, const MethodOptions& o, Generator& g) { attach_vpt(vit, o, true, g); }
                  : [](nn::VisionTransformer& vit, const MethodOptions& o, Generator& g) { attach_vpt(vit, o, false, g); };
  // The script's "vpt" is VPT-deep. VPT-shallow follows its rule: the M prompt tokens run through
  // every block and are input to block 0, so data-gradients flow through the whole backbone.
  d.script_flops_mode = "vpt";
  if (deep) d.script_alias = "vpt";
  return d;
}

}  // namespace

MethodDescriptor vpt_shallow_method() { return vpt_descriptor(false); }
MethodDescriptor vpt_deep_method() { return vpt_descriptor(true); }

}  // namespace peft::methods
