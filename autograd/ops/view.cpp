// View ops: new sizes/strides over the same storage; each backward applies the inverse view.
#include "autograd/ops/view.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "autograd/node.h"
#include "autograd/ops/reduce.h"
#include "core/error.h"

namespace peft {

namespace {

// Resolves one -1 in `shape` against numel.
Shape infer_shape(const Tensor& x, Shape shape, const char* op) {
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (infer >= 0) throw ShapeError(fmt::format("{}: only one dimension can be -1, got {}", op, shape_str(shape)));
      infer = static_cast<int64_t>(i);
    } else if (shape[i] < 0) {
      throw ShapeError(fmt::format("{}: invalid size {} in {}", op, shape[i], shape_str(shape)));
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || x.numel() % known != 0)
      throw ShapeError(fmt::format("{}: cannot infer -1 in {} for {} elements {}", op, shape_str(shape), x.numel(), shape_str(x.sizes())));
    shape[infer] = x.numel() / known;
  }
  if (shape_numel(shape) != x.numel())
    throw ShapeError(fmt::format("{}: shape {} has {} elements, input {} has {}", op, shape_str(shape),
                                 shape_numel(shape), shape_str(x.sizes()), x.numel()));
  return shape;
}

// Strides for viewing x with `shape` without a copy, or false when its layout does not allow it
// (the same rule as PyTorch's computeStride: merge/split only within contiguous chunks).
bool view_strides(const Tensor& x, const Shape& shape, Shape& out) {
  if (x.is_contiguous()) {
    out = contiguous_strides(shape);
    return true;
  }
  const Shape& os = x.sizes();
  const Shape& ost = x.strides();
  out.assign(shape.size(), 0);
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_base_stride = ost.empty() ? 1 : ost.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t td = static_cast<int64_t>(os.size()) - 1; td >= 0; --td) {
    tensor_numel *= os[td];
    if (td == 0 || (os[td - 1] != 1 && ost[td - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (td > 0) {
        chunk_base_stride = ost[td - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

// slice/narrow/select index into a dim; a 0-d tensor has none (wrap_dim would let 0 through).
void check_has_dims(const Tensor& x, const char* op) {
  if (x.dim() == 0) throw ShapeError(fmt::format("{}: cannot index a 0-d tensor. Hint: unsqueeze it first", op));
}

// Records a view node whose backward maps the gradient back to x's shape with `inverse`.
template <class F>
Tensor record_view(const char* op, const Tensor& x, Tensor out, F inverse) {
  autograd::Recorder rec(op, {x});
  if (rec) rec.finish(out, [=](const Tensor& g) -> std::vector<Tensor> { return {inverse(g)}; });
  return out;
}

}  // namespace

Tensor view(const Tensor& x, const Shape& shape_in) {
  Shape shape = infer_shape(x, shape_in, "view");
  Shape st;
  if (!view_strides(x, shape, st))
    throw ShapeError(fmt::format("view: cannot view {} with strides {} as {} without a copy. Hint: use reshape()",
                                 shape_str(x.sizes()), shape_str(x.strides()), shape_str(shape)));
  Shape xs = x.sizes();
  return record_view("view", x, x.as_strided(shape, st, x.offset()), [xs](const Tensor& g) { return reshape(g, xs); });
}

Tensor reshape(const Tensor& x, const Shape& shape_in) {
  Shape shape = infer_shape(x, shape_in, "reshape");
  Shape st;
  if (view_strides(x, shape, st)) return view(x, shape);
  return view(contiguous(x), shape);
}

Tensor flatten(const Tensor& x, int64_t start, int64_t end) {
  if (x.dim() == 0) return reshape(x, {1});
  start = wrap_dim(start, x.dim(), "flatten");
  end = wrap_dim(end, x.dim(), "flatten");
  if (start > end) throw ShapeError(fmt::format("flatten: start_dim {} after end_dim {}", start, end));
  Shape s;
  for (int64_t i = 0; i < start; ++i) s.push_back(x.size(i));
  int64_t m = 1;
  for (int64_t i = start; i <= end; ++i) m *= x.size(i);
  s.push_back(m);
  for (int64_t i = end + 1; i < x.dim(); ++i) s.push_back(x.size(i));
  return reshape(x, s);
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  if (static_cast<int64_t>(dims.size()) != x.dim())
    throw ShapeError(fmt::format("permute: {} dims given for a {}-d tensor {}", dims.size(), x.dim(), shape_str(x.sizes())));
  Shape s(dims.size()), st(dims.size());
  std::vector<int64_t> inv(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim(dims[i], x.dim(), "permute");
    if (inv[d] >= 0) throw ShapeError(fmt::format("permute: dim {} repeated in [{}]", d, fmt::join(dims, ", ")));
    inv[d] = static_cast<int64_t>(i);
    s[i] = x.size(d);
    st[i] = x.strides()[d];
  }
  return record_view("permute", x, x.as_strided(s, st, x.offset()), [inv](const Tensor& g) { return permute(g, inv); });
}

Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) {
  std::vector<int64_t> p(x.dim());
  for (int64_t i = 0; i < x.dim(); ++i) p[i] = i;
  if (x.dim() == 0) return x;
  std::swap(p[wrap_dim(d0, x.dim(), "transpose")], p[wrap_dim(d1, x.dim(), "transpose")]);
  return permute(x, p);
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  check_has_dims(x, "slice");
  dim = wrap_dim(dim, x.dim(), "slice");
  const int64_t n = x.size(dim);
  if (step <= 0) throw ShapeError(fmt::format("slice: step must be positive, got {}", step));
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape s = x.sizes(), st = x.strides();
  s[dim] = (end - start + step - 1) / step;
  st[dim] *= step;
  Tensor out = x.as_strided(s, st, x.offset() + start * x.strides()[dim]);
  Shape xs = x.sizes();
  DType dt = x.dtype();
  return record_view("slice", x, out, [=](const Tensor& g) {
    // Scatter into zeros of the input shape through the same slice.
    Tensor gx = zeros(xs, dt);
    Shape gst = gx.strides();
    Shape vs = g.sizes(), vst = gst;
    vst[dim] *= step;
    gx.as_strided(vs, vst, start * gst[dim]).copy_(g);
    return gx;
  });
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  check_has_dims(x, "narrow");
  dim = wrap_dim(dim, x.dim(), "narrow");
  if (start < 0) start += x.size(dim);
  if (start < 0 || length < 0 || start + length > x.size(dim))
    throw ShapeError(fmt::format("narrow: [{}, {}) out of range for dim {} of {}", start, start + length, dim, shape_str(x.sizes())));
  return slice(x, dim, start, start + length);
}

Tensor select(const Tensor& x, int64_t dim, int64_t index) {
  check_has_dims(x, "select");
  dim = wrap_dim(dim, x.dim(), "select");
  if (index < 0) index += x.size(dim);
  if (index < 0 || index >= x.size(dim))
    throw ShapeError(fmt::format("select: index {} out of range for dim {} of {}", index, dim, shape_str(x.sizes())));
  return squeeze(narrow(x, dim, index, 1), dim);
}

Tensor expand(const Tensor& x, const Shape& shape) {
  if (shape.size() < x.sizes().size())
    throw ShapeError(fmt::format("expand: target {} has fewer dims than {}", shape_str(shape), shape_str(x.sizes())));
  const size_t lead = shape.size() - x.sizes().size();
  Shape s(shape.size()), st(shape.size(), 0);
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i < lead) {
      // -1 means "keep this dim", and a new leading dim has nothing to keep.
      if (shape[i] < 0)
        throw ShapeError(fmt::format("expand: size {} for new leading dim {} when expanding {} to {}. Hint: -1 is only "
                                     "allowed for existing dims",
                                     shape[i], i, shape_str(x.sizes()), shape_str(shape)));
      s[i] = shape[i];
      continue;
    }
    int64_t xs = x.sizes()[i - lead], t = shape[i] == -1 ? xs : shape[i];
    if (t < 0 || (xs != t && xs != 1))
      throw ShapeError(fmt::format("expand: cannot expand {} to {} (dim {}: {} vs {}). Hint: only size-1 dims expand",
                                   shape_str(x.sizes()), shape_str(shape), i, xs, t));
    s[i] = t;
    st[i] = xs == t ? x.strides()[i - lead] : 0;
  }
  if (s == x.sizes()) return x;
  Shape xs = x.sizes();
  return record_view("expand", x, x.as_strided(s, st, x.offset()), [xs](const Tensor& g) { return sum_to(g, xs); });
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  if (x.dim() == 0) return x;
  dim = wrap_dim(dim, x.dim(), "squeeze");
  if (x.size(dim) != 1) return x;
  Shape s = x.sizes(), st = x.strides();
  s.erase(s.begin() + dim);
  st.erase(st.begin() + dim);
  Shape xs = x.sizes();
  return record_view("squeeze", x, x.as_strided(s, st, x.offset()), [xs](const Tensor& g) { return reshape(g, xs); });
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  dim = wrap_dim(dim, x.dim() + 1, "unsqueeze");
  Shape s = x.sizes(), st = x.strides();
  int64_t stride = dim < x.dim() ? x.strides()[dim] * x.sizes()[dim] : 1;
  s.insert(s.begin() + dim, 1);
  st.insert(st.begin() + dim, stride);
  Shape xs = x.sizes();
  return record_view("unsqueeze", x, x.as_strided(s, st, x.offset()), [xs](const Tensor& g) { return reshape(g, xs); });
}

Tensor contiguous(const Tensor& x) {
  if (x.is_contiguous()) return x;
  return record_view("contiguous", x, x.clone(), [](const Tensor& g) { return g; });
}

}  // namespace peft
