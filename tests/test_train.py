"""The training engine: every option shows its effect; stop, resume and kill -9 are exact."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from cifar_demo import train as engine
from cifar_demo.common import CLASSES
from cifar_demo.data import CifarData, DataSource, Split
from cifar_demo.train import TrainConfig, lr_factor, make_config

REPO = Path(__file__).resolve().parents[1]
MODEL = "quiz_dnn"  # small, learns the synthetic classes in a few steps, fast in bf16 on a CPU


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


@pytest.fixture(scope="module")
def tiny_data() -> CifarData:
    """400 train / 100 val / 100 test synthetic images, as data.load_cifar10 would return."""
    x, y = synthetic_arrays(50, seed=1)
    xt, yt = synthetic_arrays(10, seed=2)
    val_idx = np.concatenate([np.where(y == c)[0][:10] for c in range(10)])
    train_idx = np.setdiff1d(np.arange(len(y)), val_idx)
    source = DataSource(kind="imagefolder", path="synthetic", fingerprint="synthetic", label="synthetic")
    return CifarData(train=to_split(x[train_idx], y[train_idx]), val=to_split(x[val_idx], y[val_idx]),
                     test=to_split(xt, yt), classes=CLASSES, source=source)


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
    base = dict(model=MODEL, epochs=1, batch_size=40, lr=0.05, optimizer="sgd", schedule="constant",
                augment="standard", precision="bf16", channels_last=True, device="cpu", seed=0,
                weight_decay=5e-4)
    base.update(kw)
    return TrainConfig(**base)


def run(config: TrainConfig, tmp_path: Path, data, **kw) -> tuple[dict, Path]:
    trainer = engine.Trainer(config, runs_dir=tmp_path / "runs", data=data, **kw)
    return trainer.run(), trainer.run_dir


# ------------------------------------------------------------------------ config


def test_config_round_trips_through_json():
    c = cfg(mixes={"mixup": 0.3, "cutmix": 0.3}, ema=0.99, l1=1e-5)
    assert TrainConfig.from_json(c.to_json()) == c
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({**c.to_dict(), "lerning_rate": 1})


def test_preset_then_flags_override():
    c = make_config("optimized200k", epochs=3)
    assert c.preset == "optimized200k" and c.epochs == 3
    recipe = engine.presets()["optimized200k"]
    assert c.lr == recipe["lr"] and c.schedule == recipe["schedule"]
    # no preset named: the model's own recipe is the default
    assert make_config(model="simple_cnn").optimizer == engine.presets()["simple_cnn"]["optimizer"]
    with pytest.raises(ValueError, match="unknown preset"):
        make_config("nope")
    with pytest.raises(ValueError, match="optimizer must be"):
        make_config(model=MODEL, optimizer="rmsprop")


# ------------------------------------------------------------------------ schedules


def test_schedules_give_the_expected_lr_at_chosen_steps():
    spe, total = 10, 100
    f = lambda **kw: [lr_factor(cfg(epochs=10, **kw), s, total, spe) for s in (0, 9, 10, 50, 99)]  # noqa: E731
    assert f(schedule="constant") == [1, 1, 1, 1, 1]
    assert f(schedule="step", step_size=5, step_gamma=0.1) == pytest.approx([1, 1, 1, 0.1, 0.1])
    # cosine with 1 epoch warmup: linear ramp to 1 over the first 10 steps, then half a cosine
    cos = f(schedule="cosine", warmup_epochs=1)
    assert cos[0] == pytest.approx(0.1) and cos[1] == pytest.approx(1.0) and cos[2] == pytest.approx(1.0)
    assert cos[3] == pytest.approx(0.5 * (1 + math.cos(math.pi * 40 / 90)))
    assert cos[4] == pytest.approx(0.5 * (1 + math.cos(math.pi * 89 / 90)))
    lin = f(schedule="linear", warmup_epochs=1, final_lr_frac=0.1)
    assert lin[3] == pytest.approx(1 - 0.9 * 40 / 90) and lin[4] == pytest.approx(1 - 0.9 * 89 / 90)


def test_onecycle_rises_then_falls():
    model = nn.Linear(2, 2)
    c = cfg(schedule="onecycle", lr=0.1, epochs=10, warmup_epochs=3)
    opt = engine.build_optimizer(c, model)
    sched = engine.build_scheduler(c, opt, total_steps=100, steps_per_epoch=10)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = int(np.argmax(lrs))
    assert 25 <= peak <= 31 and max(lrs) == pytest.approx(0.1)
    assert lrs[0] < 0.01 and lrs[-1] < 1e-4


# ------------------------------------------------------------------------ optimizers and loss


def _one_step(c: TrainConfig, model: nn.Module, x, y, steps: int = 1):
    opt = engine.build_optimizer(c, model)
    for _ in range(steps):
        opt.zero_grad()
        loss = engine.training_loss(c, model(x), y, model=model)
        loss.backward()
        if isinstance(opt, engine.SAM):
            opt.first_step()
            opt.zero_grad()
            engine.training_loss(c, model(x), y, model=model).backward()
            opt.second_step()
        else:
            if c.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
            opt.step()
    return model


def _linear(seed=0):
    torch.manual_seed(seed)
    return nn.Linear(8, 10)


def test_l1_raises_the_loss_by_the_penalty():
    model, x, y = _linear(), torch.randn(4, 8), torch.tensor([0, 1, 2, 3])
    logits = model(x)
    plain = engine.training_loss(cfg(l1=0.0), logits, y, model=model)
    with_l1 = engine.training_loss(cfg(l1=1e-3), logits, y, model=model)
    assert (with_l1 - plain).item() == pytest.approx(1e-3 * model.weight.abs().sum().item(), rel=1e-5)


def test_label_smoothing_matches_its_definition():
    logits, y = torch.randn(5, 10), torch.tensor([1, 2, 3, 4, 5])
    got = engine.training_loss(cfg(label_smoothing=0.2), logits, y)
    logp = logits.log_softmax(1)
    want = (-(0.8 * logp.gather(1, y[:, None]).squeeze(1)) - 0.2 * logp.mean(1)).mean()
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


def test_adamw_decouples_weight_decay_and_adam_does_not():
    # With a zero data gradient, AdamW only shrinks weights by lr*wd; Adam's L2 term goes through
    # the adaptive normalisation and moves every weight by about lr.
    w0 = torch.full((3,), 2.0)

    def step(name):
        p = nn.Parameter(w0.clone())
        opt = engine.build_optimizer(cfg(optimizer=name, lr=0.01, weight_decay=0.1), nn.ParameterList([p]))
        p.grad = torch.zeros_like(p)
        opt.step()
        return p.detach()

    assert torch.allclose(step("adamw"), w0 * (1 - 0.01 * 0.1))
    assert torch.allclose(step("adam"), w0 - 0.01, atol=1e-4)


def test_nesterov_changes_the_update():
    x, y = torch.randn(16, 8), torch.randint(0, 10, (16,))
    plain = _one_step(cfg(nesterov=False, weight_decay=0), _linear(), x, y, steps=2)
    nest = _one_step(cfg(nesterov=True, weight_decay=0), _linear(), x, y, steps=2)
    assert not torch.allclose(plain.weight, nest.weight)


def test_sam_steps_with_the_gradient_at_the_perturbed_point():
    x, y = torch.randn(16, 8), torch.randint(0, 10, (16,))
    rho, lr = 0.5, 0.1
    c = cfg(optimizer="sam", sam_rho=rho, lr=lr, momentum=0.0, weight_decay=0)
    model = _one_step(c, _linear(), x, y)
    # by hand: w_adv = w + rho * g / ||g||; w_new = w - lr * grad(w_adv)
    ref = _linear()
    loss = nn.functional.cross_entropy(ref(x), y)
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
    adv = _linear()
    with torch.no_grad():
        for p, g in zip(adv.parameters(), grads):
            p.add_(rho * g / norm)
    adv_grads = torch.autograd.grad(nn.functional.cross_entropy(adv(x), y), list(adv.parameters()))
    for p, p0, g in zip(model.parameters(), ref.parameters(), adv_grads):
        assert torch.allclose(p, p0 - lr * g, atol=1e-6)


def test_gradient_clipping_bounds_the_step():
    x, y = torch.randn(16, 8) * 100, torch.randint(0, 10, (16,))
    c = cfg(lr=1.0, momentum=0.0, weight_decay=0, grad_clip=0.5)
    before = torch.cat([p.detach().flatten() for p in _linear().parameters()])
    after = torch.cat([p.detach().flatten() for p in _one_step(c, _linear(), x, y).parameters()])
    unclipped = torch.cat([p.detach().flatten() for p in _one_step(cfg(lr=1.0, momentum=0.0, weight_decay=0),
                                                                   _linear(), x, y).parameters()])
    assert (after - before).norm().item() == pytest.approx(0.5, rel=1e-4)
    assert (unclipped - before).norm().item() > 1.0


def test_precision_choices():
    cpu = torch.device("cpu")
    assert engine.autocast_dtype("auto", cpu) == torch.bfloat16
    assert engine.autocast_dtype("fp32", cpu) is None
    with pytest.raises(ValueError, match="bf16 on CPU"):
        engine.autocast_dtype("fp16", cpu)


# ------------------------------------------------------------------------ the loop


def test_a_run_learns_writes_its_directory_and_events(tmp_path, tiny_data):
    events = []
    summary, run_dir = run(cfg(epochs=3), tmp_path, tiny_data,
                           sinks=[events.append])
    assert summary["status"] == "finished" and summary["epochs_run"] == 3
    assert {p.name for p in run_dir.iterdir()} >= {"config.json", "metrics.jsonl", "checkpoint.pt",
                                                     "best.safetensors", "summary.json"}
    assert TrainConfig.from_json((run_dir / "config.json").read_text()).epochs == 3
    lines = engine.read_metrics(run_dir)
    assert lines == json.loads(json.dumps(events))  # the JSONL file holds exactly the emitted events
    steps = [e for e in events if e["kind"] == "step"]
    epochs = [e for e in events if e["kind"] == "epoch"]
    assert len(steps) == 3 * (400 // 40) and len(epochs) == 3
    for key in ("step", "epoch", "train_loss", "train_acc", "lr", "images_per_s", "elapsed_s", "eta_s"):
        assert key in steps[0]
    assert steps[-1]["eta_s"] == pytest.approx(0.0, abs=1e-6)
    assert epochs[-1]["val_acc"] > 0.5 and summary["test_acc"] > 0.5  # the synthetic classes are learnable
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert summary["precision"] == "torch.bfloat16"


def test_ema_weights_differ_from_raw_and_are_the_saved_ones(tmp_path, tiny_data):
    trainer = engine.Trainer(cfg(epochs=1, ema=0.9, val_size=0), runs_dir=tmp_path / "runs", data=tiny_data)
    trainer.run()
    best = load_file(str(trainer.run_dir / "best.safetensors"))
    ckpt = torch.load(trainer.run_dir / "checkpoint.pt", weights_only=True)
    raw = ckpt["model"]
    ema = {k.removeprefix("module."): v for k, v in ckpt["ema"].items() if k.startswith("module.")}
    key = next(k for k in best if k.endswith("weight") and best[k].dim() == 4)
    assert not torch.allclose(best[key], raw[key])
    assert torch.equal(best[key], ema[key])


def test_early_stopping_stops(tmp_path, tiny_data):
    # lr so small that validation accuracy never improves after epoch 1
    summary, run_dir = run(cfg(epochs=10, lr=1e-12, early_stop_patience=2, weight_decay=0), tmp_path, tiny_data)
    assert summary["status"] == "early_stopped" and summary["epochs_run"] == 3 and summary["best_epoch"] == 1


def test_batch_mixes_feed_soft_targets(tmp_path, tiny_data, monkeypatch):
    seen = []
    real = engine.training_loss

    def spy(c, logits, labels, targets=None, model=None):
        seen.append(targets)
        return real(c, logits, labels, targets, model)

    monkeypatch.setattr(engine, "training_loss", spy)
    run(cfg(mixes={"mixup": 1.0}), tmp_path, tiny_data)
    assert seen and all(t is not None and t.shape[1] == 10 for t in seen)
    assert all((t.max(1).values < 1).any() for t in seen)  # MixUp with p=1 blends every batch


@pytest.mark.parametrize("extra", [{"mixes": {"cutmix": 0.5}, "ema": 0.9},
                                   {"lookahead_every": 3, "augment": "translate2_altflip"}])
def test_stop_request_checkpoints_and_resume_matches_uninterrupted(tmp_path, tiny_data, extra):
    c = cfg(epochs=2, **extra)
    _, full_dir = run(c, tmp_path / "a", tiny_data)

    stop = threading.Event()

    def stop_at_step_12(e):
        if e.get("kind") == "step" and e["step"] == 12:
            stop.set()

    summary, run_dir = run(c, tmp_path / "b", tiny_data, sinks=[stop_at_step_12], stop_event=stop)
    assert summary["status"] == "stopped" and summary["steps"] == 12
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["state"]["batch"] == 12 - 10
    summary = engine.resume(run_dir, data=tiny_data)
    assert summary["status"] == "finished" and summary["steps"] == 20
    a, b = load_file(str(full_dir / "best.safetensors")), load_file(str(run_dir / "best.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _cli(*args, env=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "cifar_demo", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _env(tmp_path):
    env = dict(os.environ, CIFAR_DEMO_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    env.pop("CIFAR_DEMO_DATA", None)
    return env


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    data = write_imagefolder(tmp_path / "data", n_train=24)  # 240 train images
    flags = ["train", "--model", MODEL, "--data", str(data), "--val-size", "40", "--epochs", "3",
             "--batch-size", "10", "--lr", "0.02", "--schedule", "cosine", "--precision", "bf16",
             "--device", "cpu", "--augment", "standard", "--seed", "3"]
    env = _env(tmp_path)
    done = _cli(*flags, "--runs-dir", str(tmp_path / "full"), env=env)
    out, err = done.communicate(timeout=600)
    assert done.returncode == 0, err

    victim = _cli(*flags, "--runs-dir", str(tmp_path / "killed"), env=env)
    deadline = time.time() + 600
    metrics = None
    while time.time() < deadline:  # wait until the run is inside its second epoch
        found = list((tmp_path / "killed").glob("*/metrics.jsonl"))
        if found:
            metrics = found[0]
            events = engine.read_metrics(metrics.parent)
            if any(e["kind"] == "step" and 1.3 < e["epoch"] < 1.7 for e in events):
                break
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert metrics is not None and not (metrics.parent / "summary.json").exists(), "run ended before the kill"

    resumed = _cli("train", "--resume", metrics.parent.name, "--runs-dir", str(tmp_path / "killed"), env=env)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert "test accuracy" in out
    full_dir = next((tmp_path / "full").iterdir())
    a, b = load_file(str(full_dir / "best.safetensors")), load_file(str(metrics.parent / "best.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    ca = torch.load(full_dir / "checkpoint.pt", weights_only=True)["model"]
    cb = torch.load(metrics.parent / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(ca[k], cb[k]) for k in ca)


def test_ddp_two_cpu_ranks_hold_identical_weights(tmp_path):
    data = write_imagefolder(tmp_path / "data", n_train=8)
    runs = tmp_path / "runs"
    env = _env(tmp_path)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=0",
           "--standalone", "-m", "cifar_demo", "train", "--model", MODEL, "--data", str(data),
           "--val-size", "20", "--epochs", "2", "--batch-size", "10", "--precision", "bf16",
           "--device", "cpu", "--runs-dir", str(runs)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list(runs.iterdir())) == 1, "only rank 0 writes a run directory"
    run_dir = next(runs.iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    digests = summary["weights_sha256_by_rank"]
    assert len(digests) == 2 and digests[0] == digests[1]
    start = next(e for e in engine.read_metrics(run_dir) if e["kind"] == "start")
    assert start["world_size"] == 2 and start["steps_per_epoch"] == (60 // 2) // 10
    assert summary["steps"] == 2 * 3
    assert proc.stdout.count("test accuracy") == 1  # only rank 0 prints


def test_bn_biases_learn_faster_and_the_whitening_bias_stops_learning():
    from cifar_demo import zoo

    model = zoo.create("airnet")
    c = cfg(model="airnet", bn_bias_lr_mult=64.0, whiten_bias_epochs=2, lr=0.5, weight_decay=1e-3,
            schedule="constant", epochs=4)
    opt = engine.build_optimizer(c, model)
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["bn_bias"]["lr"] == pytest.approx(32.0) and groups["bn_bias"]["weight_decay"] == pytest.approx(1e-3 / 64)
    assert [p is model.whiten.bias for p in groups["whiten_bias"]["params"]] == [True]
    assert all(p.requires_grad for p in groups["main"]["params"])  # frozen BN scales are left out
    sched = engine.build_scheduler(c, opt, total_steps=40, steps_per_epoch=10)
    lrs = []
    for _ in range(40):
        lrs.append({g["name"]: g["lr"] for g in opt.param_groups})
        opt.step()
        sched.step()
    assert lrs[19]["whiten_bias"] == pytest.approx(0.5) and lrs[20]["whiten_bias"] == 0.0
    assert lrs[39]["main"] == pytest.approx(0.5) and lrs[39]["bn_bias"] == pytest.approx(32.0)


def test_tta_score_is_reported(tmp_path, tiny_data):
    summary, _ = run(cfg(tta="flip"), tmp_path, tiny_data)
    assert 0 <= summary["test_acc_tta"] <= 1 and "test_acc_tta" not in run(cfg(), tmp_path / "b", tiny_data)[0]


@pytest.mark.parametrize("preset", ["seed004", "autoaugment"])
def test_per_image_augmentation_presets_train_through_dataloader_workers(tmp_path, tiny_data, preset):
    events = []
    summary, _ = run(cfg(augment=preset, num_workers=1), tmp_path, tiny_data, sinks=[events.append])
    assert summary["status"] == "finished"
    steps = [e for e in events if e["kind"] == "step"]
    assert len(steps) == 400 // 40 and all(math.isfinite(e["train_loss"]) for e in steps)


def test_device_choice_follows_the_request():
    from cifar_demo.common import pick_device

    assert pick_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else "cpu")
    assert pick_device().type == expected and pick_device("auto").type == expected


def test_lookahead_pulls_to_the_slow_weights_and_ends_on_them(tmp_path, tiny_data):
    c = cfg(epochs=2, lookahead_every=5, lookahead_decay=0.8, val_size=0)
    # no pull at step 5 of 20 is tiny, the last call sets decay 1 (the model becomes the slow copy)
    decays = {s: engine.Lookahead.decay_at(c, s, 20) for s in range(1, 21)}
    assert [s for s, d in decays.items() if d is not None] == [5, 10, 15, 20]
    assert decays[5] == pytest.approx(0.8 / 64) and decays[15] == pytest.approx(0.8 * 27 / 64) and decays[20] == 1.0

    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    la = engine.Lookahead(model)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    la.update(model, 0.75)
    assert torch.allclose(model[0].weight, start + 0.25) and torch.allclose(la.slow["0.weight"], start + 0.25)
    assert "1.num_batches_tracked" not in la.slow and "1.running_mean" in la.slow  # statistics follow too

    trainer = engine.Trainer(c, runs_dir=tmp_path / "runs", data=tiny_data)
    trainer.run()
    ckpt = torch.load(trainer.run_dir / "checkpoint.pt", weights_only=True)
    best = load_file(str(trainer.run_dir / "best.safetensors"))
    assert ckpt["lookahead"].keys() <= best.keys()
    assert all(torch.equal(ckpt["lookahead"][k], best[k]) for k in ckpt["lookahead"])
    with pytest.raises(ValueError, match="either ema or lookahead"):
        cfg(ema=0.9, lookahead_every=5).validate()


def test_warmup_can_start_above_zero():
    c = cfg(schedule="linear", warmup_epochs=1, warmup_from=0.2, final_lr_frac=0.07, epochs=3)
    f = [lr_factor(c, s, 30, 10) for s in range(30)]
    assert f[0] == pytest.approx(0.2 + 0.8 / 10) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0) and f[29] == pytest.approx(1 - 0.93 * 19 / 20)


def test_the_speed_presets_are_airbench94s_method():
    ref, fast = make_config("airbench94"), make_config("fast")
    for c in (ref, fast):
        assert (c.model, c.batch_size, c.optimizer, c.nesterov, c.momentum, c.label_smoothing) == \
            ("airnet", 1024, "sgd", True, 0.85, 0.2)
        assert (c.augment, c.lookahead_every, c.bn_bias_lr_mult, c.whiten_bias_epochs, c.tta) == \
            ("translate2_altflip", 5, 64.0, 3, "flip_translate")
        assert c.warmup_epochs / c.epochs == pytest.approx(0.23, abs=0.01)
    assert ref.epochs == 10 and fast.epochs > ref.epochs
