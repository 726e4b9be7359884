"""Checking weights without loading anything into a model: a whole folder (CI, `export`, tests),
and a file a user brings (`predict --weights`), which is checked the same way before it loads."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable

from safetensors import SafetensorError, safe_open
from torch import nn

from cifar_demo import fsio

from . import store
from .card import ModelCard, WeightsError
from .store import SHOW_KEYS, architecture_problems, weights_dir

# safetensors' own dtype names, as safe_open reports them.
_SAFETENSORS_DTYPE = {"float32": "F32", "float16": "F16"}


def verify(
    directory: str | os.PathLike | None = None,
    create: Callable[[str], nn.Module] | None = None,
) -> list[tuple[str, bool, str]]:
    """Check every card/weights pair in `directory`: [(name, ok, message)], sorted by name.

    Checks: both files present, card readable and valid, name matches, sha256, metadata,
    storage dtype, the card's params against the file's tensors, and the architecture
    (keys, shapes, params) of create(name) (default zoo.create).
    """
    folder = Path(directory) if directory is not None else weights_dir()
    if not folder.is_dir():
        raise WeightsError(f"weights folder {folder} does not exist")
    names = sorted({p.stem for p in folder.glob("*.json")} | {p.stem for p in folder.glob("*.safetensors")})
    return [(name, *_verify_pair(folder, name, create or store.create_model)) for name in names]


def _verify_pair(folder: Path, name: str, create: Callable[[str], nn.Module]) -> tuple[bool, str]:
    card_path, weights_path = folder / f"{name}.json", folder / f"{name}.safetensors"
    missing = [f.name for f in (weights_path, card_path) if not f.is_file()]
    if missing:
        return False, f"missing {' and '.join(missing)}"
    return check_pair(card_path, weights_path, create, name=name)


def check_pair(card_path: Path, weights_path: Path, create: Callable[[str], nn.Module] | None = None,
               name: str | None = None) -> tuple[bool, str]:
    """verify()'s checks on one card/weights pair: (ok, message). `name`: the name the files must
    have (the card's model); None for a user's file, which may have been renamed."""
    try:
        card = ModelCard.load(card_path)
    except WeightsError as e:
        return False, str(e)
    digest = fsio.sha256_file(weights_path)
    if digest != card.sha256:
        # Nothing else about a file that is not the one the card describes is worth reporting.
        return False, f"sha256 mismatch: card says {card.sha256}, {weights_path.name} hashes to {digest}"
    problems = card.validate()
    if name is not None and card.model != name:
        problems.append(f"card is for model '{card.model}' but the files are named '{name}'")
    try:
        with safe_open(str(weights_path), "pt") as f:
            meta = f.metadata() or {}
            slices = {k: f.get_slice(k) for k in f.keys()}
            shapes = {k: tuple(s.get_shape()) for k, s in slices.items()}
            dtypes = {k: s.get_dtype() for k, s in slices.items()}
    except (SafetensorError, OSError) as e:
        return False, f"{weights_path.name}: not a readable safetensors file: {e}"
    problems += _file_problems(card, meta, shapes, dtypes)
    try:
        model = store.model_for_card(card, create)
    except Exception as e:  # unknown name, zoo missing, broken constructor: all make the pair unusable
        problems.append(f"cannot build '{card.zoo_name}' to check the architecture: {type(e).__name__}: {e}")
    else:
        problems += architecture_problems(model.state_dict(), shapes)
        built = sum(p.numel() for p in model.parameters())
        if built != card.params:
            problems.append(f"params: card says {card.params:,}, the model has {built:,}")
    if problems:
        return False, "; ".join(problems)
    return True, f"ok: {card.params:,} params, {card.dtype}, sha256 {card.sha256[:12]}"


def _file_problems(card: ModelCard, meta: dict[str, str], shapes: dict[str, tuple],
                   dtypes: dict[str, str]) -> list[str]:
    """What the safetensors header says against what the card says."""
    problems = []
    if meta.get("model") != card.model:
        problems.append(f"file metadata names model {meta.get('model')!r}, card says '{card.model}'")
    try:
        buffers = set(json.loads(meta["buffers"]))
    except (KeyError, ValueError, TypeError):
        problems.append("file metadata lacks the buffer list; cannot count parameters")
    else:
        counted = sum(math.prod(s) for k, s in shapes.items() if k not in buffers)
        if counted != card.params:
            problems.append(f"params: card says {card.params:,}, the file holds {counted:,}")
    want = _SAFETENSORS_DTYPE.get(card.dtype)
    wrong = [k for k, d in dtypes.items() if d.startswith(("F", "BF")) and d != want]
    if want and wrong:
        problems.append(f"card says {card.dtype} but {len(wrong)} tensors are not {want}: "
                        f"{', '.join(wrong[:SHOW_KEYS])}")
    return problems


def load_weights_file(path: str | os.PathLike, device: str = "cpu",
                      create: Callable[[str], nn.Module] | None = None) -> tuple[nn.Module, ModelCard]:
    """(model in eval mode, card) from a file a user gives: a run's download (.zip), or a
    .safetensors or .json with the other file of the pair beside it.

    The pair must pass every check verify() makes of shipped weights (card, sha256, metadata,
    dtype, parameter count, architecture); then it loads through store.load_weights, which
    hashes again the very bytes it parses. Any problem is one WeightsError naming `path`.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".zip":
        with store.unpacked_weights_zip(path) as (card_path, weights_path):
            try:
                return _checked_load(path, card_path, weights_path, device, create)
            except WeightsError as e:  # name the zip, not the temp folder it was unpacked into
                raise WeightsError(str(e).replace(str(weights_path.parent), str(path))) from None
    if suffix not in (".safetensors", ".json"):
        raise WeightsError(f"{path}: give a .zip (a run's download), or a .safetensors file with its "
                           f".json model card beside it")
    card_path, weights_path = path.with_suffix(".json"), path.with_suffix(".safetensors")
    missing = [str(f) for f in (weights_path, card_path) if not f.is_file()]
    if missing:
        raise WeightsError(f"missing {' and '.join(missing)} (a weights file needs its model card beside it)")
    return _checked_load(path, card_path, weights_path, device, create)


def _checked_load(shown: Path, card_path: Path, weights_path: Path, device: str,
                  create: Callable[[str], nn.Module] | None) -> tuple[nn.Module, ModelCard]:
    ok, message = check_pair(card_path, weights_path, create)
    if not ok:
        raise WeightsError(f"{shown}: {message}")
    model = store.model_for_card(ModelCard.load(card_path), create) if create else None
    return store.load_weights(weights_path, model=model, device=device)
