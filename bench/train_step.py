"""What makes a training step fast on this machine: precision, memory format, batch size,
thread count and torch.compile, one at a time against the engine's default (bf16 autocast,
channels_last, eager) at the given batch size (1,024 by default, airnet's).

    python bench/train_step.py [--model airnet] [--batch 1024] [--steps 8] [--compile] [--default-only]
        [--malloc kept|default] [--sizes 24,28]

Each row: median seconds per step over --steps timed steps (after warm-up), and images/s.
With --compile the compiled variant also reports its one-off compile time (the first steps),
which a 20-minute run pays once. Random inputs: the step time does not depend on the pixels.
--malloc default times every row with the C library's allocator as it comes (the engine keeps
freed memory for reuse: hardware.keep_freed_memory); the process can't switch back, so the two
are two invocations.
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

from cifar_demo import hardware, zoo  # noqa: E402
from cifar_demo.common import pick_device  # noqa: E402


def make_step(device, model_name: str, batch: int, bf16: bool, channels_last: bool, compiled: bool, size: int = 32):
    torch.manual_seed(0)
    model = zoo.create(model_name).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.85, nesterov=True)
    forward = torch.compile(model) if compiled else model

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(forward(x).float(), y, label_smoothing=0.2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="airnet", choices=zoo.names())
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--compile", action="store_true", help="also time torch.compile (takes minutes on 2 cores)")
    p.add_argument("--sizes", default="", metavar="N,N",
                   help="also time images of these sizes (progressive resizing, TrainConfig.low_res), e.g. 24,28")
    p.add_argument("--default-only", action="store_true", help="time only the default row (a model's training speed)")
    p.add_argument("--malloc", choices=("kept", "default"), default="kept",
                   help="kept: freed memory stays in the process for reuse, as in the engine "
                        "(hardware.keep_freed_memory); default: the C library's own behaviour")
    args = p.parse_args()
    kept = args.malloc == "kept" and hardware.keep_freed_memory()
    device = pick_device()
    hw = hardware.hardware_info()
    threads = torch.get_num_threads()
    b = args.batch
    print(f"model {args.model}; {hw['cpu']}, {hw['cores']} cores, torch {torch.__version__}, device {device}, "
          f"{threads} threads, {time.strftime('%Y-%m-%d', time.gmtime())}; {hardware.allocator_line(kept)}")
    print(hardware.matmul_peaks_line(), flush=True)
    variants = [
        (f"default: bf16, channels_last, batch {b}", dict(batch=b, bf16=True, channels_last=True)),
        ("fp32", dict(batch=b, bf16=False, channels_last=True)),
        ("contiguous (NCHW)", dict(batch=b, bf16=True, channels_last=False)),
        (f"batch {b // 2}", dict(batch=b // 2, bf16=True, channels_last=True)),
        (f"batch {2 * b}", dict(batch=2 * b, bf16=True, channels_last=True)),
    ]
    if args.default_only:
        del variants[1:]
    elif threads > 1:
        variants.append((f"{threads - 1} thread(s)", dict(batch=b, bf16=True, channels_last=True, threads=threads - 1)))
    for n in (int(v) for v in args.sizes.split(",") if v.strip()):
        variants.append((f"{n}x{n} images", dict(batch=b, bf16=True, channels_last=True, size=n)))
    if args.compile and not args.default_only:
        variants.append(("torch.compile", dict(batch=b, bf16=True, channels_last=True, compiled=True)))
    base = None
    for name, v in variants:
        torch.set_num_threads(v.pop("threads", threads))
        step = make_step(device, args.model, compiled=v.pop("compiled", False), **v)
        t0 = time.perf_counter()
        step()
        step()
        first_s = time.perf_counter() - t0
        s = median_time(step, args.steps)
        rate = v["batch"] / s
        base = base or rate
        extra = f"  (first 2 steps {first_s:.0f}s incl. compiling)" if "compile" in name else ""
        print(f"{name:42s} {1000 * s:7.0f} ms/step {rate:7.0f} img/s  x{rate / base:.2f}{extra}", flush=True)
        torch.set_num_threads(threads)


if __name__ == "__main__":
    main()
