"""The entry points: a whole split, or the whole data set with its validation split held out.

Each split is decoded once (sources.py) and read from the decode cache (cache.py) after.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..common import CLASSES, pick_device
from .cache import cache_path, read_cache, write_cache
from .dataset import CifarData, DataSource, Split
from .sources import SPLITS, decode, resolve_source
from .split import stratified_split


def load_arrays(split: str, source: str | os.PathLike | DataSource | None = None,
                cache_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One whole official split ("train": 50,000 or "test": 10,000) as numpy arrays:
    uint8 images N,3,32,32 and int64 labels N. Decodes only on a cache miss."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    src = resolve_source(source, cache_dir)
    path = cache_path(src.fingerprint, split, cache_dir)
    cached = read_cache(path)
    if cached is not None:
        return cached
    images, labels = decode(src, split)
    write_cache(path, images, labels)
    return images, labels


def load_split(split: str, source: str | os.PathLike | DataSource | None = None,
               cache_dir: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> Split:
    """One whole official split as a Split, e.g. load_split("test", resolve_source(...)) to evaluate."""
    images, labels = load_arrays(split, source, cache_dir)
    return Split(torch.from_numpy(images), torch.from_numpy(labels)).to(pick_device(device))


def load_cifar10(source: str | os.PathLike | DataSource | None = None, val_size: int = 5000,
                 seed: int = 0, cache_dir: str | os.PathLike | None = None,
                 device: str | torch.device = "cpu") -> CifarData:
    """CIFAR-10 as uint8 tensors on `device`: train (50,000 - val_size), val, test (10,000).

    The val split depends only on (seed, val_size), never on the device; val_size=0 gives
    an empty val split.
    """
    src = resolve_source(source, cache_dir)
    train_x, train_y = load_arrays("train", src, cache_dir)
    test_x, test_y = load_arrays("test", src, cache_dir)
    tr, va = stratified_split(train_y, val_size, seed)
    dev = pick_device(device)

    def split(x: np.ndarray, y: np.ndarray) -> Split:
        return Split(torch.from_numpy(x), torch.from_numpy(y)).to(dev)

    return CifarData(split(train_x[tr], train_y[tr]), split(train_x[va], train_y[va]),
                     split(test_x, test_y), CLASSES, src)
