"""Where a run is (RunState), and the random number generators, as a checkpoint stores them.

The checkpoint format is a contract with every run directory already on disk: a run
checkpointed by an older version must resume with this one. ``RunState.to_dict`` writes the
keys and shapes the first version wrote (``epoch_sums`` as a list of three floats), and
``from_dict`` reads them back.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

# The checkpoint's top-level keys. "ema" and "lookahead" are None when those are off.
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "scaler", "ema", "lookahead", "state", "rng")


@dataclass
class RunState:
    """The run's position, its bests, and the running sums of the epoch in progress."""

    epoch: int = 0                 # epochs completed
    batch: int = 0                 # batches done in the current epoch
    step: int = 0                  # optimizer steps done in the whole run
    best_val_acc: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0            # epochs since the last improvement (early stopping)
    epoch_loss_sum: float = 0.0    # sum over this epoch's images of the training loss
    epoch_correct: float = 0.0     # images classified right (against the mixed label's argmax)
    epoch_seen: float = 0.0        # images trained on (every rank's)
    elapsed_s: float = 0.0         # training time over every session of the run

    def add_steps(self, loss_sum: float, correct: float, seen: float) -> None:
        self.epoch_loss_sum += loss_sum
        self.epoch_correct += correct
        self.epoch_seen += seen

    def end_epoch(self) -> None:
        self.epoch += 1
        self.batch = 0
        self.epoch_loss_sum = self.epoch_correct = self.epoch_seen = 0.0

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch, "step": self.step,
                "best_val_acc": self.best_val_acc, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs,
                "epoch_sums": [self.epoch_loss_sum, self.epoch_correct, self.epoch_seen],
                "elapsed_s": self.elapsed_s}

    @classmethod
    def from_dict(cls, d: dict) -> "RunState":
        loss_sum, correct, seen = (float(v) for v in d["epoch_sums"])
        return cls(epoch=int(d["epoch"]), batch=int(d["batch"]), step=int(d["step"]),
                   best_val_acc=float(d["best_val_acc"]), best_epoch=int(d["best_epoch"]),
                   bad_epochs=int(d["bad_epochs"]), epoch_loss_sum=loss_sum, epoch_correct=correct,
                   epoch_seen=seen, elapsed_s=float(d["elapsed_s"]))


def rng_state() -> dict:
    """Every generator the run draws from, as tensors and numbers (weights_only-loadable)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]) + [random.getstate()[2] or 0],
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((3, tuple(py[:-1]), py[-1] or None))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
