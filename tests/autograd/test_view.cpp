// Views: view/reshape/flatten/transpose/permute/narrow/slice/select/expand/squeeze/unsqueeze/
// contiguous against PyTorch (float32 and float64), no-copy checks, float64 gradchecks, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "core/counters.h"
#include "tests/autograd/core_fixture.h"
#include "tests/testing.h"

using namespace peft;
using namespace peft::testing;

namespace {

using nlohmann::json;

// ---- this file's ops

Tensor run_case(const std::string& op, const json& a, const std::vector<Tensor>& x) {
  if (op == "view") return view(x[0], a.at("shape").get<Shape>());
  if (op == "reshape") return reshape(x[0], a.at("shape").get<Shape>());
  if (op == "flatten") return flatten(x[0], a.at("start").get<int64_t>(), a.at("end").get<int64_t>());
  if (op == "transpose") return transpose(x[0], a.at("d0").get<int64_t>(), a.at("d1").get<int64_t>());
  if (op == "permute") return permute(x[0], a.at("dims").get<std::vector<int64_t>>());
  if (op == "narrow")
    return narrow(x[0], a.at("dim").get<int64_t>(), a.at("start").get<int64_t>(), a.at("length").get<int64_t>());
  if (op == "slice")
    return slice(x[0], a.at("dim").get<int64_t>(), a.at("start").get<int64_t>(), a.at("end").get<int64_t>(),
                 a.at("step").get<int64_t>());
  if (op == "select") return select(x[0], a.at("dim").get<int64_t>(), a.at("index").get<int64_t>());
  if (op == "expand") return expand(x[0], a.at("shape").get<Shape>());
  if (op == "squeeze") return squeeze(x[0], a.at("dim").get<int64_t>());
  if (op == "unsqueeze") return unsqueeze(x[0], a.at("dim").get<int64_t>());
  if (op == "contiguous") return contiguous(x[0]);
  if (op == "chain")  // x[:, 0:4:2].permute(1, 0).reshape(-1).unsqueeze(0).expand(2, 8)
    return expand(unsqueeze(reshape(permute(slice(x[0], 1, 0, 4, 2), {1, 0}), {-1}), 0), {2, 8});
  throw ValueError("test_view: no runner for fixture op '" + op + "'");
}

bool same_storage(const Tensor& a, const Tensor& b) { return a.impl()->storage == b.impl()->storage; }

}  // namespace

TEST(ViewFixture, MatchesPyTorchInFloat32AndFloat64) { EXPECT_GE(check_family("view", run_case), 30); }

TEST(ViewLayout, ViewsShareStorageAndAllocateNothing) {
  Tensor x = randn64({2, 3, 4}, 40);
  const int64_t live = counters().live_storages, bytes = counters().live_bytes;
  std::vector<Tensor> views = {view(x, {6, 4}),
                               view(x, {4, -1}),
                               reshape(x, {-1}),
                               flatten(x, 1),
                               transpose(x, 0, 2),
                               permute(x, {1, 2, 0}),
                               narrow(x, 1, 1, 2),
                               slice(x, 2, 0, 4, 3),
                               select(x, 0, 1),
                               expand(unsqueeze(x, 0), {5, 2, 3, 4}),
                               squeeze(unsqueeze(x, 1), 1),
                               unsqueeze(x, -1),
                               contiguous(x),
                               view(slice(x, 2, 0, 4, 2), {2, 3, 2}),  // a stepped slice can still merge dims
                               reshape(transpose(x, 0, 1), {3, 2, 2, 2})};  // splitting keeps the transpose
  for (const Tensor& v : views) EXPECT_TRUE(same_storage(v, x)) << shape_str(v.sizes());
  // Recording the views' nodes allocates no tensor storage either.
  EXPECT_EQ(counters().live_storages, live);
  EXPECT_EQ(counters().live_bytes, bytes);
  EXPECT_EQ(contiguous(x).impl(), x.impl());  // already contiguous: x itself
  EXPECT_EQ(expand(x, {2, 3, 4}).impl(), x.impl());
  // Strides come out as PyTorch's.
  EXPECT_EQ(transpose(x, 0, 2).strides(), (Shape{1, 4, 12}));
  EXPECT_EQ(slice(x, 2, 1, 4, 2).strides(), (Shape{12, 4, 2}));
  EXPECT_EQ(slice(x, 2, 1, 4, 2).offset(), 1);
  EXPECT_EQ(expand(unsqueeze(x, 0), {5, 2, 3, 4}).strides(), (Shape{0, 12, 4, 1}));
  EXPECT_EQ(view(slice(x, 2, 0, 4, 2), {2, 3, 2}).strides(), (Shape{12, 4, 2}));
}

