// The check code path against the PyTorch reference (tools/reference/peft_reference.py), per
// method; SSF / LoRA merges; adapter save -> load round trips; check's input errors.
#include <unistd.h>

#include <filesystem>
#include <set>

#include "autograd/grad_mode.h"
#include "nn/checkpoint.h"
#include "nn/config.h"
#include "core/io/safetensors.h"
#include "peft/merge.h"
#include "peft/method.h"
#include "peft/methods/vision_check.h"
#include "tests/peft/method_testing.h"
#include "tests/peft/parity_testing.h"
#include "tests/testing.h"

namespace peft {
namespace {

using testing::randomize_trainable;
using testing::trainable_set;
using testing::expect_matches_reference;
using testing::fixture_request;

namespace fs = std::filesystem;
const std::string kDir = std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/peft/";

// A scratch folder removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("peft_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string operator/(const std::string& f) const { return (path / f).string(); }
};



TEST(PeftParity, Bitfit) { expect_matches_reference("bitfit"); }
TEST(PeftParity, VptShallow) { expect_matches_reference("vpt-shallow"); }
TEST(PeftParity, VptDeep) { expect_matches_reference("vpt-deep"); }
TEST(PeftParity, VptDeepMeanPool) { expect_matches_reference("vpt-deep-mean"); }
TEST(PeftParity, Cvpt) { expect_matches_reference("cvpt"); }
TEST(PeftParity, Ssf) { expect_matches_reference("ssf"); }
TEST(PeftParity, SsfMeanPool) { expect_matches_reference("ssf-mean"); }
TEST(PeftParity, Lora) { expect_matches_reference("lora"); }
TEST(PeftParity, Adaptformer) { expect_matches_reference("adaptformer"); }

// Without an adapter the head comes from the base file (its K fits): `linear` gives the plain
// ViT's logits and only head gradients.
TEST(PeftCheck, WithoutAdapterUsesTheBaseHead) {
  TempDir tmp;
  VisionCheckRequest r = fixture_request("lora");
  r.method = "linear";
  r.adapter.clear();
  // The fixture batch has label 3 (for the adapters' 4-class heads); the base head has 3 classes.
  Tensor images = SafetensorsFile::open(r.inputs).get("images");
  save_safetensors(tmp / "batch3.safetensors", {{"images", images}, {"labels", from_vector_i64({1, 2}, {2})}});
  r.inputs = tmp / "batch3.safetensors";
  nn::NamedTensors got = run_vision_check(r);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[2].first, "grad.head.weight");
  EXPECT_EQ(got[3].first, "grad.head.bias");
  nn::VisionTransformer plain(nn::load_vit_config(r.config), 0);
  nn::load_weights(plain, r.weights);
  plain.eval();
  Tensor img = SafetensorsFile::open(r.inputs).get("images");
  EXPECT_LT(max_abs_diff(got[0].second, plain.forward(img)), 1e-6);
  EXPECT_EQ(got[1].second.dim(), 0);  // loss is 0-d
}

TEST(PeftCheck, BadInputsNameTheFile) {
  TempDir tmp;
  VisionCheckRequest r = fixture_request("vpt-deep");
  Generator g(1);
  save_safetensors(tmp / "nolabels.safetensors", {{"images", randn({2, 3, 8, 8}, g)}});
  r.inputs = tmp / "nolabels.safetensors";
  EXPECT_THROW_MSG(run_vision_check(r), IOError, "nolabels.safetensors", "labels");
  save_safetensors(tmp / "badimg.safetensors", {{"images", randn({2, 3, 4, 4}, g)}, {"labels", from_vector_i64({0, 1}, {2})}});
  r.inputs = tmp / "badimg.safetensors";
  EXPECT_THROW_MSG(run_vision_check(r), ShapeError, "badimg.safetensors", "[2, 3, 4, 4]");
  save_safetensors(tmp / "badlab.safetensors", {{"images", randn({2, 3, 8, 8}, g)}, {"labels", from_vector_i64({0, 4}, {2})}});
  r.inputs = tmp / "badlab.safetensors";
  EXPECT_THROW_MSG(run_vision_check(r), ValueError, "badlab.safetensors", "labels[1] = 4");
  // An adapter tensor the method does not have.
  r = fixture_request("vpt-deep");
  auto ad = nn::read_tensors(r.adapter);
  ad["vpt.prompt"] = ad["vpt.prompts"];
  save_safetensors(tmp / "adapter.safetensors", nn::NamedTensors(ad.begin(), ad.end()));
  r.adapter = tmp / "adapter.safetensors";
  EXPECT_THROW_MSG(run_vision_check(r), IOError, "adapter.safetensors", "vpt.prompt");
  // Options that do not fit the adapter: 4 prompts against a [2, 3, 16] tensor.
  r = fixture_request("vpt-deep");
  r.options.prompts = 4;
  EXPECT_THROW_MSG(run_vision_check(r), IOError, "vpt.prompts");
  r.options.prompts = 0;
  EXPECT_THROW_MSG(run_vision_check(r), MethodError, "--prompts");
}

