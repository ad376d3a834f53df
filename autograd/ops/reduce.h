// Differentiable reductions over any set of axes, with keepdim.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace peft {

// dims may be negative; an empty dims list reduces over every axis.
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Max over one axis; the gradient goes to the first maximal element (PyTorch's max(dim) rule).
Tensor max(const Tensor& x, int64_t dim, bool keepdim = false);
// Variance over dims; unbiased divides by n-1 (torch.var default), else by n (LayerNorm).
Tensor var(const Tensor& x, const std::vector<int64_t>& dims = {}, bool unbiased = true, bool keepdim = false);
// Sums a broadcast gradient back to `shape` (the reverse of broadcasting).
Tensor sum_to(const Tensor& x, const Shape& shape);
// Index of the maximum along dim (int64, no gradient).
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);

}  // namespace peft
