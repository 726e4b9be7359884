"""The queue's vocabulary: policy (mode, bounds, caps), the job record, what a page sees, the child."""


from __future__ import annotations

import contextlib
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .. import data
from ..common import CIFAR_TEST_IMAGES, CIFAR_TRAIN_IMAGES
from ..train import TrainConfig, make_config

NICENESS = 10          # training yields the CPU to the app's request handlers
LOCAL = "local"        # the owner of everything in local mode
QUEUE_CAP = 5          # queued starts (not counting the running one); a class of 30 sees a clear "full"
RETENTION_S = 6 * 3600  # a visitor's finished runs are kept this long after its last run ended
# All visitors' folders together (runs, uploads, their decoded pixels, downloads) may hold this
# much: past it, whole folders go, oldest first, never one with a run queued or going (cleanup).
VISITORS_DISK_CAP = 3 * 2**30
POLL_S = 0.5           # how often the dispatcher looks at the running child
KILL_GRACE_S = 30.0    # public mode: a child still alive this long after SIGTERM is killed (SIGKILL)
# Public mode: places (a run or a study, queued or going) one client may hold at once, whatever
# tokens it mints. A client is what the page's request says of it (ui.context.client_key: the
# address the Space's proxy reports). CIFAR_DEMO_PLACES_PER_ADDRESS raises it, e.g. for a class
# behind one school address.
CLIENT_CAP = 1
ACTIVE = ("queued", "starting", "running", "stopping")


def public_mode() -> bool:
    """Public (a shared Space) when Hugging Face's SPACE_ID is set, or CIFAR_DEMO_PUBLIC=1
    (`python app.py --public` sets it); local otherwise."""
    flag = os.environ.get("CIFAR_DEMO_PUBLIC", "").strip().lower()
    if flag in {"0", "false", "no", "off"}:
        return False
    return bool(os.environ.get("SPACE_ID")) or flag in {"1", "true", "yes", "on"}


def client_cap() -> int:
    """CLIENT_CAP, or CIFAR_DEMO_PLACES_PER_ADDRESS where the Space's owner set a whole number >= 1."""
    value = os.environ.get("CIFAR_DEMO_PLACES_PER_ADDRESS", "").strip()
    return int(value) if value.isdigit() and int(value) >= 1 else CLIENT_CAP


class JobError(RuntimeError):
    """A request the job manager refuses (e.g. a second start); the message is for the user."""


@dataclass(frozen=True)
class Bounds:
    """What one public run may cost: images passed through the model (training and validation
    images over all epochs, and the test set once), its batch size, and its wall-clock time over
    all of its sessions (a resumed run goes on with the time it has used)."""

    max_images: int
    max_seconds: float
    max_batch: int = 2000      # the largest preset's batch (muon, demo); memory: train.checks

    @staticmethod
    def split_sizes(cfg: TrainConfig) -> tuple[int, int, int]:
        """(training images per epoch after val_size and train_limit, validation images, test
        images) of the run; JobError when val_size leaves no training images."""
        n_train, n_val, n_test = CIFAR_TRAIN_IMAGES - cfg.val_size, cfg.val_size, CIFAR_TEST_IMAGES
        # Told by folder names (data.layout_of), not by scanning a CIFAR-10 export on every submit.
        if cfg.data and data.layout_of(cfg.data) == "own":
            # Your own images: the splits as the data layer makes them (read from its decode
            # cache, filled when the zip was uploaded); it caps val_size (data.rules.VAL_RULE).
            own = data.load_dataset(cfg.data, val_size=cfg.val_size)
            n_train, n_val, n_test = len(own.train), len(own.val), len(own.test)
        if n_train <= 0:
            raise JobError(f"val_size {cfg.val_size:,} leaves no training images (CIFAR-10 has "
                           f"{CIFAR_TRAIN_IMAGES:,}): lower it")
        if cfg.train_limit:
            n_train = min(cfg.train_limit, n_train)
        if cfg.test_limit:
            n_test = min(cfg.test_limit, n_test)
        return n_train, n_val, n_test

    @staticmethod
    def images(cfg: TrainConfig) -> int:
        """Images the run passes through its model: epochs x (training + validation images),
        plus the test set scored once at the end."""
        n_train, n_val, n_test = Bounds.split_sizes(cfg)
        return cfg.epochs * (n_train + n_val) + n_test

    def check(self, cfg: TrainConfig) -> None:
        if cfg.batch_size > self.max_batch:
            raise JobError(f"batch size {cfg.batch_size:,} is over this shared app's cap of {self.max_batch:,} "
                           "images per batch: lower it")
        images = self.images(cfg)
        if images > self.max_images:
            raise JobError(f"this run would pass {images:,} images through its model ({cfg.epochs} epoch(s) of "
                           f"training and validation images, and the test set); on this shared app a run may "
                           f"use at most {self.max_images:,} (fewer epochs, a training subset or a smaller "
                           "validation split)")

    def describe(self) -> str:
        return (f"at most {self.max_images:,} images per run (epochs x (training + validation images), "
                f"and the test set), batches of at most {self.max_batch:,} images, and "
                f"{self.max_seconds / 60:.0f} minutes of wall-clock time over all of a run's sessions")


