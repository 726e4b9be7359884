"""Accuracy against corruption x severity (the CIFAR-10-C protocol), cached per weights file.

Every model scores the same fixed, class-balanced slice of the test split (1,000 images,
100 per class, by default) clean and under every corruption of augment.CORRUPTIONS at
severities 1..5 (or only the severities asked for: a table at severity 3 needs one pass per
corruption, not five). The corrupted images are a function of (slice, corruption, severity) alone,
drawn with augment.generator_for, and made once per call for all the models that need them,
so the models are compared on identical pictures.

A result is a pure function of the weights file's bytes (the card's sha256), the slice
(data.split_digest of its pixels and labels) and the corruption code (CORRUPTIONS_VERSION),
so those are the cache key: one JSON entry per (weights, slice, corruption) in
<cache>/robustness/ (<cache> is data.cache_root()), written atomically through fsio. An
entry holds one corruption's five accuracies (None where a severity was not asked for yet), or
the clean one: an interrupted computation keeps every corruption it finished, asking for one
corruption computes only that, and a later full computation fills in the missing severities.

    result = robustness.compute_shipped(["airnet", "resnet18"], ["fog"])
    print(robustness.format_table(result, corruption="fog"))
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable, Sequence

from torch import Tensor, nn

from .. import data as data_mod
from .. import fsio, weights
from ..augment.corruptions import (
    CORRUPTIONS,
    CORRUPTIONS_VERSION,
    MAX_SEVERITY,
    SEVERITIES,
    corrupt,
    get_corruption,
)
from ..reporting import tables
from . import evalcache, evaluate
from .evalcache import Target

# Bump when an entry's fields or the way accuracy is scored change: old entries then miss.
CACHE_VERSION = 1
DEFAULT_N = 1000          # 100 per class: a 1-point accuracy difference is ~10 images, visible
SLICE_SEED = 0            # which 100 of each class's 1,000 test images
CLEAN = "clean"           # the entry of the uncorrupted slice (severity 0 of every corruption)
DEFAULT_SEVERITY = 3      # the middle of the scale: what the tables and docs/benchmarks.md show

Progress = Callable[[int, int], None]


def test_slice(source: str | os.PathLike | data_mod.DataSource | None = None, n: int = DEFAULT_N) -> data_mod.Split:
    """`n` test images, classes in equal shares, the same ones wherever the same data sits."""
    return data_mod.stratified_subset(data_mod.load_split("test", source), n, SLICE_SEED)


# ----------------------------------------------------------------------------- the cache

def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    return data_mod.cache_root(cache) / "robustness"


def cache_key(target: Target, entry: str, slice_digest: str) -> str:
    """Readable (model, corruption) and unique (hashes of the weights and the slice, code versions)."""
    return (f"{target.model}-{target.sha256[:24]}-{slice_digest[:16]}-{entry}"
            f"-c{CORRUPTIONS_VERSION}-v{CACHE_VERSION}")


def _entry_length(entry: str) -> int:
    return 1 if entry == CLEAN else MAX_SEVERITY


def load_entry(key: str, entry: str, cache: str | os.PathLike | None = None) -> list[float | None] | None:
    """The cached accuracies of one entry (None at severities never computed), or None if it is
    missing or unreadable (then recomputed)."""
    path = cache_dir(cache) / f"{key}.json"
    try:
        acc = json.loads(path.read_text(encoding="utf-8"))["accuracy"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as e:
        warnings.warn(f"ignoring unreadable robustness cache entry {path}: {e}")
        return None
    if (not isinstance(acc, list) or len(acc) != _entry_length(entry)
            or not all(a is None or (isinstance(a, (int, float)) and 0 <= a <= 1) for a in acc)
            or all(a is None for a in acc)):
        warnings.warn(f"ignoring robustness cache entry {path}: not {_entry_length(entry)} accuracies")
        return None
    return [None if a is None else float(a) for a in acc]


def store_entry(key: str, target: Target, entry: str, accuracy: list[float | None], slice_digest: str,
                cache: str | os.PathLike | None = None) -> Path | None:
    """Write atomically; a read-only cache costs time, not correctness."""
    path = cache_dir(cache) / f"{key}.json"
    record = {"model": target.model, "sha256": target.sha256, "slice": slice_digest, "corruption": entry,
              "corruptions_version": CORRUPTIONS_VERSION, "accuracy": accuracy}
    try:
        return fsio.atomic_write_text(path, json.dumps(record, indent=1))
    except OSError as e:
        warnings.warn(f"could not write the robustness cache {path}: {e}")
        return None


# ----------------------------------------------------------------------------- computing

def load_model(target: Target) -> nn.Module:
    """The target's model from weights.load (the app's tabs share its cache)."""
    return weights.load(target.ref).model


def accuracy(model: nn.Module, target: Target, images: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy on uint8 images, scored exactly as a plain evaluation scores them."""
    return evaluate.evaluate(model, (images, labels)).accuracy


