"""Optimisation: parameter groups, optimizers (SAM, Lookahead), LR schedules, precision, the loss,
and one optimizer step with loss scaling, clipping and SAM's two passes.

Everything here is a function of a TrainConfig and a model: no run directory, no events.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Collection

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from .config import TrainConfig


# --------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------


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


def base_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The optimizer that owns the parameter groups' steps (SAM's inner SGD, else itself)."""
    return optimizer.base_optimizer if isinstance(optimizer, SAM) else optimizer


def build_scheduler(cfg: TrainConfig, optimizer, total_steps: int, steps_per_epoch: int):
    base = base_optimizer(optimizer)
    if cfg.schedule == "onecycle":
        # torch's OneCycleLR also cycles SGD momentum inversely to the LR, as in Smith's paper.
        return torch.optim.lr_scheduler.OneCycleLR(
            base, max_lr=[g["lr"] for g in base.param_groups], total_steps=max(total_steps, 2),
            pct_start=cfg.warmup_epochs / cfg.epochs if cfg.warmup_epochs else 0.25,
            cycle_momentum=cfg.optimizer in ("sgd", "sam"),
        )
    stop_at = cfg.whiten_bias_epochs * steps_per_epoch

    def factor(group_name: str):
        if group_name.removeprefix("pretrained.") == "whiten_bias":
            return lambda s: lr_factor(cfg, s, total_steps, steps_per_epoch) if s < stop_at else 0.0
        return lambda s: lr_factor(cfg, s, total_steps, steps_per_epoch)

    return torch.optim.lr_scheduler.LambdaLR(base, [factor(g.get("name", "main")) for g in base.param_groups])


# --------------------------------------------------------------------------------------
# Optimizers
# --------------------------------------------------------------------------------------


