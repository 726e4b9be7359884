"""Scoring a classifier on a split: accuracy, top-k, per-class metrics, confusion, calibration, TTA.

Everything returned is plain data (ints, floats, lists, dicts) so that the CLI can print it,
the app can plot it and a model card can store it as JSON without custom encoders.

    result = evaluate(model, split, tta="flip")
    result.accuracy, result.confusion, result.ece, result.to_json()

`metrics_from_predictions` is the same arithmetic on arrays, for predictions made elsewhere.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..common import NUM_CLASSES, pick_device, to_unit
from ..recipe import TTA_MODES  # the vocabulary's one list; this module makes the views

PRECISIONS = ("fp32", "bf16")
ECE_BINS = 15  # Guo et al. 2017 ("On Calibration of Modern Neural Networks") use 15 equal-width bins.


@dataclasses.dataclass
class EvalResult:
    """Metrics of one model on one split. All fields are JSON-serialisable plain data.

    Per-class lists have `num_classes` entries, indexed by class id. A precision, recall or F1
    that is 0/0 (class never predicted / never present) is reported as 0.0, like scikit-learn's
    `zero_division=0`; `support` tells such classes apart. Macro averages run over the classes
    that occur in the labels or the predictions (scikit-learn's default label set).
    """

    n: int
    num_classes: int
    accuracy: float
    topk: dict[str, float]              # {"top1": ..., "top5": ...}; only top1 without probabilities
    loss: float | None                  # mean cross-entropy (nats); None without probabilities
    confusion: list[list[int]]          # confusion[true][predicted] = count
    support: list[int]                  # images per true class
    precision: list[float]
    recall: list[float]                 # = per-class accuracy
    f1: list[float]
    macro_precision: float
    macro_recall: float
    macro_f1: float
    ece: float | None                   # expected calibration error, 15 equal-width bins
    reliability: list[dict[str, float]]  # per bin: lo, hi, confidence (mean), accuracy, count
    labels: list[int]                   # true class per image, in split order
    predictions: list[int]              # predicted class per image
    confidences: list[float] | None     # probability of the predicted class (= max prob for argmax)
    misclassified: list[int]            # wrong images: by confidence descending (most confident
                                        # mistakes first, ties by index); by index without probs
    probabilities: list[list[float]] | None = None  # N x C, only when asked for (it is large)
    tta: str = "none"
    # With TTA, the plain view's own score from the same pass (it is the views' first), so a
    # caller wanting both does not run the model twice: {"accuracy", "loss", "tta_images"
    # (how many images got the other views)}. None without TTA.
    plain: dict[str, float] | None = None

    @property
    def per_class_accuracy(self) -> list[float]:
        """Fraction of each true class classified correctly (the recall)."""
        return self.recall

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.as_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EvalResult":
        return cls(**d)


# ----------------------------------------------------------------------------- metrics on arrays

def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return x.float().numpy() if x.is_floating_point() else x.numpy()
    return np.asarray(x)


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b with 0 where b == 0 (scikit-learn's zero_division=0)."""
    return np.divide(a, b, out=np.zeros(a.shape, dtype=np.float64), where=b != 0)


def reliability_bins(confidences, correct, n_bins: int = ECE_BINS) -> tuple[float, list[dict[str, float]]]:
    """(ECE, bins). Bin b holds confidences in (b/n_bins, (b+1)/n_bins]; the first bin also holds 0.

    ECE = sum over bins of |bin| / N * |accuracy(bin) - mean confidence(bin)|. Empty bins are
    listed with count 0 and confidence/accuracy 0.0 so that plots get a fixed set of bins.
    """
    conf = _as_numpy(confidences).astype(np.float64)
    hit = _as_numpy(correct).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # searchsorted(side="left") counts the inner edges strictly below each value: right-closed bins.
    which = np.searchsorted(edges[1:-1], conf, side="left")
    ece, bins = 0.0, []
    for b in range(n_bins):
        mask = which == b
        count = int(mask.sum())
        mean_conf = float(conf[mask].mean()) if count else 0.0
        acc = float(hit[mask].mean()) if count else 0.0
        ece += count / max(len(conf), 1) * abs(acc - mean_conf)
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]),
                     "confidence": mean_conf, "accuracy": acc, "count": count})
    return float(ece), bins


