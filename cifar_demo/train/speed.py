"""How long an epoch of a zoo model takes on this machine, before anyone picks it.

Two sources, the first that has a figure wins:

1. this machine's own runs of the model (a runs folder's summary.json files): the training time
   per image of the latest finished run (elapsed_s / (epochs_run x training images)), so the figure
   includes validation and the data path as a real run has them;
2. MEASURED below: `python bench/train_step.py --model NAME --batch B --steps 4 --default-only` on
   the project's 2-core AMD EPYC, 2026-11-22 (docs/benchmarks.md, "Training speed of every zoo
   model"), plus the ~10% that validation and the data path add there. Only the slow models were
   measured; the others take about a minute an epoch or less.

An epoch is the whole training split: 45,000 images (CIFAR-10's 50,000 less the 5,000 validation
images) unless a run says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..runs import list_runs

EPOCH_IMAGES = 45_000
SLOW_EPOCH_S = 120.0        # a model is "slow" here when an epoch takes longer than this
BENCH_OVERHEAD = 1.10       # docs/benchmarks.md: "the per-epoch time of a real run adds ... ~10%"
# img/s of one training step (bf16 autocast + channels_last), docs/benchmarks.md, 2026-11-22.
MEASURED = {"optimized200k": 1105.0, "resnet18": 201.0, "resnet26": 253.0, "resnet34": 260.0, "resnet50": 119.0}
MEASURED_WHERE = "bench/train_step.py on the project's 2-core AMD EPYC, 2026-11-22 (docs/benchmarks.md)"


@dataclass(frozen=True)
class EpochTime:
    seconds: float      # one epoch of EPOCH_IMAGES training images
    source: str         # where the figure comes from, in words

    @property
    def slow(self) -> bool:
        return self.seconds > SLOW_EPOCH_S

    def words(self) -> str:
        minutes = self.seconds / 60
        return f"about {minutes:.0f} min an epoch" if minutes >= 1.5 else f"about {self.seconds:.0f} s an epoch"


def from_runs(runs: list[dict]) -> dict[str, EpochTime]:
    """Per model, the epoch time of its latest finished run among `runs` (train.list_runs's dicts,
    newest first)."""
    out: dict[str, EpochTime] = {}
    for r in runs:
        s, cfg = r.get("summary") or {}, r.get("config") or {}
        model, epochs, elapsed = cfg.get("model"), s.get("epochs_run"), s.get("elapsed_s")
        if model in out or not model or not epochs or not elapsed or s.get("device", "cpu") != "cpu":
            continue
        n_train = cfg.get("train_limit") or (50_000 - int(cfg.get("val_size", 5000)))
        per_image = float(elapsed) / (int(epochs) * int(n_train))
        out[model] = EpochTime(per_image * EPOCH_IMAGES, f"this machine's run {r['run_id']}")
    return out


def epoch_times(models, runs_dir=None) -> dict[str, EpochTime]:
    """Per model of `models`, its epoch time here, where one is known (this machine's runs in
    `runs_dir`, else MEASURED)."""
    try:
        here = from_runs(list_runs(runs_dir)) if runs_dir is not None else {}
    except (OSError, ValueError):   # an unreadable run folder: fall back to the measured table
        here = {}
    out = {}
    for m in models:
        if m in here:
            out[m] = here[m]
        elif m in MEASURED:
            out[m] = EpochTime(EPOCH_IMAGES / MEASURED[m] * BENCH_OVERHEAD, MEASURED_WHERE)
    return out
