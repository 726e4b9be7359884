"""The Predict tab's two answers from one forward pass per model, shared by concurrent requests.

Each upload asks twice: /predict (every model's probabilities) and /familiarity (how CIFAR-like
the picture looks, from the same models' features). ``predict_batch`` runs every model once on
a batch of 32x32 pictures and gives, per picture, both: the logits and the pooled features come
out of the same pass (familiarity.features_and_logits).

``Batcher`` makes the requests of many visitors share passes: a request waits in a queue; one
worker thread takes the first and gathers more while they keep coming (each within ``max_wait_s``
of the one before, for at most ``max_gather_s`` in all, up to ``max_batch``), then runs them as one
batch. A class uploading at once arrives over ~0.1 s: gathered, it costs one pass, not a small
first pass and then the rest. On two cores ten models cost ~100 ms for one picture but ~40 ms per
picture at batch 20-32. Answers are cached per picture (the hash of its 32x32 bytes, with the
weights and calibration that answered), and a request for a picture already in a pass waits for
that pass: /familiarity after /predict of the same upload costs no new pass.

The answers are those of predict.predict_many and familiarity.assess on the picture alone
(tests/test_serve.py compares them); only the latency differs: a model's pass over the batch,
divided by the number of pictures in it.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
import weakref
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import torch

from .. import weights, zoo
from . import familiarity
from .predict import LATENCY_WARMUP, Prediction

MAX_BATCH = 64        # pictures in one pass: past ~20-32 the per-picture cost no longer falls (a class fits)
MAX_WAIT_S = 0.05     # a batch takes in requests that come within this of the one before...
MAX_GATHER_S = 0.3    # ...for at most this long after its first
CACHE_SIZE = 256      # answered pictures kept
ANSWER_TIMEOUT_S = 600


@dataclass
class Answer:
    """One picture: every model's prediction, and the familiarity verdict from the same pass."""

    predictions: list[Prediction]
    familiarity: familiarity.Verdict | None
    familiarity_error: Exception | None = None   # no calibration, or a calibrated model unloadable
    batch: int = 1                               # pictures in the pass that answered

    def verdict(self) -> familiarity.Verdict:
        """The familiarity verdict, or the error familiarity.assess would have raised."""
        if self.familiarity_error is not None:
            raise self.familiarity_error
        return self.familiarity


@dataclass(frozen=True)
class State:
    """What answers a picture now: the named models (loaded, or why not) and the calibration."""

    models: tuple[tuple[str, object, Exception | None], ...]   # (name, weights.LoadedModel | None, error)
    extra: tuple[tuple[str, object], ...]   # calibrated models not named: their features only
    calibration: familiarity.Calibration | None
    calibration_error: Exception | None
    key: tuple   # equal keys = the same weights and calibration: a cached answer still holds


_RESOLVE = threading.Lock()   # one thread loads a model; the others then find it in weights' cache


def resolve(names: list[str] | tuple[str, ...] | None = None) -> State:
    """The models of `names` (default: the whole zoo) as predict.predict_many reads them, and the
    shipped familiarity calibration with its models as familiarity.assess reads them."""
    names = tuple(names or zoo.names())
    with _RESOLVE:
        have = set(weights.available())
        models = []
        for name in names:
            if name not in have:
                models.append((name, None, RuntimeError("no weights shipped yet")))
                continue
            try:
                models.append((name, weights.load(name), None))   # verified, cached by the file's sha256
            except Exception as exc:   # a tampered or wrong file: shown, never faked
                models.append((name, None, exc))
        cal, cal_error, extra = None, None, []
        try:
            cal = familiarity.shipped_calibration()
            known = {n: (m, e) for n, m, e in models}
            for m in cal.models:
                loaded, err = known.get(m, (None, None))
                if err is not None:
                    raise err
                if loaded is None:
                    extra.append((m, weights.load(m)))
        except Exception as exc:   # given to /familiarity's caller (Answer.verdict), never to /predict's
            cal, cal_error, extra = None, exc, []
    key = (tuple((n, m.sha256 if m is not None else f"{type(e).__name__}: {e}") for n, m, e in models),
           tuple((n, m.sha256) for n, m in extra),
           (str(familiarity.calibration_dir()), cal.card.get("tensors_sha256")) if cal is not None
           else f"{type(cal_error).__name__}: {cal_error}")
    return State(tuple(models), tuple(extra), cal, cal_error, key)


def picture_digest(image32: np.ndarray) -> str:
    """The cache's name for a picture: a hash of its shape and 32x32 bytes."""
    a = np.ascontiguousarray(image32)
    return hashlib.blake2b(repr((a.shape, a.dtype.str)).encode() + a.tobytes(), digest_size=16).hexdigest()


_WARM: weakref.WeakSet = weakref.WeakSet()   # models that made their untimed first passes


