"""How CIFAR-like a picture looks to the models, calibrated on real CIFAR-10 images.

The models always answer with one of the ten classes, however foreign the picture: a photo
of a person gets "truck 36%", and the models are often *more* confident on noise than on
real photos, so the softmax or the energy of the outputs cannot tell (measured on the ten
shipped models: noise passes a 5%-false-alarm threshold on the ensemble's max probability
every time). What does tell is where a picture lands in each model's feature space:

1. Per model, the Mahalanobis score of Lee et al. (NeurIPS 2018, "A simple unified framework
   for detecting out-of-distribution samples"): the squared distance of the pooled last
   feature map to the nearest class mean, under one covariance shared by the classes,
   fitted on training images.
2. Per model, that score as a percentile among real validation images (0 = further out
   than any of them), so models with different feature scales become comparable.
3. Combined over the models by Fisher's method (the sum of the log percentiles): one model
   alone calling a picture odd is weak evidence, most of them together is strong.

The threshold is the 5th percentile of the combined score on validation images the
percentiles were not taken from, so about 1 CIFAR-10 picture in 20 is flagged by design;
the rate on the test split is measured and stored beside it. Everything is fitted once by
``python -m cifar_demo familiarity --calibrate`` and shipped in weights/familiarity/; a
calibration made for other weights than the shipped ones (sha256 in its card) is refused.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .. import fsio, weights
from ..data import pictures, split_digest
from ..hardware import hardware_info
from ..weights import weights_dir
from ..zoo import last_feature_map

METHOD = "mahalanobis-percentile-fisher"
FALSE_ALARM_TARGET = 0.05          # on validation images, by construction of the threshold
FIT_IMAGES = 10_000                # training images for the class means and covariance
SHRINK = 0.01                      # covariance + SHRINK * mean variance * I: D can reach 512
                                   # dimensions and a tied covariance of 10k points is near-singular
DIR_NAME = "familiarity"           # weights/familiarity/: not a model, so not weights/*.json
COMMAND = "python -m cifar_demo familiarity --calibrate --data DIR"


class FamiliarityError(RuntimeError):
    """No usable calibration: missing, or made for other weights."""


# ----------------------------------------------------------------------------- per model


_LAYERS: "weakref.WeakKeyDictionary[nn.Module, nn.Module]" = weakref.WeakKeyDictionary()


def feature_layer(model: nn.Module) -> nn.Module:
    """The module whose output is the model's last spatial feature map (found once per model:
    finding it costs a forward pass)."""

    if model not in _LAYERS:
        _LAYERS[model] = dict(model.named_modules())[last_feature_map(model)]
    return _LAYERS[model]


@torch.inference_mode()
def features_and_logits(model: nn.Module, images: torch.Tensor, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled last feature map N x D, logits N x C) of uint8 NCHW images, in one forward pass.
    The hook keeps this thread's pass only: another thread may run the same (cached) model now."""
    feats: list[torch.Tensor] = []
    caller = threading.get_ident()

    def keep(_m, _i, o):
        if threading.get_ident() == caller:
            feats.append(o.float().mean((2, 3)))

    hook = feature_layer(model).register_forward_hook(keep)
    try:
        logits = [model(images[i:i + batch]).float() for i in range(0, len(images), batch)]
    finally:
        hook.remove()
    return torch.cat(feats), torch.cat(logits)


@dataclass
class ModelStats:
    """One model's class means, shared precision matrix and reference (validation) scores."""

    means: torch.Tensor        # C x D
    precision: torch.Tensor    # D x D, inverse of the shrunk shared covariance
    reference: torch.Tensor    # sorted Mahalanobis scores of the reference validation images

    @classmethod
    def fit(cls, feats: torch.Tensor, labels: torch.Tensor, num_classes: int) -> "ModelStats":
        means = torch.stack([feats[labels == c].mean(0) for c in range(num_classes)])
        centred = feats - means[labels]
        cov = centred.T @ centred / len(centred)
        cov = cov + SHRINK * cov.diagonal().mean() * torch.eye(cov.shape[0])
        precision = torch.linalg.inv(cov.double()).float()
        return cls(means, precision, torch.empty(0))

    def score(self, feats: torch.Tensor) -> torch.Tensor:
        """Minus the squared Mahalanobis distance to the nearest class mean: higher = more familiar."""
        diff = feats[:, None, :] - self.means[None]
        d2 = torch.einsum("nkd,de,nke->nk", diff, self.precision, diff)
        return -d2.min(1).values

    def percentile(self, scores: torch.Tensor) -> torch.Tensor:
        """The fraction of reference images scoring below, in (0, 1] (never 0: its log is finite)."""
        below = torch.searchsorted(self.reference, scores.contiguous())
        return (below.float() + 1) / (len(self.reference) + 1)


