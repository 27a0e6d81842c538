"""Deterministic toy data that a model can actually learn.

Tests and the ``smoke`` profile use these instead of the real datasets, which
CI machines cannot download. They are built to be *learnable* (so "the loss
falls" is a real test) and *varied* (position, size, rotation, colour and
background change from image to image), and they are a pure function of the
seed: the same seed gives the same pixels and the same JPEG bytes.

* :func:`make_flowers` writes an image folder of five flower-like classes, one
  subfolder per class, JPEGs of mixed sizes, exactly like the real flowers set.
* :func:`make_digits` returns 28x28 grayscale digit-like images with labels,
  bright strokes on black like MNIST.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..files import atomic_folder
from ..settings import cache_dir

FLOWER_CLASSES = ("daisy", "dandelion", "rose", "sunflower", "tulip")


# ----------------------------------------------------------------------------- flowers

def _jitter(rng: np.random.Generator, rgb: tuple[int, int, int], amount: int = 30) -> tuple[int, ...]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)


def _petals(draw, rng, cx, cy, r, n, length, width, colour):
    phase = rng.uniform(0, 2 * math.pi)
    for k in range(n):
        a = phase + 2 * math.pi * k / n
        tip = (cx + math.cos(a) * r * length, cy + math.sin(a) * r * length)
        side = a + math.pi / 2
        w = r * width
        base1 = (cx + math.cos(side) * w, cy + math.sin(side) * w)
        base2 = (cx - math.cos(side) * w, cy - math.sin(side) * w)
        draw.polygon([base1, tip, base2], fill=_jitter(rng, colour, 20))


def _draw_flower(draw, rng, kind: str, cx: float, cy: float, r: float) -> None:
    if kind == "daisy":  # many white petals, yellow centre
        _petals(draw, rng, cx, cy, r, int(rng.integers(12, 18)), 1.0, 0.22, (245, 245, 240))
        c = r * 0.3
        draw.ellipse([cx - c, cy - c, cx + c, cy + c], fill=_jitter(rng, (240, 200, 30)))
    elif kind == "dandelion":  # a fuzzy yellow ball of thin rays
        for k in range(int(rng.integers(40, 60))):
            a = rng.uniform(0, 2 * math.pi)
            ln = r * rng.uniform(0.6, 1.0)
            draw.line([cx, cy, cx + math.cos(a) * ln, cy + math.sin(a) * ln],
                      fill=_jitter(rng, (250, 215, 20), 15), width=max(1, int(r * 0.06)))
    elif kind == "rose":  # nested red rings, a spiral of petals
        colour = _jitter(rng, (200, 25, 45), 35)
        for i in range(5, 0, -1):
            rr = r * i / 5
            shade = tuple(int(c * (0.55 + 0.09 * i)) for c in colour)
            off = rng.uniform(-0.08, 0.08, 2) * r
            draw.ellipse([cx - rr + off[0], cy - rr + off[1], cx + rr + off[0], cy + rr + off[1]],
                         fill=shade, outline=(90, 10, 20))
    elif kind == "sunflower":  # broad yellow petals around a large brown disc
        _petals(draw, rng, cx, cy, r, int(rng.integers(10, 15)), 1.05, 0.35, (250, 190, 10))
        c = r * 0.5
        draw.ellipse([cx - c, cy - c, cx + c, cy + c], fill=_jitter(rng, (90, 55, 20), 15))
    elif kind == "tulip":  # a cup of three broad petals on a stem
        colour = _jitter(rng, [(220, 40, 60), (240, 120, 30), (150, 50, 160)][int(rng.integers(3))], 25)
        draw.line([cx, cy + r * 0.3, cx, cy + r * 1.6], fill=(40, 120, 40), width=max(2, int(r * 0.12)))
        w, h = r * 0.75, r * 0.95
        draw.ellipse([cx - w, cy - h * 0.5, cx + w, cy + h * 0.7], fill=colour)
        draw.polygon([(cx - w, cy), (cx - w * 0.6, cy - h), (cx - w * 0.1, cy - h * 0.2),
                      (cx + w * 0.1, cy - h * 0.2), (cx + w * 0.6, cy - h), (cx + w, cy)], fill=colour)
    else:  # pragma: no cover - guarded by make_flowers
        raise ValueError(kind)


def flower_image(kind: str, rng: np.random.Generator, size: tuple[int, int] = (96, 96)) -> Image.Image:
    """Draw one flower-like RGB image of class ``kind`` with the given random generator."""
    w, h = size
    scale = 2  # draw at 2x and downsample: smooth edges like a photo
    bg = _jitter(rng, [(60, 120, 50), (110, 90, 60), (90, 140, 200)][int(rng.integers(3))], 25)
    noise = rng.normal(0, 18, (h * scale // 4, w * scale // 4, 3))
    base = np.clip(np.array(bg, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    img = Image.fromarray(base).resize((w * scale, h * scale), Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(0, 3))):  # distracting leaves
        x, y = rng.uniform(0, w * scale, 2)
        s = rng.uniform(0.08, 0.2) * w * scale
        draw.ellipse([x - s, y - s * 0.4, x + s, y + s * 0.4], fill=_jitter(rng, (50, 130, 45), 20))
    r = rng.uniform(0.22, 0.36) * min(w, h) * scale
    cx = rng.uniform(0.35, 0.65) * w * scale
    cy = rng.uniform(0.35, 0.65) * h * scale
    _draw_flower(draw, rng, kind, cx, cy, r)
    img = img.rotate(rng.uniform(-30, 30), resample=Image.BILINEAR, fillcolor=bg)
    return img.resize((w, h), Image.LANCZOS).filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.6)))


def make_flowers(root: str | os.PathLike, n_per_class: int = 40, seed: int = 0,
                 classes: tuple[str, ...] = FLOWER_CLASSES, min_size: int = 72,
                 max_size: int = 112, quality: int = 90) -> Path:
    """Write a five-class flower-like image folder to ``root`` and return its path.

    Layout: ``root/<class>/<class>_<i>.jpg``, image sides drawn between
    ``min_size`` and ``max_size`` pixels. The folder is built in a temporary
    sibling and renamed into place (:func:`resbook.files.atomic_folder`), so an
    interrupted call never leaves half a dataset; an existing ``root`` is
    refused with :class:`FileExistsError` rather than overwritten.
    """
    root = Path(root)
    unknown = set(classes) - set(FLOWER_CLASSES)
    if unknown:
        raise ValueError(f"unknown flower classes {sorted(unknown)}; choose from {FLOWER_CLASSES}")
    root.parent.mkdir(parents=True, exist_ok=True)
    with atomic_folder(root) as tmp:
        for ci, kind in enumerate(classes):
            (tmp / kind).mkdir()
            rng = np.random.default_rng([seed, ci])
            for i in range(n_per_class):
                w, h = (int(v) for v in rng.integers(min_size, max_size + 1, 2))
                flower_image(kind, rng, (w, h)).save(tmp / kind / f"{kind}_{i:04d}.jpg", quality=quality)
    return root


def generated_flowers(n_per_class: int = 40, seed: int = 0, cache: str | os.PathLike | None = None) -> Path:
    """The generated flower folder for ``(n_per_class, seed)``, made once and cached."""
    base = Path(cache) if cache is not None else cache_dir() / "generated"
    root = base / f"flowers-n{n_per_class}-s{seed}"
    if not root.exists():
        try:
            make_flowers(root, n_per_class=n_per_class, seed=seed)
        except FileExistsError:  # another process made it meanwhile
            pass
    return root


# ----------------------------------------------------------------------------- digits

# Each digit as strokes in a unit box (x right, y down): ("line", x0, y0, x1, y1)
# or ("arc", cx, cy, rx, ry, start_deg, end_deg).
_DIGIT_STROKES = {
    0: [("arc", .5, .5, .28, .4, 0, 360)],
    1: [("line", .52, .1, .52, .9), ("line", .52, .1, .36, .26)],
    2: [("arc", .5, .32, .25, .22, 180, 360), ("arc", .5, .32, .25, .22, 0, 40),
        ("line", .69, .46, .25, .9), ("line", .25, .9, .78, .9)],
    3: [("arc", .48, .3, .24, .2, 200, 450), ("arc", .48, .7, .26, .2, 270, 520)],
    4: [("line", .62, .1, .62, .9), ("line", .62, .1, .22, .64), ("line", .22, .64, .8, .64)],
    5: [("line", .72, .1, .32, .1), ("line", .32, .1, .3, .46), ("arc", .48, .66, .26, .24, 220, 500)],
    6: [("arc", .5, .68, .24, .22, 0, 360), ("arc", .62, .5, .36, .42, 180, 270)],
    7: [("line", .22, .1, .78, .1), ("line", .78, .1, .42, .9)],
    8: [("arc", .5, .3, .2, .19, 0, 360), ("arc", .5, .71, .24, .2, 0, 360)],
    9: [("arc", .5, .32, .24, .22, 0, 360), ("line", .74, .34, .6, .9)],
}


def digit_image(label: int, rng: np.random.Generator, size: int = 28) -> np.ndarray:
    """Draw one 28x28 uint8 digit-like image of ``label`` (bright strokes on black)."""
    big = size * 4
    img = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(img)
    width = int(rng.uniform(0.07, 0.12) * big)
    box = 0.62 * big  # the glyph fills the centre like MNIST's 20x20 box in 28x28
    off = (big - box) / 2
    for stroke in _DIGIT_STROKES[label]:
        if stroke[0] == "line":
            _, x0, y0, x1, y1 = stroke
            draw.line([off + x0 * box, off + y0 * box, off + x1 * box, off + y1 * box], fill=255, width=width)
        else:
            _, cx, cy, rx, ry, a0, a1 = stroke
            draw.arc([off + (cx - rx) * box, off + (cy - ry) * box, off + (cx + rx) * box, off + (cy + ry) * box],
                     a0, a1, fill=255, width=width)
    angle = rng.uniform(-15, 15)
    shear = rng.uniform(-0.2, 0.2)
    scale = rng.uniform(0.85, 1.1)
    dx, dy = rng.uniform(-0.08, 0.08, 2) * big
    # inverse affine map around the centre: rotate, shear, scale, shift
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    a, b, d, e = c / scale, (s + shear) / scale, -s / scale, c / scale
    m = big / 2
    coeffs = (a, b, m - a * (m + dx) - b * (m + dy), d, e, m - d * (m + dx) - e * (m + dy))
    img = img.transform((big, big), Image.AFFINE, coeffs, resample=Image.BILINEAR)
    img = img.resize((size, size), Image.LANCZOS)
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, 6, (size, size))
    return np.clip(arr, 0, 255).astype(np.uint8)


def make_digits(n: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x, y)``: ``n`` digit-like images ``uint8[n, 28, 28]`` and labels ``int64[n]``.

    Labels are balanced (``i % 10`` shuffled); the result depends only on ``n`` and ``seed``.
    """
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 10).astype(np.int64)
    x = np.stack([digit_image(int(label), rng) for label in y]) if n else np.zeros((0, 28, 28), np.uint8)
    return x, y
