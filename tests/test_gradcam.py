"""Grad-CAM: shape and range, the map peaks where the evidence is, layer choice, overlay."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from cifar_demo import weights, zoo
from cifar_demo.analysis import gradcam, predict
from cifar_demo.common import CLASSES

torch.set_num_threads(2)


class RedDetector(nn.Module):
    """Class 0 = "there is red": a red-minus-green-and-blue filter, pooled, then a final
    strided conv down to 2x2 (too coarse for Grad-CAM, so the 16x16 map must be chosen)."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=inplace)
        self.pool = nn.MaxPool2d(2)                       # 32 -> 16
        self.coarse = nn.Conv2d(2, 2, 8, stride=8, groups=2, bias=False)  # 16 -> 2, per channel
        self.head = nn.Linear(2, 10)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0, 1, 1], self.conv.weight[0, 1, 1, 1], self.conv.weight[0, 2, 1, 1] = 1, -1, -1
            self.conv.weight[1, :, 1, 1] = 1 / 3           # brightness: no evidence for class 0
            self.coarse.weight.fill_(1 / 64)               # (groups=2: 2x1x8x8)
            self.head.weight.zero_()
            self.head.bias.zero_()
            self.head.weight[0, 0] = 4.0
            self.head.weight[1, 1] = 0.5

    def forward(self, x):
        x = self.coarse(self.pool(self.relu(self.conv(x))))
        return self.head(x.mean((2, 3)))


def red_in_top_right() -> np.ndarray:
    img = np.full((32, 32, 3), 120, np.uint8)
    img[2:14, 18:30] = (250, 10, 10)
    return img


def quadrant_means(cam: np.ndarray) -> dict[str, float]:
    h, w = cam.shape[0] // 2, cam.shape[1] // 2
    return {"top-left": cam[:h, :w].mean(), "top-right": cam[:h, w:].mean(),
            "bottom-left": cam[h:, :w].mean(), "bottom-right": cam[h:, w:].mean()}


@pytest.mark.parametrize("inplace", [False, True])
def test_map_peaks_in_the_quadrant_holding_the_evidence(inplace):
    model = RedDetector(inplace).eval()
    cam = gradcam.gradcam(model, red_in_top_right())  # class_idx None: the top class
    assert cam.shape == (32, 32) and cam.dtype == np.float32
    assert cam.min() >= 0 and cam.max() == pytest.approx(1.0)
    q = quadrant_means(cam)
    assert max(q, key=q.get) == "top-right"
    assert q["top-right"] > 5 * max(v for k, v in q.items() if k != "top-right")
    y, x = np.unravel_index(cam.argmax(), cam.shape)
    assert y < 16 and x >= 16


def test_class_without_evidence_gives_an_all_zero_map():
    # Class 2's logit does not depend on the image at all: no gradient, no evidence.
    cam = gradcam.gradcam(RedDetector().eval(), red_in_top_right(), class_idx=2)
    assert cam.shape == (32, 32) and not cam.any()


def test_leaves_model_untouched_and_works_under_inference_mode():
    model = RedDetector().eval()
    with torch.inference_mode():
        cam = gradcam.gradcam(model, red_in_top_right())
    assert cam.max() == pytest.approx(1.0)
    assert all(p.grad is None for p in model.parameters())
    assert not model._forward_hooks and not model.conv._forward_hooks  # hooks removed


def test_target_map_skips_maps_smaller_than_4x4_and_takes_the_block_output():
    conv8, conv2, relu = nn.Conv2d(1, 1, 1), nn.Conv2d(1, 1, 1), nn.ReLU()
    a8, after8, a2 = torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8), torch.zeros(1, 1, 2, 2)
    assert gradcam.target_map([(conv8, a8), (relu, after8), (conv2, a2)]) is after8


def test_a_model_without_convolutions_is_refused_with_a_clear_message():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)).eval()
    with pytest.raises(ValueError, match="convolution"):
        gradcam.gradcam(mlp, red_in_top_right())


def test_zoo_model_map_shape_and_range():
    torch.manual_seed(0)
    model = zoo.create("optimized200k").eval()
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    cam = gradcam.gradcam(model, img, class_idx=3)
    assert cam.shape == (32, 32) and np.isfinite(cam).all()
    assert 0.0 <= cam.min() and cam.max() <= 1.0


def test_overlay_is_an_upscaled_rgb_image():
    img = red_in_top_right()
    cam = np.zeros((32, 32), np.float32)
    cam[:16, 16:] = 1.0
    out = gradcam.overlay(img, cam, scale=8)
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8
    # alpha 0 shows the image alone, each pixel a sharp 8x8 block.
    plain = gradcam.overlay(img, cam, scale=8, alpha=0.0)
    assert np.array_equal(plain, np.repeat(np.repeat(img, 8, 0), 8, 1))
    # jet: hot (red) where the cam is 1, cold (blue) where it is 0.
    assert out[8, 250, 0] > out[8, 250, 2] and out[250, 8, 2] > out[250, 8, 0]


