// Differentiable concatenation, indexing and masking.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace peft {

Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
Tensor stack(const std::vector<Tensor>& xs, int64_t dim);
// idx: 1-d int64. out = x taken at idx along dim (rows for dim 0).
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& idx);
// torch.gather: out[i][j] = x[i][idx[i][j]] along dim; idx int64 with x's rank.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& idx);
// weight: [V, D], ids: int64 of any shape -> [..., D] (ValueError on an id outside [0, V)).
Tensor embedding(const Tensor& weight, const Tensor& ids);
// cond: any dtype, nonzero = true, broadcast with a and b; no gradient to cond.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// x with `value` wherever mask (broadcastable to x) is nonzero.
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);

}  // namespace peft
