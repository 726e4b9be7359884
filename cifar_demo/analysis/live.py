"""Live guesses while a run trains: a fixed strip of test pictures (two per class) and what the run's
latest weights make of each, so a class watching the curves also sees the guesses turn right.

The latest weights are the run's checkpoint.pt (runs.Run.checkpoint_path), which the engine writes
atomically at each epoch's end: the EMA weights when the run keeps an average (what it validates),
else the model's. They are read with weights.load_checkpoint (weights_only: tensors and plain
containers, nothing executed) and built through weights.model_from_state (strict keys and shapes).
A strip is a pure function of the checkpoint file's version (path, size, mtime) and the pictures,
so it is computed once per epoch and kept (STRIP_CACHE entries).

The pictures: for a CIFAR-10 run, the first PER_CLASS of each class of the bundled sample (CIFAR-10
test images shipped with the package: no data set needed); for a run of your own classes, the first
PER_CLASS of each class of its dataset's test split.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from .. import data, weights
from ..common import CLASSES, to_unit
from ..runs import Run

PER_CLASS = 2
STRIP_CACHE = 8      # strips kept: a few runs being watched, one epoch each
MAX_CLASSES = 20     # a strip of 2 x 100 classes would not fit a screen: the first 20 classes


@dataclass(frozen=True)
class Guess:
    label: str          # the picture's true class
    guess: str          # the model's top class
    confidence: float   # its probability

    @property
    def correct(self) -> bool:
        return self.label == self.guess


@dataclass(frozen=True)
class Strip:
    """The run's guesses on the strip's pictures after `epoch` epochs (images: N x 32 x 32 x 3 uint8)."""

    run_id: str
    epoch: int
    images: np.ndarray
    guesses: tuple[Guess, ...]

    @property
    def n_correct(self) -> int:
        return sum(g.correct for g in self.guesses)


def pick_per_class(labels: np.ndarray, n_classes: int, per_class: int = PER_CLASS) -> np.ndarray:
    """Indices of the first `per_class` pictures of each class (of the first MAX_CLASSES), by class."""
    idx = [np.flatnonzero(labels == c)[:per_class] for c in range(min(n_classes, MAX_CLASSES))]
    return np.concatenate(idx) if idx else np.zeros(0, np.int64)


_pictures: dict[tuple, tuple[torch.Tensor, np.ndarray]] = {}
_strips: OrderedDict[tuple, Strip] = OrderedDict()
_lock = threading.Lock()


def strip_pictures(classes: tuple[str, ...], data_path: str | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """(images N x 3 x 32 x 32 uint8, labels) of the strip for a run of `classes` reading `data_path`.
    data.DataSourceError when a run of its own classes finds its dataset gone."""
    if tuple(classes) == CLASSES:
        key: tuple = ("sample",)
    else:
        source = data.resolve_source(data_path, download=False)
        key = ("own", source.fingerprint)
    with _lock:
        hit = _pictures.get(key)
    if hit is not None:
        return hit
    split = data.load_sample() if key == ("sample",) else data.load_split("test", source)
    labels = split.labels.numpy()
    idx = pick_per_class(labels, len(classes))
    found = (split.images[torch.as_tensor(idx)], labels[idx])
    with _lock:
        _pictures[key] = found
    return found


def latest_model(run: Run) -> tuple[torch.nn.Module, int]:
    """(the run's latest weights as a model in eval mode, the epochs they were trained for), from
    its checkpoint; FileNotFoundError before the first epoch ends, weights.WeightsError when the
    file is unreadable or does not fit the architecture."""
    if not run.has_checkpoint():
        raise FileNotFoundError(f"run {run.id} has no checkpoint yet")
    ckpt = weights.load_checkpoint(run.checkpoint_path)
    state = ckpt["model"]
    if ckpt.get("ema"):   # torch.optim.swa_utils.AveragedModel: the averaged model's entries under "module."
        state = {k[len("module."):]: v for k, v in ckpt["ema"].items() if k.startswith("module.")}
    cfg = run.config()
    model = weights.model_from_state(state, cfg.model, run.classes(), dict(cfg.model_kwargs),
                                     label=f"run {run.id}'s checkpoint")
    return model.eval(), int(ckpt["state"]["epoch"])


@torch.inference_mode()
def guesses(model: torch.nn.Module, images: torch.Tensor, labels: np.ndarray, classes) -> tuple[Guess, ...]:
    """The model's top class and its probability for each picture (uint8 N x 3 x H x W)."""
    if not len(images):
        return ()
    probs = model(to_unit(images)).float().softmax(1)
    conf, top = probs.max(1)
    return tuple(Guess(classes[int(y)], classes[int(t)], float(c)) for y, t, c in zip(labels, top, conf))


def strip_for(run: Run) -> Strip:
    """The run's strip at its latest checkpoint, computed once per checkpoint version.
    FileNotFoundError before the first epoch ends; weights.WeightsError, data.DataSourceError."""
    try:
        st = run.checkpoint_path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"run {run.id} has no checkpoint yet") from None
    key = (str(run.dir.resolve()), st.st_size, st.st_mtime_ns)
    with _lock:
        hit = _strips.get(key)
        if hit is not None:
            _strips.move_to_end(key)
            return hit
    classes = run.classes()
    images, labels = strip_pictures(tuple(classes), run.config().data)
    model, epoch = latest_model(run)
    strip = Strip(run.id, epoch, images.permute(0, 2, 3, 1).numpy(), guesses(model, images, labels, classes))
    with _lock:
        _strips[key] = strip
        while len(_strips) > STRIP_CACHE:
            _strips.popitem(last=False)
    return strip
