"""The named augmentation presets: one table, from which every other view is derived.

A preset says where it runs (its kind), what the app and CLI say about it, and what it
does: the batch ops of a device preset (TensorLoader runs them on whole batches) or the
per-image pipeline of the others (DataLoader workers run it, see pipelines.py). PRESETS
(name -> description), preset_kind() and DEVICE_PRESETS are views of this table; the
trainer's config, the zoo's recipes and the app read the names from here.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("device", "albumentations", "torchvision")


@dataclass(frozen=True)
class Preset:
    name: str
    kind: str                  # "device" | "albumentations" | "torchvision": where it runs
    description: str           # one line, shown by the app and the CLI
    # Device presets: TensorLoader's batch ops (crop, then flip, then cutout).
    crop_pad: int = 0          # random translate-crop: pad by this, cut a 32x32 window
    flip: bool | str = False   # True: each image at random; "alternate": airbench's alternating flip
    cutout: int = 0            # side of the zeroed square
    # Per-image presets: augment.TRANSFORMS names, in the order they are applied.
    pipeline: tuple[str, ...] = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"preset {self.name}: kind {self.kind!r} is not one of {KINDS}")
        device_ops = self.crop_pad or self.flip or self.cutout
        if self.kind == "device" and self.pipeline:
            raise ValueError(f"device preset {self.name} runs batch ops, not a per-image pipeline")
        if self.kind != "device" and (device_ops or not self.pipeline):
            raise ValueError(f"{self.kind} preset {self.name} needs a pipeline and no batch ops")

    @property
    def device_ops(self) -> dict[str, int | bool | str]:
        """TensorLoader's settings: crop_pad, flip, cutout."""
        return {"crop_pad": self.crop_pad, "flip": self.flip, "cutout": self.cutout}

    @property
    def transforms(self) -> tuple[str, ...]:
        """The augment.TRANSFORMS this preset applies, in order (what the app previews)."""
        if self.kind != "device":
            return self.pipeline
        ops = (("crop", self.crop_pad > 0), ("flip", bool(self.flip)), ("cutout", self.cutout > 0))
        return tuple(name for name, on in ops if on)


PRESET_TABLE: dict[str, Preset] = {p.name: p for p in [
    Preset("none", "device", "No augmentation: every epoch shows the same images."),
    # pad-4 crop + flip: the recipe of nearly every CIFAR-10 ResNet since He et al. 2015.
    Preset("standard", "device", "Pad-4 random crop and horizontal flip, run on device on whole batches.",
           crop_pad=4, flip=True),
    # airbench's lighter version: 2-pixel translations and flips (the net is small and trains
    # for few epochs; pad 4 costs it accuracy there).
    Preset("translate2", "device",
           "Pad-2 random crop (translations up to 2 pixels) and horizontal flip, on device.",
           crop_pad=2, flip=True),
    # airbench's alternating flip: each image gets one random flip bit for the run and is
    # shown that way in even epochs and mirrored in odd ones, so every two epochs see both
    # sides exactly once (random flips leave a quarter of images on one side for two epochs).
    Preset("translate2_altflip", "device",
           "Pad-2 random crop and alternating flip (each image mirrored every other epoch), on device.",
           crop_pad=2, flip="alternate"),
    # Source project 004's pipeline; its README gives the probabilities (TRANSFORMS' defaults).
    Preset("seed004", "albumentations",
           "albumentations: flip, shift/scale/rotate, brightness/contrast, hue/saturation/value,"
           " coarse dropout (source project 004).",
           pipeline=("flip", "affine", "brightness_contrast", "hue_saturation_value", "coarse_dropout")),
    # Crop and flip first, then the policy: the order of the AutoAugment paper and of
    # torchvision's reference training scripts. RandomCrop pads with zeros, as batch_crop.
    Preset("autoaugment", "torchvision",
           "Pad-4 crop and flip, then torchvision AutoAugment with its learned CIFAR-10 policy.",
           pipeline=("crop", "flip", "autoaugment")),
]}

PRESETS: dict[str, str] = {name: p.description for name, p in PRESET_TABLE.items()}
# The presets TensorLoader runs, as its keyword arguments (crop_pad, flip, cutout).
DEVICE_PRESETS: dict[str, dict] = {name: p.device_ops for name, p in PRESET_TABLE.items()
                                   if p.kind == "device"}


def get_preset(name: str) -> Preset:
    """The table's entry for `name`; ValueError naming the choices if there is none."""
    if name not in PRESET_TABLE:
        raise ValueError(f"unknown augmentation preset {name!r}; choose from {list(PRESETS)}")
    return PRESET_TABLE[name]


def preset_kind(name: str) -> str:
    """Where a preset runs: "device" | "albumentations" | "torchvision"."""
    return get_preset(name).kind


def presets_using(transform: str) -> tuple[str, ...]:
    """The presets that apply a TRANSFORMS name, in table order."""
    return tuple(name for name, p in PRESET_TABLE.items() if transform in p.transforms)
