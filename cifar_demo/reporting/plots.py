"""matplotlib Figure builders for the CLI, the docs and the app.

Every builder makes a `matplotlib.figure.Figure` directly and never touches pyplot, so no
global figure list grows in a long-running app and nothing depends on the GUI backend;
Gradio's gr.Plot and `figure_to_png` both render through Agg. Accuracies are fractions in
[0, 1] (as evaluate.py and the training engine write them) and are shown as percentages.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter
from matplotlib.transforms import Bbox

from ..common import CLASSES

FONT = 10          # tick labels, legends, annotations
TITLE_FONT = 12
COLORS = [f"C{i}" for i in range(10)]  # the tab10 cycle; run i keeps its colour on every axes


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=FONT, color="0.4", transform=ax.transAxes)


def _percent_axis(ax, axis: str = "y", decimals: int | None = 0) -> None:
    """Fractions shown as percentages; decimals=None picks them from the range (for zoomed-in curves)."""
    getattr(ax, f"{axis}axis").set_major_formatter(PercentFormatter(xmax=1.0, decimals=decimals))


# ----------------------------------------------------------------------------- training curves

def _normalise_runs(runs) -> list[tuple[str, list[dict]]]:
    """Accept {"name", "records"} dicts, (name, records) pairs, bare record lists, or one run's records."""
    runs = list(runs or [])
    if runs and isinstance(runs[0], Mapping) and "kind" in runs[0]:
        runs = [runs]  # a single run's records
    out = []
    for i, run in enumerate(runs):
        if isinstance(run, Mapping):
            out.append((str(run.get("name") or f"run {i + 1}"), list(run.get("records") or [])))
        elif isinstance(run, tuple) and len(run) == 2 and isinstance(run[0], str):
            out.append((run[0], list(run[1] or [])))
        else:
            out.append((f"run {i + 1}", list(run or [])))
    return out


