"""The Inside-the-network tab in a real browser: a model and a picture give the layer grids; a run
with two saved epochs shows different first-layer filters at each; the map of the quick slice is
drawn for two models and a click on a point opens it with its neighbours and every model's answer.

Runs on the session's app server (tests/app_server.py); the run is trained here, in this process,
into the app's runs folder (two epochs of the small quiz_dnn on synthetic pictures: seconds).
"""

from __future__ import annotations

import re

import pytest

from cifar_demo import weights
from cifar_demo.train import engine

from .browser import browser_page, needs_chromium, open_tab, shot, visible
from .helpers import cfg

pytest_plugins = ["tests.app_server"]

pytestmark = [pytest.mark.slow,
              needs_chromium,
              pytest.mark.skipif(not {"simple_cnn", "airnet"} <= set(weights.available()),
                                 reason="needs the shipped simple_cnn and airnet weights")]

DIGEST_JS = """async (sel) => {
  const img = document.querySelector(sel);
  const buf = await (await fetch(img.src)).arrayBuffer();
  const d = await crypto.subtle.digest('SHA-256', buf);
  return Array.from(new Uint8Array(d)).map(b => b.toString(16).padStart(2, '0')).join('');
}"""


@pytest.fixture(scope="module")
def two_epoch_run(app_server, tiny_data):
    trainer = engine.Trainer(cfg(epochs=2), runs_dir=app_server.runs_dir, data=tiny_data)
    trainer.run()
    return trainer.run_id


def test_layers_a_training_run_and_the_map(app_server, two_epoch_run):
    with browser_page(app_server.url) as page:
        open_tab(page, "Inside the network")
        # The default: airnet on the default picture.
        visible(page, re.compile(r"^airnet \(shipped weights\) says \w+")).wait_for(timeout=120_000)
        page.get_by_label("Model", exact=True).click()
        page.get_by_role("option", name="simple_cnn (shipped weights)", exact=True).click()
        visible(page, re.compile(r"^simple_cnn \(shipped weights\) says \w+")).wait_for(timeout=120_000)
        page.get_by_role("button", name=re.compile(r"^Pick a picture \(default")).click()
        page.locator("#inside-sample img").nth(15).click()   # "cat 1"
        page.wait_for_function("() => document.querySelectorAll('#inside-grids img').length >= 4")
        page.locator("#inside-filters img").wait_for()
        shot(page, "inside_layers")

        # The run: following, it shows the newest epoch; then epoch 1, whose filters differ.
        page.get_by_role("button", name="Refresh the lists").click()
        page.get_by_label("Run", exact=True).click()
        page.get_by_role("option", name=re.compile(re.escape(two_epoch_run))).click()
        visible(page, re.compile(r"weights after epoch 2")).wait_for(timeout=120_000)
        page.locator("#inside-run-filters img").wait_for()
        second = page.evaluate(DIGEST_JS, "#inside-run-filters img")
        page.get_by_label("Follow the newest epoch").uncheck()
        number = page.locator("#inside-epoch input[type=number]")
        number.fill("1")
        number.press("Enter")
        visible(page, re.compile(r"weights after epoch 1")).wait_for(timeout=120_000)
        page.wait_for_timeout(500)
        first = page.evaluate(DIGEST_JS, "#inside-run-filters img")
        assert first != second
        page.locator("#inside-run-grids").scroll_into_view_if_needed()
        shot(page, "inside_run")

        # The map of the quick slice, simple_cnn against airnet; a click on a point opens it.
        page.locator("#map-go").click()
        page.wait_for_function("() => document.querySelectorAll('#map-left circle').length === 100"
                               " && document.querySelectorAll('#map-right circle').length === 100",
                               timeout=600_000)
        dot = page.locator("#map-right circle[stroke='#111']").first   # a mistake of airnet's
        dot.hover()
        page.locator("#map-right .emb-tip").wait_for(state="visible")
        assert "predicted" in page.locator("#map-right .emb-text").inner_text()
        dot.click()
        page.locator("#map-picture img").wait_for(timeout=120_000)
        opened = page.locator("#map-point").inner_text()
        assert re.match(r"Picture \d+ of the slice on airnet", opened), opened
        assert re.search(r"true \w+, predicted \w+ \(\d+%\)", opened), opened
        page.wait_for_function("() => document.querySelectorAll('#map-neighbours img').length === 8")
        dot.hover()
        shot(page, "inside_map")
