"""The one owner of "a trained model": a reference for every way a user names one, one verified
loader, one process-wide cache.

    ref = ModelRef.parse("airnet")              # shipped weights (weights/, then the Hub)
    ref = ModelRef.parse("my_run.zip")          # a run's download, or a .safetensors with its card
    ref = ModelRef.run("20261207-airnet-1a2b")  # a run's best weights
    loaded = load(ref)                          # .model (eval mode), .card, .classes, .sha256

Every file is checked before a tensor is parsed: shipped weights (store.load_weights) and user
files (integrity.load_weights_file: everything verify() checks) against their card's sha256, a run's best weights
against the digest the engine recorded beside them (runs of older releases recorded none: their
keys and shapes are still checked against the architecture). The cache is keyed by the weights
file's sha256 (and the device), so a second load of the same bytes is the same object, under
whatever name it is reached. Models in it are shared: callers must not train or modify them.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from torch import nn

from ..common import IMAGE_SIZE, NUM_CLASSES, pick_device
from ..runs import Run
from .card import ModelCard, WeightsError, check_name
from .integrity import load_weights_file
from .store import architecture_problems, create_model, load_weights, locate, unpacked_weights_zip

FILE_SUFFIXES = (".zip", ".safetensors", ".json")
CACHE_SIZE = 16  # the ten shipped models, a few runs and user files; the oldest goes first


@dataclass(frozen=True)
class ModelRef:
    """How a user named a model: kind "shipped" (a name in weights/ or the Hub), "file" (a run's
    .zip download, or a .safetensors/.json pair) or "run" (a run id or directory)."""

    kind: str
    value: str
    runs_dir: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("shipped", "file", "run"):
            raise ValueError(f"unknown model reference kind {self.kind!r}")

    @classmethod
    def parse(cls, text: str | os.PathLike) -> "ModelRef":
        """A name or a path, as the CLI's --init-from and --model take it: a file by its suffix
        or a folder in it, else a shipped name."""
        return cls("file" if is_file_ref(text) else "shipped", str(text))

    @classmethod
    def shipped(cls, name: str) -> "ModelRef":
        return cls("shipped", name)

    @classmethod
    def file(cls, path: str | os.PathLike) -> "ModelRef":
        return cls("file", str(path))

    @classmethod
    def run(cls, run_id: str | os.PathLike, runs_dir: str | os.PathLike | None = None) -> "ModelRef":
        return cls("run", str(run_id), None if runs_dir is None else str(runs_dir))

    @property
    def label(self) -> str:
        return {"shipped": self.value, "file": Path(self.value).name, "run": f"run {Path(self.value).name}"}[self.kind]


def is_file_ref(text: str | os.PathLike) -> bool:
    """A weights file rather than a shipped name: by its suffix, or a folder in the path."""
    p = Path(text)
    return p.suffix.lower() in FILE_SUFFIXES or len(p.parts) > 1


@dataclass(frozen=True)
class LoadedModel:
    """A verified model: in eval mode on its device, with what it predicts and where it came from."""

    ref: ModelRef
    model: nn.Module = field(repr=False)
    card: ModelCard | None         # None for a run (its config and summary are the record)
    classes: tuple[str, ...]
    architecture: str              # the zoo name the weights fit
    model_kwargs: dict
    sha256: str                    # of the weights file (of the zip, for a run's download)
    config: dict | None = None     # the TrainConfig behind it (the card's or the run's), if recorded

    @property
    def label(self) -> str:
        return self.ref.label


_cache: OrderedDict[tuple, LoadedModel] = OrderedDict()
_digests: dict[tuple, str] = {}   # (path, size, mtime) -> sha256: a file is hashed once
_lock = threading.Lock()
_generation = 0   # how many times the cache was cleared


def clear_cache() -> None:
    global _generation
    with _lock:
        _cache.clear()
        _digests.clear()
        _generation += 1


def cache_generation() -> int:
    """Changes whenever clear_cache() runs: what a holder of loaded models checks before reusing them."""
    return _generation


def load(ref: ModelRef | str, device: str | torch.device = "cpu") -> LoadedModel:
    """The verified model `ref` names, from the cache when its weights file's bytes were loaded
    before. WeightsError (a tampered, truncated or mismatched file; missing weights) or
    FileNotFoundError (an unknown run, a run without best weights yet)."""
    ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
    device = pick_device(str(device))
    if ref.kind == "run":
        run = Run.find(ref.value, ref.runs_dir)
        if not run.has_best():
            raise FileNotFoundError(f"run {run.id} has no best weights yet")
        path = run.best_path
    elif ref.kind == "file":
        path = Path(ref.value)
        if not path.is_file():
            raise WeightsError(f"{path}: no such file")
        if path.suffix.lower() != ".zip":
            path = path.with_suffix(".safetensors")
            if not path.is_file():
                raise WeightsError(f"missing {path} (a weights file needs its model card beside it)")
    else:
        check_name(ref.value)
        path = locate(ref.value, None)[1]
    key = (file_digest(path), str(device))
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    loaded = _load(ref, key[0], device)
    with _lock:
        _cache[key] = loaded
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return loaded


def card_of(ref: ModelRef | str) -> ModelCard:
    """The card of shipped weights or a user's file, read without loading the tensors (to check
    an architecture before a run starts; loading verifies the weights themselves)."""
    ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
    if ref.kind == "shipped":
        return ModelCard.load(locate(ref.value, None)[0])
    if ref.kind != "file":
        raise ValueError(f"{ref.label}: a run has no model card (export it first)")
    path = Path(ref.value)
    if not path.is_file():
        raise FileNotFoundError(f"no such weights file {path}")
    if path.suffix.lower() == ".zip":
        with unpacked_weights_zip(path) as (card_path, _):
            return ModelCard.load(card_path)
    return ModelCard.load(path.with_suffix(".json"))


def build(architecture: str, classes=None, model_kwargs: dict | None = None) -> nn.Module:
    """An untrained zoo model with a head for `classes` (default CIFAR-10's)."""
    n = len(classes) if classes else NUM_CLASSES
    return create_model(architecture, num_classes=n, **(model_kwargs or {}))


def read_run_state(run: Run) -> dict[str, torch.Tensor]:
    """A run's best weights as a state dict, once their digest checks out (export rounds them
    through fp16 before building the model to score)."""
    data = run.best_path.read_bytes()
    digests = run.best_digests()
    digest = hashlib.sha256(data).hexdigest()
    if digests is not None and digest not in digests:
        raise WeightsError(f"run {run.id}: {run.best_path.name} hashes to {digest}, not the digest the run "
                           f"recorded in {run.best_digest_path.name}: the file is corrupt or was changed")
    try:
        return load_safetensors_bytes(data)
    except SafetensorError as e:
        raise WeightsError(f"run {run.id}: {run.best_path.name} is not a readable safetensors file: {e}") from e


def model_from_state(state: dict[str, torch.Tensor], architecture: str, classes=None,
                     model_kwargs: dict | None = None, label: str = "the weights") -> nn.Module:
    """The architecture built for `classes` with `state` loaded strictly (CPU, train mode as built)."""
    model = build(architecture, classes, model_kwargs)
    problems = architecture_problems(model.state_dict(), {k: t.shape for k, t in state.items()})
    if problems:
        raise WeightsError(f"{label}: does not fit the architecture of '{architecture}': {'; '.join(problems)}")
    model.load_state_dict(state)
    return model


# ---------------------------------------------------------------------------- internals

def file_digest(path: Path) -> str:
    """The sha256 of a file, hashed once per (path, size, mtime) in this process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _lock:
        known = _digests.get(key)
    if known is None:
        with open(path, "rb") as f:
            known = hashlib.file_digest(f, "sha256").hexdigest()
        with _lock:
            _digests[key] = known
    return known


def _load(ref: ModelRef, digest: str, device: torch.device) -> LoadedModel:
    if ref.kind == "run":
        run = Run.find(ref.value, ref.runs_dir)
        cfg = run.config()
        classes = run.classes()
        model = model_from_state(read_run_state(run), cfg.model, classes, cfg.model_kwargs, f"run {run.id}")
        loaded = LoadedModel(ref, model, None, tuple(classes), cfg.model, dict(cfg.model_kwargs), digest,
                             cfg.to_dict())
    else:
        model, card = load_weights_file(ref.value) if ref.kind == "file" else load_weights(ref.value)
        kwargs = dict((card.train_config or {}).get("model_kwargs") or {})
        loaded = LoadedModel(ref, model, card, tuple(card.class_names), card.zoo_name, kwargs, digest,
                             card.train_config)
    model = loaded.model.to(device).eval()
    with torch.inference_mode():  # warm-up: the first pass allocates and picks kernels
        model(torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE, device=device))
    return loaded


__all__ = ["LoadedModel", "ModelRef", "build", "card_of", "clear_cache", "file_digest", "is_file_ref", "load",
           "model_from_state", "read_run_state"]
