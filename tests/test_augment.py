"""Tests for cifar_demo.augment: device transforms, presets, batch mixes, previews."""

from __future__ import annotations

import pytest
import torch

from cifar_demo import augment as A


def _pattern(n: int = 6, c: int = 3, h: int = 8, w: int = 8, dtype=torch.float32) -> torch.Tensor:
    """A batch whose every pixel value is unique and non-zero (so zeros mark padding)."""
    return (torch.arange(n * c * h * w) % 250 + 1).to(dtype).view(n, c, h, w)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- batch_crop ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_batch_crop_is_a_translated_window_of_the_padded_input(dtype):
    pad = 2
    x = _pattern(n=16, dtype=dtype)
    out = A.batch_crop(x, pad, _gen())
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = torch.nn.functional.pad(x, (pad,) * 4)
    offsets = set()
    for i in range(len(x)):
        windows = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                   if torch.equal(out[i], padded[i, :, dy:dy + 8, dx:dx + 8])]
        assert len(windows) == 1, f"image {i} is not a window of its padded self"
        offsets.add(windows[0])
    assert len(offsets) > 3, "offsets should vary across the batch"


def test_batch_crop_pad_zero_is_identity():
    x = _pattern()
    assert torch.equal(A.batch_crop(x, 0, _gen()), x)


# --- batch_flip ------------------------------------------------------------------------

def test_batch_flip_flips_exactly_the_chosen_images():
    x = _pattern(n=64)
    out = A.batch_flip(x, _gen(1))
    flipped = [torch.equal(out[i], torch.flip(x[i], dims=[-1])) for i in range(len(x))]
    kept = [torch.equal(out[i], x[i]) for i in range(len(x))]
    assert all(f != k for f, k in zip(flipped, kept)), "each image is either flipped or kept"
    assert 16 < sum(flipped) < 48, "about half are flipped"
    # The choice comes from the generator: the same draw that batch_flip makes.
    chosen = torch.rand(64, generator=_gen(1)) < 0.5
    assert flipped == chosen.tolist()


# --- batch_cutout ----------------------------------------------------------------------

@pytest.mark.parametrize("size", [1, 3, 4])
def test_batch_cutout_zeroes_one_clipped_square_per_image(size):
    n, h, w = 200, 8, 8
    x = torch.full((n, 3, h, w), 7, dtype=torch.uint8)
    out = A.batch_cutout(x, size, _gen(2))
    zero = out == 0
    assert torch.equal(zero[:, 0], zero[:, 1]) and torch.equal(zero[:, 0], zero[:, 2])
    clipped = 0
    for i in range(n):
        ys, xs = torch.nonzero(zero[i, 0], as_tuple=True)
        assert len(ys) > 0
        hgt, wid = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        assert len(ys) == hgt * wid, "the hole is one filled rectangle"
        assert hgt <= size and wid <= size
        # A side shorter than `size` only where the square meets the border.
        assert hgt == size or ys.min() == 0 or ys.max() == h - 1
        assert wid == size or xs.min() == 0 or xs.max() == w - 1
        clipped += int(len(ys) < size * size)
    assert (out[~zero] == 7).all()
    if size > 1:
        assert 0 < clipped < n, "some, not all, squares are clipped"


# --- determinism and devices -----------------------------------------------------------

def test_generator_determinism():
    x = _pattern(n=32, dtype=torch.uint8)
    for fn in (lambda g: A.batch_crop(x, 2, g), lambda g: A.batch_flip(x, g),
               lambda g: A.batch_cutout(x, 3, g),
               lambda g: A.device_augment(x, **{**A.DEVICE_PRESETS["standard"], "cutout": 2}, generator=g)):
        assert torch.equal(fn(_gen(5)), fn(_gen(5)))
        assert not torch.equal(fn(_gen(5)), fn(_gen(6)))


def test_device_presets():
    assert A.DEVICE_PRESETS["none"] == {"crop_pad": 0, "flip": False, "cutout": 0}
    assert A.DEVICE_PRESETS["standard"] == {"crop_pad": 4, "flip": True, "cutout": 0}
    x = _pattern(n=4, h=32, w=32, dtype=torch.uint8)
    assert torch.equal(A.device_augment(x, **A.DEVICE_PRESETS["none"], generator=_gen()), x)
    assert A.device_augment(x, **A.DEVICE_PRESETS["standard"], generator=_gen()).shape == x.shape
