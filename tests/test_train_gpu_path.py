"""The GPU path, checked on a CPU through the real Trainer: SAM's two passes with gradient
clipping and fp16 loss scaling (torch.amp.GradScaler("cpu"), which enforces the same rules as
CUDA's, and a recording fake that checks the call order), overflow handling, and the step
metrics that stay on the device until a logging interval ends. A CUDA-only check runs real
fp16 where a GPU is present.
"""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from cifar_demo import train as engine
from cifar_demo.train import dist as dist_module
from cifar_demo.train import parts as parts_module

from .helpers import cfg, run


class RecordingScaler:
    """A GradScaler stand-in: multiplies losses by a power of two, holds to GradScaler's rules
    (unscale_ at most once per optimizer before update(), step before update()) and records
    every call, plus each backward of a scaled loss."""

    def __init__(self, log: list, scale: float = 8.0):
        self.log, self._scale = log, scale
        self._unscaled: set[int] = set()
        self._stepped = False

    def is_enabled(self) -> bool:
        return True

    def get_scale(self) -> float:
        return self._scale

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        self.log.append("scale")
        out = loss * self._scale
        out.register_hook(lambda grad: self.log.append("backward"))
        return out

    def unscale_(self, optimizer) -> None:
        if id(optimizer) in self._unscaled:
            raise RuntimeError("unscale_() has already been called on this optimizer since the last update()")
        self._unscaled.add(id(optimizer))
        self.log.append("unscale_")
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.div_(self._scale)

    def step(self, optimizer) -> None:
        if id(optimizer) not in self._unscaled:
            self.unscale_(optimizer)  # GradScaler.step unscales what was not unscaled yet
        self.log.append("step")
        optimizer.step()
        self._stepped = True

    def update(self) -> None:
        if not self._stepped:
            raise RuntimeError("update() without a step")
        self.log.append("update")
        self._unscaled.clear()
        self._stepped = False

    def state_dict(self) -> dict:
        return {"scale": self._scale}

    def load_state_dict(self, state: dict) -> None:
        self._scale = state["scale"]


def _record_clipping(monkeypatch, log: list) -> None:
    real = torch.nn.utils.clip_grad_norm_

    def clip(params, max_norm, *args, **kwargs):
        log.append("clip")
        return real(params, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)


def _weights(run_dir) -> dict:
    return load_file(str(run_dir / engine.BEST_FILE))


# A short SAM run: 2 steps of 40 images, plain fp32 so the scaled and unscaled runs can be
# compared to rounding.
SAM_CLIP = dict(optimizer="sam", sam_rho=0.1, grad_clip=0.5, precision="fp32", channels_last=False,
                augment="none", train_limit=80, val_size=0)


@pytest.mark.parametrize("optimizer", ["sam", "sgd"])
def test_loss_scaling_calls_come_in_gradscalers_order_every_step(tmp_path, tiny_data, monkeypatch, optimizer):
    log: list = []
    monkeypatch.setattr(parts_module, "grad_scaler", lambda amp_dtype, device: RecordingScaler(log))
    _record_clipping(monkeypatch, log)
    summary, _ = run(cfg(**{**SAM_CLIP, "optimizer": optimizer}), tmp_path, tiny_data)
    assert summary["status"] == "finished" and summary["steps"] == 2
    passes = ["scale", "backward"] * (2 if optimizer == "sam" else 1)   # both SAM passes are scaled
    assert log == (passes + ["unscale_", "clip", "step", "update"]) * 2


@pytest.mark.slow   # two full trainings
def test_a_real_gradscaler_with_sam_and_clipping_gives_the_unscaled_result(tmp_path, tiny_data, monkeypatch):
    _, plain_dir = run(cfg(**SAM_CLIP), tmp_path / "plain", tiny_data)
    scalers = []

    def enabled_scaler(amp_dtype, device):
        # The real class, enabled on the CPU: it refuses a second unscale_ before update(),
        # exactly as torch.cuda's does. A power of two scales and unscales exactly.
        scalers.append(torch.amp.GradScaler("cpu", init_scale=2.0 ** 12))
        return scalers[-1]

    monkeypatch.setattr(parts_module, "grad_scaler", enabled_scaler)
    summary, scaled_dir = run(cfg(**SAM_CLIP), tmp_path / "scaled", tiny_data)
    assert summary["status"] == "finished" and scalers[0].get_scale() == 2.0 ** 12  # no overflow, no skip
    a, b = _weights(plain_dir), _weights(scaled_dir)
    assert all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6) for k in a)


