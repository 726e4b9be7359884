"""Knowledge distillation from shipped models (Hinton, Vinyals & Dean 2015, "Distilling the
Knowledge in a Neural Network"): a student learns from its labels and from a teacher's class
probabilities, which say which wrong classes are nearly right (a cat that looks like a dog).

The teacher is one shipped model or the mean of several (an ensemble is a better teacher than
any of its members). Its probabilities are computed once, on the training images only, and
saved to a file (`python -m cifar_demo distill-targets`); a run then reads them
(TrainConfig.distill) and trains on each batch's blend

    target = (1 - distill_weight) * one_hot(label) + distill_weight * teacher probabilities

with the run's label smoothing on top. The teacher sees the whole, unaugmented picture (with
its flip, `tta`); a crop or flip of a picture keeps its class, so that target stands for every
view the loader makes of it. Offline targets cost one pass of the teachers, where online ones
would cost a teacher forward pass at every step of every epoch.

Honest by construction: the validation split stays unseen by student and teachers alike. The
teachers score only the training split, each teacher must have held out the same validation
split (its card's val_size and seed are the data's), and the file records the training split's
digest, so a run on other images (another val_size, seed or dataset) is refused.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from .. import weights
from ..analysis import evaluate
from ..common import pick_device
from ..data import Split, split_digest
from ..hardware import hardware_info
from .precision import autocast_dtype

FORMAT = "cifar-demo distillation targets v1"


class DistillError(ValueError):
    """A targets file that is missing, damaged, or made for other training images."""


@dataclass
class Targets:
    """A teacher's class probabilities for every image of a training split, and where they came from."""

    probs: Tensor                                   # float32 N, C; rows sum to 1
    meta: dict = field(default_factory=dict)        # teachers, tta, digests, accuracies, seconds


# ----------------------------------------------------------------------------- teachers


def check_teacher(name: str, data, seed: int) -> None:
    """DistillError unless shipped model `name` predicts the data's classes, was trained on the
    same dataset, and held out the data's validation split (`len(data.val)` images drawn with
    `seed`), so that its probabilities carry nothing of the validation images."""

    card = weights.card_for(name)
    classes = tuple(card.classes or data.classes)
    if classes != tuple(data.classes):
        raise DistillError(f"{name} predicts {', '.join(classes)}, not the data's classes")
    if card.dataset != data.source.label:
        raise DistillError(f"{name} was trained on {card.dataset}, the data is {data.source.label}")
    held_out = (card.train_config.get("val_size"), card.train_config.get("seed"))
    if len(data.val) and held_out != (len(data.val), seed):
        raise DistillError(
            f"{name} was trained holding out val_size={held_out[0]} with seed {held_out[1]}, but the "
            f"data holds out {len(data.val)} images with seed {seed}: the teacher may have trained "
            "on the student's validation images")


def teacher_probs(names: list[str], split, *, tta: str = "flip", precision: str = "auto",
                  device=None, progress: bool = False) -> tuple[Tensor, list[Tensor]]:
    """(mean of the teachers' probabilities, each teacher's) on `split`, N x C float32."""
    device = pick_device(device)
    bf16 = autocast_dtype(precision, device) == torch.bfloat16
    each = []
    for name in names:
        model = weights.load(name).model  # verified and cached; only read here
        res = evaluate.evaluate(model, split, tta=tta, device=device,
                                precision="bf16" if bf16 else "fp32", keep_probs=True, progress=progress)
        each.append(torch.tensor(res.probabilities, dtype=torch.float32))
    return torch.stack(each).mean(0), each


def accuracy(probs: Tensor, labels: Tensor) -> float:
    return float((probs.argmax(1) == labels.cpu()).float().mean())


def validation_accuracy(names: list[str], data, *, tta: str = "flip", precision: str = "auto", device=None,
                        progress: bool = False, log=print) -> tuple[float, list[float]]:
    """(the teachers' mean's, each teacher's) accuracy on data.val, each logged: what to choose them on."""
    mean, each = teacher_probs(names, data.val, tta=tta, precision=precision, device=device, progress=progress)
    accs = [accuracy(p, data.val.labels) for p in each]
    for name, acc in zip(names, accs):
        log(f"  {name:14s} validation accuracy {acc:.2%} (tta={tta})")
    mean_acc = accuracy(mean, data.val.labels)
    log(f"  {'teachers':14s} validation accuracy {mean_acc:.2%} (mean of {len(names)})")
    return mean_acc, accs