def predict_batch(images32: list[np.ndarray], names: list[str] | None = None,
                  state: State | None = None) -> list[Answer]:
    """Every named model (default: the whole zoo) once on a batch of HxWx3 uint8 pictures: per
    picture, predict_many's predictions (same order) and assess's verdict, from one pass per model."""
    state = state or resolve(names)
    n = len(images32)
    x = torch.from_numpy(np.stack([np.ascontiguousarray(im) for im in images32])).permute(0, 3, 1, 2).contiguous()
    preds: list[list[Prediction]] = [[] for _ in range(n)]
    feats = {}
    for name, loaded, err in state.models:
        if loaded is None:
            for p in preds:
                p.append(Prediction(name, error=str(err)))
            continue
        if loaded.model not in _WARM:
            # A model's first passes allocate its buffers and pick its kernels (issue 36: 273 ms the
            # first time, 7.5 ms after): made untimed, so the latency shown is the one that lasts.
            for _ in range(LATENCY_WARMUP):
                familiarity.features_and_logits(loaded.model, x[:1])
            _WARM.add(loaded.model)
        t0 = time.perf_counter()
        feats[name], logits = familiarity.features_and_logits(loaded.model, x)
        probs = logits.softmax(1)
        ms = (time.perf_counter() - t0) * 1000 / n
        classes = loaded.card.class_names
        if probs.shape[1] != len(classes):
            raise ValueError(f"the model predicts {probs.shape[1]} classes, but {len(classes)} names were given")
        for i, p in enumerate(preds):
            p.append(Prediction(name, {c: float(v) for c, v in zip(classes, probs[i])}, ms, batch=n))
    for name, loaded in state.extra:
        feats[name] = familiarity.features_and_logits(loaded.model, x)[0]
    verdicts = familiarity.verdicts(state.calibration, feats) if state.calibration is not None else [None] * n
    return [Answer(p, v, state.calibration_error, n) for p, v in zip(preds, verdicts)]


# ----------------------------------------------------------------------------- the batcher


class Batcher:
    """Concurrent requests share passes: a thread-safe queue, one worker thread, a bounded wait.

    answer(image32) blocks until the picture's Answer is there: from the cache, from a pass
    already under way for the same picture, or from the next batch (at most max_batch
    pictures, gathered while each comes within max_wait_s of the one before, for at most
    max_gather_s after the first)."""

    def __init__(self, max_batch: int = MAX_BATCH, max_wait_s: float = MAX_WAIT_S, cache_size: int = CACHE_SIZE,
                 max_gather_s: float | None = None):
        self.max_batch, self.max_wait_s, self.cache_size = max_batch, max_wait_s, cache_size
        self.max_gather_s = max(MAX_GATHER_S, max_wait_s) if max_gather_s is None else max_gather_s
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple, Answer] = OrderedDict()
        self._pending: dict[tuple, Future] = {}
        self._worker: threading.Thread | None = None
        self.stats = {"requests": 0, "cached": 0, "joined": 0, "passes": 0, "pictures": 0}

    def answer(self, image32: np.ndarray, names: list[str] | None = None,
               timeout: float = ANSWER_TIMEOUT_S) -> Answer:
        state = resolve(names)
        key = (picture_digest(image32), state.key)
        with self._lock:
            self.stats["requests"] += 1
            if (hit := self._cache.get(key)) is not None:
                self._cache.move_to_end(key)
                self.stats["cached"] += 1
                return hit
            future = self._pending.get(key)
            if future is not None:
                self.stats["joined"] += 1
            else:
                future = self._pending[key] = Future()
                self._queue.put((key, np.ascontiguousarray(image32), state))
                if self._worker is None or not self._worker.is_alive():
                    self._worker = threading.Thread(target=self._serve, name="predict-batcher", daemon=True)
                    self._worker.start()
        return future.result(timeout)

    def clear(self) -> None:
        """Forget the cached answers (passes under way still answer their callers)."""
        with self._lock:
            self._cache.clear()

    def _next_batch(self) -> list[tuple]:
        batch = [self._queue.get()]
        deadline = time.monotonic() + self.max_gather_s
        while len(batch) < self.max_batch:
            wait = min(self.max_wait_s, deadline - time.monotonic())
            try:
                batch.append(self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _serve(self) -> None:
        while True:
            batch = self._next_batch()
            groups: dict[tuple, list[tuple]] = {}
            for item in batch:   # requests made under other weights (rare) go in a pass of their own
                groups.setdefault(item[2].key, []).append(item)
            for items in groups.values():
                try:
                    answers: list = predict_batch([im for _, im, _ in items], state=items[0][2])
                    error = None
                except Exception as exc:   # every waiting caller gets it; the worker goes on
                    answers, error = [None] * len(items), exc
                with self._lock:
                    self.stats["passes"] += 1
                    self.stats["pictures"] += len(items)
                    futures = [self._pending.pop(key) for key, _, _ in items]
                    if error is None:
                        for (key, _, _), a in zip(items, answers):
                            self._cache[key] = a
                        while len(self._cache) > self.cache_size:
                            self._cache.popitem(last=False)
                for f, a in zip(futures, answers):
                    f.set_exception(error) if error is not None else f.set_result(a)


SERVER = Batcher()   # the app's: the Predict tab's /predict and /familiarity share it


def answer(image32: np.ndarray, names: list[str] | None = None) -> Answer:
    """The picture's Answer from the app's batcher (see Batcher.answer)."""
    return SERVER.answer(image32, names)
