"""What each channel responds to most: the test pictures (and where in them) that excite it.

For every map stage of a model (inside.forward_stages) and every channel, the K test pictures of a
fixed, class-balanced slice whose strongest response (the maximum over the map) is highest, with
the position of that maximum. One pass over the slice gives every stage and channel at once; the
result is cached per weights file and slice (arraycache), so the first look costs a forward pass of
the slice (seconds to a minute on a 2-core CPU) and every later one nothing.

The patch shown for a unit is the part of the picture its receptive field covers (inside.
architecture), centred where the unit sits: small in the first layers (edges, colours), the whole
picture from the deeper stages on (objects, textures).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from .. import data as data_mod
from ..common import IMAGE_SIZE
from . import arraycache, inside

VERSION = 1
TOP_K = 9
BATCH = 100
DEFAULT_N = 1000        # 100 per class: enough for each channel's favourites to differ
SLICE_SEED = 0          # the same 1,000 pictures as the Robustness tab's slice


def test_slice(source=None, n: int = DEFAULT_N) -> data_mod.Split:
    """`n` test pictures, classes in equal shares, the same ones wherever the same data sits."""
    return data_mod.stratified_subset(data_mod.load_split("test", source), n, SLICE_SEED)


@dataclass
class StageTop:
    """One stage's favourites: for channel c, the pictures index[c] (into the slice), the responses
    value[c] (highest first) and where in the map they peak (y[c], x[c]; the map is `size` units)."""

    name: str
    size: tuple[int, int]
    index: np.ndarray       # C,K int
    value: np.ndarray       # C,K float32
    y: np.ndarray           # C,K int
    x: np.ndarray           # C,K int


def compute(model, images: torch.Tensor, k: int = TOP_K) -> list[StageTop]:
    """Every map stage's top-k pictures per channel over `images` (N,3,32,32 uint8)."""
    best: list[list[np.ndarray]] | None = None
    names, sizes = [], []
    for start in range(0, len(images), BATCH):
        stages, _ = inside.forward_stages(model, images[start:start + BATCH])
        maps = [s for s in stages if s.is_map]
        if best is None:
            best = [[] for _ in maps]
            names = [s.name for s in maps]
            sizes = [tuple(s.output.shape[-2:]) for s in maps]
        for slot, s in zip(best, maps):
            flat = s.output.float().flatten(2)             # N,C,HW
            val, pos = flat.max(2)                          # N,C
            slot.append(np.stack([val.numpy(), pos.numpy().astype(np.float32)]))
    out = []
    for name, size, parts in zip(names, sizes, best or []):
        val, pos = np.concatenate(parts, axis=1)            # N,C each
        kk = min(k, val.shape[0])
        order = np.argsort(-val, axis=0, kind="stable")[:kk].T      # C,K image indices
        v = np.take_along_axis(val.T, order, 1)
        p = np.take_along_axis(pos.T, order, 1).astype(np.int64)
        out.append(StageTop(name, size, order.astype(np.int64), v.astype(np.float32), p // size[1], p % size[1]))
    return out


def _pack(tops: list[StageTop]) -> dict[str, np.ndarray]:
    arrays = {"names": np.array([t.name for t in tops]), "sizes": np.array([t.size for t in tops], np.int64)}
    for i, t in enumerate(tops):
        arrays.update({f"index{i}": t.index, f"value{i}": t.value, f"y{i}": t.y, f"x{i}": t.x})
    return arrays


def _unpack(arrays: dict[str, np.ndarray]) -> list[StageTop]:
    return [StageTop(str(n), tuple(int(v) for v in arrays["sizes"][i]), arrays[f"index{i}"], arrays[f"value{i}"],
                     arrays[f"y{i}"], arrays[f"x{i}"]) for i, n in enumerate(arrays["names"])]


def favourites(model, architecture: str, sha256: str, split: data_mod.Split, *,
               cache: str | os.PathLike | None = None) -> tuple[list[StageTop], bool]:
    """(every map stage's top-9 per channel on `split`, whether it came from the cache)."""
    key = arraycache.key("topk", architecture, sha256, data_mod.split_digest(split), VERSION)
    hit = arraycache.load(key, cache)
    if hit is not None:
        return _unpack(hit), True
    tops = compute(model, split.images)
    arraycache.store(key, _pack(tops), cache)
    return tops, False


def cached_favourites(architecture: str, sha256: str, split: data_mod.Split, *,
                      cache: str | os.PathLike | None = None) -> list[StageTop] | None:
    """What the cache holds (nothing is computed), or None."""
    hit = arraycache.load(arraycache.key("topk", architecture, sha256, data_mod.split_digest(split), VERSION), cache)
    return None if hit is None else _unpack(hit)


def patch(image: np.ndarray, y: int, x: int, size: tuple[int, int], field: int) -> np.ndarray:
    """The part of a 32x32x3 picture a unit at (y, x) of a size[0] x size[1] map sees: a square of
    side min(field, 32) around the unit's centre, kept inside the picture."""
    side = int(min(max(field, 1), IMAGE_SIZE))
    cy = (y + 0.5) * IMAGE_SIZE / size[0]
    cx = (x + 0.5) * IMAGE_SIZE / size[1]
    top = int(np.clip(round(cy - side / 2), 0, IMAGE_SIZE - side))
    left = int(np.clip(round(cx - side / 2), 0, IMAGE_SIZE - side))
    return image[top:top + side, left:left + side]
