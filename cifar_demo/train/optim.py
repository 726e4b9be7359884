"""Which parameters learn how: parameter groups (a model may say its own) and the optimizer
built over them from a TrainConfig."""

from __future__ import annotations

from typing import Collection

import torch
from torch import nn

from ..recipe import TrainConfig
from ..zoo.hooks import OwnGroup, OwnsParamGroups
from .optimizers import SAM, Muon


def param_groups(cfg: TrainConfig, model: nn.Module, pretrained: Collection[str] = ()) -> list[dict]:
    """Trainable parameters in groups: "main", "bn_bias" (lr x bn_bias_lr_mult, weight decay
    / mult, so their decay per step is unchanged), the model's own groups (zoo.hooks: a model
    that is OwnsParamGroups names them, e.g. airnet's "whiten_bias") and, for optimizer "muon",
    "muon": every trainable conv filter (4-D) at muon_lr with muon_momentum and no weight decay
    (its renormalisation fixes the scale); every other parameter stays in the SGD groups by the
    rules above. A parameter in one of the model's groups follows that group's rules only.

    airbench trains BatchNorm biases 64x faster: with the scales frozen they are the only
    per-channel knobs, and a larger step lets them track the fast-moving features.

    A model's group learns at lr x its lr_mult (weight decay / lr_mult, as "bn_bias") and, when
    it stops after some epochs, carries "stop_after_epochs" for the schedule (train.schedule).

    `pretrained`: names of the parameters copied from cfg.init_from. With backbone_lr_mult != 1
    each group splits into a "pretrained." twin at lr x backbone_lr_mult (a fine-tune's backbone;
    the new head keeps the full lr). Its weight decay is not divided by that multiplier: the
    decay per step shrinks with the lr, so the small steps do not wear the pretrained weights
    down towards zero faster than they adapt them.
    """
    bn_bias = {id(m.bias) for m in model.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None}
    own = own_groups(cfg, model)
    owner = {id(p): g.name for g in own for p in g.params}
    split = cfg.backbone_lr_mult != 1.0
    pretrained = set(pretrained) if split else set()
    muon = cfg.optimizer == "muon"
    # The order of the groups (a checkpoint's optimizer state follows it): main, bn_bias, the
    # model's own, muon; then their pretrained twins in that order.
    kinds = ("main", "bn_bias", *(g.name for g in own), "muon")
    groups: dict[str, list] = {f"{pre}{kind}": [] for pre in ("", "pretrained.") for kind in kinds}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in owner:
            kind = owner[id(p)]
        elif muon and p.dim() == 4:
            kind = "muon"
        elif id(p) in bn_bias and cfg.bn_bias_lr_mult != 1.0:
            kind = "bn_bias"
        else:
            kind = "main"
        groups[("pretrained." if name in pretrained else "") + kind].append(p)
    mult = {"main": 1.0, "bn_bias": cfg.bn_bias_lr_mult} | {g.name: g.lr_mult for g in own}
    stop = {g.name: g.stop_after_epochs for g in own if g.stop_after_epochs}
    out = []
    for n, ps in groups.items():
        if not ps:
            continue
        kind = n.removeprefix("pretrained.")
        backbone = cfg.backbone_lr_mult if n != kind else 1.0
        if kind == "muon":
            out.append({"params": ps, "name": n, "lr": cfg.muon_lr * backbone, "weight_decay": 0.0,
                        "momentum": cfg.muon_momentum, "use_muon": True})
            continue
        group = {"params": ps, "name": n, "lr": cfg.lr * mult[kind] * backbone,
                 "weight_decay": cfg.weight_decay / mult[kind]} | ({"use_muon": False} if muon else {})
        out.append(group | ({"stop_after_epochs": stop[kind]} if kind in stop else {}))
    return out


def own_groups(cfg: TrainConfig, model: nn.Module) -> list[OwnGroup]:
    """The model's own parameter groups (zoo.hooks.OwnsParamGroups), checked: distinct names,
    each parameter the model's and in one group at most. [] for a model without the hook."""
    if not isinstance(model, OwnsParamGroups):
        return []
    own = list(model.own_param_groups(cfg))
    mine = {id(p) for p in model.parameters()}
    seen: set[int] = set()
    names: set[str] = set()
    for g in own:
        if not isinstance(g, OwnGroup):
            raise TypeError(f"{type(model).__name__}.own_param_groups must return OwnGroups, not {type(g).__name__}")
        if g.name in names:
            raise ValueError(f"{type(model).__name__}.own_param_groups: two groups are called {g.name!r}")
        names.add(g.name)
        for p in g.params:
            if id(p) not in mine:
                raise ValueError(f"group {g.name!r} holds a parameter that is not {type(model).__name__}'s")
            if id(p) in seen:
                raise ValueError(f"group {g.name!r} holds a parameter another group holds too")
            seen.add(id(p))
    return own


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
    if cfg.optimizer == "muon":
        # Groups without their own momentum (the SGD ones) take cfg.momentum; Nesterov for both kinds.
        return Muon(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay,
                    ns_steps=cfg.muon_ns_steps, renorm=cfg.muon_renorm)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")
