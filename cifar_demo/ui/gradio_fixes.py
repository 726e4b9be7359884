"""Four fixes for Gradio 6.31 (pinned in requirements.txt), applied when the app is built.

1. The queue's analytics. After every event Gradio's queue rebuilds a pandas DataFrame of the
last GRADIO_ANALYTICS_MAX_EVENTS (10,000) events and computes per-function percentiles, for its
monitoring page, unless GRADIO_ANALYTICS_CACHE_FREQUENCY says to do it less often (default:
every event). Twenty open Train tabs send 10 ticks a second: py-spy on the server during
bench/load.py showed 21% of its samples there, more than in the ticks themselves. Here the
summary is recomputed every 1,000 events over the last 2,000 (set either variable to override).

2. The picture cache. Gradio writes every picture a handler returns (a numpy array or PIL image) to
<cache>/<hash of its bytes>/image.<format> with Path.write_bytes, every time, over the file of the
same name. Two visitors who get the same picture (the same photo sent to /predict, the default
augmentation preview) therefore rewrite one file while the server may be sending it to the
other: the reader sees a length, then a truncated file, and its client fails with
"peer closed connection without sending complete message body" (bench/load.py: 14 of 413
/predict calls under 20 concurrent visitors). Here the file is written once, under a temporary
name renamed into place, and reused when it exists: its name is the hash of its bytes, so an
existing file is already the right one. Gradio's own save_file_to_cache does the same for files.

3. Error pop-ups. The page renders a gr.Error's message as HTML, so a message that names a path
pattern (DIR/train/<class>/<image>) or quotes an exception ("<urlopen error ...>") was cut at the
first "<": the rest read as a tag. Every message the app raises is plain text: here it is escaped,
and its line breaks kept, on the way out (utils.error_payload, which the queue imports by name).

4. A new session's cost. The first event of every new session (a page load, an API client)
builds a SessionState, which renders the config of every block of the app (491 here) for deep
links, on the server's event loop: 34-43 ms a session on 2 cores, during which no other request
is served. Thirty visitors arriving at once waited ~1 s to be queued (bench/burst.py, which
prints both costs: before this fix the 30 joins were done at median 1.91 s, after it at
0.33-0.38 s). Deep links are off in public mode; here the configs are rendered when something
first reads them (SessionState.components), and those of the blocks a handler changed (which
Gradio renders as it sets them) are kept as they are. The same goes for the values an event
reads and writes: Gradio renders the config of each of its inputs and outputs to note the value
in it (0.25 ms each, 13 for the Predict page's event: 30 uploads from new sessions spent ~0.1 s
of the event loop on it); here a value is noted when the config is rendered.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from gradio import exceptions, processing_utils, queueing, state_holder, utils


def save_pil_to_cache(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    data = processing_utils.encode_pil_to_bytes(img, format)
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    folder.mkdir(exist_ok=True, parents=True)
    path = (folder / f"{name}.{format}").resolve()
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)   # atomic: a reader sees no file or the whole file
    return str(path)


_error_payload = utils.error_payload


def error_payload(error, show_error):
    content = _error_payload(error, show_error)
    if isinstance(error, exceptions.Error) and isinstance(content.get("error"), str):
        content["error"] = html.escape(content["error"]).replace("\n", "<br>")
    return content


class _NoBlocksToRender:
    """What SessionState.__init__ reads of the Blocks (default_config, blocks), with no blocks to
    render: its config_values comprehension, filtered by `k in blocks.blocks`, comes out empty."""

    def __init__(self, blocks):
        self.default_config, self.blocks = blocks.default_config, {}


def _lazy_session_init(self, blocks) -> None:
    """SessionState.__init__ without rendering every block's config (see 4. above)."""
    _session_init(self, _NoBlocksToRender(blocks))
    self._render_ids = blocks.blocks   # the blocks the comprehension would have rendered


def _session_components(self):
    """SessionState.components: every block's config (deep links), rendered on first reading;
    those a handler changed since are kept, and the values events noted are set in them."""
    ids = getattr(self, "_render_ids", None)
    if ids is not None:   # in the blocks' order, as Gradio's would be; then blocks added since
        done = self.config_values
        self.config_values = {key: done[key] if key in done else self.blocks_config.config_for_block(key, [], block)
                              for key, block in self.blocks_config.blocks.items() if key in ids}
        self.config_values.update((k, v) for k, v in done.items() if k not in self.config_values)
        self._render_ids = None
        for key, value in self.__dict__.pop("_values", {}).items():
            _value_in_config(self, key, value)
    for config in self.config_values.values():
        if config:
            yield config


def _lazy_value_in_config(self, key: int, value) -> None:
    """SessionState._update_value_in_config: a block whose config is not rendered yet gets the
    value when it is (_session_components)."""
    if getattr(self, "_render_ids", None) is not None and key not in self.config_values:
        self.__dict__.setdefault("_values", {})[key] = value
    else:
        _value_in_config(self, key, value)


def _lazy_update_config(self, key: int) -> None:
    """SessionState._update_config (a handler changed the block's props): rendered now from the
    new props, as Gradio does; a value noted before is dropped, as Gradio's render drops it."""
    self.__dict__.get("_values", {}).pop(key, None)
    _update_config(self, key)


_session_init = state_holder.SessionState.__init__
_value_in_config = state_holder.SessionState._update_value_in_config
_update_config = state_holder.SessionState._update_config


ANALYTICS = {"GRADIO_ANALYTICS_CACHE_FREQUENCY": "1000", "GRADIO_ANALYTICS_MAX_EVENTS": "2000"}


def apply() -> None:
    """Before the Blocks (and their queue, which reads the variables) are made: the analytics
    settings, and Gradio's picture saving (save_img_array_to_cache calls the module's
    save_pil_to_cache), error payloads and new sessions routed here."""
    for name, value in ANALYTICS.items():
        os.environ.setdefault(name, value)
    processing_utils.save_pil_to_cache = save_pil_to_cache
    utils.error_payload = queueing.error_payload = error_payload
    state_holder.SessionState.__init__ = _lazy_session_init
    state_holder.SessionState.components = property(_session_components)
    state_holder.SessionState._update_value_in_config = _lazy_value_in_config
    state_holder.SessionState._update_config = _lazy_update_config
