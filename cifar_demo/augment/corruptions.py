"""Common corruptions at five severities: the CIFAR-10-C idea, as batched torch code.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations" (ICLR 2019) test how a classifier trained on clean images copes with noise,
blur, weather and digital artefacts, each at five strengths. The strengths below are the
published CIFAR-10-C ones (their make_cifar_c.py), as fractions of [0, 1] pixel values;
the code is ours, on whole uint8 NCHW batches, so a 1,000-image slice corrupts in one call.

Every corruption is a `Corruption` in the one table CORRUPTIONS, callable as
`(batch, severity, generator) -> batch`: uint8 in, uint8 out (same shape and device),
severity 0 returns the batch unchanged, 1..5 the published strengths. Every random draw
comes from `generator`, so a seed fixes the corrupted images (generator_for gives the
seeded generator the app and robustness.py share, so every model sees the same pictures).
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

# Bump when any corruption's pixels change for the same (batch, severity, seed): the
# robustness cache keys on it, so old accuracies then miss instead of lying.
CORRUPTIONS_VERSION = 1
MAX_SEVERITY = 5
SEVERITIES = tuple(range(MAX_SEVERITY + 1))   # 0 = clean


# ----------------------------------------------------------------------------- helpers

def _rand(shape, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Uniforms in [0, 1) shaped `shape`, on `like`'s device (a generator draws on its own device)."""
    device = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=device).to(like.device)


def _depthwise(x: Tensor, kernel: Tensor, pad_mode: str) -> Tensor:
    """Correlate every channel of an NCHW float batch with one odd-sized 2-D kernel."""
    kh, kw = kernel.shape
    c = x.shape[1]
    padded = F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2), mode=pad_mode)
    weight = kernel.to(x).expand(c, 1, kh, kw)
    return F.conv2d(padded, weight, groups=c)


def _gaussian_1d(sigma: float, radius: int) -> Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-t * t / (2 * sigma * sigma))
    return g / g.sum()


# RGB <-> HSV as skimage.color defines them (hue in [0, 1); black has S = 0, grey has H = 0),
# because brightness and saturate are defined as changes of V and S with H (and S or V) fixed.

def rgb_to_hsv(x: Tensor) -> Tensor:
    """NCHW RGB floats in [0, 1] -> NCHW HSV floats in [0, 1]."""
    r, g, b = x.unbind(1)
    v, _ = x.max(1)
    delta = v - x.min(1).values
    s = torch.where(v > 0, delta / v.clamp_min(1e-12), torch.zeros_like(v))
    d = delta.clamp_min(1e-12)
    h = torch.where(r == v, (g - b) / d, torch.where(g == v, 2 + (b - r) / d, 4 + (r - g) / d))
    h = torch.where(delta > 0, (h / 6) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, v], 1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """NCHW HSV floats in [0, 1] -> NCHW RGB floats in [0, 1]."""
    h, s, v = hsv[:, :1], hsv[:, 1:2], hsv[:, 2:]
    # Each channel is v lowered by v*s times a trapezoid of the hue (R peaks at 0, G at 1/3,
    # B at 2/3): the sector-by-sector formula, written once for all three channels.
    k = (torch.tensor([5.0, 3.0, 1.0], dtype=hsv.dtype, device=hsv.device).view(1, 3, 1, 1) + h * 6) % 6
    return v - v * s * torch.minimum(k, 4 - k).clamp(0, 1)


# ----------------------------------------------------------------------------- noise

def _gaussian_noise(x: Tensor, sigma: float, g) -> Tensor:
    device = g.device if g is not None else x.device
    return x + sigma * torch.randn(x.shape, generator=g, device=device).to(x.device)


def _shot_noise(x: Tensor, photons: float, g) -> Tensor:
    # Photon counting: a pixel of brightness x catches Poisson(x * photons) photons, so noise
    # grows with brightness, and fewer photons (a darker scene made bright) means more noise.
    device = g.device if g is not None else x.device
    return torch.poisson(x.to(device) * photons, generator=g).to(x.device) / photons


def _impulse_noise(x: Tensor, amount: float, g) -> Tensor:
    # Salt and pepper per value (each channel of each pixel), half of the hits white, half black.
    hit = _rand(x.shape, x, g) < amount
    salt = _rand(x.shape, x, g) < 0.5
    return torch.where(hit, salt.to(x.dtype), x)


