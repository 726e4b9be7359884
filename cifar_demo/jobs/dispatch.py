"""JobManager: the queue and the one running training child of the whole app (see jobs/__init__)."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from .. import runtime
from ..fsio import atomic_write_text
from ..train import Run, TrainConfig, new_run_id, runs_root, validate
from .gpu_runner import spawn_gpu_call
from .places import Places
from .records import (
    KILL_GRACE_S,
    LOCAL,
    POLL_S,
    QUEUE_CAP,
    RETENTION_S,
    VISITORS_DISK_CAP,
    Attached,
    Bounds,
    Hold,
    Job,
    JobError,
    Snapshot,
    View,
    client_cap,
    log_tail,
    pid_alive,
    public_bounds,
    status_of,
    wait_for,
)
from .records import spawn as default_spawn
from .retention import Retention


class JobManager(Places, Retention):
    """The queue and the one running training process of the whole app (thread-safe).

    The queue has queue_cap places: a queued start takes one, a study (hold) one for all of its
    runs. An owner holds at most one place (a run queued or going, or a study), and in public
    mode a client (ui.context.client_key: the request's address) at most client_cap, whatever
    owners (tokens) it mints."""

    def __init__(self, runs_dir: str | Path | None = None, *, public: bool = False, bounds: Bounds | None = None,
                 queue_cap: int = QUEUE_CAP, retention_s: float = RETENTION_S,
                 spawn: Callable | None = None, clock: Callable[[], float] = time.time, dispatch: bool = True,
                 kill_grace_s: float | None = None, disk_cap: int = VISITORS_DISK_CAP,
                 places_per_client: int | None = None, slots: int | None = None):
        self.runs_dir = runs_root(runs_dir).resolve()
        self.public = public
        # A child that outlives SIGTERM by this much is killed; locally a stop only asks (None).
        self.kill_grace_s = kill_grace_s if kill_grace_s is not None else (KILL_GRACE_S if public else None)
        self.bounds = bounds if bounds is not None else (public_bounds() if public else None)
        self.queue_cap, self.retention_s, self.disk_cap = queue_cap, retention_s, disk_cap
        self.client_cap = places_per_client if places_per_client is not None else client_cap()
        # Where the app runs decides how a run trains (runtime): a child process, or on ZeroGPU a GPU
        # call in this process (gpu_runner), several side by side (ZeroGPU's queue does the waiting).
        where = runtime.current()
        self._spawn = spawn or (spawn_gpu_call if where.training_in_app else default_spawn)
        self.slots = slots if slots is not None else where.gpu_calls_concurrent
        self._clock = clock
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._procs: dict[str, object] = {}
        self._holds: dict[str, Hold] = {}   # studies' places (in memory: a restart interrupts studies)
        self._rate: float | None = None    # images/s of the last run seen training (for estimates)
        self._cleaned = 0.0
        self._reattach()
        self._thread = None
        if dispatch:
            self._thread = threading.Thread(target=self._loop, name="cifar-demo-jobs", daemon=True)
            self._thread.start()

    # ---------------------------------------------------------------- where things live

    def runs_dir_for(self, owner: str = LOCAL) -> Path:
        """The folder of an owner's runs: runs/ locally, runs/visitors/<owner>/ in public mode."""
        if not self.public or owner == LOCAL:
            return self.runs_dir
        if not owner.isalnum():
            raise JobError("unknown visitor")
        return self.runs_dir / "visitors" / owner

    def _records(self) -> Path:
        return self.runs_dir / ".jobs"

    def _save(self, job: Job) -> None:
        atomic_write_text(self._records() / f"{job.run_id}.json", json.dumps(asdict(job)))

    # ---------------------------------------------------------------- control

    def check(self, cfg: TrainConfig) -> None:
        """Refuse (ValueError, JobError) a config this manager would not queue: validate(), and
        in public mode the bounds. A study checks all of its configs before it holds a place."""
        validate(cfg)
        if self.bounds is not None:
            self.bounds.check(cfg)

    def submit(self, cfg: TrainConfig, owner: str = LOCAL, client: str | None = None, hold: str | None = None) -> str:
        """Queue a run for `owner` (asked by `client`, default the owner); returns its id. It
        starts as soon as the cores are free. Under a `hold` (a study's: see hold) it takes the
        study's place instead of a new one."""
        self.check(cfg)
        with self._lock:
            client = self._under(hold, owner) if hold is not None else self._admit(owner, client)
            folder = self.runs_dir_for(owner)
            run_id = new_run_id(cfg.model)
            # Handed to the child process (the run directory is the child's to create).
            cfg_path = atomic_write_text(folder / f".{run_id}.config.json", cfg.to_json())
            cmd = [sys.executable, "-m", "cifar_demo", "train", "--config", str(cfg_path),
                   "--run-id", run_id, "--runs-dir", str(folder)]
            self._add(Job(run_id, owner, str(folder / run_id), cmd, self._clock(), Bounds.images(cfg),
                          client=client, hold=hold or ""))
            return run_id

    start = submit   # the name callers used when there was no queue

    def resume(self, run_id: str, owner: str = LOCAL, client: str | None = None) -> str:
        """Queue the continuation of a stopped run of `owner` (from its last checkpoint)."""
        folder = self.runs_dir_for(owner)
        try:
            run = Run.by_id(run_id, folder)   # only a run of the owner's folder, by a plain id
        except (ValueError, FileNotFoundError) as e:
            raise JobError(str(e)) from None
        cfg = run.config()
        if self.bounds is not None:
            self.bounds.check(cfg)
        with self._lock:
            client = self._admit(owner, client)
            used = self._used_s(run)
            if self.bounds is not None and used >= self.bounds.max_seconds:
                raise JobError(f"run {run.id} has used its {self.bounds.max_seconds / 60:.0f} minutes on this "
                               "shared app; start a new run instead")
            cmd = [sys.executable, "-m", "cifar_demo", "train", "--resume", run.id, "--runs-dir", str(folder)]
            self._add(Job(run.id, owner, str(run.dir), cmd, self._clock(), Bounds.images(cfg), used_s=used,
                          client=client))
            return run.id

    def _used_s(self, run: Run) -> float:
        """Wall-clock seconds `run` has had so far, all sessions together: its last job record's
        (earlier sessions, plus the last one's start to end), and at least the training time its
        metrics record (elapsed_s, carried across resumes by the checkpoint)."""
        job = self._jobs.get(run.id)
        used = 0.0
        if job is not None and Path(job.run_dir) == run.dir:
            used = job.used_s + ((job.ended or self._clock()) - job.started if job.started is not None else 0.0)
        recorded = [float(e["elapsed_s"]) for e in run.metrics() if isinstance(e.get("elapsed_s"), (int, float))]
        return max([used, *recorded])

    def _add(self, job: Job) -> None:
        self._jobs[job.run_id] = job
        self._save(job)
        self.poll()

    def stop(self, owner: str = LOCAL, run_id: str | None = None) -> bool:
        """Stop the owner's running run at its next step (it checkpoints first), or take its
        queued start back. False if the owner has neither (another's run is not theirs to stop)."""
        with self._lock:
            job = self._jobs.get(run_id) if run_id else self._active(owner)
            if job is None or job.owner != owner or job.state == "ended":
                return False
            if job.state == "queued":
                self._end(job, "taken back before it started")
                return True
            self._procs[job.run_id].send_signal(signal.SIGTERM)
            if not job.stopping:
                job.stopping, job.signalled = True, self._clock()
            self._save(job)
            return True

    def wait(self, timeout: float | None = None, run_id: str | None = None) -> int | None:
        """Wait for the running (or named, else latest) job's process; its exit code (None: no process)."""
        with self._lock:
            job = self._jobs.get(run_id) if run_id else (self._running() or self._latest())
            proc = self._procs.get(job.run_id) if job else None
        if proc is None:
            return None
        if hasattr(proc, "wait"):
            code = proc.wait(timeout)
        else:
            wait_for(lambda: proc.poll() is not None, timeout if timeout is not None else 1e9)
            code = proc.poll()
        self.poll()
        return code

    # ---------------------------------------------------------------- the dispatcher

    def poll(self) -> None:
        """One look: reap an ended child, enforce the time limit, start the next queued run,
        clean up old visitor folders. The dispatcher thread calls it every POLL_S."""
        with self._lock:
            now = self._clock()
            for job in self._all_running():
                code = self._procs[job.run_id].poll()
                if code is not None:
                    self._end(job)
                elif (job.stopping and self.kill_grace_s is not None and job.signalled is not None
                      and now - job.signalled > self.kill_grace_s):
                    # Asked to stop and still going: killed (its last epoch's checkpoint stays).
                    self._procs[job.run_id].send_signal(signal.SIGKILL)
                    job.signalled = None   # killed once
                    job.note = (job.note + "; " if job.note else "") + \
                        f"killed: it did not stop within {self.kill_grace_s:.0f} s"
                    self._save(job)
                elif (self.bounds is not None and not job.stopping and job.started is not None
                      and job.used_s + now - job.started > self.bounds.max_seconds):
                    self._procs[job.run_id].send_signal(signal.SIGTERM)
                    job.stopping, job.signalled, job.note = True, now, "stopped at the time limit"
                    self._save(job)
            while len(self._all_running()) < self.slots and self._queue():
                self._launch(self._queue()[0])
            if self.public and now - self._cleaned > 60:
                self._cleaned = now
                self.cleanup(now)

    def _loop(self) -> None:
        while True:
            time.sleep(POLL_S)
            try:
                self.poll()
            except Exception as e:  # the dispatcher must outlive one bad look (a full disk, say)
                print(f"cifar-demo jobs: {type(e).__name__}: {e}", file=sys.stderr)

    def _launch(self, job: Job) -> None:
        run_dir = Path(job.run_dir)
        proc = self._spawn(job.cmd, run_dir.parent / f".{job.run_id}.log")
        self._procs[job.run_id] = proc
        job.state, job.pid, job.started = "running", proc.pid, self._clock()
        self._save(job)

    def _end(self, job: Job, note: str = "") -> None:
        proc = self._procs.get(job.run_id)
        if proc is not None and not isinstance(proc, Attached):
            job.code = proc.poll()
        job.state, job.ended = "ended", self._clock()
        job.note = job.note or note or getattr(proc, "note", "")
        if getattr(proc, "note", ""):   # a GPU call cut before its run stopped: a stopped run to resume
            job.stopping = True
        self._save(job)

    def _reattach(self) -> None:
        """Read the job records of an earlier app: live children are followed again, queued
        starts keep their place, children that died while nobody watched are marked ended."""
        for path in sorted(self._records().glob("*.json")):
            try:
                job = Job.from_dict(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError) as e:
                print(f"cifar-demo jobs: ignoring {path}: {e}", file=sys.stderr)
                continue
            self._jobs[job.run_id] = job
            if job.state == "running":
                if job.pid is not None and pid_alive(job.pid, job.run_id):
                    self._procs[job.run_id] = Attached(job.pid)
                else:
                    self._end(job, "the app restarted after it ended")

    # ---------------------------------------------------------------- observe

    def _queue(self) -> list[Job]:
        return sorted((j for j in self._jobs.values() if j.state == "queued"), key=lambda j: j.submitted)

    def _running(self) -> Job | None:
        return next(iter(self._all_running()), None)

    def _all_running(self) -> list[Job]:
        return [j for j in self._jobs.values() if j.state == "running"]

    def _active(self, owner: str) -> Job | None:
        return next((j for j in self._jobs.values() if j.owner == owner and j.state != "ended"), None)

    def _latest(self, owner: str | None = None) -> Job | None:
        jobs = [j for j in self._jobs.values() if (owner is None or j.owner == owner) and j.kind == "train"]
        return max(jobs, key=lambda j: (j.started or j.submitted, j.submitted), default=None)

    @property
    def run_id(self) -> str | None:
        job = self._running() or self._latest()
        return job.run_id if job else None

    def snapshot(self, run_id: str | None = None, runs_dir: str | Path | None = None) -> Snapshot:
        """A run's status and events, read from its directory: the running (else the latest)
        job's when no id is given; a named run of this manager's jobs or of `runs_dir`."""
        with self._lock:
            job = self._jobs.get(run_id) if run_id else (self._running() or self._latest())
        if job is not None:
            return self._job_snapshot(job)
        if run_id is None:
            return Snapshot(None, "idle", [], None)
        try:
            run = Run.by_id(run_id, runs_dir or self.runs_dir)
        except (ValueError, FileNotFoundError):   # not a run id, or no such run: nothing to read
            return Snapshot(run_id, "idle", [], None)
        events, summary = run.metrics(), run.summary()
        return Snapshot(run_id, status_of(events, summary), events, summary, log_tail(run.dir))

    def _job_snapshot(self, job: Job) -> Snapshot:
        if job.state == "queued":
            return Snapshot(job.run_id, "queued", [], None, owner=job.owner, note=job.note)
        run = Run(Path(job.run_dir))
        events, summary = run.metrics(), run.summary()
        status = status_of(events, summary)
        if job.state == "running":
            status = "stopping" if job.stopping else ("running" if events else "starting")
            step = next((e for e in reversed(events) if e.get("kind") == "step"), None)
            if step and step.get("images_per_s"):
                self._rate = float(step["images_per_s"])
        elif summary is None and job.code not in (0, None) and not job.stopping:
            status = "failed"    # died (or was killed) before writing its summary
        elif summary is None and (job.stopping or job.note):
            status = "stopped"   # stopped, taken back from the queue, or found dead after a restart
        return Snapshot(job.run_id, status, events, summary, log_tail(run.dir), job.owner, job.note)

    def view(self, owner: str = LOCAL) -> View:
        """What `owner` sees: its own running run; while its start is queued, the run it waits
        for; else its own latest run, else the run training now (someone else's, to watch);
        with its place in the queue."""
        with self._lock:
            queue, running, mine = self._queue(), self._running(), self._active(owner)
            position = next((i + 1 for i, j in enumerate(queue) if j.owner == owner), None)
            if mine is not None:   # its run trains: that; queued: the run it waits for
                shown = mine if mine.state == "running" else (running or mine)
            else:                  # its last result, else what trains now
                shown = self._latest(owner) or running
        snap = self._job_snapshot(shown) if shown else Snapshot(None, "idle", [], None)
        eta = self._eta(queue[: position - 1], running) if position else None
        return View(snap, shown is not None and shown.owner == owner, mine is not None, position, eta, len(queue))

    def _eta(self, ahead: list[Job], running: Job | None) -> float | None:
        """Seconds until a start behind `ahead` begins: the running run's own ETA plus each
        queued run's images at the last measured speed (capped at the time limit)."""
        total = 0.0
        if running is not None:
            snap = self._job_snapshot(running)
            step = snap.last("step")
            if step is None or step.get("eta_s") is None:
                return None
            total += float(step["eta_s"])
        for job in ahead:
            if not self._rate:
                return None
            seconds = job.images / self._rate + 15   # + starting the process, loading the data
            total += min(seconds, self.bounds.max_seconds) if self.bounds else seconds
        return total

