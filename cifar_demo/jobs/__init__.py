"""The app's training queue: owners, bounds, a fair queue, start, stop, snapshot, re-attach.

Training runs in a child process (`python -m cifar_demo train ...`) at a lower CPU priority,
so the app's predictions stay responsive while it uses every core, and a crash in training
cannot take the app down. The app follows a run through its directory (metrics.jsonl,
summary.json): a closed and reopened browser tab simply reads it again.

The two cores train one run at a time. Every run belongs to an owner: in local mode (`python
app.py`) the one user, LOCAL; in public mode (a Space: see ui.mode) each visitor, by a token
its browser keeps. The same rules hold in both:

- a start is queued behind the running run, first come first served; the queue has QUEUE_CAP
  places: a queued start takes one, a study (the Compare tab's) one for all of its runs
  (JobManager.hold; each run is queued under it at the back of the queue); past the cap a start
  or a study is refused with a message, and nothing waits outside the queue;
- an owner holds at most one place, a run queued or going or a study (locally that is "one run
  at a time"); in public mode so does a client, the network address a request comes from
  (ui.context.AppContext.client; CLIENT_CAP), however many owners (tokens) it mints;
- only the owner stops its run (or takes its queued start back); others only watch it;
- in public mode runs are bounded (Bounds: images passed through the model, the batch size, and
  wall-clock time over all of a run's sessions, so a Resume does not restart the clock), checked
  when they are queued and enforced while they run: the manager stops a run at its time limit,
  and kills (SIGKILL) a child still alive KILL_GRACE_S after it was asked to stop;
- a child starts with an allowlisted environment (records.child_env): no HF_TOKEN, no secret;
- public runs live in a folder per visitor (runs/visitors/<owner>/), deleted RETENTION_S after
  the visitor's last run ended (never while it has a run queued or going, or a study), and the
  least recently used first past VISITORS_DISK_CAP (jobs.retention);
- each started child is recorded in runs/.jobs/<run id>.json (pid, owner, command): an app
  restarted while a child still trains re-attaches to it; a dead one reads as "stopped".
"""

from __future__ import annotations

import threading

from . import lr_find_job  # noqa: F401  (jobs.lr_find_job: the range test as a job of the queue)
from .dispatch import JobManager
from .gpu_runner import start_note
from .records import (
    ACTIVE,
    LOCAL,
    NICENESS,
    QUEUE_CAP,
    RETENTION_S,
    Bounds,
    Job,
    JobError,
    Snapshot,
    View,
    pid_alive,
    public_bounds,
    public_mode,
    wait_for,
)

__all__ = ["ACTIVE", "LOCAL", "NICENESS", "QUEUE_CAP", "RETENTION_S", "Bounds", "Job", "JobError", "JobManager",
           "Snapshot", "View", "manager", "pid_alive", "public_bounds", "public_mode", "start_note", "wait_for"]


_MANAGER: JobManager | None = None
_MANAGER_LOCK = threading.Lock()


def manager() -> JobManager:
    """The process-wide job manager (one queue for the whole app); public when the app is."""
    global _MANAGER
    with _MANAGER_LOCK:
        if _MANAGER is None:
            _MANAGER = JobManager(public=public_mode())
        return _MANAGER
