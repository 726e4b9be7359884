"""Named presets: each zoo model's default recipe under the model's name, plus the extras below.

A preset is a dict of TrainConfig overrides; ``--preset`` selects one and flags override it.
The comments say why each setting is what it is; the measurements behind the choices (with
their commands and machines) have one home: docs/training.md and docs/journal.md.
"""

from __future__ import annotations

import copy
from typing import Any

from .. import zoo
from ..recipe import TrainConfig
from .checks import validate


def presets() -> dict[str, dict]:
    """Every preset by name: the zoo models' recipes, then EXTRA_PRESETS."""
    out = {spec.name: {"model": spec.name, **copy.deepcopy(spec.recipe)} for spec in zoo.specs()}
    out.update(EXTRA_PRESETS)
    return out


# airbench94's method (patch whitening, BN biases at 64x lr, whitening bias frozen after a few
# epochs, Nesterov SGD, label smoothing 0.2, warmup then linear decay, 2-pixel translations and
# flips, 6-view TTA) on a CPU budget.
_AIRBENCH = dict(model="airnet", batch_size=1024, optimizer="sgd", lr=1.5, momentum=0.85, nesterov=True,
                 weight_decay=1.33e-3, label_smoothing=0.2, schedule="linear", final_lr_frac=0.07,
                 augment="translate2", bn_bias_lr_mult=64.0, tta="flip_translate")
# Fine-tuning the shipped airnet on your own images (a few hundred, on a CPU): a new head for the
# new classes, the CIFAR-10 backbone adapted gently. Every choice was read on the validation
# pictures of bench/finetune.py (its docstring has the table and the command).
_FINETUNE = dict(
    model="airnet", init_from="airnet",
    # Small batches: a few hundred images at airnet's 1024 would be one step an epoch.
    batch_size=32, epochs=5,
    # Of the tied best rates on validation, the smaller one: it moves the backbone least.
    optimizer="sgd", momentum=0.9, nesterov=True, lr=0.05, weight_decay=5e-4,
    # The head starts at random and needs the full lr; the backbone's features are already good,
    # and the first steps, driven by a random head's gradients, would wreck them at full lr: it
    # learns 10x slower (discriminative learning rates, as in ULMFiT).
    backbone_lr_mult=0.1,
    # BatchNorm normalises with each batch's statistics (PyTorch's default). Validation does not
    # separate the three modes on so few pictures; this one is the robust one: airnet's conv
    # weights are small (trained under BatchNorm's scale invariance with a large lr and weight
    # decay), and with frozen statistics nothing renormalises them, so a raised lr diverges.
    bn_stats="batch",
    # airbench's 64x lr on BN biases is for training from scratch; on pretrained biases it would
    # undo them in a few steps.
    bn_bias_lr_mult=1.0, whiten_bias_epochs=0,
    label_smoothing=0.1, schedule="cosine", warmup_epochs=0.5, warmup_from=0.1,
    augment="standard", tta="flip",
)
# airbench94_muon's method (KellerJordan/cifar10-airbench) on the same airnet. Its numbers are for
# a summed loss and for a head that divides by 256 (initialised at std 1) where ours multiplies
# by 1/9 (PyTorch's init); converted here, every figure below is the published one. The conv
# filters step by Muon, so each step moves every direction of a filter bank about equally.
_MUON = {
    "model": "airnet", "optimizer": "muon",
    # Muon's step is normalised (its size is the lr, whatever the gradient's), so a bigger batch
    # only makes the direction less noisy, and fewer steps mean fewer Newton-Schulz runs.
    "batch_size": 2000,
    # The filters: lr 0.24 is the step relative to the weights (renormalised to norm sqrt(out)
    # before each step), momentum 0.6 with Nesterov, 3 Newton-Schulz iterations (enough for the
    # singular values to reach the band around 1). No weight decay: the renormalisation fixes
    # their scale, which BatchNorm ignores anyway.
    "muon_lr": 0.24, "muon_momentum": 0.6, "muon_ns_steps": 3, "muon_renorm": True,
    # The rest is Nesterov SGD at momentum 0.85. The head: the published lr 0.67 on a summed loss
    # of 2000 images is 0.67 * 2000 * (9/256)^2 = 1.656 in our parametrisation (logits = W x / 9
    # for theirs W x / 256). Weight decay: the published 2e-6 * 2000 = 4e-3 is the lr x wd
    # product, which no reparametrisation changes: 4e-3 / 1.656 = 2.415e-3.
    "lr": 1.656, "momentum": 0.85, "nesterov": True, "weight_decay": 2.415e-3,
    # BatchNorm and whitening biases at 64x the head's lr (airbench94's 64x), with the same
    # lr x wd product; the whitening bias learns for the first 3 epochs only.
    "bn_bias_lr_mult": 64.0, "whiten_bias_lr_mult": 64.0, "whiten_bias_epochs": 3,
    # Linear decay to 0 with no warmup: the normalised Muon step cannot blow up on the first
    # large gradients, which is what airbench94's warmup guards against.
    "schedule": "linear", "warmup_epochs": 0.0, "final_lr_frac": 0.0,
    "label_smoothing": 0.2, "augment": "translate2_altflip", "tta": "flip_translate",
}
_LESSON = {"epochs": 4, "train_limit": 5000, "batch_size": 500, "muon_lr": 0.12, "lr": 0.414,
           "val_size": 2000, "tta": "none"}