TEST(ViewLayout, NonViewableReshapeAndContiguousCopy) {
  Tensor x = randn64({3, 4}, 41);
  Tensor t = transpose(x, 0, 1);
  const int64_t live = counters().live_storages;
  Tensor r = reshape(t, {12});
  EXPECT_FALSE(same_storage(r, x));
  EXPECT_EQ(counters().live_storages, live + 1);  // exactly one copy
  EXPECT_EQ(r.to_vector<double>(), contiguous(t).to_vector<double>());
  EXPECT_EQ(r.at({1}), x.at({1, 0}));
  Tensor c = contiguous(t);
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_FALSE(same_storage(c, x));
  // Gradients still flow through the copies.
  backward(sum(mul(reshape(t, {12}), arange(12, DType::f64))));
  EXPECT_EQ(x.grad().at({1, 0}), 1.0);
  EXPECT_EQ(x.grad().at({0, 1}), 3.0);
}

TEST(ViewValues, SliceClampsLikePython) {
  Tensor x = arange(10, DType::f64);
  EXPECT_EQ(slice(x, 0, 2, 100).to_vector<double>(), (std::vector<double>{2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(slice(x, 0, -3, 10).to_vector<double>(), (std::vector<double>{7, 8, 9}));
  EXPECT_EQ(slice(x, 0, 1, 10, 4).to_vector<double>(), (std::vector<double>{1, 5, 9}));
  EXPECT_EQ(slice(x, 0, 0, 10, 20).to_vector<double>(), (std::vector<double>{0}));
  EXPECT_EQ(slice(x, 0, 6, 3).numel(), 0);
  EXPECT_EQ(slice(x, 0, -100, 2).to_vector<double>(), (std::vector<double>{0, 1}));
  EXPECT_EQ(select(x, 0, -1).item(), 9.0);
  EXPECT_EQ(narrow(x, 0, -2, 2).to_vector<double>(), (std::vector<double>{8, 9}));
  EXPECT_EQ(squeeze(zeros({2, 3}), 0).sizes(), (Shape{2, 3}));  // not size 1: unchanged
  EXPECT_EQ(unsqueeze(zeros({2, 3}), 2).sizes(), (Shape{2, 3, 1}));
  EXPECT_EQ(unsqueeze(scalar_tensor(1.0), 0).sizes(), (Shape{1}));
  EXPECT_EQ(flatten(scalar_tensor(1.0)).sizes(), (Shape{1}));
  EXPECT_EQ(view(zeros({2, 3}), {3, 1, 2}).sizes(), (Shape{3, 1, 2}));
}

// ---- float64 gradchecks

TEST(ViewGrad, EveryViewOp) {
  std::vector<std::pair<const char*, std::function<Tensor(const Tensor&)>>> fs = {
      {"view", [](const Tensor& x) { return view(x, {2, 3, 2, -1}); }},  // splits the last dim
      {"reshape", [](const Tensor& x) { return reshape(x, {-1, 2}); }},
      {"flatten", [](const Tensor& x) { return flatten(x, 0, 1); }},
      {"transpose", [](const Tensor& x) { return transpose(x, -1, 0); }},
      {"permute", [](const Tensor& x) { return permute(x, {1, 2, 0}); }},
      {"narrow", [](const Tensor& x) { return narrow(x, 2, 1, 2); }},
      {"slice", [](const Tensor& x) { return slice(x, 2, 0, 4, 3); }},
      {"select", [](const Tensor& x) { return select(x, 1, -1); }},
      {"expand", [](const Tensor& x) { return expand(unsqueeze(x, 1), {2, 3, 3, 4}); }},
      {"squeeze", [](const Tensor& x) { return squeeze(narrow(x, 1, 2, 1), 1); }},
      {"unsqueeze", [](const Tensor& x) { return unsqueeze(x, -1); }},
      {"contiguous", [](const Tensor& x) { return contiguous(transpose(x, 0, 1)); }},
  };
  for (auto& [name, f] : fs) {
    SCOPED_TRACE(name);
    EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return f(in[0]); }, (std::vector<Tensor>{randn64({2, 3, 4}, 42)}));
    // The same op on a non-contiguous leaf: a permuted copy whose logical shape is [2, 3, 4].
    Tensor p = permute(randn64({4, 2, 3}, 43, false), {1, 2, 0}).requires_grad_();
    ASSERT_FALSE(p.is_contiguous());
    EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return f(in[0]); }, (std::vector<Tensor>{p}));
  }
}

