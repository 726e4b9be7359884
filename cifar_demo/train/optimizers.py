"""The optimizers beyond torch.optim: SAM (two passes a step), Muon (orthogonalised steps for
conv filters) and airbench's Lookahead. Each is a plain torch optimizer (or wrapper) of its groups."""

from __future__ import annotations

import functools

import torch
from torch import nn

from ..recipe import TrainConfig
from .precision import cpu_has_bf16


def base_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The optimizer that owns the parameter groups' steps (SAM's inner SGD, else itself)."""
    return optimizer.base_optimizer if isinstance(optimizer, SAM) else optimizer

class SAM(torch.optim.Optimizer):
    """Sharpness-aware minimisation (Foret et al., 2021) wrapping a base optimizer.

    Each step needs two forward/backward passes: after the first backward, ``first_step``
    moves the weights to the worst case within radius rho (w + e, e = rho * g / ||g||); the
    loss is recomputed there; after the second backward, ``restore`` puts the weights back
    to w and the base optimizer steps with the gradient taken at w + e (``second_step``
    does both). ``optimizer_step`` drives the passes, with loss scaling and clipping.
    w is kept as a copy, not recomputed as (w + e) - e: that is w only up to rounding, and
    a step skipped for an fp16 overflow must leave the weights exactly as they were.
    """

    def __init__(self, params, base_optimizer_cls, rho: float = 0.05, **kwargs):
        if rho <= 0:
            raise ValueError("SAM rho must be > 0")
        super().__init__(params, dict(rho=rho, **kwargs))
        self.base_optimizer = base_optimizer_cls(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups

    @torch.no_grad()
    def grad_norm(self) -> torch.Tensor:
        """The 2-norm over every gradient (a tensor on the parameters' device: no sync)."""
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        return torch.norm(torch.stack([gr.norm(2) for gr in grads]), 2) if grads else torch.tensor(0.0)

    @torch.no_grad()
    def first_step(self, norm: torch.Tensor | None = None) -> None:
        norm = self.grad_norm() if norm is None else norm
        for group in self.param_groups:
            scale = group["rho"] / (norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                self.state[p]["w"] = p.detach().clone()
                p.add_(p.grad * scale.to(p))

    @torch.no_grad()
    def restore(self) -> None:
        """Back from w + e to w (the gradient in .grad stays the one taken at w + e)."""
        for group in self.param_groups:
            for p in group["params"]:
                if "w" in self.state[p]:
                    p.copy_(self.state[p].pop("w"))

    def second_step(self) -> None:
        self.restore()
        self.base_optimizer.step()

    def step(self, closure=None):  # pragma: no cover - the engine drives the two steps
        raise RuntimeError("SAM needs first_step/second_step; the engine calls them")

    def state_dict(self):
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict):
        self.base_optimizer.load_state_dict(state_dict)


# Muon's Newton-Schulz iteration: X <- a X + b (X X^T) X + c (X X^T)^2 X, an odd quintic in the
# singular values (the singular vectors stay put). The coefficients are Keller Jordan's: chosen
# for the largest slope at zero (a = 3.4445), so the small singular values of a gradient grow
# fastest, at the price of not converging to exactly 1: a few steps leave every singular value
# that started above ~1/a^steps of the largest in a band around 1 (about 0.7-1.2), which trains
# as well as the exact orthogonal factor U V^T.
NS_COEFFS = (3.4445, -4.7750, 2.0315)


def newton_schulz(g: torch.Tensor, steps: int = 3, dtype: torch.dtype = torch.float32,
                  eps: float = 1e-7) -> torch.Tensor:
    """Near-orthogonalise each matrix of `g` (shape (..., m, n)): about U V^T of its SVD U S V^T.

    The iteration runs in `dtype` (bf16 where the hardware has it: it needs no precision,
    only to keep the singular values in a band; fp32 on a CPU that would emulate bf16) on
    the wide orientation (m <= n), so its square products are m x m. Scaling by the
    Frobenius norm first puts every singular value at or below 1, inside the region where
    the iteration converges. Returns g's dtype and shape.
    """
    a, b, c = NS_COEFFS
    x = g.to(dtype)
    squeeze = x.dim() == 2
    x = x.reshape(-1, *x.shape[-2:])
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    x = x / (torch.linalg.matrix_norm(x, keepdim=True) + eps)
    for _ in range(steps):
        gram = x @ x.mT                                        # (k, m, m), m the short side
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # b A + c A^2
        x = torch.baddbmm(x, poly, x, beta=a)                    # a X + (b A + c A^2) X
    if tall:
        x = x.mT
    x = x.reshape(g.shape) if not squeeze else x[0]
    return x.to(g.dtype)


@functools.cache
def newton_schulz_dtype(device_type: str) -> torch.dtype:
    """bf16 on CUDA and on CPUs that compute it natively; fp32 where bf16 would be emulated
    (on this project's 2-core EPYC a bf16 matmul runs at 1.3 GFLOP/s against ~170 in fp32)."""
    if device_type == "cuda" or (device_type == "cpu" and cpu_has_bf16()):
        return torch.bfloat16
    return torch.float32


class Muon(torch.optim.Optimizer):
    """Muon (Jordan et al. 2024, as in airbench94_muon) for conv filters, Nesterov SGD for the rest.

    One optimizer holds both kinds of parameter group, so one state_dict, one LR scheduler
    and one GradScaler drive them all. In a group with ``use_muon`` (each parameter at least
    2-D: a conv's filters are flattened to (out_channels, in_channels * kh * kw)):

        buf = momentum * buf + g;  u = g + momentum * buf (Nesterov) or buf
        w  *= sqrt(out_channels) / ||w||     (renorm: each filter has mean squared norm 1)
        w  -= lr * NS(u)                     (NS: newton_schulz, ns_steps iterations)

    The update's size is set by lr alone (every singular value near 1), whatever the
    gradient's scale; the renormalisation before each step keeps the weights' scale fixed,
    so lr is also the step relative to the weights (the filters feed BatchNorm, which
    ignores their scale; without it a scale-free layer's weights grow and its effective lr
    falls). Other groups step exactly as torch.optim.SGD with dampening 0:
    ``d = g + weight_decay * w; buf = momentum * buf + d; w -= lr * (d + momentum * buf)``.

    On a GPU the Newton-Schulz iterations run batched: a group's updates of the same matrix
    shape go through one stack of matrix products (airnet's three 256 x 2304 filters together),
    which saves kernel launches. On a CPU the matrices are large enough already and batching
    measured slower (airnet's six filters, 3 iterations, fp32, 2-core EPYC: 68 ms a step one at
    a time against 85 ms batched, medians of 15; 6.3 GFLOP), so each goes alone there: ~0.5%
    of a step, whose forward and backward of 2000 images take ~16 s. ``ns_dtype`` None picks
    newton_schulz_dtype of the parameters' device.
    """

    def __init__(self, params, lr: float = 0.24, momentum: float = 0.6, nesterov: bool = True,
                 weight_decay: float = 0.0, use_muon: bool = True, ns_steps: int = 3, renorm: bool = True,
                 ns_dtype: torch.dtype | None = None):
        if lr < 0 or not 0 <= momentum < 1 or weight_decay < 0 or ns_steps < 1:
            raise ValueError("Muon needs lr >= 0, momentum in [0, 1), weight_decay >= 0, ns_steps >= 1")
        defaults = {"lr": lr, "momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay,
                    "use_muon": use_muon, "ns_steps": ns_steps, "renorm": renorm}
        super().__init__(params, defaults)
        for group in self.param_groups:
            if group["use_muon"] and any(p.dim() < 2 for p in group["params"]):
                raise ValueError("a Muon group holds matrices or filters only (vectors go to an SGD group)")
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            directions = [self._momentum_direction(p, group) for p in params]
            if not group["use_muon"]:
                torch._foreach_add_(params, directions, alpha=-group["lr"])
                continue
            by_shape: dict[tuple, list[int]] = {}
            for i, p in enumerate(params):
                # Batched on a GPU only (see the class docstring): on a CPU each matrix goes alone.
                by_shape.setdefault((p.shape[0], p[0].numel()) + (() if p.is_cuda else (i,)), []).append(i)
            for key, idx in by_shape.items():
                stacked = torch.stack([directions[i].reshape(key[:2]) for i in idx])
                ortho = newton_schulz(stacked, group["ns_steps"], self.ns_dtype or newton_schulz_dtype(
                    params[idx[0]].device.type))
                for k, i in enumerate(idx):
                    p = params[i]
                    if group["renorm"]:
                        p.mul_(p.shape[0] ** 0.5 / p.norm().clamp_min(1e-12))
                    p.add_(ortho[k].view(p.shape), alpha=-group["lr"])  # back from (out, in*kh*kw)
        return loss

    def _momentum_direction(self, p: torch.Tensor, group: dict) -> torch.Tensor:
        """SGD's heavy-ball or Nesterov direction, with L2 weight decay added to the gradient."""
        d = p.grad
        if group["weight_decay"]:
            d = d.add(p, alpha=group["weight_decay"])
        momentum = group["momentum"]
        if not momentum:
            return d
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.clone(d).detach()
        else:
            state["momentum_buffer"].mul_(momentum).add_(d)
        buf = state["momentum_buffer"]
        return d.add(buf, alpha=momentum) if group["nesterov"] else buf


class Lookahead:
    """airbench's Lookahead-style averaging (after Zhang et al. 2019), on a model in place.

    A slow copy of every floating-point tensor of the state (weights and BatchNorm
    statistics) follows the model: ``update(model, decay)`` moves the slow copy to
    ``decay * slow + (1 - decay) * fast`` and then sets the model to it. airbench calls it
    every 5 steps with decay 0.95**5 * (t/T)**3 (no pull early on, when the weights move
    fast; a strong pull at the end) and finishes with decay 1, which leaves the model at
    the slow weights.
    """

    def __init__(self, model: nn.Module):
        self.slow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @staticmethod
    def decay_at(cfg: TrainConfig, step: int, total_steps: int) -> float | None:
        """The decay to apply after optimizer step `step` (1-based), or None for no update."""
        if step >= total_steps:
            return 1.0
        if step % cfg.lookahead_every == 0:
            return cfg.lookahead_decay * (step / total_steps) ** 3
        return None

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        state = model.state_dict()
        for k, slow in self.slow.items():
            slow.lerp_(state[k], 1 - decay)
            state[k].copy_(slow)

    def state_dict(self) -> dict:
        return dict(self.slow)

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        for k, slow in self.slow.items():
            slow.copy_(state[k])
