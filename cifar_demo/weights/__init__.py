"""Shipped weights: safetensors files plus a JSON model card, verified by sha256.

    weights/<model>.safetensors   the state_dict (parameters, frozen ones included, and buffers)
    weights/<model>.json          the ModelCard: what was trained on which data, how well it
                                  scored, on what machine, and the sha256 of the weights file

    card.py        ModelCard, its validation and schema policy; WeightsError
    store.py       save_weights / load_weights / available / card_for (sha256 before parsing)
    integrity.py   verify(): a whole folder checked against cards and architectures
    hub.py         the Hugging Face Hub fallback for weights missing locally
    checkpoint.py  training checkpoints (torch.save atomically, torch.load(weights_only=True))

Loading hashes the weights file and compares with the card before parsing any tensor,
then refuses a file whose keys or shapes do not fit the architecture. Nothing shipped is
unpickled: weights are safetensors only; training checkpoints (our own files) go through
torch.load(weights_only=True). Missing locally, a model's two files are fetched from the
project's Hugging Face Hub repo: the HF cache first (no network), then online unless
HF_HUB_OFFLINE=1. Every file is written atomically through cifar_demo.fsio.
"""

from __future__ import annotations

from .card import CARD_SCHEMA_VERSION, STORAGE_DTYPES, ModelCard, WeightsError, check_name, slice_indices
from .checkpoint import load_checkpoint, save_checkpoint
from .hub import DEFAULT_HUB_REPO, hub_repo
from .store import available, card_for, load_weights, save_weights, weights_dir
from .integrity import verify

__all__ = [
    "CARD_SCHEMA_VERSION", "DEFAULT_HUB_REPO", "STORAGE_DTYPES", "ModelCard", "WeightsError",
    "available", "card_for", "check_name", "hub_repo", "load_checkpoint",
    "load_weights", "save_checkpoint", "save_weights", "slice_indices", "verify", "weights_dir",
]
