"""Opening the app in headless Chromium, the one way every browser test does it: Debian's
chromium (`apt-get install chromium`; never `playwright install`), a 1400x1000 window, 60 s
per step."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

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
