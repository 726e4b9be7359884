"""Batched transforms on whole NCHW batches (uint8 or float, any device), no per-image loop.

After KellerJordan/cifar10-airbench: crop, flip and cutout run on the device that trains,
a whole batch at a time. Every random draw comes from an explicit torch.Generator, so a
batch's augmentation is fixed by its seed (data.loaders seeds one generator per batch).
"""

from __future__ import annotations

import torch
from torch import Tensor


def rand(n: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
    """n uniforms in [0, 1) on `device`, drawn from `generator` (whatever its device)."""
    # A torch.Generator only draws on its own device, so draw there and move the result.
    gen_device = generator.device if generator is not None else device
    return torch.rand(n, generator=generator, device=gen_device).to(device)


def randint(high: int, n: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
    """n integers in [0, high) on `device`."""
    gen_device = generator.device if generator is not None else device
    return torch.randint(high, (n,), generator=generator, device=gen_device).to(device)


def random_window(x: Tensor, size: tuple[int, int], generator: torch.Generator | None = None) -> Tensor:
    """A window of `size` (height, width) at a random place in each image of an NCHW batch.

    Advanced indexing (one gather for the whole batch) measured faster on CPU than two
    gathers or per-offset masks.
    """
    n, _, h, w = x.shape
    dy = randint(h - size[0] + 1, n, x.device, generator)
    dx = randint(w - size[1] + 1, n, x.device, generator)
    # Per-image row and column indices into the batch.
    rows = (dy[:, None] + torch.arange(size[0], device=x.device))[:, None, :, None]  # N,1,h,1
    cols = (dx[:, None] + torch.arange(size[1], device=x.device))[:, None, None, :]  # N,1,1,w
    idx = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return x[idx, chans, rows, cols]


def batch_crop(x: Tensor, pad: int, generator: torch.Generator | None = None) -> Tensor:
    """Random translate-crop: pad each side by `pad`, cut a window of the original size.

    Zero padding, as torchvision's RandomCrop(32, padding=4) in kuangliu/pytorch-cifar (and
    in our autoaugment preset), so every preset shifts images the same way (airbench pads
    by reflection). Zero is black on uint8 input and the mean colour on normalised input.
    """
    if pad <= 0:
        return x
    return random_window(torch.nn.functional.pad(x, (pad, pad, pad, pad)), tuple(x.shape[-2:]), generator)


def flip_where(x: Tensor, mask: Tensor) -> Tensor:
    """Horizontal flip of the images of an NCHW batch whose entry in the bool `mask` is set."""
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


def batch_flip(x: Tensor, generator: torch.Generator | None = None, *, p: float = 0.5) -> Tensor:
    """Horizontal flip of each image with probability p (0.5 by default)."""
    return flip_where(x, rand(x.shape[0], x.device, generator) < p)


def batch_cutout(x: Tensor, size: int, generator: torch.Generator | None = None, fill=None) -> Tensor:
    """Blank one size x size square per image (DeVries & Taylor 2017).

    The square's centre is uniform over the whole image, so squares near the border are
    clipped, as in the paper: the model also sees images with only part of a hole.
    fill: one value per channel (e.g. the mean colour, which a model normalises to 0); None: 0.
    """
    if size <= 0:
        return x
    n, _, h, w = x.shape
    top = randint(h, n, x.device, generator) - size // 2
    left = randint(w, n, x.device, generator) - size // 2
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    in_rows = (ys >= top[:, None]) & (ys < top[:, None] + size)     # N,H
    in_cols = (xs >= left[:, None]) & (xs < left[:, None] + size)   # N,W
    hole = in_rows[:, None, :, None] & in_cols[:, None, None, :]    # N,1,H,W
    if fill is None:
        return x.masked_fill(hole, 0)
    colour = torch.as_tensor(fill, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return torch.where(hole, colour, x)
