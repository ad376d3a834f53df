// Adapter (methods.md "Adapter"; V-PETL Bench ImageClassification/models/vision_transformer_adapter.py
// Adapter, Block): one sequential bottleneck adapter per block, after the MLP and inside the MLP
// residual, with its own skip: m = MLP(LN(x)); m = m + up(gelu(down(m))); x = x + m.
#include <fmt/format.h>

#include "autograd/ops.h"
#include "nn/linear.h"
#include "peft/methods/adapted.h"
#include "peft/methods/methods.h"

namespace peft::methods {

namespace {

// blocks.{i}.adapter_module.{adapter_downsample [b,D] + [b], adapter_upsample [D,b] + [D]}:
// m + up(gelu(down(m))), erf GELU whatever the model's act (V-PETL's nn.GELU()).
class BottleneckAdapter : public nn::Module, public Adapted {
 public:
  BottleneckAdapter(int64_t dim, int64_t b, Generator& gen) {
    down = register_module("adapter_downsample", std::make_shared<nn::Linear>(dim, b, true, gen));
    up = register_module("adapter_upsample", std::make_shared<nn::Linear>(b, dim, true, gen));
    // The Adapter class zeroes all four tensors, but the model's init_weights then runs timm's
    // init_weights_vit_timm on every nn.Linear, the adapter's included: trunc-normal weights
    // (std 0.02, absolute cut at +-2) and zero biases are the effective official init. (With the
    // zero init only the up bias would ever get a gradient, since gelu(0) = 0.)
    for (nn::Linear* l : {down.get(), up.get()}) {
      trunc_normal_(l->weight, gen, 0.02);
      l->bias.fill_(0.0);
    }
  }
  std::string type_name() const override { return "Adapter"; }
  std::string method() const override { return "adapter"; }
  bool added_module() const override { return true; }
  // m [B, T, D] -> m + up(gelu(down(m))) [B, T, D]. forward_after_gelu fuses the GELU into the
  // up projection and saves only down(m) [B, T, b] for backward.
  Tensor forward(const Tensor& m) const { return add(m, up->forward_after_gelu(down->forward(m))); }
  std::shared_ptr<nn::Linear> down, up;
};

// A block whose MLP branch ends in the adapter. V-PETL's Block::forward (tuning_mode 'adapter'):
//   h = x; x = ls2(mlp(norm2(x))); x = adapter_module(x); x = drop_path2(x); x = x + h
// so layer scale (when the model has one) acts before the adapter, and drop-path (training only)
// drops the MLP output and the adapter's together.
class AdapterBlock : public nn::Block, public Adapted {
 public:
  AdapterBlock(const nn::Block& base, std::shared_ptr<BottleneckAdapter> a)
      : nn::Block(base), adapter_module(std::move(a)) {
    register_module("adapter_module", adapter_module);
  }
  std::string method() const override { return "adapter"; }
  Tensor forward(const Tensor& x0, const Tensor& mask) const override {
    Tensor x = add(x0, attn_branch(x0, mask));  // [B, T, D]
    Tensor m = mlp->forward(norm2->forward(x));
    if (ls2) m = ls2->forward(m);
    m = adapter_module->forward(m);
    return add(x, drop_path->forward(m));
  }
  std::shared_ptr<BottleneckAdapter> adapter_module;
};

void attach_adapter(nn::VisionTransformer& vit, const MethodOptions& o, Generator& gen) {
  for (size_t i = 0; i < vit.block_list.size(); ++i) {
    auto a = std::make_shared<BottleneckAdapter>(vit.cfg.dim, o.bottleneck, gen);
    if (vit.dtype() != DType::f32) a->to(vit.dtype());
    const std::string n = vit.block_name(i) + ".adapter_module.";
    a->added_names = {n + "adapter_downsample.weight", n + "adapter_downsample.bias", n + "adapter_upsample.weight",
                      n + "adapter_upsample.bias"};
    vit.replace_block(i, std::make_shared<AdapterBlock>(*vit.block_list[i], a));
  }
}

}  // namespace

MethodDescriptor adapter_method() {
  MethodDescriptor d;
  d.name = "adapter";
  d.description =
      "Adapter (V-PETL): m + up(gelu(down(m))) on each block's MLP output m, inside the MLP residual, and the "
      "head; timm layout";
  d.options = {"bottleneck"};
  d.option_help = "--bottleneck b (default 8)";
  d.timm_only = true;
  // V-PETL sets b = D // 96: 8 for ViT-B (methods.md "Adapter").
  d.defaults = [](MethodOptions& o) { o.bottleneck = 8; };
  d.attach = attach_adapter;
  return d;
}

}  // namespace peft::methods
