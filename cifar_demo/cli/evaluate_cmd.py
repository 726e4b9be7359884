"""`evaluate`: score shipped weights, a weights file or a run on the test split; metrics and plots."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import CliError

# ---------------------------------------------------------------------------- evaluate

PER_IMAGE_KEYS = ("labels", "predictions", "confidences", "probabilities", "misclassified")


def _model_from_args(args):
    """(model, name, card or None, config dict or None, zoo architecture, classes) from
    --model / --weights / --run. The classes are the run's or the card's."""
    from .. import weights  # lazy: the CLI parses its flags without importing torch

    chosen = [x for x in (args.model, args.weights, args.run) if x]
    if len(chosen) != 1:
        raise CliError("give exactly one of --model NAME, --weights FILE or --run RUN_ID")
    if args.run:
        ref = weights.ModelRef.run(args.run, args.runs_dir)
    elif args.weights:   # a user's file: a run's download (.zip) or a pair, checked as predict does
        ref = weights.ModelRef.file(args.weights)
    else:
        ref = weights.ModelRef.shipped(args.model)
    try:
        m = weights.load(ref)
    except weights.WeightsError as e:
        raise CliError(str(e)) from None
    name = m.card.model if m.card else args.run
    return m.model, name, m.card, m.config, m.architecture, m.classes


def _scored_split(data_arg, start: int = 0, limit: int = 0, step: int = 1, classes=None, val: tuple | None = None):
    """The split to score: the test split of `data_arg`, or with val=(val_size, seed) the
    validation split a run with that size and seed held out of train, sliced by
    start/limit/step; CliError if its classes are not `classes` (the model's): a model scored
    on another class list would be scored on nonsense."""
    from .. import data  # lazy: the CLI parses its flags without importing torch

    source = data.resolve_source(data_arg)
    if classes is not None and tuple(source.classes) != tuple(classes):
        raise CliError(f"the model predicts {', '.join(classes)}; {source.label} has the classes "
                       f"{', '.join(source.classes)}. Give --data with the model's dataset")
    if val is not None:
        split = data.load_dataset(source, val_size=val[0], seed=val[1]).val
        if not len(split):
            raise CliError("--split val with --val-size 0 selects no image")
    else:
        split = data.load_split("test", source)
    if start or limit or step != 1:
        if step < 1:
            raise CliError("--step must be >= 1")
        indices = range(start, len(split), step)[: limit or None]
        if not indices:
            raise CliError(f"--start {start} --limit {limit} --step {step} selects no image "
                           f"(there are {len(split)})")
        split = data.subset(split, indices)
    return split


def cmd_evaluate(args) -> int:
    from ..analysis import evaluate  # lazy: the CLI parses its flags without importing torch

    model, name, card, config, arch, classes = _model_from_args(args)
    data_arg = args.data or (config or {}).get("data")
    val = None
    if args.split == "val":
        val = (args.val_size if args.val_size is not None else (config or {}).get("val_size", 5000),
               args.seed if args.seed is not None else (config or {}).get("seed", 0))
    test = _scored_split(data_arg, args.start, args.limit, args.step, classes, val)
    if not 0 <= args.tta_confidence <= 1:
        raise CliError(f"--tta-confidence must be in [0, 1], got {args.tta_confidence}")
    res = evaluate.evaluate(model, test, tta=args.tta, tta_confidence=args.tta_confidence,
                            device=args.device, progress=not args.json, num_classes=len(classes))
    metrics = {k: v for k, v in res.as_dict().items() if k not in PER_IMAGE_KEYS}
    metrics.update(model=name, split=args.split, start=args.start, step=args.step, tta=args.tta, classes=list(classes))
    if args.tta != "none" and args.tta_confidence > 0:
        # How many images got the views: those whose plain top probability is below the bar.
        unsure, plain_acc = res.plain["tta_images"], res.plain["accuracy"]
        metrics.update(tta_confidence=args.tta_confidence, tta_images=unsure, plain_accuracy=plain_acc)
        if not args.json:
            print(f"TTA views for {unsure} of {res.n} images (plain top probability < {args.tta_confidence}); "
                  f"plain accuracy {100 * plain_acc:.2f}%")
    if val is not None:
        metrics.update(val_size=val[0], seed=val[1])
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        _print_metrics(name, res, card, classes, args.split)
    if args.plots:
        _write_plots(res, test, Path(args.plots), classes)
    return 0


def _print_metrics(name, res, card, classes, split: str = "test") -> None:
    # Top-5 says something only where there are more than five classes to rank.
    top5 = f"top-5 {100 * res.topk['top5']:.2f}%, " if len(classes) > 5 else ""
    what = "test images" if split == "test" else "validation images"
    print(f"{name}: accuracy {100 * res.accuracy:.2f}% on {res.n} {what} "
          f"({top5}ECE {res.ece:.3f}, TTA {res.tta})")
    if card is not None:
        print(f"  model card: {100 * card.test_accuracy:.2f}% on {card.dataset}")
    width = max(12, *map(len, classes))
    print(f"  {'class':{width}s} {'acc':>7s} {'prec':>7s} {'recall':>7s} {'F1':>7s}")
    for i, c in enumerate(classes):
        print(f"  {c:{width}s} {100 * res.recall[i]:6.2f}% {100 * res.precision[i]:6.2f}% "
              f"{100 * res.recall[i]:6.2f}% {100 * res.f1[i]:6.2f}%")
    print(f"  {'macro':{width}s} {'':7s} {100 * res.macro_precision:6.2f}% {100 * res.macro_recall:6.2f}% "
          f"{100 * res.macro_f1:6.2f}%")


def _write_plots(res, test, out: Path, classes) -> None:
    from ..reporting import plots  # lazy: the CLI parses its flags without importing torch

    out.mkdir(parents=True, exist_ok=True)
    wrong = res.misclassified[:32]
    figures = {
        "confusion.png": plots.confusion_matrix(res.confusion, classes),
        "confusion_normalized.png": plots.confusion_matrix(res.confusion, classes, normalize=True),
        "per_class_accuracy.png": plots.per_class_accuracy(res.recall, classes),
        "reliability.png": plots.reliability_diagram(res.reliability, res.ece),
        "misclassified.png": plots.misclassified_grid(
            test.images[wrong], [res.labels[i] for i in wrong], [res.predictions[i] for i in wrong],
            [res.confidences[i] for i in wrong], classes),
    }
    for fname, fig in figures.items():
        plots.figure_to_png(fig, out / fname)
    print(f"wrote {len(figures)} figures to {out}")
