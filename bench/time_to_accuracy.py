"""Time to accuracy of training presets, end to end, over several seeds, side by side.

    python bench/time_to_accuracy.py PRESET [PRESET ...] [--reference PRESET] [--runs 3]
        [--data DIR] [--val-size N] [--keep-runs DIR] [--epochs N --train-limit N --test-limit N]

e.g. python bench/time_to_accuracy.py muon fast airbench94 --runs 3 --val-size 0 --data ../shared/data/cifar10-jpeg

Each run: load the data (from the decoded cache), build and initialise the model, train with
the preset, score the best weights on the test set with and without test-time augmentation
(flip + 1-pixel translations). Prints per-run figures, the time at which accuracy first
reached 80/85/90%, and the mean and standard deviation over runs. The presets take turns on
the same data and seeds: run 1 of each in the order given, then run 2 of each, and so on, so
a drift of the machine's speed during the hours of a long invocation falls on every preset
alike. The header measures the machine's state (the fp32 and bf16 matrix-product peak) and
says whether the allocator keeps freed memory (hardware.keep_freed_memory, as every training
process of the engine does).

With several presets, the reference (--reference, default: the last one named) sets the bar:
a closing table gives, per preset, mean +- std of TTA and plain accuracy and of wall time, the
time to 85% and to the reference's mean TTA accuracy, and the ratios of those times against
the reference's. "Time to X" for a run is the first moment its score reached X, where the
score is plain accuracy after each epoch (the milestones' accuracy, below) and, at the end,
its TTA accuracy at its wall time; a preset's figure is the mean over its runs that reached X
(with how many did). A ratio of times to the reference's accuracy compares with the
reference's mean wall time: the issue's goal reads "the reference's accuracy in <= 0.6x the
reference's wall time".

The milestones come from the validation split when the run has one. With --val-size 0 (all
50,000 images train, the last epoch's weights are kept) the bench follows test accuracy
after each epoch instead - for the milestones only, nothing is chosen by it - and takes the
time of those extra evaluations out of the run's clock.

--epochs, --train-limit and --test-limit override every preset: for checking the bench itself
in a minute, never for figures.
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cifar_demo import data, hardware, train
from cifar_demo.analysis import evaluate

MILESTONES = (0.80, 0.85, 0.90)
HEADLINE = 0.85  # the milestone the closing table compares (the demo preset's target)


def one_run(preset: str, seed: int, data_dir: str | None, val_size: int | None, runs_dir: Path,
            limits: dict | None = None) -> dict:
    t0 = time.perf_counter()
    overrides = {"seed": seed, "data": data_dir, **(limits or {})}
    if val_size is not None:
        overrides["val_size"] = val_size
    cfg = train.make_config(preset, **overrides)
    curve: list[tuple[float, float]] = []  # (seconds on the run's clock, accuracy) after each epoch
    monitor_s = [0.0]  # time spent following test accuracy (val-size 0 runs), off the clock

    def mark(acc: float) -> None:
        curve.append((time.perf_counter() - t0 - monitor_s[0], acc))

    def sink(event: dict) -> None:
        if event.get("kind") == "epoch" and event.get("val_acc") is not None:
            mark(event["val_acc"])

    # Evaluations in the run's own precision: bf16 where the engine trains in it, fp32 on a CPU
    # that would emulate bf16 (several times slower).
    amp = train.autocast_dtype(cfg.precision, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    precision = "bf16" if amp == torch.bfloat16 else "fp32"

    @functools.cache
    def load_test():  # one load per run
        test = data.load_split("test", cfg.data)
        return data.subset(test, range(min(cfg.test_limit, len(test)))) if cfg.test_limit else test

    hooks = []
    if cfg.val_size == 0:

        def follow_test(epoch: int, model) -> None:
            start = time.perf_counter()
            acc = evaluate.evaluate(model, load_test(), precision=precision).accuracy
            monitor_s[0] += time.perf_counter() - start
            mark(acc)

        hooks.append(follow_test)
    trainer = train.Trainer(cfg, runs_dir=runs_dir, sinks=[sink], epoch_hooks=hooks)
    summary = trainer.run()
    tta_acc = summary.get("test_acc_tta")
    if tta_acc is None:  # the preset does not score with TTA itself: do it here, inside the clock
        model = trainer.load_best("cpu")
        tta_acc = evaluate.evaluate(model, load_test(), tta="flip_translate",
                                    precision="bf16" if summary["precision"] != "fp32" else "fp32").accuracy
    wall_s = time.perf_counter() - t0 - monitor_s[0]
    return {"preset": preset, "seed": seed, "test_acc": summary["test_acc"], "tta_acc": tta_acc,
            "train_s": summary["elapsed_s"] - monitor_s[0], "wall_s": wall_s, "epochs": summary["epochs_run"],
            "curve": curve, "reached": {m: t for m in MILESTONES if (t := first_time(curve, m)) is not None},
            "val_size": cfg.val_size}


def first_time(curve: list[tuple[float, float]], target: float) -> float | None:
    """The first time on a run's (time, accuracy) curve at which accuracy reached `target`."""
    return next((t for t, acc in curve if acc >= target), None)