# simple_cnn's own recipe (Adam, batch 64) on the budget of a Compare recipes study, so the pair here
# and the pair there train alike.
_OVERFIT = {"model": "simple_cnn", "epochs": 30, "train_limit": 500, "val_size": 500, "tta": "none"}
EXTRA_PRESETS: dict[str, dict] = {
    # The Train tab's first choice: the Muon recipe for 3 epochs (chosen on validation against
    # the 85% it aims at).
    "demo": {**_MUON, "epochs": 3},
    # The reference: airbench94's published method in this engine (it trains 9.9 epochs; the
    # engine counts whole epochs), to measure our presets against on the same machine.
    "airbench94": {**_AIRBENCH, "epochs": 10, "warmup_epochs": 2.3, "warmup_from": 0.2, "whiten_bias_epochs": 3,
                   "augment": "translate2_altflip", "lookahead_every": 5},
    # The best on 2 CPU cores within 20 minutes: the same method, trained longer.
    "fast": {**_AIRBENCH, "epochs": 20, "warmup_epochs": 4.6, "warmup_from": 0.2, "whiten_bias_epochs": 3,
             "augment": "translate2_altflip", "lookahead_every": 5},
    # airbench94_muon at its published budget: 8 epochs (the fewest that matched the reference's
    # validation accuracy).
    "muon": {**_MUON, "epochs": 8},
    # Muon cut to a CPU's costs: on 2 CPU cores an image costs no more at a smaller batch, so half
    # the batch buys twice the steps per epoch; the first 3 of 7 epochs see each batch at 24x24
    # (0.52x the multiply-adds); only the test images the plain view is unsure of (top probability
    # < 0.7) get the 6 TTA views. Muon lr about 1/sqrt 2 of the full-batch one (twice the steps of
    # a normalised size); the SGD groups' lr halved with the batch (the linear rule).
    "muon_lowres": {**_MUON, "epochs": 7, "batch_size": 1000, "muon_lr": 0.17, "lr": 0.828,
                    "low_res": 24, "low_res_epochs": 3, "tta_confidence": 0.7},
    # The same at 6 epochs (below the reference on validation): a shorter run to try.
    "muon6": {**_MUON, "epochs": 6},
    "finetune": _FINETUNE,
    # A first training in a few minutes on 2 idle CPU cores (the Train tab's first choice there):
    # the demo's Muon recipe on a stratified subset, 0.15x the pictures demo trains on. The best on
    # validation (70.25%) of three splits of the same ~20,000 pictures seen (5,000 x 4, 10,000 x 2,
    # 2,500 x 8 epochs: bench/lesson.py --val-only); 0.20x demo's wall time, docs/benchmarks.md.
    # Batch 500 keeps 10 steps an epoch; the rates follow muon_lowres' rule (Muon lr ~1/sqrt 2 per
    # halving of the batch, the SGD groups' lr linear in it). No TTA and 2,000 validation pictures:
    # scoring must not take longer than the training it reports on.
    "lesson": {**_MUON, **_LESSON},
    # The overfitting lesson: simple_cnn (6.4M weights, Adam) on 500 pictures without augmentation
    # for 30 epochs can learn the 500 by heart (training accuracy towards 100%) while validation
    # accuracy stalls; its pair is the same with crop-and-flip augmentation. Measured with
    # bench/lesson.py (docs/benchmarks.md). The Compare recipes tab runs the pair as an A/B study
    # (ui.lesson.overfit_pair); only 500 test pictures are scored, as a study's runs do.
    "overfit": {**_OVERFIT, "augment": "none"},
    "overfit_aug": {**_OVERFIT, "augment": "standard"},
}


def make_config(preset: str | None = None, **overrides) -> TrainConfig:
    """TrainConfig from a preset (default: the model's own recipe) plus explicit overrides, validated."""
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
    return validate(TrainConfig.from_dict(base))