def combine(percentiles: Iterable[torch.Tensor]) -> torch.Tensor:
    """Fisher's method: the sum over models of log percentiles (0 is the most familiar)."""
    return torch.stack([p.log() for p in percentiles]).sum(0)


# ----------------------------------------------------------------------------- calibration


@dataclass
class Calibration:
    """Everything the score needs, and the figures it was judged by."""

    models: dict[str, ModelStats]
    threshold: float                       # combined score below this = unfamiliar
    card: dict[str, Any] = field(default_factory=dict)
    # Each model's percentiles of the threshold's and the test slice's images: what the
    # threshold and the test rate were computed from, kept so that a recalibration after new
    # weights of some models recomputes only those (calibrate(previous=...)).
    threshold_pct: dict[str, torch.Tensor] = field(default_factory=dict)
    test_pct: dict[str, torch.Tensor] = field(default_factory=dict)

    def scores(self, per_model_feats: dict[str, torch.Tensor]) -> torch.Tensor:
        missing = sorted(set(self.models) - set(per_model_feats))
        if missing:
            raise FamiliarityError(f"familiarity needs every calibrated model; missing: {', '.join(missing)}")
        return combine(st.percentile(st.score(per_model_feats[m])) for m, st in self.models.items())

    # -- files ------------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        tensors = {}
        for name, st in self.models.items():
            tensors.update({f"{name}.means": st.means.contiguous(), f"{name}.precision": st.precision.contiguous(),
                            f"{name}.reference": st.reference.contiguous()})
            if name in self.threshold_pct and name in self.test_pct:
                tensors.update({f"{name}.threshold_pct": self.threshold_pct[name].contiguous(),
                                f"{name}.test_pct": self.test_pct[name].contiguous()})
        fsio.atomic_write(folder / "calibration.safetensors", lambda tmp: save_file(tensors, str(tmp)))
        card = dict(self.card, threshold=self.threshold,
                    tensors_sha256=fsio.sha256_file(folder / "calibration.safetensors"))
        fsio.atomic_write_text(folder / "calibration.json", json.dumps(card, indent=2, sort_keys=True))
        return folder

    @classmethod
    def load(cls, folder: str | Path, weights_sha256: dict[str, str] | None = None) -> "Calibration":
        """Read weights/familiarity/; refuses a tampered file or one made for other weights."""
        folder = Path(folder)
        card_path, tensor_path = folder / "calibration.json", folder / "calibration.safetensors"
        if not card_path.is_file() or not tensor_path.is_file():
            raise FamiliarityError(f"no familiarity calibration in {folder}; make one with `{COMMAND}`")
        card = json.loads(card_path.read_text(encoding="utf-8"))
        if fsio.sha256_file(tensor_path) != card.get("tensors_sha256"):
            raise FamiliarityError(f"{tensor_path} does not match its card's sha256; recalibrate with `{COMMAND}`")
        if weights_sha256 is not None:
            stale = sorted(m for m, sha in card["weights_sha256"].items() if weights_sha256.get(m) != sha)
            if stale:
                raise FamiliarityError(f"the familiarity calibration was made for other weights of "
                                       f"{', '.join(stale)}; recalibrate with `{COMMAND}`")
        t = load_file(str(tensor_path))
        models = {m: ModelStats(t[f"{m}.means"], t[f"{m}.precision"], t[f"{m}.reference"])
                  for m in card["weights_sha256"]}
        kept = [m for m in models if f"{m}.threshold_pct" in t and f"{m}.test_pct" in t]   # older files: none
        return cls(models, float(card["threshold"]), card, {m: t[f"{m}.threshold_pct"] for m in kept},
                   {m: t[f"{m}.test_pct"] for m in kept})


def images_digest(data, seed: int, test_step: int) -> str:
    """What a model's fitted part depends on besides its weights: the decoded images and labels
    of all three splits, the method and its settings. Equal digests = identical inputs."""

    h = hashlib.sha256(f"{METHOD} fit={FIT_IMAGES} shrink={SHRINK} seed={seed} test_step={test_step}".encode())
    for split in (data.train, data.val, data.test):
        h.update(split_digest(split).encode())
    return h.hexdigest()[:32]


