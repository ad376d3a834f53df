// Activation checkpointing (autograd/checkpoint.h): float64 gradcheck on broadcast and
// non-contiguous inputs, gradients bit-identical to the plain path (dropout replayed from the
// generator, a leaf read twice, a tensor computed before the checkpoint), the freeze mask, only
// the input saved, the step-in-backward hook order, and the errors.
#include <gtest/gtest.h>

#include <map>

#include "autograd/backward.h"
#include "autograd/checkpoint.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "tests/testing.h"

namespace peft {
namespace {

using testing::randn64;

// A small residual block: x + W2 gelu(W1 LN(x) + b1) * e, with a dropout drawn from gen. w1 is
// read twice (once more as a scale, so a leaf gets two contributions inside the block); e is a
// tensor computed before the block (it has a history on the outer tape).
Tensor block(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& e, Generator* gen,
             double p) {
  Tensor h = linear(layer_norm(x, Tensor(), Tensor()), w1, b1);
  h = mul(gelu(h), sum(w1, {}));  // the second read of w1
  if (gen) h = dropout(h, p, true, *gen);
  return add(x, mul(linear(h, w2), e));
}

struct Leaves {
  Tensor x0, w1, b1, w2, c;
};

Leaves make_leaves(DType dt, uint64_t seed) {
  Generator g(seed);
  const int64_t D = 6, F = 10;
  Leaves l;
  l.x0 = randn({2, 3, D}, g, dt).requires_grad_();
  l.w1 = randn({F, D}, g, dt, 0, 0.3).requires_grad_();
  l.b1 = randn({F}, g, dt).requires_grad_();
  l.w2 = randn({D, F}, g, dt, 0, 0.3).requires_grad_();
  l.c = randn({D}, g, dt).requires_grad_();
  return l;
}

// Two blocks in sequence, with or without checkpointing, then a scalar loss.
Tensor two_blocks(const Leaves& l, bool ckpt, Generator* gen, double p = 0.25) {
  Tensor e = mul(l.c, l.c);  // computed before the blocks: a non-leaf read inside both
  Tensor x = mul(l.x0, scalar_tensor(2.0, l.x0.dtype()));
  for (int i = 0; i < 2; ++i) {
    auto f = [l, e, gen, p](const Tensor& xi) { return block(xi, l.w1, l.b1, l.w2, e, gen, p); };
    x = ckpt ? checkpoint(f, x, gen ? std::vector<Generator*>{gen} : std::vector<Generator*>{}) : f(x);
  }
  return sum(mul(x, x), {});
}

std::vector<Tensor> grads_of(const Leaves& l) { return {l.x0.grad(), l.w1.grad(), l.b1.grad(), l.w2.grad(), l.c.grad()}; }

void expect_bit_identical(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].defined(), b[i].defined()) << "gradient " << i;
    if (!a[i].defined()) continue;
    const Tensor ca = a[i].clone(), cb = b[i].clone();
    ASSERT_EQ(ca.sizes(), cb.sizes());
    const float* pa = ca.data<float>();
    const float* pb = cb.data<float>();
    for (int64_t k = 0; k < ca.numel(); ++k) ASSERT_EQ(pa[k], pb[k]) << "gradient " << i << " element " << k;
  }
}

TEST(Checkpoint, GradcheckBroadcastAndNonContiguous) {
  // x enters as a transposed (non-contiguous) view; b1 [F] and c [D] broadcast.
  Tensor xt = randn64({3, 2, 6}, 1);
  Tensor w1 = randn64({10, 6}, 2), b1 = randn64({10}, 3), w2 = randn64({6, 10}, 4), c = randn64({6}, 5);
  auto fn = [](const std::vector<Tensor>& in) {
    Tensor x = transpose(in[0], 0, 1);  // [2, 3, 6], non-contiguous
    Tensor e = mul(in[4], in[4]);
    Tensor y = checkpoint([in, e](const Tensor& xi) { return block(xi, in[1], in[2], in[3], e, nullptr, 0); }, x);
    return y;
  };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{xt, w1, b1, w2, c}));
}

