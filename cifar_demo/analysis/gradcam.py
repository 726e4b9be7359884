"""Grad-CAM (Selvaraju et al., 2017): where in the image a model found its evidence.

The map is the ReLU of a feature map's channels weighted by the spatially averaged gradient
of the class score. It is computed at the resolution of the last convolution whose output
is still at least 4x4: later maps (airnet's 3x3, a 1x1 after the global pool) are too
coarse to point at anything. The layer is found while the model runs, with forward hooks,
so any zoo model works unchanged.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from torch import nn

from .. import weights, zoo
from ..augment import upscale_nearest
from ..common import to_unit
from ..data.pictures import to_tensor
from .predict import Prediction, predict_many, predict_one

MIN_SIDE = 4          # a map smaller than 4x4 cannot tell the quadrants of a 32x32 image apart
COLORMAP = "jet"      # the colour scale of the Grad-CAM paper and of most tutorials


def gradcam(model: nn.Module, image32: np.ndarray, class_idx: int | None = None, *,
            layer: nn.Module | None = None, either_way: bool = False) -> np.ndarray:
    """HxW float32 map in [0, 1] (H, W of the image) for class_idx (default: the top class).

    model: an eval-mode classifier of pictures (a zoo model normalises them); image32: HxWx3 uint8.
    layer: the module whose output is explained (default: see target_map). All zeros if the
    class has no positive evidence there. either_way: the size of the evidence, for or against
    (|sum|, not ReLU): where the picture counted most. The hooks it adds act on the calling thread only.
    """
    maps: list[tuple[nn.Module, torch.Tensor]] = []
    caller = threading.get_ident()

    def keep(module, _inputs, out):
        # Only this call's forward pass: another thread may run the same (cached) model now.
        if threading.get_ident() != caller or not isinstance(out, torch.Tensor):
            return None
        maps.append((module, out))
        # Downstream layers get a copy: an in-place ReLU would otherwise overwrite the
        # activation we explain (and break the gradient taken against it).
        return out.clone()

    watched = [layer] if layer is not None else [m for m in model.modules() if m is not model]
    hooks = [m.register_forward_hook(keep) for m in watched]
    try:
        # Callers may sit inside inference_mode or no_grad (enable_grad alone does not undo the former).
        with torch.inference_mode(False), torch.enable_grad():
            x = to_unit(to_tensor(image32)).requires_grad_(True)
            logits = model(x)
            act = maps[-1][1] if layer is not None else target_map(maps)
            idx = int(logits[0].argmax()) if class_idx is None else int(class_idx)
            # autograd.grad, not backward(): the .grad of a shared model's parameters stay untouched.
            (grad,) = torch.autograd.grad(logits[0, idx], act)
    finally:
        for h in hooks:
            h.remove()
    weights = grad.mean(dim=(2, 3), keepdim=True)            # one importance per channel
    summed = (weights * act.detach()).sum(1, keepdim=True)
    cam = summed.abs() if either_way else F.relu(summed)
    cam = F.interpolate(cam, size=image32.shape[:2], mode="bilinear", align_corners=False)[0, 0]
    top = cam.max()
    cam = cam / top if top > 0 else torch.zeros_like(cam)
    return cam.clamp_(0, 1).numpy().astype(np.float32)


def target_map(maps: list[tuple[nn.Module, torch.Tensor]]) -> torch.Tensor:
    """The map Grad-CAM explains, from (module, output) pairs in execution order.

    The last nn.Conv2d with an output of at least MIN_SIDE x MIN_SIDE sets the resolution;
    the last output at that resolution is explained. That is the block output after the
    residual add, BatchNorm and activation (what pytorch-grad-cam's docs pick by hand, e.g.
    ResNet's layer4), not the bare convolution, which misses the skip path.
    """
    convs = [a for m, a in maps if isinstance(m, nn.Conv2d) and min(a.shape[-2:]) >= MIN_SIDE]
    if not convs:
        raise ValueError(f"no convolution with an output of at least {MIN_SIDE}x{MIN_SIDE}: "
                         "Grad-CAM needs a spatial feature map")
    size = convs[-1].shape[-2:]
    return [a for _, a in maps if a.dim() == 4 and a.shape[-2:] == size][-1]


def overlay(image32: np.ndarray, cam: np.ndarray, scale: int = 8, alpha: float = 0.5) -> np.ndarray:
    """The image upscaled `scale` times (nearest) under the colour-mapped cam: RGB uint8.

    The cam is upscaled bilinearly (it is a smooth field); the pixels stay sharp squares,
    so the viewer sees exactly the 32x32 input the model saw.
    """
    h, w = image32.shape[:2]
    big = upscale_nearest(image32, scale).astype(np.float32)
    c = torch.from_numpy(np.asarray(cam, np.float32))[None, None]
    c = F.interpolate(c, size=(h * scale, w * scale), mode="bilinear", align_corners=False)[0, 0]
    heat = colormaps[COLORMAP](c.clamp(0, 1).numpy())[..., :3] * 255.0
    return np.clip((1 - alpha) * big + alpha * heat, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- models side by side

@dataclass
class Explanation:
    """One model on one image: its class probabilities and the Grad-CAM of its own top class."""

    model: str                   # the name to show: a zoo name, or e.g. "run <id>"
    probs: dict[str, float]      # class -> probability (every class of the model's, in label order)
    cam: np.ndarray              # HxW float32 in [0, 1], for the top class
    # "for": red where the picture pushed towards the top class (Grad-CAM). "either way": nothing
    # did (a young model's answer often comes from what argues against the others); the map is
    # where the picture counted most, for or against. "none": the answer ignores every region.
    evidence: str = "for"

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        return sorted(self.probs.items(), key=lambda kv: -kv[1])[:k]

    @property
    def has_evidence(self) -> bool:
        """False where no region argued for the class (the map, if any, is the either-way one)."""
        return self.evidence == "for" and bool(self.cam.any())


def explain(model: nn.Module, image32: np.ndarray, name: str, *,
            probs: dict[str, float] | None = None) -> Explanation:
    """`model`'s probabilities on image32 (computed unless given) and the cam of its top class."""
    if probs is None:
        probs, _ = predict_one(model, image32)
    top = max(probs, key=probs.get)
    # probs is keyed by the model's classes in label order (predict.predict_one), whatever they are.
    cam = gradcam(model, image32, list(probs).index(top))
    evidence = "for"
    if not cam.any():
        cam = gradcam(model, image32, list(probs).index(top), either_way=True)
        evidence = "either way" if cam.any() else "none"
    return Explanation(name, dict(probs), cam, evidence)


def caption(e: Explanation) -> str:
    """What a map that is not plain Grad-CAM shows, in words ("" for plain Grad-CAM)."""
    if e.evidence == "either way":
        return ("Nothing in the picture pushed it towards its answer: the map shows where the picture "
                "counted most, for or against.")
    if e.evidence == "none":
        return "Its answer does not depend on any part of this picture: the map is flat."
    return ""


def explain_predictions(image32: np.ndarray, predictions: list[Prediction]) -> list[Explanation]:
    """An Explanation per prediction that has probabilities (predict.predict_many's, same order),
    reusing them; models without weights or whose weights failed to load are left out."""

    out = []
    for p in predictions:
        if p.error is not None:
            continue
        out.append(explain(weights.load(p.model).model, image32, p.model, probs=p.probs))
    return out


def explain_shipped(image32: np.ndarray, names: list[str] | None = None) -> list[Explanation]:
    """Every shipped model (default: all of weights/, in zoo order) on one image, side by side."""
    names = names if names is not None else [n for n in zoo.names() if n in set(weights.available())]
    return explain_predictions(image32, predict_many(image32, names))
