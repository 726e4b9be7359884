"""Shared test fixtures. Tests run on CPU, with few threads, on synthetic or bundled data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# The JPEG export of CIFAR-10 that sits beside the repository on the project's machines.
JPEG_EXPORT = Path(os.environ.get("CIFAR_DEMO_JPEG_EXPORT", REPO.parent / "shared" / "data" / "cifar10-jpeg"))

# Decoded datasets and evaluation results are cached under keys that hash what they were made
# from (the source files' names, sizes and times; the weights file's sha256), so a cache kept
# between test sessions can only hit on identical inputs: the JPEG export is decoded once per
# machine, not once per session. Tests of the cache itself point CIFAR_DEMO_CACHE at their own
# tmp folder. CIFAR_DEMO_TEST_CACHE moves it; CI on a clean clone starts with an empty one.
TEST_CACHE = Path(os.environ.get("CIFAR_DEMO_TEST_CACHE", REPO / ".cache" / "tests"))

torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_configure(config):
    # `python -m pytest -q -m "not slow"` is the quick loop; the README's command runs everything.
    config.addinivalue_line("markers", "slow: starts subprocesses, a browser, an app server or DDP ranks")


@pytest.fixture(scope="session")
def jpeg_export() -> Path:
    """Path to ../shared/data/cifar10-jpeg, or skip the test with the reason."""
    if not (JPEG_EXPORT / "train").is_dir() or not (JPEG_EXPORT / "test").is_dir():
        pytest.skip(f"CIFAR-10 JPEG export not found at {JPEG_EXPORT} (set CIFAR_DEMO_JPEG_EXPORT)")
    return JPEG_EXPORT


@pytest.fixture(autouse=True)
def _isolated_cache(monkeypatch):
    """Keep every test's dataset cache out of the user's home directory (see TEST_CACHE)."""
    monkeypatch.setenv("CIFAR_DEMO_CACHE", str(TEST_CACHE))


@pytest.fixture()
def ctx(tmp_path):
    """The app context a tab is built with: a local app whose runs live in a temp folder, with
    no dispatcher thread (a test module that trains overrides it)."""
    from cifar_demo import jobs
    from cifar_demo.ui.context import AppContext

    return AppContext.of(jobs.JobManager(tmp_path / "ctx-runs", dispatch=False))
