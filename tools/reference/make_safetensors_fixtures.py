"""Writes tests/fixtures/safetensors/*: files in the exact layout of the `safetensors` Python package.

The package itself is not installed here, so this script carries a small writer that follows
its format byte for byte: u64 little-endian header length, compact JSON header with
"__metadata__" first and tensors ordered by dtype size (largest first) then name, header padded
with spaces to a multiple of 8 bytes, then raw little-endian data.

Outputs:
  torch_dtypes.safetensors           F32 F64 F16 BF16 I32 I64 tensors (special values included),
                                     a 0-d tensor, an empty tensor and metadata
  torch_dtypes_expected.safetensors  torch's own conversions of each of them:
                                     "<name>.f32" = t.to(float32), "<name>.f64" = t.to(float64)
                                     for floats, "<name>.i64" = t.to(int64) for integers

Run: /usr/bin/python3 tools/reference/make_safetensors_fixtures.py
"""
import json
import os
import struct

import torch

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "safetensors")

DTYPES = {  # torch dtype -> (safetensors name, little-endian byte view used to serialise it)
    torch.float64: ("F64", torch.float64),
    torch.float32: ("F32", torch.float32),
    torch.float16: ("F16", torch.int16),
    torch.bfloat16: ("BF16", torch.int16),
    torch.int64: ("I64", torch.int64),
    torch.int32: ("I32", torch.int32),
}


def tensor_bytes(t):
    _, view = DTYPES[t.dtype]
    # numpy has no bfloat16: reinterpret as same-size ints, whose bytes are identical.
    a = t.contiguous().view(view).numpy()
    return a.astype(a.dtype.newbyteorder("<")).tobytes()


def save(path, tensors, metadata=None):
    # Same order as safetensors.torch.save_file: dtype size descending, then name.
    order = sorted(tensors, key=lambda n: (-tensors[n].element_size(), n))
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name in order:
        t = tensors[name]
        b = tensor_bytes(t)
        header[name] = {"dtype": DTYPES[t.dtype][0], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def bit_patterns(dtype, step, extra):
    """Every `step`-th 16-bit pattern plus hand-picked ones, reinterpreted as `dtype`."""
    bits = list(range(0, 1 << 16, step)) + extra
    signed = [b - (1 << 16) if b >= (1 << 15) else b for b in bits]
    return torch.tensor(signed, dtype=torch.int16).view(dtype)


def main():
    g = torch.Generator().manual_seed(1234)
    inf, nan = float("inf"), float("nan")

    f32 = torch.randn(3, 5, generator=g)
    f32.view(-1)[:5] = torch.tensor([inf, -inf, nan, -0.0, 1e-40])  # 1e-40: a float32 subnormal

    # Values that float32 rounds, overflows or flushes: checks F64 -> f32 matches torch's rounding.
    f64 = torch.tensor([0.1, 1.0 + 2.0**-30, 1e300, -1e300, 1e-50, -2.5, 3.0e38, 3.5e38], dtype=torch.float64)

    f16_extra = [0x0000, 0x0001, 0x03FF, 0x0400, 0x3C00, 0x7BFF, 0x7C00, 0x7C01, 0x7E00, 0x8000, 0x8001, 0xFBFF, 0xFC00]
    bf16_extra = [0x0000, 0x0001, 0x007F, 0x0080, 0x3F80, 0x7F7F, 0x7F80, 0x7F81, 0x7FC0, 0x8000, 0x8001, 0xFF80]

    tensors = {
        "f32.matrix": f32,
        "f64.rounding": f64,
        "f16.patterns": bit_patterns(torch.float16, 61, f16_extra),
        "f16.randn": torch.randn(2, 3, 4, generator=g).half(),
        "bf16.patterns": bit_patterns(torch.bfloat16, 61, bf16_extra),
        "bf16.randn": torch.randn(4, 6, generator=g).bfloat16(),
        "i32.values": torch.tensor([[-(2**31), 2**31 - 1, -1, 0], [1, 7, -123456, 99]], dtype=torch.int32),
        "i64.values": torch.tensor([-(2**63), 2**63 - 1, -1, 0, 42], dtype=torch.int64),
        "scalar": torch.tensor(3.25),
        "empty": torch.zeros(0, 3),
    }
    os.makedirs(OUT, exist_ok=True)
    save(os.path.join(OUT, "torch_dtypes.safetensors"), tensors,
         {"format": "pt", "source": "make_safetensors_fixtures.py"})

    expected = {}
    for name, t in tensors.items():
        if t.is_floating_point():
            expected[name + ".f32"] = t.to(torch.float32)
            expected[name + ".f64"] = t.to(torch.float64)
        else:
            expected[name + ".i64"] = t.to(torch.int64)
    save(os.path.join(OUT, "torch_dtypes_expected.safetensors"), expected)


if __name__ == "__main__":
    main()
