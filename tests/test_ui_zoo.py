"""Model zoo tab handlers, called directly."""

import gradio as gr
import pytest
import torch
from matplotlib.figure import Figure

from cifar_demo import weights, zoo
from cifar_demo.analysis import predict
from cifar_demo.common import CLASSES
from cifar_demo.ui import zoo_tab


@pytest.fixture(autouse=True)
def one_model_with_weights(tmp_path, monkeypatch):
    """Random weights and a card for optimized200k only (test only: never shipped)."""
    torch.manual_seed(0)
    weights.save_weights(zoo.create("optimized200k").eval(), tmp_path, "optimized200k",
                         dataset="CIFAR-10 (JPEG export)", dataset_fingerprint="test",
                         test_accuracy=0.5, test_accuracy_tta=None,
                         per_class_accuracy={c: 0.5 for c in CLASSES}, train_config={},
                         epochs=3, train_seconds=125.0)
    monkeypatch.setenv("CIFAR_DEMO_WEIGHTS", str(tmp_path))
    monkeypatch.setattr(zoo_tab, "_latency", {})
    monkeypatch.setattr(zoo_tab, "_latency_note", "")
    return tmp_path


def test_one_row_per_model_with_card_accuracy_or_no_weights(one_model_with_weights):
    rows = {r[0]: dict(zip(zoo_tab.COLUMNS, r)) for r in zoo_tab.zoo_rows()}
    assert list(rows) == zoo.names()
    ours = rows["optimized200k"]
    assert ours["our test accuracy"] == "50.00%"      # one test set for all cards: named once
    assert ours["with TTA"] == "-" and ours["trained here"] == "3 ep, 2 min"
    assert zoo_tab.scored_on() == "Our test accuracies are on the test set of CIFAR-10 (JPEG export)."
    size = (one_model_with_weights / "optimized200k.safetensors").stat().st_size
    assert ours["weights file"] == f"{size / 1e6:.1f} MB"
    assert ours["params"] == "151 k"
    assert all(r["our test accuracy"] == "no weights yet" and r["weights file"] == "-" and r["with TTA"] == "-"
               for name, r in rows.items() if name != "optimized200k")
    assert rows["resnet18"]["params"] == "11.17 M" and rows["resnet18"]["source's accuracy"] == "93.30%"
    assert rows["airnet"]["source's accuracy"] == "- (ours)"
    assert all(r["CPU latency"] == "not measured" for r in rows.values())
    # Whose default recipe it is, from the registry: ours where the source states none.
    assert {name: r["default recipe"] for name, r in rows.items()} == {
        s.name: "the source's" if s.recipe_source == "source" else "ours" for s in zoo.specs()}
    assert rows["keras_cnn"]["default recipe"] == "ours" and rows["resnet34"]["default recipe"] == "the source's"


def test_cells_name_the_test_set_where_cards_differ_and_show_tta(one_model_with_weights):
    torch.manual_seed(1)
    weights.save_weights(zoo.create("airnet").eval(), one_model_with_weights, "airnet",
                         dataset="CIFAR-10", dataset_fingerprint="test", test_accuracy=0.9,
                         test_accuracy_tta=0.9123, per_class_accuracy={c: 0.9 for c in CLASSES},
                         train_config={}, epochs=10, train_seconds=600.0)
    rows = {r[0]: dict(zip(zoo_tab.COLUMNS, r)) for r in zoo_tab.zoo_rows()}
    assert rows["airnet"]["our test accuracy"] == "90.00% (CIFAR-10)"
    assert rows["airnet"]["with TTA"] == "91.23%" and rows["airnet"]["trained here"] == "10 ep, 10 min"
    assert rows["optimized200k"]["our test accuracy"] == "50.00% (CIFAR-10 (JPEG export))"
    assert zoo_tab.scored_on() == "Our test accuracies are on the test set of CIFAR-10 / CIFAR-10 (JPEG export)."
    (one_model_with_weights / "airnet.json").write_text("{broken")
    airnet = dict(zip(zoo_tab.COLUMNS, zoo_tab.zoo_rows()[zoo.names().index("airnet")]))
    assert [airnet[c] for c in ("our test accuracy", "with TTA", "trained here")] == ["card unreadable", "-", "-"]


def test_scatter_plots_show_our_models_and_the_sources_figures():
    ours, theirs = zoo_tab.accuracy_plots()
    assert isinstance(ours, Figure) and isinstance(theirs, Figure)
    def points(fig):
        return sum(len(c.get_offsets()) for c in fig.axes[0].collections)

    assert points(ours) == 1                                              # optimized200k only
    assert points(theirs) == sum(s.reported_accuracy is not None for s in zoo.specs())
    assert "JPEG export" in ours.axes[0].get_title()


