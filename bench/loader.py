"""The data path's cost: the in-memory loader as a share of an airnet training step, and the
per-image albumentations pipeline's throughput with 0, 1 and 2 DataLoader workers.

    python bench/loader.py [--data DIR] [--batch-size 1024] [--steps 10]

Uses the real training split (decoded cache) and the default device.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import median_time  # noqa: E402 (bench/ is on sys.path when run as a script)

from cifar_demo import data, hardware, zoo  # noqa: E402
from cifar_demo.common import pick_device  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()
    device = pick_device()
    hw = hardware.hardware_info()
    print(f"{hw['cpu']}, {hw['cores']} cores, torch {torch.__version__}, device {device}, batch {args.batch_size}")
    split = data.load_cifar10(args.data).train

    loader = data.TensorLoader(split, args.batch_size, drop_last=True, augment="standard", device=device,
                               channels_last=device.type != "mps")
    batches = loader.iter_from(0)
    load_s = median_time(lambda: next(batches), args.steps)

    model = zoo.create("airnet").to(device).to(memory_format=torch.channels_last)
    model.init_from_data(split.images[:5000].to(device))
    opt = torch.optim.SGD([q for q in model.parameters() if q.requires_grad], lr=0.1, momentum=0.9)
    x, y = next(loader.iter_from(1))

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    step_s = median_time(step, args.steps)
    print(f"in-memory loader (crop + flip + normalise): {1000 * load_s:.1f} ms per batch; "
          f"airnet bf16 train step: {1000 * step_s:.0f} ms; loader share {100 * load_s / (load_s + step_s):.1f}%")

    for workers in (0, 1, 2):
        dl = data.PerImageLoader(split, "seed004", 256, num_workers=workers, drop_last=True)
        it = iter(dl)
        next(it)  # start the workers
        n, t0 = 0, time.perf_counter()
        for _ in range(args.steps):
            xb, _ = next(it)
            n += len(xb)
        print(f"albumentations seed004, {workers} worker(s): {n / (time.perf_counter() - t0):.0f} images/s")
        del it


if __name__ == "__main__":
    main()
