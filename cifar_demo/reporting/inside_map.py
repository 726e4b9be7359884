"""The embedding map drawn two ways: an SVG page element with hover thumbnails (the app), a PNG (the CLI).

The app's map is plain SVG in an HTML element, one circle per picture, coloured by its true class; a
misclassified picture has a dark ring. Hovering a point shows its thumbnail (cut from one JPEG sprite
of the whole slice: one image, not a thousand), its true and predicted class and the confidence;
clicking reports the point's number to the page (ui/inside_map.py's JavaScript). Plotly's hover
shows text only, which is why the map is drawn here rather than with a plotting library.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image

from ..analysis.embedding import Map

SIDE = 460          # the SVG's drawing area, px
PAD = 12
THUMB = 32


def class_colours(n: int) -> list[str]:
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return ["#%02x%02x%02x" % tuple(int(255 * c) for c in cmap(i % cmap.N)[:3]) for i in range(n)]


def sprite(images: np.ndarray) -> tuple[str, int]:
    """(a JPEG data URL of every 32x32 picture in a square grid, its number of columns)."""
    n = len(images)
    cols = int(np.ceil(np.sqrt(max(n, 1))))
    rows = -(-n // cols)
    sheet = np.zeros((rows * THUMB, cols * THUMB, 3), np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        sheet[r * THUMB:(r + 1) * THUMB, c * THUMB:(c + 1) * THUMB] = im
    buf = io.BytesIO()
    Image.fromarray(sheet).save(buf, format="JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), cols


def _xy(m: Map, method: str) -> np.ndarray:
    return PAD + (m.xy[method] + 1) / 2 * (SIDE - 2 * PAD)


def map_html(m: Map, method: str, classes, images: np.ndarray, title: str,
             highlight: tuple[int | None, int | None] = (None, None)) -> str:
    """The map as an HTML fragment (see the module's docstring). `highlight`: (true class, predicted
    class), either None for any: those points drawn large, the rest faded."""
    colours = class_colours(len(classes))
    xy = _xy(m, method)
    url, cols = sprite(images)
    ht, hp = highlight
    lit = np.ones(len(m.labels), bool)
    if ht is not None:
        lit &= m.labels == ht
    if hp is not None:
        lit &= m.preds == hp
    any_highlight = ht is not None or hp is not None
    dots = []
    # Faded points first, so the highlighted ones sit on top.
    for i in sorted(range(len(m.labels)), key=lambda j: (bool(lit[j]), bool(m.wrong[j]))):
        x, y = xy[i]
        label, pred = int(m.labels[i]), int(m.preds[i])
        tip = html.escape(f"true: {classes[label]} | predicted: {classes[pred]} ({m.confidence[i]:.0%})")
        r = 4.5 if any_highlight and lit[i] else 3.2
        style = "" if lit[i] or not any_highlight else ' opacity="0.18"'
        ring = ' stroke="#111" stroke-width="1.6"' if m.wrong[i] else ' stroke="white" stroke-width="0.5"'
        dots.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{colours[label]}"{ring}{style} '
                    f'data-i="{i}" data-c="{i % cols}" data-r="{i // cols}" data-t="{tip}"/>')
    legend = "".join(f'<span style="white-space:nowrap;margin-right:8px"><span style="display:inline-block;width:10px;'
                     f'height:10px;border-radius:5px;background:{c};margin-right:3px"></span>{html.escape(n)}</span>'
                     for n, c in zip(classes, colours))
    wrong = int(m.wrong.sum())
    return (f'<div class="emb-map" data-cols="{cols}" style="position:relative;max-width:{SIDE + 20}px">'
            f'<div style="font-weight:600;margin-bottom:2px">{html.escape(title)}</div>'
            f'<div style="font-size:0.85em;margin-bottom:4px">{len(m.labels):,} test pictures, {wrong} misclassified '
            f'(dark ring); accuracy {m.accuracy:.1%}. Hover a point to see it; click it to open it below.</div>'
            f'<svg viewBox="0 0 {SIDE} {SIDE}" width="100%" style="border:1px solid #e4e4e7;border-radius:6px;'
            f'background:#fafafa;cursor:crosshair">{"".join(dots)}</svg>'
            f'<div style="font-size:0.8em;margin-top:4px">{legend}</div>'
            f'<div class="emb-tip" style="display:none;position:absolute;pointer-events:none;background:white;'
            f'border:1px solid #a1a1aa;border-radius:6px;padding:4px;font-size:0.8em;z-index:10;width:140px">'
            f'<div class="emb-thumb" style="width:64px;height:64px;image-rendering:pixelated;'
            f'background-image:url({url});background-size:{cols * 64}px auto"></div>'
            f'<div class="emb-text"></div></div></div>')


# What the page runs once per map element: the hover card and the click (gr.HTML's js_on_load).
MAP_JS = """
element.addEventListener('mousemove', (e) => {
  const tip = element.querySelector('.emb-tip');
  if (!tip) return;
  const dot = e.target.closest ? e.target.closest('circle[data-i]') : null;
  if (!dot) { tip.style.display = 'none'; return; }
  const box = element.querySelector('.emb-map').getBoundingClientRect();
  tip.querySelector('.emb-thumb').style.backgroundPosition = `-${dot.dataset.c * 64}px -${dot.dataset.r * 64}px`;
  tip.querySelector('.emb-text').textContent = dot.dataset.t;
  tip.style.left = Math.min(e.clientX - box.left + 12, box.width - 150) + 'px';
  tip.style.top = (e.clientY - box.top + 12) + 'px';
  tip.style.display = 'block';
});
element.addEventListener('mouseleave', () => {
  const tip = element.querySelector('.emb-tip');
  if (tip) tip.style.display = 'none';
});
element.addEventListener('click', (e) => {
  const dot = e.target.closest ? e.target.closest('circle[data-i]') : null;
  if (dot) trigger('select', {index: Number(dot.dataset.i), value: Number(dot.dataset.i)});
});
"""


def map_figure(m: Map, method: str, classes, title: str) -> Figure:
    """The same map as a static figure (the CLI's PNG): colour by true class, misclassified as x."""
    colours = class_colours(len(classes))
    fig = Figure(figsize=(6.4, 6.4), layout="constrained")
    ax = fig.subplots()
    xy = m.xy[method]
    for c, name in enumerate(classes):
        ok = (m.labels == c) & ~m.wrong
        bad = (m.labels == c) & m.wrong
        ax.scatter(xy[ok, 0], xy[ok, 1], s=9, color=colours[c], label=name)
        ax.scatter(xy[bad, 0], xy[bad, 1], s=16, color=colours[c], marker="x", linewidths=1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{title}\n{len(m.labels):,} test pictures, x = misclassified, accuracy {m.accuracy:.1%}",
                 fontsize=10)
    ax.legend(fontsize=7, markerscale=1.5, loc="best", ncols=2)
    return fig
