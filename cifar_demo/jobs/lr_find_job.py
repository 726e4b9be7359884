"""A learning-rate range test (analysis.lr_find) as a job of the training queue.

It trains, so it waits in the same queue, takes the one training slot, counts as its owner's one
active job and, in public mode, is held to the same bounds (the batch size, the images it passes
through the model: steps x batch, and the wall-clock limit the dispatcher enforces). The child is
`python -m cifar_demo lr-find --config ... --out <dir>/lr_find.json`; its folder is
<owner's runs folder>/.lr_find/<id>/ (not a run: list_runs does not see it, and the Train tab's
"latest run" skips it), removed with the owner's folder like a run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .. import runtime
from ..fsio import atomic_write_text
from ..train import TrainConfig, new_run_id, validate
from .dispatch import JobManager
from .records import LOCAL, Job, JobError

KIND = "lr_find"
FOLDER = ".lr_find"
RESULT = "lr_find.json"
MAX_STEPS = 300


def submit(manager: JobManager, cfg: TrainConfig, owner: str = LOCAL, steps: int = 100,
           client: str | None = None) -> str:
    """Queue the range test of `cfg` for `owner` (asked by `client`); returns the job's id. JobError
    (for people) when the owner or (public) its address has a place already, the queue is full, it
    is over the bounds, or training runs inside the app (ZeroGPU: not offered there yet)."""
    validate(cfg)
    if runtime.current().training_in_app:
        raise JobError("the learning-rate finder is not offered on this Space's GPU yet; run it with "
                       "python -m cifar_demo lr-find on your own machine")
    if not isinstance(steps, int) or not 10 <= steps <= MAX_STEPS:
        raise JobError(f"the range test takes 10 to {MAX_STEPS} steps")
    images = steps * cfg.batch_size
    if manager.bounds is not None:
        if cfg.batch_size > manager.bounds.max_batch:
            raise JobError(f"batch size {cfg.batch_size:,} is over this shared app's cap of "
                           f"{manager.bounds.max_batch:,}")
        if images > manager.bounds.max_images:
            raise JobError(f"{steps} steps of {cfg.batch_size} images are over this shared app's cap of "
                           f"{manager.bounds.max_images:,} images")
    with manager._lock:
        client = manager._admit(owner, client)   # the same places as a run: one per owner and per address
        folder = Path(manager.runs_dir_for(owner)) / FOLDER
        job_id = "lrfind-" + new_run_id(cfg.model)
        cfg_path = atomic_write_text(folder / f".{job_id}.config.json", cfg.to_json())
        (folder / job_id).mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "cifar_demo", "lr-find", "--config", str(cfg_path), "--steps", str(steps),
               "--out", str(folder / job_id / RESULT)]
        manager._add(Job(job_id, owner, str(folder / job_id), cmd, manager._clock(), images, kind=KIND,
                         client=client))
        return job_id


def status(manager: JobManager, job_id: str, owner: str = LOCAL) -> tuple[str, dict | None]:
    """(state, result): "queued", "running", "done" (with the result), "failed" or "unknown" (also
    for another owner's job: nothing about it is revealed)."""
    with manager._lock:
        job = manager._jobs.get(job_id) if isinstance(job_id, str) else None
    if job is None or job.owner != owner or job.kind != KIND:
        return "unknown", None
    if job.state != "ended":
        return job.state, None
    try:
        return "done", json.loads((Path(job.run_dir) / RESULT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "failed", None
