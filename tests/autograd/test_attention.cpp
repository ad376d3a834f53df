// scaled_dot_product_attention: PyTorch parity, gradcheck on strided/broadcast/reused inputs, freeze masks, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "core/bf16.h"
#include "core/blas.h"
#include "core/counters.h"
#include "core/random.h"
#include "tests/autograd/ops_b_fixture.h"
#include "tests/testing.h"

using namespace peft;
using namespace peft::testing;
using nlohmann::json;

namespace {

const json& fixture() { return ops_b_fixture(); }

// [T, T] additive causal mask: -inf above the diagonal.
Tensor causal_mask(int64_t T, DType dt = DType::f64) {
  Tensor m = zeros({T, T}, dt);
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = i + 1; j < T; ++j) m.as_strided({}, {}, i * T + j).fill_(-INFINITY);
  return m;
}

// The triple loop: softmax(q k^T * scale + mask) v for contiguous-or-not f64 inputs, mask [Tq, Tk].
Tensor naive_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, double scale) {
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), Tk = k.size(2), hd = q.size(3), dv = v.size(3);
  std::vector<double> out(B * H * Tq * dv);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Tq; ++i) {
        std::vector<double> s(Tk);
        double mx = -INFINITY;
        for (int64_t j = 0; j < Tk; ++j) {
          double acc = 0;
          for (int64_t c = 0; c < hd; ++c) acc += q.at({b, h, i, c}) * k.at({b, h, j, c});
          s[j] = acc * scale + (mask.defined() ? mask.at({i, j}) : 0.0);
          mx = std::max(mx, s[j]);
        }
        double tot = 0;
        for (double& x : s) tot += (x = std::exp(x - mx));
        for (int64_t c = 0; c < dv; ++c) {
          double acc = 0;
          for (int64_t j = 0; j < Tk; ++j) acc += s[j] / tot * v.at({b, h, j, c});
          out[((b * H + h) * Tq + i) * dv + c] = acc;
        }
      }
  return from_vector(out, {B, H, Tq, dv}, DType::f64);
}

auto sdpa(const Tensor& mask = Tensor(), double scale = 0.0) {
  return [=](const std::vector<Tensor>& in) { return scaled_dot_product_attention(in[0], in[1], in[2], mask, scale); };
}

}  // namespace

TEST(Attention, CausalMatchesTorch) {
  const json& c = fixture()["attn_causal"];
  Tensor q = load(c["q"]).requires_grad_(), k = load(c["k"]).requires_grad_(), v = load(c["v"]).requires_grad_();
  const double scale = c["scale"].get<double>();
  Tensor out = scaled_dot_product_attention(q, k, v, causal_mask(q.size(2)), scale);
  EXPECT_LT(max_abs_diff(out, load(c["out"])), 1e-12);
  backward(sum(mul(out, load(c["gy"]))));
  EXPECT_LT(max_abs_diff(q.grad(), load(c["dq"])), 1e-12);
  EXPECT_LT(max_abs_diff(k.grad(), load(c["dk"])), 1e-12);
  EXPECT_LT(max_abs_diff(v.grad(), load(c["dv"])), 1e-12);
  // scale <= 0 means hd^-0.5, which is what the fixture used
  EXPECT_LT(max_abs_diff(scaled_dot_product_attention(q, k, v, causal_mask(q.size(2))), load(c["out"])), 1e-12);
}

TEST(Attention, CrossAttentionWithLearnableMaskMatchesTorch) {
  const json& c = fixture()["attn_cross"];
  Tensor q = load(c["q"]).requires_grad_(), k = load(c["k"]).requires_grad_(), v = load(c["v"]).requires_grad_();
  Tensor m = load(c["mask"]).requires_grad_();  // [B, 1, Tq, Tk]: broadcast over heads
  Tensor out = scaled_dot_product_attention(q, k, v, m, c["scale"].get<double>());
  ASSERT_EQ(out.sizes(), (Shape{1, 3, 3, 2}));
  EXPECT_LT(max_abs_diff(out, load(c["out"])), 1e-12);
  backward(sum(mul(out, load(c["gy"]))));
  EXPECT_LT(max_abs_diff(q.grad(), load(c["dq"])), 1e-12);
  EXPECT_LT(max_abs_diff(k.grad(), load(c["dk"])), 1e-12);
  EXPECT_LT(max_abs_diff(v.grad(), load(c["dv"])), 1e-12);
  EXPECT_LT(max_abs_diff(m.grad(), load(c["dmask"])), 1e-12);
}