def compute(targets: Sequence[Target], corruptions: Iterable[str] | None = None, *, split: data_mod.Split,
            dataset: str = "", cache: str | os.PathLike | Callable[[Target], str | os.PathLike | None] | None = None,
            progress: Progress | None = None, cached_only: bool = False,
            severities: Iterable[int] | None = None) -> dict:
    """Each target's accuracy on `split`, clean and under each corruption (default: all) at
    `severities` (default: 1..5; the others are taken from the cache where they are there).

    `cache`: the cache folder (None: data.cache_root()), or a function giving each target its own
    (evalcache.run_cache: a visitor's run in its own folder, shipped weights in the shared one).
    Values found in the cache are not recomputed; with `cached_only` nothing is, and what is
    missing comes back as None. `progress(done, total)` follows the evaluations still to run
    (one per model and corrupted slice). Returns plain data (json.dumps works):
    {"models": {name: {"model", "sha256", "accuracy": {corruption: [acc at severity 0..5]}}},
     "corruptions", "severities", "slice": {"n", "digest", "dataset", "seed"}, "versions",
     "computed": evaluations run by this call, "seconds"}.
    """
    t0 = time.perf_counter()
    names = list(corruptions) if corruptions is not None else list(CORRUPTIONS)
    for name in names:
        get_corruption(name)  # an unknown name fails before any work
    wanted = sorted(set(SEVERITIES[1:] if severities is None else severities))
    if not wanted or not set(wanted) <= set(SEVERITIES[1:]):
        raise ValueError(f"severities must be among 1..{MAX_SEVERITY}, not {severities!r}")
    digest = data_mod.split_digest(split)
    cache_of = cache if callable(cache) else (lambda _t: cache)
    found = {(t.name, e): load_entry(cache_key(t, e, digest), e, cache_of(t))
             for t in targets for e in [CLEAN, *names]}

    def needed(t: Target, entry: str) -> list[int]:
        """The severities (0 for the clean entry) still to compute for this target."""
        have = found[t.name, entry]
        want = [0] if entry == CLEAN else wanted
        return [s for s in want if have is None or have[0 if entry == CLEAN else s - 1] is None]

    todo = {e: {t.name: needed(t, e) for t in targets} for e in [CLEAN, *names]}
    if cached_only:
        todo = {e: {} for e in todo}
    total = sum(len(sevs) for per in todo.values() for sevs in per.values())
    done, models = 0, {}

    def run(target: Target, images: Tensor) -> float:
        nonlocal done
        if target.name not in models:
            models[target.name] = load_model(target)
        acc = accuracy(models[target.name], target, images, split.labels)
        done += 1
        if progress is not None:
            progress(done, total)
        return acc

    for entry, per in todo.items():
        ts = [t for t in targets if per.get(t.name)]
        if not ts:
            continue
        accs = {t.name: list(found[t.name, entry] or [None] * _entry_length(entry)) for t in ts}
        if entry == CLEAN:
            for t in ts:
                accs[t.name][0] = run(t, split.images)
        else:
            for severity in sorted({s for t in ts for s in per[t.name]}):
                images = corrupt(split.images, entry, severity)   # once for every model
                for t in ts:
                    if severity in per[t.name]:
                        accs[t.name][severity - 1] = run(t, images)
        for t in ts:
            found[t.name, entry] = accs[t.name]
            store_entry(cache_key(t, entry, digest), t, entry, accs[t.name], digest, cache_of(t))

    def curve(t: Target, name: str) -> list[float | None]:
        clean, rest = found[t.name, CLEAN], found[t.name, name]
        return [clean[0] if clean else None] + (rest if rest else [None] * MAX_SEVERITY)

    return {
        "models": {t.name: {"model": t.model, "sha256": t.sha256,
                            "accuracy": {name: curve(t, name) for name in names}} for t in targets},
        "corruptions": names, "severities": list(SEVERITIES),
        "slice": {"n": len(split), "digest": digest, "dataset": dataset, "seed": SLICE_SEED},
        "versions": {"cache": CACHE_VERSION, "corruptions": CORRUPTIONS_VERSION},
        "computed": done, "seconds": round(time.perf_counter() - t0, 3),
    }


