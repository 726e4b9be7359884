"""Previews for the app's Augmentations tab: one transform's random draws, one batch mix,
and the nearest-neighbour upscaling every tab uses to show a 32x32 image large and sharp.

HxWx3 uint8 arrays in and out (what Gradio gives and shows). The draws use the training
code itself (ops, pipelines, mixes), so a preview is what training does.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..common import CLASSES, NUM_CLASSES
from .mixes import DEFAULT_ALPHA, MIX_FNS, MIXES, ricap
from .ops import batch_crop, batch_cutout, batch_flip
from .pipelines import albumentation, reseed_albumentations, torchvision_transform
from .transforms import TRANSFORMS, merged_params


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
    q = merged_params(transform_name, params)
    kind = TRANSFORMS[transform_name].kind
    if kind == "device":
        batch, g = _to_batch([image] * n), torch.Generator().manual_seed(seed)
        if transform_name == "crop":
            return _to_images(batch_crop(batch, int(q["pad"]), g))
        if transform_name == "flip":
            return _to_images(batch_flip(batch, g, p=q["p"]))
        return _to_images(batch_cutout(batch, int(q["size"]), g))
    if kind == "albumentations":
        import albumentations as alb  # lazy: albumentations and OpenCV load (about 1 s) only for a per-image preset

        pipeline = alb.Compose([albumentation(transform_name, q)])
        reseed_albumentations(pipeline, seed)
        return [pipeline(image=image)["image"] for _ in range(n)]
    # torchvision draws from torch's global RNG; fork it so the preview leaves it untouched.
    transform = torchvision_transform(transform_name, q)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _to_images(torch.stack([transform(_to_batch([image])[0]) for _ in range(n)]))


def preview_mix(images: list[np.ndarray], labels: list[int], method: str, seed: int = 0,
                **params: float) -> tuple[np.ndarray, dict[str, float]]:
    """Mix 2-4 images as the training batch would; return the image and its label weights.

    params: `alpha` (Beta parameter) for every method; `lam` (share of the first image)
    for mixup and cutmix; `boundary_y`, `boundary_x` (fractions) for ricap. RICAP patches
    four images: with 2 or 3 given, they are reused cyclically (1, 2, 1, 2 or 1, 2, 3, 1).
    """
    if not 2 <= len(images) <= 4 or len(labels) != len(images):
        raise ValueError("preview_mix needs 2-4 images and one label per image")
    if method not in MIX_FNS:
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
        mixed, soft = MIX_FNS[method](batch, y, NUM_CLASSES, alpha, g, lam=params.get("lam"))
    weights = {CLASSES[c]: float(soft[0, c]) for c in torch.nonzero(soft[0]).flatten().tolist()}
    return _to_images(mixed)[0], weights


def upscale_nearest(image: np.ndarray, scale: int = 8) -> np.ndarray:
    """Blow each pixel up to a scale x scale block, so a 32x32 image shows sharp and large."""
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
