"""CIFAR-10 data: find a source, decode it once into a cache, hold out a validation split,
and serve batches.

Where the data comes from, in this order:

1. an explicit folder: `source=` here, `--data DIR` on the CLI, or the environment variable
   CIFAR_DEMO_DATA. It must hold one of the two layouts below, or loading stops with an
   error that says what is wrong.
2. the official CIFAR-10 python files in a default location;
3. an ImageFolder export in a default location;
4. torchvision's download of the official files into <cache>/download.

The two layouts a folder DIR may hold:

- official (torchvision's): DIR/cifar-10-batches-py/{data_batch_1..5, test_batch,
  batches.meta}; DIR may also be cifar-10-batches-py itself. The files are unpickled (by
  torchvision) only after their md5 matches torchvision's published checksums.
- ImageFolder export: DIR/train/<class>/*.png|jpg|... and DIR/test/<class>/*, with exactly
  the ten class folders of common.CLASSES, 32x32 images only (hidden files are ignored).

Default locations, searched in this order (for 2, then again for 3): ./data (relative to
the working directory), <cache>/data, <cache>/download. <cache> is the `cache_dir`
argument, else $CIFAR_DEMO_CACHE, else ~/.cache/cifar-demo.

Decoded images are cached as uint8 .npz files (no pickle) in <cache>/decoded, keyed by a
fingerprint of the source files (relative paths, sizes, mtimes), so only the first load
decodes. The source folder is only ever read.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import os
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torchvision.datasets
from PIL import Image
from torch import Tensor
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.datasets.utils import check_integrity

from cifar_demo import augment as aug
from cifar_demo.common import CIFAR_MEAN, CIFAR_STD, CLASSES, IMAGE_SIZE, normalize, pick_device

OFFICIAL_DIR = "cifar-10-batches-py"
SPLITS = ("train", "test")
# Bump when the decoded arrays would change for the same source files (it is in the cache key).
CACHE_VERSION = 1
# 5 test images per class, picked from the JPEG export (see sample_paths()).
SAMPLE_DIR = Path(__file__).resolve().parent / "assets" / "sample"


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
    val: Split        # held out of the official training set (see stratified_split)
    test: Split       # for reporting only; never for model selection
    classes: tuple[str, ...]
    source: DataSource


# ---------------------------------------------------------------------------------------
# Where to look
# ---------------------------------------------------------------------------------------


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: `cache_dir`, else $CIFAR_DEMO_CACHE, else ~/.cache/cifar-demo."""
    return Path(cache_dir or os.environ.get("CIFAR_DEMO_CACHE") or "~/.cache/cifar-demo").expanduser()


