"""The checks a TrainConfig must pass before a run starts, beyond its own values' ranges.

recipe.TrainConfig.check_values() holds the rules that need nothing else; the ones here need
the zoo (a known model), this machine (a precision it can run) or the files a config names
(init_from's weights, distill's targets). So a bad config fails in the CLI, the Train tab or
the job manager, not minutes into the run.
"""

from __future__ import annotations

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
    autocast_dtype(cfg.precision, pick_device(cfg.device))  # e.g. fp16 on a CPU is refused
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
