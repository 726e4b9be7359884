"""The entry points: a whole split, or the whole dataset with its validation split held out.

Each split is decoded once (sources.py; own images: own.py) and read from the decode cache
(cache.py) after. CIFAR-10 and own images go through the same functions; only own data has
its test split held out of a single folder (rules.TEST_RULE) and its validation split capped
(rules.VAL_RULE).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..common import CLASSES, pick_device
from .cache import cache_path, read_cache, write_cache
from .dataset import CifarData, DataSource, Split
from .own import load_own
from .rules import DataLimits, capped_val_size
from .sources import SPLITS, decode, resolve_source
from .split import stratified_split


def load_arrays(split: str, source: str | os.PathLike | DataSource | None = None,
                cache_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One whole split ("train" or "test"; CIFAR-10: 50,000 or 10,000 official images) as numpy
    arrays: uint8 images N,3,32,32 and int64 labels N. Decodes only on a cache miss."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    src = resolve_source(source, cache_dir)
    if src.kind == "own":
        return load_own(src, cache_dir)[0][split]
    path = cache_path(src.fingerprint, split, cache_dir)
    cached = read_cache(path)
    if cached is not None:
        return cached
    images, labels = decode(src, split)
    write_cache(path, images, labels)
    return images, labels


def load_split(split: str, source: str | os.PathLike | DataSource | None = None,
               cache_dir: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> Split:
    """One whole split as a Split, e.g. load_split("test", resolve_source(...)) to evaluate."""
    images, labels = load_arrays(split, source, cache_dir)
    return Split(torch.from_numpy(images), torch.from_numpy(labels)).to(pick_device(device))


def load_dataset(source: str | os.PathLike | DataSource | None = None, val_size: int = 5000,
                 seed: int = 0, cache_dir: str | os.PathLike | None = None,
                 device: str | torch.device = "cpu", limits: DataLimits | None = None) -> CifarData:
    """A whole dataset as uint8 tensors on `device`, its validation split held out of train.

    CIFAR-10 (no source, or a CIFAR-10 folder): train (50,000 - val_size), val, test (10,000).
    Own images (a folder or .zip of class folders; `limits`, None: rules.default_limits()):
    val_size is capped (rules.VAL_RULE), CifarData.skipped lists the files not read.

    The val split depends only on (seed, val_size), never on the device; val_size=0 gives
    an empty val split.
    """
    src = resolve_source(source, cache_dir, limits=limits)
    skipped: tuple[tuple[str, str], ...] = ()
    if src.kind == "own":
        splits, skipped = load_own(src, cache_dir, limits)
        (train_x, train_y), (test_x, test_y) = splits["train"], splits["test"]
        val_size = capped_val_size(val_size, len(train_y))
    else:
        train_x, train_y = load_arrays("train", src, cache_dir)
        test_x, test_y = load_arrays("test", src, cache_dir)
    tr, va = stratified_split(train_y, val_size, seed)
    dev = pick_device(device)

    def split(x: np.ndarray, y: np.ndarray) -> Split:
        return Split(torch.from_numpy(x), torch.from_numpy(y)).to(dev)

    return CifarData(split(train_x[tr], train_y[tr]), split(train_x[va], train_y[va]),
                     split(test_x, test_y), src.classes if src.kind == "own" else CLASSES, src, skipped)


# The name every caller used before datasets of own images: the same function, same arguments.
load_cifar10 = load_dataset
