"""hardware_info: the machine a card or a bench figure was measured on."""

from __future__ import annotations

import os
import platform
import resource

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
