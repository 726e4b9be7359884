"""A/B studies (cifar_demo.analysis.compare): the plan, refused recipes, the summary and its verdict on
run folders in the real train.Run layout, the study file, and the runner against the real
JobManager (a fake child process in the fast tests, real tiny training runs in the slow one)."""

from __future__ import annotations

import json
import statistics

import pytest

from cifar_demo import jobs
from cifar_demo.analysis import compare
from cifar_demo.analysis.compare import Budget, Recipe
from cifar_demo.train import JsonlSink, Run, TrainConfig

from .helpers import MODEL, FakeChild, write_imagefolder

A = Recipe("A", "standard", "off", 0.0)
B = Recipe("B", "none", "cutmix", 0.1)
SMALL = Budget(epochs=2, train_limit=200, val_size=50, test_limit=20)


# ----------------------------------------------------------------------------- the plan

def test_the_plan_interleaves_recipes_and_seeds_and_applies_budget_and_recipes():
    configs = compare.plan(MODEL, A, B, seeds=3, budget=SMALL, data="/some/folder")
    assert [(c.augment, c.seed) for c in configs] == [("standard", 0), ("none", 0), ("standard", 1),
                                                      ("none", 1), ("standard", 2), ("none", 2)]
    for c in configs:
        assert isinstance(c, TrainConfig) and c.model == MODEL and c.data == "/some/folder"
        assert (c.epochs, c.train_limit, c.val_size, c.test_limit, c.precision) == (2, 200, 50, 20, "fp32")
    a0, b0 = configs[0], configs[1]
    assert a0.mixes == {} and a0.label_smoothing == 0.0
    assert b0.mixes == {"cutmix": compare.MIX_PROB} and b0.label_smoothing == 0.1
    # Everything else is the model's own recipe, the same for A and B.
    same = {k for k in a0.to_dict() if k not in ("augment", "mixes", "label_smoothing")}
    assert {k: a0.to_dict()[k] for k in same} == {k: b0.to_dict()[k] for k in same}


@pytest.mark.parametrize("recipe, message", [
    (Recipe("B", augment="sharpen"), "recipe B .*augment must be one of"),
    (Recipe("B", mix="mosaic"), "recipe B .*mixes must be among"),
    (Recipe("B", label_smoothing=1.0), "recipe B .*label_smoothing must be in"),
])
def test_a_bad_recipe_is_refused_before_anything_starts(recipe, message):
    with pytest.raises(ValueError, match=message):
        compare.plan(MODEL, A, recipe, seeds=1, budget=SMALL)


def test_bad_seeds_and_budgets_are_refused():
    for seeds in (0, 4, 1.5, True):
        with pytest.raises(ValueError, match="seeds must be"):
            compare.plan(MODEL, A, B, seeds=seeds, budget=SMALL)
    with pytest.raises(ValueError, match="smaller than one batch"):   # quiz_dnn's batch is 128
        compare.plan(MODEL, A, B, seeds=1, budget=Budget(epochs=1, train_limit=50))
    with pytest.raises(ValueError, match="recipe A .*epochs must be >= 1"):
        compare.plan(MODEL, A, B, seeds=1, budget=Budget(epochs=0))
    with pytest.raises(ValueError, match="unknown model"):
        compare.plan("no_such_net", A, B, seeds=1)


# ----------------------------------------------------------------------------- runs on disk

