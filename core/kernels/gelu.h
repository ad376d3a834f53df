// Exact (erf) GELU kernels over contiguous buffers (no autograd): forward and backward.
//
//   gelu(x)  = x * Phi(x),            Phi(x) = (1 + erf(x / sqrt 2)) / 2
//   gelu'(x) = Phi(x) + x * phi(x),   phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
//
// float64 calls std::erf / std::exp (the reference path gradcheck runs on). float32 uses a
// branch-free erf that the compiler vectorises (the same Abramowitz-Stegun 7.1.26 form PyTorch's
// vectorised CPU GELU uses; |error| <= 1.5e-7, below float32's resolution of Phi near 1), because
// the scalar libm erff cost ~17% of a ViT training step. The backward reuses one exp for both
// erf and phi, since exp(-z^2) with z = x / sqrt 2 is exp(-x^2 / 2).
#pragma once
#include <cstdint>

namespace peft::kernels {

// y[i] = gelu(x[i]).
void gelu_forward(const float* x, float* y, int64_t n);
void gelu_forward(const double* x, double* y, int64_t n);

// dx[i] = g[i] * gelu'(x[i]).
void gelu_backward(const float* g, const float* x, float* dx, int64_t n);
void gelu_backward(const double* g, const double* x, double* dx, int64_t n);

}  // namespace peft::kernels
