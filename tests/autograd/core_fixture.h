// The PyTorch fixture of the core ops (tools/reference/make_op_fixtures_core.py -> ops_core.json):
// loading, layouts (contiguous, transposed, stepped), and the value/gradient comparison that
// test_elementwise, test_reduce, test_view and test_matmul run over their own family of cases.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "core/error.h"

namespace peft::testing {

using nlohmann::json;
using RunFn = std::function<Tensor(const std::string& op, const json& args, const std::vector<Tensor>& in)>;

inline const json& fixture() {
  static const json j = [] {
    std::ifstream f(PEFT_SOURCE_DIR "/tests/fixtures/ops_core.json");
    if (!f) throw IOError("ops_core.json is missing. Hint: run tools/reference/make_op_fixtures_core.py");
    return json::parse(f);
  }();
  return j;
}

// The case's logical values as a dt tensor with the case's memory layout.
inline Tensor fixture_input(const json& in, DType dt) {
  const Shape s = in.at("shape").get<Shape>();
  Tensor x = from_vector(in.at("data").get<std::vector<double>>(), s, dt);
  const std::string layout = in.at("layout");
  if (layout == "T") {  // stored transposed: the last two strides are swapped
    x = transpose(transpose(x, -1, -2).clone(), -1, -2);
  } else if (layout == "step2") {  // every other element of a buffer twice as wide, NaN between
    Shape wide = s;
    wide.back() *= 2;
    Tensor buf = full(wide, std::numeric_limits<double>::quiet_NaN(), dt);
    x = slice(buf, -1, 0, wide.back(), 2);
    x.copy_(from_vector(in.at("data").get<std::vector<double>>(), s, dt));
  }
  if (in.at("grad").get<bool>()) x.requires_grad_();
  return x;
}

// u[i] = ((7 i) mod 11 - 5) / 4: the upstream gradient the fixture's grads64 were computed with.
inline Tensor upstream(const Shape& s, DType dt) {
  std::vector<double> u(shape_numel(s));
  for (size_t i = 0; i < u.size(); ++i) u[i] = static_cast<double>(static_cast<int64_t>((7 * i) % 11) - 5) / 4.0;
  return from_vector(u, s, dt);
}

inline void expect_values(const std::vector<double>& got, const json& want, double atol, double rtol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    const double w = want[i].get<double>();
    EXPECT_LE(std::fabs(got[i] - w), atol + rtol * std::fabs(w)) << what << " element " << i << ": " << got[i]
                                                                  << " vs " << w;
  }
}

// Forward values (float64 and float32 against torch's float64 and float32), then the gradients
// of sum(y * u) (both dtypes against torch's float64 gradients); frozen inputs must get none.
inline void check_case(const json& c, DType dt, const RunFn& run) {
  SCOPED_TRACE(c.at("name").get<std::string>() + " " + dtype_name(dt));
  std::vector<Tensor> in;
  for (const json& i : c.at("inputs")) in.push_back(fixture_input(i, dt));
  Tensor y = run(c.at("op").get<std::string>(), c.at("args"), in);
  ASSERT_EQ(y.sizes(), c.at("out_shape").get<Shape>());
  if (y.dtype() == DType::i64) {
    EXPECT_EQ(y.to_vector<int64_t>(), c.at("out64").get<std::vector<int64_t>>());
    return;
  }
  ASSERT_EQ(y.dtype(), dt);
  const bool f64 = dt == DType::f64;
  expect_values(y.to_vector<double>(), c.at(f64 ? "out64" : "out32"), f64 ? 1e-12 : 1e-5, f64 ? 1e-10 : 1e-5, "output");
  ASSERT_TRUE(y.requires_grad());
  backward(y, upstream(y.sizes(), dt));
  const json& grads = c.at("grads64");
  for (size_t i = 0; i < in.size(); ++i) {
    if (grads[i].is_null()) {
      EXPECT_FALSE(in[i].grad().defined()) << "frozen input " << i << " got a gradient";
      continue;
    }
    ASSERT_TRUE(in[i].grad().defined()) << "input " << i;
    ASSERT_EQ(in[i].grad().sizes(), in[i].sizes());
    expect_values(in[i].grad().to_vector<double>(), grads[i], f64 ? 1e-12 : 1e-4, f64 ? 1e-10 : 1e-4, "gradient");
  }
}

inline int check_family(const char* family, const RunFn& run) {
  int n = 0;
  for (const json& c : fixture().at("cases")) {
    if (c.at("family") != family) continue;
    ++n;
    for (DType dt : {DType::f64, DType::f32}) check_case(c, dt, run);
  }
  return n;
}

}  // namespace peft::testing
