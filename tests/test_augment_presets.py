"""Tests for cifar_demo.augment's preset table and per-image pipelines. Presets are run
through the data loaders, as training runs them, and checked against what the table says."""

from __future__ import annotations

import pytest
import torch

from cifar_demo import augment as A
from cifar_demo import data as D


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- the table, through the loaders ----------------------------------------------------

def _windows(src: torch.Tensor, out: torch.Tensor, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: the largest shift (pixels) and whether it was mirrored, such that out[i] is a
    pad-`pad` crop of src[i], flipped or not; AssertionError if some out[i] is neither."""
    padded = torch.nn.functional.pad(src, (pad,) * 4)
    h, w = src.shape[-2:]
    shift = torch.full((len(src),), -1)
    mirrored = torch.zeros(len(src), dtype=torch.bool)
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            window = padded[..., dy:dy + h, dx:dx + w]
            for flip in (False, True):
                hit = (window == (out.flip(-1) if flip else out)).flatten(1).all(1)
                shift[hit] = max(abs(dy - pad), abs(dx - pad))
                mirrored[hit] = flip
    assert (shift >= 0).all(), "some images are no crop of their source"
    return shift, mirrored


@pytest.mark.parametrize("name", list(A.DEVICE_PRESETS))
def test_device_presets_do_what_the_table_says_through_the_tensor_loader(name):
    """TensorLoader (what training runs) crops by at most crop_pad, and reaches it; flips
    about half the images, none, or each image on alternate sides epoch after epoch."""
    n = 128
    images = torch.randint(1, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=_gen(1))  # 0 marks padding
    loader = D.TensorLoader(D.Split(images, torch.arange(n) % 10), n, shuffle=False, augment=name, seed=4)
    preset = A.get_preset(name)
    flips = []
    for epoch in (0, 1):
        (x, _), = list(loader.iter_from(epoch))
        out = (x * 255).round().to(torch.uint8)  # mean 0, std 1: the loader's x is pixels / 255
        shift, mirrored = _windows(images, out, max(preset.crop_pad, 1))
        assert int(shift.max()) == preset.crop_pad
        flips.append(mirrored)
    if not preset.flip:
        assert not flips[0].any() and not flips[1].any()
    else:
        assert 0.3 < flips[0].float().mean() < 0.7
        alternate = torch.equal(flips[1], ~flips[0])
        assert alternate == (preset.flip == "alternate")
    if name == "none":
        assert torch.equal(out, images)


@pytest.mark.parametrize("name", list(A.PRESETS))
def test_each_preset_runs_on_the_loader_its_kind_names(name):
    split = D.Split(torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=_gen(2)), torch.arange(8))
    kind = A.preset_kind(name)
    builders = {"albumentations": A.build_albumentations, "torchvision": A.build_torchvision}
    if kind == "device":
        x, _ = next(iter(D.TensorLoader(split, 4, augment=name)))
        with pytest.raises(ValueError, match="TensorLoader"):
            D.PerImageLoader(split, name, 4, num_workers=0)
    else:
        with pytest.raises(ValueError, match="PerImageLoader"):
            D.TensorLoader(split, 4, augment=name)
        x, _ = next(iter(D.PerImageLoader(split, name, 4, num_workers=0)))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
    assert {k for k, build in builders.items() if build(name) is not None} == ({kind} - {"device"})
    # The app names the preset with its description and previews each of its steps.
    assert A.PRESETS[name].strip()
    for step in A.get_preset(name).transforms:
        assert name in A.TRANSFORMS[step].presets


def test_unknown_presets_and_inconsistent_entries_are_refused():
    with pytest.raises(ValueError, match="choose from"):
        A.preset_kind("nope")
    with pytest.raises(ValueError, match="not a device preset"):
        D.TensorLoader(D.Split(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.arange(4)), 2, augment="nope")
    for bad in [dict(kind="gpu"), dict(kind="device", pipeline=("flip",)), dict(kind="albumentations"),
                dict(kind="torchvision", crop_pad=4, pipeline=("autoaugment",))]:
        with pytest.raises(ValueError):
            A.Preset("x", description="a bad entry", **bad)


# --- per-image pipelines --------------------------------------------------------------

def test_seed004_builds_the_five_transforms_with_their_probabilities():
    import albumentations as alb

    compose = A.build_albumentations("seed004")
    assert isinstance(compose, alb.Compose)
    got = [(type(t).__name__, t.p) for t in compose.transforms]
    assert got == [("HorizontalFlip", 0.5), ("Affine", 0.5), ("RandomBrightnessContrast", 0.5),
                   ("HueSaturationValue", 0.5), ("CoarseDropout", 0.3)]
    for name in ("none", "standard", "autoaugment"):
        assert A.build_albumentations(name) is None


def test_seed004_parameters_are_overridable():
    compose = A.build_albumentations("seed004", affine={"rotate": 30, "p": 0.9},
                                     coarse_dropout={"holes": 3, "size": 4})
    affine, dropout = compose.transforms[1], compose.transforms[4]
    assert affine.p == 0.9 and tuple(affine.rotate) == (-30, 30)
    assert tuple(dropout.num_holes_range) == (1, 3) and tuple(dropout.hole_height_range) == (4, 4)
    with pytest.raises(ValueError):
        A.build_albumentations("seed004", affine={"nope": 1})
    with pytest.raises(ValueError):
        A.build_albumentations("seed004", nope={"p": 1})


def test_seed004_runs_and_reseeding_shares_one_stream():
    import numpy as np

    image = np.random.default_rng(0).integers(1, 256, (32, 32, 3), dtype=np.uint8)
    compose = A.build_albumentations("seed004", affine={"p": 0.0}, brightness_contrast={"p": 0.0},
                                     hue_saturation_value={"p": 0.0})
    A.reseed_albumentations(compose, 0)
    # One stream for all children (Compose(seed=...) would give each its own copy of one seed).
    assert all(t.py_random is compose.py_random and t.random_generator is compose.random_generator
               for t in compose.transforms)
    flips = drops = both = 0
    for _ in range(200):
        out = compose(image=image)["image"]
        assert out.shape == image.shape and out.dtype == np.uint8
        hole = (out == 0).all(axis=2)[..., None]
        flipped = np.array_equal(np.where(hole, 0, out), np.where(hole, 0, image[:, ::-1]))
        dropped = hole.sum() >= 64
        flips, drops, both = flips + flipped, drops + dropped, both + (flipped and dropped)
    assert 70 < flips < 130 and 35 < drops < 85 and 10 < both < 50
    again = A.build_albumentations("seed004")
    A.reseed_albumentations(again, 7)
    first = [again(image=image)["image"] for _ in range(3)]
    A.reseed_albumentations(again, 7)
    assert all(np.array_equal(a, again(image=image)["image"]) for a in first)


def test_autoaugment_runs_on_uint8_tensor_and_pil():
    import numpy as np
    from PIL import Image

    tv = A.build_torchvision("autoaugment")
    # "Pad-4 crop and flip, then AutoAugment with its CIFAR-10 policy", in that order
    assert [type(t).__name__ for t in tv.transforms] == ["RandomCrop", "RandomHorizontalFlip", "AutoAugment"]
    assert tv.transforms[0].padding == [4, 4, 4, 4] and tv.transforms[1].p == 0.5
    assert tv.transforms[2].policy == tv.transforms[2].policy.CIFAR10
    x = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    out = tv(x)
    assert out.shape == (3, 32, 32) and out.dtype == torch.uint8
    pil = tv(Image.fromarray(np.zeros((32, 32, 3), np.uint8)))
    assert pil.size == (32, 32)
    assert A.build_torchvision("seed004") is None and A.build_torchvision("standard") is None
