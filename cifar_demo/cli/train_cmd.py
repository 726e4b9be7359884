"""`train`: the config flags shared with the parser, and the run summary it prints."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path

from .errors import CliError

# ---------------------------------------------------------------------------- train


# Help for the flags whose use is not obvious from their name.
FLAG_HELP = {
    "data": "dataset: a CIFAR-10 folder, or a folder or .zip of your own images (one folder per class, "
            "any names; train/ and test/ inside, or the class folders alone)",
    "init_from": "start from trained weights: a shipped model (e.g. airnet) or a weights file; the classifier "
                 "head is new when the data's classes differ (alone, it selects --preset finetune); "
                 "'none': from scratch (e.g. the finetune preset's budget without its start)",
    "bn_stats": "BatchNorm statistics in training: batch (default), frozen (keep init_from's), recompute "
                "(once on the training images, then frozen)",
    "backbone_lr_mult": "with --init-from: the pretrained layers learn at lr x this (the new head at lr)",
}


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (defaults None, so only given flags override a preset);
    fields that take a name from the engine's vocabulary offer those names as choices."""
    from ..train import CHOICES, TrainConfig  # lazy: the CLI parses its flags without importing torch

    group = p.add_argument_group("training configuration (override the preset)")
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("preset",):
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        if f.name in FLAG_HELP:
            group.add_argument(flag, dest=f.name, default=None, choices=CHOICES.get(f.name), help=FLAG_HELP[f.name],
                               **({"type": float} if kind == "float" else {}))
        elif f.name in CHOICES:
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
    from .. import train as engine  # lazy: the CLI parses its flags without importing torch

    if args.list_presets:
        for name, preset in sorted(engine.presets().items()):
            print(f"{name:16s} {json.dumps(preset)}")
        return 0
    from ..train import TrainConfig, validate  # lazy: the CLI parses its flags without importing torch

    if args.resume:
        trainer = engine.Trainer.resuming(args.resume, runs_dir=args.runs_dir, console=True,
                                          log_every=args.log_every)
    else:
        overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                     if f.name != "preset" and getattr(args, f.name, None) is not None}
        scratch = str(overrides.get("init_from", "")).lower() == "none"
        if scratch:   # a preset's init_from switched off
            overrides.pop("init_from")
        if args.config:
            base = TrainConfig.from_json(Path(args.config).read_text(encoding="utf-8"))
            cfg = validate(TrainConfig.from_dict({**base.to_dict(), **overrides}))
        elif args.preset is None and "model" not in overrides and "init_from" not in overrides and not scratch:
            raise CliError("give --model NAME or --preset NAME (see `python -m cifar_demo zoo`)")
        else:
            # --init-from alone fine-tunes: the recipe made for a new head on a few hundred images.
            preset = args.preset or ("finetune" if "model" not in overrides else None)
            cfg = engine.make_config(preset, **overrides)
        if scratch and cfg.init_from:
            cfg.init_from = None
            cfg = validate(cfg)
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

    return int(os.environ.get("RANK", 0)) == 0


def _print_summary(s: dict) -> None:
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.2f}%"

    print(f"run {s['run_id']}: {s['status']} after {s['epochs_run']} epoch(s), {s['elapsed_s']:.0f} s "
          f"on {s['device']} ({s['precision']})")
    if s.get("classes"):
        print(f"  data {s.get('dataset')}: classes {', '.join(s['classes'])}")
    print(f"  best validation accuracy {pct(s['best_val_acc'])} (epoch {s['best_epoch']})")
    if s["status"] == "stopped":
        print(f"  stopped: continue with `python -m cifar_demo train --resume {s['run_id']}`")
    else:
        print(f"  test accuracy {pct(s['test_acc'])} on {s['n_test']} images (best weights)")
