"""Learning-rate schedules: lr_factor (pure, so a test can tabulate it) and the LambdaLR it drives."""

from __future__ import annotations

import math

import torch

from ..recipe import TrainConfig
from .optimizers import base_optimizer


def lr_factor(cfg: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Multiplier of cfg.lr at a given optimizer step (0-based). Pure, so a test can tabulate it."""
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    if cfg.schedule == "step":
        return cfg.step_gamma ** math.floor(step / max(1.0, cfg.step_size * steps_per_epoch))
    if warm > 0 and step < warm:
        return cfg.warmup_from + (1 - cfg.warmup_from) * (step + 1) / warm
    if cfg.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warm) / max(1, total_steps - warm))
    end = cfg.final_lr_frac
    if cfg.schedule == "cosine":
        return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.schedule == "linear":
        return 1 - (1 - end) * progress
    raise ValueError(f"lr_factor does not handle schedule {cfg.schedule!r}")

def build_scheduler(cfg: TrainConfig, optimizer, total_steps: int, steps_per_epoch: int):
    base = base_optimizer(optimizer)
    if cfg.schedule == "onecycle":
        # torch's OneCycleLR also cycles SGD momentum inversely to the LR, as in Smith's paper.
        return torch.optim.lr_scheduler.OneCycleLR(
            base, max_lr=[g["lr"] for g in base.param_groups], total_steps=max(total_steps, 2),
            pct_start=cfg.warmup_epochs / cfg.epochs if cfg.warmup_epochs else 0.25,
            cycle_momentum=cfg.optimizer in ("sgd", "sam"),
        )

    def factor(group: dict):
        # A group that stops learning (a model's own, e.g. airnet's whitening bias: zoo.hooks)
        # has lr 0 from its stop epoch on.
        stop_at = group.get("stop_after_epochs", 0) * steps_per_epoch
        if stop_at:
            return lambda s: lr_factor(cfg, s, total_steps, steps_per_epoch) if s < stop_at else 0.0
        return lambda s: lr_factor(cfg, s, total_steps, steps_per_epoch)

    return torch.optim.lr_scheduler.LambdaLR(base, [factor(g) for g in base.param_groups])
