"""Tests for cifar_demo.augment: device transforms, batch mixes, previews (the presets and
their pipelines: test_augment_presets.py)."""

from __future__ import annotations

import pytest
import torch

from cifar_demo import augment as A
from cifar_demo.common import CLASSES


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


# --- determinism ---------------------------------------------------------------------

def test_generator_determinism():
    x = _pattern(n=32, dtype=torch.uint8)
    for fn in (lambda g: A.batch_crop(x, 2, g), lambda g: A.batch_flip(x, g),
               lambda g: A.batch_cutout(x, 3, g)):
        assert torch.equal(fn(_gen(5)), fn(_gen(5)))
        assert not torch.equal(fn(_gen(5)), fn(_gen(6)))


# --- batch mixes -----------------------------------------------------------------------

COLOURS = (11, 53, 97, 151, 199, 241)


def _coloured(n: int = 6, h: int = 16, w: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image one unique constant colour; label i for image i."""
    x = torch.tensor(COLOURS[:n], dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, h, w).contiguous()
    return x, torch.arange(n)


def _pixel_shares(mixed: torch.Tensor, n: int) -> torch.Tensor:
    """(N, N): share of each output image's pixels that carry source image j's colour."""
    colours = torch.tensor(COLOURS[:n], dtype=mixed.dtype)
    plane = mixed[:, 0]
    return torch.stack([(plane == c).float().mean(dim=(1, 2)) for c in colours], dim=1)


@pytest.mark.parametrize("seed", range(5))
def test_cutmix_soft_labels_are_the_pixel_areas(seed):
    x, y = _coloured()
    mixed, soft = A.cutmix(x, y, num_classes=10, generator=_gen(seed))
    assert mixed.shape == x.shape and soft.shape == (6, 10) and soft.dtype == torch.float32
    assert torch.allclose(soft.sum(1), torch.ones(6))
    assert torch.allclose(soft[:, :6], _pixel_shares(mixed, 6))


@pytest.mark.parametrize("seed", range(5))
def test_ricap_soft_labels_are_the_pixel_areas(seed):
    x, y = _coloured()
    mixed, soft = A.ricap(x, y, num_classes=10, alpha=1.0, generator=_gen(seed))
    assert mixed.shape == x.shape
    assert torch.allclose(soft.sum(1), torch.ones(6))
    shares = _pixel_shares(mixed, 6)
    assert torch.allclose(shares.sum(1), torch.ones(6))
    assert torch.allclose(soft[:, :6], shares)


def test_ricap_boundary_at_the_edge_and_crops_are_windows_of_sources():
    x = _pattern(n=4, h=8, w=8)
    mixed, soft = A.ricap(x, torch.arange(4), generator=_gen(), boundary=(0.5, 0.25))
    # Top-left rectangle (4 x 2) of image 0 is a window of image 0 itself.
    tl = mixed[0, :, :4, :2]
    assert any(torch.equal(tl, x[0, :, i:i + 4, j:j + 2]) for i in range(5) for j in range(7))
    assert torch.allclose(soft[0, :4], torch.tensor([8, 24, 8, 24]) / 64)
    whole, soft = A.ricap(x, torch.arange(4), generator=_gen(), boundary=(1.0, 1.0))
    assert torch.equal(whole, x) and torch.equal(soft, torch.eye(10)[:4])


def test_mixup_lambda_matches_the_pixel_blend_and_torchvision():
    from torchvision.transforms import v2

    x = torch.rand(6, 3, 8, 8)
    y = torch.arange(6)
    mixed, soft = A.mixup(x, y, generator=_gen(3))
    lam = float(soft[0, 0])
    assert 0 < lam < 1 and torch.allclose(soft.sum(1), torch.ones(6))
    assert torch.allclose(mixed, lam * x + (1 - lam) * x.roll(1, 0), atol=1e-6)
    # Same pairing and label rule as torchvision's MixUp for the same lambda.
    torch.manual_seed(0)
    tv_mixed, tv_soft = v2.MixUp(num_classes=10)(x, y)
    tv_lam = float(tv_soft[0, 0])
    ours = A.mixup(x, y, lam=tv_lam)
    assert torch.allclose(ours[0], tv_mixed, atol=1e-6) and torch.allclose(ours[1], tv_soft)
    # uint8 batches come back uint8, within rounding of the exact blend.
    xu, _ = _coloured()
    mu, su = A.mixup(xu, torch.arange(6), lam=0.3)
    assert mu.dtype == torch.uint8
    exact = 0.3 * xu.float() + 0.7 * xu.roll(1, 0).float()
    assert (mu.float() - exact).abs().max() <= 0.5


def test_mixes_are_deterministic_with_a_generator():
    x, y = _coloured()
    for fn in (A.mixup, A.cutmix, A.ricap):
        a, b = fn(x, y, generator=_gen(9)), fn(x, y, generator=_gen(9))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_batch_mixer_respects_probabilities():
    x, y = _coloured()
    mixer = A.BatchMixer({"ricap": 0.2, "mixup": 0.3, "cutmix": 0.3}, generator=_gen(0))
    counts = {"ricap": 0, "mixup": 0, "cutmix": 0, None: 0}
    for _ in range(2000):
        counts[mixer.choose()] += 1
    for name, p in [("ricap", 0.2), ("mixup", 0.3), ("cutmix", 0.3), (None, 0.2)]:
        assert abs(counts[name] / 2000 - p) < 0.04, counts
    seen = set()
    for _ in range(40):
        images, soft = mixer(x, y)
        seen.add(mixer.last)
        assert images.shape == x.shape and soft.shape == (6, 10)
        assert torch.allclose(soft.sum(1), torch.ones(6))
        if mixer.last is None:
            assert torch.equal(images, x) and torch.equal(soft, torch.eye(10)[:6])
    assert seen == {"ricap", "mixup", "cutmix", None}


def test_batch_mixer_draws_the_same_mixes_whatever_the_order_of_its_probabilities():
    """A resumed run reads its mixes back from config.json, keys sorted: {"cutmix", "mixup",
    "ricap"} where the preset said {"ricap", "mixup", "cutmix"}. The same draws must pick the same
    mixes (they picked others, and optimized200k's SIGKILLed and resumed run diverged from the
    uninterrupted one)."""
    preset = {"ricap": 0.2, "mixup": 0.3, "cutmix": 0.3}
    a = A.BatchMixer(preset, generator=_gen(0))
    b = A.BatchMixer(dict(sorted(preset.items())), generator=_gen(0))
    assert [a.choose() for _ in range(200)] == [b.choose() for _ in range(200)]


def test_a_run_resumed_from_its_config_json_with_batch_mixes_is_bit_exact(tmp_path):
    from cifar_demo.train import engine
    from tests.helpers import StopAfter, cfg, write_imagefolder

    data = write_imagefolder(tmp_path / "data", n_train=6)   # 60 training images
    c = cfg(data=str(data), val_size=20, epochs=2, batch_size=10, mixes={"ricap": 0.2, "mixup": 0.3, "cutmix": 0.3},
            num_workers=0)
    full = engine.Trainer(c, runs_dir=tmp_path / "full")
    full.run()
    part = engine.Trainer(c, runs_dir=tmp_path / "part", stop_event=StopAfter(6))   # stopped in epoch 2
    part.run()
    engine.Trainer.resuming(part.run_dir).run()   # its config from config.json, as the CLI's --resume
    a = torch.load(full.run_dir / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(part.run_dir / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_batch_mixer_validates_and_takes_alpha():
    with pytest.raises(ValueError):
        A.BatchMixer({"ricap": 0.5, "mixup": 0.4, "cutmix": 0.3})
    with pytest.raises(ValueError):
        A.BatchMixer({"mosaic": 0.1})
    with pytest.raises(ValueError):
        A.BatchMixer({"mixup": -0.1})
    assert A.BatchMixer({"mixup": 1.0}, alpha=0.4).alpha == {"mixup": 0.4, "cutmix": 0.4, "ricap": 0.4}
    assert A.BatchMixer({}, alpha={"mixup": 0.2}).alpha == {"mixup": 0.2, "cutmix": 1.0, "ricap": 0.3}
    x, y = _coloured()
    images, soft = A.BatchMixer({})(x, y)
    assert torch.equal(images, x) and torch.equal(soft.argmax(1), y)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_mixup_targets_give_the_papers_loss(smoothing):
    """Training takes F.cross_entropy of the mixed batch against its soft targets; that is the
    MixUp paper's lam * CE(y_i) + (1 - lam) * CE(y_i-1), with label smoothing applied to both."""
    ce = torch.nn.functional.cross_entropy
    logits = torch.randn(8, 10, generator=_gen(4))
    y = torch.randint(0, 10, (8,), generator=_gen(5))
    _, soft = A.mixup(torch.rand(8, 3, 4, 4), y, lam=0.3)
    expected = (0.3 * ce(logits, y, label_smoothing=smoothing)
                + 0.7 * ce(logits, y.roll(1, 0), label_smoothing=smoothing))
    assert torch.allclose(ce(logits, soft, label_smoothing=smoothing), expected, atol=1e-6)


# --- previews --------------------------------------------------------------------------

def test_transforms_describe_sliders():
    for name, t in A.TRANSFORMS.items():
        assert t.name == name and t.teaches.endswith(".") and t.kind in A.KINDS
        for p in t.params.values():
            assert p.min <= p.default <= p.max and p.step > 0
    # Every preset that changes images is made of transforms the tab shows.
    augmenting = {name for name in A.PRESETS if name != "none"}
    assert {p for t in A.TRANSFORMS.values() for p in t.presets} == augmenting
    assert A.TRANSFORMS["flip"].preset == "standard" and A.TRANSFORMS["cutout"].presets == ()


@pytest.mark.parametrize("name", list(A.TRANSFORMS))
def test_preview_transform_count_shapes_and_seed(name):
    import numpy as np

    image = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = A.preview_transform(image, name, n=5, seed=1)
    assert len(out) == 5 and all(o.shape == (32, 32, 3) and o.dtype == np.uint8 for o in out)
    again = A.preview_transform(image, name, n=5, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(out, again))
    # With probability 1 every draw changes the image (AutoAugment's sub-policies carry
    # their own probabilities, so there only most draws do).
    forced = {k: 1.0 for k in ("p",) if k in A.TRANSFORMS[name].params}
    changed = [not np.array_equal(o, image)
               for o in A.preview_transform(image, name, n=8, seed=2, **forced)]
    assert all(changed) if name != "autoaugment" else sum(changed) >= 4


def test_preview_transform_params_and_errors():
    import numpy as np

    image = np.full((20, 24, 3), 200, np.uint8)
    holes = A.preview_transform(image, "cutout", n=3, size=4)
    assert all(0 < int((o == 0).all(axis=2).sum()) <= 16 for o in holes)
    assert all(np.array_equal(o, image) for o in A.preview_transform(image, "crop", n=3, pad=0))
    with pytest.raises(ValueError):
        A.preview_transform(image, "nope")
    with pytest.raises(ValueError):
        A.preview_transform(image, "crop", nope=1)
    with pytest.raises(ValueError):
        A.preview_transform(image[..., 0], "crop")


@pytest.mark.parametrize("method,count", [("mixup", 2), ("cutmix", 2), ("cutmix", 3),
                                          ("ricap", 2), ("ricap", 3), ("ricap", 4)])
def test_preview_mix_weights_match_pixels(method, count):
    import numpy as np

    images = [np.full((32, 32, 3), COLOURS[i], np.uint8) for i in range(count)]
    labels = [3, 5, 7, 9][:count]
    mixed, weights = A.preview_mix(images, labels, method, seed=4)
    assert mixed.shape == (32, 32, 3) and mixed.dtype == np.uint8
    assert abs(sum(weights.values()) - 1) < 1e-6 and set(weights) <= {CLASSES[c] for c in labels}
    if method != "mixup":
        for colour, label in zip(COLOURS, labels):
            share = float((mixed[..., 0] == colour).mean())
            assert abs(weights.get(CLASSES[label], 0.0) - share) < 1e-6


def test_preview_mix_params():
    import numpy as np

    a, b = np.full((32, 32, 3), 0, np.uint8), np.full((32, 32, 3), 200, np.uint8)
    mixed, weights = A.preview_mix([a, b], [0, 1], "mixup", lam=0.25)
    assert weights == pytest.approx({"airplane": 0.25, "automobile": 0.75})
    assert (mixed == 150).all()
    _, weights = A.preview_mix([a, b, a, b], [0, 1, 2, 3], "ricap", boundary_y=0.5, boundary_x=0.25)
    assert weights == pytest.approx({"airplane": 0.125, "automobile": 0.375, "bird": 0.125, "cat": 0.375})
    with pytest.raises(ValueError):
        A.preview_mix([a], [0], "mixup")
    with pytest.raises(ValueError):
        A.preview_mix([a, b], [0, 1], "mosaic")
    with pytest.raises(ValueError):
        A.preview_mix([a, b[:16]], [0, 1], "cutmix")


def test_upscale_nearest():
    import numpy as np

    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    big = A.upscale_nearest(image, scale=4)
    assert big.shape == (8, 12, 3) and np.array_equal(big[::4, ::4], image)
    assert np.array_equal(big[4:8, 8:12], np.broadcast_to(image[1, 2], (4, 4, 3)))
