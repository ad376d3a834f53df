#!/usr/bin/env python3
"""PyTorch reference values for the core ops: elementwise, reductions, views, matmul/linear.

Writes tests/fixtures/ops_core.json, read by tests/autograd/test_{elementwise,reduce,view,matmul}.cpp.

Each case holds the op's inputs (logical values in row-major order, plus the memory layout the C++
test gives them: "c" contiguous, "T" stored transposed, "step2" every other element of a wider
buffer), the op and its arguments, the output computed by torch in float64 and in float32, and the
float64 gradients of sum(out * u) with u[i] = ((7 i) mod 11 - 5) / 4 (the C++ test uses the same
formula). Input values are multiples of 1/64 so that float32 and float64 start from the same numbers.

Run: /usr/bin/python3 tools/reference/make_op_fixtures_core.py
"""
import json
import os

import numpy as np
import torch

gen = torch.Generator().manual_seed(1234)


def make(shape, dist):
    if dist == "n":  # standard normal on a 1/64 grid
        t = torch.randn(shape, generator=gen, dtype=torch.float64)
        return torch.round(t * 64) / 64
    if dist == "pos":  # [0.5, 2): safe for div, pow with real exponents
        t = torch.rand(shape, generator=gen, dtype=torch.float64) * 1.5 + 0.5
        return torch.round(t * 64) / 64
    if dist == "int":  # {-2..2}: many ties for maximum/minimum/max
        return torch.randint(-2, 3, shape, generator=gen).double()
    if dist == "exp":  # {0..3}: integer exponents for pow with a negative base
        return torch.randint(0, 4, shape, generator=gen).double()
    raise ValueError(dist)


def upstream(n):
    return torch.tensor([((7 * i) % 11 - 5) / 4.0 for i in range(n)], dtype=torch.float64)


def slice_dim(x, dim, start, end, step):
    idx = [slice(None)] * x.dim()
    idx[dim] = slice(start, end, step)
    return x[tuple(idx)]


def sum_to(x, shape):
    lead = x.dim() - len(shape)
    dims = [i for i in range(x.dim()) if i < lead or (shape[i - lead] == 1 and x.shape[i] != 1)]
    return (x.sum(dim=dims, keepdim=True) if dims else x).reshape(shape)


def var(x, dims, unbiased, keepdim):
    if not dims:
        dims = list(range(x.dim()))
    return torch.var(x, dim=dims, unbiased=unbiased, keepdim=keepdim)


def add_scalar_ops():
    return {
        "op_add": lambda a, b: a + b,
        "op_sub": lambda a, b: a - b,
        "op_mul": lambda a, b: a * b,
        "op_div": lambda a, b: a / b,
    }