TEST(Attention, Float32MatchesFloat64Reference) {
  const json& c = fixture()["attn_causal"];
  Tensor out = scaled_dot_product_attention(load(c["q"], DType::f32), load(c["k"], DType::f32),
                                            load(c["v"], DType::f32), causal_mask(5, DType::f32));
  EXPECT_EQ(out.dtype(), DType::f32);
  EXPECT_LT(max_abs_diff(out.to(DType::f64), load(c["out"])), 1e-5);
}

TEST(Attention, ProbsAreTheCausalSoftmax) {
  const json& c = fixture()["attn_causal"];
  Tensor q = load(c["q"]), k = load(c["k"]), v = load(c["v"]);
  Tensor P = attention_probs(q, k, causal_mask(5));
  ASSERT_EQ(P.sizes(), (Shape{2, 2, 5, 5}));
  EXPECT_FALSE(P.requires_grad());
  for (int64_t i = 0; i < 5; ++i) {
    double row = 0;
    for (int64_t j = 0; j < 5; ++j) {
      row += P.at({1, 0, i, j});
      if (j > i) {
        EXPECT_EQ(P.at({1, 0, i, j}), 0.0);
      }
    }
    EXPECT_NEAR(row, 1.0, 1e-12);
  }
  EXPECT_LT(max_abs_diff(matmul(P, v), load(c["out"])), 1e-12);
}

TEST(Attention, ParallelHeadsMatchTheTripleLoop) {
  // Large enough for the OpenMP path over (b, h); T not a multiple of anything BLAS likes.
  Tensor q = randn64({2, 4, 33, 16}, 1, false), k = randn64({2, 4, 33, 16}, 2, false), v = randn64({2, 4, 33, 8}, 3, false);
  Tensor mask = randn64({33, 33}, 4, false);
  Tensor out = scaled_dot_product_attention(q, k, v, mask, 0.2);
  EXPECT_LT(max_abs_diff(out, naive_attention(q, k, v, mask, 0.2)), 1e-12);
}

TEST(Attention, FullyMaskedRowGivesZerosNotNaN) {
  Tensor q = randn64({1, 2, 3, 4}, 1), k = randn64({1, 2, 3, 4}, 2), v = randn64({1, 2, 3, 4}, 3);
  Tensor mask = zeros({3, 3}, DType::f64);
  for (int64_t j = 0; j < 3; ++j) mask.as_strided({}, {}, j).fill_(-INFINITY);  // query 0 sees nothing
  Tensor out = scaled_dot_product_attention(q, k, v, mask);
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t c = 0; c < 4; ++c) EXPECT_EQ(out.at({0, h, 0, c}), 0.0);
  for (double x : out.to_vector<double>()) EXPECT_TRUE(std::isfinite(x));
  backward(sum(out));
  for (const Tensor& t : {q, k, v})
    for (double x : t.grad().to_vector<double>()) EXPECT_TRUE(std::isfinite(x));
  EXPECT_GRADCHECK(sdpa(mask), (std::vector<Tensor>{randn64({1, 2, 3, 4}, 4), randn64({1, 2, 3, 4}, 5),
                                                    randn64({1, 2, 3, 4}, 6)}));
}

TEST(Attention, GradcheckContiguousWithBroadcastMask) {
  // mask [Tq, Tk] broadcast over B and H, trainable like a relative position bias
  auto fn = [](const std::vector<Tensor>& in) { return scaled_dot_product_attention(in[0], in[1], in[2], in[3], 0.4); };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn64({2, 2, 3, 4}, 1), randn64({2, 2, 5, 4}, 2),
                                            randn64({2, 2, 5, 3}, 3), randn64({3, 5}, 4)}));
}

TEST(Attention, GradcheckCausal) {
  EXPECT_GRADCHECK(sdpa(causal_mask(4)), (std::vector<Tensor>{randn64({1, 2, 4, 3}, 1), randn64({1, 2, 4, 3}, 2),
                                                              randn64({1, 2, 4, 3}, 3)}));
}

