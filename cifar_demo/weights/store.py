"""Shipped weights on disk: save a model as safetensors + card, load it back only once verified.

Loading hashes the weights file and compares with the card before parsing any tensor, then
refuses a file whose keys or shapes do not fit the architecture. Nothing here unpickles.
A pair also travels as one .zip (a run's download): written here, and read back defensively
(two expected members, size caps, nothing extracted by the archive's own paths).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import stat
import tempfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save_file
from torch import nn

import cifar_demo
from cifar_demo import fsio, zoo
from cifar_demo.common import NUM_CLASSES, pick_device
from cifar_demo.hardware import hardware_info

from .card import STORAGE_DTYPES, ModelCard, WeightsError, check_name
from .hub import from_hub

SHOW_KEYS = 5  # how many offending keys an error message lists
# A weights zip holds one pair. The largest zoo model (resnet50, fp32) is about 95 MB, so 512 MB
# leaves room for bigger models while an upload or a zip bomb cannot fill the disk or memory.
ZIP_MAX_WEIGHTS_BYTES = 512 << 20
ZIP_MAX_CARD_BYTES = 1 << 20  # a card is a few KB of JSON


def weights_dir() -> Path:
    """The folder of shipped weights: $CIFAR_DEMO_WEIGHTS, else weights/ beside the package."""
    env = os.environ.get("CIFAR_DEMO_WEIGHTS")
    return Path(env) if env else Path(cifar_demo.__file__).resolve().parent.parent / "weights"


# ---------------------------------------------------------------------------- save

def save_weights(
    model: nn.Module,
    directory: str | os.PathLike,
    name: str,
    *,
    dataset: str,
    dataset_fingerprint: str,
    test_accuracy: float,
    test_accuracy_tta: float | None,
    per_class_accuracy: dict[str, float],
    train_config: dict[str, Any],
    epochs: int,
    train_seconds: float,
    hardware: dict[str, Any] | None = None,
    slice_check: dict[str, Any] | None = None,
    test_digest: str | None = None,
    dtype: str = "float32",
    classes: Sequence[str] | None = None,
    architecture: str | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write <directory>/<name>.safetensors and <name>.json; returns (weights_path, card_path).

    hardware defaults to this machine's; pass the training machine's if export runs elsewhere.
    classes: the class names in label order (export always gives them; None writes a card
    without, which means CIFAR-10's). architecture: the zoo model when `name` is another name.
    extra: further card keys (e.g. "stages": the trainings behind continued weights).
    Both files are written to temp files first and renamed only when both are complete.
    """
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(STORAGE_DTYPES)}, not {dtype!r}")
    directory = Path(directory)
    card = ModelCard(
        model=name, params=sum(p.numel() for p in model.parameters()),
        dataset=dataset, dataset_fingerprint=dataset_fingerprint,
        test_accuracy=test_accuracy, test_accuracy_tta=test_accuracy_tta,
        per_class_accuracy=dict(per_class_accuracy), train_config=dict(train_config),
        epochs=epochs, train_seconds=train_seconds, hardware=hardware or hardware_info(),
        torch_version=torch.__version__, project_version=cifar_demo.__version__,
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        dtype=dtype, sha256="0" * 64, slice_check=slice_check, test_digest=test_digest,
        classes=list(classes) if classes is not None else None,
        architecture=architecture if architecture not in (None, name) else None,
        extra=dict(extra or {}),
    )
    # Check the card before writing anything, so a bad call never leaves half an export.
    problems = card.validate()
    if problems:
        raise ValueError(f"model card for '{name}' is invalid: {'; '.join(problems)}")

    # state_dict, not parameters(): it keeps frozen parameters and the BatchNorm buffers.
    # num_batches_tracked is kept too: it is tiny, and keeping every key lets loading be strict.
    state = model.state_dict()
    param_keys = {k for k, _ in model.named_parameters(remove_duplicate=False)}
    metadata = {
        "format": "pt", "model": name, "producer": f"cifar_demo {cifar_demo.__version__}",
        # Lets verify() count parameters from the file alone, without building the model.
        "buffers": json.dumps([k for k in state if k not in param_keys]),
    }
    tensors = _storage_tensors(state, STORAGE_DTYPES[dtype])

    directory.mkdir(parents=True, exist_ok=True)
    weights_path, card_path = directory / f"{name}.safetensors", directory / f"{name}.json"
    # Two temp files published together (not fsio.atomic_write twice): the card holds the
    # weights' sha256, so neither may reach its final name before both are complete.
    with fsio.temp_beside(weights_path) as wtmp, fsio.temp_beside(card_path) as ctmp:
        save_file(tensors, str(wtmp), metadata=metadata)
        fsio.fsync(wtmp)
        card = dataclasses.replace(card, sha256=fsio.sha256_file(wtmp))
        ctmp.write_text(card.to_json())
        fsio.fsync(ctmp)
        # Weights first: a reader that sees the new card also sees the new weights.
        fsio.publish(wtmp, weights_path)
        fsio.publish(ctmp, card_path)
    return weights_path, card_path


