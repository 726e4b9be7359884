"""Compare recipes tab handlers, called directly (no browser): refusals, start / watch / stop,
the status line, the notice while another run holds the queue, and a reopened page."""

from __future__ import annotations

import gradio as gr
import pytest
from matplotlib.figure import Figure

from cifar_demo import jobs
from cifar_demo.analysis import compare
from cifar_demo.train import TrainConfig
from cifar_demo.ui import AppContext, compare_tab
from cifar_demo.ui.common import owner_of

from .helpers import MODEL, FakeChild, write_imagefolder

# model, seeds, epochs, train images, validation images, then recipe A and B (augment, mix, smoothing)
FORM = dict(model=MODEL, seeds=1, epochs=1, train_limit=200, val_size=50,
            aug_a="standard", mix_a="off", ls_a=0.0, aug_b="none", mix_b="cutmix", ls_b=0.1)


def form(**kw) -> list:
    return list({**FORM, **kw}.values())


def saved_run_ids(manager) -> list:
    """The run ids the newest study has saved (the page reads the study from disk)."""
    study = compare.latest_study(manager.runs_dir)
    return [e.get("run_id") for e in study.plan if e.get("run_id")] if study else []


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return write_imagefolder(tmp_path_factory.mktemp("cmpdata"), n_train=24, n_test=4)


@pytest.fixture()
def app_env(tmp_path, tiny_folder, monkeypatch):
    """Data and runs in temp folders; the app's job manager is a real one whose children are
    fakes (they write their run when the test says so), with no dispatcher thread."""
    children: list[FakeChild] = []

    def spawn(cmd, log_path):
        children.append(FakeChild(cmd))
        return children[-1]

    monkeypatch.setenv("CIFAR_DEMO_DATA", str(tiny_folder))
    manager = jobs.JobManager(tmp_path / "runs", spawn=spawn, dispatch=False)
    yield manager, children
    if compare.stop_active():
        runner = compare.active()
        for _ in range(100):
            if runner is None or not runner.is_alive():
                break
            manager.poll()
            runner.join(0.05)


@pytest.fixture()
def ctx(app_env):
    return AppContext.of(app_env[0])


def test_bad_recipes_and_budgets_are_refused_and_nothing_starts(app_env, ctx):
    manager, children = app_env
    with pytest.raises(gr.Error, match="recipe B .*augment must be one of"):
        compare_tab.start(ctx, *form(aug_b="sharpen"))
    with pytest.raises(gr.Error, match="seeds must be"):
        compare_tab.start(ctx, *form(seeds=4))
    with pytest.raises(gr.Error, match="validation"):
        compare_tab.start(ctx, *form(val_size=0))
    with pytest.raises(gr.Error, match="smaller than one batch"):
        compare_tab.start(ctx, *form(train_limit=10))
    assert children == [] and compare.latest_study(manager.runs_dir) is None
    assert "No study yet" in compare_tab.tick(ctx)[0]


def test_no_dataset_refuses_a_study(app_env, tmp_path, monkeypatch, ctx):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("CIFAR_DEMO_DATA", str(empty))
    with pytest.raises(gr.Error, match="No CIFAR-10 data"):
        compare_tab.start(ctx, *form())
    assert app_env[1] == []


def test_start_watch_the_status_and_the_band_plot_then_the_verdict(app_env, tiny_folder, ctx):
    manager, children = app_env
    message = compare_tab.start(ctx, *form())
    assert message.startswith("Started study") and "2 runs" in message
    assert jobs.wait_for(lambda: len(saved_run_ids(manager)) == 1, timeout=10)
    status, figure, table, seen = compare_tab.tick(ctx)
    assert "run 1 of 2: recipe A, seed 0, starting" in status and isinstance(figure, Figure)
    assert "No verdict yet" in table
    assert children[0].cfg.data == str(tiny_folder) and children[0].cfg.augment == "standard"
    with pytest.raises(gr.Error, match="already going"):
        compare_tab.start(ctx, *form())

    children[0].finish()
    manager.poll()
    assert jobs.wait_for(lambda: len(saved_run_ids(manager)) == 2, timeout=10)
    status, *_ = compare_tab.tick(ctx, seen)
    assert "run 2 of 2: recipe B, seed 0" in status
    assert children[1].cfg.augment == "none" and children[1].cfg.mixes == {"cutmix": compare.MIX_PROB}
    children[1].finish()
    manager.poll()
    assert jobs.wait_for(lambda: compare.active() is None, timeout=10)
    status, figure, table, seen = compare_tab.tick(ctx, seen)
    assert "finished (2 of 2 runs done)" in status and isinstance(figure, Figure)
    # FakeChild: A 40%, B 50%; one seed each, so no spread to judge the +10 points by.
    assert "| 40.00% |" in table and "| 50.00% |" in table and "+10.00 points" in table
    assert "no spread to compare" in table and "std A + std B" in table
    again = compare_tab.tick(ctx, seen)    # nothing new: the figure and table are left as they are
    assert again[1] == gr.skip() and again[2] == gr.skip()


