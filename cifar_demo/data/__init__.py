"""Datasets: CIFAR-10 (the default) or your own images. Find a source, decode it once into a
cache, hold out a validation split (and, for a single folder of own images, a test split),
and serve batches. A dataset is a value: CifarData carries its class names, its source and
description(), never a module constant.

- dataset.py: DataSource, Split, CifarData (the dataset, with its class names and description())
- sources.py: where the data comes from (explicit folder or .zip, $CIFAR_DEMO_DATA, official
  files, ImageFolder export, torchvision's download), which layout is CIFAR-10 and which is
  own images, fingerprints and decoding; every DataSourceError says how to fix what is wrong
- own_scan.py, own.py: own images (any classes, any sizes, folder or zip): layouts, limits,
  skipped files, decoding with the rules of uploads
- rules.py: DataLimits (DEFAULT_LIMITS, PUBLIC_LIMITS), the test split of a single folder,
  the validation cap of own data
- cache.py: the decode cache, uint8 .npz files (no pickle) in <cache>/decoded keyed by the
  source's fingerprint, so only the first load decodes
- split.py: the stratified validation split, subsets, split_digest
- load.py: load_arrays, load_split, load_dataset (= load_cifar10)
- loaders.py: TensorLoader (device presets) and PerImageLoader (per-image presets)
- sample.py: the 50 bundled test images
"""

from . import pictures  # noqa: F401  (data.pictures: the picture decoder, also for callers of the package)
from .cache import CACHE_VERSION, OWN_CACHE, cache_root
from .dataset import CifarData, DataSource, DataSourceError, Split
from .load import load_arrays, load_cifar10, load_dataset, load_split
from .loaders import PerImageLoader, TensorLoader
from .own import hold_out_test
from .rules import (
                    DEFAULT_LIMITS,
                    PUBLIC_LIMITS,
                    TEST_FRACTION,
                    TEST_RULE,
                    TEST_SEED,
                    VAL_MAX_FRACTION,
                    VAL_RULE,
                    DataLimits,
                    capped_val_size,
                    default_limits,
)
from .sample import SAMPLE_DIR, load_sample, sample_paths
from .sources import (
                    OFFICIAL_DIR,
                    SPLITS,
                    decode,
                    default_locations,
                    layout_of,
                    read_image,
                    resolve_source,
)
from .split import split_digest, stratified_split, stratified_subset, subset

__all__ = [
    "CACHE_VERSION", "CifarData", "DEFAULT_LIMITS", "DataLimits", "DataSource", "DataSourceError",
    "OFFICIAL_DIR", "PUBLIC_LIMITS", "PerImageLoader", "SAMPLE_DIR", "SPLITS", "Split", "TEST_FRACTION",
    "TEST_RULE", "TEST_SEED", "TensorLoader", "VAL_MAX_FRACTION", "VAL_RULE", "OWN_CACHE", "cache_root",
    "capped_val_size",
    "decode", "default_limits", "default_locations", "hold_out_test", "load_arrays", "load_cifar10",
    "layout_of", "load_dataset", "load_sample", "load_split", "read_image", "resolve_source", "sample_paths",
    "split_digest", "stratified_split", "stratified_subset", "subset",
]
