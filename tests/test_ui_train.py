"""Train tab handlers, called directly (no browser): presets, start / refuse / watch / stop,
re-attach, export, and the no-dataset message."""

from __future__ import annotations

import gradio as gr
import pytest

from cifar_demo import data, jobs, train, weights
from cifar_demo.ui import AppContext, evaluate_tab, train_tab

from .helpers import MODEL, write_imagefolder


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return write_imagefolder(tmp_path_factory.mktemp("uidata"), n_train=24, n_test=4)


@pytest.fixture()
def app_env(tmp_path, tiny_folder, monkeypatch):
    """Data, runs and weights in temp folders, and a fresh job manager that sees them."""
    monkeypatch.setenv("CIFAR_DEMO_DATA", str(tiny_folder))
    monkeypatch.setenv("CIFAR_DEMO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("CIFAR_DEMO_WEIGHTS", str(tmp_path / "weights"))
    yield tmp_path


@pytest.fixture()
def ctx(app_env):
    """The app's context around a fresh job manager that sees app_env's folders."""
    manager = jobs.JobManager()
    yield AppContext.of(manager)
    if manager.stop():
        manager.wait(timeout=120)


def is_png(path) -> bool:
    return isinstance(path, str) and open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def form(**overrides) -> list:
    """The form as the preset of MODEL fills it, made quick for a CPU test."""
    values = dict(zip(train_tab.FIELDS, train_tab.on_preset(MODEL, MODEL)))
    values.update(epochs=1, batch_size=40, augment="standard", precision="fp32", val_size=20)
    values.update(overrides)
    return [values[f] for f in train_tab.FIELDS]


def test_form_round_trips_a_preset_and_the_preset_follows_the_model(monkeypatch):
    # Every field the form shows survives the trip through it, mixes included.
    cfg = train.make_config(MODEL, model=MODEL, mixes={"mixup": 0.3, "ricap": 0.2}, ema=0.99,
                            label_smoothing=0.1, train_limit=1000, val_size=100, precision="bf16")
    assert train_tab.config_from_form(MODEL, MODEL, *train_tab.form_values(cfg)) == cfg

    preset, *values = train_tab.on_model("resnet18")
    assert preset.value == "resnet18" and [v for _, v in preset.choices] == ["resnet18"]
    assert dict(zip(train_tab.FIELDS, values))["epochs"] == train.presets()["resnet18"]["epochs"]

    # A speed preset for airnet, added later to EXTRA_PRESETS, is picked up and preferred.
    demo = {**train.presets()["airnet"], "epochs": 2}
    monkeypatch.setitem(train.EXTRA_PRESETS, "demo", demo)
    preset, *values = train_tab.on_model("airnet")
    assert preset.value == "demo" and [v for _, v in preset.choices] == [
        "airnet", "demo", "airbench94", "fast", "muon", "muon_lowres", "muon6", "finetune", "lesson"]
    assert dict(zip(train_tab.FIELDS, values))["epochs"] == 2
    assert "demo" not in train_tab.preset_choices(MODEL)


def test_bad_forms_are_refused_with_a_message(app_env, ctx):
    with pytest.raises(gr.Error, match="sum to <= 1"):
        train_tab.start(ctx, MODEL, MODEL, *form(mixup=0.6, cutmix=0.6))
    with pytest.raises(gr.Error, match="smaller than one batch"):
        train_tab.start(ctx, MODEL, MODEL, *form(train_limit=30))
    assert ctx.manager.snapshot().status == "idle"


def steps(*elapsed):
    """A run's events as the engine writes them: a start, then a step event at each elapsed time."""
    return [{"kind": "start", "run_id": "r", "step": 0, "total_steps": 100, "epochs": 10, "steps_per_epoch": 10,
                                "n_train": 1000, "n_val": 100, "device": "cpu", "precision": "fp32"}] + [
        {"kind": "step", "step": i + 1, "epoch": (i + 1) / 10, "train_loss": 2.0, "train_acc": 0.2, "lr": 0.1,
         "images_per_s": 170.0, "elapsed_s": t, "eta_s": 600.0} for i, t in enumerate(elapsed)]


def test_the_timer_follows_the_runs_step_cadence():
    def snap(status, events):
        return jobs.Snapshot("r", status, events, None)

    assert train_tab.tick_interval(snap("idle", [])) == train_tab.TICK_SECONDS
    assert train_tab.tick_interval(snap("running", steps(6.0))) == train_tab.TICK_SECONDS   # one step: no gap yet
    # A step every ~6 s: a tick each step (the median gap, so one slow epoch-end step does not count).
    assert train_tab.tick_interval(snap("running", steps(6.0, 12.1, 18.0, 40.0, 46.2))) == 6.0
    assert train_tab.tick_interval(snap("running", steps(0.3, 0.6, 0.9))) == train_tab.TICK_SECONDS   # fast steps
    assert train_tab.tick_interval(snap("running", steps(60, 120, 180))) == train_tab.MAX_TICK_SECONDS
    assert train_tab.tick_interval(snap("finished", steps(6.0, 12.0, 18.0))) == train_tab.TICK_SECONDS


def test_a_tick_sends_the_new_interval_and_nothing_else_when_only_that_changed(monkeypatch):
    events = steps(6.0, 12.0)
    view = jobs.View(jobs.Snapshot("r", "running", events, None), mine=False, can_stop=False,
                     position=None, eta_s=None, queued=0)

    class Manager:
        public = False
        def view(self, owner):
            return view
        def runs_dir_for(self, owner):
            return None

    ctx = AppContext(Manager(), public=False)
    monkeypatch.setattr(train_tab, "refresh_runs", lambda *a: (gr.skip(), gr.skip()))
    first = train_tab.tick(ctx, None, None, None)
    assert first[-1] == 6.0 and first[3][-1] == 6.0 and is_png(first[0])
    assert train_tab.tick(ctx, None, None, first[3]) == (gr.skip(),) * 9
    # The run's steps slow down, with no new event since the tab's last drawing: only the interval
    # (and the tab's memory of it) is sent.
    seen = list(first[3])
    seen[-1] = 4.0
    again = train_tab.tick(ctx, None, None, seen)
    assert again[-1] == 6.0 and again[3][-1] == 6.0
    assert [again[i] for i in (0, 1, 2, 4, 5, 6, 7)] == [gr.skip()] * 7


@pytest.mark.slow   # a real training child
def test_run_refuse_watch_finish_reattach_and_export(app_env, monkeypatch, ctx):
    first = train_tab.start(ctx, MODEL, MODEL, *form())
    run_id = ctx.manager.run_id
    assert run_id in first
    with pytest.raises(gr.Error, match="already going"):
        train_tab.start(ctx, MODEL, MODEL, *form())

    figure, progress, log, seen, *_ = train_tab.tick(ctx)
    assert is_png(figure) and run_id in progress
    assert ctx.manager.wait(timeout=120) == 0, ctx.manager.snapshot().log_tail

    figure, progress, log, seen, overlay, exportable, stop_btn, resume_btn, timer = train_tab.tick(
        ctx, None, None, seen)
    assert is_png(figure) and "finished" in progress and "test accuracy" in progress
    assert stop_btn["visible"] is False and resume_btn["visible"] is False
    assert "epoch   1" in log and "end: finished" in log
    assert exportable.value == run_id  # a finished run becomes exportable without a refresh
    # Nothing new: the figure is not redrawn; a reopened tab (no state) gets it again.
    assert seen[-1] == train_tab.TICK_SECONDS   # a finished run ticks every 2 s (sent when it was not)
    assert timer == gr.skip() or timer == train_tab.TICK_SECONDS
    assert train_tab.tick(ctx, None, None, seen) == (gr.skip(),) * 9   # nothing at all is sent again
    assert is_png(train_tab.tick(ctx)[0])
    # Past runs are overlaid (here on an idle manager: the past run is the only one drawn).
    fig = train_tab.curves(ctx, jobs.Snapshot(None, "idle", [], None), [run_id])
    assert [line.get_label() for line in fig.axes[0].get_lines()] == [f"{run_id} train", f"{run_id} val"]

    assert f"run:{run_id}" in [v for _, v in evaluate_tab.model_choices(ctx)]

    message = train_tab.export_run(ctx, run_id, replace=False)
    assert MODEL in message and weights.available() == [MODEL]
    with pytest.raises(gr.Error, match="already exists"):
        train_tab.export_run(ctx, run_id, replace=False)
    assert f"weights:{MODEL}" in [v for _, v in evaluate_tab.model_choices(ctx)]


@pytest.mark.slow   # a real training child
def test_stop_a_running_run(app_env, ctx):
    assert train_tab.stop(ctx) == "No run of yours is going."
    train_tab.start(ctx, MODEL, MODEL, *form(epochs=200))
    assert jobs.wait_for(lambda: ctx.manager.snapshot().last("step") is not None, timeout=120), \
        ctx.manager.snapshot().log_tail
    progress = train_tab.tick(ctx)[1]
    assert "images/s" in progress and "ETA" in progress and "step" in progress
    assert "Stopping" in train_tab.stop(ctx)
    assert ctx.manager.wait(timeout=120) == 0
    assert ctx.manager.snapshot().status == "stopped"
    after = train_tab.tick(ctx)
    assert "stopped at step" in after[1] and after[7]["visible"] is True   # Resume is offered
    assert "Resuming" in train_tab.resume(ctx)
    # The resumed child says so once it trains again (a stop before that would find no handler yet).
    assert jobs.wait_for(lambda: sum(e["kind"] == "start" for e in ctx.manager.snapshot().events) == 2
                         and ctx.manager.snapshot().events[-1]["kind"] == "step", timeout=120)
    assert "Stopping" in train_tab.stop(ctx)
    assert ctx.manager.wait(timeout=120) == 0


def test_no_dataset_says_how_to_provide_one(app_env, tmp_path, monkeypatch, ctx):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("CIFAR_DEMO_DATA", str(empty))
    status = train_tab.data_status()
    assert "No CIFAR-10 data found" in status and "holds neither CIFAR-10 layout" in status
    assert "DIR/train/&lt;class&gt;/&lt;image&gt;" in status
    with pytest.raises(gr.Error, match="holds neither CIFAR-10 layout"):
        train_tab.start(ctx, MODEL, MODEL, *form())
    assert ctx.manager.snapshot().status == "idle"

    # Without any source and no download, the message lists every way to give the data.
    monkeypatch.delenv("CIFAR_DEMO_DATA")
    monkeypatch.chdir(tmp_path)
    status = train_tab.data_status()
    assert "CIFAR_DEMO_DATA" in status and "--data DIR" in status


def test_download_button_shows_only_without_data_and_reports_a_failed_download(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_DEMO_DATA", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    html_, button = train_tab.data_panel()
    assert "No CIFAR-10 data found" in html_ and button["visible"] is True

    def offline(source=None, cache_dir=None, download=True):
        raise data.DataSourceError("no network: could not download CIFAR-10")

    monkeypatch.setattr(data, "resolve_source", offline)
    with pytest.raises(gr.Error, match="Download failed. no network"):
        train_tab.download_data()


def test_download_button_hides_when_data_is_there(app_env):
    html_, button = train_tab.data_panel()
    assert "Dataset:" in html_ and button["visible"] is False


def test_download_and_push_take_only_a_plain_id_of_the_owners_folder(app_env, monkeypatch):
    """A crafted run id (a path, `..`) reaches no run outside the page owner's folder, and the
    refusal does not say whether something is there."""
    from cifar_demo.ui import train_runs

    manager = jobs.JobManager(public=True, dispatch=False)
    ctx = AppContext.of(manager)
    monkeypatch.setattr(train_runs, "owner_of", lambda ctx, token: "alice")
    bob = manager.runs_dir_for("bob") / "20260101-000000-simple_cnn-beef"
    train.Run.create(bob, train.TrainConfig(model=MODEL))
    for crafted in ("../bob/20260101-000000-simple_cnn-beef", str(bob)):
        with pytest.raises(gr.Error, match="not a run id"):
            train_runs.download_weights(ctx, crafted, "token")
    with pytest.raises(gr.Error, match="no run 20260101-000000-simple_cnn-beef here"):
        train_runs.download_weights(ctx, "20260101-000000-simple_cnn-beef", "token")


def test_no_data_and_failed_download_messages_speak_to_people(tmp_path, monkeypatch):
    """No Python in the advice (`download=False`, `source=DIR in Python`, a torchvision call): what
    happened and what to do."""
    import urllib.error

    import torchvision.datasets

    monkeypatch.delenv("CIFAR_DEMO_DATA", raising=False)
    monkeypatch.setenv("CIFAR_DEMO_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    messages = []
    for download in (False, True):
        with pytest.raises(data.DataSourceError) as info:
            data.resolve_source(download=download)
        messages.append(str(info.value))
    for text in messages:
        for jargon in ("download=False", "source=DIR", "torchvision.datasets", "CIFAR10(", "URLError"):
            assert jargon not in text, (jargon, text)
        assert "python app.py --data DIR" in text and "CIFAR_DEMO_DATA=DIR" in text
    assert "could not download" in messages[1] and "internet" in messages[1]
    assert "Temporary failure in name resolution" in messages[1]   # the cause, for whoever can fix it


def test_the_progress_line_counts_steps_within_the_epoch_it_names():
    """Issue 36: "step 10/66" while an epoch has 22 steps. The step is counted in its epoch, and the
    whole run's share is a percentage."""
    start = {"kind": "start", "total_steps": 66, "epochs": 3, "steps_per_epoch": 22, "step": 0}
    step = {"kind": "step", "step": 32, "epoch": 1 + 10 / 22, "images_per_s": 350.0, "elapsed_s": 60, "eta_s": 120}
    snap = jobs.Snapshot("r1", "running", [start, step], None)
    text = train_tab.view_html(jobs.View(snap, True, True, None, None, 0))
    assert "epoch 2/3, step 10/22 of this epoch" in text and "48% of the run" in text and "32/66" not in text
