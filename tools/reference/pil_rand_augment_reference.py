#!/usr/bin/python3
"""Fixtures for tests/data/test_rand_augment.cpp: timm's RandAugment ops, as PIL computes them.

timm's auto_augment.py applies each op through PIL (ImageOps, ImageEnhance, Image.transform with
AFFINE, Image.rotate, Image.point); this script calls the same PIL functions with fixed
arguments (the argument after timm's level-to-argument rule), so the C++ ops can be compared
byte for byte. torchvision's adjust_brightness / adjust_contrast / adjust_saturation on a PIL
image (what ColorJitter calls) are included as the jitter cases.

Writes into tests/fixtures/augment/:
  a.png  24x20 RGB, values 40..200 (autocontrast has something to stretch), gradients + noise
         + a hard-edged box;
  b.png  16x16 RGB, full-range noise over a gradient (square: rotate by 90 is a transpose);
  c.png  15x13 grayscale ("L");
  expected_<img>.png  every case's output stacked vertically (case k is rows [k*H, (k+1)*H));
  cases.json  {"fill": [...], "fill_gray": v, "cases": [{"image", "op", "arg", "resample", "row"}]}.

Run with Debian's python3 (python3-pil 9.4, python3-torchvision 0.14):
  /usr/bin/python3 tools/reference/pil_rand_augment_reference.py
"""
import json
import os

import numpy as np
import torchvision.transforms.functional as TF
from PIL import Image, ImageEnhance, ImageOps

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "augment")
FILL = (124, 116, 104)  # timm's img_mean for the ImageNet mean: round(255 * mean)
FILL_GRAY = 115         # data/train_augment.cpp: the mean of the three, for "L" pictures
RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def make_images():
    rng = np.random.default_rng(19)
    y, x = np.mgrid[0:20, 0:24]
    a = np.stack([40 + 6 * x, 40 + 8 * y, 120 + 3 * (x - y)], -1).astype(np.float64)
    a += rng.normal(0, 6, a.shape)
    a[5:12, 7:15] = (200, 60, 90)
    a = np.clip(np.rint(a), 40, 200).astype(np.uint8)
    y, x = np.mgrid[0:16, 0:16]
    b = np.stack([16 * x, 16 * y, 255 - 8 * (x + y)], -1) + rng.integers(-60, 60, (16, 16, 3))
    b = np.clip(b, 0, 255).astype(np.uint8)
    y, x = np.mgrid[0:13, 0:15]
    c = np.clip(10 + 15 * x + 4 * y + rng.integers(-20, 20, (13, 15)), 0, 255).astype(np.uint8)
    c[3:7, 4:9] = 250
    return {"a": Image.fromarray(a, "RGB"), "b": Image.fromarray(b, "RGB"), "c": Image.fromarray(c, "L")}


def solarize_add(img, add, thresh=128):
    lut = [min(255, i + add) if i < thresh else i for i in range(256)]
    return img.point(lut * len(img.getbands()))


def apply(img, op, arg, resample):
    fill = FILL if img.mode == "RGB" else FILL_GRAY
    kw = dict(resample=RESAMPLE[resample], fillcolor=fill)
    w, h = img.size
    if op == "AutoContrast":
        return ImageOps.autocontrast(img)
    if op == "Equalize":
        return ImageOps.equalize(img)
    if op == "Invert":
        return ImageOps.invert(img)
    if op == "Posterize":
        return ImageOps.posterize(img, int(arg))
    if op == "Solarize":
        return ImageOps.solarize(img, int(arg))
    if op == "SolarizeAdd":
        return solarize_add(img, int(arg))
    if op == "Color":
        return ImageEnhance.Color(img).enhance(arg)
    if op == "Contrast":
        return ImageEnhance.Contrast(img).enhance(arg)
    if op == "Brightness":
        return ImageEnhance.Brightness(img).enhance(arg)
    if op == "Sharpness":
        return ImageEnhance.Sharpness(img).enhance(arg)
    if op == "ShearX":
        return img.transform(img.size, Image.AFFINE, (1, arg, 0, 0, 1, 0), **kw)
    if op == "ShearY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, arg, 1, 0), **kw)
    if op == "TranslateXRel":
        return img.transform(img.size, Image.AFFINE, (1, 0, arg * w, 0, 1, 0), **kw)
    if op == "TranslateYRel":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, arg * h), **kw)
    if op == "Rotate":
        return img.rotate(arg, **kw)
    if op == "adjust_brightness":
        return TF.adjust_brightness(img, arg)
    if op == "adjust_contrast":
        return TF.adjust_contrast(img, arg)
    if op == "adjust_saturation":
        return TF.adjust_saturation(img, arg)
    raise ValueError(op)


def cases():
    out = [("AutoContrast", 0), ("Equalize", 0), ("Invert", 0)]
    out += [("Posterize", b) for b in (0, 1, 4, 7)]
    out += [("Solarize", t) for t in (0, 128, 200, 256)]
    out += [("SolarizeAdd", v) for v in (30, 99)]
    factors = (0.1, 0.46, 0.73, 1.0, 1.54, 1.9)
    for op in ("Color", "Contrast", "Brightness", "Sharpness"):
        out += [(op, f) for f in factors]
    for op in ("adjust_brightness", "adjust_contrast", "adjust_saturation"):
        out += [(op, f) for f in (0.6, 0.87, 1.33)]
    geo = [("ShearX", s) for s in (0.27, -0.3, 0.135)]
    geo += [("ShearY", s) for s in (0.27, -0.3)]
    geo += [("TranslateXRel", t) for t in (0.405, -0.2225, 0.45)]
    geo += [("TranslateYRel", t) for t in (0.405, -0.313)]
    geo += [("Rotate", d) for d in (27.0, -13.5, 30.0, 90.0, 180.0, -90.0, 0.0, 45.0, 3.7)]
    res = [(op, a, "bilinear") for op, a in out]  # resample unused by the colour ops
    for r in ("nearest", "bilinear", "bicubic"):
        res += [(op, a, r) for op, a in geo]
    return res


def main():
    os.makedirs(OUT, exist_ok=True)
    imgs = make_images()
    listing = []
    for name, img in imgs.items():
        img.save(os.path.join(OUT, name + ".png"))
        rows = []
        for k, (op, arg, r) in enumerate(cases()):
            o = apply(img, op, arg, r)
            assert o.size == img.size and o.mode == img.mode, (op, o.size, o.mode)
            rows.append(np.asarray(o))
            listing.append({"image": name, "op": op, "arg": arg, "resample": r, "row": k * img.size[1]})
        Image.fromarray(np.concatenate(rows, 0), img.mode).save(os.path.join(OUT, "expected_" + name + ".png"))
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"fill": FILL, "fill_gray": FILL_GRAY, "cases": listing}, f, indent=0)
        f.write("\n")
    print(f"wrote {len(listing)} cases for {len(imgs)} images to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
