"""Inside the network: what every layer of a model computes for one picture, as plain arrays.

    arch = architecture(model)                 # one row per layer: type, output shape, params, MACs, RF
    look = look_inside(model, image32, classes)  # every stage's feature maps, the logits, the softmax
    filters = first_filters(model)             # the first convolution's kernels as RGB patches

A *stage* is what a student would point at in a diagram: a convolution or pooling layer with the
activation and normalisation that follow it, or one block of a residual network. Stages are found
from the module tree, so every zoo architecture works unchanged: the model's children, where a
plain nn.Sequential of single layers counts as its children (keras_cnn's conv blocks), and an
activation, BatchNorm or Dropout whose output has the shape of the stage before it belongs to that
stage (its picture is the map after them). The first layer's filters, the channels a test slice
excites most (inside_topk.py) and the map of the penultimate features (embedding.py) build on this.

The hooks added here act on the calling thread only: weights.load's models are shared, and another
thread may run the same model at the same time.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..common import IMAGE_SIZE, to_unit
from ..data.pictures import to_tensor

# Layers that transform a map without changing its shape: part of the stage before them.
FOLLOWERS = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.ELU, nn.Mish, nn.Hardswish, nn.Sigmoid,
             nn.Tanh, nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.Dropout, nn.Dropout2d,
             nn.Identity)
CONV_TYPES = (nn.Conv2d,)
POOL_TYPES = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


# ----------------------------------------------------------------------------- tracing a forward pass

def units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's children in definition order, a plain nn.Sequential of single layers replaced by
    its children (so a conv block of keras_cnn shows each convolution and its pooling)."""
    out = []
    for name, child in model.named_children():
        kids = list(child.named_children())
        if type(child) is nn.Sequential and kids and all(not list(k.children()) for _, k in kids):
            out += [(f"{name}.{k}", m) for k, m in kids]
        else:
            out.append((name, child))
    return out


@contextmanager
def recording(modules: list[tuple[str, nn.Module]], pre: bool = False):
    """Within the block, every call of the given modules on this thread is appended to the yielded
    list as (name, module, output) (pre=True: its first input instead), output copied (an in-place
    ReLU later would change it)."""
    calls: list[tuple[str, nn.Module, torch.Tensor]] = []
    caller = threading.get_ident()

    def keep(name):
        def hook(module, inputs, out=None):
            if threading.get_ident() != caller:
                return
            t = inputs[0] if pre else out
            if isinstance(t, torch.Tensor):
                calls.append((name, module, t.detach().clone()))
        return hook

    hooks = [(m.register_forward_pre_hook(keep(n)) if pre else m.register_forward_hook(keep(n))) for n, m in modules]
    try:
        yield calls
    finally:
        for h in hooks:
            h.remove()


@dataclass
class Stage:
    """One stage of a forward pass: its name (the modules it spans), its kind and its output."""

    name: str
    kind: str                      # "conv", "pool", "block", "dense", "logits"
    output: torch.Tensor = field(repr=False)   # batch-first: N,C,H,W (a map) or N,F (a vector)

    @property
    def is_map(self) -> bool:
        return self.output.dim() == 4


def _kind(module: nn.Module) -> str:
    if isinstance(module, CONV_TYPES):
        return "conv"
    if isinstance(module, POOL_TYPES):
        return "pool"
    if isinstance(module, nn.Linear):
        return "dense"
    return "block"


def group_stages(calls) -> list[Stage]:
    """Recorded (name, module, output) calls -> stages (see the module's docstring)."""
    stages: list[Stage] = []
    for name, module, out in calls:
        if isinstance(module, (*FOLLOWERS, nn.Flatten)):
            if stages and not isinstance(module, nn.Flatten) and stages[-1].output.shape == out.shape:
                stages[-1].output = out
                stages[-1].name += f" + {type(module).__name__}"
            continue
        stages.append(Stage(f"{name} ({type(module).__name__})", _kind(module), out))
    if stages and stages[-1].kind == "dense":
        stages[-1].kind = "logits"
    return stages


def forward_stages(model: nn.Module, images: torch.Tensor) -> tuple[list[Stage], torch.Tensor]:
    """(stages, logits) of a batch of pictures (uint8 or [0, 1] floats, N,3,H,W), without gradients."""
    with torch.inference_mode(), recording(units(model)) as calls:
        logits = model(to_unit(images)).float()
    return group_stages(calls), logits


