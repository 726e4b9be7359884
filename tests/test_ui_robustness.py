"""Robustness tab handlers, called directly: two zoo models with random weights, a tiny
synthetic ImageFolder export as the test set, a tmp cache."""

import gradio as gr
import numpy as np
import pytest
import torch

from cifar_demo import augment, data, weights
from cifar_demo.analysis import predict
from cifar_demo.augment import CORRUPTIONS
from cifar_demo.data import pictures
from cifar_demo.ui import robustness_tab as tab
from tests.synthetic_data import make_imagefolder, save_random_weights

WITH_WEIGHTS = ("optimized200k", "simple_cnn")


@pytest.fixture(scope="module")
def weights_folder(tmp_path_factory):
    return save_random_weights(tmp_path_factory.mktemp("weights"), WITH_WEIGHTS)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return make_imagefolder(tmp_path_factory.mktemp("export"), per_class=2)   # 20 test images


@pytest.fixture(autouse=True)
def env(weights_folder, export, tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_DEMO_WEIGHTS", str(weights_folder))
    monkeypatch.setenv("CIFAR_DEMO_DATA", str(export))
    monkeypatch.setenv("CIFAR_DEMO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Tiny batches gain nothing from a second thread, and lose much to it on a busy shared CPU.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    weights.clear_cache()
    yield
    weights.clear_cache()
    torch.set_num_threads(threads)


class FakeProgress:
    def __init__(self):
        self.calls = []

    def __call__(self, progress, desc=None, **kw):
        self.calls.append(progress)


def model_lines(fig):
    return [line for line in fig.axes[0].get_lines() if line.get_label() in WITH_WEIGHTS]


# ----------------------------------------------------------------------------- the picture

@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_says_what_it_teaches_and_its_published_strengths(name):
    text = tab.teaching(name)
    assert CORRUPTIONS[name].teaches in text and str(CORRUPTIONS[name].params[-1]) in text


def test_the_picture_is_shown_clean_and_corrupted_with_every_models_answer():
    clean, damaged, rows = tab.show_picture(None, "gaussian_noise", 4)
    image = tab.sample_image(tab.DEFAULT_IMAGE)
    assert clean.shape == damaged.shape == (256, 256, 3)
    assert np.array_equal(clean[::8, ::8], image)
    expected = augment.corrupt(pictures.to_tensor(image), "gaussian_noise", 4)[0].permute(1, 2, 0).numpy()
    assert np.array_equal(damaged[::8, ::8], expected)
    assert [r[0] for r in rows] == sorted(WITH_WEIGHTS)
    clean = predict.predict_many(image, sorted(WITH_WEIGHTS))
    damaged_preds = predict.predict_many(expected, sorted(WITH_WEIGHTS))
    for (model, before, after, changed), p_clean, p_damaged in zip(rows, clean, damaged_preds):
        top_clean, top_damaged = p_clean.top(1)[0], p_damaged.top(1)[0]
        assert before == f"{top_clean[0]} {top_clean[1]:.0%}" and after == f"{top_damaged[0]} {top_damaged[1]:.0%}"
        assert changed == ("yes" if top_clean[0] != top_damaged[0] else "")


def test_severity_0_shows_the_clean_picture_and_changes_no_answer():
    clean, damaged, rows = tab.show_picture(tab.sample_image(7), "fog", 0)
    assert np.array_equal(clean, damaged)
    assert all(r[1] == r[2] and r[3] == "" for r in rows)


def test_an_uploaded_picture_is_shrunk_to_what_the_models_see(tmp_path, uploaded):
    path = uploaded(data.sample_paths()[12][0])
    assert np.array_equal(tab.choose_upload(path), pictures.to_32x32(pictures.load_image(path)))
    clean, _, _ = tab.show_picture(tab.choose_upload(path), "jpeg", 5)
    assert np.array_equal(clean[::8, ::8], tab.choose_upload(path))
    bad = tmp_path / "x.png"
    bad.write_bytes(b"not a picture")
    with pytest.raises(gr.Error, match="not an image"):
        tab.choose_upload(uploaded(bad))
    with pytest.raises(gr.Error, match="No file"):
        tab.choose_upload(None)


def test_the_gallery_is_the_bundled_sample_by_class():
    gallery = tab.sample_gallery()
    assert len(gallery) == 50 and gallery[0][1] == "airplane 1" and gallery[49][1] == "truck 5"
    assert np.array_equal(gallery[31][0][::2, ::2], tab.sample_image(31))
    with pytest.raises(gr.Error):
        tab.sample_image(50)


# ----------------------------------------------------------------------------- the curves

def test_the_cache_alone_draws_nothing_yet_and_says_how_to_compute():
    fig, status = tab.cached_curves("fog", 2)
    assert model_lines(fig) == []
    assert "2 of 2 models" in status and "Compute" in status


def test_the_time_it_announces_follows_the_slice_picked():
    """Issue 36: "about 15 min on a 2-core machine" whatever the slice; the quick one took 24.6 s."""
    quick = tab.cached_curves("fog", 2, n=10)[1]
    assert "min" not in quick and "about 5 s on a 2-core machine" in quick
    assert tab.first_run_estimate(10, 1000) == "about 15 min" and tab.first_run_estimate(2, 1000) == "about 3 min"
    assert tab.first_run_estimate(10, 100) == "about 25 s"


def test_compute_shows_progress_then_the_curves_and_the_cache_serves_them_again():
    progress = FakeProgress()
    fig, status = tab.compute_curves("pixelate", 3, progress=progress)
    total = len(WITH_WEIGHTS) * 6   # clean + five severities each
    assert progress.calls == [(i, total) for i in range(1, total + 1)]
    lines = model_lines(fig)
    assert [line.get_label() for line in lines] == sorted(WITH_WEIGHTS)
    assert all(list(line.get_xdata()) == [0, 1, 2, 3, 4, 5] for line in lines)
    assert "Computed in" in status and "20 test images" in status
    # The severity marker sits where the slider is.
    assert any(list(line.get_xdata()) == [3, 3] for line in fig.axes[0].get_lines())

    again, status = tab.cached_curves("pixelate", 1)
    assert status.startswith("All 2 models") and "From the cache" in status
    assert [list(ln.get_ydata()) for ln in model_lines(again)] == [list(ln.get_ydata()) for ln in lines]
    # Another corruption shares the clean point but not the rest.
    _, status = tab.cached_curves("fog", 1)
    assert "2 of 2 models" in status


def test_the_quick_slice_is_scored_and_cached_apart_from_the_full_one():
    # The synthetic export has 20 test pictures: a slice of 10 takes one of each class.
    fig, status = tab.compute_curves("brightness", 2, n=10, progress=FakeProgress())
    assert "10 test images" in status and len(model_lines(fig)) == len(WITH_WEIGHTS)
    assert "From the cache" in tab.cached_curves("brightness", 2, n=10)[1]
    assert "2 of 2 models" in tab.cached_curves("brightness", 2)[1]   # the default slice: not yet


@pytest.mark.slow
def test_compute_all_fills_every_corruption():
    progress = FakeProgress()
    tab.compute_all("fog", 3, progress=progress)
    assert progress.calls[-1] == (len(WITH_WEIGHTS) * (1 + 5 * len(CORRUPTIONS)),) * 2
    for name in CORRUPTIONS:
        assert "From the cache" in tab.cached_curves(name)[1]


def test_without_a_test_set_the_tab_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("CIFAR_DEMO_DATA", str(tmp_path / "nowhere"))
    fig, status = tab.cached_curves("fog")
    assert fig is None and "No CIFAR-10 test set" in status
    with pytest.raises(gr.Error, match="No CIFAR-10 test set"):
        tab.compute_curves("fog", 3, progress=FakeProgress())


def test_the_tab_builds_with_its_controls(ctx):
    with gr.Blocks() as demo:
        tab.build(ctx)
    dropdowns = [b for b in demo.blocks.values() if isinstance(b, gr.Dropdown)]
    sliders = [b for b in demo.blocks.values() if isinstance(b, gr.Slider)]
    assert [v for _, v in dropdowns[0].choices] == list(CORRUPTIONS)
    assert (sliders[0].minimum, sliders[0].maximum, sliders[0].step) == (0, 5, 1)
    radios = [b for b in demo.blocks.values() if isinstance(b, gr.Radio)]
    assert [v for _, v in radios[0].choices] == [1000, 100] and radios[0].value == 1000
    assert any(isinstance(b, gr.Tab) and b.label == "Robustness" for b in demo.blocks.values())


# ----------------------------------------------------------------------------- a run of yours

def test_a_finished_run_of_yours_joins_the_table_and_the_curves_cached_in_its_folder(export, tmp_path):
    from cifar_demo import jobs, ui
    from tests import helpers

    ctx = ui.AppContext.of(jobs.JobManager(tmp_path / "runs", dispatch=False))
    runs = ctx.runs_dir_for(jobs.LOCAL)
    # One epoch on the tiny export (its data= folder: Evaluate and Robustness find the run's test set).
    summary, run_dir = helpers.run(helpers.cfg(val_size=0, seed=1, batch_size=10, data=str(export)), tmp_path, None)
    assert summary["status"] == "finished" and run_dir.parent == runs
    run_id = run_dir.name
    labels = dict((v, k) for k, v in tab.run_choices(ctx))
    assert run_id in labels and helpers.MODEL in labels[run_id] and labels[tab.NO_RUN].startswith("None")

    _, _, rows = tab.show_picture_with_run(ctx, None, "fog", 3, run_id)
    assert rows[0][0] == f"your run ({helpers.MODEL})" and len(rows) == 1 + len(WITH_WEIGHTS)
    assert tab.show_picture_with_run(ctx, None, "fog", 3, tab.NO_RUN)[2] == rows[1:]

    fig, status = tab.cached_curves_for(ctx, "fog", 3, 100, run_id)
    assert "3 models" in status   # not scored yet: the shipped two and yours
    fig, status = tab.compute_curves_for(ctx, "fog", 3, 100, run_id, progress=FakeProgress())
    assert "(your run among them)" in status
    mine = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == f"your run ({helpers.MODEL})"]
    assert len(mine) == 1 and mine[0].get_linestyle() == "--" and len(mine[0].get_xdata()) == 6
    # Its entries live beside its run (deleted with a visitor's folder), not in the shared cache.
    assert list((runs / data.OWN_CACHE / "robustness").glob("*.json"))
    assert "From the cache" in tab.cached_curves_for(ctx, "fog", 3, 100, run_id)[1]

    # What a request may send: another slice size, a path for a run.
    with pytest.raises(gr.Error, match="The slice is 100 or 1,000 test pictures"):
        tab.cached_curves_for(ctx, "fog", 3, 10**6, run_id)
    with pytest.raises(gr.Error):
        tab.compute_curves_for(ctx, "fog", 3, 100, str(run_dir), progress=FakeProgress())
