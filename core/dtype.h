// Element types a tensor can hold, and the dispatch helper that instantiates a kernel per type.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"

namespace peft {

// bf16 (bfloat16, the upper half of a float32) holds only frozen GEMM weights under --precision
// bf16 (nn/bf16_storage.h): GEMMs read it as their B operand; elementwise kernels do not take it
// (dispatch_float refuses it), and copy_ / to() convert it to and from the other types.
enum class DType : uint8_t { f32, f64, i64, bf16 };

inline size_t dtype_size(DType dt) {
  switch (dt) {
    case DType::f32: return 4;
    case DType::bf16: return 2;
    case DType::f64:
    case DType::i64: return 8;
  }
  return 8;
}
inline const char* dtype_name(DType dt) {
  switch (dt) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::i64: return "int64";
    case DType::bf16: return "bfloat16";
  }
  return "?";
}
inline bool is_floating(DType dt) { return dt != DType::i64; }
// The dtype that arithmetic on a tensor stored as dt runs in: float32 for a bfloat16 weight.
inline DType compute_dtype(DType dt) { return dt == DType::bf16 ? DType::f32 : dt; }

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<int64_t>() { return DType::i64; }

// Runs f(T{}) with T = float or double: kernels are written once as templates.
// Usage: dispatch_float(x.dtype(), "exp", [&](auto tag) { using T = decltype(tag); ... });
template <class F>
void dispatch_float(DType dt, const char* op, F&& f) {
  if (dt == DType::f32) {
    f(float{});
  } else if (dt == DType::f64) {
    f(double{});
  } else {
    throw DTypeError(std::string(op) + ": expected a float32 or float64 tensor, got " + dtype_name(dt));
  }
}

}  // namespace peft
