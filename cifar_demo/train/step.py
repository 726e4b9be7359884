"""One training step's arithmetic: the loss (cross-entropy, label smoothing, L1) and an optimizer
step with loss scaling, clipping and SAM's two passes."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..recipe import TrainConfig
from .optimizers import SAM, base_optimizer


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of |w| over conv and linear weights (not biases, not BatchNorm)."""
    terms = [m.weight.abs().sum() for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.requires_grad]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def training_loss(cfg: TrainConfig, logits, labels, targets=None, model: nn.Module | None = None):
    """Cross-entropy, label smoothing, L1 penalty. `targets` are the soft (N, C) labels a batch
    mix made: F.cross_entropy takes class probabilities and smooths them the same way."""
    loss = F.cross_entropy(logits, labels if targets is None else targets, label_smoothing=cfg.label_smoothing)
    if cfg.l1 and model is not None:
        loss = loss + cfg.l1 * l1_penalty(model)
    return loss


# --------------------------------------------------------------------------------------
# One optimizer step
# --------------------------------------------------------------------------------------


def optimizer_step(cfg: TrainConfig, optimizer, scaler: torch.amp.GradScaler, params,
                   forward: Callable[[], tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """zero_grad, forward/backward (twice for SAM), clip, step: returns the first pass's (logits, loss).

    GradScaler's contract, per step: scale every loss before its backward; ``unscale_`` at
    most once (it refuses a second call before ``update()``), before anything that reads the
    gradients' size (clipping); ``step`` (skipped when the gradients hold inf/nan); one
    ``update()`` (which lowers the scale after an overflow). For SAM that means: the first
    pass is scaled too, but needs no unscale_, since the ascent direction g/||g|| is the
    same for the scaled gradient; its overflow check is the norm's finiteness, and an
    overflow there skips the whole step (a perturbation made of inf would ruin the weights).
    The one unscale_ is the second pass's, before clipping. With the scaler disabled (fp32,
    bf16) scale/unscale_/update do nothing and step is the optimizer's step.
    """
    base = base_optimizer(optimizer)
    optimizer.zero_grad(set_to_none=True)
    logits, loss = forward()
    scaler.scale(loss).backward()
    if isinstance(optimizer, SAM):
        norm = optimizer.grad_norm()
        if scaler.is_enabled() and not torch.isfinite(norm).item():
            scaler.step(base)     # unscales, finds the inf, skips the step
            scaler.update()       # and lowers the scale
            return logits, loss
        optimizer.first_step(norm)
        optimizer.zero_grad(set_to_none=True)
        _, loss_at_worst = forward()
        scaler.scale(loss_at_worst).backward()
        optimizer.restore()       # whether or not the step goes through, the weights are w again
    if cfg.grad_clip:
        scaler.unscale_(base)
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    scaler.step(base)
    scaler.update()
    return logits, loss
