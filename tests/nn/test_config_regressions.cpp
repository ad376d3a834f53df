// Regressions found by tests/fuzz/fuzz_config: configs that reached undefined behaviour (a float
// too large for an integer field, sizes whose products overflow), now refused with ValueError.
#include <gtest/gtest.h>

#include "core/error.h"
#include "nn/config.h"
#include "tests/testing.h"

namespace peft::nn {
namespace {

TEST(ConfigRegressions, HugeFloatForAnIntegerField) {
  // The fuzzer's input: num_classes = 6.67e69 (UBSan: outside the range of 'long').
  const std::string crash =
      R"({"style": "openai_clip_visual", "image_size": 224, "patch_size": 32, "dim": 768, "depth": 12, "heads": 12, )"
      R"("act": "quick_gelu", "ln_eps": 1e-05, "embed_dim": 512, "num_classes": )"
      "6666666666666666666666666666666666666666666666666666666666666666666660}";
  EXPECT_THROW_MSG(vit_config_from_json(crash, "fuzz.json"), ValueError, "fuzz.json", "'num_classes' must be an integer");
  EXPECT_THROW_MSG(vit_config_from_json(R"({"dim": 1e70})"), ValueError, "'dim' must be an integer", "1e+70");
  EXPECT_THROW_MSG(vit_config_from_json(R"({"depth": 2.5})"), ValueError, "'depth' must be an integer", "2.5");
}

TEST(ConfigRegressions, WholeFloatsAreStillAccepted) {
  ViTConfig c = vit_config_from_json(R"({"dim": 96.0, "heads": 3, "depth": 2.0})");
  EXPECT_EQ(c.dim, 96);
  EXPECT_EQ(c.depth, 2);
}

TEST(ConfigRegressions, SizesThatWouldOverflowAreRefused) {
  // grid() * grid() and dim * mlp_ratio must fit in int64.
  EXPECT_THROW_MSG(vit_config_from_json(R"({"image_size": 4611686018427387904, "patch_size": 1})"), ValueError,
                   "too large");
  EXPECT_THROW_MSG(vit_config_from_json(R"({"dim": 4611686018427387904, "heads": 1})"), ValueError, "too large");
  EXPECT_THROW_MSG(vit_config_from_json(R"({"mlp_ratio": 1e300})"), ValueError, "mlp_ratio must be <= 1024");
  EXPECT_THROW_MSG(vit_config_from_json(R"({"num_classes": 9223372036854775807})"), ValueError, "too large");
}

TEST(ConfigRegressions, PresetsStillValidate) {
  for (const auto& name : vit_preset_names()) EXPECT_NO_THROW(load_vit_config(name)) << name;
}

}  // namespace
}  // namespace peft::nn
