"""`python -m cifar_demo train` end to end in a subprocess: SAM with gradient clipping, and the
same with EMA and with Lookahead, through the real Trainer on a tiny ImageFolder (one epoch of
a training subset). The step-by-step checks of the same code are in test_train_gpu_path.py."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from cifar_demo import train as engine

from .helpers import REPO, subprocess_env, write_imagefolder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_imagefolder(tmp_path_factory.mktemp("clidata"), n_train=12, n_test=2)  # 120 train, 20 test


def _train(tmp_path, folder, *flags) -> engine.Run:
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "cifar_demo", "train", "--model", "simple_cnn", "--optimizer", "sam",
           "--grad-clip", "1", "--data", str(folder), "--val-size", "20", "--train-limit", "60",
           "--batch-size", "20", "--epochs", "1", "--precision", "fp32", "--device", "cpu",
           "--runs-dir", str(runs), *flags]
    proc = subprocess.run(cmd, cwd=REPO, env=subprocess_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "finished after 1 epoch(s)" in proc.stdout and "test accuracy" in proc.stdout
    (run_dir,) = runs.iterdir()
    run = engine.Run(run_dir)
    assert run.summary()["status"] == "finished" and run.summary()["steps"] == 3  # 60 images, batches of 20
    cfg = run.config()
    assert (cfg.model, cfg.optimizer, cfg.grad_clip) == ("simple_cnn", "sam", 1.0)
    return run


def _steps(run: engine.Run) -> list[dict]:
    steps = [e for e in run.metrics() if e["kind"] == "step"]
    assert all(math.isfinite(e["train_loss"]) and 0 <= e["train_acc"] <= 1 for e in steps)
    return steps


@pytest.mark.slow
def test_cli_trains_with_sam_and_gradient_clipping(tmp_path, folder):
    run = _train(tmp_path, folder)
    ckpt = torch.load(run.checkpoint_path, weights_only=True)
    assert ckpt["ema"] is None and ckpt["lookahead"] is None
    assert [e["step"] for e in _steps(run)] == [1, 2, 3]  # one CPU process: every step reported


@pytest.mark.slow
def test_cli_trains_with_sam_clipping_and_ema(tmp_path, folder):
    run = _train(tmp_path, folder, "--ema", "0.9")
    assert run.config().ema == 0.9
    ckpt = torch.load(run.checkpoint_path, weights_only=True)
    best = load_file(str(run.best_path))
    ema = {k.removeprefix("module."): v for k, v in ckpt["ema"].items() if k.startswith("module.")}
    assert all(torch.equal(best[k], ema[k]) for k in best)                    # the EMA weights are saved
    assert not all(torch.equal(best[k], ckpt["model"][k]) for k in best)      # not the raw ones
    _steps(run)


@pytest.mark.slow
def test_cli_trains_with_sam_clipping_and_lookahead(tmp_path, folder):
    run = _train(tmp_path, folder, "--lookahead-every", "2", "--log-every", "2")
    assert run.config().lookahead_every == 2
    ckpt = torch.load(run.checkpoint_path, weights_only=True)
    best = load_file(str(run.best_path))
    assert all(torch.equal(ckpt["lookahead"][k], best[k]) for k in ckpt["lookahead"])  # ended on the slow copy
    assert [e["step"] for e in _steps(run)] == [2, 3]  # --log-every 2, and the epoch's end
