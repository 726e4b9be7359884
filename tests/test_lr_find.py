"""The learning-rate range test (analysis.lr_find) on a tiny model and synthetic data: fast."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cifar_demo.analysis import lr_find
from cifar_demo.train.parts import build_parts

from .helpers import cfg

MODEL = "simple_cnn"   # the cheapest step of the zoo (quiz_dnn's is ~15x dearer on a CPU)


def _state(parts):
    opt = parts.optimizer.state_dict()
    return ({k: v.clone() for k, v in parts.raw_model.state_dict().items()},
            [dict(g) for g in opt["param_groups"]], dict(opt["state"]))


def test_the_range_test_restores_the_model_and_the_optimizer(tiny_data):
    c = cfg(model=MODEL, batch_size=10, lr=0.05, momentum=0.9, augment="none")
    parts = build_parts(c, tiny_data)
    model_before, groups_before, state_before = _state(parts)
    r = lr_find.range_test(c, tiny_data, steps=12, start_lr=1e-4, end_lr=10, parts=parts)
    model_after, groups_after, state_after = _state(parts)
    assert model_before.keys() == model_after.keys()
    assert all(torch.equal(model_before[k], model_after[k]) for k in model_before)   # BatchNorm buffers too
    assert groups_before == groups_after and state_before == state_after == {}       # no momentum left over
    assert 2 <= len(r.lrs) <= 12 and r.lrs[0] == pytest.approx(1e-4)
    assert np.allclose(np.diff(np.log(r.lrs)), np.log(1e5) / 11)                    # an exponential sweep
    assert len(r.losses) == len(r.smoothed) == len(r.lrs)


def test_it_stops_when_the_loss_diverges(tiny_data):
    r = lr_find.range_test(cfg(model=MODEL, batch_size=10, augment="none"), tiny_data, steps=20, start_lr=1,
                           end_lr=1e8)
    assert r.stopped and len(r.lrs) < 20
    assert r.suggestion is None or r.suggestion < r.lrs[-1]


def test_the_suggestion_is_where_the_loss_falls_fastest():
    lrs = np.logspace(-5, 1, 60)
    x = np.log10(lrs)
    loss = 2.3 - 1.5 / (1 + np.exp(-(x + 2) * 4)) + np.where(x > -0.5, (x + 0.5) ** 2 * 5, 0)  # falls fastest at 1e-2
    steep, tenth = lr_find.suggest(lrs, loss)
    assert steep == pytest.approx(1e-2, rel=0.3)
    assert tenth == pytest.approx(lrs[int(np.argmin(loss))] / 10)
    assert lr_find.suggest(lrs, np.linspace(1, 5, 60)) == (None, None)                 # never falls


def test_muon_says_what_the_number_means():
    r = lr_find.RangeTest("airnet", "airnet94", "muon", suggestion=0.02, preset_lr=0.01, muon_lr=0.24)
    assert "muon_lr 0.48" in r.meaning() and "lr 0.02" in r.meaning()
    with pytest.raises(ValueError):
        lr_find.range_test(cfg(), None, steps=5)


def test_the_range_test_is_a_job_of_the_training_queue(tmp_path):
    from cifar_demo import jobs
    from cifar_demo.jobs import lr_find_job

    from .helpers import FakeChild

    manager = jobs.JobManager(tmp_path / "runs", public=True, dispatch=False, spawn=lambda cmd, log: FakeChild(cmd),
                              bounds=jobs.Bounds(max_images=100_000, max_seconds=60))
    c = cfg(batch_size=40)
    with pytest.raises(jobs.JobError, match="over this shared app's cap"):
        lr_find_job.submit(manager, cfg(batch_size=400), "a" * 24, steps=300)   # 120,000 images > 100,000
    manager.submit(c, "c" * 24)                                       # someone else's run holds the slot
    job_id = lr_find_job.submit(manager, c, "a" * 24, steps=100)
    assert lr_find_job.status(manager, job_id, "a" * 24) == ("queued", None)
    assert lr_find_job.status(manager, job_id, "b" * 24) == ("unknown", None)   # another visitor's: nothing
    with pytest.raises(jobs.JobError, match="already queued"):
        manager.submit(c, "a" * 24)                                    # one slot per owner, runs included
    assert manager.view("a" * 24).position == 1                           # waits its turn like a run
    assert "--steps" in manager._jobs[job_id].cmd and manager._jobs[job_id].kind == "lr_find"
    assert not (tmp_path / "runs" / "visitors" / ("a" * 24) / "config.json").exists()


def test_use_the_suggestion_fills_in_three_significant_digits():
    from cifar_demo.ui.lr_find_panel import use

    assert use(1.832980710832436, 0.414) == 1.83
    assert use(0.00025353644939701115, 0.001) == 0.000254
    assert use(None, 0.414) == 0.414   # no suggestion: the form keeps its rate
