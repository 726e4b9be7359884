"""The decode cache: each split decoded once into a uint8 .npz (no pickle), keyed by its
source's fingerprint, in <cache>/decoded.

A dataset of your own images also records, in each of its .npz files, the files it skipped
(path and reason, as unicode arrays: still no pickle), so the list survives a cache hit.

<cache> is also where the default source locations and torchvision's download live
(sources.py). A cache that cannot be written (a read-only home, a full disk) costs speed,
never correctness: it warns and the data is decoded again next time.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

import numpy as np

from ..common import IMAGE_SIZE
from ..fsio import atomic_write

# Bump when the decoded arrays would change for the same source files (it is in the cache
# key: sources.py hashes it into every DataSource.fingerprint).
CACHE_VERSION = 1
# A zip of own images whose folder holds a folder of this name is decoded into it, not into
# <cache>: the app's datasets folder of a visitor (ui.own_data, public mode), so a visitor's
# decoded pixels are deleted with its folder. Without it (locally), <cache> as before.
OWN_CACHE = ".cache"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: `cache_dir`, else $CIFAR_DEMO_CACHE, else ~/.cache/cifar-demo."""
    return Path(cache_dir or os.environ.get("CIFAR_DEMO_CACHE") or "~/.cache/cifar-demo").expanduser()


def own_cache_dir(path: Path, cache_dir: str | os.PathLike | None = None) -> str | os.PathLike | None:
    """Where an own zip's splits are cached: <its folder>/OWN_CACHE when that folder exists, else `cache_dir`."""
    beside = Path(path).parent / OWN_CACHE
    return beside if Path(path).is_file() and beside.is_dir() else cache_dir


def cache_path(fingerprint: str, split: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """<cache>/decoded/<fingerprint>-<split>.npz: existing caches stay valid as long as this does."""
    return cache_root(cache_dir) / "decoded" / f"{fingerprint}-{split}.npz"


def read_cache(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(images, labels) from a cache file, or None if it is missing or not what we wrote."""
    try:
        with np.load(path, allow_pickle=False) as z:
            images, labels = z["images"], z["labels"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        warnings.warn(f"ignoring unreadable cache file {path}: {e}")
        return None
    if (images.dtype != np.uint8 or images.shape[1:] != (3, IMAGE_SIZE, IMAGE_SIZE)
            or labels.dtype != np.int64 or labels.shape != (len(images),)):
        warnings.warn(f"ignoring cache file {path}: unexpected arrays")
        return None
    return images, labels


def read_skipped(path: Path) -> tuple[tuple[str, str], ...] | None:
    """The skipped files recorded beside a cache file's arrays; None if none were recorded."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "skipped" not in z.files:
                return None
            rows = z["skipped"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
    if rows.ndim != 2 or rows.shape[1] != 2 or rows.dtype.kind != "U":
        return None
    return tuple((str(a), str(b)) for a, b in rows)


def write_cache(path: Path, images: np.ndarray, labels: np.ndarray,
                skipped: list[tuple[str, str]] | tuple | None = None) -> None:
    """Atomically (a killed process never leaves half a cache); warns if it cannot.
    `skipped` (own images only) is stored too; CIFAR-10 caches hold images and labels only."""
    arrays = {"images": images, "labels": labels}
    if skipped is not None:
        # "<U1" for an empty list, so that an empty table still has 2 columns of text.
        arrays["skipped"] = np.array(list(skipped), dtype=str).reshape(-1, 2) if skipped \
            else np.zeros((0, 2), "<U1")

    def write(tmp: Path) -> None:
        # Through a file object: given a name, np.savez would append ".npz" to the temp name.
        # Uncompressed: loads in a fraction of a second.
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    try:
        atomic_write(path, write)
    except OSError as e:  # a read-only cache costs speed, not correctness
        warnings.warn(f"could not write the CIFAR-10 cache {path}: {e}")
