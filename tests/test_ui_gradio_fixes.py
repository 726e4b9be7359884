"""The Gradio fixes (cifar_demo/ui/gradio_fixes.py): a picture is written once, atomically, so a
reader never sees it truncated while a second visitor gets the same picture; a new session costs
no rendering of every block's config."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np
from gradio import processing_utils, state_holder

from cifar_demo.ui import build_app, gradio_fixes


def test_the_app_applies_the_fixes_and_a_new_session_renders_no_config(monkeypatch):
    for name in gradio_fixes.ANALYTICS:
        monkeypatch.delenv(name, raising=False)
    app = build_app()   # one build (about 10 s on 2 cores) for every check
    assert processing_utils.save_pil_to_cache is gradio_fixes.save_pil_to_cache
    # the queue summarises its analytics every 1,000 events over the last 2,000, not after every event
    assert app._queue.ANAYLTICS_CACHE_FREQUENCY == 1000 and app._queue.ANALYTICS_MAX_EVENTS == 2000

    # A new session (every page load, every API client) no longer renders the app's ~500 block configs.
    def per_session(make, n=5):
        t = time.perf_counter()
        for _ in range(n):
            make()
        return (time.perf_counter() - t) / n

    def gradios():
        session = state_holder.SessionState.__new__(state_holder.SessionState)
        gradio_fixes._session_init(session, app)
        return session

    ours, theirs = per_session(lambda: state_holder.SessionState(app)), per_session(gradios)
    assert ours < theirs / 10, (ours, theirs)
    # What a deep link would read is the same, rendered when read; a value a handler set is kept.
    mine, full = state_holder.SessionState(app), gradios()
    assert mine.config_values == {}
    keys = [k for k, b in app.blocks.items() if isinstance(b, gr.Markdown)][:3]
    for session in (mine, full):   # an event notes its values; a handler changes a block's props
        session._update_value_in_config(keys[0], "changed")
        session._update_value_in_config(keys[1], "noted, then props changed")
        session._update_config(keys[1])
        session._update_value_in_config(keys[2], "twice"), session._update_value_in_config(keys[2], "twice, last")
    assert list(mine.config_values) == [keys[1]]   # nothing else rendered to note a value
    assert list(mine.components) == list(full.components) and len(list(full.components)) > 400


def test_a_picture_is_written_once_and_never_seen_truncated():
    gradio_fixes.apply()
    image = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    path = Path(gr.Image(format="png").postprocess(image).path)   # as a handler's output is saved
    cache_dir = str(path.parents[1])
    size, mtime = path.stat().st_size, path.stat().st_mtime_ns
    assert size > 1000
    seen, stop = [], threading.Event()

    def reader():   # the server sending the picture to one visitor...
        while not stop.is_set():
            seen.append(len(path.read_bytes()))

    def writer():   # ...while other visitors' identical pictures are saved
        for _ in range(150):
            assert processing_utils.save_img_array_to_cache(image, cache_dir, format="png") == str(path)

    readers = [threading.Thread(target=reader) for _ in range(2)]
    writers = [threading.Thread(target=writer) for _ in range(3)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert seen and set(seen) == {size}
    assert path.stat().st_mtime_ns == mtime   # reused, not rewritten
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]   # no temp file left

