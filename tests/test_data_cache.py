"""Tests for cifar_demo.data's decode cache: read instead of decoding, keyed so that existing
caches and the cards' dataset_fingerprint stay valid, written atomically, never fatal."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torchvision
from PIL import Image

from cifar_demo import data as D
from cifar_demo.common import CLASSES

from .synthetic_data import make_imagefolder, pixels, snapshot

# Each test gets its own cache and working directory (conftest.py's clean_env).
pytestmark = pytest.mark.usefixtures("clean_env")

# --- decoding cache --------------------------------------------------------------------


def test_second_load_reads_the_cache_not_the_images(tmp_path, monkeypatch):
    root = make_imagefolder(tmp_path / "x", 2)
    first = D.load_arrays("train", root)
    cached = list((tmp_path / "cache" / "decoded").glob("*-train.npz"))
    assert len(cached) == 1
    with np.load(cached[0], allow_pickle=False) as z:
        assert np.array_equal(z["images"], first[0])

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(Image, "open", no_decoding)
    second = D.load_arrays("train", root)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_changed_source_is_decoded_again_and_cache_dir_argument_wins(tmp_path):
    root = make_imagefolder(tmp_path / "x", 1)
    before = D.resolve_source(root).fingerprint
    Image.fromarray(pixels(9, 9, "x")).save(root / "test" / "cat" / "0000.png")
    os.utime(root / "test" / "cat" / "0000.png", ns=(1, 1))
    assert D.resolve_source(root).fingerprint != before
    images, _ = D.load_arrays("test", root, cache_dir=tmp_path / "elsewhere")
    assert np.array_equal(images[3].transpose(1, 2, 0), pixels(9, 9, "x"))
    assert list((tmp_path / "elsewhere" / "decoded").glob("*-test.npz"))


def test_source_folder_is_never_written(tmp_path):
    root = make_imagefolder(tmp_path / "x", 1)
    before = snapshot(root)
    D.load_cifar10(root, val_size=0)
    D.load_cifar10(root, val_size=0)
    assert snapshot(root) == before


T0 = 1_600_000_000 * 10**9  # a fixed mtime (ns): fingerprints hash sizes and mtimes


def test_fingerprints_and_cache_names_stay_those_of_existing_caches(tmp_path):
    """The decode cache's file names and the cards' dataset_fingerprint come from these
    fingerprints: the same files must keep the same key across versions of the code."""
    root = tmp_path / "fp"
    for s, split in enumerate(D.SPLITS):
        for label, cls in enumerate(CLASSES):
            (root / split / cls).mkdir(parents=True)
            for i in range(2):  # the scan reads names, sizes and mtimes, never the bytes
                f = root / split / cls / f"{i:04d}.jpg"
                f.write_bytes(b"x" * (1 + label + 10 * i + 100 * s))
                os.utime(f, ns=(T0, T0 + 1000 * label + i))
    src = D.resolve_source(root)
    assert (src.fingerprint, src.label) == ("4503c694d145269caa8fab446f52a10c", "CIFAR-10 (JPEG export)")
    official = tmp_path / "off" / D.OFFICIAL_DIR
    official.mkdir(parents=True)
    names = [n for n, _ in torchvision.datasets.CIFAR10.train_list + torchvision.datasets.CIFAR10.test_list]
    for k, name in enumerate(names + [torchvision.datasets.CIFAR10.meta["filename"]]):
        (official / name).write_bytes(b"y" * (k + 1))
        os.utime(official / name, ns=(T0, T0 + k))
    assert D.resolve_source(official.parent).fingerprint == "a27c21f69261d2e8804f59884c55702a"
    # ...and the cache file is <cache>/decoded/<fingerprint>-<split>.npz
    real = make_imagefolder(tmp_path / "x", 1)
    D.load_arrays("test", real)
    assert [p.name for p in (tmp_path / "cache" / "decoded").iterdir()] == \
        [f"{D.resolve_source(real).fingerprint}-test.npz"]


def test_unwritable_cache_only_warns(tmp_path):
    root = make_imagefolder(tmp_path / "x", 1)
    blocker = tmp_path / "a-file"
    blocker.write_text("the cache folder cannot be created under a file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images, labels = D.load_arrays("test", root, cache_dir=blocker / "cache")
    assert len(images) == 10 and labels.tolist() == list(range(10))
    assert any("could not write the CIFAR-10 cache" in str(w.message) for w in caught), caught


def test_a_failed_cache_write_leaves_neither_a_temp_file_nor_a_cache(tmp_path, monkeypatch):
    root = make_imagefolder(tmp_path / "x", 1)
    real_savez = np.savez

    def disk_full(f, **arrays):
        f.write(b"half a cache")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.warns(UserWarning, match="No space left on device"):
        first = D.load_arrays("train", root)
    decoded = tmp_path / "cache" / "decoded"
    assert list(decoded.iterdir()) == []  # no torn .npz, no leftover temp file
    monkeypatch.setattr(np, "savez", real_savez)
    second = D.load_arrays("train", root)  # decoded again, and cached this time
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert [p.suffix for p in decoded.iterdir()] == [".npz"]


def test_a_corrupt_cache_file_is_ignored_and_replaced(tmp_path):
    root = make_imagefolder(tmp_path / "x", 1)
    expected = D.load_arrays("test", root)
    path, = (tmp_path / "cache" / "decoded").iterdir()
    path.write_bytes(b"PK\x03\x04 torn")
    with pytest.warns(UserWarning, match="ignoring unreadable cache file"):
        again = D.load_arrays("test", root)
    assert all(np.array_equal(a, b) for a, b in zip(expected, again))
    assert all(np.array_equal(a, b) for a, b in zip(expected, D.load_arrays("test", root)))
