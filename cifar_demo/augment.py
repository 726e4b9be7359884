"""Augmentation: batched device-side transforms, named presets, batch mixes, previews.

Three kinds of augmentation live here, matching where they run:

- device: crop / flip / cutout on whole NCHW batches, on the GPU (or CPU) that trains,
  with no per-image Python loop (after KellerJordan/cifar10-airbench).
- albumentations / torchvision: per-image pipelines for presets that need them; they run
  in DataLoader workers.
- batch mixes (MixUp, CutMix, RICAP): whole batches, after the per-image transforms.
"""

from __future__ import annotations

import torch
from torch import Tensor

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
    in our autoaugment preset), so every preset shifts images the same way. airbench pads
    with reflection instead; on 32x32 images the difference in accuracy is small.
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


def batch_flip(x: Tensor, generator: torch.Generator | None = None, *, p: float = 0.5) -> Tensor:
    """Horizontal flip of each image with probability p (0.5 by default)."""
    chosen = _rand(x.shape[0], x.device, generator) < p
    return torch.where(chosen[:, None, None, None], x.flip(-1), x)


def batch_cutout(x: Tensor, size: int, generator: torch.Generator | None = None) -> Tensor:
    """Zero one size x size square per image (DeVries & Taylor 2017).

    The square's centre is uniform over the whole image, so squares near the border are
    clipped, as in the paper: the model also sees images with only part of a hole.
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
}


def device_augment(x: Tensor, crop_pad: int = 0, flip: bool = False, cutout: int = 0,
                   generator: torch.Generator | None = None) -> Tensor:
    """Crop, then flip, then cutout a whole batch; `**DEVICE_PRESETS[name]` fits."""
    x = batch_crop(x, crop_pad, generator)
    if flip:
        x = batch_flip(x, generator)
    return batch_cutout(x, cutout, generator)
