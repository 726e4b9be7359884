"""The real app in a subprocess, driven as a visitor drives it, for the bench scripts that
measure it (bench/load.py, bench/app_latency.py): start and stop `python app.py`, press Start on
the Train tab in headless Chromium, follow the run's metrics.jsonl, and the CPU seconds of the
app's processes from /proc.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHROMIUM = "/usr/bin/chromium"
# tests/browser.py's flags, plus: never slow the timers of pages that are not in front
# (twenty contexts are twenty windows; a throttled tab would make the tabs look cheaper).
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows"]
START_TIMEOUT = 1200  # seconds for the app to answer, and for the run to step (data decode included)
CLK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after "pid (comm) " (state is field 0), or None for a process gone."""
    with contextlib.suppress(OSError):
        text = Path(f"/proc/{pid}/stat").read_text()
        return text[text.rindex(")") + 2:].split()
    return None


def proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds user+system of all its threads) from /proc/<pid>/stat."""
    fields = _stat_fields(pid)
    return None if fields is None else (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK)


def faults(pid: int) -> tuple[int, float]:
    """(minor page faults, system CPU seconds) of a running process so far, from /proc/<pid>/stat."""
    fields = _stat_fields(pid)
    return int(fields[7]), int(fields[12]) / CLK


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid in (int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit()):
        if (st := proc_stat(pid)) is not None:
            children.setdefault(st[0], []).append(pid)
    out, todo = [], [root]
    while todo:
        todo.extend(kids := children.get(todo.pop(), []))
        out.extend(kids)
    return out


def cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return ""


def cpu_sample(app_pid: int) -> dict[str, float]:
    """CPU seconds so far of: the app's server, its training child, the browsers, this script, all."""
    app_kids, mine = descendants(app_pid), descendants(os.getpid())

    def total(pids: list[int]) -> float:
        return sum(st[1] for st in map(proc_stat, pids) if st is not None)

    # The machine: busy = all but idle and iowait (fields 4, 5); guest time is already in user.
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return {"server": total([app_pid]),
            "training": total([p for p in app_kids if "cifar_demo train" in cmdline(p)]),
            "browsers": total([p for p in mine if "chrom" in cmdline(p).split(" ", 1)[0]]),
            "bench": total([os.getpid()]), "machine": (sum(v) - v[3] - v[4]) / CLK}


def p95(values) -> float:
    """The 95th percentile of `values` by the nearest rank (what every bench here reports)."""
    v = sorted(values)
    return v[round(0.95 * (len(v) - 1))]


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def start_app(tmp: Path, data_dir: str, public: bool = True,
              fresh_cache: bool = True) -> tuple[subprocess.Popen, str]:
    """`python app.py [--public]` on a free port of 127.0.0.1, with its runs and log in `tmp`, and its
    cache there too (`fresh_cache`) or the usual one (CIFAR-10 decoded once, as on a teacher's machine)."""
    with socket.socket() as s:   # a free port
        port = s.bind(("127.0.0.1", 0)) or s.getsockname()[1]
    env = dict(os.environ, CIFAR_DEMO_RUNS=str(tmp / "runs"), CIFAR_DEMO_DATA=data_dir,
               GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1",
               **({"CIFAR_DEMO_CACHE": str(tmp / "cache")} if fresh_cache else {}))
    with open(tmp / "app.log", "wb") as log:
        # Its own process group: stopping it also ends the training child it spawned.
        cmd = [sys.executable, "app.py", *(["--public"] if public else []), "--host", "127.0.0.1", "--port", str(port)]
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}/"


def wait_until_up(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"the app did not answer at {url} within {timeout:.0f} s (exit code {proc.poll()})")


def stop_app(proc: subprocess.Popen) -> None:
    """SIGTERM to the app's group (the app and its training child), then SIGKILL to what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


class Tail(threading.Thread):
    """Follows a run's metrics.jsonl: every event with the monotonic time it was seen."""

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        self.path, self.events, self.stop = path, [], threading.Event()

    def run(self) -> None:
        pos, buf = 0, ""
        while not self.stop.wait(0.2):
            with contextlib.suppress(FileNotFoundError), open(self.path) as f:
                f.seek(pos)
                buf, pos = buf + f.read(), f.tell()
            *lines, buf = buf.split("\n")   # a line still being written stays in buf
            now = time.monotonic()
            self.events += [(now, json.loads(line)) for line in lines if line.strip()]

    def kinds(self, kind: str) -> list[dict]:
        return [e for _, e in self.events if e.get("kind") == kind]


def stepping_run(browser, url: str, runs: Path, app: subprocess.Popen, batch: int | None = None,
                 precision: str | None = None) -> Tail:
    """press_start, then the run's metrics followed (a started Tail) until it has stepped twice
    (data decoded, whitening done: it is training); RuntimeError if it ends or the app does first."""
    tail = Tail(press_start(browser, url, runs, 180, batch, precision))
    tail.start()
    deadline = time.monotonic() + START_TIMEOUT
    while len(tail.kinds("step")) < 2:
        if time.monotonic() > deadline or tail.kinds("end") or app.poll() is not None:
            tail.stop.set()
            raise RuntimeError(f"the run took no steps; see {tail.path.parent}")
        time.sleep(0.5)
    return tail


def press_start(browser, url: str, runs: Path, timeout: float, batch: int | None, precision: str | None) -> Path:
    """A visitor's page picks "Full demo" and presses Start on the Train tab (after changing the batch size and the
    precision in the form, when asked); returns the run's metrics.jsonl."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = ctx.new_page()
        page.set_default_timeout(timeout * 1000)
        page.goto(url)
        page.get_by_role("tab", name="Train", exact=True).click()
        # The `demo` preset: the tab's first choice on a GPU; on a CPU it offers a shorter lesson first.
        page.get_by_label("Full demo", exact=True).check()
        if batch or precision:   # the recipe sits in a closed section
            page.get_by_role("button", name=re.compile("^Model and recipe")).filter(visible=True).first.click()
        if batch:
            page.get_by_label("Batch size", exact=True).filter(visible=True).fill(str(batch))
        if precision:
            page.get_by_label("Precision", exact=True).filter(visible=True).click()
            page.get_by_role("option", name=precision, exact=True).click()
        started = page.get_by_text(re.compile(r"Started run `?[\w.-]+`?")).filter(visible=True).first
        deadline = time.monotonic() + timeout
        while True:   # the page's visitor token comes with the load event: press again until it is there
            page.get_by_role("button", name="Start", exact=True).click()
            with contextlib.suppress(Exception):
                started.wait_for(timeout=10_000)
                break
            if time.monotonic() > deadline:
                raise RuntimeError("Start did not start a run; the page says:\n" + page.inner_text("body")[-2000:])
        run_id = re.search(r"Started run `?([\w.-]+?)`?:", started.inner_text()).group(1)
    finally:
        ctx.close()   # the first quiet phase has no tab open
    # The app wrote .<run id>.config.json into the visitor's folder when it queued the run.
    queued = next(runs.rglob(f".{run_id}.config.json"), None)
    if queued is None:
        raise RuntimeError(f"run {run_id} started but its folder is not under {runs}")
    return queued.parent / run_id / "metrics.jsonl"
