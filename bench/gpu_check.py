"""One command that checks the whole GPU path on any CUDA machine, in under 5 minutes, and prints one table.

    python bench/gpu_check.py [--data PATH] [--smoke] [--only train,scaler,ddp,predict,zerogpu]

Checks, each a row (name, result, seconds, ok):

    train demo / airbench94   the preset trained on the GPU in bf16 through the Trainer: time, test accuracy
    fp16 scaler + SAM + clip  a few hundred Trainer steps in fp16 with GradScaler, SAM and gradient
                              clipping: every logged loss finite, the scaler's state moved
    ddp                       `torchrun` on every visible GPU (DDP): one short run, every rank's weights equal
    zoo predict               every zoo model (shipped weights where there are some): batch-1 latency and
                              batch-1024 throughput (bf16 autocast on CUDA)
    zerogpu stand-in          a training run started through the job manager as a ZeroGPU GPU call (the
                              stand-in, zerogpu_standin), in a fresh process (CUDA must not be initialised
                              before the fork, as on ZeroGPU): status, device, time

The header names the device, torch, CUDA and cuDNN versions. Exit status 1 if a check failed.
--smoke runs the same code on the CPU at a tiny size (bf16 for the presets, a CPU GradScaler
injected into the Trainer for the fp16 row, 2 gloo ranks for DDP): tests/test_gpu_check.py runs it.
Data: --data, else what the app finds (CIFAR_DEMO_DATA, ./data); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cifar_demo import data, hardware, train, weights, zoo  # noqa: E402
from cifar_demo.common import pick_device  # noqa: E402
from cifar_demo.train import Run, Trainer  # noqa: E402
from cifar_demo.weights import load_checkpoint  # noqa: E402

CHECKS = ("train", "scaler", "ddp", "predict", "zerogpu")
ZEROGPU_CHILD = "--zerogpu-child"


def header(device: torch.device) -> str:
    cuda = torch.version.cuda or "none"
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else hardware.cpu_model()
    return (f"device {device} ({name}), {gpus} GPU(s); torch {torch.__version__}, CUDA {cuda}, cuDNN {cudnn}; "
            f"python {sys.version.split()[0]}")


class Row:
    def __init__(self, name: str):
        self.name, self.result, self.seconds, self.ok = name, "", 0.0, False

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, kind, exc, tb):
        self.seconds = time.perf_counter() - self.t0
        if exc is not None and kind is not KeyboardInterrupt:
            self.ok, self.result = False, f"{kind.__name__}: {exc}"[:160]
            return True
        return False


# ----------------------------------------------------------------------------- the checks

def _config(preset: str, smoke: bool, src: str, **kw) -> train.TrainConfig:
    """The preset in bf16 on the GPU; --smoke: 4 steps of 100 images in fp32 on the CPU (bf16 is
    emulated on many CPUs, several times slower)."""
    small = dict(epochs=1, train_limit=400, val_size=100, test_limit=200, batch_size=100, device="cpu",
                 precision="fp32") if smoke else {"precision": "bf16"}
    return train.make_config(preset, data=src, **{**small, **kw})


def check_presets(src: str, runs: Path, smoke: bool) -> list[Row]:
    rows = []
    for preset in ("demo", "airbench94"):
        with Row(f"train {preset} ({'fp32, CPU' if smoke else 'bf16'})") as row:
            summary = Trainer(_config(preset, smoke, src), runs_dir=runs).run()
            acc = summary.get("test_acc")
            row.ok = summary["status"] == "finished" and acc is not None
            row.result = (f"test accuracy {100 * acc:.2f}% on {summary['n_test']:,} images, {summary['epochs_run']} "
                          f"epoch(s), {summary['elapsed_s']:.1f} s of training on {summary['device']}")
        rows.append(row)
    return rows


class _ScaledOnCpu(Trainer):
    """The Trainer with an enabled GradScaler on a CPU (fp16 autocast is CUDA's): the same
    scale/unscale/step/update path as fp16 on a GPU, for --smoke."""

    def setup(self):
        parts = super().setup()
        if parts.device.type == "cpu":
            parts.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
        return parts


def check_scaler(src: str, runs: Path, smoke: bool, device: torch.device) -> Row:
    with Row("fp16 scaler + SAM + clip") as row:
        steps = 20 if smoke else 300
        batch = 20 if smoke else 128
        cfg = train.make_config("airnet", data=src, optimizer="sam", sam_rho=0.05, grad_clip=1.0, batch_size=batch,
                                precision="fp16" if device.type == "cuda" else "fp32", device=str(device),
                                epochs=1, val_size=100,
                                train_limit=steps * batch, test_limit=200, schedule="constant", lr=0.05)
        trainer = (Trainer if device.type == "cuda" else _ScaledOnCpu)(cfg, runs_dir=runs, log_every=10)
        summary = trainer.run()
        run = Run(trainer.run_dir)
        losses = [e["train_loss"] for e in run.metrics() if e.get("kind") == "step"]
        scaler = load_checkpoint(run.checkpoint_path)["scaler"]
        start = (2.0 ** 16, 2.0 ** 12)   # GradScaler's default initial scale on CUDA, _ScaledOnCpu's
        moved = bool(scaler) and (scaler.get("_growth_tracker", 0) > 0 or scaler.get("scale") not in start)
        finite = bool(losses) and all(math.isfinite(v) for v in losses)
        row.ok = finite and moved and summary["status"] == "finished" and summary["steps"] > 0
        row.result = (f"{summary['steps']} steps, losses finite: {finite} (last {losses[-1]:.3f}), scaler scale "
                      f"{scaler.get('scale')}, growth tracker {scaler.get('_growth_tracker')}")
    return row


def check_ddp(src: str, runs: Path, smoke: bool, device: torch.device) -> Row:
    ranks = torch.cuda.device_count() if device.type == "cuda" else 2
    with Row(f"ddp ({ranks} ranks, torchrun)") as row:
        cfg = _config("airbench94", smoke, src, epochs=1, **({} if smoke else {"train_limit": 20_000}))
        config = runs / "ddp.json"
        config.write_text(cfg.to_json(), encoding="utf-8")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
               "-m", "cifar_demo", "train", "--config", str(config), "--run-id", "ddp", "--runs-dir", str(runs)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
        summary = Run(runs / "ddp").summary() if (runs / "ddp").is_dir() else None
        if out.returncode != 0 or summary is None:
            row.result = f"exit {out.returncode}: {(out.stderr or out.stdout)[-300:]}"
            return row
        digests = summary.get("weights_sha256_by_rank") or []
        row.ok = summary["world_size"] == ranks and len(set(digests)) == 1 and len(digests) == ranks
        row.result = (f"world size {summary['world_size']}, replicas identical: {len(set(digests)) == 1}, "
                      f"test accuracy {100 * summary['test_acc']:.2f}%, {summary['elapsed_s']:.1f} s")
    return row


def check_predict(smoke: bool, device: torch.device) -> Row:
    with Row("zoo predict") as row:
        have = set(weights.available())
        big = 16 if smoke else 1024
        repeats = 2 if smoke else 10
        cells, throughputs = [], []
        for name in zoo.names():
            model = (weights.load(name).model if name in have else zoo.create(name)).to(device).eval()
            one, many = (torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, device=device) for n in (1, big))
            latency = _median_s(lambda: _forward(model, one, device), repeats)
            rate = big / _median_s(lambda: _forward(model, many, device), repeats)
            throughputs.append(rate)
            cells.append(f"{name} {1000 * latency:.1f} ms / {rate:,.0f} img/s")
            model.cpu()
        row.ok = len(cells) == len(zoo.names()) and all(r > 0 for r in throughputs)
        row.result = (f"batch 1 latency / batch {big} throughput ({'bf16' if device.type == 'cuda' else 'fp32'}, "
                      f"{len(have & set(zoo.names()))} with shipped weights): " + "; ".join(cells))
    return row


def _forward(model, x, device):
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        model(x.float().div_(255))
    if device.type == "cuda":
        torch.cuda.synchronize()


def _median_s(fn, repeats: int) -> float:
    fn()   # warm-up: kernels chosen, buffers allocated
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def check_zerogpu(src: str, runs: Path, smoke: bool) -> Row:
    """In a fresh process: CUDA must not be initialised before the stand-in forks (as on ZeroGPU)."""
    with Row("zerogpu stand-in (job manager)") as row:
        cmd = [sys.executable, str(Path(__file__).resolve()), ZEROGPU_CHILD, "--data", src, "--runs", str(runs)]
        env = {**os.environ, "SPACES_ZERO_GPU": "true", "CIFAR_DEMO_ZEROGPU_STANDIN": "1"}
        out = subprocess.run(cmd + (["--smoke"] if smoke else []), cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=240)
        try:
            result = json.loads(out.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            row.result = f"exit {out.returncode}: {(out.stderr or out.stdout)[-300:]}"
            return row
        row.ok = result["status"] == "finished" and out.returncode == 0
        row.result = (f"{result['status']} on {result['device']} in a GPU call of {result['duration_s']} s, test "
                      f"accuracy {result['test_acc']}, {result['seconds']:.1f} s from submit to end")
    return row


def zerogpu_child(src: str, runs: Path, smoke: bool) -> int:
    from cifar_demo import jobs, runtime  # lazy: this branch runs in its own process, under the stand-in
    from cifar_demo.jobs import gpu_runner  # lazy: idem

    assert runtime.current().zerogpu and runtime.current().standin, "run by gpu_check with the stand-in on"
    if smoke:   # the CPU is no GPU: the call gets time enough to finish (its budget is still checked)
        gpu_runner.MIN_CALL_S = gpu_runner.MAX_CALL_S = 300
    manager = jobs.JobManager(runs / "zerogpu", public=True)
    cfg = _config("demo", smoke, src)
    t0 = time.perf_counter()
    run_id = manager.submit(cfg, owner="gpucheck")
    manager.wait(timeout=600, run_id=run_id)
    snap = manager.snapshot(run_id)
    summary = snap.summary or {}
    print(json.dumps({"status": snap.status, "device": summary.get("device"), "test_acc": summary.get("test_acc"),
                      "duration_s": gpu_runner.duration_s(cfg), "seconds": time.perf_counter() - t0}))
    return 0 if snap.status == "finished" else 1


# ----------------------------------------------------------------------------- main

def table(rows: list[Row]) -> str:
    width = max(len(r.name) for r in rows)
    lines = [f"{'check':<{width}}  ok    seconds  result", "-" * (width + 60)]
    lines += [f"{r.name:<{width}}  {'yes' if r.ok else 'NO ':<4} {r.seconds:8.1f}  {r.result}" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", help="CIFAR-10 (or any dataset folder): default what the app finds")
    p.add_argument("--smoke", action="store_true", help="a tiny version on the CPU (the test suite runs it)")
    p.add_argument("--only", default=",".join(CHECKS), help=f"comma-separated subset of {','.join(CHECKS)}")
    p.add_argument("--runs", help=argparse.SUPPRESS)
    p.add_argument(ZEROGPU_CHILD, action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    src = str(data.resolve_source(args.data, download=False).path)
    if args.zerogpu_child:
        return zerogpu_child(src, Path(args.runs), args.smoke)
    only = {c.strip() for c in args.only.split(",") if c.strip()}
    if only - set(CHECKS):
        p.error(f"unknown check(s) {', '.join(sorted(only - set(CHECKS)))}; choose from {', '.join(CHECKS)}")
    device = torch.device("cpu") if args.smoke else pick_device()
    if not args.smoke and device.type != "cuda":
        print("no CUDA device here: run with --smoke for the CPU version", file=sys.stderr)
        return 2
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        runs = Path(tmp)
        # The stand-in forks: it runs first, in its own process, before this one touches CUDA.
        if "zerogpu" in only:
            rows.append(check_zerogpu(src, runs, args.smoke))
        if "train" in only:
            rows += check_presets(src, runs, args.smoke)
        if "scaler" in only:
            rows.append(check_scaler(src, runs, args.smoke, device))
        if "ddp" in only:
            rows.append(check_ddp(src, runs, args.smoke, device))
        if "predict" in only:
            rows.append(check_predict(args.smoke, device))
    print(header(device))
    print(f"data: {src}" + (" (smoke: a tiny subset, on the CPU)" if args.smoke else ""))
    print(table(rows))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
