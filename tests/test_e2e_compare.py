"""The Compare recipes tab in a real browser: an A/B study of two tiny runs (one seed each,
one epoch on a small subset) goes through the app's job queue, and the band plot and the
verdict appear. Screenshot: docs/screenshots/compare.png."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from .browser import browser_page, needs_chromium, open_tab, shot, visible

if TYPE_CHECKING:  # imported for real by pytest_plugins below
    from .app_server import AppServer

pytest_plugins = ["tests.app_server"]

pytestmark = [pytest.mark.slow,
              needs_chromium]


@pytest.fixture(scope="module")
def page(app_server: AppServer):
    with browser_page(app_server.url, ready=None) as page:
        page.get_by_role("tab", name="Compare recipes", exact=True).wait_for()
        yield page


def test_an_ab_study_of_two_tiny_runs_shows_the_bands_and_the_verdict(page, app_server):
    open_tab(page, "Compare recipes")
    visible(page, "No study yet").wait_for()
    seeds = page.get_by_label("number input for Seeds per recipe")
    seeds.fill("1")
    seeds.press("Enter")
    page.get_by_label("Epochs per run", exact=True).fill("1")
    page.get_by_label("Training images per run", exact=True).fill("300")
    page.get_by_label("Validation images", exact=True).fill("100")
    page.get_by_role("button", name="Start study", exact=True).click()
    visible(page, re.compile(r"Started study `?\S+`?: 2 runs")).wait_for(timeout=30_000)
    visible(page, re.compile(r"run [12] of 2: recipe [AB], seed 0")).wait_for(timeout=60_000)
    visible(page, "finished (2 of 2 runs done)").wait_for(timeout=180_000)
    verdict = visible(page, re.compile(r"B - A = [+-]\d+\.\d+ points"))
    verdict.wait_for()
    assert "no spread to compare" in verdict.inner_text()
    assert page.locator(".matplotlib img").filter(visible=True).count() == 1   # the band plot
    table = page.locator("table").filter(visible=True).filter(has_text="seed 0").first
    assert re.search(r"\d+\.\d+%", table.inner_text()), table.inner_text()
    # The runs are ordinary runs of the app, in its runs folder.
    assert len(list(app_server.runs_dir.glob("*/config.json"))) >= 2
    shot(page, "compare")
