"""The CIFAR-10 test set's own label errors, as human reviewers found them.

Northcutt, Athalye & Mueller ("Pervasive Label Errors in Test Sets Destabilize Machine Learning
Benchmarks", NeurIPS 2021; labelerrors.com) flagged 275 CIFAR-10 test images with confident
learning and showed each to 5 Mechanical Turk reviewers, who chose the given label, the label
the method proposed, neither, or both. Their files ship in cifar_demo/assets/label_errors/
(Apache-2.0, cleanlab/label-errors: NOTICE.md and LICENSE there), unchanged.

The paper's rules, kept here:
- a label error: fewer than 3 of the 5 reviewers chose the given label (54 images);
- the reviewers' majority label: the proposed one where 3 or more chose it (18 of those 54);
  the others are images where the reviewers agree on no single class (often "neither").

Indices: the files number images in the official test-set order (0-9999). The JPEG export
(../shared/data/cifar10-jpeg) numbers each class's test images in that order, so official index
i of class c is test/<c>/<k>.jpg with k the number of class-c images before i. This module maps
either layout to the project's own test order (data.load_split("test", source)): the official
files keep the official order; an ImageFolder export is read by class, then file name.

This is about CIFAR-10's test split only: own images and the validation split (held out of the
training set) have no reviewed labels, and `not_applicable` says so.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common import CLASSES
from .dataset import DataSource

ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "label_errors"
REVIEWERS = 5
MAJORITY = 3  # of REVIEWERS
ATTRIBUTION = ("Label errors: Northcutt, Athalye & Mueller, \"Pervasive Label Errors in Test Sets\" (NeurIPS 2021, "
               "labelerrors.com); data from cleanlab/label-errors, Apache-2.0.")
SCOPE = ("The reviewed labels exist for CIFAR-10's official test set only (the JPEG export or the official "
         "files): not for your own images, and not for the validation split (held out of the training set).")


@dataclass(frozen=True)
class Flag:
    """One reviewed test image: its official index, the given and the proposed label (class ids)
    and the reviewers' votes {"given", "guessed", "neither", "both"} (they sum to 5)."""

    official_index: int
    given: int
    proposed: int
    votes: tuple[tuple[str, int], ...]

    def vote(self, choice: str) -> int:
        return dict(self.votes).get(choice, 0)

    @property
    def is_error(self) -> bool:
        """The paper's label error: fewer than 3 of 5 reviewers chose the given label."""
        return self.vote("given") < MAJORITY

    @property
    def majority(self) -> int | None:
        """The reviewers' majority label (3+ of 5 chose the proposed one), else None."""
        return self.proposed if self.vote("guessed") >= MAJORITY else None

    @property
    def export_path(self) -> str:
        """Where the JPEG export keeps this picture: test/<class>/<k>.jpg."""
        return export_path(self.official_index)

    def describe(self, classes=CLASSES) -> str:
        """A sentence for people: "3 of 5 reviewers say this is a frog, not a cat"."""
        given, proposed = classes[self.given], classes[self.proposed]
        g, p, n, b = (self.vote(k) for k in ("given", "guessed", "neither", "both"))
        if self.majority is not None:
            head = f"{p} of {REVIEWERS} reviewers say this is {_a(proposed)}, not {_a(given)}"
        else:
            head = (f"only {g} of {REVIEWERS} reviewers {_says(g)}" if g else f"none of the {REVIEWERS} reviewers says")
            head += f" this is {_a(given)}" + (f"; {p} {_says(p)} {proposed}" if p else "")
        rest = [f"{g} kept {given}"] if self.majority is not None and g else []
        rest += [f"{n} {_says(n)} neither"] if n else []
        rest += [f"{b} {_says(b)} both {given} and {proposed}"] if b else []
        return head + (f" ({', '.join(rest)})" if rest else "")

    def short(self, classes=CLASSES) -> str:
        """A caption tag: "label? 4/5: dog" or "label? 2/5 keep cat"."""
        if self.majority is not None:
            return f"label? {self.vote('guessed')}/{REVIEWERS}: {classes[self.proposed]}"
        return f"label? {self.vote('given')}/{REVIEWERS} keep {classes[self.given]}"


