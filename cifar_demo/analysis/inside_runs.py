"""A run's per-epoch weight snapshots as models: the inside-the-network views of a run as it trains.

The engine keeps an fp16 copy of the weights at the end of each epoch (runs.save_epoch_snapshot,
epochs/epoch_NNN.safetensors). Loaded here as float32 models in eval mode, kept in a small cache by
file (path, size, time): a page that follows a training run asks for the newest epoch every few
seconds and loads it once. The snapshot files are safetensors (no pickle) and are checked against
the run's architecture like its best weights (weights.model_from_state).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from .. import weights
from ..runs import Run, epoch_snapshots

CACHE_SIZE = 4
_cache: OrderedDict[tuple, nn.Module] = OrderedDict()
_lock = threading.Lock()


def saved_epochs(run: Run) -> list[int]:
    return list(epoch_snapshots(run))


def nearest_epoch(run: Run, epoch) -> int:
    """The saved epoch nearest `epoch` (a page's slider may sit between two saved ones); ValueError
    when the run has none yet or `epoch` is not a number."""
    saved = saved_epochs(run)
    if not saved:
        raise ValueError("this run has no epoch saved yet: the first one appears when its first epoch ends")
    if isinstance(epoch, bool) or not isinstance(epoch, (int, float)):
        raise ValueError("an epoch is a number")
    return min(saved, key=lambda e: (abs(e - float(epoch)), e))


def snapshot_model(run: Run, epoch: int) -> nn.Module:
    """The run's weights after `epoch` (a saved one: nearest_epoch), float32, eval mode; shared."""
    path = epoch_snapshots(run).get(int(epoch))
    if path is None:
        raise ValueError(f"epoch {epoch} of this run was not saved")
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise weights.WeightsError(f"run {run.id}: the snapshot of epoch {epoch} is not readable: {e}") from e
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    cfg = run.config()
    model = weights.model_from_state(state, cfg.model, run.classes(), cfg.model_kwargs,
                                     f"run {run.id}, epoch {epoch}").eval()
    with _lock:
        _cache[key] = model
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return model


def clear_cache() -> None:
    with _lock:
        _cache.clear()


__all__ = ["clear_cache", "nearest_epoch", "saved_epochs", "snapshot_model"]
