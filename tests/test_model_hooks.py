"""The hooks a model owns (zoo.hooks): its own parameter groups and its init from the data.
airnet's hook must give exactly the groups the "whiten." name rule in train.optim gave before
it (commit 73dc7d9): same names, order, members, lr and weight decay."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cifar_demo import train as engine
from cifar_demo import zoo
from cifar_demo.train.parts import build_model
from cifar_demo.zoo import InitFromData, OwnGroup, OwnsParamGroups
from cifar_demo.zoo.airnet import AirNet

from .helpers import TinyWhitenedNet, cfg

# A tiny airnet's parameters (widths 4/8/8), in named_parameters order; whiten.weight and the
# BatchNorm scales are frozen, so no group holds them.
CONVS = [f"group{g}.conv{c}.weight" for g in (1, 2, 3) for c in (1, 2)]
BN_BIASES = [f"group{g}.norm{c}.bias" for g in (1, 2, 3) for c in (1, 2)]
CONVS_AND_BN = [n for g in (1, 2, 3) for c in (1, 2) for n in (f"group{g}.conv{c}.weight", f"group{g}.norm{c}.bias")]

FAST = dict(bn_bias_lr_mult=64.0, whiten_bias_lr_mult=64.0, whiten_bias_epochs=3)
MUON = dict(optimizer="muon", muon_lr=0.24, muon_momentum=0.6)
NO_MUON = {"use_muon": False}

# (settings, fine-tune?) -> the groups computed by train.optim.param_groups at commit 73dc7d9,
# before the hook: (name, members, lr, weight_decay, other keys). All with lr 0.5, wd 1e-3.
BEFORE = {
    "plain": ({}, False, [
        ("main", ["whiten.bias", *CONVS_AND_BN, "head.weight"], 0.5, 1e-3, {}),
    ]),
    "airbench": (FAST, False, [
        ("main", [*CONVS, "head.weight"], 0.5, 1e-3, {}),
        ("bn_bias", BN_BIASES, 32.0, 1.5625e-05, {}),
        ("whiten_bias", ["whiten.bias"], 32.0, 1.5625e-05, {}),
    ]),
    "whiten_epochs_only": (dict(whiten_bias_epochs=2), False, [
        ("main", [*CONVS_AND_BN, "head.weight"], 0.5, 1e-3, {}),
        ("whiten_bias", ["whiten.bias"], 0.5, 1e-3, {}),
    ]),
    "whiten_mult_only": (dict(whiten_bias_lr_mult=8.0), False, [
        ("main", [*CONVS_AND_BN, "head.weight"], 0.5, 1e-3, {}),
        ("whiten_bias", ["whiten.bias"], 4.0, 0.000125, {}),
    ]),
    "muon": (FAST | MUON, False, [
        ("main", ["head.weight"], 0.5, 1e-3, NO_MUON),
        ("bn_bias", BN_BIASES, 32.0, 1.5625e-05, NO_MUON),
        ("whiten_bias", ["whiten.bias"], 32.0, 1.5625e-05, NO_MUON),
        ("muon", CONVS, 0.24, 0.0, {"momentum": 0.6, "use_muon": True}),
    ]),
    "finetune": (FAST | dict(backbone_lr_mult=0.1), True, [
        ("main", ["head.weight"], 0.5, 1e-3, {}),
        ("pretrained.main", CONVS, 0.05, 1e-3, {}),
        ("pretrained.bn_bias", BN_BIASES, 3.2, 1.5625e-05, {}),
        ("pretrained.whiten_bias", ["whiten.bias"], 3.2, 1.5625e-05, {}),
    ]),
    "finetune_muon": (FAST | MUON | dict(backbone_lr_mult=0.1), True, [
        ("main", ["head.weight"], 0.5, 1e-3, NO_MUON),
        ("pretrained.bn_bias", BN_BIASES, 3.2, 1.5625e-05, NO_MUON),
        ("pretrained.whiten_bias", ["whiten.bias"], 3.2, 1.5625e-05, NO_MUON),
        ("pretrained.muon", CONVS, 0.024, 0.0, {"momentum": 0.6, "use_muon": True}),
    ]),
}


def layout(c, model: nn.Module, pretrained=()) -> list[tuple]:
    """param_groups as (name, member names, lr, weight decay, the other keys)."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [(g["name"], [names[id(p)] for p in g["params"]], g["lr"], g["weight_decay"],
             {k: v for k, v in g.items() if k not in ("params", "name", "lr", "weight_decay")})
            for g in engine.param_groups(c, model, pretrained)]


@pytest.mark.parametrize("case", list(BEFORE))
def test_airnet_s_hook_gives_the_groups_of_before(case):
    settings, finetune, before = BEFORE[case]
    model = AirNet(widths=(4, 8, 8))
    assert isinstance(model, OwnsParamGroups) and isinstance(model, InitFromData)
    pretrained = [n for n, _ in model.named_parameters() if not n.startswith("head")] if finetune else ()
    c = cfg(model="airnet", lr=0.5, weight_decay=1e-3, **settings)
    got = layout(c, model, pretrained)
    # The one addition: the whitening bias's group carries the epoch it stops after.
    stops = c.whiten_bias_epochs
    want = [(n, m, lr, wd, extra | ({"stop_after_epochs": stops} if "whiten_bias" in n and stops else {}))
            for n, m, lr, wd, extra in before]
    assert [g[:2] for g in got] == [g[:2] for g in want]  # names, order and members exactly
    assert got == [(n, m, pytest.approx(lr), pytest.approx(wd), extra) for n, m, lr, wd, extra in want]


