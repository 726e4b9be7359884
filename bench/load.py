"""Many visitors at once: Predict under load and the cost of open Train tabs, on the real app.

    python bench/load.py [--visitors 30] [--tabs 20] [--tab-mode client|browser] [--seconds 60] [--calls 600]
                         [--skip-tabs] [--protocol page|api]

Starts `python app.py --public` on 127.0.0.1 in a subprocess with its own temporary runs and
cache folders, and presses Start on the Train tab in headless Chromium as a visitor does (the
`demo` preset the tab offers first). While that run trains, four phases of --seconds each:

  quiet     nobody on the page: the training run's images/s alone
  tabs      --tabs open Train tabs (one visitor each), ticking (every 2 s, or once a step of the run): their HTTP
            traffic without browsers (bench/load_tabs.py; a visitor's browser runs on the
            visitor's machine, not the server's), or real Chromium contexts (--tab-mode browser)
  quiet     nobody again (the two quiet phases bracket the tabs against drift)
  visitors  --visitors visitors uploading at once as the page does, over plain HTTP (the upload,
            then the page's event that brings every answer, joined and read from the session's
            event stream as the page's queue protocol does; --protocol api: /predict and
            /familiarity of the same picture joined together, as an API client and the page before
            2026-12-07 did), in a loop (at most --calls uploads in all),
            each upload a different picture (the photo with a coloured patch: no cache can answer
            it before a pass has). Answered / failed, median and p95 of the time until every
            answer is in, and the whole zoo's throughput: images/s, and GFLOP/s (2 x the
            shipped models' MACs per image) as a share of the fp32 matmul peak measured first
--skip-tabs leaves out the tabs phase and the second quiet phase (a shorter run).

Images/s: from the run's metrics.jsonl step events (an evaluation between two is left out).
Cores used: /proc/<pid>/stat of the app's server, its training child, the browsers and this
script, and /proc/stat. The clients (and browsers) share the server's cores, so the slow-downs
are upper bounds. Every wait is bounded; the app, its child and the browsers end on exit or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app_proc import (  # noqa: E402 (bench/ is on sys.path when run as a script)
    ARGS,
    CHROMIUM,
    START_TIMEOUT,
    Tail,
    cpu_sample,
    loadavg,
    p95,
    start_app,
    stepping_run,
    stop_app,
    wait_until_up,
)

TICK_URL = "/queue/join"             # every Gradio event a page sends, ticks included
PNG_URL = re.compile(r"/file=.*\.png$")  # a picture Gradio serves: on the Train tab, the curves
CALL_TIMEOUT = 60     # seconds: an upload not answered (every event) by then failed


def training_rate(events: list[tuple[float, dict]], t0: float, t1: float) -> tuple[float | None, int]:
    """(images/s, steps) between the step events seen in [t0, t1]. A step event's images_per_s x
    elapsed_s is the images trained so far in the session, so differences count the images
    between two events exactly; a pair with an epoch event (an evaluation) between is left out."""
    images = seconds = 0.0
    steps, prev = 0, None
    for t, e in events:
        if e.get("kind") == "epoch":
            prev = None
        elif e.get("kind") == "step":
            if prev is not None and t0 <= prev[0] and t <= t1:
                images += e["images_per_s"] * e["elapsed_s"] - prev[1]["images_per_s"] * prev[1]["elapsed_s"]
                seconds += e["elapsed_s"] - prev[1]["elapsed_s"]
                steps += e["step"] - prev[1]["step"]
            prev = (t, e)
    return (images / seconds if seconds > 0 else None), steps


def tabs_phase(browser, url: str, args, run) -> dict:
    """--tabs contexts (visitors) on the Train tab, ticking for a phase; their events and curve PNGs."""
    seen = {"events": 0, "pngs": 0, "distinct": set()}

    def on_request(req) -> None:
        if TICK_URL in req.url:
            seen["events"] += 1
        elif PNG_URL.search(req.url):
            seen["pngs"] += 1
            seen["distinct"].add(req.url)

    t = time.monotonic()
    contexts = [browser.new_context(viewport={"width": 1200, "height": 900}) for _ in range(args.tabs)]
    pages = [ctx.new_page() for ctx in contexts]
    for page in pages:   # one after the other: twenty pages loading at once starve the 2 cores
        page.set_default_timeout(300_000)
        page.goto(url)
        page.get_by_role("tab", name="Train", exact=True).click()
        page.on("request", on_request)
    drawn = 0   # a slow server draws a new visitor's first curves late: counted, not fatal
    for page in pages:
        with contextlib.suppress(Exception):
            page.locator("#train-curves img").wait_for(timeout=max(1.0, t + 600 - time.monotonic()) * 1000)
            drawn += 1
    opened = time.monotonic() - t

    def ticking() -> dict:   # the phase starts once every tab is open (loading is not ticking)
        before = dict(seen, distinct=set(seen["distinct"]))
        pages[0].wait_for_timeout(args.seconds * 1000)   # not time.sleep: Playwright's events must flow
        return {"events": seen["events"] - before["events"], "pngs": seen["pngs"] - before["pngs"],
                "distinct": len(seen["distinct"] - before["distinct"])}

    rec = run(f"tabs x{args.tabs}", ticking)
    for ctx in contexts:
        ctx.close()
    if rec:
        print(f"  the {args.tabs} tabs opened in {opened:.0f} s, {drawn} showing the curves; in the phase they sent "
              f"{rec['events']} events ({rec['events'] / rec['seconds']:.1f}/s), fetched {rec['pngs']} curve PNGs "
              f"({rec['distinct']} distinct)")
    return rec


def client_tabs_phase(url: str, args, run) -> dict:
    """--tabs emulated tabs (bench/load_tabs.py: the pages' HTTP traffic, no browser) ticking for a phase."""
    from load_tabs import open_tabs

    t = time.monotonic()
    tabs, stop = open_tabs(url, args.tabs)
    while any(tab.ticks == 0 for tab in tabs) and time.monotonic() < t + 120:   # each has drawn once
        time.sleep(0.2)
    opened = time.monotonic() - t

    def ticking() -> dict:
        before = [(tab.ticks, tab.pngs, len(tab.errors), len(tab.latencies), len(tab.intervals)) for tab in tabs]
        time.sleep(args.seconds)
        lat = [x for tab, b in zip(tabs, before) for x in tab.latencies[b[3]:]]
        gaps = [x for tab, b in zip(tabs, before) for x in tab.intervals[b[4]:]] or [2.0]
        return {"events": sum(tab.ticks - b[0] for tab, b in zip(tabs, before)), "interval": statistics.median(gaps),
                "pngs": sum(tab.pngs - b[1] for tab, b in zip(tabs, before)),
                "errors": sum(len(tab.errors) - b[2] for tab, b in zip(tabs, before)), "tick_latencies": lat}

    rec = run(f"tabs x{args.tabs}", ticking)
    stop.set()
    for tab in tabs:
        tab.join(10)
    if rec:
        lat = sorted(rec["tick_latencies"]) or [0.0]
        print(f"  the {args.tabs} emulated tabs opened in {opened:.0f} s; in the phase they sent {rec['events']} ticks "
              f"({rec['events'] / rec['seconds']:.1f}/s; the timers, set by the ticks, at median "
              f"{rec['interval']:.1f} s), {rec['errors']} failed, "
              f"fetched {rec['pngs']} curve PNGs; tick answered in median {statistics.median(lat):.3f} s, "
              f"p95 {p95(lat):.3f} s")
        for e in sorted({e for tab in tabs for e in tab.errors})[:3]:
            print(f"    a failed tick: {e}")
    return rec


def upload_picture(photo, k: int, folder: Path) -> Path:
    """The photo with a 64x64 patch of a colour of its own in the middle: upload k's picture,
    different from every other one in the 32x32 thumbnail the models see."""
    from PIL import Image

    a = photo.copy()
    h, w = a.shape[0] // 2, a.shape[1] // 2
    a[h - 32:h + 32, w - 32:w + 32] = ((k * 37) % 256, (k * 91 + 50) % 256, (k // 7 * 53 + 100) % 256)
    path = folder / f"upload-{k}.jpg"
    Image.fromarray(a).save(path, quality=95)
    return path


PROTOCOLS = ("page", "api")


def _events(config: dict, picture: dict, protocol: str) -> list[tuple[str, dict, list]]:
    """(name, dependency, data) of the events one upload sends: the page's one event that brings
    every answer (predict_tab.page_answers: the picture, Grad-CAM off, no run of yours, and the
    page's token, none here), or an API client's /predict and /familiarity."""
    deps = {d.get("api_name"): d for d in config["dependencies"]}
    if protocol == "page":
        dep = deps["page_answers"]
        return [("answers", dep, [picture, False, ""] + [None] * (len(dep["inputs"]) - 3))]
    return [("predict", deps["predict"], [picture, False]), ("familiarity", deps["familiarity"], [picture])]


def page_upload(url: str, config: dict, path: Path, times: dict | None = None, protocol: str = "page") -> float:
    """One picture sent as the page sends it, over plain HTTP: POST /gradio_api/upload, then the
    page's event (POST /gradio_api/queue/join), its answer read from the session's event stream
    (GET /gradio_api/queue/data); with protocol "api", /predict and /familiarity joined on one
    session instead (an API client's two calls, as the page itself sent them before). Seconds
    until every answer is in; an exception for an error, a missing answer, or CALL_TIMEOUT.
    `times`, if given, gets the seconds at which each step was done (bench/burst.py): "uploaded",
    "joined", and "<event>_start" / "<event>_done" from the stream's process_starts /
    process_completed."""
    t0 = time.perf_counter()
    times = {} if times is None else times
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{path.name}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url + "gradio_api/upload", body,
                                 {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=CALL_TIMEOUT) as r:
        picture = {"path": json.load(r)[0], "meta": {"_type": "gradio.FileData"}, "orig_name": path.name}
    times["uploaded"] = time.perf_counter() - t0
    session, events = uuid.uuid4().hex[:11], {}
    for name, dep, data in _events(config, picture, protocol):
        join = {"data": data, "fn_index": dep["id"], "trigger_id": None, "session_hash": session, "event_data": None}
        req = urllib.request.Request(url + "gradio_api/queue/join", json.dumps(join).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=CALL_TIMEOUT) as r:
            events[json.load(r)["event_id"]] = name
    times["joined"] = time.perf_counter() - t0
    answers = {}
    with urllib.request.urlopen(f"{url}gradio_api/queue/data?session_hash={session}", timeout=CALL_TIMEOUT) as r:
        for line in r:
            if not line.startswith(b"data:"):
                continue
            msg = json.loads(line[5:])
            name = events.get(msg.get("event_id"))
            if name and msg.get("msg") == "process_starts":
                times[f"{name}_start"] = time.perf_counter() - t0
            elif name and msg.get("msg") == "process_completed":
                times[f"{name}_done"] = time.perf_counter() - t0
                if not msg.get("success"):
                    raise RuntimeError(f"{name}: {msg.get('output')}")
                answers[name] = (msg.get("output") or {}).get("data")
                if len(answers) == len(events):
                    break
    probs, verdict = ((answers["answers"][4], answers["answers"][5]) if protocol == "page"
                      else ((answers.get("predict") or [None])[-1], (answers.get("familiarity") or [None])[0]))
    if not probs:
        raise ValueError("answered without predictions")
    if "unfamiliar" not in (verdict or {}):
        raise ValueError("answered without a familiarity verdict")
    return time.perf_counter() - t0


def visitors_phase(url: str, photo: Path, args, downloads: Path) -> dict:
    """visitors(), then nothing until --seconds have passed since it began: the phase is as long
    as a quiet one, so the training's images/s in it compare with theirs (a burst of 30 lasts a
    few seconds, less than one training step of the `demo` preset)."""
    t0 = time.monotonic()
    out = visitors(url, photo, args, downloads)
    time.sleep(max(0.0, t0 + args.seconds - time.monotonic()))
    return out


def visitors(url: str, photo: Path, args, downloads: Path) -> dict:
    """--visitors visitors uploading in a loop until --seconds or --calls, each upload as the page
    sends it (page_upload, --protocol): latencies of
    the answered uploads, errors of the failed ones, the seconds uploads were sent for."""
    import numpy as np
    from PIL import Image

    downloads.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url + "config", timeout=CALL_TIMEOUT) as r:
        config = json.load(r)
    image = np.asarray(Image.open(photo).convert("RGB"))
    pictures = [upload_picture(image, k, downloads) for k in range(args.calls + 1)]   # made before the clock
    if args.warm:   # one visitor first, untimed: the app loads and warms its models as a Space's first visitor does
        print(f"warm-up: one upload answered in {page_upload(url, config, pictures[0], None, args.protocol):.1f} s "
              "(not counted)",
              flush=True)
    lock, out, sent = threading.Lock(), {"latencies": [], "errors": []}, [0]
    deadline = (t0 := time.monotonic()) + args.seconds

    def visitor(_) -> None:
        while time.monotonic() < deadline:
            with lock:
                if sent[0] >= args.calls:
                    return
                k = sent[0] = sent[0] + 1
            try:
                out["latencies"].append(page_upload(url, config, pictures[k], None, args.protocol))   # atomic
            except Exception as e:  # a failed upload is a figure, not the end of the bench
                out["errors"].append(f"{type(e).__name__}: {e}"[:200])

    with ThreadPoolExecutor(args.visitors) as pool:   # each loop ends by the deadline + one call's timeout
        list(pool.map(visitor, range(args.visitors)))
    out["sending"] = min(time.monotonic(), deadline) - t0
    out["burst"] = time.monotonic() - t0   # from the first upload sent to the last answer in
    return out


def zoo_at_batch(args, batch: int = 32, repeats: int = 3) -> float:
    """The whole zoo's throughput at `batch` here, before the app starts: images/s of
    analysis.serve.predict_batch (the server's pass: every shipped model, logits and features)
    on `batch` different pictures, best of `repeats` after one untimed pass."""
    import numpy as np

    from cifar_demo.analysis import serve

    images = list(np.random.default_rng(0).integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8))
    serve.predict_batch(images)
    best = min(_timed(serve.predict_batch, images) for _ in range(repeats))
    gflops = batch / best * args.zoo_flops / 1e9
    print(f"whole zoo at batch {batch}, in this process on idle cores: {batch / best:.1f} images/s, "
          f"{gflops:.0f} GFLOP/s = {gflops / args.fp32_peak:.0%} of the fp32 matmul peak (target >= 60%)")
    return batch / best


def _timed(fn, *a) -> float:
    t = time.perf_counter()
    fn(*a)
    return time.perf_counter() - t


def run_phase(name: str, body, app_pid: int, tail: Tail, phases: list[dict]) -> dict:
    """body() (one phase) between two CPU samples; the run's images/s in it; one printed line."""
    if tail.kinds("end"):
        return print(f"phase {name}: skipped, the run has ended") or {}
    c0, t0, la0 = cpu_sample(app_pid), time.monotonic(), loadavg()
    extra = body() or {}
    c1, t1 = cpu_sample(app_pid), time.monotonic()
    rate, steps = training_rate(tail.events, t0, t1)
    cores = {k: (c1[k] - c0[k]) / (t1 - t0) for k in c0}
    phases.append(rec := {"name": name, "seconds": t1 - t0, "rate": rate, "steps": steps, "cores": cores, **extra})
    print(f"phase {name:11s} {t1 - t0:4.0f} s: training {rate or 0:5.0f} img/s over {steps} step(s); cores used: "
          f"server {cores['server']:.2f}, training {cores['training']:.2f}, browsers {cores['browsers']:.2f}, "
          f"bench {cores['bench']:.2f}, whole machine {cores['machine']:.2f}; load {la0} -> {loadavg()}")
    return rec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--visitors", type=int, default=30,
                   help="concurrent visitors uploading (as the page sends them: see --protocol)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="page",
                   help="page: the page's one event per upload (every answer); api: /predict + /familiarity, "
                        "an API client's two calls (what the page sent before 2026-12-07)")
    p.add_argument("--tabs", type=int, default=20, help="open Train tabs (one visitor each)")
    p.add_argument("--tab-mode", choices=("client", "browser"), default="client",
                   help="client: the tabs' HTTP traffic without browsers (visitors' browsers run on their own "
                        "machines); browser: real Chromium contexts on these cores (an upper bound)")
    p.add_argument("--seconds", type=float, default=60, help="length of each of the four phases")
    p.add_argument("--calls", type=int, default=600, help="at most this many uploads in all")
    p.add_argument("--skip-tabs", action="store_true", help="no tabs phase and no second quiet phase")
    p.add_argument("--warm", action="store_true",
                   help="one upload before the burst, not counted (the models loaded, as on an app already in use)")
    p.add_argument("--data", default=os.environ.get("CIFAR_DEMO_DATA", str(REPO.parent / "shared/data/cifar10-jpeg")))
    p.add_argument("--photo", type=Path, help="what the visitors send (default: matplotlib's grace_hopper.jpg)")
    p.add_argument("--batch-size", type=int, help="changed in the form before Start (default: the preset's)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"),
                   help="chosen in the form before Start (default: the preset's; bf16 is slow without bf16 units)")
    args = p.parse_args()
    sys.stdout.reconfigure(line_buffering=True)   # lines show up as they happen, also in a file

    import matplotlib
    import torch
    from playwright.sync_api import sync_playwright

    from cifar_demo import hardware

    photo = args.photo or Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not photo.is_file():
        sys.exit(f"no photo at {photo}; pass --photo FILE")
    hw = hardware.hardware_info()
    args.fp32_peak = hardware.matmul_peak_gflops(1024, torch.float32, repeats=3)
    print(f"machine: {hw['cpu']}, {hw['cores']} cores, gpu {hw['gpu']}; torch {torch.__version__}; "
          f"{hardware.matmul_peaks_line(1024)}")
    from cifar_demo import weights, zoo

    shipped = [n for n in zoo.names() if n in set(weights.available())]
    args.zoo_flops = 2 * sum(zoo.get_spec(n).macs for n in shipped)   # one multiply-accumulate = 2 FLOPs
    print(f"zoo: {len(shipped)} shipped models, {args.zoo_flops / 1e9:.2f} GFLOP per image for all of them "
          f"(2 x MACs); fp32 matmul peak (1024x1024, best of 3) {args.fp32_peak:.0f} GFLOP/s")
    print(f"photo: {photo} ({photo.stat().st_size:,} bytes); data: {args.data}; load average: {loadavg()}")
    args.at_batch = zoo_at_batch(args)

    signal.signal(signal.SIGTERM, signal.default_int_handler)   # a SIGTERM cleans up as Ctrl-C does
    tmp = Path(tempfile.mkdtemp(prefix="cifar-demo-load-"))
    app, url = start_app(tmp, args.data)
    tail, phases = None, []
    try:
        t = time.monotonic()
        wait_until_up(url, app, START_TIMEOUT)
        print(f"app (public mode) up at {url} in {time.monotonic() - t:.0f} s, pid {app.pid}")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            tail = stepping_run(browser, url, tmp / "runs", app, args.batch_size, args.precision)
            metrics = tail.path
            cfg = json.loads((metrics.parent / "config.json").read_text())
            print(f"training run {metrics.parent.name} ({cfg['preset']} preset: {cfg['model']}, batch "
                  f"{cfg['batch_size']}, {cfg['epochs']} epochs, precision {cfg['precision']}) is stepping, "
                  f"{time.monotonic() - t:.0f} s after the app was started")

            run = lambda name, body: run_phase(name, body, app.pid, tail, phases)  # noqa: E731
            run("quiet", lambda: time.sleep(args.seconds))
            tabs = {}
            if not args.skip_tabs:
                tabs = (client_tabs_phase(url, args, run) if args.tab_mode == "client"
                        else tabs_phase(browser, url, args, run))
                run("quiet", lambda: time.sleep(args.seconds))
            vis = run(f"visitors x{args.visitors}", lambda: visitors_phase(url, photo, args, tmp / "downloads"))
            browser.close()
        report(phases, tabs, vis, args)
    except KeyboardInterrupt:
        print("interrupted: cleaning up")
        raise SystemExit(130) from None
    finally:
        if tail is not None:
            tail.stop.set()
        failed = app.poll() is not None or sys.exc_info()[0] not in (None, SystemExit)
        stop_app(app)
        if failed:   # the app's side of what went wrong
            print((tmp / "app.log").read_text(errors="replace")[-3000:])
        shutil.rmtree(tmp, ignore_errors=True)


