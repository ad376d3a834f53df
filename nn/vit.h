// Vision Transformer in the timm and OpenAI-CLIP-visual layouts (methods.md "timm ViT", "CLIP visual tower"). Every layer
// is wrappable (virtual forward, Module::replace_module keeps the tensor names), blocks take an
// attention mask, and a TokenHook edits the token sequence: the extension points PEFT methods use.
#pragma once
#include <memory>

#include "core/random.h"
#include "nn/config.h"
#include "nn/layers.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "nn/token_hook.h"

namespace peft::nn {

// Patch embedding: a stride-P convolution as one GEMM. timm: patch_embed.proj.{weight,bias};
// openai: conv1.weight (no bias).
class PatchEmbed : public Module {
 public:
  PatchEmbed(const ViTConfig& c, bool bias, Generator& gen);
  std::string type_name() const override { return "PatchEmbed"; }
  virtual Tensor forward(const Tensor& images) const;  // [B, C, S, S] -> [B, N, D]
  Tensor weight, bias;
};

// Multi-head self-attention with a fused qkv projection (timm: qkv, proj;
// openai: in_proj_weight, in_proj_bias, out_proj).
class Attention : public Module {
 public:
  Attention(const ViTConfig& c, Generator& gen);
  std::string type_name() const override { return "Attention"; }
  // x: [B, T, D]; mask: additive [T, T] (e.g. causal), undefined for none.
  virtual Tensor forward(const Tensor& x, const Tensor& mask = Tensor()) const;

  // The pieces of forward, for subclasses that change one step:
  // lin(x; qkv) [B, T, 3D] split into q, k, v [B, H, T, hd] (strided head views, no copies).
  struct QKV {
    Tensor q, k, v;
  };
  QKV project_qkv(const Tensor& x) const;
  Tensor split_heads(const Tensor& t) const;   // [B, T, D] -> [B, H, T, hd]
  // softmax(q k^T hd^-0.5 + mask) v, heads concatenated, then lin(.; proj): [B, Tq, D].
  Tensor attend(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask = Tensor()) const;
  Tensor project_out(const Tensor& heads_concat) const;  // lin(.; proj) (virtual through proj)

  // Cross-attention with this layer's projections: queries from xq [B, Tq, D], keys and values
  // from xkv [B or 1, Tk, D] (a batch of 1 is broadcast after projecting once).
  Tensor cross(const Tensor& xq, const Tensor& xkv) const;

  // The fused q|k|v linear. timm: the child "qkv". openai (nn.MultiheadAttention names): its
  // tensors sit on attn itself (in_proj_weight, in_proj_bias), so it is no child.
  // replace_qkv swaps in a wrapper either way. qkv_slot is where tensors that belong to the
  // fused linear are registered: the qkv child (attn.qkv.X) or, openai, a child "in_proj" that
  // holds only such tensors (attn.in_proj.X), so that a plain model stays a plain state dict.
  void replace_qkv(std::shared_ptr<Linear> wrapper);
  Module& qkv_slot();
  const char* qkv_name() const { return openai_names ? "in_proj" : "qkv"; }

  int64_t dim, heads;
  bool openai_names = false;  // style openai_clip_visual (and the CLIP text tower)
  std::shared_ptr<Linear> qkv, proj;
  std::shared_ptr<Module> in_proj;  // openai: the qkv_slot holder, created on first use
  bool keep_attention = false;      // store the last attention probabilities (attention maps)
  mutable Tensor last_attention;    // [B, H, T, T] when keep_attention

 protected:
  void on_child_replaced(const std::string& name, const std::shared_ptr<Module>& m) override;
};

class Mlp : public Module {
 public:
  Mlp(const ViTConfig& c, Generator& gen, Generator* drop_gen);
  std::string type_name() const override { return "Mlp"; }
  virtual Tensor forward(const Tensor& x) const;  // fc2(act(fc1(x)))
  std::shared_ptr<Linear> fc1, fc2;
  std::string act;
  std::shared_ptr<Dropout> drop;

