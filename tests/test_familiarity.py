"""familiarity: Mahalanobis scores per model, percentiles, Fisher's combination, the shipped calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cifar_demo import data, weights
from cifar_demo.analysis import familiarity as F
from cifar_demo.analysis.familiarity import Calibration, FamiliarityError, ModelStats


def clusters(n_per_class: int, seed: int, dim: int = 8, classes: int = 3):
    """Gaussian blobs, one per class, far apart, spread 5x wider along the first axis than the
    others: a feature space with known geometry."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.arange(classes, dtype=torch.float32)[:, None] * 10 * torch.ones(classes, dim)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    spread = torch.ones(dim)
    spread[0] = 5.0
    return centres[labels] + torch.randn(len(labels), dim, generator=g) * spread, labels


def fitted(seed: int = 0) -> ModelStats:
    feats, labels = clusters(200, seed)
    st = ModelStats.fit(feats, labels, 3)
    st.reference = st.score(clusters(100, seed + 1)[0]).sort().values
    return st


def test_points_near_a_class_mean_score_higher_than_points_between_or_beyond():
    st = fitted()
    near = torch.full((1, 8), 10.0)              # class 1's centre
    between = torch.full((1, 8), 5.0)            # halfway between classes 0 and 1
    beyond = torch.full((1, 8), 60.0)
    s = st.score(torch.cat([near, between, beyond]))
    assert s[0] > s[1] > s[2]
    # The shared covariance matters: the same step costs more along a narrow axis than along
    # the wide one (a Euclidean distance would score both alike).
    wide, narrow = near + torch.eye(8)[0] * 3, near + torch.eye(8)[1] * 3
    assert st.score(narrow) < st.score(wide) < st.score(near)


