"""Datasets of "your own images" for the tests: class folders of new names in a temp folder.

Each class is a colour family (red, green, blue, ...) drawn as a blob on a noisy background
at a random size and shape, so a small CNN separates them in an epoch or two, and the
images are not 32x32 (the loader must centre-crop and resize them). Pictures are saved
in several formats and modes (RGB JPEG, RGBA PNG, palette PNG), as a user's folder would be.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

# Background-independent colours, one per class (the first classes are the test's classes).
PALETTE = [(220, 40, 40), (40, 200, 60), (40, 70, 220), (230, 200, 30), (200, 40, 200), (30, 200, 210)]
NAMES = ("leaf", "coin", "shell", "stamp", "button", "pebble")


def picture(label: int, i: int, seed: int = 0) -> Image.Image:
    """One picture of class `label`: its colour as a blob of random size on random noise."""
    rng = np.random.default_rng([seed, label, i])
    h, w = int(rng.integers(24, 120)), int(rng.integers(24, 120))
    img = rng.integers(0, 90, (h, w, 3)).astype(np.float32)
    yy, xx = np.mgrid[:h, :w]
    cy, cx, r = h / 2 + rng.normal(0, h / 10), w / 2 + rng.normal(0, w / 10), min(h, w) * rng.uniform(0.25, 0.45)
    blob = ((yy - cy) ** 2 + (xx - cx) ** 2) < r * r
    img[blob] = np.asarray(PALETTE[label % len(PALETTE)], np.float32) * rng.uniform(0.7, 1.0)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _save(img: Image.Image, path: Path, k: int) -> Path:
    """Mixed formats and modes in turn: RGB JPEG, RGBA PNG, palette PNG."""
    if k % 3 == 0:
        path = path.with_suffix(".jpg")
        img.save(path, quality=90)
    elif k % 3 == 1:
        path = path.with_suffix(".png")
        img.convert("RGBA").save(path)
    else:
        path = path.with_suffix(".png")
        img.convert("P", palette=Image.Palette.ADAPTIVE).save(path)
    return path


def make_own_folder(root: Path, classes=NAMES[:3], per_class: int = 12, *, layout: str = "split",
                    test_per_class: int = 4, broken: int = 0, seed: int = 0) -> Path:
    """root/train/<class>/* and root/test/<class>/* (layout="split"), or root/<class>/*
    (layout="single"). `broken`: that many unreadable files (truncated JPEGs) in the first class.
    """
    splits = {"train": per_class, "test": test_per_class} if layout == "split" else {"": per_class}
    for split, n in splits.items():
        for label, cls in enumerate(classes):
            folder = root / split / cls if split else root / cls
            folder.mkdir(parents=True, exist_ok=True)
            offset = 0 if split in ("", "train") else 10_000
            for i in range(n):
                _save(picture(label, offset + i, seed), folder / f"{cls}_{i:03d}", i)
    first = (root / "train" / classes[0]) if layout == "split" else root / classes[0]
    for b in range(broken):
        good = (first / f"{classes[0]}_000.jpg").read_bytes()
        (first / f"zz_broken_{b}.jpg").write_bytes(good[: len(good) // 3])
    return root


def zip_folder(folder: Path, dest: Path, *, wrap: bool = False) -> Path:
    """Zip a folder's contents; wrap=True puts them under one top folder (as "compress folder" does)."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                arc = p.relative_to(folder.parent if wrap else folder)
                z.write(p, arc.as_posix())
    return dest
