"""plots.py: each builder returns a Figure holding the data it was given, and never uses pyplot."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from cifar_demo.analysis.evaluate import metrics_from_predictions
from cifar_demo.common import CLASSES
from cifar_demo.reporting import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _no_pyplot_figures():
    """Builders must not register figures with pyplot (they would leak in a long-running app)."""
    yield
    import matplotlib.pyplot as plt
    assert plt.get_fignums() == []


def step(i, epoch, lr=0.1):
    return {"kind": "step", "step": i, "epoch": epoch, "train_loss": 2.0 - epoch / 2, "train_acc": 0.2 + epoch / 10,
            "lr": lr, "images_per_s": 1000.0, "elapsed_s": float(i), "eta_s": 10.0}


def epoch_record(e, val=True):
    return {"kind": "epoch", "epoch": e, "step": 10 * e, "train_loss": 1.5 / e, "train_acc": 0.5 + e / 10,
            "val_loss": 1.6 / e if val else None, "val_acc": 0.45 + e / 10 if val else None,
            "lr": 0.05, "elapsed_s": 5.0 * e, "images_per_s": 900.0}


def lines_by_label(ax) -> dict:
    return {line.get_label(): line for line in ax.get_lines()}


def test_the_note_under_the_curves_says_why_validation_loss_is_below_or_above():
    below = [{**epoch_record(e), "val_loss": 1.2 / e} for e in (1, 2)]
    fig = plots.training_curves([("a", below)])
    assert fig._supxlabel.get_text().replace("\n", " ") == plots.LOSS_GAP and "label smoothing" in plots.LOSS_GAP
    # An overfitting run: below at first, then far above at its last epoch.
    overfit = below + [{**epoch_record(3), "train_loss": 0.01, "val_loss": 4.0}]
    assert plots.training_curves([("a", overfit)])._supxlabel.get_text().replace("\n", " ") == plots.LOSS_OVERFIT
    assert plots.loss_note([("b", [epoch_record(1, val=False)])]) is None   # no validation split: no note
    assert plots.loss_note((r for r in [("a", below)])) == plots.LOSS_GAP   # any iterable of runs


def test_training_curves_overlays_runs():
    steps = [step(i, i / 4) for i in range(1, 9)]
    runs = [{"name": "a", "records": steps + [epoch_record(1), epoch_record(2)]},
            ("b", [epoch_record(1, val=False), epoch_record(2, val=False)])]
    fig = plots.training_curves(runs, title="two runs")
    # Said where the curves are (issue 36), from what they show at the last epoch: here run a's
    # validation loss (1.6 / e) sits above its training loss (1.5 / e).
    assert fig._supxlabel.get_text().replace("\n", " ") == plots.LOSS_OVERFIT and "overfitting" in plots.LOSS_OVERFIT
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    loss, acc, lr = fig.axes
    lines = lines_by_label(loss)
    assert set(lines) == {"a train", "a val", "b train"}  # run b has no validation split
    # Run a's train curve comes from its step records, at fractional epochs.
    np.testing.assert_allclose(lines["a train"].get_xdata(), [i / 4 for i in range(1, 9)])
    np.testing.assert_allclose(lines["a train"].get_ydata(), [s["train_loss"] for s in steps])
    np.testing.assert_allclose(lines["a val"].get_xdata(), [1, 2])
    np.testing.assert_allclose(lines["a val"].get_ydata(), [1.6, 0.8])
    np.testing.assert_allclose(lines["b train"].get_ydata(), [1.5, 0.75])  # from epoch records
    np.testing.assert_allclose(lines_by_label(acc)["a val"].get_ydata(), [0.55, 0.65])
    assert len(lr.get_lines()) == 2
    assert lines["a train"].get_color() != lines["b train"].get_color()
    assert lines["a train"].get_color() == lines["a val"].get_color()


@pytest.mark.parametrize("runs, loss_points", [
    ([], 0), ([[]], 0), ([{"name": "new", "records": []}], 0),
    ([[step(1, 0.01)]], 1),                                      # a run that has just started
    ([step(1, 0.01), step(2, 0.02)], 2),                         # one run's bare records
    ([{"name": "x", "records": [epoch_record(1, val=False)]}], 1),  # val_loss is null
    ([{"name": "x", "records": [epoch_record(1)]}], 2),            # train + val point
])
def test_training_curves_empty_and_partial(runs, loss_points, tmp_path):
    fig = plots.training_curves(runs)
    assert len(fig.axes) == 3
    assert sum(len(line.get_xdata()) for line in fig.axes[0].get_lines()) == loss_points
    plots.figure_to_png(fig, tmp_path / "c.png")  # renders without error


def test_confusion_matrix_counts_and_normalised():
    cm = np.arange(100).reshape(10, 10)
    cm[3] = 0  # a class with no images must not divide by zero
    fig = plots.confusion_matrix(cm.tolist(), CLASSES)
    ax = fig.axes[0]
    (im,) = [a for a in ax.get_images() if isinstance(a, AxesImage)]
    np.testing.assert_array_equal(im.get_array(), cm)
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 100 and texts[12] == "12" and texts[99] == "99"
    assert [t.get_text() for t in ax.get_xticklabels()] == list(CLASSES)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(CLASSES)

    fig = plots.confusion_matrix(cm, CLASSES, normalize=True)
    ax = fig.axes[0]
    expected = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    np.testing.assert_allclose(ax.get_images()[0].get_array(), expected)
    np.testing.assert_allclose(expected[3], 0)
    assert ax.texts[99].get_text() == f"{99 / cm[9].sum():.0%}"
    assert ax.texts[1].get_text() == f"{1 / 45:.0%}"


def test_confusion_matrix_from_evaluate_result():
    r = metrics_from_predictions([0, 0, 1, 2], [0, 1, 1, 2], num_classes=3)
    fig = plots.confusion_matrix(r.confusion, ["a", "b", "c"])
    np.testing.assert_array_equal(fig.axes[0].get_images()[0].get_array(), [[1, 1, 0], [0, 1, 0], [0, 0, 1]])


def test_per_class_accuracy_bars():
    acc = [0.9, 0.8, 0.7, 0.6, 0.5, 0.95, 0.85, 0.75, 0.65, 0.55]
    fig = plots.per_class_accuracy(acc, CLASSES)
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == pytest.approx(acc)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(CLASSES)

    other = [1 - a for a in acc]
    fig = plots.per_class_accuracy({"m1": acc, "m2": other, "m3": acc}, CLASSES)
    ax = fig.axes[0]
    assert len(ax.patches) == 30
    assert [p.get_height() for p in ax.patches[10:20]] == pytest.approx(other)
    # Side by side: the three bars of a class do not overlap and sit around its tick.
    x0 = [ax.patches[k * 10].get_x() for k in range(3)]
    assert x0[0] < x0[1] < x0[2] and x0[0] + ax.patches[0].get_width() <= x0[1] + 1e-9
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["m1", "m2", "m3"]


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_misclassified_grid(layout):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=g)
    given = images if layout == "nchw" else images.permute(0, 2, 3, 1).numpy()
    true, pred = [i % 10 for i in range(40)], [(i + 3) % 10 for i in range(40)]
    conf = [0.5 + i / 100 for i in range(40)]
    fig = plots.misclassified_grid(given, true, pred, conf, CLASSES, max_images=12, ncols=5)
    with_images = [ax for ax in fig.axes if ax.get_images()]
    assert len(with_images) == 12 and len(fig.axes) == 15  # 3 rows of 5; the last 3 cells blank
    first = with_images[0]
    np.testing.assert_array_equal(first.get_images()[0].get_array(), images[0].permute(1, 2, 0).numpy())
    assert first.get_images()[0].get_interpolation() == "nearest"
    assert first.get_title() == "airplane\n-> cat (50%)"
    assert with_images[11].get_title() == "automobile\n-> deer (61%)"


def test_misclassified_grid_empty_and_bad_shape():
    fig = plots.misclassified_grid(np.zeros((0, 32, 32, 3), np.uint8), [], [], [], CLASSES)
    assert len(fig.axes) == 1 and not fig.axes[0].get_images()
    with pytest.raises(ValueError):
        plots.misclassified_grid(np.zeros((2, 32, 32), np.uint8), [0, 1], [1, 0])


def test_reliability_diagram():
    conf = [0.95] * 4 + [0.65] * 4 + [0.35] * 2
    probs = [[c, (1 - c) / 2, (1 - c) / 2] for c in conf]
    r = metrics_from_predictions([0, 0, 0, 1, 0, 0, 1, 2, 0, 1], [0] * 10, probs, num_classes=3)
    fig = plots.reliability_diagram(r.reliability, r.ece)
    ax, ax_n = fig.axes
    assert "17.0%" in ax.get_title()
    # Populated bins only: 3 accuracy bars, then 3 gap bars from accuracy up/down to confidence.
    acc_bars, gap_bars = ax.patches[:3], ax.patches[3:]
    assert len(gap_bars) == 3
    assert [p.get_height() for p in acc_bars] == pytest.approx([0.5, 0.5, 0.75])
    assert [p.get_y() + p.get_height() for p in gap_bars] == pytest.approx([0.35, 0.65, 0.95])
    assert [p.get_height() for p in ax_n.patches] == [b["count"] for b in r.reliability]


def test_reliability_diagram_no_data():
    bins = [{"lo": i / 15, "hi": (i + 1) / 15, "confidence": 0.0, "accuracy": 0.0, "count": 0} for i in range(15)]
    fig = plots.reliability_diagram(bins)
    assert len(fig.axes) == 2


def test_accuracy_vs_params():
    rows = [{"name": "big", "params": 11_000_000, "accuracy": 0.95},
            {"name": "small", "params": 60_000, "accuracy": 0.70},
            {"name": "untrained", "params": 500_000, "accuracy": None}]
    ax = plots.accuracy_vs_params(rows).axes[0]
    assert ax.get_xscale() == "log"
    points = np.concatenate([c.get_offsets() for c in ax.collections])
    np.testing.assert_allclose(sorted(map(tuple, points)), [(60_000, 0.70), (11_000_000, 0.95)])
    assert sorted(t.get_text() for t in ax.texts) == ["big", "small"]
    assert plots.accuracy_vs_params([]).axes  # an empty zoo still draws


def test_accuracy_vs_params_labels_do_not_overlap_in_a_crowded_zoo():
    # The shipped zoo's crowd (params, test accuracy): keras_cnn and custom_cnn's labels collided
    # when labels simply alternated above and below.
    crowd = {"optimized200k": (150_690, 0.848), "quiz_dnn": (299_018, 0.843), "keras_cnn": (1_177_130, 0.869),
             "custom_cnn": (1_793_210, 0.883), "airnet": (1_972_792, 0.900), "resnet26": (4_197_770, 0.878),
             "resnet34": (4_348_082, 0.884), "resnet50": (4_815_794, 0.850), "simple_cnn": (6_447_754, 0.786),
             "resnet18": (11_173_962, 0.887)}
    fig = plots.accuracy_vs_params([{"name": n, "params": p, "accuracy": a} for n, (p, a) in crowd.items()],
                                   figsize=(7, 4.5))
    fig.draw_without_rendering()
    ax = fig.axes[0]
    boxes = {t.get_text(): t.get_window_extent() for t in ax.texts}
    assert sorted(boxes) == sorted(crowd)
    names = list(boxes)
    clashes = [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if boxes[a].overlaps(boxes[b])]
    assert clashes == []
    frame = ax.get_window_extent()
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1
               for b in boxes.values())
    # ticks sit on whole percents, so the "85%" label is at 85% (not at 82.5% printed as "82%")
    ticks = [t for t in ax.get_yticks() if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
    assert ticks and all(abs(100 * t - round(100 * t)) < 1e-6 for t in ticks)


def test_figure_to_png(tmp_path):
    fig = plots.confusion_matrix(np.eye(10, dtype=int) * 5, CLASSES)
    path = plots.figure_to_png(fig, tmp_path / "sub" / "cm.png")
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 500 and height > 500  # 7.5 x 6.5 in at 110 dpi
