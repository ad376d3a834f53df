// matmul and linear on BLAS GEMMs; gradients only for inputs that need them (freeze masks).
#include "autograd/ops/matmul.h"

#include <fmt/format.h>

#include "autograd/node.h"
#include "autograd/ops/reduce.h"
#include "autograd/ops/view.h"
#include "core/error.h"
#include "core/kernels/gemm_view.h"
#include "core/kernels/map.h"

namespace peft {

namespace {

// x itself when its last two dims are a BLAS matrix (kernels::mat_view accepts them: one unit
// stride and a leading dimension that covers the other dim), else a contiguous copy. Expanded
// (stride-0) rows, e.g. the gradient of a sum over rows, and stepped slices are copied.
Tensor blas_ready(const Tensor& x) {
  if (x.dim() < 2) return x;
  bool ok = false;
  dispatch_float(x.dtype(), "matmul", [&](auto tag) {
    kernels::MatView<decltype(tag)> v{};
    ok = kernels::mat_view(x, x.offset(), v);
  });
  return ok ? x : x.clone();
}

// Batched product of a [..., M, K] and b [..., K, N] (both >= 2-d), no autograd.
Tensor bmm_forward(const Tensor& a0, const Tensor& b0) {
  Tensor a = blas_ready(a0), b = blas_ready(b0);
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  Shape ab(a.sizes().begin(), a.sizes().end() - 2), bb(b.sizes().begin(), b.sizes().end() - 2);
  Shape batch = broadcast_shapes(ab, bb, "matmul");
  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  Tensor out = empty(out_shape, a.dtype());  // zero-filled: the answer when K == 0
  if (M == 0 || N == 0 || K == 0) return out;  // empty matrices have no BLAS layout
  // Batch strides of a and b seen with the broadcast batch shape.
  auto batch_strides = [&](const Tensor& t) {
    Shape st(batch.size(), 0);
    const size_t nb = t.sizes().size() - 2, lead = batch.size() - nb;
    for (size_t i = 0; i < nb; ++i) st[lead + i] = t.sizes()[i] == 1 ? 0 : t.strides()[i];
    return st;
  };
  Shape sa = batch_strides(a), sb = batch_strides(b);
  const int64_t nbatch = shape_numel(batch);
  dispatch_float(a.dtype(), "matmul", [&](auto tag) {
    using T = decltype(tag);
    T* o = out.data<T>();
    for (int64_t bi = 0; bi < nbatch; ++bi) {
      int64_t oa = a.offset(), ob = b.offset(), r = bi;
      for (size_t d = batch.size(); d-- > 0;) {
        int64_t i = r % batch[d];
        r /= batch[d];
        oa += i * sa[d];
        ob += i * sb[d];
      }
      kernels::MatView<T> A, B;
      kernels::mat_view(a, oa, A);
      kernels::mat_view(b, ob, B);
      kernels::gemm(A, B, o + bi * M * N, N);
    }
  });
  return out;
}

// x [R, C] is the transpose of a contiguous [C, R] matrix (unit row stride).
bool transposed_matrix(const Tensor& x) {
  return x.size(0) > 1 && x.size(1) > 1 && x.strides()[0] == 1 && x.strides()[1] == x.size(0);
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype())
    throw DTypeError(fmt::format("matmul: dtypes differ ({} {} vs {} {})", dtype_name(a.dtype()),
                                 shape_str(a.sizes()), dtype_name(b.dtype()), shape_str(b.sizes())));
  if (a.dim() == 0 || b.dim() == 0)
    throw ShapeError(fmt::format("matmul: both operands need at least 1 dim, got {} and {}",
                                 shape_str(a.sizes()), shape_str(b.sizes())));
  // 1-d operands as torch.matmul: a vector is a row (left) or a column (right), dropped after.
  if (a.dim() == 1 && b.dim() == 1) return reshape(matmul(unsqueeze(a, 0), unsqueeze(b, 1)), {});  // dot: 0-d
  if (a.dim() == 1) return squeeze(matmul(unsqueeze(a, 0), b), -2);
  if (b.dim() == 1) return squeeze(matmul(a, unsqueeze(b, 1)), -1);
  if (a.size(-1) != b.size(-2))
    throw ShapeError(fmt::format("matmul: inner dims differ: {} @ {} ({} vs {}). Hint: transpose one operand",
                                 shape_str(a.sizes()), shape_str(b.sizes()), a.size(-1), b.size(-2)));
  // [..., M, K] @ [K, N]: fold the batch into the rows when that needs no copy, so that forward
  // and both gradients are single GEMMs.
  if (a.dim() > 2 && b.dim() == 2 && a.is_contiguous()) {
    Shape out_shape = a.sizes();
    out_shape.back() = b.size(1);
    const int64_t rows = shape_numel(Shape(a.sizes().begin(), a.sizes().end() - 1));  // not -1: K may be 0
    return reshape(matmul(reshape(a, {rows, a.size(-1)}), b), out_shape);
  }
  Tensor out = bmm_forward(a, b);
  autograd::Recorder rec("matmul", {a, b});
  if (rec) {
    bool na = rec.needs(0), nb = rec.needs(1);
    Tensor sa = nb ? a : Tensor(), sb = na ? b : Tensor();
    rec.save({sa, sb});
    Shape za = a.sizes(), zb = b.sizes();
    // A 2-d operand that is a transposed matrix (e.g. transpose(keys) in Tip-Adapter's
    // f keys^T) gets its gradient in the same layout: the GEMM writes dB^T = dC^T A, contiguous,
    // and transpose's backward hands the leaf a contiguous gradient instead of a strided copy.
    const bool plain = a.dim() == 2 && b.dim() == 2;
    const bool at = plain && transposed_matrix(a), bt = plain && transposed_matrix(b);
    rec.finish(out, [=](const Tensor& g) -> std::vector<Tensor> {
      Tensor ga, gb;
      if (na && at) ga = transpose(bmm_forward(sb, transpose(g, 0, 1)), 0, 1);  // dA^T = B dC^T
      else if (na) ga = sum_to(bmm_forward(g, transpose(sb, -1, -2)), za);      // dA = dC B^T
      if (nb && bt) gb = transpose(bmm_forward(transpose(g, 0, 1), sa), 0, 1);  // dB^T = dC^T A
      else if (nb) gb = sum_to(bmm_forward(transpose(sa, -1, -2), g), zb);      // dB = A^T dC
      return {ga, gb};
    });
  }
  return out;
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  if (w.dim() != 2 || x.dim() < 1 || x.size(-1) != w.size(1))
    throw ShapeError(fmt::format("linear: input {} does not match weight {}. Hint: weights are [out, in]",
                                 shape_str(x.sizes()), shape_str(w.sizes())));
  // A frozen weight stored in bfloat16 (--precision bf16, nn/bf16_storage.h) pairs with float32.
  if (!kernels::weight_pairs_with(x, w) || (b.defined() && b.dtype() != x.dtype()))
    throw DTypeError(fmt::format("linear: dtypes differ (input {}, weight {})", dtype_name(x.dtype()), dtype_name(w.dtype())));
  if (b.defined() && (b.dim() != 1 || b.size(0) != w.size(0)))
    throw ShapeError(fmt::format("linear: bias {} does not match weight {}", shape_str(b.sizes()), shape_str(w.sizes())));
  const int64_t in = w.size(1), outf = w.size(0);
  Tensor x2 = x.is_contiguous() ? x : x.clone();  // rows of x as one [R, in] matrix
  const int64_t R = shape_numel(Shape(x.sizes().begin(), x.sizes().end() - 1));  // rows, also when in == 0
  Shape out_shape = x.sizes();
  out_shape.back() = outf;
  // Written in full by the bias copy and/or the GEMM; only an empty product (in == 0) without a
  // bias needs the zeros.
  Tensor y = (in > 0 || b.defined()) ? empty_uninitialized(out_shape, x.dtype()) : empty(out_shape, x.dtype());
  // A bfloat16 weight is read in place by weight_view (rows or columns of unit stride).
  Tensor wb = w.dtype() == DType::bf16 ? w : blas_ready(w);
  dispatch_float(x.dtype(), "linear", [&](auto tag) {
    using T = decltype(tag);
    T* py = y.data<T>();
    T beta = 0;
    if (b.defined()) {  // start from the bias and let the GEMM accumulate onto it
      Tensor bc = b.is_contiguous() ? b : b.clone();
      const T* pb = bc.template data<T>();
      for (int64_t r = 0; r < R; ++r) std::copy(pb, pb + outf, py + r * outf);
      beta = 1;
    }
    if (R == 0 || in == 0 || outf == 0) return;  // y is the bias (or zeros); no BLAS layout to describe
    // Under --precision bf16 the weight's bfloat16 copy is rounded once (core/bf16_weights.h)
    // and shared by every call until the weight changes; a strided weight's clone is not kept.
    bf16::WeightCopy keep;
    kernels::MatView<T> X{x2.template data<T>(), R, in, false, in}, W{};
    if (wb.impl() == w.impl() || wb.dtype() == DType::bf16) W = kernels::weight_view<T>(wb, keep);
    else kernels::mat_view(wb, wb.offset(), W);
    kernels::gemm(X, W.t(), py, outf, T(1), beta);
  });
  autograd::Recorder rec("linear", {x, w, b});
  if (rec) {
    const bool nx = rec.needs(0), nw = rec.needs(1), nb = rec.needs(2);
    // Save x only when W is trainable (dW needs it) and W only when x needs a gradient.
    Tensor xs = nw ? x2 : Tensor(), ws = nx ? wb : Tensor();
    rec.save({xs, ws});
    Shape xshape = x.sizes(), wshape = w.sizes();
    rec.finish(y, [=](const Tensor& g0) -> std::vector<Tensor> {
      Tensor g = g0.is_contiguous() ? g0 : g0.clone();
      Tensor gx, gw, gb;
      dispatch_float(g.dtype(), "linear backward", [&](auto tag) {
        using T = decltype(tag);
        kernels::MatView<T> G{g.template data<T>(), R, outf, false, outf};
        // Zero-filled gradients are already the answer when a dim is 0 (no BLAS layout then);
        // otherwise the GEMMs below write every element.
        const bool full = R > 0 && in > 0 && outf > 0;
        if (nx) gx = full ? empty_uninitialized(xshape, g.dtype()) : empty(xshape, g.dtype());
        if (nw) gw = full ? empty_uninitialized(wshape, g.dtype()) : empty(wshape, g.dtype());
        if (R == 0 || in == 0 || outf == 0) return;
        if (nx) {  // dX [R, in] = dY [R, out] W [out, in], W's bf16 copy shared with forward
          bf16::WeightCopy keep;
          kernels::MatView<T> W = kernels::weight_view<T>(ws, keep);
          kernels::gemm(G, W, gx.template data<T>(), in);
        }
        if (nw) {  // dW [out, in] = dY^T [out, R] X [R, in]
          kernels::MatView<T> X{xs.template data<T>(), R, in, false, in};
          kernels::gemm(G.t(), X, gw.template data<T>(), in);
        }
      });
      if (nb) gb = sum(reshape(g, {R, outf}), {0});
      return {gx, gw, gb};
    });
  }
  return y;
}

}  // namespace peft
