"""Time to accuracy of a training preset, end to end, over several seeds.

    python bench/time_to_accuracy.py PRESET [--runs 3] [--data DIR] [--val-size N] [--keep-runs DIR]

Each run: load the data (from the decoded cache), build and initialise the model, train with
the preset, score the best weights on the test set with and without test-time augmentation
(flip + 1-pixel translations). Prints per-run figures, the time at which accuracy first
reached 80/85/90%, and the mean and standard deviation over runs.

The milestones come from the validation split when the run has one. With --val-size 0 (all
50,000 images train, the last epoch's weights are kept) the bench follows test accuracy
after each epoch instead - for the milestones only, nothing is chosen by it - and takes the
time of those extra evaluations out of the run's clock.
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

from cifar_demo import data, evaluate, hardware, train, zoo  # noqa: E402

MILESTONES = (0.80, 0.85, 0.90)


def one_run(preset: str, seed: int, data_dir: str | None, val_size: int | None, runs_dir: Path) -> dict:
    t0 = time.perf_counter()
    overrides = {"seed": seed, "data": data_dir}
    if val_size is not None:
        overrides["val_size"] = val_size
    cfg = train.make_config(preset, **overrides)
    reached: dict[float, float] = {}
    monitor_s = [0.0]  # time spent following test accuracy (val-size 0 runs), off the clock

    def mark(acc: float) -> None:
        for m in MILESTONES:
            if m not in reached and acc >= m:
                reached[m] = time.perf_counter() - t0 - monitor_s[0]

    def sink(event: dict) -> None:
        if event.get("kind") == "epoch" and event.get("val_acc") is not None:
            mark(event["val_acc"])

    spec = zoo.get_spec(cfg.model)
    load_test = functools.cache(lambda: data.load_split("test", cfg.data))  # one load per run
    hooks = []
    if cfg.val_size == 0:

        def follow_test(epoch: int, model) -> None:
            start = time.perf_counter()
            acc = evaluate.evaluate(model, load_test(), mean=spec.mean, std=spec.std, precision="bf16").accuracy
            monitor_s[0] += time.perf_counter() - start
            mark(acc)

        hooks.append(follow_test)
    trainer = train.Trainer(cfg, runs_dir=runs_dir, sinks=[sink], epoch_hooks=hooks)
    summary = trainer.run()
    tta_acc = summary.get("test_acc_tta")
    if tta_acc is None:  # the preset does not score with TTA itself: do it here, inside the clock
        model = trainer.load_best("cpu")
        tta_acc = evaluate.evaluate(model, load_test(), tta="flip_translate", mean=spec.mean, std=spec.std,
                                    precision="bf16" if summary["precision"] != "fp32" else "fp32").accuracy
    return {"seed": seed, "test_acc": summary["test_acc"], "tta_acc": tta_acc,
            "train_s": summary["elapsed_s"] - monitor_s[0], "wall_s": time.perf_counter() - t0 - monitor_s[0],
            "epochs": summary["epochs_run"], "reached": reached, "val_size": cfg.val_size}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("preset")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seed0", type=int, default=0)
    p.add_argument("--data", default=None)
    p.add_argument("--val-size", type=int, default=None, help="override the preset (0 = all 50,000 to train)")
    p.add_argument("--keep-runs", default=None, metavar="DIR",
                   help="write the run directories here (to export one) instead of a temporary folder")
    args = p.parse_args()

    data.load_cifar10(args.data)  # warm the decoded cache so every run reads it
    hw = hardware.hardware_info()
    print(f"preset {args.preset}; {hw['cpu']}, {hw['cores']} cores, gpu {hw['gpu']}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; python {platform.python_version()}; "
          f"{time.strftime('%Y-%m-%d', time.gmtime())}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = Path(args.keep_runs or tmp)
        for i in range(args.runs):
            r = one_run(args.preset, args.seed0 + i, args.data, args.val_size, runs_dir)
            rows.append(r)
            marks = "  ".join(f"{int(m * 100)}%: " + (f"{r['reached'][m]:.0f}s" if m in r["reached"] else "-")
                              for m in MILESTONES)
            print(f"run {i + 1} seed {r['seed']}: test {100 * r['test_acc']:.2f}%  TTA {100 * r['tta_acc']:.2f}%  "
                  f"epochs {r['epochs']}  train {r['train_s']:.0f}s  wall {r['wall_s']:.0f}s  "
                  f"(val {r['val_size']}; time to {'val' if r['val_size'] else 'test'} acc {marks})", flush=True)

    def ms(key, scale=1.0):
        vals = [r[key] * scale for r in rows]
        return statistics.mean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)

    (a, sa), (t, st), (w, sw) = ms("tta_acc", 100), ms("test_acc", 100), ms("wall_s")
    print(f"mean of {len(rows)}: TTA {a:.2f}% +- {sa:.2f}  plain {t:.2f}% +- {st:.2f}  wall {w:.0f}s +- {sw:.0f}")


if __name__ == "__main__":
    main()
