"""The Predict tab's two answers from one forward pass per model, shared by concurrent requests.

Each upload asks twice: /predict (every model's probabilities) and /familiarity (how CIFAR-like
the picture looks, from the same models' features). ``predict_batch`` runs every model once on
a batch of 32x32 pictures and gives, per picture, both: the logits and the pooled features come
out of the same pass (familiarity.features_and_logits).

``Batcher`` makes the requests of many visitors share passes, model by model: a request waits
in a queue; one worker thread runs the zoo's models one after another, each on every waiting
picture that still needs it. A picture that arrives while a model runs joins the next model at
once and gets the models it missed in the next round, with the others that missed them: nobody
waits for a whole pass made for others (a burst's first upload no longer starts a small pass of
its own that the rest of the class waits behind; tests/test_serve.py). The first request is held
while more keep coming (each within ``max_wait_s`` of the one before, for at most
``max_gather_s``), so that a class uploading at once starts at a useful batch. On two cores ten
models cost ~100 ms for one picture but ~30 ms per picture at batch 20-32. Answers are cached per
picture (the hash of its 32x32 bytes, with the weights and calibration that answered), and a
request for a picture already under way waits for it: /familiarity after /predict of the same
upload costs no new pass.

The answers are those of predict.predict_many and familiarity.assess on the picture alone
(tests/test_serve.py compares them); only the latency differs: a model's pass over its batch,
divided by the number of pictures in it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
import time
import weakref
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import weights, zoo
from . import familiarity
from .predict import LATENCY_WARMUP, Prediction

MAX_BATCH = 64        # pictures in one model's pass: past ~20-32 the per-picture cost no longer falls
MAX_WAIT_S = 0.05     # the first request is held while others come within this of the one before...
MAX_GATHER_S = 0.3    # ...for at most this long
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


_RESOLVE = threading.Lock()   # one thread resolves; the others then find its State
_STATES: dict[tuple, tuple[tuple, State]] = {}   # names -> (files' signature, State)


def _stat(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _signature(names: tuple[str, ...], extra: tuple[str, ...] = ()) -> tuple:
    """What a State of `names` was read from, in a few stat calls: the weights folder (a file
    added or removed), each model's card and weights file, the calibration's two files, and the
    calibrated models' files when they are not named (`extra`); and weights' cache (cleared:
    the models are loaded again)."""
    folder = weights.weights_dir()
    cal = folder / familiarity.DIR_NAME
    files = [folder, cal / "calibration.json", cal / "calibration.safetensors"]
    files += [folder / f"{n}{ext}" for n in (*names, *extra) for ext in (".json", ".safetensors")]
    return (str(folder), weights.cache_generation(), *map(_stat, files))


def resolve(names: list[str] | tuple[str, ...] | None = None) -> State:
    """The models of `names` (default: the whole zoo) as predict.predict_many reads them, and the
    shipped familiarity calibration with its models as familiarity.assess reads them.

    Read again only when a file it came from changed (inode, size or modification time: what
    weights.load's own digest cache trusts): every request asks (the page's event once, an API
    client's /predict and /familiarity each), and a full read (paths resolved, each file's digest
    looked up) cost 0.83 ms of the interpreter a class shares."""
    names = tuple(names or zoo.names())
    with _RESOLVE:
        hit = _STATES.get(names)
        extra = tuple(n for n, _ in hit[1].extra) if hit is not None else ()
        signature = _signature(names, extra)   # before reading: a file changed meanwhile is read again
        if hit is not None and hit[0] == signature:
            return hit[1]
        state = _read_state(names)
        if (now := tuple(n for n, _ in state.extra)) != extra:
            signature = _signature(names, now)
        _STATES[names] = (signature, state)
        return state


def _read_state(names: tuple[str, ...]) -> State:
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


def passes(state: State) -> list[tuple[str, object, bool]]:
    """What a picture goes through: (name, weights.LoadedModel, whether its prediction is part of
    the answer) of every loaded model, in the zoo's order, then of the calibrated models that were
    not named (their features only)."""
    return [(n, m, True) for n, m, _ in state.models if m is not None] + [(n, m, False) for n, m in state.extra]


def model_pass(loaded, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """One model on a batch of uint8 NCHW pictures: (pooled features N x D, probabilities N x C,
    ms per picture)."""
    if loaded.model not in _WARM:
        # A model's first passes allocate its buffers and pick its kernels (issue 36: 273 ms the
        # first time, 7.5 ms after): made untimed, so the latency shown is the one that lasts.
        for _ in range(LATENCY_WARMUP):
            familiarity.features_and_logits(loaded.model, x[:1])
        _WARM.add(loaded.model)
    t0 = time.perf_counter()
    # Channels-last pictures: the convolutions run ~8% faster over the zoo at 30 pictures
    # (docs/benchmarks.md), with the weights as they are (a channels-last copy: 2% more, 144 MB).
    feats, logits = familiarity.features_and_logits(loaded.model, x.contiguous(memory_format=torch.channels_last))
    probs = logits.softmax(1)
    ms = (time.perf_counter() - t0) * 1000 / len(x)
    classes = loaded.card.class_names
    if probs.shape[1] != len(classes):
        raise ValueError(f"the model predicts {probs.shape[1]} classes, but {len(classes)} names were given")
    return feats, probs, ms


def to_batch(images32: list[np.ndarray]) -> torch.Tensor:
    """HxWx3 uint8 pictures -> an N x 3 x H x W uint8 tensor."""
    return torch.from_numpy(np.stack([np.ascontiguousarray(im) for im in images32])).permute(0, 3, 1, 2).contiguous()


def _prediction(name: str, loaded, probs: torch.Tensor, ms: float, batch: int) -> Prediction:
    return Prediction(name, dict(zip(loaded.card.class_names, probs.tolist())), ms, batch=batch)


def _answers(state: State, preds: list[dict[str, Prediction]], feats: dict[str, torch.Tensor]) -> list[Answer]:
    """Answers of pictures whose passes are all made: `preds` per picture {model: Prediction},
    `feats` {model: N x D} for every model of passes(state)."""
    verdicts = (familiarity.verdicts(state.calibration, feats) if state.calibration is not None
                else [None] * len(preds))
    out = []
    for got, verdict in zip(preds, verdicts):
        row = [got[n] if m is not None else Prediction(n, error=str(e)) for n, m, e in state.models]
        out.append(Answer(row, verdict, state.calibration_error,
                          max((p.batch for p in got.values()), default=1)))
    return out


def predict_batch(images32: list[np.ndarray], names: list[str] | None = None,
                  state: State | None = None) -> list[Answer]:
    """Every named model (default: the whole zoo) once on a batch of HxWx3 uint8 pictures: per
    picture, predict_many's predictions (same order) and assess's verdict, from one pass per model."""
    state = state or resolve(names)
    n = len(images32)
    x = to_batch(images32)
    preds: list[dict[str, Prediction]] = [{} for _ in range(n)]
    feats = {}
    for name, loaded, shown in passes(state):
        feats[name], probs, ms = model_pass(loaded, x)
        if shown:
            for i, p in enumerate(preds):
                p[name] = _prediction(name, loaded, probs[i], ms, n)
    return _answers(state, preds, feats)


# ----------------------------------------------------------------------------- the batcher


@dataclass(eq=False)
class _Request:
    """A picture under way in the batcher: the models still to run on it, and what they gave."""

    key: tuple
    x: torch.Tensor   # 3 x 32 x 32 uint8
    state: State
    future: Future
    todo: list[str]   # passes(state)'s names not yet run on it
    preds: dict[str, Prediction] = field(default_factory=dict)
    feats: dict[str, torch.Tensor] = field(default_factory=dict)


class Batcher:
    """Concurrent requests share passes, model by model: a thread-safe queue, one worker thread.

    answer(image32) blocks until the picture's Answer is there: from the cache, from a picture
    already under way, or from the worker. The worker holds its first request while more keep
    coming (each within max_wait_s of the one before, for at most max_gather_s), then runs the
    models one at a time, each on the waiting pictures that still need it (at most max_batch, the
    oldest first); pictures that come meanwhile join the next model, and get the ones they missed
    in the next round."""

    def __init__(self, max_batch: int = MAX_BATCH, max_wait_s: float = MAX_WAIT_S, cache_size: int = CACHE_SIZE,
                 max_gather_s: float | None = None):
        self.max_batch, self.max_wait_s, self.cache_size = max_batch, max_wait_s, cache_size
        self.max_gather_s = max(MAX_GATHER_S, max_wait_s) if max_gather_s is None else max_gather_s
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple, Answer] = OrderedDict()
        self._pending: dict[tuple, Future] = {}
        self._worker: threading.Thread | None = None
        # model_passes: one model on a batch; pictures: answered by the worker (not from the cache)
        self.stats = {"requests": 0, "cached": 0, "joined": 0, "model_passes": 0, "pictures": 0}

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
                x = to_batch([image32])[0]
                self._queue.put(_Request(key, x, state, future, [n for n, _, _ in passes(state)]))
                if self._worker is None or not self._worker.is_alive():
                    self._worker = threading.Thread(target=self._serve, name="predict-batcher", daemon=True)
                    self._worker.start()
        return future.result(timeout)

    def clear(self) -> None:
        """Forget the cached answers (pictures under way still answer their callers)."""
        with self._lock:
            self._cache.clear()

    def _arrivals(self, wait: bool) -> list[_Request]:
        """What the queue holds now; with `wait`, the next request and those that keep coming
        after it (each within max_wait_s of the one before, for at most max_gather_s)."""
        if not wait:
            out = []
            with contextlib.suppress(queue.Empty):
                while True:
                    out.append(self._queue.get_nowait())
            return out
        batch = [self._queue.get()]
        deadline = time.monotonic() + self.max_gather_s
        while len(batch) < self.max_batch:
            left = min(self.max_wait_s, deadline - time.monotonic())
            try:
                batch.append(self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _serve(self) -> None:
        active: list[_Request] = []
        cursor: dict[tuple, int] = {}   # per state: where the next round goes on
        while True:
            active += self._arrivals(wait=not active)
            state = active[0].state   # the oldest request's weights first (others are rare)
            group = [r for r in active if r.state.key == state.key]
            order = passes(state)
            start = cursor.get(state.key, 0)
            batch: list[_Request] = []
            for step in range(len(order)):   # the next model, from the cursor on, that a picture needs
                name, loaded, shown = order[(start + step) % len(order)]
                batch = [r for r in group if name in r.todo][:self.max_batch]
                if batch:
                    cursor[state.key] = (start + step + 1) % len(order)
                    break
            failed: list[tuple[_Request, Exception]] = []
            if batch:
                try:
                    feats, probs, ms = model_pass(loaded, torch.stack([r.x for r in batch]))
                    preds = [_prediction(name, loaded, probs[i], ms, len(batch)) if shown else None
                             for i in range(len(batch))]
                except Exception as exc:   # its pictures' callers get it; the worker goes on
                    failed = [(r, exc) for r in batch]
                else:
                    for r, f, pred in zip(batch, feats, preds):
                        r.todo.remove(name)
                        r.feats[name] = f
                        if pred is not None:
                            r.preds[name] = pred
            done = [r for r in group if not r.todo]   # a failed pass left its name in its pictures' todo
            answers = []
            if done:
                try:
                    feats = {n: torch.stack([r.feats[n] for r in done]) for n, _, _ in order}
                    answers = _answers(state, [r.preds for r in done], feats)
                except Exception as exc:
                    failed += [(r, exc) for r in done]
                    done = []
            finished = [*done, *(r for r, _ in failed)]
            active = [r for r in active if r not in finished]   # _Request compares by identity
            if not any(r.state.key == state.key for r in active):
                cursor.pop(state.key, None)
            with self._lock:
                self.stats["model_passes"] += bool(batch)
                self.stats["pictures"] += len(done)
                for r, a in zip(done, answers):
                    self._cache[r.key] = a
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
                for r in finished:
                    self._pending.pop(r.key, None)
            for r, a in zip(done, answers):
                r.future.set_result(a)
            for r, exc in failed:
                r.future.set_exception(exc)


SERVER = Batcher()   # the app's: the Predict tab's /predict and /familiarity share it


def answer(image32: np.ndarray, names: list[str] | None = None) -> Answer:
    """The picture's Answer from the app's batcher (see Batcher.answer)."""
    return SERVER.answer(image32, names)
