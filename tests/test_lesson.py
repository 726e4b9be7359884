"""The lesson's pieces without a browser: the lesson and overfitting presets, the Train tab's first
choice (CPU / GPU), epoch times before a slow model is picked, the scoring status line, and the live
guesses (analysis.live, ui.live_strip) read from a run's checkpoint after each epoch."""

from __future__ import annotations

import numpy as np
import pytest

from cifar_demo import jobs, train
from cifar_demo.analysis import live
from cifar_demo.common import CLASSES
from cifar_demo.train import speed
from cifar_demo.ui import AppContext, common, lesson, live_strip, train_page, train_tab

from .helpers import cfg


def test_lesson_presets_are_valid_and_the_overfitting_pair_differs_only_by_augmentation():
    presets = train.presets()
    for name in ("lesson", "overfit", "overfit_aug"):
        c = train.make_config(name)
        assert c.model == presets[name]["model"] and c.train_limit > 0
    lesson_cfg, demo = train.make_config("lesson"), train.make_config("demo")
    assert lesson_cfg.optimizer == demo.optimizer == "muon" and lesson_cfg.model == demo.model
    # A first training sees a fraction of the demo's pictures (3 epochs of 45,000).
    assert lesson_cfg.epochs * lesson_cfg.train_limit < 0.2 * demo.epochs * (50_000 - demo.val_size)
    a, b = train.make_config("overfit").to_dict(), train.make_config("overfit_aug").to_dict()
    assert {k for k in a if a[k] != b[k]} == {"augment", "preset"}
    assert a["augment"] == "none" and b["augment"] != "none" and a["train_limit"] <= 1000


def test_first_choice_is_the_lesson_on_a_cpu_and_the_demo_on_a_gpu():
    assert lesson.first_pick(gpu=False) == "lesson" and lesson.first_pick(gpu=True) == "demo"
    assert sorted(lesson.pick_choices(True)) == sorted(lesson.pick_choices(False))
    model, preset, *values = train_page.on_pick("overfit")[:-1]
    assert model["value"] == "simple_cnn" and preset.value == "overfit"
    assert "overfit_aug" in [v for _, v in preset.choices]
    assert dict(zip(train_tab.FIELDS, values))["augment"] == "none"
    assert "100%" in train_page.on_pick("overfit")[-1]
    with pytest.raises(Exception, match="Pick one"):
        train_page.on_pick("../etc")
    # Compare recipes gets the same pair: the overfit budget, A without augmentation, B with it.
    model, seeds, epochs, images, val, aug_a, mix_a, _, aug_b, mix_b, _ = lesson.overfit_pair()
    assert (model, epochs, images, aug_a, aug_b) == ("simple_cnn", 30, 500, "none", "standard")


def test_slow_models_say_how_long_an_epoch_takes_and_where_the_figure_comes_from():
    times = speed.epoch_times(["airnet", "resnet18"])
    assert "airnet" not in times and times["resnet18"].slow and "benchmarks.md" in times["resnet18"].source
    labels = dict((v, k) for k, v in lesson.model_choices(times))
    assert labels["airnet"] == "airnet" and "min an epoch here" in labels["resnet18"]
    assert "benchmarks.md" in lesson.speed_note(times)
    # A run of this machine wins: its time per training image, for 45,000 of them.
    runs = [{"run_id": "r1", "config": {"model": "resnet18", "train_limit": 1000},
             "summary": {"epochs_run": 2, "elapsed_s": 20.0, "device": "cpu"}}]
    here = speed.from_runs(runs)["resnet18"]
    assert here.seconds == pytest.approx(450.0) and "r1" in here.source


