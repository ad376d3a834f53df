// Binary elementwise ops: forward kernels and their gradients, side by side.
#include "autograd/ops/elementwise.h"

#include <fmt/format.h>

#include <cmath>

#include "autograd/node.h"
#include "autograd/ops/reduce.h"
#include "core/error.h"
#include "core/kernels/map.h"

namespace peft {

namespace {

void check_pair(const char* op, const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined()) throw ValueError(fmt::format("{}: undefined tensor argument", op));
  if (a.dtype() != b.dtype())
    throw DTypeError(fmt::format("{}: dtypes differ ({} {} vs {} {}). Hint: convert with .to()", op,
                                 dtype_name(a.dtype()), shape_str(a.sizes()), dtype_name(b.dtype()),
                                 shape_str(b.sizes())));
}

// Runs f(T a, T b) over the broadcast shape of a and b.
template <class F>
Tensor binary(const char* op, const Tensor& a, const Tensor& b, F f) {
  check_pair(op, a, b);
  Shape shape = broadcast_shapes(a.sizes(), b.sizes(), op);
  Tensor out;
  dispatch_float(a.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    out = kernels::binary_map<T>(a, b, shape, [&](T x, T y) { return f(x, y); });
  });
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary("add", a, b, [](auto x, auto y) { return x + y; });
  autograd::Recorder rec("add", {a, b});
  if (rec) {
    Shape sa = a.sizes(), sb = b.sizes();
    bool na = rec.needs(0), nb = rec.needs(1);
    rec.finish(out, [=](const Tensor& g) -> std::vector<Tensor> {
      return {na ? sum_to(g, sa) : Tensor(), nb ? sum_to(g, sb) : Tensor()};
    });
  }
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary("sub", a, b, [](auto x, auto y) { return x - y; });
  autograd::Recorder rec("sub", {a, b});
  if (rec) {
    Shape sa = a.sizes(), sb = b.sizes();
    bool na = rec.needs(0), nb = rec.needs(1);
    rec.finish(out, [=](const Tensor& g) -> std::vector<Tensor> {
      return {na ? sum_to(g, sa) : Tensor(), nb ? sum_to(neg(g), sb) : Tensor()};
    });
  }
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary("mul", a, b, [](auto x, auto y) { return x * y; });
  autograd::Recorder rec("mul", {a, b});
  if (rec) {
    bool na = rec.needs(0), nb = rec.needs(1);
    // d(a*b)/da = b: keep b only if a needs its gradient, and vice versa.
    Tensor sa = nb ? a : Tensor(), sb = na ? b : Tensor();
    rec.save({sa, sb});
    Shape za = a.sizes(), zb = b.sizes();
    rec.finish(out, [=](const Tensor& g) -> std::vector<Tensor> {
      return {na ? sum_to(mul(g, sb), za) : Tensor(), nb ? sum_to(mul(g, sa), zb) : Tensor()};
    });
  }
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary("div", a, b, [](auto x, auto y) { return x / y; });
  autograd::Recorder rec("div", {a, b});
  if (rec) {
    bool na = rec.needs(0), nb = rec.needs(1);
    Tensor sb = b, so = nb ? out.detach() : Tensor();
    rec.save({sb, so});
    Shape za = a.sizes(), zb = b.sizes();
    rec.finish(out, [=](const Tensor& g) -> std::vector<Tensor> {
      Tensor gq = div(g, sb);  // d(a/b)/da = 1/b;  d(a/b)/db = -(a/b)/b
      return {na ? sum_to(gq, za) : Tensor(), nb ? sum_to(neg(mul(gq, so)), zb) : Tensor()};
    });
  }
  return out;
}

namespace {
// Gradient share of a for maximum/minimum: 1 where a wins, 0.5 on ties, 0 where b wins.
Tensor winner_mask(const Tensor& a, const Tensor& b, bool is_max) {
  return binary(is_max ? "maximum" : "minimum", a, b, [=](auto x, auto y) {
    using T = decltype(x);
    if (x == y) return T(0.5);
    return (is_max ? x > y : x < y) ? T(1) : T(0);
  });
}

Tensor extremum(const char* op, const Tensor& a, const Tensor& b, bool is_max) {
  Tensor out = is_max ? binary(op, a, b, [](auto x, auto y) { return x > y || std::isnan(x) ? x : y; })
                      : binary(op, a, b, [](auto x, auto y) { return x < y || std::isnan(x) ? x : y; });
  autograd::Recorder rec(op, {a, b});
  if (rec) {
    bool na = rec.needs(0), nb = rec.needs(1);
    Tensor wa = winner_mask(a.detach(), b.detach(), is_max);
    rec.save({wa});
    Shape za = a.sizes(), zb = b.sizes();
    rec.finish(out, [=](const Tensor& g) -> std::vector<Tensor> {
      Tensor ga = mul(g, wa);
      return {na ? sum_to(ga, za) : Tensor(), nb ? sum_to(sub(g, ga), zb) : Tensor()};
    });
  }
  return out;
}
}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) { return extremum("maximum", a, b, true); }
Tensor minimum(const Tensor& a, const Tensor& b) { return extremum("minimum", a, b, false); }

Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor out = binary("pow", a, b, [](auto x, auto y) { return std::pow(x, y); });
  autograd::Recorder rec("pow", {a, b});
  if (rec) {
    bool na = rec.needs(0), nb = rec.needs(1);
    // da needs a and b; db needs a and the output: keep b and the output only when used.
    Tensor sa = a.detach(), sb = na ? b.detach() : Tensor(), so = nb ? out.detach() : Tensor();
    rec.save({sa, sb, so});
    Shape za = a.sizes(), zb = b.sizes();
    rec.finish(out, [=](const Tensor& g) -> std::vector<Tensor> {
      Tensor ga, gb;
      if (na)  // b * a^(b-1)
        ga = sum_to(mul(g, binary("pow", sa, sb, [](auto x, auto y) { return y * std::pow(x, y - 1); })), za);
      if (nb)  // a^b * log(a), 0 where a == 0 (the limit PyTorch uses)
        gb = sum_to(mul(g, binary("pow", so, sa, [](auto o, auto x) {
                          using T = decltype(o);
                          return x == T(0) ? T(0) : o * std::log(x);
                        })),
                    zb);
      return {ga, gb};
    });
  }
  return out;
}

Tensor add(const Tensor& a, double s) { return add(a, scalar_tensor(s, a.dtype())); }
Tensor mul(const Tensor& a, double s) { return mul(a, scalar_tensor(s, a.dtype())); }
Tensor pow(const Tensor& a, double e) { return pow(a, scalar_tensor(e, a.dtype())); }

Tensor neg(const Tensor& a) {
  Tensor out;
  dispatch_float(a.dtype(), "neg", [&](auto tag) {
    using T = decltype(tag);
    out = kernels::unary_map<T>(a, [](T x) { return -x; });
  });
  autograd::Recorder rec("neg", {a});
  if (rec) rec.finish(out, [](const Tensor& g) -> std::vector<Tensor> { return {neg(g)}; });
  return out;
}

}  // namespace peft
