"""Tables that combine the zoo registry with the shipped model cards (README, CLI)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from . import weights, zoo

START, END = "<!-- zoo-table:start -->", "<!-- zoo-table:end -->"
# Measured CPU latencies for the README's table (written by `python -m cifar_demo zoo --latency`).
LATENCY_FILE = Path(__file__).resolve().parents[1] / "docs" / "latency.json"
LATENCY_COMMAND = "python -m cifar_demo zoo --latency"


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def measure_latency(path: str | Path = LATENCY_FILE, runs: int = 50) -> dict:
    """Measure every zoo model's batch-1 CPU latency here and write it, with the machine, to `path`."""
    import platform
    import time

    import torch

    from . import predict

    ms = predict.measure_latency(runs=runs)
    record = {"command": LATENCY_COMMAND, "batch": 1, "precision": "fp32", "runs": runs,
              "threads": torch.get_num_threads(), "hardware": weights.hardware_info(),
              "torch": torch.__version__, "python": platform.python_version(),
              "date": time.strftime("%Y-%m-%d", time.gmtime()),
              "latency_ms": {name: round(v, 2) for name, v in ms.items()}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def read_latency(path: str | Path = LATENCY_FILE) -> dict | None:
    """The measured latencies, or None when they were never measured (or the file is unreadable)."""
    try:
        record = json.loads(Path(path).read_text())
        return record if isinstance(record.get("latency_ms"), dict) else None
    except (OSError, ValueError, AttributeError):
        return None


def latency_note(record: dict) -> str:
    hw = record.get("hardware") or {}
    return (f"CPU latency: one 32x32 image (batch {record['batch']}, {record['precision']}), median of "
            f"{record['runs']} forward passes, measured by `{record['command']}` on {hw.get('cpu', '?')} "
            f"({hw.get('cores', '?')} cores, {record['threads']} threads), torch {record['torch']}, "
            f"{record['date']}.")


def zoo_markdown(latency_path: str | Path = LATENCY_FILE) -> str:
    """The README's zoo table: registry figures, the measured CPU latency, and, where weights
    ship, their card's results."""
    have = set(weights.available())
    latency = read_latency(latency_path)
    lat_ms = (latency or {}).get("latency_ms", {})
    head = ["model", "source project", "params", "MACs", "source's accuracy",
            "accuracy here", "with TTA", "epochs", "training time", "CPU latency",
            "default recipe (--preset NAME)"]
    rows = []
    for s in zoo.specs():
        card = weights.card_for(s.name) if s.name in have else None
        rows.append([
            f"`{s.name}`", s.source, f"{s.params:,}", f"{s.macs / 1e6:,.1f}M",
            "-" if s.reported_accuracy is None else f"{s.reported_accuracy:.2f}%",
            _pct(card.test_accuracy) if card else "no weights yet",
            _pct(card.test_accuracy_tta) if card else "-",
            str(card.epochs) if card else "-",
            f"{card.train_seconds / 60:.0f} min" if card else "-",
            f"{lat_ms[s.name]:.1f} ms" if s.name in lat_ms else "-",
            zoo.recipe_summary(s.recipe),
        ])
    right = {2, 3, 4, 5, 6, 7, 8, 9}
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---:" if i in right else "---" for i in range(len(head))) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    lines += ["", latency_note(latency) if latency else f"CPU latency: not measured yet (`{LATENCY_COMMAND}`)."]
    lines += ["", "How the shipped weights were made (from their cards):", "", provenance_markdown()]
    return "\n".join(lines)


def train_command(config: dict) -> str:
    """The CLI command that reproduces a card's training config: its preset plus the flags
    that differ from it."""
    from .train import make_config

    preset = config.get("preset") or config["model"]
    base = make_config(preset).to_dict()
    flags = []
    for key, value in config.items():
        if key in ("preset", "model") or base.get(key) == value:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, dict):
            flags.append(f"{flag} '{json.dumps(value)}'")
        else:
            flags.append(f"{flag} {value}")
    return " ".join(["python -m cifar_demo train --preset", preset, *flags])


def provenance_markdown() -> str:
    """For each shipped model: the commands that made its weights, and where and how long."""
    lines = []
    for name in weights.available():
        card = weights.card_for(name)
        hw = card.hardware or {}
        lines.append(f"- `{name}`: `{train_command(card.train_config)}`, then "
                     f"`python -m cifar_demo export RUN_ID{' --dtype float16' if card.dtype == 'float16' else ''}`; "
                     f"{card.epochs} epochs in "
                     f"{card.train_seconds / 60:.0f} min on {hw.get('cpu', '?')} ({hw.get('cores', '?')} cores"
                     f"{', ' + hw['gpu'] if hw.get('gpu') else ''}), torch {card.torch_version}, {card.date[:10]}.")
    return "\n".join(lines) if lines else "- no weights shipped yet"


def write_table(path: str | Path, table: str) -> bool:
    """Put `table` between the zoo-table markers of a Markdown file (True), or, if the file has
    no markers, write the table as the whole file (False)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if START in text and END in text:
        pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
        path.write_text(pattern.sub(lambda _: f"{START}\n{table}\n{END}", text, count=1), encoding="utf-8")
        return True
    path.write_text(table + "\n", encoding="utf-8")
    return False
