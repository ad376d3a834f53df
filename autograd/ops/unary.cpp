// Unary elementwise ops (math functions and activations): forward map and gradient side by side.
#include "autograd/ops/unary.h"

#include <fmt/format.h>

#include <cmath>

#include "autograd/node.h"
#include "core/error.h"
#include "core/kernels/fast_math.h"
#include "core/kernels/gelu.h"
#include "core/kernels/map.h"

namespace peft {

namespace {

// e^v: float32 through the branch-free kernels::exp_full (within ~1 ulp of expf; the loops of
// exp, sigmoid and quick_gelu vectorise with it), float64 through libm (gradcheck's precision).
inline float exp_scalar(float v) { return kernels::exp_full(v); }
inline double exp_scalar(double v) { return std::exp(v); }

void check_unary(const char* op, const Tensor& x) {
  if (!x.defined()) throw ValueError(fmt::format("{}: undefined tensor argument. Hint: pass a defined tensor", op));
  if (!is_floating(x.dtype()))
    throw DTypeError(fmt::format("{}: expected a float32 or float64 tensor, got {} {}. Hint: convert with .to()", op,
                                 dtype_name(x.dtype()), shape_str(x.sizes())));
}

// out[i] = f(x[i]) for a float tensor x of any layout; out is contiguous.
template <class F>
Tensor forward_map(const char* op, const Tensor& x, F f) {
  check_unary(op, x);
  Tensor out;
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    out = kernels::unary_map<T>(x, [&](T v) { return f(v); });
  });
  return out;
}

// dx[i] = f(g[i], s[i]) where s is the tensor the op saved (its input or its output). g may be
// any layout (a broadcast gradient of a sum arrives with stride 0); s has g's shape.
template <class F>
Tensor grad_map(const char* op, const Tensor& g, const Tensor& s, F f) {
  Tensor dx;
  dispatch_float(g.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    dx = kernels::binary_map<T>(g, s, s.sizes(), [&](T gv, T sv) { return f(gv, sv); });
  });
  return dx;
}

// Records the node of a unary op whose gradient is grad_map(g, saved, df). `saved` is either x
// or the detached output: detached, because the output holding its own node would be a cycle.
template <class DF>
void record(const char* op, const Tensor& x, Tensor& out, const Tensor& saved, DF df) {
  autograd::Recorder rec(op, {x});
  if (!rec) return;
  Tensor s = saved.detach();
  rec.save({s});
  rec.finish(out, [op, s, df](const Tensor& g) -> std::vector<Tensor> { return {grad_map(op, g, s, df)}; });
}

}  // namespace

Tensor exp(const Tensor& x) {
  Tensor y = forward_map("exp", x, [](auto v) { return exp_scalar(v); });
  // d exp(x) = exp(x): the output is all backward needs.
  record("exp", x, y, y, [](auto g, auto yv) { return g * yv; });
  return y;
}

Tensor log(const Tensor& x) {
  Tensor y = forward_map("log", x, [](auto v) { return std::log(v); });
  record("log", x, y, x, [](auto g, auto xv) { return g / xv; });
  return y;
}

Tensor sqrt(const Tensor& x) {
  Tensor y = forward_map("sqrt", x, [](auto v) { return std::sqrt(v); });
  // d sqrt(x) = 1 / (2 sqrt(x)): again only the output.
  record("sqrt", x, y, y, [](auto g, auto yv) { return g / (2 * yv); });
  return y;
}

Tensor rsqrt(const Tensor& x) {
  Tensor y = forward_map("rsqrt", x, [](auto v) {
    using T = decltype(v);
    return T(1) / std::sqrt(v);
  });
  // d x^(-1/2) = -1/2 x^(-3/2) = -1/2 y^3.
  record("rsqrt", x, y, y, [](auto g, auto yv) {
    using T = decltype(g);
    return T(-0.5) * g * yv * yv * yv;
  });
  return y;
}

Tensor tanh(const Tensor& x) {
  Tensor y = forward_map("tanh", x, [](auto v) { return std::tanh(v); });
  record("tanh", x, y, y, [](auto g, auto yv) {
    using T = decltype(g);
    return g * (T(1) - yv * yv);
  });
  return y;
}