def test_percentile_is_the_share_of_reference_images_below_and_never_zero():
    st = fitted()
    lowest, highest = st.reference[0] - 1, st.reference[-1] + 1
    p = st.percentile(torch.stack([lowest, st.reference[len(st.reference) // 2], highest]))
    n = len(st.reference)
    assert p[0] == pytest.approx(1 / (n + 1)) and 0 < p[0]
    assert p[1] == pytest.approx((n // 2 + 1) / (n + 1))
    assert p[2] == pytest.approx(1.0)


def test_fisher_combination_needs_several_models_to_agree():
    one_odd = F.combine([torch.tensor([0.01]), torch.tensor([0.9]), torch.tensor([0.9])])
    all_odd = F.combine([torch.tensor([0.05]), torch.tensor([0.05]), torch.tensor([0.05])])
    typical = F.combine([torch.tensor([0.5]), torch.tensor([0.5]), torch.tensor([0.5])])
    assert all_odd < one_odd < typical <= 0


def test_calibration_round_trip_and_refusals(tmp_path):
    cal = Calibration({"a": fitted(0), "b": fitted(5)}, threshold=-4.2,
                      card={"weights_sha256": {"a": "1" * 64, "b": "2" * 64}, "false_alarm_test": 0.05})
    cal.save(tmp_path)
    back = Calibration.load(tmp_path, {"a": "1" * 64, "b": "2" * 64})
    assert back.threshold == -4.2 and set(back.models) == {"a", "b"}
    feats = {"a": torch.zeros(2, 8), "b": torch.full((2, 8), 10.0)}
    assert torch.equal(back.scores(feats), cal.scores(feats))

    with pytest.raises(FamiliarityError, match="other weights of b"):
        Calibration.load(tmp_path, {"a": "1" * 64, "b": "3" * 64})
    with pytest.raises(FamiliarityError, match="missing: b"):
        back.scores({"a": torch.zeros(1, 8)})
    blob = bytearray((tmp_path / "calibration.safetensors").read_bytes())
    blob[-1] ^= 1
    (tmp_path / "calibration.safetensors").write_bytes(bytes(blob))
    with pytest.raises(FamiliarityError, match="does not match its card"):
        Calibration.load(tmp_path)
    with pytest.raises(FamiliarityError, match="no familiarity calibration"):
        Calibration.load(tmp_path / "nowhere")
# ------------------------------------------------------------------- the shipped calibration


@pytest.fixture(scope="module")
def shipped() -> Calibration:
    try:
        return F.shipped_calibration()
    except FamiliarityError as e:
        pytest.fail(f"the shipped calibration does not load: {e}")


def test_shipped_calibration_covers_every_shipped_model_and_states_its_rates(shipped):
    assert set(shipped.models) == set(weights.available())
    card = json.loads((F.calibration_dir() / "calibration.json").read_text())
    assert card["false_alarm_val"] == pytest.approx(F.FALSE_ALARM_TARGET, abs=0.01)
    assert 0 < card["false_alarm_test"] < 0.15 and card["test_images"] >= 1000


def test_noise_and_flat_colours_are_flagged(shipped):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(5)]
    images += [np.full((32, 32, 3), c, np.uint8) for c in ((0, 0, 0), (255, 255, 255), (30, 120, 220),
                                                            (200, 40, 40), (128, 128, 128))]
    verdicts = [F.assess(im, shipped) for im in images]
    assert all(v.unfamiliar for v in verdicts), [round(v.score, 1) for v in verdicts]


@pytest.mark.slow   # all ten shipped models
def test_bundled_cifar_images_pass_allowing_the_stated_false_alarm_rate(shipped):
    sample = data.load_sample()
    flagged = [F.assess(im.permute(1, 2, 0).numpy(), shipped).unfamiliar for im in sample.images]
    # A binomial bound: at the stated test rate, more than this many flags is very unlikely.
    rate = shipped.card["false_alarm_test"]
    n = len(flagged)
    allowed = int(np.ceil(n * rate + 3 * np.sqrt(n * rate * (1 - rate))))
    assert sum(flagged) <= allowed, f"{sum(flagged)} of {n} bundled CIFAR-10 images flagged"


# ------------------------------------------------------------------- recalibrating after new weights


def _tiny_cifar(seed: int):
    from cifar_demo.common import CLASSES
    from cifar_demo.data import CifarData, DataSource, Split

    g = torch.Generator().manual_seed(seed)

    def split(n):
        return Split(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                     torch.arange(n) % 10)
    source = DataSource(kind="imagefolder", path="x", fingerprint=f"tiny{seed}", label="tiny")
    return CifarData(train=split(300), val=split(200), test=split(50), classes=CLASSES, source=source)


def _loaded(shas: dict[str, str], init_seeds: dict[str, int]):
    from types import SimpleNamespace

    from cifar_demo import zoo

    out = {}
    for name, sha in shas.items():
        torch.manual_seed(init_seeds[name])
        out[name] = (zoo.create(name).eval(), SimpleNamespace(sha256=sha))
    return out


def test_recalibrating_after_new_weights_refits_only_those_and_equals_a_full_fit(tmp_path):
    ds = _tiny_cifar(0)
    first = F.calibrate(_loaded({"simple_cnn": "a" * 64, "quiz_dnn": "b" * 64}, {"simple_cnn": 0, "quiz_dnn": 1}), ds)
    first.save(tmp_path)
    previous = Calibration.load(tmp_path)                      # the percentiles travel in the file
    assert set(previous.threshold_pct) == {"simple_cnn", "quiz_dnn"}
    # quiz_dnn gets new weights (another init, another sha256): only it is fitted again...
    new = _loaded({"simple_cnn": "a" * 64, "quiz_dnn": "c" * 64}, {"simple_cnn": 0, "quiz_dnn": 2})
    fitted_now = []
    again = F.calibrate(new, ds, previous=previous, progress=lambda i, n, name: fitted_now.append(name))
    assert fitted_now == ["quiz_dnn"] and again.card["reused"] == ["simple_cnn"]
    # ...and the result is the one a fit from scratch gives.
    scratch = F.calibrate(new, ds)
    assert again.threshold == pytest.approx(scratch.threshold, abs=1e-5)
    assert again.card["false_alarm_test"] == scratch.card["false_alarm_test"]
    for name in new:
        assert torch.allclose(again.models[name].reference, scratch.models[name].reference, atol=1e-4)
    assert again.threshold != pytest.approx(first.threshold, abs=1e-5)   # quiz_dnn's new weights count
    # Other images: nothing is kept.
    other = F.calibrate(new, _tiny_cifar(1), previous=again)
    assert other.card["reused"] == []
