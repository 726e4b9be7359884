"""What Muon's orthogonalisation costs in a training step: the optimizer step of the `muon`
preset against the Nesterov SGD step of `airbench94`, and both against one forward and
backward pass of the same batch.

    python bench/muon_step.py [--batch 2000] [--steps 10]

The optimizer steps run on airnet's real parameter groups (the engine's param_groups and
build_optimizer for each preset) with random gradients: their cost does not depend on the
values. Muon's step adds the Newton-Schulz iterations (muon_ns_steps of them, in the dtype
the optimizer picks: bf16 where the CPU computes it natively) and the renormalisation of each
filter bank. The forward and backward pass is the engine's default (bf16 autocast,
channels_last) at the preset's batch. Medians of --steps calls after two warm-up calls.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cifar_demo import hardware, train, zoo  # noqa: E402
from cifar_demo.train.optim import newton_schulz_dtype  # noqa: E402
from timing import median_time  # noqa: E402 (bench/ is on sys.path when run as a script)


def optimizer_step_time(preset: str, steps: int) -> float:
    cfg = train.make_config(preset)
    model = zoo.create(cfg.model)
    opt = train.build_optimizer(cfg, model)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3 if p.requires_grad else None
    return median_time(opt.step, steps, warmup=2)


def forward_backward_time(batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model = zoo.create("airnet").to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()

    return median_time(step, steps, warmup=2)


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
    fb = forward_backward_time(args.batch, max(3, args.steps // 3))
    print(f"optimizer step, muon preset (Muon on the filters, SGD the rest): {1000 * muon:8.1f} ms")
    print(f"optimizer step, airbench94 preset (Nesterov SGD):              {1000 * sgd:8.1f} ms")
    print(f"forward + backward, batch {args.batch} (bf16, channels_last):    {1000 * fb:8.1f} ms")
    print(f"Muon's extra cost per step: {1000 * (muon - sgd):.1f} ms = {100 * (muon - sgd) / (fb + muon):.2f}% "
          f"of a Muon training step")


if __name__ == "__main__":
    main()
