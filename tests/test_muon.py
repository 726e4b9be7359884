"""Muon (optim.Muon, optimizer "muon"): the Newton-Schulz iteration, one step on each kind of
parameter, the state a checkpoint carries, the presets' numbers, and runs through the engine
that learn and resume exactly."""

from __future__ import annotations

import io

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from cifar_demo import train as engine
from cifar_demo import zoo
from cifar_demo.train import TrainConfig, make_config
from cifar_demo.train.optimizers import Muon, newton_schulz, newton_schulz_dtype
from cifar_demo.zoo.airnet import AirNet

from .helpers import StopAfter, TinyWhitenedNet, cfg, run

BAND = (0.5, 1.5)  # where the quintic iteration leaves the singular values (airbench94_muon: ~0.5-1.5)


def svdvals(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(x.double())


def conditioned(m: int, n: int, cond: float, seed: int = 0) -> torch.Tensor:
    """An m x n matrix (m <= n) with singular values spread log-uniformly from 1 down to 1/cond."""
    gen = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(m, m, generator=gen))
    v, _ = torch.linalg.qr(torch.randn(n, m, generator=gen))
    s = torch.logspace(0, -torch.log10(torch.tensor(float(cond))).item(), m)
    return (u * s) @ v.T


# ------------------------------------------------------------------------ Newton-Schulz


@pytest.mark.parametrize("shape", [(256, 2304), (64, 216), (300, 40), (3, 256, 576)])
def test_newton_schulz_puts_a_random_matrix_s_singular_values_in_the_band(shape):
    # airnet's filter shapes (wide), a tall one (the iteration runs on its transpose) and a batch.
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    x = newton_schulz(g, steps=3)
    assert x.shape == g.shape and x.dtype == g.dtype
    s = svdvals(x)
    assert BAND[0] < s.min() and s.max() < BAND[1]
    assert s.max() - s.min() > 0.1  # a band, not exactly 1: the coefficients trade that for speed


