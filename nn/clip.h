// CLIP (OpenAI clip/model.py layout): a text tower with a causal transformer (the ViT's Block with
// a causal mask), the openai_clip_visual
// ViT as the image tower under "visual.", and the learned temperature logit_scale (methods.md "CLIP visual tower", "CLIP logits").
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/random.h"
#include "data/text_tokenizer.h"
#include "nn/config.h"
#include "nn/layers.h"
#include "nn/module.h"
#include "nn/vit.h"

namespace peft::nn {

// The "text" object of a CLIP config (interop.md).
struct CLIPTextConfig {
  int64_t vocab_size = 49408, context_length = 77, width = 512, layers = 12, heads = 8;
  // Which tokenizer produces the ids (our extension; absent = "bpe"): data/text_tokenizer.h.
  std::string tokenizer = "bpe";
};

struct CLIPConfig {
  ViTConfig vision;  // style openai_clip_visual, num_classes 0, embed_dim = the CLIP embed_dim
  CLIPTextConfig text;
  int64_t embed_dim = 512;
  void validate() const;  // throws ValueError naming the bad field
};

// Parses {"arch": "clip", "vision": {...}, "text": {...}, "embed_dim": E}. Vision keys that are
// absent take CLIP's values (style openai_clip_visual, act quick_gelu, ln_eps 1e-5, num_classes 0,
// embed_dim E). Unknown keys are errors.
CLIPConfig clip_config_from_json(const std::string& json_text, const std::string& source = "config");
std::string clip_config_to_json(const CLIPConfig& c);
// A preset (clip-micro: the tiny demo/test model with the procedural word tokenizer;
// clip-vit-b32: OpenAI ViT-B/32 shapes) or a JSON file with "arch": "clip".
CLIPConfig load_clip_config(const std::string& name_or_path);
std::vector<std::string> clip_preset_names();
// True when `name_or_path` is a CLIP preset or a JSON file whose "arch" is "clip".
bool is_clip_config(const std::string& name_or_path);

class CLIP : public Module {
 public:
  CLIP(const CLIPConfig& c, uint64_t seed = 0);
  std::string type_name() const override { return "CLIP"; }

  // images [B, C, S, S] -> raw image features [B, E] (methods.md "CLIP visual tower").
  Tensor encode_image(const Tensor& images);
  // tokens [K, T] int64 (T <= context_length) -> raw text features u [K, E] (methods.md "CLIP text tower").
  Tensor encode_text(const Tensor& tokens);
  // The text tower on given input embeddings (prompt learning): embeddings [K, T, W] replace the token
  // lookup; pooling uses argmax(tokens[k]) of the original ids [K, T]. Positions after the last
  // row's EOT are skipped (causal mask: they cannot change any u_k).
  Tensor encode_text_embeddings(const Tensor& embeddings, const Tensor& tokens);
  // exp(logit_scale): the temperature multiplier s of methods.md "CLIP logits".
  double logit_scale_exp() const;

  CLIPConfig cfg;
  std::shared_ptr<VisionTransformer> visual;
  std::shared_ptr<Embedding> token_embedding;  // [V, W]
  Tensor positional_embedding;                 // [T, W]
  std::shared_ptr<ModuleList> resblocks;       // transformer.resblocks.{i}
  std::vector<std::shared_ptr<Block>> text_blocks;
  std::shared_ptr<LayerNorm> ln_final;
  Tensor text_projection;  // [W, E]
  // Edits the text tower's token sequence (after the position embedding, before each block),
  // registered under the name given to set_text_hook; the vision tower has its own
  // (visual->set_token_hook). At most one.
  std::shared_ptr<TokenHook> text_hook;
  void set_text_hook(const std::string& name, std::shared_ptr<TokenHook> hook);
  // Replaces text block i (a subclass sharing the block's modules keeps every tensor name).
  void replace_text_block(size_t i, std::shared_ptr<Block> b);
  Tensor logit_scale;      // 0-d, log of the multiplier

 private:
  Tensor pooled_text_features(const Tensor& x, const std::vector<int64_t>& eot);
  Generator drop_gen_;  // unused stream for the blocks' (p = 0) dropout modules
};

// The EOT position of each row: the first position of its largest id (argmax, methods.md "CLIP text tower").
std::vector<int64_t> eot_positions(const Tensor& tokens);

// The tokenizer of a CLIP config (data/text_tokenizer.h chooses it by name): rows are checked
// against text.vocab_size and truncated to text.context_length.
data::TokenizerSpec tokenizer_spec(const CLIPTextConfig& c);
class TextTokenizer : public data::TextTokenizer {
 public:
  TextTokenizer(const CLIPTextConfig& c, const std::string& vocab_path)
      : data::TextTokenizer(tokenizer_spec(c), vocab_path), cfg_(c) {}
  const CLIPTextConfig& config() const { return cfg_; }

 private:
  CLIPTextConfig cfg_;
};
using data::default_bpe_vocab;
using data::read_text_lines;

}  // namespace peft::nn