# ----------------------------------------------------------------------------- blur

def _gaussian_blur(x: Tensor, sigma: float, g) -> Tensor:
    # The kernel reaches 4 sigma, as skimage.filters.gaussian's default truncate does.
    from torchvision.transforms.v2 import (
        functional as TF,  # here: importing torchvision costs ~2 s
    )  # lazy: torchvision's transforms load only for the presets and views that use them

    k = 2 * int(4 * sigma + 0.5) + 1
    return TF.gaussian_blur(x, [k, k], [sigma, sigma])


def defocus_kernel(radius: float, alias_sigma: float) -> Tensor:
    """A disk of `radius` on a 17x17 grid, normalised, softened by a 3x3 gaussian (the
    published anti-aliasing), then cut to its non-zero support (the zeros change nothing)."""
    t = torch.arange(-8, 9, dtype=torch.float64)
    disk = ((t[:, None] ** 2 + t[None, :] ** 2) <= radius ** 2).double()
    disk /= disk.sum()
    g = _gaussian_1d(alias_sigma, 1)
    k = _depthwise(disk[None, None], g[:, None] * g[None, :], "constant")[0, 0]
    keep = k.abs().sum(0) > 0
    return k[keep][:, keep]


def _defocus_blur(x: Tensor, c: tuple[float, float], g) -> Tensor:
    return _depthwise(x, defocus_kernel(*c), "reflect")


def motion_taps(radius: float, sigma: float) -> Tensor:
    """Weights of a one-sided motion-blur line (ImageMagick's): 2*ceil(radius)+1 taps
    starting at the pixel itself, gaussian in the distance, normalised."""
    i = torch.arange(2 * math.ceil(radius) + 1, dtype=torch.float64)
    w = torch.exp(-i * i / (2 * sigma * sigma))
    return w / w.sum()


def _motion_blur(x: Tensor, c: tuple[float, float], g) -> Tensor:
    n, _, h, w = x.shape
    taps = motion_taps(*c).to(x)
    angle = torch.deg2rad(_rand((n,), x, g).double() * 90 - 45)   # one direction per image
    step = torch.arange(len(taps), dtype=torch.float64, device=x.device)
    dx = torch.round(step[None] * torch.cos(angle)[:, None]).long()   # (n, taps)
    dy = torch.round(step[None] * torch.sin(angle)[:, None]).long()
    reach = len(taps) - 1
    padded = F.pad(x, (reach, reach, reach, reach), mode="replicate")   # edge pixels continue
    rows = reach + dy[:, :, None] + torch.arange(h, device=x.device)   # (n, taps, h)
    cols = reach + dx[:, :, None] + torch.arange(w, device=x.device)   # (n, taps, w)
    out = torch.zeros_like(x)
    batch = torch.arange(n, device=x.device)[:, None, None]
    for k in range(len(taps)):
        # (n, h, w, c) of each image shifted along its own line by k steps.
        shifted = padded[batch, :, rows[:, k, :, None], cols[:, k, None, :]]
        out += taps[k] * shifted.permute(0, 3, 1, 2)
    return out


# ----------------------------------------------------------------------------- weather and colour

def _brightness(x: Tensor, c: float, g) -> Tensor:
    hsv = rgb_to_hsv(x)
    hsv[:, 2] = (hsv[:, 2] + c).clamp(0, 1)
    return hsv_to_rgb(hsv)


def _contrast(x: Tensor, c: float, g) -> Tensor:
    mean = x.mean((2, 3), keepdim=True)   # per image and channel
    return (x - mean) * c + mean


def _saturate(x: Tensor, c: tuple[float, float], g) -> Tensor:
    hsv = rgb_to_hsv(x)
    hsv[:, 1] = (hsv[:, 1] * c[0] + c[1]).clamp(0, 1)
    return hsv_to_rgb(hsv)