def write_run(folder, cfg: TrainConfig, val_accs: list[float], status: str | None = "finished") -> str:
    """A run directory as the engine writes it: config, epoch events (and an end and summary
    when `status` is given; None leaves it as a run still training)."""
    run_id = f"run-{cfg.augment}-{cfg.seed}-{len(list(folder.glob('run-*')))}"
    run = Run.create(folder / run_id, cfg)
    sink = JsonlSink(run.metrics_path)
    sink({"kind": "start", "run_id": run_id, "step": 0, "total_steps": 10 * cfg.epochs, "epochs": cfg.epochs})
    for i, acc in enumerate(val_accs):
        sink({"kind": "step", "step": 10 * i + 5, "epoch": i + 0.5, "train_loss": 1.0, "train_acc": 0.5})
        sink({"kind": "epoch", "epoch": i + 1, "step": 10 * (i + 1), "train_loss": 1.0, "train_acc": 0.5,
              "val_loss": 1.0, "val_acc": acc, "lr": 0.1, "elapsed_s": 1.0, "images_per_s": 100.0})
    if status is not None:
        summary = {"run_id": run_id, "status": status, "best_val_acc": max(val_accs), "test_acc": 0.99}
        sink({"kind": "end", **summary})
        run.write_summary(summary)
    sink.close()
    return run_id


def study_with_runs(tmp_path, curves: dict, seeds: int, status="finished") -> compare.Study:
    """A study whose plan entries point at written runs; curves[(recipe, seed)] = val accs or
    (val accs, run status)."""
    manager = jobs.JobManager(tmp_path / "runs", dispatch=False)
    study = compare.new_study(MODEL, A, B, seeds, SMALL, owner=jobs.LOCAL, manager=manager)
    study.runs_dir.mkdir(parents=True, exist_ok=True)
    for e in study.plan:
        got = curves.get((e["recipe"], e["seed"]))
        if got is None:
            continue
        accs, run_status = got if isinstance(got, tuple) else (got, "finished")
        e["run_id"] = write_run(study.runs_dir, TrainConfig.from_dict(e["config"]), accs, run_status)
        if run_status is not None:
            e["outcome"] = run_status
    study.status = status
    return study


def test_summary_means_stds_and_a_difference_beyond_the_spread(tmp_path):
    study = study_with_runs(tmp_path, {("A", 0): [0.30, 0.40], ("B", 0): [0.35, 0.50],
                                       ("A", 1): [0.32, 0.42], ("B", 1): [0.37, 0.54],
                                       ("A", 2): [0.34, 0.41], ("B", 2): [0.33, 0.52]}, seeds=3)
    s = compare.summarize(study)
    assert s.a.epochs == [1, 2] and s.a.n == [3, 3]
    assert s.a.mean == pytest.approx([0.32, 0.41]) and s.b.mean == pytest.approx([0.35, 0.52])
    assert s.a.std == pytest.approx([statistics.stdev([0.30, 0.32, 0.34]), statistics.stdev([0.40, 0.42, 0.41])])
    assert s.a.final == pytest.approx({0: 0.40, 1: 0.42, 2: 0.41})
    assert s.difference == pytest.approx(0.11)
    assert s.spread == pytest.approx(0.01 + 0.02)
    assert s.exceeds is True
    assert "+11.00 points" in s.verdict and "recipe B is better" in s.verdict
    assert "std A + std B" in s.rule


def test_a_difference_within_the_spread_and_a_recipe_that_lost_is_named(tmp_path):
    within = study_with_runs(tmp_path / "w", {("A", 0): [0.40], ("B", 0): [0.45],
                                              ("A", 1): [0.50], ("B", 1): [0.47]}, seeds=2)
    s = compare.summarize(within)
    assert s.exceeds is False and "cannot be told apart" in s.verdict
    worse = study_with_runs(tmp_path / "x", {("A", 0): [0.50], ("B", 0): [0.40],
                                             ("A", 1): [0.51], ("B", 1): [0.41]}, seeds=2)
    s = compare.summarize(worse)
    assert s.exceeds is True and s.difference == pytest.approx(-0.10) and "recipe A is better" in s.verdict


