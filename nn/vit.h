// Vision Transformer in the timm and OpenAI-CLIP-visual layouts (methods.md 2.1, 2.2), with the
// slots PEFT methods attach to (VPT prompts, CVPT prompts, AdaptFormer adapters, SSF, LoRA).
#pragma once
#include <memory>

#include "core/random.h"
#include "nn/config.h"
#include "nn/layers.h"
#include "nn/linear.h"
#include "nn/module.h"

namespace peft::nn {

// Patch embedding: a stride-P convolution as one GEMM. timm: patch_embed.proj.{weight,bias};
// openai: conv1.weight (no bias).
class PatchEmbed : public Module {
 public:
  PatchEmbed(const ViTConfig& c, bool bias, Generator& gen);
  std::string type_name() const override { return "PatchEmbed"; }
  Tensor forward(const Tensor& images) const;  // [B, C, S, S] -> [B, N, D]
  void add_ssf(Generator& gen);                // methods.md 10: on the patch tokens
  // Folds the SSF scale into the filters and the shift into the bias. Without a bias (openai
  // conv1), the shift goes into `shift_rows` [N, D] instead: the patch rows of the position
  // embedding, added right after this op (methods.md 18). StateError when it has nowhere to go.
  void merge_adapters(const Tensor& shift_rows = Tensor());
  Tensor weight, bias, ssf_scale, ssf_shift;
};

// Multi-head self-attention with a fused qkv projection (timm: qkv, proj;
// openai: in_proj_weight, in_proj_bias, out_proj).
class Attention : public Module {
 public:
  Attention(const ViTConfig& c, Generator& gen);
  std::string type_name() const override { return "Attention"; }
  Tensor forward(const Tensor& x) const;  // x: [B, T, D]
  // MHA(xq, xkv) with this block's frozen q|k|v rows and output projection (CVPT, methods.md 9):
  // queries from xq [B, Tq, D], keys/values from xkv [B or 1, Tk, D].
  Tensor cross(const Tensor& xq, const Tensor& xkv) const;
  // PEFT slots on the fused q|k|v linear (methods.md 10, 11, 18). timm: they sit on the "qkv"
  // child (attn.qkv.lora_A). openai: the fused weight lives on attn itself (in_proj_weight), so
  // the slots are registered under a child "in_proj" that holds only them (attn.in_proj.lora_A),
  // and a merged model is still a plain OpenAI state dict.
  void add_qkv_lora(int64_t rank, double alpha, Generator& gen);
  void add_qkv_ssf(Generator& gen);
  const char* qkv_name() const { return openai_names ? "in_proj" : "qkv"; }
  int64_t dim, heads;
  bool openai_names = false;  // style openai_clip_visual (and the CLIP text tower)
  std::shared_ptr<Linear> qkv, proj;
  std::shared_ptr<Module> in_proj;  // openai: the slot holder, created by the first add_qkv_*
  bool keep_attention = false;          // store the last attention probabilities (attention maps)
  mutable Tensor last_attention;        // [B, H, T, T] when keep_attention
};

class Mlp : public Module {
 public:
  Mlp(const ViTConfig& c, Generator& gen, Generator* drop_gen);
  std::string type_name() const override { return "Mlp"; }
  Tensor forward(const Tensor& x) const;  // fc2(act(fc1(x)))
  std::shared_ptr<Linear> fc1, fc2;
  std::string act;
  std::shared_ptr<Dropout> drop;

 protected:
  // drop is not a registered child (it has no tensors): pass train()/eval() on to it.
  void on_train(bool on) override { drop->train(on); }
};

// AdaptFormer's parallel bottleneck (methods.md 12): 0.1 * up(dropout(relu(down(x)))).
class AdaptMlp : public Module {
 public:
  AdaptMlp(int64_t dim, int64_t bottleneck, double dropout_p, Generator& gen, Generator* drop_gen);
  std::string type_name() const override { return "AdaptMlp"; }
  Tensor forward(const Tensor& x) const;
  std::shared_ptr<Linear> down_proj, up_proj;
  std::shared_ptr<Dropout> drop;
  double scale = 0.1;

 protected:
  void on_train(bool on) override { drop->train(on); }  // eval(): no adapter dropout (methods.md 1.9)
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
  // cvpt_prompts: this block's CVPT prompts [1, M, D] (undefined when CVPT is off).
  Tensor forward(const Tensor& x, const Tensor& cvpt_prompts = Tensor()) const;
  std::shared_ptr<LayerNorm> norm1, norm2;
  std::shared_ptr<Attention> attn;
  std::shared_ptr<Mlp> mlp;
  std::shared_ptr<DropPath> drop_path;
  std::shared_ptr<LayerScale> ls1, ls2;  // layer_scale only
  std::shared_ptr<AdaptMlp> adaptmlp;  // set by the adaptformer method

 protected:
  void on_train(bool on) override { drop_path->train(on); }  // eval(): no drop-path
};

// Prompt tensors of VPT / CVPT, registered under "vpt" / "cvpt" so they are named vpt.prompts.
class Prompts : public Module {
 public:
  std::string type_name() const override { return "Prompts"; }
  Tensor prompts;  // [L or 1, M, D]
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

  // PEFT slots (methods.md 7-9), set by the methods in peft/.
  std::shared_ptr<Prompts> vpt;   // vpt.prompts [1 or L, M, D]
  bool vpt_deep = false;
  std::shared_ptr<Prompts> cvpt;  // cvpt.prompts [L, M, D]
  double prompt_dropout = 0.0;

  std::vector<std::shared_ptr<Block>> block_list;

  DType dtype() const { return pos_embed.dtype(); }
  // The final LayerNorm (norm, or fc_norm when the model pools first).
  LayerNorm& final_norm() const { return norm ? *norm : *fc_norm; }

 private:
  Tensor prompt_rows(int64_t layer, int64_t batch, const Tensor& p);
};

}  // namespace peft::nn
