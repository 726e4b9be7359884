"""Training checkpoints: our own files, written atomically, read without running any pickle code."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from cifar_demo import fsio

from .card import WeightsError


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """torch.save atomically (temp file, then rename): a killed run never leaves half a file.

    Keep `state` to tensors and plain containers/numbers/strings so load_checkpoint can read it
    with weights_only=True (e.g. numpy RNG states are refused; store torch RNG states instead).
    """
    return fsio.atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | os.PathLike) -> Any:
    """torch.load(path, weights_only=True, map_location="cpu"), with clear errors.

    weights_only: the unpickler only rebuilds tensors and plain containers, so a checkpoint
    that names any other global (an arbitrary object or a function) is refused unexecuted.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found:
            raise WeightsError(f"{path}: refused to unpickle {found.group(1)}: a checkpoint may hold "
                               f"only tensors and plain containers (weights_only=True)") from e
        raise WeightsError(f"{path}: corrupt or truncated checkpoint (not a torch.save file): "
                           f"{_first_line(e)}") from e
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise WeightsError(f"{path}: corrupt or truncated checkpoint: {_first_line(e)}") from e


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
