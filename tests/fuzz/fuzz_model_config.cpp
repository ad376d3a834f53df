// libFuzzer harness (issue 20): config JSON -> the memory guard's size of the model -> the model.
// Every config the reader accepts gets a parameter count from the config alone
// (peft::config_param_count, what check_model_memory guards with before anything is allocated);
// models of up to 200k parameters are then built, and the count must be exactly theirs, so the
// guard cannot under-count some layout (registers, layer scale, openai style, no head, ...).
#include <cmath>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "nn/config.h"
#include "nn/vit.h"
#include "peft/memory_guard.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace peft;
  const std::string text(reinterpret_cast<const char*>(data), size);
  nn::ViTConfig c;
  try {
    c = nn::vit_config_from_json(text, "fuzz_model.json");
  } catch (const Error&) {
    return 0;
  }
  const double n = config_param_count(c);
  if (!(n > 0) || !std::isfinite(n)) __builtin_trap();
  try {
    check_model_memory(c, "fuzz_model.json");  // may refuse (ValueError), never anything else
  } catch (const Error&) {
  }
  if (n > 2e5) return 0;
  try {
    nn::VisionTransformer vit(c, 0);
    if (static_cast<double>(vit.num_parameters()) != n) __builtin_trap();
  } catch (const Error&) {
  }
  return 0;
}
