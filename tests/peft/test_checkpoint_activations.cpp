// --checkpoint-activations on every vision method (VisionTransformer::checkpoint_activations,
// autograd/checkpoint.h): with dropout, drop-path and prompt dropout on, one training step gives
// the same logits, bit-identical gradients and the same drop_gen stream as the plain path; frozen
// tensors get no gradient; an AdamW step inside backward lands on the same weights.
#include <fmt/format.h>

#include <cstring>
#include <set>

#include "autograd/backward.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "nn/optim/optimizer.h"
#include "peft/method.h"
#include "tests/peft/method_testing.h"
#include "tests/testing.h"

namespace peft {
namespace {

nn::ViTConfig tiny() {
  nn::ViTConfig c;
  c.image_size = 8; c.patch_size = 4; c.dim = 8; c.depth = 3; c.heads = 2; c.num_classes = 3;
  c.dropout = 0.2;    // Mlp dropout (drawn from drop_gen)
  c.drop_path = 0.3;  // stochastic depth (drawn from drop_gen)
  return c;
}

MethodOptions opts() {
  MethodOptions o;
  o.prompts = 3;
  o.prompt_dropout = 0.25;  // vpt-*, cvpt: drawn from drop_gen in the token hook
  o.rank = 2;
  o.alpha = 3.0;
  o.bottleneck = 4;
  return o;
}

struct Model {
  std::unique_ptr<nn::VisionTransformer> vit;
};

Model build(const std::string& method, bool ckpt) {
  Model m;
  m.vit = std::make_unique<nn::VisionTransformer>(tiny(), 1);
  Generator g(2);
  apply_method(*m.vit, method, opts(), 5, g);
  testing::randomize_trainable(*m.vit, 3);
  m.vit->train();
  m.vit->checkpoint_activations = ckpt;
  return m;
}

Tensor loss_of(nn::VisionTransformer& vit) {
  Generator g(4);
  Tensor images = randn({4, 3, 8, 8}, g);
  Tensor labels = from_vector_i64({0, 1, 4, 2}, {4});
  return cross_entropy(vit.forward(images), labels);
}

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.defined() != b.defined()) return false;
  if (!a.defined()) return true;
  const Tensor ca = a.clone(), cb = b.clone();
  return ca.sizes() == cb.sizes() && std::memcmp(ca.data<float>(), cb.data<float>(), ca.nbytes()) == 0;
}

// True when a node named `op` is reachable from t.
bool records(const Tensor& t, const char* op) {
  std::vector<autograd::Node*> stack{t.grad_fn().get()};
  std::set<autograd::Node*> seen;
  while (!stack.empty()) {
    autograd::Node* n = stack.back();
    stack.pop_back();
    if (!n || !seen.insert(n).second) continue;
    if (n->name == op) return true;
    for (auto& e : n->next) stack.push_back(e.node.get());
  }
  return false;
}

TEST(CheckpointActivations, EveryMethodGivesBitIdenticalGradients) {
  for (const MethodInfo& mi : vision_methods()) {
    SCOPED_TRACE(mi.name);
    Model a = build(mi.name, false), b = build(mi.name, true);
    Tensor la = loss_of(*a.vit), lb = loss_of(*b.vit);
    EXPECT_FALSE(records(la, "checkpoint"));
    // The linear probe's blocks read nothing trainable: no node, nothing saved, as for any op.
    EXPECT_EQ(records(lb, "checkpoint"), mi.name != "linear") << "checkpoint node";
    ASSERT_EQ(la.item(), lb.item());
    backward(la);
    backward(lb);
    auto pa = a.vit->named_parameters(), pb = b.vit->named_parameters();
    ASSERT_EQ(pa.size(), pb.size());
    for (size_t i = 0; i < pa.size(); ++i) {
      const Tensor& ta = pa[i].second;
      const Tensor& tb = pb[i].second;
      if (!tb.requires_grad()) {
        EXPECT_FALSE(tb.grad().defined()) << pb[i].first << " is frozen but got a gradient";
        continue;
      }
      EXPECT_TRUE(tb.grad().defined()) << pb[i].first;
      EXPECT_TRUE(same_bits(ta.grad(), tb.grad())) << pb[i].first;
    }
    // The dropout stream continues where the plain path leaves it (the replay was undone).
    EXPECT_EQ(a.vit->drop_gen.next_u64(), b.vit->drop_gen.next_u64());
  }
}

TEST(CheckpointActivations, StepInBackwardLandsOnTheSameWeights) {
  for (const char* method : {"full", "lora", "vpt-deep", "ssf"}) {
    SCOPED_TRACE(method);
    Model a = build(method, false), b = build(method, true);
    auto specs = [](nn::VisionTransformer& v) {
      std::vector<nn::ParamSpec> s;
      for (auto& [n, p] : v.named_parameters())
        if (p.requires_grad()) s.push_back({n, p, 0.05});
      return s;
    };
    nn::AdamW oa(specs(*a.vit), 1e-2), ob(specs(*b.vit), 1e-2);
    for (int step = 0; step < 2; ++step) {
      oa.step_in_backward(loss_of(*a.vit));
      ob.step_in_backward(loss_of(*b.vit));
    }
    auto pa = a.vit->named_parameters(), pb = b.vit->named_parameters();
    for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(same_bits(pa[i].second, pb[i].second)) << pa[i].first;
  }
}

TEST(CheckpointActivations, NoGradRunsTheBlocksPlainly) {
  // Evaluation under no-grad: nothing to save, so the blocks run as without the flag.
  Model a = build("lora", false), b = build("lora", true);
  a.vit->eval();
  b.vit->eval();
  NoGradGuard ng;
  Tensor la = loss_of(*a.vit), lb = loss_of(*b.vit);
  EXPECT_FALSE(lb.requires_grad());
  EXPECT_EQ(la.item(), lb.item());
}

}  // namespace
}  // namespace peft