TEST(Attention, GradcheckHeadViewsOfAFusedQkv) {
  // qkv [B, T, 3*H*hd] -> [B, T, 3, H, hd] -> [3, B, H, T, hd]: q, k, v are strided views
  const int64_t B = 2, T = 3, H = 2, hd = 2;
  auto fn = [=](const std::vector<Tensor>& in) {
    Tensor x = permute(reshape(in[0], {B, T, 3, H, hd}), {2, 0, 3, 1, 4});
    Tensor q = select(x, 0, 0), k = select(x, 0, 1), v = select(x, 0, 2);
    EXPECT_FALSE(q.is_contiguous());
    return scaled_dot_product_attention(q, k, v, causal_mask(T));
  };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn64({B, T, 3 * H * hd}, 7)}));
}

TEST(Attention, HeadViewsAreReadInPlace) {
  // With strided head views and nothing to record, the op allocates only out [B, H, T, hd]: no
  // copies of q, k, v, and no P [B, H, T, T] (each head's scores live in a per-thread scratch).
  const int64_t B = 2, T = 5, H = 3, hd = 4;
  Tensor qkv = randn64({B, T, 3 * H * hd}, 8, false);
  Tensor x = permute(reshape(qkv, {B, T, 3, H, hd}), {2, 0, 3, 1, 4});
  Tensor q = select(x, 0, 0), k = select(x, 0, 1), v = select(x, 0, 2);
  Tensor ref = scaled_dot_product_attention(q.clone(), k.clone(), v.clone());
  const int64_t before = counters().live_bytes.load();
  reset_peak_bytes();
  Tensor out = scaled_dot_product_attention(q, k, v);
  EXPECT_EQ(counters().peak_bytes.load() - before, B * H * T * hd * 8);
  EXPECT_LT(max_abs_diff(out, ref), 1e-13);
  EXPECT_TRUE(out.is_contiguous());
}

TEST(Attention, GradcheckTransposedAndUnitStrideFreeInputs) {
  auto fn = [](const std::vector<Tensor>& in) {
    Tensor k = transpose(in[1], 2, 3);                  // [B, H, Tk, hd] stored as [B, H, hd, Tk]
    Tensor q = slice(in[0], 3, 0, 6, 2);                // last-dim stride 2: the op must copy
    Tensor v = transpose(in[2], 1, 2);                  // heads and tokens swapped
    return scaled_dot_product_attention(q, k, v, Tensor(), 0.5);
  };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn64({1, 2, 3, 6}, 1), randn64({1, 2, 3, 4}, 2),
                                            randn64({1, 4, 2, 2}, 3)}));
}

TEST(Attention, GradcheckSameTensorUsedThrice) {
  auto fn = [](const std::vector<Tensor>& in) { return scaled_dot_product_attention(in[0], in[0], in[0]); };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn64({1, 2, 4, 3}, 9)}));
}

TEST(Attention, FrozenKeysAndValuesGetNoGradientAndNoGemm) {
  const int64_t B = 2, H = 3;
  Tensor k = randn64({B, H, 4, 5}, 2, false), v = randn64({B, H, 4, 5}, 3, false);
  Tensor q_all = randn64({B, H, 4, 5}, 1), k_all = k.detach().clone().requires_grad_(),
         v_all = v.detach().clone().requires_grad_();
  Tensor full = scaled_dot_product_attention(q_all, k_all, v_all);
  reset_gemm_counters();
  backward(sum(full));
  EXPECT_EQ(counters().gemm_calls.load(), 4 * B * H);  // dV, dP, dQ, dK per head (P saved: T is small)

  Tensor q = q_all.detach().clone().requires_grad_();
  Tensor out = scaled_dot_product_attention(q, k, v);
  reset_gemm_counters();
  backward(sum(out));
  EXPECT_EQ(counters().gemm_calls.load(), 2 * B * H);  // dP and dQ only
  EXPECT_FALSE(k.grad().defined());
  EXPECT_FALSE(v.grad().defined());
  EXPECT_LT(max_abs_diff(q.grad(), q_all.grad()), 1e-14);

  // Only v trainable: dV = P^T dO, one GEMM per head, and only P is kept alive.
  Tensor v2 = v.detach().clone().requires_grad_();
  Tensor out2 = scaled_dot_product_attention(q.detach(), k, v2);
  EXPECT_EQ(out2.grad_fn()->saved_bytes, static_cast<size_t>(B * H * 4 * 4 * 8));
  reset_gemm_counters();
  backward(sum(out2));
  EXPECT_EQ(counters().gemm_calls.load(), B * H);
  EXPECT_LT(max_abs_diff(v2.grad(), v_all.grad()), 1e-14);
}

