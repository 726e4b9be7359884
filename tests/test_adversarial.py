"""FGSM and PGD (analysis.adversarial) on a tiny model and synthetic pictures: fast, no weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cifar_demo.analysis import adversarial as A
from cifar_demo.analysis import robustness
from cifar_demo.analysis.evalcache import Target

from .helpers import synthetic_arrays, to_split, trained_tiny


@pytest.fixture(scope="module")
def batch():
    x, y = synthetic_arrays(2, seed=3)
    split = to_split(x, y)
    return split, split.images.float() / 255, split.labels


@pytest.mark.parametrize("method", A.METHODS)
def test_epsilon_zero_changes_nothing(batch, method):
    _, x, y = batch
    assert torch.equal(A.attack(trained_tiny(), x, y, method, eps=0), x)


@pytest.mark.parametrize("method", A.METHODS)
@pytest.mark.parametrize("eps", [1, 4, 8])
def test_the_perturbation_stays_in_the_ball_and_in_range(batch, method, eps):
    _, x, y = batch
    model = trained_tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adv = A.attack(model, x, y, method, eps=eps, steps=5)
    delta = (adv - x) * 255
    assert delta.abs().max() <= eps + 1e-4 and delta.abs().max() > 0
    assert adv.min() >= 0 and adv.max() <= 1
    assert torch.allclose(adv * 255, (adv * 255).round(), atol=1e-4)          # 8-bit values, like a saved PNG
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model is untouched
    assert all(p.grad is None for p in model.parameters())


def test_pgd_raises_the_loss_more_than_noise(batch):
    _, x, y = batch
    model = trained_tiny()
    loss = torch.nn.functional.cross_entropy
    with torch.no_grad():
        clean = loss(model(x), y)
        noise = loss(model((x + (torch.randint(0, 2, x.shape) * 2 - 1) * 8 / 255).clamp(0, 1)), y)
        pgd = loss(model(A.attack(model, x, y, "pgd", 8, steps=10)), y)
    assert pgd > noise and pgd > clean


def test_the_arguments_are_checked():
    for bad in [("cw", 4, 10), ("pgd", -1, 10), ("pgd", A.MAX_EPS + 1, 10), ("pgd", 4, 0), ("pgd", "x", 10)]:
        with pytest.raises(ValueError):
            A.check(*bad)


def test_one_picture_before_and_after_with_the_amplified_perturbation():
    image = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    model, other = trained_tiny(0), trained_tiny(1)
    r = A.attack_picture(image, model, "tiny", "fgsm", 4, others={"other": other, "tiny": model})
    assert [a["model"] for a in r.answers] == ["tiny", "other"]
    assert r.answers[0]["before"] == r.label
    assert np.abs(r.adversarial.astype(int) - image.astype(int)).max() <= 4
    assert r.factor == 127.5 / 4 and r.perturbation.shape == (32, 32, 3)
    zero = A.attack_picture(image, model, "tiny", "pgd", 0)
    assert np.array_equal(zero.adversarial, image) and (zero.perturbation == 128).all()
    assert zero.answers[0]["before"] == zero.answers[0]["after"]


def test_accuracy_against_epsilon_is_cached_per_weights(batch, tmp_path, monkeypatch):
    split, _, _ = batch
    model = trained_tiny()
    loads = []
    monkeypatch.setattr(robustness, "load_model", lambda t: loads.append(t) or model)
    target = Target("weights", "tiny", "tiny", Path("tiny.safetensors"), "ab" * 32)
    res = A.compute([target], "fgsm", [0, 2], split=split, cache=tmp_path, dataset="synthetic")
    assert res["computed"] == 2 and res["eps"] == [0, 2] and len(res["models"]["tiny"]["accuracy"]) == 2
    assert res["models"]["tiny"]["accuracy"][0] >= res["models"]["tiny"]["accuracy"][1]
    again = A.compute([target], "fgsm", [0, 2], split=split, cache=tmp_path)
    assert again["computed"] == 0 and again["models"] == res["models"]
    assert A.compute([target], "pgd", [2], split=split, cache=tmp_path, cached_only=True)["models"]["tiny"][
        "accuracy"] == [None]
    assert "eps 2" in A.format_table(res) and "FGSM" in A.format_table(res)


@pytest.mark.slow   # 11 s on 2 shared cores the first time (then cached: 4 s)
def test_cli_prints_accuracy_against_epsilon(jpeg_export, capsys):
    from cifar_demo import weights
    from cifar_demo.cli import main

    if "quiz_dnn" not in weights.available():
        pytest.skip("no shipped quiz_dnn weights")
    assert main(["attack", "--model", "quiz_dnn", "--method", "fgsm", "--eps", "2", "--n", "10",
                 "--data", str(jpeg_export)]) == 0
    out = capsys.readouterr().out
    assert "FGSM accuracy on 10 test images" in out and "eps 0" in out and "eps 2" in out
    assert main(["attack", "--model", "quiz_dnn", "--eps", "99", "--n", "10", "--data", str(jpeg_export)]) == 2
    assert "epsilon must lie between 0 and 32" in capsys.readouterr().err