def report(phases: list[dict], tabs: dict, vis: dict, args) -> None:
    who = "the tabs' and the visitors' clients"
    if args.tab_mode == "browser":
        who = "the browsers, " + who
    print(f"\nsummary ({who} run on the same 2 cores as the app: upper bounds)")
    quiet = [r for r in phases if r["name"] == "quiet" and r.get("rate")]
    base = statistics.mean(r["rate"] for r in quiet) if quiet else None
    if base:
        print(f"  training alone: {' and '.join(str(round(r['rate'])) for r in quiet)} img/s (before and after the "
              f"tabs), mean {base:.0f}; server {statistics.mean(r['cores']['server'] for r in quiet):.2f} cores")
    # A step can outlast a starved phase; a CPU-bound child trains in proportion to its CPU share.
    share = statistics.mean(r["cores"]["training"] for r in quiet) if quiet else None
    for rec, what in ((tabs, f"{args.tabs} tabs ticking"), (vis, f"{args.visitors} visitors uploading")):
        if base and rec:
            steps = f"{rec['rate'] / base:.2f} x alone by its steps" if rec.get("rate") else "no two steps in it"
            print(f"  with {what}: {steps}, {rec['cores']['training'] / share:.2f} x by the training's CPU share "
                  f"(target for the tabs: >= 0.85 x); server {rec['cores']['server']:.2f} cores, "
                  f"browsers {rec['cores']['browsers']:.2f}, bench {rec['cores']['bench']:.2f}")
    if vis:
        lat, err = vis["latencies"], vis["errors"]
        figures = f"; median {statistics.median(lat):.2f} s, p95 {p95(lat):.2f} s, max {max(lat):.2f} s" if lat else ""
        what = "the page's event" if args.protocol == "page" else "/predict + /familiarity"
        print(f"  uploads ({what}): {len(lat) + len(err)} from {args.visitors} visitors in "
              f"{vis['sending']:.0f} s: {len(lat)} answered, {len(err)} failed{figures} "
              f"(target: all answered, p95 <= 2 s)")
        rate = len(lat) / vis["burst"]
        gflops = rate * args.zoo_flops / 1e9
        print(f"  whole-zoo throughput in the app: {rate:.1f} images/s from the first upload to the last answer "
              f"({vis['burst']:.1f} s; each picture through every shipped model once), {gflops:.0f} GFLOP/s = "
              f"{gflops / args.fp32_peak:.0%} of the fp32 matmul peak ({args.fp32_peak:.0f} GFLOP/s; the training "
              f"run, the HTTP handling and the clients share the cores); at batch 32 in one process on idle "
              f"cores: {args.at_batch:.1f} images/s = {args.at_batch * args.zoo_flops / 1e9 / args.fp32_peak:.0%}")
        for e in sorted(set(err))[:5]:
            print(f"    failed x{err.count(e)}: {e}")


if __name__ == "__main__":
    main()
