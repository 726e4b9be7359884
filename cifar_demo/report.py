"""Tables that combine the zoo registry with the shipped model cards (README, CLI)."""

from __future__ import annotations

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
            "accuracy here", "with TTA", "epochs", "training time", "recipe"]
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
    return "\n".join(lines)


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
