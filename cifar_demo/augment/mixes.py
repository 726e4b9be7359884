"""Batch mixes: MixUp, CutMix, RICAP, and BatchMixer, which picks at most one per batch.

Written here rather than taken from torchvision.transforms.v2.MixUp / CutMix, whose
pairing (each image with its neighbour, batch.roll(1)) and label rule we follow, because
those classes (a) draw from the global RNG, with no torch.Generator, (b) fail on uint8
batches (MixUp blends in place), and (c) keep lambda and the box internal, which the
app's preview needs to set from a slider. The tests check MixUp against torchvision's.
Pairing by roll relies on shuffled batches, as torchvision's does.
"""

from __future__ import annotations

import math
import random

import torch
from torch import Tensor

from ..common import NUM_CLASSES
from .ops import rand, randint

MIXES = ("ricap", "mixup", "cutmix")
# Beta(alpha, alpha) parameters. 1.0 (uniform lambda) for MixUp and CutMix, as their
# papers used on CIFAR; 0.3 for RICAP, the value Takahashi et al. found best on CIFAR-10.
DEFAULT_ALPHA: dict[str, float] = {"mixup": 1.0, "cutmix": 1.0, "ricap": 0.3}


def _beta(alpha: float, generator: torch.Generator | None, device: torch.device) -> float:
    """One Beta(alpha, alpha) draw that follows `generator` (torch has no seeded Beta)."""
    seed = int(randint(2**31 - 1, 1, device, generator).item())
    return random.Random(seed).betavariate(alpha, alpha)


def _soft(labels: Tensor, num_classes: int) -> Tensor:
    """Class indices (N,) or soft labels (N, C) -> float soft labels (N, C)."""
    if labels.ndim == 2:
        return labels.float()
    return torch.nn.functional.one_hot(labels.long(), num_classes).float()


def mixup(images: Tensor, labels: Tensor, num_classes: int = NUM_CLASSES, alpha: float = 1.0,
          generator: torch.Generator | None = None, lam: float | None = None) -> tuple[Tensor, Tensor]:
    """MixUp (Zhang et al. 2018): image i blended with image i-1 by lambda ~ Beta(alpha, alpha).

    uint8 batches are blended in float and rounded back, so a pixel may differ from the
    exact blend by half a grey level; the soft targets use lambda itself.
    """
    if lam is None:
        lam = _beta(alpha, generator, images.device)
    mixed = images.float() * lam + images.roll(1, 0).float() * (1.0 - lam)
    if images.dtype == torch.uint8:
        mixed = mixed.round_().clamp_(0, 255).to(torch.uint8)
    soft = _soft(labels, num_classes)
    return mixed.to(images.dtype), soft * lam + soft.roll(1, 0) * (1.0 - lam)


def cutmix_box(h: int, w: int, lam: float, generator: torch.Generator | None = None,
               device: torch.device = torch.device("cpu")) -> tuple[int, int, int, int]:
    """(y1, x1, y2, x2) of a box of area about (1 - lam) * h * w, centred anywhere, clipped."""
    # Same box rule as torchvision's CutMix: half-sides r*H and r*W, r = sqrt(1 - lam) / 2.
    r = 0.5 * math.sqrt(1.0 - lam)
    cy, cx = int(randint(h, 1, device, generator)), int(randint(w, 1, device, generator))
    rh, rw = int(r * h), int(r * w)
    return max(cy - rh, 0), max(cx - rw, 0), min(cy + rh, h), min(cx + rw, w)


def cutmix(images: Tensor, labels: Tensor, num_classes: int = NUM_CLASSES, alpha: float = 1.0,
           generator: torch.Generator | None = None, lam: float | None = None) -> tuple[Tensor, Tensor]:
    """CutMix (Yun et al. 2019): a box of image i-1 pasted into image i; labels by pixel area."""
    if lam is None:
        lam = _beta(alpha, generator, images.device)
    h, w = images.shape[-2:]
    y1, x1, y2, x2 = cutmix_box(h, w, lam, generator, images.device)
    mixed = images.clone()
    mixed[..., y1:y2, x1:x2] = images[..., y1:y2, x1:x2].roll(1, 0)  # slice first: cheaper roll
    # The box may be clipped at the border, so the label share is the pasted area, not lam.
    pasted = (y2 - y1) * (x2 - x1) / (h * w)
    soft = _soft(labels, num_classes)
    return mixed, soft * (1.0 - pasted) + soft.roll(1, 0) * pasted