def time_to(run: dict, target: float) -> float | None:
    """When a run first scored `target`: plain accuracy after an epoch, or its TTA score at the end."""
    t = first_time(run["curve"], target)
    if t is None and run["tta_acc"] >= target:
        t = run["wall_s"]
    return t


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def run_line(i: int, r: dict, named: bool) -> str:
    marks = "  ".join(f"{int(m * 100)}%: " + (f"{r['reached'][m]:.0f}s" if m in r["reached"] else "-")
                      for m in MILESTONES)
    return (f"{r['preset'] + ' ' if named else ''}run {i + 1} seed {r['seed']}: test {100 * r['test_acc']:.2f}%  "
            f"TTA {100 * r['tta_acc']:.2f}%  epochs {r['epochs']}  train {r['train_s']:.0f}s  wall {r['wall_s']:.0f}s  "
            f"(val {r['val_size']}; time to {'val' if r['val_size'] else 'test'} acc {marks})")


def mean_line(rows: list[dict]) -> str:
    (a, sa), (t, st), (w, sw) = (mean_std([r[k] * s for r in rows]) for k, s in
                                 (("tta_acc", 100), ("test_acc", 100), ("wall_s", 1)))
    return f"mean of {len(rows)}: TTA {a:.2f}% +- {sa:.2f}  plain {t:.2f}% +- {st:.2f}  wall {w:.0f}s +- {sw:.0f}"


def mean_time_to(rows: list[dict], target: float) -> tuple[float | None, int]:
    """(mean time over the runs that reached `target`, how many did)."""
    times = [t for r in rows if (t := time_to(r, target)) is not None]
    return (statistics.mean(times) if times else None), len(times)


def comparison(results: dict[str, list[dict]], reference: str) -> list[str]:
    """The closing table: every preset against the reference's means."""
    ref_rows = results[reference]
    ref_tta = statistics.mean(r["tta_acc"] for r in ref_rows)
    ref_wall = statistics.mean(r["wall_s"] for r in ref_rows)
    ref_85, _ = mean_time_to(ref_rows, HEADLINE)
    target = f"{100 * ref_tta:.2f}%"
    lines = [(f"against {reference} (mean TTA {target}, mean wall {ref_wall:.0f}s); times are means over the "
              "runs that got there (n/runs), ratios against the reference's"),
             (f"{'preset':<14}{'TTA %':>16}{'plain %':>16}{'wall s':>14}{'wall/ref':>10}"
              f"{'to 85%':>14}{'/ref':>7}{'to ' + target:>16}{'/ref wall':>11}")]

    def fmt_time(t: float | None, n: int, runs: int) -> str:
        return "-" if t is None else f"{t:.0f}s ({n}/{runs})"

    def ratio(t: float | None, base: float | None) -> str:
        return "-" if t is None or not base else f"{t / base:.2f}x"

    for name, rows in results.items():
        (a, sa), (p, sp), (w, sw) = (mean_std([r[k] * s for r in rows]) for k, s in
                                     (("tta_acc", 100), ("test_acc", 100), ("wall_s", 1)))
        t85, n85 = mean_time_to(rows, HEADLINE)
        tref, nref = mean_time_to(rows, ref_tta)
        lines.append(f"{name:<14}{f'{a:.2f} +- {sa:.2f}':>16}{f'{p:.2f} +- {sp:.2f}':>16}{f'{w:.0f} +- {sw:.0f}':>14}"
                     f"{ratio(w, ref_wall):>10}{fmt_time(t85, n85, len(rows)):>14}{ratio(t85, ref_85):>7}"
                     f"{fmt_time(tref, nref, len(rows)):>16}{ratio(tref, ref_wall):>11}")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("presets", nargs="+", metavar="preset")
    p.add_argument("--reference", default=None, help="the preset the others are compared with (default: the last)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seed0", type=int, default=0)
    p.add_argument("--data", default=None)
    p.add_argument("--val-size", type=int, default=None, help="override the preset (0 = all 50,000 to train)")
    p.add_argument("--keep-runs", default=None, metavar="DIR",
                   help="write the run directories here (to export one) instead of a temporary folder")
    for flag in ("--epochs", "--train-limit", "--test-limit"):
        p.add_argument(flag, type=int, default=None, help="override every preset (a quick check, not figures)")
    args = p.parse_args()
    presets = list(dict.fromkeys(args.presets))
    reference = args.reference or presets[-1]
    if reference not in presets:
        presets.append(reference)
    known = train.presets()
    unknown = [name for name in presets if name not in known]
    if unknown:
        p.error(f"unknown preset(s) {', '.join(unknown)}; choose among: {', '.join(sorted(known))}")
    limits = {k: v for k, v in (("epochs", args.epochs), ("train_limit", args.train_limit),
                                ("test_limit", args.test_limit)) if v is not None}

    data.load_cifar10(args.data)  # warm the decoded cache so every run reads it
    hw = hardware.hardware_info()
    print(f"preset {', '.join(presets)}; {hw['cpu']}, {hw['cores']} cores, gpu {hw['gpu']}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; python {platform.python_version()}; "
          f"{time.strftime('%Y-%m-%d', time.gmtime())}")
    kept = hardware.keep_freed_memory()
    print(hardware.matmul_peaks_line() + f"; {hardware.allocator_line(kept)}"
          + (f"; overrides {limits}" if limits else ""), flush=True)
    named = len(presets) > 1
    results: dict[str, list[dict]] = {preset: [] for preset in presets}
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = Path(args.keep_runs or tmp)
        for i in range(args.runs):
            for preset in presets:
                results[preset].append(one_run(preset, args.seed0 + i, args.data, args.val_size, runs_dir, limits))
                print(run_line(i, results[preset][-1], named), flush=True)
    for preset, rows in results.items():
        print(f"{preset + ' ' if named else ''}{mean_line(rows)}", flush=True)
    if named:
        print()
        print("\n".join(comparison(results, reference)))


if __name__ == "__main__":
    main()
