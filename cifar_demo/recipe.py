"""What defines a run: TrainConfig, the rules its values must meet, and every name list.

This is the one vocabulary of the engine: the CLI's flags and choices, the Train tab's
dropdowns, the zoo's recipes (zoo/registry.py) and the docs read the names here. Name lists
that belong to another layer are read from it, not copied: augmentation presets from
augment.PRESETS, batch mixes from augment.MIXES.

A low module: it imports neither the zoo nor the engine, so both can import it. The checks
that need them (a known model, this machine's precision, the files a config names) are
train.checks.validate(); the named presets are train.presets.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from . import augment

OPTIMIZERS = ("sgd", "adam", "adamw", "sam", "muon")
SCHEDULES = ("constant", "step", "cosine", "onecycle", "linear")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# What BatchNorm does with its statistics while a run trains (see TrainConfig.bn_stats and the
# finetune preset): "batch" is PyTorch's default (normalise with each batch's statistics, track
# running ones); "frozen" keeps the running statistics the model starts with (init_from's) and
# normalises with them; "recompute" re-estimates them once on the training images before the
# first step, then keeps them frozen.
BN_STATS = ("batch", "frozen", "recompute")
# How a low-resolution epoch (TrainConfig.low_res) makes its small images: "resize" shrinks the
# whole picture (bilinear, antialiased: every object smaller than at test time); "crop" cuts a
# random low_res x low_res window out of it (objects at their test-time size, less around them).
LOW_RES_MODES = ("resize", "crop")
# Test-time augmentation of a score: none, the mirror image too, or the mirror and 1-pixel shifts
# (analysis.evaluate makes the views).
TTA_MODES = ("none", "flip", "flip_translate")
MIXES: tuple[str, ...] = tuple(augment.MIXES)
AUGMENTATIONS: tuple[str, ...] = tuple(augment.PRESETS)

__all__ = ["AUGMENTATIONS", "BN_STATS", "CHOICES", "LOW_RES_MODES", "MIXES", "OPTIMIZERS", "PRECISIONS",
           "RECIPE_KEYS", "RUN_FIELDS", "SCHEDULES", "TTA_MODES", "TrainConfig"]


@dataclass
class TrainConfig:
    """Everything that defines a run. ``to_dict``/``from_dict`` round-trip through JSON."""

    model: str = "airnet"
    preset: str | None = None          # the preset the run started from (for the record)
    model_kwargs: dict = field(default_factory=dict)
    # Start from these weights instead of a random init: a shipped model's name (weights/<name>,
    # verified) or a weights file (.safetensors with its card, or a run's .zip download). Every
    # tensor is copied; the classifier head is new when the card's classes are not the data's.
    init_from: str | None = None
    # data
    data: str | None = None            # dataset folder or .zip (CIFAR-10, or own class folders); None = resolve
    val_size: int = 5000               # held out of the training set; 0 = train on all 50,000
    train_limit: int = 0               # >0: use only the first N (stratified) training images
    test_limit: int = 0                # >0: score only the first N test images
    # Distillation (train/distill.py): a file of a teacher's class probabilities for exactly this
    # run's training images (`python -m cifar_demo distill-targets`); None = learn from labels only.
    distill: str | None = None
    # optimisation
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"             # sgd | adam | adamw | sam (SAM wraps SGD) | muon (filters; SGD the rest)
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    sam_rho: float = 0.05
    # optimizer "muon" (optim.Muon): conv filters take orthogonalised momentum steps at muon_lr;
    # lr, momentum, nesterov and weight_decay are the SGD groups' (biases, BatchNorm, head).
    muon_lr: float = 0.24
    muon_momentum: float = 0.6
    muon_ns_steps: int = 3             # Newton-Schulz iterations per step
    muon_renorm: bool = True           # reset each filter tensor's norm to sqrt(out_channels) before its step
    distill_weight: float = 0.5        # with distill: each target is (1 - w) one-hot + w teacher
    l1: float = 0.0                    # L1 penalty on conv / linear weights, added to the loss
    label_smoothing: float = 0.0
    schedule: str = "cosine"           # constant | step | cosine | onecycle | linear
    warmup_epochs: float = 0.0         # linear warmup (cosine, linear, constant)
    warmup_from: float = 0.0           # warmup starts at this fraction of lr (airbench: 0.2)
    step_size: float = 30.0            # "step": epochs between decays
    step_gamma: float = 0.1
    final_lr_frac: float = 0.0         # "linear"/"cosine": lr at the end as a fraction of lr
    bn_bias_lr_mult: float = 1.0       # BatchNorm biases learn this much faster (wd divided by it)
    # airnet's whitening bias, read by its own_param_groups hook (zoo.hooks); other models ignore them:
    whiten_bias_epochs: int = 0        # >0: the whitening bias stops learning after N epochs
    whiten_bias_lr_mult: float = 1.0   # the whitening bias learns this much faster (wd divided by it)
    backbone_lr_mult: float = 1.0      # with init_from: the copied (pretrained) tensors learn at lr x this
    bn_stats: str = "batch"            # batch | frozen | recompute (BN_STATS): BatchNorm's statistics in training
    # augmentation
    augment: str = "standard"          # a name of augment.PRESETS (AUGMENTATIONS)
    mixes: dict = field(default_factory=dict)   # e.g. {"ricap": 0.2, "mixup": 0.3, "cutmix": 0.3}
    mix_alpha: float = 1.0
    # Progressive resizing: the first low_res_epochs epochs train on low_res x low_res images
    # made from each batch as low_res_mode says (LOW_RES_MODES: the whole picture downscaled, or
    # a random window of it), at about (low_res/32)^2 of the convolutions' cost; the rest, the
    # evaluations and the test score run at full size. 0 = off.
    low_res: int = 0
    low_res_epochs: int = 0
    low_res_mode: str = "resize"
    # extras
    ema: float = 0.0                   # EMA decay per step, 0 = off
    lookahead_every: int = 0           # airbench's Lookahead: every N steps pull to a slow copy; 0 = off
    lookahead_decay: float = 0.95**5   # the slow copy's decay at the end (it ramps up as (t/T)^3)
    grad_clip: float = 0.0             # max gradient norm, 0 = off
    early_stop_patience: int = 0       # epochs without a better val accuracy, 0 = off
    tta: str = "none"                  # test-time augmentation of the final test score (also reported)
    tta_confidence: float = 0.0        # >0: TTA views only for test images whose plain top probability is below it
    # execution
    # auto (bf16 on a CPU with native bf16, else fp32; bf16/fp16 on CUDA) | fp32 | bf16 | fp16
    precision: str = "auto"
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

    def check_values(self) -> "TrainConfig":
        """ValueError on a name outside the vocabulary or a value out of range.

        The rules that need neither the zoo nor this machine, so a partial config (a zoo
        recipe, while the zoo is still registering) can be held to them too.
        """
        checks = [
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}"),
            (self.bn_stats in BN_STATS, f"bn_stats must be one of {BN_STATS}"),
            (self.backbone_lr_mult > 0, "backbone_lr_mult must be > 0"),
            (self.augment in AUGMENTATIONS, f"augment must be one of {AUGMENTATIONS}"),
            (self.tta in TTA_MODES, f"tta must be one of {TTA_MODES}"),
            (set(self.mixes) <= set(MIXES), f"mixes must be among {MIXES}"),
            (all(0 <= p <= 1 for p in self.mixes.values()), "mix probabilities must be in [0, 1]"),
            (sum(self.mixes.values()) <= 1 + 1e-9, "mix probabilities must sum to <= 1"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.val_size >= 0 and self.train_limit >= 0 and self.test_limit >= 0,
             "val_size, train_limit and test_limit must be >= 0"),
            (self.optimizer != "sam" or self.sam_rho > 0, "sam_rho must be > 0"),
            (0 <= self.ema < 1, "ema must be in [0, 1)"),
            (self.lookahead_every >= 0 and 0 <= self.lookahead_decay < 1,
             "lookahead_every must be >= 0 and lookahead_decay in [0, 1)"),
            (not (self.ema and self.lookahead_every), "use either ema or lookahead, not both"),
            (0 <= self.warmup_from <= 1, "warmup_from must be in [0, 1]"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (self.bn_bias_lr_mult > 0 and self.whiten_bias_lr_mult > 0,
             "bn_bias_lr_mult and whiten_bias_lr_mult must be > 0"),
            (self.muon_lr > 0 and 0 <= self.muon_momentum < 1 and self.muon_ns_steps >= 1,
             "muon_lr must be > 0, muon_momentum in [0, 1) and muon_ns_steps >= 1"),
            (self.grad_clip >= 0, "grad_clip must be >= 0 (0 = off)"),
            (0 <= self.tta_confidence <= 1, "tta_confidence must be in [0, 1] (0 = every image gets the views)"),
            (self.low_res == 0 or 8 <= self.low_res, "low_res must be 0 (off) or >= 8 pixels"),
            (0 <= self.low_res_epochs and (self.low_res_epochs == 0 or self.low_res_epochs < self.epochs),
             "low_res_epochs must be >= 0 and leave at least the last epoch at full size"),
            (bool(self.low_res) == bool(self.low_res_epochs), "set low_res and low_res_epochs together (or neither)"),
            (self.low_res_mode in LOW_RES_MODES, f"low_res_mode must be one of {LOW_RES_MODES}"),
            (0 <= self.distill_weight <= 1, "distill_weight must be in [0, 1]"),
            # A mix blends two images' targets; a teacher's probabilities are one image's.
            (not (self.distill and self.mixes), "use either distill or batch mixes, not both"),
            # Batches are full (drop_last): a subset smaller than one batch gives zero steps.
            (not self.train_limit or self.train_limit >= self.batch_size,
             f"the training subset ({self.train_limit} images) is smaller than one batch "
             f"({self.batch_size}); raise it or lower the batch size"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return self


# The fields that say which model and data a run uses and where it runs; every other field
# is a training setting, which a zoo recipe may set (RECIPE_KEYS follows TrainConfig).
RUN_FIELDS = ("model", "preset", "model_kwargs", "init_from", "distill", "data", "val_size", "train_limit",
              "test_limit",
              "precision", "channels_last", "device", "num_workers", "seed")
RECIPE_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in RUN_FIELDS)
# Fields whose value is a name from a list: the CLI offers them as choices.
CHOICES: dict[str, tuple[str, ...]] = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "precision": PRECISIONS,
                                       "augment": AUGMENTATIONS, "tta": TTA_MODES, "bn_stats": BN_STATS,
                                       "low_res_mode": LOW_RES_MODES}
