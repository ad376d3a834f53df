// `peft check` and `peft merge` with ssf and lora on the openai_clip_visual layout (methods.md "What must match")
// through the built program. The PyTorch reference fixture tests/fixtures/vit/openai holds the
// gradients of full fine-tuning; at the identity init (SSF scale 1, shift 0; LoRA B = 0) every
// gradient of these methods is a fixed function of them:
//   shift of an op = gradient of its bias (conv1: sum of the patch rows of positional_embedding's),
//   scale of a linear = sum_k dW[c,k] W[c,k] + db[c] b[c] (LayerNorm: dgamma*gamma + dbeta*beta),
//   lora_B = (alpha/r) dW A^T, lora_A = 0.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "nn/checkpoint.h"
#include "nn/config.h"
#include "core/io/safetensors.h"
#include "peft/method.h"
#include "tests/apps/cli_util.h"

namespace peft {
namespace {

namespace fs = std::filesystem;
const std::string kFix = std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/vit/openai/";
const std::string kPeft = std::string(PEFT_BINARY_DIR) + "/peft";

using testing::CliResult;
using testing::TempDir;

CliResult peft(const TempDir& tmp, const std::string& args) {
  return testing::run_peft(args, fs::path(tmp.path).filename().string());
}

std::string check_args(const std::string& method_opts, const std::string& adapter, const std::string& out,
                       const std::string& weights = kFix + "weights.safetensors") {
  return "check --config " + kFix + "config.json --weights " + weights + " " + method_opts +
         (adapter.empty() ? "" : " --adapter " + adapter) + " --inputs " + kFix + "batch.safetensors --out " + out;
}

// The method's own tensors (not the head) as the library attaches them to the fixture model,
// with SSF at the identity and LoRA B = 0 (identity = true) or at random values.
nn::NamedTensors method_tensors(const std::string& method, const MethodOptions& o, bool identity, uint64_t seed) {
  nn::ViTConfig c = nn::load_vit_config(kFix + "config.json");
  nn::VisionTransformer vit(c, 0);
  Generator g(seed);
  apply_method(vit, method, o, c.num_classes, g);
  nn::NamedTensors out;
  NoGradGuard ng;
  for (auto& [n, p] : vit.named_parameters()) {
    if (!p.requires_grad() || n.rfind("head.", 0) == 0) continue;
    Tensor t = p.detach().clone();
    if (n.find("ssf_scale") != std::string::npos) t = identity ? ones_like(t) : randn(t.sizes(), g, t.dtype(), 1.0, 0.2);
    if (n.find("ssf_shift") != std::string::npos) t = identity ? zeros_like(t) : randn(t.sizes(), g, t.dtype(), 0.0, 0.2);
    if (n.find("lora_B") != std::string::npos && !identity) t = randn(t.sizes(), g, t.dtype(), 0.0, 0.2);
    out.emplace_back(n, t);
  }
  return out;
}

std::set<std::string> grad_names(const std::map<std::string, Tensor>& result) {
  std::set<std::string> s;
  for (auto& [n, _] : result)
    if (n.rfind("grad.", 0) == 0) s.insert(n.substr(5));
  return s;
}

void expect_close(const Tensor& got, const Tensor& want, const std::string& what) {
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  EXPECT_TRUE(allclose(got, want, 1e-3, 1e-4)) << what << ": max abs diff " << max_abs_diff(got, want);
}

const std::string kAll = "attn.in_proj,attn.out_proj,mlp.c_fc,mlp.c_proj";

TEST(OpenaiCheckCli, SsfGradientsFollowTheReferenceAtTheIdentity) {
  TempDir tmp("peft_openai_cli");
  nn::NamedTensors init = method_tensors("ssf", {}, /*identity=*/true, 1);
  save_safetensors(tmp / "init.safetensors", init);
  CliResult r = peft(tmp, check_args("--method ssf", tmp / "init.safetensors", tmp / "r.safetensors"));
  ASSERT_EQ(r.status, 0) << r.err;
  auto got = nn::read_tensors(tmp / "r.safetensors");
  auto ref = nn::read_tensors(kFix + "expected.safetensors");
  auto base = nn::read_tensors(kFix + "weights.safetensors");
  // Exactly the SSF tensors and the head get a gradient entry.
  std::set<std::string> want = {"head.weight", "head.bias"};
  for (auto& [n, _] : init) want.insert(n);
  EXPECT_EQ(grad_names(got), want);
  EXPECT_EQ(want.size(), 2u + 2u * (6u * 2u + 2u));
  expect_close(got.at("logits"), ref.at("logits"), "logits");
  expect_close(got.at("loss"), ref.at("loss"), "loss");
  expect_close(got.at("grad.head.weight"), ref.at("grad.head.weight"), "head");
  // Linear ops: shift = db, scale = rowsum(dW * W) + db * b.
  auto linear_op = [&](const std::string& op, const std::string& w, const std::string& b) {
    const Tensor dW = ref.at("grad." + w), db = ref.at("grad." + b);
    expect_close(got.at("grad." + op + ".ssf_shift"), db, op + " shift");
    expect_close(got.at("grad." + op + ".ssf_scale"), add(sum(mul(dW, base.at(w)), {1}), mul(db, base.at(b))), op + " scale");
  };
  auto ln_op = [&](const std::string& op) {
    const Tensor dg = ref.at("grad." + op + ".weight"), db = ref.at("grad." + op + ".bias");
    expect_close(got.at("grad." + op + ".ssf_shift"), db, op + " shift");
    expect_close(got.at("grad." + op + ".ssf_scale"), add(mul(dg, base.at(op + ".weight")), mul(db, base.at(op + ".bias"))),
                 op + " scale");
  };
  for (int i = 0; i < 2; ++i) {
    const std::string b = "transformer.resblocks." + std::to_string(i) + ".";
    ln_op(b + "ln_1");
    linear_op(b + "attn.in_proj", b + "attn.in_proj_weight", b + "attn.in_proj_bias");
    linear_op(b + "attn.out_proj", b + "attn.out_proj.weight", b + "attn.out_proj.bias");
    ln_op(b + "ln_2");
    linear_op(b + "mlp.c_fc", b + "mlp.c_fc.weight", b + "mlp.c_fc.bias");
    linear_op(b + "mlp.c_proj", b + "mlp.c_proj.weight", b + "mlp.c_proj.bias");
  }
  ln_op("ln_post");
  // conv1 (no bias): the shift acts like the patch rows 1..N of the position embedding.
  const Tensor dpos = ref.at("grad.positional_embedding");
  expect_close(got.at("grad.conv1.ssf_shift"), sum(narrow(dpos, 0, 1, dpos.size(0) - 1), {0}), "conv1 shift");
  const Tensor dconv = ref.at("grad.conv1.weight");
  expect_close(got.at("grad.conv1.ssf_scale"), sum(reshape(mul(dconv, base.at("conv1.weight")), {dconv.size(0), -1}), {1}),
               "conv1 scale");
}

TEST(OpenaiCheckCli, LoraGradientsFollowTheReferenceAtTheIdentity) {
  TempDir tmp("peft_openai_cli");
  MethodOptions o;
  o.rank = 2;
  o.alpha = 3;
  o.targets = kAll;
  nn::NamedTensors init = method_tensors("lora", o, /*identity=*/true, 2);
  save_safetensors(tmp / "init.safetensors", init);
  CliResult r = peft(tmp, check_args("--method lora --rank 2 --alpha 3 --targets " + kAll, tmp / "init.safetensors",
                                     tmp / "r.safetensors"));
  ASSERT_EQ(r.status, 0) << r.err;
  auto got = nn::read_tensors(tmp / "r.safetensors");
  auto ref = nn::read_tensors(kFix + "expected.safetensors");
  std::set<std::string> want = {"head.weight", "head.bias"};
  std::map<std::string, Tensor> a;
  for (auto& [n, t] : init) {
    want.insert(n);
    a[n] = t;
  }
  EXPECT_EQ(grad_names(got), want);
  EXPECT_EQ(want.size(), 2u + 2u * 4u * 2u);
  EXPECT_TRUE(want.count("transformer.resblocks.1.attn.in_proj.lora_A"));
  expect_close(got.at("logits"), ref.at("logits"), "logits");  // B = 0: the base model
  for (int i = 0; i < 2; ++i)
    for (auto [t, w] : std::vector<std::pair<std::string, std::string>>{{"attn.in_proj", "attn.in_proj_weight"},
                                                                        {"attn.out_proj", "attn.out_proj.weight"},
                                                                        {"mlp.c_fc", "mlp.c_fc.weight"},
                                                                        {"mlp.c_proj", "mlp.c_proj.weight"}}) {
      const std::string b = "transformer.resblocks." + std::to_string(i) + ".";
      const Tensor dW = ref.at("grad." + b + w), A = a.at(b + t + ".lora_A");
      expect_close(got.at("grad." + b + t + ".lora_B"), mul(matmul(dW, transpose(A, 0, 1)), 1.5), b + t + " lora_B");
      EXPECT_LE(max_abs_diff(got.at("grad." + b + t + ".lora_A"), zeros_like(A)), 0.0) << b + t;
    }
}

// peft merge writes a plain OpenAI-layout file (the base names, no slots) whose logits under
// --method linear are the unmerged ones.
TEST(OpenaiCheckCli, MergedSsfAndLoraArePlainOpenaiWeightsWithTheSameLogits) {
  TempDir tmp("peft_openai_cli");
  auto base = nn::read_tensors(kFix + "weights.safetensors");
  std::set<std::string> base_names;
  for (auto& [n, _] : base) base_names.insert(n);
  CliResult lin = peft(tmp, check_args("--method linear", "", tmp / "plain.safetensors"));
  ASSERT_EQ(lin.status, 0) << lin.err;
  for (const std::string method : {"ssf", "lora"}) {
    SCOPED_TRACE(method);
    MethodOptions o;
    o.rank = 2;
    o.alpha = 3;
    o.targets = kAll;
    nn::NamedTensors adapter = method_tensors(method, o, /*identity=*/false, 3);
    adapter.emplace_back("head.weight", base.at("head.weight"));
    adapter.emplace_back("head.bias", base.at("head.bias"));
    const std::string ad = tmp / (method + ".safetensors");
    save_safetensors(ad, adapter, method_metadata(method, o));
    const std::string opts = "--method " + method + (method == "lora" ? " --rank 2 --alpha 3 --targets " + kAll : "");
    CliResult un = peft(tmp, check_args(opts, ad, tmp / "unmerged.safetensors"));
    ASSERT_EQ(un.status, 0) << un.err;
    CliResult m = peft(tmp, "merge --config " + kFix + "config.json --weights " + kFix + "weights.safetensors --method " +
                                method + " --adapter " + ad + " --out " + tmp / "merged.safetensors");
    ASSERT_EQ(m.status, 0) << m.err;
    SafetensorsFile f = SafetensorsFile::open(tmp / "merged.safetensors");
    const auto names = f.names();
    EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), base_names);
    CliResult mc = peft(tmp, check_args("--method linear", "", tmp / "merged_check.safetensors", tmp / "merged.safetensors"));
    ASSERT_EQ(mc.status, 0) << mc.err;
    Tensor l_un = nn::read_tensors(tmp / "unmerged.safetensors").at("logits");
    Tensor l_m = nn::read_tensors(tmp / "merged_check.safetensors").at("logits");
    Tensor l_plain = nn::read_tensors(tmp / "plain.safetensors").at("logits");
    EXPECT_LE(max_abs_diff(l_m, l_un), 1e-5);
    EXPECT_GT(max_abs_diff(l_un, l_plain), 1e-3);  // the adapter does change the model
  }
}

}  // namespace
}  // namespace peft
