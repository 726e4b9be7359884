"""Augmentation: batched device-side transforms, named presets, batch mixes, previews.

Three kinds of augmentation live here, matching where they run:

- device: crop / flip / cutout on whole NCHW batches, on the GPU (or CPU) that trains,
  with no per-image Python loop (after KellerJordan/cifar10-airbench).
- albumentations / torchvision: per-image pipelines for presets that need them; they run
  in DataLoader workers.
- batch mixes (MixUp, CutMix, RICAP): whole batches, after the per-image transforms.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch import Tensor

from .common import CLASSES, IMAGE_SIZE, NUM_CLASSES

if TYPE_CHECKING:
    import albumentations

# ---------------------------------------------------------------------------------------
# Random numbers on any device
# ---------------------------------------------------------------------------------------


def _rand(n: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
    """n uniforms in [0, 1) on `device`, drawn from `generator` (whatever its device)."""
    # A torch.Generator only draws on its own device, so draw there and move the result.
    gen_device = generator.device if generator is not None else device
    return torch.rand(n, generator=generator, device=gen_device).to(device)


def _randint(high: int, n: int, device: torch.device,
             generator: torch.Generator | None) -> Tensor:
    """n integers in [0, high) on `device`."""
    gen_device = generator.device if generator is not None else device
    return torch.randint(high, (n,), generator=generator, device=gen_device).to(device)


# ---------------------------------------------------------------------------------------
# Batched device-side transforms (NCHW, uint8 or float, any device)
# ---------------------------------------------------------------------------------------


def batch_crop(x: Tensor, pad: int, generator: torch.Generator | None = None) -> Tensor:
    """Random translate-crop: pad each side by `pad`, cut a window of the original size.

    Zero padding, as torchvision's RandomCrop(32, padding=4) in kuangliu/pytorch-cifar (and
    in our autoaugment preset), so every preset shifts images the same way (airbench pads
    by reflection). Zero is black on uint8 input and the mean colour on normalised input.
    Advanced indexing measured faster on CPU than two gathers or per-offset masks.
    """
    if pad <= 0:
        return x
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = _randint(2 * pad + 1, n, x.device, generator)
    dx = _randint(2 * pad + 1, n, x.device, generator)
    # One gather for the whole batch: per-image row and column indices into the padded batch.
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # N,1,H,1
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # N,1,1,W
    idx = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[idx, chans, rows, cols]


def flip_where(x: Tensor, mask: Tensor) -> Tensor:
    """Horizontal flip of the images of an NCHW batch whose entry in the bool `mask` is set."""
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


def batch_flip(x: Tensor, generator: torch.Generator | None = None, *, p: float = 0.5) -> Tensor:
    """Horizontal flip of each image with probability p (0.5 by default)."""
    return flip_where(x, _rand(x.shape[0], x.device, generator) < p)


def batch_cutout(x: Tensor, size: int, generator: torch.Generator | None = None) -> Tensor:
    """Zero one size x size square per image (DeVries & Taylor 2017).

    The square's centre is uniform over the whole image, so squares near the border are
    clipped, as in the paper: the model also sees images with only part of a hole.
    Zero is black on uint8 input and the mean colour on normalised input.
    """
    if size <= 0:
        return x
    n, _, h, w = x.shape
    top = _randint(h, n, x.device, generator) - size // 2
    left = _randint(w, n, x.device, generator) - size // 2
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    in_rows = (ys >= top[:, None]) & (ys < top[:, None] + size)     # N,H
    in_cols = (xs >= left[:, None]) & (xs < left[:, None] + size)   # N,W
    hole = in_rows[:, None, :, None] & in_cols[:, None, None, :]    # N,1,H,W
    return x.masked_fill(hole, 0)


# Presets the in-memory loader runs on device, as keyword arguments of device_augment().
DEVICE_PRESETS: dict[str, dict] = {
    "none": {"crop_pad": 0, "flip": False, "cutout": 0},
    # pad-4 crop + flip: the recipe of nearly every CIFAR-10 ResNet since He et al. 2015.
    "standard": {"crop_pad": 4, "flip": True, "cutout": 0},
    # airbench's lighter version: 2-pixel translations and flips (the net is small and trains
    # for few epochs; pad 4 costs it accuracy there).
    "translate2": {"crop_pad": 2, "flip": True, "cutout": 0},
    # airbench's alternating flip: each image gets one random flip bit for the run and is
    # shown that way in even epochs and mirrored in odd ones, so every two epochs see both
    # sides exactly once (random flips leave a quarter of images on one side for two epochs).
    "translate2_altflip": {"crop_pad": 2, "flip": "alternate", "cutout": 0},
}


def device_augment(x: Tensor, crop_pad: int = 0, flip: bool = False, cutout: int = 0,
                   generator: torch.Generator | None = None) -> Tensor:
    """Crop, then flip, then cutout a whole batch; `**DEVICE_PRESETS[name]` fits.

    A single batch has no epoch, so flip="alternate" flips at random here, as in a first epoch.
    """
    x = batch_crop(x, crop_pad, generator)
    if flip:
        x = batch_flip(x, generator)
    return batch_cutout(x, cutout, generator)


# ---------------------------------------------------------------------------------------
# Batch mixes: MixUp, CutMix, RICAP
#
# Written here rather than taken from torchvision.transforms.v2.MixUp / CutMix, whose
# pairing (each image with its neighbour, batch.roll(1)) and label rule we follow, because
# those classes (a) draw from the global RNG, with no torch.Generator, (b) fail on uint8
# batches (MixUp blends in place), and (c) keep lambda and the box internal, which the
# app's preview needs to set from a slider. The tests check MixUp against torchvision's.
# Pairing by roll relies on shuffled batches, as torchvision's does.
# ---------------------------------------------------------------------------------------

MIXES = ("ricap", "mixup", "cutmix")
# Beta(alpha, alpha) parameters. 1.0 (uniform lambda) for MixUp and CutMix, as their
# papers used on CIFAR; 0.3 for RICAP, the value Takahashi et al. found best on CIFAR-10.
DEFAULT_ALPHA: dict[str, float] = {"mixup": 1.0, "cutmix": 1.0, "ricap": 0.3}


def _beta(alpha: float, generator: torch.Generator | None, device: torch.device) -> float:
    """One Beta(alpha, alpha) draw that follows `generator` (torch has no seeded Beta)."""
    seed = int(_randint(2**31 - 1, 1, device, generator).item())
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
    cy, cx = int(_randint(h, 1, device, generator)), int(_randint(w, 1, device, generator))
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
        y = int(_randint(h - ch + 1, 1, images.device, generator))
        x = int(_randint(w - cw + 1, 1, images.device, generator))
        crops.append(images[..., y:y + ch, x:x + cw].roll(-k, 0))
        targets += soft.roll(-k, 0) * (ch * cw / (h * w))
    top = torch.cat(crops[:2], dim=-1)
    bottom = torch.cat(crops[2:], dim=-1)
    return torch.cat([top, bottom], dim=-2), targets


_MIX_FNS = {"mixup": mixup, "cutmix": cutmix, "ricap": ricap}


class BatchMixer:
    """At most one batch mix per batch, chosen with the given probabilities.

    One uniform draw u per batch picks the mix whose slice of [0, 1) holds u, slices laid
    out in the order of `probs`; whatever is left (1 - sum) means no mix. So with
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
        self.probs = dict(probs)
        self.num_classes = num_classes
        if isinstance(alpha, dict):
            self.alpha = {**DEFAULT_ALPHA, **alpha}
        else:
            self.alpha = {m: float(alpha) for m in MIXES}
        self.generator = generator
        self.last: str | None = None  # the mix applied to the last batch, for logging

    def choose(self, device: torch.device = torch.device("cpu")) -> str | None:
        """Draw which mix (or None) the next batch gets."""
        u = float(_rand(1, device, self.generator))
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
        fn = _MIX_FNS[self.last]
        return fn(images, labels, self.num_classes, self.alpha[self.last], self.generator)