def test_stop_cancels_the_rest_and_says_so(app_env, ctx):
    manager, children = app_env
    compare_tab.start(ctx, *form(seeds=2))
    assert jobs.wait_for(lambda: len(saved_run_ids(manager)) == 1, timeout=10)
    assert "Stopping" in compare_tab.stop(ctx)
    assert jobs.wait_for(lambda: children[0].code is not None, timeout=10)   # SIGTERM reached the run
    manager.poll()
    assert jobs.wait_for(lambda: compare.active() is None, timeout=10)
    status = compare_tab.tick(ctx)[0]
    assert "stopped (0 of 4 runs done): stopped by request" in status
    assert compare_tab.stop(ctx) == "No study is going."


def test_a_run_of_the_train_tab_refuses_a_study_and_the_page_says_so(app_env, ctx):
    manager, children = app_env
    other = manager.submit(TrainConfig(model=MODEL, epochs=1), jobs.LOCAL)
    assert "A training run of the Train tab is going" in compare_tab.tick(ctx)[0]
    # One place per owner (a run or a study): refused at once, nothing waits outside the queue.
    with pytest.raises(gr.Error, match=f"already going \\({other}\\)"):
        compare_tab.start(ctx, *form())
    assert compare.latest_study(manager.runs_dir) is None and compare.active() is None
    children[0].finish()
    manager.poll()
    assert "Started study" in compare_tab.start(ctx, *form())
    assert jobs.wait_for(lambda: len(saved_run_ids(manager)) == 1, timeout=10)
    assert "run 1 of 2: recipe A" in compare_tab.tick(ctx)[0] and "cmp-wait" not in compare_tab.tick(ctx)[0]


def test_a_reopened_page_after_a_restart_shows_the_study_as_interrupted(app_env, ctx):
    manager, _ = app_env
    study = compare.new_study(MODEL, compare_tab.DEFAULT_A, compare_tab.DEFAULT_B, 2, manager=manager)
    study.status = "running"
    study.save()
    status, figure, table, _ = compare_tab.tick(ctx)
    assert "interrupted (0 of 4 runs done)" in status and isinstance(figure, Figure)


def test_in_public_mode_a_study_belongs_to_its_visitor(app_env, monkeypatch):
    manager, children = app_env
    monkeypatch.setattr(manager, "public", True)
    ctx = AppContext.of(manager)
    alice, bob = "a" * 40, "b" * 40
    with pytest.raises(gr.Error, match="no visitor token"):
        compare_tab.start(ctx, *form())
    compare_tab.start(ctx, *form(), alice)
    owner = owner_of(ctx, alice)
    assert jobs.wait_for(lambda: len(children) == 1, timeout=10)
    assert manager.snapshot(children[0].run_id).owner == owner
    study = compare.latest_study(manager.runs_dir_for(owner))
    assert study.path.parent == manager.runs_dir / "visitors" / owner / ".studies"
    assert study.id in compare_tab.tick(ctx, None, alice)[0]
    assert "No study yet" in compare_tab.tick(ctx, None, bob)[0] and compare_tab.stop(ctx, bob) == "No study is going."
    assert "Stopping" in compare_tab.stop(ctx, alice)
    assert jobs.wait_for(lambda: children[0].code is not None, timeout=10)   # SIGTERM reached the run
    manager.poll()
    assert jobs.wait_for(lambda: compare.active(owner) is None, timeout=10)


def test_the_studys_own_run_is_never_called_a_run_of_the_train_tab(app_env, ctx):
    """Issue 36, bug 4: read without its study (a page with no token yet) or from a study read
    before its runner recorded the run, the study's own run was "a training run of the Train tab"."""
    manager, _ = app_env
    compare_tab.start(ctx, *form())
    assert jobs.wait_for(lambda: len(saved_run_ids(manager)) == 1, timeout=10)
    assert manager.snapshot().running
    assert "Train tab" not in compare_tab.status_html(None, manager)
    stale = compare.latest_study(manager.runs_dir)
    stale.plan[0].pop("run_id")
    assert "Train tab" not in compare_tab.status_html(stale, manager)


def test_a_reloaded_page_shows_the_form_of_the_study_it_shows(app_env, ctx):
    """Issue 36, bug 6: after a reload the form reset to 2 seeds / 3 epochs / 2,000 images while the
    study shown was 1 / 1 / 500: the page's first look fills the form from the study, once."""
    manager, _ = app_env
    assert compare_tab.form_of_study(ctx, False)[-1] is False   # no study yet: the form stays, asked again
    compare_tab.start(ctx, *form(epochs=2, train_limit=300, val_size=60, ls_b=0.2))
    *values, filled = compare_tab.form_of_study(ctx, False)
    assert values == form(epochs=2, train_limit=300, val_size=60, ls_b=0.2) and filled is True
    assert all(v is gr.skip() or v == gr.skip() for v in compare_tab.form_of_study(ctx, True)[:-1])
