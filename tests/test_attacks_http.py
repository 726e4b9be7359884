"""Attacks on the public app over raw HTTP: what a script can send, not what the page sends.

The app runs in public mode (`python app.py --public`) in a subprocess, on 127.0.0.1, with its
own Gradio upload folder (GRADIO_TEMP_DIR in tmp). The test speaks Gradio's queue protocol as the
page does (POST /gradio_api/queue/join, then the SSE stream of /gradio_api/queue/data) with
urllib only: no gradio_client, no browser. It reads /config to find each event by api_name, and
sends the values a page would never send: paths of server files in Gradio's upload record
(without "meta", so Gradio's own check is skipped), and a data URL over the size limit.

Only the two events wired with preprocess=False are attacked here: for the others (the Train
tab's zip, the Augmentations and Robustness uploads) Gradio's preprocessing refuses a record
without "meta" and checks that one with "meta" lies in its upload folder; their handlers check
again (data.uploads), tested without a server in test_ui_own_data.py and test_uploads.py.
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from cifar_demo.data import pictures
from cifar_demo.data.uploads import NOT_AN_UPLOAD

from .app_server import start_app, stop_app
from .conftest import REPO

pytestmark = pytest.mark.slow

CALL_TIMEOUT = 120          # s: one event, on a busy 2-core machine (the first predict loads the zoo)
SAMPLE = sorted((REPO / "cifar_demo" / "assets" / "sample").rglob("*.png"))[0]   # a server file, an image


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("attacks")
    server = start_app(tmp, args=("--public",), env={"GRADIO_TEMP_DIR": str(tmp / "gradio-uploads")})
    with urllib.request.urlopen(server.url + "config", timeout=30) as r:
        server.config = json.load(r)
    yield server
    stop_app(server)


def _event(app, api_name: str) -> dict:
    return next(d for d in app.config["dependencies"] if d.get("api_name") == api_name)


def call(app, api_name: str, data: list) -> dict:
    """One event through the queue, as the page calls it: the process_completed message's output
    ({"data": [...]} or {"error": "..."}) and, under "_seconds", how long it took."""
    dep = _event(app, api_name)
    session = uuid.uuid4().hex[:11]
    body = {"data": data, "fn_index": dep["id"], "trigger_id": dep["targets"][0][0] if dep["targets"] else None,
            "session_hash": session, "event_data": None}
    t0 = time.monotonic()
    req = urllib.request.Request(app.url + "gradio_api/queue/join", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=CALL_TIMEOUT) as r:
        event_id = json.load(r)["event_id"]
    with urllib.request.urlopen(f"{app.url}gradio_api/queue/data?session_hash={session}", timeout=CALL_TIMEOUT) as r:
        for line in r:
            if not line.startswith(b"data:"):
                continue
            msg = json.loads(line[5:])
            if msg.get("msg") == "process_completed" and msg.get("event_id") == event_id:
                return {**(msg.get("output") or {}), "_seconds": time.monotonic() - t0}
    raise AssertionError(f"{api_name}: the stream ended without a result")


def upload(app, path: Path) -> str:
    """POST /gradio_api/upload, as the page does: the path Gradio kept the file at."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{path.name}\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(app.url + "gradio_api/upload", body,
                                 {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)[0]


def inputs(api_name: str, image) -> list:
    return [image, False] if api_name == "predict" else [image]


ENDPOINTS = ("predict", "familiarity")


@pytest.mark.parametrize("api_name", ENDPOINTS)
def test_no_server_file_is_read_and_the_refusal_tells_nothing(app, api_name, tmp_path):
    refusals = {}
    for name, path in {"passwd": "/etc/passwd", "image": str(SAMPLE), "missing": str(tmp_path / "nothing.jpg"),
                       "folder": "/etc", "climb": str(Path(os.environ.get("TMPDIR", "/tmp")) / ".." / "etc" / "hosts"),
                       }.items():
        out = call(app, api_name, inputs(api_name, {"path": path}))
        assert "data" not in out, f"{api_name} read {path}: {str(out)[:200]}"
        refusals[name] = out.get("error")
    # One message, whether the file exists, is an image, a folder or nothing: no size, no name.
    assert set(refusals.values()) == {NOT_AN_UPLOAD}, refusals
    # Gradio's own record (with "meta") is checked by Gradio: refused too, though with its message.
    out = call(app, api_name, inputs(api_name, {"path": str(SAMPLE), "meta": {"_type": "gradio.FileData"}}))
    assert "data" not in out


@pytest.mark.parametrize("api_name", ENDPOINTS)
def test_an_oversized_data_url_is_refused_before_it_is_decoded(app, api_name):
    over = pictures.MAX_BYTES + 3 * 2**20                       # a few MB over the limit
    valid = "data:image/png;base64," + base64.b64encode(b"\0" * over).decode()
    out = call(app, api_name, inputs(api_name, {"path": None, "url": valid}))
    assert out.get("error") == f"the upload is {over / 1e6:.1f} MB; the limit is {pictures.MAX_BYTES / 1e6:.0f} MB"
    assert out["_seconds"] < 15
    # (No bound on the app's memory here: Gradio itself parses the 17 MB request and keeps the
    # value in the session's state, ~55 MB measured either way; only the decoding is ours.)
    # Measured from its length, not decoded: text that decodes to nothing is as big.
    junk = "data:image/png;base64," + "!" * len(valid)
    out = call(app, api_name, inputs(api_name, {"path": None, "url": junk}))
    assert out.get("error", "").startswith("the upload is 13.") and "limit is 10 MB" in out["error"], out


def test_an_upload_through_the_page_is_classified(app):
    path = upload(app, SAMPLE)
    out = call(app, "predict", [{"path": path, "meta": {"_type": "gradio.FileData"}}, False])
    assert "data" in out, out
    probs = out["data"][4]
    assert probs and all(abs(sum(p.values()) - 1) < 1e-3 for p in probs.values())
    out = call(app, "familiarity", [{"path": path}])          # the record without meta: checked by us
    assert "data" in out, out
