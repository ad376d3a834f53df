// cat, stack, index_select, gather, embedding, where, masked_fill: PyTorch parity, gradcheck, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "tests/autograd/ops_b_fixture.h"
#include "tests/testing.h"

using namespace peft;
using namespace peft::testing;
using nlohmann::json;

namespace {

const json& fixture() { return ops_b_fixture(); }
Tensor load_i64(const json& t) {
  return from_vector_i64(t["data"].get<std::vector<int64_t>>(), t["shape"].get<Shape>());
}
Tensor leaf(const json& t) { return load(t).requires_grad_(); }

// Checks out against the fixture and runs backward of sum(out * gy); callers then compare the
// gradients they care about.
void check_forward_and_backward(const Tensor& out, const json& c) {
  ASSERT_EQ(out.sizes(), c["out"]["shape"].get<Shape>());
  EXPECT_LT(max_abs_diff(out, load(c["out"])), 1e-15);
  backward(sum(mul(out, load(c["gy"]))));
}

}  // namespace

// ---------------------------------------------------------------- cat / stack

TEST(Cat, MatchesTorch) {
  const json& c = fixture()["cat"];
  Tensor a = leaf(c["a"]), b = leaf(c["b"]);
  check_forward_and_backward(cat({a, b}, c["dim"].get<int64_t>()), c);
  EXPECT_LT(max_abs_diff(a.grad(), load(c["da"])), 1e-15);
  EXPECT_LT(max_abs_diff(b.grad(), load(c["db"])), 1e-15);
}

TEST(Cat, GradcheckNonContiguousAndReusedAndFrozen) {
  auto fn = [](const std::vector<Tensor>& in) {
    // a transposed view, the same tensor twice, and a frozen constant in the middle
    return cat({transpose(in[0], 0, 1), in[1], zeros({2, 3}, DType::f64), in[1]}, 0);
  };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn64({3, 2}, 1), randn64({1, 3}, 2)}));
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return cat({in[0], in[1]}, -1); },
                   (std::vector<Tensor>{randn64({2, 2, 1}, 3), randn64({2, 2, 3}, 4)}));
}

TEST(Cat, OnlyTrainableInputsGetGradients) {
  Tensor a = randn64({2, 2}, 1), b = randn64({1, 2}, 2, false);
  backward(sum(cat({a, b}, 0)));
  EXPECT_TRUE(a.grad().defined());
  EXPECT_FALSE(b.grad().defined());
  Tensor c = cat({b, b}, 0);
  EXPECT_EQ(c.grad_fn(), nullptr);
}

TEST(Stack, MatchesTorch) {
  const json& c = fixture()["stack"];
  Tensor a = leaf(c["a"]), b = leaf(c["b"]);
  check_forward_and_backward(stack({a, b}, c["dim"].get<int64_t>()), c);
  EXPECT_LT(max_abs_diff(a.grad(), load(c["da"])), 1e-15);
  EXPECT_LT(max_abs_diff(b.grad(), load(c["db"])), 1e-15);
}

TEST(Stack, GradcheckLastDimAndReused) {
  auto fn = [](const std::vector<Tensor>& in) { return stack({in[0], transpose(in[1], 0, 1), in[0]}, -1); };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn64({2, 3}, 1), randn64({3, 2}, 2)}));
}

TEST(CatStack, BadCallsNameOpAndShapes) {
  EXPECT_THROW_MSG(cat({zeros({2, 3}), zeros({2, 4})}, 0), ShapeError, "cat", "[2, 3]", "[2, 4]");
  EXPECT_THROW_MSG(cat({zeros({2, 3}), zeros({2, 3, 1})}, 0), ShapeError, "cat", "[2, 3, 1]");
  EXPECT_THROW_MSG(cat({zeros({2, 3}), zeros({2, 3}, DType::f64)}, 0), DTypeError, "cat", "float64");
  EXPECT_THROW_MSG(cat({}, 0), ValueError, "cat");
  EXPECT_THROW_MSG(stack({zeros({2, 3}), zeros({3, 2})}, 0), ShapeError, "stack", "[2, 3]", "[3, 2]");
  EXPECT_THROW(cat({zeros({2, 3})}, 2), ShapeError);
}

// ---------------------------------------------------------------- index_select / gather

TEST(IndexSelect, MatchesTorchWithRepeatedIndex) {
  const json& c = fixture()["index_select"];
  Tensor x = leaf(c["x"]);
  check_forward_and_backward(index_select(x, c["dim"].get<int64_t>(), load_i64(c["idx"])), c);
  EXPECT_LT(max_abs_diff(x.grad(), load(c["dx"])), 1e-15);
}

