"""Rendering a table of strings as aligned text (the CLI) or Markdown (the README).

One renderer for every table the project prints, so the zoo's CLI listing and the README's
zoo table cannot drift apart in how they align or escape cells.
"""

from __future__ import annotations

from typing import Collection, Sequence

FORMATS = ("text", "markdown")


def render(head: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int] = (),
           fmt: str = "text") -> str:
    """`rows` under `head`; the columns whose indices are in `right` (numbers) align right.

    text: columns padded to their widest cell, two spaces apart, a dashed rule under the head.
    markdown: a GitHub table; "|" inside a cell is escaped so it cannot split the cell.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be 'text' or 'markdown', not {fmt!r}")
    if any(len(row) != len(head) for row in rows):
        raise ValueError(f"every row needs {len(head)} cells, as the head has")
    if fmt == "markdown":
        def md(row: Sequence[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
        rule = "|" + "|".join("---:" if i in right else "---" for i in range(len(head))) + "|"
        return "\n".join([md(head), rule, *map(md, rows)])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])
