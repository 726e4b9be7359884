"""Shared test fixtures. Tests run on CPU, with few threads, on synthetic or bundled data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from cifar_demo.common import CLASSES
from cifar_demo.data import CifarData, DataSource

from .helpers import synthetic_arrays, to_split

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


@pytest.fixture(scope="module")
def tiny_data() -> CifarData:
    """400 train / 100 val / 100 test synthetic images, as data.load_cifar10 would return."""
    x, y = synthetic_arrays(50, seed=1)
    xt, yt = synthetic_arrays(10, seed=2)
    val_idx = np.concatenate([np.where(y == c)[0][:10] for c in range(10)])
    train_idx = np.setdiff1d(np.arange(len(y)), val_idx)
    source = DataSource(kind="imagefolder", path="synthetic", fingerprint="synthetic", label="synthetic")
    return CifarData(train=to_split(x[train_idx], y[train_idx]), val=to_split(x[val_idx], y[val_idx]),
                     test=to_split(xt, yt), classes=CLASSES, source=source)


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """Its own cache, its own working directory (./data) and no CIFAR_DEMO_DATA, for the data
    tests (tests/synthetic_data.py): their modules use it on every test (pytestmark)."""
    monkeypatch.setenv("CIFAR_DEMO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CIFAR_DEMO_DATA", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)


@pytest.fixture(scope="session", autouse=True)
def screenshot_dir(tmp_path_factory) -> Path:
    """Where the browser tests' screenshots go: a temporary folder, or docs/screenshots/ with
    CIFAR_DEMO_UPDATE_SCREENSHOTS=1 (tests/browser.py). Tests never rewrite tracked files otherwise."""
    from . import browser

    browser.SHOTS = browser.DOCS_SHOTS if browser.update_screenshots() else tmp_path_factory.mktemp("screenshots")
    return browser.SHOTS


@pytest.fixture()
def ctx(tmp_path):
    """The app context a tab is built with: a local app whose runs live in a temp folder, with
    no dispatcher thread (a test module that trains overrides it)."""
    from cifar_demo import jobs
    from cifar_demo.ui.context import AppContext

    return AppContext.of(jobs.JobManager(tmp_path / "ctx-runs", dispatch=False))


@pytest.fixture()
def uploaded(tmp_path, monkeypatch):
    """Gradio's upload folder in tmp (GRADIO_TEMP_DIR: what data.uploads accepts), and a function
    that puts a file there as an upload does: uploaded(src, name=None) -> its path there (a str).
    The app's handlers read nothing else (any request may send any path)."""
    import itertools
    import shutil

    root = tmp_path / "gradio-uploads"
    root.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(root))
    count = itertools.count()

    def put(src, name: str | None = None) -> str:
        dest = root / f"u{next(count)}" / (name or Path(src).name)   # Gradio: <folder>/<hash>/<name>
        dest.parent.mkdir()
        return str(shutil.copyfile(src, dest))

    put.root = root
    return put