def plasma_fractal(n: int, size: int, decay: float, like: Tensor, generator=None) -> Tensor:
    """n diamond-square height maps (size a power of two, tileable), each scaled to [0, 1].

    Each level halves the grid step; a new point is the mean of its four neighbours (corners
    of its square, or the ends of its diamond, wrapping around) plus uniform noise. The
    published fog scales that noise by `wibble` twice (amplitude wibble**2, wibble starting
    at 100 and divided by `decay` per level), so fine detail fades by decay**2 per octave.
    """
    if size & (size - 1):
        raise ValueError(f"size must be a power of two, not {size}")
    m = torch.zeros(n, size, size, dtype=torch.float64, device=like.device)
    step, wibble = size, 100.0

    def noisy_mean(total: Tensor) -> Tensor:
        return total / 4 + wibble * wibble * (_rand(total.shape, like, generator).double() * 2 - 1)

    while step >= 2:
        half = step // 2
        corners = m[:, ::step, ::step]
        around = corners + corners.roll(-1, 1)
        m[:, half::step, half::step] = noisy_mean(around + around.roll(-1, 2))
        centres = m[:, half::step, half::step]
        # Points halfway along a row of corners: the two corners and the centres above and below.
        m[:, ::step, half::step] = noisy_mean(corners + corners.roll(-1, 2) + centres + centres.roll(1, 1))
        # Points halfway down a column of corners: the two corners and the centres left and right.
        m[:, half::step, ::step] = noisy_mean(corners + corners.roll(-1, 1) + centres + centres.roll(1, 2))
        step, wibble = half, wibble / decay
    m -= m.amin((1, 2), keepdim=True)
    return m / m.amax((1, 2), keepdim=True).clamp_min(1e-12)


def _fog(x: Tensor, c: tuple[float, float], g) -> Tensor:
    n, _, h, w = x.shape
    size = 1 << (max(h, w) - 1).bit_length()   # the next power of two (32 for CIFAR)
    haze = plasma_fractal(n, size, c[1], x, g)[:, None, :h, :w].to(x)
    top = x.amax((1, 2, 3), keepdim=True)   # the image's brightest value, before the haze
    # Adding haze brightens; the rescale keeps the brightest value where it was (max/(max+c0)).
    return (x + c[0] * haze) * top / (top + c[0])


# ----------------------------------------------------------------------------- digital (on uint8)

def _per_image(batch: Tensor, fn: Callable[[Image.Image], Image.Image]) -> Tensor:
    out = [np.asarray(fn(Image.fromarray(img))) for img in batch.permute(0, 2, 3, 1).cpu().numpy()]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous().to(batch.device)


def _jpeg(batch: Tensor, quality: int, g) -> Tensor:
    # PIL's codec, as the published corruption used. (torchvision.io.encode_jpeg gives the same
    # bytes here, but torchvision 0.29 deprecates its image codecs.)
    def roundtrip(img: Image.Image) -> Image.Image:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality)
        return Image.open(buf)
    return _per_image(batch, roundtrip)


def _pixelate(batch: Tensor, c: float, g) -> Tensor:
    # Shrink with a box filter and blow back up with it: PIL's BOX upscaling is nearest
    # neighbour, so the picture becomes blocks of 1-2 pixels at these sizes.
    h, w = batch.shape[-2:]
    small = (int(w * c), int(h * c))
    return _per_image(batch, lambda img: img.resize(small, Image.Resampling.BOX).resize((w, h), Image.Resampling.BOX))