def metrics_from_predictions(y_true, y_pred, probs=None, num_classes: int = NUM_CLASSES, *,
                             topk: Sequence[int] = (1, 5), loss: float | None = None,
                             keep_probs: bool = False, tta: str = "none") -> EvalResult:
    """Every metric of `EvalResult` from labels, predicted classes and (optionally) probabilities.

    y_true, y_pred: N class ids (list, numpy or torch). probs: N x C probabilities; without them
    there is no top-k beyond top-1, no loss and no calibration. `loss` overrides the mean
    cross-entropy computed from `probs` (evaluate passes it exactly, from log-probabilities).
    """
    y_true = _as_numpy(y_true).astype(np.int64).reshape(-1)
    y_pred = _as_numpy(y_pred).astype(np.int64).reshape(-1)
    n = len(y_true)
    if n == 0 or len(y_pred) != n:
        raise ValueError(f"need the same non-zero number of labels and predictions, got {n} and {len(y_pred)}")
    if min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= num_classes:
        raise ValueError(f"class ids must lie in [0, {num_classes})")

    cm = np.bincount(y_true * num_classes + y_pred, minlength=num_classes**2).reshape(num_classes, num_classes)
    tp, support, predicted = np.diag(cm), cm.sum(1), cm.sum(0)
    precision, recall = _safe_div(tp, predicted), _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    present = (support + predicted) > 0
    correct = y_true == y_pred

    topk_acc = {"top1": float(correct.mean())}
    ece, bins, confidences, mistakes = None, [], None, np.flatnonzero(~correct)
    if probs is not None:
        p = _as_numpy(probs).astype(np.float64)
        if p.shape != (n, num_classes):
            raise ValueError(f"probs must be {n} x {num_classes}, got {p.shape}")
        # Rank of the true class = how many classes score strictly higher; ties count in its favour.
        rank = (p > p[np.arange(n), y_true][:, None]).sum(1)
        for k in topk:
            if k != 1:
                topk_acc[f"top{k}"] = float((rank < k).mean())
        if loss is None:
            loss = float(-np.log(np.clip(p[np.arange(n), y_true], 1e-45, None)).mean())
        conf = p[np.arange(n), y_pred]
        ece, bins = reliability_bins(conf, correct)
        confidences = conf.tolist()
        # Stable sort on -confidence: most confident mistakes first, ties keep index order.
        mistakes = mistakes[np.argsort(-conf[mistakes], kind="stable")]

    return EvalResult(
        n=n, num_classes=num_classes, accuracy=float(correct.mean()), topk=topk_acc,
        loss=None if loss is None else float(loss),
        confusion=cm.tolist(), support=support.tolist(),
        precision=precision.tolist(), recall=recall.tolist(), f1=f1.tolist(),
        macro_precision=float(precision[present].mean()), macro_recall=float(recall[present].mean()),
        macro_f1=float(f1[present].mean()),
        ece=ece, reliability=bins, labels=y_true.tolist(), predictions=y_pred.tolist(),
        confidences=confidences, misclassified=mistakes.tolist(),
        probabilities=p.tolist() if (keep_probs and probs is not None) else None, tta=tta,
    )


# ----------------------------------------------------------------------------- test-time augmentation

def tta_views(x: torch.Tensor, tta: str = "none") -> list[tuple[float, torch.Tensor]]:
    """The (weight, batch) views that `evaluate` averages; weights sum to 1.

    "none":  [(1, x)]
    "flip":  [(1/2, x), (1/2, hflip(x))]
    "flip_translate" (airbench94's `infer_mirror_translate`): the image pair (x, hflip x) weighs
      1/2 and two 1-pixel diagonal translations weigh 1/4, each again with its flip:
        1/4  x                      1/4  hflip(x)
        1/8  x moved down-right 1   1/8  hflip of that   (crop [0:32, 0:32] of the padded image)
        1/8  x moved up-left 1      1/8  hflip of that   (crop [2:34, 2:34] of the padded image)
      The border uncovered by the shift is filled by 1-pixel reflect padding, so no black edge.
    """
    if tta == "none":
        return [(1.0, x)]
    if tta == "flip":
        return [(0.5, x), (0.5, x.flip(-1))]
    if tta == "flip_translate":
        h, w = x.shape[-2:]
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        down_right, up_left = padded[..., 0:h, 0:w], padded[..., 2:h + 2, 2:w + 2]
        return [(0.25, x), (0.25, x.flip(-1)),
                (0.125, down_right), (0.125, down_right.flip(-1)),
                (0.125, up_left), (0.125, up_left.flip(-1))]
    raise ValueError(f"tta must be one of {TTA_MODES}, got {tta!r}")


