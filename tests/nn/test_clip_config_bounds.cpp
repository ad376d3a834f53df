// CLIP config bounds (issue 20): every text size has an upper bound like the ViT config's, integer
// keys take whole numbers only, and an error names the key and the source.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "nn/clip.h"

using namespace peft;

namespace {

nlohmann::json micro_json() { return nlohmann::json::parse(nn::clip_config_to_json(nn::load_clip_config("clip-micro"))); }

std::string error_of(const nlohmann::json& j) {
  try {
    nn::clip_config_from_json(j.dump(), "bad_clip.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "(accepted)";
}

void expect_refused(const nlohmann::json& j, const std::string& key) {
  const std::string m = error_of(j);
  EXPECT_NE(m.find("bad_clip.json"), std::string::npos) << m;
  EXPECT_NE(m.find(key), std::string::npos) << m;
}

}  // namespace

TEST(ClipConfigBounds, ThePresetsAndTheirJsonPass) {
  for (const auto& name : nn::clip_preset_names()) {
    auto j = nlohmann::json::parse(nn::clip_config_to_json(nn::load_clip_config(name)));
    EXPECT_EQ(error_of(j), "(accepted)") << name;
  }
}

TEST(ClipConfigBounds, HugeTextSizesAreRefusedNamingTheKey) {
  // "context_length": 2^58 + 1 ended in "double free or corruption" (a wrapped [T, W] allocation).
  for (const char* key : {"context_length", "width", "layers", "heads", "vocab_size"}) {
    for (int64_t v : {int64_t{288230376151711745}, int64_t{1} << 40, INT64_MAX}) {
      auto j = micro_json();
      j["text"][key] = v;
      SCOPED_TRACE(std::string(key) + " = " + std::to_string(v));
      expect_refused(j, std::string("text.") + key);
    }
  }
  auto j = micro_json();
  j["embed_dim"] = 288230376151711745;
  j["vision"]["embed_dim"] = 288230376151711745;
  expect_refused(j, "embed_dim");
}

TEST(ClipConfigBounds, IntegerKeysTakeWholeNumbersInRange) {
  auto j = micro_json();
  j["text"]["context_length"] = 1e70;  // a float: converting it to int64 is undefined behaviour
  expect_refused(j, "text.context_length");
  j = micro_json();
  j["text"]["width"] = 64.5;
  expect_refused(j, "text.width");
  j = micro_json();
  j["text"]["layers"] = 18446744073709551615ull;  // above INT64_MAX
  expect_refused(j, "text.layers");
  j = micro_json();
  j["text"]["layers"] = 2.0;  // a whole float is fine
  EXPECT_EQ(error_of(j), "(accepted)");
}

TEST(ClipConfigBounds, ArchOfAnotherTypeIsAValueError) {
  // Found by fuzz_clip_config: a json type_error escaped instead of a peft::Error.
  for (const char* text : {R"({"arch": {"vocab_size": 60}})", R"({"arch": 3, "vision": {}, "text": {}})"}) {
    try {
      nn::clip_config_from_json(text, "bad_clip.json");
      ADD_FAILURE() << "accepted " << text;
    } catch (const ValueError& e) {
      EXPECT_NE(std::string(e.what()).find("\"arch\" must be \"clip\""), std::string::npos) << e.what();
    }
  }
}
