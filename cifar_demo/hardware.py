"""What machine this is: recorded in run summaries and model cards, printed by every bench.

These shared machines differ up to 2x in speed from one session to the next, so a time means
little without the machine beside it: ``hardware_info()`` names it and ``matmul_peak_gflops()``
measures what its cores can do right now.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from . import runtime


def hardware_info() -> dict[str, Any]:
    """{"cpu": model name, "cores": usable logical CPUs, "gpu": name or None} of this machine."""
    gpu = None
    device = runtime.current().device()   # on ZeroGPU outside a GPU call: the CPU (CUDA is only emulated)
    if device.type == "cuda":
        gpu = torch.cuda.get_device_name(0)
    elif device.type == "mps":
        gpu = "Apple MPS"
    # Affinity, not os.cpu_count(): a container sees the host's count but may run on fewer.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu_model(), "cores": cores, "gpu": gpu}


# glibc's mallopt parameters (malloc.h): how large an allocation may be before it gets pages of
# its own, how many such mappings may exist, and how much free memory at the heap's top is kept.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_KEEP_FREED_ENV = "CIFAR_DEMO_MALLOC"   # "default": leave glibc's allocator as it is
_kept: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep and reuse the memory that tensors free, instead of giving it
    back to the kernel; True where that is in force (Linux with glibc), False elsewhere or
    when CIFAR_DEMO_MALLOC=default. Idempotent; affects later allocations of the process.

    Why: glibc serves any allocation above 32 MB (its largest automatic threshold) with a
    fresh mmap and unmaps it on free. A training step's activations are such blocks (airnet at
    batch 2,000: 2000 x 64 x 32 x 32 bf16 = 262 MB each), so every step maps them again and
    the kernel zeroes every page on first touch: on the 2-core EPYC of docs/benchmarks.md a
    third of a step's CPU time went to page faults. With mmap off and the heap's top never
    trimmed, the second step finds the first step's memory free in the heap
    (`python bench/train_step.py --batch 2000 --malloc default` against the same without:
    see docs/benchmarks.md). The cost: the process keeps its peak heap until it exits, which
    training and CLI processes do when done.
    """
    global _kept
    if _kept is None:
        _kept = False
        if os.environ.get(_KEEP_FREED_ENV, "").lower() != "default" and platform.libc_ver()[0] == "glibc":
            with contextlib.suppress(OSError, AttributeError):
                libc = ctypes.CDLL(None)
                # A trim threshold of -1 turns trimming off (mallopt(3)).
                _kept = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, -1))
    return _kept


def allocator_line(kept: bool) -> str:
    """How the benches' headers say whether keep_freed_memory is in force."""
    return f"freed memory {'kept' if kept else 'returned (allocator default)'}"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def matmul_peak_gflops(n: int = 2048, dtype: torch.dtype = torch.bfloat16, device: str = "cpu",
                       repeats: int = 5) -> float:
    """Best-of-`repeats` GFLOP/s of an n x n matrix product: the ceiling a training step can reach.

    Best, not median: the figure stands for what the cores can do, and a slow repeat is
    another process's doing.
    """
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b  # warm-up: thread pool, kernel choice
    best = float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def matmul_peaks_line(n: int = 4096) -> str:
    """The n x n matrix-product peak in fp32 and bf16 (GFLOP/s, best of 3), for a bench's header.
    bf16 is probed at 512 first: where the CPU emulates it (~1 GFLOP/s) one large product would
    take minutes."""
    fp32 = matmul_peak_gflops(n, torch.float32, repeats=3)
    probe = matmul_peak_gflops(512, torch.bfloat16, repeats=2)
    if probe < 20:
        bf16 = f"bf16 {probe:.1f} GFLOP/s (512x512: emulated, no native bf16)"
    else:
        bf16 = f"bf16 {matmul_peak_gflops(n, torch.bfloat16, repeats=3):.0f} GFLOP/s"
    return f"matmul peak ({n}x{n}) fp32 {fp32:.0f} GFLOP/s, {bf16}"


def machine_line() -> str:
    """One line for a bench's output: CPU, cores, GPU, torch, threads, matmul peaks."""
    hw = hardware_info()
    return (f"{hw['cpu']}, {hw['cores']} cores, gpu {hw['gpu']}; torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads; {matmul_peaks_line()}")
