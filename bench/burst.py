"""Bursts of uploads against a public app, timed message by message.

    python bench/burst.py [--visitors 30] [--repeat N] [--train] [--protocol page|api] [--spy FILE]

First prints what a new session costs the server's event loop (Gradio's SessionState rendering
every block's config, against ui/gradio_fixes.py's lazy one, ten of each in this process). Then
starts `python app.py --public` on 127.0.0.1 (its own temporary folders), sends one untimed
upload (the models load), then --visitors visitors at once, each sending a different picture as
the page does over plain HTTP (bench/load.py's page_upload: the upload, the page's event, its
answer read from the session's event stream; --protocol api: /predict and /familiarity). Prints,
over the visitors, when each step was done (seconds from the burst's start): the upload, the
joins, each event's process_starts and process_completed messages; the cores the server used,
its page faults and kernel time. --repeat N sends N bursts 5 s apart, each with new pictures.
--train first presses Start on the Train tab in headless Chromium (the `demo` preset, fp32, as
bench/load.py does) and sends the bursts once the run steps. --spy FILE records the server
with py-spy (raw format) for the first burst.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app_proc import (  # noqa: E402 (bench/ is on sys.path when run as a script)
    ARGS,
    CHROMIUM,
    Tail,
    cpu_sample,
    faults,
    p95,
    start_app,
    stepping_run,
    stop_app,
    wait_until_up,
)
from load import CALL_TIMEOUT, PROTOCOLS, page_upload, upload_picture  # noqa: E402

PAUSE_S = 5   # between two bursts (--repeat)
STEPS = ("uploaded", "joined", "answers_start", "predict_start", "familiarity_start", "answers_done", "predict_done",
         "familiarity_done")


def timed_upload(url: str, config: dict, path: Path, protocol: str = "page") -> dict[str, float]:
    """load.page_upload, with the time (s from its start) each step was done."""
    times: dict[str, float] = {}
    page_upload(url, config, path, times, protocol)
    return times


def session_cost(repeats: int = 10) -> None:
    """Milliseconds per new session: Gradio's SessionState and ours (gradio_fixes, fix 4)."""
    import timeit

    from gradio.state_holder import SessionState

    from cifar_demo import jobs, ui
    from cifar_demo.ui import gradio_fixes

    app = ui.build_app(ui.AppContext.of(jobs.JobManager(tempfile.mkdtemp(), dispatch=False)))

    def gradios() -> None:
        gradio_fixes._session_init(SessionState.__new__(SessionState), app)

    theirs = timeit.timeit(gradios, number=repeats) / repeats * 1000
    ours = timeit.timeit(lambda: SessionState(app), number=repeats) / repeats * 1000
    print(f"a new session ({len(app.blocks)} blocks): Gradio's {theirs:.1f} ms, ours {ours:.2f} ms")


def burst(url: str, config: dict, paths: list[Path], app_pid: int, protocol: str = "page") -> float:
    """One visitor per picture of `paths`, all at once; prints when each step was done; returns
    the seconds until the last answer."""
    out: list[dict] = []
    c0, t0, f0 = cpu_sample(app_pid), time.monotonic(), faults(app_pid)
    threads = [threading.Thread(target=lambda p=p: out.append(timed_upload(url, config, p, protocol))) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join(CALL_TIMEOUT)
    c1, seconds, f1 = cpu_sample(app_pid), time.monotonic() - t0, faults(app_pid)
    print(f"{len(out)} of {len(paths)} uploads answered in {seconds:.2f} s; server "
          f"{(c1['server'] - c0['server']) / seconds:.2f} cores ({f1[1] - f0[1]:.2f} s of it in the kernel, "
          f"{f1[0] - f0[0]:,} page faults), training {(c1['training'] - c0['training']) / seconds:.2f} cores")
    for step in STEPS:
        v = sorted(o[step] for o in out if step in o)
        if not v:   # the other protocol's events
            continue
        print(f"  {step:18s} median {statistics.median(v):.2f} s, p95 {p95(v):.2f} s, "
              f"max {v[-1]:.2f} s")
    return max(max(o.values()) for o in out) if len(out) == len(paths) else float("inf")


def started_run(url: str, tmp: Path, app) -> Tail:
    """Start pressed on the Train tab (the `demo` preset, fp32); returns once the run has stepped twice."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        tail = stepping_run(browser, url, tmp / "runs", app, None, "fp32")
        browser.close()
    print(f"run {tail.path.parent.name} is stepping")
    return tail


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--visitors", type=int, default=30)
    p.add_argument("--spy", type=Path, help="py-spy record the server during the burst into this file")
    p.add_argument("--repeat", type=int, default=1, help=f"bursts, {PAUSE_S:.0f} s apart, each with new pictures")
    p.add_argument("--protocol", choices=PROTOCOLS, default="page", help="what each upload sends (bench/load.py)")
    p.add_argument("--train", action="store_true", help="a `demo` run (fp32) trains in the app during the burst")
    p.add_argument("--data", default=str(REPO.parent / "shared/data/cifar10-jpeg"), help="the run's data (--train)")
    args = p.parse_args()
    import matplotlib
    import numpy as np
    from PIL import Image

    session_cost()
    tmp = Path(tempfile.mkdtemp(prefix="cifar-demo-burst-"))
    app, url = start_app(tmp, args.data if args.train else "")
    tail = None
    try:
        wait_until_up(url, app, 300)
        if args.train:
            tail = started_run(url, tmp, app)
        with urllib.request.urlopen(url + "config", timeout=CALL_TIMEOUT) as r:
            config = json.load(r)
        photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        image = np.asarray(Image.open(photo).convert("RGB"))
        paths = [upload_picture(image, k, tmp) for k in range(args.visitors * args.repeat + 1)]
        warm = timed_upload(url, config, paths[-1], args.protocol)
        print(f"warm-up upload answered in {max(warm.values()):.2f} s (not counted)")
        spy = None
        if args.spy:
            spy = subprocess.Popen(["py-spy", "record", "-p", str(app.pid), "-d", "10", "-r", "100", "-f", "raw",
                                    "-o", str(args.spy), "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
        lasts = []
        for r in range(args.repeat):
            if r:
                time.sleep(PAUSE_S)
            lasts.append(burst(url, config, paths[r * args.visitors:(r + 1) * args.visitors], app.pid, args.protocol))
        if args.repeat > 1:
            print(f"last answers of the {args.repeat} bursts: {' '.join(f'{s:.2f}' for s in lasts)} s, "
                  f"median {statistics.median(lasts):.2f} s")
        if spy is not None:
            spy.wait(60)
    finally:
        if tail is not None:
            tail.stop.set()
        stop_app(app)


if __name__ == "__main__":
    main()
