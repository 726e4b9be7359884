"""hardware_info: the machine a card or a bench figure was measured on."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cifar_demo import hardware


def test_hardware_info_names_this_machine():
    hw = hardware.hardware_info()
    assert isinstance(hw["cpu"], str) and hw["cpu"] and hw["cpu"] == hardware.cpu_model()
    # The usable cores (affinity), not the host's count a container would see.
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert hw["cores"] == usable >= 1
    if torch.cuda.is_available():
        assert hw["gpu"] == torch.cuda.get_device_name(0)
    elif torch.backends.mps.is_available():
        assert hw["gpu"] == "Apple MPS"
    else:
        assert hw["gpu"] is None


def _page_faults_of(fn) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or os.environ.get("CIFAR_DEMO_MALLOC") == "default",
                    reason="keep_freed_memory tunes glibc's malloc only")
def test_kept_memory_is_reused_without_page_faults():
    # 64 MB blocks, as a training step's activations: above glibc's largest mmap threshold, so
    # by default each one is mapped afresh and its 16,384 pages (or 32 huge pages) fault again.
    assert hardware.keep_freed_memory() is True
    assert hardware.keep_freed_memory() is True   # idempotent

    def steps():
        for _ in range(5):
            torch.empty(16 * 2**20).fill_(1.0)

    # The first allocations grow the heap and fault (here up to four of them, depending on
    # what the process allocated before); once it has grown, a round faults no page. Without
    # the tuning every round faults ~82,000 pages.
    faults = [_page_faults_of(steps) for _ in range(6)]
    assert min(faults) < 64, faults


def test_keep_freed_memory_can_be_turned_off(monkeypatch):
    monkeypatch.setattr(hardware, "_kept", None)
    monkeypatch.setenv("CIFAR_DEMO_MALLOC", "default")
    assert hardware.keep_freed_memory() is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or os.environ.get("CIFAR_DEMO_MALLOC") == "default",
                    reason="keep_some_freed_memory tunes glibc's malloc only")
def test_the_server_reuses_pass_sized_blocks_and_gives_back_larger_ones():
    """The app's server (ui.launch): blocks of a Predict pass are reused without page faults,
    and a block above SERVER_BLOCK goes back to the kernel when freed (a process of its own:
    mallopt tunes the whole process)."""
    code = """
import resource, sys, torch
from cifar_demo import hardware
def faults(fn):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
if sys.argv[1] == "tuned":
    assert hardware.keep_some_freed_memory()
def passes():
    for _ in range(5):
        torch.empty(8 * 2**20).fill_(1.0)   # 32 MB: a pass's activation, above glibc's first threshold
rounds = [faults(passes) for _ in range(4)]
big = torch.empty(hardware.SERVER_BLOCK // 4 + 2**20).fill_(1.0)   # above SERVER_BLOCK
before = rss()
del big
print(min(rounds[1:]), (before - rss()) >> 20)
"""
    got = {}
    for mode in ("tuned", "default"):
        out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, timeout=120,
                             cwd=Path(__file__).resolve().parents[1], env={**os.environ, "CIFAR_DEMO_MALLOC": ""})
        assert out.returncode == 0, out.stderr
        got[mode] = [int(v) for v in out.stdout.split()]
    assert got["default"][0] > 5000, got    # 40,000 by default: each block mapped and faulted again
    assert got["tuned"][0] < 100, got        # reused
    assert got["tuned"][1] >= hardware.SERVER_BLOCK >> 20, got   # the large block went back
