"""Shared test fixtures. Tests run on CPU, with few threads, on synthetic or bundled data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# The JPEG export of CIFAR-10 that sits beside the repository on the project's machines.
JPEG_EXPORT = Path(os.environ.get("CIFAR_DEMO_JPEG_EXPORT", REPO.parent / "shared" / "data" / "cifar10-jpeg"))

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def jpeg_export() -> Path:
    """Path to ../shared/data/cifar10-jpeg, or skip the test with the reason."""
    if not (JPEG_EXPORT / "train").is_dir() or not (JPEG_EXPORT / "test").is_dir():
        pytest.skip(f"CIFAR-10 JPEG export not found at {JPEG_EXPORT} (set CIFAR_DEMO_JPEG_EXPORT)")
    return JPEG_EXPORT


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep every test's dataset cache out of the user's home directory."""
    monkeypatch.setenv("CIFAR_DEMO_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
