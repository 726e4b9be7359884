"""The app's job manager: one run at a time, stop with a checkpoint, re-attach from the run dir."""

from __future__ import annotations

import pytest

from cifar_demo import jobs
from cifar_demo.train import TrainConfig

from .helpers import MODEL, write_imagefolder


@pytest.fixture()
def tiny_folder(tmp_path_factory):
    return write_imagefolder(tmp_path_factory.mktemp("jobdata"), n_train=30, n_test=2)


def _cfg(data, epochs):
    return TrainConfig(model=MODEL, data=str(data), val_size=20, epochs=epochs, batch_size=10,
                       precision="fp32", device="cpu", schedule="constant", lr=0.02)


@pytest.mark.slow   # real training children
def test_one_job_at_a_time_stop_and_resume(tmp_path, tiny_folder):
    manager = jobs.JobManager(tmp_path / "runs")
    assert manager.snapshot().status == "idle"
    run_id = manager.start(_cfg(tiny_folder, epochs=50))
    with pytest.raises(jobs.JobError, match="already going"):
        manager.start(_cfg(tiny_folder, epochs=1))
    assert jobs.wait_for(lambda: manager.snapshot().last("step") is not None, timeout=120), manager.snapshot().log_tail
    assert manager.snapshot().status == "running"
    assert manager.stop()
    assert manager.wait(timeout=120) == 0
    snap = manager.snapshot()
    assert snap.status == "stopped" and snap.summary["status"] == "stopped"
    assert (tmp_path / "runs" / run_id / "checkpoint.pt").exists()

    # a fresh manager (a reopened tab, a restarted app) reads the same run back
    again = jobs.JobManager(tmp_path / "runs").snapshot(run_id)
    assert again.status == "stopped" and [e["step"] for e in again.events if e["kind"] == "step"] == \
        [e["step"] for e in snap.events if e["kind"] == "step"]


@pytest.mark.slow
def test_a_short_run_finishes(tmp_path, tiny_folder):
    manager = jobs.JobManager(tmp_path / "runs")
    manager.start(_cfg(tiny_folder, epochs=1))
    assert manager.wait(timeout=300) == 0, manager.snapshot().log_tail
    snap = manager.snapshot()
    assert snap.status == "finished" and snap.summary["test_acc"] is not None
    assert snap.last("epoch")["epoch"] == 1
