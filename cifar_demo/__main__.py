"""Command line: python -m cifar_demo {zoo,train,evaluate,predict,export} ...

Every command is a thin wrapper over the library; errors print one readable line and
exit with a non-zero status.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
from pathlib import Path


class CliError(Exception):
    """An error whose message is meant for the user as is."""


# ---------------------------------------------------------------------------- zoo


def cmd_zoo(args) -> int:
    from . import zoo

    specs = zoo.specs()
    if args.latency is not None:
        from .report import LATENCY_FILE, latency_note, measure_latency

        path = args.latency or LATENCY_FILE
        record = measure_latency(path)
        for name, ms in record["latency_ms"].items():
            print(f"{name:15s} {ms:7.2f} ms")
        print(f"{latency_note(record)}\nwrote {path}")
        return 0
    if args.json:
        print(json.dumps(zoo.specs_as_dicts(), indent=2))
    elif args.markdown:
        from .report import write_table, zoo_markdown

        text = zoo_markdown()
        if args.markdown == "-":
            print(text)
        else:
            inside = write_table(args.markdown, text)
            print(f"wrote the zoo table {'into the markers of' if inside else 'to'} {args.markdown}")
    else:
        print(zoo.format_table(specs, fmt="text"))
    return 0


# ---------------------------------------------------------------------------- train


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (defaults None, so only given flags override a preset);
    fields that take a name from the engine's vocabulary offer those names as choices."""
    from .train import CHOICES, TrainConfig

    group = p.add_argument_group("training configuration (override the preset)")
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("preset",):
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        if f.name in CHOICES:
            group.add_argument(flag, dest=f.name, default=None, choices=CHOICES[f.name])
        elif kind == "bool":
            group.add_argument(flag, dest=f.name, default=None, action=argparse.BooleanOptionalAction)
        elif kind == "dict":
            group.add_argument(flag, dest=f.name, default=None, type=_json_dict, metavar="JSON",
                               help=f"e.g. --{f.name.replace('_', '-')} " + "'{\"mixup\": 0.3}'")
        elif kind == "int":
            group.add_argument(flag, dest=f.name, default=None, type=int)
        elif kind == "float":
            group.add_argument(flag, dest=f.name, default=None, type=float)
        else:
            group.add_argument(flag, dest=f.name, default=None, type=str)


def _json_dict(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object like '{\"mixup\": 0.3}'")
    return value


def cmd_train(args) -> int:
    from . import train as engine

    if args.list_presets:
        for name, preset in sorted(engine.presets().items()):
            print(f"{name:16s} {json.dumps(preset)}")
        return 0
    from .train import TrainConfig

    if args.resume:
        trainer = engine.Trainer.resuming(args.resume, runs_dir=args.runs_dir, console=True,
                                          log_every=args.log_every)
    else:
        overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                     if f.name != "preset" and getattr(args, f.name, None) is not None}
        if args.config:
            base = TrainConfig.from_json(Path(args.config).read_text(encoding="utf-8"))
            cfg = TrainConfig.from_dict({**base.to_dict(), **overrides}).validate()
        elif args.preset is None and "model" not in overrides:
            raise CliError("give --model NAME or --preset NAME (see `python -m cifar_demo zoo`)")
        else:
            cfg = engine.make_config(args.preset, **overrides)
        run_dir = engine.runs_root(args.runs_dir) / args.run_id if args.run_id else None
        trainer = engine.Trainer(cfg, run_dir=run_dir, runs_dir=args.runs_dir, console=True,
                                 log_every=args.log_every)
        if trainer.is_main:
            print(f"run {trainer.run_id}: {trainer.run_dir}", file=sys.stderr)
    # SIGTERM (the app's Stop button, a scheduler's preemption) ends the run cleanly at the
    # next step, with a checkpoint to resume from.
    signal.signal(signal.SIGTERM, lambda *_: trainer.stop())
    summary = trainer.run()
    if summary.get("world_size", 1) > 1 and not _is_rank0():
        return 0
    _print_summary(summary)
    return 0


def _is_rank0() -> bool:
    import os

    return int(os.environ.get("RANK", 0)) == 0


