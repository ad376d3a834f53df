// libFuzzer harness: arbitrary text as a CLIP config JSON (nn::clip_config_from_json, issue 20:
// "context_length": 2^58 + 1 ended in "double free or corruption"). It may only throw peft::Error
// subclasses; a config it accepts survives a JSON round trip unchanged, and when its model is
// small the model is built (sizes of every tensor come from the config).
#include <cstdint>
#include <string>

#include "core/error.h"
#include "nn/clip.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace peft;
  const std::string text(reinterpret_cast<const char*>(data), size);
  nn::CLIPConfig c;
  try {
    c = nn::clip_config_from_json(text, "fuzz_clip.json");
  } catch (const Error&) {
    return 0;
  }
  nn::CLIPConfig back = nn::clip_config_from_json(nn::clip_config_to_json(c), "roundtrip");
  if (nn::clip_config_to_json(back) != nn::clip_config_to_json(c)) __builtin_trap();
  // Build only models of at most ~4M parameters (the bounds allow far larger ones; building them
  // is a memory question, not a parsing one). The estimate uses doubles: no overflow.
  const auto& t = c.text;
  const auto& v = c.vision;
  const double text_params = 12.0 * t.layers * t.width * t.width + double(t.vocab_size) * t.width +
                             double(t.context_length) * t.width + double(t.width) * c.embed_dim;
  const double vision_params = 12.0 * v.depth * v.dim * v.dim * (v.mlp_ratio / 4.0 + 0.5) +
                               double(v.pos_embed_rows()) * v.dim + double(v.in_chans) * v.patch_size * v.patch_size * v.dim +
                               double(v.dim) * c.embed_dim;
  if (text_params + vision_params > 4e6) return 0;
  try {
    nn::CLIP model(c, 0);
    (void)model.logit_scale_exp();
  } catch (const Error&) {
  }
  return 0;
}