def calibrate(loaded: dict[str, tuple[nn.Module, Any]], data, *, seed: int = 0, test_step: int = 5,
              progress=None, previous: Calibration | None = None) -> Calibration:
    """Fit on `data` (a data.CifarData with a validation split) for the given models.

    loaded: {name: (model in eval mode, its ModelCard)}. Class means and covariance come
    from FIT_IMAGES training images; the percentile references from every other validation
    image; the threshold from the rest. Test images (every `test_step`-th:
    the splits are stored class by class, so that is a class-balanced slice) are only scored,
    to report the false-alarm rate the page states.

    previous: an earlier calibration. A model whose weights (sha256) and inputs (images_digest)
    are the ones it was fitted on there is not fitted again: its statistics and percentiles are
    taken from it, exactly what fitting again would give (the fit is deterministic in `seed`).
    The threshold and the rates are always recomputed over all the models.
    """
    if len(data.val) < 200:
        raise ValueError("calibration needs a validation split (val_size >= 200)")
    t0 = time.perf_counter()
    digest = images_digest(data, seed, test_step)
    g = torch.Generator().manual_seed(seed)
    fit_idx = torch.randperm(len(data.train), generator=g)[:FIT_IMAGES]
    # Alternate images, not halves: splits are stored class by class, so halves would hold
    # different classes.
    ref_x, thr_x = data.val.images[0::2], data.val.images[1::2]
    test_x = data.test.images[::test_step]
    models, thr_pct, test_pct, reused = {}, {}, {}, []
    for i, (name, (model, card)) in enumerate(loaded.items()):
        if _reusable(previous, name, card.sha256, digest):
            models[name] = previous.models[name]
            thr_pct[name], test_pct[name] = previous.threshold_pct[name], previous.test_pct[name]
            reused.append(name)
            continue
        if progress:
            progress(i, len(loaded), name)
        fit_f, _ = features_and_logits(model, data.train.images[fit_idx])
        st = ModelStats.fit(fit_f, data.train.labels[fit_idx], len(data.classes))
        st.reference = st.score(features_and_logits(model, ref_x)[0]).sort().values
        thr_pct[name] = st.percentile(st.score(features_and_logits(model, thr_x)[0]))
        test_pct[name] = st.percentile(st.score(features_and_logits(model, test_x)[0]))
        models[name] = st
    val_comb, test_comb = combine(thr_pct.values()), combine(test_pct.values())
    threshold = float(torch.quantile(val_comb, FALSE_ALARM_TARGET))
    card = {
        "method": METHOD, "reference": "Lee et al. 2018 (Mahalanobis), combined by Fisher's method",
        "weights_sha256": {m: c.sha256 for m, (_, c) in loaded.items()},
        "dataset": data.source.label, "dataset_fingerprint": data.source.fingerprint, "images_digest": digest,
        "fit_images": len(fit_idx), "reference_images": len(ref_x), "threshold_images": len(thr_x),
        "false_alarm_val": float((val_comb < threshold).float().mean()),
        "false_alarm_test": float((test_comb < threshold).float().mean()), "test_images": len(test_comb),
        "shrink": SHRINK, "seed": seed, "command": COMMAND, "seconds": round(time.perf_counter() - t0, 1),
        "reused": reused, "hardware": hardware_info(), "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    return Calibration(models, threshold, card, thr_pct, test_pct)


def _reusable(previous: Calibration | None, name: str, sha256: str, digest: str) -> bool:
    return (previous is not None and previous.card.get("images_digest") == digest
            and previous.card.get("weights_sha256", {}).get(name) == sha256
            and name in previous.threshold_pct and name in previous.test_pct)


# ----------------------------------------------------------------------------- use


def calibration_dir() -> Path:
    return weights_dir() / DIR_NAME


_CACHED: dict[str, Calibration] = {}


def shipped_calibration() -> Calibration:
    """The shipped calibration, checked against the shipped cards' sha256 (cached per process)."""
    folder = calibration_dir()
    if str(folder) not in _CACHED:
        shas = {n: weights.card_for(n).sha256 for n in weights.available()}
        _CACHED[str(folder)] = Calibration.load(folder, shas)
    return _CACHED[str(folder)]


@dataclass
class Verdict:
    unfamiliar: bool
    score: float               # combined score (0 = as familiar as it gets; lower = stranger)
    threshold: float
    false_alarm_test: float    # share of CIFAR-10 test images flagged at this threshold
    per_model: dict[str, float]  # each model's percentile among real validation images

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def assess(image32: np.ndarray, calibration: Calibration | None = None,
           loaded: dict[str, nn.Module] | None = None) -> Verdict:
    """How CIFAR-like one 32x32 HxWx3 uint8 image is to the calibrated models."""
    cal = calibration or shipped_calibration()
    x = pictures.to_tensor(image32)
    feats = {}
    for name in cal.models:
        model = loaded[name] if loaded else weights.load(name).model
        feats[name] = features_and_logits(model, x)[0]
    return verdicts(cal, feats)[0]


def verdicts(cal: Calibration, feats: dict[str, torch.Tensor]) -> list[Verdict]:
    """One Verdict per picture, from each calibrated model's pooled features of the pictures (N x D)."""
    per_model = {m: st.percentile(st.score(feats[m])) for m, st in cal.models.items()}
    scores = cal.scores(feats)
    rate = float(cal.card.get("false_alarm_test", float("nan")))
    return [Verdict(float(s) < cal.threshold, float(s), cal.threshold, rate,
                    {m: float(pct[i]) for m, pct in per_model.items()}) for i, s in enumerate(scores)]