def soft_cross_entropy(logits: Tensor, soft_targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy against soft (N, C) targets (class indices (N,) also accepted).

    F.cross_entropy takes class probabilities directly and smooths them as
    (1 - eps) * target + eps / C, the same rule it applies to hard labels.
    """
    return torch.nn.functional.cross_entropy(logits, soft_targets, label_smoothing=label_smoothing)


# ---------------------------------------------------------------------------------------
# Named presets
# ---------------------------------------------------------------------------------------

PRESETS: dict[str, str] = {
    "none": "No augmentation: every epoch shows the same images.",
    "standard": "Pad-4 random crop and horizontal flip, run on device on whole batches.",
    "translate2": "Pad-2 random crop (translations up to 2 pixels) and horizontal flip, on device.",
    "translate2_altflip": "Pad-2 random crop and alternating flip (each image mirrored every other epoch),"
                          " on device.",
    "seed004": "albumentations: flip, shift/scale/rotate, brightness/contrast, hue/saturation/value,"
               " coarse dropout (source project 004).",
    "autoaugment": "Pad-4 crop and flip, then torchvision AutoAugment with its learned CIFAR-10 policy.",
}
_PRESET_KIND = {"none": "device", "standard": "device", "translate2": "device",
                "translate2_altflip": "device", "seed004": "albumentations",
                "autoaugment": "torchvision"}


def preset_kind(name: str) -> str:
    """Where a preset runs: "device" | "albumentations" | "torchvision"."""
    if name not in _PRESET_KIND:
        raise ValueError(f"unknown augmentation preset {name!r}; choose from {list(PRESETS)}")
    return _PRESET_KIND[name]


@dataclass(frozen=True)
class Param:
    """A transform parameter as the app shows it: a slider."""
    min: float
    max: float
    default: float
    step: float
    label: str


@dataclass(frozen=True)
class TransformInfo:
    """One transform of the presets, described for the Augmentations tab."""
    name: str
    title: str
    presets: tuple[str, ...]  # the presets that use it (empty: a device option only)
    kind: str                 # "device" | "albumentations" | "torchvision": how it is previewed
    teaches: str              # one sentence: what invariance it teaches the model
    params: dict[str, Param] = field(default_factory=dict)

    @property
    def preset(self) -> str:
        """The first preset that uses it ("" for none)."""
        return self.presets[0] if self.presets else ""

    def defaults(self) -> dict[str, float]:
        return {k: p.default for k, p in self.params.items()}


def _prob(default: float) -> Param:
    return Param(0.0, 1.0, default, 0.05, "probability")


# The seed004 values the source README does not give (it lists only the probabilities)
# are the usual CIFAR choices: shift 10%, scale +-10%, rotate +-15 degrees, one 8x8 hole,
# and albumentations' own defaults for colour.
TRANSFORMS: dict[str, TransformInfo] = {t.name: t for t in [
    TransformInfo("crop", "Random crop (padding, then a 32x32 window)", ("standard", "translate2", "translate2_altflip", "autoaugment"),
                  "device",
                  "Shifting the picture a few pixels teaches that a cat is a cat wherever it sits in the frame.",
                  {"pad": Param(0, 8, 4, 1, "padding (pixels)")}),
    TransformInfo("flip", "Horizontal flip", ("standard", "translate2", "translate2_altflip", "seed004",
                                                "autoaugment"), "device",
                  "Flipping teaches that a horse facing left is still a horse.",
                  {"p": _prob(0.5)}),
    TransformInfo("cutout", "Cutout", (), "device",
                  "Hiding a square teaches the model to use the whole object, not one telltale patch.",
                  {"size": Param(0, 16, 8, 1, "square side (pixels)")}),
    TransformInfo("affine", "Shift, scale, rotate", ("seed004",), "albumentations",
                  "Small shifts, zooms and tilts teach that a slightly tilted or closer ship is still a ship.",
                  {"shift": Param(0.0, 0.3, 0.1, 0.01, "max shift (fraction of side)"),
                   "scale": Param(0.0, 0.5, 0.1, 0.05, "max zoom in/out (fraction)"),
                   "rotate": Param(0, 45, 15, 1, "max rotation (degrees)"),
                   "p": _prob(0.5)}),
    TransformInfo("brightness_contrast", "Brightness and contrast", ("seed004",), "albumentations",
                  "Changing light teaches that a deer at dusk is the same deer at noon.",
                  {"brightness": Param(0.0, 0.5, 0.2, 0.05, "max brightness change"),
                   "contrast": Param(0.0, 0.5, 0.2, 0.05, "max contrast change"),
                   "p": _prob(0.5)}),
    TransformInfo("hue_saturation_value", "Hue, saturation, value", ("seed004",), "albumentations",
                  "Shifting colours teaches that a car is a car whatever its paint, so shape must decide.",
                  {"hue": Param(0, 50, 20, 1, "max hue shift"),
                   "saturation": Param(0, 60, 30, 1, "max saturation shift"),
                   "value": Param(0, 60, 20, 1, "max value shift"),
                   "p": _prob(0.5)}),
    TransformInfo("coarse_dropout", "Coarse dropout", ("seed004",), "albumentations",
                  "Blacking out patches teaches that a bird half hidden by a branch is still a bird.",
                  {"holes": Param(1, 4, 1, 1, "max number of holes"),
                   "size": Param(2, 16, 8, 1, "hole side (pixels)"),
                   "p": _prob(0.3)}),
    TransformInfo("autoaugment", "AutoAugment (CIFAR-10 policy)", ("autoaugment",), "torchvision",
                  "A searched mix of colour and geometry changes teaches invariances no single transform covers.",
                  {}),
]}

# The seed004 pipeline, in order, by TRANSFORMS name.
SEED004 = ("flip", "affine", "brightness_contrast", "hue_saturation_value", "coarse_dropout")


def _merged(name: str, overrides: dict | None) -> dict[str, float]:
    """A transform's default parameters with `overrides` applied; unknown names rejected."""
    params = TRANSFORMS[name].defaults()
    unknown = set(overrides or {}) - set(params)
    if unknown:
        raise ValueError(f"{name} has no parameter(s) {sorted(unknown)}; it has {sorted(params)}")
    params.update(overrides or {})
    return params


def _albumentation(name: str, params: dict[str, float]) -> "albumentations.BasicTransform":
    """One seed004 transform from its TRANSFORMS parameters."""
    import albumentations as alb
    import cv2

    q = params
    if name == "flip":
        return alb.HorizontalFlip(p=q["p"])
    if name == "affine":
        # albumentations 2 replaces ShiftScaleRotate with Affine. A dict translate_percent
        # draws x and y shifts independently (a tuple would shift along the diagonal only).
        shift = (-q["shift"], q["shift"])
        return alb.Affine(translate_percent={"x": shift, "y": shift},
                          scale=(1 - q["scale"], 1 + q["scale"]), rotate=(-q["rotate"], q["rotate"]),
                          border_mode=cv2.BORDER_CONSTANT, fill=0, p=q["p"])
    if name == "brightness_contrast":
        return alb.RandomBrightnessContrast(brightness_limit=q["brightness"],
                                            contrast_limit=q["contrast"], p=q["p"])
    if name == "hue_saturation_value":
        return alb.HueSaturationValue(hue_shift_limit=q["hue"], sat_shift_limit=q["saturation"],
                                      val_shift_limit=q["value"], p=q["p"])
    if name == "coarse_dropout":
        # albumentations 2 API: ranges instead of max_holes / max_height / max_width.
        side = (int(q["size"]), int(q["size"]))
        return alb.CoarseDropout(num_holes_range=(1, int(q["holes"])), hole_height_range=side,
                                 hole_width_range=side, fill=0, p=q["p"])
    raise ValueError(f"{name!r} is not an albumentations transform")


def build_albumentations(preset: str, **params: dict) -> "albumentations.Compose | None":
    """The albumentations pipeline of a preset, or None if the preset is not one.

    Override parameters per transform, e.g. `build_albumentations("seed004",
    affine={"rotate": 30}, coarse_dropout={"p": 0.5})` (names and ranges: TRANSFORMS).

    The Compose draws from fresh entropy, and forked DataLoader workers inherit one copy
    of it: reseed it in each worker or per image with reseed_albumentations(). Not with
    Compose(seed=...): in albumentations 2.0.8 that gives every child transform its own
    copy of the same stream, so their coin flips coincide.
    """
    if preset_kind(preset) != "albumentations":
        return None
    import albumentations as alb

    unknown = set(params) - set(SEED004)
    if unknown:
        raise ValueError(f"{preset} has no transform(s) {sorted(unknown)}; it has {list(SEED004)}")
    return alb.Compose([_albumentation(name, _merged(name, params.get(name))) for name in SEED004])


def reseed_albumentations(compose, seed: int) -> None:
    """Seed a Compose so that all its transforms draw one after another from one stream."""
    compose.set_random_state(np.random.default_rng(seed), random.Random(seed))


def build_torchvision(preset: str) -> "Callable | None":
    """The torchvision pipeline of a preset (uint8 CHW tensor or PIL in and out), or None."""
    if preset_kind(preset) != "torchvision":
        return None
    from torchvision.transforms import v2

    # Crop and flip first, then the policy: the order of the AutoAugment paper and of
    # torchvision's reference training scripts. RandomCrop pads with zeros, as batch_crop.
    return v2.Compose([
        v2.RandomCrop(IMAGE_SIZE, padding=4),
        v2.RandomHorizontalFlip(),
        v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10),
    ])