def test_newton_schulz_keeps_the_singular_vectors():
    # NS(G) = U f(S) V^T: in G's own singular bases the result is diagonal.
    g = torch.randn(64, 576, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    core = u.T @ newton_schulz(g, steps=3) @ vh.T
    off = core - torch.diag(torch.diagonal(core))
    assert off.abs().max() < 1e-6 and torch.diagonal(core).min() > BAND[0]


@pytest.mark.parametrize("cond, steps", [(10, 3), (100, 5)])
def test_newton_schulz_lifts_small_singular_values_of_an_ill_conditioned_matrix(cond, steps):
    # Each step multiplies a small singular value by about a = 3.4445: 3 steps reach the band from
    # 1/10 of the largest, 5 steps from 1/100.
    s = svdvals(newton_schulz(conditioned(128, 576, cond), steps=steps))
    assert BAND[0] < s.min() and s.max() < BAND[1]


def test_newton_schulz_needs_its_steps():
    # The band is the iteration's doing: too few steps leave an ill-conditioned matrix's small
    # singular values far below it.
    assert svdvals(newton_schulz(conditioned(128, 576, 100), steps=3)).min() < 0.3
    assert svdvals(newton_schulz(conditioned(128, 576, 10), steps=1)).min() < 0.3


def test_newton_schulz_ignores_the_gradient_s_scale():
    g = torch.randn(64, 216, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(newton_schulz(g * 1e-4), newton_schulz(g * 1e3), atol=1e-4)


# ------------------------------------------------------------------------ one step


class TinyNet(TinyWhitenedNet):
    # airnet's hook (zoo.hooks): its whitening bias is a group of its own when the config says so.
    own_param_groups = AirNet.own_param_groups


def muon_cfg(**kw) -> TrainConfig:
    base = {"optimizer": "muon", "lr": 0.1, "momentum": 0.85, "nesterov": True, "weight_decay": 5e-3,
            "muon_lr": 0.2, "muon_momentum": 0.6, "bn_bias_lr_mult": 4.0, "whiten_bias_lr_mult": 4.0,
            "whiten_bias_epochs": 1}
    base.update(kw)
    return cfg(**base)


def steps(model: nn.Module, opt: torch.optim.Optimizer, n: int, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x, y = torch.randn(16, 3, 12, 12, generator=gen), torch.randint(0, 10, (16,), generator=gen)
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def test_the_groups_send_filters_to_muon_and_the_rest_to_sgd_by_their_rules():
    c = muon_cfg()
    groups = {g["name"]: g for g in engine.param_groups(c, TinyNet())}
    assert set(groups) == {"main", "bn_bias", "whiten_bias", "muon"}
    assert [p.shape for p in groups["muon"]["params"]] == [torch.Size([8, 6, 3, 3])]  # not the frozen whitening
    assert groups["muon"]["use_muon"] and groups["muon"]["lr"] == 0.2 and groups["muon"]["momentum"] == 0.6
    assert groups["muon"]["weight_decay"] == 0
    assert not any(groups[k]["use_muon"] for k in ("main", "bn_bias", "whiten_bias"))
    assert groups["bn_bias"]["lr"] == groups["whiten_bias"]["lr"] == pytest.approx(0.4)
    assert groups["bn_bias"]["weight_decay"] == pytest.approx(5e-3 / 4)
    # Without "muon" no group changes: the filters stay in "main".
    plain = {g["name"]: g for g in engine.param_groups(muon_cfg(optimizer="sgd"), TinyNet())}
    assert "muon" not in plain and all("use_muon" not in g for g in plain.values())
    assert torch.Size([8, 6, 3, 3]) in [p.shape for p in plain["main"]["params"]]


def test_a_muon_step_renormalises_and_orthogonalises_the_filters():
    torch.manual_seed(0)
    model = TinyNet()
    opt = engine.build_optimizer(muon_cfg(), model)
    w0, frozen0 = model.conv.weight.detach().clone(), model.whiten.weight.detach().clone()
    steps(model, opt, 1)
    g = model.conv.weight.grad
    # First step: buffer = g, Nesterov direction g + 0.6 g (NS ignores the factor); the
    # iteration in the dtype the optimizer uses on this CPU (bf16 where it is native).
    ns = newton_schulz(1.6 * g.reshape(8, -1), dtype=newton_schulz_dtype("cpu"))
    want = w0 * (8**0.5 / w0.norm()) - 0.2 * ns.view_as(g)
    assert torch.allclose(model.conv.weight, want, atol=1e-6)
    delta = (model.conv.weight - w0 * (8**0.5 / w0.norm())).reshape(8, -1) / 0.2
    s = svdvals(delta)
    assert BAND[0] < s.min() and s.max() < BAND[1]
    assert torch.equal(model.whiten.weight, frozen0)


def test_non_filter_parameters_step_exactly_as_torch_sgd():
    torch.manual_seed(0)
    a, b = TinyNet(), TinyNet()
    b.load_state_dict(a.state_dict())
    c = muon_cfg()
    muon = engine.build_optimizer(c, a)
    sgd_groups = [{k: v for k, v in g.items() if k != "use_muon"} for g in engine.param_groups(c, b)
                  if not g["use_muon"]]
    sgd = torch.optim.SGD(sgd_groups, lr=c.lr, momentum=c.momentum, nesterov=True, weight_decay=c.weight_decay)
    # b's filters are in no optimizer; a's move, which changes the next gradients: so each step
    # gives both a's gradients.
    for _ in range(3):
        x, y = torch.randn(16, 3, 12, 12), torch.randint(0, 10, (16,))
        muon.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(a(x), y).backward()
        for pa, pb in zip(a.parameters(), b.parameters()):
            pb.grad = None if pa.grad is None else pa.grad.clone()
        muon.step()
        sgd.step()
        for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
            if name != "conv.weight":
                assert torch.allclose(pa, pb, atol=1e-7, rtol=0), name
    assert not torch.allclose(a.conv.weight, b.conv.weight)


def test_a_muon_group_refuses_a_vector():
    with pytest.raises(ValueError, match="matrices or filters only"):
        Muon([{"params": [nn.Parameter(torch.zeros(3))], "use_muon": True}])


def test_the_state_dict_round_trip_gives_identical_next_steps():
    torch.manual_seed(0)
    model = TinyNet()
    c = muon_cfg()
    opt = engine.build_optimizer(c, model)
    steps(model, opt, 2, seed=1)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, buf)  # as a checkpoint does
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    assert len(saved["optimizer"]["state"]) == sum(p.requires_grad for p in model.parameters())  # every buffer

    twin = TinyNet()
    twin.load_state_dict(saved["model"])
    twin_opt = engine.build_optimizer(c, twin)
    twin_opt.load_state_dict(saved["optimizer"])
    steps(model, opt, 2, seed=2)
    steps(twin, twin_opt, 2, seed=2)
    assert all(torch.equal(x, y) for x, y in zip(model.state_dict().values(), twin.state_dict().values()))
    # And the buffers matter: a fresh optimizer from the same weights goes elsewhere.
    fresh = TinyNet()
    fresh.load_state_dict(saved["model"])
    steps(fresh, engine.build_optimizer(c, fresh), 2, seed=2)
    assert not torch.equal(fresh.conv.weight, model.conv.weight)


def test_the_schedule_drives_muon_and_sgd_groups_alike():
    c = muon_cfg(schedule="linear", epochs=4, final_lr_frac=0.0)
    model = TinyNet()
    opt = engine.build_optimizer(c, model)
    sched = engine.build_scheduler(c, opt, total_steps=8, steps_per_epoch=2)
    trace = []
    for _ in range(8):
        trace.append({g["name"]: g["lr"] for g in opt.param_groups})
        for p in model.parameters():
            p.grad = torch.ones_like(p) if p.requires_grad else None
        opt.step()
        sched.step()
    for i, lrs in enumerate(trace):
        assert lrs["muon"] == pytest.approx(0.2 * (1 - i / 8)) and lrs["main"] == pytest.approx(0.1 * (1 - i / 8))
    assert [t["whiten_bias"] > 0 for t in trace] == [True, True] + [False] * 6  # stops after 1 epoch


# ------------------------------------------------------------------------ config and presets


def test_an_old_config_without_the_muon_fields_loads_with_their_defaults():
    old = {k: v for k, v in TrainConfig().to_dict().items()
           if not k.startswith("muon_") and k != "whiten_bias_lr_mult"}
    c = TrainConfig.from_dict(old)
    assert (c.muon_lr, c.muon_momentum, c.muon_ns_steps, c.muon_renorm, c.whiten_bias_lr_mult) == \
        (0.24, 0.6, 3, True, 1.0)
    assert {g["name"] for g in engine.param_groups(c, TinyNet())} == {"main"}  # as before


@pytest.mark.parametrize("bad", [{"muon_lr": 0}, {"muon_momentum": 1.0}, {"muon_ns_steps": 0},
                                 {"whiten_bias_lr_mult": 0}])
def test_muon_settings_out_of_range_are_refused(bad):
    with pytest.raises(ValueError, match="muon|whiten_bias_lr_mult"):
        cfg(**bad).check_values()


@pytest.mark.parametrize("name", ["muon", "muon6", "demo"])
def test_the_muon_presets_carry_airbench94_muon_s_numbers_in_our_units(name):
    c = make_config(name)
    assert c.optimizer == "muon" and c.batch_size == 2000 and c.label_smoothing == 0.2 and not c.lookahead_every
    groups = {g["name"]: g for g in engine.param_groups(c, zoo.create("airnet"))}
    # Published (summed loss of 2000 images, head logits W x / 256): head lr 0.67, biases 0.053,
    # wd 2e-6 x 2000 as an lr x wd product; ours: mean loss, logits W x / 9.
    assert groups["main"]["lr"] == pytest.approx(0.67 * 2000 * (9 / 256) ** 2, rel=1e-3)
    assert groups["bn_bias"]["lr"] == groups["whiten_bias"]["lr"] == pytest.approx(0.053 * 2000, rel=2e-3)
    for g in ("main", "bn_bias", "whiten_bias"):
        assert groups[g]["lr"] * groups[g]["weight_decay"] == pytest.approx(2e-6 * 2000, rel=1e-3)
    assert groups["muon"]["lr"] == 0.24 and len(groups["muon"]["params"]) == 6  # airnet's six 3x3 convs


def test_muon_lowres_is_muon_at_half_the_batch_with_its_first_epochs_small():
    muon, low = make_config("muon").to_dict(), make_config("muon_lowres").to_dict()
    changed = {k for k in muon if muon[k] != low[k]}
    assert changed == {"preset", "epochs", "batch_size", "muon_lr", "lr", "low_res", "low_res_epochs", "tta_confidence"}
    assert low["batch_size"] * 2 == muon["batch_size"]
    # the SGD groups by the linear rule, so their lr x wd per epoch (steps x lr x wd) is muon's
    assert low["lr"] == pytest.approx(muon["lr"] / 2, rel=1e-3)
    assert low["muon_lr"] == pytest.approx(muon["muon_lr"] / 2 ** 0.5, abs=0.005)
    assert (low["low_res"], low["low_res_epochs"], low["epochs"], low["tta_confidence"]) == (24, 3, 7, 0.7)


# ------------------------------------------------------------------------ through the engine


def airnet_muon(**kw) -> TrainConfig:
    """The muon preset on the tiny synthetic set: batch 16, 48 images (3 steps an epoch)."""
    settings = {k: v for k, v in make_config("muon").to_dict().items()
                if k not in ("preset", "data", "val_size", "precision", "device", "seed", "tta", "epochs")}
    settings.update(batch_size=16, train_limit=48, epochs=2, whiten_bias_epochs=1)
    settings.update(kw)
    return cfg(**settings)


def test_a_muon_run_lowers_the_loss(tmp_path, tiny_data):
    events: list = []
    summary, _ = run(airnet_muon(epochs=3), tmp_path, tiny_data, sinks=[events.append])
    losses = [e["train_loss"] for e in events if e["kind"] == "epoch"]
    assert summary["status"] == "finished" and losses[-1] < 0.8 * losses[0], losses
    assert summary["best_val_acc"] > 0.3  # 10 classes: chance is 0.1


def test_a_stopped_muon_run_resumes_exactly(tmp_path, tiny_data):
    c = airnet_muon()
    full_events: list = []
    _, full_dir = run(c, tmp_path / "a", tiny_data, sinks=[full_events.append])
    events: list = []
    summary, run_dir = run(c, tmp_path / "b", tiny_data, sinks=[events.append], stop_event=StopAfter(4))
    assert summary["status"] == "stopped" and summary["steps"] == 4
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert any("momentum_buffer" in s for s in ckpt["optimizer"]["state"].values())
    assert any(g.get("use_muon") for g in ckpt["optimizer"]["param_groups"])
    summary = engine.Trainer.resuming(run_dir, data=tiny_data, sinks=[events.append]).run()
    assert summary["status"] == "finished" and summary["steps"] == 6
    a, b = load_file(str(full_dir / "best.safetensors")), load_file(str(run_dir / "best.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    want = [e["train_loss"] for e in full_events if e["kind"] == "epoch"]
    assert [e["train_loss"] for e in events if e["kind"] == "epoch"] == pytest.approx(want, rel=1e-9)