def _print_summary(s: dict) -> None:
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.2f}%"

    print(f"run {s['run_id']}: {s['status']} after {s['epochs_run']} epoch(s), {s['elapsed_s']:.0f} s "
          f"on {s['device']} ({s['precision']})")
    print(f"  best validation accuracy {pct(s['best_val_acc'])} (epoch {s['best_epoch']})")
    if s["status"] == "stopped":
        print(f"  stopped: continue with `python -m cifar_demo train --resume {s['run_id']}`")
    else:
        print(f"  test accuracy {pct(s['test_acc'])} on {s['n_test']} images (best weights)")



# ---------------------------------------------------------------------------- evaluate

PER_IMAGE_KEYS = ("labels", "predictions", "confidences", "probabilities", "misclassified")


def _model_from_args(args):
    """(model, name, card or None, config dict or None) from --model / --weights / --run."""
    from . import weights

    chosen = [x for x in (args.model, args.weights, args.run) if x]
    if len(chosen) != 1:
        raise CliError("give exactly one of --model NAME, --weights FILE or --run RUN_ID")
    if args.run:
        from .train import Run

        run = Run.find(args.run, args.runs_dir)
        cfg = run.config()
        return run.load_best(cfg), cfg.model, None, cfg.to_dict()
    model, card = weights.load_weights(args.model or Path(args.weights))
    return model, card.model, card, card.train_config


def _test_split(data_arg, start: int = 0, limit: int = 0, step: int = 1):
    from . import data

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
    from . import evaluate, zoo

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
    from .common import CLASSES

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
    from . import plots
    from .common import CLASSES

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


# ---------------------------------------------------------------------------- predict


