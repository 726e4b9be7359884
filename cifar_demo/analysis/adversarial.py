"""Adversarial examples: FGSM and PGD in the L-infinity ball, one picture or a test slice.

epsilon is in units of 1/255 (one step of an 8-bit colour value): eps 4 lets every pixel's
every colour move by at most 4 levels, a change people do not see.

- FGSM (Goodfellow et al. 2015): one step, x' = x + eps * sign(grad_x loss).
- PGD (Madry et al. 2018): a random start in the ball, then `steps` steps of size alpha =
  2.5 * eps / steps (their rule), each followed by the projection back into the ball and [0, 1].

Written here (the few lines below) rather than taken from torchattacks: torchattacks 3.5.1 pins
requests~=2.25.1, which would downgrade the requests that gradio and huggingface_hub need. The
loss is the cross-entropy against the true label (a test slice) or, for a picture without one,
against the model's own answer (push it away from what it says). Gradients are taken with
torch.autograd.grad with respect to the input only: the model's weights and buffers are untouched.
Adversarial pictures are rounded to 8-bit values (what a saved PNG holds), which keeps them in
the ball: x is on the 1/255 grid and so are its bounds.

Accuracy against epsilon on analysis.robustness's class-balanced test slice is cached per
(weights sha256, slice digest, method, steps, eps) in <cache>/adversarial/, as robustness does.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import data as data_mod
from .. import fsio, weights
from ..common import CLASSES
from . import robustness
from .evalcache import Target

METHODS = ("fgsm", "pgd")
MAX_EPS = 32            # 1/255 units: far beyond "invisible"; bounds what an event may ask for
MAX_STEPS = 50
PGD_STEPS = 10          # Madry et al. use 7-20 on CIFAR-10: 10 is the common middle
DEFAULT_EPS = (0, 1, 2, 4, 8)
DEFAULT_N = 200         # 20 per class: PGD costs `steps` forward+backward passes per image
CACHE_VERSION = 1

Progress = Callable[[int, int], None]


def check(method: str, eps: float, steps: int = PGD_STEPS) -> tuple[str, float, int]:
    """The arguments, checked (they may come from a raw HTTP request): ValueError for people."""
    method = str(method).lower()
    if method not in METHODS:
        raise ValueError(f"The attack must be one of {', '.join(METHODS)}.")
    try:
        eps, steps = float(eps), int(steps)
    except (TypeError, ValueError):
        raise ValueError("epsilon and the number of steps must be numbers.") from None
    if not 0 <= eps <= MAX_EPS:
        raise ValueError(f"epsilon must lie between 0 and {MAX_EPS} (in 1/255 steps).")
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"PGD takes between 1 and {MAX_STEPS} steps.")
    return method, eps, steps


def _loss_grad(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x).float(), y)
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def attack(model: nn.Module, x: Tensor, y: Tensor, method: str = "pgd", eps: float = 4, steps: int = PGD_STEPS,
           seed: int = 0) -> Tensor:
    """Adversarial versions of `x` (float N,3,H,W in [0, 1]) for labels `y`, within `eps`/255 of
    `x` in every pixel (L-infinity), rounded to 8-bit values. The model must be in eval mode."""
    method, eps, steps = check(method, eps, steps)
    x = x.detach().float()
    if eps == 0:
        return x.clone()
    e = eps / 255
    lo, hi = (x - e).clamp(0, 1), (x + e).clamp(0, 1)
    if method == "fgsm":
        adv = x + e * _loss_grad(model, x, y).sign()
    else:
        alpha = 2.5 * e / steps
        g = torch.Generator().manual_seed(seed)
        adv = x + (torch.rand(x.shape, generator=g) * 2 - 1).to(x.device) * e
        for _ in range(steps):
            adv = torch.max(torch.min(adv.clamp(0, 1), hi), lo)
            adv = adv + alpha * _loss_grad(model, adv, y).sign()
    adv = torch.max(torch.min(adv, hi), lo)
    return torch.round(adv * 255) / 255


def amplified(x: Tensor | np.ndarray, adv: Tensor | np.ndarray, eps: float) -> tuple[np.ndarray, float]:
    """(the perturbation as an HxWx3 uint8 picture, the factor): grey is no change, and +-eps maps
    to the ends of the range, so the factor is 127.5 / eps (x8 at eps 16, x32 at eps 4)."""
    delta = np.asarray(adv, np.float32) - np.asarray(x, np.float32)   # HxWx3, in 0..255 units
    factor = 127.5 / eps if eps > 0 else 1.0
    return np.clip(127.5 + delta * factor, 0, 255).round().astype(np.uint8), factor


# ----------------------------------------------------------------------------- one picture

def shipped_models() -> list[str]:
    """The shipped weights of CIFAR-10's classes: the models an attack may target and be tried on."""
    out = []
    for name in weights.available():
        try:
            if tuple(weights.card_for(name).class_names) == CLASSES:
                out.append(name)
        except weights.WeightsError:
            continue
    return out