def ricap(images: Tensor, labels: Tensor, num_classes: int = NUM_CLASSES, alpha: float = 0.3,
          generator: torch.Generator | None = None,
          boundary: tuple[float, float] | None = None) -> tuple[Tensor, Tensor]:
    """RICAP (Takahashi et al. 2018): four crops patched around a random boundary point.

    The boundary (fractions of height and width) splits each output image into four
    rectangles; rectangle k is filled by a random crop of image i+k of the batch (one crop
    position per rectangle per batch, as in the paper's code). Labels: area shares.
    """
    h, w = images.shape[-2:]
    if boundary is None:
        boundary = (_beta(alpha, generator, images.device), _beta(alpha, generator, images.device))
    bh, bw = round(boundary[0] * h), round(boundary[1] * w)
    sizes = [(bh, bw), (bh, w - bw), (h - bh, bw), (h - bh, w - bw)]  # TL, TR, BL, BR
    soft = _soft(labels, num_classes)
    crops, targets = [], torch.zeros_like(soft)
    for k, (ch, cw) in enumerate(sizes):
        y = int(randint(h - ch + 1, 1, images.device, generator))
        x = int(randint(w - cw + 1, 1, images.device, generator))
        crops.append(images[..., y:y + ch, x:x + cw].roll(-k, 0))
        targets += soft.roll(-k, 0) * (ch * cw / (h * w))
    top = torch.cat(crops[:2], dim=-1)
    bottom = torch.cat(crops[2:], dim=-1)
    return torch.cat([top, bottom], dim=-2), targets


MIX_FNS = {"mixup": mixup, "cutmix": cutmix, "ricap": ricap}


class BatchMixer:
    """At most one batch mix per batch, chosen with the given probabilities.

    One uniform draw u per batch picks the mix whose slice of [0, 1) holds u, slices laid
    out in MIXES' order whatever the order of `probs` (a run resumed from its config.json, whose
    keys are sorted, draws the mixes it would have drawn); whatever is left (1 - sum) means no mix. So with
    {"ricap": 0.2, "mixup": 0.3, "cutmix": 0.3} (source project 004) a batch is RICAP 20%,
    MixUp 30%, CutMix 30% and plain 20% of the time. Mixes are never stacked, so each
    mixed image blends at most two (MixUp, CutMix) or four (RICAP) training images.

    `alpha`: one float for every mix (1.0 by default), or a dict; mixes missing from the
    dict use DEFAULT_ALPHA (RICAP 0.3).
    """

    def __init__(self, probs: dict[str, float], num_classes: int = NUM_CLASSES,
                 alpha: dict[str, float] | float = 1.0, generator: torch.Generator | None = None):
        unknown = set(probs) - set(MIXES)
        if unknown:
            raise ValueError(f"unknown mixes {sorted(unknown)}; choose from {MIXES}")
        if any(p < 0 for p in probs.values()):
            raise ValueError(f"mix probabilities must be >= 0, got {probs}")
        if sum(probs.values()) > 1.0 + 1e-9:
            raise ValueError(f"mix probabilities sum to {sum(probs.values()):.3f} > 1: {probs}")
        self.probs = {m: float(probs[m]) for m in MIXES if m in probs}
        self.num_classes = num_classes
        if isinstance(alpha, dict):
            self.alpha = {**DEFAULT_ALPHA, **alpha}
        else:
            self.alpha = {m: float(alpha) for m in MIXES}
        self.generator = generator
        self.last: str | None = None  # the mix applied to the last batch, for logging

    def choose(self, device: torch.device = torch.device("cpu")) -> str | None:
        """Draw which mix (or None) the next batch gets."""
        u = float(rand(1, device, self.generator))
        edge = 0.0
        for name, p in self.probs.items():
            edge += p
            if u < edge:
                return name
        return None

    def __call__(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        self.last = self.choose(images.device)
        if self.last is None:
            return images, _soft(labels, self.num_classes)
        fn = MIX_FNS[self.last]
        return fn(images, labels, self.num_classes, self.alpha[self.last], self.generator)
