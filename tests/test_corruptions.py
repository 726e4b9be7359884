"""augment.corruptions: the CIFAR-10-C corruptions as batched torch code.

Each corruption is checked against what it must do (an exact property, or an independent
reference: OpenCV for blurs and HSV, PIL for JPEG and pixelate), and every one must leave
severity 0 alone, grow with severity, and be fixed by its seed.
"""

import io
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from cifar_demo import data
from cifar_demo.augment import corruptions as C

NAMES = list(C.CORRUPTIONS)
RANDOM = {"gaussian_noise", "shot_noise", "impulse_noise", "motion_blur", "fog"}
BLURS = ("gaussian_blur", "defocus_blur", "motion_blur")


@pytest.fixture(scope="module")
def sample() -> torch.Tensor:
    return data.load_sample().images[::5]   # 10 real test images, one per class


def flat(value: int, n: int = 4, size: int = 32) -> torch.Tensor:
    return torch.full((n, 3, size, size), value, dtype=torch.uint8)


def noise_images(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def run(name: str, batch: torch.Tensor, severity: int, seed: int = 0) -> torch.Tensor:
    return C.CORRUPTIONS[name](batch, severity, torch.Generator().manual_seed(seed))


def damage(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().mean())


def high_frequency(x: torch.Tensor) -> float:
    """Mean absolute difference between neighbouring pixels: what a blur removes."""
    x = x.double()
    return float((x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., 1:] - x[..., :-1]).abs().mean())


# ----------------------------------------------------------------------------- the table

def test_the_table_covers_the_issue_and_the_published_severities():
    wanted = {"gaussian_noise", "shot_noise", "impulse_noise", "gaussian_blur", "defocus_blur", "motion_blur",
              "brightness", "contrast", "fog", "jpeg", "pixelate", "saturate"}
    assert wanted <= set(C.CORRUPTIONS)
    for name, c in C.CORRUPTIONS.items():
        assert c.name == name and len(c.params) == C.MAX_SEVERITY
        assert c.title and len(c.teaches) > 80 and c.family in ("noise", "blur", "weather", "digital")
    assert C.SEVERITIES == (0, 1, 2, 3, 4, 5)


def test_bad_inputs_are_refused(sample):
    with pytest.raises(ValueError, match="severity"):
        C.corrupt(sample, "fog", 6)
    with pytest.raises(ValueError, match="uint8"):
        C.corrupt(sample.float(), "fog", 1)
    with pytest.raises(ValueError, match="unknown corruption 'snow'"):
        C.corrupt(sample, "snow", 1)


@pytest.mark.parametrize("name", NAMES)
def test_severity_0_is_the_identity_and_a_copy(name, sample):
    out = run(name, sample, 0)
    assert torch.equal(out, sample) and out.data_ptr() != sample.data_ptr()


@pytest.mark.parametrize("name", NAMES)
def test_output_is_uint8_of_the_same_shape_and_not_the_input(name, sample):
    odd = torch.cat([sample[:2, :, :24, :], sample[2:4, :, 8:, :]])   # 24x32: not square
    for batch in (sample, odd):
        for severity in (1, 5):
            out = run(name, batch, severity)
            assert out.dtype == torch.uint8 and out.shape == batch.shape and out.device == batch.device
            assert not torch.equal(out, batch)


@pytest.mark.parametrize("name", NAMES)
def test_a_seed_fixes_the_result(name, sample):
    assert torch.equal(C.corrupt(sample, name, 3, seed=1), C.corrupt(sample, name, 3, seed=1))
    other = C.corrupt(sample, name, 3, seed=2)
    assert torch.equal(other, C.corrupt(sample, name, 3, seed=1)) == (name not in RANDOM)


def test_a_batch_is_corrupted_image_by_image_independently_of_the_device_of_the_draws(sample):
    # The generator decides; drawing then moving (as on a GPU) gives the CPU's pixels.
    for name in RANDOM:
        assert torch.equal(run(name, sample, 2, seed=5), run(name, sample.clone(), 2, seed=5))


# ----------------------------------------------------------------------------- damage grows

