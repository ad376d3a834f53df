// Row softmax / log_softmax kernels on contiguous [R, N] buffers (no autograd): forward and backward.
#pragma once
#include <cstdint>

namespace peft::kernels {

// y[r, :] = softmax(x[r, :]) (or log_softmax when `log`), over N contiguous columns per row.
// Subtracts the row max first, so +-1000 inputs neither overflow nor give NaN.
template <class T>
void softmax_forward(const T* x, T* y, int64_t rows, int64_t n, bool log);

// Given the forward output y and the upstream gradient g (both [R, N] contiguous):
//   softmax:     dx = y * (g - sum(g * y))
//   log_softmax: dx = g - exp(y) * sum(g)
template <class T>
void softmax_backward(const T* g, const T* y, T* dx, int64_t rows, int64_t n, bool log);

// One attention row in place: row = softmax(row); a row that is all -inf (every key masked)
// becomes zeros instead of 0/0. The float32 version is vectorised (kernels/fast_math.h exp).
void softmax_row_inplace(float* row, int64_t n);
void softmax_row_inplace(double* row, int64_t n);

// The matching backward in place: r = p * (r - sum(r * p)), r holding dP on entry.
void softmax_row_backward_inplace(const float* p, float* r, int64_t n);
void softmax_row_backward_inplace(const double* p, double* r, int64_t n);

}  // namespace peft::kernels
