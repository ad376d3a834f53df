// The PyTorch fixture of attention, conv, index and dropout ops
// (tools/reference/make_op_fixtures_b.py -> ops_b.json) and its tensor loader.
#pragma once
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <vector>

#include "core/tensor.h"

namespace peft::testing {

inline const nlohmann::json& ops_b_fixture() {
  static const nlohmann::json j = [] {
    std::ifstream f(PEFT_SOURCE_DIR "/tests/fixtures/ops_b.json");
    if (!f) throw std::runtime_error("cannot open tests/fixtures/ops_b.json");
    return nlohmann::json::parse(f);
  }();
  return j;
}

// A fixture tensor {"shape": [...], "data": [...]} as a dt tensor.
inline Tensor load(const nlohmann::json& t, DType dt = DType::f64) {
  return from_vector(t["data"].get<std::vector<double>>(), t["shape"].get<Shape>(), dt);
}

}  // namespace peft::testing
