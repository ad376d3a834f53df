// Shared helpers for the GoogleTest suites: seeded inputs, gradcheck assertions, error-message checks.
#pragma once
#include <gtest/gtest.h>

#include <string>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "core/bf16_weights.h"
#include "core/blas.h"
#include "core/random.h"
#include "core/tensor.h"

namespace peft::testing {

// --precision bf16 for one scope (tests of the bf16 path), restored to float32 with an empty
// bf16 weight cache when the scope ends, also when a test throws.
struct Bf16Scope {
  Bf16Scope() {
    bf16::clear_weight_cache();
    blas::set_precision(blas::Precision::bf16);
  }
  ~Bf16Scope() {
    blas::set_precision(blas::Precision::f32);
    bf16::clear_weight_cache();
  }
  Bf16Scope(const Bf16Scope&) = delete;
  Bf16Scope& operator=(const Bf16Scope&) = delete;
};

// A float64 leaf with N(0,1) entries that requires grad.
inline Tensor randn64(const Shape& s, uint64_t seed, bool requires_grad = true) {
  Generator g(seed);
  Tensor t = randn(s, g, DType::f64);
  if (requires_grad) t.requires_grad_();
  return t;
}

// Values in [lo, hi): for ops with restricted domains (log, sqrt, div).
inline Tensor rand64(const Shape& s, uint64_t seed, double lo, double hi, bool requires_grad = true) {
  Generator g(seed);
  Tensor t = rand(s, g, DType::f64, lo, hi);
  if (requires_grad) t.requires_grad_();
  return t;
}

#define EXPECT_GRADCHECK(fn, inputs)                       \
  do {                                                     \
    auto _r = ::peft::gradcheck((fn), (inputs));           \
    EXPECT_TRUE(_r.ok) << _r.message;                      \
  } while (0)

// Expects `stmt` to throw ExcType whose message contains every given fragment.
#define EXPECT_THROW_MSG(stmt, ExcType, ...)                                        \
  do {                                                                              \
    try {                                                                           \
      stmt;                                                                         \
      ADD_FAILURE() << "expected " #ExcType " from: " #stmt;                        \
    } catch (const ExcType& _e) {                                                   \
      for (const std::string& _frag : std::initializer_list<std::string>{__VA_ARGS__})                                       \
        EXPECT_NE(std::string(_e.what()).find(_frag), std::string::npos)            \
            << "message '" << _e.what() << "' lacks '" << _frag << "'";             \
    }                                                                               \
  } while (0)

}  // namespace peft::testing
