"""Training runs as GPU calls inside the app process: how a run trains on a ZeroGPU Space.

There a GPU exists only inside a `spaces.GPU` call (runtime, zerogpu), and a child process of the
app (records.spawn) cannot get one. So on ZeroGPU the job manager's `spawn` is `spawn_gpu_call`: the
run is `train_call`, a GPU generator, driven from a thread of the app. Inside the call the same
Trainer writes the same run directory (in the visitor's folder) that a training child writes, so the
Train tab draws the same live curves from it; the call streams the run's events back, and the thread
writes the run's log. What a JobManager needs of a process (pid, poll, send_signal, wait) GpuCall has:

- the call's duration comes from the run's config (duration_s: its images at a conservative
  images/s for its model on the GPU, plus the time to start), capped at MAX_CALL_S; the Trainer gets
  a time budget inside it that ends the run, with a checkpoint and a summary, before the GPU is
  taken back; Resume continues it in a new call;
- Stop (SIGTERM) and the public time limit write a stop file the call looks for every half second;
- loaders start no worker processes inside the call (runtime.loader_workers).

The call is made in a copy of the starting event's context, so ZeroGPU charges the visitor who
pressed Start (its request) for it, in the event's thread when the run starts at once.
"""

from __future__ import annotations

import contextvars
import os
import queue
import signal
import threading
import time
from pathlib import Path

from .. import runtime, zoo
from ..fsio import atomic_write_text
from ..train import Run, TrainConfig, Trainer
from ..zerogpu import QUOTA_FACTOR, gpu
from .records import Bounds

if runtime.current().zerogpu:
    # A GPU call is a fork of the app. A module that another thread of the app is importing at that
    # moment stays locked in the child for good, and the call hangs at its first import of it. Every
    # torch Optimizer imports torch._dynamo lazily (seconds of importing): the stand-in's first
    # browser run hung there, with no run directory, until ZeroGPU's duration killed it. So it is
    # imported now, as the app starts, before its threads do.
    import torch._dynamo  # noqa: F401

# A conservative training speed on one ZeroGPU call (half an RTX Pro 6000 Blackwell, bf16 autocast,
# no torch.compile): a step costs about 6 x the model's multiply-adds per image (forward and
# backward) at EFFECTIVE_FLOPS, and at least STEP_OVERHEAD_S (kernel launches, the optimizer, the
# on-GPU augmentation of the batch). Assumptions, not measurements: far below what such a card
# reaches on large models, because CIFAR-sized layers keep it mostly idle. bench/gpu_check.py
# prints the measured images/s beside these where a GPU is at hand.
EFFECTIVE_FLOPS = 10e12
STEP_OVERHEAD_S = 0.01
START_S = 20          # in the call before the first step: CUDA, the data to the GPU, the model, cuDNN's choice
MAX_CALL_S = 120      # the longest call asked for: ZeroGPU gives short calls priority, and 120 s on the
#                       "large" size count 180 s against a visitor's quota (zerogpu.QUOTA_FACTOR)
MIN_CALL_S = 30
MARGIN = 1.25         # the estimate's safety factor
RESERVE_S = 8         # the budget ends this long before the call does: checkpoint, test set, summary
STOP_POLL_S = 0.5
# Daily ZeroGPU quota per visitor, minutes (hub-docs spaces-zerogpu.md, commit 34ee0f0).
QUOTA_MINUTES = {"a visitor who is not logged in": 2, "a free Hugging Face account": 5, "a PRO account": 40}


def images_per_s(model: str, batch_size: int) -> float:
    """The conservative training speed (images/s) of `model` at `batch_size` in one ZeroGPU call."""
    macs = zoo.get_spec(model).macs
    step_s = max(batch_size * 6 * macs / EFFECTIVE_FLOPS, STEP_OVERHEAD_S)
    return batch_size / step_s


def duration_s(cfg: TrainConfig, done: float = 0.0) -> int:
    """Seconds of GPU to ask for a run of `cfg` of which the fraction `done` is trained already."""
    images = Bounds.images(cfg) * (1.0 - min(max(done, 0.0), 1.0))
    estimate = START_S + MARGIN * images / images_per_s(cfg.model, cfg.batch_size)
    return int(min(MAX_CALL_S, max(MIN_CALL_S, estimate)))


def budget_s(duration: float) -> float:
    """The Trainer's time budget inside a call of `duration` seconds."""
    return max(1.0, duration - max(RESERVE_S, 0.15 * duration))


def quota_note(cfg: TrainConfig) -> str:
    """How much of a visitor's daily ZeroGPU quota one call of this run asks for, for the Train tab."""
    asked = duration_s(cfg)
    counted = asked * QUOTA_FACTOR
    tiers = "; ".join(f"{who}: {60 * m / counted:.0f} such run(s) a day" for who, m in QUOTA_MINUTES.items())
    return (f"It asks ZeroGPU for {asked} s of GPU, which counts as {counted:.0f} s of your daily quota ({tiers}). "
            "A run that needs more stops with a checkpoint; Resume continues it.")


def start_note(cfg: TrainConfig) -> str:
    """What the Train tab adds to its message when a run starts: on ZeroGPU " " and the quota it asks
    for, elsewhere nothing."""
    return " " + quota_note(cfg) if runtime.current().training_in_app else ""


