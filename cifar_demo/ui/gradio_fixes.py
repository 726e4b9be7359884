"""Three fixes for Gradio 6.31 (pinned in requirements.txt), applied when the app is built.

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
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from gradio import exceptions, processing_utils, queueing, utils


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


ANALYTICS = {"GRADIO_ANALYTICS_CACHE_FREQUENCY": "1000", "GRADIO_ANALYTICS_MAX_EVENTS": "2000"}


def apply() -> None:
    """Before the Blocks (and their queue, which reads the variables) are made: the analytics
    settings, and Gradio's picture saving (save_img_array_to_cache calls the module's
    save_pil_to_cache) and error payloads routed here."""
    for name, value in ANALYTICS.items():
        os.environ.setdefault(name, value)
    processing_utils.save_pil_to_cache = save_pil_to_cache
    utils.error_payload = queueing.error_payload = error_payload