def test_refresh_reads_each_card_once(one_model_with_weights, monkeypatch):
    reads = []
    card_for = weights.card_for
    monkeypatch.setattr(weights, "card_for", lambda name, *a, **k: reads.append(name) or card_for(name, *a, **k))
    rows, line, ours, theirs, _ = zoo_tab.refresh()
    assert reads == ["optimized200k"]                     # the only model with weights here
    row = dict(zip(zoo_tab.COLUMNS, rows[zoo.names().index("optimized200k")]))
    assert row["our test accuracy"] == "50.00%" and "JPEG export" in line
    assert "JPEG export" in ours.axes[0].get_title()


def test_latency_is_measured_on_demand_and_shown(monkeypatch):
    small = [zoo.get_spec("optimized200k"), zoo.get_spec("airnet")]
    monkeypatch.setattr(zoo_tab.zoo, "specs", lambda: small)
    monkeypatch.setattr(zoo_tab.zoo, "names", lambda: [s.name for s in small])
    timed = []
    real = predict.measure_latency
    monkeypatch.setattr(predict, "measure_latency", lambda *a, **k: timed.append(a) or real(*a, **k))
    ms = zoo_tab.measure_latency(runs=2)
    assert set(ms) == {"optimized200k", "airnet"} and all(v > 0 for v in ms.values())
    rows, note = zoo_tab.measure_once()  # already measured: served from the cache
    assert len(timed) == 1                # the one timing function, once
    assert [r[-1] for r in rows] == [f"{ms[s.name]:.1f} ms" for s in small]
    assert f"median of 2 forward passes after {predict.LATENCY_WARMUP} warm-up passes" in note
    assert f"{torch.get_num_threads()} thread" in note
    assert zoo_tab.measure_latency.__defaults__ == (zoo_tab.LATENCY_RUNS,)


def test_build_measures_nothing_and_refresh_gives_table_and_plots(ctx):
    with gr.Blocks():
        zoo_tab.build(ctx)
    assert zoo_tab._latency == {}
    rows, scored, ours, theirs, note = zoo_tab.refresh()
    assert "JPEG export" in scored
    assert len(rows) == len(zoo.names()) and isinstance(ours, Figure) and "not measured" in note
    origins = zoo_tab.origins_markdown()
    assert all(s.source in origins and s.description in origins for s in zoo.specs())


def test_origins_cite_each_source_and_say_whose_recipe_it_is():
    lines = zoo_tab.origins_markdown().splitlines()
    assert len(lines) == len(zoo.specs())
    for s, line in zip(zoo.specs(), lines):
        assert line.startswith(f"- **{s.name}** ")
        if s.project is None:
            assert "no source project" in line
        else:
            assert f"*{s.project.title}*" in line
            assert (s.project.url or "not published") in line
        assert f"Default recipe: {'the source' if s.recipe_source == 'source' else 'ours'}" in line
        assert s.recipe_note in line and zoo.recipe_summary(s.recipe) in line


def test_recipe_strings_come_with_plain_words():
    """Issue 36: `sgd-nesterov lr1.5 x10ep bs1024 ...` in plain words beside it."""
    r = {"optimizer": "sgd", "nesterov": True, "lr": 1.5, "epochs": 10, "batch_size": 1024, "schedule": "cosine",
         "label_smoothing": 0.2, "ema": 0.99}
    words = zoo_tab.recipe_words(r)
    assert "Nesterov" in words and "10 epochs (passes over all the training pictures)" in words
    assert "1,024 pictures per step" in words and "82%" in words and "running average" in words
    assert "in words:" in zoo_tab.origins_markdown()


def test_your_finished_runs_sit_beside_the_zoo_and_only_yours(tmp_path):
    from cifar_demo import jobs, ui
    from cifar_demo.train import engine
    from cifar_demo.ui.common import owner_of
    from tests import helpers
    from tests.synthetic_data import make_imagefolder

    ctx = ui.AppContext.of(jobs.JobManager(tmp_path / "runs", public=True, dispatch=False))
    mine, other = "a" * 40, "b" * 40
    export = make_imagefolder(tmp_path / "export", per_class=2)
    runs = ctx.runs_dir_for(owner_of(ctx, mine))
    trainer = engine.Trainer(helpers.cfg(val_size=0, batch_size=10, data=str(export)), runs_dir=runs)
    summary, run_dir = trainer.run(), trainer.run_dir
    rows, note, fig = zoo_tab.refresh_yours(ctx, mine)
    assert len(rows) == 1 and "1 finished" in note
    row = dict(zip(zoo_tab.YOUR_COLUMNS, rows[0]))
    assert row["your run"] == run_dir.name and row["model"] == helpers.MODEL
    assert row["test accuracy"] == f"{100 * summary['test_acc']:.2f}%" and row["tested on"].startswith("20 pictures")
    assert row["epochs"] == "1" and row["params"] == "151 k"
    # The star: a black marker beside the shipped model's point.
    stars = [c for c in fig.axes[0].collections if c.get_paths() and tuple(c.get_facecolor()[0][:3]) == (0, 0, 0)]
    assert len(stars) == 1
    assert zoo_tab.refresh_yours(ctx, other)[0] == [] and "none finished yet" in zoo_tab.refresh_yours(ctx, other)[1]
    assert zoo_tab.refresh_yours(ctx, None)[0] == []   # a page without a token yet