def _a(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


def _says(n: int) -> str:
    return "says" if n == 1 else "say"


@functools.lru_cache(maxsize=1)
def official_labels() -> np.ndarray:
    """The official test labels in test-set order (10,000 class ids; cleanlab's file, no pickle)."""
    labels = np.load(ASSET_DIR / "cifar10_test_set_original_labels.npy", allow_pickle=False)
    return labels.astype(np.int64)


@functools.lru_cache(maxsize=1)
def flags() -> tuple[Flag, ...]:
    """All 275 reviewed images, by official index."""
    rows = json.loads((ASSET_DIR / "cifar10_mturk.json").read_text(encoding="utf-8"))
    out = [Flag(int(r["id"]), int(r["given_original_label"]), int(r["our_guessed_label"]),
                tuple(sorted((k, int(v)) for k, v in r["mturk"].items()))) for r in rows]
    return tuple(sorted(out, key=lambda f: f.official_index))


def errors() -> tuple[Flag, ...]:
    """The 54 label errors (fewer than 3 of 5 reviewers kept the given label)."""
    return tuple(f for f in flags() if f.is_error)


def export_path(official_index: int) -> str:
    """Official test index -> the JPEG export's relative path test/<class>/<k>.jpg."""
    labels = official_labels()
    if not 0 <= official_index < len(labels):
        raise ValueError(f"a CIFAR-10 test index lies in [0, {len(labels)}), got {official_index}")
    c = int(labels[official_index])
    k = int(np.count_nonzero(labels[:official_index] == c))
    return f"test/{CLASSES[c]}/{k:04d}.jpg"


def not_applicable(source: DataSource | None) -> str | None:
    """None where the reviewed labels apply to `source`'s test split, else why not (for people)."""
    if source is None:
        return "No test data: " + SCOPE
    if source.kind == "own" or tuple(source.classes) != CLASSES:
        return f"{source.label} is not CIFAR-10's test set. " + SCOPE
    if source.kind == "imagefolder" and not _export_positions(str(source.path), source.fingerprint):
        return (f"{source.label} is not numbered like the CIFAR-10 export (test/<class>/0000.jpg to 0999.jpg), "
                "so its pictures cannot be matched to the reviewed ones. " + SCOPE)
    return None


@functools.lru_cache(maxsize=8)
def _export_positions(root: str, fingerprint: str) -> dict[str, int] | None:
    """An ImageFolder export's test files (test/<class>/<stem>) -> index in the project's test
    order (by class, then file name: sources._scan_imagefolder's order), or None unless every
    file is named like the export's (a 4-digit number per class, 0000 to 0999). A slice of the
    export (its first files per class, say) keeps its names: its reviewed pictures are found.
    `fingerprint` keys the cache (a changed folder is looked at again)."""
    out, start = {}, 0
    for cls in CLASSES:
        try:
            names = sorted(e.name for e in os.scandir(os.path.join(root, "test", cls)) if not e.name.startswith("."))
        except OSError:
            return None
        stems = [os.path.splitext(n)[0] for n in names]
        if not stems or len(set(stems)) != len(stems) or not all(
                len(s) == 4 and s.isdigit() and int(s) < 1000 for s in stems):
            return None
        out.update({f"test/{cls}/{s}": start + k for k, s in enumerate(stems)})
        start += len(stems)
    return out


def index_map(source: DataSource, *, only_errors: bool = True) -> dict[int, Flag]:
    """The project's test index (data.load_split("test", source) order) -> its Flag, for the
    label errors (or, `only_errors=False`, all 275 reviewed images). Empty where they do not
    apply (not_applicable says why)."""
    if not_applicable(source):
        return {}
    chosen = errors() if only_errors else flags()
    if source.kind == "imagefolder":
        positions = _export_positions(str(source.path), source.fingerprint)
        stems = ((os.path.splitext(f.export_path)[0], f) for f in chosen)
        return {positions[stem]: f for stem, f in stems if stem in positions}
    return {f.official_index: f for f in chosen}  # the official files (or their download): official order


def majority_labels(labels, flagged: dict[int, Flag]) -> np.ndarray:
    """`labels` with the reviewers' majority label where it differs from the given one (18 images
    of CIFAR-10's test set); every other label unchanged."""
    out = np.asarray(labels, dtype=np.int64).copy()
    for i, f in flagged.items():
        if f.majority is not None and 0 <= i < len(out):
            out[i] = f.majority
    return out
