"""The model card: weights/<model>.json, what a reader needs to trust and reproduce the weights.

Card schema policy: unknown keys in a loaded card are KEPT (in ModelCard.extra) and written
back on save, so a card from a newer release survives a load/save round trip; a card whose
schema_version is newer than CARD_SCHEMA_VERSION is refused, because its known fields may
have changed meaning. Accuracies are fractions in [0, 1].

Optional fields that older cards lack keep their meaning when absent, and are written only when
set, so a card without them loads and saves back as it was: `classes` absent means CIFAR-10's
ten (all shipped cards); `architecture` absent means the zoo model is `model` (a model exported
under another name, e.g. airnet fine-tuned on other classes as "airnet-leaves", names its zoo
architecture there).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from cifar_demo import fsio
from cifar_demo.common import CLASSES

CARD_SCHEMA_VERSION = 1
STORAGE_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16}
# A model name becomes a file name and a Hub file name: keep it to a safe alphabet.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# Optional fields written only when set (see the module's docstring).
_OMIT_WHEN_NONE = ("classes", "architecture")


class WeightsError(Exception):
    """A weights file or model card is missing, corrupt, or does not fit the model."""


def check_name(name: str) -> None:
    """WeightsError unless `name` is safe as a file name and a Hub file name."""
    if not _NAME_RE.match(name):
        raise WeightsError(f"{name!r} is not a valid model name")


@dataclass
class ModelCard:
    """Everything a reader of weights/<model>.json needs to trust and reproduce the weights."""

    model: str                            # zoo name
    params: int                           # trainable + frozen parameters (not buffers)
    dataset: str                          # "CIFAR-10 (JPEG export)" or "CIFAR-10 (official)"
    dataset_fingerprint: str              # fingerprint of the source files the run read
    test_accuracy: float                  # fraction in [0, 1]
    test_accuracy_tta: float | None       # with test-time augmentation; None if not measured
    per_class_accuracy: dict[str, float]  # class name -> fraction
    train_config: dict[str, Any]          # TrainConfig.to_dict()
    epochs: int                           # epochs actually run
    train_seconds: float                  # training wall time
    hardware: dict[str, Any]              # hardware_info() of the training machine
    torch_version: str
    project_version: str
    date: str                             # ISO 8601, UTC
    dtype: str                            # storage dtype: "float32" or "float16"
    sha256: str                           # of the .safetensors file
    slice_check: dict[str, Any] | None = None  # {"start", "n": 1000, "step", "accuracy"} for CI
    test_digest: str | None = None        # data.split_digest() of the test split it was scored on
    classes: list[str] | None = None      # class names in label order; None: CIFAR-10's (common.CLASSES)
    architecture: str | None = None       # zoo name of the architecture; None: `model` is the zoo name
    schema_version: int = CARD_SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, kept verbatim

    def to_dict(self) -> dict[str, Any]:
        d = {"schema_version": self.schema_version}
        d.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.name not in ("schema_version", "extra")
                  and not (f.name in _OMIT_WHEN_NONE and getattr(self, f.name) is None)})
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        """Raises ValueError on missing fields or a schema newer than this code."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        required.add("schema_version")
        missing = sorted(required - d.keys())
        if missing:
            raise ValueError(f"model card lacks {', '.join(missing)}")
        if not isinstance(d["schema_version"], int) or d["schema_version"] > CARD_SCHEMA_VERSION:
            raise ValueError(f"model card schema_version {d['schema_version']!r} is newer than this "
                             f"cifar_demo understands ({CARD_SCHEMA_VERSION}); upgrade cifar_demo")
        known = {k: v for k, v in d.items() if k in names}
        return cls(**known, extra={k: v for k, v in d.items() if k not in names})

    def to_json(self) -> str:
        # allow_nan=False: NaN/Infinity are not JSON and would break other readers of the card.
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError("model card is not a JSON object")
        return cls.from_dict(d)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the card atomically (temp file beside it, then rename)."""
        return fsio.atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> ModelCard:
        """Read a card; WeightsError naming the file if it is missing or malformed."""
        path = Path(path)
        try:
            return cls.from_json(path.read_text())
        except (OSError, ValueError, TypeError) as e:  # JSONDecodeError is a ValueError
            raise WeightsError(f"{path}: unreadable model card: {e}") from e

    @property
    def class_names(self) -> tuple[str, ...]:
        """The classes the weights predict, in label order (CIFAR-10's when the card names none)."""
        return tuple(self.classes) if self.classes is not None else CLASSES

    @property
    def zoo_name(self) -> str:
        """The zoo model whose architecture the weights fit."""
        return self.architecture or self.model

    def validate(self) -> list[str]:
        """Problems with the card's values (empty list: fine)."""
        p: list[str] = []
        if not _NAME_RE.match(str(self.model)):
            p.append(f"model name {self.model!r} is not a safe file name")
        if not isinstance(self.params, int) or self.params <= 0:
            p.append(f"params {self.params!r} is not a positive integer")
        if not self.dataset or not self.dataset_fingerprint:
            p.append("dataset and dataset_fingerprint must be set")
        if not _is_fraction(self.test_accuracy):
            p.append(f"test_accuracy {self.test_accuracy!r} is not in [0, 1]")
        if self.test_accuracy_tta is not None and not _is_fraction(self.test_accuracy_tta):
            p.append(f"test_accuracy_tta {self.test_accuracy_tta!r} is not in [0, 1]")
        p += _classes_problems(self.classes)
        if self.architecture is not None and not _NAME_RE.match(str(self.architecture)):
            p.append(f"architecture {self.architecture!r} is not a zoo model name")
        pca = self.per_class_accuracy
        names = self.class_names if not _classes_problems(self.classes) else ()
        if not isinstance(pca, dict) or set(pca) != set(names) or not all(map(_is_fraction, pca.values())):
            which = "CIFAR-10 class" if self.classes is None else "of the card's classes"
            p.append(f"per_class_accuracy must map each {which} to a fraction in [0, 1]")
        if not isinstance(self.train_config, dict):
            p.append("train_config is not a dict")
        if not isinstance(self.epochs, int) or self.epochs < 0:
            p.append(f"epochs {self.epochs!r} is not a non-negative integer")
        if not isinstance(self.train_seconds, (int, float)) or self.train_seconds < 0:
            p.append(f"train_seconds {self.train_seconds!r} is not a non-negative number")
        if not isinstance(self.hardware, dict) or not {"cpu", "cores", "gpu"} <= self.hardware.keys():
            p.append("hardware must have cpu, cores and gpu")
        try:
            datetime.fromisoformat(self.date)
        except (TypeError, ValueError):
            p.append(f"date {self.date!r} is not ISO 8601")
        if self.dtype not in STORAGE_DTYPES:
            p.append(f"dtype {self.dtype!r} is not one of {', '.join(STORAGE_DTYPES)}")
        if not re.fullmatch(r"[0-9a-f]{64}", str(self.sha256)):
            p.append("sha256 is not 64 lowercase hex digits")
        p += _slice_check_problems(self.slice_check)
        return p


def _classes_problems(classes: Any) -> list[str]:
    if classes is None:
        return []
    ok = (isinstance(classes, list) and len(classes) >= 2 and len(set(classes)) == len(classes)
          and all(isinstance(c, str) and c.strip() for c in classes))
    return [] if ok else [f"classes {classes!r} is not a list of two or more distinct names"]


def _is_fraction(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and 0.0 <= x <= 1.0


def _slice_check_problems(sc: dict[str, Any] | None) -> list[str]:
    if sc is None:
        return []
    ok = (isinstance(sc, dict) and set(sc) in ({"start", "n", "accuracy"}, {"start", "n", "step", "accuracy"})
          and all(isinstance(sc.get(k, 1), int) and not isinstance(sc.get(k, 1), bool)
                  for k in ("start", "n", "step"))
          and sc["start"] >= 0 and sc["n"] > 0 and sc.get("step", 1) > 0
          and sc["start"] + (sc["n"] - 1) * sc.get("step", 1) < 10_000
          and _is_fraction(sc["accuracy"]))
    return [] if ok else [f"slice_check {sc!r} is not {{start, n, step, accuracy}} within the 10,000 test images"]


def slice_indices(sc: dict[str, Any]) -> range:
    """The test-set indices a card's slice_check scores: n images from start, every step-th."""
    step = sc.get("step", 1)
    return range(sc["start"], sc["start"] + sc["n"] * step, step)
