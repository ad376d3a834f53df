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

}  // namespace peft::kernels