def _storage_tensors(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """CPU copies, floating ones cast to the storage dtype; integer buffers stay as they are.

    Fresh contiguous tensors because safetensors refuses strided views and shared storage
    (tied weights, channels_last parameters).
    """
    out = {}
    for key, t in state.items():
        t = t.detach()
        target = dtype if t.is_floating_point() else t.dtype
        copy = torch.empty(t.shape, dtype=target).copy_(t)
        if t.is_floating_point() and not torch.isfinite(copy).all() and torch.isfinite(t).all():
            raise ValueError(f"{key} overflows {dtype}; store this model as float32")
        out[key] = copy
    return out


# ---------------------------------------------------------------------------- load

def load_weights(
    name_or_path: str | os.PathLike,
    directory: str | os.PathLike | None = None,
    model: nn.Module | None = None,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, ModelCard]:
    """Load shipped weights into `model` (built with zoo.create(card.model) if None).

    name_or_path: a zoo name (looked up in `directory`, default weights_dir(), then the Hub)
    or a path to either file of a pair. Returns (model on `device`, in eval mode; its card).
    """
    card_path, weights_path = locate(name_or_path, directory)
    card = ModelCard.load(card_path)
    # Hash the very bytes we then parse: nothing is read as tensors before the check passes.
    data = weights_path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != card.sha256:
        raise WeightsError(
            f"{weights_path}: sha256 mismatch: its card {card_path} says {card.sha256}, the file "
            f"hashes to {digest}. The file is corrupt, truncated or not the one the card describes.")
    try:
        tensors = load_safetensors_bytes(data)
    except SafetensorError as e:
        raise WeightsError(f"{weights_path}: not a readable safetensors file: {e}") from e

    if model is None:
        model = model_for_card(card)
    state = model.state_dict()
    problems = architecture_problems(state, {k: t.shape for k, t in tensors.items()})
    if problems:
        raise WeightsError(f"{weights_path}: does not fit the architecture of '{card.zoo_name}' "
                           f"({type(model).__name__}): {'; '.join(problems)}")
    # fp16 storage: cast back to whatever dtype the model holds.
    model.load_state_dict({k: t.to(state[k].dtype) for k, t in tensors.items()})
    return model.to(pick_device(str(device))).eval(), card


def create_model(name: str, **kwargs) -> nn.Module:
    # Imported here: the zoo imports every model family, and card-only callers need none.

    return zoo.create(name, **kwargs)


def model_for_card(card: ModelCard, create: Callable[..., nn.Module] | None = None) -> nn.Module:
    """The (untrained) model a card's weights fit: its zoo architecture, with a head for its classes.

    A CIFAR-10 card builds with create(name) alone, the call this has always made (a `create`
    of tests or plugins may take only the name); other classes add num_classes."""
    create = create or create_model
    n = len(card.class_names)
    return create(card.zoo_name) if card.classes is None or n == NUM_CLASSES else create(card.zoo_name, num_classes=n)


def architecture_problems(expected: dict[str, torch.Tensor], found: dict[str, Any]) -> list[str]:
    """Compare a model's state_dict with a file's {key: shape}; one message per kind of problem."""
    missing = [k for k in expected if k not in found]
    unexpected = sorted(k for k in found if k not in expected)  # file order is arbitrary
    shapes = [f"{k}: file {tuple(found[k])}, model {tuple(expected[k].shape)}"
              for k in expected if k in found and tuple(found[k]) != tuple(expected[k].shape)]
    problems = []
    for what, items in (("missing keys", missing), ("unexpected keys", unexpected),
                        ("shape mismatch", shapes)):
        if items:
            more = f" (+{len(items) - SHOW_KEYS} more)" if len(items) > SHOW_KEYS else ""
            problems.append(f"{what} ({len(items)}): {', '.join(items[:SHOW_KEYS])}{more}")
    return problems


def locate(name_or_path: str | os.PathLike, directory: str | os.PathLike | None) -> tuple[Path, Path]:
    """(card_path, weights_path) for a path, or for a name: local folder, else the Hub."""
    p = Path(name_or_path)
    if p.suffix in (".safetensors", ".json") or len(p.parts) > 1:
        card, weights = p.with_suffix(".json"), p.with_suffix(".safetensors")
        missing = [str(f) for f in (weights, card) if not f.is_file()]
        if missing:
            raise WeightsError(f"missing {' and '.join(missing)} (a weights file needs its card beside it)")
        return card, weights
    name = str(name_or_path)
    check_name(name)
    folder = Path(directory) if directory is not None else weights_dir()
    card, weights = folder / f"{name}.json", folder / f"{name}.safetensors"
    if card.is_file() and weights.is_file():
        return card, weights
    missing = [f.name for f in (weights, card) if not f.is_file()]
    return from_hub(name, folder, missing)


# ---------------------------------------------------------------------------- listing

def available(directory: str | os.PathLike | None = None) -> list[str]:
    """Names with both a card and a weights file in `directory` (default weights_dir()); local only."""
    folder = Path(directory) if directory is not None else weights_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json") if p.with_suffix(".safetensors").is_file())


def card_for(name: str, directory: str | os.PathLike | None = None) -> ModelCard:
    """The card of `name` from `directory` (reads the JSON only; no hashing, no Hub)."""
    check_name(name)
    folder = Path(directory) if directory is not None else weights_dir()
    path = folder / f"{name}.json"
    if not path.is_file():
        raise WeightsError(f"no model card for '{name}': {path} not found")
    return ModelCard.load(path)


# ---------------------------------------------------------------------------- one-file download

def write_weights_zip(weights_path: str | os.PathLike, card_path: str | os.PathLike,
                      zip_path: str | os.PathLike) -> Path:
    """Pack a pair into one file a browser can download: <model>.safetensors + <model>.json
    (named after the card's model, as weights/ and the Hub name them). Written atomically."""
    card = ModelCard.load(card_path)
    check_name(card.model)

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w") as zf:
            # Stored, not deflated: float tensors barely compress and stored members read fast.
            zf.write(weights_path, f"{card.model}.safetensors", compress_type=zipfile.ZIP_STORED)
            zf.write(card_path, f"{card.model}.json", compress_type=zipfile.ZIP_DEFLATED)

    return fsio.atomic_write(zip_path, write)


@contextlib.contextmanager
def unpacked_weights_zip(zip_path: str | os.PathLike) -> Iterator[tuple[Path, Path]]:
    """(card_path, weights_path) copied out of a weights zip into a temp folder, removed on exit.

    The archive must hold exactly <stem>.safetensors and <stem>.json (plain names, no folders,
    links or encryption, each under its size cap). Members are read through bounded reads and
    written under names we make, so nothing can land outside the temp folder whatever the
    archive's paths say. The files are not verified here: that is the caller's sha256 check.
    """
    zip_path = Path(zip_path)
    size = zip_path.stat().st_size
    if size > ZIP_MAX_WEIGHTS_BYTES + ZIP_MAX_CARD_BYTES + (1 << 20):
        raise WeightsError(f"{zip_path}: {size:,} bytes is larger than a weights zip may be")
    try:
        with zipfile.ZipFile(zip_path) as zf, tempfile.TemporaryDirectory(prefix="cifar-demo-zip-") as tmp:
            stem, members = _zip_members(zip_path, zf.infolist())
            out = {}
            for suffix, info in members.items():
                cap = ZIP_MAX_WEIGHTS_BYTES if suffix == ".safetensors" else ZIP_MAX_CARD_BYTES
                with zf.open(info) as f:
                    data = f.read(cap + 1)  # a header may lie about the size: never read past the cap
                if len(data) > cap:
                    raise WeightsError(f"{zip_path}: {info.filename} is larger than {cap:,} bytes")
                out[suffix] = Path(tmp) / f"{stem}{suffix}"
                out[suffix].write_bytes(data)
            yield out[".json"], out[".safetensors"]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as e:
        # BadZipFile also covers a member whose CRC does not match (a damaged download).
        raise WeightsError(f"{zip_path}: not a readable weights zip: {e}") from None


def _zip_members(zip_path: Path, infos: list[zipfile.ZipInfo]) -> tuple[str, dict[str, zipfile.ZipInfo]]:
    """The stem and {suffix: member} of a weights zip's two members, or WeightsError."""
    names = [i.filename for i in infos]
    expect = "a weights zip holds exactly <model>.safetensors and <model>.json"
    if len(infos) != 2:
        raise WeightsError(f"{zip_path}: {expect}; this one holds {len(infos)} entries: "
                           f"{', '.join(map(repr, names[:SHOW_KEYS]))}")
    members = {}
    for info in infos:
        name = info.filename
        stem, suffix = os.path.splitext(name)
        if "/" in name or "\\" in name or not _safe_name(stem) or suffix not in (".safetensors", ".json"):
            raise WeightsError(f"{zip_path}: unexpected entry {name!r} ({expect}, no folders)")
        if stat.S_ISLNK(info.external_attr >> 16) or info.flag_bits & 0x1:
            raise WeightsError(f"{zip_path}: {name} is a link or encrypted; {expect} as plain files")
        cap = ZIP_MAX_WEIGHTS_BYTES if suffix == ".safetensors" else ZIP_MAX_CARD_BYTES
        if info.file_size > cap:
            raise WeightsError(f"{zip_path}: {name} is {info.file_size:,} bytes, more than {cap:,}")
        members[suffix] = info
    stems = {os.path.splitext(i.filename)[0] for i in infos}
    if len(members) != 2 or len(stems) != 1:
        raise WeightsError(f"{zip_path}: {expect}; this one holds {', '.join(map(repr, names))}")
    return stems.pop(), members


def _safe_name(stem: str) -> bool:
    try:
        check_name(stem)
    except WeightsError:
        return False
    return True
