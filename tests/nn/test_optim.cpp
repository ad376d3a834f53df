// Optimizers: AdamW and SGD equal PyTorch step for step; state exists only for trainable tensors;
// frozen tensors stay bitwise unchanged; warm-up + cosine schedule; gradient clipping.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "nn/optim/optimizer.h"
#include "nn/vit.h"

using namespace peft;

namespace {
nlohmann::json fixture() {
  std::ifstream f(std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/optim.json");
  return nlohmann::json::parse(f);
}

Tensor vec(const nlohmann::json& j, const Shape& s) { return from_vector(j.get<std::vector<double>>(), s); }

void run_three_steps(nn::Optimizer& opt, Tensor p, Tensor q, const nlohmann::json& fx, const std::string& key) {
  for (auto& g : fx["grads"]) {
    opt.zero_grad();
    p.set_grad(vec(g[0], {3, 4}));
    q.set_grad(vec(g[1], {4}));
    opt.step();
  }
  EXPECT_LE(max_abs_diff(p, vec(fx[key][0], {3, 4})), 2e-6) << key;
  EXPECT_LE(max_abs_diff(q, vec(fx[key][1], {4})), 2e-6) << key;
}
}  // namespace

TEST(Optim, AdamWThreeStepsEqualPyTorch) {
  auto fx = fixture();
  Tensor p = vec(fx["p0"], {3, 4}).requires_grad_(), q = vec(fx["q0"], {4}).requires_grad_();
  nn::AdamW opt({{"p", p, 0.1}, {"q", q, 0.0}}, 1e-2);
  run_three_steps(opt, p, q, fx, "adamw");
}

TEST(Optim, SGDMomentumAndNesterovEqualPyTorch) {
  auto fx = fixture();
  for (bool nesterov : {false, true}) {
    Tensor p = vec(fx["p0"], {3, 4}).requires_grad_(), q = vec(fx["q0"], {4}).requires_grad_();
    nn::SGD opt({{"p", p, 0.01}, {"q", q, 0.0}}, 0.1, 0.9, nesterov);
    run_three_steps(opt, p, q, fx, nesterov ? "sgd_nesterov" : "sgd");
  }
}

TEST(Optim, StateOnlyForTrainableTensorsAndFrozenStayBitwise) {
  nn::ViTConfig c;
  c.depth = 2;
  nn::VisionTransformer vit(c);
  vit.freeze("*");
  vit.unfreeze("head.*");
  auto before = vit.parameter("blocks.0.attn.qkv.weight").clone();
  auto groups = nn::param_groups(vit.named_parameters(), 0.05);
  ASSERT_EQ(groups.size(), 2u);  // head.weight, head.bias only
  nn::AdamW opt(groups, 1e-2);
  Generator g(0);
  for (int s = 0; s < 3; ++s) {
    Tensor loss = cross_entropy(vit.forward(rand({2, 3, 32, 32}, g)), from_vector_i64({1, 2}, {2}));
    opt.zero_grad();
    backward(loss);
    opt.step();
  }
  int64_t trainable_bytes = 0;
  for (auto& t : vit.trainable_parameters()) trainable_bytes += static_cast<int64_t>(t.nbytes());
  EXPECT_EQ(opt.state_bytes(), 2 * trainable_bytes);
  EXPECT_EQ(max_abs_diff(vit.parameter("blocks.0.attn.qkv.weight"), before), 0.0);
}

TEST(Optim, NoDecayGroups) {
  nn::ViTConfig c;
  c.depth = 1;
  nn::VisionTransformer vit(c);
  for (auto& spec : nn::param_groups(vit.named_parameters(), 0.05)) {
    bool decays = spec.weight_decay > 0;
    bool matrix = spec.param.dim() >= 2 && spec.name.find("pos_embed") == std::string::npos &&
                  spec.name.find("cls_token") == std::string::npos;
    EXPECT_EQ(decays, matrix) << spec.name;
  }
}

TEST(Optim, WarmupCosineSchedule) {
  EXPECT_DOUBLE_EQ(nn::warmup_cosine_lr(0, 10, 110, 1.0), 0.1);
  EXPECT_DOUBLE_EQ(nn::warmup_cosine_lr(9, 10, 110, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(nn::warmup_cosine_lr(10, 10, 110, 1.0), 1.0);
  EXPECT_NEAR(nn::warmup_cosine_lr(60, 10, 110, 1.0), 0.5, 1e-12);
  EXPECT_NEAR(nn::warmup_cosine_lr(110, 10, 110, 1.0), 0.0, 1e-12);
}

TEST(Optim, ClipGradNorm) {
  Tensor p = zeros({2}).requires_grad_();
  p.set_grad(from_vector({3, 4}, {2}));
  std::vector<nn::ParamSpec> specs{{"p", p, 0.0}};
  EXPECT_NEAR(nn::clip_grad_norm(specs, 1.0), 5.0, 1e-6);
  EXPECT_NEAR(p.grad().at({0}), 0.6, 1e-5);
  EXPECT_NEAR(p.grad().at({1}), 0.8, 1e-5);
}

TEST(Optim, ResumeFromStateDictContinuesExactly) {
  auto fx = fixture();
  Tensor p = vec(fx["p0"], {3, 4}).requires_grad_(), q = vec(fx["q0"], {4}).requires_grad_();
  nn::AdamW opt({{"p", p, 0.1}, {"q", q, 0.0}}, 1e-2);
  auto grads = fx["grads"];
  auto step = [&](nn::Optimizer& o, Tensor a, Tensor b, int i) {
    o.zero_grad();
    a.set_grad(vec(grads[i][0], {3, 4}));
    b.set_grad(vec(grads[i][1], {4}));
    o.step();
  };
  step(opt, p, q, 0);
  // Snapshot and continue in a fresh optimizer over copies.
  std::map<std::string, Tensor> sd;
  for (auto& [n, t] : opt.state_dict()) sd[n] = t.clone();
  Tensor p2 = p.detach().clone().requires_grad_(), q2 = q.detach().clone().requires_grad_();
  nn::AdamW opt2({{"p", p2, 0.1}, {"q", q2, 0.0}}, 1e-2);
  opt2.load_state_dict(sd);
  for (int i = 1; i < 3; ++i) {
    step(opt, p, q, i);
    step(opt2, p2, q2, i);
  }
  EXPECT_EQ(max_abs_diff(p, p2), 0.0);
  EXPECT_EQ(max_abs_diff(q, q2), 0.0);
}

// step_in_backward equals zero_grad + backward + step, bit for bit, for AdamW and SGD on a ViT
// whose every tensor trains (LayerNorms, biases, shared cls/pos tokens), and frees every gradient.
TEST(Optim, StepInBackwardEqualsBackwardThenStep) {
  for (int kind : {0, 1}) {
    nn::ViTConfig c;
    c.depth = 2;
    nn::VisionTransformer a(c), b(c);
    {
      auto sd = a.state_dict();
      b.load_state_dict(std::map<std::string, Tensor>(sd.begin(), sd.end()));
    }
    auto make = [&](nn::VisionTransformer& m) -> std::unique_ptr<nn::Optimizer> {
      auto groups = nn::param_groups(m.named_parameters(), 0.05);
      if (kind == 0) return std::make_unique<nn::AdamW>(groups, 1e-2);
      return std::make_unique<nn::SGD>(groups, 1e-2, 0.9, true);
    };
    auto oa = make(a), ob = make(b);
    Generator g(3);
    for (int s = 0; s < 3; ++s) {
      Tensor x = rand({2, 3, 32, 32}, g);
      Tensor y = from_vector_i64({1, s}, {2});
      oa->zero_grad();
      backward(cross_entropy(a.forward(x), y));
      oa->step();
      oa->zero_grad();
      ob->step_in_backward(cross_entropy(b.forward(x), y));
      for (auto& [name, t] : b.named_parameters()) EXPECT_FALSE(t.grad().defined()) << name;
    }
    EXPECT_EQ(oa->steps(), ob->steps());
    auto pa = a.named_parameters(), pb = b.named_parameters();
    ASSERT_EQ(pa.size(), pb.size());
    for (size_t i = 0; i < pa.size(); ++i) EXPECT_EQ(max_abs_diff(pa[i].second, pb[i].second), 0.0) << pa[i].first;
    auto sa = oa->state_dict(), sb = ob->state_dict();
    for (size_t i = 0; i < sa.size(); ++i) EXPECT_EQ(max_abs_diff(sa[i].second, sb[i].second), 0.0) << sa[i].first;
  }
}

// The ready hook sees a leaf used by several ops only once, after its last contribution.
TEST(Optim, LeafGradReadyFiresOnceWithTheFinalGradient) {
  Tensor w = from_vector({1.0, 2.0}, {2}).requires_grad_(), u = from_vector({3.0, 4.0}, {2}).requires_grad_();
  Tensor frozen = from_vector({5.0, 6.0}, {2});
  // loss = sum(w * w) + sum(w * u) + sum(u * frozen): w gets 2w + u, u gets w + frozen.
  Tensor loss = add(add(sum(mul(w, w)), sum(mul(w, u))), sum(mul(u, frozen)));
  std::vector<std::pair<TensorImpl*, std::vector<double>>> seen;
  backward(loss, [&](TensorImpl& leaf) { seen.push_back({&leaf, Tensor(leaf.grad).to_vector<double>()}); });
  ASSERT_EQ(seen.size(), 2u);
  for (auto& [leaf, g] : seen) {
    if (leaf == w.impl()) {
      EXPECT_EQ(g, (std::vector<double>{5.0, 8.0}));
    } else {
      EXPECT_EQ(leaf, u.impl());
      EXPECT_EQ(g, (std::vector<double>{6.0, 8.0}));
    }
  }
  EXPECT_NE(seen[0].first, seen[1].first);
}
