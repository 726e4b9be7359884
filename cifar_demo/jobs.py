"""The app's one background training job: start, stop, snapshot, re-attach.

Training runs in a child process (`python -m cifar_demo train ...`) at a lower CPU priority,
so the app's predictions stay responsive while it uses every core, and a crash in training
cannot take the app down. The app follows the run through its directory (metrics.jsonl,
summary.json): a closed and reopened browser tab simply reads it again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .fsio import atomic_write_text
from .train import Run, TrainConfig, new_run_id, runs_root

NICENESS = 10  # training yields the CPU to the app's request handlers


class JobError(RuntimeError):
    """A request the job manager refuses (e.g. a second start); the message is for the user."""


@dataclass
class Snapshot:
    """What the Train tab shows: the run, its status and every event so far."""

    run_id: str | None
    status: str                 # idle | starting | running | stopping | finished | stopped | early_stopped | failed
    events: list[dict]
    summary: dict | None
    log_tail: str = ""

    @property
    def running(self) -> bool:
        return self.status in ("starting", "running", "stopping")

    def last(self, kind: str) -> dict | None:
        return next((e for e in reversed(self.events) if e.get("kind") == kind), None)


class JobManager:
    """Owns at most one training process for the whole app (thread-safe)."""

    def __init__(self, runs_dir: str | Path | None = None):
        self.runs_dir = runs_root(runs_dir).resolve()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._run_dir: Path | None = None
        self._stopping = False
        self._log = None

    # ---------------------------------------------------------------- control

    def start(self, cfg: TrainConfig) -> str:
        """Launch a run; returns its id. Refused while another run is going."""
        cfg.validate()
        with self._lock:
            if self._alive():
                raise JobError(f"a training run is already going ({self._run_dir.name}); "
                               "stop it or wait for it to finish")
            run_id = new_run_id(cfg.model)
            # Handed to the child process (the run directory is the child's to create).
            cfg_path = atomic_write_text(self.runs_dir / f".{run_id}.config.json", cfg.to_json())
            cmd = [sys.executable, "-m", "cifar_demo", "train", "--config", str(cfg_path),
                   "--run-id", run_id, "--runs-dir", str(self.runs_dir)]
            self._start_process(cmd, run_id)
            return run_id

    def resume(self, run_id: str) -> str:
        with self._lock:
            if self._alive():
                raise JobError(f"a training run is already going ({self._run_dir.name})")
            cmd = [sys.executable, "-m", "cifar_demo", "train", "--resume", run_id,
                   "--runs-dir", str(self.runs_dir)]
            self._start_process(cmd, run_id)
            return run_id

    def _start_process(self, cmd: list[str], run_id: str) -> None:
        self._run_dir = self.runs_dir / run_id
        log_path = self.runs_dir / f".{run_id}.log"
        self._log = open(log_path, "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_MININTERVAL="5")
        self._proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                      cwd=Path(__file__).resolve().parent.parent,
                                      preexec_fn=(lambda: os.nice(NICENESS)) if hasattr(os, "nice") else None)
        self._stopping = False

    def stop(self) -> bool:
        """Ask the run to stop at its next step (it writes a checkpoint first)."""
        with self._lock:
            if not self._alive():
                return False
            self._proc.send_signal(signal.SIGTERM)
            self._stopping = True
            return True

    def wait(self, timeout: float | None = None) -> int | None:
        proc = self._proc
        return None if proc is None else proc.wait(timeout)

    def _alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ---------------------------------------------------------------- observe

    @property
    def run_id(self) -> str | None:
        return self._run_dir.name if self._run_dir else None

    def snapshot(self, run_id: str | None = None) -> Snapshot:
        """The current (or a named past) run's status and events, read from its directory."""
        if run_id is None or run_id == self.run_id:
            run_dir, current = self._run_dir, True
        else:
            run_dir, current = self.runs_dir / run_id, False
        if run_dir is None:
            return Snapshot(None, "idle", [], None)
        run = Run(run_dir)
        events, summary = run.metrics(), run.summary()
        status = _status(events, summary)
        if current and self._proc is not None:
            code = self._proc.poll()
            if code is None:
                status = "stopping" if self._stopping else ("running" if events else "starting")
            elif summary is None:
                status = "stopped" if self._stopping else "failed"
        return Snapshot(run_dir.name, status, events, summary, self._log_tail(run_dir.name))

    def _log_tail(self, run_id: str, n: int = 2000) -> str:
        path = self.runs_dir / f".{run_id}.log"
        if not path.exists():
            return ""
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - n))
            return fh.read().decode("utf-8", "replace")


def _status(events: list[dict], summary: dict | None) -> str:
    if summary is not None:
        return summary["status"]
    end = next((e for e in reversed(events) if e.get("kind") == "end"), None)
    if end is not None:
        return end.get("status", "failed")
    return "stopped" if events else "idle"


_MANAGER: JobManager | None = None
_MANAGER_LOCK = threading.Lock()


def manager() -> JobManager:
    """The process-wide job manager (one training job for the whole app)."""
    global _MANAGER
    with _MANAGER_LOCK:
        if _MANAGER is None:
            _MANAGER = JobManager()
        return _MANAGER


def wait_for(predicate, timeout: float, interval: float = 0.2) -> bool:
    """Poll until predicate() is true or the timeout passes (for tests and scripts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
