"""bench/gpu_check.py --smoke: the GPU check's code, run tiny on the CPU (tests/helpers' synthetic
ImageFolder): both presets through the Trainer, the fp16 path's GradScaler with SAM and clipping,
whole-zoo Predict; then (slow: subprocesses) DDP through torchrun and a run through the ZeroGPU stand-in."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from .helpers import write_imagefolder

BENCH = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_imagefolder(tmp_path_factory.mktemp("gpucheck"), n_train=30, n_test=20)


def _table(capsys) -> str:
    out = capsys.readouterr().out
    assert "torch" in out and "CUDA" in out
    return out


@pytest.mark.slow   # three tiny trainings and the whole zoo: ~30 s or more on 2 shared cores
def test_smoke_in_process(gpu_check, tiny, capsys):
    assert gpu_check.main(["--smoke", "--only", "train,scaler,predict", "--data", str(tiny)]) == 0
    out = _table(capsys)
    for name in ("train demo", "train airbench94", "fp16 scaler + SAM + clip", "zoo predict"):
        line = next(ln for ln in out.splitlines() if ln.startswith(name))
        assert " yes " in line, line


@pytest.mark.slow   # torchrun's ranks and a fresh process for the stand-in
def test_smoke_ddp_and_zerogpu(gpu_check, tiny, capsys):
    assert gpu_check.main(["--smoke", "--only", "ddp,zerogpu", "--data", str(tiny)]) == 0
    out = _table(capsys)
    assert "replicas identical: True" in out and "finished on cpu" in out
