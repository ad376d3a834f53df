// AdaptFormer (methods.md "AdaptFormer"; ShoufaChen/AdaptFormer models/custom_modules.py, adapter.py): a
// bottleneck adapter parallel to each block's MLP, fed the post-attention stream, scaled by 0.1.
#include <fmt/format.h>

#include "autograd/ops.h"
#include "nn/layers.h"
#include "peft/methods/adapted.h"
#include "peft/methods/methods.h"

namespace peft::methods {

namespace {

constexpr double kAdapterDropout = 0.1;  // on the ReLU output, training only (official default)

// 0.1 * up(dropout(relu(down(x)))): blocks.{i}.adaptmlp.{down_proj,up_proj}.
class AdaptMlp : public nn::Module, public Adapted {
 public:
  AdaptMlp(int64_t dim, int64_t b, double p, Generator& gen, Generator* drop_gen) {
    down_proj = register_module("down_proj", std::make_shared<nn::Linear>(dim, b, true, gen));
    up_proj = register_module("up_proj", std::make_shared<nn::Linear>(b, dim, true, gen));
    // AdaptFormer "lora" init: down kaiming-uniform(a=sqrt 5) (the Linear default), the rest 0.
    down_proj->bias.fill_(0.0);
    up_proj->weight.fill_(0.0);
    up_proj->bias.fill_(0.0);
    drop = std::make_shared<nn::Dropout>(p, drop_gen);
  }
  std::string type_name() const override { return "AdaptMlp"; }
  std::string method() const override { return "adaptformer"; }
  bool added_module() const override { return true; }
  std::string training_noise() const override {
    return drop->p > 0 ? fmt::format("adapter dropout is active in training (p = {})", drop->p) : "";
  }
  Tensor forward(const Tensor& x) const {
    return mul(up_proj->forward(drop->forward(relu(down_proj->forward(x)))), scale);
  }
  std::shared_ptr<nn::Linear> down_proj, up_proj;
  std::shared_ptr<nn::Dropout> drop;
  double scale = 0.1;

 protected:
  void on_train(bool on) override { drop->train(on); }  // eval(): no adapter dropout (methods.md "Conventions")
};

class AdaptFormerBlock : public nn::Block, public Adapted {
 public:
  AdaptFormerBlock(const nn::Block& base, std::shared_ptr<AdaptMlp> a) : nn::Block(base), adaptmlp(std::move(a)) {
    register_module("adaptmlp", adaptmlp);
  }
  std::string method() const override { return "adaptformer"; }
  Tensor forward(const Tensor& x0, const Tensor& mask) const override {
    Tensor x = add(x0, attn_branch(x0, mask));
    // Parallel to the MLP, fed the post-attention stream x (methods.md "AdaptFormer").
    return add(x, add(mlp_branch(x), adaptmlp->forward(x)));
  }
  std::shared_ptr<AdaptMlp> adaptmlp;
};

void attach_adaptformer(nn::VisionTransformer& vit, const MethodOptions& o, Generator& gen) {
  for (size_t i = 0; i < vit.block_list.size(); ++i) {
    auto a = std::make_shared<AdaptMlp>(vit.cfg.dim, o.bottleneck, kAdapterDropout, gen, &vit.drop_gen);
    if (vit.dtype() != DType::f32) a->to(vit.dtype());
    a->train(vit.is_training());  // a model in eval mode must not get an adapter that drops out
    const std::string n = vit.block_name(i) + ".adaptmlp.";
    a->added_names = {n + "down_proj.weight", n + "down_proj.bias", n + "up_proj.weight", n + "up_proj.bias"};
    vit.replace_block(i, std::make_shared<AdaptFormerBlock>(*vit.block_list[i], a));
  }
}

}  // namespace

MethodDescriptor adaptformer_method() {
  MethodDescriptor d;
  d.name = "adaptformer";
  d.description = "AdaptFormer: 0.1 * up(relu(down(x))) parallel to each MLP, fed the post-attention stream, and the head";
  d.options = {"bottleneck"};
  d.option_help = "--bottleneck b (default 64)";
  d.attach = attach_adaptformer;
  // "ssf"'s backbone rule plus its down/up projections as an extra term counted the way the
  // script counts LoRA's factors (forward 1x, data-grad 1x, weight-grad 1x).
  d.script_flops_mode = "adaptformer";
  return d;
}

}  // namespace peft::methods
