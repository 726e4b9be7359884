"""The one training engine: TrainConfig, presets, run directories, events, resume, DDP.

Data flows one way: data -> engine -> events -> sinks. The engine never prints or plots
itself; the console progress bar, the metrics.jsonl file and the app are all sinks.

A run lives in ``runs/<run-id>/``:

    config.json      the TrainConfig (JSON round-trip)
    metrics.jsonl    one event per line (step records and epoch records)
    checkpoint.pt    last checkpoint (model, optimizer, scheduler, EMA, RNG, position),
                     written atomically every epoch and on stop; tensors only
    best.safetensors best weights by validation accuracy (the EMA weights when EMA is on)
    summary.json     final status, best epoch, validation and test accuracy
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import zoo
from .weights import hardware_info, load_checkpoint, save_checkpoint as save_checkpoint_file
from .common import NUM_CLASSES, pick_device

# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------

OPTIMIZERS = ("sgd", "adam", "adamw", "sam")
SCHEDULES = ("constant", "step", "cosine", "onecycle", "linear")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Everything that defines a run. ``to_dict``/``from_dict`` round-trip through JSON."""

    model: str = "airnet"
    preset: str | None = None          # the preset the run started from (for the record)
    model_kwargs: dict = field(default_factory=dict)
    # data
    data: str | None = None            # explicit dataset folder; None = resolve (see data.py)
    val_size: int = 5000               # held out of the training set; 0 = train on all 50,000
    train_limit: int = 0               # >0: use only the first N (stratified) training images
    test_limit: int = 0                # >0: score only the first N test images
    # optimisation
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"             # sgd | adam | adamw | sam (SAM wraps SGD)
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    sam_rho: float = 0.05
    l1: float = 0.0                    # L1 penalty on conv / linear weights, added to the loss
    label_smoothing: float = 0.0
    schedule: str = "cosine"           # constant | step | cosine | onecycle | linear
    warmup_epochs: float = 0.0         # linear warmup (cosine, linear, constant)
    warmup_from: float = 0.0           # warmup starts at this fraction of lr (airbench: 0.2)
    step_size: float = 30.0            # "step": epochs between decays
    step_gamma: float = 0.1
    final_lr_frac: float = 0.0         # "linear"/"cosine": lr at the end as a fraction of lr
    bn_bias_lr_mult: float = 1.0       # BatchNorm biases learn this much faster (wd divided by it)
    whiten_bias_epochs: int = 0        # >0: the "whiten." layer's bias stops learning after N epochs
    # augmentation
    augment: str = "standard"          # none | standard | seed004 | autoaugment
    mixes: dict = field(default_factory=dict)   # e.g. {"ricap": 0.2, "mixup": 0.3, "cutmix": 0.3}
    mix_alpha: float = 1.0
    # extras
    ema: float = 0.0                   # EMA decay per step, 0 = off
    lookahead_every: int = 0           # airbench's Lookahead: every N steps pull to a slow copy; 0 = off
    lookahead_decay: float = 0.95**5   # the slow copy's decay at the end (it ramps up as (t/T)^3)
    grad_clip: float = 0.0             # max gradient norm, 0 = off
    early_stop_patience: int = 0       # epochs without a better val accuracy, 0 = off
    tta: str = "none"                  # test-time augmentation of the final test score (also reported)
    # execution
    precision: str = "auto"            # auto (bf16 on CPU, bf16/fp16 on CUDA) | fp32 | bf16 | fp16
    channels_last: bool = True
    device: str = "auto"
    num_workers: int = 2               # DataLoader workers for per-image (albumentations) presets
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        return cls.from_dict(json.loads(text))

    def validate(self) -> "TrainConfig":
        if self.model not in zoo.names():
            raise ValueError(f"unknown model {self.model!r}; choose one of: {', '.join(zoo.names())}")
        checks = [
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.val_size >= 0, "val_size must be >= 0"),
            (0 <= self.ema < 1, "ema must be in [0, 1)"),
            (self.lookahead_every >= 0 and 0 <= self.lookahead_decay < 1,
             "lookahead_every must be >= 0 and lookahead_decay in [0, 1)"),
            (not (self.ema and self.lookahead_every), "use either ema or lookahead, not both"),
            (0 <= self.warmup_from <= 1, "warmup_from must be in [0, 1]"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (sum(self.mixes.values()) <= 1 + 1e-9, "mix probabilities must sum to <= 1"),
            (self.bn_bias_lr_mult > 0, "bn_bias_lr_mult must be > 0"),
            (self.tta in ("none", "flip", "flip_translate"), "tta must be none, flip or flip_translate"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return self


def presets() -> dict[str, dict]:
    """Named presets: each zoo model's default recipe under the model's name, plus extras.

    A preset is a dict of TrainConfig overrides; ``--preset`` selects one and flags override it.
    """
    out = {spec.name: {"model": spec.name, **copy.deepcopy(spec.recipe)} for spec in zoo.specs()}
    out.update(EXTRA_PRESETS)
    return out


# Presets that are not a model's source recipe. The airnet speed recipes live here: airbench94's
# method (patch whitening, BN biases at 64x lr, whitening bias frozen after a few epochs,
# Nesterov SGD, label smoothing 0.2, warmup then linear decay, 2-pixel translations and flips,
# 6-view TTA) on a CPU budget. Figures and the command that measures them: docs/benchmarks.md.
_AIRBENCH = dict(model="airnet", batch_size=1024, optimizer="sgd", lr=1.5, momentum=0.85, nesterov=True,
                 weight_decay=1.33e-3, label_smoothing=0.2, schedule="linear", final_lr_frac=0.07,
                 augment="translate2", bn_bias_lr_mult=64.0, tta="flip_translate")
EXTRA_PRESETS: dict[str, dict] = {
    # The Train tab's first choice: a few minutes on 2 CPU cores.
    "demo": {**_AIRBENCH, "epochs": 4, "warmup_epochs": 0.9, "whiten_bias_epochs": 1},
    # The reference: airbench94's published method in this engine (it trains 9.9 epochs; the
    # engine counts whole epochs), to measure our presets against on the same machine.
    "airbench94": {**_AIRBENCH, "epochs": 10, "warmup_epochs": 2.3, "warmup_from": 0.2, "whiten_bias_epochs": 3,
                   "augment": "translate2_altflip", "lookahead_every": 5},
    # The best on 2 CPU cores within 20 minutes: the same method, trained longer (see docs/benchmarks.md).
    "fast": {**_AIRBENCH, "epochs": 20, "warmup_epochs": 4.6, "warmup_from": 0.2, "whiten_bias_epochs": 3,
             "augment": "translate2_altflip", "lookahead_every": 5},
}


def make_config(preset: str | None = None, **overrides) -> TrainConfig:
    """TrainConfig from a preset (default: the model's own recipe) plus explicit overrides."""
    base: dict[str, Any] = {}
    table = presets()
    if preset is None and overrides.get("model") in table:
        preset = overrides["model"]
    if preset is not None:
        if preset not in table:
            raise ValueError(f"unknown preset {preset!r}; choose one of: {', '.join(sorted(table))}")
        base.update(table[preset])
        base["preset"] = preset
    base.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(base).validate()


# --------------------------------------------------------------------------------------
# Schedules, optimizers, precision
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


def build_scheduler(cfg: TrainConfig, optimizer, total_steps: int, steps_per_epoch: int):
    base = optimizer.base_optimizer if isinstance(optimizer, SAM) else optimizer
    if cfg.schedule == "onecycle":
        # torch's OneCycleLR also cycles SGD momentum inversely to the LR, as in Smith's paper.
        return torch.optim.lr_scheduler.OneCycleLR(
            base, max_lr=[g["lr"] for g in base.param_groups], total_steps=max(total_steps, 2),
            pct_start=cfg.warmup_epochs / cfg.epochs if cfg.warmup_epochs else 0.25,
            cycle_momentum=cfg.optimizer in ("sgd", "sam"),
        )
    stop_at = cfg.whiten_bias_epochs * steps_per_epoch

    def factor(group_name: str):
        if group_name == "whiten_bias":
            return lambda s: lr_factor(cfg, s, total_steps, steps_per_epoch) if s < stop_at else 0.0
        return lambda s: lr_factor(cfg, s, total_steps, steps_per_epoch)

    return torch.optim.lr_scheduler.LambdaLR(base, [factor(g.get("name", "main")) for g in base.param_groups])


class SAM(torch.optim.Optimizer):
    """Sharpness-aware minimisation (Foret et al., 2021) wrapping a base optimizer.

    Each step needs two forward/backward passes: the engine calls ``first_step`` after the
    first backward (moves the weights to the worst case within radius rho), recomputes the
    loss there, and ``second_step`` after the second backward (restores the weights and
    applies the base optimizer with the sharpness-aware gradient).
    """

    def __init__(self, params, base_optimizer_cls, rho: float = 0.05, **kwargs):
        if rho <= 0:
            raise ValueError("SAM rho must be > 0")
        super().__init__(params, dict(rho=rho, **kwargs))
        self.base_optimizer = base_optimizer_cls(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups

    @torch.no_grad()
    def first_step(self):
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        norm = torch.norm(torch.stack([gr.norm(2) for gr in grads]), 2) if grads else torch.tensor(0.0)
        for group in self.param_groups:
            scale = group["rho"] / (norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                e = p.grad * scale.to(p)
                p.add_(e)
                self.state[p]["e_w"] = e

    @torch.no_grad()
    def second_step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if "e_w" in self.state[p]:
                    p.sub_(self.state[p].pop("e_w"))
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


def param_groups(cfg: TrainConfig, model: nn.Module) -> list[dict]:
    """Trainable parameters in groups: "main", "bn_bias" (lr x bn_bias_lr_mult, weight decay
    / mult, so their decay per step is unchanged) and "whiten_bias" (can stop learning early).

    airbench trains BatchNorm biases 64x faster: with the scales frozen they are the only
    per-channel knobs, and a larger step lets them track the fast-moving features.
    """
    bn_bias = {id(m.bias) for m in model.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None}
    groups: dict[str, list] = {"main": [], "bn_bias": [], "whiten_bias": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if cfg.whiten_bias_epochs and name.startswith("whiten.") and name.endswith("bias"):
            groups["whiten_bias"].append(p)
        elif id(p) in bn_bias and cfg.bn_bias_lr_mult != 1.0:
            groups["bn_bias"].append(p)
        else:
            groups["main"].append(p)
    mult = {"main": 1.0, "bn_bias": cfg.bn_bias_lr_mult, "whiten_bias": 1.0}
    return [{"params": ps, "name": n, "lr": cfg.lr * mult[n], "weight_decay": cfg.weight_decay / mult[n]}
            for n, ps in groups.items() if ps]


def build_optimizer(cfg: TrainConfig, model: nn.Module):
    groups = param_groups(cfg, model)
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


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a precision setting on a device (None = plain fp32)."""
    if precision == "fp32" or device.type == "mps":
        return None
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("fp16 autocast is for CUDA; use bf16 on CPU")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of |w| over conv and linear weights (not biases, not BatchNorm)."""
    terms = [m.weight.abs().sum() for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.requires_grad]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def training_loss(cfg: TrainConfig, logits, labels, targets=None, model: nn.Module | None = None):
    """Cross-entropy (soft targets when a batch mix made them), label smoothing, L1 penalty."""
    if targets is not None:
        from .augment import soft_cross_entropy

        loss = soft_cross_entropy(logits, targets, label_smoothing=cfg.label_smoothing)
    else:
        loss = F.cross_entropy(logits, labels, label_smoothing=cfg.label_smoothing)
    if cfg.l1 and model is not None:
        loss = loss + cfg.l1 * l1_penalty(model)
    return loss


# --------------------------------------------------------------------------------------
# Events and sinks
# --------------------------------------------------------------------------------------

Sink = Callable[[dict], None]


class JsonlSink:
    """Appends every event as one JSON line; flushes so readers (the app) see it at once."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fh = open(self.path, "a", encoding="utf-8")

    def __call__(self, event: dict) -> None:
        self._fh.write(json.dumps(event) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class TqdmSink:
    """A tqdm progress bar over all steps of the run, and one printed line per epoch."""

    def __init__(self, **tqdm_kwargs):
        self.kwargs = tqdm_kwargs
        self.bar = None

    def __call__(self, event: dict) -> None:
        from tqdm.auto import tqdm

        kind = event.get("kind")
        if kind == "start":
            self.bar = tqdm(total=event["total_steps"], initial=event["step"], unit="step",
                            desc=event["run_id"], dynamic_ncols=True, **self.kwargs)
        elif kind == "step" and self.bar is not None:
            self.bar.update(event["step"] - self.bar.n)
            self.bar.set_postfix(loss=f"{event['train_loss']:.3f}", acc=f"{event['train_acc']:.3f}",
                                 lr=f"{event['lr']:.2e}", img_s=f"{event['images_per_s']:.0f}",
                                 refresh=False)
        elif kind == "epoch" and self.bar is not None:
            self.bar.write(format_epoch(event))
        elif kind == "end" and self.bar is not None:
            self.bar.close()
            self.bar = None


def format_epoch(e: dict) -> str:
    val = "" if e.get("val_acc") is None else f"  val loss {e['val_loss']:.4f} acc {100 * e['val_acc']:.2f}%"
    return (f"epoch {e['epoch']:>3}  train loss {e['train_loss']:.4f} acc {100 * e['train_acc']:.2f}%"
            f"{val}  lr {e['lr']:.3g}  {e['images_per_s']:.0f} img/s  {e['elapsed_s']:.0f}s")


# --------------------------------------------------------------------------------------
# Run directories and checkpoints
# --------------------------------------------------------------------------------------


def runs_root(root: str | Path | None = None) -> Path:
    return Path(root or os.environ.get("CIFAR_DEMO_RUNS", "runs"))


def new_run_id(model: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{stamp}-{model}-{os.urandom(2).hex()}"


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """All events of a run; a half-written last line (killed run) is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]) + [random.getstate()[2] or 0],
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((3, tuple(py[:-1]), py[-1] or None))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------------------
# Distributed helpers (torchrun sets RANK / WORLD_SIZE / LOCAL_RANK)
# --------------------------------------------------------------------------------------


def _dist_env() -> tuple[int, int, int]:
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def state_digest(model: nn.Module) -> str:
    """sha256 over a model's state_dict tensors (names and bytes, in key order)."""
    import hashlib

    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _broadcast_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics).

    DDP broadcasts buffers at the start of each forward pass, but each rank then updates its
    running statistics on its own shard; syncing at epoch ends makes every rank validate and
    save the same model.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        for b in model.buffers():
            dist.broadcast(b, src=0)


def _gather_digests(model: nn.Module) -> list[str]:
    import torch.distributed as dist

    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, state_digest(model))
    return out


def _all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


# --------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------


class Trainer:
    """Runs one TrainConfig to completion (or to a stop request), emitting events to sinks.

    ``data`` may be given (a data.CifarData) so tests and the app can reuse a loaded set.
    ``epoch_hooks`` are called on the main rank as ``hook(epoch, model)`` after each epoch's
    validation and checkpoint (bench/ uses one to follow test accuracy when there is no
    validation split); their time counts in the run's elapsed time.
    """

    def __init__(self, cfg: TrainConfig, *, run_dir: str | Path | None = None,
                 runs_dir: str | Path | None = None, data=None, sinks: Iterable[Sink] = (),
                 stop_event: threading.Event | None = None, console: bool = False,
                 epoch_hooks: Iterable[Callable[[int, nn.Module], None]] = ()):
        self.cfg = cfg.validate()
        self.rank, self.world_size, self.local_rank = _dist_env()
        self.is_main = self.rank == 0
        self.stop_event = stop_event or threading.Event()
        self.sinks: list[Sink] = list(sinks) if self.is_main else []
        if console and self.is_main:
            self.sinks.append(TqdmSink())
        self.epoch_hooks = list(epoch_hooks) if self.is_main else []
        self._data = data
        if run_dir is None:
            run_dir = runs_root(runs_dir) / new_run_id(cfg.model)
        self.run_dir = Path(run_dir)
        self.run_id = self.run_dir.name

    # -- public -------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the run to end at the next step boundary (thread-safe); it checkpoints first."""
        self.stop_event.set()

    def run(self, resume: bool = False) -> dict:
        """Train; returns the summary dict (also written to summary.json)."""
        if self.world_size > 1:
            return self._run_distributed(resume)
        return self._run(resume)

    # -- setup --------------------------------------------------------------------------

    def _run_distributed(self, resume: bool) -> dict:
        import torch.distributed as dist

        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend=backend)
        try:
            # Every rank must use the same run directory: rank 0 broadcasts its name.
            name = [self.run_dir.as_posix()]
            dist.broadcast_object_list(name, src=0)
            self.run_dir = Path(name[0])
            self.run_id = self.run_dir.name
            return self._run(resume)
        finally:
            dist.destroy_process_group()

    def _load_data(self):
        from . import data as data_mod

        if self._data is None:
            self._data = data_mod.load_cifar10(self.cfg.data, val_size=self.cfg.val_size, seed=self.cfg.seed)
        d = self._data
        train = d.train
        if self.cfg.train_limit:
            train = data_mod.stratified_subset(train, self.cfg.train_limit, seed=self.cfg.seed)
        test = d.test
        if self.cfg.test_limit:
            test = data_mod.subset(test, range(min(self.cfg.test_limit, len(test))))
        return d, train, d.val, test

    def _make_loader(self, train, device):
        from . import augment, data as data_mod

        cfg = self.cfg
        kind = augment.preset_kind(cfg.augment)
        spec = zoo.get_spec(cfg.model)
        if kind == "device":
            return data_mod.TensorLoader(train, cfg.batch_size, shuffle=True, drop_last=True,
                                         augment=cfg.augment, device=device, seed=cfg.seed,
                                         mean=spec.mean, std=spec.std,
                                         channels_last=self._channels_last(device),
                                         rank=self.rank, world_size=self.world_size)
        return data_mod.PerImageLoader(train, cfg.augment, cfg.batch_size, num_workers=cfg.num_workers,
                                       seed=cfg.seed, drop_last=True, device=device, mean=spec.mean, std=spec.std,
                                       rank=self.rank, world_size=self.world_size)

    def _channels_last(self, device: torch.device) -> bool:
        return self.cfg.channels_last and device.type in ("cpu", "cuda")

    def _build_model(self, train, device) -> nn.Module:
        torch.manual_seed(self.cfg.seed)
        model = zoo.create(self.cfg.model, **self.cfg.model_kwargs)
        # Models that learn from the data before training (airnet's patch whitening) say so.
        prepare = getattr(model, "init_from_data", None)
        if prepare is not None:
            # A seeded random 5,000 (split files may be sorted by class).
            pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.cfg.seed))[:5000]
            prepare(train.images[pick])
        model = model.to(device)
        if self._channels_last(device):
            model = model.to(memory_format=torch.channels_last)
        return model

    # -- the loop -----------------------------------------------------------------------

    def _run(self, resume: bool) -> dict:  # noqa: C901 - the loop reads best in one place
        from . import augment, evaluate as eval_mod

        cfg = self.cfg
        device = pick_device(None if cfg.device == "auto" else cfg.device)
        if self.world_size > 1 and device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        amp_dtype = autocast_dtype(cfg.precision, device)
        seed_everything(cfg.seed)

        data, train, val, test = self._load_data()
        spec = zoo.get_spec(cfg.model)
        norm = {"mean": spec.mean, "std": spec.std}
        loader = self._make_loader(train, device)
        steps_per_epoch = len(loader)
        if steps_per_epoch == 0:
            raise ValueError(f"batch size {cfg.batch_size} is larger than the {len(train)} training images")
        total_steps = steps_per_epoch * cfg.epochs

        model = self._build_model(train, device)
        raw_model = model
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
        optimizer = build_optimizer(cfg, raw_model)
        scheduler = build_scheduler(cfg, optimizer, total_steps, steps_per_epoch)
        scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        ema = None
        if cfg.ema > 0:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            ema = AveragedModel(raw_model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
        lookahead = Lookahead(raw_model) if cfg.lookahead_every else None
        mixer = augment.BatchMixer(cfg.mixes, num_classes=NUM_CLASSES, alpha=cfg.mix_alpha) if cfg.mixes else None

        state = {"epoch": 0, "batch": 0, "step": 0, "best_val_acc": -1.0, "best_epoch": 0,
                 "bad_epochs": 0, "epoch_sums": [0.0, 0.0, 0.0], "elapsed_s": 0.0}
        ckpt_path = self.run_dir / "checkpoint.pt"
        if resume:
            ckpt = load_checkpoint(ckpt_path)
            raw_model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            scaler.load_state_dict(ckpt["scaler"])
            if ema is not None:
                ema.load_state_dict(ckpt["ema"])
            if lookahead is not None:
                lookahead.load_state_dict(ckpt["lookahead"])
            state.update(ckpt["state"])
            state["epoch_sums"] = list(state["epoch_sums"])
            _set_rng_state(ckpt["rng"])
        elif self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=False)
            atomic_write_text(self.run_dir / "config.json", cfg.to_json())

        jsonl = JsonlSink(self.run_dir / "metrics.jsonl") if self.is_main else None
        sinks = ([jsonl] if jsonl else []) + self.sinks

        def emit(event: dict) -> None:
            for sink in sinks:
                sink(event)

        def save_checkpoint() -> None:
            if not self.is_main:
                return
            save_checkpoint_file({
                "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "lookahead": lookahead.state_dict() if lookahead is not None else None,
                "state": dict(state), "rng": _rng_state(),
            }, ckpt_path)

        def eval_model() -> nn.Module:
            return ema.module if ema is not None else raw_model

        session_start = time.perf_counter()
        elapsed_before = state["elapsed_s"]
        session_images = 0
        session_steps = 0
        emit({"kind": "start", "run_id": self.run_id, "step": state["step"], "total_steps": total_steps,
              "epochs": cfg.epochs, "steps_per_epoch": steps_per_epoch, "resumed": resume,
              "device": str(device), "precision": str(amp_dtype or "fp32"), "world_size": self.world_size,
              "n_train": len(train), "n_val": len(val), "time": time.time()})
        status = "finished"
        try:
            while state["epoch"] < cfg.epochs:
                epoch = state["epoch"]
                model.train()
                for images, labels in loader.iter_from(epoch, state["batch"]):
                    if self.stop_event.is_set():
                        raise _Stop
                    if mixer is not None:
                        # Seeded by (seed, step) so a resumed run draws the same mixes.
                        mixer.generator = torch.Generator(device=images.device).manual_seed(
                            cfg.seed * 1_000_003 + state["step"])
                        images, targets = mixer(images, labels)
                    else:
                        targets = None
                    loss, correct = self._train_step(model, raw_model, optimizer, scaler, images, labels,
                                                     targets, amp_dtype, device)
                    scheduler.step()
                    if ema is not None:
                        ema.update_parameters(raw_model)
                    if lookahead is not None:
                        decay = Lookahead.decay_at(cfg, state["step"] + 1, total_steps)
                        if decay is not None:
                            lookahead.update(raw_model, decay)
                    n = labels.shape[0]
                    loss_sum, correct_sum, n_sum = _all_reduce_sum([loss * n, correct, n], device)
                    state["epoch_sums"] = [a + b for a, b in zip(state["epoch_sums"], (loss_sum, correct_sum, n_sum))]
                    state["batch"] += 1
                    state["step"] += 1
                    session_images += int(n_sum)
                    session_steps += 1
                    now = time.perf_counter() - session_start
                    state["elapsed_s"] = elapsed_before + now
                    rate = session_steps / max(now, 1e-9)
                    emit({"kind": "step", "step": state["step"], "epoch": epoch + state["batch"] / steps_per_epoch,
                          "train_loss": loss_sum / n_sum, "train_acc": correct_sum / n_sum,
                          "lr": optimizer.param_groups[0]["lr"], "images_per_s": session_images / max(now, 1e-9),
                          "elapsed_s": state["elapsed_s"], "eta_s": (total_steps - state["step"]) / rate})

                # End of epoch: validate, keep the best, checkpoint.
                _broadcast_buffers(raw_model)
                ls, cs, ns = state["epoch_sums"]
                record = {"kind": "epoch", "epoch": epoch + 1, "step": state["step"],
                          "train_loss": ls / ns, "train_acc": cs / ns, "val_loss": None, "val_acc": None,
                          "lr": optimizer.param_groups[0]["lr"], "elapsed_s": state["elapsed_s"],
                          "images_per_s": session_images / max(time.perf_counter() - session_start, 1e-9)}
                improved = True
                if len(val):
                    res = eval_mod.evaluate(eval_model(), val, device=device,
                                            precision=_eval_precision(amp_dtype), **norm)
                    record["val_loss"], record["val_acc"] = res.loss, res.accuracy
                    improved = res.accuracy > state["best_val_acc"]
                if improved:
                    state["best_val_acc"] = record["val_acc"] if record["val_acc"] is not None else -1.0
                    state["best_epoch"] = epoch + 1
                    state["bad_epochs"] = 0
                    self._save_best(eval_model())
                else:
                    state["bad_epochs"] += 1
                state.update(epoch=epoch + 1, batch=0, epoch_sums=[0.0, 0.0, 0.0])
                save_checkpoint()
                emit(record)
                for hook in self.epoch_hooks:
                    hook(epoch + 1, eval_model())
                if cfg.early_stop_patience and state["bad_epochs"] >= cfg.early_stop_patience:
                    status = "early_stopped"
                    break
        except (_Stop, KeyboardInterrupt):
            status = "stopped"
            save_checkpoint()
        except BaseException as exc:
            # A crash still leaves a resumable checkpoint at the last epoch boundary.
            emit({"kind": "end", "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                  "step": state["step"], "elapsed_s": state["elapsed_s"]})
            if jsonl:
                jsonl.close()
            raise

        summary = {"run_id": self.run_id, "status": status, "model": cfg.model, "epochs_run": state["epoch"],
                   "steps": state["step"], "best_epoch": state["best_epoch"],
                   "best_val_acc": state["best_val_acc"] if len(val) else None,
                   "elapsed_s": state["elapsed_s"], "device": str(device), "world_size": self.world_size,
                   "precision": str(amp_dtype or "fp32"), "test_acc": None, "n_test": len(test),
                   "dataset": data.source.label, "dataset_fingerprint": data.source.fingerprint,
                   "hardware": hardware_info()}
        if self.world_size > 1:
            # DDP keeps replicas identical; record each rank's weights digest so that is visible.
            summary["weights_sha256_by_rank"] = _gather_digests(raw_model)
        if status != "stopped" and self.is_main:
            best = self.load_best(device)
            res = eval_mod.evaluate(best, test, device=device, precision=_eval_precision(amp_dtype), **norm)
            summary["test_acc"] = res.accuracy
            summary["test_loss"] = res.loss
            if cfg.tta != "none":
                summary["test_acc_tta"] = eval_mod.evaluate(best, test, device=device, tta=cfg.tta,
                                                            precision=_eval_precision(amp_dtype), **norm).accuracy
        if self.is_main:
            atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2))
        emit({"kind": "end", **summary})
        if jsonl:
            jsonl.close()
        return summary

    def _train_step(self, model, raw_model, optimizer, scaler, images, labels, targets, amp_dtype, device):
        cfg = self.cfg

        def forward_loss():
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                logits = model(images)
            logits = logits.float()
            return logits, training_loss(cfg, logits, labels, targets, raw_model)

        def clip():
            if cfg.grad_clip:
                scaler.unscale_(optimizer.base_optimizer if isinstance(optimizer, SAM) else optimizer)
                torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip)

        optimizer.zero_grad(set_to_none=True)
        logits, loss = forward_loss()
        if isinstance(optimizer, SAM):
            loss.backward()
            clip()
            optimizer.first_step()
            optimizer.zero_grad(set_to_none=True)
            _, loss2 = forward_loss()
            loss2.backward()
            clip()
            optimizer.second_step()
        else:
            scaler.scale(loss).backward()
            clip()
            scaler.step(optimizer)
            scaler.update()
        with torch.no_grad():
            ref = targets.argmax(1) if targets is not None else labels
            correct = (logits.argmax(1) == ref).sum().item()
        return loss.item(), correct

    def _save_best(self, model: nn.Module) -> None:
        if not self.is_main:
            return
        from safetensors.torch import save_file

        tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        tmp = self.run_dir / (BEST_FILE + ".tmp")
        save_file(tensors, str(tmp), metadata={"model": self.cfg.model, "run_id": self.run_id})
        os.replace(tmp, self.run_dir / BEST_FILE)

    def load_best(self, device="cpu") -> nn.Module:
        return model_from_weights_file(self.cfg, self.run_dir / BEST_FILE).to(device)