TEST(Checkpoint, GradcheckWithDropoutReplaysTheMask) {
  // The central differences call fn again and again; each call starts the generator afresh, so
  // the function is deterministic, and backward must draw the same mask as the forward did.
  Tensor x = randn64({2, 3, 6}, 6);
  Tensor w1 = randn64({10, 6}, 7), b1 = randn64({10}, 8), w2 = randn64({6, 10}, 9), c = randn64({6}, 10);
  auto fn = [](const std::vector<Tensor>& in) {
    auto gen = std::make_shared<Generator>(42);  // lives as long as the node that replays it
    Tensor e = mul(in[4], in[4]);
    Generator* g = gen.get();
    Tensor y = checkpoint([in, e, gen](const Tensor& xi) { return block(xi, in[1], in[2], in[3], e, gen.get(), 0.3); },
                          in[0], {g});
    g->next_u64();  // a draw after the block: backward must not see it, nor replay it
    return y;
  };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{x, w1, b1, w2, c}));
}

TEST(Checkpoint, BitIdenticalToThePlainPath) {
  for (double p : {0.0, 0.25}) {
    Leaves a = make_leaves(DType::f32, 11), b = make_leaves(DType::f32, 11);
    Generator ga(5), gb(5);
    Tensor la = two_blocks(a, false, p > 0 ? &ga : nullptr, p);
    Tensor lb = two_blocks(b, true, p > 0 ? &gb : nullptr, p);
    EXPECT_EQ(la.item(), lb.item());
    backward(la);
    backward(lb);
    expect_bit_identical(grads_of(a), grads_of(b));
    // The generator ends where the plain path leaves it: the replay was undone.
    EXPECT_EQ(ga.next_u64(), gb.next_u64()) << "p = " << p;
  }
}

TEST(Checkpoint, RecordsOneNodeThatSavesOnlyTheInput) {
  Leaves l = make_leaves(DType::f32, 12);
  Tensor e = mul(l.c, l.c);
  Tensor y = checkpoint([l, e](const Tensor& xi) { return block(xi, l.w1, l.b1, l.w2, e, nullptr, 0); }, l.x0);
  ASSERT_TRUE(y.grad_fn());
  const autograd::Node& n = *y.grad_fn();
  EXPECT_EQ(n.name, "checkpoint");
  // Edges: x, then the tensors the block read in first-use order (w1, b1, w2, e); all leaves
  // but e, whose edge is its own node on the outer tape: nothing of the block was recorded.
  ASSERT_EQ(n.next.size(), 5u);
  EXPECT_EQ(n.next[0].leaf.get(), l.x0.impl());
  EXPECT_EQ(n.next[1].leaf.get(), l.w1.impl());
  EXPECT_EQ(n.next[2].leaf.get(), l.b1.impl());
  EXPECT_EQ(n.next[3].leaf.get(), l.w2.impl());
  EXPECT_EQ(n.next[4].node, e.grad_fn());
  // Saved: x and e, the outer-tape tensor read (for their version checks); no activation.
  EXPECT_EQ(n.saved_bytes, l.x0.nbytes() + e.nbytes());
}

TEST(Checkpoint, FreezeMaskHolds) {
  Leaves a = make_leaves(DType::f32, 13), b = make_leaves(DType::f32, 13);
  for (Leaves* l : {&a, &b}) {
    l->x0.requires_grad_(false);
    l->w1.requires_grad_(false);
    l->c.requires_grad_(false);
  }
  Tensor la = two_blocks(a, false, nullptr);
  Tensor lb = two_blocks(b, true, nullptr);
  // The first block's node has edges to the trainable b1 and w2 only: the frozen x, w1 and the
  // constant e give no edge, as with any op.
  backward(la);
  backward(lb);
  EXPECT_FALSE(b.x0.grad().defined());
  EXPECT_FALSE(b.w1.grad().defined());
  EXPECT_FALSE(b.c.grad().defined());
  expect_bit_identical(grads_of(a), grads_of(b));

  // Nothing trainable read: no node at all, like an op on frozen inputs.
  Leaves f = make_leaves(DType::f32, 14);
  for (Tensor* t : {&f.x0, &f.w1, &f.b1, &f.w2, &f.c}) t->requires_grad_(false);
  Tensor e = mul(f.c, f.c);
  Tensor y = checkpoint([f, e](const Tensor& xi) { return block(xi, f.w1, f.b1, f.w2, e, nullptr, 0); }, f.x0);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_FALSE(y.grad_fn());
}