def make_targets(names: list[str], data, seed: int, *, tta: str = "flip", precision: str = "auto", device=None,
                 progress: bool = False, log=print) -> Targets:
    """The teachers' mean probabilities on data.train (`data` loaded with validation seed `seed`),
    with each teacher's and the mean's
    validation accuracy in the metadata (choose the teachers on those, never on test)."""

    if not names:
        raise DistillError("name at least one shipped model as teacher")
    for name in names:
        check_teacher(name, data, seed)
    started = time.perf_counter()
    meta: dict = {"format": FORMAT, "teachers": [], "tta": tta, "classes": list(data.classes),
                  "dataset": data.source.label, "val_size": len(data.val), "seed": seed}
    each_val = [None] * len(names)
    if len(data.val):
        meta["val_accuracy"], each_val = validation_accuracy(names, data, tta=tta, precision=precision,
                                                             device=device, progress=progress, log=log)
    probs, each = teacher_probs(names, data.train, tta=tta, precision=precision, device=device, progress=progress)
    for name, p, val_acc in zip(names, each, each_val):
        meta["teachers"].append({"name": name, "sha256": weights.card_for(name).sha256, "val_accuracy": val_acc,
                                 "train_accuracy": accuracy(p, data.train.labels)})
    meta.update(train_accuracy=accuracy(probs, data.train.labels), train_digest=split_digest(data.train),
                n=len(data.train), seconds=round(time.perf_counter() - started, 1),
                hardware=hardware_info(), date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return Targets(probs.contiguous(), meta)


# ----------------------------------------------------------------------------- the file


def save(targets: Targets, path: str | Path) -> Path:
    """safetensors: the N x C probabilities, the metadata as JSON in the header."""

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({"probs": targets.probs.float().contiguous()}, str(tmp), metadata={"meta": json.dumps(targets.meta)})
    tmp.replace(path)
    return path


def read_meta(path: str | Path) -> dict:
    """The file's metadata (the header only); DistillError if it is not a targets file."""

    path = Path(path)
    if not path.is_file():
        raise DistillError(f"no distillation targets at {path}: make them with "
                           "`python -m cifar_demo distill-targets --teachers NAME,... --out FILE`")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("meta", "{}"))
    except Exception as exc:  # safetensors raises its own error types for a damaged header
        raise DistillError(f"{path} is not a readable distillation targets file ({exc})") from None
    if meta.get("format") != FORMAT:
        raise DistillError(f"{path} is not a distillation targets file ({FORMAT!r})")
    return meta


def load(path: str | Path, train) -> Targets:
    """The targets at `path` for training split `train`: DistillError unless they were made
    for exactly these images (digest), are one distribution per image, and are finite."""

    meta = read_meta(path)
    try:
        probs = load_file(str(path))["probs"]
    except Exception as exc:
        raise DistillError(f"{path}: the probabilities do not load ({exc})") from None
    if meta.get("train_digest") != split_digest(train):
        raise DistillError(
            f"{path} was made for other training images (val_size {meta.get('val_size')}, seed "
            f"{meta.get('seed')}, {meta.get('dataset')}): remake it for this run's data and split")
    if probs.shape[0] != len(train) or probs.dim() != 2:
        raise DistillError(f"{path} holds {tuple(probs.shape)} probabilities for {len(train)} images")
    if not torch.isfinite(probs).all() or (probs < 0).any() or not torch.allclose(
            probs.sum(1), torch.ones(len(probs)), atol=1e-3):
        raise DistillError(f"{path}: the probabilities are not one distribution per image")
    return Targets(probs.float(), meta)


def attach(train, path: str | Path):
    """`train` carrying the teacher's probabilities (data.Split.soft) from the file at `path`."""
    targets = load(path, train)
    return Split(train.images, train.labels, targets.probs.to(train.images.device))


def blend(labels: Tensor, teacher: Tensor, weight: float) -> Tensor:
    """(1 - weight) * one-hot labels + weight * teacher probabilities: a batch's targets."""
    one_hot = torch.nn.functional.one_hot(labels, teacher.shape[1]).to(teacher.dtype)
    return torch.lerp(one_hot, teacher, weight)