def _series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(epoch, value) of the records that have a finite `key`; null values are skipped."""
    pts = [(r.get("epoch"), r.get(key)) for r in records]
    pts = [(float(x), float(y)) for x, y in pts
           if x is not None and isinstance(y, (int, float)) and math.isfinite(y)]
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts])


def _train_style(from_steps: bool, n_points: int) -> dict:
    """Thin lines for noisy per-step values, thick with dots for per-epoch values."""
    if from_steps and n_points > 2:
        return dict(lw=1.2, alpha=0.8)
    return dict(lw=2, marker="o", ms=4)  # a run that just started has 1-2 points: dots show them


# Students ask why the validation loss (dashed) sits below the training loss, or far above it: said
# under the curves, from what the curves show at their last epoch (loss_note).
LOSS_GAP = ("Validation loss below training loss? Training pictures are usually augmented (shifted, flipped, cut "
            "out) and label smoothing keeps the training loss above 0, while validation pictures are shown plain; "
            "the training loss is also averaged over an epoch in which the model was still learning.")
LOSS_OVERFIT = ("Validation loss above training loss: the network does better on the pictures it trains on than "
                "on new ones. When the gap keeps growing while the validation loss rises, it is learning those "
                "pictures by heart (overfitting), not what makes a cat a cat.")


def loss_note(runs) -> str | None:
    """The line under the curves: LOSS_OVERFIT when a run's last epoch has its validation loss above
    its training loss, LOSS_GAP when below; None before a validation loss is logged."""
    below = above = False
    for _, records in _normalise_runs(runs):
        last = [r for r in records if r.get("kind") == "epoch" and isinstance(r.get("val_loss"), (int, float))
                and isinstance(r.get("train_loss"), (int, float))][-1:]
        for r in last:
            above = above or r["val_loss"] > r["train_loss"]
            below = below or r["val_loss"] <= r["train_loss"]
    return LOSS_OVERFIT if above else LOSS_GAP if below else None


def training_curves(runs, *, title: str | None = None, figsize=(15, 4.2)) -> Figure:
    """Loss, accuracy and learning rate against epoch for one or several runs (metrics.jsonl records).

    Per run (one colour): train curves come from the step records (fractional epochs) when there
    are any, else from the epoch records; validation curves (dashed, dots) from the epoch records.
    Runs that have no records yet are listed in the legend as "(no data yet)".
    """
    runs = _normalise_runs(runs)
    fig = Figure(figsize=figsize, layout="constrained")
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
    plotted = False
    for i, (name, records) in enumerate(runs):
        color = COLORS[i % len(COLORS)]
        steps = [r for r in records if r.get("kind") == "step"]
        epochs = [r for r in records if r.get("kind") == "epoch"]
        train = steps or epochs
        for ax, key in ((ax_loss, "loss"), (ax_acc, "acc")):
            x, y = _series(train, f"train_{key}")
            if len(x):
                ax.plot(x, y, color=color, label=f"{name} train", **_train_style(bool(steps), len(x)))
            x, y = _series(epochs, f"val_{key}")
            if len(x):
                ax.plot(x, y, color=color, ls="--", lw=2, marker="o", ms=4, label=f"{name} val")
        x, y = _series(train, "lr")
        if len(x):
            ax_lr.plot(x, y, color=color, label=name, **_train_style(bool(steps), len(x)))
        if not records:  # keep the run visible in the legend while it starts
            ax_loss.plot([], [], color=color, label=f"{name} (no data yet)")
        plotted = plotted or bool(records)

    for ax, label in ((ax_loss, "cross-entropy loss"), (ax_acc, "accuracy"), (ax_lr, "learning rate")):
        ax.set_title(label[0].upper() + label[1:], fontsize=TITLE_FONT)
        ax.set_xlabel("epoch", fontsize=FONT)
        ax.set_ylabel(label, fontsize=FONT)
        ax.tick_params(labelsize=FONT)
        ax.grid(alpha=0.3)
        if not plotted:  # no ticks around nothing: matplotlib's default empty range is -0.05..0.05
            ax.set_xticks([])
            ax.set_yticks([])
            _empty(ax, "no metrics yet")
    _percent_axis(ax_acc, decimals=None)  # a run that just started spans a fraction of a percent
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    if ax_loss.get_legend_handles_labels()[0]:
        ax_loss.legend(fontsize=FONT - 1)
    if (note := loss_note(runs)) is not None:   # wrapped to the figure's width (~13 characters an inch)
        fig.supxlabel("\n".join(textwrap.wrap(note, int(figsize[0] * 13))), fontsize=FONT - 1, color="0.35")
    if title:
        fig.suptitle(title, fontsize=TITLE_FONT + 1)
    return fig


# ----------------------------------------------------------------------------- evaluation figures

def confusion_matrix(cm, classes: Sequence[str] = CLASSES, normalize: bool = False, *,
                     title: str | None = None, figsize=(7.5, 6.5)) -> Figure:
    """Confusion matrix heat map, rows = true class, columns = predicted, every cell annotated.

    normalize=True divides each row by its total (the diagonal is then the per-class recall);
    the image then holds those fractions, else the raw counts.
    """
    cm = np.asarray(cm, dtype=np.float64)
    if normalize:
        totals = cm.sum(1, keepdims=True)
        cm = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.subplots()
    vmax = 1.0 if normalize else max(cm.max(), 1.0)
    im = ax.imshow(cm, cmap="Blues", vmin=0.0, vmax=vmax)
    cbar = fig.colorbar(im, ax=ax, shrink=0.85)
    cbar.ax.tick_params(labelsize=FONT)
    if normalize:
        _percent_axis(cbar.ax)

    n = len(cm)
    small = FONT - 1 if n <= 10 else max(5, FONT - 1 - (n - 10) // 3)
    for r in range(n):
        for c in range(n):
            v = cm[r, c]
            if not normalize:
                text = f"{int(round(v))}"
            else:
                text = "<1%" if 0 < v < 0.005 else f"{v:.0%}"  # tell rare confusions from none
            color = "white" if v > 0.6 * vmax else ("0.55" if v == 0 else "black")
            ax.text(c, r, text, ha="center", va="center", fontsize=small, color=color)

    ax.set_xticks(range(n), classes, rotation=45, ha="right", rotation_mode="anchor", fontsize=FONT)
    ax.set_yticks(range(n), classes, fontsize=FONT)
    ax.set_xlabel("predicted class", fontsize=FONT + 1)
    ax.set_ylabel("true class", fontsize=FONT + 1)
    ax.set_title(title or ("Confusion matrix (share of each true class)" if normalize else "Confusion matrix (counts)"),
                 fontsize=TITLE_FONT)
    return fig


def per_class_accuracy(acc_by_class, classes: Sequence[str] = CLASSES, *, title: str | None = None,
                       figsize=(10, 4.5)) -> Figure:
    """Bars of per-class accuracy: one list for one model, or {model name: list} side by side."""
    models = dict(acc_by_class) if isinstance(acc_by_class, Mapping) else {"": acc_by_class}
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.subplots()
    n = len(classes)
    width = 0.8 / max(len(models), 1)
    for i, (name, accs) in enumerate(models.items()):
        accs = np.asarray(accs, dtype=np.float64)
        x = np.arange(n) - 0.4 + width * (i + 0.5)
        bars = ax.bar(x, accs, width=width, color=COLORS[i % len(COLORS)], label=name or None)
        if len(models) <= 2:  # with more models the labels would overlap
            ax.bar_label(bars, labels=[f"{a:.0%}" for a in accs], fontsize=FONT - 1, padding=2)
    ax.set_xticks(range(n), classes, rotation=30, ha="right", rotation_mode="anchor", fontsize=FONT)
    ax.set_ylim(0, 1.08)
    _percent_axis(ax)
    ax.tick_params(axis="y", labelsize=FONT)
    ax.set_ylabel("accuracy (recall)", fontsize=FONT)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if len(models) > 1:
        ax.legend(fontsize=FONT - 1, loc="lower right")
    if not models:
        _empty(ax, "no models")
    ax.set_title(title or "Accuracy per class", fontsize=TITLE_FONT)
    return fig


def _to_hwc(images) -> np.ndarray:
    """uint8 N,3,H,W or N,H,W,3 (tensor or array) -> uint8 N,H,W,3."""
    a = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if a.ndim == 4 and a.shape[1] == 3 and a.shape[-1] != 3:
        a = a.transpose(0, 2, 3, 1)
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"expected N,3,H,W or N,H,W,3 images, got shape {a.shape}")
    return a


def misclassified_grid(images, true, pred, confidences=None, classes: Sequence[str] = CLASSES, *,
                       max_images: int = 32, ncols: int = 8, title: str | None = None) -> Figure:
    """A grid of (mis)classified images titled "true -> pred (conf%)", pixels shown as crisp squares.

    The caller picks and orders the images, e.g. `EvalResult.misclassified` (most confident
    mistakes first). Only the first `max_images` are drawn.
    """
    imgs = _to_hwc(images)[:max_images]
    n = len(imgs)
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    fig = Figure(figsize=(1.65 * ncols + 0.2, 1.95 * nrows + (0.4 if title else 0)), layout="constrained")
    if n == 0:
        ax = fig.subplots()
        ax.set_axis_off()
        _empty(ax, "no misclassified images")
        return fig
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i >= n:
            continue
        # "nearest" upscales each CIFAR pixel to a square block instead of blurring 32x32 to mush.
        ax.imshow(imgs[i], interpolation="nearest")
        conf = "" if confidences is None else f" ({float(confidences[i]):.0%})"
        ax.set_title(f"{classes[int(true[i])]}\n-> {classes[int(pred[i])]}{conf}", fontsize=FONT - 1,
                     linespacing=1.1)
    if title:
        fig.suptitle(title, fontsize=TITLE_FONT)
    return fig


def reliability_diagram(bins: Sequence[Mapping[str, float]], ece: float | None = None, *,
                        title: str | None = None, figsize=(5.5, 6.2)) -> Figure:
    """Reliability diagram (accuracy per confidence bin vs. the diagonal) over a histogram of counts.

    `bins` are EvalResult.reliability: dicts with lo, hi, confidence, accuracy, count.
    Red hatched bars show the gap between each bin's accuracy and its mean confidence.
    """
    fig = Figure(figsize=figsize, layout="constrained")
    ax, ax_n = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    full = [b for b in bins if b["count"] > 0]
    lo = np.array([b["lo"] for b in full])
    width = np.array([b["hi"] - b["lo"] for b in full])
    acc = np.array([b["accuracy"] for b in full])
    conf = np.array([b["confidence"] for b in full])
    ax.plot([0, 1], [0, 1], ls="--", color="0.5", lw=1, label="perfectly calibrated")
    ax.bar(lo, acc, width=width, align="edge", color="C0", edgecolor="white", label="accuracy")
    # Hatch only, no fill: an over-confident gap lies above the blue bar, an under-confident one
    # on top of it, and a translucent red fill over blue would read as a third colour.
    ax.bar(lo, conf - acc, bottom=acc, width=width, align="edge", facecolor="none",
           edgecolor="C3", hatch="///", lw=1, label="gap to mean confidence")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy", fontsize=FONT)
    ax.legend(fontsize=FONT - 1, loc="upper left")
    ece_text = "" if ece is None else f"  (ECE {ece:.1%})"
    ax.set_title((title or "Reliability diagram") + ece_text, fontsize=TITLE_FONT)
    if not full:
        _empty(ax, "no predictions")

    ax_n.bar([b["lo"] for b in bins], [b["count"] for b in bins], width=[b["hi"] - b["lo"] for b in bins],
             align="edge", color="0.6", edgecolor="white")
    ax_n.set_ylabel("images", fontsize=FONT)
    ax_n.set_xlabel("confidence (max probability)", fontsize=FONT)
    for a in (ax, ax_n):
        _percent_axis(a, "x")
        a.tick_params(labelsize=FONT)
        a.grid(alpha=0.3)
        a.set_axisbelow(True)
    _percent_axis(ax)
    return fig


# Where a point's name may go, in points from the point: right-above, right-below, left-above,
# left-below, straight above, straight below (the first that collides with nothing wins).
_LABEL_SPOTS = [((6, 5), "left", "bottom"), ((6, -6), "left", "top"), ((-6, 5), "right", "bottom"),
                ((-6, -6), "right", "top"), ((0, 8), "center", "bottom"), ((0, -9), "center", "top")]


def _place_labels(fig: Figure, ax, rows: Sequence[Mapping[str, Any]]) -> None:
    """Name every point, putting each label where it overlaps the fewest labels already placed,
    other points and the axes' edge (measured in display space after a layout pass)."""
    fig.draw_without_rendering()
    dots = ax.transData.transform([(r["params"], r["accuracy"]) for r in rows])
    frame = ax.get_window_extent()
    placed = []

    def area(a: Bbox, b: Bbox) -> float:
        both = Bbox.intersection(a, b)
        return 0.0 if both is None else both.width * both.height

    def cost(box: Bbox, own: int) -> float:
        near = box.padded(5)
        dot_hits = sum(j != own and near.contains(x, y) for j, (x, y) in enumerate(dots))
        outside = box.width * box.height - area(box, frame)
        return sum(area(box, b) for b in placed) + 400 * dot_hits + outside

    for i, r in enumerate(rows):
        best = None  # (cost, text, box) of the best spot so far
        for offset, ha, va in _LABEL_SPOTS:
            text = ax.annotate(r["name"], (r["params"], r["accuracy"]), textcoords="offset points",
                               xytext=offset, ha=ha, va=va, fontsize=FONT)
            box = text.get_window_extent().padded(3)  # keep a gap between neighbouring labels
            c = cost(box, i)
            if best is not None and c >= best[0]:
                text.remove()
                continue
            if best is not None:
                best[1].remove()
            best = (c, text, box)
            if c == 0:
                break
        placed.append(best[2])