# ----------------------------------------------------------------------------- models side by side

def test_explain_gives_probabilities_and_the_cam_of_the_top_class():
    model, img = RedDetector().eval(), red_in_top_right()
    e = gradcam.explain(model, img, "red")
    assert e.model == "red" and set(e.probs) == set(CLASSES)
    assert sum(e.probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert e.top(1)[0][0] == CLASSES[0] and len(e.top(3)) == 3
    assert np.array_equal(e.cam, gradcam.gradcam(model, img, 0)) and e.has_evidence
    # Given probabilities are reused: here class 2 comes first, and it has no evidence.
    given = {c: (0.9 if c == CLASSES[2] else 0.1 / 9) for c in CLASSES}
    e2 = gradcam.explain(model, img, "red", probs=given)
    assert e2.probs == given and e2.top(1)[0][0] == CLASSES[2]
    assert not e2.has_evidence and not e2.cam.any()


def test_explain_predictions_skips_models_that_did_not_predict(monkeypatch):
    detector = RedDetector().eval()
    monkeypatch.setattr(gradcam.weights, "load", lambda name: SimpleNamespace(model=detector, card=None))
    first = {c: (0.5 if c == CLASSES[0] else 0.5 / 9) for c in CLASSES}
    second = {c: (0.5 if c == CLASSES[2] else 0.5 / 9) for c in CLASSES}
    preds = [predict.Prediction("a", first, 1.0), predict.Prediction("b", error="no weights shipped yet"),
             predict.Prediction("c", second, 1.0)]
    out = gradcam.explain_predictions(red_in_top_right(), preds)
    assert [e.model for e in out] == ["a", "c"]
    assert [e.top(1)[0][0] for e in out] == [CLASSES[0], CLASSES[2]]   # each its own top class
    assert out[0].has_evidence and not out[1].has_evidence               # class 2 ignores the image


def test_explain_shipped_covers_every_shipped_model_in_zoo_order(tmp_path, monkeypatch):
    torch.manual_seed(0)
    names = ("optimized200k", "quiz_dnn")
    for name in names:
        weights.save_weights(zoo.create(name).eval(), tmp_path, name, dataset="x", dataset_fingerprint="x",
                             test_accuracy=0.1, test_accuracy_tta=None,
                             per_class_accuracy={c: 0.1 for c in CLASSES},
                             train_config={}, epochs=0, train_seconds=0.0)
    monkeypatch.setenv("CIFAR_DEMO_WEIGHTS", str(tmp_path))
    weights.clear_cache()
    try:
        img = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
        out = gradcam.explain_shipped(img)
        assert [e.model for e in out] == [n for n in zoo.names() if n in names]
        for e in out:
            model = weights.load(e.model).model
            probs, _ = predict.predict_one(model, img)
            assert e.probs == pytest.approx(probs, abs=1e-6)
            assert e.cam.shape == (32, 32) and 0 <= e.cam.min() and e.cam.max() <= 1
        assert [e.model for e in gradcam.explain_shipped(img, ["quiz_dnn"])] == ["quiz_dnn"]
    finally:
        weights.clear_cache()


def test_a_class_argued_only_against_shows_where_the_picture_counted_and_says_so():
    """Issue 36, bug 9: a student's own model gave a blank map, "no evidence for its class". Where
    nothing argues for the top class, the map shows where the picture counted most, for or against."""
    model, img = RedDetector().eval(), red_in_top_right()
    with torch.no_grad():
        model.head.weight[3, 0] = -4.0                    # class 3 = "no red": the red patch argues against it
    given = {c: (0.9 if c == CLASSES[3] else 0.1 / 9) for c in CLASSES}
    e = gradcam.explain(model, img, "own", probs=given)
    assert not e.has_evidence and e.cam.any() and e.evidence == "either way"
    q = quadrant_means(e.cam)
    assert max(q, key=q.get) == "top-right"
    assert gradcam.explain(model, img, "red").evidence == "for"
    flat = gradcam.explain(model, img, "red", probs={c: (0.9 if c == CLASSES[2] else 0.1 / 9) for c in CLASSES})
    assert flat.evidence == "none" and not flat.cam.any()
    assert "for or against" in gradcam.caption(e) and "does not depend" in gradcam.caption(flat)
    assert gradcam.caption(gradcam.explain(model, img, "red")) == ""
