"""Opening the app in headless Chromium, the one way every browser test does it: Debian's
chromium (`apt-get install chromium`; never `playwright install`), a 1400x1000 window, 60 s
per step; and the helpers the browser tests share (tabs, visible text, screenshots).

Screenshots go to a temporary folder (pytest's, kept for the last few sessions:
<basetemp>/screenshots0/) and leave the repository alone. To refresh the README's pictures,
write them to docs/screenshots/ instead:

    CIFAR_DEMO_UPDATE_SCREENSHOTS=1 python -m pytest -q tests/test_e2e_app.py
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DOCS_SHOTS = REPO / "docs" / "screenshots"
SAMPLE = REPO / "cifar_demo" / "assets" / "sample" / "cat" / "0000.png"   # the picture the tests upload

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 1000}
STEP_TIMEOUT_MS = 60_000

needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed "
                                    "(apt-get install chromium; .ci/run does it)")


@contextlib.contextmanager
def chromium():
    """A headless browser for the block (skips the test where Playwright is missing)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def visit(browser, url: str, ready: str | None = "#predict-input", **context_options):
    """A new visitor (its own browser context: own storage, own visitor token) on the app at `url`,
    once the element `ready` (a CSS selector) is on the page."""
    page = browser.new_context(viewport=VIEWPORT, **context_options).new_page()
    page.set_default_timeout(STEP_TIMEOUT_MS)
    page.goto(url)
    if ready:
        page.locator(ready).wait_for()
    return page


@contextlib.contextmanager
def browser_page(url: str, ready: str | None = "#predict-input"):
    """One visitor's page on the app for the block."""
    with chromium() as browser:
        yield visit(browser, url, ready)


def update_screenshots() -> bool:
    """CIFAR_DEMO_UPDATE_SCREENSHOTS=1: the browser tests write docs/screenshots/ (else a temp folder)."""
    return os.environ.get("CIFAR_DEMO_UPDATE_SCREENSHOTS", "") == "1"


SHOTS: Path | None = None   # set for the session by conftest.py's screenshot_dir fixture


def shot(page, name: str) -> None:
    """A full-page screenshot `name`.png in SHOTS (docs/screenshots/ or the session's temp folder)."""
    shots = SHOTS if SHOTS is not None else DOCS_SHOTS if update_screenshots() else None
    assert shots is not None, "no screenshot folder: conftest.py's screenshot_dir fixture did not run"
    shots.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(500)  # let plots and images finish painting
    path = shots / f"{name}.png"
    before = path.stat().st_mtime_ns if path.exists() else None
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_mtime_ns != before, f"{path} was not rewritten"
    with Image.open(path) as im:  # the whole page at the 1400 px viewport, not a crop
        assert im.format == "PNG" and im.width == 1400 and im.height >= 1000, (name, im.size)


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def visible(page, text) -> object:
    return page.get_by_text(text).filter(visible=True).first


def open_section(page, title: str, inside: str | None = None) -> None:
    """Open the closed gr.Accordion whose title starts with `title` (the Train tab keeps its dataset and
    its recipe in them); nothing when the element `inside` (a label) already shows."""
    if inside is not None and page.get_by_label(inside, exact=True).filter(visible=True).count():
        return
    page.get_by_role("button", name=re.compile("^" + re.escape(title))).filter(visible=True).first.click()


def show_recipe(page) -> None:
    """The Train tab's "Model and recipe" section, open (its fields: Epochs, Batch size, ...)."""
    open_section(page, "Model and recipe", inside="Epochs")


def fill(page, label: str, value: str, tries: int = 5) -> None:
    """Type `value` into the field labelled `label` and check that it stays: a field of a section just
    opened can still receive its value from the page a moment later, over what was typed (a run
    once started with the preset's 4 epochs instead of the 1 typed)."""
    field = page.get_by_label(label, exact=True)
    for _ in range(tries):
        field.fill(value)
        field.press("Tab")
        page.wait_for_timeout(400)
        if field.input_value() == value:
            return
    raise AssertionError(f"{label}: {field.input_value()!r} after typing {value!r} {tries} times")
