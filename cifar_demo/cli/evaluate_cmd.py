"""`evaluate`: score shipped weights, a weights file or a run on the test split; metrics and plots."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import CliError


# ---------------------------------------------------------------------------- evaluate

PER_IMAGE_KEYS = ("labels", "predictions", "confidences", "probabilities", "misclassified")


def _model_from_args(args):
    """(model, name, card or None, config dict or None) from --model / --weights / --run."""
    from .. import weights

    chosen = [x for x in (args.model, args.weights, args.run) if x]
    if len(chosen) != 1:
        raise CliError("give exactly one of --model NAME, --weights FILE or --run RUN_ID")
    if args.run:
        from ..train import Run

        run = Run.find(args.run, args.runs_dir)
        cfg = run.config()
        return run.load_best(cfg), cfg.model, None, cfg.to_dict()
    model, card = weights.load_weights(args.model or Path(args.weights))
    return model, card.model, card, card.train_config


def _test_split(data_arg, start: int = 0, limit: int = 0, step: int = 1):
    from .. import data

    test = data.load_split("test", data_arg)
    if start or limit or step != 1:
        if step < 1:
            raise CliError("--step must be >= 1")
        indices = range(start, len(test), step)[: limit or None]
        if not indices:
            raise CliError(f"--start {start} --limit {limit} --step {step} selects no test image "
                           f"(there are {len(test)})")
        test = data.subset(test, indices)
    return test


def cmd_evaluate(args) -> int:
    from .. import evaluate, zoo

    model, name, card, config = _model_from_args(args)
    data_arg = args.data or (config or {}).get("data")
    test = _test_split(data_arg, args.start, args.limit, args.step)
    spec = zoo.get_spec(name)
    res = evaluate.evaluate(model, test, tta=args.tta, mean=spec.mean, std=spec.std,
                            device=args.device, progress=not args.json)
    metrics = {k: v for k, v in res.as_dict().items() if k not in PER_IMAGE_KEYS}
    metrics.update(model=name, start=args.start, step=args.step, tta=args.tta)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        _print_metrics(name, res, card)
    if args.plots:
        _write_plots(res, test, Path(args.plots))
    return 0


def _print_metrics(name, res, card) -> None:
    from ..common import CLASSES

    print(f"{name}: accuracy {100 * res.accuracy:.2f}% on {res.n} test images "
          f"(top-5 {100 * res.topk['top5']:.2f}%, ECE {res.ece:.3f}, TTA {res.tta})")
    if card is not None:
        print(f"  model card: {100 * card.test_accuracy:.2f}% on {card.dataset}")
    print(f"  {'class':12s} {'acc':>7s} {'prec':>7s} {'recall':>7s} {'F1':>7s}")
    for i, c in enumerate(CLASSES):
        print(f"  {c:12s} {100 * res.recall[i]:6.2f}% {100 * res.precision[i]:6.2f}% "
              f"{100 * res.recall[i]:6.2f}% {100 * res.f1[i]:6.2f}%")
    print(f"  {'macro':12s} {'':7s} {100 * res.macro_precision:6.2f}% {100 * res.macro_recall:6.2f}% "
          f"{100 * res.macro_f1:6.2f}%")


def _write_plots(res, test, out: Path) -> None:
    from .. import plots
    from ..common import CLASSES

    out.mkdir(parents=True, exist_ok=True)
    wrong = res.misclassified[:32]
    figures = {
        "confusion.png": plots.confusion_matrix(res.confusion, CLASSES),
        "confusion_normalized.png": plots.confusion_matrix(res.confusion, CLASSES, normalize=True),
        "per_class_accuracy.png": plots.per_class_accuracy(res.recall, CLASSES),
        "reliability.png": plots.reliability_diagram(res.reliability, res.ece),
        "misclassified.png": plots.misclassified_grid(
            test.images[wrong], [res.labels[i] for i in wrong], [res.predictions[i] for i in wrong],
            [res.confidences[i] for i in wrong], CLASSES),
    }
    for fname, fig in figures.items():
        plots.figure_to_png(fig, out / fname)
    print(f"wrote {len(figures)} figures to {out}")
