"""Issue 38's lessons on the command line: `label-errors` (the test set's reviewed labels),
`attack` (adversarial examples) and `lr-find` (the learning-rate range test). Registered by
add_parsers(sub) from cli/__init__.py."""

from __future__ import annotations

import sys

from .errors import CliError


def add_parsers(sub) -> None:
    p = sub.add_parser("label-errors", help="accuracy against the reviewers' labels of CIFAR-10's test set "
                                            "(cleanlab's label errors)")
    p.add_argument("--model", nargs="+", default=["all"], metavar="M",
                   help="shipped model name(s), or 'all' (the default)")
    p.add_argument("--data", help="dataset folder (default: the usual search, no download)")
    p.add_argument("--list", action="store_true", help="list the 54 pictures whose label the reviewers rejected")
    p.set_defaults(func=cmd_label_errors)

    p = sub.add_parser("attack", help="adversarial examples: accuracy against epsilon (FGSM/PGD, cached), "
                                      "or one picture on every model")
    p.add_argument("--model", nargs="+", required=True, metavar="M",
                   help="shipped model name(s), or 'all'; with --image the first one is attacked")
    p.add_argument("--method", default="pgd", choices=("fgsm", "pgd"))
    p.add_argument("--eps", type=float, nargs="+", default=None, metavar="E",
                   help="epsilon in 1/255 steps (default 0 1 2 4 8; one value: 0 and that one)")
    p.add_argument("--steps", type=int, default=10, help="PGD's steps (default 10)")
    p.add_argument("--n", type=int, default=200, help="test images in the class-balanced slice (default 200)")
    p.add_argument("--data", help="dataset folder (default: the usual search, no download)")
    p.add_argument("--image", help="attack this picture instead and print every model's answer before and after")
    p.set_defaults(func=cmd_attack)

    p = sub.add_parser("lr-find", help="the learning-rate range test (Smith 2015) for a model and preset")
    p.add_argument("--model", help="zoo model (default: the preset's)")
    p.add_argument("--preset", help="named preset (default: the model's own recipe)")
    p.add_argument("--config", metavar="JSON", help="a TrainConfig JSON file instead (the app's jobs use it)")
    p.add_argument("--data", help="dataset folder or .zip (default: the usual search)")
    p.add_argument("--steps", type=int, default=200, help="steps of the sweep (default 200)")
    p.add_argument("--start-lr", type=float, default=1e-6)
    p.add_argument("--end-lr", type=float, default=10.0)
    p.add_argument("--train-limit", type=int, default=None, help="use only this many training images")
    p.add_argument("--out", metavar="FILE", help="write the result as JSON (and FILE.png: the plot)")
    p.set_defaults(func=cmd_lr_find)


def _shipped(names: list[str]) -> list[str]:
    from .. import weights  # lazy: the CLI parses its flags without importing torch

    have = weights.available()
    if names == ["all"]:
        return have
    unknown = [n for n in names if n not in have]
    if unknown:
        raise CliError(f"no shipped weights for {', '.join(unknown)}; shipped: {', '.join(have)}")
    return names


def cmd_label_errors(args) -> int:
    from .. import data  # lazy: the CLI parses its flags without importing torch
    from ..analysis import evalcache, label_check  # lazy: the CLI parses its flags without importing torch
    from ..common import CLASSES  # lazy: the CLI parses its flags without importing torch
    from ..data import label_errors  # lazy: the CLI parses its flags without importing torch

    source = data.resolve_source(args.data, download=False)
    why = label_errors.not_applicable(source)
    if why:
        raise CliError(why)
    flagged = label_errors.index_map(source)
    if args.list:
        for i, f in sorted(flagged.items()):
            print(f"#{i:5d}  {f.export_path:24s}  {CLASSES[f.given]:10s}  {f.describe()}")
        print(f"{len(flagged)} pictures. {label_errors.ATTRIBUTION}")
        return 0
    n_major = sum(f.majority is not None for f in flagged.values())
    print(f"{source.label}: {len(flagged)} label errors found by reviewers, {n_major} with a majority for another "
          "class. Whole test set, no TTA (cached per weights file, as the Evaluate tab).")
    print(f"{'model':15s} {'as labelled':>12s} {'reviewers':>10s} {'the label is wrong':>19s} "
          f"{'right by a wrong label':>23s}")
    for name in _shipped(args.model):
        print(f"scoring {name} ...", end="\r", file=sys.stderr, flush=True)
        res, _ = evalcache.evaluate_target(evalcache.shipped(name), "none", source)
        r = label_check.rescore(res.labels, res.predictions, flagged)
        print(f"{name:15s} {r.accuracy:12.2%} {r.accuracy_majority:10.2%} {len(r.label_mistakes):>13d} of {n_major:<3d}"
              f" {len(r.new_mistakes):>17d} of {n_major:<3d}")
    print("'the label is wrong': its answer differs from the label and is the reviewers' majority label; 'right by "
          f"a wrong label': it agrees with a label the reviewers replaced. {label_errors.ATTRIBUTION}")
    return 0


