// Memory guard: the footprint model against what the tape really keeps, /proc/meminfo parsing,
// and the refusal message.
#include "peft/memory_guard.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <unordered_set>

#include "autograd/backward.h"
#include "autograd/node.h"
#include "core/error.h"
#include "core/random.h"
#include "peft/method.h"
#include "tests/testing.h"

namespace peft {
namespace {

namespace fs = std::filesystem;

nn::ViTConfig small_config() {
  nn::ViTConfig c;
  c.image_size = 32;
  c.patch_size = 4;  // 64 patches + class token = 65 tokens
  c.dim = 32;
  c.depth = 3;
  c.heads = 2;
  c.num_classes = 5;
  return c;
}

// Bytes the recorded graph keeps for backward: the sum over its nodes of what each op saved.
int64_t saved_bytes_of_graph(const Tensor& root) {
  std::unordered_set<autograd::Node*> seen;
  std::vector<autograd::Node*> stack{root.grad_fn().get()};
  int64_t total = 0;
  while (!stack.empty()) {
    autograd::Node* n = stack.back();
    stack.pop_back();
    if (!n || !seen.insert(n).second) continue;
    total += static_cast<int64_t>(n->saved_bytes);
    for (auto& e : n->next) stack.push_back(e.node.get());
  }
  return total;
}

fs::path temp_dir(const std::string& tag) {
  fs::path d = fs::temp_directory_path() / ("peft_memguard_" + tag + "_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

TEST(MemoryGuard, ParameterGradientAndOptimizerBytes) {
  MemoryInputs in;
  in.cfg = small_config();
  in.batch = 4;
  in.total_params = 1000;
  in.trainable_params = 100;
  MemoryEstimate adam = estimate_training_memory(in);
  EXPECT_EQ(adam.params, 4000);
  EXPECT_EQ(adam.grads, 400);
  EXPECT_EQ(adam.optimizer, 800);
  EXPECT_EQ(adam.data, 2 * 4 * 4 * 3 * 32 * 32);
  in.optimizer = "sgd";
  EXPECT_EQ(estimate_training_memory(in).optimizer, 400);
  EXPECT_EQ(adam.total(), adam.params + adam.grads + adam.optimizer + adam.activations + adam.data);
}

TEST(MemoryGuard, ActivationsGrowWithBatchTokensAndBackboneGradients) {
  MemoryInputs in;
  in.cfg = small_config();
  in.batch = 4;
  const int64_t a4 = estimate_training_memory(in).activations;
  in.batch = 8;
  EXPECT_EQ(estimate_training_memory(in).activations, 2 * a4);  // linear in the batch
  in.extra_tokens = 10;
  EXPECT_GT(estimate_training_memory(in).activations, 2 * a4);
  in.extra_tokens = 0;
  in.batch = 4;
  in.backbone_grad = false;  // linear probe: only one block's working set
  EXPECT_LT(estimate_training_memory(in).activations * 2, a4);
}

TEST(MemoryGuard, SavedActivationsMatchTheTape) {
  // Full fine-tuning keeps every block's activations: the estimate's saved part must be close to
  // what the ops actually save (summed from the recorded nodes).
  nn::ViTConfig c = small_config();
  nn::VisionTransformer vit(c, 0);
  const int64_t B = 4;
  Generator g(1);
  Tensor x = randn({B, 3, 32, 32}, g);
  Tensor y = from_vector_i64({0, 1, 2, 3}, {B});
  Tensor loss = cross_entropy(vit.forward(x), y);
  const double measured = static_cast<double>(saved_bytes_of_graph(loss));

  MemoryInputs in = memory_inputs(vit, B, "adamw");
  EXPECT_TRUE(in.backbone_grad);
  EXPECT_EQ(in.trainable_params, vit.num_parameters(true));
  MemoryInputs probe = in;
  probe.backbone_grad = false;
  const double saved_estimate = static_cast<double>(estimate_training_memory(in).activations -
                                                    estimate_training_memory(probe).activations);
  EXPECT_GT(saved_estimate, 0.7 * measured) << "measured " << measured;
  EXPECT_LT(saved_estimate, 1.5 * measured) << "measured " << measured;
}

TEST(MemoryGuard, CheckpointedBlocksKeepTheirInputsOnly) {
  // --checkpoint-activations: the tape keeps each block's input; the estimate follows the flag.
  nn::ViTConfig c = small_config();
  const int64_t B = 4;
  Generator g(1);
  Tensor x = randn({B, 3, 32, 32}, g);
  Tensor y = from_vector_i64({0, 1, 2, 3}, {B});
  nn::VisionTransformer plain(c, 0), ckpt(c, 0);
  ckpt.checkpoint_activations = true;
  const double saved_plain = static_cast<double>(saved_bytes_of_graph(cross_entropy(plain.forward(x), y)));
  const double saved_ckpt = static_cast<double>(saved_bytes_of_graph(cross_entropy(ckpt.forward(x), y)));
  EXPECT_LT(saved_ckpt, 0.3 * saved_plain) << saved_ckpt << " vs " << saved_plain;

  MemoryInputs in_plain = memory_inputs(plain, B, "adamw"), in_ckpt = memory_inputs(ckpt, B, "adamw");
  EXPECT_FALSE(in_plain.checkpoint_activations);
  EXPECT_TRUE(in_ckpt.checkpoint_activations);
  const int64_t a_plain = estimate_training_memory(in_plain).activations;
  const int64_t a_ckpt = estimate_training_memory(in_ckpt).activations;
  EXPECT_LT(a_ckpt, a_plain);
  // What the flag saves in the estimate is close to what it saves on the tape (depth - 1 blocks'
  // tensors minus the inputs kept).
  const double cut = static_cast<double>(a_plain - a_ckpt);
  EXPECT_GT(cut, 0.5 * (saved_plain - saved_ckpt));
  EXPECT_LT(cut, 1.5 * (saved_plain - saved_ckpt));
}

TEST(MemoryGuard, LinearProbeNeedsNoBackboneActivations) {
  nn::VisionTransformer vit(small_config(), 0);
  Generator gen(2);
  apply_method(vit, "linear", MethodOptions{}, 5, gen);
  MemoryInputs in = memory_inputs(vit, 8, "adamw");
  EXPECT_FALSE(in.backbone_grad);
  EXPECT_EQ(in.trainable_params, 32 * 5 + 5);
  EXPECT_EQ(in.total_params, vit.num_parameters(false));
}

TEST(MemoryGuard, ReadsMemAvailableAndTheCgroupLimit) {
  fs::path d = temp_dir("meminfo");
  std::ofstream(d / "meminfo") << "MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:    2048 kB\n";
  fs::path none = d / "no_cgroup";
  EXPECT_EQ(available_memory_bytes((d / "meminfo").string(), none.string()), 2048 * 1024);
  // A cgroup limit lower than the host's free memory wins.
  fs::create_directories(d / "cg");
  std::ofstream(d / "cg" / "memory.max") << "1500000\n";
  std::ofstream(d / "cg" / "memory.current") << "1000000\n";
  EXPECT_EQ(available_memory_bytes((d / "meminfo").string(), (d / "cg").string()), 500000);
  std::ofstream(d / "cg" / "memory.max") << "max\n";
  EXPECT_EQ(available_memory_bytes((d / "meminfo").string(), (d / "cg").string()), 2048 * 1024);
  EXPECT_EQ(available_memory_bytes((d / "missing").string(), none.string()), -1);
  EXPECT_GT(available_memory_bytes(), 0);  // the real /proc/meminfo
  fs::remove_all(d);
}

TEST(MemoryGuard, RefusesWithEstimateAndAvailableInTheMessage) {
  MemoryEstimate e;
  e.params = 3 << 20;
  e.activations = int64_t{5} << 30;
  EXPECT_NO_THROW(check_memory(e, int64_t{6} << 30));
  EXPECT_NO_THROW(check_memory(e, -1));  // unknown: do not block
  EXPECT_THROW_MSG(check_memory(e, int64_t{1} << 30), ValueError, "memory: training needs about 5.00 GiB",
                   "parameters 3.0 MiB", "activations 5.00 GiB", "only 1.00 GiB is available", "--batch");
}

TEST(MemoryGuard, HugeBatchOnVitBaseIsRefusedHere) {
  // vit-base at batch 100000 needs terabytes of activations: no machine has that available.
  nn::ViTConfig c = nn::load_vit_config("vit-base");
  MemoryInputs in;
  in.cfg = c;
  in.batch = 100000;
  in.total_params = in.trainable_params = 86'000'000;
  EXPECT_THROW_MSG(check_memory(estimate_training_memory(in), available_memory_bytes()), ValueError,
                   "memory: training needs about", "TiB");
}

TEST(MemoryGuard, FormatsBytes) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1536), "1.5 KiB");
  EXPECT_EQ(format_bytes(int64_t{3} << 20), "3.0 MiB");
  EXPECT_EQ(format_bytes(int64_t{3} << 29), "1.50 GiB");
  EXPECT_EQ(format_bytes(int64_t{2} << 40), "2.00 TiB");
}

}  // namespace
}  // namespace peft