def accuracy_vs_params(rows: Sequence[Mapping[str, Any]], *, title: str | None = None,
                       ylabel: str = "accuracy", figsize=(8, 5)) -> Figure:
    """Scatter of accuracy against parameter count (log x), one labelled point per model.

    rows: dicts with name, params and accuracy (a fraction); rows whose accuracy or params is
    None (a model without trained weights yet) are left out; a row with "yours" true (a visitor's
    run) is a black star.
    """
    rows = sorted((r for r in rows if r.get("accuracy") is not None and r.get("params")),
                  key=lambda r: r["params"])
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.subplots()
    for i, r in enumerate(rows):
        if r.get("yours"):
            ax.scatter(r["params"], r["accuracy"], s=180, marker="*", color="black", zorder=4)
        else:
            ax.scatter(r["params"], r["accuracy"], s=60, color=COLORS[i % len(COLORS)], zorder=3)
    ax.set_xscale("log")
    _percent_axis(ax)
    # Whole percents only: a 2.5-point tick step would print 82.5% as "82%".
    ax.yaxis.set_major_locator(MaxNLocator(steps=[1, 2, 5, 10]))
    ax.set_xlabel("parameters (log scale)", fontsize=FONT)
    ax.set_ylabel(ylabel, fontsize=FONT)
    ax.tick_params(labelsize=FONT)
    ax.grid(alpha=0.3, which="both")
    ax.set_title(title or "Accuracy vs. model size", fontsize=TITLE_FONT)
    if rows:
        # Room for the name labels, which sit beside each point; placed last, on the final layout.
        p = [r["params"] for r in rows]
        a = [r["accuracy"] for r in rows]
        ax.set_xlim(min(p) / 2, max(p) * 4)
        ax.set_ylim(max(0.0, min(a) - 0.05), min(1.02, max(a) + 0.05))
        _place_labels(fig, ax, rows)
    else:
        _empty(ax, "no models with measured accuracy")
    return fig


