#!/usr/bin/env python3
"""Writes the image fixtures of tests/data: tiny PNG/BMP/JPEG files with their expected pixels
(tests/fixtures/images/) and torch.nn.functional.interpolate(bilinear) outputs
(tests/fixtures/resize.json).

Run: /usr/bin/python3 tools/reference/make_image_fixtures.py   (needs numpy, torch, PIL)
"""
import json
import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
FIX = os.path.join(ROOT, "tests", "fixtures")
IMG = os.path.join(FIX, "images")


def smooth_rgb(h, w):
    # a smooth picture so that JPEG's lossy decode stays close to the original pixels
    y, x = np.mgrid[0:h, 0:w]
    r = 40 + 20 * x
    g = 60 + 15 * y
    b = 200 - 10 * x - 8 * y
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


def main():
    os.makedirs(IMG, exist_ok=True)
    rng = np.random.default_rng(0)
    expected = {}

    rgb = rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)  # H=4, W=5
    Image.fromarray(rgb, "RGB").save(os.path.join(IMG, "rgb.png"))
    Image.fromarray(rgb, "RGB").save(os.path.join(IMG, "rgb.bmp"))
    expected["rgb.png"] = rgb.tolist()
    expected["rgb.bmp"] = rgb.tolist()

    gray = rng.integers(0, 256, size=(3, 6), dtype=np.uint8)
    Image.fromarray(gray, "L").save(os.path.join(IMG, "gray.png"))
    expected["gray.png"] = gray.tolist()  # [H, W]

    rgba = rng.integers(0, 256, size=(2, 3, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(os.path.join(IMG, "rgba.png"))
    expected["rgba.png"] = rgba.tolist()  # [H, W, 4]; the decoder must drop alpha

    smooth = smooth_rgb(8, 8)
    Image.fromarray(smooth, "RGB").save(os.path.join(IMG, "smooth.jpg"), quality=95, subsampling=0)
    expected["smooth.jpg"] = smooth.tolist()  # the pre-compression pixels; compare with a tolerance

    # a PNG cut short after its header chunk: the header probes fine, decoding must fail
    with open(os.path.join(IMG, "rgb.png"), "rb") as f:
        data = f.read()
    with open(os.path.join(IMG, "truncated.png"), "wb") as f:
        f.write(data[: 33 + 20])
    with open(os.path.join(IMG, "expected.json"), "w") as f:
        json.dump(expected, f)

    # bilinear resize references
    x = torch.from_numpy(rng.random((3, 5, 7), dtype=np.float32))  # [C, H, W]
    cases = []
    for (oh, ow) in [(3, 4), (9, 11), (5, 7), (10, 3), (1, 1), (16, 16)]:
        y = F.interpolate(x[None], size=(oh, ow), mode="bilinear", align_corners=False, antialias=False)[0]
        cases.append({"size": [oh, ow], "output": y.permute(1, 2, 0).reshape(-1).tolist()})  # HWC
    resize = {
        "note": "F.interpolate(x[None], size, mode='bilinear', align_corners=False, antialias=False); HWC order",
        "input_hwc": x.permute(1, 2, 0).reshape(-1).tolist(),
        "H": 5, "W": 7, "C": 3,
        "cases": cases,
    }
    with open(os.path.join(FIX, "resize.json"), "w") as f:
        json.dump(resize, f)


if __name__ == "__main__":
    main()
