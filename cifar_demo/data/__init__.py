"""CIFAR-10 data: find a source, decode it once into a cache, hold out a validation split,
and serve batches.

- dataset.py: DataSource, Split, CifarData (the dataset description, with its class names)
- sources.py: where the data comes from (explicit folder, $CIFAR_DEMO_DATA, official files,
  ImageFolder export, torchvision's download), the layouts a folder may hold, fingerprints
  and decoding; every DataSourceError says how to fix what is wrong
- cache.py: the decode cache, uint8 .npz files (no pickle) in <cache>/decoded keyed by the
  source's fingerprint, so only the first load decodes
- split.py: the stratified validation split, subsets, split_digest
- load.py: load_arrays, load_split, load_cifar10
- loaders.py: TensorLoader (device presets) and PerImageLoader (per-image presets)
- sample.py: the 50 bundled test images
"""

from .cache import CACHE_VERSION, cache_root
from .dataset import CifarData, DataSource, DataSourceError, Split
from .load import load_arrays, load_cifar10, load_split
from .loaders import PerImageLoader, TensorLoader
from .sample import SAMPLE_DIR, load_sample, sample_paths
from .sources import OFFICIAL_DIR, SPLITS, decode, default_locations, read_image, resolve_source
from .split import split_digest, stratified_split, stratified_subset, subset

__all__ = [
    "CACHE_VERSION", "CifarData", "DataSource", "DataSourceError", "OFFICIAL_DIR", "PerImageLoader",
    "SAMPLE_DIR", "SPLITS", "Split", "TensorLoader", "cache_root", "decode", "default_locations",
    "load_arrays", "load_cifar10", "load_sample", "load_split", "read_image", "resolve_source",
    "sample_paths", "split_digest", "stratified_split", "stratified_subset", "subset",
]