# (family, op, args, [(shape, dist, layout, requires_grad)], fn(inputs, args) -> output)
def cases():
    C = []

    def case(family, op, args, inputs, fn):
        C.append((family, op, args, inputs, fn))

    # ---- elementwise
    binops = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div,
              "maximum": torch.maximum, "minimum": torch.minimum, "pow": torch.pow}
    binops.update(add_scalar_ops())
    ew = lambda op: (lambda x, a: binops[op](x[0], x[1]))
    for op in ["add", "sub", "mul"]:
        case("elementwise", op, {}, [([2, 3], "n", "c", True), ([2, 3], "n", "c", True)], ew(op))
        case("elementwise", op, {}, [([3, 1, 4], "n", "c", True), ([2, 4], "n", "c", True)], ew(op))
        case("elementwise", op, {}, [([3, 4], "n", "T", True), ([3, 4], "n", "step2", True)], ew(op))
        case("elementwise", op, {}, [([2, 3], "n", "c", True), ([], "n", "c", True)], ew(op))
    case("elementwise", "add", {}, [([4], "n", "c", True), ([2, 1], "n", "c", False)], ew("add"))
    case("elementwise", "sub", {}, [([4], "n", "c", False), ([2, 1], "n", "c", True)], ew("sub"))
    case("elementwise", "div", {}, [([2, 3], "n", "c", True), ([2, 3], "pos", "c", True)], ew("div"))
    case("elementwise", "div", {}, [([3, 1, 4], "n", "c", True), ([2, 4], "pos", "c", True)], ew("div"))
    case("elementwise", "div", {}, [([3, 4], "n", "T", True), ([4], "pos", "step2", True)], ew("div"))
    for op in ["maximum", "minimum"]:
        case("elementwise", op, {}, [([3, 4], "int", "c", True), ([3, 4], "int", "c", True)], ew(op))
        case("elementwise", op, {}, [([3, 1, 4], "int", "c", True), ([2, 4], "int", "c", True)], ew(op))
        case("elementwise", op, {}, [([3, 4], "n", "T", True), ([4], "n", "c", False)], ew(op))
    case("elementwise", "pow", {}, [([2, 3], "pos", "c", True), ([2, 3], "n", "c", True)], ew("pow"))
    case("elementwise", "pow", {}, [([3, 1, 4], "pos", "c", True), ([2, 4], "n", "c", True)], ew("pow"))
    # A negative base needs an integer exponent; d/db would be log(a) = nan, so b stays frozen.
    case("elementwise", "pow", {}, [([2, 3], "n", "c", True), ([3], "exp", "c", False)], ew("pow"))
    for e, dist, layout in [(2.0, "n", "c"), (3.0, "n", "step2"), (0.5, "pos", "c"), (-1.5, "pos", "T")]:
        case("elementwise", "pow_scalar", {"s": e}, [([3, 4], dist, layout, True)], lambda x, a: torch.pow(x[0], a["s"]))
    case("elementwise", "neg", {}, [([3, 4], "n", "T", True)], lambda x, a: torch.neg(x[0]))
    case("elementwise", "add_scalar", {"s": 2.5}, [([2, 3], "n", "c", True)], lambda x, a: x[0] + a["s"])
    case("elementwise", "mul_scalar", {"s": -1.5}, [([2, 3], "n", "step2", True)], lambda x, a: x[0] * a["s"])
    for op in ["op_add", "op_sub", "op_mul", "op_div"]:
        case("elementwise", op, {}, [([3, 1, 4], "n", "c", True), ([2, 4], "pos", "c", True)], ew(op))
    case("elementwise", "op_neg", {}, [([2, 3], "n", "c", True)], lambda x, a: -x[0])
    case("elementwise", "op_add_scalar", {"s": 0.75}, [([2, 3], "n", "c", True)], lambda x, a: x[0] + a["s"])
    case("elementwise", "op_sub_scalar", {"s": 0.75}, [([2, 3], "n", "c", True)], lambda x, a: x[0] - a["s"])
    case("elementwise", "op_mul_scalar", {"s": 3.0}, [([2, 3], "n", "c", True)], lambda x, a: x[0] * a["s"])
    case("elementwise", "op_div_scalar", {"s": 4.0}, [([2, 3], "n", "c", True)], lambda x, a: x[0] / a["s"])
    case("elementwise", "op_scalar_mul", {"s": 3.0}, [([2, 3], "n", "c", True)], lambda x, a: a["s"] * x[0])
    case("elementwise", "op_scalar_add", {"s": -2.0}, [([2, 3], "n", "c", True)], lambda x, a: a["s"] + x[0])

    # ---- reductions
    def red(fn):
        return lambda x, a: fn(x[0], a)

    def tsum(x, a):  # dims [] means every axis, as in peft::sum
        return x.sum(dim=a["dims"] or list(range(x.dim())), keepdim=a["keepdim"])

    def tmean(x, a):
        return x.mean(dim=a["dims"] or list(range(x.dim())), keepdim=a["keepdim"])

    for dims in [[], [1], [0, 2], [-1], [-3, -1], [2, 0]]:
        for keepdim in [False, True]:
            case("reduce", "sum", {"dims": dims, "keepdim": keepdim}, [([2, 3, 4], "n", "c", True)], red(tsum))
    case("reduce", "sum", {"dims": [0], "keepdim": False}, [([4, 3], "n", "T", True)], red(tsum))
    case("reduce", "sum", {"dims": [1], "keepdim": True}, [([4, 3], "n", "T", True)], red(tsum))
    case("reduce", "sum", {"dims": [-1], "keepdim": False}, [([3, 4], "n", "step2", True)], red(tsum))
    case("reduce", "sum", {"dims": [0, 1], "keepdim": False}, [([3, 4], "n", "step2", True)], red(tsum))
    for dims, keepdim in [([], False), ([1], True), ([0, -1], False), ([-2], False)]:
        case("reduce", "mean", {"dims": dims, "keepdim": keepdim}, [([2, 3, 4], "n", "c", True)], red(tmean))
    case("reduce", "mean", {"dims": [0], "keepdim": True}, [([4, 3], "n", "T", True)], red(tmean))
    for dims, unbiased, keepdim, layout in [([], True, False, "c"), ([1], True, True, "c"), ([0, 2], False, False, "c"),
                                            ([-1], False, True, "c"), ([-1], True, False, "T")]:
        shape = [2, 3, 4] if layout == "c" else [3, 4]
        case("reduce", "var", {"dims": dims, "unbiased": unbiased, "keepdim": keepdim}, [(shape, "n", layout, True)],
             red(lambda x, a: var(x, a["dims"], a["unbiased"], a["keepdim"])))
    for shape, dist, layout, dim, keepdim in [([3, 5], "int", "c", 1, False), ([3, 5], "int", "c", 0, True),
                                              ([2, 3, 4], "n", "c", -1, True), ([2, 3, 4], "n", "c", 1, False),
                                              ([4, 3], "n", "T", 0, False), ([3, 4], "int", "step2", -1, False)]:
        case("reduce", "max", {"dim": dim, "keepdim": keepdim}, [(shape, dist, layout, True)],
             red(lambda x, a: torch.max(x, dim=a["dim"], keepdim=a["keepdim"]).values))
        case("reduce", "argmax", {"dim": dim, "keepdim": keepdim}, [(shape, dist, layout, False)],
             red(lambda x, a: torch.argmax(x, dim=a["dim"], keepdim=a["keepdim"])))
    for target in [[3, 1], [1, 4], [4], [2, 1, 4], [2, 3, 4], []]:
        case("reduce", "sum_to", {"shape": target}, [([2, 3, 4], "n", "c", True)], red(lambda x, a: sum_to(x, a["shape"])))
    case("reduce", "sum_to", {"shape": [3]}, [([4, 3], "n", "T", True)], red(lambda x, a: sum_to(x, a["shape"])))

    # ---- views
    v = lambda fn: (lambda x, a: fn(x[0], a))
    case("view", "view", {"shape": [6, 4]}, [([2, 3, 4], "n", "c", True)], v(lambda x, a: x.view(a["shape"])))
    case("view", "view", {"shape": [4, -1]}, [([2, 3, 4], "n", "c", True)], v(lambda x, a: x.view(a["shape"])))
    # A transposed [3,4] (strides [1,3]) can view its trailing dim split: [3,2,2] is fine.
    case("view", "view", {"shape": [3, 2, 2]}, [([3, 4], "n", "T", True)], v(lambda x, a: x.view(a["shape"])))
    case("view", "reshape", {"shape": [-1, 2]}, [([2, 3, 4], "n", "c", True)], v(lambda x, a: x.reshape(a["shape"])))
    case("view", "reshape", {"shape": [12]}, [([3, 4], "n", "T", True)], v(lambda x, a: x.reshape(a["shape"])))
    case("view", "reshape", {"shape": [2, -1]}, [([3, 4], "n", "step2", True)], v(lambda x, a: x.reshape(a["shape"])))
    for s, e in [(1, -1), (0, -1), (0, 1)]:
        case("view", "flatten", {"start": s, "end": e}, [([2, 3, 4], "n", "c", True)],
             v(lambda x, a: torch.flatten(x, a["start"], a["end"])))
    case("view", "flatten", {"start": 0, "end": -1}, [([3, 4], "n", "T", True)], v(lambda x, a: torch.flatten(x, a["start"], a["end"])))
    for d0, d1 in [(0, 2), (-1, -2)]:
        case("view", "transpose", {"d0": d0, "d1": d1}, [([2, 3, 4], "n", "c", True)], v(lambda x, a: x.transpose(a["d0"], a["d1"])))
    for p in [[2, 0, 1], [-1, 0, 1]]:
        case("view", "permute", {"dims": p}, [([2, 3, 4], "n", "c", True)], v(lambda x, a: x.permute(a["dims"])))
    case("view", "narrow", {"dim": 1, "start": 1, "length": 2}, [([2, 3, 4], "n", "c", True)],
         v(lambda x, a: x.narrow(a["dim"], a["start"], a["length"])))
    case("view", "narrow", {"dim": -1, "start": -3, "length": 2}, [([3, 4], "n", "T", True)],
         v(lambda x, a: x.narrow(a["dim"], a["start"], a["length"])))
    for shape, layout, dim, st, en, step in [([3, 5], "c", 1, 0, 4, 2), ([5, 3], "c", 0, 1, -1, 2),
                                             ([2, 6], "T", -1, 1, 6, 3), ([4, 3], "step2", 0, 0, 4, 3)]:
        case("view", "slice", {"dim": dim, "start": st, "end": en, "step": step}, [(shape, "n", layout, True)],
             v(lambda x, a: slice_dim(x, a["dim"], a["start"], a["end"], a["step"])))
    case("view", "select", {"dim": 1, "index": 2}, [([2, 3, 4], "n", "c", True)], v(lambda x, a: x.select(a["dim"], a["index"])))
    case("view", "select", {"dim": 0, "index": -1}, [([3, 4], "n", "T", True)], v(lambda x, a: x.select(a["dim"], a["index"])))
    case("view", "expand", {"shape": [2, 3, 4]}, [([3, 1], "n", "c", True)], v(lambda x, a: x.expand(a["shape"])))
    case("view", "expand", {"shape": [3, -1]}, [([1, 4], "n", "c", True)], v(lambda x, a: x.expand(a["shape"])))
    case("view", "squeeze", {"dim": 1}, [([2, 1, 3], "n", "c", True)], v(lambda x, a: x.squeeze(a["dim"])))
    case("view", "squeeze", {"dim": 0}, [([2, 1, 3], "n", "c", True)], v(lambda x, a: x.squeeze(a["dim"])))
    for d in [0, -1, 1]:
        case("view", "unsqueeze", {"dim": d}, [([2, 3], "n", "c", True)], v(lambda x, a: x.unsqueeze(a["dim"])))
    case("view", "unsqueeze", {"dim": 1}, [([3, 4], "n", "T", True)], v(lambda x, a: x.unsqueeze(a["dim"])))
    case("view", "contiguous", {}, [([3, 4], "n", "T", True)], v(lambda x, a: x.contiguous()))
    case("view", "chain", {}, [([4, 5], "n", "c", True)],
         v(lambda x, a: x[:, 0:4:2].permute(1, 0).reshape(-1).unsqueeze(0).expand(2, 8)))

    # ---- matmul and linear
    mm = lambda x, a: torch.matmul(x[0], x[1])
    for sa, la, sb, lb in [([4], "c", [4], "c"), ([3], "c", [3, 4], "c"), ([2, 3], "c", [3], "c"),
                           ([2, 3], "c", [3, 4], "c"), ([2, 3], "T", [3, 4], "T"), ([2, 3], "step2", [3, 4], "c"),
                           ([2, 3, 4], "c", [4, 5], "c"), ([2, 3, 4], "T", [4, 5], "c"), ([2, 3, 4], "c", [4, 5], "T"),
                           ([2, 1, 3, 4], "c", [3, 4, 2], "c"), ([2, 3, 4], "c", [2, 4, 5], "T"),
                           ([3], "c", [2, 3, 4], "c"), ([2, 3, 4], "c", [4], "c"), ([4, 5], "c", [2, 5, 3], "c")]:
        case("matmul", "matmul", {}, [(sa, "n", la, True), (sb, "n", lb, True)], mm)
    case("matmul", "matmul_bt", {}, [([2, 3, 4], "n", "c", True), ([5, 4], "n", "c", True)],
         lambda x, a: torch.matmul(x[0], x[1].transpose(-1, -2)))
    case("matmul", "matmul_bt", {}, [([3, 4], "n", "c", True), ([5, 4], "n", "T", True)],
         lambda x, a: torch.matmul(x[0], x[1].transpose(-1, -2)))
    case("matmul", "matmul", {}, [([3, 4], "n", "c", False), ([4, 2], "n", "c", True)], mm)
    case("matmul", "matmul", {}, [([3, 4], "n", "c", True), ([4, 2], "n", "c", False)], mm)
    lin = lambda x, a: torch.nn.functional.linear(x[0], x[1], x[2] if len(x) > 2 else None)
    case("matmul", "linear", {}, [([2, 3, 4], "n", "c", True), ([5, 4], "n", "c", True), ([5], "n", "c", True)], lin)
    case("matmul", "linear", {}, [([2, 3, 4], "n", "c", True), ([5, 4], "n", "c", True)], lin)
    case("matmul", "linear", {}, [([3, 4], "n", "T", True), ([5, 4], "n", "T", True), ([5], "n", "step2", True)], lin)
    case("matmul", "linear", {}, [([4], "n", "c", True), ([5, 4], "n", "c", True), ([5], "n", "c", True)], lin)
    case("matmul", "linear", {}, [([2, 3, 4], "n", "c", True), ([5, 4], "n", "c", False), ([5], "n", "c", True)], lin)
    case("matmul", "linear", {}, [([2, 3, 4], "n", "c", False), ([5, 4], "n", "c", True)], lin)
    return C