def test_the_progress_line_says_the_test_set_is_being_scored():
    start = {"kind": "start", "run_id": "r", "step": 0, "total_steps": 4, "epochs": 2, "n_test": 10000}
    step = {"kind": "step", "step": 4, "epoch": 2.0, "images_per_s": 100.0, "elapsed_s": 8.0, "eta_s": 0.0}
    epoch = {"kind": "epoch", "epoch": 2, "step": 4}
    scoring = jobs.Snapshot("r", "running", [start, step, epoch], None)
    line = common.progress_html(scoring)
    assert "scoring the test set" in line and "10,000 pictures" in line
    mid = jobs.Snapshot("r", "running", [start, step, dict(epoch, epoch=1)], None)
    assert "scoring" not in common.progress_html(mid)


def test_pick_per_class_takes_the_first_of_each_class():
    labels = np.array([3, 0, 3, 1, 0, 3, 1, 2])
    assert list(live.pick_per_class(labels, 4)) == [1, 4, 3, 6, 7, 0, 2]


@pytest.fixture()
def ctx(tmp_path):
    return AppContext.of(jobs.JobManager(tmp_path / "runs"))


@pytest.mark.slow   # two tiny epochs: seconds alone, minutes on shared cores
def test_live_guesses_follow_the_latest_checkpoint_epoch_by_epoch(tmp_path, tiny_data, ctx):
    seen, run_dir = [], [None]

    def after_epoch(epoch, model):   # the engine has written the checkpoint of this epoch
        seen.append(live.strip_for(train.Run(run_dir[0])))

    trainer = train.Trainer(cfg(epochs=2, ema=0.9), runs_dir=tmp_path / "runs", data=tiny_data,
                            epoch_hooks=[after_epoch])
    run_dir[0] = trainer.run_dir
    trainer.run()
    first, second = seen
    assert (first.epoch, second.epoch) == (1, 2) and len(first.guesses) == 2 * len(CLASSES)
    assert [g.label for g in first.guesses] == [c for c in CLASSES for _ in range(2)]
    assert [g.confidence for g in first.guesses] != [g.confidence for g in second.guesses]
    assert live.strip_for(train.Run(trainer.run_dir)) is second   # one computation per checkpoint

    # The tab's two events: a key when the checkpoint changes, then the strip drawn from it.
    key = live_strip.strip_key(ctx, [trainer.run_id, 1, "finished"], None)
    assert key[0] == trainer.run_id and key[1] is not None
    assert live_strip.strip_key(ctx, [trainer.run_id, 1, "finished"], key) is not key   # gr.skip()
    page = live_strip.update_strip(ctx, key)
    assert "after epoch 2 of 2" in page and page.count("<img") == 2 * len(CLASSES)


@pytest.mark.parametrize("key", [["../../etc", 1, 2], ["no-such-run", None, None], "junk", [7], None])
def test_live_guesses_refuse_what_is_not_a_run_of_the_owner_without_saying_more(ctx, key):
    page = live_strip.update_strip(ctx, key)
    assert page.count("<img") == 2 * len(CLASSES) and "etc" not in page and "no-such-run" not in page
    assert "after epoch" not in page   # the plain pictures, no guesses


def test_a_zerogpu_space_offers_the_demo_first_and_its_queue_waits_for_the_gpu(monkeypatch, tmp_path):
    from cifar_demo import jobs, ui
    from cifar_demo.ui.common import mode_html

    monkeypatch.setattr(lesson, "hardware_info", lambda: {"gpu": None})
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.delenv("CIFAR_DEMO_ZEROGPU_STANDIN", raising=False)
    assert lesson.has_gpu() and lesson.first_pick() == "demo"   # each run is a GPU call
    ctx = ui.AppContext.of(jobs.JobManager(tmp_path / "runs", public=True, dispatch=False))
    assert "wait in one queue for the GPU" in mode_html(ctx)
    monkeypatch.setenv("CIFAR_DEMO_ZEROGPU_STANDIN", "1")   # the tests' stand-in trains on this CPU
    assert not lesson.has_gpu() and lesson.first_pick() == "lesson"
    monkeypatch.delenv("SPACES_ZERO_GPU")
    assert "wait in one queue for the cores" in mode_html(ctx)