def test_sam_with_clipping_through_the_trainer_is_the_definition(tmp_path, tiny_data):
    rho, lr, clip = 0.5, 0.1, 0.05   # clip small enough to bind
    # quiz_dnn: no dropout, so the by-hand passes below see the very network the step saw.
    c = cfg(**{**SAM_CLIP, "model": "quiz_dnn", "sam_rho": rho, "grad_clip": clip, "lr": lr, "momentum": 0.0,
               "weight_decay": 0.0})
    trainer = engine.Trainer(c, runs_dir=tmp_path / "runs", data=tiny_data)
    parts = trainer.setup()
    images, labels = next(iter(parts.loader.iter_from(0, 0)))
    ref = copy.deepcopy(parts.raw_model)
    trainer.train_step(parts, images, labels)

    # By hand: g at w; w_adv = w + rho g/||g||; g' at w_adv, clipped to norm `clip`; w - lr g'.
    def grads(model):
        loss = nn.functional.cross_entropy(model(images), labels)
        return torch.autograd.grad(loss, list(model.parameters()))

    w = [p.detach().clone() for p in ref.parameters()]
    g = grads(ref)
    norm = torch.sqrt(sum((x ** 2).sum() for x in g))
    with torch.no_grad():
        for p, x in zip(ref.parameters(), g):
            p.add_(rho * x / norm)
    g_adv = grads(ref)
    adv_norm = torch.sqrt(sum((x ** 2).sum() for x in g_adv))
    assert adv_norm > clip
    for p, w0, x in zip(parts.raw_model.parameters(), w, g_adv):
        assert torch.allclose(p.detach(), w0 - lr * x * clip / (adv_norm + 1e-6), atol=1e-6)
    # The BatchNorm statistics saw both passes, as the by-hand model's did.
    for (name, a), b in zip(parts.raw_model.named_buffers(), ref.buffers()):
        assert torch.allclose(a, b, atol=1e-6), name


def _linear_sam(lr=0.1):
    torch.manual_seed(0)
    model = nn.Linear(8, 10)
    c = cfg(optimizer="sam", sam_rho=0.5, lr=lr, momentum=0.0, weight_decay=0.0, grad_clip=1.0)
    return c, model, engine.build_optimizer(c, model)