@pytest.mark.parametrize("name", [n for n in NAMES if n != "saturate"])
def test_damage_grows_with_severity(name, sample):
    # The same draws at every severity, so only the strength differs.
    d = [damage(run(name, sample, s), sample) for s in C.SEVERITIES]
    assert d[0] == 0
    for s in range(1, C.MAX_SEVERITY):
        if name == "motion_blur" and s == 3:
            # Published (6, 2) -> (8, 2): four more taps, of weight exp(-13**2/8) ~ 1e-9. Equal.
            assert d[4] == pytest.approx(d[3], abs=0.05)
        else:
            assert d[s + 1] > d[s], (s, d)


def test_saturation_grows_away_from_the_original_in_both_directions(sample):
    # Published order: severities 1-2 wash colour out (x0.3, x0.1), 3-5 boost it.
    spread = [float((run("saturate", sample, s).double().amax(1) - run("saturate", sample, s).double().amin(1)).mean())
              for s in C.SEVERITIES]
    assert spread[2] < spread[1] < spread[0] < spread[3] < spread[4] < spread[5]


@pytest.mark.parametrize("name", BLURS)
def test_blurs_remove_high_frequencies_more_with_severity(name, sample):
    hf = [high_frequency(run(name, sample, s)) for s in C.SEVERITIES]
    for s in range(C.MAX_SEVERITY):
        if name == "motion_blur" and s == 3:
            assert hf[4] == pytest.approx(hf[3], rel=1e-3)
        else:
            assert hf[s + 1] < hf[s], (s, hf)


@pytest.mark.parametrize("name", BLURS + ("contrast",))
def test_a_flat_picture_stays_flat(name):
    assert torch.equal(run(name, flat(140), 5), flat(140))


# ----------------------------------------------------------------------------- noise

def test_gaussian_noise_has_the_published_sigma():
    out = run("gaussian_noise", flat(128, 16), 3).double() / 255 - 128 / 255
    assert abs(float(out.mean())) < 0.002 and float(out.std()) == pytest.approx(0.08, rel=0.03)


def test_shot_noise_is_poisson_with_the_published_photon_count():
    # At brightness v with c photons per unit: mean v, variance v / c.
    out = run("shot_noise", flat(128, 16), 3).double() / 255
    v = 128 / 255
    assert float(out.mean()) == pytest.approx(v, abs=0.003)
    assert float(out.var()) == pytest.approx(v / 100, rel=0.05)


def test_impulse_noise_sets_the_published_share_of_values_half_white_half_black():
    x = flat(128, 16)
    out = run("impulse_noise", x, 5)
    white, black = (out == 255).double().mean(), (out == 0).double().mean()
    assert float(white) == pytest.approx(0.035, rel=0.1) and float(black) == pytest.approx(0.035, rel=0.1)
    assert torch.equal(out[(out != 0) & (out != 255)], x[(out != 0) & (out != 255)])   # the rest untouched
    # Per value, not per pixel: hit pixels are mostly hit in one channel only.
    hits = ((out == 0) | (out == 255)).sum(1)
    assert (hits == 1).sum() > 5 * (hits == 3).sum()


# ----------------------------------------------------------------------------- blur

def test_gaussian_blur_equals_opencv(sample):
    for severity, sigma in enumerate(C.CORRUPTIONS["gaussian_blur"].params, 1):
        k = 2 * int(4 * sigma + 0.5) + 1
        ref = [cv2.GaussianBlur(img.astype(np.float32) / 255, (k, k), sigma, borderType=cv2.BORDER_REFLECT_101)
               for img in sample.permute(0, 2, 3, 1).numpy()]
        ref = np.clip(np.round(np.stack(ref) * 255), 0, 255)
        out = run("gaussian_blur", sample, severity).permute(0, 2, 3, 1).numpy().astype(np.float64)
        assert np.abs(out - ref).max() <= 1