class _Stop(Exception):
    """Raised inside the loop when a stop was requested."""


def _eval_precision(amp_dtype) -> str:
    return "bf16" if amp_dtype == torch.bfloat16 else "fp32"


# --------------------------------------------------------------------------------------
# Convenience
# --------------------------------------------------------------------------------------


def train(cfg: TrainConfig, **kwargs) -> dict:
    """Run a fresh training run; see Trainer for keyword arguments."""
    return Trainer(cfg, **kwargs).run()


BEST_FILE = "best.safetensors"


def model_from_weights_file(cfg: TrainConfig, path: str | Path, transform=None) -> nn.Module:
    """The config's model with the (safetensors) state in `path`, on the CPU.

    `transform` may rewrite the state dict first (export rounds it through fp16).
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"run {path.parent.name} has no best weights yet ({path})")
    state = load_file(str(path))
    model = zoo.create(cfg.model, **cfg.model_kwargs)
    model.load_state_dict(transform(state) if transform else state)
    return model


def load_run(run_id: str | Path, runs_dir=None) -> tuple[TrainConfig, Path]:
    """(config, run directory) of a run id or directory."""
    run_dir = run_dir_of(run_id, runs_dir)
    return TrainConfig.from_json((run_dir / "config.json").read_text(encoding="utf-8")), run_dir


def run_dir_of(run_id: str | Path, runs_dir=None) -> Path:
    """A run directory from a run id (under the runs root) or a path."""
    d = Path(run_id)
    if not d.is_dir():
        d = runs_root(runs_dir) / str(run_id)
    if not (d / "config.json").exists():
        raise FileNotFoundError(f"no run at {d} (expected {d / 'config.json'})")
    return d


def resume(run_id_or_dir: str | Path, *, runs_dir=None, **kwargs) -> dict:
    """Continue a killed or stopped run from its last checkpoint."""
    run_dir = run_dir_of(run_id_or_dir, runs_dir)
    if not (run_dir / "checkpoint.pt").exists():
        raise FileNotFoundError(f"run {run_dir.name} has no checkpoint yet; start it again instead")
    cfg = TrainConfig.from_json((run_dir / "config.json").read_text(encoding="utf-8"))
    return Trainer(cfg, run_dir=run_dir, **kwargs).run(resume=True)


def list_runs(runs_dir=None) -> list[dict]:
    """Every run directory with its config and summary (newest first)."""
    root = runs_root(runs_dir)
    out = []
    for d in sorted(root.glob("*/config.json"), reverse=True):
        run_dir = d.parent
        summary_path = run_dir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
        out.append({"run_id": run_dir.name, "dir": str(run_dir),
                    "config": json.loads(d.read_text()), "summary": summary})
    return out
