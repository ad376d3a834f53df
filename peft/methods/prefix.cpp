// Prefix tuning (methods.md "Prefix tuning"; NOAH model/supernet_vision_transformer_timm.py Attention, its
// evident intent): per block M learned keys and M learned values in the projected space (after
// qkv, before the head split), appended to the block's k and v. No projection, bias, LayerNorm
// or pos-embed; the sequence keeps its 1+N rows (prefixes are keys and values only).
#include <fmt/format.h>

#include <cmath>

#include "autograd/ops.h"
#include "peft/methods/adapted.h"
#include "peft/methods/methods.h"

namespace peft::methods {

namespace {

// prefix.keys [L, M, D] and prefix.values [L, M, D], a top-level module (row i feeds block i).
class PrefixTensors : public nn::Module, public Adapted {
 public:
  PrefixTensors(Tensor k, Tensor v) {
    keys = register_parameter("keys", std::move(k));
    values = register_parameter("values", std::move(v));
    // Learned tokens, like prompts: exempt from weight decay.
    no_weight_decay("keys");
    no_weight_decay("values");
  }
  std::string type_name() const override { return "Prefix"; }
  std::string method() const override { return "prefix"; }
  bool added_module() const override { return true; }
  Tensor keys, values;
};

// The block's attention with its prefix rows appended to the keys and values.
class PrefixAttention : public nn::Attention, public Adapted {
 public:
  PrefixAttention(const nn::Attention& base, std::shared_ptr<PrefixTensors> prefix, int64_t index)
      : nn::Attention(base), prefix_(std::move(prefix)), index_(index) {}
  std::string method() const override { return "prefix"; }
  // x [B, T, D]; mask additive [.., T, T] or undefined. last_attention (keep_attention) is
  // [B, H, T, T+M]: the prefix columns come last.
  Tensor forward(const Tensor& x, const Tensor& mask) const override {
    const int64_t B = x.size(0), M = prefix_->keys.size(1), hd = dim / heads;
    QKV p = project_qkv(x);  // [B, H, T, hd] each
    // Block i's rows [1, M, D] split by heads like the projected k, v (head h takes columns
    // [h*hd, (h+1)*hd)): [1, H, M, hd], broadcast over the batch (stride 0; backward sums over B).
    auto rows = [&](const Tensor& t) {
      return expand(split_heads(narrow(t, 0, index_, 1)), {B, heads, M, hd});
    };
    Tensor k = cat({p.k, rows(prefix_->keys)}, 2);    // [B, H, T+M, hd]
    Tensor v = cat({p.v, rows(prefix_->values)}, 2);  // [B, H, T+M, hd]
    Tensor m = mask;
    if (m.defined()) {  // the prefix columns are visible to every query: zeros [.., T, M]
      Shape s = m.sizes();
      s.back() = M;
      m = cat({m, zeros(s, m.dtype())}, m.dim() - 1);
    }
    return attend(p.q, k, v, m);
  }

 private:
  std::shared_ptr<PrefixTensors> prefix_;
  int64_t index_;
};

void attach_prefix(nn::VisionTransformer& vit, const MethodOptions& o, Generator& gen) {
  const int64_t D = vit.cfg.dim, L = vit.cfg.depth, M = o.prompts;
  // NOAH's xavier_uniform_ on each block's [1, M, D] tensor: fan_in = M*D, fan_out = 1*D, so
  // U(+-sqrt(6 / ((M+1) D))) (0.0266 for ViT-B at M = 10); the same bound for every row.
  const double bound = std::sqrt(6.0 / (static_cast<double>(M + 1) * static_cast<double>(D)));
  Tensor k = empty({L, M, D}, vit.dtype()), v = empty({L, M, D}, vit.dtype());
  uniform_(k, gen, -bound, bound);
  uniform_(v, gen, -bound, bound);
  auto prefix = std::make_shared<PrefixTensors>(k, v);
  prefix->added_names = {"prefix.keys", "prefix.values"};
  vit.register_module("prefix", prefix);  // prefix.keys, prefix.values, trainable
  for (size_t i = 0; i < vit.block_list.size(); ++i) {
    nn::Block& b = *vit.block_list[i];
    // Block::on_child_replaced points b.attn at the wrapper; the base tensor names stay.
    b.replace_module("attn", std::make_shared<PrefixAttention>(*b.attn, prefix, static_cast<int64_t>(i)));
  }
}

}  // namespace

MethodDescriptor prefix_method() {
  MethodDescriptor d;
  d.name = "prefix";
  d.description =
      "Prefix tuning (NOAH): prefix.keys, prefix.values [L,M,D] appended to each block's projected k and v, and "
      "the head; timm layout";
  d.options = {"prompts"};
  d.option_help = "--prompts M (default 10)";
  d.timm_only = true;
  d.attach = attach_prefix;
  return d;
}

}  // namespace peft::methods
