"""Datasets of your own images: a folder or .zip of class folders, any class names.

resolve_own() scans (own_scan.py: layouts, limits, what is skipped) and fingerprints;
load_own() decodes every image once, with the rules of uploads (pictures.load_image, then
pictures.to_32x32: centre-crop and LANCZOS-resize to 32x32), holds the test split out of a
single folder (rules.TEST_RULE) and caches both splits like CIFAR-10's
(<cache>/decoded/<fingerprint>-{train,test}.npz), the skipped files recorded inside; a zip
whose folder holds a cache.OWN_CACHE folder (a visitor's datasets in the app) is cached in it.

Why the same decoding as uploads, full size then LANCZOS (not PIL's faster JPEG draft mode):
a photo given to the Predict tab then becomes exactly the tensor it would be in training.

A file that cannot be read is skipped and listed (its path and why), never a crash; the
limits are checked on the file list before decoding and on the readable images after. Pixels
too are counted before decoding, from each image's header (pixel bombs: a flat 6000x6000 PNG
is under 1 KB zipped and takes a second to decode): an image over DataLimits.max_image_pixels
is skipped and listed, and a dataset whose images declare more than max_pixels in all is refused.
Nothing is ever written into the user's folder or zip.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np

from ..common import IMAGE_SIZE
from .cache import cache_path, own_cache_dir, read_cache, read_skipped, write_cache
from .dataset import DataSource, DataSourceError
from .own_scan import OwnFile, OwnScan, check_per_class, scan_own
from .pictures import ImageError, declared_size, load_image, to_32x32
from .rules import TEST_FRACTION, TEST_SEED, DataLimits, default_limits

# Bump when the decoded arrays of own images would change for the same files (it is hashed
# into every own fingerprint, so old caches are then simply not found).
OWN_VERSION = 2   # 2: images over the per-image pixel cap are skipped

Arrays = tuple[np.ndarray, np.ndarray]


def is_own_path(path: Path) -> bool:
    """A .zip file: always own images, whatever classes it holds (folders: see sources.py)."""
    return path.suffix.lower() == ".zip"


def own_fingerprint(scan: OwnScan, limits: DataLimits | None = None) -> str:
    """sha256 of the decoding rules and of (path, size, mtime or CRC-32) of every file read or
    skipped: changes with any edit, with the test-split rule (it shapes the cached splits) and
    with the per-image pixel cap (it decides which images are skipped)."""
    image_pixels = (limits or default_limits()).max_image_pixels
    h = hashlib.sha256(f"cifar-demo own v{OWN_VERSION} {scan.layout} zip={scan.is_zip} "
                       f"test={TEST_FRACTION} seed={TEST_SEED} size={IMAGE_SIZE} "
                       f"pixels={image_pixels}\n".encode())
    for f in sorted(scan.every_file(), key=lambda f: f.rel):
        h.update(f"{f.rel}\t{f.size}\t{f.stamp}\n".encode())
    for rel, why in scan.skipped:
        h.update(f"skipped\t{rel}\t{why}\n".encode())
    return h.hexdigest()[:32]


def resolve_own(path: Path, limits: DataLimits | None = None) -> DataSource:
    """The DataSource of a folder or zip of own images; DataSourceError if it breaks a limit."""
    limits = limits or default_limits()
    scan = scan_own(path, limits)
    name = path.stem if scan.is_zip else path.name
    return DataSource("own", path, own_fingerprint(scan, limits), f"{name} (own images)",
                      classes=scan.classes, name=name, layout=scan.layout)


# ---------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------


def _reason(exc: Exception, name: str) -> str:
    """An ImageError's message without its subject ("x.jpg is empty" -> "is empty"), so that it
    reads after the path in the skipped list; other exceptions by type and message."""
    if not isinstance(exc, ImageError):
        return f"could not be decoded ({type(exc).__name__}: {exc})"
    msg = str(exc)
    for subject in (name, "the upload"):
        if msg.startswith(subject + " "):
            return msg[len(subject) + 1:]
    return msg


def _open(archive: zipfile.ZipFile | None, scan: OwnScan, f: OwnFile):
    """A zip member (never more than its declared size: zipfile stops there) or the file, to read."""
    return archive.open(f.member) if archive is not None else open(scan.path / f.rel, "rb")


def check_pixels(scan: OwnScan, files: list[OwnFile], limits: DataLimits
                 ) -> tuple[list[OwnFile], list[tuple[str, str]], int]:
    """Before decoding: each image's size as its header declares it (PIL reads the header only).
    (the files to decode, those skipped and why, their pixels in all). An image over
    limits.max_image_pixels is skipped; one whose header PIL cannot read is left to _decode_files,
    which says why it is unreadable. The caller checks the total against limits.max_pixels."""
    keep, bad, total = [], [], 0
    archive = zipfile.ZipFile(scan.path) if scan.is_zip else None
    try:
        for f in files:
            try:
                with _open(archive, scan, f) as fp:
                    w, h = declared_size(fp)
            except Exception:  # noqa: BLE001  (PIL's plugins raise more than OSError; decoding will say why)
                keep.append(f)
                continue
            if w * h > limits.max_image_pixels:
                bad.append((f.rel, f"is {w}x{h} pixels; the limit per image is {limits.max_image_pixels / 1e6:.1f} "
                                   "megapixels (every picture ends as 32x32: shrink it first)"))
                continue
            keep.append(f)
            total += w * h
    finally:
        if archive is not None:
            archive.close()
    return keep, bad, total


def _decode_files(scan: OwnScan, files: list[OwnFile], max_pixels: int
                  ) -> tuple[np.ndarray, list[int], list[tuple[str, str]]]:
    """(images N,3,32,32 of the readable files, their labels, the unreadable ones and why)."""
    images = np.empty((len(files), 3, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    labels, bad = [], []
    archive = zipfile.ZipFile(scan.path) if scan.is_zip else None
    try:
        # Serial on purpose, as for CIFAR-10 (sources.py): a file at a time, in sorted order.
        for f in files:
            name = f.rel.rsplit("/", 1)[-1]
            try:
                if archive is not None:
                    # Never more than the size the directory declared (checked against the caps);
                    # zipfile stops there too, and checks the CRC at the end.
                    with archive.open(f.member) as member:
                        source = member.read(f.size + 1)
                else:
                    source = scan.path / f.rel
                image = to_32x32(load_image(source, max_pixels=max_pixels))
            # Anything one file can raise (PIL's plugins raise more than OSError, zip members
            # can be encrypted or use an unknown method): that file is skipped, never the dataset.
            except Exception as e:  # noqa: BLE001
                bad.append((f.rel, _reason(e, name)))
                continue
            images[len(labels)] = image.transpose(2, 0, 1)
            labels.append(f.label)
    finally:
        if archive is not None:
            archive.close()
    return images[:len(labels)], labels, bad


def hold_out_test(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices), each sorted: rules.TEST_RULE, class by class."""
    rng = np.random.default_rng(TEST_SEED)
    test = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        test.append(rng.permutation(idx)[:max(1, int(TEST_FRACTION * len(idx)))])
    test = np.sort(np.concatenate(test)) if test else np.zeros(0, np.int64)
    keep = np.ones(len(labels), bool)
    keep[test] = False
    return np.flatnonzero(keep), test


