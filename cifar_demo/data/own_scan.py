"""Scanning a dataset of your own images, a folder or a .zip, without reading any image:
which files there are, which layout they form, which classes, and whether the limits hold.

Layouts (the same inside a zip, which may also wrap them in one top folder, as "compress
this folder" does):

- "split": DIR/train/<class>/** and DIR/test/<class>/**, the same class folders in both.
  Any other folder beside train/ and test/ (a val/ of a Kaggle download) is not read, and
  listed as skipped.
- "single": DIR/<class>/**; load.py then holds a test split out (rules.TEST_RULE).

A DIR holding a train/ or test/ folder is "split" (so a class cannot be named train or test
in a single folder). Images in sub-folders of a class folder belong to that class, as in
torchvision's ImageFolder. Hidden files and folders (".*"), __MACOSX/, Thumbs.db and
desktop.ini are ignored silently; files that are not images (notes.txt, a video), images
over pictures.MAX_BYTES and images outside a class folder are skipped and listed.

Zips are read in place (zipfile, never extracted): the sizes their directory declares are
checked against the caps before a byte is decompressed, and zipfile never decompresses a
member beyond its declared size, so a zip bomb stops at the cap.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .dataset import DataSourceError
from .pictures import MAX_BYTES
from .rules import DataLimits

# The image files of an ImageFolder: torchvision.datasets.folder.IMG_EXTENSIONS, written out so
# that reading a dataset does not import torchvision (~2 s for every training process and CLI
# call); tests/test_data_own.py checks that the two lists agree.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# What PIL reads that uploads accept too (pictures.load_image): torchvision's list and GIF.
IMAGE_EXTENSIONS = IMG_EXTENSIONS + (".gif",)
IGNORED_NAMES = {"__MACOSX", "Thumbs.db", "desktop.ini"}
SPLIT_DIRS = ("train", "test")


def ignored(name: str) -> bool:
    return name.startswith(".") or name in IGNORED_NAMES


@dataclass(frozen=True)
class OwnFile:
    rel: str        # path inside the dataset, "/"-separated: "train/leaf/a.jpg" or "leaf/a.jpg"
    label: int
    size: int       # bytes (a zip: the size its directory declares)
    stamp: int      # a folder: mtime_ns; a zip: the member's CRC-32 (content, not time)
    member: str     # a zip: the member name to read (wrapping folder included); a folder: ""


@dataclass
class OwnScan:
    path: Path
    is_zip: bool
    layout: str                                   # "split" | "single"
    classes: tuple[str, ...]
    files: dict[str, list[OwnFile]]               # "train" and "test" (split) or "all" (single)
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (rel, why), found by the scan

    def every_file(self) -> list[OwnFile]:
        return [f for files in self.files.values() for f in files]


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


def _too_many_files(where: str, limits: DataLimits) -> DataSourceError:
    note = f" ({limits.note})" if limits.note else ""
    return DataSourceError(f"{where} holds more than {limits.max_files:,} files; the limit is "
                           f"{limits.max_files:,} files{note}. Give a folder or zip of fewer images.")


# ---------------------------------------------------------------------------------------
# Listing: (parts, size, stamp, member) of every file, and the folders, of a folder or a zip
# ---------------------------------------------------------------------------------------

Listing = tuple[list[tuple[tuple[str, ...], int, int, str]], set[tuple[str, ...]]]


def _list_folder(root: Path, limits: DataLimits) -> Listing:
    files, dirs = [], set()
    # Not os.walk: scandir gives each entry's type without a second stat, and we stop at the cap.
    # Symlinked folders are followed (a class folder may live elsewhere), each real folder once,
    # so that a link back up the tree cannot loop.
    stack, visited = [((), str(root))], set()
    while stack:
        parts, folder = stack.pop()
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in visited:
                continue
            visited.add((st.st_dev, st.st_ino))
            entries = list(os.scandir(folder))
        except OSError as e:
            raise DataSourceError(f"Cannot read the folder {folder}: {e.strerror or e}.") from e
        for e in entries:
            if ignored(e.name):
                continue
            sub = parts + (e.name,)
            if e.is_dir():
                dirs.add(sub)
                stack.append((sub, e.path))
            elif e.is_file():
                if len(files) >= limits.max_files:
                    raise _too_many_files(str(root), limits)
                st = e.stat()
                files.append((sub, st.st_size, st.st_mtime_ns, ""))
    return files, dirs


def _list_zip(path: Path, limits: DataLimits) -> Listing:
    size = path.stat().st_size
    if size > limits.max_bytes:  # also bounds the zip's directory, which zipfile reads whole
        note = f" ({limits.note})" if limits.note else ""
        raise DataSourceError(f"{path.name} is {_mb(size)}; the limit is {_mb(limits.max_bytes)}{note}.")
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise DataSourceError(f"{path} is not a readable zip file ({e}).") from e
    files, dirs, seen = [], set(), {}
    for info in infos:
        # Some Windows tools write "\" separators; "" parts come from "/x" or "a//b".
        parts = tuple(p for p in info.filename.replace("\\", "/").split("/") if p)
        if not parts or any(ignored(p) or p == ".." for p in parts):
            continue
        if info.is_dir():
            dirs.add(parts)
            continue
        seen[parts] = info  # a name zipped twice: the last one, as zipfile.getinfo picks
        if len(seen) > limits.max_files:
            raise _too_many_files(path.name, limits)
    for parts, info in seen.items():
        files.append((parts, info.file_size, info.CRC, info.filename))
        dirs.update(parts[:k] for k in range(1, len(parts)))
    top = {d[0] for d in dirs}
    if len(top) == 1 and not top & set(SPLIT_DIRS) and not any(len(p) == 1 for p, *_ in files) \
            and any(len(d) > 1 for d in dirs):
        # One top folder that holds folders: it wraps the dataset (a top folder of images only
        # is a single class, refused later under its own name).
        files = [(p[1:], s, c, m) for p, s, c, m in files]
        dirs = {d[1:] for d in dirs if len(d) > 1}
    return files, dirs


# ---------------------------------------------------------------------------------------
# Layout, classes and limits
# ---------------------------------------------------------------------------------------


def _layouts_help(what: str) -> str:
    return (f"{what} should hold either one folder per class (<class>/<image>; a test split is then held "
            "out) or train/<class>/<image> and test/<class>/<image>, with the same class folders in both.")


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def scan_own(path: Path, limits: DataLimits) -> OwnScan:
    """The files of a folder or zip of own images, by split, class and name; checks the
    layout, the class count, the caps and the images per class (before decoding)."""
    is_zip = path.is_file()
    where = path.name if is_zip else str(path)
    files, dirs = (_list_zip if is_zip else _list_folder)(path, limits)
    top = {d[0] for d in dirs}
    skipped: list[tuple[str, str]] = []
    layout = "split" if top & set(SPLIT_DIRS) else "single"
    if layout == "split":
        for split in SPLIT_DIRS:
            if split not in top:
                raise DataSourceError(f"Missing split: {where} has {'/'.join(set(SPLIT_DIRS) - {split})}/ "
                                      f"but no {split}/ folder. " + _layouts_help(where))
        for d in sorted(top - set(SPLIT_DIRS)):
            skipped.append((d + "/", "is a folder beside train/ and test/; only those two are read"))
        groups = {s: {d[1] for d in dirs if len(d) > 1 and d[0] == s} for s in SPLIT_DIRS}
        if groups["train"] != groups["test"]:
            raise DataSourceError(
                f"train/ and test/ of {where} must hold the same class folders: only in train/: "
                f"{', '.join(sorted(groups['train'] - groups['test'])) or 'none'}; only in test/: "
                f"{', '.join(sorted(groups['test'] - groups['train'])) or 'none'}.")
        names, depth = groups["train"], 1
    else:
        names, depth = top, 0
    classes = tuple(sorted(names))
    _check_class_count(classes, where, path, is_zip, limits)
    label_of = {c: i for i, c in enumerate(classes)}
    by_split: dict[str, list[OwnFile]] = {s: [] for s in (SPLIT_DIRS if layout == "split" else ("all",))}
    for parts, size, stamp, member in sorted(files):
        rel = "/".join(parts)
        split = parts[0] if layout == "split" else "all"
        if layout == "split" and parts[0] not in SPLIT_DIRS:
            continue  # beside train/ and test/: a README, or a file of a folder listed above
        if len(parts) <= depth + 1:
            if len(parts) == depth + 1 and _is_image(parts[-1]):  # beside the class folders
                skipped.append((rel, "is not inside a class folder"))
            continue  # a README or labels.csv beside the class folders
        if not _is_image(parts[-1]):
            ext = os.path.splitext(parts[-1])[1] or "no extension"
            skipped.append((rel, f"is not a supported image file ({ext}; read: {' '.join(IMAGE_EXTENSIONS)})"))
            continue
        if size > MAX_BYTES:
            skipped.append((rel, f"is {size / 1e6:.1f} MB; the limit per image is {MAX_BYTES / 1e6:.0f} MB"))
            continue
        by_split[split].append(OwnFile(rel, label_of[parts[depth]], size, stamp, member))
    scan = OwnScan(path, is_zip, layout, classes, by_split, sorted(skipped))
    total = sum(f.size for f in scan.every_file())
    if total > limits.max_bytes:
        note = f" ({limits.note})" if limits.note else ""
        raise DataSourceError(f"The images of {where} add up to {_mb(total)}; the limit is "
                              f"{_mb(limits.max_bytes)}{note}. Give fewer or smaller images.")
    check_per_class(scan, {s: [f.label for f in fs] for s, fs in by_split.items()}, limits, "image files")
    return scan


def _check_class_count(classes, where, path, is_zip, limits: DataLimits) -> None:
    n = len(classes)
    if limits.min_classes <= n <= limits.max_classes:
        return
    found = f"{n} class folder{'s' if n != 1 else ''} found" + (
        f" ({', '.join(classes[:10])}{', ...' if n > 10 else ''})" if n else "")
    hint = ""
    if n == 1 and not is_zip:
        hint = (f" If {classes[0]} is the folder around your dataset, give {path / classes[0]} instead.")
    raise DataSourceError(f"{found} in {where}; a dataset needs {limits.min_classes} to "
                          f"{limits.max_classes} classes. {_layouts_help(where)}{hint}")


def check_per_class(scan: OwnScan, labels: dict[str, list[int]], limits: DataLimits, what: str,
                    after: str = "") -> None:
    """Enough images of each class: min_per_class to train on (train/, or the whole class folder
    before the test split), and at least one test image per class in the split layout."""
    train = labels["train" if scan.layout == "split" else "all"]
    counts = [0] * len(scan.classes)
    for y in train:
        counts[y] += 1
    short = [f"{c} ({n})" for c, n in zip(scan.classes, counts) if n < limits.min_per_class]
    where = scan.path.name if scan.is_zip else str(scan.path)
    folder = "train/<class>" if scan.layout == "split" else "<class>"
    if short:
        raise DataSourceError(
            f"Too few {what}{after} in {where}: each class needs at least {limits.min_per_class} in {folder}/; "
            f"{', '.join(short)} {'has' if len(short) == 1 else 'have'} fewer.")
    if scan.layout == "split":
        present = set(labels["test"])
        empty = [c for i, c in enumerate(scan.classes) if i not in present]
        if empty:
            raise DataSourceError(f"No test {what}{after} for {', '.join(empty)} in {where}: each class "
                                  "needs at least one in test/<class>/.")
