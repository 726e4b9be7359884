"""The numbers that shape a dataset of your own images, each stated once: how big it may be
(DataLimits, with a generous local default and small public caps), how its test split is
held out when it has none, and how much of its training set the validation split may take.

CIFAR-10 sources follow none of these: their splits and sizes are fixed (load.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# The test split of a single-folder dataset (DIR/<class>/*): 20% of each class, rounded down,
# at least 1, drawn with a fixed seed. Fixed, not the run's seed: every run on the same folder
# is then scored on the same test images, as every CIFAR-10 run is, so runs stay comparable.
TEST_FRACTION = 0.2
TEST_SEED = 0
TEST_RULE = (f"{TEST_FRACTION:.0%} of each class (rounded down, at least 1) held out as the test split, "
             f"drawn with seed {TEST_SEED}")

# The validation split of own data: val_size is honoured but capped at 10% of the training
# images, drawn in proportion to each class. 10% is CIFAR-10's own share (5,000 of 50,000), so
# the CIFAR-sized default val_size=5000 means "the usual share" on 300 images too, and at
# least 90% of a small dataset stays for training.
VAL_MAX_FRACTION = 0.1
VAL_RULE = f"val_size, capped at {VAL_MAX_FRACTION:.0%} of the training images (in proportion per class)"


def capped_val_size(val_size: int, n_train: int) -> int:
    """The validation split size own data gets for a requested `val_size` (see VAL_RULE)."""
    return min(val_size, int(VAL_MAX_FRACTION * n_train))


@dataclass(frozen=True)
class DataLimits:
    """What a dataset of own images may hold. Over a limit, loading stops with a DataSourceError
    naming the limit and what was found (never a half-loaded dataset)."""

    min_classes: int = 2         # one class is not a classification task
    max_classes: int = 100       # the class names must fit the app's tables and plots
    min_per_class: int = 5       # training images per class (a test image of each is held out too)
    max_files: int = 100_000     # files seen in the dataset, images or not (a scan stops at the cap)
    max_bytes: int = 10 * 2**30  # of the images read (declared sizes, for zips: before reading)
    # Pixels, as each image's header declares them (read before decoding; see below):
    max_image_pixels: int = 4096 * 4096   # per image: a larger one is skipped, and listed
    max_pixels: int = 100_000_000_000     # all images together: over it, the dataset is refused
    note: str = ""               # appended to the caps' messages: where the caps come from

    def __post_init__(self):
        if not 2 <= self.min_classes <= self.max_classes:
            raise ValueError(f"need 2 <= min_classes <= max_classes, not {self.min_classes}, {self.max_classes}")
        if self.min_per_class < 2 or min(self.max_files, self.max_bytes, self.max_image_pixels, self.max_pixels) < 1:
            raise ValueError(f"min_per_class must be >= 2 and the caps positive: {self}")


# Pixels cost decoding time, bytes do not: a flat 6000x6000 PNG is under 1 KB zipped and takes
# over a second to decode. Every image ends as 32x32, so 4096x4096 (16.8 MP) per image is plenty:
# it holds a 12 MP phone photo (4000x3000) and a 4K frame, and costs under a second on 2 cores
# (full-size decoding, then LANCZOS: ~20-30 MP/s measured here; see own.py for why full size).
# The same in both modes, so that what is skipped (and cached) does not depend on the mode.
# The totals: 100 GP locally (about an hour), 1 GP in public mode (under a minute).

# Local mode: big enough for any folder a person sorts by hand (100,000 photos decode in tens
# of minutes on 2 cores and hold 300 MB as 32x32 tensors); the caps only stop a wrong folder.
DEFAULT_LIMITS = DataLimits()
# Public mode (a shared Space): an upload that decodes in about a minute on the shared 2 cores.
PUBLIC_LIMITS = DataLimits(max_files=2_000, max_bytes=100 * 2**20, max_pixels=1_000_000_000,
                           note="in public mode; run the app locally for larger datasets")


def public_mode() -> bool:
    """The same rule as jobs.public_mode (SPACE_ID set, or CIFAR_DEMO_PUBLIC=1; =0 wins), repeated
    here so the data layer does not import the job queue; tests/test_data_own.py checks they agree."""
    flag = os.environ.get("CIFAR_DEMO_PUBLIC", "").strip().lower()
    if flag in {"0", "false", "no", "off"}:
        return False
    return bool(os.environ.get("SPACE_ID")) or flag in {"1", "true", "yes", "on"}


def default_limits() -> DataLimits:
    """PUBLIC_LIMITS in public mode, DEFAULT_LIMITS otherwise: what limits=None means."""
    return PUBLIC_LIMITS if public_mode() else DEFAULT_LIMITS