def decode_own(src: DataSource, limits: DataLimits | None = None
               ) -> tuple[dict[str, Arrays], tuple[tuple[str, str], ...]]:
    """Both splits of an own source ({"train": (images, labels), "test": ...}) and every file
    skipped, sorted by path (no cache). The files are scanned again, under `limits`, and must
    be those the source was found with."""
    limits = limits or default_limits()
    scan = scan_own(src.path, limits)
    if own_fingerprint(scan, limits) != src.fingerprint:
        raise DataSourceError(f"{src.path} changed since it was found; load it again.")
    skipped = list(scan.skipped)
    todo, total = {}, 0
    for split, files in scan.files.items():
        todo[split], bad, pixels = check_pixels(scan, files, limits)
        skipped += bad
        total += pixels
    if total > limits.max_pixels:
        where = src.path.name if scan.is_zip else str(src.path)
        note = f" ({limits.note})" if limits.note else ""
        raise DataSourceError(f"The images of {where} add up to {total / 1e6:,.0f} megapixels; the limit is "
                              f"{limits.max_pixels / 1e6:,.0f} megapixels{note}. Give fewer or smaller images "
                              "(every picture ends as 32x32).")
    out = {}
    for split, files in todo.items():
        images, labels, bad = _decode_files(scan, files, limits.max_image_pixels)
        skipped += bad
        out[split] = (images, np.asarray(labels, np.int64))
    if "all" in out:
        images, labels = out.pop("all")
        train, test = hold_out_test(labels)
        out = {"train": (images[train], labels[train]), "test": (images[test], labels[test])}
    return out, tuple(sorted(skipped))


def _check_readable(src: DataSource, splits: dict[str, Arrays], skipped, limits: DataLimits) -> None:
    """The per-class minimum again, on the images that decoded (train + test for a single folder,
    whose limit is on the class folder before the test split)."""
    scan = OwnScan(src.path, src.path.is_file(), src.layout, src.classes, {})
    labels = {s: y.tolist() for s, (_, y) in splits.items()}
    if src.layout != "split":
        labels = {"all": labels["train"] + labels["test"]}
    after = f" that could be read ({len(skipped)} file{'s' if len(skipped) != 1 else ''} skipped)" \
        if skipped else ""
    check_per_class(scan, labels, limits, "images", after)


def load_own(src: DataSource, cache_dir: str | os.PathLike | None = None,
             limits: DataLimits | None = None) -> tuple[dict[str, Arrays], tuple[tuple[str, str], ...]]:
    """Both splits and the skipped files of an own source, from the cache when it holds them
    (beside the zip when its folder holds cache.OWN_CACHE: own_cache_dir)."""
    cache_dir = own_cache_dir(src.path, cache_dir)
    paths = {s: cache_path(src.fingerprint, s, cache_dir) for s in ("train", "test")}
    cached = {s: read_cache(p) for s, p in paths.items()}
    skipped = read_skipped(paths["train"])
    limits = limits or default_limits()
    if all(v is not None for v in cached.values()) and skipped is not None:
        splits = cached
    else:
        splits, skipped = decode_own(src, limits)
        for s, (images, labels) in splits.items():
            write_cache(paths[s], images, labels, skipped)
    _check_readable(src, splits, skipped, limits)
    return splits, skipped
