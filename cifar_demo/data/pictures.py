"""From any uploaded picture to a 32x32 model input: the one place pictures are decoded.

Uploads are decoded defensively: size and pixel limits, truncated and non-image files, and
the awkward formats (16-bit PNG, CMYK JPEG, RGBA, palette, grayscale, animated GIF) each
become either a clean RGB image or an ImageError with a message for the user. The data layer
(own-image datasets) and prediction both read pictures through here.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from collections import OrderedDict
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..common import IMAGE_SIZE

MAX_BYTES = 10 * 1024 * 1024          # the app's upload limit too
MAX_PIXELS = 40_000_000               # larger images are refused before decoding (bomb guard)


class ImageError(ValueError):
    """An upload that cannot be turned into an image; the message is for the user."""


def _read_bytes(source) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source), "the upload"
    path = Path(source)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    if size > MAX_BYTES:
        raise ImageError(f"{path.name} is {size / 1e6:.1f} MB; the limit is {MAX_BYTES / 1e6:.0f} MB")
    return path.read_bytes(), path.name


def declared_size(fp) -> tuple[int, int]:
    """(width, height) as a picture's header declares them, without decoding a pixel: PIL's
    Image.open reads the header only. `fp` is a path or a binary file object (a zip member).
    ImageError if PIL cannot identify it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fp) as img:
                return img.size
    except Image.DecompressionBombError:
        raise ImageError("declares an enormous image (a decompression bomb?); refused") from None
    except UnidentifiedImageError:
        raise ImageError("is not an image PIL can read (PNG, JPEG, GIF, BMP, WebP, TIFF)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"could not be read ({exc}); it may be truncated or corrupt") from None


def load_image(source, max_pixels: int = MAX_PIXELS, at_least: int | None = None) -> Image.Image:
    """A path, bytes, a PIL image or an HxWx{1,3,4} array -> an RGB PIL image (or ImageError).
    Bytes and pixels are checked before decoding: the file's size against MAX_BYTES, the
    header's width x height against max_pixels. `at_least`: a JPEG may be decoded at 1/2, 1/4
    or 1/8 of its size (libjpeg's DCT scaling, far cheaper than decoding every pixel), the
    smallest that keeps `at_least` pixels on each side."""
    if isinstance(source, Image.Image):
        return _to_rgb(source)
    if isinstance(source, np.ndarray):
        return _to_rgb(Image.fromarray(_array_to_uint8(source)))
    data, name = _read_bytes(source)
    if not data:
        raise ImageError(f"{name} is empty (0 bytes)")
    if len(data) > MAX_BYTES:
        raise ImageError(f"{name} is {len(data) / 1e6:.1f} MB; the limit is {MAX_BYTES / 1e6:.0f} MB")
    head = data[:512].lstrip().lower()
    if head.startswith(b"<?xml") or b"<svg" in head:
        raise ImageError(f"{name} is an SVG drawing; please upload a PNG, JPEG, GIF, BMP or WebP picture")
    try:
        with warnings.catch_warnings():
            # PIL warns (not raises) between MAX_IMAGE_PIXELS and twice that; treat it as an error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.width * img.height > max_pixels:
                raise ImageError(f"{name} is {img.width}x{img.height} pixels; the limit is "
                                 f"{max_pixels / 1e6:.1f} megapixels")
            img.seek(0)  # animated GIF / APNG / WebP: the first frame
            if at_least and img.format == "JPEG":
                img.draft(None, (at_least, at_least))
            img.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name} declares an enormous image (a decompression bomb?); refused") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image PIL can read (PNG, JPEG, GIF, BMP, WebP, TIFF)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name} could not be decoded ({exc}); it may be truncated or corrupt") from None
    return _to_rgb(img)


def _array_to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return (a >> 8).astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        scale = 255.0 if a.max(initial=0) <= 1.0 else 1.0
        return np.clip(a * scale, 0, 255).astype(np.uint8)
    return np.clip(a, 0, 255).astype(np.uint8)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB: transparency composited on white, 16-bit scaled to 8-bit."""
    img = ImageOps.exif_transpose(img) if hasattr(img, "getexif") else img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.int64)
        hi = 65535 if a.max(initial=0) > 255 else 255
        img = Image.fromarray((np.clip(a, 0, hi) * 255 // hi).astype(np.uint8), "L")
    elif img.mode == "F":
        img = Image.fromarray(_array_to_uint8(np.asarray(img)), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV, RGB


def to_32x32(img: Image.Image) -> np.ndarray:
    """Centre-crop to a square, then shrink to 32x32 with antialiasing: HxWx3 uint8.

    CIFAR-10 images are square thumbnails of a centred object, so cropping (rather than
    squashing) keeps the object's proportions.
    """
    img = ImageOps.fit(img, (IMAGE_SIZE, IMAGE_SIZE), method=Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.uint8).copy()


# A visitor's picture is decoded at no less than 8x the thumbnail's side: the 32x32 the models see
# then stays within 1-2 levels of a full decode's (0.1 on average), and a 12-megapixel phone photo
# costs a tenth of the time (python bench/thumbnail.py; docs/benchmarks.md).
THUMB_SOURCE = 8 * IMAGE_SIZE


def thumbnail(source, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A picture as the models see it: to_32x32(load_image(source)), a JPEG decoded at a reduced
    scale (THUMB_SOURCE). Own-image datasets decode every pixel (data.own: their arrays are
    part of a dataset's fingerprint)."""
    return to_32x32(load_image(source, max_pixels, at_least=THUMB_SOURCE))


def to_tensor(image32: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 1x3xHxW uint8 tensor (a zoo model takes it as it is)."""
    return torch.from_numpy(np.ascontiguousarray(image32)).permute(2, 0, 1).unsqueeze(0)


# ----------------------------------------------------------------------------- one decoding per file

_THUMBS: "OrderedDict[tuple, Future]" = OrderedDict()
_THUMBS_LOCK = threading.Lock()
THUMB_CACHE = 128   # files remembered: a class's uploads, each read again by /familiarity or your run


def thumbnail_of_file(path: str | os.PathLike) -> np.ndarray:
    """thumbnail(path), decoded once per file version (path, size, mtime): an API client asks
    /predict and /familiarity about one upload at the same time, and choosing a run reads it
    again; a second call (even while the first decodes) gets the first's picture (a copy), or
    its ImageError."""
    path = Path(path)
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _THUMBS_LOCK:
        future = _THUMBS.get(key)
        mine = future is None
        if mine:
            future = _THUMBS[key] = Future()
            while len(_THUMBS) > THUMB_CACHE:
                _THUMBS.popitem(last=False)
        else:
            _THUMBS.move_to_end(key)
    if mine:
        try:
            future.set_result(thumbnail(path))
        except Exception as exc:   # the same message for the second caller; OSError and the like too
            future.set_exception(exc)
    return future.result().copy()
