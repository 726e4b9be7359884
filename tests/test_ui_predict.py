"""Predict tab handlers, called directly: two zoo models with (random) weights, the rest without."""

import asyncio
import copy

import gradio as gr
import numpy as np
import pytest

from cifar_demo import data, weights, zoo
from cifar_demo.common import CLASSES
from cifar_demo.data import pictures
from cifar_demo.ui import predict_tab
from tests.helpers import WITH_WEIGHTS, calibrate_for_test_weights
from tests.synthetic_data import save_random_weights


@pytest.fixture(scope="module")
def weights_folder(tmp_path_factory):
    """Randomly initialised weights + cards for two models (test only: never shipped)."""
    return save_random_weights(tmp_path_factory.mktemp("weights"), WITH_WEIGHTS)


@pytest.fixture(autouse=True)
def zoo_weights(weights_folder, monkeypatch):
    monkeypatch.setenv("CIFAR_DEMO_WEIGHTS", str(weights_folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    weights.clear_cache()
    yield weights_folder
    weights.clear_cache()


@pytest.fixture()
def sample(uploaded) -> str:
    """The first bundled sample image, uploaded (the handlers read nothing else)."""
    return uploaded(data.sample_paths()[0][0])


def test_predicts_with_the_models_that_have_weights_and_names_the_others(sample):
    seen, vote, table, cams, probs = predict_tab.predict_image(sample, False)
    # The 32x32 input the models saw, each pixel an 8x8 block.
    expected = pictures.to_32x32(pictures.load_image(sample))
    assert seen.shape == (256, 256, 3) and np.array_equal(seen[::8, ::8], expected)
    # JSON: the two models with weights, full distributions.
    assert set(probs) == set(WITH_WEIGHTS)
    for dist in probs.values():
        assert set(dist) == set(CLASSES) and sum(dist.values()) == pytest.approx(1.0, abs=1e-5)
    # Ensemble: the mean of the two.
    assert vote == pytest.approx({c: (probs["quiz_dnn"][c] + probs["optimized200k"][c]) / 2 for c in CLASSES})
    # Table: every zoo model, the eight without weights said so.
    assert all(name in table for name in zoo.names())
    assert table.count("no weights yet") == len(zoo.names()) - 2
    assert table.count("CIFAR-10 (JPEG export)") == 2 and "50.0%" in table and " ms<" in table
    assert cams == []


def test_grad_cam_toggle_adds_one_overlay_per_model_with_weights(sample):
    *_, cams, probs = predict_tab.predict_image(sample, True)
    assert len(cams) == 2
    for (img, caption), name in zip(cams, WITH_WEIGHTS):
        assert img.shape == (256, 256, 3) and img.dtype == np.uint8
        top = max(probs[name], key=probs[name].get)
        assert caption.startswith(f"{name}: {top} ")


@pytest.mark.parametrize("content, message", [
    (b"this is not a picture", "not an image"),
    (b"", "empty"),
    (b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "SVG"),
])
def test_a_bad_upload_gives_a_clear_error(tmp_path, uploaded, content, message):
    bad = tmp_path / "upload.png"
    bad.write_bytes(content)
    with pytest.raises(gr.Error, match=message):
        predict_tab.predict_image(uploaded(bad), False)


def test_the_page_says_a_bad_upload_once_in_place_of_the_answers(tmp_path, uploaded):
    bad = tmp_path / "notes.png"
    bad.write_text("these are my notes, not a picture")
    seen, vote, table, cams, probs = predict_tab.predict_on_page(uploaded(bad), False)
    assert seen is None and vote is None and cams == [] and probs == {}
    assert "predict-error" in table and table.count("not an image PIL can read") == 1


def test_the_page_gets_every_answer_from_one_event(ctx, sample, tmp_path, uploaded):
    """Issue 34: the page asked three queued events and two direct calls per upload; one event
    now brings the zoo's answers, the familiarity verdict and its notice, and the run's line."""
    with gr.Blocks() as demo:
        predict_tab.build(ctx)
    page = [fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", None) == "page_answers"]
    assert len(page) == 1 and not page[0].preprocess and len(page[0].outputs) == 9
    # Its outputs are postprocessed in its own thread (as_sent): the page gets what Gradio's own
    # postprocessing would send.
    assert not page[0].postprocess
    raw = predict_tab.page_answers(ctx, sample, True, "")
    gradios = copy.copy(page[0])
    gradios.postprocess = True
    theirs = asyncio.run(demo.postprocess_data(gradios, list(raw), None))
    sent = predict_tab.as_sent(page[0].outputs, lambda: raw)()
    assert asyncio.run(demo.postprocess_data(page[0], sent, None)) == theirs
    assert theirs[0]["url"] and len(theirs[3]) == len(WITH_WEIGHTS)   # the picture, a Grad-CAM per model
    image = page[0].inputs[0]
    on_change = [fn for fn in demo.fns.values() if any(t[0] == image._id and t[1] == "change" for t in fn.targets)]
    assert on_change == page   # nothing else per upload: no clearing call, no second or third event
    seen, vote, table, cams, probs, fam, notice, run, line = predict_tab.page_answers(ctx, sample, False, "")
    alone = predict_tab.predict_image(sample, False)   # the table's latencies differ from call to call
    assert (seen == alone[0]).all() and vote == alone[1] and cams == alone[3] and probs == alone[4]
    assert "<table class='preds'>" in table
    assert fam == predict_tab.familiarity_check(sample) and notice == predict_tab.familiarity_notice(fam)
    assert run is None and line == ""
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    seen, vote, table, cams, probs, fam, notice, run, line = predict_tab.page_answers(ctx, uploaded(bad), False, "")
    assert seen is None and table.count("not an image PIL can read") == 1 and "not an image" in fam["error"]
    assert notice == "" and run is None
    # A run that is not there: said on its own line; the zoo's answers stay.
    *zoo_answers, run, line = predict_tab.page_answers(ctx, sample, False, "20990101-000000-airnet-0000")
    assert zoo_answers[4] and run is None and line.startswith("**")


def test_no_image_clears_the_outputs():
    seen, vote, table, cams, probs = predict_tab.predict_image(None, True)
    assert seen is None and vote is None and cams == [] and probs == {}
    assert "Upload an image" in table


def test_weights_that_fail_to_load_are_reported_not_faked(zoo_weights, sample):
    path = zoo_weights / "optimized200k.safetensors"
    good = path.read_bytes()
    path.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # one flipped bit: sha256 mismatch
    try:
        _, _, table, _, probs = predict_tab.predict_image(sample, False)
    finally:
        path.write_bytes(good)
    assert set(probs) == {"quiz_dnn"}
    assert "weights could not be loaded" in table and "sha256" in table


def test_gradio_upload_records_are_read_raw(tmp_path, uploaded, sample):
    # The events skip gr.Image's preprocessing: the handler gets Gradio's record of the upload.
    record = {"path": sample, "url": None, "orig_name": "cat.png", "meta": {"_type": "gradio.FileData"}}
    *_, probs = predict_tab.predict_image(record, False)
    assert set(probs) == set(WITH_WEIGHTS)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(gr.Error, match="not an image"):
        predict_tab.predict_image({"path": uploaded(text), "orig_name": "notes.png"}, False)
    # /predict alone says so on the page: /familiarity answers with its error form (one message, not two).
    assert "not an image" in predict_tab.familiarity_check({"path": uploaded(text), "orig_name": "notes.png"})["error"]
    # A base64 data URL (from an API client) is decoded to bytes, then read like a file.
    with pytest.raises(gr.Error, match="not an image"):
        predict_tab.predict_image({"path": None, "url": "data:image/png;base64,bm90IGFuIGltYWdl"}, False)


def test_build_exposes_the_predict_endpoint(ctx):
    with gr.Blocks() as demo:
        predict_tab.build(ctx)
    api = {fn.api_name: fn for fn in demo.fns.values()}
    assert api["predict"].fn is predict_tab.predict_image and not api["predict"].preprocess
    assert [type(c).__name__ for c in api["predict"].outputs] == ["Image", "Label", "HTML", "Gallery", "JSON"]
    assert api["familiarity"].fn is predict_tab.familiarity_check and not api["familiarity"].preprocess
    assert [type(c).__name__ for c in api["familiarity"].outputs] == ["JSON"]


# ------------------------------------------------------------------- familiarity




def test_familiarity_endpoint_scores_with_a_calibration_of_the_weights_in_use(zoo_weights, sample):
    from cifar_demo.analysis import familiarity as F

    F._CACHED.clear()
    missing = predict_tab.familiarity_check(sample)
    assert missing["unfamiliar"] is None and "no familiarity calibration" in missing["error"]
    calibrate_for_test_weights(zoo_weights)
    try:
        result = predict_tab.familiarity_check(sample)
        assert isinstance(result["unfamiliar"], bool) and set(result["per_model"]) == set(WITH_WEIGHTS)
        assert result["unfamiliar"] == (result["score"] < result["threshold"])
        assert result["classes"] == list(CLASSES) and 0 <= result["false_alarm_test"] <= 1
        assert predict_tab.familiarity_check(None) is None
    finally:
        import shutil

        shutil.rmtree(zoo_weights / F.DIR_NAME)
        F._CACHED.clear()


def test_the_notice_names_the_ten_classes_and_only_shows_for_unfamiliar_pictures():
    strange = {"unfamiliar": True, "score": -30.0, "threshold": -12.5, "false_alarm_test": 0.05}
    notice = predict_tab.familiarity_notice(strange)
    assert "None of the ten classes seems to fit" in notice and all(c in notice for c in CLASSES)
    assert "-12.5" in notice and "5%" in notice
    assert predict_tab.familiarity_notice({**strange, "unfamiliar": False}) == ""
    assert predict_tab.familiarity_notice({"unfamiliar": None, "error": "no calibration"}) == ""
    assert predict_tab.familiarity_notice(None) == ""
