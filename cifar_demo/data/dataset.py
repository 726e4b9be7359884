"""What the data layer hands out: a DataSource (where the images come from), Splits of
uint8 tensors, and CifarData, the dataset description that carries its class names.

The class names travel with the data (CifarData.classes, DataSource.classes), never as a
separate import, so callers label predictions with what the data says: common.CLASSES for
CIFAR-10 (sources.py checks the class folders and batches.meta against them), the sorted
class-folder names for a dataset of your own images (own.py). CifarData.description() is the
dataset as plain JSON-able data, for run records, cards and the app.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..common import CLASSES
from .rules import TEST_RULE


class DataSourceError(Exception):
    """No usable source, a source of the wrong shape or over a limit; the message says how to fix it."""


@dataclass(frozen=True)
class DataSource:
    """Where the images come from. `label` is how figures measured on it must be named."""

    kind: str          # "official" | "imagefolder" | "download" | "own"
    path: Path         # official: the folder holding cifar-10-batches-py; own: the folder or .zip; else the export root
    fingerprint: str   # key of the decoded cache
    label: str         # "CIFAR-10 (official)", "CIFAR-10 (JPEG export)", "CIFAR-10 (ImageFolder export)",
    #                    or "<name> (own images)"
    # With defaults, so that DataSource(kind, path, fingerprint, label) still means CIFAR-10.
    classes: tuple[str, ...] = CLASSES   # own: the sorted class-folder names
    name: str = "CIFAR-10"               # own: the folder's name or the zip's stem
    layout: str = ""                     # own: "split" (train/ + test/) or "single" (DIR/<class>/*)


@dataclass
class Split:
    """A set of images as tensors: uint8 N,3,32,32 (contiguous NCHW) and int64 labels N.

    `soft`: optional float32 N,C class probabilities per image (a teacher's, for distillation:
    train.distill); the loaders yield them beside the labels, and subsets keep them aligned.
    """

    images: Tensor
    labels: Tensor
    soft: Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: str | torch.device) -> Split:
        return Split(self.images.to(device), self.labels.to(device),
                     None if self.soft is None else self.soft.to(device))


@dataclass
class CifarData:
    """A whole dataset (CIFAR-10 or your own images): its splits, class names and source."""

    train: Split
    val: Split        # held out of the training set (see split.stratified_split; own data: rules.VAL_RULE)
    test: Split       # for reporting only; never for model selection
    classes: tuple[str, ...]
    source: DataSource
    # Own images: files that were not read, (path relative to the dataset, why), sorted by path.
    skipped: tuple[tuple[str, str], ...] = ()

    def test_rule(self) -> str:
        """Where the test split came from, in words."""
        if self.source.kind != "own":
            return "the official test batch" if self.source.kind != "imagefolder" else "the export's test/ folder"
        return "the test/ folder" if self.source.layout == "split" else TEST_RULE

    def description(self) -> dict:
        """The dataset as JSON-able data (no paths: the app serves no user path)."""
        return {
            "name": self.source.name, "label": self.source.label, "kind": self.source.kind,
            "layout": self.source.layout, "classes": list(self.classes),
            "counts": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "test_rule": self.test_rule(), "skipped": [list(s) for s in self.skipped],
            "fingerprint": self.source.fingerprint,
        }