def public_bounds() -> Bounds:
    """4 epochs of the `demo` preset (210,000 images with its validation passes and the test set,
    a few minutes on 2 cores) and 20 minutes.
    (demo itself trains 3 epochs since it uses Muon; the budget stays what it was.)"""

    return Bounds(max_images=Bounds.images(make_config("demo", epochs=4)), max_seconds=20 * 60)


@dataclass
class Snapshot:
    """What the Train tab shows of one run: its status and every event so far."""

    run_id: str | None
    status: str    # idle | queued | starting | running | stopping | finished | stopped | early_stopped | failed
    events: list[dict]
    summary: dict | None
    log_tail: str = ""
    owner: str | None = None
    note: str = ""          # why the manager ended it, e.g. "time limit"

    @property
    def running(self) -> bool:
        return self.status in ("starting", "running", "stopping")

    def last(self, kind: str) -> dict | None:
        return next((e for e in reversed(self.events) if e.get("kind") == kind), None)


@dataclass
class View:
    """What one visitor sees: a run to draw, whether it is theirs, and their place in the queue."""

    snap: Snapshot
    mine: bool                 # the run drawn is this visitor's
    can_stop: bool             # this visitor has a queued or running run it may stop
    position: int | None       # this visitor's queued start: 1 = next; None if not queued
    eta_s: float | None        # until it starts (None: unknown)
    queued: int                # starts waiting, all visitors


@dataclass
class Job:
    run_id: str
    owner: str
    run_dir: str
    cmd: list[str]
    submitted: float
    images: int = 0            # epochs x training images (for the queue's estimate)
    state: str = "queued"      # queued | running | ended
    pid: int | None = None
    started: float | None = None
    ended: float | None = None
    stopping: bool = False
    signalled: float | None = None   # when SIGTERM was sent (a stop, or the time limit)
    used_s: float = 0.0        # wall-clock seconds of the run's earlier sessions (a resumed run's)
    code: int | None = None    # the child's exit code (None: still going, or unknown after a restart)
    note: str = ""
    client: str = ""           # who asked, for the per-client cap (public mode); "" before it existed
    hold: str = ""             # the Hold (a study's place in the queue) this run was queued under
    kind: str = "train"        # or "lr_find" (jobs.lr_find_job): a job of the queue that is no run

    @classmethod
    def from_dict(cls, d: dict) -> "Job":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class Hold:
    """A place in the queue held by a study for all of its runs (JobManager.hold): it counts
    against the queue's cap and the owner's and client's share from the study's start to its end,
    and each of the study's runs is queued under it (at the back of the queue, like any start)."""

    id: str
    owner: str
    client: str
    what: str                  # e.g. "study 20260101-000000-simple_cnn-ab12", for messages
    created: float