def shipped_targets(names: Iterable[str] | None = None) -> list[Target]:
    """Targets of shipped weights by model name; None or "all" means every model in weights/."""
    names = list(names or ["all"])
    if names == ["all"]:
        names = weights.available()
    return [evalcache.shipped(n) for n in names]


def compute_shipped(names: Iterable[str] | None = None, corruptions: Iterable[str] | None = None, *,
                    source: str | os.PathLike | data_mod.DataSource | None = None, n: int = DEFAULT_N,
                    cache: str | os.PathLike | None = None, progress: Progress | None = None,
                    cached_only: bool = False, severities: Iterable[int] | None = None) -> dict:
    """compute() for shipped weights on the default slice of `source` (the usual search if None)."""
    src = data_mod.resolve_source(source, download=False) if not isinstance(source, data_mod.DataSource) else source
    return compute(shipped_targets(names), corruptions, split=test_slice(src, n), dataset=src.label,
                   cache=cache, progress=progress, cached_only=cached_only, severities=severities)


def missing(result: dict) -> int:
    """How many (model, corruption) curves of a result are incomplete."""
    return sum(any(a is None for a in curve) for m in result["models"].values() for curve in m["accuracy"].values())


# ----------------------------------------------------------------------------- presenting

def _pct(a: float | None) -> str:
    return "-" if a is None else f"{100 * a:.1f}"


def _mean(values: list[float | None]) -> float | None:
    return None if not values or any(v is None for v in values) else sum(values) / len(values)


def format_table(result: dict, corruption: str | None = None, severity: int = DEFAULT_SEVERITY,
                 fmt: str = "text") -> str:
    """A caption line, then accuracies in percent, one column per model.

    With `corruption`: one row per severity 0..5. Without: one row per corruption at
    `severity`, between a "clean" row and a "mean" row (the mean over the corruptions).
    Missing values print as "-".
    """
    models = list(result["models"])
    acc = {m: result["models"][m]["accuracy"] for m in models}
    sl = result["slice"]
    where = f"{sl['n']:,} class-balanced test images" + (f" of {sl['dataset']}" if sl["dataset"] else "")
    if corruption is not None:
        if corruption not in result["corruptions"]:
            raise ValueError(f"{corruption!r} is not in this result ({', '.join(result['corruptions'])})")
        caption = f"Accuracy (%) under {CORRUPTIONS[corruption].title.lower()}, by severity, on {where}"
        rows = [["0 (clean)" if s == 0 else str(s), *[_pct(acc[m][corruption][s]) for m in models]]
                for s in SEVERITIES]
        head = ["severity", *models]
    else:
        if severity not in SEVERITIES[1:]:
            raise ValueError(f"severity must be 1..{MAX_SEVERITY}, not {severity!r}")
        caption = f"Accuracy (%) at severity {severity} of {MAX_SEVERITY}, on {where}"
        first = result["corruptions"][0] if result["corruptions"] else None
        rows = [["clean", *[_pct(acc[m][first][0] if first else None) for m in models]]]
        rows += [[c, *[_pct(acc[m][c][severity]) for m in models]] for c in result["corruptions"]]
        rows.append(["mean", *[_pct(_mean([acc[m][c][severity] for c in result["corruptions"]])) for m in models]])
        head = ["corruption", *models]
    return caption + "\n" + tables.render(head, rows, right=range(1, len(head)), fmt=fmt)


def curves(result: dict, corruption: str) -> dict[str, list[float | None]]:
    """{model: accuracy at severity 0..5} for one corruption: what plots.accuracy_vs_severity draws."""
    return {m: r["accuracy"][corruption] for m, r in result["models"].items()}

