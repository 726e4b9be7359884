"""The A/B study's figure: both recipes' validation accuracy as mean +- std bands over seeds.

A matplotlib Figure built directly, never through pyplot (as cifar_demo/plots.py does, and
for the same reason: no global figure list in a long-running app). It draws a
compare.Summary; it computes nothing of its own.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from ..analysis.compare import Summary

FONT = 10
COLORS = {"A": "C0", "B": "C1"}


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=FONT, color="0.4", transform=ax.transAxes)


def study_bands(summary: Summary, *, title: str | None = None, figsize=(12, 4.2)) -> Figure:
    """Left: validation accuracy against epoch, per recipe the mean over seeds with a +- std
    band (where two or more seeds have reached the epoch) and each seed as a thin line.
    Right: the final validation accuracy of each seed, with the mean +- std per recipe."""
    fig = Figure(figsize=figsize, layout="constrained")
    ax, ax_final = fig.subplots(1, 2, width_ratios=[3, 1])
    drawn = False
    for rs in (summary.a, summary.b):
        color, label = COLORS[rs.key], f"{rs.key}: {rs.recipe.describe()}"
        for points in rs.curves.values():
            ax.plot([p[0] for p in points], [p[1] for p in points], color=color, lw=0.8, alpha=0.35)
        if not rs.epochs:
            ax.plot([], [], color=color, label=f"{label} (no epoch yet)")
            continue
        drawn = True
        x, mean = np.array(rs.epochs), np.array(rs.mean)
        n_seeds = max(rs.n)
        ax.plot(x, mean, color=color, lw=2.2, marker="o", ms=4,
                label=f"{label} (mean of {n_seeds} seed{'s' if n_seeds > 1 else ''})")
        has_std = np.array([s is not None for s in rs.std])
        if has_std.any():
            std = np.array([s if s is not None else 0.0 for s in rs.std])
            ax.fill_between(x, mean - std, mean + std, where=has_std, color=color, alpha=0.2, lw=0,
                            interpolate=False)
    ax.set_xlabel("epoch", fontsize=FONT)
    ax.set_ylabel("validation accuracy", fontsize=FONT)
    last = max([1, *summary.a.epochs, *summary.b.epochs])
    ax.set_xlim(0.5, last + 0.5)   # whole epochs, and a lone first epoch is not a sliver of an axis
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=None))
    ax.margins(y=0.15)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=FONT)
    if not drawn:
        ax.set_ylim(0, 1)
        _empty(ax, "No validation accuracy yet: the first epoch is still training.")
    # Below the axes, so it never hides a curve.
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=FONT - 1)
    ax.set_title(title or "Validation accuracy: mean ± std over seeds", fontsize=FONT + 2)

    # Right: one dot per finished seed, the mean as a bar, +- std as an error bar.
    for i, rs in enumerate((summary.a, summary.b)):
        color = COLORS[rs.key]
        values = [rs.final[s] for s in sorted(rs.final)]
        if not values:
            continue
        ax_final.scatter([i] * len(values), values, color=color, s=30, zorder=3)
        ax_final.errorbar([i + 0.18], [rs.final_mean], yerr=[[rs.final_std or 0.0], [rs.final_std or 0.0]],
                          fmt="_", ms=18, color=color, capsize=5, lw=2, zorder=2)
    ax_final.set_xticks([0, 1], ["A", "B"])
    ax_final.set_xlim(-0.6, 1.6)
    ax_final.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=None))
    ax_final.margins(y=0.15)
    ax_final.grid(alpha=0.3, axis="y")
    ax_final.tick_params(labelsize=FONT)
    ax_final.set_title("Final validation accuracy per seed", fontsize=FONT + 1)
    if summary.a.final_mean is None and summary.b.final_mean is None:
        ax_final.set_ylim(0, 1)
        _empty(ax_final, "no finished run yet")
    elif summary.difference is not None:
        ax_final.set_xlabel(f"B - A = {100 * summary.difference:+.2f} points", fontsize=FONT)
    return fig