def test_defocus_blur_equals_opencv_filtering_with_the_published_disk(sample):
    grid = np.arange(-8, 9)
    xx, yy = np.meshgrid(grid, grid)
    for severity, (radius, alias) in enumerate(C.CORRUPTIONS["defocus_blur"].params, 1):
        disk = ((xx ** 2 + yy ** 2) <= radius ** 2).astype(np.float32)
        kernel = cv2.GaussianBlur(disk / disk.sum(), (3, 3), alias)
        ref = [cv2.filter2D(img.astype(np.float32) / 255, -1, kernel) for img in sample.permute(0, 2, 3, 1).numpy()]
        ref = np.clip(np.round(np.stack(ref) * 255), 0, 255)
        out = run("defocus_blur", sample, severity).permute(0, 2, 3, 1).numpy().astype(np.float64)
        assert np.abs(out - ref).max() <= 1


def test_motion_blur_streaks_a_dot_along_one_line_to_one_side():
    x = torch.zeros(16, 3, 32, 32, dtype=torch.uint8)
    x[:, :, 16, 28] = 255
    out = run("motion_blur", x, 5)
    taps = C.motion_taps(9, 2.5)
    for img in out[:, 0]:
        ys, xs = torch.nonzero(img > 0, as_tuple=True)
        dy, dx = ys - 16, xs - 28
        assert (dx <= 0).all() and (dy.abs() <= dx.abs()).all()   # behind the dot, within 45 degrees
        # One line: every lit pixel within a pixel of the ray from the dot to the farthest one.
        far = int(dx.abs().argmax())
        u = torch.tensor([float(dx[far]), float(dy[far])]) / torch.hypot(dx[far].float(), dy[far].float())
        assert (dx * u[1] - dy * u[0]).abs().max() <= 1
        assert int(dx.abs().max()) >= 5                                  # a streak, not a dot
        assert int(img[16, 28]) == round(255 * float(taps[0]))         # the dot keeps the first tap


# ----------------------------------------------------------------------------- colour and weather

