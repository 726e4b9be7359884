"""Optimisation without a run: LR schedules, parameter groups, optimizers, SAM and clipping
through the engine's optimizer_step, the loss, precision choices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from cifar_demo import train as engine
from cifar_demo.train import TrainConfig, lr_factor, make_config
from cifar_demo.train.precision import cpu_has_bf16

from .helpers import cfg, lr_trace

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
    c = cfg(schedule="onecycle", lr=0.1, epochs=10, warmup_epochs=3)
    lrs = [g["main"] for g in lr_trace(c, nn.Linear(2, 2), 100, 10)]
    peak = int(np.argmax(lrs))
    assert 25 <= peak <= 31 and max(lrs) == pytest.approx(0.1)
    assert lrs[0] < 0.01 and lrs[-1] < 1e-4


# ------------------------------------------------------------------------ optimizers and loss


def _one_step(c: TrainConfig, model: nn.Module, x, y, steps: int = 1):
    """`steps` optimizer steps as the engine takes them (optimizer_step: SAM's two passes,
    clipping, the loss scaler, here disabled as it is in fp32 and bf16)."""
    opt = engine.build_optimizer(c, model)
    scaler = engine.grad_scaler(None, torch.device("cpu"))

    def forward():
        logits = model(x)
        return logits, engine.training_loss(c, logits, y, model=model)

    for _ in range(steps):
        engine.optimizer_step(c, opt, scaler, model.parameters(), forward)
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


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_soft_targets_of_a_batch_mix_are_smoothed_like_hard_labels(smoothing):
    logits, y = torch.randn(6, 10), torch.tensor([0, 1, 2, 3, 4, 5])
    c = cfg(label_smoothing=smoothing)
    one_hot = torch.eye(10)[y]
    assert engine.training_loss(c, logits, y, one_hot).item() == pytest.approx(
        engine.training_loss(c, logits, y).item(), rel=1e-6)
    # A 70/30 blend (what MixUp makes): the smoothed target (1 - eps) * t + eps / C, against log-softmax.
    soft = 0.7 * one_hot + 0.3 * torch.eye(10)[y.roll(1)]
    want = -(((1 - smoothing) * soft + smoothing / 10) * logits.log_softmax(1)).sum(1).mean()
    assert engine.training_loss(c, logits, y, soft).item() == pytest.approx(want.item(), rel=1e-5)


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
    assert engine.autocast_dtype("auto", cpu) == (torch.bfloat16 if cpu_has_bf16() else None)
    assert engine.autocast_dtype("bf16", cpu) == torch.bfloat16   # asked for: honoured, emulated or not
    assert engine.autocast_dtype("fp32", cpu) is None
    with pytest.raises(ValueError, match="bf16 on CPU"):
        engine.autocast_dtype("fp16", cpu)


def test_bn_biases_learn_faster_and_the_whitening_bias_stops_learning():
    from cifar_demo import zoo

    model = zoo.create("airnet")
    c = cfg(model="airnet", bn_bias_lr_mult=64.0, whiten_bias_epochs=2, lr=0.5, weight_decay=1e-3,
            schedule="constant", epochs=4)
    opt = engine.build_optimizer(c, model)
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["bn_bias"]["lr"] == pytest.approx(32.0)
    assert groups["bn_bias"]["weight_decay"] == pytest.approx(1e-3 / 64)
    assert [p is model.whiten.bias for p in groups["whiten_bias"]["params"]] == [True]
    assert all(p.requires_grad for p in groups["main"]["params"])  # frozen BN scales are left out
    lrs = lr_trace(c, model, 40, 10)
    assert lrs[19]["whiten_bias"] == pytest.approx(0.5) and lrs[20]["whiten_bias"] == 0.0
    assert lrs[39]["main"] == pytest.approx(0.5) and lrs[39]["bn_bias"] == pytest.approx(32.0)


def test_warmup_can_start_above_zero():
    c = cfg(schedule="linear", warmup_epochs=1, warmup_from=0.2, final_lr_frac=0.07, epochs=3)
    f = [lr_factor(c, s, 30, 10) for s in range(30)]
    assert f[0] == pytest.approx(0.2 + 0.8 / 10) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0) and f[29] == pytest.approx(1 - 0.93 * 19 / 20)


@pytest.mark.parametrize("preset", ["airbench94", "fast", "airnet"])
def test_the_airbench_schedules_are_triangular_from_02x(preset):
    # airbench94's schedule (and the airnet recipe's comment): from 0.2x up to 1x at 23% of
    # training, then linearly down to 0.07x. The airnet recipe once warmed up from 0 (the zoo's
    # recipe keys had no warmup_from).
    c = make_config(preset)
    spe = 49  # 50,000 - 5,000 validation images at batch 1024
    total = spe * c.epochs
    f = [lr_factor(c, s, total, spe) for s in range(total)]
    assert f[0] == pytest.approx(0.2 + 0.8 / round(c.warmup_epochs * spe))
    peak = f.index(max(f))
    assert max(f) == pytest.approx(1.0) and peak / total == pytest.approx(0.23, abs=0.01)
    assert all(a <= b for a, b in zip(f[:peak], f[1:peak + 1]))            # rises
    assert all(a >= b for a, b in zip(f[peak:], f[peak + 1:]))             # then falls
    assert f[-1] == pytest.approx(0.07, abs=0.01)
