"""Your own images in the app: upload a .zip of class folders, keep it with its owner, pick it
for a run (Train tab), preview its pictures (Augmentations tab).

An upload is copied into the owner's datasets folder (`<owner's runs folder>/.datasets/`: runs/
locally, runs/visitors/<owner>/ in public mode, so a visitor's datasets are deleted with its
runs) and decoded once by the data layer, which checks every limit (data.DataLimits: the small
public caps in public mode) and caches the 32x32 tensors: in public mode in the datasets folder
itself (<datasets>/data.OWN_CACHE), so they go with the visitor, and only for the zips it keeps.
A zip the data layer refuses is not kept, nor its decoded pixels. Nothing is written anywhere
else, and a dataset is picked by its file name only: no path from the page ever reaches the file
system, except an upload's, which must lie in Gradio's upload folder (data.uploads).
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import gradio as gr
import numpy as np

from .. import data
from ..data import uploads
from .common import owner_of
from .context import AppContext

CIFAR = "cifar10"                 # the dropdown's value for CIFAR-10
OWN_PREFIX = "own:"               # "own:<file name>" for an uploaded dataset
DATASETS = ".datasets"            # in the owner's runs folder; list_runs ignores it (no config.json)
MAX_DATASETS_PUBLIC = 3           # a visitor keeps at most this many uploads (the oldest goes first)
SHOW_SKIPPED = 8                  # skipped files listed by name; the rest are counted


def _owner(ctx: AppContext, token) -> str:
    owner = owner_of(ctx, token)
    if owner is None:
        raise gr.Error("This page has no visitor token yet: reload it.")
    return owner


def datasets_dir(ctx: AppContext, owner: str) -> Path:
    return ctx.runs_dir_for(owner) / DATASETS


def _safe_stem(name: str) -> str:
    """A file name from an upload's name: letters, digits, '-' and '_' only (at most 40)."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(name).stem).strip("_")[:40]
    return stem or "dataset"


