"""Splitting: the validation split held out of the training set, class-balanced subsets,
and a digest that names a split by its pixels.

Drawn with numpy on the CPU, so the same seed gives the same split on any device.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from .dataset import Split


def stratified_split(labels: np.ndarray, val_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, val indices), each sorted: `val_size` indices drawn per class in
    proportion to its size (500 per class for 5,000 of CIFAR-10's 50,000).

    Drawn with numpy on the CPU, so the same seed gives the same split on any device.
    """
    labels = np.asarray(labels)
    if not 0 <= val_size < len(labels):
        raise ValueError(f"val_size must be in [0, {len(labels)}), not {val_size}")
    classes, counts = np.unique(labels, return_counts=True)
    quota = val_size * counts / len(labels)
    take = np.floor(quota).astype(np.int64)
    # Round so the total is exactly val_size: the largest remainders get one more.
    take[np.argsort(take - quota, kind="stable")[: val_size - take.sum()]] += 1
    rng = np.random.default_rng(seed)
    val = np.sort(np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]))
    keep = np.ones(len(labels), bool)
    keep[val] = False
    return np.flatnonzero(keep), val


def split_digest(split: Split) -> str:
    """sha256 of a split's decoded pixels and labels: the same for every copy of the same
    images, wherever they sit and whatever their file times (unlike DataSource.fingerprint,
    the cache key). Model cards record it for their test split so CI can tell "same test
    images" from "another copy of them"."""
    h = hashlib.sha256(b"cifar-demo split uint8 NCHW + int64 labels\n")
    h.update(np.ascontiguousarray(split.images.cpu().numpy()).tobytes())
    h.update(np.ascontiguousarray(split.labels.cpu().numpy().astype(np.int64)).tobytes())
    return h.hexdigest()[:32]


def subset(split: Split, indices) -> Split:
    """The images of `split` at `indices` (any sequence of ints), in that order."""
    idx = torch.as_tensor(np.asarray(indices, np.int64), device=split.images.device)
    soft = None if split.soft is None else split.soft[idx.to(split.soft.device)]
    return Split(split.images[idx], split.labels[idx], soft)


def stratified_subset(split: Split, n: int, seed: int = 0) -> Split:
    """`n` images of `split`, classes in proportion (for quick runs); all of it if n >= len."""
    if n >= len(split):
        return split
    _, keep = stratified_split(split.labels.cpu().numpy(), n, seed)
    return subset(split, keep)