def _log_probs(model: nn.Module, x: torch.Tensor, tta: str, autocast: bool,
               confidence: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(log of the weighted mean of the views' softmax probabilities, the plain view's log
    probabilities, how many images got the other views).

    We average probabilities, not logits: a mean of probabilities is itself a distribution (a
    mixture), so the loss and the calibration we report describe what is actually averaged.
    (Averaging logits, as airbench does, ranks classes almost identically but is a geometric mean.)
    logsumexp keeps it exact in log space, so the loss of a confident mistake does not underflow.

    0 < confidence < 1: only the images whose plain view's top probability is below it get the other
    views (a later CIFAR-10 speedrun idea: the sure ones would rarely change their answer, and the
    views cost a forward pass each); the sure ones keep their plain view's probabilities.
    """
    def view_log_probs(view: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(view)
        return F.log_softmax(logits.float(), dim=1)

    plain = view_log_probs(x)
    if tta == "none":
        return plain, plain, 0
    unsure = plain.max(1).values.exp() < confidence if 0 < confidence < 1 else None
    if unsure is not None and not unsure.any():
        return plain, plain, 0
    sub = x if unsure is None else x[unsure]
    views = tta_views(sub, tta)   # views[0] is the plain image, already scored
    parts = [(plain if unsure is None else plain[unsure]) + math.log(views[0][0])]
    parts += [view_log_probs(view) + math.log(weight) for weight, view in views[1:]]
    mixed = torch.logsumexp(torch.stack(parts), dim=0)
    if unsure is None:
        return mixed, plain, len(x)
    out = plain.clone()
    out[unsure] = mixed
    return out, plain, int(unsure.sum())


# ----------------------------------------------------------------------------- evaluate a model

def _unpack(split) -> tuple[torch.Tensor, torch.Tensor]:
    """A split is anything with `.images` (N,3,H,W) and `.labels` (N), or an (images, labels) pair."""
    if hasattr(split, "images") and hasattr(split, "labels"):
        images, labels = split.images, split.labels
    else:
        images, labels = split
    return torch.as_tensor(images), torch.as_tensor(labels).long().reshape(-1).cpu()


def evaluate(model: nn.Module, split, *, batch_size: int = 500, device: str | torch.device | None = None,
             tta: str = "none", precision: str = "fp32",
             topk: Sequence[int] = (1, 5), num_classes: int = NUM_CLASSES, progress: bool = False,
             keep_probs: bool = False, tta_confidence: float = 0.0) -> EvalResult:
    """Score `model` on `split` (uint8 NCHW images, or floats in [0, 1]: the model normalises them).

    tta_confidence > 0: the TTA views only for images whose plain top probability is below it
    (the others keep their plain score); 0 or 1: every image gets every view.

    The model is put in eval mode and on `device` (default: common.pick_device()) for the
    duration, then both are restored. precision="bf16" runs the forward under bf16 autocast
    (also on CPU); the softmax and the metrics are always fp32.
    """
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}, got {tta!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not 0 <= tta_confidence <= 1:
        raise ValueError(f"tta_confidence must be in [0, 1], got {tta_confidence!r}")
    images, labels = _unpack(split)
    if len(images) == 0 or len(images) != len(labels):
        raise ValueError(f"split has {len(images)} images and {len(labels)} labels")
    device = pick_device(device)

    # Remember every submodule's mode (a caller may have frozen some) and the model's device.
    modes = [(m, m.training) for m in model.modules()]
    param = next(model.parameters(), None)
    home = param.device if param is not None else None
    model.eval().to(device)
    # oneDNN and cuDNN run convolutions 1.3-1.5x faster on NHWC (resnet50 on 500 images, 2-core
    # EPYC, fp32: 10.0 s vs 15.4 s); the weights' own tensors are put back afterwards.
    nhwc = device.type in ("cpu", "cuda")
    kept = {t: t.data for t in (*model.parameters(), *model.buffers()) if t.dim() == 4} if nhwc else {}
    if nhwc:
        model.to(memory_format=torch.channels_last)
    try:
        batches = range(0, len(images), batch_size)
        if progress:
            batches = tqdm(batches, desc=f"evaluate (tta={tta})", unit="batch")
        out, plain_out, tta_images = [], [], 0
        with torch.inference_mode():
            for i in batches:
                x = to_unit(images[i:i + batch_size].to(device, non_blocking=True))
                if nhwc:
                    x = x.contiguous(memory_format=torch.channels_last)
                mixed, plain, n_views = _log_probs(model, x, tta, autocast=precision == "bf16",
                                                   confidence=tta_confidence)
                out.append(mixed.cpu())
                if tta != "none":   # without TTA the plain view is the result itself
                    plain_out.append(plain.cpu())
                    tta_images += n_views
        log_p = torch.cat(out)
    finally:
        for m, was_training in modes:
            m.train(was_training)
        for t, data in kept.items():
            t.data = data
        if home is not None:
            model.to(home)

    if log_p.shape[1] != num_classes:
        raise ValueError(f"model outputs {log_p.shape[1]} classes, expected num_classes={num_classes}")
    loss = float(-log_p.gather(1, labels[:, None]).mean())
    res = metrics_from_predictions(labels, log_p.argmax(1), log_p.exp(), num_classes,
                                   topk=topk, loss=loss, keep_probs=keep_probs, tta=tta)
    if tta != "none":
        plain_log_p = torch.cat(plain_out)
        res.plain = {"accuracy": float((plain_log_p.argmax(1) == labels).float().mean()),
                     "loss": float(-plain_log_p.gather(1, labels[:, None]).mean()), "tta_images": tta_images}
    return res


# ----------------------------------------------------------------------------- one confusion cell

def cell_indices(result: EvalResult, true_class: int, predicted: int) -> list[int]:
    """Images (split indices) of confusion cell (true_class, predicted): the model's most confident
    first, ties by index; by index when the result has no confidences. The diagonal cell
    (true_class == predicted) is what the model gets right for that class."""
    for c in (true_class, predicted):
        if not 0 <= c < result.num_classes:
            raise ValueError(f"class ids must lie in [0, {result.num_classes}), got {c}")
    labels, preds = np.asarray(result.labels), np.asarray(result.predictions)
    idx = np.flatnonzero((labels == true_class) & (preds == predicted))
    if result.confidences is not None:
        # Stable sort on -confidence keeps ascending index order among equal confidences.
        idx = idx[np.argsort(-np.asarray(result.confidences)[idx], kind="stable")]
    return idx.tolist()


def most_confused(confusion: Sequence[Sequence[int]]) -> tuple[int, int] | None:
    """(true, predicted) of the largest off-diagonal count (the first in row order on ties);
    None when every image is on the diagonal."""
    cm = np.array(confusion, dtype=np.int64)
    np.fill_diagonal(cm, -1)
    if cm.size == 0 or cm.max() <= 0:
        return None
    i, j = np.unravel_index(int(cm.argmax()), cm.shape)
    return int(i), int(j)


@dataclasses.dataclass(frozen=True)
class Page:
    """One page of a list: `items` are the whole list's [start, start + len(items))."""

    items: list
    number: int   # 0-based, clamped into [0, pages - 1]
    pages: int    # at least 1: an empty list has one empty page
    start: int
    total: int


def page(items: Sequence, number: int, size: int) -> Page:
    """Page `number` (0-based) of `items`, `size` per page. A number past either end is clamped,
    so "next" on the last page stays there and a stale page number after a new cell still works."""
    if size < 1:
        raise ValueError(f"page size must be at least 1, got {size}")
    total = len(items)
    pages = max(1, -(-total // size))
    number = min(max(int(number), 0), pages - 1)
    start = number * size
    return Page(list(items[start:start + size]), number, pages, start, total)