# ----------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class Corruption:
    """One corruption: call it as (uint8 NCHW batch, severity 0..5, generator) -> uint8 batch."""

    name: str
    title: str
    family: str                       # "noise" | "blur" | "weather" | "digital"
    params: tuple                     # the published strength of severities 1..5
    kernel: Callable                  # (x, strength, generator) -> x
    teaches: str
    on_uint8: bool = False            # codecs work on the bytes; the rest on floats in [0, 1]

    def __call__(self, batch: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
        if batch.dtype != torch.uint8 or batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected a uint8 N,3,H,W batch, got {batch.dtype} {tuple(batch.shape)}")
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, not {severity!r}")
        if severity == 0:
            return batch.clone()
        strength = self.params[severity - 1]
        if self.on_uint8:
            return self.kernel(batch, strength, generator)
        out = self.kernel(batch.float() / 255, strength, generator)
        return out.clamp(0, 1).mul(255).round().to(torch.uint8)


_TABLE = [
    Corruption("gaussian_noise", "Gaussian noise", "noise", (0.04, 0.06, 0.08, 0.09, 0.10), _gaussian_noise,
               "Sensor noise in dim light: every value jitters a little. People hardly notice it, yet "
               "networks that learned fine textures lose a lot, because noise is made of exactly the "
               "fine detail they rely on. Training with noise added teaches them to look past it."),
    Corruption("shot_noise", "Shot noise", "noise", (500, 250, 100, 75, 50), _shot_noise,
               "Photon noise: light arrives in counts, so brighter parts are noisier and a dark scene "
               "brightened is noisiest. Models that resist Gaussian noise mostly resist this too: "
               "robustness to one kind of noise carries over to its neighbours."),
    Corruption("impulse_noise", "Impulse noise", "noise", (0.01, 0.02, 0.03, 0.05, 0.07), _impulse_noise,
               "Salt and pepper: a few values stuck at full or zero (bit errors, dead pixels). A handful "
               "of extreme dots can flip a prediction; a median filter removes them, a convolution "
               "spreads them."),
    Corruption("gaussian_blur", "Gaussian blur", "blur", (0.4, 0.6, 0.7, 0.8, 1.0), _gaussian_blur,
               "Softened detail, as from a low-resolution camera. Shapes survive but textures do not: "
               "models that recognise objects by texture (fur, feathers) fall much faster than people, "
               "who go by shape."),
    Corruption("defocus_blur", "Defocus blur", "blur", ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
               _defocus_blur,
               "A lens focused at the wrong distance spreads each point into a disk. At 32x32 one "
               "pixel of blur already erases the texture many models depend on."),
    Corruption("motion_blur", "Motion blur", "blur", ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)), _motion_blur,
               "The camera or the object moved during the exposure: streaks in one direction (here a "
               "random one per image, within 45 degrees of horizontal). The usual CIFAR augmentation, "
               "random crops and flips, gives a model no practice with it."),
    Corruption("brightness", "Brightness", "weather", (0.05, 0.1, 0.15, 0.2, 0.3), _brightness,
               "Over-exposure: every pixel brighter, shadows lifted towards grey. Most models barely "
               "notice: the training photos already vary in exposure, and input normalisation "
               "absorbs part of it."),
    Corruption("contrast", "Contrast", "weather", (0.75, 0.5, 0.4, 0.3, 0.15), _contrast,
               "Colours pulled towards the picture's average, as in haze or a flat exposure. The edges "
               "are still there, only fainter; at the top severities the differences a model relies "
               "on shrink below what it learned to see."),
    Corruption("saturate", "Saturation", "digital", ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)), _saturate,
               "Colour washed out (severities 1-2) or pushed to garish (3-5; so 3, a 1.5x boost, is "
               "milder than 2, as published). Shows how much a model leans on colour: a grey frog is "
               "still a frog to a person, and a model that learned 'green means frog' stumbles."),
    Corruption("fog", "Fog", "weather", ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)), _fog,
               "A patchy veil (a fractal haze) over the picture: low-frequency change, unlike noise. "
               "Making models robust to noise can make them more sensitive to fog: robustness is "
               "not one quantity."),
    Corruption("jpeg", "JPEG compression", "digital", (80, 65, 58, 50, 40), _jpeg,
               "Compression artefacts: 8x8 blocks, colour bleeding and ringing. In a 32x32 picture one "
               "block is a sixteenth of the image. Images that were JPEG files once (as in the JPEG "
               "export these models trained on) make mild compression familiar.", on_uint8=True),
    Corruption("pixelate", "Pixelate", "digital", (0.95, 0.9, 0.85, 0.75, 0.65), _pixelate,
               "Shrunk and blown back up: the picture becomes blocks. The outline survives, fine "
               "structure does not; models trained with random crops of a padded image have seen "
               "small shifts, not lost resolution.", on_uint8=True),
]
CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in _TABLE}


def get_corruption(name: str) -> Corruption:
    try:
        return CORRUPTIONS[name]
    except KeyError:
        raise ValueError(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}") from None


def generator_for(name: str, severity: int, seed: int = 0) -> torch.Generator:
    """The CPU generator that fixes (corruption, severity, seed)'s random draws, the same in every
    process (a hash of the three, not Python's salted hash())."""
    digest = hashlib.sha256(f"{name}/{severity}/{seed}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def corrupt(batch: Tensor, name: str, severity: int, seed: int | None = 0) -> Tensor:
    """`batch` corrupted by `name` at `severity`, with the draws of generator_for(name, severity, seed)
    (seed None: the global RNG)."""
    g = None if seed is None else generator_for(name, severity, seed)
    return get_corruption(name)(batch, severity, g)
