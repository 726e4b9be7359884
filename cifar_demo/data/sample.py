"""The bundled sample: 50 CIFAR-10 test images (5 per class) that ship with the package, so
the app's tabs and the tests work with no data set at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..common import CLASSES
from .dataset import Split
from .sources import read_image

# 5 test images per class, picked from the JPEG export (see sample_paths()).
SAMPLE_DIR = Path(__file__).resolve().parents[1] / "assets" / "sample"


def sample_paths() -> list[tuple[Path, str]]:
    """The 50 bundled images as (path, class name), by class then name.

    They are CIFAR-10 test images: the first 5 files (sorted by name) of each class of the
    JPEG export's test/<class>/ (see ../shared/data/README.md), decoded with PIL and stored
    as PNG, so their pixels equal the export's decoded JPEGs.
    """
    return [(p, cls) for cls in CLASSES for p in sorted((SAMPLE_DIR / cls).glob("*.png"))]


def load_sample() -> Split:
    """The bundled sample as a Split (50 images, 5 per class): works with no data set at all."""
    pairs = sample_paths()
    images = np.stack([read_image(p) for p, _ in pairs])
    labels = np.array([CLASSES.index(cls) for _, cls in pairs], np.int64)
    return Split(torch.from_numpy(images), torch.from_numpy(labels))