def cmd_attack(args) -> int:
    from .. import weights  # lazy: the CLI parses its flags without importing torch
    from ..analysis import adversarial  # lazy: the CLI parses its flags without importing torch
    from ..data import pictures  # lazy: the CLI parses its flags without importing torch

    names = _shipped(args.model)
    eps = args.eps if args.eps is None or len(args.eps) > 1 else [0, *args.eps]
    eps = adversarial.DEFAULT_EPS if eps is None else eps
    if args.image:
        image = pictures.thumbnail(args.image)
        others = {n: weights.load(n).model for n in weights.available()
                  if tuple(weights.card_for(n).class_names) == tuple(weights.card_for(names[0]).class_names)}
        r = adversarial.attack_picture(image, weights.load(names[0]).model, names[0], args.method, max(eps),
                                       args.steps, others)
        print(f"{args.method.upper()} at eps {r.eps:g}/255 on {r.model}, pushed away from its answer {r.label}:")
        for a in r.answers:
            flip = "  changed" if a["before"] != a["after"] else ""
            print(f"{a['model']:15s} {a['before']:>10s} {a['p_before']:5.0%}  ->  {a['after']:>10s} "
                  f"{a['p_after']:5.0%}{flip}")
        return 0

    def progress(done: int, total: int) -> None:
        print(f"\r{done}/{total} attacks (model x epsilon)", end="\n" if done == total else "", file=sys.stderr,
              flush=True)

    result = adversarial.compute_shipped(names, args.method, eps, source=args.data, n=args.n, steps=args.steps,
                                         progress=progress)
    print(adversarial.format_table(result))
    return 0


def cmd_lr_find(args) -> int:
    import json  # lazy: only this command writes JSON
    from pathlib import Path  # lazy: only this command writes files

    from ..analysis import lr_find  # lazy: the CLI parses its flags without importing torch
    from ..recipe import TrainConfig  # lazy: the CLI parses its flags without importing torch
    from ..reporting import plots_lessons  # lazy: the CLI parses its flags without importing torch
    from ..train import make_config  # lazy: the CLI parses its flags without importing torch

    if args.config:
        cfg = TrainConfig.from_json(Path(args.config).read_text(encoding="utf-8"))
    else:
        cfg = make_config(args.preset, model=args.model, data=args.data, train_limit=args.train_limit)

    def progress(step: int, steps: int, lr: float, loss: float) -> None:
        print(f"\rstep {step}/{steps}  lr {lr:.2e}  smoothed loss {loss:.3f}", end="", file=sys.stderr, flush=True)

    r = lr_find.range_test(cfg, steps=args.steps, start_lr=args.start_lr, end_lr=args.end_lr, progress=progress)
    print(file=sys.stderr)
    print(f"{cfg.model} ({cfg.preset or 'its own recipe'}, {cfg.optimizer}, batch {cfg.batch_size}): "
          f"{len(r.lrs)} steps from lr {r.start_lr:g} in {r.seconds:.0f} s"
          + (f"; stopped: {r.stopped}" if r.stopped else "") + ".")
    print(r.meaning())
    if r.min_over_10 is not None:
        print(f"The minimum's rate / 10: {r.min_over_10:.2g}.")
    print(f"Rule: {r.rule}.")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(r.as_dict(), indent=1), encoding="utf-8")
        plots_lessons.lr_find_plot(r.as_dict()).savefig(out.with_suffix(".png"), dpi=100)
        print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0
