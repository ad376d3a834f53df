// The CLIP method descriptors, one per file in peft/methods/clip_*.cpp (the registry in
// peft/clip_methods.cpp lists them), and the helpers their heads share.
#pragma once
#include "nn/clip.h"
#include "peft/clip_methods.h"
#include "peft/zeroshot.h"

namespace peft::methods {

ClipMethodDescriptor clip_zeroshot_method();                   // clip_zeroshot.cpp
ClipMethodDescriptor clip_taskres_method();                    // clip_taskres.cpp
ClipMethodDescriptor clip_coop_method();                       // clip_coop.cpp
ClipMethodDescriptor clip_adapter_method();                    // clip_adapter.cpp
ClipMethodDescriptor clip_tip_adapter_method(bool finetune);   // clip_tip_adapter.cpp
ClipMethodDescriptor clip_cocoop_method();                     // clip_cocoop.cpp
ClipMethodDescriptor clip_kgcoop_method();                     // clip_kgcoop.cpp
ClipMethodDescriptor clip_lora_method();                       // clip_lora.cpp
ClipMethodDescriptor clip_maple_method();                      // clip_maple.cpp

// CoCoOp's and KgCoOp's initial context [M, W] in the model dtype (clip_cocoop.cpp): with M = 4 the
// token embeddings of "a photo of a" (the official CTX_INIT), otherwise N(0, 0.02^2).
Tensor photo_context_init(nn::CLIP& clip, int64_t M, Generator& gen);

// The CLIP model's working dtype.
DType model_dtype(const nn::CLIP& clip);
// The raw text features u [K, E] of the prompt rows, without autograd (the text tower is frozen).
Tensor frozen_text_features(nn::CLIP& clip, const Tensor& tokens);
// The prompt lines for M learned context rows at positions 1..M (CoOp and its successors): ValueError
// naming the method when a line's EOT sits at or before M; trimmed after the last EOT, since later
// positions cannot change any feature (causal mask). tokens0 [K, T] -> [K, Tm].
Tensor context_prompt_tokens(const std::string& method, const Tensor& tokens0, int64_t M);
// The zero-shot classifier of methods.md "CLIP logits": norm(mean_t norm(u)) over each class's prompts.
Tensor zero_shot_classifier(nn::CLIP& clip, const PromptTokens& p);

}  // namespace peft::methods
