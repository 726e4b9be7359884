"""evaluate.py against hand-computed metrics, on preset-logit "models" and synthetic images."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cifar_demo.analysis.evaluate import (
    EvalResult,
    cell_indices,
    evaluate,
    metrics_from_predictions,
    most_confused,
    page,
    reliability_bins,
    tta_views,
)

# 12 images, 3 classes. Rows are the probabilities the "model" gives; argmax is the prediction.
Y_TRUE = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
PROBS = [
    [0.90, 0.05, 0.05],  # 0 ok
    [0.80, 0.10, 0.10],  # 1 ok
    [0.60, 0.30, 0.10],  # 2 ok
    [0.30, 0.60, 0.10],  # 3 wrong (0 -> 1), true class 2nd
    [0.10, 0.80, 0.10],  # 4 ok
    [0.20, 0.70, 0.10],  # 5 ok
    [0.10, 0.20, 0.70],  # 6 wrong (1 -> 2), true class 2nd
    [0.90, 0.04, 0.06],  # 7 wrong (1 -> 0), true class 3rd
    [0.10, 0.10, 0.80],  # 8 ok
    [0.05, 0.15, 0.80],  # 9 ok
    [0.20, 0.10, 0.70],  # 10 ok
    [0.30, 0.20, 0.50],  # 11 ok
]
Y_PRED = [max(range(3), key=row.__getitem__) for row in PROBS]
# Confusion (rows true, cols predicted): [[3,1,0],[1,2,1],[0,0,4]]
PRECISION = [3 / 4, 2 / 3, 4 / 5]  # column sums 4, 3, 5
RECALL = [3 / 4, 2 / 4, 4 / 4]     # row sums 4, 4, 4
F1 = [3 / 4, 4 / 7, 8 / 9]


class LookupModel(nn.Module):
    """Image i is filled with the value i; the model returns row i of a fixed logit table."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.register_buffer("table", logits)
        self.seen = []  # (training, inference_mode, autocast) per forward call

    def forward(self, x):
        self.seen.append((self.training, torch.is_inference_mode_enabled(), torch.is_autocast_enabled("cpu")))
        return self.table[(x[:, 0, 0, 0] * 255).round().long()]  # evaluate passes [0, 1] floats


def indexed_split(n: int) -> SimpleNamespace:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 32, 32).contiguous()
    return SimpleNamespace(images=images, labels=torch.tensor(Y_TRUE[:n]))




def check_hand_made(r: EvalResult, tol=1e-9):
    assert r.n == 12 and r.num_classes == 3
    assert r.accuracy == pytest.approx(9 / 12)
    assert r.confusion == [[3, 1, 0], [1, 2, 1], [0, 0, 4]]
    assert r.support == [4, 4, 4]
    assert r.predictions == Y_PRED and r.labels == Y_TRUE
    assert r.precision == pytest.approx(PRECISION, abs=tol)
    assert r.recall == pytest.approx(RECALL, abs=tol) and r.per_class_accuracy == r.recall
    assert r.f1 == pytest.approx(F1, abs=tol)
    assert r.macro_precision == pytest.approx(sum(PRECISION) / 3, abs=tol)
    assert r.macro_recall == pytest.approx(0.75, abs=tol)
    assert r.macro_f1 == pytest.approx(sum(F1) / 3, abs=tol)
    assert r.topk == pytest.approx({"top1": 9 / 12, "top2": 11 / 12})
    loss = -sum(math.log(PROBS[i][y]) for i, y in enumerate(Y_TRUE)) / 12
    assert r.loss == pytest.approx(loss, abs=1e-5)
    # Most confident mistake first: #7 (0.9), #6 (0.7), #3 (0.6).
    assert r.misclassified == [7, 6, 3]
    assert r.confidences == pytest.approx([max(row) for row in PROBS], abs=1e-6)


def test_metrics_from_predictions_hand_made():
    r = metrics_from_predictions(Y_TRUE, Y_PRED, PROBS, num_classes=3, topk=(1, 2))
    check_hand_made(r)
    # Without probabilities: no loss, no calibration, mistakes in index order.
    r = metrics_from_predictions(torch.tensor(Y_TRUE), torch.tensor(Y_PRED), num_classes=3)
    assert r.loss is None and r.ece is None and r.confidences is None
    assert r.topk == {"top1": 0.75} and r.misclassified == [3, 6, 7]


def test_absent_class_is_zero_and_left_out_of_macro():
    # Class 3 never occurs: its metrics are 0, and the macro averages run over classes 0-2 only.
    r = metrics_from_predictions(Y_TRUE, Y_PRED, num_classes=4)
    assert r.precision[3] == r.recall[3] == r.f1[3] == 0.0 and r.support[3] == 0
    assert r.macro_recall == pytest.approx(0.75)
    assert r.confusion[3] == [0, 0, 0, 0] and [row[3] for row in r.confusion] == [0, 0, 0, 0]