 protected:
  // drop is not a registered child (it has no tensors): pass train()/eval() on to it.
  void on_train(bool on) override { drop->train(on); }
  void on_child_replaced(const std::string& name, const std::shared_ptr<Module>& m) override;
};

// timm LayerScale (ls1, ls2): x * gamma per channel; gamma [D].
class LayerScale : public Module {
 public:
  LayerScale(int64_t dim, double init_value);
  std::string type_name() const override { return "LayerScale"; }
  Tensor forward(const Tensor& x) const;  // x [..., D]
  Tensor gamma;
};

class Block : public Module {
 public:
  Block(const ViTConfig& c, double drop_path, Generator& gen, Generator* drop_gen);
  std::string type_name() const override { return "Block"; }
  // x + attn_branch(x), then + mlp_branch(x). mask: additive [T, T] for the attention.
  virtual Tensor forward(const Tensor& x, const Tensor& mask = Tensor()) const;
  // The two residual branches, for subclasses that add a path beside or between them:
  Tensor attn_branch(const Tensor& x, const Tensor& mask = Tensor()) const;  // drop_path(ls1(attn(norm1(x))))
  Tensor mlp_branch(const Tensor& x) const;                                  // drop_path(ls2(mlp(norm2(x))))
  std::shared_ptr<LayerNorm> norm1, norm2;
  std::shared_ptr<Attention> attn;
  std::shared_ptr<Mlp> mlp;
  std::shared_ptr<DropPath> drop_path;
  std::shared_ptr<LayerScale> ls1, ls2;  // layer_scale only

 protected:
  void on_train(bool on) override { drop_path->train(on); }  // eval(): no drop-path
  void on_child_replaced(const std::string& name, const std::shared_ptr<Module>& m) override;
};

class VisionTransformer : public Module {
 public:
  VisionTransformer(const ViTConfig& c, uint64_t seed = 0);
  std::string type_name() const override { return "VisionTransformer"; }

  // images [B, C, S, S] float -> logits [B, K] (or features [B, F] when num_classes == 0)
  Tensor forward(const Tensor& images);
  // Pooled features before the head: [B, D] (timm) or [B, E] (openai, after ln_post and proj).
  Tensor forward_features(const Tensor& images);
  Tensor forward_head(const Tensor& features) const;

  // Replaces the head by a fresh one for k classes (k = 0 removes it).
  void reset_head(int64_t k, Generator& gen);

  ViTConfig cfg;
  Generator drop_gen;  // dropout / drop-path / prompt-dropout stream (seeded)
  std::shared_ptr<PatchEmbed> patch_embed;
  // timm [1,1,D] (undefined without class_token), [1,pos_embed_rows(),D]; openai [D], [1+N,D]
  Tensor cls_token, pos_embed;
  Tensor reg_token;                     // timm reg_tokens > 0: [1,R,D]
  std::shared_ptr<LayerNorm> ln_pre;    // openai "ln_pre" / timm "norm_pre"
  std::shared_ptr<ModuleList> blocks;
  std::shared_ptr<LayerNorm> norm;      // timm "norm" / openai "ln_post" (undefined with fc_norm)
  std::shared_ptr<LayerNorm> fc_norm;   // timm fc_norm: after pooling
  Tensor proj;                          // openai [D, E]
  std::shared_ptr<Linear> head;         // undefined when num_classes == 0

  // Edits the token sequence (after the embedding, before each block); registered as a child
  // under the name given to set_token_hook. At most one.
  std::shared_ptr<TokenHook> token_hook;
  void set_token_hook(const std::string& name, std::shared_ptr<TokenHook> hook);

  std::vector<std::shared_ptr<Block>> block_list;
  // Activation checkpointing per block (--checkpoint-activations, timm's set_grad_checkpointing):
  // in training, each block's forward keeps only its input and backward recomputes it
  // (autograd/checkpoint.h), replaying drop_gen's draws. Same gradients, less memory, one more
  // forward per step. Any block subclass a method installs is checkpointed the same way.
  bool checkpoint_activations = false;
  // Replaces block i (a subclass sharing the block's modules keeps every tensor name).
  void replace_block(size_t i, std::shared_ptr<Block> b);
  // The module path of block i ("blocks.3" or "transformer.resblocks.3").
  std::string block_name(size_t i) const;

  DType dtype() const { return pos_embed.dtype(); }
  // The final LayerNorm (norm, or fc_norm when the model pools first) and its module name.
  LayerNorm& final_norm() const { return norm ? *norm : *fc_norm; }
  std::string final_norm_name() const;
  // The patch embedding's module name ("patch_embed.proj" or "conv1") and a way to wrap it.
  std::string patch_embed_name() const;
  void replace_patch_embed(std::shared_ptr<PatchEmbed> p);

 protected:
  void on_child_replaced(const std::string& name, const std::shared_ptr<Module>& m) override;

 private:
  std::shared_ptr<Module> patch_embed_holder_;  // timm: "patch_embed" holding "proj"
};

}  // namespace peft::nn
