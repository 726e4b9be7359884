"""Command line: python -m cifar_demo {zoo,train,evaluate,predict,export,push,familiarity,robustness,
inspect,distill-targets,label-errors,...} ...

Every command is a thin wrapper over the library; errors print one readable line and
exit with a non-zero status. The parser is here; each command lives in a module of its own.
"""

from __future__ import annotations

import argparse
import sys

from .distill_cmd import cmd_distill_targets
from .errors import CliError
from .evaluate_cmd import cmd_evaluate
from .inspect_cmd import cmd_inspect
from .lessons_cmds import add_parsers as add_lesson_parsers
from .push_cmd import cmd_push
from .train_cmd import _add_config_flags, cmd_train
from .use_cmds import cmd_export, cmd_familiarity, cmd_predict, cmd_robustness, cmd_zoo

__all__ = ["CliError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from ..train import TTA_MODES  # lazy: the CLI parses its flags without importing torch

    parser = argparse.ArgumentParser(prog="cifar-demo",
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

    p = sub.add_parser("evaluate", help="score weights on the test set (or the validation split)")
    p.add_argument("--model", help="a zoo model's shipped weights (weights/NAME.safetensors)")
    p.add_argument("--weights", help="a run's download (.zip), or a .safetensors file with its .json card beside it")
    p.add_argument("--run", help="a run's best weights (run id or directory)")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--data", help="dataset folder or .zip (default: the run's or the usual search)")
    p.add_argument("--split", default="test", choices=("test", "val"),
                   help="val: the validation split held out of train (choose on it, never on test)")
    p.add_argument("--val-size", type=int, default=None,
                   help="with --split val: its size (default: the run's or card's val_size, else 5000)")
    p.add_argument("--seed", type=int, default=None,
                   help="with --split val: the seed that drew it (default: the run's or card's, else 0)")
    p.add_argument("--tta", default="none", choices=TTA_MODES)
    p.add_argument("--tta-confidence", type=float, default=0.0, metavar="C",
                   help="with --tta: the views only for images whose plain top probability is below C "
                        "(0, the default: every image)")
    p.add_argument("--start", type=int, default=0, help="first test image to score")
    p.add_argument("--limit", type=int, default=0, help="score only this many test images")
    p.add_argument("--step", type=int, default=1, help="score every STEP-th test image (from --start)")
    p.add_argument("--device", default=None)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--plots", metavar="DIR", help="also write the figures as PNG files")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="classify image files with every model that has weights (or a run's)")
    p.add_argument("images", nargs="+")
    p.add_argument("--model", action="append", help="only this model (repeatable)")
    p.add_argument("--weights", action="append", metavar="FILE",
                   help="a weights file: a run's download (.zip) or a .safetensors with its .json card "
                        "beside it; checked like shipped weights (repeatable; with no --model, only these)")
    p.add_argument("--run", action="append", metavar="RUN_ID",
                   help="a training run's best weights, with its classes (repeatable; with no --model, only these)")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--topk", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="a run's best weights + model card into weights/")
    p.add_argument("run_id")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--out", default=None, help="target folder (default: the repo's weights/)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    p.add_argument("--data", help="dataset folder (default: the run's)")
    p.add_argument("--name", help="the weights' name (default: the model's; for a run on other classes than "
                                  "CIFAR-10's, MODEL-DATASET: never a shipped model's name)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("push", help="export a run and upload its weights + card to a Hugging Face Hub repo")
    p.add_argument("run_id")
    p.add_argument("--repo", required=True, metavar="USER/NAME", help="the Hub model repo (created if missing)")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its own)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    p.add_argument("--data", help="dataset folder to score on (default: the run's)")
    p.add_argument("--no-readme", action="store_true", help="do not write the repo's README.md page")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("familiarity", help="how CIFAR-like images look to the models; or --calibrate")
    p.add_argument("images", nargs="*")
    p.add_argument("--calibrate", action="store_true",
                   help="fit the score on CIFAR-10 for the shipped weights (writes weights/familiarity/)")
    p.add_argument("--data", help="dataset folder for --calibrate")
    p.add_argument("--out", help="folder for --calibrate (default: weights/familiarity/)")
    p.add_argument("--from-scratch", action="store_true",
                   help="with --calibrate: fit every model again (default: a model whose weights and images "
                        "are those of the calibration in the folder keeps its fit)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_familiarity)

    p = sub.add_parser("robustness", help="accuracy under CIFAR-10-C corruptions x severity (cached)")
    p.add_argument("--model", nargs="+", required=True, metavar="M",
                   help="shipped model name(s), or 'all' for every model in weights/")
    p.add_argument("--corruption", help="one corruption (default: all); the rows are then severities 0-5")
    p.add_argument("--severity", type=int, default=3, choices=range(1, 6),
                   help="the severity shown when every corruption is (default 3); only it is computed then")
    p.add_argument("--n", type=int, default=1000, help="test images in the class-balanced slice (default 1000)")
    p.add_argument("--data", help="dataset folder (default: the usual search, no download)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (every severity)")
    p.set_defaults(func=cmd_robustness)

    p = sub.add_parser("inspect", help="inside the network: every layer's feature maps, the filters, the "
                                       "architecture (and each channel's favourite patches, the embedding map)")
    p.add_argument("image", help="a picture (any size: centre-cropped and shrunk to 32x32)")
    p.add_argument("--model", help="shipped model name, or a weights file (.zip, .safetensors with its card)")
    p.add_argument("--run", help="a run's best weights (run id or directory); with --epoch, a saved epoch's")
    p.add_argument("--epoch", type=int, help="the run's weights after this epoch (the nearest saved one)")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write the pictures to")
    p.add_argument("--channels", type=int, default=16, help="channels per stage, most active first (default 16)")
    p.add_argument("--favourites", action="store_true",
                   help="each shown channel's top-9 patches on 1,000 test pictures (cached per weights file)")
    p.add_argument("--map", type=int, metavar="N", help="the embedding map of N test pictures (100, 1000 or 2000)")
    p.add_argument("--data", help="dataset folder for --favourites/--map (default: the run's or the usual search)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("distill-targets", help="shipped models' probabilities on the training images, "
                                               "to distil them into a run (train --distill FILE)")
    p.add_argument("--teachers", required=True, metavar="A,B,...",
                   help="shipped models whose mean probabilities are the targets (choose them on "
                        "validation: --val-only prints each one's and the mean's accuracy there)")
    p.add_argument("--data", help="dataset folder (default: the usual search, no download)")
    p.add_argument("--val-size", type=int, default=5000,
                   help="the validation split the student will hold out (the teachers must have held out the same)")
    p.add_argument("--seed", type=int, default=0, help="the seed that draws it")
    p.add_argument("--tta", default="flip", choices=TTA_MODES, help="the teachers' test-time augmentation")
    p.add_argument("--val-only", action="store_true", help="only print the validation accuracies")
    p.add_argument("--out", metavar="FILE", help="where to write the targets (.safetensors)")
    p.add_argument("--device", default=None)
    p.add_argument("--progress", action="store_true", help="a progress bar per teacher")
    p.set_defaults(func=cmd_distill_targets)
    add_lesson_parsers(sub)   # label-errors, attack, lr-find (issue 38)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..hardware import keep_freed_memory  # lazy: the CLI parses its flags without importing torch

    keep_freed_memory()   # the commands move batches of tensors: reuse their memory (hardware.py says why)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (CliError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # library errors whose messages are written for the user
        from ..analysis.familiarity import FamiliarityError  # lazy: the CLI parses its flags without importing torch
        from ..data import DataSourceError  # lazy: the CLI parses its flags without importing torch
        from ..weights import WeightsError  # lazy: the CLI parses its flags without importing torch

        if isinstance(exc, (DataSourceError, WeightsError, FamiliarityError)):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
