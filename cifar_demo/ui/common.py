"""What more than one tab shows: the dataset status line. Tabs import from here, never from each other."""

from __future__ import annotations

import html

from .. import data


def data_status() -> str:
    """HTML: which dataset training will read, or exactly how to provide one."""
    try:
        src = data.resolve_source(download=False)
    except data.DataSourceError as e:
        return no_data_html(e)
    return (f'<div style="padding:6px 0">Dataset: <b>{html.escape(src.label)}</b>, read from '
            f"<code>{html.escape(str(src.path))}</code>.</div>")


def no_data_html(error: Exception) -> str:
    # pre-wrap keeps the message's numbered options and indentation, and wraps long lines.
    return ('<div style="border-left:4px solid #ef4444;background:#fef2f2;padding:10px 14px;border-radius:4px">'
            '<b style="font-size:1.1em">No CIFAR-10 data found</b>'
            f'<div style="white-space:pre-wrap;font-family:monospace;font-size:0.9em;margin:8px 0">'
            f"{html.escape(str(error))}</div>Or download the official files with the button below. "
            "Then reload this page.</div>")