def shipped_model(name) -> nn.Module:
    """A shipped CIFAR-10 model by name (weights.load: verified, cached); anything else, whatever it
    names on the server, gets the same ValueError."""
    if not isinstance(name, str) or name not in shipped_models():
        raise ValueError("Pick one of the shipped CIFAR-10 models.")
    return weights.load(name).model


@dataclass
class PictureAttack:
    model: str
    method: str
    eps: float
    original: np.ndarray        # HxWx3 uint8
    adversarial: np.ndarray     # HxWx3 uint8, within eps of original
    perturbation: np.ndarray    # HxWx3 uint8, amplified
    factor: float
    label: str                  # what the attack pushed away from (the model's own answer)
    answers: list[dict] = field(default_factory=list)  # per model: model, before, p_before, after, p_after


@torch.inference_mode()
def _top1(model: nn.Module, image: np.ndarray) -> tuple[int, float]:
    probs = model(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255).float().softmax(1)[0]
    return int(probs.argmax()), float(probs.max())


def attack_picture(image32: np.ndarray, model: nn.Module, name: str, method: str = "pgd", eps: float = 4,
                   steps: int = PGD_STEPS, others: dict[str, nn.Module] | None = None,
                   classes=CLASSES) -> PictureAttack:
    """Attack one 32x32 picture (HxWx3 uint8) on `model`, then ask it and every model of `others`
    (name -> model, CIFAR-10's classes) what they see before and after (the attack's transfer)."""
    method, eps, steps = check(method, eps, steps)
    image = np.ascontiguousarray(np.asarray(image32, np.uint8))
    if image.shape != (32, 32, 3):
        raise ValueError("The picture must be 32x32 with 3 colours.")
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    own, _ = _top1(model, image)
    adv = attack(model, x, torch.tensor([own]), method, eps, steps)
    adversarial = (adv[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    view, factor = amplified(image, adversarial, eps)
    out = PictureAttack(name, method, eps, image, adversarial, view, factor, classes[own])
    for who, m in {name: model, **{k: v for k, v in (others or {}).items() if k != name}}.items():
        (b, pb), (a, pa) = _top1(m, image), _top1(m, adversarial)
        out.answers.append({"model": who, "before": classes[b], "p_before": pb, "after": classes[a], "p_after": pa})
    return out


# ----------------------------------------------------------------------------- accuracy against epsilon

def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    return data_mod.cache_root(cache) / "adversarial"


def cache_key(target: Target, slice_digest: str, method: str, steps: int, eps: float) -> str:
    steps = steps if method == "pgd" else 1
    return f"{target.model}-{target.sha256[:24]}-{slice_digest[:16]}-{method}{steps}-eps{eps:g}-v{CACHE_VERSION}"


def _load(key: str, cache) -> float | None:
    try:
        return float(json.loads((cache_dir(cache) / f"{key}.json").read_text(encoding="utf-8"))["accuracy"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as e:
        warnings.warn(f"ignoring unreadable adversarial cache entry {key}: {e}")
        return None


def _store(key: str, record: dict, cache) -> None:
    try:
        fsio.atomic_write_text(cache_dir(cache) / f"{key}.json", json.dumps(record))
    except OSError as e:
        warnings.warn(f"could not write the adversarial cache {key}: {e}")


def slice_accuracy(model: nn.Module, split: data_mod.Split, method: str, eps: float, steps: int = PGD_STEPS,
                   batch: int = 100) -> float:
    """Accuracy on `split` after attacking each image against its true label."""
    hits = 0
    for s in range(0, len(split), batch):
        x = split.images[s:s + batch].float() / 255
        y = split.labels[s:s + batch]
        adv = attack(model, x, y, method, eps, steps, seed=s)
        with torch.inference_mode():
            hits += int((model(adv).argmax(1) == y).sum())
    return hits / len(split)


def compute(targets: Sequence[Target], method: str = "pgd", eps: Iterable[float] = DEFAULT_EPS, *,
            split: data_mod.Split, steps: int = PGD_STEPS, dataset: str = "", cache=None,
            progress: Progress | None = None, cached_only: bool = False) -> dict:
    """Each target's accuracy on `split` at each epsilon (None where not cached and `cached_only`).
    Returns plain data: {"models": {name: {"model", "sha256", "accuracy": [per eps]}}, "eps", "method",
    "steps", "slice": {"n", "digest", "dataset"}, "computed", "seconds"}."""
    t0 = time.perf_counter()
    eps = sorted({check(method, e, steps)[1] for e in eps})
    method = method.lower()
    digest = data_mod.split_digest(split)
    found = {(t.name, e): _load(cache_key(t, digest, method, steps, e), cache) for t in targets for e in eps}
    todo = [] if cached_only else [(t, e) for t in targets for e in eps if found[t.name, e] is None]
    done = 0
    for t, e in todo:
        model = robustness.load_model(t)
        found[t.name, e] = slice_accuracy(model, split, method, e, steps)
        _store(cache_key(t, digest, method, steps, e),
               {"model": t.model, "sha256": t.sha256, "slice": digest, "method": method, "steps": steps, "eps": e,
                "accuracy": found[t.name, e]}, cache)
        done += 1
        if progress is not None:
            progress(done, len(todo))
    return {"models": {t.name: {"model": t.model, "sha256": t.sha256, "accuracy": [found[t.name, e] for e in eps]}
                       for t in targets},
            "eps": eps, "method": method, "steps": steps if method == "pgd" else 1,
            "slice": {"n": len(split), "digest": digest, "dataset": dataset},
            "computed": done, "seconds": round(time.perf_counter() - t0, 3)}


def compute_shipped(names: Iterable[str] | None = None, method: str = "pgd", eps: Iterable[float] = DEFAULT_EPS, *,
                    source=None, n: int = DEFAULT_N, steps: int = PGD_STEPS, cache=None,
                    progress: Progress | None = None, cached_only: bool = False) -> dict:
    """compute() for shipped weights on robustness's class-balanced slice of `source`'s test split."""
    src = source if isinstance(source, data_mod.DataSource) else data_mod.resolve_source(source, download=False)
    return compute(robustness.shipped_targets(names), method, eps, split=robustness.test_slice(src, n), steps=steps,
                   dataset=src.label, cache=cache, progress=progress, cached_only=cached_only)


def format_table(result: dict) -> str:
    """Models as rows, epsilon as columns (accuracy in %)."""
    what = "FGSM" if result["method"] == "fgsm" else f"PGD ({result['steps']} steps)"
    head = f"{'model':15s}" + "".join(f"{'eps ' + format(e, 'g'):>9s}" for e in result["eps"])
    rows = [f"{name:15s}" + "".join(f"{'-' if a is None else format(100 * a, '.1f') + '%':>9s}" for a in m["accuracy"])
            for name, m in result["models"].items()]
    return "\n".join([f"{what} accuracy on {result['slice']['n']} test images of {result['slice']['dataset']} "
                      "(class-balanced; eps in 1/255):", head, *rows])
