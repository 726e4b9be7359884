"""Evaluate tab handlers and the evaluation cache, called directly on a tiny dataset."""

from __future__ import annotations

import json
import re
import shutil

import gradio as gr
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from cifar_demo import data, jobs, train, weights, zoo
from cifar_demo.analysis import evalcache, evaluate
from cifar_demo.common import CLASSES
from cifar_demo.ui import AppContext, confusion, evaluate_tab

from .helpers import MODEL, write_imagefolder


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return write_imagefolder(tmp_path_factory.mktemp("evaldata"), n_train=4, n_test=3)


@pytest.fixture()
def app_env(tmp_path, tiny_folder, monkeypatch):
    monkeypatch.setenv("CIFAR_DEMO_DATA", str(tiny_folder))
    monkeypatch.setenv("CIFAR_DEMO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("CIFAR_DEMO_WEIGHTS", str(tmp_path / "weights"))
    # Each test its own cache: identical tiny runs have identical weights, hence identical keys.
    monkeypatch.setenv("CIFAR_DEMO_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture()
def ctx(app_env):
    """The app's context around a job manager that sees app_env's runs folder."""
    return AppContext.of(jobs.JobManager(dispatch=False))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_folder):
    """A finished 1-epoch run, trained once in this process (a second or two)."""
    cfg = train.TrainConfig(model=MODEL, data=str(tiny_folder), val_size=10, epochs=1, batch_size=10,
                            augment="none", precision="fp32", channels_last=False, device="cpu",
                            schedule="constant", lr=0.02)
    runs = tmp_path_factory.mktemp("evalruns")
    return runs / train.Trainer(cfg, runs_dir=runs).run()["run_id"]


@pytest.fixture()
def run_id(app_env, trained_run):
    """A copy of the trained run in this test's runs folder (tests may change its weights)."""
    shutil.copytree(trained_run, app_env / "runs" / trained_run.name)
    return trained_run.name


def ship_fresh_weights(dataset: str = "x", fingerprint: str = "x") -> None:
    """weights/<MODEL> from an untrained model: test only, never shipped."""
    torch.manual_seed(0)
    weights.save_weights(zoo.create(MODEL), weights.weights_dir(), MODEL, dataset=dataset,
                         dataset_fingerprint=fingerprint, test_accuracy=0.1, test_accuracy_tta=0.1,
                         per_class_accuracy={c: 0.1 for c in CLASSES}, train_config={}, epochs=0,
                         train_seconds=0.0)


def _fail(*args, **kwargs):
    raise AssertionError("evaluate.evaluate ran: the cache missed")


def test_a_run_is_scored_then_served_from_the_cache(run_id, monkeypatch, ctx):
    choice = f"run:{run_id}"
    assert choice in [v for _, v in evaluate_tab.model_choices(ctx)]
    summary_md, cm_counts, cm_norm, per_class, table, gallery, reliability = \
        evaluate_tab.run_evaluation(ctx, choice, "none")
    assert "Scored in" in summary_md and "30 test images" in summary_md
    assert all(isinstance(f, Figure) for f in (cm_counts, cm_norm, per_class, reliability))
    assert [row[0] for row in table][-1] == "macro average" and len(table) == 11
    assert sum(row[1] for row in table[:-1]) == 30
    # Without TTA the engine's own test score (best weights, same images) is reproduced.
    summary = json.loads((ctx.manager.runs_dir / run_id / "summary.json").read_text())
    assert f"test accuracy {100 * summary['test_acc']:.2f}%" in summary_md
    assert 0 < len(gallery) <= evaluate_tab.GALLERY_SIZE
    image, caption = gallery[0]
    assert image.shape == (32 * evaluate_tab.GALLERY_SCALE,) * 2 + (3,) and image.dtype == np.uint8 and " → " in caption

    real_evaluate = evaluate.evaluate
    monkeypatch.setattr(evaluate, "evaluate", _fail)
    again = evaluate_tab.run_evaluation(ctx, choice, "none")
    assert "Loaded from the evaluation cache" in again[0]
    assert again[4] == table and [c for _, c in again[5]] == [c for _, c in gallery]
    # The TTA mode is part of the key: another mode misses.
    with pytest.raises(AssertionError, match="cache missed"):
        evaluate_tab.run_evaluation(ctx, choice, "flip")
    # With TTA the summary also gives the score without it, from the same pass: the plain one.
    monkeypatch.setattr(evaluate, "evaluate", real_evaluate)
    target = evalcache.from_run(run_id, ctx.manager.runs_dir)
    res, _ = evalcache.evaluate_target(target, "flip")
    assert res.plain["accuracy"] == pytest.approx(summary["test_acc"])
    res.accuracy, res.plain["accuracy"] = 0.625, 0.5     # two scores the summary must not mix up
    md = evaluate_tab.summary_markdown(target, res, data.resolve_source(target.data, download=False), True, 0.0)
    assert "test accuracy 62.50%" in md and "TTA `flip` (without it 50.00%, from the same pass)" in md


def test_new_weights_in_a_run_miss_the_cache(run_id, ctx):
    target = evalcache.from_run(run_id, ctx.manager.runs_dir)
    first, hit = evalcache.evaluate_target(target, "flip")
    assert not hit and first.tta == "flip"
    assert evalcache.evaluate_target(target, "flip")[1]
    # A resumed run rewrites best.safetensors (through Run.save_best, as the engine does): new
    # bytes, new key.
    from safetensors.torch import load_file

    from cifar_demo.runs import Run

    state = {k: (v + 0.1 if v.is_floating_point() else v) for k, v in load_file(str(target.path)).items()}
    Run(target.path.parent).save_best(weights.model_from_state(state, target.model, target.class_names), {})
    changed = evalcache.from_run(run_id, ctx.manager.runs_dir)
    assert changed.sha256 != target.sha256
    assert evalcache.evaluate_target(changed, "flip")[1] is False


def test_shipped_weights(app_env, ctx):
    source = data.resolve_source(download=False)
    ship_fresh_weights(source.label, source.fingerprint)
    assert evaluate_tab.model_choices(ctx) == [(f"{MODEL} (shipped weights, card: 10.00%)", f"weights:{MODEL}")]
    summary_md, *_ = evaluate_tab.run_evaluation(ctx, f"weights:{MODEL}", "flip_translate")
    assert "(shipped weights)" in summary_md and "Model card: 10.00%" in summary_md
    # The card's hash is the key: the file itself is verified (by load_weights) only on a miss.
    key = evalcache.cache_key(evalcache.shipped(MODEL), "flip_translate", source.fingerprint)
    assert weights.card_for(MODEL).sha256[:24] in key
    assert (evalcache.cache_dir() / f"{key}.json").is_file()


def test_cache_entries_are_atomic_and_a_corrupt_one_is_recomputed(run_id, ctx):
    target = evalcache.from_run(run_id, ctx.manager.runs_dir)
    result, _ = evalcache.evaluate_target(target, "none")
    source = data.resolve_source(download=False)
    # A run's evaluations live beside its runs (a public visitor's: in its folder, deleted with it).
    folder = evalcache.cache_dir(evalcache.run_cache(target))
    assert folder == ctx.manager.runs_dir / ".cache" / "eval"
    path = folder / f"{evalcache.cache_key(target, 'none', source.fingerprint)}.json"
    assert [p.name for p in folder.iterdir()] == [path.name]  # no temp file left
    assert evaluate.EvalResult.from_dict(json.loads(path.read_text())) == result
    path.write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable evaluation cache"):
        again, hit = evalcache.evaluate_target(target, "none")
    assert not hit and again == result


def test_no_dataset_says_how_to_provide_one(run_id, tmp_path, monkeypatch, ctx):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("CIFAR_DEMO_DATA", str(empty))
    assert "No CIFAR-10 data found" in evaluate_tab.data_status()
    # The run names its own data folder; shipped weights use the usual search, which fails here.
    ship_fresh_weights()
    with pytest.raises(gr.Error, match="holds neither CIFAR-10 layout"):
        evaluate_tab.run_evaluation(ctx, f"weights:{MODEL}", "none")
    with pytest.raises(gr.Error, match="Pick shipped weights or a finished run"):
        evaluate_tab.run_evaluation(ctx, None, "none")


# ----------------------------------------------------------------------------- the drill-down

CARD = re.compile(r'<div class="card( own)?">')


def _select(index) -> gr.SelectData:
    return gr.SelectData(None, {"index": index, "value": None})


def test_evaluate_opens_the_drilldown_on_the_most_frequent_confusion(run_id, ctx):
    out = evaluate_tab.evaluate_with_drilldown(ctx, f"run:{run_id}", "none")
    assert len(out) == 16
    plain = evaluate_tab.run_evaluation(ctx, f"run:{run_id}", "none")  # now from the cache
    assert out[4] == plain[4] and [c for _, c in out[5]] == [c for _, c in plain[5]]
    state, heat, true_cls, pred_cls, page_no, heading, gallery, shown, compare = out[7:]
    res = state["result"]
    assert res.confusion == plain_confusion(heat)
    t, p = evaluate.most_confused(res.confusion) or (0, 0)
    assert (true_cls.value, pred_cls.value, page_no, compare) == (CLASSES[t], CLASSES[p], 1, "")
    assert true_cls.choices == pred_cls.choices == [(c, c) for c in CLASSES]   # the classes of what was scored
    assert shown == evaluate.cell_indices(res, t, p)[:evaluate_tab.CELL_PAGE] and len(gallery) == len(shown)
    image, caption = gallery[0]
    test = data.load_split("test", state["source"])
    assert np.array_equal(image[::evaluate_tab.CELL_SCALE, ::evaluate_tab.CELL_SCALE],
                          test.images[shown[0]].permute(1, 2, 0).numpy())
    assert caption == f"{res.confidences[shown[0]]:.0%} #{shown[0]}"
    assert f"{res.confusion[t][p]} of the {res.support[t]} test" in heading


def plain_confusion(styler) -> list[list[int]]:
    """The counts back from the heat map as Gradio sends them (the first column names the rows)."""
    sent = gr.Dataframe(interactive=False).postprocess(styler)
    assert sent.headers == [confusion.CORNER, *CLASSES] and [r[0] for r in sent.data] == list(CLASSES)
    styles = sent.metadata["styling"]
    assert all("22, 163, 74" in styles[i][i + 1] for i in range(10) if sent.data[i][i + 1])   # green diagonal
    assert all("234, 88, 12" in styles[i][j + 1] for i in range(10) for j in range(10)
               if i != j and sent.data[i][j + 1])                                            # orange mistakes
    return [row[1:] for row in sent.data]


def test_heatmap_colours_the_diagonal_and_the_mistakes_on_their_own_scales():
    cm = np.diag([900] * 10)
    cm[3, 5], cm[5, 3] = 40, 10
    sent = gr.Dataframe(interactive=False).postprocess(confusion.heatmap(cm.tolist()))
    assert [row[1:] for row in sent.data] == cm.tolist()
    styles = sent.metadata["styling"]
    assert "rgba(234, 88, 12, 1.00)" in styles[3][6]        # the largest mistake: full orange
    assert "rgba(234, 88, 12, 0.34)" in styles[5][4]        # a quarter of it: 0.12 + 0.88 / 4
    assert "rgba(22, 163, 74, 1.00)" in styles[0][1] and styles[0][2] == ""


def test_a_click_on_a_cell_shows_its_images_and_the_dropdowns_follow(run_id, monkeypatch, ctx):
    state = evaluate_tab.evaluate_with_drilldown(ctx, f"run:{run_id}", "none")[7]
    res = state["result"]
    # From here on nothing may score again: the clicks read the held result.
    monkeypatch.setattr(evaluate, "evaluate", _fail)
    monkeypatch.setattr(evalcache, "evaluate_target", _fail)
    for t, p in [(2, 2), (4, 1), (0, 9)]:
        true_cls, pred_cls, page_no, heading, gallery, shown, _ = evaluate_tab.cell_clicked(
            state, "cat", "dog", _select([t, p + 1]))
        assert (true_cls, pred_cls, page_no) == (CLASSES[t], CLASSES[p], 1)
        assert shown == evaluate.cell_indices(res, t, p) and len(gallery) == res.confusion[t][p]
        assert all(res.labels[i] == t and res.predictions[i] == p for i in shown)
        if t == p:
            assert heading.startswith(f"**{CLASSES[t]}s it gets right**")
        elif not shown:
            assert "none" in heading and gallery == []
    # The row names' column keeps the predicted class; the dropdowns alone pick a cell too.
    assert evaluate_tab.cell_clicked(state, "cat", "dog", _select([1, 0]))[:2] == ("automobile", "dog")
    assert evaluate_tab.show_cell(state, "deer", "deer")[1].startswith("**deer it gets right**")


def test_paging_through_a_cell(run_id, monkeypatch, ctx):
    state = evaluate_tab.evaluate_with_drilldown(ctx, f"run:{run_id}", "none")[7]
    res = state["result"]
    t = max(range(10), key=lambda c: res.confusion[c][c])
    cell = evaluate.cell_indices(res, t, t)
    assert len(cell) >= 3
    monkeypatch.setattr(evaluate_tab, "CELL_PAGE", 2)
    pages = -(-len(cell) // 2)
    page_no, heading, gallery, shown, _ = evaluate_tab.show_cell(state, CLASSES[t], CLASSES[t], 2)
    assert page_no == 2 and shown == cell[2:4] and len(gallery) == len(shown)
    assert f"page 2 of {pages}: images 3-{2 + len(shown)} of {len(cell)} in {CLASSES[t]} → {CLASSES[t]}" in heading
    assert evaluate_tab.next_page(state, CLASSES[t], CLASSES[t], 1)[3] == cell[2:4]
    assert evaluate_tab.previous_page(state, CLASSES[t], CLASSES[t], 2)[3] == cell[:2]
    assert evaluate_tab.previous_page(state, CLASSES[t], CLASSES[t], 1)[0] == 1          # clamped
    assert evaluate_tab.next_page(state, CLASSES[t], CLASSES[t], pages)[0] == pages
    assert evaluate_tab.show_cell(state, CLASSES[t], CLASSES[t], None)[0] == 1


def test_before_any_evaluation_the_drilldown_says_what_to_do():
    page_no, heading, gallery, shown, compare = evaluate_tab.show_cell(None, "cat", "dog")
    assert "Press **Evaluate** first" in heading and gallery == [] == shown and compare == ""
    assert evaluate_tab.image_clicked(None, [], _select(0)) == ""


def test_a_click_on_an_image_compares_the_run_with_every_shipped_model(run_id, monkeypatch, ctx):

    source = data.resolve_source(download=False)
    ship_fresh_weights(source.label, source.fingerprint)
    weights.clear_cache()
    try:
        state = evaluate_tab.evaluate_with_drilldown(ctx, f"run:{run_id}", "none")[7]
        # The same held result as if the shipped weights had been evaluated (only the target differs).
        mine = {**state, "target": evalcache.shipped(MODEL)}
        res = state["result"]
        monkeypatch.setattr(evaluate, "evaluate", _fail)
        shown = evaluate.cell_indices(res, res.labels[0], res.predictions[0])
        index = shown.index(0)
        page = evaluate_tab.image_clicked(state, shown, _select(index))
        assert f"Test image #0</b>: true class <b>{CLASSES[res.labels[0]]}</b>" in page
        assert len(CARD.findall(page)) == 2 and page.count("(evaluated)") == 1
        assert page.index(f"run {run_id}") < page.index(f"<b>{MODEL}</b>")   # the evaluated run first
        assert page.count("data:image/png;base64,") == 3                        # the image + 2 cams
        assert page.count('class="bar') == 6                                     # top 3 per model
        # For shipped weights the evaluated model is the shipped card itself, not a second one.
        page = evaluate_tab.image_clicked(mine, shown, _select(index))
        assert len(CARD.findall(page)) == 1 and page.count("(evaluated)") == 1
        assert evaluate_tab.image_clicked(state, shown, _select(len(shown))) == ""     # stale click
    finally:
        weights.clear_cache()


def test_ece_and_the_reliability_diagram_are_explained():
    """Issue 36: what ECE and the reliability diagram mean, in words."""
    assert "expected calibration error" in evaluate_tab.ECE_HELP and "over-confident" in evaluate_tab.ECE_HELP


def test_a_runs_target_survives_gradios_state_hashing(run_id, ctx):
    """Gradio deep-hashes what a gr.State holds after each event; the drill-down's state holds the
    Target, whose model_kwargs is a dict (a run's Evaluate failed with "unhashable type")."""
    from gradio import utils

    state = evaluate_tab.evaluate_with_drilldown(ctx, f"run:{run_id}", "none")[7]
    assert utils.deep_hash(state)
