"""Issue 38's lessons on the command line: `label-errors` (the test set's reviewed labels) and
`attack` (adversarial examples). Registered by add_parsers(sub) from cli/__init__.py."""

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
