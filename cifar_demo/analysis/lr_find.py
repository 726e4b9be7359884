"""The learning-rate range test (Smith 2015, "Cyclical Learning Rates for Training Neural Networks";
fastai's lr_find): train a few hundred steps while the learning rate grows exponentially from
`start_lr` to `end_lr`, record the loss, stop when it diverges, and read a good rate off the curve.

It starts from what a run of the config would start from (train.build_parts: the model, its
initialisation, the optimizer's parameter groups, the loader with the preset's augmentation, on
the training split: the validation and test images are never seen) and restores the model's and
the optimizer's state afterwards, so nothing of the test leaks into a run built from the same parts.

The learning rate shown is the config's `lr`; every parameter group keeps its ratio to it (a
group at lr x 0.1 stays at a tenth). Muon (airnet's presets): the conv filters step at `muon_lr`,
the other groups (biases, BatchNorm, the head) at `lr`; the test scales both by the same factor,
so a suggestion `s` means: lr = s and muon_lr = the preset's muon_lr x s / the preset's lr.

The suggestion (stated where it is shown): the rate where the smoothed loss falls fastest
against log(lr) ("steepest"), looked for between the first tenth of the sweep and the loss's
minimum; beside it, fastai's older rule, the minimum's rate divided by 10.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch

from ..recipe import TrainConfig
from ..train.parts import build_parts
from ..train.step import optimizer_step, training_loss
from ..train.transfer import set_train_mode

START_LR, END_LR = 1e-6, 10.0
STEPS = 200              # Smith: "a few epochs" on CIFAR; fastai: 100. 200 steps of 512 = 2 epochs of 50k
MAX_STEPS = 1000
SMOOTH = 0.9             # exponential moving average of the loss, bias-corrected (fastai's beta is 0.98 at 100+
#                          steps; 0.9 follows a shorter sweep without lagging it by tens of steps)
DIVERGE = 4.0            # stop once the smoothed loss exceeds 4x its best (fastai: 4x)
RULE = ("steepest: where the smoothed loss falls fastest against log(lr), between the first tenth of the sweep and "
        "the loss's minimum; beside it, the minimum's rate / 10")

Progress = Callable[[int, int, float, float], None]   # (step, steps, lr, smoothed loss)


@dataclass
class RangeTest:
    model: str
    preset: str | None
    optimizer: str
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    suggestion: float | None = None       # steepest descent
    min_over_10: float | None = None      # the minimum's lr / 10
    stopped: str = ""                     # why the sweep ended early ("" if it ran all its steps)
    steps: int = 0
    start_lr: float = START_LR
    end_lr: float = END_LR
    batch_size: int = 0
    preset_lr: float = 0.0
    muon_lr: float | None = None          # the preset's muon_lr (Muon only)
    seconds: float = 0.0
    rule: str = RULE

    def as_dict(self) -> dict:
        return asdict(self)

    def meaning(self) -> str:
        """What the number is, for people."""
        if self.suggestion is None:
            return "No suggestion: the loss never fell (try a wider range or more steps)."
        text = f"Suggested learning rate {self.suggestion:.2g} (the preset's: {self.preset_lr:g})"
        if self.muon_lr is not None:
            text += (f"; with Muon that means lr {self.suggestion:.2g} for biases, BatchNorm and the head, and muon_lr "
                     f"{self.muon_lr * self.suggestion / self.preset_lr:.2g} for the conv filters (the same factor "
                     "on both)")
        return text + "."


def suggest(lrs, smoothed) -> tuple[float | None, float | None]:
    """(steepest, min / 10) from a sweep; None where the curve has too few points or never falls."""
    lrs, loss = np.asarray(lrs, float), np.asarray(smoothed, float)
    if len(lrs) < 10 or not np.isfinite(loss).any():
        return None, None
    loss = np.where(np.isfinite(loss), loss, np.inf)
    low = int(np.argmin(loss))
    skip = max(1, len(lrs) // 10)
    if low <= skip + 1:
        return None, None
    slope = np.gradient(loss[:low + 1], np.log(lrs[:low + 1]))
    steep = skip + int(np.argmin(slope[skip:low + 1]))
    return float(lrs[steep]), float(lrs[low] / 10)


def range_test(cfg: TrainConfig, data=None, *, steps: int = STEPS, start_lr: float = START_LR,
               end_lr: float = END_LR, smooth: float = SMOOTH, diverge: float = DIVERGE,
               progress: Progress | None = None, parts=None) -> RangeTest:
    """Run the test for `cfg` on its training split (`data`: a loaded data.CifarData, else the
    config's dataset). `parts`: train.build_parts' result to use (and restore) instead of new ones."""
    if not 0 < start_lr < end_lr or not 10 <= int(steps) <= MAX_STEPS:
        raise ValueError(f"need 0 < start_lr < end_lr and 10 to {MAX_STEPS} steps")
    steps = int(steps)
    t0 = time.perf_counter()
    parts = parts if parts is not None else build_parts(cfg, data)
    model, optimizer = parts.raw_model, parts.optimizer
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(optimizer.state_dict())
    ratios = [g["lr"] / cfg.lr for g in optimizer.param_groups]
    out = RangeTest(cfg.model, cfg.preset, cfg.optimizer, steps=steps, start_lr=start_lr, end_lr=end_lr,
                    batch_size=cfg.batch_size, preset_lr=cfg.lr,
                    muon_lr=cfg.muon_lr if cfg.optimizer == "muon" else None)
    avg, best = 0.0, math.inf
    try:
        set_train_mode(cfg, parts.model)
        epoch, batches = 0, iter(())
        for i in range(steps):
            try:
                images, labels, *_ = next(batches)
            except StopIteration:
                parts.loader.set_epoch(epoch)
                batches, epoch = iter(parts.loader), epoch + 1
                images, labels, *_ = next(batches)
            lr = start_lr * (end_lr / start_lr) ** (i / (steps - 1))
            for g, r in zip(optimizer.param_groups, ratios):
                g["lr"] = lr * r

            def forward():
                with torch.autocast(parts.device.type, dtype=parts.amp_dtype or torch.float32,
                                    enabled=parts.amp_dtype is not None):
                    logits = parts.model(images)
                logits = logits.float()
                return logits, training_loss(cfg, logits, labels, None, model)

            _, loss = optimizer_step(cfg, optimizer, parts.scaler, model.parameters(), forward)
            value = float(loss.detach())
            avg = smooth * avg + (1 - smooth) * value
            smoothed = avg / (1 - smooth ** (i + 1))
            out.lrs.append(lr)
            out.losses.append(value)
            out.smoothed.append(smoothed)
            if progress is not None:
                progress(i + 1, steps, lr, smoothed)
            if not math.isfinite(smoothed):
                out.stopped = f"the loss became infinite at lr {lr:.2g}"
                break
            best = min(best, smoothed)
            if i > steps // 10 and smoothed > diverge * best:
                out.stopped = f"the loss diverged at lr {lr:.2g} ({smoothed:.2f} > {diverge:g} x its best {best:.2f})"
                break
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_opt)
    out.suggestion, out.min_over_10 = suggest(out.lrs, out.smoothed)
    out.seconds = round(time.perf_counter() - t0, 2)
    return out