class SAM(torch.optim.Optimizer):
    """Sharpness-aware minimisation (Foret et al., 2021) wrapping a base optimizer.

    Each step needs two forward/backward passes: after the first backward, ``first_step``
    moves the weights to the worst case within radius rho (w + e, e = rho * g / ||g||); the
    loss is recomputed there; after the second backward, ``restore`` puts the weights back
    to w and the base optimizer steps with the gradient taken at w + e (``second_step``
    does both). ``optimizer_step`` drives the passes, with loss scaling and clipping.
    w is kept as a copy, not recomputed as (w + e) - e: that is w only up to rounding, and
    a step skipped for an fp16 overflow must leave the weights exactly as they were.
    """

    def __init__(self, params, base_optimizer_cls, rho: float = 0.05, **kwargs):
        if rho <= 0:
            raise ValueError("SAM rho must be > 0")
        super().__init__(params, dict(rho=rho, **kwargs))
        self.base_optimizer = base_optimizer_cls(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups

    @torch.no_grad()
    def grad_norm(self) -> torch.Tensor:
        """The 2-norm over every gradient (a tensor on the parameters' device: no sync)."""
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        return torch.norm(torch.stack([gr.norm(2) for gr in grads]), 2) if grads else torch.tensor(0.0)

    @torch.no_grad()
    def first_step(self, norm: torch.Tensor | None = None) -> None:
        norm = self.grad_norm() if norm is None else norm
        for group in self.param_groups:
            scale = group["rho"] / (norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                self.state[p]["w"] = p.detach().clone()
                p.add_(p.grad * scale.to(p))

    @torch.no_grad()
    def restore(self) -> None:
        """Back from w + e to w (the gradient in .grad stays the one taken at w + e)."""
        for group in self.param_groups:
            for p in group["params"]:
                if "w" in self.state[p]:
                    p.copy_(self.state[p].pop("w"))

    def second_step(self) -> None:
        self.restore()
        self.base_optimizer.step()

    def step(self, closure=None):  # pragma: no cover - the engine drives the two steps
        raise RuntimeError("SAM needs first_step/second_step; the engine calls them")

    def state_dict(self):
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict):
        self.base_optimizer.load_state_dict(state_dict)


class Lookahead:
    """airbench's Lookahead-style averaging (after Zhang et al. 2019), on a model in place.

    A slow copy of every floating-point tensor of the state (weights and BatchNorm
    statistics) follows the model: ``update(model, decay)`` moves the slow copy to
    ``decay * slow + (1 - decay) * fast`` and then sets the model to it. airbench calls it
    every 5 steps with decay 0.95**5 * (t/T)**3 (no pull early on, when the weights move
    fast; a strong pull at the end) and finishes with decay 1, which leaves the model at
    the slow weights.
    """

    def __init__(self, model: nn.Module):
        self.slow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @staticmethod
    def decay_at(cfg: TrainConfig, step: int, total_steps: int) -> float | None:
        """The decay to apply after optimizer step `step` (1-based), or None for no update."""
        if step >= total_steps:
            return 1.0
        if step % cfg.lookahead_every == 0:
            return cfg.lookahead_decay * (step / total_steps) ** 3
        return None

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        state = model.state_dict()
        for k, slow in self.slow.items():
            slow.lerp_(state[k], 1 - decay)
            state[k].copy_(slow)

    def state_dict(self) -> dict:
        return dict(self.slow)

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        for k, slow in self.slow.items():
            slow.copy_(state[k])


def param_groups(cfg: TrainConfig, model: nn.Module, pretrained: Collection[str] = ()) -> list[dict]:
    """Trainable parameters in groups: "main", "bn_bias" (lr x bn_bias_lr_mult, weight decay
    / mult, so their decay per step is unchanged) and "whiten_bias" (can stop learning early).

    airbench trains BatchNorm biases 64x faster: with the scales frozen they are the only
    per-channel knobs, and a larger step lets them track the fast-moving features.

    `pretrained`: names of the parameters copied from cfg.init_from. With backbone_lr_mult != 1
    each group splits into a "pretrained." twin at lr x backbone_lr_mult (a fine-tune's backbone;
    the new head keeps the full lr). Its weight decay is not divided by that multiplier: the
    decay per step shrinks with the lr, so the small steps do not wear the pretrained weights
    down towards zero faster than they adapt them.
    """
    bn_bias = {id(m.bias) for m in model.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None}
    split = cfg.backbone_lr_mult != 1.0
    pretrained = set(pretrained) if split else set()
    groups: dict[str, list] = {f"{pre}{kind}": [] for pre in ("", "pretrained.")
                               for kind in ("main", "bn_bias", "whiten_bias")}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if cfg.whiten_bias_epochs and name.startswith("whiten.") and name.endswith("bias"):
            kind = "whiten_bias"
        elif id(p) in bn_bias and cfg.bn_bias_lr_mult != 1.0:
            kind = "bn_bias"
        else:
            kind = "main"
        groups[("pretrained." if name in pretrained else "") + kind].append(p)
    mult = {"main": 1.0, "bn_bias": cfg.bn_bias_lr_mult, "whiten_bias": 1.0}
    out = []
    for n, ps in groups.items():
        if not ps:
            continue
        kind = n.removeprefix("pretrained.")
        lr = cfg.lr * mult[kind] * (cfg.backbone_lr_mult if n != kind else 1.0)
        out.append({"params": ps, "name": n, "lr": lr, "weight_decay": cfg.weight_decay / mult[kind]})
    return out


def build_optimizer(cfg: TrainConfig, model: nn.Module, pretrained: Collection[str] = ()):
    groups = param_groups(cfg, model, pretrained)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sam":
        return SAM(groups, torch.optim.SGD, rho=cfg.sam_rho, lr=cfg.lr, momentum=cfg.momentum,
                   nesterov=cfg.nesterov and cfg.momentum > 0, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


# --------------------------------------------------------------------------------------
# Precision and the loss
# --------------------------------------------------------------------------------------


def cpu_has_bf16() -> bool:
    """The CPU computes bf16 natively (AVX512-BF16 or AMX)."""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a precision setting on a device (None = plain fp32)."""
    if precision == "fp32" or device.type == "mps":
        return None
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        # Only where the CPU does bf16 itself: emulated, a step is 5-8x slower than fp32
        # (measured on a 2-core AMD EPYC without AVX512-BF16: simple_cnn 6.4 s vs 0.84 s a step).
        return torch.bfloat16 if cpu_has_bf16() else None
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("fp16 autocast is for CUDA; use bf16 on CPU")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def grad_scaler(amp_dtype: torch.dtype | None, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling for fp16 (whose small gradients would underflow); a no-op scaler otherwise."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)


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
