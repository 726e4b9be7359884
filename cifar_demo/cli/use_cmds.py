"""The commands that use models: `zoo`, `predict`, `export`, `familiarity`, `robustness`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .errors import CliError

# ---------------------------------------------------------------------------- zoo


def cmd_zoo(args) -> int:
    from .. import zoo  # lazy: the CLI parses its flags without importing torch

    specs = zoo.specs()
    if args.latency is not None:
        from ..reporting.report import (  # lazy: the CLI parses its flags without importing torch
            LATENCY_FILE,
            latency_note,
            measure_latency,
        )

        path = args.latency or LATENCY_FILE
        record = measure_latency(path)
        for name, ms in record["latency_ms"].items():
            print(f"{name:15s} {ms:7.2f} ms")
        print(f"{latency_note(record)}\nwrote {path}")
        return 0
    if args.json:
        print(json.dumps(zoo.specs_as_dicts(), indent=2))
    elif args.markdown:
        from ..reporting.report import (  # lazy: the CLI parses its flags without importing torch
            write_blocks,
            zoo_markdown,
        )

        if args.markdown == "-":
            print(zoo_markdown())
        else:   # README.md has the short table's markers, docs/zoo.md the details' (report.BLOCKS)
            filled = write_blocks(args.markdown)
            print(f"wrote {', '.join(filled)} into the markers of {args.markdown}" if filled
                  else f"wrote the zoo table to {args.markdown}")
    else:
        print(zoo.format_table(specs, fmt="text"))
    return 0


# ---------------------------------------------------------------------------- predict


def cmd_predict(args) -> int:
    from ..analysis import predict  # lazy: the CLI parses its flags without importing torch
    from ..data import pictures  # lazy: the CLI parses its flags without importing torch

    files = _load_weights_files(args.weights or []) + _load_runs(getattr(args, "run", None) or [], args.runs_dir)
    results = {}
    for path in args.images:
        try:
            image32 = pictures.thumbnail(path)
        except pictures.ImageError as exc:
            raise CliError(str(exc)) from None
        # --weights / --run alone: only those; with --model too (or neither): the shipped ones as well.
        preds = predict.predict_many(image32, args.model or None) if args.model or not files else []
        preds += [_predict_file(label, model, arch, classes, image32) for label, model, arch, classes in files]
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


def _load_weights_files(paths: list[str]) -> list[tuple[str, object, str, tuple[str, ...]]]:
    """[(label, model, zoo architecture, classes)] of each --weights FILE, verified like shipped
    weights (CliError if not); the classes are its card's.

    The label is the file's name (its path where two names collide), so several downloads of
    the same model can be compared side by side."""

    from .. import weights  # lazy: the CLI parses its flags without importing torch

    names = [Path(p).name for p in paths]
    out = []
    for path, name in zip(paths, names):
        try:
            loaded = weights.load(weights.ModelRef.file(path))  # verified, warmed up, cached
        except weights.WeightsError as exc:
            raise CliError(str(exc)) from None
        model, card = loaded.model, loaded.card
        out.append((name if names.count(name) == 1 else path, model, card.zoo_name, card.class_names))
    return out


def _load_runs(run_ids: list[str], runs_dir=None) -> list[tuple[str, object, str, tuple[str, ...]]]:
    """[("run <id>", model, zoo architecture, classes)] of each --run: its best weights and classes."""
    from .. import weights  # lazy: the CLI parses its flags without importing torch

    out = []
    for run_id in run_ids:
        loaded = weights.load(weights.ModelRef.run(run_id, runs_dir))
        out.append((loaded.label, loaded.model, loaded.architecture, loaded.classes))
    return out


def _predict_file(label: str, model, arch: str, classes, image32):
    from ..analysis import predict  # lazy: the CLI parses its flags without importing torch

    probs, ms = predict.predict_one(model, image32, classes)
    return predict.Prediction(label, probs, ms)


# ---------------------------------------------------------------------------- export


def cmd_export(args) -> int:
    from ..reporting.export import export_run  # lazy: the CLI parses its flags without importing torch

    weights_path, card_path, card = export_run(args.run_id, runs_dir=args.runs_dir, out_dir=args.out,
                                               dtype=args.dtype, data=args.data, name=args.name)
    print(f"exported {card.model}: test accuracy {100 * card.test_accuracy:.2f}% "
          f"(TTA {100 * card.test_accuracy_tta:.2f}%) on {card.dataset}")
    print(f"  classes: {', '.join(card.class_names)}")
    print(f"  {weights_path}\n  {card_path}")
    return 0

# ---------------------------------------------------------------------------- familiarity


def cmd_familiarity(args) -> int:
    from .. import data, weights  # lazy: the CLI parses its flags without importing torch
    from ..analysis import familiarity  # lazy: the CLI parses its flags without importing torch

    if args.calibrate:
        names = weights.available()
        loaded = {n: (lm.model, lm.card) for n, lm in ((n, weights.load(n)) for n in names)}
        # The reference images must be ones no model trained on: the validation split of the
        # cards' own (val_size, seed).
        splits = {(c.train_config.get("val_size"), c.train_config.get("seed")) for _, c in loaded.values()}
        if len(splits) != 1 or not next(iter(splits))[0]:
            raise CliError(f"the shipped models were trained with different or no validation splits: {splits}")
        val_size, seed = splits.pop()
        ds = data.load_cifar10(args.data, val_size=val_size, seed=seed)
        folder = Path(args.out) if args.out else familiarity.calibration_dir()
        previous = None
        if not args.from_scratch:
            try:   # unchanged models (same weights, same images) keep their fitted part
                previous = familiarity.Calibration.load(folder)
            except familiarity.FamiliarityError:
                previous = None
        cal = familiarity.calibrate(loaded, ds, previous=previous,
                                    progress=lambda i, n, name: print(f"[{i + 1}/{n}] {name}", flush=True))
        cal.save(folder)
        c = cal.card
        kept = f"; kept the fit of {', '.join(c['reused'])} (same weights and images)" if c["reused"] else ""
        print(f"threshold {cal.threshold:.2f}: flags {c['false_alarm_val']:.1%} of {c['threshold_images']} "
              f"validation and {c['false_alarm_test']:.1%} of {c['test_images']} test images "
              f"({c['dataset']}); {c['seconds']:.0f} s{kept}; wrote {folder}")
        return 0
    from ..data import pictures  # lazy: the CLI parses its flags without importing torch

    if not args.images:
        raise CliError("give image files to score, or --calibrate")
    out = {}
    for path in args.images:
        verdict = familiarity.assess(pictures.thumbnail(path))
        out[path] = verdict.to_dict()
        if not args.json:
            word = "UNFAMILIAR" if verdict.unfamiliar else "familiar"
            print(f"{path}: {word} (score {verdict.score:.1f}, threshold {verdict.threshold:.1f})")
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


# ---------------------------------------------------------------------------- robustness


def cmd_robustness(args) -> int:
    from ..analysis import robustness  # lazy: the CLI parses its flags without importing torch

    def progress(done: int, total: int) -> None:
        if not args.json:
            print(f"\r{done}/{total} evaluations (model x corrupted slice)", end="\n" if done == total else "",
                  file=sys.stderr, flush=True)

    # Compute what is shown: a table over every corruption shows one severity (a fifth of the work).
    severities = None if args.corruption or args.json else [args.severity]
    result = robustness.compute_shipped(args.model, [args.corruption] if args.corruption else None,
                                        source=args.data, n=args.n, progress=progress, severities=severities)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(robustness.format_table(result, corruption=args.corruption, severity=args.severity))
    return 0