TEST(IndexSelect, GradcheckEveryDimAndStrided) {
  for (int64_t d = 0; d < 3; ++d) {
    auto fn = [d](const std::vector<Tensor>& in) {
      return index_select(permute(in[0], {2, 0, 1}), d, from_vector_i64({1, 0, 1}, {3}));
    };
    EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn64({2, 3, 2}, 10 + d)}));
  }
}

TEST(Gather, MatchesTorch) {
  const json& c = fixture()["gather"];
  Tensor x = leaf(c["x"]);
  check_forward_and_backward(gather(x, c["dim"].get<int64_t>(), load_i64(c["idx"])), c);
  EXPECT_LT(max_abs_diff(x.grad(), load(c["dx"])), 1e-15);
}

TEST(Gather, GradcheckDim0OnTransposedInputWithRepeats) {
  auto fn = [](const std::vector<Tensor>& in) {
    Tensor idx = from_vector_i64({2, 0, 1, 2, 2, 0}, {2, 3});  // x is [3, 4] after transpose
    return gather(transpose(in[0], 0, 1), 0, idx);
  };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn64({4, 3}, 5)}));
}

TEST(IndexSelectGather, BadCallsNameOpAndShapes) {
  Tensor x = zeros({3, 4});
  EXPECT_THROW_MSG(index_select(x, 0, from_vector_i64({0, 3}, {2})), ValueError, "index_select", "3", "[3, 4]");
  EXPECT_THROW_MSG(index_select(x, 1, from_vector_i64({-1}, {1})), ValueError, "index_select", "-1");
  EXPECT_THROW_MSG(index_select(x, 0, from_vector_i64({0, 1}, {1, 2})), ShapeError, "index_select", "[1, 2]",
                   "[3, 4]");
  EXPECT_THROW_MSG(index_select(x, 0, zeros({2})), DTypeError, "index_select", "int64");
  EXPECT_THROW_MSG(gather(x, 1, from_vector_i64({0, 4}, {1, 2})), ValueError, "gather", "4", "[3, 4]");
  EXPECT_THROW_MSG(gather(x, 1, from_vector_i64({0, 1, 2, 3}, {4, 1})), ShapeError, "gather", "[4, 1]", "[3, 4]");
  EXPECT_THROW_MSG(gather(x, 0, from_vector_i64({0}, {1})), ShapeError, "gather", "[1]", "[3, 4]");
}

// ---------------------------------------------------------------- embedding

TEST(Embedding, MatchesTorchWithRepeatedIds) {
  const json& c = fixture()["embedding"];
  Tensor w = leaf(c["weight"]);
  check_forward_and_backward(embedding(w, load_i64(c["ids"])), c);
  EXPECT_LT(max_abs_diff(w.grad(), load(c["dweight"])), 1e-15);
}

TEST(Embedding, GradcheckAndFrozenWeight) {
  Tensor ids = from_vector_i64({3, 1, 3, 0}, {2, 2});
  EXPECT_GRADCHECK([ids](const std::vector<Tensor>& in) { return embedding(in[0], ids); },
                   (std::vector<Tensor>{randn64({4, 3}, 1)}));
  // a transposed (non-contiguous) weight
  EXPECT_GRADCHECK([ids](const std::vector<Tensor>& in) { return embedding(transpose(in[0], 0, 1), ids); },
                   (std::vector<Tensor>{randn64({3, 4}, 2)}));
  Tensor frozen = randn64({4, 3}, 3, false);
  Tensor out = embedding(frozen, ids);
  EXPECT_EQ(out.grad_fn(), nullptr);
  EXPECT_EQ(out.sizes(), (Shape{2, 2, 3}));
  EXPECT_EQ(out.at({1, 0, 2}), frozen.at({3, 2}));
}

TEST(Embedding, BadIdsNameIdAndVocabulary) {
  Tensor w = zeros({10, 4});
  EXPECT_THROW_MSG(embedding(w, from_vector_i64({1, 12}, {2})), ValueError, "embedding", "12", "V = 10", "[10, 4]");
  EXPECT_THROW_MSG(embedding(w, from_vector_i64({-1}, {1})), ValueError, "embedding", "-1");
  EXPECT_THROW_MSG(embedding(w, zeros({2})), DTypeError, "embedding", "int64");
  EXPECT_THROW_MSG(embedding(zeros({10}), from_vector_i64({1}, {1})), ShapeError, "embedding", "[10]");
}

// ---------------------------------------------------------------- where / masked_fill

TEST(Where, MatchesTorchWithBroadcasting) {
  const json& c = fixture()["where"];
  Tensor a = leaf(c["a"]), b = leaf(c["b"]);
  check_forward_and_backward(where(load(c["cond"]), a, b), c);
  EXPECT_LT(max_abs_diff(a.grad(), load(c["da"])), 1e-15);
  EXPECT_LT(max_abs_diff(b.grad(), load(c["db"])), 1e-15);
}

