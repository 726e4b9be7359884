"""CPU inference cost of every zoo model, and of the Predict tab's whole-zoo prediction.

    python bench/inference.py [--repeats 30] [--threads N]

Per model: batch-1 latency and batch-256 throughput, in fp32 and in bf16 autocast (medians of
the repeats after warm-up). Then the latency of predict.predict_many on one image for the
whole zoo, as the Predict tab pays it. Shipped weights are used where they exist; elsewhere a
freshly initialised model (the cost does not depend on the weights' values).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import median_time  # noqa: E402 (bench/ is on sys.path when run as a script)

from cifar_demo import hardware, weights, zoo
from cifar_demo.analysis import predict


def timed(fn, repeats: int) -> float:
    return median_time(fn, repeats, warmup=3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    hw = hardware.hardware_info()
    print(f"{hw['cpu']}, {hw['cores']} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}")
    print(f"{'model':14s} {'b1 fp32 ms':>10s} {'b1 bf16 ms':>10s} {'b256 fp32 img/s':>16s} {'b256 bf16 img/s':>16s}")
    have = set(weights.available())
    x1, x256 = torch.randn(1, 3, 32, 32), torch.randn(256, 3, 32, 32)
    for spec in zoo.specs():
        model = (weights.load(spec.name).model if spec.name in have else zoo.create(spec.name)).eval()
        cells = []
        for batch, reps in ((x1, args.repeats), (x256, max(3, args.repeats // 6))):
            for bf16 in (False, True):
                def run():
                    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                        model(batch)
                t = timed(run, reps)
                cells.append(f"{t * 1000:10.2f}" if batch is x1 else f"{256 / t:16.0f}")
        print(f"{spec.name:14s} {cells[0]} {cells[1]} {cells[2]} {cells[3]}"
              + ("" if spec.name in have else "   (no weights: initialised model)"))
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    names = zoo.names()
    missing = [n for n in names if n not in have]
    if missing:  # time the whole zoo even where weights are missing: same architectures
        models = {n: zoo.create(n).eval() for n in missing}
        def whole():
            predict.predict_many(image, names)
            for n in missing:
                predict.predict_one(models[n], image)
    else:
        def whole():
            predict.predict_many(image, names)
    print(f"whole-zoo prediction of one image (Predict tab): {timed(whole, args.repeats) * 1000:.0f} ms median")


if __name__ == "__main__":
    main()
