"""Per-image pipelines (albumentations, torchvision) for the presets that need them.

They run one image at a time in DataLoader workers (data.loaders.PerImageLoader), built
from the preset table's pipeline and the TRANSFORMS' default parameters.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..common import IMAGE_SIZE
from .presets import get_preset
from .transforms import TRANSFORMS, merged_params

if TYPE_CHECKING:
    import albumentations

# The seed004 pipeline, in order, by TRANSFORMS name.
SEED004 = get_preset("seed004").pipeline


def albumentation(name: str, params: dict[str, float]) -> "albumentations.BasicTransform":
    """One albumentations transform from its TRANSFORMS parameters."""
    import albumentations as alb  # lazy: albumentations and OpenCV load (about 1 s) only for a per-image preset
    import cv2  # lazy: albumentations and OpenCV load (about 1 s) only for a per-image preset

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


def torchvision_transform(name: str, params: dict[str, float]) -> Callable:
    """One torchvision v2 transform (uint8 CHW tensor or PIL in and out) from its parameters."""
    # lazy: torchvision's transforms load only for the presets and views that use them
    from torchvision.transforms import v2

    if name == "crop":
        return v2.RandomCrop(IMAGE_SIZE, padding=int(params["pad"]))  # zero padding, as batch_crop
    if name == "flip":
        return v2.RandomHorizontalFlip(p=params["p"])
    if name == "autoaugment":
        return v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
    raise ValueError(f"{name!r} is not a torchvision transform")


def build_albumentations(preset: str, **params: dict) -> "albumentations.Compose | None":
    """The albumentations pipeline of a preset, or None if the preset is not one.

    Override parameters per transform, e.g. `build_albumentations("seed004",
    affine={"rotate": 30}, coarse_dropout={"p": 0.5})` (names and ranges: TRANSFORMS).

    The Compose draws from fresh entropy, and forked DataLoader workers inherit one copy
    of it: reseed it in each worker or per image with reseed_albumentations(). Not with
    Compose(seed=...): in albumentations 2.0.8 that gives every child transform its own
    copy of the same stream, so their coin flips coincide.
    """
    spec = get_preset(preset)
    if spec.kind != "albumentations":
        return None
    import albumentations as alb  # lazy: albumentations and OpenCV load (about 1 s) only for a per-image preset

    unknown = set(params) - set(spec.pipeline)
    if unknown:
        raise ValueError(f"{preset} has no transform(s) {sorted(unknown)}; it has {list(spec.pipeline)}")
    return alb.Compose([albumentation(name, merged_params(name, params.get(name))) for name in spec.pipeline])


def reseed_albumentations(compose, seed: int) -> None:
    """Seed a Compose so that all its transforms draw one after another from one stream."""
    compose.set_random_state(np.random.default_rng(seed), random.Random(seed))


def build_torchvision(preset: str) -> "Callable | None":
    """The torchvision pipeline of a preset (uint8 CHW tensor or PIL in and out), or None.

    It draws from torch's global RNG: fork and seed it around each call (PerImageLoader does).
    """
    spec = get_preset(preset)
    if spec.kind != "torchvision":
        return None
    # lazy: torchvision's transforms load only for the presets and views that use them
    from torchvision.transforms import v2

    return v2.Compose([torchvision_transform(name, TRANSFORMS[name].defaults()) for name in spec.pipeline])