# ----------------------------------------------------------------------------- inside the GPU call

def _call_duration(job: dict) -> float:
    return job["duration_s"]


@gpu(duration=_call_duration)
def train_call(job: dict):
    """The GPU call: runs (or resumes) the run described by `job` and yields its events as they come.
    `job` holds plain values only (it is pickled into the call): config JSON or resume, run_dir,
    stop_path, budget_s."""
    events: queue.Queue = queue.Queue()
    if job.get("resume"):
        trainer = Trainer.resuming(job["run_dir"], sinks=[events.put], time_budget_s=job["budget_s"])
    else:
        trainer = Trainer(TrainConfig.from_json(job["config"]), run_dir=job["run_dir"], sinks=[events.put],
                          time_budget_s=job["budget_s"])
    failure: list[BaseException] = []

    def run() -> None:
        try:
            trainer.run()
        except BaseException as e:   # reported below, in the call's own thread
            failure.append(e)

    # The Trainer trains in a thread of the call; this generator hands its events on and watches the stop file.
    worker = threading.Thread(target=run, name="trainer")
    worker.start()
    stop_path = Path(job["stop_path"])
    while worker.is_alive() or not events.empty():
        try:
            yield events.get(timeout=STOP_POLL_S)
        except queue.Empty:
            pass
        if stop_path.exists():
            trainer.stop()
    worker.join()
    if failure:
        raise failure[0]


# ----------------------------------------------------------------------------- the app's side

class GpuCall:
    """A training run as a GPU call driven from a thread of the app: what JobManager knows of a process."""

    def __init__(self, job: dict, log_path: Path):
        self.job, self.log_path = job, Path(log_path)
        self.pid = os.getpid()          # the app's: a restarted app reads the run as ended (records.pid_alive)
        self.note = ""
        self._code: int | None = None
        self._stop_path = Path(job["stop_path"])
        self._stop_path.unlink(missing_ok=True)
        context = contextvars.copy_context()   # the starting event's request: ZeroGPU's quota is its visitor's
        self._thread = threading.Thread(target=context.run, args=(self._drive,), name="cifar-demo-gpu-call",
                                        daemon=True)
        self._thread.start()

    def _log(self, line: str) -> None:
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(line.rstrip() + "\n")

    def _drive(self) -> None:
        self._log(f"GPU call of {self.job['duration_s']} s (the run stops itself after {self.job['budget_s']:.0f} s)")
        try:
            for event in train_call(self.job):
                if event.get("kind") == "epoch":
                    acc = event.get("val_acc")
                    self._log(f"epoch {event['epoch']}: train loss {event['train_loss']:.3f}"
                              + (f", validation accuracy {100 * acc:.1f}%" if acc is not None else ""))
                elif event.get("kind") == "end":
                    self._log(f"run {event.get('status')}" + (" at its time budget; Resume continues it"
                                                              if event.get("stop_reason") else ""))
            self._code = 0
        except Exception as e:   # the call's error (ZeroGPU's quota, the GPU taken back): the run's log says it
            self._log(f"GPU call ended: {getattr(e, 'title', '') or type(e).__name__}: {e}")
            if Run(Path(self.job["run_dir"])).has_checkpoint() and Run(Path(self.job["run_dir"])).summary() is None:
                self.note = "the GPU call ended before the run did; Resume continues from its last checkpoint"
            self._code = 1
        finally:
            self._stop_path.unlink(missing_ok=True)

    def poll(self) -> int | None:
        return self._code

    def wait(self, timeout: float | None = None) -> int | None:
        self._thread.join(timeout)
        return self._code

    def send_signal(self, sig: int) -> None:
        """SIGTERM: stop at the next step, with a checkpoint. SIGKILL cannot reach a ZeroGPU call from
        here: the call ends at its duration in any case."""
        if sig == signal.SIGTERM:
            atomic_write_text(self._stop_path, str(time.time()))


def job_of(cmd: list[str], log_path: Path) -> dict:
    """The GPU call's job for a JobManager command (`python -m cifar_demo train --config C --run-id R
    --runs-dir D`, or `... --resume R --runs-dir D`)."""
    args = dict(zip(cmd[4::2], cmd[5::2]))
    folder = Path(args["--runs-dir"])
    if "--resume" in args:
        run = Run.by_id(args["--resume"], folder)
        cfg = run.config()
        steps = [e for e in run.metrics() if e.get("kind") in ("start", "step")]
        total = next((e["total_steps"] for e in steps if e.get("total_steps")), 0)
        done = (steps[-1]["step"] / total) if steps and total else 0.0
        job = {"resume": True, "run_dir": str(run.dir)}
    else:
        cfg = TrainConfig.from_json(Path(args["--config"]).read_text(encoding="utf-8"))
        done = 0.0
        job = {"config": cfg.to_json(), "run_dir": str(folder / args["--run-id"])}
    duration = duration_s(cfg, done)
    return {**job, "duration_s": duration, "budget_s": budget_s(duration),
            "stop_path": str(log_path.with_suffix(".stop"))}


def spawn_gpu_call(cmd: list[str], log_path: Path) -> GpuCall:
    """records.spawn's counterpart on ZeroGPU."""
    return GpuCall(job_of(cmd, Path(log_path)), Path(log_path))
