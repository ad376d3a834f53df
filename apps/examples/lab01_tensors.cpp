// Lab 1 (docs/labs/01-tensors.md): a tensor is storage + sizes + strides + offset; views share storage.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "apps/examples/labs/lab01_tensors.h"
#include "autograd/ops.h"

int main() {
  using namespace peft;
  Tensor a = arange(6).set_name("a");
  Tensor m = reshape(a, {2, 3});  // a view: same storage, sizes [2, 3], strides [3, 1]
  fmt::print("m = {}\n  sizes {} strides {} offset {}\n", m.str(), m.sizes(), m.strides(), m.offset());

  Tensor t = lab01::transpose_view(m, 0, 1);  // sizes [3, 2], strides [1, 3]: no copy
  fmt::print("m^T = {}\n  sizes {} strides {} contiguous {}\n", t.str(), t.sizes(), t.strides(), t.is_contiguous());
  fmt::print("  t[2, 1] via strides = {} (offset {} + 2*{} + 1*{})\n", lab01::element_at(t, {2, 1}), t.offset(),
             t.strides()[0], t.strides()[1]);
  fmt::print("  shares storage with a: {}\n", t.impl()->storage == a.impl()->storage);

  Tensor row = from_vector({10, 20, 30}, {3});  // [3] broadcasts against [2, 3]
  fmt::print("broadcast {} and {} -> {}\n", m.sizes(), row.sizes(), lab01::broadcast_shapes(m.sizes(), row.sizes()));
  fmt::print("m + row = {}\n", add(m, row).str());
  try {
    lab01::broadcast_shapes({2, 3}, {2});
  } catch (const ShapeError& e) {
    fmt::print("as expected: {}\n", e.what());
  }
  return 0;
}
