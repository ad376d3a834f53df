// libFuzzer harness: arbitrary text as a model config JSON (nn::vit_config_from_json). It may only
// throw peft::Error subclasses, and a config it accepts must survive a JSON round trip unchanged.
#include <cstdint>
#include <string>

#include "core/error.h"
#include "nn/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace peft;
  const std::string text(reinterpret_cast<const char*>(data), size);
  nn::ViTConfig c;
  try {
    c = nn::vit_config_from_json(text, "fuzz.json");
  } catch (const Error&) {
    return 0;
  }
  // Accepted: it is valid, and writing it out and reading it back gives the same config.
  nn::ViTConfig back = nn::vit_config_from_json(nn::vit_config_to_json(c), "roundtrip");
  if (nn::vit_config_to_json(back) != nn::vit_config_to_json(c)) __builtin_trap();
  (void)c.num_patches();
  (void)c.mlp_hidden();
  return 0;
}
