"""Your own images through the CLI, as a user runs it: fine-tuning the shipped airnet against
training airnet from scratch, on the same small dataset of three renamed classes.

    python bench/own_images.py [--data ../shared/data/cifar10-jpeg] [--classes airplane,frog,truck]
                               [--names jet,toad,lorry] [--per-class 300] [--seeds 0]

The dataset: the first --per-class pictures of each of --classes from the JPEG export's train
split, and all of those classes' test pictures, copied under new class names into a temporary
folder DIR/train/<name>/*.jpg, DIR/test/<name>/* and zipped (the zip is what the runs read).
Then, for each seed, one after the other:

    python -m cifar_demo train --data DIR.zip --preset finetune --seed S   (init from weights/airnet)
    python -m cifar_demo train --data DIR.zip --preset finetune --init-from none --seed S   (from scratch)

the same recipe and budget, only the start differs. Each run keeps its best epoch by validation
accuracy (10% of the training pictures held out, data.VAL_RULE); the test pictures are scored once
at the end, for this report only. Printed per run: best validation accuracy, test accuracy, and
the wall time of the whole command (data decoding from the cache, training, scoring).

Note what the numbers mean: the shipped airnet was trained on CIFAR-10's training split, so the
fine-tuned backbone has seen these training pictures (under their old labels) before; the test
pictures it has not. bench/finetune.py measures the same on pictures the backbone never saw.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg"


def build_dataset(export: Path, classes: list[str], names: list[str], per_class: int, dest: Path) -> Path:
    """dest/<dataset>.zip of train/<name>/ (the first per_class of each class) and test/<name>/ (all)."""
    root = dest / "renamed"
    for split in ("train", "test"):
        for cls, name in zip(classes, names):
            files = sorted((export / split / cls).iterdir())
            if split == "train":
                files = files[:per_class]
            (root / split / name).mkdir(parents=True)
            for f in files:
                shutil.copyfile(f, root / split / name / f.name)
    archive = dest / "renamed.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:   # JPEGs: nothing to deflate
        for f in sorted(root.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(root).as_posix())
    return archive


def train(archive: Path, runs: Path, seed: int, scratch: bool) -> dict:
    cmd = [sys.executable, "-m", "cifar_demo", "train", "--data", str(archive), "--preset", "finetune",
           "--seed", str(seed), "--runs-dir", str(runs), "--precision", "fp32"]
    if scratch:
        cmd += ["--init-from", "none"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    run_id = re.findall(r"\d{8}-\d{6}-airnet-[0-9a-f]+", out.stdout + out.stderr)[-1]
    summary = json.loads((runs / run_id / "summary.json").read_text())
    return {"val": summary["best_val_acc"], "test": summary["test_acc"], "seconds": seconds,
            "epochs": summary.get("epochs_run"), "classes": summary["classes"], "run": run_id}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--classes", default="airplane,frog,truck")
    p.add_argument("--names", default="jet,toad,lorry")
    p.add_argument("--per-class", type=int, default=300)
    p.add_argument("--seeds", default="0")
    args = p.parse_args()
    classes, names = args.classes.split(","), args.names.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]

    import torch

    from cifar_demo import hardware

    hw = hardware.hardware_info()
    print(f"machine: {hw['cpu']}, {hw['cores']} cores; torch {torch.__version__}; matmul peak fp32 "
          f"{hardware.matmul_peak_gflops(1024, torch.float32):.0f} GFLOP/s")
    with tempfile.TemporaryDirectory(prefix="cifar-demo-own-") as tmp:
        archive = build_dataset(args.data, classes, names, args.per_class, Path(tmp))
        print(f"dataset: {', '.join(f'{c} -> {n}' for c, n in zip(classes, names))}; {args.per_class} train "
              f"pictures a class from {args.data}/train, all their test pictures; "
              f"{archive.stat().st_size / 1e6:.1f} MB zip")
        rows = {"fine-tuned from airnet": [], "from scratch": []}
        for seed in seeds:
            for label, scratch in (("fine-tuned from airnet", False), ("from scratch", True)):
                r = train(archive, Path(tmp) / "runs", seed, scratch)
                rows[label].append(r)
                print(f"  seed {seed} {label:24s} val {100 * r['val']:5.1f}%  test {100 * r['test']:5.1f}%  "
                      f"{r['seconds']:5.1f} s  ({r['run']}, classes {', '.join(r['classes'])})", flush=True)
    base = statistics.mean(r["seconds"] for r in rows["from scratch"])
    print("\nsummary (mean over seeds; time as a ratio to the from-scratch run of this invocation)")
    for label, rs in rows.items():
        seconds = statistics.mean(r["seconds"] for r in rs)
        print(f"  {label:24s} val {100 * statistics.mean(r['val'] for r in rs):5.1f}%  test "
              f"{100 * statistics.mean(r['test'] for r in rs):5.1f}%  {seconds:5.1f} s = {seconds / base:.2f}x")


if __name__ == "__main__":
    main()
