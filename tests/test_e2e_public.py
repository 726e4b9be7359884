"""Public mode (a shared Space) in a real browser: two visitors on one app, and an app restart.

Two browser contexts are two visitors (each its own localStorage, so its own token). A starts a
run; B sees it as another visitor's run, without Stop, and its own Start is queued with its
position; when A's run ends, B's starts by itself; B reloads and still owns its run; Export is
not offered and Download gives a file `python -m cifar_demo predict --weights FILE` reads.
Then a local-mode app is killed mid-run (the training child keeps going) and started again: it
re-attaches to the run, with Stop for its owner. Last, the app as a ZeroGPU Space (the stand-in of
cifar_demo/zerogpu_standin.py, on the CPU): one epoch trained from the Train tab as a GPU call.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from cifar_demo import jobs
from cifar_demo.ui.common import VISITOR_KEY

from .app_server import start_app, stop_app
from .browser import SAMPLE, chromium, fill, needs_chromium, open_tab, shot, show_recipe, visible, visit
from .conftest import REPO

pytestmark = [pytest.mark.slow,
              needs_chromium]

RUN_TIMEOUT = 300_000   # ms: a 1-epoch run on 1,000 images, on a busy 2-core machine


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def visitor(browser, url):
    """A new visitor on the Train tab, once the page's load event has given it its token (kept in
    localStorage by gr.BrowserState): a Start before that is refused with "reload it"."""
    page = visit(browser, url, ready=None, accept_downloads=True)
    page.wait_for_function("key => !!localStorage.getItem(key)", arg=VISITOR_KEY)
    open_tab(page, "Train")
    return page


def fill_short_run(page, epochs: int, images: int = 500) -> None:
    show_recipe(page)
    fill(page, "Epochs", str(epochs))
    fill(page, "Batch size", "50")
    fill(page, "Validation images", "100")
    fill(page, "Train on a subset", str(images))   # of the app's 1,000: seconds an epoch


def stop_button(page):
    return page.locator("#train-stop")


def test_two_visitors_share_one_queue_and_own_their_runs(browser, tmp_path_factory, tmp_path):
    # Both browsers come from 127.0.0.1: two places per address, as for a class behind one address.
    server = start_app(tmp_path_factory.mktemp("public"), args=("--public",),
                       env={"CIFAR_DEMO_PLACES_PER_ADDRESS": "2"})
    try:
        a, b = visitor(browser, server.url), visitor(browser, server.url)
        assert visible(a, "Public mode").is_visible()
        assert a.get_by_role("button", name="Export to weights/").count() == 0

        fill_short_run(a, epochs=3, images=400)   # long enough for B to queue behind it
        a.get_by_role("button", name="Start", exact=True).click()
        visible(a, re.compile(r"Started run `?\S+`?: 3 epoch")).wait_for()
        stop_button(a).wait_for(state="visible")
        visible(a, re.compile(r"epoch \d+/3, step|finished after 3 epoch")).wait_for(timeout=RUN_TIMEOUT)
        shot(a, "train_public_own")

        # B watches A's run: no Stop for it.
        visible(b, "A run by another visitor").wait_for()
        assert not stop_button(b).is_visible()
        fill_short_run(b, epochs=1, images=200)
        b.get_by_role("button", name="Start", exact=True).click()
        visible(b, re.compile(r"Queued run `?\S+`? .*number 1 in the queue")).wait_for()
        visible(b, re.compile(r"Your run is queued: number 1 of 1")).wait_for()
        # B's button takes back its own queued start, it does not stop A's run.
        assert stop_button(b).inner_text().strip() == "Leave the queue"
        shot(b, "train_public_queued")

        # A's run ends; B's starts by itself, and a reload keeps B its owner.
        visible(a, re.compile("finished after 3 epoch")).wait_for(timeout=RUN_TIMEOUT)
        b.reload()
        open_tab(b, "Train")
        done = visible(b, re.compile("finished after 1 epoch"))
        done.wait_for(timeout=RUN_TIMEOUT)
        assert not visible(b, "A run by another visitor").is_visible()

        # Download B's weights and predict with them on the command line.
        b.get_by_role("button", name="Download weights").click()
        link = b.locator("#train-download-file a").filter(visible=True).first
        link.wait_for(timeout=RUN_TIMEOUT)
        with b.expect_download() as info:
            link.click()
        zip_path = tmp_path / "weights.zip"
        info.value.save_as(zip_path)
        out = subprocess.run([sys.executable, "-m", "cifar_demo", "predict", "--weights", str(zip_path),
                              str(SAMPLE)], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        assert re.search(r"\b(airplane|automobile|bird|cat|deer|dog|frog|horse|ship|truck) \d+\.\d%", out.stdout)
        # Nothing a visitor did wrote the shared weights folder or the local runs.
        assert len(list((server.runs_dir / "visitors").glob("*/2*-*/config.json"))) == 2   # A's and B's
        assert not list(server.runs_dir.glob("2*-*"))   # no run outside the visitors' folders
    finally:
        stop_app(server)


def test_a_restarted_app_reattaches_to_the_run_it_left_training(browser, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("restart")
    server = start_app(tmp)
    child_pid = None
    try:
        page = visitor(browser, server.url)
        fill_short_run(page, epochs=200)
        page.get_by_role("button", name="Start", exact=True).click()
        visible(page, re.compile(r"epoch \d+/200, step")).wait_for(timeout=RUN_TIMEOUT)
        [record] = list((server.runs_dir / ".jobs").glob("2*.json"))
        child_pid = jobs.Job.from_dict(json.loads(record.read_text())).pid
        # Kill the app alone (not its process group): the training child keeps going.
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(10)
        assert jobs.pid_alive(child_pid)
        page.context.close()

        again = start_app(tmp)
        try:
            page = visitor(browser, again.url)
            visible(page, re.compile(r"epoch \d+/200, step")).wait_for(timeout=RUN_TIMEOUT)
            stop_button(page).wait_for(state="visible")
            stop_button(page).click()
            visible(page, re.compile(r"stopped at step \d+")).wait_for(timeout=RUN_TIMEOUT)
            page.locator("#train-resume").wait_for(state="visible")
            assert not jobs.pid_alive(child_pid)
        finally:
            stop_app(again)
    finally:
        stop_app(server)
        if child_pid is not None and jobs.pid_alive(child_pid):
            os.kill(child_pid, signal.SIGKILL)


def test_a_zerogpu_space_trains_one_epoch_as_a_gpu_call(browser, tmp_path_factory):
    # ZeroGPU as the Space sees it (SPACES_ZERO_GPU), played by the stand-in: the run is a GPU call
    # made from the app's process (jobs.gpu_runner), not a training child.
    server = start_app(tmp_path_factory.mktemp("zerogpu"), args=("--public",),
                       env={"SPACES_ZERO_GPU": "true", "CIFAR_DEMO_ZEROGPU_STANDIN": "1"})
    try:
        page = visitor(browser, server.url)
        fill_short_run(page, epochs=1, images=200)
        page.get_by_role("button", name="Start", exact=True).click()
        visible(page, re.compile(r"Started run `?\S+`?: 1 epoch.* It asks ZeroGPU for \d+ s of GPU")).wait_for()
        visible(page, re.compile("finished after 1 epoch")).wait_for(timeout=RUN_TIMEOUT)
        shot(page, "train_zerogpu")
        [run_dir] = list((server.runs_dir / "visitors").glob("*/2*-*"))
        assert (run_dir / "best.safetensors").is_file() and (run_dir / "summary.json").is_file()
        # Not a training child: the job's process is the app's own (a GpuCall reports the app's pid).
        [record] = list((server.runs_dir / ".jobs").glob("2*.json"))
        assert jobs.Job.from_dict(json.loads(record.read_text())).pid == server.proc.pid
    finally:
        stop_app(server)
