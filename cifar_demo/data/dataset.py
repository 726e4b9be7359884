"""What the data layer hands out: a DataSource (where the images come from), Splits of
uint8 tensors, and CifarData, the dataset description that carries its class names.

The class names travel with the data (CifarData.classes), never as a separate import, so
callers label predictions with what the data says. Today they are always common.CLASSES:
sources.py checks the class folders and batches.meta against them. A dataset of other
classes would be found by that scan, recorded on its DataSource, and land here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor


class DataSourceError(Exception):
    """No usable CIFAR-10 source, or a source of the wrong shape; the message says how to fix it."""


@dataclass(frozen=True)
class DataSource:
    """Where the images come from. `label` is how figures measured on it must be named."""

    kind: str          # "official" | "imagefolder" | "download"
    path: Path         # official: the folder holding cifar-10-batches-py; else the export root
    fingerprint: str   # key of the decoded cache
    label: str         # "CIFAR-10 (official)", "CIFAR-10 (JPEG export)", "CIFAR-10 (ImageFolder export)"


@dataclass
class Split:
    """A set of images as tensors: uint8 N,3,32,32 (contiguous NCHW) and int64 labels N."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: str | torch.device) -> Split:
        return Split(self.images.to(device), self.labels.to(device))


@dataclass
class CifarData:
    train: Split
    val: Split        # held out of the official training set (see split.stratified_split)
    test: Split       # for reporting only; never for model selection
    classes: tuple[str, ...]
    source: DataSource
