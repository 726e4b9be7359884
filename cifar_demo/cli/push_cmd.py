"""`push`: a finished run's weights + card to a Hugging Face Hub repo (token from HF_TOKEN or the login)."""

from __future__ import annotations


def cmd_push(args) -> int:
    from ..reporting.export import push_run  # lazy: the CLI parses its flags without importing torch

    result = push_run(args.run_id, args.repo, runs_dir=args.runs_dir, private=args.private, dtype=args.dtype,
                      data=args.data, readme=not args.no_readme)
    card = result.card
    print(f"pushed {card.model} (test accuracy {100 * card.test_accuracy:.2f}% on {card.dataset}) to {result.url}")
    print(f"  {', '.join(result.files)}")
    print(f"  where weights/ lacks {card.model}, `CIFAR_DEMO_HUB_REPO={result.repo} python -m cifar_demo "
          f"evaluate --model {card.model}` loads it from there")
    return 0