TEST(ViewGrad, ChainedViewsAndSteppedSlices) {
  auto chain = [](const std::vector<Tensor>& in) {
    Tensor s = slice(transpose(in[0], 0, 1), 0, 1, 6, 2);          // [6, 4] -> [3, 4] rows 1, 3, 5
    Tensor v = reshape(unsqueeze(select(view(s, {3, 2, 2}), 2, 1), 0), {6});
    return mul(expand(unsqueeze(v, 0), {2, 6}), narrow(flatten(in[0]), 0, 3, 6));
  };
  EXPECT_GRADCHECK(chain, (std::vector<Tensor>{randn64({4, 6}, 44)}));
  // A view of a view of a stepped slice (non-contiguous but viewable).
  auto stepped = [](const std::vector<Tensor>& in) { return view(view(slice(in[0], 1, 1, 8, 2), {3, 2, 2}), {6, 2}); };
  EXPECT_GRADCHECK(stepped, (std::vector<Tensor>{randn64({3, 8}, 45)}));
}

TEST(ViewGrad, TensorUsedTwice) {
  // x + x^T and x * (x viewed differently): both paths accumulate into one gradient.
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return add(in[0], transpose(in[0], 0, 1)); },
                   (std::vector<Tensor>{randn64({3, 3}, 46)}));
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return mul(view(in[0], {2, 6}), reshape(transpose(in[0], 0, 1), {2, 6})); },
                   (std::vector<Tensor>{randn64({4, 3}, 47)}));
  // Two overlapping slices of one leaf: the overlap gets both contributions.
  Tensor x = zeros({5}, DType::f64).requires_grad_();
  backward(sum(add(slice(x, 0, 0, 2), mul(slice(x, 0, 1, 5, 2), 10.0))));  // [x0, x1] + 10 [x1, x3]
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{1, 11, 0, 10, 0}));
}

TEST(ViewFreeze, FrozenInputsRecordNothing) {
  Tensor x = randn64({2, 3}, 48, false);
  for (Tensor y : {view(x, {3, 2}), reshape(transpose(x, 0, 1), {6}), permute(x, {1, 0}), slice(x, 1, 0, 3, 2),
                   select(x, 0, 1), expand(x, {4, 2, 3}), unsqueeze(x, 0), contiguous(transpose(x, 0, 1))})
    EXPECT_EQ(y.grad_fn(), nullptr);
  // A view of a trainable tensor, used next to a frozen one: only the trainable one gets a gradient.
  Tensor w = randn64({2, 3}, 49);
  backward(sum(mul(transpose(w, 0, 1), transpose(x, 0, 1))));
  EXPECT_TRUE(w.grad().defined());
  EXPECT_FALSE(x.grad().defined());
}