def test_one_seed_has_no_spread_and_unfinished_runs_draw_curves_but_no_final(tmp_path):
    one = compare.summarize(study_with_runs(tmp_path / "one", {("A", 0): [0.3, 0.4], ("B", 0): [0.3, 0.6]}, 1))
    assert one.difference == pytest.approx(0.2) and one.exceeds is None and one.spread is None
    assert "no spread to compare" in one.verdict and one.a.std == [None, None]

    # B seed 0 is still training (no summary) and B seed 1 was stopped: both are on the curves,
    # neither has a final accuracy, so B has no result and there is no verdict yet.
    going = study_with_runs(tmp_path / "going", {("A", 0): [0.3, 0.4], ("B", 0): ([0.5], None),
                                                 ("A", 1): [0.3, 0.4], ("B", 1): ([0.2], "stopped")}, 2)
    s = compare.summarize(going)
    assert s.b.epochs == [1] and s.b.mean == pytest.approx([0.35]) and s.b.final == {}
    assert s.difference is None and s.verdict.startswith("No verdict yet")
    # Not yet started runs (no run id) are simply absent.
    empty = compare.summarize(study_with_runs(tmp_path / "empty", {}, 2))
    assert empty.a.epochs == [] and empty.b.curves == {}


def test_the_summary_reads_validation_never_test_accuracy(tmp_path):
    study = study_with_runs(tmp_path, {("A", 0): [0.3], ("B", 0): [0.4]}, 1)
    s = compare.summarize(study)
    assert s.a.final_mean == pytest.approx(0.3) and s.b.final_mean == pytest.approx(0.4)  # test_acc was 0.99


def test_a_study_round_trips_through_its_json_file_and_the_newest_is_found(tmp_path):
    first = study_with_runs(tmp_path, {("A", 0): [0.3]}, 2, status="running")
    first.save()
    second = compare.new_study(MODEL, A, B, 1, SMALL, manager=jobs.JobManager(tmp_path / "runs", dispatch=False))
    second.id = first.id[:-1] + "z"  # sorts after: ids start with the UTC time, like run ids
    second.save()
    assert first.path == tmp_path / "runs" / ".studies" / f"{first.id}.json"
    back = compare.Study.load(first.path)
    assert back == first and back.runs_dir == first.runs_dir
    assert json.loads(first.path.read_text())["plan"][0]["run_id"] == first.plan[0]["run_id"]
    assert [s.id for s in compare.list_studies(tmp_path / "runs")] == [second.id, first.id]
    assert compare.latest_study(tmp_path / "runs").id == second.id
    # No runner in this process owns it: a restarted app sees an interrupted study.
    assert compare.status_of(back) == "interrupted"
    assert compare.latest_study(tmp_path / "nothing") is None


def test_the_band_plot_draws_a_band_only_where_there_is_a_spread(tmp_path):
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure

    from cifar_demo.reporting import plots_compare

    def bands(fig):
        return [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]

    three = study_with_runs(tmp_path / "3", {(k, s): [0.3 + 0.1 * (k == "B") + 0.01 * s, 0.5 + 0.01 * s]
                                             for k in "AB" for s in range(3)}, seeds=3)
    fig = plots_compare.study_bands(compare.summarize(three))
    assert isinstance(fig, Figure) and len(fig.axes) == 2 and len(bands(fig)) == 2
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[0].startswith("A: standard augmentation") and "mean of 3 seeds" in legend[1]
    assert [tuple(c.get_offsets()[:, 1]) for c in fig.axes[1].collections][:1] == [(0.5, 0.51, 0.52)]

    one = plots_compare.study_bands(compare.summarize(study_with_runs(tmp_path / "1", {("A", 0): [0.3]}, 1)))
    assert bands(one) == [] and "+" not in one.axes[1].get_xlabel()   # B has no result: no difference
    empty = plots_compare.study_bands(compare.summarize(study_with_runs(tmp_path / "0", {}, 1)))
    assert "No validation accuracy yet" in [t.get_text() for t in empty.axes[0].texts][0]


# ----------------------------------------------------------------------------- the runner, fast

@pytest.fixture
def queue(tmp_path):
    children: list[FakeChild] = []

    def spawn(cmd, log_path):
        children.append(FakeChild(cmd))
        return children[-1]

    return jobs.JobManager(tmp_path / "runs", spawn=spawn, dispatch=False), children


