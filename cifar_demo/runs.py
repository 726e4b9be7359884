"""The run directory: its layout, owned here and nowhere else.

A run lives in ``runs/<run-id>/``:

    config.json      the TrainConfig (JSON round-trip)
    metrics.jsonl    one event per line (start, step, epoch and end records)
    checkpoint.pt    last checkpoint (model, optimizer, scheduler, EMA, RNG, position),
                     written atomically every epoch and on stop; tensors only
    best.safetensors best weights by validation accuracy (the EMA weights when EMA is on)
    best.sha256      its sha256, so weights.load reads it back verified (older runs lack it)
    summary.json     final status, best epoch, validation and test accuracy, the classes
    epochs/epoch_NNN.safetensors
                     the weights at the end of epoch NNN in fp16, for the app's "Inside the network"
                     view of a run as it trains; every epoch, or every k-th one (and the last)
                     (and the first and last) where they would pass SNAPSHOT_BUDGET_BYTES

The class names a run's weights mean are on record from its first event (metrics.jsonl's
"start" line carries them and the dataset's description) and in summary.json; a run directory
of an older release records none, and means CIFAR-10's ten (Run.classes).

Everything that reads or writes one of these files goes through `Run` (the engine, export,
the evaluation cache, the CLI, the job manager, the app's tabs).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from .common import CLASSES
from .fsio import atomic_write_text, fsync, publish, sha256_file, temp_beside
from .recipe import TrainConfig

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
BEST_FILE = "best.safetensors"
BEST_DIGEST_FILE = "best.sha256"
SUMMARY_FILE = "summary.json"
EPOCHS_DIR = "epochs"
# What a run's per-epoch snapshots may take on disk together: airnet's fp16 weights are 3.9 MB, so a
# run of up to 12 epochs keeps every one; resnet18's 22 MB, so a 30-epoch run keeps every 14th.
SNAPSHOT_BUDGET_BYTES = 48 * 2**20
_SNAPSHOT = re.compile(r"epoch_(\d{3,6})\.safetensors")


def runs_root(root: str | Path | None = None) -> Path:
    return Path(root or os.environ.get("CIFAR_DEMO_RUNS", "runs"))


RUN_ID_MAX = 128
_RUN_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def check_run_id(run_id) -> str:
    """`run_id` as a plain run name (letters, digits, '.', '_', '-'; not starting with '.'; at
    most RUN_ID_MAX characters), else ValueError. Says what is wrong with the name, never whether
    a run of that name exists: a page's value may be anything a raw HTTP request sends."""
    if not isinstance(run_id, str) or not run_id:
        raise ValueError("not a run id: a run id is a non-empty name")
    if len(run_id) > RUN_ID_MAX:
        raise ValueError(f"not a run id: longer than {RUN_ID_MAX} characters")
    if not _RUN_ID.fullmatch(run_id):
        raise ValueError("not a run id: only letters, digits, '.', '_' and '-', not starting with '.'")
    return run_id