def dataset_files(ctx: AppContext, owner: str) -> list[Path]:
    folder = datasets_dir(ctx, owner)
    return sorted(folder.glob("*.zip"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []


def choices(ctx: AppContext, token=None) -> list[tuple[str, str]]:
    """("CIFAR-10", CIFAR), then the owner's uploads, newest first, as ("<name> (your images)", "own:<file>")."""
    owner = owner_of(ctx, token)
    own = [(f"{p.stem} (your images)", OWN_PREFIX + p.name) for p in dataset_files(ctx, owner)] if owner else []
    return [("CIFAR-10", CIFAR), *own]


def path_of(ctx: AppContext, choice: str | None, token=None) -> Path | None:
    """The zip of an "own:<file>" choice in the owner's folder, None for CIFAR-10; ValueError otherwise."""
    if not choice or choice == CIFAR:
        return None
    name = choice[len(OWN_PREFIX):] if choice.startswith(OWN_PREFIX) else ""
    if not name or Path(name).name != name or name.startswith(".") or not name.endswith(".zip"):
        raise ValueError(f"not a dataset of yours: {choice!r}")
    path = datasets_dir(ctx, _owner(ctx, token)) / name
    if not path.is_file():
        raise ValueError(f"your dataset {Path(name).stem} is gone (deleted with your runs?): upload it again")
    return path


def load(ctx: AppContext, choice: str | None, token=None, val_size: int = 0) -> data.CifarData:
    """The chosen dataset, decoded (from the cache after the upload): CIFAR-10 or an own zip."""
    path = path_of(ctx, choice, token)
    return data.load_dataset(path if path is not None else None, val_size=val_size, limits=ctx.data_limits)


def describe(ds: data.CifarData) -> str:
    """Markdown: what the dataset holds and how it is split, and which files were skipped."""
    d = ds.description()
    n = d["counts"]
    classes = ", ".join(f"`{c}`" for c in d["classes"])
    lines = [f"**{html.escape(d['label'])}**: {len(d['classes'])} classes ({classes}); "
             f"{n['train']:,} training and {n['test']:,} test images ({d['test_rule']}). "
             "Every picture is centre-cropped to a square and shrunk to 32x32, as the Predict tab does."]
    skipped = d.get("skipped") or []
    if skipped:
        shown = "; ".join(f"`{html.escape(rel)}` {html.escape(why)}" for rel, why in skipped[:SHOW_SKIPPED])
        more = f" and {len(skipped) - SHOW_SKIPPED} more" if len(skipped) > SHOW_SKIPPED else ""
        lines.append(f"Skipped {len(skipped)} file(s) that are not readable images: {shown}{more}.")
    return "\n\n".join(lines)


def describe_choice(ctx: AppContext, choice: str | None, token=None) -> str:
    if not choice or choice == CIFAR:
        return ""
    try:
        return describe(load(ctx, choice, token))
    except (ValueError, data.DataSourceError) as e:
        return f"**Cannot use this dataset**: {html.escape(str(e))}"


def upload_path(upload) -> Path | None:
    if isinstance(upload, dict):
        upload = upload.get("path")
    return Path(upload) if upload else None


def add_upload(ctx: AppContext, upload, token=None) -> tuple[Path, data.CifarData]:
    """Keep an uploaded zip in the owner's folder once the data layer accepts it; (its path, the dataset).
    ValueError / DataSourceError with the message for the page; a refused zip is not kept."""
    if upload_path(upload) is None:
        raise ValueError("Upload a .zip of class folders first.")
    src = uploads.uploaded_path(upload)   # only a file Gradio uploaded: any request may send any path
    if src.suffix.lower() != ".zip":
        raise ValueError(f"{src.name} is not a .zip: zip a folder that holds one sub-folder per class "
                         "(or train/ and test/, each with one sub-folder per class).")
    limits = ctx.data_limits
    if src.stat().st_size > limits.max_bytes:
        raise ValueError(f"{src.name} is {src.stat().st_size / 2**20:.0f} MB; the limit is "
                         f"{limits.max_bytes / 2**20:.0f} MB {limits.note}".strip())
    owner = _owner(ctx, token)
    folder = datasets_dir(ctx, owner)
    folder.mkdir(parents=True, exist_ok=True)
    if ctx.public:   # decoded beside the zips (data.cache.own_cache_dir): deleted with the visitor's folder
        (folder / data.OWN_CACHE).mkdir(exist_ok=True)
    stem = _safe_stem(src.name)
    target = folder / f"{stem}.zip"
    k, content = 2, src.read_bytes()
    while target.exists() and target.read_bytes() != content:   # the same name, another zip
        target, k = folder / f"{stem}-{k}.zip", k + 1
    fresh = not target.exists()
    if fresh:
        tmp = folder / f".{target.name}.part"
        shutil.copyfile(src, tmp)
        tmp.replace(target)
    try:
        ds = data.load_dataset(target, val_size=0, limits=limits)   # scans, checks the limits, decodes into the cache
    except Exception:
        if fresh:
            target.unlink(missing_ok=True)
        raise
    finally:
        if ctx.public:
            for old in dataset_files(ctx, owner)[MAX_DATASETS_PUBLIC:]:
                old.unlink(missing_ok=True)
            prune_decoded(folder, limits)
    return target, ds


def prune_decoded(folder: Path, limits: data.DataLimits) -> list[Path]:
    """Delete the decoded splits in `folder`'s own cache that belong to no zip of `folder` (a
    refused upload's, an evicted one's); returns them."""
    cache = folder / data.OWN_CACHE
    if not cache.is_dir():
        return []
    keep = set()
    for zip_path in folder.glob("*.zip"):
        try:
            keep.add(data.resolve_source(zip_path, download=False, limits=limits).fingerprint)
        except data.DataSourceError:
            continue
    gone = [p for p in cache.rglob("*") if p.is_file() and p.name.split("-", 1)[0] not in keep]
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


def on_upload(ctx: AppContext, upload, token=None) -> tuple[str, str]:
    """File uploaded: (the dataset's choice value, its description); gr.Error if it is refused."""
    try:
        path, ds = add_upload(ctx, upload, token)
    except (ValueError, data.DataSourceError) as e:
        raise gr.Error(str(e), title="Cannot use this zip") from None
    return OWN_PREFIX + path.name, describe(ds)


def refresh(ctx: AppContext, current: str | None = None, token=None) -> gr.Dropdown:
    """The owner's datasets as the dropdown's choices. Its value is sent only when `current` is
    gone: on page load this answer can arrive after an upload already picked the new zip (seen in
    a clean-clone CI run: Start then trained on CIFAR-10), and must not put CIFAR-10 back."""
    options = choices(ctx, token)
    if current in {v for _, v in options}:
        return gr.Dropdown(choices=options)   # no value: the page keeps what it shows now
    return gr.Dropdown(choices=options, value=CIFAR)


def preview_images(ctx: AppContext, choice: str | None, token=None, n: int = 30) -> list[tuple[np.ndarray, str]]:
    """Up to n training images of the dataset, a few of each class, as (32x32x3, caption)."""
    ds = load(ctx, choice, token)
    train, classes = ds.train, ds.classes
    per = max(1, n // max(len(classes), 1))
    out = []
    for c, name in enumerate(classes):
        for i in np.flatnonzero(train.labels.numpy() == c)[:per]:
            out.append((train.images[i].permute(1, 2, 0).numpy(), f"{name} {len(out) + 1}"))
    return out[:n]