def test_ece_by_hand():
    # Bin width 1/15: 0.95 -> bin 14, 0.65 -> bin 9, 0.35 -> bin 5.
    conf = [0.95] * 4 + [0.65] * 4 + [0.35] * 2
    correct = [1, 1, 1, 0] + [1, 1, 0, 0] + [1, 0]
    ece, bins = reliability_bins(conf, correct)
    # 4/10*|0.75-0.95| + 4/10*|0.5-0.65| + 2/10*|0.5-0.35|
    assert ece == pytest.approx(0.08 + 0.06 + 0.03)
    assert len(bins) == 15 and [b["count"] for b in bins] == [0] * 5 + [2] + [0] * 3 + [4] + [0] * 4 + [4]
    assert bins[14]["confidence"] == pytest.approx(0.95) and bins[14]["accuracy"] == 0.75
    assert bins[9]["accuracy"] == 0.5 and bins[5]["confidence"] == pytest.approx(0.35)
    assert bins[0]["lo"] == 0.0 and bins[14]["hi"] == 1.0
    # Bins are closed on the right: exactly 1/15 belongs to the first bin, 1.0 to the last.
    _, bins = reliability_bins([1 / 15, 1.0], [1, 1])
    assert bins[0]["count"] == 1 and bins[14]["count"] == 1


def test_ece_through_metrics_from_predictions():
    # 3 classes, the same confidences as above; the prediction is class 0, correct when y_true == 0.
    conf = [0.95] * 4 + [0.65] * 4 + [0.35] * 2
    probs = [[c, (1 - c) / 2, (1 - c) / 2] for c in conf]
    y_true = [0, 0, 0, 1] + [0, 0, 1, 2] + [0, 1]
    r = metrics_from_predictions(y_true, [0] * 10, probs, num_classes=3)
    assert r.ece == pytest.approx(0.17)
    assert r.misclassified == [3, 6, 7, 9]


def test_evaluate_hand_made_model_restores_mode():
    model = LookupModel(torch.tensor(PROBS).log())
    model.train()
    r = evaluate(model, indexed_split(12), batch_size=5, device="cpu", topk=(1, 2), num_classes=3,
                 keep_probs=True)
    check_hand_made(r, tol=1e-6)
    torch.testing.assert_close(torch.tensor(r.probabilities), torch.tensor(PROBS), atol=1e-6, rtol=0)
    assert len(model.seen) == 3  # 12 images in batches of 5
    assert all(s == (False, True, False) for s in model.seen)  # eval mode, inference mode, fp32
    assert model.training


def test_evaluate_accepts_pair_and_bf16():
    model = LookupModel(torch.tensor(PROBS).log())
    split = indexed_split(12)
    r = evaluate(model, (split.images, split.labels), device="cpu", precision="bf16", num_classes=3,
                 topk=(1, 2))
    assert model.seen and all(s[2] for s in model.seen)  # the forward ran under CPU autocast
    assert r.confusion == [[3, 1, 0], [1, 2, 1], [0, 0, 4]]


def test_evaluate_keeps_frozen_submodule_modes():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10), nn.Dropout(0.5))
    model.train()
    model[2].eval()
    evaluate(model, indexed_split(4), device="cpu")
    assert model.training and model[1].training and not model[2].training


def test_evaluate_runs_convolutions_channels_last_and_gives_the_weights_back():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 32 * 32, 10))
    weight = model[0].weight
    before, ptr = weight.detach().clone(), weight.data_ptr()
    seen = []
    model[0].register_forward_hook(lambda m, args, out: seen.append(
        (args[0].is_contiguous(memory_format=torch.channels_last),
         m.weight.is_contiguous(memory_format=torch.channels_last))))
    split = indexed_split(6)
    r = evaluate(model, split, device="cpu", keep_probs=True)
    assert seen == [(True, True)]
    seen.clear()
    # the very tensor it had, contiguous and unchanged
    assert model[0].weight is weight and weight.data_ptr() == ptr and weight.is_contiguous()
    assert torch.equal(weight.detach(), before)
    # and the scores are those of a contiguous forward
    with torch.no_grad():
        x = split.images.float() / 255  # evaluate passes pictures; a zoo model normalises them itself
        expected = model.eval()(x).softmax(1)
    assert seen == [(False, False)]
    torch.testing.assert_close(torch.tensor(r.probabilities), expected, atol=1e-5, rtol=0)


