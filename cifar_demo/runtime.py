"""Where the app runs, and what follows from it: the one place that knows.

    local       `python app.py` or the CLI on a laptop or a workstation: CUDA, then MPS, then the CPU
    space       a Hugging Face Space on paid hardware (SPACE_ID set): cpu-basic/upgrade, or a GPU of its own
    zerogpu     a ZeroGPU Space (SPACES_ZERO_GPU set, as Hugging Face sets it): a GPU exists only inside
                functions decorated with `spaces.GPU`, each call in a forked, daemonic child process

What follows (Runtime's properties): the device inference and training use, whether a training run
is a child process of the job manager (`python -m cifar_demo train`) or a GPU call inside the app
process (ZeroGPU: the child-process runner cannot get a GPU there), how many DataLoader worker
processes a loader may start (none inside a ZeroGPU call: a daemonic process cannot have children),
and which `spaces.GPU` decorator wraps GPU work (cifar_demo.zerogpu).

The stand-in (cifar_demo.zerogpu_standin) replays ZeroGPU's execution model without a GPU or the
Hub's scheduler, for tests and for bench/gpu_check.py: it is on where SPACES_ZERO_GPU is set AND
CIFAR_DEMO_ZEROGPU_STANDIN=1, so the code under test takes exactly the ZeroGPU branch.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Mapping

import torch

from . import zerogpu_standin

ZERO_GPU_ENV = "SPACES_ZERO_GPU"                    # set by Hugging Face on ZeroGPU Spaces
STANDIN_ENV = "CIFAR_DEMO_ZEROGPU_STANDIN"          # tests: ZeroGPU's model, played by zerogpu_standin
SPACE_ENV = "SPACE_ID"                              # set by Hugging Face on every Space


def _flag(value: str | None) -> bool:
    """The spaces package's reading of a boolean variable (spaces/config.py: "1", "t", "true")."""
    return value is not None and value.strip().lower() in ("1", "t", "true", "yes", "on")


def local_accelerator() -> str:
    """"cuda", "mps" or "cpu": what this process can compute on by itself (not asked on ZeroGPU,
    where torch.cuda is emulated outside GPU calls)."""
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


@dataclass(frozen=True)
class Runtime:
    where: str            # "local" | "space" | "zerogpu"
    accelerator: str      # "cuda" | "mps" | "cpu"; "cuda" on ZeroGPU (inside GPU calls)
    standin: bool = False  # ZeroGPU played by cifar_demo.zerogpu_standin (tests, gpu_check)

    @property
    def zerogpu(self) -> bool:
        return self.where == "zerogpu"

    @property
    def on_space(self) -> bool:
        """A Hugging Face Space of either kind (a shared app: see jobs.public_mode for what that changes)."""
        return self.where in ("space", "zerogpu")

    @property
    def training_in_app(self) -> bool:
        """A run is a GPU call in the app process (jobs.gpu_runner), not a child process."""
        return self.zerogpu

    @property
    def gpu_calls_concurrent(self) -> int:
        """Runs that train side by side: one child on a machine of its own cores or GPU; on ZeroGPU
        each run is a call that Hugging Face's queue gives a GPU of its own, so the app's queue
        lets several go (their waiting is ZeroGPU's queue's, with its per-visitor quota)."""
        return 8 if self.zerogpu else 1

    def device(self) -> torch.device:
        """Where a model computes, inference and training alike. On ZeroGPU: "cuda" inside a GPU call,
        the CPU outside one (torch.cuda is only emulated there); the stand-in's calls get what this
        machine has (the CPU in tests, a real GPU in bench/gpu_check.py)."""
        if not self.zerogpu:
            return torch.device(self.accelerator)
        if not in_gpu_call():
            return torch.device("cpu")
        return torch.device(local_accelerator() if self.standin else "cuda")

    def loader_workers(self, requested: int) -> int:
        """DataLoader worker processes a loader may start: none inside a ZeroGPU call (a daemonic
        child may not have children), else what was asked."""
        return 0 if self.zerogpu else max(0, int(requested))

    def describe(self) -> str:
        if self.zerogpu:
            return ("a ZeroGPU Space" + (" (the test stand-in)" if self.standin else "")
                    + ": training and inference run as GPU calls")
        place = "a Hugging Face Space" if self.where == "space" else "this machine"
        return f"{place}, on its {self.accelerator.upper() if self.accelerator != 'mps' else 'Apple GPU (MPS)'}"


def in_gpu_call() -> bool:
    """True inside a GPU call's child process (the real spaces.GPU's or the stand-in's): a GPU is
    there, and no child process may be started."""
    if zerogpu_standin.in_child():
        return True
    spaces = sys.modules.get("spaces.zero.wrappers")   # imported by spaces.GPU on ZeroGPU only
    return bool(getattr(spaces, "forked", False))


def detect(environ: Mapping[str, str] | None = None) -> Runtime:
    """The runtime this process is in, from the environment (os.environ by default) and torch."""
    env = os.environ if environ is None else environ
    if _flag(env.get(ZERO_GPU_ENV)):
        standin = _flag(env.get(STANDIN_ENV))
        return Runtime("zerogpu", "cuda", standin)
    where = "space" if env.get(SPACE_ENV) else "local"
    return Runtime(where, local_accelerator())


def current() -> Runtime:
    """detect() of this process now (not cached: tests switch the environment)."""
    return detect()