TEST(Where, ConditionOfAnyDtypeAndNoGradientToIt) {
  Tensor a = randn64({3}, 1, false), b = randn64({3}, 2, false);
  Tensor ci = from_vector_i64({0, 5, -2}, {3});
  Tensor cf = from_vector({0.0, 1e-300, NAN}, {3}, DType::f64);  // tiny and NaN are nonzero
  for (const Tensor& cond : {ci, cf}) {
    Tensor out = where(cond, a, b);
    EXPECT_EQ(out.at({0}), b.at({0}));
    EXPECT_EQ(out.at({1}), a.at({1}));
    EXPECT_EQ(out.at({2}), a.at({2}));
  }
  Tensor cg = randn64({3}, 3);  // a float cond that requires grad is still only a selector
  Tensor a2 = randn64({3}, 4);
  backward(sum(where(cg, a2, b)));
  EXPECT_FALSE(cg.grad().defined());
  EXPECT_TRUE(a2.grad().defined());
}

TEST(Where, GradcheckBroadcastAndReused) {
  Tensor cond = from_vector({1, 0, 0, 1, 1, 0}, {2, 3}, DType::f64);
  EXPECT_GRADCHECK([cond](const std::vector<Tensor>& in) { return where(cond, in[0], in[1]); },
                   (std::vector<Tensor>{randn64({2, 1}, 1), randn64({3}, 2)}));
  EXPECT_GRADCHECK([cond](const std::vector<Tensor>& in) { return where(cond, in[0], mul(in[0], in[0])); },
                   (std::vector<Tensor>{randn64({2, 3}, 3)}));
  EXPECT_GRADCHECK([cond](const std::vector<Tensor>& in) { return where(cond, transpose(in[0], 0, 1), in[1]); },
                   (std::vector<Tensor>{randn64({3, 2}, 4), randn64({2, 3}, 5)}));
}

TEST(Where, InfiniteUpstreamGradientDoesNotLeakNaN) {
  // The unselected branch must get an exact 0, not inf * 0 = NaN.
  Tensor a = randn64({2}, 1), b = randn64({2}, 2);
  Tensor out = where(from_vector({1, 0}, {2}, DType::f64), a, b);
  backward(out, from_vector({INFINITY, 1.0}, {2}, DType::f64));
  EXPECT_EQ(a.grad().at({1}), 0.0);
  EXPECT_EQ(b.grad().at({0}), 0.0);
}

TEST(MaskedFill, MatchesTorchWithBroadcastMask) {
  const json& c = fixture()["masked_fill"];
  Tensor x = leaf(c["x"]);
  check_forward_and_backward(masked_fill(x, load(c["mask"]), c["value"].get<double>()), c);
  EXPECT_LT(max_abs_diff(x.grad(), load(c["dx"])), 1e-15);
}

TEST(MaskedFill, GradcheckStridedAndNegInfForSoftmax) {
  Tensor mask = from_vector({0, 1, 0}, {3}, DType::f64);
  EXPECT_GRADCHECK([mask](const std::vector<Tensor>& in) { return masked_fill(transpose(in[0], 0, 1), mask, 7.0); },
                   (std::vector<Tensor>{randn64({3, 2}, 1)}));
  // the usual attention-mask pattern: -inf then softmax gives an exact 0 and a finite gradient
  Tensor x = randn64({2, 3}, 2);
  Tensor p = softmax(masked_fill(x, mask, -INFINITY), -1);
  EXPECT_EQ(p.at({0, 1}), 0.0);
  backward(sum(mul(p, randn64({2, 3}, 3, false))));
  for (double g : x.grad().to_vector<double>()) EXPECT_TRUE(std::isfinite(g));
  EXPECT_EQ(x.grad().at({1, 1}), 0.0);
}

TEST(WhereMaskedFill, BadCallsNameOpAndShapes) {
  EXPECT_THROW_MSG(where(zeros({2}), zeros({3}), zeros({3})), ShapeError, "where", "[2]", "[3]");
  EXPECT_THROW_MSG(where(zeros({3}), zeros({3}), zeros({3}, DType::f64)), DTypeError, "where", "float64");
  EXPECT_THROW_MSG(masked_fill(zeros({3}), zeros({2, 3}), 1.0), ShapeError, "masked_fill", "[2, 3]", "[3]");
  EXPECT_THROW_MSG(masked_fill(zeros({4}), zeros({3}), 1.0), ShapeError, "masked_fill", "[4]", "[3]");
}
