#!/usr/bin/python3
"""Fixtures for tests/data/test_preprocess.cpp: the eval transform against torchvision and PIL.

Writes into tests/fixtures/preprocess/:
  a.png (60x80 RGB), b.png (28x20 RGB), c.png (45x33 grayscale): smooth gradients, noise and
      hard edges, so that the filter taps and the antialiasing show in every output pixel;
  small.jpg (64x48 RGB, quality 95): for the reduced-scale JPEG decode;
  expected.safetensors: per case k
      k.resized   torchvision F.resize on the float tensor (antialias=True), unclamped, [C, h, w]
      k.eval      clamp(resized, 0, 1) then CenterCrop(S): the eval transform, [C, S, S]
      k.pilf      PIL on the float image (mode "F", per channel), clamped, cropped: PIL's own float
                  path, which has no intermediate rounding or clipping, [C, S, S]
      k.pil       PIL on the uint8 image (resize, then the same crop), as float 0..255, [C, S, S];
                  PIL rounds and clips to 0..255 after the horizontal pass, so bicubic overshoot
                  at hard edges makes it differ from the float results by more than one level
  with the cases in the metadata ("cases": JSON list).

Run with Debian's python3 (python3-torch 1.13, python3-torchvision 0.14, python3-pil):
  /usr/bin/python3 tools/reference/make_preprocess_fixture.py
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "preprocess")

MODES = {"bicubic": (T.InterpolationMode.BICUBIC, Image.BICUBIC),
         "bilinear": (T.InterpolationMode.BILINEAR, Image.BILINEAR),
         "nearest": (T.InterpolationMode.NEAREST, Image.NEAREST)}


def make_image(h, w, channels, seed):
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = []
    for c in range(channels):
        smooth = 0.5 + 0.35 * np.sin(x / (3.0 + c) + y / (5.0 + 2 * c)) * np.cos(y / (4.0 + c))
        edges = 0.3 * (((x // (5 + c)) + (y // 7)) % 2) - 0.15
        planes.append(smooth + edges + rng.uniform(-0.1, 0.1, size=(h, w)))
    a = np.clip(np.stack(planes, axis=-1), 0, 1)
    a = np.round(a * 255).astype(np.uint8)
    a[h // 3, :, :] = 255  # a one-pixel line: the worst case for the filters
    a[:, w // 2, :] = 0
    return Image.fromarray(a[:, :, 0] if channels == 1 else a, "L" if channels == 1 else "RGB")


def resized_size(h, w, S, crop_pct, mode):
    if mode == "squash":
        return S, S
    size = int(math.floor(S / crop_pct))
    # torchvision's _compute_resized_output_size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return new_h, new_w


def main():
    os.makedirs(OUT, exist_ok=True)
    images = {"a.png": make_image(60, 80, 3, 1), "b.png": make_image(28, 20, 3, 2), "c.png": make_image(45, 33, 1, 3)}
    for name, im in images.items():
        im.save(os.path.join(OUT, name))
    make_image(48, 64, 3, 4).save(os.path.join(OUT, "small.jpg"), quality=95)

    # (image, S, crop_pct, interpolation, crop_mode)
    cases = [
        ("a.png", 16, 0.875, "bicubic", "center"),   # 60x80 -> 18x24: shrink by 3.3
        ("a.png", 24, 0.9, "bilinear", "center"),    # -> 26x34
        ("a.png", 32, 1.0, "bicubic", "squash"),     # shrink both axes, aspect not kept
        ("b.png", 24, 1.0, "bilinear", "squash"),    # 28x20: height 28 -> 24 down, width 20 -> 24 up
        ("b.png", 24, 1.0, "bicubic", "squash"),
        ("a.png", 20, 0.95, "nearest", "center"),
        ("b.png", 30, 0.9, "bicubic", "center"),     # 28x20 -> 46x33: upscaling, portrait
        ("b.png", 24, 0.875, "bilinear", "center"),  # -> 38x27
        ("b.png", 12, 1.0, "bicubic", "center"),     # -> 16x12: portrait shrink
        ("c.png", 16, 0.875, "bicubic", "center"),   # grayscale, 45x33 -> 24x18
        ("c.png", 40, 0.875, "bilinear", "center"),  # grayscale upscaling -> 61x45
        ("c.png", 40, 1.0, "bicubic", "squash"),     # 45 -> 40 down, 33 -> 40 up
        ("b.png", 20, 1.0, "bicubic", "center"),     # short side already S: crop only
    ]
    tensors, meta = {}, []
    for k, (name, S, crop_pct, interp, mode) in enumerate(cases):
        im = images[name]
        x = TF.to_tensor(im)  # [C, H, W] float in [0, 1], exactly uint8 / 255
        C, H, W = x.shape
        tv_mode, pil_mode = MODES[interp]
        h, w = resized_size(H, W, S, crop_pct, mode)
        if interp == "nearest":
            # PIL's nearest (timm's): pixel centres, floor((dst + 0.5) * scale) accumulated in
            # double; PyTorch's "nearest-exact" differs at exact ties, torchvision's tensor NEAREST
            # is floor(dst * scale). Nearest only picks pixels, so PIL on uint8 is exact here.
            resized = TF.to_tensor(im.resize((w, h), pil_mode))
        else:
            size = (S, S) if mode == "squash" else int(math.floor(S / crop_pct))
            resized = T.Resize(size, interpolation=tv_mode, antialias=True)(x)
        assert tuple(resized.shape[1:]) == (h, w), (resized.shape, h, w)
        ev = T.CenterCrop(S)(resized.clamp(0, 1))
        pilf = torch.stack([torch.from_numpy(np.array(
            Image.fromarray(x[ch].numpy(), "F").resize((w, h), pil_mode), dtype=np.float32)) for ch in range(C)])
        pilf = T.CenterCrop(S)(pilf.clamp(0, 1))
        pil = TF.center_crop(im.resize((w, h), pil_mode), [S, S])
        pil = torch.from_numpy(np.asarray(pil, dtype=np.float32).reshape(S, S, C)).permute(2, 0, 1).contiguous()
        tensors[f"{k}.resized"] = resized.float().contiguous()
        tensors[f"{k}.eval"] = ev.float().contiguous()
        tensors[f"{k}.pilf"] = pilf.contiguous()
        tensors[f"{k}.pil"] = pil
        meta.append({"case": k, "image": name, "size": S, "crop_pct": crop_pct, "interpolation": interp,
                     "crop_mode": mode, "resized": [h, w], "channels": C})
    st_io.save(os.path.join(OUT, "expected.safetensors"), tensors,
               {"cases": json.dumps(meta), "torch": torch.__version__, "generator": "make_preprocess_fixture.py"})
    print(f"wrote {len(cases)} cases to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
