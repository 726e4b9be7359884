"""The Evaluate tab's confusion matrix as a heat map: a table whose cells a click opens (the
drill-down, ui.evaluate_tab)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..common import CLASSES

CORNER = "true ↓  predicted →"


def heatmap(confusion: list[list[int]], classes=CLASSES):
    """The counts as a Styler (rows true class, columns predicted) coloured as a heat map: the
    diagonal green and the mistakes orange, each on its own scale (the diagonal's hundreds would
    otherwise wash out the mistakes' tens)."""
    cm = np.asarray(confusion)
    df = pd.DataFrame(cm, index=list(classes), columns=list(classes))
    off = cm[~np.eye(len(cm), dtype=bool)]
    top = {True: max(int(np.diag(cm).max()), 1), False: max(int(off.max()) if off.size else 0, 1)}

    def colour(frame):
        css = pd.DataFrame("", index=frame.index, columns=frame.columns)
        for i in range(len(cm)):
            for j in range(len(cm)):
                v = cm[i, j]
                if v == 0:
                    continue
                a = 0.12 + 0.88 * v / top[i == j]
                rgb = "22, 163, 74" if i == j else "234, 88, 12"
                ink = "#fff" if a > 0.55 else "inherit"
                css.iloc[i, j] = f"background-color: rgba({rgb}, {a:.2f}); color: {ink}; cursor: pointer"
        return css

    return df.reset_index(names=CORNER).style.apply(colour, axis=None, subset=list(classes))
