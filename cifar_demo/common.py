"""Facts shared by every part of the package: class names, normalisation, device choice."""

from __future__ import annotations

import torch

from . import runtime

# Official CIFAR-10 label order (also the alphabetical order of the ImageFolder export).
CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
NUM_CLASSES = len(CLASSES)
IMAGE_SIZE = 32
CIFAR_TRAIN_IMAGES = 50_000   # the official training split (val_size is held out of it)
CIFAR_TEST_IMAGES = 10_000

# Per-channel mean and std of the 50,000 official training images (values in [0, 1]).
CIFAR_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)


def pick_device(requested: str | None = None) -> torch.device:
    """An explicit request ("cpu", "cuda:1", ...), else where this runtime computes (runtime.Runtime.device:
    CUDA, then MPS, then CPU; on ZeroGPU the GPU inside a GPU call, the CPU outside)."""
    if requested and requested != "auto":
        return torch.device(requested)
    return runtime.current().device()


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """A picture batch as floats in [0, 1]: uint8 is divided by 255, floats pass as they are."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


def normalize(x: torch.Tensor, mean=CIFAR_MEAN, std=CIFAR_STD) -> torch.Tensor:
    """uint8 or [0,1] float NCHW batch -> normalised float NCHW batch. Every zoo model does this to
    its input itself (zoo.registry.normalize_inputs): callers pass pictures."""
    x = to_unit(x)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s
