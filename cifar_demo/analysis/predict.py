"""Prediction with one or many models on a 32x32 picture (decoded by data.pictures)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import data, weights, zoo
from ..common import CLASSES, to_unit
from ..data.pictures import to_tensor

# ------------------------------------------------------------------------ models with weights


@dataclass
class Prediction:
    model: str
    probs: dict[str, float] = field(default_factory=dict)   # class -> probability, every class of the
    #                                                         model's (card.classes), in label order
    latency_ms: float | None = None                           # per picture: a pass over `batch` pictures / batch
    error: str | None = None                                  # e.g. "no weights"
    batch: int = 1                                            # pictures in the forward pass (analysis.serve)

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        return sorted(self.probs.items(), key=lambda kv: -kv[1])[:k]


@torch.inference_mode()
def predict_one(model, image32: np.ndarray, classes=None) -> tuple[dict[str, float], float]:
    """Class probabilities of one 32x32 image (keyed by `classes`, default CIFAR-10's, in label
    order) and the forward-pass latency in ms."""
    classes = tuple(classes or CLASSES)
    x = to_unit(to_tensor(image32))  # a picture in [0, 1]: the model normalises it itself
    t0 = time.perf_counter()
    probs = model(x).float().softmax(1)[0]
    ms = (time.perf_counter() - t0) * 1000
    if len(probs) != len(classes):
        raise ValueError(f"the model predicts {len(probs)} classes, but {len(classes)} names were given")
    return {c: float(p) for c, p in zip(classes, probs)}, ms


# The first forward passes of a fresh model allocate buffers and pick kernels: not representative.
LATENCY_WARMUP = 2


def measure_latency(names: list[str] | None = None, runs: int = 10,
                    warmup: int = LATENCY_WARMUP) -> dict:
    """Batch-1 CPU forward latency of each named zoo model (default: all): the one timing the
    CLI's docs/latency.json, the README's table and the Model zoo tab all show.

    Each model's figure is the median of `runs` timed passes (predict_one's clock) on the
    bundled sample image after `warmup` untimed ones. Models are built fresh with random
    weights: the speed depends on the architecture, not on the values, and no cached model
    (the Predict tab's) is touched. Returns how it was measured beside the figures:
    {"batch": 1, "precision": "fp32", "runs", "warmup", "threads", "latency_ms": {name: ms}}.
    """
    image32 = data.load_sample().images[0].permute(1, 2, 0).numpy()
    ms = {}
    for name in names or zoo.names():
        model = zoo.create(name).eval()
        times = [predict_one(model, image32)[1] for _ in range(warmup + runs)]
        ms[name] = statistics.median(times[warmup:])
    return {"batch": 1, "precision": "fp32", "runs": runs, "warmup": warmup,
            "threads": torch.get_num_threads(), "latency_ms": ms}


def latency_method(record: dict) -> str:
    """What a latency record measured, in words: the start of every note that shows one."""
    return (f"one 32x32 image (batch {record['batch']}, {record['precision']}), median of "
            f"{record['runs']} forward passes")


def predict_many(image32: np.ndarray, names: list[str] | None = None) -> list[Prediction]:
    """Every named model (default: the whole zoo) on one image, each with its card's classes;
    models without weights say so. A name may be any weights/ pair (e.g. an export of other
    classes, "airnet-leaves")."""

    names = names or zoo.names()
    have = set(weights.available())
    out = []
    for name in names:
        if name not in have:
            out.append(Prediction(name, error="no weights shipped yet"))
            continue
        try:
            loaded = weights.load(name)  # verified, cached by the file's sha256
            model, card = loaded.model, loaded.card
        except Exception as exc:  # a tampered or wrong file: shown, never faked
            out.append(Prediction(name, error=str(exc)))
            continue
        probs, ms = predict_one(model, image32, card.class_names)
        out.append(Prediction(name, probs, ms))
    return out


def ensemble(predictions: list[Prediction]) -> dict[str, float]:
    """Mean of the probabilities of the models that predicted (soft vote), over the models of one
    class list: a vote between models of different classes means nothing. Where the models
    disagree on their classes, the list most of them share wins (the first one's on a tie)."""
    ok = [p for p in predictions if p.error is None]
    if not ok:
        return {}
    lists = [tuple(p.probs) for p in ok]
    common = max(dict.fromkeys(lists), key=lists.count)  # dict.fromkeys: first-seen order for ties
    voters = [p for p in ok if tuple(p.probs) == common]
    return {c: sum(p.probs[c] for p in voters) / len(voters) for c in common}
