"""Fine-tuning the shipped airnet on a few hundred images: what the finetune preset's choices buy.

    python bench/finetune.py [--data ../shared/data/cifar10-jpeg] [--classes cat,dog,horse]
                             [--per-class 300] [--seeds 0,1] [--only NAME,...]

The stand-in for "your own images" is CIFAR-10's *test* set, which the shipped weights never
trained on: `--per-class` pictures of each of `--classes` train (a tenth of them validate),
every `--test-every`-th of the rest of those classes' test pictures score. The same runs are repeated on the pictures
with their colours inverted (255 - x): another domain, whose BatchNorm statistics are far from
CIFAR-10's, which is where keeping, re-estimating or following them differs most.

Each row is one TrainConfig (the finetune preset with one setting changed, or airnet from
scratch with the same budget): best validation accuracy and test accuracy (means over the seeds)
and the time of one run (training, validation and scoring the test pictures), on this machine.
The preset's settings are chosen on the validation columns (cifar_demo/train/config.py says how);
the test columns are reported, never chosen on.

Measured with `python bench/finetune.py` (defaults: cat, dog, horse; 300 a class; seeds 1, 2;
every 2nd test picture) on a 2-core AMD EPYC, torch 2.14, fp32, 2026-12-03; tests ran on the same
cores for the first minutes, so the times are upper bounds:

    cat-dog-horse: 810 train, 90 val, 1050 test      (left) | inverted colours, same pictures (right)
    variant                      val    test   s/run      val    test   s/run
    finetune (preset)           81.7%  87.9%   31.6    71.7%  78.6%   25.3
    bn_stats=frozen             84.4%  87.1%   41.5    73.3%  77.2%   27.4
    bn_stats=recompute          83.9%  85.9%   26.8    72.2%  75.3%   24.8
    bn_stats=frozen lr=0.2      33.3%  33.3%   25.1    33.3%  33.3%   23.9
    lr=0.1                      81.7%  85.4%   25.0    72.2%  80.3%   24.8
    lr=0.2                      75.6%  82.0%   27.0    72.2%  75.2%   25.8
    lr=0.2 backbone_lr_mult=1   59.4%  63.1%   25.7    62.2%  69.2%   26.2
    scratch, same budget        53.9%  59.2%   25.1    51.1%  60.6%   26.7
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cifar_demo import data as data_mod  # noqa: E402
from cifar_demo import hardware
from cifar_demo import train as engine  # noqa: E402
from cifar_demo.common import CLASSES  # noqa: E402
from cifar_demo.data import CifarData, DataSource, Split  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg"

VARIANTS: dict[str, dict] = {
    "finetune (preset)": {},
    "bn_stats=frozen": {"bn_stats": "frozen"},
    "bn_stats=recompute": {"bn_stats": "recompute"},
    "bn_stats=frozen lr=0.2": {"bn_stats": "frozen", "lr": 0.2},
    "lr=0.1": {"lr": 0.1},
    "lr=0.2": {"lr": 0.2},
    "lr=0.2 backbone_lr_mult=1": {"lr": 0.2, "backbone_lr_mult": 1.0},
    "scratch, same budget": {"init_from": None},
}


def subset_data(test: Split, classes: list[str], per_class: int, invert: bool, seed: int = 0) -> CifarData:
    """train/val/test CifarData of `classes` drawn from CIFAR-10's test split (labels renumbered)."""
    rng = np.random.default_rng(seed)
    labels = test.labels.numpy()
    parts = {"train": [], "val": [], "test": []}
    n_val = max(1, per_class // 10)
    for new, name in enumerate(classes):
        idx = rng.permutation(np.flatnonzero(labels == CLASSES.index(name)))
        for split, pick in (("val", idx[:n_val]), ("train", idx[n_val:per_class]), ("test", idx[per_class:])):
            parts[split].append((pick, new))

    def make(split: str) -> Split:
        idx = np.concatenate([p for p, _ in parts[split]])
        lab = np.concatenate([np.full(len(p), c) for p, c in parts[split]])
        images = test.images[torch.from_numpy(idx)]
        return Split((255 - images) if invert else images.clone(), torch.from_numpy(lab).long())

    name = ("inverted " if invert else "") + "-".join(classes)
    source = DataSource("own", Path(name), f"bench-{name}-{per_class}", f"{name} (own images)",
                        classes=tuple(f"my_{c}" for c in classes), name=name, layout="split")
    return CifarData(make("train"), make("val"), make("test"), tuple(f"my_{c}" for c in classes), source)


def run_once(overrides: dict, data: CifarData, seed: int, runs: Path) -> tuple[float, float, float]:
    """(best validation accuracy, test accuracy, seconds) of one run."""
    # No TTA: the variants are compared on the plain test accuracy.
    cfg = engine.make_config("finetune", precision="fp32", device="cpu", seed=seed, tta="none", **overrides)
    if "init_from" in overrides and overrides["init_from"] is None:
        cfg.init_from = None
    t0 = time.perf_counter()
    summary = engine.Trainer(engine.validate(cfg), runs_dir=runs, data=data).run()
    return summary["best_val_acc"], summary["test_acc"], time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--classes", default="cat,dog,horse")
    p.add_argument("--per-class", type=int, default=300)
    p.add_argument("--seeds", default="1,2")
    p.add_argument("--test-every", type=int, default=2, help="score every N-th remaining test picture")
    p.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    p.add_argument("--runs-dir", default="/tmp/cifar-demo-bench-finetune")
    args = p.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    classes = args.classes.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    test = data_mod.load_split("test", data_mod.resolve_source(args.data, download=False))
    hw = hardware.hardware_info()
    print(f"{hw['cpu']}, {hw['cores']} cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
    variants = {k: v for k, v in VARIANTS.items() if not args.only or k in args.only.split(",")}
    for invert in (False, True):
        data = subset_data(test, classes, args.per_class, invert)
        data.test = data_mod.subset(data.test, range(0, len(data.test), args.test_every))
        print(f"\n{data.source.name}: {len(data.train)} train, {len(data.val)} val, {len(data.test)} test; "
              f"seeds {seeds}")
        # Settings are chosen on the validation column; the test column is reported, never chosen on.
        print(f"{'variant':26s} {'val acc':>8s} {'test acc':>9s} {'test per seed':>20s} {'s/run':>6s}")
        for name, overrides in variants.items():
            vals, accs, secs = zip(*(run_once(overrides, data, s, Path(args.runs_dir)) for s in seeds))
            per_seed = " ".join(f"{100 * a:.1f}" for a in accs)
            print(f"{name:26s} {100 * statistics.mean(vals):7.1f}% {100 * statistics.mean(accs):8.1f}% "
                  f"{per_seed:>20s} {statistics.median(secs):6.1f}", flush=True)


if __name__ == "__main__":
    main()
