// gradcheck: analytic gradients from the tape against central differences, in float64.
#include "autograd/gradcheck.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>

#include "autograd/backward.h"
#include "autograd/grad_mode.h"
#include "core/error.h"
#include "core/random.h"

namespace peft {

namespace {

// Memory offsets (in elements) of every logical element of t, in row-major order.
std::vector<int64_t> element_offsets(const Tensor& t) {
  std::vector<int64_t> offs(t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) {
    int64_t r = i, off = t.offset();
    for (int64_t d = t.dim(); d-- > 0;) {
      off += (r % t.size(d)) * t.strides()[d];
      r /= t.size(d);
    }
    offs[i] = off;
  }
  return offs;
}

std::vector<int64_t> unravel(int64_t i, const Shape& s) {
  std::vector<int64_t> idx(s.size());
  for (size_t d = s.size(); d-- > 0;) {
    idx[d] = i % s[d];
    i /= s[d];
  }
  return idx;
}

// Evaluates fn under no_grad and returns its output as doubles.
std::vector<double> eval(const GradcheckFn& fn, const std::vector<Tensor>& inputs) {
  NoGradGuard ng;
  return fn(inputs).to_vector<double>();
}

}  // namespace

GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, const GradcheckOptions& opt) {
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    if (!x.defined() || !is_floating(x.dtype())) continue;
    if (x.dtype() != DType::f64)
      throw DTypeError(fmt::format("gradcheck: input {} is {}, expected float64. Hint: use .to(DType::f64)", i,
                                   dtype_name(x.dtype())));
    for (int64_t d = 0; d < x.dim(); ++d)
      if (x.strides()[d] == 0 && x.size(d) > 1)
        throw ShapeError(fmt::format("gradcheck: input {} {} has a stride-0 (expanded) dim {}; perturbing one element "
                                     "moves many. Hint: pass contiguous(x)",
                                     i, shape_str(x.sizes()), d));
  }
  GradcheckResult res;
  // Keep the caller's gradients out of the way.
  for (const Tensor& x : inputs)
    if (x.defined()) Tensor(x).zero_grad(true);

  Tensor y0 = fn(inputs);
  const int64_t ny = y0.numel();
  if (!y0.requires_grad()) {
    for (size_t i = 0; i < inputs.size(); ++i)
      if (inputs[i].defined() && inputs[i].requires_grad()) {
        res.ok = false;
        res.message = fmt::format("gradcheck: output does not require grad although input {} does", i);
        return res;
      }
    return res;  // nothing to check
  }

  // Upstream vectors: one-hot rows (full Jacobian) for small outputs, else seeded projections.
  std::vector<std::vector<double>> vs;
  if (ny <= opt.full_jacobian_max_outputs) {
    for (int64_t k = 0; k < ny; ++k) {
      std::vector<double> v(ny, 0.0);
      v[k] = 1.0;
      vs.push_back(v);
    }
  } else {
    Generator gen(opt.seed);
    for (int p = 0; p < 3; ++p) {
      std::vector<double> v(ny);
      for (auto& e : v) e = gen.normal();
      vs.push_back(v);
    }
  }

  // Analytic: one backward per upstream vector.
  std::vector<std::vector<Tensor>> analytic(vs.size(), std::vector<Tensor>(inputs.size()));
  for (size_t p = 0; p < vs.size(); ++p) {
    for (const Tensor& x : inputs)
      if (x.defined()) Tensor(x).zero_grad(true);
    Tensor y = fn(inputs);
    Tensor v = from_vector(vs[p], y.sizes(), y.dtype());
    backward(y, v, p == 0);
    for (size_t i = 0; i < inputs.size(); ++i) {
      const Tensor& x = inputs[i];
      if (!x.defined()) continue;
      Tensor g = x.grad();
      if (!x.requires_grad()) {
        if (g.defined()) {
          res.ok = false;
          res.message = fmt::format("gradcheck: input {} {} does not require grad but received a gradient", i,
                                    shape_str(x.sizes()));
          return res;
        }
        continue;
      }
      if (!g.defined()) g = zeros(x.sizes(), x.dtype());
      if (g.sizes() != x.sizes() || g.dtype() != x.dtype()) {
        res.ok = false;
        res.message = fmt::format("gradcheck: gradient of input {} has shape {} {}, expected {} {}", i,
                                  shape_str(g.sizes()), dtype_name(g.dtype()), shape_str(x.sizes()), dtype_name(x.dtype()));
        return res;
      }
      analytic[p][i] = g.clone();
    }
    if (p == 0) {  // a second backward over the retained graph must give the same gradients
      for (const Tensor& x : inputs)
        if (x.defined()) Tensor(x).zero_grad(true);
      backward(y, v, false);
      for (size_t i = 0; i < inputs.size(); ++i) {
        if (!analytic[0][i].defined()) continue;
        Tensor g2 = inputs[i].grad();
        if (!g2.defined()) g2 = zeros(inputs[i].sizes(), inputs[i].dtype());
        if (max_abs_diff(g2, analytic[0][i]) != 0.0) {
          res.ok = false;
          res.message = fmt::format("gradcheck: a second backward gave a different gradient for input {}", i);
          return res;
        }
      }
    }
  }
  for (const Tensor& x : inputs)
    if (x.defined()) Tensor(x).zero_grad(true);

  // Numeric: perturb each element of each trainable input in place, both ways.
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    if (!x.defined() || !x.requires_grad()) continue;
    double* base = static_cast<double*>(x.impl()->storage->data);
    auto offs = element_offsets(x);
    std::vector<std::vector<double>> an(vs.size());
    bool any_nonzero = false;
    for (size_t p = 0; p < vs.size(); ++p) {
      an[p] = analytic[p][i].to_vector<double>();
      for (double a : an[p]) {
        if (!std::isfinite(a)) {
          res.ok = false;
          res.message = fmt::format("gradcheck: non-finite analytic gradient for input {} {}", i, shape_str(x.sizes()));
          return res;
        }
        any_nonzero = any_nonzero || a != 0.0;
      }
    }
    if (opt.check_nonzero && !any_nonzero && x.numel() > 0) {
      res.ok = false;
      res.message = fmt::format("gradcheck: input {} {} requires grad but its gradient is all zero", i, shape_str(x.sizes()));
      return res;
    }
    for (int64_t e = 0; e < x.numel(); ++e) {
      double orig = base[offs[e]];
      base[offs[e]] = orig + opt.eps;
      auto yp = eval(fn, inputs);
      base[offs[e]] = orig - opt.eps;
      auto ym = eval(fn, inputs);
      base[offs[e]] = orig;
      for (size_t p = 0; p < vs.size(); ++p) {
        double num = 0;
        for (int64_t k = 0; k < ny; ++k) num += vs[p][k] * (yp[k] - ym[k]);
        num /= 2 * opt.eps;
        double a = an[p][e];
        double err = std::fabs(a - num), rel = err / std::max(std::fabs(num), 1e-12);
        res.max_abs_error = std::max(res.max_abs_error, err);
        res.max_rel_error = std::max(res.max_rel_error, std::min(rel, err));
        if (!(err <= opt.atol + opt.rtol * std::fabs(num))) {
          res.ok = false;
          res.message = fmt::format(
              "gradcheck: input {} {} element [{}] ({}): analytic {:.10g} vs numeric {:.10g}, abs err {:.3g}, rel err "
              "{:.3g} (atol {}, rtol {}, eps {}, seed {})",
              i, shape_str(x.sizes()), fmt::join(unravel(e, x.sizes()), ", "),
              ny <= opt.full_jacobian_max_outputs ? fmt::format("output {}", p) : fmt::format("projection {}", p), a,
              num, err, rel, opt.atol, opt.rtol, opt.eps, opt.seed);
          return res;
        }
      }
    }
  }
  return res;
}

}  // namespace peft