TEST(Checkpoint, LeafReadyHookFiresAfterTheRecompute) {
  // An optimizer stepping in backward must see each parameter's final gradient: the hook for w1
  // (read by both checkpointed blocks) fires once both recomputes have added to it.
  Leaves a = make_leaves(DType::f32, 15), b = make_leaves(DType::f32, 15);
  backward(two_blocks(a, false, nullptr));
  std::map<const TensorImpl*, Tensor> at_ready;
  backward(two_blocks(b, true, nullptr), [&](TensorImpl& leaf) { at_ready[&leaf] = Tensor(leaf.grad).clone(); });
  expect_bit_identical(grads_of(a), {at_ready[b.x0.impl()], at_ready[b.w1.impl()], at_ready[b.b1.impl()],
                                     at_ready[b.w2.impl()], at_ready[b.c.impl()]});
}

TEST(Checkpoint, RetainGraphRecomputesAgain) {
  Leaves a = make_leaves(DType::f32, 16);
  Generator gen(3);
  Tensor loss = two_blocks(a, true, &gen);
  backward(loss, Tensor(), /*retain_graph=*/true);
  std::vector<Tensor> first;
  for (const Tensor& g : grads_of(a)) first.push_back(g.clone());
  for (Tensor* t : {&a.x0, &a.w1, &a.b1, &a.w2, &a.c}) t->zero_grad();
  backward(loss);
  expect_bit_identical(first, grads_of(a));
}

TEST(Checkpoint, NoGradModeIsThePlainCall) {
  Leaves l = make_leaves(DType::f32, 17);
  NoGradGuard ng;
  Tensor e = mul(l.c, l.c);
  int calls = 0;
  Tensor y = checkpoint(
      [&](const Tensor& xi) {
        ++calls;
        return block(xi, l.w1, l.b1, l.w2, e, nullptr, 0);
      },
      l.x0);
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(y.requires_grad());
}

TEST(Checkpoint, InPlaceWriteToTheInputIsCaught) {
  Leaves l = make_leaves(DType::f32, 18);
  Tensor x = mul(l.x0, scalar_tensor(1.0));
  Tensor e = mul(l.c, l.c);
  Tensor y = checkpoint([l, e](const Tensor& xi) { return block(xi, l.w1, l.b1, l.w2, e, nullptr, 0); }, x);
  {
    NoGradGuard ng;
    x.fill_(0.5);
  }
  EXPECT_THROW_MSG(backward(sum(y, {})), StateError, "checkpoint", "modified in place");
}

TEST(Checkpoint, RecomputeReadingAnUndeclaredTensorThrows) {
  // A function that reads another trainable tensor on its second call: its gradient would bypass
  // the outer engine, so the recompute refuses it.
  Leaves l = make_leaves(DType::f32, 19);
  auto calls = std::make_shared<int>(0);
  Tensor y = checkpoint(
      [l, calls](const Tensor& xi) {
        ++*calls;
        return *calls == 1 ? mul(xi, l.c) : mul(xi, reshape(narrow(l.w1, 0, 0, 1), {6}));
      },
      l.x0);
  EXPECT_THROW_MSG(backward(sum(y, {})), StateError, "checkpoint: the recomputed forward read", "deterministic");
}

TEST(Checkpoint, Errors) {
  EXPECT_THROW_MSG(checkpoint([](const Tensor& x) { return x; }, Tensor()), ValueError, "checkpoint", "undefined");
  Tensor x = randn64({2}, 1);
  EXPECT_THROW_MSG(checkpoint([](const Tensor& t) { return t; }, x, {nullptr}), ValueError, "checkpoint", "null generator");
  EXPECT_THROW_MSG(checkpoint([](const Tensor&) { return Tensor(); }, x), ValueError, "undefined tensor");
}

}  // namespace
}  // namespace peft
