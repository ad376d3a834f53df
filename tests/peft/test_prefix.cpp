// `prefix` (methods.md "Prefix tuning", NOAH's prefix keys/values): parity with the PyTorch reference
// (tools/reference/peft_reference_adapter_prefix_lntune.py, pool cls and mean), names and the
// ViT-B/16 count, the xavier-uniform init, float64 gradcheck and the freeze mask, the sequence
// keeping 1+N rows with attention maps over the 1+N+M keys, weight decay, refusals, and one
// `peft check` run through the built program.
#include <fmt/format.h>

#include <cmath>
#include <set>

#include "autograd/backward.h"
#include "autograd/gradcheck.h"
#include "autograd/grad_mode.h"
#include "nn/checkpoint.h"
#include "nn/config.h"
#include "nn/optim/optimizer.h"
#include "core/io/safetensors.h"
#include "peft/merge.h"
#include "peft/method.h"
#include "peft/methods/vision_check.h"
#include "tests/apps/cli_util.h"
#include "tests/peft/method_testing.h"
#include "tests/peft/parity_testing.h"
#include "tests/testing.h"

namespace peft {
namespace {

using testing::randn64;
using testing::randomize_trainable;
using testing::trainable_set;
using testing::expect_matches_reference;
using testing::fixture_request;

const std::string kDir = std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/peft/";



nn::ViTConfig tiny(int64_t depth = 2, const std::string& pool = "cls") {
  nn::ViTConfig c;
  c.image_size = 8; c.patch_size = 4; c.dim = 8; c.depth = depth; c.heads = 2; c.num_classes = 3; c.pool = pool;
  return c;
}

MethodOptions opts(int64_t prompts) {
  MethodOptions o;
  o.prompts = prompts;
  return o;
}

// ---------------------------------------------------------------- parity

TEST(PrefixMethod, MatchesTheReference) { expect_matches_reference("prefix"); }
// Pool mean averages the N patch rows: the prefixes add no row to the sequence.
TEST(PrefixMethod, MatchesTheReferenceWithMeanPool) { expect_matches_reference("prefix-mean"); }

// ---------------------------------------------------------------- names, counts, init

TEST(PrefixMethod, TrainableTensorsAreTheInteropNames) {
  const auto c = tiny(3);
  nn::VisionTransformer vit(c, 1);
  Generator g(2);
  apply_method(vit, "prefix", opts(5), 4, g);
  EXPECT_EQ(trainable_set(vit), (std::set<std::string>{"prefix.keys", "prefix.values", "head.weight", "head.bias"}));
  EXPECT_EQ(vit.parameter("prefix.keys").sizes(), (Shape{3, 5, c.dim}));
  EXPECT_EQ(vit.parameter("prefix.values").sizes(), (Shape{3, 5, c.dim}));
  // The base attention tensors keep their names, frozen.
  EXPECT_FALSE(vit.parameter("blocks.2.attn.qkv.weight").requires_grad());
  EXPECT_FALSE(vit.parameter("blocks.2.attn.proj.bias").requires_grad());
}

// methods.md "Prefix tuning": 2*L*M*D = 184,320 for ViT-B/16 at M = 10 (the default). The count depends on
// L and D only: ViT-B's, with a small MLP hidden size so that the model builds quickly.
TEST(PrefixMethod, ViTBaseCountAtTheDefaultPrompts) {
  EXPECT_EQ(testing::vit_base_trainable("prefix", testing::command_line_defaults(), /*small_mlp=*/true), 184320);
}

// NOAH: xavier_uniform_ on each block's [1, M, D]: U(+-sqrt(6 / ((M+1) D))). The bound of the
// whole [L, M, D] under PyTorch's fan rule would be sqrt(6 / ((M+L) D)), smaller for L > 1.
TEST(PrefixMethod, InitIsXavierUniformPerBlock) {
  nn::ViTConfig c = tiny(6);
  c.dim = 32;
  nn::VisionTransformer vit(c, 1);
  Generator g(2);
  const int64_t M = 20;
  apply_method(vit, "prefix", opts(M), 3, g);
  const double bound = std::sqrt(6.0 / static_cast<double>((M + 1) * c.dim));
  for (const char* name : {"prefix.keys", "prefix.values"}) {
    auto v = vit.parameter(name).to_vector<float>();
    double mx = 0, s1 = 0, s2 = 0;
    for (float e : v) {
      mx = std::max(mx, std::abs(static_cast<double>(e)));
      s1 += e;
      s2 += static_cast<double>(e) * e;
    }
    const double n = static_cast<double>(v.size());
    EXPECT_LE(mx, bound) << name;
    EXPECT_GT(mx, 0.98 * bound) << name;
    EXPECT_NEAR(s1 / n, 0.0, 0.05 * bound) << name;
    EXPECT_NEAR(std::sqrt(s2 / n), bound / std::sqrt(3.0), 0.03 * bound) << name;  // uniform's std
  }
  EXPECT_GT(max_abs_diff(vit.parameter("prefix.keys"), vit.parameter("prefix.values")), 0.0);
}

// ---------------------------------------------------------------- gradients

TEST(PrefixMethod, Float64Gradcheck) {
  for (const std::string pool : {"cls", "mean"}) {
    nn::VisionTransformer vit(tiny(2, pool), 3);
    Generator g(4);
    apply_method(vit, "prefix", opts(2), 3, g);
    vit.to(DType::f64);
    vit.eval();
    randomize_trainable(vit, 9);
    std::vector<Tensor> inputs{randn64({2, 3, 8, 8}, 11, false)};
    for (auto& [_, p] : vit.named_parameters()) inputs.push_back(p);
    auto fn = [&](const std::vector<Tensor>& in) { return vit.forward(in[0]); };
    auto r = gradcheck(fn, inputs);
    EXPECT_TRUE(r.ok) << "pool " << pool << ": " << r.message;
  }
}

// Frozen tensors get no gradient; every block's rows of keys and values get one; the optimizer
// keeps state for the trainable tensors only, and the prefixes get no weight decay (prompts).
TEST(PrefixMethod, FreezeMaskAndNoWeightDecay) {
  const auto c = tiny(3);
  nn::VisionTransformer vit(c, 3);
  Generator g(4);
  apply_method(vit, "prefix", opts(2), 3, g);
  const int64_t trainable = testing::expect_grads_only_on_trainable(vit);
  for (const char* name : {"prefix.keys", "prefix.values"}) {
    Tensor gr = vit.parameter(name).grad();
    for (int64_t i = 0; i < c.depth; ++i)
      EXPECT_GT(max_abs_diff(narrow(gr, 0, i, 1), zeros({1, 2, c.dim})), 0.0) << name << " block " << i;
  }
  auto nwd = vit.no_weight_decay_names();
  EXPECT_EQ(std::set<std::string>(nwd.begin(), nwd.end()).count("prefix.keys"), 1u);
  EXPECT_EQ(std::set<std::string>(nwd.begin(), nwd.end()).count("prefix.values"), 1u);
  testing::expect_optimizer_state_for_trainable_only(vit, trainable);
}

// The sequence keeps its 1+N rows; the attention maps (keep_attention) cover the 1+N+M keys, the
// prefix columns last, and each row sums to 1.
TEST(PrefixMethod, SequenceKeepsItsRowsAndAttentionMapsWork) {
  const auto c = tiny(2);
  const int64_t M = 3, T = 1 + c.num_patches();
  nn::VisionTransformer vit(c, 1);
  Generator g(2);
  apply_method(vit, "prefix", opts(M), 3, g);
  randomize_trainable(vit, 4);
  vit.eval();
  for (auto& b : vit.block_list) b->attn->keep_attention = true;
  Generator gi(5);
  NoGradGuard ng;
  Tensor feats = vit.forward_features(randn({2, 3, 8, 8}, gi));
  EXPECT_EQ(feats.sizes(), (Shape{2, c.dim}));
  for (auto& b : vit.block_list) {
    const Tensor& a = b->attn->last_attention;
    ASSERT_EQ(a.sizes(), (Shape{2, c.heads, T, T + M}));
    auto v = a.to_vector<float>();
    double prefix_mass = 0;
    for (int64_t r = 0; r < 2 * c.heads * T; ++r) {
      double s = 0;
      for (int64_t j = 0; j < T + M; ++j) s += v[static_cast<size_t>(r * (T + M) + j)];
      for (int64_t j = T; j < T + M; ++j) prefix_mass += v[static_cast<size_t>(r * (T + M) + j)];
      EXPECT_NEAR(s, 1.0, 1e-5);
    }
    EXPECT_GT(prefix_mass, 0.0);
  }
}

// Prefixes that get no attention mass leave the plain ViT. Head dim 0 of every head gets q = 1
// for all tokens (zero weight row, bias 1), and every prefix key is -1e4 in the column of head
// dim 0 of each head (columns h*hd): its score is about -1e4 * hd^-0.5, so exp underflows to 0
// in every head, whatever the other columns and the values hold. A prefix split over the heads
// other than by columns [h*hd, (h+1)*hd) would leak mass. The control (those columns at 0)
// differs from the plain ViT.
TEST(PrefixMethod, PrefixesWithoutAttentionMassLeaveThePlainViT) {
  for (const std::string pool : {"cls", "mean"}) {
    for (double s : {-1e4, 0.0}) {
      const auto c = tiny(3, pool);
      const int64_t hd = c.dim / c.heads;
      nn::VisionTransformer vit(c, 1);
      Generator g(2);
      apply_method(vit, "prefix", opts(3), 3, g);
      vit.to(DType::f64);
      vit.eval();
      {
        NoGradGuard ng;
        Generator r(8);
        for (auto& [n, p] : vit.named_parameters()) {
          const bool norm_weight = n.find("norm") != std::string::npos && n.ends_with(".weight");
          Tensor(p).copy_(randn(p.sizes(), r, DType::f64, norm_weight ? 1.0 : 0.0, 0.5));
        }
        for (auto& blk : vit.block_list) {
          Tensor w = blk->attn->qkv->weight.detach(), bias = blk->attn->qkv->bias.detach();
          for (int64_t h = 0; h < c.heads; ++h) {
            narrow(w, 0, h * hd, 1).fill_(0.0);  // q row of head h, dim 0
            narrow(bias, 0, h * hd, 1).fill_(1.0);
          }
        }
        Tensor k = vit.parameter("prefix.keys").detach();
        for (int64_t h = 0; h < c.heads; ++h) narrow(k, 2, h * hd, 1).fill_(s);
      }
      Generator gi(5);
      Tensor img = randn({2, 3, 8, 8}, gi, DType::f64);
      Tensor with = vit.forward(img).detach();
      nn::VisionTransformer plain(c, 1);
      plain.to(DType::f64);
      plain.eval();
      std::map<std::string, Tensor> sd;
      for (auto& [n, t] : vit.state_dict())
        if (n.rfind("prefix.", 0) != 0) sd[n] = t;
      plain.load_state_dict(sd, /*strict=*/true);
      const double diff = max_abs_diff(with, plain.forward(img));
      if (s < 0) {
        EXPECT_LT(diff, 1e-12) << pool;
      } else {
        EXPECT_GT(diff, 1e-4) << pool << ": the control must see the prefixes";
      }
    }
  }
}

// An additive mask [T, T] over the real keys is widened with zero columns: the prefixes stay
// visible to every query. A zero mask gives the unmasked result; masking every real key but the
// query's own leaves each row attending to itself and the prefixes only.
TEST(PrefixMethod, AttentionMaskLeavesThePrefixesVisible) {
  const auto c = tiny(1);
  const int64_t T = 4, M = 2;
  nn::VisionTransformer vit(c, 1);
  Generator g(2);
  apply_method(vit, "prefix", opts(M), 3, g);
  randomize_trainable(vit, 4);
  nn::Attention& attn = *vit.block_list[0]->attn;
  attn.keep_attention = true;
  Generator gi(5);
  NoGradGuard ng;
  Tensor x = randn({2, T, c.dim}, gi);
  Tensor plain = attn.forward(x);
  EXPECT_EQ(max_abs_diff(attn.forward(x, zeros({T, T})), plain), 0.0);
  Tensor diag_only = full({T, T}, -1e9);
  for (int64_t i = 0; i < T; ++i) narrow(narrow(diag_only, 0, i, 1), 1, i, 1).fill_(0.0);
  attn.forward(x, diag_only);
  auto a = attn.last_attention.to_vector<float>();  // [2, H, T, T+M]
  for (int64_t r = 0; r < 2 * c.heads * T; ++r) {
    const int64_t i = r % T;
    double prefix_mass = 0;
    for (int64_t j = 0; j < T; ++j) {
      if (j != i) {
        EXPECT_EQ(a[static_cast<size_t>(r * (T + M) + j)], 0.0f);
      }
    }
    for (int64_t j = T; j < T + M; ++j) prefix_mass += a[static_cast<size_t>(r * (T + M) + j)];
    EXPECT_GT(prefix_mass, 0.0);
  }
}

// ---------------------------------------------------------------- refusals

TEST(PrefixMethod, OpenaiLayoutBadPromptsAndMergeAreRefused) {
  testing::expect_openai_layout_refused("prefix", tiny());
  Generator g(2);
  nn::VisionTransformer t(tiny(), 1);
  EXPECT_THROW_MSG(apply_method(t, "prefix", opts(0), 3, g), MethodError, "--prompts", "got 0");
  EXPECT_FALSE(is_mergeable_method("prefix"));
  apply_method(t, "prefix", opts(2), 3, g);
  EXPECT_THROW_MSG(merge_adapters(t), ValueError, "prefix");
}

// ---------------------------------------------------------------- the CLI

TEST(PrefixMethod, CheckCommandMatchesTheReference) {
  testing::TempDir tmp("peft_prefix");
  const std::string out = tmp / "result.safetensors";
  testing::CliResult r = testing::run_peft("check --config " + kDir + "config.json --weights " + kDir +
                                               "base.safetensors --method prefix --prompts 3 --adapter " + kDir +
                                               "prefix/adapter.safetensors --inputs " + kDir +
                                               "batch.safetensors --out " + out,
                                           "prefix_check");
  ASSERT_EQ(r.status, 0) << r.err;
  auto got = nn::read_tensors(out);
  auto want = nn::read_tensors(kDir + "prefix/expected.safetensors");
  EXPECT_EQ(got.size(), want.size());
  for (auto& [n, t] : want) {
    auto it = got.find(n);
    ASSERT_NE(it, got.end()) << n;
    EXPECT_TRUE(allclose(it->second, t, 1e-3, 1e-4)) << n << ": max abs diff " << max_abs_diff(it->second, t);
  }
}

}  // namespace
}  // namespace peft
