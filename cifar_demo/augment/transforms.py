"""The single transforms the presets are made of, described for the Augmentations tab:
a title, what each teaches the model, and its parameters as sliders.

The parameters' defaults are also the values the training pipelines use (pipelines.py
builds seed004 and autoaugment from them), so what the tab shows at its defaults is what
training does. Which presets use a transform comes from the preset table, not from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .presets import presets_using


@dataclass(frozen=True)
class Param:
    """A transform parameter as the app shows it: a slider."""
    min: float
    max: float
    default: float
    step: float
    label: str


@dataclass(frozen=True)
class TransformInfo:
    """One transform of the presets, described for the Augmentations tab."""
    name: str
    title: str
    kind: str                 # "device" | "albumentations" | "torchvision": how it is previewed
    teaches: str              # one sentence: what invariance it teaches the model
    params: dict[str, Param] = field(default_factory=dict)

    @property
    def presets(self) -> tuple[str, ...]:
        """The presets that use it, in table order (empty: a device option only)."""
        return presets_using(self.name)

    @property
    def preset(self) -> str:
        """The first preset that uses it ("" for none)."""
        return self.presets[0] if self.presets else ""

    def defaults(self) -> dict[str, float]:
        return {k: p.default for k, p in self.params.items()}


def _prob(default: float) -> Param:
    return Param(0.0, 1.0, default, 0.05, "probability (0 = never, 1 = every picture)")


# The seed004 values the source README does not give (it lists only the probabilities)
# are the usual CIFAR choices: shift 10%, scale +-10%, rotate +-15 degrees, one 8x8 hole,
# and albumentations' own defaults for colour. Crop's pad 4 is the autoaugment preset's
# RandomCrop(32, padding=4).
TRANSFORMS: dict[str, TransformInfo] = {t.name: t for t in [
    TransformInfo("crop", "Random crop (padding, then a 32x32 window)", "device",
                  "Shifting the picture a few pixels teaches that a cat is a cat wherever it sits in the frame.",
                  {"pad": Param(0, 8, 4, 1, "padding (pixels)")}),
    TransformInfo("flip", "Horizontal flip", "device",
                  "Flipping teaches that a horse facing left is still a horse.",
                  {"p": _prob(0.5)}),
    TransformInfo("cutout", "Cutout", "device",
                  "Hiding a square teaches the model to use the whole object, not one telltale patch.",
                  {"size": Param(0, 16, 8, 1, "square side (pixels)")}),
    TransformInfo("affine", "Shift, scale, rotate", "albumentations",
                  "Small shifts, zooms and tilts teach that a slightly tilted or closer ship is still a ship.",
                  {"shift": Param(0.0, 0.3, 0.1, 0.01, "max shift (fraction of the side: 0.1 = 3 pixels)"),
                   "scale": Param(0.0, 0.5, 0.1, 0.05, "max zoom in/out (fraction: 0.1 = ±10%)"),
                   "rotate": Param(0, 45, 15, 1, "max rotation (degrees)"),
                   "p": _prob(0.5)}),
    TransformInfo("brightness_contrast", "Brightness and contrast", "albumentations",
                  "Changing light teaches that a deer at dusk is the same deer at noon.",
                  {"brightness": Param(0.0, 0.5, 0.2, 0.05, "max brightness change (fraction: 0.2 = ±20%)"),
                   "contrast": Param(0.0, 0.5, 0.2, 0.05, "max contrast change (fraction: 0.2 = ±20%)"),
                   "p": _prob(0.5)}),
    TransformInfo("hue_saturation_value", "Hue, saturation, value", "albumentations",
                  "Shifting colours teaches that a car is a car whatever its paint, so shape must decide.",
                  {"hue": Param(0, 50, 20, 1, "max hue shift (steps of 180 around the colour wheel)"),
                   "saturation": Param(0, 60, 30, 1, "max saturation shift (levels of 255)"),
                   "value": Param(0, 60, 20, 1, "max brightness (value) shift (levels of 255)"),
                   "p": _prob(0.5)}),
    TransformInfo("coarse_dropout", "Coarse dropout", "albumentations",
                  "Blacking out patches teaches that a bird half hidden by a branch is still a bird.",
                  {"holes": Param(1, 4, 1, 1, "max number of holes (count)"),
                   "size": Param(2, 16, 8, 1, "hole side (pixels)"),
                   "p": _prob(0.3)}),
    TransformInfo("autoaugment", "AutoAugment (CIFAR-10 policy)", "torchvision",
                  "A searched mix of colour and geometry changes teaches invariances no single transform covers.",
                  {}),
]}


def merged_params(name: str, overrides: dict | None) -> dict[str, float]:
    """A transform's default parameters with `overrides` applied; unknown names rejected."""
    params = TRANSFORMS[name].defaults()
    unknown = set(overrides or {}) - set(params)
    if unknown:
        raise ValueError(f"{name} has no parameter(s) {sorted(unknown)}; it has {sorted(params)}")
    params.update(overrides or {})
    return params