@pytest.mark.parametrize("overflow_in", ["first pass", "second pass", "neither"])
def test_an_fp16_overflow_skips_the_whole_sam_step_and_lowers_the_scale(overflow_in):
    c, model, opt = _linear_sam()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    x, y = torch.randn(16, 8), torch.randint(0, 10, (16,))
    calls = []
    inf_at = {"first pass": 1, "second pass": 2, "neither": None}[overflow_in]

    def forward():
        # An inf loss has inf/nan gradients: what an fp16 overflow in the backward pass gives.
        calls.append(1)
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y)
        return logits, loss * float("inf") if len(calls) == inf_at else loss

    before = [p.detach().clone() for p in model.parameters()]
    engine.optimizer_step(c, opt, scaler, model.parameters(), forward)
    after = [p.detach() for p in model.parameters()]
    if overflow_in == "neither":
        assert len(calls) == 2 and scaler.get_scale() == 2.0 ** 10
        assert not all(torch.equal(a, b) for a, b in zip(before, after))
    else:
        # Skipped: the weights are w again (not w + e, nor nan), and the next step tries a smaller scale.
        assert all(torch.equal(a, b) for a, b in zip(before, after))
        assert scaler.get_scale() == 2.0 ** 9
        assert len(calls) == (1 if overflow_in == "first pass" else 2)
    assert not any("w" in opt.state[p] for p in model.parameters())  # no perturbation left to undo
    # The scaler takes the next step: no "unscale_() has already been called" left over.
    inf_at = None
    engine.optimizer_step(c, opt, scaler, model.parameters(), forward)
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.slow   # a longer training
def test_step_metrics_are_read_once_per_interval_and_epoch_records_stay_exact(tmp_path, tiny_data):
    every_step, every_4 = [], []
    c = cfg(epochs=2, augment="none", train_limit=160)  # 4 steps per epoch
    _, dir_1 = run(c, tmp_path / "a", tiny_data, sinks=[every_step.append], log_every=1)
    _, dir_4 = run(c, tmp_path / "b", tiny_data, sinks=[every_4.append], log_every=3)
    steps_4 = [e for e in every_4 if e["kind"] == "step"]
    assert [e["step"] for e in steps_4] == [3, 4, 6, 8]  # every 3 steps and each epoch's end
    assert set(steps_4[0]) == set(next(e for e in every_step if e["kind"] == "step"))  # the same fields
    epochs_1 = [e for e in every_step if e["kind"] == "epoch"]
    epochs_4 = [e for e in every_4 if e["kind"] == "epoch"]
    assert len(epochs_1) == len(epochs_4) == 2
    for x, y in zip(epochs_1, epochs_4):
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-9) and x["train_acc"] == y["train_acc"]
    # An interval's event is the mean over its steps: weighted by steps, they give the epoch's figure.
    first_epoch = [e for e in steps_4 if e["step"] <= 4]
    sizes = [3, 1]
    epoch1 = next(e for e in every_4 if e["kind"] == "epoch")
    assert sum(s * e["train_loss"] for s, e in zip(sizes, first_epoch)) / 4 == pytest.approx(epoch1["train_loss"])
    a, b = _weights(dir_1), _weights(dir_4)
    assert all(torch.equal(a[k], b[k]) for k in a)  # reporting less often changes nothing else


def test_a_training_step_reads_nothing_back_from_the_device(tmp_path, tiny_data, monkeypatch):
    trainer = engine.Trainer(cfg(augment="standard", train_limit=120), runs_dir=tmp_path / "runs", data=tiny_data,
                             log_every=1000)
    parts = trainer.setup()
    state = trainer.restore(parts)
    reads, takes = [], []
    real_item, real_tolist, real_take = torch.Tensor.item, torch.Tensor.tolist, dist_module.StepMeter.take
    monkeypatch.setattr(torch.Tensor, "item", lambda t: reads.append("item") or real_item(t))
    monkeypatch.setattr(torch.Tensor, "tolist", lambda t: reads.append("tolist") or real_tolist(t))
    monkeypatch.setattr(dist_module.StepMeter, "take", lambda m: takes.append(m.steps) or real_take(m))
    trainer.epoch(parts, state)
    monkeypatch.setattr(torch.Tensor, "item", real_item)
    monkeypatch.setattr(torch.Tensor, "tolist", real_tolist)
    # Three steps, one read: the epoch's end (the old engine called .item() twice per step).
    assert takes == [3] and reads == ["tolist"]
    assert state.step == 3 and state.epoch_seen == 120
    trainer.finish(parts, state, "stopped")


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="real fp16 autocast with a CUDA GradScaler needs a GPU; on the CPU the tests above "
                           "run torch.amp.GradScaler('cpu') and a recording fake through the same code")
def test_fp16_on_cuda_with_sam_clipping_and_ema(tmp_path, tiny_data):
    events = []
    c = cfg(precision="fp16", device="cuda", optimizer="sam", grad_clip=1.0, ema=0.9, epochs=2)
    summary, run_dir = run(c, tmp_path, tiny_data, sinks=[events.append], log_every=3)
    assert summary["status"] == "finished" and summary["precision"] == "torch.float16"
    steps = [e for e in events if e["kind"] == "step"]
    assert steps and all(torch.isfinite(torch.tensor(e["train_loss"])) for e in steps)
    scaler = torch.load(run_dir / engine.CHECKPOINT_FILE, weights_only=True)["scaler"]
    assert 0 < scaler["scale"] < float("inf")
    assert summary["test_acc"] > 0.3