# ----------------------------------------------------------------------------- the architecture table

@dataclass(frozen=True)
class LayerRow:
    name: str
    type: str
    output_shape: tuple[int, ...]     # without the batch dimension
    params: int                       # the layer's own parameters
    macs: int                         # multiply-accumulates for one picture (convolutions and matrix products)
    receptive_field: int | None       # pixels, one side; None where it is not a map

    def cells(self) -> list:
        rf = "" if self.receptive_field is None else f"{self.receptive_field}"
        return [self.name, self.type, " x ".join(map(str, self.output_shape)), f"{self.params:,}",
                f"{self.macs:,}", rf]


TABLE_HEADERS = ["layer", "type", "output shape", "parameters", "MACs", "receptive field (px)"]


def _macs(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    """What torch's FlopCounterMode counts (zoo.analysis.count_macs): convolutions and linear layers."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return out[0].numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return out[0].numel() * module.in_features
    return 0


def _geometry(module: nn.Module) -> tuple[int, int] | None:
    """(kernel, dilation) along one side for the layers that widen the receptive field."""
    if isinstance(module, nn.Conv2d):
        return module.kernel_size[0], module.dilation[0]
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        k = module.kernel_size if isinstance(module.kernel_size, int) else module.kernel_size[0]
        d = getattr(module, "dilation", 1)
        return k, d if isinstance(d, int) else d[0]
    return None


def _grow(rf: int, module: nn.Module, x: torch.Tensor, y: torch.Tensor, size: int) -> int:
    """The receptive field after `module` (input x, output y), `rf` before it (see architecture)."""
    geo = _geometry(module)
    if geo is not None and x.dim() == 4:
        jump = 2 ** round(np.log2(size / x.shape[-1]))
        rf += (geo[0] - 1) * geo[1] * jump
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) or (y.dim() == 4 and y.shape[-1] == 1):
        rf = max(rf, size)
    return rf


def _trace(model: nn.Module, size: int = IMAGE_SIZE):
    """One forward pass of a blank picture: (leaf rows, the units' calls with the receptive field at
    their output), both in the order the pass makes them."""
    leaves = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
    events: list[tuple] = []
    caller = threading.get_ident()

    def hook(tag, name):
        def fn(module, inputs, out=None):
            if threading.get_ident() == caller:
                events.append((tag, name, module, inputs[0] if tag == "in" else out))
        return fn

    hooks = [m.register_forward_pre_hook(hook("in", n)) for n, m in leaves]
    hooks += [m.register_forward_hook(hook("leaf", n)) for n, m in leaves]
    hooks += [m.register_forward_hook(hook("unit", n)) for n, m in units(model)]
    was = model.training
    model.eval()
    try:
        with torch.inference_mode():
            p = next(model.parameters())
            model(torch.zeros(1, 3, size, size, dtype=p.dtype, device=p.device))
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    rows, unit_calls, rf, inputs = [], [], 1, []
    for tag, name, module, t in events:
        if tag == "in":
            inputs.append(t)
        elif tag == "leaf":
            x = inputs.pop()
            rf = _grow(rf, module, x, t, size)
            rows.append(LayerRow(name, type(module).__name__, tuple(t.shape[1:]),
                                 sum(p.numel() for p in module.parameters(recurse=False)), _macs(module, x, t),
                                 rf if t.dim() == 4 else None))
        elif isinstance(t, torch.Tensor):
            unit_calls.append((name, module, t, rf))
    return rows, unit_calls


def architecture(model: nn.Module, size: int = IMAGE_SIZE) -> list[LayerRow]:
    """Every layer (leaf module) in the order a forward pass calls it, with its output shape,
    parameters, MACs for one picture and receptive field.

    The receptive field is composed layer by layer along the forward pass: a k x k layer (dilation d)
    adds (k - 1) * d * jump, where the jump is the input pixels between neighbouring units of the
    layer's input (a power of two: the zoo's strides are 1 and 2). A side branch (a ResNet's 1x1
    shortcut) adds nothing, so along the main path this equals the gradient measurement of
    zoo.analysis.receptive_field (tests check both on the zoo; a shortcut's own row shows the main
    path's field). After a global pool, the whole picture.
    """
    return _trace(model, size)[0]


def stage_fields(model: nn.Module) -> list[int]:
    """The receptive field (pixels, one side) at the output of each map stage, in forward_stages' order."""
    calls = _trace(model)[1]
    stages = group_stages([(n, m, t) for n, m, t, _ in calls])
    # group_stages keeps a stage's last absorbed call: find each stage's output tensor among the calls.
    ids = {id(t): rf for _, _, t, rf in calls}
    return [min(ids[id(s.output)], IMAGE_SIZE) if id(s.output) in ids else IMAGE_SIZE
            for s in stages if s.is_map]


# ----------------------------------------------------------------------------- one picture, every stage

@dataclass
class StageView:
    """One stage's response to a picture: every channel's map, and the order to show them in."""

    name: str
    kind: str
    maps: np.ndarray          # C,H,W float32 (a map stage) or F float32 (a vector stage)
    order: np.ndarray         # channel indices, most active first (mean |activation| over the map)

    @property
    def is_map(self) -> bool:
        return self.maps.ndim == 3

    def top(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices, maps) of the k most active channels."""
        idx = self.order[:k]
        return idx, self.maps[idx]


@dataclass
class Look:
    """A picture through a model: the input, every stage, the logits and the softmax."""

    image: np.ndarray                 # 32x32x3 uint8
    stages: list[StageView]
    logits: np.ndarray                # C float32
    probs: np.ndarray                 # C float32, sums to 1
    classes: tuple[str, ...]

    @property
    def map_stages(self) -> list[StageView]:
        return [s for s in self.stages if s.is_map]

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        idx = np.argsort(-self.probs)[:k]
        return [(self.classes[i], float(self.probs[i])) for i in idx]


def look_inside(model: nn.Module, image32: np.ndarray, classes) -> Look:
    """The picture (HxWx3 uint8, 32x32) through the model, stage by stage."""
    image32 = np.ascontiguousarray(image32, dtype=np.uint8)
    if image32.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise ValueError(f"expected a {IMAGE_SIZE}x{IMAGE_SIZE} RGB picture, got the shape {image32.shape}")
    stages, logits = forward_stages(model, to_tensor(image32))
    views = []
    for s in stages:
        a = s.output[0].float().cpu().numpy()
        strength = np.abs(a).reshape(a.shape[0], -1).mean(1) if a.ndim == 3 else np.abs(a)
        views.append(StageView(s.name, s.kind, a, np.argsort(-strength, kind="stable")))
    logits_np = logits[0].cpu().numpy()
    probs = torch.softmax(logits[0], 0).cpu().numpy()
    return Look(image32, views, logits_np, probs, tuple(classes))


def colour_range(maps: np.ndarray) -> tuple[float, float]:
    """One colour scale for a grid of maps: 0..max for maps that are never negative (after a ReLU),
    else symmetric around 0 (-m..m), so 0 has the same colour in every channel."""
    lo, hi = float(maps.min()), float(maps.max())
    if lo >= 0:
        return 0.0, max(hi, 1e-8)
    m = max(abs(lo), abs(hi), 1e-8)
    return -m, m


# ----------------------------------------------------------------------------- the first layer's filters

def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """The first convolution a forward pass calls (the one that looks at the pixels)."""
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    with torch.inference_mode(), recording(convs) as calls:
        p = next(model.parameters())
        was = model.training
        model.eval()
        try:
            model(torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE, dtype=p.dtype, device=p.device))
        finally:
            model.train(was)
    if not calls:
        raise ValueError("the model has no convolution")
    return calls[0][0], calls[0][1]


def first_filters(model: nn.Module) -> tuple[str, np.ndarray]:
    """(layer name, K,k,k,3 float32 in [0, 1]): the first convolution's kernels as RGB patches, each
    scaled on its own around grey (0.5 + w / (2 max|w|)), so a weak filter's colours and edges show as
    clearly as a strong one's. A kernel that does not see three channels shows their mean as grey."""
    name, conv = first_conv(model)
    w = conv.weight.detach().float().cpu()
    if w.shape[1] != 3:
        w = w.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    m = w.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)
    return name, (0.5 + w / (2 * m)).permute(0, 2, 3, 1).numpy()
