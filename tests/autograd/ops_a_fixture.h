// The PyTorch fixture of unary, softmax, layer_norm, loss and normalize ops
// (tools/reference/make_op_fixtures_a.py -> ops_a.json) and its comparison helpers.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"

namespace peft::testing {

inline const nlohmann::json& ops_a_fixture() {
  static const nlohmann::json j = [] {
    std::ifstream f(PEFT_SOURCE_DIR "/tests/fixtures/ops_a.json");
    if (!f) throw IOError("cannot open tests/fixtures/ops_a.json. Hint: run tools/reference/make_op_fixtures_a.py");
    return nlohmann::json::parse(f);
  }();
  return j;
}

inline Tensor from_json(const nlohmann::json& t, DType dt) {
  return from_vector(t["data"].get<std::vector<double>>(), t["shape"].get<Shape>(), dt);
}

// Every element of got within atol + rtol * |want| of the fixture tensor `want`.
inline void expect_close(const Tensor& got, const nlohmann::json& want, double atol, double rtol, const std::string& what) {
  ASSERT_TRUE(got.defined()) << what << ": undefined";
  ASSERT_EQ(got.sizes(), want["shape"].get<Shape>()) << what;
  std::vector<double> g = got.to_vector<double>(), w = want["data"].get<std::vector<double>>();
  ASSERT_EQ(g.size(), w.size()) << what;
  for (size_t i = 0; i < g.size(); ++i)
    ASSERT_LE(std::abs(g[i] - w[i]), atol + rtol * std::abs(w[i]))
        << what << " element " << i << ": got " << g[i] << ", expected " << w[i];
}

}  // namespace peft::testing
