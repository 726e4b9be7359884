"""Shipped weights: safetensors files plus a JSON model card, verified by sha256.

    weights/<model>.safetensors   the state_dict (parameters, frozen ones included, and buffers)
    weights/<model>.json          the ModelCard: what was trained on which data, how well it
                                  scored, on what machine, and the sha256 of the weights file

    card.py        ModelCard, its validation and schema policy; WeightsError
    store.py       save_weights / load_weights / available / card_for (sha256 before parsing);
                   write_weights_zip / unpacked_weights_zip: a pair as one downloadable file
    integrity.py   verify(): a whole folder checked against cards and architectures;
                   load_weights_file(): a user's .zip or .safetensors, checked the same way
    hub.py         the Hugging Face Hub: fallback for weights missing locally, push_files
    checkpoint.py  training checkpoints (torch.save atomically, torch.load(weights_only=True))
    loader.py      THE way to get a trained model: ModelRef (a shipped name, a user's file, a
                   run) -> load() -> LoadedModel (model, card, classes), verified, cached by sha256

Loading hashes the weights file and compares with the card before parsing any tensor,
then refuses a file whose keys or shapes do not fit the architecture. Nothing shipped is
unpickled: weights are safetensors only; training checkpoints (our own files) go through
torch.load(weights_only=True). Missing locally, a model's two files are fetched from the
Hugging Face Hub repo named by CIFAR_DEMO_HUB_REPO (there is no default): the HF cache
first (no network), then online unless HF_HUB_OFFLINE=1. Every file is written atomically through cifar_demo.fsio.
"""

from __future__ import annotations

# hardware_info lives in cifar_demo.hardware. Re-exported because the one-file engine of older
# releases imports it from here, and tests/test_train_runs.py runs that engine to show that its
# runs still resume (new code: `from cifar_demo.hardware import hardware_info`).
from cifar_demo.hardware import hardware_info

from .card import (
                    CARD_SCHEMA_VERSION,
                    STORAGE_DTYPES,
                    ModelCard,
                    WeightsError,
                    check_name,
                    slice_indices,
)
from .checkpoint import load_checkpoint, save_checkpoint
from .hub import DEFAULT_HUB_REPO, PushResult, hub_repo, push_files
from .integrity import load_weights_file, verify
from .loader import (
                    LoadedModel,
                    ModelRef,
                    build,
                    cache_generation,
                    card_of,
                    clear_cache,
                    file_digest,
                    is_file_ref,
                    load,
                    model_from_state,
                    read_run_state,
)
from .store import (
                    available,
                    card_for,
                    load_weights,
                    save_weights,
                    unpacked_weights_zip,
                    weights_dir,
                    write_weights_zip,
)

__all__ = [
    "LoadedModel", "ModelRef", "build", "card_of", "clear_cache", "file_digest", "is_file_ref", "load",
    "cache_generation", "model_from_state",
    "read_run_state",
    "CARD_SCHEMA_VERSION", "DEFAULT_HUB_REPO", "STORAGE_DTYPES", "ModelCard", "WeightsError",
    "PushResult", "available", "card_for", "check_name", "hardware_info", "hub_repo", "load_checkpoint", "load_weights",
    "load_weights_file", "push_files", "save_checkpoint", "save_weights", "slice_indices",
    "unpacked_weights_zip", "verify", "weights_dir", "write_weights_zip",
]
