"""Uploads: every awkward or hostile file becomes a clean RGB image or a clear ImageError."""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from cifar_demo.data import pictures
from cifar_demo.data.pictures import ImageError, load_image, to_32x32


def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_plain_rgb_png_round_trips(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    path = tmp_path / "a.png"
    Image.fromarray(arr).save(path)
    assert np.array_equal(np.asarray(load_image(path)), arr)
    assert np.array_equal(np.asarray(load_image(path.read_bytes())), arr)


def test_rgba_is_composited_on_white():
    img = Image.new("RGBA", (8, 8), (255, 0, 0, 0))          # fully transparent red
    img.putpixel((0, 0), (0, 0, 255, 255))                     # one opaque blue pixel
    out = np.asarray(load_image(_png(img)))
    assert tuple(out[1, 1]) == (255, 255, 255) and tuple(out[0, 0]) == (0, 0, 255)


def test_grayscale_palette_and_cmyk_become_rgb():
    gray = load_image(_png(Image.new("L", (5, 5), 100)))
    assert gray.mode == "RGB" and tuple(np.asarray(gray)[0, 0]) == (100, 100, 100)
    pal = Image.new("P", (5, 5))
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    pal.putpixel((2, 2), 1)
    assert tuple(np.asarray(load_image(_png(pal)))[2, 2]) == (10, 200, 30)
    cmyk = load_image(_save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95))
    r, g, b = np.asarray(cmyk)[8, 8]
    assert cmyk.mode == "RGB" and r > 200 and g < 60 and b < 60  # CMYK red stays red


def test_16bit_png_is_scaled_to_8bit():
    arr = np.full((6, 6), 65535 // 2, dtype=np.uint16)
    img = load_image(_png(Image.fromarray(arr)))
    assert img.mode == "RGB" and abs(int(np.asarray(img)[0, 0, 0]) - 127) <= 1


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    r, g, b = np.asarray(load_image(buf.getvalue()))[5, 5]
    assert r > 200 and g < 50


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"hello, I am a text file, not a picture", "not an image"),
    (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>', "SVG"),
    (b"<svg width='10' height='10'></svg>", "SVG"),
])
def test_non_images_are_refused_clearly(data, message):
    with pytest.raises(ImageError, match=message):
        load_image(data)


def test_truncated_file_is_refused():
    data = _save(Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)),
                 "JPEG")
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(data[: len(data) // 2])


def test_oversized_upload_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(pictures, "MAX_BYTES", 1000)
    path = tmp_path / "big.png"
    path.write_bytes(b"\x89PNG" + b"\0" * 2000)
    with pytest.raises(ImageError, match="limit"):
        load_image(path)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels but carries (almost) no data: a bomb."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(ImageError, match="megapixels|bomb"):
        load_image(_png_header_only(30000, 30000))


def test_to_32x32_centre_crops_a_wide_image():
    arr = np.zeros((100, 300, 3), np.uint8)
    arr[:, 100:200] = 255  # the white centre square survives the crop, the black sides go
    out = to_32x32(Image.fromarray(arr))
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8 and out.mean() > 250


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_for_the_same_thumbnail():
    """A 2000x1500 photo: libjpeg decodes it at 1/4 of its size (each side still >= 8x the
    thumbnail's), and the 32x32 the models see stays within a level or two of the full decode's."""
    from cifar_demo import data

    photo = Image.open(data.sample_paths()[12][0]).convert("RGB").resize((2000, 1500), Image.Resampling.BICUBIC)
    jpeg = _save(photo, "JPEG", quality=92)
    assert load_image(jpeg, at_least=pictures.THUMB_SOURCE).size == (500, 375)
    assert load_image(_png(photo), at_least=pictures.THUMB_SOURCE).size == (2000, 1500)   # PNG: every pixel
    full, small = to_32x32(load_image(jpeg)).astype(int), pictures.thumbnail(jpeg).astype(int)
    assert np.abs(full - small).max() <= 2 and np.abs(full - small).mean() < 0.3


def test_an_uploaded_file_is_decoded_once_for_its_two_questions(tmp_path, monkeypatch):
    """/predict and /familiarity ask about one upload at the same time: one decoding serves both,
    an error too; a changed file is decoded again."""
    import threading

    from PIL import Image

    from cifar_demo.data import pictures

    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(path)
    real, calls = pictures.load_image, []
    gate = threading.Event()

    def slow_load(source, *a, **k):
        calls.append(source)
        gate.wait(5)   # the second caller arrives while the first decodes
        return real(source, *a, **k)

    monkeypatch.setattr(pictures, "load_image", slow_load)
    got = []
    threads = [threading.Thread(target=lambda: got.append(pictures.thumbnail_of_file(path))) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in threads:
        t.join(10)
    assert len(calls) == 1 and len(got) == 2 and np.array_equal(got[0], got[1])
    assert np.array_equal(got[0], pictures.to_32x32(real(path)))
    got[0][:] = 0   # each caller has its own copy
    assert not np.array_equal(pictures.thumbnail_of_file(path), got[0]) and len(calls) == 1
    path.write_bytes(b"not a picture")
    for _ in range(2):
        with pytest.raises(pictures.ImageError):
            pictures.thumbnail_of_file(path)
    assert len(calls) == 2
