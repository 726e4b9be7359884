"""Whole-test-set work as GPU calls (zerogpu.gpu): on a ZeroGPU Space each is a `spaces.GPU` call
with a short duration, elsewhere a plain call on this machine's device (CUDA, MPS or the CPU).

Only what passes many images through a model is here: Evaluate (evalcache.evaluate_target). A
Predict is one picture through the zoo (analysis.serve batches several): on ZeroGPU it stays on
the app's CPU, where it takes milliseconds, instead of waiting in ZeroGPU's queue and spending
the visitor's GPU quota (docs/hosting.md).
"""

from __future__ import annotations

from torch import nn

from ..data import Split
from ..zerogpu import gpu
from . import evaluate as evaluate_mod

EVAL_START_S = 15           # the call's start: the model and the images to the GPU
EVAL_IMAGES_PER_S = 2_000   # a conservative floor for inference on a GPU (a training step costs ~3x more)
EVAL_MAX_S = 60


def evaluate_duration(model: nn.Module, split: Split, *, tta: str = "none", **_) -> int:
    """Seconds of GPU an evaluation of `split` asks for (each TTA view counts as a pass)."""
    views = 1 if tta == "none" else 3
    return int(min(EVAL_MAX_S, EVAL_START_S + views * len(split) / EVAL_IMAGES_PER_S))


@gpu(duration=evaluate_duration)
def evaluate(model: nn.Module, split: Split, **kwargs) -> evaluate_mod.EvalResult:
    """analysis.evaluate.evaluate as a GPU call (its device: the runtime's, the GPU inside a call)."""
    return evaluate_mod.evaluate(model, split, **kwargs)
