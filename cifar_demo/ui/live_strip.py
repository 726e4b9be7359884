"""The Train tab's live guesses: fixed test pictures (two per class, one column per class) with what the
run's latest weights guess for each and how sure they are, redrawn after every epoch
(analysis.live computes them; this module draws and wires them).

Two events, so a tick stays cheap: whenever the tab's tick records something new (its `seen` state), a
FREE event looks at the run's checkpoint file (one stat) and updates a small key (run id, checkpoint
version) only when a new epoch has written it; that key's change runs the forward pass in the MODELS
lane (ui.context), one at a time with the other model work. Only the page owner's runs are read: the
run id is looked up in the owner's folder alone (train.Run.by_id), whatever a request sends.
"""

from __future__ import annotations

import base64
import html
import io

import gradio as gr
import numpy as np
from PIL import Image

from .. import data, train, weights
from ..analysis import live
from ..common import CLASSES
from .common import owner_of
from .context import AppContext

CELL_PX = 44    # each 32x32 picture drawn at this size (pixelated)
WAITING = "The guesses appear here after the first epoch: the same pictures, redrawn after every epoch."


def _png(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def strip_html(images: np.ndarray, labels: list[str], guesses: tuple[live.Guess, ...] | None, title: str) -> str:
    """One column per class (its name on top), PER_CLASS pictures under it, each captioned with the
    guess (green when right, red when wrong) and its confidence; no captions before the first epoch."""
    classes = list(dict.fromkeys(labels))
    cols = []
    for cls in classes:
        head = "font-size:11px;font-weight:600;height:15px;overflow:hidden;white-space:nowrap"
        cells = [f'<div style="{head}">{html.escape(cls)}</div>']
        for i in (i for i, lab in enumerate(labels) if lab == cls):
            g = guesses[i] if guesses else None
            border = "#d4d4d8" if g is None else ("#16a34a" if g.correct else "#dc2626")
            # Two short lines (the guess, then how sure): a 44-pixel column cannot hold "automobile 34%".
            caption = ("&nbsp;<br>&nbsp;" if g is None else
                       f'<span style="color:{border}">{html.escape(g.guess)}</span><br>{100 * g.confidence:.0f}%')
            tip = "" if g is None else f' title="{html.escape(f"{g.guess}, {100 * g.confidence:.0f}% sure")}"'
            cells.append(f'<img src="{_png(images[i])}" alt="{html.escape(cls)}" width="{CELL_PX}" height="{CELL_PX}" '
                         f'style="image-rendering:pixelated;border:3px solid {border};border-radius:4px;'
                         f'display:block;margin:3px auto 0"{tip}><div class="live-guess" '
                         f'style="font-size:10px;line-height:11px;height:22px;white-space:nowrap;overflow:hidden">'
                         f"{caption}</div>")
        cols.append(f'<div style="text-align:center;min-width:{CELL_PX + 6}px;flex:1">{"".join(cells)}</div>')
    return (f'<div id="live-strip-body"><div style="font-size:0.95em;margin-bottom:4px">{title}</div>'
            f'<div style="display:flex;flex-wrap:wrap;gap:2px">{"".join(cols)}</div></div>')


def empty_strip(message: str = WAITING) -> str:
    """CIFAR-10's strip pictures without guesses (a run of other classes shows its own once it trains)."""
    images, labels = live.strip_pictures(CLASSES)
    return strip_html(images.permute(0, 2, 3, 1).numpy(), [CLASSES[int(y)] for y in labels], None,
                      html.escape(message))


def render(strip: live.Strip, epochs: int | None = None) -> str:
    of = f" of {epochs}" if epochs else ""
    title = (f"<b>Live guesses</b> of run <code>{html.escape(strip.run_id)}</code> after epoch {strip.epoch}{of}: "
             f"<b>{strip.n_correct} of {len(strip.guesses)}</b> right (green: right, red: wrong; the % is how sure "
             "the model is).")
    return strip_html(strip.images, [g.label for g in strip.guesses], strip.guesses, title)


# ----------------------------------------------------------------------------- events

def strip_key(ctx: AppContext, seen, current, token=None):
    """FREE, on every change of the tick's `seen`: [run id, checkpoint size, mtime] of the run shown
    when it is the owner's and has a checkpoint; gr.skip() while that is what the strip shows."""
    owner = owner_of(ctx, token)
    run_id = seen[0] if isinstance(seen, list) and seen and isinstance(seen[0], str) else None
    key = None
    if owner is not None and run_id is not None:
        try:
            st = train.Run.by_id(run_id, ctx.runs_dir_for(owner)).checkpoint_path.stat()
            key = [run_id, st.st_size, st.st_mtime_ns]
        except (ValueError, FileNotFoundError):   # not a run id, another visitor's run, no checkpoint yet
            key = [run_id, None, None]
    return gr.skip() if key == current else key


def update_strip(ctx: AppContext, key, token=None) -> str:
    """MODELS lane: the strip of the owner's run named by `key` (strip_key's), or why there is none."""
    owner = owner_of(ctx, token)
    run_id = key[0] if isinstance(key, list) and key and isinstance(key[0], str) else None
    if owner is None or run_id is None:
        return empty_strip()
    try:
        run = train.Run.by_id(run_id, ctx.runs_dir_for(owner))
    except (ValueError, FileNotFoundError):   # not a run id, or not a run of the owner's folder
        return empty_strip("Live guesses show for your own runs.")
    try:
        strip = live.strip_for(run)
    except FileNotFoundError:   # no checkpoint yet
        return empty_strip()
    except weights.WeightsError:
        return empty_strip("No live guesses: this run's latest weights could not be read.")
    except data.DataSourceError:
        return empty_strip("No live guesses: this run's dataset is no longer here.")
    start = run.start_event() or {}
    return render(strip, start.get("epochs"))