// ---------------------------------------------------------------- merge

nn::ViTConfig tiny() {
  nn::ViTConfig c;
  c.image_size = 8; c.patch_size = 4; c.dim = 8; c.depth = 2; c.heads = 2; c.num_classes = 3;
  return c;
}


TEST(PeftMerge, SsfAndLoraFoldIntoAPlainViT) {
  for (const std::string pool : {"cls", "mean"}) {
    for (const std::string method : {"ssf", "lora"}) {
      SCOPED_TRACE(method + " pool " + pool);
      nn::ViTConfig c = tiny();
      c.pool = pool;
      nn::VisionTransformer vit(c, 1);
      Generator g(2);
      MethodOptions o;
      o.rank = 3;
      o.alpha = 5.0;
      o.targets = "attn.qkv,attn.proj,mlp.fc1,mlp.fc2";
      apply_method(vit, method, o, 4, g);
      randomize_trainable(vit, 6);
      vit.eval();
      Generator gi(5);
      Tensor img = randn({3, 3, 8, 8}, gi);
      Tensor before = vit.forward(img).detach();
      merge_adapters(vit);
      EXPECT_LE(max_abs_diff(vit.forward(img), before), 1e-5);
      // The plain checkpoint: base names + head only, loads strictly into a plain ViT.
      nn::NamedTensors sd = plain_state_dict(vit);
      for (auto& [n, _] : sd) {
        EXPECT_EQ(n.find("lora_"), std::string::npos) << n;
        EXPECT_EQ(n.find("ssf_"), std::string::npos) << n;
      }
      c.num_classes = 4;
      nn::VisionTransformer plain(c, 9);
      plain.load_state_dict(std::map<std::string, Tensor>(sd.begin(), sd.end()), /*strict=*/true);
      plain.eval();
      EXPECT_LE(max_abs_diff(plain.forward(img), before), 1e-5);
      // The merge really changed the base weights (it is not vacuous).
      nn::VisionTransformer base(tiny(), 1);
      EXPECT_GT(max_abs_diff(plain.parameter("blocks.0.attn.qkv.weight"), base.parameter("blocks.0.attn.qkv.weight")), 1e-3);
    }
  }
}

TEST(PeftMerge, OtherMethodsDoNotMerge) {
  EXPECT_TRUE(is_mergeable_method("ssf"));
  EXPECT_TRUE(is_mergeable_method("lora"));
  for (const char* m : {"vpt-deep", "cvpt", "adaptformer"}) {
    EXPECT_FALSE(is_mergeable_method(m));
    nn::VisionTransformer vit(tiny(), 1);
    Generator g(2);
    apply_method(vit, m, MethodOptions{}, 3, g);
    EXPECT_THROW(merge_adapters(vit), ValueError) << m;
  }
}

// ---------------------------------------------------------------- adapter round trip

// Saving the trainable tensors with the method metadata and re-applying the method from that
// metadata on a fresh model gives identical logits (what `peft train` / `peft eval` do).
TEST(PeftAdapter, SaveLoadRoundTripGivesIdenticalLogits) {
  TempDir tmp;
  for (const auto& info : vision_methods()) {
    SCOPED_TRACE(info.name);
    MethodOptions o;
    o.prompts = 2;
    o.rank = 2;
    o.alpha = 0.5;
    o.targets = "mlp.fc1,blocks.1.attn.proj";
    o.bottleneck = 3;
    nn::VisionTransformer vit(tiny(), 1);
    Generator g(2);
    apply_method(vit, info.name, o, 5, g);
    randomize_trainable(vit, 3);
    vit.eval();
    Generator gi(5);
    Tensor img = randn({2, 3, 8, 8}, gi);
    Tensor before = vit.forward(img).detach();
    const std::string path = tmp / (info.name + ".safetensors");
    nn::save_weights(vit, path, method_metadata(info.name, o), /*trainable_only=*/true);

    SafetensorsFile f = SafetensorsFile::open(path);
    auto names = f.names();
    auto trainable = trainable_names(vit);
    EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), std::set<std::string>(trainable.begin(), trainable.end()));
    MethodOptions o2;
    const std::string method = method_from_metadata(f.metadata(), o2);
    EXPECT_EQ(method, info.name);
    nn::VisionTransformer fresh(tiny(), 1);  // same base weights (same seed)
    Generator g2(77);                         // different init: everything must come from the file
    apply_method(fresh, method, o2, f.info("head.weight").shape[0], g2);
    nn::LoadResult lr = nn::load_weights(fresh, path, /*strict=*/false);
    EXPECT_TRUE(lr.unexpected.empty() && lr.mismatched.empty()) << lr.summary();
    for (auto& n : lr.missing) EXPECT_FALSE(fresh.parameter(n).requires_grad()) << n;
    fresh.eval();
    EXPECT_EQ(max_abs_diff(fresh.forward(img), before), 0.0);
  }
}

}  // namespace
}  // namespace peft
