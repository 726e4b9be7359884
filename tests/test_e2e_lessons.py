"""Issue 38's lessons in a real browser, one step each: the test set's label errors in the
Evaluate drill-down (a flagged picture opened, the reviewers' sentence shown); the Adversarial
tab (the epsilon slider moved, the answers change); the Train tab's learning-rate finder (a short
range test through the training queue, its plot, the suggestion filled into the form).

Runs on the session's app server (tests/app_server.py): its test data is the first 20 pictures
per class of the JPEG export, which holds one reviewed label error, test/deer/0012.jpg (test
index 4 * 20 + 12 = 92 there). Needs shipped weights.
"""

from __future__ import annotations

import re

import pytest

from cifar_demo import weights

from .browser import browser_page, fill, needs_chromium, open_tab, shot, show_recipe, visible

pytest_plugins = ["tests.app_server"]

pytestmark = [pytest.mark.slow, needs_chromium,
              pytest.mark.skipif("airnet" not in weights.available(), reason="no shipped airnet weights")]

FLAGGED = 92   # test/deer/0012.jpg in the app server's slice


@pytest.fixture(scope="module")
def page(app_server):
    if app_server.data_kind == "synthetic":
        pytest.skip("the app server runs on synthetic data: no reviewed CIFAR-10 pictures")
    with browser_page(app_server.url) as page:
        yield page


def _pick(page, label: str, option: str) -> None:
    page.get_by_label(label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()
    page.wait_for_function("() => document.querySelectorAll('[role=option]').length === 0")


def _flagged_picture_opens_in_the_drilldown_with_the_reviewers_verdict(page):
    open_tab(page, "Evaluate")
    page.get_by_role("button", name="Refresh the list", exact=True).click()
    _pick_weights = page.get_by_label("Weights", exact=True)
    _pick_weights.click()
    page.get_by_role("option", name=re.compile(r"^airnet \(shipped")).click()
    page.get_by_role("button", name="Evaluate", exact=True).click()
    visible(page, re.compile(r"^airnet \(shipped weights\): test accuracy")).wait_for(timeout=180_000)
    visible(page, re.compile("With the reviewers' labels")).wait_for()

    # Mislabelled?: every shipped model on the slice's one label error.
    page.locator("#label-review-go").click()
    first = page.locator("#label-review-table [data-testid=cell-0-0]")
    first.wait_for(timeout=180_000)
    assert first.inner_text().strip() == str(FLAGGED)
    assert "reviewers" in page.locator("#label-review-table [data-testid=cell-0-2]").inner_text()
    answer = page.locator("#label-review-table [data-testid=cell-0-3]").inner_text().split()[0]  # airnet's column

    # The drill-down cell (deer, airnet's answer) holds the picture, marked; a click tells the reviewers' verdict.
    _pick(page, "True class", "deer")
    _pick(page, "Predicted class", answer)
    flagged = page.locator("#cell-gallery .caption-label").filter(has_text="⚑")
    flagged.first.wait_for()
    assert re.fullmatch(rf"(\d+% )?#{FLAGGED} ⚑ label\? \d/5.*", flagged.first.inner_text())
    page.locator("#cell-gallery button").filter(has_text="⚑").first.click()
    note = page.locator("#cell-compare").get_by_text("Label in doubt")
    note.wait_for(timeout=120_000)
    assert "of 5 reviewers" in page.locator("#cell-compare").inner_text()
    assert "test/deer/0012.jpg" in page.locator("#cell-compare").inner_text()
    page.locator("#cell-compare").scroll_into_view_if_needed()
    shot(page, "evaluate_label_errors")


def _set_slider(page, elem_id: str, value: int) -> None:
    """The slider's number box set to `value`, checked to stay (as browser.fill does for fields)."""
    box = page.locator(f"#{elem_id} input[type=number]")
    for _ in range(5):
        box.fill(str(value))
        box.press("Enter")
        page.wait_for_timeout(400)
        if box.input_value() == str(value):
            return
    raise AssertionError(f"#{elem_id}: {box.input_value()!r} after setting {value}")


def _the_epsilon_slider_changes_the_answers(page):
    open_tab(page, "Adversarial")
    caption = page.locator("#adv-caption")
    visible(page, re.compile(r"PGD, 10 steps at epsilon 2/255 on")).wait_for(timeout=180_000)
    _set_slider(page, "adv-eps", 0)
    visible(page, "Epsilon 0: nothing changes.").wait_for(timeout=180_000)
    cells = page.locator("#adv-answers [data-testid=cell-0-3]")
    assert cells.inner_text().strip() == ""                      # the attacked model: not fooled at 0
    before = page.locator("#adv-answers [data-testid=cell-0-2]").inner_text()
    _set_slider(page, "adv-eps", 8)
    visible(page, re.compile(r"at epsilon 8/255 on")).wait_for(timeout=180_000)
    assert "It fooled `airnet`" in caption.inner_text() or "It fooled airnet" in caption.inner_text()
    assert page.locator("#adv-answers [data-testid=cell-0-2]").inner_text() != before
    assert page.locator("#adv-answers [data-testid=cell-0-3]").inner_text().strip() == "yes"
    shot(page, "adversarial")


def _the_finder_runs_on_a_tiny_subset_and_shows_its_plot(page):
    open_tab(page, "Train")
    show_recipe(page)   # the finder sits beside the learning rate, in the closed recipe section
    fill(page, "Batch size", "50")
    fill(page, "Validation images", "100")
    page.locator("#lr-find").get_by_text("Find a learning rate").first.click()   # the accordion
    _set_slider(page, "lr-find", 20)
    page.locator("#lr-find-go").click()
    visible(page, re.compile(r"Range test `?lrfind-\S+`? queued \(20 steps")).wait_for(timeout=60_000)
    result = visible(page, re.compile(r"Suggested learning rate|No suggestion"))
    result.wait_for(timeout=400_000)
    page.locator("#lr-find-plot img").first.wait_for()   # matplotlib, drawn as a picture
    lr = page.get_by_label("Learning rate (peak)", exact=True)
    before = lr.input_value()
    page.locator("#lr-find-use").click()
    if "Suggested" in result.inner_text():   # the form's learning rate becomes the suggestion
        for _ in range(60):
            if lr.input_value() != before:
                break
            page.wait_for_timeout(500)
        assert lr.input_value() != before
    page.locator("#lr-find").scroll_into_view_if_needed()
    shot(page, "train_lr_find")


def test_lessons_label_errors_adversarial_examples_lr_finder(page):
    """One browser test, three steps: a flagged picture in the drill-down; the epsilon slider moved;
    the range test run on the app's small training set."""
    _flagged_picture_opens_in_the_drilldown_with_the_reviewers_verdict(page)
    _the_epsilon_slider_changes_the_answers(page)
    _the_finder_runs_on_a_tiny_subset_and_shows_its_plot(page)
