"""Helpers shared by the test modules; the fixtures are in conftest.py.

- synthetic training data: synthetic_arrays (learnable 32x32 classes), to_split,
  write_imagefolder (the same on disk, for subprocess runs); cfg and run (a small training
  run of MODEL), StopAfter (a stop flag), subprocess_env (a training subprocess's environment);
- weights: Tiny (a hand-made module), trained_tiny, save_tiny (weights + card with CARD_FIELDS),
  flip_last_byte (a corrupted weights file);
- FakeChild: the training child process of the job queue, faked in the real run layout;
- lr_trace: the learning rates a config's schedule gives.

tests/synthetic_data.py (CIFAR-10 sources), tests/own_images.py (datasets of new classes),
tests/app_server.py and tests/browser.py (the app in a subprocess, in a browser) are the others.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from cifar_demo import data
from cifar_demo import train as engine
from cifar_demo import weights as W
from cifar_demo.analysis import familiarity as F
from cifar_demo.common import CLASSES
from cifar_demo.data import Split
from cifar_demo.train import JsonlSink, Run, TrainConfig

REPO = Path(__file__).resolve().parents[1]
MODEL = "optimized200k"  # the cheapest training step of the zoo on a CPU that learns the synthetic classes


# ------------------------------------------------------------------------ training


def synthetic_arrays(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable 32x32 images: each class has its own colour and stripe direction, plus noise."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    yy, xx = np.mgrid[0:32, 0:32]
    for c in range(10):
        base = np.zeros((32, 32, 3), np.float32)
        base[..., c % 3] = 140 + 10 * c
        stripes = np.sin((xx * math.cos(c) + yy * math.sin(c)) * 0.8) * 60
        for _ in range(n_per_class):
            img = base + stripes[..., None] + rng.normal(0, 25, (32, 32, 3))
            images.append(np.clip(img, 0, 255).astype(np.uint8))
            labels.append(c)
    return np.stack(images), np.array(labels, dtype=np.int64)


def to_split(x: np.ndarray, y: np.ndarray) -> Split:
    return Split(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y))


def write_imagefolder(root: Path, n_train: int = 24, n_test: int = 4) -> Path:
    """A tiny dataset on disk in the ImageFolder layout (for subprocess runs)."""
    for split, n, seed in (("train", n_train, 3), ("test", n_test, 4)):
        x, y = synthetic_arrays(n, seed)
        for i, (img, label) in enumerate(zip(x, y)):
            d = root / split / CLASSES[label]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"{i:05d}.png")
    return root


def cfg(**kw) -> TrainConfig:
    # fp32: bf16 autocast is emulated (several times slower) on CPUs without native bf16; the
    # bf16 path has its own test (test_batch_mixes_feed_soft_targets).
    base = dict(model=MODEL, epochs=1, batch_size=40, lr=0.05, optimizer="sgd", schedule="constant",
                augment="standard", precision="fp32", channels_last=True, device="cpu", seed=0,
                weight_decay=5e-4)
    base.update(kw)
    return TrainConfig(**base)


def run(config: TrainConfig, tmp_path: Path, data, **kw) -> tuple[dict, Path]:
    trainer = engine.Trainer(config, runs_dir=tmp_path / "runs", data=data, **kw)
    return trainer.run(), trainer.run_dir


class StopAfter:
    """A stop flag that turns itself on after `steps` checks (the engine checks before each step)."""

    def __init__(self, steps: int):
        self.left = steps

    def is_set(self) -> bool:
        self.left -= 1
        return self.left < 0

    def set(self) -> None:
        self.left = -1


def subprocess_env(tmp_path):
    # A crashing subprocess prints its Python stack (faulthandler also catches SIGABRT from C++).
    env = dict(os.environ, CIFAR_DEMO_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1")
    env.pop("CIFAR_DEMO_DATA", None)
    return env


# ------------------------------------------------------------------------ weights


class Tiny(nn.Module):
    """Conv + BatchNorm + a frozen head: parameters, buffers and a requires_grad=False tensor."""

    def __init__(self, width: int = 4, extra: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.head = nn.Linear(width, 10)
        self.head.weight.requires_grad_(False)  # frozen: must still be saved
        if extra:
            self.extra = nn.Linear(2, 2)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def trained_tiny(seed: int = 0, **kw) -> Tiny:
    """A Tiny whose BatchNorm statistics are not the defaults, so buffers are really tested."""
    torch.manual_seed(seed)
    m = Tiny(**kw)
    m.train()
    with torch.no_grad():
        m(torch.randn(8, 3, 8, 8) * 3 + 1)
    return m.eval()


CARD_FIELDS = dict(
    dataset="CIFAR-10 (JPEG export)",
    dataset_fingerprint="c217601eebcfee757a51b381539a30bc3b0a89cac54850a81d992750b4fa8352",
    test_accuracy=0.9012,
    test_accuracy_tta=0.9105,
    per_class_accuracy={c: 0.9 for c in CLASSES},
    train_config={"model": "tiny", "epochs": 3, "lr": 0.1, "batch_size": 512},
    epochs=3,
    train_seconds=12.5,
    slice_check={"start": 0, "n": 1000, "accuracy": 0.9},
)


def save_tiny(directory: Path, name: str = "tiny", model: nn.Module | None = None, **kw):
    model = model if model is not None else trained_tiny()
    return model, *W.save_weights(model, directory, name, **{**CARD_FIELDS, **kw})


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # inside the last tensor's data: the header still parses
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------------ fakes and traces


class FakeChild:
    """The training child, in the real run layout: writes its run (one epoch per recipe's
    accuracy) when told to finish, or a stopped run on SIGTERM."""

    pids = iter(range(30_000_000, 40_000_000))

    def __init__(self, cmd):
        self.cmd, self.pid, self.code = cmd, next(self.pids), None

        def arg(flag):
            return cmd[cmd.index(flag) + 1]

        self.run_id, self.folder = arg("--run-id"), arg("--runs-dir")
        self.cfg = TrainConfig.from_json(open(arg("--config")).read())

    def finish(self, status="finished"):
        acc = 0.4 + (0.1 if self.cfg.augment == "none" else 0.0) + 0.01 * self.cfg.seed
        run = Run.create(Path(self.folder) / self.run_id, self.cfg)
        sink = JsonlSink(run.metrics_path)
        sink({"kind": "epoch", "epoch": 1, "val_acc": acc, "val_loss": 1.0})
        sink.close()
        run.write_summary({"run_id": self.run_id, "status": status, "best_val_acc": acc})
        self.code = 0

    def poll(self):
        return self.code

    def wait(self, timeout=None):
        return self.code

    def send_signal(self, sig):
        self.finish("stopped")


def lr_trace(c: TrainConfig, model: nn.Module, total_steps: int, steps_per_epoch: int) -> list[dict[str, float]]:
    """Each parameter group's lr before each of `total_steps` steps of the config's schedule."""
    opt = engine.build_optimizer(c, model)
    sched = engine.build_scheduler(c, opt, total_steps=total_steps, steps_per_epoch=steps_per_epoch)
    out = []
    for _ in range(total_steps):
        out.append({g.get("name", "main"): g["lr"] for g in opt.param_groups})
        opt.step()
        sched.step()
    return out


# ------------------------------------------------------------------ Predict with test weights

WITH_WEIGHTS = ("quiz_dnn", "optimized200k")  # the two smallest zoo models


def calibrate_for_test_weights(folder):
    """A real calibration of the two test models, on synthetic class-coloured images."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(10).repeat_interleave(30)
    colours = torch.randint(40, 220, (10, 3, 1, 1), generator=g)
    images = (colours[labels] + torch.randint(-30, 30, (len(labels), 3, 32, 32), generator=g)).clamp(0, 255)
    split = data.Split(images.to(torch.uint8), labels)
    source = data.DataSource(kind="imagefolder", path="synthetic", fingerprint="synthetic", label="synthetic")
    ds = data.CifarData(train=split, val=split, test=split, classes=CLASSES, source=source)
    loaded = {n: (W.load(n).model, W.load(n).card) for n in WITH_WEIGHTS}
    F.calibrate(loaded, ds).save(folder / F.DIR_NAME)
    F._CACHED.clear()


# ------------------------------------------------------------------ a tiny model with a "whiten" layer

class TinyWhitenedNet(nn.Module):
    """Two conv filter banks (the first frozen, like airnet's whitening), BatchNorm, a linear head;
    no training hooks of its own (test_muon's TinyNet adds airnet's)."""

    def __init__(self):
        super().__init__()
        self.whiten = nn.Conv2d(3, 6, 2, bias=True)
        self.whiten.weight.requires_grad = False
        self.conv = nn.Conv2d(6, 8, 3, bias=False)
        self.norm = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        return self.head(torch.relu(self.norm(self.conv(torch.relu(self.whiten(x))))).mean((2, 3)))
