"""Arrays computed from a weights file and a test slice, cached on disk as .npz files.

The inside-the-network views (inside_topk, embedding) are pure functions of the weights file's
bytes (sha256), the slice's pixels and labels (data.split_digest) and the code (a version), so
those are the key; entries live in <cache>/inside/ (<cache> is data.cache_root()) and are written
atomically (fsio): a killed app never leaves half an entry. A missing or unreadable entry is
recomputed; a read-only cache costs time, not correctness.
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np

from .. import data as data_mod
from .. import fsio


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    return data_mod.cache_root(cache) / "inside"


def key(what: str, architecture: str, sha256: str, slice_digest: str, version: int) -> str:
    """A file name that is readable (what, model) and unique (hashes of the weights and the slice)."""
    return f"{what}-{architecture}-{sha256[:24]}-{slice_digest[:16]}-v{version}"


def load(name: str, cache: str | os.PathLike | None = None) -> dict[str, np.ndarray] | None:
    path = cache_dir(cache) / f"{name}.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        warnings.warn(f"ignoring unreadable cache entry {path}: {e}")
        return None


def store(name: str, arrays: dict[str, np.ndarray], cache: str | os.PathLike | None = None) -> Path | None:
    path = cache_dir(cache) / f"{name}.npz"
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    try:
        return fsio.atomic_write_bytes(path, buf.getvalue())
    except OSError as e:
        warnings.warn(f"could not write the cache {path}: {e}")
        return None
