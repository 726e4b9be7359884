"""What a page may hand the app as a file: only what it uploaded, checked before anything is read.

Any event of a Gradio page can be called over raw HTTP with any values. An event wired with
preprocess=False (Predict's /predict, /familiarity), or a value sent without Gradio's FileData
`meta`, reaches its handler with Gradio's upload checks skipped: `{"path": "/etc/passwd"}` would
be opened as it is. So every handler that takes an upload asks this module first:

- A path is accepted only if it resolves (os.path.realpath: links followed) inside the folder
  Gradio writes uploads to, and is a regular file there. Anything else (outside, missing, a
  folder, not a string) gets the one message NOT_AN_UPLOAD: the same whether the path exists
  or not, and nothing about its size.
- A base64 data URL (API clients) is measured from its length before a byte is decoded; over
  pictures.MAX_BYTES it is refused without decoding.

Gradio's upload folder is GRADIO_TEMP_DIR, else <system temp>/gradio (gradio.utils.
get_upload_folder; tests/test_uploads.py checks that the two agree). The examples a page shows
are copied there too before a handler sees them. Tests point GRADIO_TEMP_DIR at their own
folder, or pass `roots`. The CLI reads the user's own paths with pictures.load_image directly.
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .pictures import MAX_BYTES, ImageError

NOT_AN_UPLOAD = "This is not a file uploaded to this page: please upload it again."


class UploadError(ImageError):
    """A value that is not an upload of this page, or one too big to read; the message is for the user."""


def upload_roots() -> list[Path]:
    """The folders Gradio writes uploads (and the examples it copies) to: gradio.utils.get_upload_folder."""
    return [Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")]


def _real(path) -> str:
    return os.path.realpath(os.fspath(path))


def uploaded_path(value, roots: Iterable[str | os.PathLike] | None = None) -> Path:
    """The real path of an uploaded file: `value` is a path or Gradio's record ({"path": ...}).
    UploadError(NOT_AN_UPLOAD) unless it resolves to a regular file inside one of `roots`
    (default: upload_roots()). Nothing is opened or measured outside the roots."""
    if isinstance(value, dict):
        value = value.get("path")
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise UploadError(NOT_AN_UPLOAD)
    try:
        real = _real(value)
        for root in (upload_roots() if roots is None else roots):
            top = _real(root)
            if real != top and os.path.commonpath([real, top]) == top and os.path.isfile(real):
                return Path(real)
    except (ValueError, OSError, TypeError):   # a NUL byte, mixed drives, an unreadable folder
        pass
    raise UploadError(NOT_AN_UPLOAD)


def _too_big(n: int) -> UploadError:
    return UploadError(f"the upload is {n / 1e6:.1f} MB; the limit is {MAX_BYTES / 1e6:.0f} MB")


def decode_data_url(url: str, max_bytes: int = MAX_BYTES) -> bytes:
    """The bytes of a base64 data URL ("data:image/png;base64,..."); its size is read from the
    length of the text, and over max_bytes it is refused before anything is decoded."""
    head, sep, payload = url.partition(",")
    if not sep or not head.lower().endswith(";base64"):
        raise UploadError("a data URL must be base64: data:image/png;base64,...")
    # 4 characters of base64 per 3 bytes; padding and line breaks only make the text longer.
    if len(payload) * 3 // 4 > max_bytes + 3:
        raise _too_big(len(payload) * 3 // 4)
    try:
        data = base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError):
        raise UploadError("the data URL is not valid base64") from None
    if len(data) > max_bytes:
        raise _too_big(len(data))
    return data


def picture_source(value, roots: Iterable[str | os.PathLike] | None = None) -> Path | bytes | None:
    """What pictures.load_image may read for a value a page sent: the real path of an upload
    (see uploaded_path), the bytes of a base64 data URL (checked first: decode_data_url), or None
    when nothing was sent. UploadError otherwise."""
    if value is None or value == "":
        return None
    url = value.get("url") if isinstance(value, dict) else value
    if isinstance(url, str) and url[:5].lower() == "data:":
        return decode_data_url(url)
    if isinstance(value, dict) and not value.get("path"):
        return None
    return uploaded_path(value, roots)