def default_locations(cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched when no explicit source is given, in order."""
    cache = cache_root(cache_dir)
    return [Path("data").absolute(), cache / "data", cache / "download"]


def _layouts_help() -> str:
    return (
        f"  - the official CIFAR-10 python files (torchvision's layout): DIR/{OFFICIAL_DIR}/"
        f"data_batch_1..5, test_batch, batches.meta (DIR may also be {OFFICIAL_DIR} itself)\n"
        f"  - an ImageFolder export: DIR/train/<class>/<image> and DIR/test/<class>/<image>, "
        f"32x32 images, class folders exactly {', '.join(CLASSES)}"
    )


def _no_source_message(cache_dir, download_failure: str) -> str:
    locations = ", ".join(str(p) for p in default_locations(cache_dir))
    return (
        f"No CIFAR-10 data found, and no download: {download_failure}\n"
        "Give the data in one of these ways:\n"
        "  1. --data DIR on the command line (source=DIR in Python)\n"
        "  2. the CIFAR_DEMO_DATA environment variable: CIFAR_DEMO_DATA=DIR\n"
        f"  3. put it in a default location, searched in this order: {locations}\n"
        "  4. with internet access, let torchvision download the official files (about 170 MB)\n"
        "DIR (or a default location) may hold either:\n" + _layouts_help()
    )


# ---------------------------------------------------------------------------------------
# Resolving a source
# ---------------------------------------------------------------------------------------


def resolve_source(source: str | os.PathLike | DataSource | None = None,
                   cache_dir: str | os.PathLike | None = None, download: bool = True) -> DataSource:
    """Find the data: explicit `source`, $CIFAR_DEMO_DATA, official files, ImageFolder, download."""
    if isinstance(source, DataSource):
        return source
    if source is not None:
        return _explicit_source(Path(source).expanduser().absolute(), "the source argument (--data)")
    if os.environ.get("CIFAR_DEMO_DATA"):
        return _explicit_source(Path(os.environ["CIFAR_DEMO_DATA"]).expanduser().absolute(),
                                "the CIFAR_DEMO_DATA environment variable")
    locations = default_locations(cache_dir)
    for loc in locations:
        if (loc / OFFICIAL_DIR).is_dir():
            return _official_source(loc, "official")
    for loc in locations:
        # Either split is enough to claim the folder: a half export is an error, not a miss.
        if (loc / "train").is_dir() or (loc / "test").is_dir():
            return _imagefolder_source(loc)
    download_root = cache_root(cache_dir) / "download"
    if not download:
        raise DataSourceError(_no_source_message(cache_dir, "downloading is switched off (download=False)."))
    try:
        # torchvision's own download, md5 check and extraction (lands in download_root/cifar-10-batches-py).
        torchvision.datasets.CIFAR10(root=download_root, train=True, download=True)
    except Exception as e:  # no network, HTTP error, bad archive...: all end in the same advice
        raise DataSourceError(_no_source_message(
            cache_dir, f"torchvision.datasets.CIFAR10(root='{download_root}', download=True) failed "
                       f"with {type(e).__name__}: {e}")) from e
    return _official_source(download_root, "download")


def _explicit_source(path: Path, origin: str) -> DataSource:
    if not path.is_dir():
        raise DataSourceError(f"CIFAR-10 folder {path} (from {origin}) does not exist or is not a folder.")
    if path.name == OFFICIAL_DIR:
        return _official_source(path.parent, "official")
    if (path / OFFICIAL_DIR).is_dir():
        return _official_source(path, "official")
    if (path / "train").is_dir() or (path / "test").is_dir():
        return _imagefolder_source(path)
    hint = ""
    if (path / "data_batch_1").exists():
        hint = f" It holds data_batch_1: torchvision needs the official files in a folder named {OFFICIAL_DIR}."
    raise DataSourceError(
        f"{path} (from {origin}) holds neither CIFAR-10 layout.{hint} Expected either:\n" + _layouts_help())


def _official_files() -> list[tuple[str, str]]:
    """(file name, md5) of the official python files, from torchvision (so they stay in sync)."""
    cls = torchvision.datasets.CIFAR10
    return [tuple(x) for x in cls.train_list + cls.test_list] + [(cls.meta["filename"], cls.meta["md5"])]


def _official_source(root: Path, kind: str) -> DataSource:
    folder = root / OFFICIAL_DIR
    missing = [name for name, _ in _official_files() if not (folder / name).is_file()]
    if missing:
        raise DataSourceError(f"{folder} is missing {', '.join(missing)}; the official layout is:\n"
                              + _layouts_help())
    stats = [(name, (folder / name).stat()) for name, _ in _official_files()]
    fp = _fingerprint("official", [(n, s.st_size, s.st_mtime_ns) for n, s in stats])
    return DataSource(kind, root, fp, "CIFAR-10 (official)")


def _imagefolder_source(root: Path, files: dict | None = None) -> DataSource:
    files = files if files is not None else _scan_imagefolder(root)
    every = [f for split in SPLITS for f in files[split]]
    fp = _fingerprint("imagefolder", [(rel, size, mtime) for rel, _, size, mtime in every])
    jpeg = all(rel.lower().endswith((".jpg", ".jpeg")) for rel, *_ in every)
    return DataSource("imagefolder", root, fp,
                      "CIFAR-10 (JPEG export)" if jpeg else "CIFAR-10 (ImageFolder export)")


def _fingerprint(layout: str, entries: list[tuple[str, int, int]]) -> str:
    """sha256 of (relative path, size, mtime) of every file: cheap, and changes with any edit."""
    h = hashlib.sha256(f"cifar-demo v{CACHE_VERSION} {layout}\n".encode())
    for rel, size, mtime in sorted(entries):
        h.update(f"{rel}\t{size}\t{mtime}\n".encode())
    return h.hexdigest()[:32]


def _scan_imagefolder(root: Path) -> dict[str, list[tuple[str, int, int, int]]]:
    """split -> [(relative path, label, size, mtime_ns)], by class then file name; checks the shape."""
    out = {}
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            raise DataSourceError(f"Missing split: {split_dir} does not exist. An ImageFolder export "
                                  "needs both train/ and test/:\n" + _layouts_help())
        # Loose files beside the class folders (a README, labels.csv) are not images of a class.
        found = {e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith(".")}
        missing = [c for c in CLASSES if c not in found]
        extra = sorted(found - set(CLASSES))
        if missing or extra:
            raise DataSourceError(
                f"Wrong class folders in {split_dir}: missing {', '.join(missing) or 'none'}; "
                f"unexpected {', '.join(extra) or 'none'}. Expected exactly: {', '.join(CLASSES)}.")
        files = []
        for label, cls in enumerate(CLASSES):
            entries = sorted((e for e in os.scandir(split_dir / cls) if not e.name.startswith(".")),
                             key=lambda e: e.name)
            if not entries:
                raise DataSourceError(f"{split_dir / cls} holds no images.")
            for e in entries:
                if not e.is_file() or not e.name.lower().endswith(IMG_EXTENSIONS):
                    raise DataSourceError(f"Not an image: {e.path} (only image files, "
                                          f"{' '.join(IMG_EXTENSIONS)}, may sit in {split_dir / cls}).")
                st = e.stat()
                files.append((f"{split}/{cls}/{e.name}", label, st.st_size, st.st_mtime_ns))
        out[split] = files
    return out


# ---------------------------------------------------------------------------------------
# Decoding, with a cache
# ---------------------------------------------------------------------------------------


def read_image(path: str | os.PathLike) -> np.ndarray:
    """One 32x32 image file -> uint8 array 3,32,32 (RGB); DataSourceError names a bad file."""
    try:
        with Image.open(path) as im:
            if im.size != (IMAGE_SIZE, IMAGE_SIZE):
                raise DataSourceError(f"Wrong image size: {path} is {im.size[0]}x{im.size[1]}, "
                                      f"CIFAR-10 images are {IMAGE_SIZE}x{IMAGE_SIZE}.")
            rgb = im if im.mode == "RGB" else im.convert("RGB")  # grey, palette, RGBA: to RGB
            return np.asarray(rgb).transpose(2, 0, 1)
    except OSError as e:  # PIL's UnidentifiedImageError and truncated files are OSErrors
        raise DataSourceError(f"Not a readable image: {path} ({e}).") from e


def _decode_imagefolder(src: DataSource, split: str) -> tuple[np.ndarray, np.ndarray]:
    scan = _scan_imagefolder(src.path)
    if _imagefolder_source(src.path, scan).fingerprint != src.fingerprint:
        raise DataSourceError(f"{src.path} changed since it was found; load it again.")
    files = scan[split]
    images = np.empty((len(files), 3, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    # Serial on purpose: PIL holds the GIL for most of a 32x32 decode, so threads gained
    # ~10% on 2 cores, and a serial loop reports the first bad file in sorted order.
    root = str(src.path)
    for i, (rel, *_) in enumerate(files):
        images[i] = read_image(os.path.join(root, rel))
    return images, np.array([label for _, label, *_ in files], np.int64)


def _check_official(root: Path) -> None:
    """torchvision's md5 check, file by file, so that the error names the bad files."""
    folder = root / OFFICIAL_DIR
    bad = [name for name, md5 in _official_files() if not check_integrity(str(folder / name), md5)]
    if bad:
        raise DataSourceError(
            f"Corrupted or unofficial CIFAR-10 files in {folder}: {', '.join(bad)} fail torchvision's "
            "md5 check. Delete the folder (torchvision then downloads it again) or give another --data DIR.")


def _decode_official(src: DataSource, split: str) -> tuple[np.ndarray, np.ndarray]:
    _check_official(src.path)
    ds = torchvision.datasets.CIFAR10(root=src.path, train=split == "train", download=False)
    if tuple(ds.classes) != CLASSES:
        raise DataSourceError(f"{src.path / OFFICIAL_DIR}/batches.meta names classes {ds.classes}, "
                              f"expected {list(CLASSES)}.")
    images = np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2))  # torchvision holds NHWC
    return images, np.asarray(ds.targets, np.int64)


