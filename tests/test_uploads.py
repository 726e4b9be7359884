"""data.uploads: only files in Gradio's upload folder are read; data URLs are measured before decoding.
(tests/test_attacks_http.py replays the same attacks over HTTP against the running app.)"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from gradio import utils as gradio_utils

from cifar_demo import data
from cifar_demo.data import pictures, uploads
from cifar_demo.data.uploads import NOT_AN_UPLOAD, UploadError


def test_the_roots_are_gradios_upload_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    assert [os.path.realpath(r) for r in uploads.upload_roots()] == [gradio_utils.get_upload_folder()]
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    assert uploads.upload_roots() == [tmp_path] and gradio_utils.get_upload_folder() == str(tmp_path)


def test_an_upload_is_read_and_every_other_path_gets_one_message(uploaded, tmp_path):
    photo = uploaded(data.sample_paths()[0][0])
    assert uploads.uploaded_path(photo) == uploads.uploaded_path({"path": photo}) == Path(os.path.realpath(photo))
    assert isinstance(uploads.picture_source(photo), Path)
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"x" * 100)
    (uploaded.root / "escape.png").symlink_to(outside)     # a link out of the folder: its target counts
    refused = [str(outside), str(tmp_path / "missing.png"), "/etc/passwd", "/etc", str(uploaded.root),
               str(uploaded.root / "missing.png"), str(uploaded.root / "escape.png"),
               str(uploaded.root / ".." / "outside.png"), str(uploaded.root) + "-x/a.png",
               os.path.dirname(photo), "bad\0path", "", 7, ["/etc/passwd"], {"path": "/etc/passwd"},
               {"path": str(outside), "meta": {"_type": "gradio.FileData"}}]
    for value in refused:
        with pytest.raises(UploadError) as err:
            uploads.uploaded_path(value)
        assert str(err.value) == NOT_AN_UPLOAD, value
    with pytest.raises(UploadError, match="^" + NOT_AN_UPLOAD):
        uploads.picture_source("/etc/passwd")
    assert uploads.picture_source(None) is None and uploads.picture_source({"path": None}) is None
    # Tests (or callers) may name their own roots.
    assert uploads.uploaded_path(str(outside), roots=[tmp_path]) == outside.resolve()


def test_a_data_url_is_measured_before_it_is_decoded(monkeypatch):
    small = "data:image/png;base64," + base64.b64encode(b"abc").decode()
    assert uploads.picture_source({"path": None, "url": small}) == b"abc" == uploads.picture_source(small)
    calls = []
    monkeypatch.setattr(uploads.base64, "b64decode", lambda *a, **k: calls.append(a) or b"")
    big = "data:image/png;base64," + "A" * (pictures.MAX_BYTES * 4 // 3 + 100)
    with pytest.raises(UploadError, match=r"^the upload is 10\.5 MB; the limit is 10 MB$"):
        uploads.picture_source({"path": None, "url": big})
    with pytest.raises(UploadError, match="base64"):
        uploads.decode_data_url("data:image/png,rawtext")
    assert calls == []
