"""The Evaluate tab's drill-down in a real browser: a click on a cell of the confusion heat map
shows its test images (the diagonal too, and the two dropdowns pick a cell without the mouse), a
click on one of them every shipped model's top 3 and Grad-CAM.

Runs on the session's app server (tests/app_server.py) with its own page, and needs shipped
weights: the evaluated model is one of them (airnet where it exists).
"""

from __future__ import annotations

import re

import pytest

from cifar_demo import weights
from cifar_demo.common import CLASSES

from .browser import browser_page, needs_chromium, open_tab, shot, visible

pytest_plugins = ["tests.app_server"]

pytestmark = [pytest.mark.slow,
              needs_chromium,
              pytest.mark.skipif(not weights.available(), reason="no shipped weights in weights/")]


@pytest.fixture(scope="module")
def page(app_server):
    with browser_page(app_server.url) as page:
        yield page


def _cell(page, row: int, col: int):
    # Gradio's virtual table names each body cell cell-<row>-<column>; column 0 names the rows.
    return page.locator(f"#eval-heatmap [data-testid=cell-{row}-{col + 1}]")


def _counts(page) -> list[list[int]]:
    return [[int(_cell(page, i, j).inner_text()) for j in range(10)] for i in range(10)]


def _gallery_count(page) -> int:
    return page.locator("#cell-gallery img").count()


def test_a_click_on_a_cell_shows_its_images_then_every_model_compares_one(page):
    name = "airnet" if "airnet" in weights.available() else weights.available()[0]
    open_tab(page, "Evaluate")
    page.get_by_role("button", name="Refresh the list", exact=True).click()
    page.get_by_label("Weights", exact=True).click()
    page.get_by_role("option", name=re.compile(rf"^{name} \(shipped")).click()
    page.get_by_role("button", name="Evaluate", exact=True).click()
    visible(page, re.compile(rf"^{name} \(shipped weights\): test accuracy \d+\.\d+%")).wait_for(timeout=180_000)
    heat = page.locator("#eval-heatmap")
    heat.scroll_into_view_if_needed()  # the table renders the rows it shows
    _cell(page, 9, 9).wait_for()
    counts = _counts(page)
    assert sum(map(sum, counts)) >= 100  # the app's test slice

    # An off-diagonal cell with images: the largest mistake.
    t, p = max(((i, j) for i in range(10) for j in range(10) if i != j), key=lambda c: counts[c[0]][c[1]])
    assert counts[t][p] > 0, counts
    _cell(page, t, p).click()
    plural = {c: c if c == "deer" else c + "s" for c in CLASSES}
    visible(page, f"{plural[CLASSES[t]]} it takes for {plural[CLASSES[p]]}").wait_for()
    page.wait_for_function("n => document.querySelectorAll('#cell-gallery img').length === n",
                           arg=min(counts[t][p], 40))
    assert page.get_by_label("True class", exact=True).input_value() == CLASSES[t]
    assert page.get_by_label("Predicted class", exact=True).input_value() == CLASSES[p]
    captions = page.locator("#cell-gallery .caption-label").all_inner_texts()
    assert all(re.fullmatch(r"\d+% #\d+( ⚑ .*)?", c) for c in captions), captions  # ⚑: ui.label_review
    confidences = [int(c.split("%")[0]) for c in captions]
    assert confidences == sorted(confidences, reverse=True)  # most confident first

    # The diagonal: what it gets right for the class with most right.
    d = max(range(10), key=lambda i: counts[i][i])
    _cell(page, d, d).click()
    visible(page, f"{plural[CLASSES[d]]} it gets right").wait_for()
    page.wait_for_function("n => document.querySelectorAll('#cell-gallery img').length === n",
                           arg=min(counts[d][d], 40))

    # The two dropdowns pick a cell on their own (keyboard users): back to the largest mistake.
    for label, cls in (("True class", CLASSES[t]), ("Predicted class", CLASSES[p])):
        page.get_by_label(label, exact=True).click()
        page.get_by_role("option", name=cls, exact=True).click()
        # The list closes after the pick, not at once: the next dropdown's options would be twins.
        page.wait_for_function("() => document.querySelectorAll('[role=option]').length === 0")
    visible(page, f"{plural[CLASSES[t]]} it takes for {plural[CLASSES[p]]}").wait_for()
    page.wait_for_function("n => document.querySelectorAll('#cell-gallery img').length === n",
                           arg=min(counts[t][p], 40))

    # One of its images: every shipped model, the evaluated one marked.
    page.locator("#cell-gallery img").first.click()
    cards = page.locator("#cell-compare .card")
    cards.first.wait_for(timeout=120_000)
    assert cards.count() == len(weights.available())
    assert page.locator("#cell-compare .card.own").inner_text().startswith(f"{name} (evaluated)")
    for card in cards.all():
        assert card.locator("img").count() == 1 and card.locator(".bar").count() == 3
    assert re.search(rf"Test image #\d+: true class {CLASSES[t]};", page.locator("#cell-compare .head").inner_text())
    page.locator("#cell-gallery").scroll_into_view_if_needed()  # lazy thumbnails load in view
    page.wait_for_function("() => [...document.querySelectorAll('#cell-gallery img')].every(i => i.complete)")
    shot(page, "evaluate_drilldown")
