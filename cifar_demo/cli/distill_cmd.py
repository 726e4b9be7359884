"""python -m cifar_demo distill-targets: the teachers' probabilities on the training images,
for a distilled run (train.distill)."""

from __future__ import annotations

from .errors import CliError


def cmd_distill_targets(args) -> int:
    from .. import data, weights  # lazy: the CLI parses its flags without importing torch
    from ..train import distill  # lazy: the CLI parses its flags without importing torch

    names = [n.strip() for n in args.teachers.split(",") if n.strip()]
    missing = sorted(set(names) - set(weights.available()))
    if missing:
        raise CliError(f"no shipped weights for {', '.join(missing)}; shipped: {', '.join(weights.available())}")
    ds = data.load_cifar10(args.data, val_size=args.val_size, seed=args.seed)
    print(f"teachers {', '.join(names)} on {ds.source.label}: {len(ds.train)} training images "
          f"(validation {len(ds.val)}, seed {args.seed}), tta={args.tta}", flush=True)
    if args.val_only:
        if not len(ds.val):
            raise CliError("--val-only needs a validation split (--val-size > 0)")
        for name in names:
            distill.check_teacher(name, ds, args.seed)
        distill.validation_accuracy(names, ds, tta=args.tta, device=args.device, progress=args.progress)
        return 0
    if not args.out:
        raise CliError("give --out FILE (or --val-only)")
    targets = distill.make_targets(names, ds, args.seed, tta=args.tta, device=args.device, progress=args.progress)
    path = distill.save(targets, args.out)
    m = targets.meta
    print(f"wrote {path}: {m['n']} images, teachers' training accuracy {m['train_accuracy']:.2%}, "
          f"{m['seconds']:.0f} s. Train with --distill {path} (and --distill-weight)")
    return 0
