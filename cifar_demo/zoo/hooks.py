"""What a model may tell the training engine about itself: two optional methods, each a typed
Protocol the engine checks with isinstance (a model that has neither trains by the generic rules).

    init_from_data(images)     set weights from the training images before the first step
                               (uint8 NCHW, a seeded 5,000 of them; skipped with cfg.init_from,
                               whose copied weights already hold it). airnet: its patch whitening.
    own_param_groups(cfg)      parameters the model puts in groups of its own (OwnGroup: a name,
                               an lr multiplier, an epoch after which they stop learning). airnet:
                               its whitening bias, at lr x cfg.whiten_bias_lr_mult for the first
                               cfg.whiten_bias_epochs epochs.

Like Lightning's `configure_optimizers`, the model says how its own odd parts train, so the
engine's code knows no model by the names of its layers. train.optim.param_groups turns the
OwnGroups into optimizer groups beside its generic ones ("main", "bn_bias", "muon"), and
train.schedule stops a group's lr at its stop epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Sequence, runtime_checkable

import torch
from torch import nn

if TYPE_CHECKING:
    from ..recipe import TrainConfig

# The generic groups' names (train.optim) and the prefix of a fine-tune's backbone twins: an
# OwnGroup may take none of them.
RESERVED_GROUP_NAMES = frozenset({"main", "bn_bias", "muon"})
PRETRAINED_PREFIX = "pretrained."


@dataclass(frozen=True)
class OwnGroup:
    """One parameter group a model asks for.

    params: the model's own parameters (frozen ones are skipped, as everywhere). They leave
        the generic rules: a filter here is not sent to Muon, a BatchNorm bias not to "bn_bias".
    lr_mult: the group learns at lr x lr_mult; its weight decay is divided by it, so the decay
        per step (lr x wd) is the "main" group's (the bn_bias_lr_mult rule).
    stop_after_epochs: > 0: the group's lr is 0 from that epoch on (it learns for the first
        stop_after_epochs epochs only); 0: it learns throughout.
    """

    name: str
    params: Sequence[nn.Parameter]
    lr_mult: float = 1.0
    stop_after_epochs: int = 0

    def __post_init__(self):
        if self.name in RESERVED_GROUP_NAMES or self.name.startswith(PRETRAINED_PREFIX):
            raise ValueError(f"a model's own parameter group cannot be called {self.name!r} "
                             f"(reserved: {', '.join(sorted(RESERVED_GROUP_NAMES))}, {PRETRAINED_PREFIX}*)")
        if not self.lr_mult > 0:
            raise ValueError(f"group {self.name!r}: lr_mult must be > 0, not {self.lr_mult}")
        if self.stop_after_epochs < 0:
            raise ValueError(f"group {self.name!r}: stop_after_epochs must be >= 0, not {self.stop_after_epochs}")


@runtime_checkable
class OwnsParamGroups(Protocol):
    """A model with parameter groups of its own (see OwnGroup). Called once per optimizer
    built, with the run's config; may return [] (e.g. when the config asks for nothing special:
    the parameters then follow the generic rules)."""

    def own_param_groups(self, cfg: "TrainConfig") -> Sequence[OwnGroup]: ...


@runtime_checkable
class InitFromData(Protocol):
    """A model that sets some weights from the training images before training."""

    def init_from_data(self, images: torch.Tensor) -> None: ...
