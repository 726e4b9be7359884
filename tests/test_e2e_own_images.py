"""Your own images in a real browser: a zip of three new classes uploaded in the Train tab, a
short fine-tuning run on it, then its class names in Evaluate, Predict and the Augmentations tab.

Runs on the session's one app (tests/app_server.py, local mode) after the other browser tests
of that app; screenshots go to docs/screenshots/train_own_images.png and evaluate_own_images.png.
"""

from __future__ import annotations

import re

import pytest

from cifar_demo import weights

from .browser import browser_page, fill, needs_chromium, open_section, open_tab, shot, show_recipe, visible
from .own_images import make_own_folder, picture, zip_folder

pytest_plugins = ["tests.app_server"]

CLASSES3 = ("coin", "leaf", "shell")
pytestmark = [pytest.mark.slow,
              needs_chromium,
              pytest.mark.skipif("airnet" not in weights.available(), reason="fine-tuning starts from weights/airnet")]


@pytest.fixture(scope="module")
def page(app_server):
    with browser_page(app_server.url) as page:
        yield page


def pick(page, label: str, option, tries: int = 5) -> None:
    """Choose `option` in the dropdown `label` of the Evaluate tab, refreshing its list until the
    new run is in it (an open dropdown keeps the choices it opened with)."""
    for _ in range(tries):
        page.get_by_role("button", name="Refresh the list", exact=True).click()
        page.wait_for_timeout(1000)
        page.get_by_label(label, exact=True).click()
        found = page.get_by_role("option", name=option)
        try:
            found.wait_for(timeout=5000)
        except Exception:   # not listed yet: close the list and refresh it again
            page.keyboard.press("Escape")
            continue
        found.click()
        return
    raise AssertionError(f"{option.pattern} never appeared in {label}")


def test_upload_a_zip_fine_tune_and_see_the_new_classes_everywhere(page, tmp_path):
    folder = make_own_folder(tmp_path / "trinkets", per_class=20, test_per_class=5, broken=1)
    archive = zip_folder(folder, tmp_path / "trinkets.zip", wrap=True)

    open_tab(page, "Train")
    open_section(page, "Dataset", inside="Dataset")
    page.locator("#train-upload input[type=file]").set_input_files(str(archive))
    info = page.locator("#train-dataset-info")
    info.get_by_text("3 classes").wait_for(timeout=120_000)
    text = info.inner_text()
    assert "coin" in text and "60 training and 15 test images" in text and "zz_broken_0.jpg" in text
    show_recipe(page)
    preset = page.get_by_label("Preset", exact=True)
    assert preset.input_value() == "finetune"          # a few dozen pictures: start from CIFAR-10
    # The upload's answer fills the form with finetune's recipe (5 epochs, batch 32): wait for it to
    # land before overwriting it, and check the overwrite held (a late update once restored the 5).
    expect = pytest.importorskip("playwright.sync_api").expect
    for label, preset_value, value in (("Epochs", "5", "2"), ("Batch size", "32", "8")):
        expect(page.get_by_label(label, exact=True)).to_have_value(preset_value)
        fill(page, label, value)   # checks the typed value holds
    page.get_by_role("button", name="Start", exact=True).click()
    started = visible(page, re.compile(r"Started run `?\S+`?: 2 epoch\(s\) of `?airnet`? on trinkets \(own images\)"))
    try:
        started.wait_for()
    except Exception:
        raise AssertionError(page.inner_text("body")[:3000]) from None
    # The session's app holds other airnet runs (the other browser tests'): pick this one by its id.
    run_id = re.search(r"Started run `?(\S+?)`?:", started.inner_text()).group(1)
    done = visible(page, re.compile("finished after 2 epoch"))
    done.wait_for(timeout=300_000)
    shot(page, "train_own_images")

    open_tab(page, "Evaluate")
    pick(page, "Weights", re.compile(r"^your run: airnet · .* run " + re.escape(run_id)))
    page.get_by_role("button", name="Evaluate", exact=True).click()
    visible(page, re.compile(r"15 test images of trinkets \(own images\)")).wait_for(timeout=180_000)
    table = page.get_by_label("Precision, recall and F1 per class").filter(visible=True).first
    assert all(c in table.inner_text() for c in CLASSES3) and "airplane" not in table.inner_text()
    heat = page.locator("#eval-heatmap").inner_text()
    assert all(c in heat for c in CLASSES3) and "truck" not in heat
    shot(page, "evaluate_own_images")

    open_tab(page, "Predict")
    page.get_by_label("Also ask a model you trained (Train tab)", exact=True).click()
    own_run = re.compile(r"^airnet · .* run " + re.escape(run_id) + r" \(coin, leaf, shell\)")
    page.get_by_role("option", name=own_run).click()
    photo = tmp_path / "a_leaf.png"
    picture(0, 77).save(photo)   # class 0 of tests/own_images.py: the red "leaf" pictures
    page.locator("#predict-input input[type=file]").set_input_files(str(photo))
    answer = page.locator("#predict-run-label")
    answer.get_by_text(re.compile("coin|leaf|shell")).first.wait_for(timeout=60_000)
    assert "trained on its own classes: coin, leaf, shell" in page.locator("#predict-run-info").inner_text()

    open_tab(page, "Augmentations")
    page.get_by_label("Pictures from", exact=True).click()
    page.get_by_role("option", name="trinkets (your images)").click()
    page.get_by_text("Your images (a few per class): click one").first.wait_for()
