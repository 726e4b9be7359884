"""A model's test score against the reviewers' labels (data.label_errors): accuracy as labelled
and with the reviewers' majority label where it differs, and which of its mistakes are the label's.

    flagged = label_errors.index_map(source)            # project test index -> Flag (54 label errors)
    r = rescore(result.labels, result.predictions, flagged)
    r.accuracy, r.accuracy_majority, r.label_mistakes

"The mistake is really the label's": the model's answer differs from the given label and equals
the reviewers' majority label (3 or more of 5 reviewers chose it). Where the reviewers agree on
no class (36 of the 54 errors), a model that answers the proposed label is "disputed": neither
the label nor the model has the reviewers' backing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .. import weights
from ..common import CLASSES, to_unit
from ..data.label_errors import Flag, majority_labels


@dataclass
class Rescore:
    n: int
    accuracy: float                 # against the given labels
    accuracy_majority: float        # against the reviewers' majority label where it differs
    relabelled: int                 # how many labels the reviewers' majority changes
    label_mistakes: list[int] = field(default_factory=list)   # wrong as labelled, right by the reviewers
    new_mistakes: list[int] = field(default_factory=list)     # right as labelled, wrong by the reviewers
    disputed: list[int] = field(default_factory=list)         # wrong as labelled, the proposed label, no majority
    flagged_wrong: list[int] = field(default_factory=list)    # every label error the model "gets wrong"

    def sentence(self) -> str:
        return (f"Accuracy {self.accuracy:.2%} as labelled, {self.accuracy_majority:.2%} with the reviewers' "
                f"majority label on the {self.relabelled} test images where it differs: "
                f"{len(self.label_mistakes)} of its mistakes are really the label's"
                + (f", and {len(self.new_mistakes)} of its right answers agree with a wrong label" if self.new_mistakes
                   else "") + ".")


def rescore(labels, predictions, flagged: dict[int, Flag]) -> Rescore:
    """Accuracy both ways, and the label errors sorted by what the model answered."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(predictions, dtype=np.int64)
    if len(y) != len(p) or len(y) == 0:
        raise ValueError(f"need the same non-zero number of labels and predictions, got {len(y)} and {len(p)}")
    fixed = majority_labels(y, flagged)
    out = Rescore(len(y), float((p == y).mean()), float((p == fixed).mean()), int((fixed != y).sum()))
    for i, f in sorted(flagged.items()):
        if not 0 <= i < len(y) or y[i] != f.given:
            continue  # not the picture the reviewers saw (another copy of the data): never guessed at
        if p[i] != y[i]:
            out.flagged_wrong.append(i)
            if f.majority is not None and p[i] == f.majority:
                out.label_mistakes.append(i)
            elif f.majority is None and p[i] == f.proposed:
                out.disputed.append(i)
        elif f.majority is not None:
            out.new_mistakes.append(i)
    return out


@torch.inference_mode()
def predict_indices(model: torch.nn.Module, images: torch.Tensor, batch: int = 256) -> np.ndarray:
    """Class ids of uint8 N,3,32,32 `images` (no TTA): the model normalises its own input."""
    out = []
    for s in range(0, len(images), batch):
        out.append(model(to_unit(images[s:s + batch])).argmax(1))
    return torch.cat(out).numpy() if out else np.zeros(0, np.int64)


def shipped_answers(images: torch.Tensor, names: list[str] | None = None) -> dict[str, list[int] | str]:
    """Every shipped CIFAR-10 model (default: all with weights) on `images`: model -> class ids, or a
    message where its weights cannot be used. Only models of CIFAR-10's classes answer."""
    out: dict[str, list[int] | str] = {}
    for name in names or weights.available():
        try:
            loaded = weights.load(name)
        except weights.WeightsError as e:
            out[name] = str(e)
            continue
        if tuple(loaded.card.class_names) != CLASSES:
            continue
        out[name] = predict_indices(loaded.model, images).tolist()
    return out


def mislabelled_rows(flagged: dict[int, Flag], labels, answers: dict[str, list[int]],
                     classes=CLASSES) -> list[list]:
    """One row per label error: test index, given label, what the reviewers said, then every model's
    answer ("frog ✓" where it is the reviewers' majority label, "frog ?" where it is the proposed one
    without a majority, the plain class otherwise). `answers[model][j]` is the answer on the j-th
    index of sorted(flagged)."""
    rows = []
    for j, i in enumerate(sorted(flagged)):
        f = flagged[i]
        if labels[i] != f.given:
            continue
        cells = []
        for name in answers:
            a = answers[name][j]
            mark = " ✓" if a == f.majority else (" ?" if f.majority is None and a == f.proposed else "")
            cells.append(classes[a] + mark)
        rows.append([i, classes[f.given], f.describe(classes), *cells])
    return rows