class Asymmetric(nn.Module):
    """Not flip- or shift-invariant: a linear map over all pixels."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 32 * 32, 10)

    def forward(self, x):
        return self.fc(x.flatten(1)) * 5  # sharpen, so that averaging visibly changes things


def random_split(n=8):
    g = torch.Generator().manual_seed(1)
    return (torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
            torch.randint(0, 10, (n,), generator=g))


def test_tta_flip_averages_probabilities():
    model = Asymmetric()
    images, labels = random_split()
    plain = evaluate(model, (images, labels), device="cpu", keep_probs=True)
    flip = evaluate(model, (images, labels), device="cpu", tta="flip", keep_probs=True)
    with torch.no_grad():
        x = images.float() / 255  # what evaluate passes: pictures (a zoo model normalises them itself)
        p0, p1 = model(x).softmax(1), model(x.flip(3)).softmax(1)
        expected = (p0 + p1) / 2
    torch.testing.assert_close(torch.tensor(plain.probabilities), p0, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(flip.probabilities), expected, atol=1e-5, rtol=0)
    assert flip.predictions == expected.argmax(1).tolist()
    assert flip.loss == pytest.approx(float(-expected[torch.arange(8), labels].log().mean()), abs=1e-5)
    assert not torch.allclose(p0, expected, atol=1e-3)  # the model really is not flip-invariant
    assert flip.tta == "flip"


def test_tta_views_are_the_documented_six():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32)
    views = tta_views(x, "flip_translate")
    assert [w for w, _ in views] == [0.25, 0.25, 0.125, 0.125, 0.125, 0.125]
    (_, ident), (_, flip), (_, dr), (_, dr_flip), (_, ul), (_, ul_flip) = views
    assert torch.equal(ident, x) and torch.equal(flip, x[..., torch.arange(31, -1, -1)])
    # Moved down-right by one pixel: pixel (r, c) shows the source pixel (r-1, c-1) ...
    assert torch.equal(dr[..., 1:, 1:], x[..., :-1, :-1])
    # ... and the uncovered top row / left column are reflections (row -1 mirrors row 1).
    assert torch.equal(dr[..., 0, 1:], x[..., 1, :-1]) and torch.equal(dr[..., 1:, 0], x[..., :-1, 1])
    assert torch.equal(ul[..., :-1, :-1], x[..., 1:, 1:])
    assert torch.equal(ul[..., -1, :-1], x[..., -2, 1:])
    assert torch.equal(dr_flip, dr.flip(-1)) and torch.equal(ul_flip, ul.flip(-1))
    assert [w for w, _ in tta_views(x, "flip")] == [0.5, 0.5] and len(tta_views(x)) == 1


def test_tta_flip_translate_matches_manual_views():
    model = Asymmetric()
    images, labels = random_split()
    r = evaluate(model, (images, labels), device="cpu", tta="flip_translate", keep_probs=True)
    x = images.float() / 255
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = [padded[..., :32, :32], padded[..., 2:, 2:]]
    with torch.no_grad():
        pair = lambda v: (model(v).softmax(1) + model(v.flip(3)).softmax(1)) / 2  # noqa: E731
        expected = 0.5 * pair(x) + 0.25 * pair(shifted[0]) + 0.25 * pair(shifted[1])
    torch.testing.assert_close(torch.tensor(r.probabilities), expected, atol=1e-5, rtol=0)


def test_tta_confidence_gives_the_views_only_to_unsure_images():
    model = Asymmetric()
    images, labels = random_split(16)
    plain = evaluate(model, (images, labels), device="cpu", keep_probs=True)
    full = evaluate(model, (images, labels), device="cpu", tta="flip_translate", keep_probs=True)
    conf = torch.tensor(plain.confidences)
    bar = float(conf.median())            # about half the images are below it
    some = evaluate(model, (images, labels), device="cpu", tta="flip_translate", tta_confidence=bar,
                    keep_probs=True)
    unsure = conf < bar
    assert 0 < int(unsure.sum()) < 16
    got, p0, p6 = (torch.tensor(r.probabilities) for r in (some, plain, full))
    torch.testing.assert_close(got[unsure], p6[unsure], atol=1e-5, rtol=0)     # all six views
    torch.testing.assert_close(got[~unsure], p0[~unsure], atol=1e-5, rtol=0)   # the plain view alone
    assert not torch.allclose(p0[~unsure], p6[~unsure], atol=1e-3)  # so the two really differ there
    # the ends: 1 sends every image through the views (even those at probability 1.0), a bar
    # nobody is below none
    every = evaluate(model, (images, labels), device="cpu", tta="flip_translate", tta_confidence=1.0,
                     keep_probs=True)
    torch.testing.assert_close(torch.tensor(every.probabilities), p6, atol=1e-5, rtol=0)
    none = evaluate(model, (images, labels), device="cpu", tta="flip_translate", tta_confidence=1e-6,
                    keep_probs=True)
    torch.testing.assert_close(torch.tensor(none.probabilities), p0, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="tta_confidence"):
        evaluate(model, (images, labels), device="cpu", tta="flip", tta_confidence=1.5)
    # each TTA result carries its plain view's score from the same pass: the plain run's own
    for r, n_views in ((some, int(unsure.sum())), (full, 16), (every, 16), (none, 0)):
        assert r.plain == pytest.approx({"accuracy": plain.accuracy, "loss": plain.loss, "tta_images": n_views})
    assert plain.plain is None


def test_json_round_trip():
    r = metrics_from_predictions(Y_TRUE, Y_PRED, PROBS, num_classes=3, topk=(1, 2), keep_probs=True)
    d = json.loads(r.to_json())
    assert EvalResult.from_dict(d) == r
    assert d["confusion"][1] == [1, 2, 1] and d["reliability"][14]["count"] == 0


def test_bad_arguments():
    model = LookupModel(torch.tensor(PROBS).log())
    with pytest.raises(ValueError, match="tta"):
        evaluate(model, indexed_split(12), device="cpu", tta="rotate")
    with pytest.raises(ValueError, match="num_classes"):
        evaluate(model, indexed_split(12), device="cpu")  # 3 outputs, 10 expected
    with pytest.raises(ValueError):
        metrics_from_predictions([0, 1], [0, 3], num_classes=3)


# ----------------------------------------------------------------------------- one confusion cell

def test_cell_indices_most_confident_first_ties_by_index():
    r = metrics_from_predictions(Y_TRUE, Y_PRED, PROBS, num_classes=3)
    assert cell_indices(r, 0, 0) == [0, 1, 2]            # 0.9, 0.8, 0.6
    assert cell_indices(r, 2, 2) == [8, 9, 10, 11]       # 0.8, 0.8 (tie: by index), 0.7, 0.5
    assert cell_indices(r, 0, 1) == [3] and cell_indices(r, 1, 0) == [7] and cell_indices(r, 1, 2) == [6]
    assert cell_indices(r, 0, 2) == [] and cell_indices(r, 2, 0) == []
    # Every image lies in exactly one cell, and each cell holds its confusion count.
    cells = {(t, p): cell_indices(r, t, p) for t in range(3) for p in range(3)}
    assert sorted(i for idx in cells.values() for i in idx) == list(range(12))
    assert all(len(cells[t, p]) == r.confusion[t][p] for t, p in cells)


def test_cell_indices_reorders_by_confidence_and_works_without_it():
    # Four images of class 1 predicted 0, confidences out of index order with a tie.
    probs = [[0.6, 0.4], [0.9, 0.1], [0.6, 0.4], [0.7, 0.3], [0.2, 0.8]]
    r = metrics_from_predictions([1, 1, 1, 1, 1], [0, 0, 0, 0, 1], probs, num_classes=2, topk=(1,))
    assert cell_indices(r, 1, 0) == [1, 3, 0, 2]
    plain = metrics_from_predictions([1, 1, 1, 1, 1], [0, 0, 0, 0, 1], num_classes=2)
    assert plain.confidences is None and cell_indices(plain, 1, 0) == [0, 1, 2, 3]
    assert cell_indices(plain, 1, 1) == [4]
    with pytest.raises(ValueError, match="class ids"):
        cell_indices(plain, 2, 0)
    with pytest.raises(ValueError, match="class ids"):
        cell_indices(plain, 0, -1)


def test_cell_indices_survive_the_json_round_trip():
    r = metrics_from_predictions(Y_TRUE, Y_PRED, PROBS, num_classes=3)
    again = EvalResult.from_dict(json.loads(r.to_json()))
    assert all(cell_indices(again, t, p) == cell_indices(r, t, p) for t in range(3) for p in range(3))


def test_most_confused_takes_the_largest_mistake_first_in_row_order():
    assert most_confused([[3, 1, 0], [1, 2, 1], [0, 0, 4]]) == (0, 1)   # three 1s: the first
    assert most_confused([[50, 2, 0], [1, 40, 7], [7, 0, 60]]) == (1, 2)
    assert most_confused([[9, 0], [0, 3]]) is None                      # nothing off the diagonal


def test_page_slices_counts_and_clamps():
    items = list(range(130))
    first = page(items, 0, 40)
    assert (first.items, first.number, first.pages, first.start, first.total) == (items[:40], 0, 4, 0, 130)
    last = page(items, 3, 40)
    assert last.items == items[120:] and last.start == 120 and len(last.items) == 10
    assert page(items, 99, 40) == last and page(items, -5, 40) == first   # clamped, not empty
    assert page(items[:40], 1, 40).number == 0 and page(items[:40], 0, 40).pages == 1
    assert page(items[:41], 1, 40).items == [40] and page(items[:41], 0, 40).pages == 2
    empty = page([], 3, 40)
    assert (empty.items, empty.number, empty.pages, empty.start, empty.total) == ([], 0, 1, 0, 0)
    with pytest.raises(ValueError, match="page size"):
        page(items, 0, 0)
