"""What Muon's orthogonalisation costs in a training step: the optimizer step of the `muon`
preset against the Nesterov SGD step of `airbench94`, and both against one forward and
backward pass of the same batch.

    python bench/muon_step.py [--batch 2000] [--steps 10]

The optimizer steps run on airnet's real parameter groups (the engine's param_groups and
build_optimizer for each preset) with random gradients: their cost does not depend on the
values. Muon's step adds the Newton-Schulz iterations (muon_ns_steps of them, in the dtype
the optimizer picks: bf16 where the CPU computes it natively) and the renormalisation of each
filter bank. The forward and backward pass is train_step.py's step (the engine's default: bf16
autocast, channels_last) at the preset's batch, less the SGD step timed here. Medians of --steps
calls after two warm-up calls.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import median_time  # noqa: E402 (bench/ is on sys.path when run as a script)
from train_step import make_step  # noqa: E402

from cifar_demo import hardware, train, zoo  # noqa: E402
from cifar_demo.train.optimizers import newton_schulz_dtype  # noqa: E402


def optimizer_step_time(preset: str, steps: int) -> float:
    cfg = train.make_config(preset)
    model = zoo.create(cfg.model)
    opt = train.build_optimizer(cfg, model)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3 if p.requires_grad else None
    return median_time(opt.step, steps, warmup=2)


def sgd_training_step_time(batch: int, steps: int) -> float:
    """A whole airnet step at `batch` (forward, backward, a Nesterov SGD step): train_step.py's."""
    return median_time(make_step(torch.device("cpu"), "airnet", batch, bf16=True, channels_last=True,
                                 compiled=False), steps, warmup=2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=train.make_config("muon").batch_size)
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()
    hardware.keep_freed_memory()   # as in every training process
    print(f"airnet; {hardware.machine_line()}")
    print(f"Newton-Schulz dtype on this CPU: {newton_schulz_dtype('cpu')}")
    muon = optimizer_step_time("muon", args.steps)
    sgd = optimizer_step_time("airbench94", args.steps)
    fb = sgd_training_step_time(args.batch, max(3, args.steps // 3)) - sgd   # forward + backward
    print(f"optimizer step, muon preset (Muon on the filters, SGD the rest): {1000 * muon:8.1f} ms")
    print(f"optimizer step, airbench94 preset (Nesterov SGD):              {1000 * sgd:8.1f} ms")
    print(f"forward + backward, batch {args.batch} (bf16, channels_last):    {1000 * fb:8.1f} ms")
    print(f"Muon's extra cost per step: {1000 * (muon - sgd):.1f} ms = {100 * (muon - sgd) / (fb + muon):.2f}% "
          f"of a Muon training step")


if __name__ == "__main__":
    main()
