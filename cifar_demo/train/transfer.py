"""Starting a run from trained weights (TrainConfig.init_from): fine-tuning with a new head.

    init_card(source)          the card of the weights a run starts from (architecture, classes)
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
from pathlib import Path

import torch
from torch import nn

from ..recipe import TrainConfig

# How many training images re-estimate the BatchNorm statistics ("recompute"): as many as the
# whitening of airnet uses; more changes the estimate by less than the batch-to-batch noise.
BN_RECOMPUTE_IMAGES = 5000


def _is_file(source: str) -> bool:
    p = Path(source)
    return p.suffix.lower() in (".zip", ".safetensors", ".json") or len(p.parts) > 1


def init_card(source: str):
    """The model card of `source` (a shipped name, looked up like load_weights does, or a file).

    Read only to check the architecture and classes before a run starts; load_init verifies the
    weights themselves (sha256, architecture) when it loads them."""
    from .. import weights
    from ..weights import store

    if not _is_file(source):
        card_path, _ = store._locate(source, None)
        return weights.ModelCard.load(card_path)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"init_from: no such weights file {path}")
    if path.suffix.lower() == ".zip":
        with weights.unpacked_weights_zip(path) as (card_path, _):
            return weights.ModelCard.load(card_path)
    return weights.ModelCard.load(path.with_suffix(".json"))


def check_init_from(cfg: TrainConfig) -> None:
    """ValueError unless cfg.init_from's weights are of cfg.model's architecture."""
    from ..weights import WeightsError

    if not cfg.init_from:
        return
    try:
        card = init_card(cfg.init_from)
    except WeightsError as e:
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


def _load_source(source: str):
    """(model, card) of the init weights, verified like any weights the project loads."""
    from .. import weights

    if _is_file(source):
        return weights.load_weights_file(source)
    return weights.load_weights(source)


@lru_cache(maxsize=None)
def _head_keys(model: str, kwargs_json: str) -> frozenset[str]:
    from .. import zoo

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
    src, card = _load_source(cfg.init_from)
    source = src.state_dict()
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
def recompute_bn_stats(model: nn.Module, images: torch.Tensor, mean, std, *, seed: int = 0,
                       batch_size: int = 250) -> None:
    """Re-estimate every BatchNorm's running mean and variance on (up to BN_RECOMPUTE_IMAGES of)
    `images` (uint8 NCHW): the exact average over them (momentum None), as
    torch.optim.swa_utils.update_bn does, with the model's weights as they are."""
    from ..common import normalize

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
            model(normalize(images[pick[i:i + batch_size]].to(device), mean, std))
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
