"""Figures of issue 38's lessons: accuracy against epsilon (adversarial examples) and the
learning-rate range test's loss curve. Figure builders, no pyplot state (as plots.py)."""

from __future__ import annotations

from typing import Mapping, Sequence

from matplotlib.figure import Figure

from ..common import CLASSES
from .plots import COLORS, FONT, TITLE_FONT, _empty, accuracy_curves


def accuracy_vs_epsilon(curves: Mapping[str, Sequence[float | None]], eps: Sequence[float], *,
                        title: str | None = None, chance: float = 1 / len(CLASSES), figsize=(8, 4.8)) -> Figure:
    """One line per model: accuracy (a fraction) at each epsilon (1/255 units); None values skipped."""
    return accuracy_curves(curves, list(eps), [f"{e:g}" for e in eps], "epsilon (in 1/255 steps of each colour)",
                           title or "Accuracy vs. epsilon", "not computed yet: press the button",
                           chance=chance, figsize=figsize)


def lr_find_plot(result: dict, figsize=(8, 4.8)) -> Figure:
    """The range test (analysis.lr_find.RangeTest.as_dict()): raw and smoothed loss against the
    learning rate (log scale), the suggestion and the minimum / 10 marked."""
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.subplots()
    lrs = result.get("lrs") or []
    if not lrs:
        _empty(ax, "no range test yet")
        return fig
    ax.plot(lrs, result["losses"], color="0.75", lw=1, label="loss per step")
    ax.plot(lrs, result["smoothed"], color=COLORS[0], lw=2, label="smoothed loss")
    finite = [v for v in result["smoothed"] if v == v and v != float("inf")]
    if finite:
        ax.set_ylim(min(finite) * 0.9, min(max(finite), 3 * finite[0]) * 1.1)
    if result.get("suggestion"):
        ax.axvline(result["suggestion"], color=COLORS[2], lw=2, ls="--",
                   label=f"suggestion (steepest) {result['suggestion']:.2g}")
    if result.get("min_over_10"):
        ax.axvline(result["min_over_10"], color=COLORS[1], lw=1, ls=":",
                   label=f"minimum / 10: {result['min_over_10']:.2g}")
    if result.get("preset_lr"):
        ax.axvline(result["preset_lr"], color="0.3", lw=1, label=f"the preset's lr {result['preset_lr']:g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)", fontsize=FONT)
    ax.set_ylabel("training loss", fontsize=FONT)
    ax.tick_params(labelsize=FONT)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=FONT - 1, frameon=False)
    ax.set_title(f"Learning-rate range test: {result.get('model')} ({result.get('preset') or 'its recipe'})",
                 fontsize=TITLE_FONT)
    return fig
