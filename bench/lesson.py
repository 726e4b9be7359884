"""A lesson's trainings side by side in one invocation: accuracy, time, and ratios against a reference.

    python bench/lesson.py lesson demo --data ../shared/data/cifar10-jpeg          # the lesson preset vs demo
    python bench/lesson.py overfit overfit_aug --reference overfit --data DIR      # the overfitting pair
    python bench/lesson.py "demo:train_limit=5000,batch_size=500" ... --val-only   # candidates, on validation

Each entry is a preset, optionally with overrides after a colon (``key=value`` pairs, comma-separated;
values are read as JSON where they parse, else as strings). Every run trains through the engine
(train.Trainer) in this process, one after another on the same decoded data and seed, and prints:
the last epoch's training accuracy, the best validation accuracy, the test accuracy (plain; not
with --val-only, where candidates are chosen on validation alone and the test split is never
scored: test_limit 1), the training time (the engine's clock) and the wall time from building
the Trainer to its summary (loading the decoded data, building the model, training, validating,
scoring the test set: what a user waits for after the training process has started). The closing
table gives each entry's wall time and accuracies as ratios against the reference (--reference,
default: the last entry). Times drift between sessions on shared machines: compare ratios, and
only within one invocation.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cifar_demo import data, hardware, train


def parse_entry(entry: str) -> tuple[str, dict]:
    """"preset:key=value,key=value" -> (preset, overrides)."""
    preset, _, rest = entry.partition(":")
    overrides = {}
    for pair in filter(None, rest.split(",")):
        key, _, value = pair.partition("=")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value.strip()
    return preset, overrides


def one_run(entry: str, seed: int, data_dir: str | None, runs_dir: Path, val_only: bool) -> dict:
    preset, overrides = parse_entry(entry)
    overrides = {"seed": seed, "data": data_dir, **overrides}
    if val_only:
        overrides["test_limit"] = 1   # the engine always scores a test set: one picture, never read
    cfg = train.make_config(preset, **overrides)
    epochs: list[dict] = []
    t0 = time.perf_counter()
    summary = train.Trainer(cfg, runs_dir=runs_dir, sinks=[lambda e: epochs.append(e) if e.get("kind") == "epoch"
                                                            else None]).run()
    wall_s = time.perf_counter() - t0
    last = epochs[-1] if epochs else {}
    return {"entry": entry, "train_acc": last.get("train_acc"), "val_acc": summary.get("best_val_acc"),
            "test_acc": None if val_only else summary.get("test_acc"), "train_s": summary["elapsed_s"],
            "wall_s": wall_s, "epochs": summary["epochs_run"], "images": cfg.train_limit or "all",
            "val_curve": [e.get("val_acc") for e in epochs], "train_curve": [e.get("train_acc") for e in epochs]}


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def line(r: dict) -> str:
    curve = " ".join(f"{100 * t:.0f}/{100 * v:.0f}" for t, v in zip(r["train_curve"], r["val_curve"])
                     if t is not None and v is not None)
    return (f"{r['entry']}: {r['epochs']} epochs on {r['images']} images; last train acc {pct(r['train_acc'])}, "
            f"best val {pct(r['val_acc'])}, test {pct(r['test_acc'])}; train {r['train_s']:.1f}s, "
            f"wall {r['wall_s']:.1f}s; train/val acc per epoch {curve}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("entries", nargs="+", metavar="preset[:key=value,...]")
    p.add_argument("--reference", default=None, help="the entry the others are compared with (default: the last)")
    p.add_argument("--data", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-only", action="store_true", help="choose candidates: never score the test split")
    args = p.parse_args()
    entries = list(dict.fromkeys(args.entries))
    reference = args.reference or entries[-1]
    if reference not in entries:
        p.error(f"the reference {reference!r} is not one of the entries")
    known = train.presets()
    unknown = [e for e in entries if parse_entry(e)[0] not in known]
    if unknown:
        p.error(f"unknown preset(s) {', '.join(unknown)}")
    data.load_cifar10(args.data)  # warm the decoded cache so every run reads it
    print(f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; {hardware.machine_line()}", flush=True)
    kept = hardware.keep_freed_memory()
    print(hardware.allocator_line(kept), flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for entry in entries:
            results[entry] = one_run(entry, args.seed, args.data, Path(tmp), args.val_only)
            print(line(results[entry]), flush=True)
    ref = results[reference]
    print(f"\nagainst {reference}: wall time ratio, best-val ratio" + ("" if args.val_only else ", test ratio"))
    for entry, r in results.items():
        ratios = [f"wall {r['wall_s'] / ref['wall_s']:.2f}x", f"val {r['val_acc'] / ref['val_acc']:.3f}x"]
        if not args.val_only:
            ratios.append(f"test {r['test_acc'] / ref['test_acc']:.3f}x")
        print(f"  {entry}: " + ", ".join(ratios))


if __name__ == "__main__":
    main()