// ---- bad calls

TEST(ViewErrors, NonViewableLayoutHintsAtReshape) {
  Tensor t = transpose(zeros({3, 4}), 0, 1);
  EXPECT_THROW_MSG(view(t, {12}), ShapeError, "view", "[4, 3]", "[12]", "reshape");
  EXPECT_THROW_MSG(view(slice(zeros({4, 6}), 1, 0, 4, 2), {8}), ShapeError, "view", "reshape");
  EXPECT_THROW_MSG(view(zeros({2, 3}), {4, 2}), ShapeError, "view", "[4, 2]", "[2, 3]");
  EXPECT_THROW_MSG(view(zeros({2, 3}), {-1, -1}), ShapeError, "view", "-1");
  EXPECT_THROW_MSG(reshape(zeros({2, 3}), {4, -1}), ShapeError, "reshape", "-1");
  EXPECT_THROW_MSG(reshape(zeros({2, 3}), {-2, 3}), ShapeError, "reshape", "-2");
}

TEST(ViewErrors, ExpandToIncompatibleShape) {
  EXPECT_THROW_MSG(expand(zeros({3, 1}), {3, 4, 2}), ShapeError, "expand", "[3, 1]", "[3, 4, 2]");
  EXPECT_THROW_MSG(expand(zeros({2, 3}), {3}), ShapeError, "expand", "[2, 3]", "[3]");
  EXPECT_THROW_MSG(expand(zeros({2, 3}), {-1, 2, 3}), ShapeError, "expand", "-1");
  EXPECT_THROW_MSG(expand(zeros({2, 3}), {2, -2}), ShapeError, "expand");
  EXPECT_THROW_MSG(expand(zeros({1, 3}), {-2, 3}), ShapeError, "expand", "-2");
  EXPECT_THROW_MSG(expand(zeros({3}), {-3, 3}), ShapeError, "expand", "-3");
}

TEST(ViewErrors, BadDimsAndRanges) {
  Tensor x = zeros({2, 3, 4});
  EXPECT_THROW_MSG(transpose(x, 0, 3), ShapeError, "transpose");
  EXPECT_THROW_MSG(permute(x, {0, 1}), ShapeError, "permute", "[2, 3, 4]");
  EXPECT_THROW_MSG(permute(x, {0, 1, 1}), ShapeError, "permute", "repeated");
  EXPECT_THROW_MSG(narrow(x, 1, 2, 2), ShapeError, "narrow", "out of range");
  EXPECT_THROW_MSG(slice(x, 1, 0, 3, 0), ShapeError, "slice", "step");
  EXPECT_THROW_MSG(select(x, 2, 4), ShapeError, "select", "index 4");
  EXPECT_THROW_MSG(flatten(x, 2, 1), ShapeError, "flatten");
  EXPECT_THROW_MSG(squeeze(x, 3), ShapeError, "squeeze");
  EXPECT_THROW_MSG(unsqueeze(x, 4), ShapeError, "unsqueeze");
  // A 0-d tensor has no dim to index (dim 0 must not read past its empty size list).
  Tensor s = scalar_tensor(1.0);
  EXPECT_THROW_MSG(slice(s, 0, 0, 1), ShapeError, "slice", "0-d");
  EXPECT_THROW_MSG(narrow(s, 0, 0, 1), ShapeError, "narrow", "0-d");
  EXPECT_THROW_MSG(select(s, 0, 0), ShapeError, "select", "0-d");
  EXPECT_THROW_MSG(s.size(0), ShapeError, "size", "0-d");
  EXPECT_THROW_MSG(x.size(3), ShapeError, "size", "dim 3");
}