def _cache_path(src: DataSource, split: str, cache_dir) -> Path:
    return cache_root(cache_dir) / "decoded" / f"{src.fingerprint}-{split}.npz"


def _read_cache(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
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


def _write_cache(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Temp file, then rename: a killed process never leaves a half-written cache behind."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, images=images, labels=labels)  # uncompressed: loads in a fraction of a second
        os.replace(tmp, path)
    except OSError as e:  # a read-only cache costs speed, not correctness
        warnings.warn(f"could not write the CIFAR-10 cache {path}: {e}")
        if tmp and os.path.exists(tmp):
            os.remove(tmp)


def load_arrays(split: str, source: str | os.PathLike | DataSource | None = None,
                cache_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One whole official split ("train": 50,000 or "test": 10,000) as numpy arrays:
    uint8 images N,3,32,32 and int64 labels N. Decodes only on a cache miss."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    src = resolve_source(source, cache_dir)
    path = _cache_path(src, split, cache_dir)
    cached = _read_cache(path)
    if cached is not None:
        return cached
    decode = _decode_imagefolder if src.kind == "imagefolder" else _decode_official
    images, labels = decode(src, split)
    _write_cache(path, images, labels)
    return images, labels


def load_split(split: str, source: str | os.PathLike | DataSource | None = None,
               cache_dir: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> Split:
    """One whole official split as a Split, e.g. load_split("test", resolve_source(...)) to evaluate."""
    images, labels = load_arrays(split, source, cache_dir)
    return Split(torch.from_numpy(images), torch.from_numpy(labels)).to(pick_device(device))


# ---------------------------------------------------------------------------------------
# Validation split and the whole data set
# ---------------------------------------------------------------------------------------


def stratified_split(labels: np.ndarray, val_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, val indices), each sorted: `val_size` indices drawn per class in
    proportion to its size (500 per class for 5,000 of CIFAR-10's 50,000).

    Drawn with numpy on the CPU, so the same seed gives the same split on any device.
    """
    labels = np.asarray(labels)
    if not 0 <= val_size < len(labels):
        raise ValueError(f"val_size must be in [0, {len(labels)}), not {val_size}")
    classes, counts = np.unique(labels, return_counts=True)
    quota = val_size * counts / len(labels)
    take = np.floor(quota).astype(np.int64)
    # Round so the total is exactly val_size: the largest remainders get one more.
    take[np.argsort(take - quota, kind="stable")[: val_size - take.sum()]] += 1
    rng = np.random.default_rng(seed)
    val = np.sort(np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]))
    keep = np.ones(len(labels), bool)
    keep[val] = False
    return np.flatnonzero(keep), val


def split_digest(split: Split) -> str:
    """sha256 of a split's decoded pixels and labels: the same for every copy of the same
    images, wherever they sit and whatever their file times (unlike DataSource.fingerprint,
    the cache key). Model cards record it for their test split so CI can tell "same test
    images" from "another copy of them"."""
    h = hashlib.sha256(b"cifar-demo split uint8 NCHW + int64 labels\n")
    h.update(np.ascontiguousarray(split.images.cpu().numpy()).tobytes())
    h.update(np.ascontiguousarray(split.labels.cpu().numpy().astype(np.int64)).tobytes())
    return h.hexdigest()[:32]


def subset(split: Split, indices) -> Split:
    """The images of `split` at `indices` (any sequence of ints), in that order."""
    idx = torch.as_tensor(np.asarray(indices, np.int64), device=split.images.device)
    return Split(split.images[idx], split.labels[idx])


def stratified_subset(split: Split, n: int, seed: int = 0) -> Split:
    """`n` images of `split`, classes in proportion (for quick runs); all of it if n >= len."""
    if n >= len(split):
        return split
    _, keep = stratified_split(split.labels.cpu().numpy(), n, seed)
    return subset(split, keep)


def load_cifar10(source: str | os.PathLike | DataSource | None = None, val_size: int = 5000,
                 seed: int = 0, cache_dir: str | os.PathLike | None = None,
                 device: str | torch.device = "cpu") -> CifarData:
    """CIFAR-10 as uint8 tensors on `device`: train (50,000 - val_size), val, test (10,000).

    The val split depends only on (seed, val_size), never on the device; val_size=0 gives
    an empty val split.
    """
    src = resolve_source(source, cache_dir)
    train_x, train_y = load_arrays("train", src, cache_dir)
    test_x, test_y = load_arrays("test", src, cache_dir)
    tr, va = stratified_split(train_y, val_size, seed)
    dev = pick_device(device)

    def split(x: np.ndarray, y: np.ndarray) -> Split:
        return Split(torch.from_numpy(x), torch.from_numpy(y)).to(dev)

    return CifarData(split(train_x[tr], train_y[tr]), split(train_x[va], train_y[va]),
                     split(test_x, test_y), CLASSES, src)


# ---------------------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------------------


def _mix_seed(*parts: int) -> int:
    """One well-mixed 63-bit seed from integers: (seed, epoch) and (seed + 1, epoch - 1) differ."""
    entropy = [p & 0xFFFF_FFFF_FFFF_FFFF for p in parts]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> np.uint64(1))


class TensorLoader:
    """Batches from a split held whole on the device, augmented a whole batch at a time.

    Yields (normalised float NCHW images, int64 labels). Each epoch's order and augmentation
    depend only on (seed, epoch, rank) - never on what ran before - so a resumed run sees
    exactly the batches it would have seen: `set_epoch(e)`, or `iter_from(e, batch)` in the
    middle of an epoch. Iterating uses `self.epoch` and moves to the next epoch once the
    pass is complete. The random numbers are drawn on the CPU, so they do not depend on
    the device either.

    augment: a name in augment.DEVICE_PRESETS; crop_pad/flip/cutout override its settings.
    flip may be True (each image at random, every epoch) or "alternate" (airbench: a random
    side per image in even epochs, the other side in odd epochs).
    device: None keeps the split where it is. With world_size > 1 each rank gets a disjoint
    shard of every epoch's permutation, all of the same size (up to world_size - 1 images
    of an epoch are left out, different ones each epoch).
    """

    def __init__(self, split: Split, batch_size: int, shuffle: bool = True, drop_last: bool = False,
                 augment: str = "none", crop_pad: int | None = None, flip: bool | str | None = None,
                 cutout: int | None = None, mean=CIFAR_MEAN, std=CIFAR_STD,
                 device: str | torch.device | None = None, seed: int = 0, channels_last: bool = False,
                 dtype: torch.dtype = torch.float32, rank: int = 0, world_size: int = 1):
        if augment not in aug.DEVICE_PRESETS:
            raise ValueError(f"augment={augment!r} is not a device preset ({', '.join(aug.DEVICE_PRESETS)}); "
                             "per-image presets run through albumentations_loader()")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        settings = dict(aug.DEVICE_PRESETS[augment])
        for key, value in (("crop_pad", crop_pad), ("flip", flip), ("cutout", cutout)):
            if value is not None:
                settings[key] = value
        self.crop_pad, self.flip, self.cutout = settings["crop_pad"], settings["flip"], settings["cutout"]
        self.device = torch.device(device) if device is not None else split.images.device
        self.images = split.images.to(self.device).contiguous()
        self.labels = split.labels.to(self.device)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.mean, self.std, self.dtype, self.channels_last = mean, std, dtype, channels_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        # flip="alternate": one random bit per image for the whole run (same on every rank).
        self._flip_bits = None
        if self.flip == "alternate":
            gen = torch.Generator().manual_seed(_mix_seed(self.seed, 0xF11B))
            self._flip_bits = (torch.rand(len(self.labels), generator=gen) < 0.5).to(self.device)

    @property
    def shard_size(self) -> int:
        """Images this rank sees per epoch."""
        return len(self.labels) // self.world_size

    def __len__(self) -> int:
        n, b = self.shard_size, self.batch_size
        return n // b if self.drop_last else math.ceil(n / b)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self, epoch: int) -> Tensor:
        """This rank's order of sample indices for `epoch` (CPU int64)."""
        n = len(self.labels)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(_mix_seed(self.seed, epoch)))
        else:
            order = torch.arange(n)
        per = self.shard_size
        return order[self.rank * per:(self.rank + 1) * per]

    def iter_from(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of `epoch` from batch index `start_batch` on (to resume mid-epoch)."""
        order = self.indices(epoch).to(self.device)
        augmenting = self.crop_pad > 0 or self.flip or self.cutout > 0
        for b in range(start_batch, len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            x, y = self.images[idx], self.labels[idx]
            # A generator per batch: resuming at batch b needs no replay of batches 0..b-1.
            gen = torch.Generator().manual_seed(_mix_seed(self.seed, epoch, self.rank, b)) if augmenting else None
            # Crop and flip on uint8 (a quarter of the bytes of float32)...
            x = aug.batch_crop(x, self.crop_pad, gen)
            if self._flip_bits is not None:
                x = aug.flip_where(x, self._flip_bits[idx] ^ bool(epoch % 2))
            elif self.flip:
                x = aug.batch_flip(x, gen)
            x = normalize(x, self.mean, self.std).to(self.dtype)
            # ...cutout after normalising, so the hole is 0 = the mean colour (DeVries & Taylor).
            x = aug.batch_cutout(x, self.cutout, gen)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        yield from self.iter_from(self.epoch)
        self.epoch += 1


class _PerImageDataset(torch.utils.data.Dataset):
    """Images of a split through an albumentations or torchvision pipeline, one at a time.

    Each image is augmented with a seed made of (loader seed, epoch, index), so the result
    does not depend on num_workers nor on which worker draws it.
    """

    def __init__(self, split: Split, preset: str):
        self.images, self.labels = split.images.cpu(), split.labels.cpu()
        self.albu = aug.build_albumentations(preset)
        self.tv = None if self.albu is not None else aug.build_torchvision(preset)
        if self.albu is None and self.tv is None:
            raise ValueError(f"{preset!r} is not a per-image preset (albumentations or torchvision); "
                             "device presets run through TensorLoader")
        self.epoch_seed = 0  # set by the loader before each epoch, copied into the workers

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        seed = _mix_seed(self.epoch_seed, i)
        img = self.images[i]  # uint8 3,32,32
        if self.albu is not None:
            aug.reseed_albumentations(self.albu, seed % 2**32)
            out = self.albu(image=img.permute(1, 2, 0).numpy())["image"]  # HWC uint8 in and out
            x = torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1)
        else:
            with torch.random.fork_rng(devices=[]):  # torchvision draws from torch's global RNG
                torch.manual_seed(seed)
                x = self.tv(img)
        return x, self.labels[i]


def _collate(batch, mean, std) -> tuple[Tensor, Tensor]:
    images, labels = zip(*batch)
    return normalize(torch.stack(images), mean, std).contiguous(), torch.stack(labels)


class _ResumableSampler(torch.utils.data.DistributedSampler):
    """DistributedSampler that skips the first `skip` indices of its next epoch (to resume)."""

    skip = 0

    def __iter__(self):
        # One-shot: the DataLoader may start iterating the sampler lazily, after iter_from returned.
        skip, self.skip = self.skip, 0
        return itertools.islice(super().__iter__(), skip, None)


class PerImageLoader(torch.utils.data.DataLoader):
    """DataLoader for per-image presets (augment.build_albumentations / build_torchvision),
    yielding (normalised float32 NCHW images, int64 labels), moved to `device` if given.

    Same contract as TensorLoader: order and augmentation depend only on (seed, epoch),
    `set_epoch`, `iter_from(epoch, start_batch)`, iterating moves to the next epoch, and
    rank/world_size give disjoint shards of equal size. Workers are not persistent: each
    epoch's seed travels with the dataset into that epoch's workers.
    """

    def __init__(self, split: Split, preset: str, batch_size: int, num_workers: int = 2,
                 shuffle: bool = True, seed: int = 0, mean=CIFAR_MEAN, std=CIFAR_STD,
                 drop_last: bool = False, rank: int = 0, world_size: int = 1,
                 device: str | torch.device | None = None, pin_memory: bool | None = None):
        dataset = _PerImageDataset(split, preset)
        # DistributedSampler also serves world_size=1: a permutation seeded by seed + epoch.
        # Shards are disjoint (drop_last) as in TensorLoader, rather than padded with repeats.
        sampler = _ResumableSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle,
                                    seed=seed, drop_last=world_size > 1)
        self.target = torch.device(device) if device is not None else None
        if pin_memory is None:
            pin_memory = self.target is not None and self.target.type == "cuda"
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                         drop_last=drop_last, pin_memory=pin_memory,
                         collate_fn=functools.partial(_collate, mean=mean, std=std))
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def iter_from(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of `epoch` from batch index `start_batch` on (to resume mid-epoch)."""
        self.sampler.set_epoch(epoch)
        self.sampler.skip = start_batch * self.batch_size
        self.dataset.epoch_seed = _mix_seed(self.seed, epoch)
        for x, y in super().__iter__():  # workers start here, with this epoch's seed
            if self.target is not None:
                x = x.to(self.target, non_blocking=True)
                y = y.to(self.target, non_blocking=True)
            yield x, y

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        yield from self.iter_from(self.epoch)
        self.epoch += 1


def albumentations_loader(split: Split, preset: str, batch_size: int, num_workers: int = 2,
                          shuffle: bool = True, seed: int = 0, mean=CIFAR_MEAN, std=CIFAR_STD,
                          **kwargs) -> PerImageLoader:
    """The DataLoader of a per-image preset ("seed004", "autoaugment"); see PerImageLoader."""
    return PerImageLoader(split, preset, batch_size, num_workers, shuffle, seed, mean, std, **kwargs)


# ---------------------------------------------------------------------------------------
# Bundled sample
# ---------------------------------------------------------------------------------------


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
