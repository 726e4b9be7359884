"""hardware_info: the machine a card or a bench figure was measured on."""

from __future__ import annotations

import os

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