def values(t):
    return [float(v) for v in t.reshape(-1).tolist()]


def f32_values(t):
    # The shortest text that reads back as the same float32: keeps the file small.
    return [float(repr(np.float32(v))) for v in t.reshape(-1).tolist()]


def main():
    out_cases = []
    for family, op, args, specs, fn in cases():
        xs = [make(shape, dist) for shape, dist, _, _ in specs]
        leaves = [x.clone().requires_grad_(rg) for x, (_, _, _, rg) in zip(xs, specs)]
        y = fn(leaves, args)
        integer = y.dtype == torch.int64
        y32 = fn([x.float() for x in xs], args)
        case = {
            "family": family,
            "op": op,
            "name": f"{op}_{len([c for c in out_cases if c['op'] == op])}",
            "args": args,
            "inputs": [{"shape": list(shape), "layout": layout, "grad": rg, "data": values(x)}
                       for x, (shape, _, layout, rg) in zip(xs, specs)],
            "out_shape": list(y.shape),
            "out64": [int(v) for v in y.reshape(-1).tolist()] if integer else values(y.detach()),
            "out32": [int(v) for v in y32.reshape(-1).tolist()] if integer else f32_values(y32),
        }
        if not integer:
            y.backward(upstream(y.numel()).reshape(y.shape))
            case["grads64"] = [values(x.grad) if x.grad is not None else None for x in leaves]
        out_cases.append(case)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(root, "tests", "fixtures", "ops_core.json")
    with open(path, "w") as f:
        json.dump({"generator": "tools/reference/make_op_fixtures_core.py", "torch": torch.__version__,
                   "cases": out_cases}, f, separators=(",", ":"))
    print(f"wrote {len(out_cases)} cases to {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
