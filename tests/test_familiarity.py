"""familiarity: Mahalanobis scores per model, percentiles, Fisher's combination, the shipped calibration."""

from __future__ import annotations

import pytest
import torch

from cifar_demo import familiarity as F
from cifar_demo.familiarity import Calibration, FamiliarityError, ModelStats


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