// Long sequences (T > 1.5 hd) do not save the [B, H, T, T] probabilities: backward recomputes
// them. What is saved is then q, k and v (here three separate tensors), far less than P.
TEST(Attention, LongSequencesSaveQKVNotTheProbabilities) {
  const int64_t B = 2, H = 2, T = 32, hd = 4;
  Tensor q = randn64({B, H, T, hd}, 1), k = randn64({B, H, T, hd}, 2), v = randn64({B, H, T, hd}, 3);
  Tensor out = scaled_dot_product_attention(q, k, v);
  EXPECT_EQ(out.grad_fn()->saved_bytes, static_cast<size_t>(3 * B * H * T * hd * 8));
  reset_gemm_counters();
  Tensor gout = randn64({B, H, T, hd}, 4, false);
  backward(sum(mul(out, gout)));
  EXPECT_EQ(counters().gemm_calls.load(), 5 * B * H);  // P recomputed, then dV, dP, dQ, dK
  // The recomputed probabilities are the forward's: gradients equal the composed ops'.
  Tensor q2 = q.detach().clone().requires_grad_(), k2 = k.detach().clone().requires_grad_(),
         v2 = v.detach().clone().requires_grad_();
  Tensor ref = matmul(softmax(mul(matmul(q2, transpose(k2, 2, 3)), 0.5), -1), v2);
  backward(sum(mul(ref, gout)));
  EXPECT_LT(max_abs_diff(out, ref), 1e-12);
  EXPECT_LT(max_abs_diff(q.grad(), q2.grad()), 1e-12);
  EXPECT_LT(max_abs_diff(k.grad(), k2.grad()), 1e-12);
  EXPECT_LT(max_abs_diff(v.grad(), v2.grad()), 1e-12);

  // Only v trainable: q and k are kept to recompute P; dV = P^T dO: two GEMMs per head.
  Tensor v3 = v.detach().clone().requires_grad_();
  Tensor out3 = scaled_dot_product_attention(q.detach(), k.detach(), v3);
  EXPECT_EQ(out3.grad_fn()->saved_bytes, static_cast<size_t>(2 * B * H * T * hd * 8));
  reset_gemm_counters();
  backward(sum(mul(out3, gout)));
  EXPECT_EQ(counters().gemm_calls.load(), 2 * B * H);
  EXPECT_LT(max_abs_diff(v3.grad(), v2.grad()), 1e-12);
}

