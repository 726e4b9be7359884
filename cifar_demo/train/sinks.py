"""Where the engine's events go: a JSONL file in the run directory, a console progress bar,
and any callable the caller adds (the app, a benchmark). The engine never prints itself.

Events are dicts with a "kind": "start", "step" (once per logging interval), "epoch", "end".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

Sink = Callable[[dict], None]


class JsonlSink:
    """Appends every event as one JSON line; flushes so readers (the app) see it at once."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fh = open(self.path, "a", encoding="utf-8")

    def __call__(self, event: dict) -> None:
        self._fh.write(json.dumps(event) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class TqdmSink:
    """A tqdm progress bar over all steps of the run, and one printed line per epoch."""

    def __init__(self, **tqdm_kwargs):
        self.kwargs = tqdm_kwargs
        self.bar = None

    def __call__(self, event: dict) -> None:

        kind = event.get("kind")
        if kind == "start":
            self.bar = tqdm(total=event["total_steps"], initial=event["step"], unit="step",
                            desc=event["run_id"], dynamic_ncols=True, **self.kwargs)
        elif kind == "step" and self.bar is not None:
            self.bar.update(event["step"] - self.bar.n)
            self.bar.set_postfix(loss=f"{event['train_loss']:.3f}", acc=f"{event['train_acc']:.3f}",
                                 lr=f"{event['lr']:.2e}", img_s=f"{event['images_per_s']:.0f}",
                                 refresh=False)
        elif kind == "epoch" and self.bar is not None:
            self.bar.write(format_epoch(event))
        elif kind == "end" and self.bar is not None:
            self.bar.close()
            self.bar = None


def format_epoch(e: dict) -> str:
    val = "" if e.get("val_acc") is None else f"  val loss {e['val_loss']:.4f} acc {100 * e['val_acc']:.2f}%"
    return (f"epoch {e['epoch']:>3}  train loss {e['train_loss']:.4f} acc {100 * e['train_acc']:.2f}%"
            f"{val}  lr {e['lr']:.3g}  {e['images_per_s']:.0f} img/s  {e['elapsed_s']:.0f}s")
