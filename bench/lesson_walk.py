"""docs/lesson.md followed end to end, as a teacher does it, in headless Chromium at 1280x720.

    python bench/lesson_walk.py [--data ../shared/data/cifar10-jpeg] [--shots DIR] [--no-study]

Starts `python app.py` on DATA (local mode, its own runs folder in a temporary directory, the
usual decode cache) and walks the plan's steps in order, one page, one visitor:

  1 Predict      the bundled cat, then a photo of none of the ten classes (matplotlib's grace_hopper.jpg)
  2 Train        "First training (short)", Start, the live guesses after each epoch, the test accuracy
  3 Evaluate     that run; the cat/dog cell of the confusion matrix clicked
  4 Train        "Overfitting", Start, the last epoch's training and validation accuracy
  5 Compare      "Fill in: overfitting", Start study, the verdict (--no-study skips it: two more runs)
  6 Augmentations  new random draws
  7 Robustness   the first training beside the shipped models, Gaussian noise, the quick slice
  8 Exercise 4   your own images, two classes: 20 pictures each (renamed CIFAR-10 pictures of the JPEG
                 export, as bench/own_images.py builds them), "First training (short)" picked again so
                 that the upload chooses the finetune preset, Start, Predict's "your run"

Prints, per step, the seconds it took from the click to what the class should see, and what the
page showed. Screenshots of each step go to --shots (default: a temporary folder, printed).
Bounded: every wait has a limit; the app (with its training child) and the browser end on exit,
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app_proc import ARGS, CHROMIUM, loadavg, start_app, stop_app, wait_until_up  # noqa: E402
from own_images import build_dataset  # noqa: E402

VIEW = {"width": 1280, "height": 720}
LONG = 3600_000   # ms: a bound for a training on a slow machine, not a figure


class Walk:
    def __init__(self, page, shots: Path):
        self.page, self.shots, self.t0 = page, shots, time.monotonic()

    def step(self, name: str, started: float, seen: str) -> None:
        print(f"{name}: {time.monotonic() - started:.0f} s. {seen}", flush=True)

    def shot(self, name: str) -> None:
        self.page.wait_for_timeout(500)
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=False)

    def tab(self, name: str) -> None:
        self.page.get_by_role("tab", name=name, exact=True).click()

    def text(self, pattern) -> object:
        return self.page.get_by_text(pattern).filter(visible=True).first

    def section(self, title: str) -> None:
        self.page.get_by_role("button", name=re.compile("^" + re.escape(title))).filter(visible=True).first.click()

    def started_ids(self) -> set[str]:
        """The run ids of the "Started run ..." messages on the page now."""
        texts = self.page.get_by_text(re.compile(r"Started run `?[\w.-]+`?")).all_inner_texts()
        return {m.group(1) for t in texts if (m := re.search(r"Started run `?([\w.-]+?)`?:", t))}

    def start(self) -> str:
        """Press Start: the id of the run it started (not one an earlier Start left on the page)."""
        before = self.started_ids()
        self.page.locator("#train-start").click()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            new = self.started_ids() - before
            if new:
                return new.pop()
            self.page.wait_for_timeout(250)
        raise RuntimeError("Start started no run")

    def start_pick(self, label: str) -> str:
        """Pick `label` among the Train tab's choices, press Start: the run's id."""
        self.page.locator("#train-pick").get_by_label(label, exact=True).check()
        return self.start()

    def pick_option(self, label: str, pattern, refresh: bool = False) -> None:
        page = self.page
        if refresh:
            page.get_by_role("button", name="Refresh the list", exact=True).filter(visible=True).first.click()
            page.wait_for_timeout(1000)
        page.get_by_label(label, exact=True).filter(visible=True).first.click()
        page.get_by_role("option", name=pattern).first.click()


def walk(page, args, tmp: Path) -> None:
    w = Walk(page, args.shots)
    progress = page.locator("#train-progress")

    # 1 Predict
    t = time.monotonic()
    page.locator("#predict-input input[type=file]").set_input_files(str(REPO / "cifar_demo/assets/sample/cat/0000.png"))
    caption = w.text(re.compile(r"\d+ of \d+ models put"))
    caption.wait_for()
    w.step("1 Predict, the cat (the first picture: the ten models load)", t, caption.inner_text().split(".")[0])
    w.shot("1_predict_cat")
    t = time.monotonic()
    photo = Path(__import__("matplotlib").get_data_path()) / "sample_data" / "grace_hopper.jpg"
    page.locator("#predict-input input[type=file]").set_input_files(str(photo))
    page.wait_for_function("() => !document.body.innerText.includes('Reading the picture')")
    caption.wait_for()
    notice = page.locator("#familiarity-notice")
    with_notice = False
    try:
        notice.get_by_text("None of the ten classes").wait_for(timeout=30_000)
        with_notice = True
    except Exception:
        pass
    w.step("1 Predict, a photo of a person", t, caption.inner_text().split(".")[0] +
           ("; the unfamiliar-picture notice shown" if with_notice else "; no unfamiliar-picture notice"))
    w.shot("1_predict_person")

    # 2 Train: the first training
    w.tab("Train")
    t = time.monotonic()
    first = w.start_pick("First training (short)")
    strip = page.locator("#train-live-strip")
    for epoch in range(1, 5):
        strip.get_by_text(re.compile(rf"after epoch {epoch} of 4")).wait_for(timeout=LONG)
        right = re.search(r"(\d+) of (\d+)\s*right", strip.inner_text())
        w.step(f"2 First training, epoch {epoch}", t, f"live guesses {right.group(1)} of {right.group(2)} right"
               if right else strip.inner_text()[:120])
        if epoch == 1:
            w.shot("2_train_epoch1")
    progress.get_by_text(re.compile(rf"{re.escape(first)}.*finished after 4 epoch")).wait_for(timeout=LONG)
    result = re.search(r"test accuracy ([\d.]+%)", progress.inner_text())
    w.step("2 First training, finished", t, f"run {first}; test accuracy {result.group(1) if result else '?'}")
    w.shot("2_train_finished")

    # 3 Evaluate
    w.tab("Evaluate")
    t = time.monotonic()
    w.pick_option("Weights", re.compile(r"run " + re.escape(first)), refresh=True)
    page.get_by_role("button", name="Evaluate", exact=True).click()
    cell = page.locator("#eval-heatmap [data-testid=cell-3-6]")   # row cat (3), column dog (5; column 0 names rows)
    cell.wait_for(timeout=LONG)
    matrix = [[int(page.locator(f"#eval-heatmap [data-testid=cell-{i}-{j + 1}]").inner_text()) for j in range(10)]
              for i in range(10)]
    worst = max(((matrix[i][j], i, j) for i in range(10) for j in range(10) if i != j))
    names = __import__("cifar_demo.common", fromlist=["CLASSES"]).CLASSES
    w.step("3 Evaluate", t, f"cats taken for dogs: {matrix[3][5]}, dogs for cats: {matrix[5][3]}; the largest "
           f"mistake: {names[worst[1]]} taken for {names[worst[2]]} ({worst[0]} pictures)")
    t = time.monotonic()
    cell.click()
    page.wait_for_function("() => document.querySelectorAll('#cell-gallery img').length > 0", timeout=120_000)
    w.step("3 Evaluate, the cat/dog cell clicked", t,
           f"{page.locator('#cell-gallery img').count()} pictures shown")
    w.shot("3_evaluate_cell")

    # 4 Train: overfitting
    w.tab("Train")
    t = time.monotonic()
    overfit = w.start_pick("Overfitting")
    progress.get_by_text(re.compile(rf"{re.escape(overfit)}.*finished after 30 epoch")).wait_for(timeout=LONG)
    log = page.get_by_label("Log: one line per epoch", exact=True).input_value()
    last = [line for line in log.splitlines() if line.lstrip().startswith("epoch")][-1:]
    w.step("4 Overfitting, finished", t, f"run {overfit}; the log's last epoch: {last[0] if last else '?'}")
    w.shot("4_overfit")

    # 5 Compare recipes: the overfitting pair
    if not args.no_study:
        w.tab("Compare recipes")
        page.locator("#compare-overfit").click()
        page.wait_for_timeout(1000)
        t = time.monotonic()
        page.get_by_role("button", name="Start study", exact=True).click()
        w.text(re.compile(r"finished \(2 of 2 runs done\)")).wait_for(timeout=2 * LONG)
        verdict = w.text(re.compile(r"B - A = [+-]\d+\.\d+ points"))
        verdict.wait_for()
        w.step("5 Compare recipes, the overfitting pair", t, verdict.inner_text().replace("\n", " ")[:300])
        w.shot("5_compare")

    # 6 Augmentations
    w.tab("Augmentations")
    t = time.monotonic()
    page.get_by_role("button", name="New random draws", exact=True).filter(visible=True).first.click()
    page.wait_for_timeout(2000)
    w.step("6 Augmentations, new random draws", t, "the draws redrawn")
    w.shot("6_augmentations")

    # 7 Robustness, the first training beside the shipped models
    w.tab("Robustness")
    t = time.monotonic()
    w.pick_option("Also test a model you trained (Train tab)", re.compile(r"run " + re.escape(first)))
    page.locator("#robustness-table [data-testid='cell-0-0']").get_by_text("your run").wait_for(timeout=120_000)
    row = " | ".join(page.locator(f"#robustness-table [data-testid='cell-0-{j}']").inner_text().strip()
                     for j in range(4))
    w.step("7 Robustness, one picture (Gaussian noise, severity 3)", t, f"your run's row: {row}")
    page.get_by_label("100 (quick, about ±4 points)", exact=True).check()
    t = time.monotonic()
    page.get_by_role("button", name="Compute for this corruption", exact=True).click()
    status = w.text(re.compile(r"All \d+ models \(your run among them\)"))
    status.wait_for(timeout=LONG)
    w.step("7 Robustness, the curves on the quick slice", t, status.inner_text().replace("\n", " ")[:200])
    w.shot("7_robustness")

    # 8 Exercise 4: your own images, two classes
    archive = build_dataset(Path(args.data), ["automobile", "horse"], ["car", "pony"], 20, tmp / "own")
    w.tab("Train")
    t = time.monotonic()
    page.locator("#train-pick").get_by_label("First training (short)", exact=True).check()   # airnet: finetune
    w.section("Dataset")
    page.locator("#train-upload input[type=file]").set_input_files(str(archive))
    info = page.locator("#train-dataset-info")
    info.get_by_text("2 classes").wait_for(timeout=600_000)
    w.step("8 Own images, the zip read", t, info.inner_text().replace("\n", " ")[:200])
    t = time.monotonic()
    own = w.start()
    page.locator("#train-progress").get_by_text(re.compile(rf"{re.escape(own)}.*finished after \d+ epoch")) \
        .wait_for(timeout=LONG)
    result = re.search(r"test accuracy ([\d.]+%)", progress.inner_text())
    w.step("8 Own images, finetune finished", t, f"run {own}; test accuracy {result.group(1) if result else '?'}")
    w.shot("8_own_train")
    w.tab("Predict")
    t = time.monotonic()
    w.pick_option("Also ask a model you trained (Train tab)", re.compile(r"run " + re.escape(own)))
    pony = sorted((Path(args.data) / "test" / "horse").iterdir())[-1]   # a test picture
    page.locator("#predict-input input[type=file]").set_input_files(str(pony))
    answer = page.locator("#predict-run-label")
    answer.get_by_text(re.compile("car|pony")).first.wait_for(timeout=120_000)
    w.step("8 Own images, Predict asks your run about a horse test picture", t,
           answer.inner_text().replace("\n", " ")[:120])
    w.shot("8_own_predict")
    print(f"walk done in {time.monotonic() - w.t0:.0f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("CIFAR_DEMO_DATA", str(REPO.parent / "shared/data/cifar10-jpeg")))
    p.add_argument("--shots", type=Path, help="screenshots folder (default: a temporary one)")
    p.add_argument("--no-study", action="store_true", help="leave out step 5's study (two 30-epoch runs)")
    args = p.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    from playwright.sync_api import sync_playwright

    from cifar_demo import hardware

    tmp = Path(tempfile.mkdtemp(prefix="cifar-demo-walk-"))
    args.shots = args.shots or tmp / "shots"
    args.shots.mkdir(parents=True, exist_ok=True)
    hw = hardware.hardware_info()
    print(f"machine: {hw['cpu']}, {hw['cores']} cores, gpu {hw['gpu']}; {hardware.matmul_peaks_line(1024)}; "
          f"load average {loadavg()}; data {args.data}; screenshots in {args.shots}")
    signal.signal(signal.SIGTERM, signal.default_int_handler)   # a SIGTERM cleans up as Ctrl-C does
    t = time.monotonic()
    app, url = start_app(tmp, args.data, public=False, fresh_cache=False)
    try:
        wait_until_up(url, app, 600)
        print(f"app start: {time.monotonic() - t:.0f} s")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_context(viewport=VIEW).new_page()
            page.set_default_timeout(120_000)
            page.goto(url)
            page.locator("#predict-input").wait_for()
            try:
                walk(page, args, tmp)
            except Exception:
                page.screenshot(path=str(args.shots / "failed.png"))
                print(page.inner_text("body")[-3000:])
                raise
            browser.close()
    finally:
        stop_app(app)
        print(f"load average at the end: {loadavg()}; the app's log: {tmp / 'app.log'}")


if __name__ == "__main__":
    main()