def test_a_study_is_refused_while_its_owner_has_a_run_then_runs_one_after_another(queue):
    manager, children = queue
    other = manager.submit(TrainConfig(model=MODEL, epochs=1), jobs.LOCAL)   # the Train tab's run
    study = compare.new_study(MODEL, A, B, 2, SMALL, manager=manager)
    # One place per owner: a run or a study. Refused at once, nothing saved, nothing waiting.
    with pytest.raises(compare.StudyError, match="already going"):
        compare.start_study(study, manager)
    assert not study.path.exists() and compare.active() is None and len(children) == 1
    children[0].finish()
    manager.poll()
    runner = compare.StudyRunner(study, manager)     # takes the study's place in the queue
    with pytest.raises(jobs.JobError, match="study .* is going"):     # and the Train tab's start waits for it
        manager.submit(TrainConfig(model=MODEL, epochs=1), jobs.LOCAL)
    order = []
    for _ in range(20):
        if runner.advance():
            break
        if children[-1].code is None:    # the study's run is training: it ends now
            order.append((children[-1].cfg.augment, children[-1].cfg.seed))
            children[-1].finish()
            manager.poll()
    assert study.status == "finished" and order == [("standard", 0), ("none", 0), ("standard", 1), ("none", 1)]
    assert manager.submit(TrainConfig(model=MODEL, epochs=1), jobs.LOCAL)   # the place was given back
    assert [e["outcome"] for e in study.plan] == ["finished"] * 4 and other not in [e["run_id"] for e in study.plan]
    saved = compare.Study.load(study.path)
    assert saved.status == "finished" and saved.plan == study.plan
    s = compare.summarize(saved)
    assert s.b.final == pytest.approx({0: 0.5, 1: 0.51}) and s.exceeds is True


def test_a_study_queued_behind_another_owner_and_stopped_half_way(queue):
    manager, children = queue
    manager.submit(TrainConfig(model=MODEL, epochs=1), "visitor2")
    study = compare.new_study(MODEL, A, B, 3, SMALL, manager=manager)
    runner = compare.StudyRunner(study, manager)
    runner.advance()
    assert study.status == "running" and study.message == "queued behind another run"
    assert manager.snapshot(study.plan[0]["run_id"]).status == "queued" and len(children) == 1
    children[0].finish()
    manager.poll()                       # the queue starts the study's first run by itself
    runner.advance()
    assert len(children) == 2 and children[1].run_id == study.plan[0]["run_id"] and study.message == ""
    runner.stop()
    assert runner.advance() is False and study.status == "stopping"   # SIGTERM sent; it checkpoints
    manager.poll()
    assert runner.advance() is True
    assert study.status == "stopped" and [e.get("outcome") for e in study.plan] == ["stopped"] + ["cancelled"] * 5
    assert len(children) == 2           # nothing else was started
    assert manager._places() == 0 and manager.submit(TrainConfig(model=MODEL, epochs=1), jobs.LOCAL)


def cfg1():
    return TrainConfig(model=MODEL, epochs=1)


def test_a_study_that_finds_the_queue_full_is_refused_and_waits_nowhere(tmp_path):
    children = []
    manager = jobs.JobManager(tmp_path / "runs", spawn=lambda cmd, log: children.append(FakeChild(cmd)) or children[-1],
                              dispatch=False, queue_cap=2)
    for owner in ("v1", "v2", "v3"):                  # one trains, two wait: the queue is full
        manager.submit(cfg1(), owner)
    study = compare.new_study(MODEL, A, B, 1, SMALL, owner="s", manager=manager)
    with pytest.raises(compare.StudyError, match="queue is full"):
        compare.start_study(study, manager, poll=0.01)
    assert compare.active("s") is None and not study.path.exists() and manager._places() == 2