def test_hsv_agrees_with_opencv_and_round_trips():
    x = torch.rand(4, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    hsv = C.rgb_to_hsv(x)
    ref = cv2.cvtColor(x[0].permute(1, 2, 0).numpy().astype(np.float32), cv2.COLOR_RGB2HSV)
    assert np.allclose(hsv[0].permute(1, 2, 0).numpy(), ref / [360, 1, 1], atol=1e-5)
    assert torch.allclose(C.hsv_to_rgb(hsv), x, atol=1e-12)


def test_brightness_never_lowers_a_pixel_and_turns_black_grey(sample):
    for severity, c in enumerate(C.CORRUPTIONS["brightness"].params, 1):
        assert (run("brightness", sample, severity) >= sample).all()
        grey = run("brightness", flat(0), severity)
        assert (grey.int() - round(255 * c)).abs().max() <= 1
    # Hue and saturation kept: an unclipped colour is scaled as a whole, (V + c) / V.
    pixel = torch.tensor([100, 50, 25], dtype=torch.uint8).view(1, 3, 1, 1)
    out = run("brightness", pixel, 3).flatten().double()
    assert torch.allclose(out / out[0], torch.tensor([1, 0.5, 0.25], dtype=torch.float64), atol=0.01)
    assert float(out[0]) == pytest.approx(100 + 0.15 * 255, abs=1)


def test_contrast_keeps_each_images_channel_means_and_shrinks_the_spread(sample):
    for severity, c in enumerate(C.CORRUPTIONS["contrast"].params, 1):
        out = run("contrast", sample, severity).double()
        assert torch.allclose(out.mean((2, 3)), sample.double().mean((2, 3)), atol=0.5)
        assert torch.allclose(out.std((2, 3)), c * sample.double().std((2, 3)), atol=0.5)


def test_saturate_keeps_the_value_and_greys_until_the_offset_severities(sample):
    for severity in (1, 2, 3):
        out = run("saturate", sample, severity)
        assert (out.int().amax(1) - sample.int().amax(1)).abs().max() <= 1   # V kept
        assert torch.equal(run("saturate", flat(90), severity), flat(90))   # S = 0 stays 0
    assert not torch.equal(run("saturate", flat(90), 4), flat(90))          # S = 0.1 given


def test_plasma_fractal_spans_0_to_1_and_tiles():
    maps = C.plasma_fractal(8, 32, 2.0, torch.zeros(1), torch.Generator().manual_seed(0))
    assert maps.shape == (8, 32, 32)
    assert torch.allclose(maps.amin((1, 2)), torch.zeros(8, dtype=maps.dtype))
    assert torch.allclose(maps.amax((1, 2)), torch.ones(8, dtype=maps.dtype))
    # Smooth, and wrapping around: the step from the last column (row) to the first is an
    # ordinary neighbour step (~0.02), not the gap between two distant points (~0.3).
    for dim in (1, 2):
        inner = (maps.diff(dim=dim)).abs().mean()
        wrap = (maps.select(dim, 0) - maps.select(dim, -1)).abs().mean()
        far = (maps.select(dim, 0) - maps.select(dim, 16)).abs().mean()
        assert wrap < 1.5 * inner < 0.1 < far


def test_fog_veils_with_the_fractal_and_never_raises_the_brightest_value(sample):
    for severity, (c0, _) in enumerate(C.CORRUPTIONS["fog"].params, 1):
        assert (run("fog", sample, severity).amax((1, 2, 3)) <= sample.amax((1, 2, 3))).all()
        # On flat grey v the result is (v + c0 * map) * v / (v + c0): from v^2/(v + c0) where the
        # map is 0 up to v where it is 1, the same in every channel.
        v = 200 / 255
        out = run("fog", flat(200), severity)
        assert (out.amax((1, 2, 3)) == 200).all()
        assert ((out.amin((1, 2, 3)).double() - 255 * v * v / (v + c0)).abs() <= 0.5).all()
        assert torch.equal(out[:, 0], out[:, 2])
    assert torch.equal(run("fog", flat(0), 5), flat(0))   # nothing to scale: black stays black
    with pytest.raises(ValueError, match="power of two"):
        C.plasma_fractal(1, 24, 2.0, torch.zeros(1))


# ----------------------------------------------------------------------------- digital

def test_jpeg_is_pils_codec_at_the_published_quality(sample):
    for severity, quality in enumerate(C.CORRUPTIONS["jpeg"].params, 1):
        ref = []
        for img in sample.permute(0, 2, 3, 1).numpy():
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, "JPEG", quality=quality)
            ref.append(np.asarray(Image.open(buf)))
        out = run("jpeg", sample, severity)
        assert np.array_equal(out.permute(0, 2, 3, 1).numpy(), np.stack(ref))
    assert not torch.equal(run("jpeg", sample, 1), sample)


def test_pixelate_leaves_blocks_of_the_shrunk_size():
    x = noise_images()
    for severity, c in enumerate(C.CORRUPTIONS["pixelate"].params, 1):
        out = run("pixelate", x, severity)
        for img in out:
            assert torch.unique(img, dim=1).shape[1] == int(32 * c)   # distinct rows
            assert torch.unique(img, dim=2).shape[2] == int(32 * c)   # distinct columns
    # At 0.65 (20 of 32): every other row or column repeats its neighbour, blocks of 1-2 pixels.
    out = run("pixelate", x, 5)
    same_rows = (out[:, :, 1:] == out[:, :, :-1]).all(3).all(1).double().mean()
    assert float(same_rows) == pytest.approx(12 / 31, abs=0.01)


# ----------------------------------------------------------------------------- seeds

def test_generator_for_depends_on_name_severity_and_seed():
    def draw(*a):
        return torch.rand(4, generator=C.generator_for(*a))

    assert torch.equal(draw("fog", 3, 0), draw("fog", 3, 0))
    for other in (("fog", 4, 0), ("fog", 3, 1), ("motion_blur", 3, 0)):
        assert not torch.equal(draw("fog", 3, 0), draw(*other))


@pytest.mark.slow
def test_generator_for_is_the_same_in_another_process():
    code = ("from cifar_demo.augment import generator_for as g; import torch; "
            "print(torch.rand(3, generator=g('fog', 3)).tolist())")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": seed, "PATH": ""}).stdout for seed in ("1", "2")}
    assert outs == {f"{torch.rand(3, generator=C.generator_for('fog', 3)).tolist()}\n"}