// The recomputing path under gradcheck: a trainable broadcast mask with a fully masked row, a
// non-contiguous q, and cross-attention shapes (Tq != Tk).
TEST(Attention, GradcheckRecomputedProbabilities) {
  auto fn = [](const std::vector<Tensor>& in) {
    Tensor q = transpose(in[0], 2, 3);  // [1, 2, 7, 1] stored as [1, 2, 1, 7]
    return scaled_dot_product_attention(q, in[1], in[2], in[3]);
  };
  Tensor mask = randn64({7, 6}, 24, false);
  for (int64_t j = 0; j < 6; ++j) mask.data<double>()[2 * 6 + j] = -INFINITY;  // row 2: every key masked
  mask.requires_grad_();
  // hd = 1, Tq = 7, Tk = 6: 2 * 42 > 7 + 6 * 2, so P is recomputed.
  Tensor out = scaled_dot_product_attention(randn64({1, 2, 7, 1}, 21), randn64({1, 2, 6, 1}, 22),
                                            randn64({1, 2, 6, 1}, 23));
  EXPECT_EQ(out.grad_fn()->saved_bytes, static_cast<size_t>((14 + 12 + 12) * 8));
  auto r = gradcheck(fn, {randn64({1, 2, 1, 7}, 21), randn64({1, 2, 6, 1}, 22), randn64({1, 2, 6, 1}, 23), mask});
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(Attention, NothingRecordedWithoutTrainableInputs) {
  Tensor q = randn64({1, 1, 2, 2}, 1, false);
  Tensor out = scaled_dot_product_attention(q, q, q);
  EXPECT_FALSE(out.requires_grad());
  EXPECT_EQ(out.grad_fn(), nullptr);
}

TEST(Attention, BadCallsNameOpAndShapes) {
  Tensor q = zeros({1, 2, 3, 4}), k = zeros({1, 2, 5, 4}), v = zeros({1, 2, 5, 4});
  EXPECT_THROW_MSG(scaled_dot_product_attention(zeros({2, 3, 4}), k, v), ShapeError, "scaled_dot_product_attention",
                   "[2, 3, 4]", "[1, 2, 5, 4]");
  EXPECT_THROW_MSG(scaled_dot_product_attention(q, zeros({1, 2, 5, 3}), v), ShapeError,
                   "scaled_dot_product_attention", "[1, 2, 3, 4]", "[1, 2, 5, 3]");
  EXPECT_THROW_MSG(scaled_dot_product_attention(q, k, zeros({1, 2, 4, 4})), ShapeError,
                   "scaled_dot_product_attention", "[1, 2, 4, 4]");
  EXPECT_THROW_MSG(scaled_dot_product_attention(q, k, v, zeros({3, 4})), ShapeError, "scaled_dot_product_attention",
                   "mask [3, 4]", "[1, 2, 3, 5]");
  EXPECT_THROW_MSG(scaled_dot_product_attention(q, k.to(DType::f64), v), DTypeError, "scaled_dot_product_attention",
                   "float64");
  EXPECT_THROW_MSG(attention_probs(q, zeros({1, 3, 5, 4})), ShapeError, "attention_probs", "[1, 3, 5, 4]");
}

// ---- scaled_dot_product_attention_bf16: every head in one batched bfloat16 GEMM ----

namespace {

// The values a bf16 GEMM multiplies: x rounded to bfloat16, as a float32 tensor.
Tensor rounded_bf16(const Tensor& x) {
  Tensor r = x.detach().clone();
  float* p = r.data<float>();
  for (int64_t i = 0; i < r.numel(); ++i) p[i] = bf16::to_float(bf16::round_bits(p[i]));
  return r;
}

double rel_err(const Tensor& got, const Tensor& want) {
  double mx = 0;
  for (double v : want.to_vector<float>()) mx = std::max(mx, std::fabs(v));
  return max_abs_diff(got, want) / std::max(mx, 1e-30);
}

struct AttnGrads {
  Tensor out, dqkv, dmask;
};

// Attention on head views of one fused qkv [B, T, 3*H*hd] (the ViT's layout) with a trainable
// [Tq, Tk] mask, batched bf16 or per-head float32: the output and the gradients of qkv and the mask.
AttnGrads attend(const Tensor& qkv0, const Tensor& mask0, const Tensor& gout, int64_t H, int64_t hd, bool bf16) {
  const int64_t B = qkv0.size(0), T = qkv0.size(1);
  Tensor qkv = qkv0.detach().clone().requires_grad_(), mask = mask0.detach().clone().requires_grad_();
  Tensor x = permute(reshape(qkv, {B, T, 3, H, hd}), {2, 0, 3, 1, 4});
  Tensor q = select(x, 0, 0), k = select(x, 0, 1), v = select(x, 0, 2);
  Tensor out = bf16 ? scaled_dot_product_attention_bf16(q, k, v, mask) : scaled_dot_product_attention(q, k, v, mask);
  backward(sum(mul(out, gout)));
  return {out.detach(), qkv.grad(), mask.grad()};
}

}  // namespace

TEST(Attention, Bf16BatchedMatchesFloat32WithinBf16Tolerance) {
  if (!blas::bf16_supported()) GTEST_SKIP() << "no bf16 GEMM in this build";
  // Short (P saved) and long (P recomputed in backward: T > 1.5 hd) sequences.
  for (int64_t T : {12, 40}) {
    const int64_t B = 2, H = 3, hd = 8;
    Generator g(static_cast<uint64_t>(T));
    Tensor qkv = randn({B, T, 3 * H * hd}, g), mask = randn({T, T}, g), gout = randn({B, H, T, hd}, g);
    AttnGrads f32 = attend(qkv, mask, gout, H, hd, false);  // the float32 per-head path
    reset_gemm_counters();
    AttnGrads bf = attend(qkv, mask, gout, H, hd, true);
    // one batched GEMM per product, not one per head: QK^T, PV; backward (recompute QK^T),
    // dV, dP, dQ, dK
    EXPECT_EQ(counters().gemm_calls.load(), T == 12 ? 2 + 4 : 2 + 5) << "T " << T;
    // bf16 inputs (8 bits of mantissa): ~2^-8 relative per product, averaged over the sums.
    EXPECT_LT(rel_err(bf.out, f32.out), 2e-2) << "T " << T;
    EXPECT_LT(rel_err(bf.dqkv, f32.dqkv), 3e-2) << "T " << T;
    EXPECT_LT(rel_err(bf.dmask, f32.dmask), 3e-2) << "T " << T;
    EXPECT_GT(max_abs_diff(bf.out, f32.out), 0.0) << "bf16 really ran";
  }
}

// The batched path computes softmax(round(q) round(k)^T s + mask) and round(P) round(v): the
// float32 per-head path given those rounded operands agrees far more closely than 2^-8.
TEST(Attention, Bf16BatchedEqualsThePerHeadPathOnRoundedOperands) {
  if (!blas::bf16_supported()) GTEST_SKIP() << "no bf16 GEMM in this build";
  const int64_t B = 2, H = 2, T = 10, hd = 16;
  Generator g(21);
  Tensor q = randn({B, H, T, hd}, g), k = randn({B, H, T, hd}, g), v = randn({B, H, T, hd}, g);
  Tensor out = scaled_dot_product_attention_bf16(q, k, v);
  Tensor P = attention_probs(rounded_bf16(q), rounded_bf16(k));  // float32, per head
  Tensor ref = matmul(rounded_bf16(P), rounded_bf16(v));
  EXPECT_LT(rel_err(out, ref), 2e-3);
  EXPECT_GT(rel_err(out, scaled_dot_product_attention(q, k, v)), rel_err(out, ref));
}

TEST(Attention, Bf16FrozenKeysAndValuesGetNoGradient) {
  if (!blas::bf16_supported()) GTEST_SKIP() << "no bf16 GEMM in this build";
  Generator g(22);
  Tensor q = randn({1, 2, 6, 4}, g).requires_grad_(), k = randn({1, 2, 6, 4}, g), v = randn({1, 2, 6, 4}, g);
  Tensor out = scaled_dot_product_attention_bf16(q, k, v);
  reset_gemm_counters();
  backward(sum(out));
  EXPECT_EQ(counters().gemm_calls.load(), 2);  // dP and dQ, all heads at once
  EXPECT_TRUE(q.grad().defined());
  EXPECT_FALSE(k.grad().defined());
  EXPECT_FALSE(v.grad().defined());
  // nothing trainable: nothing recorded
  EXPECT_EQ(scaled_dot_product_attention_bf16(q.detach(), k, v).grad_fn(), nullptr);
}

TEST(Attention, Bf16PrecisionKeepsThePerHeadPathAndBf16BatchedRefusesFloat64) {
  // --precision bf16 runs the per-head GEMMs (faster here, see attention.h); heads this small stay float32.
  Generator g(23);
  Tensor q = randn({2, 3, 9, 8}, g), k = randn({2, 3, 9, 8}, g), v = randn({2, 3, 9, 8}, g);
  Tensor f32 = scaled_dot_product_attention(q, k, v);
  if (blas::bf16_supported()) {
    blas::set_precision(blas::Precision::bf16);
    Tensor bf = scaled_dot_product_attention(q, k, v);
    blas::set_precision(blas::Precision::f32);
    EXPECT_EQ(max_abs_diff(bf, f32), 0.0);
  }
  EXPECT_THROW_MSG(scaled_dot_product_attention_bf16(q.to(DType::f64), k.to(DType::f64), v.to(DType::f64)),
                   DTypeError, "scaled_dot_product_attention_bf16", "float32");
}
