"""Training on ZeroGPU through the stand-in, from the Train tab's handlers: a visitor's run is a GPU
generator call in the app process (jobs.gpu_runner) that writes the usual run directory in the
visitor's folder while the curves stream; a run that its time budget stops, or a call cut at its
duration, leaves a checkpoint that Resume finishes in a new call."""

from __future__ import annotations

import time

import pytest

from cifar_demo import jobs, train
from cifar_demo.jobs import gpu_runner
from cifar_demo.ui import AppContext, train_tab

from .helpers import MODEL, write_imagefolder

TOKEN = "v" * 40   # a visitor's browser token (ui.common.owner_of)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return write_imagefolder(tmp_path_factory.mktemp("zgdata"), n_train=6, n_test=2)


@pytest.fixture()
def zctx(tmp_path, tiny_folder, monkeypatch):
    """A public app on ZeroGPU (the stand-in) whose runs and data are in temp folders."""
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setenv("CIFAR_DEMO_ZEROGPU_STANDIN", "1")
    monkeypatch.setenv("CIFAR_DEMO_DATA", str(tiny_folder))
    monkeypatch.setenv("CIFAR_DEMO_RUNS", str(tmp_path / "runs"))
    manager = jobs.JobManager(tmp_path / "runs", public=True)
    assert manager._spawn is gpu_runner.spawn_gpu_call
    yield AppContext.of(manager)
    if manager.stop(train_tab.page_owner(AppContext.of(manager), TOKEN)):
        manager.wait(timeout=60)


def form(**overrides) -> list:
    values = dict(zip(train_tab.FIELDS, train_tab.on_preset(MODEL, MODEL)))
    values.update(epochs=1, batch_size=10, augment="standard", precision="fp32", val_size=20, schedule="constant")
    values.update(overrides)
    return [values[f] for f in train_tab.FIELDS]


def _start(ctx, **overrides) -> str:
    return train_tab.start(ctx, MODEL, MODEL, *form(**overrides), None, TOKEN)


_TRAIN_STEP = train.Trainer.train_step


def _slow_steps(monkeypatch, seconds: float, after: int | None = None, then: float = 0.0) -> None:
    """Each optimizer step also sleeps `seconds`, and `then` from step `after` of a call on (the
    stand-in's child is a fork: it inherits the patch, and counts its own steps)."""
    step, count = _TRAIN_STEP, [0]

    def slow(self, *args, **kwargs):
        count[0] += 1
        time.sleep(then if after is not None and count[0] > after else seconds)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(train.Trainer, "train_step", slow)


@pytest.mark.slow   # trains (a few seconds of CPU) through forked GPU calls
def test_a_run_from_the_train_tab_is_a_gpu_call_that_streams_into_the_visitors_folder(zctx, monkeypatch):
    _slow_steps(monkeypatch, 0.05)
    message = _start(zctx, epochs=2)
    assert "daily quota" in message and "Resume continues" in message
    owner = train_tab.page_owner(zctx, TOKEN)
    view = zctx.manager.view(owner)
    run_id, folder = view.snap.run_id, zctx.manager.runs_dir_for(owner)
    # Curves stream: step events are on the page while the call still trains.
    assert jobs.wait_for(lambda: zctx.manager.view(owner).snap.last("step") is not None, timeout=60)
    assert zctx.manager.view(owner).snap.running
    assert zctx.manager.wait(timeout=120, run_id=run_id) == 0
    snap = zctx.manager.view(owner).snap
    assert snap.status == "finished" and snap.summary["test_acc"] is not None and snap.last("epoch")["epoch"] == 2
    assert {"config.json", "metrics.jsonl", "checkpoint.pt", "best.safetensors", "summary.json"} <= \
        {p.name for p in (folder / run_id).iterdir()}
    assert folder == zctx.manager.runs_dir / "visitors" / owner
    assert "epoch 2:" in snap.log_tail and "GPU call of" in snap.log_tail
    # The figure the Train tab draws from those events.
    figure = train_tab.tick(zctx, token=TOKEN)[0]
    assert isinstance(figure, str) and figure.endswith(".png")


@pytest.mark.slow
def test_the_time_budget_stops_a_call_with_a_checkpoint_and_resume_finishes_it(zctx, monkeypatch):
    _slow_steps(monkeypatch, 0.2)
    monkeypatch.setattr(gpu_runner, "budget_s", lambda duration: 1.0)
    _start(zctx, epochs=3)
    owner = train_tab.page_owner(zctx, TOKEN)
    run_id = zctx.manager.view(owner).snap.run_id
    assert zctx.manager.wait(timeout=120, run_id=run_id) == 0
    snap = zctx.manager.view(owner).snap
    assert snap.status == "stopped" and snap.summary["stop_reason"] == "time budget"
    total = snap.last("start")["total_steps"]
    # (the budget counts the call's setup too: on a busy CPU it may stop before the first step)
    assert snap.summary["steps"] < total and "time budget" in snap.log_tail

    monkeypatch.setattr(gpu_runner, "budget_s", lambda duration: 600.0)
    assert "Resuming" in train_tab.resume(zctx, TOKEN)
    assert zctx.manager.wait(timeout=120, run_id=run_id) == 0
    snap = zctx.manager.view(owner).snap
    assert snap.status == "finished" and snap.summary["steps"] == total


@pytest.mark.slow
def test_a_call_cut_at_its_duration_leaves_a_checkpoint_that_resume_finishes(zctx, monkeypatch):
    # The first epoch (4 steps) is quick, the next step never ends before the call's 25 s are up.
    _slow_steps(monkeypatch, 0.0, after=4, then=120)
    monkeypatch.setattr(gpu_runner, "duration_s", lambda cfg, done=0.0: 25)
    monkeypatch.setattr(gpu_runner, "budget_s", lambda duration: 600.0)
    _start(zctx, epochs=3)
    owner = train_tab.page_owner(zctx, TOKEN)
    run_id = zctx.manager.view(owner).snap.run_id
    assert zctx.manager.wait(timeout=120, run_id=run_id) == 1
    snap = zctx.manager.view(owner).snap
    assert snap.summary is None and snap.status == "stopped" and "Resume continues" in snap.note
    assert "GPU task aborted" in snap.log_tail and snap.last("epoch")["epoch"] == 1

    monkeypatch.setattr(gpu_runner, "duration_s", lambda cfg, done=0.0: 120)
    _slow_steps(monkeypatch, 0.0)
    train_tab.resume(zctx, TOKEN)
    assert zctx.manager.wait(timeout=120, run_id=run_id) == 0
    snap = zctx.manager.view(owner).snap
    assert snap.status == "finished" and snap.last("epoch")["epoch"] == 3