def test_a_study_holds_one_place_for_all_of_its_runs_and_each_run_queues_at_the_back(tmp_path):
    children = []
    manager = jobs.JobManager(tmp_path / "runs", spawn=lambda cmd, log: children.append(FakeChild(cmd)) or children[-1],
                              dispatch=False, queue_cap=2)
    manager.submit(cfg1(), "v1")                      # training
    study = compare.new_study(MODEL, A, B, 1, SMALL, owner="s", manager=manager)
    runner = compare.StudyRunner(study, manager)
    runner.advance()                                  # run A queued under the study's place
    manager.submit(cfg1(), "v2")                      # queued behind it
    with pytest.raises(jobs.JobError, match="queue is full"):
        manager.submit(cfg1(), "v3")                  # the study's place and v2's: full
    children[0].finish()
    manager.poll()                                    # v1 ended: the study's run A trains
    assert runner.advance() is False and children[1].cfg.augment == A.augment
    with pytest.raises(jobs.JobError, match="queue is full"):
        manager.submit(cfg1(), "v3")                  # while its run trains, the study keeps its place
    children[1].finish()
    manager.poll()                                    # A ended: v2 trains
    assert runner.advance() is False                  # run B queued under the same place, behind v2
    assert manager.snapshot(study.plan[1]["run_id"]).status == "queued" and manager._places() == 1
    assert manager.view("v2").snap.run_id == children[2].run_id and len(children) == 3
    children[2].finish()
    manager.poll()
    runner.advance()
    children[3].finish()
    manager.poll()
    assert runner.advance() is True and study.status == "finished"
    assert manager._places() == 0 and manager.submit(cfg1(), "v3")     # given back at the end


def test_a_failed_run_fails_the_study_with_its_last_output(queue, tmp_path):
    manager, children = queue
    study = compare.new_study(MODEL, A, B, 1, SMALL, manager=manager)
    runner = compare.StudyRunner(study, manager)
    runner.advance()
    (study.runs_dir / f".{children[0].run_id}.log").write_text("Traceback...\nRuntimeError: out of memory\n")
    children[0].code = 1                 # died before writing anything
    manager.poll()
    assert runner.advance() is True
    assert study.status == "failed" and "RuntimeError: out of memory" in study.message
    assert [e.get("outcome") for e in study.plan] == ["failed", "cancelled"]


def test_one_study_at_a_time_per_owner(queue):
    manager, children = queue
    first = compare.new_study(MODEL, A, B, 1, SMALL, manager=manager)
    runner = compare.start_study(first, manager, poll=0.05)
    try:
        assert compare.active() is runner and compare.status_of(first) in compare.GOING
        with pytest.raises(compare.StudyError, match="already going"):
            compare.start_study(compare.new_study(MODEL, A, B, 1, SMALL, manager=manager), manager)
    finally:
        assert compare.stop_active()
        for _ in range(100):             # this manager has no dispatcher thread: reap for it
            manager.poll()
            runner.join(0.05)
    assert not runner.is_alive() and compare.active() is None and not compare.stop_active()
    assert compare.Study.load(first.path).status == "stopped"


# ----------------------------------------------------------------------------- the runner, real runs

@pytest.mark.slow
def test_a_real_study_of_two_tiny_runs_through_the_job_manager(tmp_path):
    folder = write_imagefolder(tmp_path / "data", n_train=30, n_test=2)
    manager = jobs.JobManager(tmp_path / "runs")
    study = compare.new_study(MODEL, A, B, 1, Budget(epochs=1, train_limit=150, val_size=50, test_limit=20),
                              data=str(folder), manager=manager)
    runner = compare.start_study(study, manager, poll=0.2)
    runner.join(600)
    assert not runner.is_alive()
    saved = compare.Study.load(study.path)
    logs = [manager.snapshot(e.get("run_id")).log_tail for e in saved.plan if e.get("run_id")]
    assert saved.status == "finished", (saved.message, logs)
    s = compare.summarize(saved)
    for rs in (s.a, s.b):
        assert rs.epochs == [1] and set(rs.final) == {0} and 0 <= rs.final[0] <= 1
        cfg = Run.find(saved.plan[0 if rs.key == "A" else 1]["run_id"], saved.runs_dir).config()
        assert cfg.augment == rs.recipe.augment and cfg.train_limit == 150
    assert "no spread to compare" in s.verdict
