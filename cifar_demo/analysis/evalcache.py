"""Test-set evaluations of weights files, cached on disk so that showing them again is instant.

Scoring 10,000 test images takes seconds to minutes on a CPU (six forward passes per image
with flip_translate TTA), while the result is a pure function of three things:

    the weights file's bytes (sha256) + the TTA mode + the test images (dataset fingerprint)

so that triple (plus the model name, which decides how the bytes are read) is the cache key.
Entries are JSON files of `EvalResult.as_dict()` in <cache>/eval/<key>.json (<cache> is
data.cache_root(); for a run, <its runs folder>/.cache, so a public visitor's evaluations go
with the visitor's folder), written atomically (fsio), so a killed app never leaves half an entry behind.

    target = evalcache.shipped("airnet")          # or evalcache.from_run(run_id)
    result, hit = evalcache.evaluate_target(target, tta="flip")
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from .. import data as data_mod
from .. import fsio, weights
from ..common import CLASSES
from ..runs import Run
from . import evaluate, on_gpu
from .evaluate import EvalResult

# Bump when EvalResult's fields or the way evaluate() scores change: old entries then miss.
CACHE_VERSION = 1


@dataclass(frozen=True)
class Target:
    """A weights file to score: shipped weights (weights/<model>) or a training run's best."""

    kind: str          # "weights" | "run"
    name: str          # the model name for shipped weights, the run id for a run
    model: str         # zoo name (decides the architecture the bytes are loaded into)
    path: Path         # the .safetensors file
    sha256: str        # of the file
    data: str | None = None         # the run's dataset folder (None: the usual search)
    # Not hashed (a dict): Gradio hashes the values its gr.State holds, and the Evaluate tab's holds a Target.
    model_kwargs: dict | None = field(default=None, hash=False)
    classes: tuple[str, ...] | None = None  # the classes the weights predict (None: CIFAR-10's)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.classes) if self.classes else CLASSES

    @property
    def label(self) -> str:
        return f"{self.model} (shipped weights)" if self.kind == "weights" else f"run {self.name}"

    @property
    def ref(self) -> weights.ModelRef:
        return weights.ModelRef.shipped(self.name) if self.kind == "weights" else weights.ModelRef.run(self.path.parent)


def shipped(name: str) -> Target:
    """Shipped weights by model name; the hash comes from the model card (loading verifies it)."""
    card = weights.card_for(name)
    return Target("weights", name, card.zoo_name, weights.weights_dir() / f"{name}.safetensors", card.sha256,
                  classes=card.classes and tuple(card.classes))


def from_run(run_id: str, runs_dir=None) -> Target:
    """A run's best weights. Hashed here (once per file version: weights.file_digest, which weights.load
    then reuses): a resumed run rewrites the file."""
    run = Run.find(run_id, runs_dir)
    cfg = run.config()
    if not run.has_best():
        raise FileNotFoundError(f"run {run.id} has no best weights yet ({run.best_path})")
    return Target("run", run.id, cfg.model, run.best_path, weights.file_digest(run.best_path), cfg.data,
                  dict(cfg.model_kwargs), run.classes())


def load_model(target: Target) -> nn.Module:
    """The target's model with its weights, on the CPU, in eval mode (shared: weights.load's cache)."""
    return weights.load(target.ref).model


# ----------------------------------------------------------------------------- the cache

def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    return data_mod.cache_root(cache) / "eval"


def run_cache(target: Target) -> Path | None:
    """Where a run's evaluations are cached: beside its run (<runs folder>/.cache), so they are
    deleted with a visitor's folder; None (the shared cache) for shipped weights."""
    return target.path.parent.parent / data_mod.OWN_CACHE if target.kind == "run" else None


def cache_key(target: Target, tta: str, fingerprint: str) -> str:
    """A file name that is readable (model, tta) and unique (hashes of weights and data)."""
    if tta not in evaluate.TTA_MODES:
        raise ValueError(f"tta must be one of {evaluate.TTA_MODES}, got {tta!r}")
    return f"{target.model}-{target.sha256[:24]}-{fingerprint[:16]}-{tta}-v{CACHE_VERSION}"


def load(key: str, cache: str | os.PathLike | None = None) -> EvalResult | None:
    """The cached result, or None (missing or unreadable: an unreadable entry is recomputed)."""
    path = cache_dir(cache) / f"{key}.json"
    try:
        return EvalResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as e:
        warnings.warn(f"ignoring unreadable evaluation cache entry {path}: {e}")
        return None


def store(key: str, result: EvalResult, cache: str | os.PathLike | None = None) -> Path | None:
    """Write atomically (temp file, then rename). A read-only cache costs time, not correctness."""
    path = cache_dir(cache) / f"{key}.json"
    try:
        return fsio.atomic_write_text(path, result.to_json())
    except OSError as e:
        warnings.warn(f"could not write the evaluation cache {path}: {e}")
        return None


def evaluate_target(target: Target, tta: str = "none", source: data_mod.DataSource | None = None, *,
                    cache: str | os.PathLike | None = None, device=None,
                    progress: bool = False) -> tuple[EvalResult, bool]:
    """(result on the whole test set, whether it came from the cache).

    `source` defaults to the run's dataset, else the usual search without download (the app
    must not start a 170 MB download behind the user's back): data.DataSourceError if none.
    """
    if source is None:
        source = data_mod.resolve_source(target.data, download=False)
    if cache is None:
        cache = run_cache(target)
    key = cache_key(target, tta, source.fingerprint)
    hit = load(key, cache)
    if hit is not None:
        return hit, True
    if tuple(source.classes) != target.class_names:
        raise ValueError(f"{target.label} predicts {', '.join(target.class_names)}; {source.label} has the "
                         f"classes {', '.join(source.classes)}")
    test = data_mod.load_split("test", source)
    result = on_gpu.evaluate(load_model(target), test, tta=tta,   # a GPU call on ZeroGPU
                             device=device, progress=progress, num_classes=len(target.class_names))
    store(key, result, cache)
    return result, False
