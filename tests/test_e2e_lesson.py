"""The Train tab on a projector (1280x720) in a real browser: Start and the curves in the first screen,
and the live guesses changing between two epochs of a tiny run.

Runs on the session's one app (tests/app_server.py, local mode: a slice of 1,000 CIFAR-10 training
pictures). Its screenshot is the README's Train tab (docs/screenshots/train.png with
CIFAR_DEMO_UPDATE_SCREENSHOTS=1), taken at the browser tests' usual 1400x1000 once the run is done.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .browser import STEP_TIMEOUT_MS, chromium, fill, needs_chromium, open_tab, shot, visible

pytest_plugins = ["tests.app_server"]
pytestmark = [pytest.mark.slow, needs_chromium]

PROJECTOR = {"width": 1280, "height": 720}


def open_section(page, title: str) -> None:
    """Open a closed gr.Accordion by the start of its title."""
    page.get_by_role("button", name=re.compile("^" + re.escape(title))).first.click()


def in_first_screen(page, selector: str) -> bool:
    box = page.locator(selector).first.bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= PROJECTOR["height"] \
        and box["x"] + box["width"] <= PROJECTOR["width"]


def guesses(page) -> list[str]:
    return page.locator("#train-live-strip .live-guess").all_inner_texts()


def test_projector_first_screen_and_live_guesses_between_two_epochs(app_server):
    with chromium() as browser:
        page = browser.new_context(viewport=PROJECTOR).new_page()
        page.set_default_timeout(STEP_TIMEOUT_MS)
        page.goto(app_server.url)
        page.locator("#predict-input").wait_for()
        open_tab(page, "Train")
        page.locator("#train-curves").wait_for()
        assert page.evaluate("() => window.scrollY") == 0
        for selector in ("#train-start", "#train-curves", "#train-live-strip"):
            assert in_first_screen(page, selector), (selector, page.locator(selector).bounding_box())
        # The recipe waits in a closed section: the first screen is the pick, Start and the curves.
        assert not page.get_by_label("Epochs", exact=True).is_visible()

        # A tiny run of the first choice: two epochs of the test app's 1,000 pictures.
        open_section(page, "Model and recipe")
        for label, value in (("Epochs", "2"), ("Batch size", "50"), ("Train on a subset", "0"),
                             ("Validation images", "100")):
            fill(page, label, value)
        page.locator("#train-start").click()
        page.evaluate("() => window.scrollTo(0, 0)")
        strip = page.locator("#train-live-strip")
        strip.get_by_text(re.compile(r"after epoch 1 of 2")).wait_for(timeout=900_000)   # a bound, not a figure
        first = guesses(page)
        strip.get_by_text(re.compile(r"after epoch 2 of 2")).wait_for(timeout=900_000)
        second = guesses(page)
        assert len(first) == len(second) == 20 and all(re.search(r"\d+%$", g) for g in first + second)
        assert first != second, first   # the same pictures, guessed anew from the next epoch's weights
        visible(page, re.compile("finished after 2 epoch")).wait_for(timeout=300_000)
        assert in_first_screen(page, "#train-live-strip")
        page.set_viewport_size({"width": 1400, "height": 1000})
        shot(page, "train")

        # The finished run joins the shipped models in Robustness and in the Model zoo.
        open_tab(page, "Robustness")
        page.get_by_label("Also test a model you trained (Train tab)", exact=True).click()
        page.get_by_role("option", name=re.compile(r"run \d{8}-")).first.click()
        expect(page.locator("#robustness-table [data-testid='cell-0-0']")).to_contain_text("your run (")
        shot(page, "robustness_your_run")
        open_tab(page, "Model zoo")
        expect(page.locator("#zoo-your-runs [data-testid='cell-0-0']")).to_have_text(re.compile(r"\d{8}-\d{6}-"))
        visible(page, re.compile(r"Your runs:.* \d+ finished")).wait_for()   # the session's app holds other runs
        shot(page, "zoo_your_runs")
