"""Open Train tabs without browsers: what N visitors' pages send the server while a run trains.

A visitor's browser runs on the visitor's machine; on the server an open Train tab is only the
HTTP traffic of its timer (every 2 s, or once a logged step while a run's steps are slower: the
tick returns the timer's new interval, which the page, and each tab here, then follows). This
replays that traffic with Gradio's own protocol, the way the page's JavaScript does it (seen in
Chromium's requests, see bench/load.py):

  POST /gradio_api/queue/join   {"data": [overlay, chosen run, null (the tab's gr.State), token],
                                 "fn_index": <the timer's event>, "trigger_id": <the timer>,
                                 "session_hash": <the page's>}
  GET  /gradio_api/queue/data?session_hash=...   (server-sent events until process_completed)
  GET  <the curves PNG's url>                     (only when the tick returns a new picture)

Each emulated tab has its own session (so its own server-side gr.State: the tick's "what was
drawn" memory works as in a page) and its own visitor token, like twenty students.
"""

from __future__ import annotations

import json
import secrets
import threading
import time

import httpx

TICK_SECONDS = 2.0          # ui.train_tab.TICK_SECONDS: the timer's interval until a tick changes it
CURVES_ID = "train-curves"  # elem_id of the Train tab's curves (gr.Image)


def tick_event(url: str) -> tuple[int, int, int | None]:
    """(fn_index, trigger_id, index of the timer among its outputs or None) of the timer tick that
    draws the Train tab's curves, from /config."""
    config = httpx.get(url.rstrip("/") + "/config", timeout=30).json()
    curves = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == CURVES_ID)
    timers = {c["id"] for c in config["components"] if c.get("type") == "timer"}
    for i, dep in enumerate(config["dependencies"]):
        for target, event in dep.get("targets", []):
            outputs = dep.get("outputs", [])
            if event == "tick" and target in timers and curves in outputs:
                return dep.get("id", i), target, outputs.index(target) if target in outputs else None
    raise RuntimeError("no timer tick that draws the Train tab's curves in the app's /config")


class Tab(threading.Thread):
    """One open Train tab: a tick every `interval` s until `stop` (TICK_SECONDS, then what the ticks
    set it to); counts what it sent and fetched."""

    def __init__(self, url: str, fn_index: int, trigger_id: int, stop: threading.Event,
                 timer_output: int | None = None):
        super().__init__(daemon=True)
        self.base, self.fn_index, self.trigger_id, self.stop = url.rstrip("/"), fn_index, trigger_id, stop
        self.timer_output, self.interval = timer_output, TICK_SECONDS
        self.session = secrets.token_hex(6)
        self.token = secrets.token_urlsafe(32)   # as ui.common.new_token makes them
        self.ticks, self.pngs, self.errors, self.latencies, self.intervals = 0, 0, [], [], []
        self.last_png: str | None = None

    def run(self) -> None:
        with httpx.Client(timeout=60) as http:
            next_at = time.monotonic()
            while not self.stop.is_set():
                t = time.perf_counter()
                try:
                    self._tick(http)
                    self.latencies.append(time.perf_counter() - t)
                except Exception as e:   # a failed tick is a figure, not the end of the bench
                    self.errors.append(f"{type(e).__name__}: {e}"[:160])
                self.ticks += 1
                self.intervals.append(self.interval)
                next_at += self.interval   # a timer, not a sleep after each answer (as the page's)
                self.stop.wait(max(0.0, next_at - time.monotonic()))

    def _tick(self, http: httpx.Client) -> None:
        body = {"data": [[], None, None, self.token], "fn_index": self.fn_index,
                "trigger_id": self.trigger_id, "session_hash": self.session}
        event_id = http.post(f"{self.base}/gradio_api/queue/join", json=body).raise_for_status().json()["event_id"]
        with http.stream("GET", f"{self.base}/gradio_api/queue/data",
                         params={"session_hash": self.session}) as r:
            for line in r.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("event_id") != event_id or msg.get("msg") != "process_completed":
                    continue
                if not msg.get("success", False):
                    raise RuntimeError(f"tick failed: {str(msg.get('output'))[:120]}")
                outputs = msg["output"]["data"]
                self._fetch_picture(http, outputs[0])
                if self.timer_output is not None and isinstance(outputs[self.timer_output], (int, float)):
                    self.interval = float(outputs[self.timer_output])   # the page's timer takes it too
                return
        raise RuntimeError("the event stream closed before the tick completed")

    def _fetch_picture(self, http: httpx.Client, image) -> None:
        """The page downloads the curves when the tick returns a new one (a skip returns none)."""
        url = image.get("url") if isinstance(image, dict) else None
        if url and url != self.last_png:
            http.get(url).raise_for_status()
            self.last_png, self.pngs = url, self.pngs + 1


def open_tabs(url: str, n: int) -> tuple[list[Tab], threading.Event]:
    """Start n emulated tabs, their first ticks spread over one tick period (pages open at different times)."""
    fn_index, trigger_id, timer_output = tick_event(url)
    stop = threading.Event()
    tabs = []
    for i in range(n):
        tabs.append(tab := Tab(url, fn_index, trigger_id, stop, timer_output))
        tab.start()
        stop.wait(TICK_SECONDS / max(n, 1))
    return tabs, stop
