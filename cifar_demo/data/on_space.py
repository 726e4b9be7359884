"""CIFAR-10 on a Hugging Face Space: fetched once when the app starts, never per visitor.

A Space has no persistent disk by default, so a fresh container has no copy. When the app starts on
a Space (runtime: SPACE_ID or SPACES_ZERO_GPU set) and no CIFAR-10 is found, one background thread
downloads the official files through torchvision (about 170 MB, md5-checked) into the cache's
download/ folder (data.resolve_source), while the page already serves Predict and the zoo; the
Train tab's data line says it is on its way (status_line) and, on failure, why. After a restart
the container is new and the download runs again (Space storage or a Docker image with the data
baked in keeps it: docs/hosting.md). Locally nothing is fetched behind the user's back.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from .. import runtime
from .dataset import DataSource, DataSourceError
from .sources import resolve_source

_LOCK = threading.Lock()
_STATE: dict = {"state": "idle", "since": None, "error": "", "source": None}


def start_fetch(rt: runtime.Runtime | None = None,
                resolve: Callable[..., DataSource] = resolve_source) -> threading.Thread | None:
    """On a Space without CIFAR-10: start the one download (a daemon thread, returned). None where
    nothing is to be fetched: not a Space, the data is there, or a fetch is going or done."""
    rt = rt or runtime.current()
    if not rt.on_space:
        return None
    with _LOCK:
        if _STATE["state"] in ("fetching", "ready"):
            return None
        try:
            _STATE.update(state="ready", source=resolve(download=False).label, error="")
            return None
        except DataSourceError:
            _STATE.update(state="fetching", since=time.time(), error="")
    thread = threading.Thread(target=_fetch, args=(resolve,), name="cifar-demo-fetch", daemon=True)
    thread.start()
    return thread


def _fetch(resolve: Callable[..., DataSource]) -> None:
    try:
        src = resolve(download=True)
    except DataSourceError as e:
        with _LOCK:
            _STATE.update(state="failed", error=str(e).splitlines()[0])
        print(f"cifar-demo: CIFAR-10 download failed: {e}", flush=True)
        return
    with _LOCK:
        _STATE.update(state="ready", source=src.label)
    print(f"cifar-demo: CIFAR-10 ready ({src.label}, {src.path})", flush=True)


def status_line() -> str | None:
    """A sentence for the page while the startup download is going or after it failed; else None."""
    with _LOCK:
        state = dict(_STATE)
    if state["state"] == "fetching":
        return (f"CIFAR-10 is being downloaded for this Space (started {time.time() - state['since']:.0f} s ago, "
                "about 170 MB, once for all visitors): training and Evaluate can start when it is done.")
    if state["state"] == "failed":
        return f"This Space could not download CIFAR-10 when it started: {state['error']}"
    return None


def reset() -> None:
    """Forget the fetch (tests)."""
    with _LOCK:
        _STATE.update(state="idle", since=None, error="", source=None)