def new_run_id(model: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{stamp}-{model}-{os.urandom(2).hex()}"


@dataclass(frozen=True)
class Run:
    """One run directory (it need not exist yet: `create` makes it)."""

    dir: Path

    def __post_init__(self):
        object.__setattr__(self, "dir", Path(self.dir))

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def config_path(self) -> Path:
        return self.dir / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.dir / METRICS_FILE

    @property
    def checkpoint_path(self) -> Path:
        return self.dir / CHECKPOINT_FILE

    @property
    def best_path(self) -> Path:
        return self.dir / BEST_FILE

    @property
    def best_digest_path(self) -> Path:
        return self.dir / BEST_DIGEST_FILE

    @property
    def summary_path(self) -> Path:
        return self.dir / SUMMARY_FILE

    # -- finding and making --------------------------------------------------------------

    @classmethod
    def find(cls, run_id: str | Path, runs_dir=None) -> "Run":
        """A run from a run id (under the runs root) or a directory; FileNotFoundError if none."""
        d = Path(run_id)
        if not d.is_dir():
            d = runs_root(runs_dir) / str(run_id)
        run = cls(d)
        if not run.config_path.exists():
            raise FileNotFoundError(f"no run at {d} (expected {run.config_path})")
        return run

    @classmethod
    def by_id(cls, run_id, runs_dir) -> "Run":
        """The run named `run_id` in the folder `runs_dir`, and nowhere else: for ids that come
        from a page or a request (the job manager, the app's tabs). ValueError for a name that is
        not a run id (check_run_id); FileNotFoundError "no run <id> here" otherwise, the same
        whether the folder, the run or its config is missing. The CLI, whose user may name a
        directory, uses `find`."""
        check_run_id(run_id)
        run = cls(runs_root(runs_dir) / run_id)
        if not run.config_path.is_file():
            raise FileNotFoundError(f"no run {run_id} here")
        return run

    @classmethod
    def create(cls, run_dir: str | Path, cfg: TrainConfig) -> "Run":
        """Make the directory (it must not exist: a run id names one run) and write the config."""
        run = cls(run_dir)
        run.dir.mkdir(parents=True, exist_ok=False)
        atomic_write_text(run.config_path, cfg.to_json())
        return run

    # -- reading -------------------------------------------------------------------------

    def config_dict(self) -> dict:
        return json.loads(self.config_path.read_text(encoding="utf-8"))

    def config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.config_dict())

    def metrics(self) -> list[dict]:
        """All events of the run; a half-written last line (killed run) is skipped."""
        if not self.metrics_path.exists():
            return []
        out = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def summary(self) -> dict | None:
        """summary.json, or None while the run has not ended (or was killed)."""
        if not self.summary_path.exists():
            return None
        return json.loads(self.summary_path.read_text(encoding="utf-8"))

    def has_best(self) -> bool:
        return self.best_path.is_file()

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.is_file()

    def start_event(self) -> dict | None:
        """The first "start" event of metrics.jsonl (the run's first session), or None."""
        if not self.metrics_path.exists():
            return None
        with open(self.metrics_path, encoding="utf-8") as f:
            for line in f:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if event.get("kind") == "start":
                    return event
        return None

    def classes(self) -> tuple[str, ...]:
        """The class names the run's weights predict, in label order: from summary.json, else the
        first start event; a run that records none (an older release's) means CIFAR-10's."""
        for record in (self.summary(), self.start_event()):
            if record and record.get("classes"):
                return tuple(record["classes"])
        return CLASSES

    def dataset_description(self) -> dict | None:
        """The description of the run's data (data.CifarData.description()), None if unrecorded."""
        for record in (self.summary(), self.start_event()):
            if record and record.get("dataset_description"):
                return record["dataset_description"]
        return None

    # -- writing -------------------------------------------------------------------------

    def write_summary(self, summary: dict) -> None:
        atomic_write_text(self.summary_path, json.dumps(summary, indent=2))

    def save_best(self, model: torch.nn.Module, metadata: dict[str, str]) -> None:
        """Write best.safetensors and record its sha256 in best.sha256, so it is read back verified
        (weights.load). A kill at any point leaves a pair that verifies: the digest file first lists
        the new digest beside the old one, then the weights are renamed into place, then the old
        digest goes."""
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        old = self.best_digests() if self.has_best() else []
        with temp_beside(self.best_path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
            fsync(tmp)
            digest = sha256_file(tmp)
            atomic_write_text(self.best_digest_path, "\n".join([digest, *old[:1]]) + "\n")
            publish(tmp, self.best_path)
        atomic_write_text(self.best_digest_path, digest + "\n")

    def best_digests(self) -> list[str] | None:
        """The sha256 digests best.safetensors may have (None: a run of an older release, which
        recorded none)."""
        try:
            text = self.best_digest_path.read_text(encoding="ascii")
        except FileNotFoundError:
            return None
        return [line.strip() for line in text.splitlines() if line.strip()]


def snapshot_due(epoch: int, epochs: int, nbytes: int, budget: int = SNAPSHOT_BUDGET_BYTES) -> bool:
    """Whether epoch `epoch` (1-based) of `epochs` keeps a snapshot of `nbytes`: every epoch while all
    of them fit the budget, else the first, the last and every k-th (k the smallest that keeps the
    total within the budget)."""
    if epochs * nbytes <= budget:
        return True
    stride = -(-epochs * nbytes // max(budget - 2 * nbytes, nbytes))
    return epoch in (1, epochs) or epoch % stride == 0


def _fp16_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: (v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().to("cpu")).contiguous()
            for k, v in model.state_dict().items()}


def save_epoch_snapshot(run: Run, model: torch.nn.Module, epoch: int, epochs: int) -> Path | None:
    """Keep the weights after epoch `epoch` (1-based) in fp16, as snapshot_due says; written atomically.
    Returns the path, or None when this epoch keeps none."""
    state = _fp16_state(model)
    if not snapshot_due(epoch, epochs, sum(t.numel() * t.element_size() for t in state.values())):
        return None
    path = run.dir / EPOCHS_DIR / f"epoch_{int(epoch):03d}.safetensors"
    path.parent.mkdir(exist_ok=True)
    with temp_beside(path) as tmp:
        save_file(state, str(tmp), metadata={"epoch": str(int(epoch))})
        fsync(tmp)
        publish(tmp, path)
    return path


def epoch_snapshots(run: Run) -> dict[int, Path]:
    """The run's per-epoch snapshots: epoch -> file, in epoch order (none for older runs)."""
    folder = run.dir / EPOCHS_DIR
    found = {}
    if folder.is_dir():
        for p in folder.iterdir():
            m = _SNAPSHOT.fullmatch(p.name)
            if m and p.is_file():
                found[int(m.group(1))] = p
    return dict(sorted(found.items()))


def run_dir_of(run_id: str | Path, runs_dir=None) -> Path:
    """A run directory from a run id (under the runs root) or a path."""
    return Run.find(run_id, runs_dir).dir


def load_run(run_id: str | Path, runs_dir=None) -> tuple[TrainConfig, Path]:
    """(config, run directory) of a run id or directory."""
    run = Run.find(run_id, runs_dir)
    return run.config(), run.dir


def read_metrics(run_dir: str | Path) -> list[dict]:
    """All events of a run directory (see Run.metrics)."""
    return Run(run_dir).metrics()


def list_runs(runs_dir=None) -> list[dict]:
    """Every run directory with its config and summary (newest first), as dicts:
    run_id, dir, config (the JSON), summary (None while it has not ended), has_best."""
    out = []
    for config_path in sorted(runs_root(runs_dir).glob(f"*/{CONFIG_FILE}"), reverse=True):
        run = Run(config_path.parent)
        out.append({"run_id": run.id, "dir": str(run.dir), "config": run.config_dict(),
                    "summary": run.summary(), "has_best": run.has_best()})
    return out
