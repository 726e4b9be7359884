"""Several processes, one run (torchrun sets RANK / WORLD_SIZE / LOCAL_RANK), and the step
metrics that are summed on the device and read once per logging interval.

With one process every helper here is a no-op or a plain read.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn


def dist_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun sets them; (0, 1, 0) without it."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def initialized() -> bool:

    return dist.is_available() and dist.is_initialized()


def init_process_group() -> None:

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")


def barrier() -> None:

    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def destroy_process_group() -> None:

    dist.destroy_process_group()


def broadcast_path(path: Path) -> Path:
    """Rank 0's path on every rank (every rank must use the same run directory)."""

    name = [Path(path).as_posix()]
    dist.broadcast_object_list(name, src=0)
    return Path(name[0])


def state_digest(model: nn.Module) -> str:
    """sha256 over a model's state_dict tensors (names and bytes, in key order)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def broadcast_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics).

    DDP broadcasts buffers at the start of each forward pass, but each rank then updates its
    running statistics on its own shard; syncing at epoch ends makes every rank validate and
    save the same model.
    """

    if initialized():
        for b in model.buffers():
            dist.broadcast(b, src=0)


def gather_digests(model: nn.Module) -> list[str]:

    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, state_digest(model))
    return out


class StepMeter:
    """Training loss and correct predictions summed on the device, step by step, without a sync.

    Reading a value from a GPU waits for every queued kernel, and in DDP each read is also an
    all-reduce; so the sums stay on the device and ``take()`` reads them (summed over the
    ranks) once per logging interval. The image count is known on the host.
    """

    def __init__(self, device: torch.device):
        # float64 so the epoch's sums do not lose the last steps' digits; MPS has no float64.
        self.dtype = torch.float32 if device.type == "mps" else torch.float64
        self.device = device
        self._sums = torch.zeros(2, dtype=self.dtype, device=device)
        self.seen = 0       # images since the last take()
        self.steps = 0      # steps since the last take()

    def add(self, loss: torch.Tensor, correct: torch.Tensor, n: int) -> None:
        """One step: its mean loss over `n` images and its count of correct predictions."""
        self._sums[0] += loss.detach().to(self.dtype) * n
        self._sums[1] += correct.to(self.dtype)
        self.seen += n
        self.steps += 1

    def take(self) -> tuple[float, float, float]:
        """(loss sum, correct, images) since the last take, over every rank; then zero."""
        values = torch.cat([self._sums, torch.tensor([float(self.seen)], dtype=self.dtype, device=self.device)])
        if initialized():

            dist.all_reduce(values)
        loss_sum, correct, seen = values.tolist()
        self._sums.zero_()
        self.seen = self.steps = 0
        return loss_sum, correct, seen
