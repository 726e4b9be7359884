"""From any uploaded image to a model input; prediction with one or many models.

Uploads are decoded defensively: size and pixel limits, truncated and non-image files, and
the awkward formats (16-bit PNG, CMYK JPEG, RGBA, palette, grayscale, animated GIF) each
become either a clean RGB image or an ImageError with a message for the user.
"""

from __future__ import annotations

import io
import statistics
import time
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .common import CLASSES, IMAGE_SIZE, normalize

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


def load_image(source) -> Image.Image:
    """A path, bytes, a PIL image or an HxWx{1,3,4} array -> an RGB PIL image (or ImageError)."""
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
            if img.width * img.height > MAX_PIXELS:
                raise ImageError(f"{name} is {img.width}x{img.height} pixels; the limit is "
                                 f"{MAX_PIXELS / 1e6:.0f} megapixels")
            img.seek(0)  # animated GIF / APNG / WebP: the first frame
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


def to_tensor(image32: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 1x3xHxW uint8 tensor (normalise with common.normalize or the model's spec)."""
    return torch.from_numpy(np.ascontiguousarray(image32)).permute(2, 0, 1).unsqueeze(0)


# ------------------------------------------------------------------------ models with weights


@lru_cache(maxsize=None)
def load_model(name: str):
    """(model in eval mode on CPU, its card), cached per process. Raises weights.WeightsError."""
    from . import weights

    model, card = weights.load_weights(name, device="cpu")
    model.eval()
    with torch.inference_mode():  # warm-up: the first pass allocates and picks kernels
        model(torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE))
    return model, card


@dataclass
class Prediction:
    model: str
    probs: dict[str, float] = field(default_factory=dict)   # class -> probability, every class of the
    #                                                         model's (card.classes), in label order
    latency_ms: float | None = None
    error: str | None = None                                  # e.g. "no weights"

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        return sorted(self.probs.items(), key=lambda kv: -kv[1])[:k]


@torch.inference_mode()
def predict_one(model, image32: np.ndarray, mean=None, std=None,
                classes=None) -> tuple[dict[str, float], float]:
    """Class probabilities of one 32x32 image (keyed by `classes`, default CIFAR-10's, in label
    order) and the forward-pass latency in ms."""
    classes = tuple(classes or CLASSES)
    kw = {} if mean is None else {"mean": mean, "std": std}
    x = normalize(to_tensor(image32), **kw)
    t0 = time.perf_counter()
    probs = model(x).float().softmax(1)[0]
    ms = (time.perf_counter() - t0) * 1000
    if len(probs) != len(classes):
        raise ValueError(f"the model predicts {len(probs)} classes, but {len(classes)} names were given")
    return {c: float(p) for c, p in zip(classes, probs)}, ms


# The first forward passes of a fresh model allocate buffers and pick kernels: not representative.
LATENCY_WARMUP = 2


def measure_latency(names: list[str] | None = None, runs: int = 10,
                    warmup: int = LATENCY_WARMUP) -> dict:
    """Batch-1 CPU forward latency of each named zoo model (default: all): the one timing the
    CLI's docs/latency.json, the README's table and the Model zoo tab all show.

    Each model's figure is the median of `runs` timed passes (predict_one's clock) on the
    bundled sample image after `warmup` untimed ones. Models are built fresh with random
    weights: the speed depends on the architecture, not on the values, and no cached model
    (the Predict tab's) is touched. Returns how it was measured beside the figures:
    {"batch": 1, "precision": "fp32", "runs", "warmup", "threads", "latency_ms": {name: ms}}.
    """
    from . import data, zoo

    image32 = data.load_sample().images[0].permute(1, 2, 0).numpy()
    ms = {}
    for name in names or zoo.names():
        spec = zoo.get_spec(name)
        model = zoo.create(name).eval()
        times = [predict_one(model, image32, spec.mean, spec.std)[1] for _ in range(warmup + runs)]
        ms[name] = statistics.median(times[warmup:])
    return {"batch": 1, "precision": "fp32", "runs": runs, "warmup": warmup,
            "threads": torch.get_num_threads(), "latency_ms": ms}


def latency_method(record: dict) -> str:
    """What a latency record measured, in words: the start of every note that shows one."""
    return (f"one 32x32 image (batch {record['batch']}, {record['precision']}), median of "
            f"{record['runs']} forward passes")


def predict_many(image32: np.ndarray, names: list[str] | None = None) -> list[Prediction]:
    """Every named model (default: the whole zoo) on one image, each with its card's classes;
    models without weights say so. A name may be any weights/ pair (e.g. an export of other
    classes, "airnet-leaves")."""
    from . import weights, zoo

    names = names or zoo.names()
    have = set(weights.available())
    out = []
    for name in names:
        if name not in have:
            out.append(Prediction(name, error="no weights shipped yet"))
            continue
        try:
            model, card = load_model(name)
        except Exception as exc:  # a tampered or wrong file: shown, never faked
            out.append(Prediction(name, error=str(exc)))
            continue
        spec = zoo.get_spec(card.zoo_name)
        probs, ms = predict_one(model, image32, spec.mean, spec.std, card.class_names)
        out.append(Prediction(name, probs, ms))
    return out


def ensemble(predictions: list[Prediction]) -> dict[str, float]:
    """Mean of the probabilities of the models that predicted (soft vote), over the models of one
    class list: a vote between models of different classes means nothing. Where the models
    disagree on their classes, the list most of them share wins (the first one's on a tie)."""
    ok = [p for p in predictions if p.error is None]
    if not ok:
        return {}
    lists = [tuple(p.probs) for p in ok]
    common = max(dict.fromkeys(lists), key=lists.count)  # dict.fromkeys: first-seen order for ties
    voters = [p for p in ok if tuple(p.probs) == common]
    return {c: sum(p.probs[c] for p in voters) / len(voters) for c in common}
