// LayerNorm kernels over the last dim of contiguous [R, D] buffers (no autograd): forward and backward.
#pragma once
#include <cstdint>

namespace peft::kernels {

// y[r, :] = (x[r, :] - mean_r) * rstd_r * w + b, with rstd_r = 1 / sqrt(var_r + eps) and the
// biased variance. w and b may be null (scale 1, shift 0). mean and rstd ([R], double) receive
// the per-row statistics the backward needs; they are computed in double, two-pass, so inputs
// with a large common offset (x + 1000) keep their precision.
template <class T>
void layer_norm_forward(const T* x, const T* w, const T* b, T* y, double* mean, double* rstd, int64_t rows,
                        int64_t D, double eps);

// Gradients from the upstream g [R, D], the input x, the weight w (null = 1) and the saved
// statistics. Each output is computed only when its pointer is non-null (freeze masks):
//   xhat = (x - mean) * rstd,  gh = g * w
//   dx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat))   (per row)
//   dw = sum_r g * xhat,  db = sum_r g                    (per column)
// x may be null when only db is wanted.
template <class T>
void layer_norm_backward(const T* g, const T* x, const T* w, const double* mean, const double* rstd, T* dx, T* dw,
                         T* db, int64_t rows, int64_t D);

}  // namespace peft::kernels
