"""The whole app in a real browser: `python app.py` driven by headless Chromium (Playwright).

One app server for the session (tests/app_server.py, shared with test_api_client.py) and one
browser page for the module; the steps run in order (predict, a 1-epoch training run, its
evaluation, /predict during a training run, an augmentation slider, the model zoo, a bad
upload) and save a screenshot of each tab (to a temporary folder; to docs/screenshots/ with
CIFAR_DEMO_UPDATE_SCREENSHOTS=1, see tests/browser.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from cifar_demo import weights, zoo
from cifar_demo.common import CLASSES

from .browser import SAMPLE, browser_page, fill, needs_chromium, open_tab, shot, show_recipe, visible

if TYPE_CHECKING:  # imported for real by pytest_plugins below (so that pytest registers it)
    from .app_server import AppServer

pytest_plugins = ["tests.app_server"]

pytestmark = [pytest.mark.slow, needs_chromium]


@pytest.fixture(scope="module")
def server(app_server) -> AppServer:
    return app_server  # the session's one app, shared with test_api_client


@pytest.fixture(scope="module")
def page(server):
    with browser_page(server.url) as page:
        yield page


VISIBLE_SOURCES = ("[...document.querySelectorAll('img')].filter(e => e.offsetParent !== null)"
                   ".map(e => e.src).sort()")


def visible_picture_sources(page) -> list[str]:
    """The sources of the pictures on screen (hidden tabs' pictures left out), sorted."""
    return page.evaluate(f"() => {VISIBLE_SOURCES}")


def wait_until_pictures_change(page, before: list[str]) -> None:
    """Block until the pictures on screen differ from `before` (a new preview was drawn)."""
    page.wait_for_function(f"(before) => JSON.stringify({VISIBLE_SOURCES}) !== JSON.stringify(before)",
                           arg=before)


def test_predict_shows_every_model_with_weights(page):
    page.locator("#predict-input input[type=file]").set_input_files(str(SAMPLE))
    table = page.locator("table.preds").filter(visible=True)
    table.wait_for()
    rows = {r.locator("td").first.locator("b").inner_text(): r for r in table.locator("tbody tr").all()}
    assert set(rows) == set(zoo.names())
    have = set(weights.available())
    for name, row in rows.items():
        if name in have:
            assert re.search(r"\d+(\.\d+)? ms", row.inner_text()), f"{name}: {row.inner_text()}"
            assert row.locator(".bar").count() == 3
        else:
            assert "no weights yet" in row.inner_text()
    shot(page, "predict")


def test_a_picture_unlike_cifar_gets_the_notice_and_keeps_its_predictions(page, tmp_path):
    assert not page.locator(".fam-notice").is_visible()  # the sample cat above is CIFAR-10
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(noise)
    page.locator("#predict-input input[type=file]").set_input_files(str(noise))
    notice = page.locator(".fam-notice")
    notice.wait_for()
    assert "None of the ten classes seems to fit" in notice.inner_text()
    assert all(c in notice.inner_text() for c in CLASSES)
    assert page.locator("table.preds").filter(visible=True).locator("tbody tr").count() == len(zoo.names())
    shot(page, "predict_unfamiliar")


def test_train_one_epoch_and_watch_it_finish(page):
    open_tab(page, "Train")
    show_recipe(page)
    fill(page, "Epochs", "1")
    fill(page, "Batch size", "50")
    fill(page, "Validation images", "100")
    plot = page.locator("#train-curves img").filter(visible=True)  # a PNG drawn once per metrics line
    before = plot.get_attribute("src") if plot.count() else None
    page.get_by_role("button", name="Start", exact=True).click()
    visible(page, re.compile(r"Started run `?\S+`?: 1 epoch")).wait_for(timeout=60_000)
    # No wait for the running state: a fast machine may finish between two 2 s ticks.
    done = visible(page, re.compile("finished after 1 epoch"))
    done.wait_for(timeout=300_000)
    assert re.search(r"best validation accuracy \d+\.\d+%.*test accuracy \d+\.\d+%", done.inner_text())
    assert plot.count() == 1 and plot.get_attribute("src") != before  # the curves were redrawn
    log = page.get_by_label("Log: one line per epoch", exact=True).input_value()
    assert re.search(r"epoch +1 +train loss \d", log) and "end: finished" in log, log
    # The Train tab's screenshot is test_e2e_lesson's (a run with its live guesses).


def test_evaluate_the_finished_run(page):
    open_tab(page, "Evaluate")
    page.get_by_role("button", name="Refresh the list", exact=True).click()
    dropdown = page.get_by_label("Weights", exact=True)
    dropdown.click()
    page.get_by_role("option", name=re.compile(r"^your run: .* run \S+$")).first.click()
    page.get_by_role("button", name="Evaluate", exact=True).click()
    visible(page, re.compile(r"^run .*: test accuracy \d+\.\d+%")).wait_for(timeout=180_000)
    plots = page.locator(".matplotlib img").filter(visible=True)  # gr.Plot draws a Figure as an img
    # The pictures come with the text but load after it: wait for the fourth, then count.
    plots.nth(3).wait_for(timeout=30_000)
    assert plots.count() == 4  # two confusion matrices, per-class bars, reliability diagram
    if "airnet" in weights.available():  # the screenshot shows real weights where they exist
        dropdown.click()
        page.get_by_role("option", name=re.compile(r"^airnet \(shipped")).click()
        page.get_by_role("button", name="Evaluate", exact=True).click()
        visible(page, re.compile(r"^airnet \(shipped weights\): test accuracy \d+\.\d+%")).wait_for(timeout=180_000)
    shot(page, "evaluate")


def test_api_predict_answers_while_the_app_trains(page, server):
    """gradio_client against /predict, while a training run of the app uses both cores (how fast:
    bench/app_latency.py, which also times the app's start)."""
    from gradio_client import Client, handle_file

    open_tab(page, "Train")
    show_recipe(page)
    fill(page, "Epochs", "200")
    # Its own settings, not those the earlier tests left in the form: the test data holds 1,000
    # pictures, fewer than the preset's 2,000 validation images (run alone, it never started).
    fill(page, "Batch size", "50")
    fill(page, "Validation images", "100")
    page.get_by_role("button", name="Start", exact=True).click()
    visible(page, re.compile(r"step \d+/\d+")).wait_for(timeout=120_000)  # it is training now
    client = Client(server.url, verbose=False)
    try:
        out = client.predict(handle_file(str(SAMPLE)), False, api_name="/predict")
    finally:
        page.get_by_role("button", name="Stop", exact=True).click()
        visible(page, re.compile(r"stopped")).wait_for(timeout=120_000)
    probs = out[-1]
    assert set(probs) == set(weights.available())
    for model, p in probs.items():
        assert sum(p.values()) == pytest.approx(1.0, abs=1e-4) and set(p) == set(CLASSES), model


def test_augmentation_slider_changes_the_previews(page):
    open_tab(page, "Augmentations")
    page.locator("img").filter(visible=True).first.wait_for()
    before = visible_picture_sources(page)
    slider = page.get_by_role("slider").filter(visible=True).first
    slider.fill("8")
    slider.dispatch_event("change")
    wait_until_pictures_change(page, before)
    shot(page, "augmentations")


def test_robustness_severity_slider_and_the_accuracy_curves(page):
    open_tab(page, "Robustness")
    table = page.get_by_text("Each model's answer").filter(visible=True).first
    table.wait_for()
    page.wait_for_function(f"() => {VISIBLE_SOURCES}.length >= 2")
    before = visible_picture_sources(page)
    slider = page.get_by_role("slider").filter(visible=True).first
    slider.fill("5")
    slider.dispatch_event("change")
    wait_until_pictures_change(page, before)
    for name in weights.available():
        visible(page, name).wait_for()   # every model's row (models may still be loading)
    # The accuracy curves: on the quick slice (100 of the app's 200 test pictures), computed in
    # the app with progress, then drawn; about half a minute on 2 cores for all ten models.
    plot = page.locator(".matplotlib img").filter(visible=True)
    plot.first.wait_for()
    empty = plot.first.get_attribute("src")
    visible(page, "100 (quick").click()
    page.get_by_role("button", name="Compute for this corruption").click()
    visible(page, re.compile(r"Computed in \d+ s")).wait_for(timeout=240_000)
    assert visible(page, "on 100 test images").is_visible()
    page.wait_for_function("src => [...document.querySelectorAll('.matplotlib img')]"
                           ".some(e => e.offsetParent !== null && e.src !== src)", arg=empty)
    shot(page, "robustness")


def test_model_zoo_tab(page):
    open_tab(page, "Model zoo")
    visible(page, re.compile(r"\d+\.\d+ ms")).wait_for(timeout=120_000)  # latency measured on open
    for name in zoo.names():
        assert visible(page, name).is_visible()
    assert visible(page, "Our test accuracies are on the test set of CIFAR-10 (JPEG export).").is_visible()
    shot(page, "model_zoo")


def test_a_non_image_upload_shows_a_clear_error(page, tmp_path):
    """One message (issue 36: "Error (6)", then "Error (2)": the page sends two change events for
    one upload, and each raised a toast), said where the answers would be, and the previous
    picture's predictions cleared from under the broken one."""
    open_tab(page, "Predict")
    page.locator("#predict-input input[type=file]").set_input_files(str(SAMPLE))
    page.locator("table.preds").filter(visible=True).wait_for()
    bad = tmp_path / "notes.png"
    bad.write_text("these are my notes, not a picture")
    page.locator("#predict-input input[type=file]").set_input_files(str(bad))
    said = page.locator(".predict-error").filter(visible=True)
    said.get_by_text(re.compile("not an image PIL can read")).wait_for()
    page.wait_for_timeout(3000)   # every event of the upload has answered
    assert said.count() == 1 and said.inner_text().count("not an image PIL can read") == 1
    assert page.locator("[data-testid=toast-body]").filter(visible=True).count() == 0
    assert page.locator("table.preds").filter(visible=True).count() == 0
    assert "Traceback" not in page.content()


def test_the_api_serves_no_server_path(server):
    """An API client naming a file on the server gets an error, never the file."""
    import json
    import urllib.request

    secret = "/etc/hostname" if Path("/etc/hostname").exists() else "/etc/hosts"
    body = json.dumps({"data": [{"path": secret, "meta": {"_type": "gradio.FileData"}}, False]}).encode()
    req = urllib.request.Request(server.url + "gradio_api/call/predict", body, {"Content-Type": "application/json"})
    event = json.loads(urllib.request.urlopen(req, timeout=30).read())["event_id"]
    stream = urllib.request.urlopen(f"{server.url}gradio_api/call/predict/{event}", timeout=60).read().decode()
    assert "event: error" in stream and "complete" not in stream
    assert Path(secret).read_text().strip() not in stream and "Traceback" not in stream
