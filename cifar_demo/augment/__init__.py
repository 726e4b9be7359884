"""Augmentation: batched device-side transforms, named presets, batch mixes, previews.

Three kinds of augmentation live here, matching where they run:

- device (ops.py): crop / flip / cutout on whole NCHW batches, on the GPU (or CPU) that
  trains, with no per-image Python loop (after KellerJordan/cifar10-airbench);
  data.TensorLoader runs them.
- albumentations / torchvision (pipelines.py): per-image pipelines for presets that need
  them; they run in DataLoader workers (data.PerImageLoader).
- batch mixes (mixes.py: MixUp, CutMix, RICAP): whole batches, after the per-image transforms.

presets.py holds the one table of named presets (PRESETS, preset_kind and DEVICE_PRESETS
are views of it); transforms.py describes each transform for the app, whose previews
(previews.py) run the training code itself. corruptions.py is the other way round: CIFAR-10-C's
noise, blur, weather and digital corruptions at five severities, to test robustness (robustness.py),
not to train.
"""

from .corruptions import (
                          CORRUPTIONS,
                          CORRUPTIONS_VERSION,
                          MAX_SEVERITY,
                          SEVERITIES,
                          Corruption,
                          corrupt,
                          generator_for,
                          get_corruption,
)
from .mixes import DEFAULT_ALPHA, MIXES, BatchMixer, cutmix, cutmix_box, mixup, ricap
from .ops import batch_crop, batch_cutout, batch_flip, flip_where
from .pipelines import (
                          SEED004,
                          build_albumentations,
                          build_torchvision,
                          reseed_albumentations,
)
from .presets import (
                          DEVICE_PRESETS,
                          KINDS,
                          PRESET_TABLE,
                          PRESETS,
                          Preset,
                          get_preset,
                          preset_kind,
                          presets_using,
)
from .previews import preview_mix, preview_transform, upscale_nearest
from .transforms import TRANSFORMS, Param, TransformInfo

__all__ = [
    "BatchMixer", "CORRUPTIONS", "CORRUPTIONS_VERSION", "Corruption", "DEFAULT_ALPHA", "DEVICE_PRESETS",
    "KINDS", "MAX_SEVERITY", "MIXES", "PRESETS", "PRESET_TABLE", "Param", "Preset", "SEED004", "SEVERITIES",
    "TRANSFORMS", "TransformInfo", "batch_crop", "batch_cutout", "batch_flip", "build_albumentations",
    "build_torchvision", "corrupt", "cutmix", "cutmix_box", "flip_where", "generator_for", "get_corruption",
    "get_preset", "mixup", "preset_kind", "presets_using", "preview_mix", "preview_transform",
    "reseed_albumentations", "ricap", "upscale_nearest",
]
