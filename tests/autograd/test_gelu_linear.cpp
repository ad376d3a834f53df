// gelu_linear: equals linear(gelu(h)) (forward, every gradient), gradcheck, saves only h.
#include <gtest/gtest.h>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "core/counters.h"
#include "tests/testing.h"

namespace peft {
namespace {
using testing::randn64;

TEST(GeluLinear, MatchesComposedOps) {
  for (bool with_bias : {true, false}) {
    Tensor h = randn64({2, 3, 6}, 1), w = randn64({4, 6}, 2), b = with_bias ? randn64({4}, 3) : Tensor();
    Tensor g = randn64({2, 3, 4}, 4, false);
    Tensor y1 = gelu_linear(h, w, b);
    backward(y1, g);
    Tensor gh = h.grad(), gw = w.grad(), gb = with_bias ? b.grad() : Tensor();
    h.zero_grad();
    w.zero_grad();
    if (with_bias) b.zero_grad();
    Tensor y2 = linear(gelu(h), w, b);
    backward(y2, g);
    EXPECT_LT(max_abs_diff(y1, y2), 1e-12);
    EXPECT_LT(max_abs_diff(gh, h.grad()), 1e-12);
    EXPECT_LT(max_abs_diff(gw, w.grad()), 1e-12);
    if (with_bias) {
      EXPECT_LT(max_abs_diff(gb, b.grad()), 1e-12);
    }
  }
}

// Under no_grad, a moved-in h that nobody else holds becomes gelu(h) in place: the op then
// allocates only its output. A shared h is left untouched.
TEST(GeluLinear, InferenceReusesAnUnsharedInput) {
  Tensor w = randn64({4, 6}, 2, false), b = randn64({4}, 3, false);
  Tensor h = randn64({5, 6}, 1, false);
  Tensor ref = linear(gelu(h), w, b);
  NoGradGuard ng;
  Tensor kept = h.clone();
  Tensor y_shared = gelu_linear(kept, w, b);  // kept is still ours: it must not change
  EXPECT_LT(max_abs_diff(kept, h), 1e-15);
  EXPECT_LT(max_abs_diff(y_shared, ref), 1e-12);
  Tensor owned = h.clone();
  const int64_t before = counters().live_bytes.load();
  reset_peak_bytes();
  Tensor y = gelu_linear(std::move(owned), w, b);
  EXPECT_EQ(counters().peak_bytes.load() - before, 5 * 4 * 8);  // the output only
  EXPECT_LT(max_abs_diff(y, ref), 1e-12);
}

TEST(GeluLinear, Gradcheck) {
  auto fn = [](const std::vector<Tensor>& in) { return gelu_linear(in[0], in[1], in[2]); };
  auto r = gradcheck(fn, {randn64({3, 5}, 11), randn64({2, 5}, 12), randn64({2}, 13)});
  EXPECT_TRUE(r.ok) << r.message;
  // Non-contiguous h; frozen weight and bias.
  Tensor ht = transpose(randn64({5, 3}, 14, false), 0, 1).detach().requires_grad_();
  Tensor w = randn64({2, 5}, 15, false), b = randn64({2}, 16, false);
  auto fn2 = [&](const std::vector<Tensor>& in) { return gelu_linear(in[0], w, b); };
  auto r2 = gradcheck(fn2, {ht});
  EXPECT_TRUE(r2.ok) << r2.message;
}

TEST(GeluLinear, SavesOnlyTheInputNotGeluOfIt) {
  // Both h and W train: the composed ops keep h (gelu) and gelu(h) (linear); the fused op only h.
  Tensor h = testing::randn64({64, 256}, 21), w = testing::randn64({8, 256}, 22);
  const int64_t before = counters().live_bytes.load();
  Tensor y = gelu_linear(h, w, Tensor());
  const int64_t fused = counters().live_bytes.load() - before;
  y = Tensor();
  const int64_t before2 = counters().live_bytes.load();
  Tensor y2 = linear(gelu(h), w, Tensor());
  const int64_t composed = counters().live_bytes.load() - before2;
  EXPECT_EQ(composed - fused, 64 * 256 * 8);  // exactly one [64, 256] float64 tensor less
}

}  // namespace
}  // namespace peft
