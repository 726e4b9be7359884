"""Where the data comes from: find a source, check its shape, fingerprint it, decode it.

Where the data comes from, in this order:

1. an explicit folder or .zip: `source=` here, `--data DIR` on the CLI, or the environment
   variable CIFAR_DEMO_DATA. It must hold one of the layouts below, or loading stops with an
   error that says what is wrong.
2. the official CIFAR-10 python files in a default location;
3. an ImageFolder export in a default location;
4. torchvision's download of the official files into <cache>/download.

The CIFAR-10 layouts a folder DIR may hold:

- official (torchvision's): DIR/cifar-10-batches-py/{data_batch_1..5, test_batch,
  batches.meta}; DIR may also be cifar-10-batches-py itself. The files are unpickled (by
  torchvision) only after their md5 matches torchvision's published checksums.
- ImageFolder export: DIR/train/<class>/*.png|jpg|... and DIR/test/<class>/*, with exactly
  the ten class folders of common.CLASSES, 32x32 images only (hidden files are ignored).

Any other explicit folder with class folders, and any .zip, is a dataset of your own images
(own.py, own_scan.py): any class names, any image sizes, DIR/train/<class> + DIR/test/<class>
or DIR/<class>. Which is which, stated once: a folder is the CIFAR-10 export when its train/
or its test/ holds exactly CIFAR-10's ten class folders, and then all of the export's rules
hold, 32x32 included: a wrong size there is a broken export (figures measured on it are named
"CIFAR-10 (...)"), so it is an error, not resized. Your own photos of these ten classes are read
as own images (resized) from DIR/<class>/* or from a .zip; the error message says so.
Default locations only ever hold CIFAR-10.

Default locations, searched in this order (for 2, then again for 3): ./data (relative to
the working directory), <cache>/data, <cache>/download. <cache> is cache.cache_root().
The source folder is only ever read.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..common import CLASSES, IMAGE_SIZE
from .cache import CACHE_VERSION, cache_root
from .dataset import DataSource, DataSourceError
from .own import decode_own, is_own_path, resolve_own
from .own_scan import IMG_EXTENSIONS
from .rules import DataLimits

OFFICIAL_DIR = "cifar-10-batches-py"
SPLITS = ("train", "test")


# ---------------------------------------------------------------------------------------
# Where to look
# ---------------------------------------------------------------------------------------


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
    """For people (the app shows it as it is): what happened, then what to do; no Python."""
    locations = ", ".join(str(p) for p in default_locations(cache_dir))
    return (
        f"No CIFAR-10 data found.{' ' + download_failure if download_failure else ''}\n"
        "Give the data in one of these ways, then start again:\n"
        "  1. name its folder when you start: python app.py --data DIR (or python -m cifar_demo train --data DIR)\n"
        "  2. set the environment variable CIFAR_DEMO_DATA=DIR before starting\n"
        f"  3. put it in a default location, searched in this order: {locations}\n"
        "  4. with internet access, download the official files (about 170 MB): the app's Download button\n"
        "DIR (or a default location) may hold either:\n" + _layouts_help()
    )


# ---------------------------------------------------------------------------------------
# Resolving a source
# ---------------------------------------------------------------------------------------


def resolve_source(source: str | os.PathLike | DataSource | None = None,
                   cache_dir: str | os.PathLike | None = None, download: bool = True,
                   limits: DataLimits | None = None) -> DataSource:
    """Find the data: explicit `source`, $CIFAR_DEMO_DATA, official files, ImageFolder, download.
    `limits` (own images only; None: rules.default_limits()) bound what an own dataset may hold."""
    if isinstance(source, DataSource):
        return source
    if source is not None:
        return _explicit_source(Path(source).expanduser().absolute(), "the source argument (--data)", limits)
    if os.environ.get("CIFAR_DEMO_DATA"):
        return _explicit_source(Path(os.environ["CIFAR_DEMO_DATA"]).expanduser().absolute(),
                                "CIFAR_DEMO_DATA (or app.py --data)", limits)
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
        raise DataSourceError(_no_source_message(cache_dir, ""))
    import torchvision.datasets  # here, not at the top: importing torchvision costs ~2 s a process

    try:
        # torchvision's own download, md5 check and extraction (lands in download_root/cifar-10-batches-py).
        torchvision.datasets.CIFAR10(root=download_root, train=True, download=True)
    except Exception as e:  # no network, HTTP error, bad archive...: all end in the same advice
        cause = getattr(e, "reason", None) or e   # URLError: its reason, not its repr
        raise DataSourceError(_no_source_message(
            cache_dir, f"The official files could not download into {download_root}: is this machine "
                       f"connected to the internet? ({cause})")) from e
    return _official_source(download_root, "download")


def _own_layouts_help() -> str:
    return ("  - your own images, any classes and sizes, as a folder or a .zip: DIR/<class>/<image> "
            "(a test split is held out), or DIR/train/<class>/<image> and DIR/test/<class>/<image>")


def _class_folders(folder: Path) -> set[str]:
    return {e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")}


def layout_of(path: str | os.PathLike) -> str | None:
    """Which layout an explicit --data path holds, from its folder names alone (no image is read,
    no export scanned): "official", "imagefolder" (the CIFAR-10 export), "own" (your own images)
    or None (none of them, or no such folder)."""
    path = Path(path)
    if path.is_file() and is_own_path(path):
        return "own"
    if not path.is_dir():
        return None
    if path.name == OFFICIAL_DIR or (path / OFFICIAL_DIR).is_dir():
        return "official"
    splits = [path / s for s in SPLITS if (path / s).is_dir()]
    if any(_class_folders(s) == set(CLASSES) for s in splits):
        return "imagefolder"  # the CIFAR-10 export, with all its rules (module docstring)
    return "own" if _class_folders(path) else None


def _explicit_source(path: Path, origin: str, limits: DataLimits | None = None) -> DataSource:
    layout = layout_of(path)
    if layout == "own":
        return resolve_own(path, limits)
    if layout == "official":
        return _official_source(path.parent if path.name == OFFICIAL_DIR else path, "official")
    if layout == "imagefolder":
        return _imagefolder_source(path)
    if not path.is_dir():
        what = "is not a folder or a .zip file" if path.exists() else "does not exist"
        raise DataSourceError(f"Data folder {path} (from {origin}) {what}: give a CIFAR-10 folder, or a "
                              "folder or .zip of your own images.")
    hint = ""
    if (path / "data_batch_1").exists():
        hint = f" It holds data_batch_1: torchvision needs the official files in a folder named {OFFICIAL_DIR}."
    raise DataSourceError(
        f"{path} (from {origin}) holds neither CIFAR-10 layout nor class folders of your own images.{hint} "
        "Expected one of:\n" + _layouts_help() + "\n" + _own_layouts_help())


def _official_files() -> list[tuple[str, str]]:
    """(file name, md5) of the official python files, from torchvision (so they stay in sync)."""
    import torchvision.datasets  # lazy: only a CIFAR-10 download needs torchvision.datasets

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
# Decoding
# ---------------------------------------------------------------------------------------


def read_image(path: str | os.PathLike) -> np.ndarray:
    """One 32x32 image file -> uint8 array 3,32,32 (RGB); DataSourceError names a bad file."""
    try:
        with Image.open(path) as im:
            if im.size != (IMAGE_SIZE, IMAGE_SIZE):
                raise DataSourceError(
                    f"Wrong image size: {path} is {im.size[0]}x{im.size[1]}, CIFAR-10 images are "
                    f"{IMAGE_SIZE}x{IMAGE_SIZE}. (A folder whose train/ or test/ holds exactly CIFAR-10's "
                    "ten class folders is read as the CIFAR-10 export. To train on your own pictures "
                    "of these classes, resized to 32x32, give them as DIR/<class>/<image> or as a .zip.)")
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
    from torchvision.datasets.utils import check_integrity  # lazy: only a CIFAR-10 download needs torchvision.datasets

    folder = root / OFFICIAL_DIR
    bad = [name for name, md5 in _official_files() if not check_integrity(str(folder / name), md5)]
    if bad:
        raise DataSourceError(
            f"Corrupted or unofficial CIFAR-10 files in {folder}: {', '.join(bad)} fail torchvision's "
            "md5 check. Delete the folder (torchvision then downloads it again) or give another --data DIR.")


def _decode_official(src: DataSource, split: str) -> tuple[np.ndarray, np.ndarray]:
    import torchvision.datasets  # lazy: only a CIFAR-10 download needs torchvision.datasets

    _check_official(src.path)
    ds = torchvision.datasets.CIFAR10(root=src.path, train=split == "train", download=False)
    if tuple(ds.classes) != CLASSES:
        raise DataSourceError(f"{src.path / OFFICIAL_DIR}/batches.meta names classes {ds.classes}, "
                              f"expected {list(CLASSES)}.")
    images = np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2))  # torchvision holds NHWC
    return images, np.asarray(ds.targets, np.int64)


def decode(src: DataSource, split: str) -> tuple[np.ndarray, np.ndarray]:
    """One whole split of `src` as uint8 images N,3,32,32 and int64 labels N (no cache;
    own images: load.py caches both splits of one decode, with the skipped files)."""
    if src.kind == "own":
        return decode_own(src)[0][split]
    if src.kind == "imagefolder":
        return _decode_imagefolder(src, split)
    return _decode_official(src, split)