namespace peft {
namespace {

// The size the guard gives a config before building it is exactly the built model's (issue 20;
// fuzz_model_config found the patch embedding without bias before a norm_pre).
TEST(MemoryGuard, ConfigParameterCountMatchesTheBuiltModel) {
  const char* base = R"("image_size": 16, "patch_size": 4, "dim": 16, "depth": 2, "heads": 2, "num_classes": 3)";
  for (const std::string extra :
       {"", R"(, "reg_tokens": 2, "no_embed_class": true)", R"(, "norm_pre": true)", R"(, "layer_scale": true)",
        R"(, "qkv_bias": false, "fc_norm": true, "pool": "mean")", R"(, "mlp_ratio": 2.5)",
        R"(, "class_token": false, "pool": "mean")",
        R"(, "reg_tokens": 2, "no_embed_class": true, "norm_pre": true, "layer_scale": true, "fc_norm": true,
           "qkv_bias": false, "pool": "mean", "mlp_ratio": 2.5)",
        R"(, "style": "openai_clip_visual", "embed_dim": 8, "num_classes": 0)"}) {
    SCOPED_TRACE(extra);
    nn::ViTConfig c = nn::vit_config_from_json("{" + std::string(base) + extra + "}", "test.json");
    nn::VisionTransformer vit(c, 0);
    EXPECT_EQ(config_param_count(c), static_cast<double>(vit.num_parameters()));
  }
}

// The same for a whole CLIP (both towers): the CLIP commands refuse a config whose text tower
// cannot fit before building it (a text width of 2^20 passes the config's own bounds).
TEST(MemoryGuard, ClipConfigParameterCountMatchesTheBuiltModel) {
  nn::CLIPConfig micro = nn::load_clip_config("clip-micro");
  nn::CLIPConfig other = micro;
  other.text.width = 24;
  other.text.heads = 3;
  other.text.layers = 3;
  other.text.context_length = 9;
  other.text.vocab_size = 50;
  for (const nn::CLIPConfig& c : {micro, other}) {
    nn::CLIP clip(c, 0);
    EXPECT_EQ(clip_config_param_count(c), static_cast<double>(clip.num_parameters()));
  }
  nn::CLIPConfig huge = micro;
  huge.text.width = int64_t{1} << 20;
  huge.text.heads = 1;
  huge.validate();  // within the config's bounds
  if (available_memory_bytes() >= 0)
    EXPECT_THROW_MSG(check_clip_model_memory(huge, "config 'huge.json'"), ValueError, "memory: config 'huge.json'",
                     "use a smaller config");
  EXPECT_NO_THROW(check_clip_model_memory(micro, "clip-micro"));
}

}  // namespace
}  // namespace peft