def cmd_predict(args) -> int:
    from . import predict

    results = {}
    for path in args.images:
        try:
            image32 = predict.to_32x32(predict.load_image(path))
        except predict.ImageError as exc:
            raise CliError(str(exc)) from None
        preds = predict.predict_many(image32, args.model or None)
        if not any(p.error is None for p in preds):
            reasons = "; ".join(f"{p.model}: {p.error}" for p in preds)
            raise CliError(f"no model could predict: {reasons}")
        results[path] = {p.model: ({"error": p.error} if p.error else
                                   {"top": p.top(args.topk), "latency_ms": round(p.latency_ms, 2)})
                         for p in preds}
        if not args.json:
            print(path)
            for p in preds:
                shown = p.error or ", ".join(f"{c} {100 * q:.1f}%" for c, q in p.top(args.topk))
                print(f"  {p.model:14s} {shown}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


# ---------------------------------------------------------------------------- export


def cmd_export(args) -> int:
    from .export import export_run

    weights_path, card_path, card = export_run(args.run_id, runs_dir=args.runs_dir, out_dir=args.out,
                                               dtype=args.dtype, data=args.data)
    print(f"exported {card.model}: test accuracy {100 * card.test_accuracy:.2f}% "
          f"(TTA {100 * card.test_accuracy_tta:.2f}%) on {card.dataset}")
    print(f"  {weights_path}\n  {card_path}")
    return 0

# ---------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    from .train import TTA_MODES

    parser = argparse.ArgumentParser(prog="python -m cifar_demo",
                                     description="Train, evaluate and use CIFAR-10 classifiers.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("zoo", help="list the model zoo")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the table as JSON")
    fmt.add_argument("--markdown", nargs="?", const="-", metavar="FILE",
                     help="the README's zoo table (registry + model cards) as Markdown: print it, or "
                          "put it between the zoo-table markers of FILE (e.g. README.md)")
    p.add_argument("--latency", nargs="?", const="", metavar="FILE",
                   help="measure every model's batch-1 CPU latency on this machine and write it to FILE "
                        "(default docs/latency.json, which the README's table reads)")
    p.set_defaults(func=cmd_zoo)

    p = sub.add_parser("train", help="train a model (a run directory under runs/)")
    p.add_argument("--preset", help="named preset: a model's recipe or e.g. airnet's speed recipes")
    p.add_argument("--resume", metavar="RUN_ID", help="continue a killed or stopped run")
    p.add_argument("--runs-dir", default=None, help="where run directories go (default runs/, env CIFAR_DEMO_RUNS)")
    p.add_argument("--list-presets", action="store_true", help="print the presets and exit")
    p.add_argument("--config", metavar="JSON", help="start from a TrainConfig JSON file (flags override)")
    p.add_argument("--run-id", help="name of the new run directory (default: time-model-random)")
    p.add_argument("--log-every", type=int, default=None, metavar="N",
                   help="a step event (progress bar, metrics.jsonl) every N steps and at each epoch's end "
                        "(default: every step on one CPU process, every 20 where reading the metrics syncs "
                        "a GPU or the ranks)")
    _add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="score weights on the test set")
    p.add_argument("--model", help="a zoo model's shipped weights (weights/NAME.safetensors)")
    p.add_argument("--weights", help="a .safetensors file with its .json card beside it")
    p.add_argument("--run", help="a run's best weights (run id or directory)")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--data", help="dataset folder (default: the run's or the usual search)")
    p.add_argument("--tta", default="none", choices=TTA_MODES)
    p.add_argument("--start", type=int, default=0, help="first test image to score")
    p.add_argument("--limit", type=int, default=0, help="score only this many test images")
    p.add_argument("--step", type=int, default=1, help="score every STEP-th test image (from --start)")
    p.add_argument("--device", default=None)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--plots", metavar="DIR", help="also write the figures as PNG files")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="classify image files with every model that has weights")
    p.add_argument("images", nargs="+")
    p.add_argument("--model", action="append", help="only this model (repeatable)")
    p.add_argument("--topk", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="a run's best weights + model card into weights/")
    p.add_argument("run_id")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--out", default=None, help="target folder (default: the repo's weights/)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    p.add_argument("--data", help="dataset folder (default: the run's)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("familiarity", help="how CIFAR-like images look to the models; or --calibrate")
    p.add_argument("images", nargs="*")
    p.add_argument("--calibrate", action="store_true",
                   help="fit the score on CIFAR-10 for the shipped weights (writes weights/familiarity/)")
    p.add_argument("--data", help="dataset folder for --calibrate")
    p.add_argument("--out", help="folder for --calibrate (default: weights/familiarity/)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_familiarity)
    return parser


# ---------------------------------------------------------------------------- familiarity


def cmd_familiarity(args) -> int:
    from . import data, familiarity, predict, weights

    if args.calibrate:
        names = weights.available()
        loaded = {n: predict.load_model(n) for n in names}
        # The reference images must be ones no model trained on: the validation split of the
        # cards' own (val_size, seed).
        splits = {(c.train_config.get("val_size"), c.train_config.get("seed")) for _, c in loaded.values()}
        if len(splits) != 1 or not next(iter(splits))[0]:
            raise CliError(f"the shipped models were trained with different or no validation splits: {splits}")
        val_size, seed = splits.pop()
        ds = data.load_cifar10(args.data, val_size=val_size, seed=seed)
        cal = familiarity.calibrate(loaded, ds, progress=lambda i, n, name: print(f"[{i + 1}/{n}] {name}",
                                                                                  flush=True))
        folder = cal.save(Path(args.out) if args.out else familiarity.calibration_dir())
        c = cal.card
        print(f"threshold {cal.threshold:.2f}: flags {c['false_alarm_val']:.1%} of {c['threshold_images']} "
              f"validation and {c['false_alarm_test']:.1%} of {c['test_images']} test images "
              f"({c['dataset']}); {c['seconds']:.0f} s; wrote {folder}")
        return 0
    if not args.images:
        raise CliError("give image files to score, or --calibrate")
    out = {}
    for path in args.images:
        verdict = familiarity.assess(predict.to_32x32(predict.load_image(path)))
        out[path] = verdict.to_dict()
        if not args.json:
            word = "UNFAMILIAR" if verdict.unfamiliar else "familiar"
            print(f"{path}: {word} (score {verdict.score:.1f}, threshold {verdict.threshold:.1f})")
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (CliError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # library errors whose messages are written for the user
        from .data import DataSourceError
        from .weights import WeightsError

        from .familiarity import FamiliarityError

        if isinstance(exc, (DataSourceError, WeightsError, FamiliarityError)):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
