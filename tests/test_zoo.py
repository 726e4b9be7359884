"""The model zoo: registry, parameter and MAC counts, shapes, one training step, whitening."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cifar_demo import common, train, weights, zoo
from cifar_demo.zoo.airnet import get_patches, init_whitening

NAMES = zoo.names()
ZOO_DIR = Path(zoo.__file__).parent
# Modules of cifar_demo/zoo/ that hold no model family.
NOT_FAMILIES = {"__init__", "registry", "analysis", "sources", "hooks"}

# name -> (target, relative tolerance): 0 = the source's exact count.
PARAMS = {
    "quiz_dnn": (299_018, 0), "simple_cnn": (6_447_754, 0), "keras_cnn": (1_200_000, 0.05),
    "custom_cnn": (1_800_000, 0.05), "resnet18": (11_173_962, 0), "resnet26": (4_196_906, 0.01),
    "resnet34": (4_348_082, 0), "resnet50": (4_815_794, 0), "optimized200k": (150_690, 0),
    "airnet": (1_972_792, 0),  # airbench94's count
}

_built: dict[str, nn.Module] = {}


def built(name: str) -> nn.Module:
    """One shared instance per model for the read-only tests."""
    if name not in _built:
        torch.manual_seed(0)
        _built[name] = zoo.create(name)
    return _built[name]


# ---------------------------------------------------------------------------- registry


def test_every_family_file_registers_its_models_together_in_import_order():
    """The table order is zoo/__init__'s import order of the family files, each file's models
    in the order it registers them; every family file in the folder is imported."""
    families = [s.family for s in zoo.specs()]
    in_order = list(dict.fromkeys(families))
    assert sorted(in_order) == sorted(p.stem for p in ZOO_DIR.glob("*.py") if p.stem not in NOT_FAMILIES)
    assert sorted(families, key=in_order.index) == families   # each family's models side by side
    assert [s.name for s in zoo.specs()] == zoo.names() and len(set(zoo.names())) == len(zoo.names())
    for name in zoo.names():
        weights.check_name(name)  # a name becomes weights/<name>.safetensors and a Hub file name


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count(name):
    target, tol = PARAMS[name]
    n = zoo.count_params(built(name))
    if tol == 0:
        assert n == target
    else:
        assert abs(n - target) <= tol * target, f"{n:,} not within {tol:.0%} of {target:,}"


@pytest.mark.parametrize("name", NAMES)
def test_spec_figures_match_the_built_model(name):
    spec, model = zoo.get_spec(name), built(name)
    assert spec.params == zoo.count_params(model)
    assert spec.macs == zoo.count_macs(model)
    assert spec.builder.__module__ == f"cifar_demo.zoo.{spec.family}"


def test_count_macs_by_hand_and_restores_mode():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(8 * 32 * 32, 10))
    model.train()
    assert zoo.count_macs(model) == 3 * 9 * 8 * 32 * 32 + 8 * 32 * 32 * 10
    assert model.training


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="resnet18") as e:
        zoo.create("resnet1800")
    assert all(n in str(e.value) for n in NAMES)
    with pytest.raises(ValueError):
        zoo.get_spec("nope")


def test_registry_builds_nothing(monkeypatch):
    """specs(), tables and JSON never construct a module; create() does, once per call."""
    calls = []
    real_init = nn.Module.__init__

    def counting_init(self, *a, **kw):
        calls.append(type(self).__name__)
        real_init(self, *a, **kw)

    monkeypatch.setattr(nn.Module, "__init__", counting_init)
    zoo.specs(), zoo.names(), zoo.get_spec("resnet18")
    zoo.format_table(zoo.specs()), zoo.format_table(zoo.specs(), fmt="markdown")
    json.dumps(zoo.specs_as_dicts())
    assert calls == []
    zoo.create("optimized200k")
    assert "OptimizedNet200K" in calls


def test_create_calls_the_builder_lazily():
    builder = mock.Mock(return_value=nn.Linear(2, 2))
    spec = zoo.ModelSpec(name="_mock", family="test", source="test", reported_accuracy=None,
                         params=6, macs=4, recipe={}, description="a mock", builder=builder)
    zoo.register(spec)
    try:
        assert zoo.get_spec("_mock") is spec and "_mock" in zoo.names()
        with pytest.raises(ValueError, match="already registered"):
            zoo.register(spec)
        builder.assert_not_called()
        assert zoo.create("_mock", num_classes=3) is builder.return_value
        builder.assert_called_once_with(num_classes=3)
    finally:
        zoo.unregister("_mock")
    assert "_mock" not in zoo.names()


def test_string_builder_is_imported_on_demand():
    spec = zoo.ModelSpec(name="_lazy", family="optimized200k", source="test", reported_accuracy=None,
                         params=150_690, macs=0, recipe={}, description="by path",
                         builder="cifar_demo.zoo.optimized200k:optimized200k")
    zoo.register(spec)
    try:
        assert zoo.count_params(zoo.create("_lazy")) == 150_690
        assert zoo.specs_as_dicts([spec])[0]["builder"] == "cifar_demo.zoo.optimized200k:optimized200k"
    finally:
        zoo.unregister("_lazy")


@pytest.mark.slow
def test_import_builds_no_model():
    code = ("import torch.nn as nn\n"
            "n = []\n"
            "init = nn.Module.__init__\n"
            "def counting(self, *a, **k):\n"
            "    n.append(type(self).__name__); init(self, *a, **k)\n"
            "nn.Module.__init__ = counting\n"
            "import cifar_demo.zoo as zoo\n"
            "assert len(zoo.specs()) == 10 and n == [], n\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ---------------------------------------------------------------------------- recipes and tables


@pytest.mark.parametrize("spec", zoo.specs(), ids=lambda s: s.name)
def test_recipe_uses_engine_vocabulary(spec):
    r = spec.recipe
    assert set(r) <= set(zoo.RECIPE_KEYS)
    zoo.check_recipe(r)
    assert r["epochs"] >= 1 and r["batch_size"] >= 1 and r["lr"] > 0
    assert sum(r["mixes"].values()) <= 1
    assert len(spec.mean) == len(spec.std) == 3


def test_bad_recipe_is_refused():
    with pytest.raises(ValueError, match="unknown recipe key"):
        zoo.recipe(epochs=1, batch_size=1, optimizer="sgd", lr=0.1, schedule="cosine",
                   augment="none", learning_rate=0.1)
    with pytest.raises(ValueError, match="optimizer"):
        zoo.recipe(epochs=1, batch_size=1, optimizer="lion", lr=0.1, schedule="cosine", augment="none")


@pytest.mark.parametrize("name", NAMES)
def test_preset_of_a_model_trains_with_its_recipe(name):
    """`train --preset NAME` (and the app's preset menu) runs exactly the registry's recipe."""
    config = train.make_config(name).to_dict()
    assert config["model"] == name
    assert {k: config[k] for k in zoo.get_spec(name).recipe} == zoo.get_spec(name).recipe


def test_airnet_lr_is_airbench_lr_for_a_mean_loss():
    # airbench's lr 11.5 is per 1024 examples on a summed loss; with momentum m its SGD step
    # is 1 + 1/(1-m) times the mean-loss step (see airnet.py), so the recipe's lr follows
    # from its own momentum and batch.
    r = zoo.get_spec("airnet").recipe
    assert r["batch_size"] == 1024
    assert r["lr"] == pytest.approx(11.5 / (1 + 1 / (1 - r["momentum"])), rel=1e-2)


def test_format_table():
    text = zoo.format_table(zoo.specs())
    lines = text.splitlines()
    assert len(lines) == 2 + len(NAMES) and len(lines[1]) == max(map(len, lines))  # the rule spans it
    spec = zoo.get_spec("resnet18")
    row = lines[2 + NAMES.index("resnet18")]
    params, macs = f"{spec.params:,}", f"{spec.macs / 1e6:,.1f}M"
    assert params in row and macs in row
    assert lines[0].index("params") + len("params") == row.index(params) + len(params)  # right-aligned
    for s, line in zip(zoo.specs(), lines[2:]):  # the recipe, and whose it is
        origin = "(the source's)" if s.recipe_source == "source" else "(ours)"
        assert line.endswith(f"{zoo.recipe_summary(s.recipe)} {origin}")
    md = zoo.format_table(zoo.specs(), fmt="markdown").splitlines()
    assert md[0].startswith("| model |") and md[1].startswith("|---") and len(md) == 2 + len(NAMES)
    assert md[2 + NAMES.index("resnet18")].startswith(f"| resnet18 | {spec.source} | {params} | {macs} |")
    with pytest.raises(ValueError):
        zoo.format_table(zoo.specs(), fmt="html")


def test_specs_as_dicts_round_trip_json():
    rows = json.loads(json.dumps(zoo.specs_as_dicts()))
    assert [r["name"] for r in rows] == NAMES
    for s, r in zip(zoo.specs(), rows):
        assert (r["params"], r["macs"], r["reported_accuracy"], r["recipe"]) == (
            s.params, s.macs, s.reported_accuracy, s.recipe)
        assert r["project"] == (None if s.project is None else {"title": s.project.title, "url": s.project.url})
        assert (r["recipe_source"], r["recipe_note"]) == (s.recipe_source, s.recipe_note)
        module, _, function = r["builder"].partition(":")  # importable by name: the spec is self-contained
        assert getattr(__import__(module, fromlist=[function]), function) is s.builder


# ---------------------------------------------------------------------------- forward and training


@pytest.mark.parametrize("name", NAMES)
def test_forward_shapes(name):
    model = built(name)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    model.train()
    assert model(torch.randn(8, 3, 32, 32)).shape == (8, 10)


@pytest.mark.parametrize("name", ["quiz_dnn", "simple_cnn", "optimized200k", "airnet", "resnet26"])
def test_num_classes(name):
    model = zoo.create(name, num_classes=100).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_resnet_dropout_kwarg():
    model = zoo.create("resnet34", dropout=0.3)
    assert model.dropout.p == 0.3 and zoo.count_params(model) == zoo.count_params(built("resnet34"))


# The ResNets take 2-4 s each here: in the full run only (the quick loop keeps the small models).
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n.startswith("resnet") else n
                                  for n in NAMES])
def test_sgd_steps_lower_the_loss(name):
    """Three SGD steps on one fixed batch lower its loss (same dropout masks before and after)."""
    torch.manual_seed(0)
    model = zoo.create(name).train()
    x, y = torch.randn(16, 3, 32, 32), torch.arange(16) % 10
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.02, momentum=0.9)

    def loss() -> torch.Tensor:
        torch.manual_seed(1)
        return F.cross_entropy(model(x), y)

    before = loss()
    for _ in range(3):
        opt.zero_grad()
        loss().backward()
        opt.step()
    with torch.no_grad():
        after = loss()
    assert math.isfinite(after.item()) and after.item() < before.item()


# ---------------------------------------------------------------------------- receptive field


def test_receptive_field_on_known_stacks():
    def conv(stride: int = 1) -> nn.Conv2d:
        return nn.Conv2d(3, 3, 3, stride, padding=1)

    assert zoo.receptive_field(nn.Sequential(conv(), conv())) == 5
    assert zoo.receptive_field(nn.Sequential(conv(2), conv())) == 7      # 3 + 2*2
    assert zoo.receptive_field(nn.Sequential(conv(), nn.ReLU(), nn.MaxPool2d(2), conv())) == 8  # 3+1, then +2*2
    assert zoo.receptive_field(built("quiz_dnn")) == 46


def test_the_last_feature_map_is_found_while_another_thread_runs_the_model():
    """The app's models are shared: a pass of the same model in another thread while the hooks
    are on (here: one that has just run the first conv) must not name its layers."""
    import threading

    other_in, release = threading.Event(), threading.Event()

    class Gate(nn.Module):   # blocks the thread it is told to, after the first conv
        def __init__(self, action):
            super().__init__()
            self.action = action

        def forward(self, x):
            self.action()
            return x

    def other_pass():
        model(torch.zeros(1, 3, 8, 8))

    def in_other():
        if threading.current_thread().name == "other":
            other_in.set()
            release.wait(10)

    def in_mine():   # the finder's pass, after its last map: the other pass runs its first conv now
        if threading.current_thread().name != "other" and not other_in.is_set():
            threading.Thread(target=other_pass, name="other").start()
            assert other_in.wait(10)

    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), Gate(in_other), nn.Conv2d(4, 4, 3, padding=1),
                          nn.Flatten(), Gate(in_mine), nn.Linear(256, 2))
    try:
        assert zoo.last_feature_map(model, size=8) == "2"   # before: "0", the other pass's first conv
    finally:
        release.set()


def test_optimized200k_receptive_field():
    """The source reports 67 from a hand formula; its architecture's measured field is 109.

    See the docstring of cifar_demo/zoo/optimized200k.py: 67 is what the formula gives when
    each stage's stride is applied after that stage's convs, which is not the trained net.
    """
    model = built("optimized200k")
    assert zoo.last_feature_map(model) == "layer4"
    assert zoo.receptive_field(model) == 109
    # Move the stride to the end of each stage (parameter-free strided shortcut): 67.
    from cifar_demo.zoo.optimized200k import OptimizedNet200K
    variant = OptimizedNet200K()
    for stage in (variant.layer2, variant.layer3, variant.layer4):
        stage[0].conv1[0].stride = stage[0].shortcut[0].stride = (1, 1)
        stage[1].conv2[0].stride = (2, 2)
        stage[1].shortcut = nn.AvgPool2d(1, 2)
    assert zoo.count_params(variant) == 150_690 and zoo.receptive_field(variant, "layer4") == 67


# ---------------------------------------------------------------------------- airnet whitening


def _second_moments(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """E[y y^T] over all 2x2 patches of the first 12 whitening channels, bias excluded."""
    with torch.no_grad():
        y = F.conv2d(images, model.whiten.weight[:12])
    y = y.transpose(0, 1).reshape(12, -1).double()
    return y @ y.T / y.shape[1]


def _check_whitening(images: torch.Tensor) -> None:
    model = zoo.create("airnet")
    w = model.whiten.weight
    assert not w.requires_grad and model.whiten.bias.requires_grad
    # Without regularisation the patches come out white: identity second moments.
    init_whitening(model, images, eps=1e-9)
    assert torch.allclose(_second_moments(model, images), torch.eye(12, dtype=torch.float64), atol=2e-3)
    # airbench's eps shrinks the weakest directions to lambda/(lambda+eps) and keeps them uncorrelated.
    eig = init_whitening(model, images)
    assert torch.all(eig[:-1] >= eig[1:])
    expected = torch.diag(eig / (eig + 5e-4))
    assert torch.allclose(_second_moments(model, images), expected, atol=2e-3)
    assert torch.equal(w[12:], -w[:12])
    assert not w.requires_grad
    # The patch helper: 31*31 patches of 3x2x2 per image, the first one the top-left corner.
    patches = get_patches(images[:2])
    assert patches.shape == (2 * 31 * 31, 3, 2, 2)
    assert torch.equal(patches[0], images[0, :, :2, :2])


def test_whitening_on_structured_images():
    g = torch.Generator().manual_seed(0)
    smooth = F.interpolate(torch.rand(64, 3, 8, 8, generator=g), size=32, mode="bilinear", align_corners=False)
    images = smooth + 0.05 * torch.randn(64, 3, 32, 32, generator=g)
    images = (images - images.mean((0, 2, 3), keepdim=True)) / images.std((0, 2, 3), keepdim=True)
    _check_whitening(images)


def test_whitening_on_cifar_images(jpeg_export):
    from PIL import Image

    files = [f for d in sorted((jpeg_export / "train").iterdir()) for f in sorted(d.glob("*.jpg"))[:20]]
    images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    _check_whitening(common.normalize(torch.from_numpy(images).permute(0, 3, 1, 2)))


def test_airnet_is_airbench94():
    model = built("airnet")
    assert [m.weight.shape[0] for m in model.modules() if isinstance(m, nn.Conv2d)] == [24, 64, 64, 256, 256, 256, 256]
    assert model.head.bias is None
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 6 and all(not bn.weight.requires_grad and bn.bias.requires_grad for bn in bns)
