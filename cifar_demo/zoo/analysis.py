"""Measuring a built model: parameters, multiply-accumulates, receptive field."""

from __future__ import annotations

import copy
import threading

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    """Every parameter, trainable or frozen (airnet's whitening conv counts too)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, input_size: tuple[int, ...] = (1, 3, 32, 32)) -> int:
    """Multiply-accumulates of one forward pass in eval mode (FLOPs / 2).

    torch's FlopCounterMode counts convolutions and matrix products, the layers that
    dominate; BatchNorm, activations, pooling and additions are not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode  # lazy: keeps `import zoo` light

    p = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(input_size, dtype=p.dtype, device=p.device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


class _Stop(Exception):
    """Raised by a hook to end the forward pass at the feature map we measure."""


@torch.no_grad()
def activation_floats(model: nn.Module, size: int = 32) -> int:
    """Numbers the leaf modules output for one size x size image (forward hooks, eval mode): about
    what a training step keeps per image for its backward pass (functional ops add some more)."""
    total = [0]

    def count(m, i, o):
        for t in (o if isinstance(o, (tuple, list)) else (o,)):
            if isinstance(t, torch.Tensor):
                total[0] += t.numel()

    hooks = [m.register_forward_hook(count) for m in model.modules() if not any(True for _ in m.children())]
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, 3, size, size, dtype=next(model.parameters()).dtype))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return total[0]


def last_feature_map(model: nn.Module, size: int = 32) -> str:
    """Name of the last module (in execution order) whose output is a map larger than 1x1.
    Only this thread's pass counts: the app's models are shared, and another thread's pass of
    the same model while the hooks were on once named an early layer (the Predict batcher then
    scored familiarity on a 20-channel map instead of the 160-channel last one)."""
    found: list[str] = []
    me = threading.get_ident()

    def keep(name: str, out) -> None:
        if threading.get_ident() == me and isinstance(out, torch.Tensor) and out.dim() == 4 \
                and out.shape[-1] * out.shape[-2] > 1:
            found.append(name)

    hooks = [m.register_forward_hook(lambda m, i, o, n=n: keep(n, o)) for n, m in model.named_modules() if n]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, dtype=next(model.parameters()).dtype))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    if not found:
        raise ValueError("the model has no spatial feature map")
    return found[-1]


def _linearised(model: nn.Module) -> nn.Module:
    """A float64 copy in which every path from input to output carries a positive gradient.

    Convolutions average (weights 1/fan_in, no bias), BatchNorm is the identity and max-pools
    become average pools of the same geometry: the receptive field is unchanged, but no
    gradient is lost to a ReLU at zero or to max-pool's single winner.
    """
    m = copy.deepcopy(model).double().eval()
    for name, mod in list(m.named_modules()):
        if isinstance(mod, nn.MaxPool2d):
            parent = m.get_submodule(name.rpartition(".")[0]) if "." in name else m
            setattr(parent, name.rpartition(".")[2],
                    nn.AvgPool2d(mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode))
        elif isinstance(mod, nn.Conv2d):
            mod.weight.data.fill_(1.0 / mod.weight[0].numel())
            if mod.bias is not None:
                mod.bias.data.zero_()
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.reset_running_stats()
            mod.weight.data.fill_(1.0)
            mod.bias.data.zero_()
    return m


def receptive_field(model: nn.Module, layer: str | None = None, size: int = 96,
                    max_size: int = 1024) -> int:
    """Receptive field (pixels, one side) of a centre unit of `layer`, measured by gradient.

    layer: a module name (default: the last feature map larger than 1x1 at 32x32, i.e. the
    input of the global pool). The input grows from `size` until the field fits inside it.
    """
    layer = layer or last_feature_map(model)
    m = _linearised(model)
    target = m.get_submodule(layer)
    while size <= max_size:
        out: list[torch.Tensor] = []
        def stop(_m, _i, o):
            out.append(o)
            raise _Stop
        hook = target.register_forward_hook(stop)
        x = torch.ones(1, 3, size, size, dtype=torch.float64, requires_grad=True)
        try:
            m(x)
        except _Stop:
            pass
        finally:
            hook.remove()
        fmap = out[0]
        fmap[0, :, fmap.shape[-2] // 2, fmap.shape[-1] // 2].sum().backward()
        rows = (x.grad[0].abs().sum(0) > 0).any(1).nonzero().flatten()
        first, last = int(rows.min()), int(rows.max())
        if first > 0 and last < size - 1:  # the field lies inside the input: it is complete
            return last - first + 1
        size *= 2
    raise ValueError(f"receptive field larger than {max_size} pixels")
