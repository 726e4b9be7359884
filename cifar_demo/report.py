"""Tables that combine the zoo registry with the shipped model cards (README, CLI)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from . import weights, zoo

START, END = "<!-- zoo-table:start -->", "<!-- zoo-table:end -->"


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def zoo_markdown() -> str:
    """The README's zoo table: registry figures plus, where weights ship, their card's results."""
    have = set(weights.available())
    head = ["model", "source project", "params", "MACs", "source's accuracy",
            "accuracy here", "with TTA", "epochs", "training time", "default recipe (--preset NAME)"]
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
            zoo.recipe_summary(s.recipe),
        ])
    right = {2, 3, 4, 5, 6, 7, 8}
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---:" if i in right else "---" for i in range(len(head))) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
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
                     f"`python -m cifar_demo export RUN_ID`; {card.epochs} epochs in "
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
