"""Starting a run from trained weights (TrainConfig.init_from): fine-tuning with a new head.

    check_init_from(cfg)       ValueError unless those weights are cfg.model's architecture
    load_init(cfg, model, classes)
                               copy the verified weights into a freshly built model: every tensor,
                               except the classifier head when the card's classes are not the
                               data's (that head is new); returns the names of the copied parameters
    head_keys(model, kwargs)   which state_dict keys make up a model's classifier head
    recompute_bn_stats(...)    BatchNorm's running statistics re-estimated on the training images
    set_train_mode(cfg, model) model.train(), with BatchNorm kept in eval mode where bn_stats says so

Weights are loaded the way shipped weights always are (sha256 against the card before any tensor
is parsed, keys and shapes against the architecture): a fine-tune never unpickles anything.
"""

from __future__ import annotations

import json
from functools import lru_cache

import torch
from torch import nn

from .. import weights, zoo
from ..recipe import TrainConfig

# How many training images re-estimate the BatchNorm statistics ("recompute"): as many as the
# whitening of airnet uses; more changes the estimate by less than the batch-to-batch noise.
BN_RECOMPUTE_IMAGES = 5000


def check_init_from(cfg: TrainConfig) -> None:
    """ValueError unless cfg.init_from's weights are of cfg.model's architecture."""
    if not cfg.init_from:
        return
    try:
        card = weights.card_of(cfg.init_from)
    except weights.WeightsError as e:
        raise ValueError(f"init_from {cfg.init_from!r}: {e}") from None
    if card.zoo_name != cfg.model:
        raise ValueError(f"init_from {cfg.init_from!r} holds {card.zoo_name} weights, but the run's model is "
                         f"{cfg.model}: give --model {card.zoo_name}, or {cfg.model} weights to start from "
                         f"(e.g. --init-from {cfg.model})")
    want = dict(cfg.model_kwargs)
    have = dict((card.train_config or {}).get("model_kwargs") or {})
    if want != have:
        raise ValueError(f"init_from {cfg.init_from!r} was trained with model_kwargs {have}, the run asks "
                         f"for {want}: the architectures differ")


@lru_cache(maxsize=None)
def _head_keys(model: str, kwargs_json: str) -> frozenset[str]:
    kwargs = json.loads(kwargs_json)
    # The head is what depends on the number of classes: build the model for two counts and
    # take the tensors whose shapes differ. This finds it in every zoo family, whatever its name
    # (head, fc, linear, a Sequential's last layer), without a table to keep up to date.
    a = zoo.create(model, num_classes=2, **kwargs).state_dict()
    b = zoo.create(model, num_classes=3, **kwargs).state_dict()
    return frozenset(k for k in a if a[k].shape != b[k].shape)


def head_keys(model: str, model_kwargs: dict | None = None) -> frozenset[str]:
    """The state_dict keys of `model`'s classifier head (the tensors sized by num_classes)."""
    return _head_keys(model, json.dumps(model_kwargs or {}, sort_keys=True))


@torch.no_grad()
def load_init(cfg: TrainConfig, model: nn.Module, classes) -> set[str]:
    """Copy cfg.init_from's weights into `model` (built for `classes`); the names of the copied
    parameters (the rest, a new head, keep their fresh init).

    The head is copied only when the card's classes are the data's, name for name and in the
    same order: a head for other classes (even as many of them) means nothing for these.
    """
    check_init_from(cfg)
    # From the shared cache: only read here (state_dict), the copy goes into `model`.
    src = weights.load(cfg.init_from)
    card, source = src.card, src.model.state_dict()
    target = model.state_dict()
    head = head_keys(cfg.model, cfg.model_kwargs)
    same_classes = tuple(card.class_names) == tuple(classes)
    skip = set() if same_classes else set(head)
    wrong = [k for k in target if k not in skip and (k not in source or source[k].shape != target[k].shape)]
    if wrong:  # check_init_from passed, so only a changed architecture gets here
        raise ValueError(f"init_from {cfg.init_from!r} does not fit {cfg.model}: {', '.join(wrong[:5])}")
    for k, t in target.items():
        if k not in skip:
            t.copy_(source[k].to(t.dtype))
    return {name for name, _ in model.named_parameters() if name not in skip}


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, images: torch.Tensor, *, seed: int = 0,
                       batch_size: int = 250) -> None:
    """Re-estimate every BatchNorm's running mean and variance on (up to BN_RECOMPUTE_IMAGES of)
    `images` (uint8 NCHW): the exact average over them (momentum None), as
    torch.optim.swa_utils.update_bn does, with the model's weights as they are."""
    bns = _batchnorms(model)
    if not bns:
        return
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:BN_RECOMPUTE_IMAGES]
    saved = [(m, m.momentum) for m in bns]
    modes = [(m, m.training) for m in model.modules()]
    device = next(model.parameters()).device
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    model.train()
    try:
        for i in range(0, len(pick), batch_size):
            model(images[pick[i:i + batch_size]].to(device))
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        for m, was_training in modes:
            m.train(was_training)


def set_train_mode(cfg: TrainConfig, model: nn.Module) -> None:
    """model.train(); with bn_stats "frozen" or "recompute" the BatchNorm layers stay in eval mode,
    so they normalise with (and keep) their running statistics. Their affine parameters still
    learn: only the statistics are fixed."""
    model.train()
    if cfg.bn_stats != "batch":
        for m in _batchnorms(model):
            m.eval()