class Plain(TinyWhitenedNet):
    """A model without hooks, with a layer called "whiten" (a name means nothing to the engine)."""


class Owning(Plain):
    """Plain with a group of its own: the head at half the lr for the first epoch only."""

    def own_param_groups(self, c):
        return [OwnGroup("slow_head", [self.head.weight, self.head.bias], lr_mult=0.5, stop_after_epochs=1)]


@pytest.mark.parametrize("optimizer", ["sgd", "muon"])
def test_a_model_without_the_hook_gets_the_generic_groups(optimizer):
    model = Plain()
    assert not isinstance(model, OwnsParamGroups) and not isinstance(model, InitFromData)
    c = cfg(lr=0.1, weight_decay=1e-3, optimizer=optimizer, bn_bias_lr_mult=4.0, **{k: v for k, v in FAST.items()
                                                                                    if k != "bn_bias_lr_mult"})
    got = layout(c, model)
    extra = NO_MUON if optimizer == "muon" else {}
    filters = ["conv.weight"] if optimizer == "sgd" else []
    assert got == [
        ("main", ["whiten.bias", *filters, "norm.weight", "head.weight", "head.bias"], 0.1, 1e-3, extra),
        ("bn_bias", ["norm.bias"], pytest.approx(0.4), pytest.approx(1e-3 / 4), extra),
    ] + ([("muon", ["conv.weight"], 0.24, 0.0, {"momentum": 0.6, "use_muon": True})] if optimizer == "muon" else [])
    # ... and no group stops, whatever whiten_bias_epochs says.
    opt = engine.build_optimizer(c, model)
    sched = engine.build_scheduler(c, opt, total_steps=6, steps_per_epoch=2)
    for _ in range(6):
        opt.step()
        sched.step()
    assert all(g["lr"] > 0 for g in opt.param_groups)


def test_a_model_s_own_group_takes_its_parameters_and_stops_after_its_epochs():
    model = Owning()
    c = cfg(lr=0.1, weight_decay=1e-3, schedule="constant", epochs=3, optimizer="muon", muon_lr=0.2)
    got = {n: (m, lr, wd, extra) for n, m, lr, wd, extra in layout(c, model)}
    assert list(got) == ["main", "slow_head", "muon"]  # after the generic SGD groups, before muon
    assert got["slow_head"] == (["head.weight", "head.bias"], pytest.approx(0.05), pytest.approx(2e-3),
                                {"use_muon": False, "stop_after_epochs": 1})
    opt = engine.build_optimizer(c, model)
    sched = engine.build_scheduler(c, opt, total_steps=6, steps_per_epoch=2)
    trace = []
    for _ in range(6):
        trace.append({g["name"]: g["lr"] for g in opt.param_groups})
        opt.step()
        sched.step()
    assert [t["slow_head"] for t in trace] == [pytest.approx(0.05)] * 2 + [0.0] * 4
    assert [t["main"] for t in trace] == [pytest.approx(0.1)] * 6 and [t["muon"] for t in trace] == [0.2] * 6


@pytest.mark.parametrize("groups, error", [
    (lambda m: [OwnGroup("a", [m.head.weight]), OwnGroup("a", [m.head.bias])], "two groups are called 'a'"),
    (lambda m: [OwnGroup("a", [m.head.weight]), OwnGroup("b", [m.head.weight])], "another group holds"),
    (lambda m: [OwnGroup("a", [nn.Parameter(torch.zeros(2))])], "not Plain's"),
    (lambda m: [{"name": "a", "params": [m.head.weight]}], "must return OwnGroups"),
])
def test_bad_own_groups_are_refused(groups, error):
    model = Plain()
    model.own_param_groups = lambda c: groups(model)
    with pytest.raises((ValueError, TypeError), match=error):
        engine.param_groups(cfg(), model)


@pytest.mark.parametrize("name", ["main", "bn_bias", "muon", "pretrained.x"])
def test_an_own_group_cannot_take_a_generic_name(name):
    with pytest.raises(ValueError, match="cannot be called"):
        OwnGroup(name, [])


class Split:
    """What build_model reads of a data.Split: its images and their number."""

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)


def test_init_from_data_is_called_with_a_seeded_5000_of_the_training_images():
    seen = []

    class FromData(Plain):
        def init_from_data(self, images):
            seen.append(images.clone())

    spec = zoo.ModelSpec(name="_from_data", family="test", source="test", reported_accuracy=None, params=0, macs=0,
                         recipe={}, description="records init_from_data", builder=lambda num_classes=10: FromData())
    zoo.register(spec)
    try:
        images = torch.randint(0, 256, (6000, 3, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        train = Split(images)
        for _ in range(2):
            build_model(cfg(model="_from_data", channels_last=False), train, torch.device("cpu"))
    finally:
        zoo.unregister("_from_data")
    pick = torch.randperm(6000, generator=torch.Generator().manual_seed(0))[:5000]
    assert len(seen) == 2 and all(torch.equal(s, images[pick]) for s in seen)
