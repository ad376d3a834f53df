// A module that edits a transformer's token sequence at fixed points: once after the embedding
// (before any pre-norm) and before each block. Prompt-based methods implement it (they add rows
// to the sequence or replace rows); the model runs the hook without knowing which method it is.
#pragma once
#include <cstdint>

#include "nn/module.h"

namespace peft::nn {

class TokenHook : public Module {
 public:
  std::string type_name() const override { return "TokenHook"; }
  // x [B, T, D] after the position embedding, before ln_pre / norm_pre -> [B, T', D].
  virtual Tensor after_embed(const Tensor& x) { return x; }
  // x [B, T, D] before block i -> [B, T', D].
  virtual Tensor before_block(int64_t /*i*/, const Tensor& x) { return x; }
  // Rows the hook adds right after the prefix tokens (CLS, registers): mean pooling skips them.
  virtual int64_t tokens_after_prefix() const { return 0; }
  // Rows the hook adds anywhere (for memory estimates).
  virtual int64_t added_tokens() const { return tokens_after_prefix(); }
};

}  // namespace peft::nn
