"""One burst of uploads against an idle public app, timed message by message.

    python bench/burst.py [--visitors 30] [--spy FILE]

First prints what a new session costs the server's event loop (Gradio's SessionState rendering
every block's config, against ui/gradio_fixes.py's lazy one, ten of each in this process). Then
starts `python app.py --public` on 127.0.0.1 (its own temporary folders, nothing training), sends
one untimed upload (the models load), then --visitors visitors at once, each sending a different
picture as the page does over plain HTTP: the upload, /predict and /familiarity joined on one
session, the answers read from its event stream. Prints, over the visitors, when each step was
done (seconds from the burst's start): the upload, both joins, each event's process_starts and
process_completed messages; and the cores the server used. --spy FILE records the server with
py-spy (raw format) for the burst. bench/load.py is the same burst while a run trains.
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

from app_proc import cpu_sample, start_app, stop_app, wait_until_up  # noqa: E402
from load import CALL_TIMEOUT, page_upload, upload_picture  # noqa: E402

STEPS = ("uploaded", "joined", "predict_start", "familiarity_start", "predict_done", "familiarity_done")


def timed_upload(url: str, config: dict, path: Path) -> dict[str, float]:
    """load.page_upload, with the time (s from its start) each step was done."""
    times: dict[str, float] = {}
    page_upload(url, config, path, times)
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--visitors", type=int, default=30)
    p.add_argument("--spy", type=Path, help="py-spy record the server during the burst into this file")
    args = p.parse_args()
    import matplotlib
    import numpy as np
    from PIL import Image

    session_cost()
    tmp = Path(tempfile.mkdtemp(prefix="cifar-demo-burst-"))
    app, url = start_app(tmp, "")
    try:
        wait_until_up(url, app, 300)
        with urllib.request.urlopen(url + "config", timeout=CALL_TIMEOUT) as r:
            config = json.load(r)
        photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        image = np.asarray(Image.open(photo).convert("RGB"))
        paths = [upload_picture(image, k, tmp) for k in range(args.visitors + 1)]
        print(f"warm-up upload answered in {timed_upload(url, config, paths[-1])['predict_done']:.2f} s (not counted)")
        spy = None
        if args.spy:
            spy = subprocess.Popen(["py-spy", "record", "-p", str(app.pid), "-d", "10", "-r", "100", "-f", "raw",
                                    "-o", str(args.spy), "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
        out: list[dict] = []
        c0, t0 = cpu_sample(app.pid), time.monotonic()
        threads = [threading.Thread(target=lambda k=k: out.append(timed_upload(url, config, paths[k])))
                   for k in range(args.visitors)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(CALL_TIMEOUT)
        c1, seconds = cpu_sample(app.pid), time.monotonic() - t0
        print(f"{len(out)} of {args.visitors} uploads answered in {seconds:.2f} s; server "
              f"{(c1['server'] - c0['server']) / seconds:.2f} cores")
        for step in STEPS:
            v = sorted(o[step] for o in out if step in o)
            print(f"  {step:18s} median {statistics.median(v):.2f} s, p95 {v[round(0.95 * (len(v) - 1))]:.2f} s, "
                  f"max {v[-1]:.2f} s")
        if spy is not None:
            spy.wait(60)
    finally:
        stop_app(app)


if __name__ == "__main__":
    main()
