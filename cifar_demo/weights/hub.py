"""Weights missing locally come from the project's Hugging Face Hub repo.

The HF cache first (no network), then online unless HF_HUB_OFFLINE=1. Only download lives
here; the files are verified by the same sha256 check as local ones (store.load_weights).
"""

from __future__ import annotations

import os
from pathlib import Path

from .card import WeightsError

# The project's repo on the Hugging Face Hub that mirrors weights/ (override: CIFAR_DEMO_HUB_REPO).
DEFAULT_HUB_REPO = "cifar-demo/weights"


def hub_repo() -> str:
    """The Hugging Face Hub repo id that weights are fetched from when not in weights_dir()."""
    return os.environ.get("CIFAR_DEMO_HUB_REPO") or DEFAULT_HUB_REPO


def hf_offline() -> bool:
    # Read at call time (huggingface_hub reads it once, at import).
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def from_hub(name: str, folder: Path, missing: list[str]) -> tuple[Path, Path]:
    """(card_path, weights_path) of `name` from the Hub repo: HF cache first, then online unless
    offline. `folder` and `missing` say what was not found locally, for the error message."""
    repo, offline = hub_repo(), hf_offline()
    errors = []
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:
        errors.append(f"huggingface_hub is not installed ({e})")
    else:
        for local_only in (True,) if offline else (True, False):
            try:
                card = hf_hub_download(repo, f"{name}.json", local_files_only=local_only)
                weights = hf_hub_download(repo, f"{name}.safetensors", local_files_only=local_only)
                return Path(card), Path(weights)
            except Exception as e:  # cache miss, 404, auth, no network: each means "not from here"
                first_line = (str(e).strip().splitlines() or [""])[0][:200]
                errors.append(f"{'cache' if local_only else 'online'}: {type(e).__name__}: {first_line}")
    where = "local HF cache only, as HF_HUB_OFFLINE=1" if offline else "local HF cache, then online"
    network = "unset HF_HUB_OFFLINE and connect to the internet" if offline else "connect to the internet"
    raise WeightsError(
        f"no weights for model '{name}': {' and '.join(missing)} not found in {folder} "
        f"(set CIFAR_DEMO_WEIGHTS to look elsewhere), nor in the Hugging Face Hub repo '{repo}' "
        f"({where}: {'; '.join(errors)}).\n"
        f"To get them, train and export the model:\n"
        f"    python -m cifar_demo train --model {name}\n"
        f"    python -m cifar_demo export RUN_ID\n"
        f"or set CIFAR_DEMO_HUB_REPO to a Hub repo that has {name}.safetensors and {name}.json, "
        f"or {network}.")
