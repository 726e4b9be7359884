"""Figures of issue 38's lessons: accuracy against epsilon (adversarial examples) and the
learning-rate range test's loss curve. Figure builders, no pyplot state (as plots.py)."""

from __future__ import annotations

from typing import Mapping, Sequence

from matplotlib.figure import Figure

from ..common import CLASSES
from .plots import COLORS, FONT, TITLE_FONT, _empty, _percent_axis


def accuracy_vs_epsilon(curves: Mapping[str, Sequence[float | None]], eps: Sequence[float], *,
                        title: str | None = None, chance: float = 1 / len(CLASSES), figsize=(8, 4.8)) -> Figure:
    """One line per model: accuracy (a fraction) at each epsilon (1/255 units); None values skipped."""
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.subplots()
    drawn = 0
    for i, (name, accs) in enumerate(curves.items()):
        pts = [(e, a) for e, a in zip(eps, accs) if a is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=4, lw=2, color=COLORS[i % len(COLORS)], label=name)
            drawn += 1
    ax.axhline(chance, color="0.5", ls=":", lw=1, label="chance")
    ax.set_xticks(list(eps), [f"{e:g}" for e in eps])
    ax.set_ylim(0, 1)
    _percent_axis(ax)
    ax.set_xlabel("epsilon (in 1/255 steps of each colour)", fontsize=FONT)
    ax.set_ylabel("accuracy", fontsize=FONT)
    ax.tick_params(labelsize=FONT)
    ax.grid(alpha=0.3)
    ax.set_title(title or "Accuracy vs. epsilon", fontsize=TITLE_FONT)
    if drawn:
        ax.legend(fontsize=FONT - 1, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    else:
        _empty(ax, "not computed yet: press the button")
    return fig