namespace {
// 1 / (1 + e^-x), written so that neither branch overflows: for x < 0, e^x / (1 + e^x).
template <class T>
T sigmoid_scalar(T v) {
  // e = e^-|v| never overflows: 1 / (1 + e) for v >= 0, e / (1 + e) below. No branch around
  // the exp, so the float loop vectorises.
  const T e = exp_scalar(-std::abs(v));
  const T r = T(1) / (T(1) + e);
  return v >= T(0) ? r : e * r;
}
}  // namespace

Tensor sigmoid(const Tensor& x) {
  Tensor y = forward_map("sigmoid", x, [](auto v) { return sigmoid_scalar(v); });
  record("sigmoid", x, y, y, [](auto g, auto yv) {
    using T = decltype(g);
    return g * yv * (T(1) - yv);
  });
  return y;
}

Tensor relu(const Tensor& x) {
  Tensor y = forward_map("relu", x, [](auto v) {
    using T = decltype(v);
    return v > T(0) ? v : T(0);
  });
  // y > 0 exactly where x > 0, so the output carries the mask; gradient 0 at x == 0 (as PyTorch).
  record("relu", x, y, y, [](auto g, auto yv) {
    using T = decltype(g);
    return yv > T(0) ? g : T(0);
  });
  return y;
}

namespace {
constexpr double kInvSqrt2 = 0.70710678118654752440;   // 1 / sqrt(2)
constexpr double kInvSqrt2Pi = 0.39894228040143267794;  // 1 / sqrt(2 pi)
constexpr double kQuickGeluScale = 1.702;
}  // namespace

Tensor gelu(const Tensor& x) {
  // Exact erf form (not the tanh approximation): pretrained ViT/CLIP weights expect it. The
  // kernels (core/kernels/gelu.cpp) work on contiguous buffers; backward needs only the input.
  check_unary("gelu", x);
  const Tensor xc = x.is_contiguous() ? x : x.clone();
  Tensor y = empty_uninitialized(xc.sizes(), xc.dtype());
  dispatch_float(xc.dtype(), "gelu", [&](auto tag) {
    using T = decltype(tag);
    kernels::gelu_forward(xc.data<T>(), y.data<T>(), xc.numel());
  });
  autograd::Recorder rec("gelu", {x});
  if (!rec) return y;
  Tensor s = xc.detach();
  rec.save({s});
  rec.finish(y, [s](const Tensor& g) -> std::vector<Tensor> {
    if (g.sizes() != s.sizes() || !g.is_contiguous()) {
      // A broadcast or strided gradient (e.g. of a sum): the general elementwise path.
      return {grad_map("gelu", g, s, [](auto gv, auto xv) {
        using T = decltype(gv);
        T cdf = T(0.5) * (T(1) + std::erf(xv * T(kInvSqrt2)));
        T pdf = T(kInvSqrt2Pi) * std::exp(T(-0.5) * xv * xv);
        return gv * (cdf + xv * pdf);
      })};
    }
    const Tensor& gc = g;
    Tensor dx = empty_uninitialized(s.sizes(), s.dtype());
    dispatch_float(s.dtype(), "gelu backward", [&](auto tag) {
      using T = decltype(tag);
      kernels::gelu_backward(gc.data<T>(), s.data<T>(), dx.data<T>(), s.numel());
    });
    return {dx};
  });
  return y;
}

Tensor quick_gelu(const Tensor& x) {
  Tensor y = forward_map("quick_gelu", x, [](auto v) {
    using T = decltype(v);
    return v * sigmoid_scalar(T(kQuickGeluScale) * v);
  });
  // d/dx x s(a x) = s + a x s (1 - s), s = sigmoid(a x).
  record("quick_gelu", x, y, x, [](auto g, auto xv) {
    using T = decltype(g);
    const T a = T(kQuickGeluScale);
    T s = sigmoid_scalar(a * xv);
    return g * (s + a * xv * s * (T(1) - s));
  });
  return y;
}

Tensor abs(const Tensor& x) {
  Tensor y = forward_map("abs", x, [](auto v) { return std::abs(v); });
  // sign(x), 0 at 0 (as PyTorch).
  record("abs", x, y, x, [](auto g, auto xv) {
    using T = decltype(g);
    return xv > T(0) ? g : (xv < T(0) ? -g : T(0));
  });
  return y;
}

}  // namespace peft
