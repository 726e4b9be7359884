"""Attacks on the public app over raw HTTP: what a script can send, not what the page sends.

The app runs in public mode (`python app.py --public`) in a subprocess, on 127.0.0.1, with its
own Gradio upload folder (GRADIO_TEMP_DIR in tmp). The test speaks Gradio's queue protocol as the
page does (POST /gradio_api/queue/join, then the SSE stream of /gradio_api/queue/data) with
urllib only: no gradio_client, no browser. It reads /config to find each event by api_name, and
sends the values a page would never send: paths of server files in Gradio's upload record
(without "meta", so Gradio's own check is skipped), and a data URL over the size limit.

Only the two events wired with preprocess=False are attacked with files here: for the others
(the Train tab's zip, the Augmentations and Robustness uploads) Gradio's preprocessing refuses a
record without "meta" and checks that one with "meta" lies in its upload folder; their handlers
check again (data.uploads), tested without a server in test_ui_own_data.py and test_uploads.py.
Then: tokens minted by one address (behind one trusted proxy, as on a Space, with forged
X-Forwarded-For entries) against the training queue; Gradio's deep links; oversized requests.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import secrets
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from cifar_demo.data import pictures
from cifar_demo.data.uploads import NOT_AN_UPLOAD
from cifar_demo.ui import http_guard
from cifar_demo.ui.train_tab import FIELDS

from .app_server import start_app, stop_app
from .conftest import REPO

pytestmark = pytest.mark.slow

CALL_TIMEOUT = 120          # s: one event, on a busy 2-core machine (the first predict loads the zoo)
SAMPLE = sorted((REPO / "cifar_demo" / "assets" / "sample").rglob("*.png"))[0]   # a server file, an image


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("attacks")
    # One trusted proxy in front, as on a Space: the client's address is the last X-Forwarded-For entry.
    server = start_app(tmp, args=("--public",), env={"GRADIO_TEMP_DIR": str(tmp / "gradio-uploads"),
                                                     "CIFAR_DEMO_TRUSTED_PROXIES": "1"})
    server.uploads = tmp / "gradio-uploads"
    with urllib.request.urlopen(server.url + "config", timeout=30) as r:
        server.config = json.load(r)
    yield server
    stop_app(server)


def _event(app, api_name: str) -> dict:
    return next(d for d in app.config["dependencies"] if d.get("api_name") == api_name)


def call(app, api_name: str, data: list, session: str | None = None, headers: dict | None = None) -> dict:
    """One event through the queue, as the page calls it: the process_completed message's output
    ({"data": [...]} or {"error": "..."}) and, under "_seconds", how long it took."""
    dep = _event(app, api_name)
    session = session or uuid.uuid4().hex[:11]
    body = {"data": data, "fn_index": dep["id"], "trigger_id": dep["targets"][0][0] if dep["targets"] else None,
            "session_hash": session, "event_data": None}
    t0 = time.monotonic()
    req = urllib.request.Request(app.url + "gradio_api/queue/join", json.dumps(body).encode(),
                                 {"Content-Type": "application/json", **(headers or {})})
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


def refusal(out: dict) -> str | None:
    """The refusal an answer carries: Gradio's error, or /familiarity's answer without a verdict
    ({"unfamiliar": None, "error": ...}: the page shows /predict's error once, not twice). None
    when the answer holds anything else (a picture was read)."""
    if "data" not in out:   # Gradio's own refusals may come without a message
        return out.get("error") or "(refused, no message)"
    [value] = out["data"]
    if isinstance(value, dict) and set(value) == {"unfamiliar", "error"} and value["unfamiliar"] is None:
        return value["error"]
    return None


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
        refusals[name] = refusal(out)
        assert refusals[name], f"{api_name} read {path}: {str(out)[:200]}"
    # One message, whether the file exists, is an image, a folder or nothing: no size, no name.
    assert set(refusals.values()) == {NOT_AN_UPLOAD}, refusals
    # Gradio's own record (with "meta") is checked by Gradio: refused too, though with its message.
    out = call(app, api_name, inputs(api_name, {"path": str(SAMPLE), "meta": {"_type": "gradio.FileData"}}))
    assert refusal(out), out


def test_the_pages_own_predict_events_read_no_server_file_either(app, tmp_path):
    """The page's events (they say errors in place of the answers instead of raising):
    page_answers (every answer of a new picture) and predict_on_page (Grad-CAM switched) take the
    same check: no picture, no thumbnail, the same words whether a path exists or not."""
    said = set()
    for path in ("/etc/passwd", str(SAMPLE), str(tmp_path / "nothing.jpg"), "/etc"):
        out = call(app, "predict_on_page", [{"path": path}, False])
        seen, vote, table, cams, probs = out["data"]
        assert seen is None and not vote and not cams and not probs, (path, str(out)[:300])   # Label None: {}
        said.add(table)
        out = call(app, "page_answers", [{"path": path}, False, "", None])
        seen, vote, table, cams, probs, fam, notice, run, line = out["data"]
        assert seen is None and not vote and not cams and not probs and not run, (path, str(out)[:300])
        said |= {table, fam["error"]}
    assert len(said) == 2 and all(NOT_AN_UPLOAD in t for t in said), said
    # "Your run" that is a path, beside a real upload: no model read, the same words either way
    # (but for the value sent, if echoed); the zoo's answers stay.
    picture = {"path": upload(app, SAMPLE), "meta": {"_type": "gradio.FileData"}}
    lines = {}
    for what, run_id in (("absent", "../../nothing-here"), ("climb", "../../../etc"), ("root", "/etc")):
        out = call(app, "page_answers", [picture, False, run_id, secrets.token_urlsafe(32)])
        *zoo_answers, run, line = out["data"]
        assert zoo_answers[4] and not run and line, (what, str(out)[:300])
        assert not re.search(r"no such file|exists|\d+(\.\d+)? ?[KMG]B|permission", line, re.I), line
        lines[what] = line.replace(run_id, "<sent>")
    assert len(set(lines.values())) == 1, lines


@pytest.mark.parametrize("api_name", ENDPOINTS)
def test_an_oversized_data_url_is_refused_before_it_is_decoded(app, api_name):
    over = pictures.MAX_BYTES + 2**20                           # 1 MB over the limit, under the request cap
    valid = "data:image/png;base64," + base64.b64encode(b"\0" * over).decode()
    out = call(app, api_name, inputs(api_name, {"path": None, "url": valid}))
    assert refusal(out) == f"the upload is {over / 1e6:.1f} MB; the limit is {pictures.MAX_BYTES / 1e6:.0f} MB"
    assert out["_seconds"] < 15
    # (No bound on the app's memory here: Gradio itself parses the 17 MB request and keeps the
    # value in the session's state, ~55 MB measured either way; only the decoding is ours.)
    # Measured from its length, not decoded: text that decodes to nothing is as big.
    junk = "data:image/png;base64," + "!" * len(valid)
    out = call(app, api_name, inputs(api_name, {"path": None, "url": junk}))
    said = refusal(out) or ""
    assert said.startswith("the upload is 11.") and "limit is 10 MB" in said, out


def test_an_upload_through_the_page_is_classified(app):
    path = upload(app, SAMPLE)
    out = call(app, "predict", [{"path": path, "meta": {"_type": "gradio.FileData"}}, False])
    assert "data" in out, out
    probs = out["data"][4]
    assert probs and all(abs(sum(p.values()) - 1) < 1e-3 for p in probs.values())
    out = call(app, "familiarity", [{"path": path}])          # the record without meta: checked by us
    assert "data" in out, out


# ----------------------------------------------------------------------------- identity and the queue

def form(app, api_name: str) -> list:
    """The values the page sends for an event as it loads: every input's default from /config."""
    props = {c["id"]: c.get("props", {}) for c in app.config["components"]}
    return [props[i].get("value") for i in _event(app, api_name)["inputs"]]


def train_start(app, token: str) -> list:
    data = form(app, "start")
    first = 2                                               # model, preset, then the form's FIELDS
    data[first + FIELDS.index("epochs")] = 1
    data[first + FIELDS.index("train_limit")] = 200
    data[first + FIELDS.index("batch_size")] = 50
    data[-1] = token                                        # the page's token (gr.BrowserState)
    return data


def test_tokens_minted_from_one_address_hold_one_place_in_the_queue(app):
    forged = [{"X-Forwarded-For": f"10.9.8.{i}, 198.51.100.7"} for i in range(9)]   # spoofed, then the proxy's
    tokens = [secrets.token_urlsafe(32) for _ in range(9)]
    first = call(app, "start", train_start(app, tokens[0]), headers=forged[0])
    assert "data" in first and "run" in first["data"][0], first
    try:
        for token, headers in zip(tokens[1:8], forged[1:8]):
            out = call(app, "start", train_start(app, token), headers=headers)
            assert "data" not in out and "network address" in out.get("error", ""), out
        study = form(app, "start_1")
        study[-1] = tokens[8]
        out = call(app, "start_1", study, headers=forged[8])          # nor a study of the Compare tab
        assert "data" not in out and "network address" in out.get("error", ""), out
        # Another address gets its own place (queued behind the first run).
        other = secrets.token_urlsafe(32)
        out = call(app, "start", train_start(app, other), headers={"X-Forwarded-For": "198.51.100.8"})
        assert "data" in out and "Queued" in out["data"][0], out
        call(app, "stop", [other], headers={"X-Forwarded-For": "198.51.100.8"})
    finally:
        call(app, "stop", [tokens[0]], headers=forged[0])


def test_deep_links_do_not_write_a_sessions_state_and_its_token_to_a_file(app):
    session, token = uuid.uuid4().hex[:11], secrets.token_urlsafe(32)
    out = call(app, "new_token", [token], session=session)             # the page load: the token is the session's
    assert out.get("data") == [token], out
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{app.url}gradio_api/deep_link?session_hash={session}", timeout=30)
    assert err.value.code == 404
    written = [p for p in app.uploads.rglob("state.json")] if app.uploads.is_dir() else []
    assert not any(token in p.read_text() for p in written)


# ----------------------------------------------------------------------------- the lessons' events

def test_the_lesson_tabs_refuse_what_the_page_never_sends(app):
    """Inside the network, Adversarial and the learning-rate finder: values past the page's sliders
    and names of things on the server are refused at once, with the same words whether or not they
    exist, before any model is loaded or any job is queued."""
    token = secrets.token_urlsafe(32)
    # Ours, or Gradio's own check of a slider's range or a radio's choices, whichever comes first.
    over = "greater than maximum|not in the list of choices|not a valid choice"
    asks = {
        # Adversarial: a million PGD steps, an epsilon past the ball, a model that is a path.
        ("show_attack", "steps"): ([None, "airnet", "pgd", 4, 10**6], f"PGD takes between 1 and|{over}"),
        ("show_attack", "eps"): ([None, "airnet", "pgd", 10**9, 10], f"epsilon must lie between|{over}"),
        ("show_attack", "model"): ([None, "../../../etc/passwd", "fgsm", 2, 1], f"Pick one of the shipped|{over}"),
        ("compute_curves_1", "slice"): (["pgd", 10**6], f"Pick one of the offered slice sizes|{over}"),
        # Inside the network: a run that is a path (absent, or present elsewhere on the server).
        ("show_layers", "absent"): (["run:../../nothing-here", None, 8, token], None),
        ("show_layers", "climb"): (["run:../../../etc", None, 8, token], None),
        ("show_layers", "channels"): (["airnet", None, 10**6, token], f"channels|{over}"),
        ("show_epoch", "absent"): (["../../nothing-here", 1, None, 8, token], f"Pick one of your runs|{over}"),
        ("show_epoch", "climb"): (["/etc", 1, None, 8, token], f"Pick one of your runs|{over}"),
        ("compute_maps", "size"): (["airnet", "airnet", "tsne", 10**6, "any", "any", token], None),
        # Robustness: the whole test set under every corruption, or "your run" that is a path.
        ("compute_all", "slice"): (["fog", 3, 10**6, "", token], f"The slice is|{over}"),
        ("compute_curves", "absent"): (["fog", 3, 100, "../../nothing-here", token], None),
        ("compute_curves", "climb"): (["fog", 3, 100, "/etc", token], None),
        ("cached_curves", "climb"): (["fog", 3, 100, "../../../etc", token], None),
    }
    said = {}
    for (api_name, what), (data, expect) in asks.items():
        out = call(app, api_name, data)
        said[api_name, what] = refusal(out)
        assert said[api_name, what], f"{api_name} ({what}) was not refused: {str(out)[:300]}"
        assert expect is None or re.search(expect, said[api_name, what]), (api_name, what, said[api_name, what])
        assert out["_seconds"] < 15, (api_name, what, out["_seconds"])
        # Nothing about the server: whether a path exists, its size, its permissions (Gradio's own
        # checks may echo the value sent, which tells the sender nothing new).
        assert not re.search(r"no such file|exists|\d+(\.\d+)? ?[KMG]B|permission", said[api_name, what], re.I)
    # A path that exists and one that does not read the same (but for the value sent, if echoed).
    for api_name, at in (("show_layers", 0), ("show_epoch", 0), ("compute_curves", 3)):
        absent, climb = ((said[api_name, w].replace(asks[api_name, w][0][at], "<sent>")) for w in ("absent", "climb"))
        assert absent == climb, (absent, climb)

    # The learning-rate finder: ten million steps, or a batch no memory holds, queue nothing.
    finder = form(app, "lr_find")
    finder[-1] = token
    first = 3                                               # model, preset, steps, then the form's FIELDS
    for steps, batch, expect in ((10**7, 50, f"the range test takes 10 to|{over}"), (100, 45000, "[Bb]atch")):
        data = list(finder)
        data[2], data[first + FIELDS.index("batch_size")] = steps, batch
        out = call(app, "lr_find", data)
        assert refusal(out) and re.search(expect, refusal(out)), (steps, batch, str(out)[:300])
    assert not list(app.runs_dir.rglob("lrfind-*")), "a refused range test left a job behind"


def raw_post(app, path: str, headers: dict, chunks) -> tuple[int, bytes]:
    """POST with http.client (127.0.0.1 only): the status and body the app answers."""
    host, port = app.url.split("//")[1].strip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.putrequest("POST", path)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        try:
            for chunk in chunks:
                conn.send(chunk)
        except (BrokenPipeError, ConnectionResetError):   # the app answered and closed: read the answer
            pass
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_a_request_over_the_size_cap_is_refused_before_it_is_read(app):
    cap = http_guard.BODY_CAP
    join = "/gradio_api/queue/join"
    # A Content-Length over the cap: refused at once, nothing read (only 1 KB is sent).
    t0 = time.monotonic()
    status, _ = raw_post(app, join, {"Content-Type": "application/json", "Content-Length": str(cap + 1)},
                         [b"{" + b" " * 1023])
    assert status == 413 and time.monotonic() - t0 < 10
    # No length given (chunked): counted as it arrives, refused once past the cap.
    piece = b" " * 2**20

    def chunked():
        for _ in range(cap // len(piece) + 2):
            yield b"%x\r\n" % len(piece) + piece + b"\r\n"
        yield b"0\r\n\r\n"
    status, _ = raw_post(app, join, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}, chunked())
    assert status == 413
    # An upload is capped at the largest file the app takes, not at Gradio's per-file check.
    status, _ = raw_post(app, "/gradio_api/upload",
                         {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(2**30)}, [b"--x"])
    assert status == 413
