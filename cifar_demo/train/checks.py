"""The checks a TrainConfig must pass before a run starts, beyond its own values' ranges.

recipe.TrainConfig.check_values() holds the rules that need nothing else; the ones here need
the zoo (a known model), this machine (a precision it can run) or the files a config names
(init_from's weights, distill's targets). So a bad config fails in the CLI, the Train tab or
the job manager, not minutes into the run.
"""

from __future__ import annotations

import functools
import json
import os

import torch

from .. import data, zoo
from ..common import CIFAR_TRAIN_IMAGES, pick_device
from ..recipe import TrainConfig
from .distill import read_meta
from .precision import autocast_dtype
from .transfer import check_init_from


def validate(cfg: TrainConfig) -> TrainConfig:
    """Every rule a run must meet; ValueError (or WeightsError) with what to change. Returns cfg."""
    if cfg.model not in zoo.names():
        raise ValueError(f"unknown model {cfg.model!r}; choose one of: {', '.join(zoo.names())}")
    cfg.check_values()
    check_val_size(cfg)
    device = pick_device(cfg.device)
    autocast_dtype(cfg.precision, device)  # e.g. fp16 on a CPU is refused
    check_memory(cfg, device)
    if cfg.init_from:
        check_init_from(cfg)  # the weights exist and are this model's architecture
    if cfg.distill:
        read_meta(cfg.distill)  # the file exists and is a targets file (its images: at setup)
    return cfg


def check_val_size(cfg: TrainConfig) -> None:
    """val_size must leave training images. CIFAR-10's training split has 50,000 (the data layer
    refuses more when it loads; this says so before a run is queued); own images cap val_size
    at a share of their training images (data.rules.VAL_RULE), so any value leaves some."""
    if cfg.val_size < CIFAR_TRAIN_IMAGES or (cfg.data and data.layout_of(cfg.data) == "own"):
        return
    raise ValueError(f"val_size {cfg.val_size:,} leaves no training images: CIFAR-10's training split has "
                     f"{CIFAR_TRAIN_IMAGES:,}; hold out fewer (e.g. 5,000)")


# A training step keeps each layer's output for the backward pass and makes its gradient
# there: about twice the forward outputs (counted in fp32: BatchNorm and the loss stay fp32
# under autocast). The weights, their gradients and two optimizer moments: 4 copies.
ACTIVATION_COPIES = 2
PARAMETER_COPIES = 4


@functools.lru_cache(maxsize=64)
def _model_floats(model: str, kwargs_json: str) -> tuple[int, int]:
    """(numbers output per 32x32 image by the model's layers, parameters), measured once per
    model and kwargs on a CPU copy (zoo.activation_floats)."""
    net = zoo.create(model, **json.loads(kwargs_json))
    return zoo.activation_floats(net), zoo.count_params(net)


def training_bytes(cfg: TrainConfig) -> tuple[int, int]:
    """About how much memory one training step of `cfg` needs, in bytes: (per image of the
    batch, for the weights whatever the batch)."""
    per_image, params = _model_floats(cfg.model, json.dumps(cfg.model_kwargs, sort_keys=True))
    return 4 * ACTIVATION_COPIES * per_image, 4 * PARAMETER_COPIES * params


def free_memory(device: torch.device) -> int | None:
    """Bytes free for a run on `device`: the GPU's free memory on CUDA; on a CPU, the kernel's
    MemAvailable (else the free pages); None where it cannot be told (MPS, an unknown system)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(cfg: TrainConfig, device: torch.device) -> None:
    """Refuse a config whose training step cannot fit this machine's free memory (a batch of
    45,000 would get the process killed, and on a Space the whole app with it)."""
    free = free_memory(device)
    if free is None:
        return
    per_image, fixed = training_bytes(cfg)
    need = per_image * cfg.batch_size + fixed
    if need <= free:
        return
    fits = max((free - fixed) // per_image, 0)
    where = "this GPU" if device.type == "cuda" else "this machine"
    raise ValueError(f"a batch of {cfg.batch_size:,} {cfg.model} images needs about {need / 2**30:.1f} GB of memory "
                     f"to train; {where} has {free / 2**30:.1f} GB free: lower the batch size "
                     f"(about {fits:,} would fit)")