# ---------------------------------------------------------------------------------------
# Previews for the app's Augmentations tab
# ---------------------------------------------------------------------------------------


def _check_image(image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 image, got {image.dtype} {image.shape}")


def _to_batch(images: list[np.ndarray]) -> Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def _to_images(batch: Tensor) -> list[np.ndarray]:
    return list(batch.permute(0, 2, 3, 1).contiguous().numpy())


def preview_transform(image: np.ndarray, transform_name: str, n: int = 8, seed: int = 0,
                      **params: float) -> list[np.ndarray]:
    """`n` random draws of one transform (TRANSFORMS name, parameters as its sliders)."""
    _check_image(image)
    if transform_name not in TRANSFORMS:
        raise ValueError(f"unknown transform {transform_name!r}; choose from {list(TRANSFORMS)}")
    q = _merged(transform_name, params)
    kind = TRANSFORMS[transform_name].kind
    if kind == "device":
        batch, g = _to_batch([image] * n), torch.Generator().manual_seed(seed)
        if transform_name == "crop":
            return _to_images(batch_crop(batch, int(q["pad"]), g))
        if transform_name == "flip":
            return _to_images(batch_flip(batch, g, p=q["p"]))
        return _to_images(batch_cutout(batch, int(q["size"]), g))
    if kind == "albumentations":
        import albumentations as alb

        pipeline = alb.Compose([_albumentation(transform_name, q)])
        reseed_albumentations(pipeline, seed)
        return [pipeline(image=image)["image"] for _ in range(n)]
    # AutoAugment draws from torch's global RNG; fork it so the preview leaves it untouched.
    from torchvision.transforms import v2

    policy = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _to_images(torch.stack([policy(_to_batch([image])[0]) for _ in range(n)]))


def preview_mix(images: list[np.ndarray], labels: list[int], method: str, seed: int = 0,
                **params: float) -> tuple[np.ndarray, dict[str, float]]:
    """Mix 2-4 images as the training batch would; return the image and its label weights.

    params: `alpha` (Beta parameter) for every method; `lam` (share of the first image)
    for mixup and cutmix; `boundary_y`, `boundary_x` (fractions) for ricap. RICAP patches
    four images: with 2 or 3 given, they are reused cyclically (1, 2, 1, 2 or 1, 2, 3, 1).
    """
    if not 2 <= len(images) <= 4 or len(labels) != len(images):
        raise ValueError("preview_mix needs 2-4 images and one label per image")
    if method not in _MIX_FNS:
        raise ValueError(f"unknown mix {method!r}; choose from {MIXES}")
    for im in images:
        _check_image(im)
    if len({im.shape for im in images}) > 1:
        raise ValueError(f"preview_mix needs images of one size, got {[im.shape for im in images]}")
    if method == "ricap":
        images = [images[k % len(images)] for k in range(4)]
        labels = [labels[k % len(labels)] for k in range(4)]
    else:
        images, labels = images[:2], labels[:2]
    # Output 0 is what we show: MixUp and CutMix pair image 0 with image -1 (= image 1 of
    # two), RICAP fills its four rectangles (TL, TR, BL, BR) from images 0, 1, 2, 3.
    batch, y = _to_batch(images), torch.tensor(labels)
    g = torch.Generator().manual_seed(seed)
    alpha = params.get("alpha", DEFAULT_ALPHA[method])
    if method == "ricap":
        boundary = None
        if "boundary_y" in params or "boundary_x" in params:
            boundary = (params.get("boundary_y", 0.5), params.get("boundary_x", 0.5))
        mixed, soft = ricap(batch, y, NUM_CLASSES, alpha, g, boundary=boundary)
    else:
        mixed, soft = _MIX_FNS[method](batch, y, NUM_CLASSES, alpha, g, lam=params.get("lam"))
    weights = {CLASSES[c]: float(soft[0, c]) for c in torch.nonzero(soft[0]).flatten().tolist()}
    return _to_images(mixed)[0], weights


def upscale_nearest(image: np.ndarray, scale: int = 8) -> np.ndarray:
    """Blow each pixel up to a scale x scale block, so a 32x32 image shows sharp and large."""
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