class Attached:
    """A child started by an earlier app process: followed by its pid (it is not our child)."""

    def __init__(self, pid: int):
        self.pid = pid

    def poll(self) -> int | None:
        return None if pid_alive(self.pid) else -1

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)


def pid_alive(pid: int, marker: str | None = None) -> bool:
    """The process exists (and, with `marker`, its command line contains it: pids get reused)."""
    try:
        os.kill(pid, 0)
    except OSError:   # no such process; or EPERM: another user's, so not a child we started
        return False
    if marker is None:
        return True
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return True   # no /proc (macOS): trust the pid


# What a training child sees of the app's environment: an allowlist, so a secret of the Space's
# (HF_TOKEN, the Hub repo's credentials, anything added later) never reaches the process that
# runs a visitor's config. Names, then prefixes; a name that looks like a secret is dropped even
# when it matches a prefix.
CHILD_ENV_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
    "PYTHONPATH", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE", "PYTHONWARNINGS", "VIRTUAL_ENV",
    "LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH", "XDG_CACHE_HOME", "SPACE_ID",
    "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_ENDPOINT",
})
CHILD_ENV_PREFIXES = ("CIFAR_DEMO_", "LC_", "OMP_", "MKL_", "KMP_", "OPENBLAS_", "TORCH_", "PYTORCH_",
                      "CUDA_", "NVIDIA_", "CUBLAS_", "CUDNN_", "NCCL_")
_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "_KEY", "AUTH")


def child_env(environ: dict | None = None) -> dict[str, str]:
    """The environment a training child starts with: only the allowed names of `environ`
    (os.environ by default), plus unbuffered output and a calm progress bar."""
    environ = os.environ if environ is None else environ
    env = {k: v for k, v in environ.items()
           if (k in CHILD_ENV_NAMES or k.startswith(CHILD_ENV_PREFIXES))
           and not any(word in k.upper() for word in _SECRET_WORDS)}
    return {**env, "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "5"}


def spawn(cmd: list[str], log_path: Path):
    with open(log_path, "ab") as log:
        env = child_env()
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=Path(__file__).resolve().parents[2],   # the repository: python -m cifar_demo
                                preexec_fn=_yield_cpu if hasattr(os, "nice") else None)


def _yield_cpu() -> None:
    """In the training child before it starts: nice NICENESS, and on Linux SCHED_IDLE, so that
    the app's request handlers take the cores whenever they want them. Nice 10 alone left the
    child ~10% of a busy core per thread, with its OpenMP threads spinning between operations:
    30 uploads at once during a `demo` run were answered in p95 2.99 s with nice 10, 2.22 s with
    SCHED_IDLE, the run 0.99x as fast over the 30 s that held the burst (bench/load.py,
    docs/benchmarks.md). The price: while the app computes for minutes (an evaluation, the
    robustness curves), a run waits instead of crawling at 10%."""
    os.nice(NICENESS)
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):   # refused (another OS policy): nice alone
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))




def log_tail(run_dir: Path, n: int = 2000) -> str:
    path = run_dir.parent / f".{run_dir.name}.log"
    if not path.exists():
        return ""
    with open(path, "rb") as fh:
        fh.seek(max(0, path.stat().st_size - n))
        return fh.read().decode("utf-8", "replace")


def status_of(events: list[dict], summary: dict | None) -> str:
    if summary is not None:
        return summary["status"]
    end = next((e for e in reversed(events) if e.get("kind") == "end"), None)
    if end is not None:
        return end.get("status", "failed")
    return "stopped" if events else "idle"


def wait_for(predicate, timeout: float, interval: float = 0.2) -> bool:
    """Poll until predicate() is true or the timeout passes (for tests and scripts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
