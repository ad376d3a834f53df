// CVPT (methods.md "CVPT"; Xlgsyzp/CVPT CVPT.py CvptBlock, CrossAttention): per-block prompts that
// the tokens cross-attend to with the block's frozen attention weights, between the attention
// and the MLP residual; the raw residual stream is the query (no LayerNorm) and the sequence
// length is unchanged.
#include <fmt/format.h>

#include "autograd/ops.h"
#include "peft/methods/adapted.h"
#include "peft/methods/methods.h"

namespace peft::methods {

namespace {

// cvpt.prompts [L, M, D], shared by the blocks (row i feeds block i).
class CvptPrompts : public nn::Module, public Adapted {
 public:
  CvptPrompts(Tensor p, double dropout_p, Generator* gen) : p_(dropout_p), gen_(gen) {
    prompts = register_parameter("prompts", std::move(p));
    no_weight_decay("prompts");
  }
  std::string type_name() const override { return "Prompts"; }
  std::string method() const override { return "cvpt"; }
  bool added_module() const override { return true; }
  std::string training_noise() const override { return p_ > 0 ? "prompt dropout is active in training" : ""; }
  // Block i's prompts: [1, M, D] (keys and values projected once for the batch), or per sample
  // [B, M, D] when prompt dropout draws a mask per sample.
  Tensor rows(int64_t i, int64_t B) const {
    Tensor row = narrow(prompts, 0, i, 1);
    if (!(p_ > 0 && is_training())) return row;
    return dropout(contiguous(expand(row, {B, row.size(1), row.size(2)})), p_, true, *gen_);
  }
  Tensor prompts;

 private:
  double p_;
  Generator* gen_;
};

// A block with the cross-attention to its prompts between the two residual branches.
class CvptBlock : public nn::Block, public Adapted {
 public:
  CvptBlock(const nn::Block& base, std::shared_ptr<CvptPrompts> prompts, int64_t index)
      : nn::Block(base), prompts_(std::move(prompts)), index_(index) {}
  std::string method() const override { return "cvpt"; }
  Tensor forward(const Tensor& x0, const Tensor& mask) const override {
    Tensor x = add(x0, attn_branch(x0, mask));
    x = add(x, attn->cross(x, prompts_->rows(index_, x.size(0))));
    return add(x, mlp_branch(x));
  }

 private:
  std::shared_ptr<CvptPrompts> prompts_;
  int64_t index_;
};

void attach_cvpt(nn::VisionTransformer& vit, const MethodOptions& o, Generator& gen) {
  const int64_t D = vit.cfg.dim, L = vit.cfg.depth, M = o.prompts;
  // xavier_uniform_ on [L, M, D] under PyTorch's fan rule: fan_in = M*D, fan_out = L*D.
  Tensor p = empty({L, M, D}, vit.dtype());
  xavier_uniform_(p, gen);
  auto prompts = std::make_shared<CvptPrompts>(p, o.prompt_dropout, &vit.drop_gen);
  prompts->added_names = {"cvpt.prompts"};
  vit.register_module("cvpt", prompts);  // cvpt.prompts, trainable
  prompts->train(vit.is_training());
  for (size_t i = 0; i < vit.block_list.size(); ++i)
    vit.replace_block(i, std::make_shared<CvptBlock>(*vit.block_list[i], prompts, static_cast<int64_t>(i)));
}

}  // namespace

MethodDescriptor cvpt_method() {
  MethodDescriptor d;
  d.name = "cvpt";
  d.description = "CVPT: tokens cross-attend to cvpt.prompts [L,M,D] with each block's frozen attention, and the head";
  d.options = {"prompts", "prompt_dropout"};
  d.option_help = "--prompts M (default 10), --prompt-dropout p";
  d.demo_lr = 1e-2;
  d.attach = attach_cvpt;
  d.script_flops_mode = "cvpt";
  return d;
}

}  // namespace peft::methods