def accuracy_vs_severity(curves: Mapping[str, Sequence[float | None]], *, title: str | None = None,
                         chance: float = 1 / len(CLASSES), figsize=(8, 4.8), emphasis: Sequence[str] = ()) -> Figure:
    """One line per model (its colour by its position): accuracy at severity 0 (clean) .. 5, as
    accuracy_curves; the models in `emphasis` (a visitor's run) in black, thicker, dashed."""
    return accuracy_curves(curves, range(6), ["0\nclean", "1", "2", "3", "4", "5"], "severity",
                           title or "Accuracy vs. corruption severity", "no accuracies computed yet",
                           chance=chance, figsize=figsize, xlim=(-0.2, 5.2), emphasis=emphasis)


def accuracy_curves(curves: Mapping[str, Sequence[float | None]], xs: Sequence[float], ticks: Sequence[str],
                    xlabel: str, title: str, empty: str, *, chance: float, figsize, xlim=None,
                    emphasis: Sequence[str] = ()) -> Figure:
    """One line per model: accuracy (a fraction) at `xs`, None skipped; chance dotted; `empty` if none drawn."""
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.subplots()
    drawn = 0
    others = 0   # the lines not emphasised, whose colours go by their position among themselves
    for name, accs in curves.items():
        pts = [(x, a) for x, a in zip(xs, accs) if a is not None]
        if name in emphasis:
            style = dict(color="black", lw=3, ls="--", zorder=5)
        else:
            style, others = dict(color=COLORS[others % len(COLORS)], lw=2), others + 1
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=4, label=name, **style)
            drawn += 1
    ax.axhline(chance, color="0.5", ls=":", lw=1, label="chance")
    ax.set_xticks(list(xs), list(ticks))
    if xlim is not None:
        ax.set_xlim(*xlim)
    ax.set_ylim(0, 1)
    _percent_axis(ax)
    ax.set_xlabel(xlabel, fontsize=FONT)
    ax.set_ylabel("accuracy", fontsize=FONT)
    ax.tick_params(labelsize=FONT)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=TITLE_FONT)
    if drawn:
        ax.legend(fontsize=FONT - 1, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    else:
        _empty(ax, empty)
    return fig


def figure_to_png(fig: Figure, path: str | Path, *, dpi: int = 110) -> Path:
    """Write `fig` as a PNG (creating parent folders) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi, facecolor="white")
    return path
