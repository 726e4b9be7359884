"""The visitor's runs in every list (Train, Evaluate, Predict, Robustness, Model zoo): labelled with
model, date and accuracy; the runs of Compare studies grouped after the visitor's own, never
preselected, and never shown in the Train tab in place of the visitor's own run (issue 36, bug 5)."""

from __future__ import annotations

import json

import pytest

from cifar_demo import jobs, train
from cifar_demo.analysis import compare
from cifar_demo.ui import AppContext, evaluate_tab, predict_tab, train_runs, train_tab

from .helpers import MODEL

OWN = "20261207-035100-simple_cnn-aaaa"
STUDY_RUN = "20261207-041500-simple_cnn-bbbb"   # newer: the study ran after the visitor's own run


def fake_run(runs_dir, run_id: str, test_acc: float, epochs: int) -> None:
    d = runs_dir / run_id
    d.mkdir(parents=True)
    (d / "config.json").write_text(train.TrainConfig(model=MODEL, epochs=epochs).to_json())
    (d / "summary.json").write_text(json.dumps({"status": "finished", "best_val_acc": test_acc, "test_acc": test_acc,
                                               "epochs_run": epochs, "best_epoch": epochs, "elapsed_s": 5}))
    (d / "best.safetensors").write_bytes(b"")


@pytest.fixture()
def ctx(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs, OWN, 0.8485, 10)
    fake_run(runs, STUDY_RUN, 0.31, 1)
    a = compare.Recipe("A", "standard", "off", 0.0)
    compare.Study(id="20261207-041400-simple_cnn-cccc", model=MODEL, owner=jobs.LOCAL,
                  recipes={"A": a.__dict__, "B": a.__dict__}, budget={}, runs_dir=runs,
                  plan=[{"recipe": "A", "seed": 0, "config": {}, "run_id": STUDY_RUN, "outcome": "finished"}]).save()
    return AppContext.of(jobs.JobManager(runs, dispatch=False))


def test_runs_are_labelled_with_model_date_and_accuracy_and_studies_come_last(ctx):
    for choices in (train_runs.exportable_choices(ctx), predict_tab.run_choices(ctx)[1:]):
        assert [v for _, v in choices] == [OWN, STUDY_RUN]
        own, study = (label for label, _ in choices)
        assert MODEL in own and "7 Dec 03:51" in own and "84.85%" in own, own
        assert study.startswith("Compare study"), study
    evaluate = [v for _, v in evaluate_tab.model_choices(ctx) if v.startswith("run:")]
    assert evaluate == [f"run:{OWN}", f"run:{STUDY_RUN}"]
    # Export preselects the visitor's own run, not the study's newer one.
    _, export = train_runs.refresh_runs(ctx)
    assert export.value == OWN


def test_the_train_tab_shows_the_visitors_own_run_after_a_study(ctx, monkeypatch):
    # After a study the owner's latest job is the study's last run: what manager.view gives.
    study_snap = ctx.manager.snapshot(STUDY_RUN, ctx.manager.runs_dir)
    monkeypatch.setattr(ctx.manager, "view", lambda owner=jobs.LOCAL: jobs.View(study_snap, True, False, None, None, 0))
    progress = train_tab.tick(ctx)[1]
    assert OWN in progress and STUDY_RUN not in progress
