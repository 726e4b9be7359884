"""Pictures of the inside of a network: feature-map grids, filters, each channel's favourite patches.

Each function takes the plain arrays of analysis.inside / inside_topk and returns an RGB uint8 image
(HxWx3), drawn with Pillow: the app shows them as they are, the CLI writes them as PNG. Maps are
blown up with nearest-neighbour sampling (each unit a sharp square) and coloured with one colour
scale per grid, drawn under it with its two ends.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from ..analysis.inside import Look, StageView, colour_range
from ..analysis.inside_topk import patch

TILE = 64              # a feature map is drawn about this many pixels wide
LABEL_H = 14           # the strip above each tile with its channel index
GAP = 4
BAR_H = 12             # the colour scale under a grid
POSITIVE_MAP = "viridis"   # maps after a ReLU: 0 is dark, the strongest response yellow
SIGNED_MAP = "RdBu_r"      # maps with negative values: blue below 0, white at 0, red above
BACKGROUND = (255, 255, 255)
INK = (40, 40, 40)


def _font(size: int = 11) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:   # Pillow < 10.1: one fixed size
        return ImageFont.load_default()


def upscale(image: np.ndarray, side: int) -> np.ndarray:
    """Nearest-neighbour blow-up of an HxW(x3) array by the largest integer factor that stays within `side`."""
    f = max(1, side // max(image.shape[0], image.shape[1]))
    return np.repeat(np.repeat(image, f, axis=0), f, axis=1)


def _colour(maps: np.ndarray, lo: float, hi: float, cmap: str) -> np.ndarray:
    t = np.clip((maps - lo) / max(hi - lo, 1e-12), 0, 1)
    return (colormaps[cmap](t)[..., :3] * 255).astype(np.uint8)


def _grid(tiles: list[np.ndarray], labels: list[str], cols: int) -> Image.Image:
    th = max(t.shape[0] for t in tiles)
    tw = max(t.shape[1] for t in tiles)
    rows = -(-len(tiles) // cols)
    canvas = Image.new("RGB", (cols * (tw + GAP) + GAP, rows * (th + LABEL_H + GAP) + GAP), BACKGROUND)
    draw, font = ImageDraw.Draw(canvas), _font()
    for n, (tile, label) in enumerate(zip(tiles, labels)):
        r, c = divmod(n, cols)
        x, y = GAP + c * (tw + GAP), GAP + r * (th + LABEL_H + GAP)
        draw.text((x, y), label, fill=INK, font=font)
        canvas.paste(Image.fromarray(tile), (x, y + LABEL_H))
    return canvas


def _with_scale(grid: Image.Image, lo: float, hi: float, cmap: str) -> Image.Image:
    """The grid with its colour scale under it: a gradient bar from lo to hi, both ends written."""
    w = grid.width
    out = Image.new("RGB", (w, grid.height + BAR_H + 16), BACKGROUND)
    out.paste(grid, (0, 0))
    bar = _colour(np.tile(np.linspace(lo, hi, w - 2 * GAP), (BAR_H, 1)), lo, hi, cmap)
    out.paste(Image.fromarray(bar), (GAP, grid.height))
    draw, font = ImageDraw.Draw(out), _font()
    draw.text((GAP, grid.height + BAR_H + 2), f"{lo:.3g}", fill=INK, font=font)
    right = f"{hi:.3g}"
    draw.text((w - GAP - draw.textlength(right, font=font), grid.height + BAR_H + 2), right, fill=INK, font=font)
    return out


def stage_grid(view: StageView, k: int = 16, cols: int = 8) -> tuple[np.ndarray, str]:
    """(image, caption): the k most active channels of a map stage, each labelled with its index,
    on one colour scale (stated in the caption and drawn under the grid)."""
    idx, maps = view.top(k)
    lo, hi = colour_range(maps)
    cmap = POSITIVE_MAP if lo >= 0 else SIGNED_MAP
    tiles = [upscale(_colour(m, lo, hi, cmap), TILE) for m in maps]
    image = _with_scale(_grid(tiles, [f"#{i}" for i in idx], min(cols, len(tiles))), lo, hi, cmap)
    c, h, w = view.maps.shape
    scale = (f"colour {lo:.3g} (dark) to {hi:.3g} (yellow)" if lo >= 0
             else f"colour {lo:.3g} (blue) through 0 (white) to {hi:.3g} (red)")
    caption = (f"{view.name}: {c} channels of {h}x{w}; the {len(idx)} most active shown, strongest first; "
               f"one scale for all: {scale}")
    return np.asarray(image), caption


def input_tile(image32: np.ndarray, side: int = 192) -> np.ndarray:
    return upscale(image32, side)


def filters_grid(filters: np.ndarray, cols: int = 12, side: int = 40) -> np.ndarray:
    """The first layer's kernels (K,k,k,3 in [0, 1]) as RGB patches, each labelled with its index."""
    tiles = [upscale((f * 255).round().astype(np.uint8), side) for f in filters]
    return np.asarray(_grid(tiles, [f"#{i}" for i in range(len(tiles))], min(cols, len(tiles))))


def favourites_grid(images: np.ndarray, index: np.ndarray, ys: np.ndarray, xs: np.ndarray, size: tuple[int, int],
                    field: int, channels: np.ndarray, cols: int = 8, side: int = 24) -> np.ndarray:
    """For each channel in `channels`, a 3x3 mosaic of the patches that excite it most (index/ys/xs: C,K
    from inside_topk.StageTop; images: the slice, N,32,32,3 uint8), labelled with the channel's index."""
    tiles = []
    for c in channels:
        cells = []
        for n, y, x in zip(index[c], ys[c], xs[c]):
            p = patch(images[int(n)], int(y), int(x), size, field)
            cells.append(np.asarray(Image.fromarray(p).resize((side, side), Image.NEAREST)))
        while len(cells) < 9:
            cells.append(np.full((side, side, 3), 255, np.uint8))
        rows = [np.concatenate([np.pad(c_, ((1, 1), (1, 1), (0, 0)), constant_values=255) for c_ in cells[r:r + 3]], 1)
                for r in range(0, 9, 3)]
        tiles.append(np.concatenate(rows, 0))
    return np.asarray(_grid(tiles, [f"#{int(c)}" for c in channels], min(cols, len(tiles))))


def answer_figure(look: Look) -> Figure:
    """The logits and the softmax as two bar charts, the predicted class highlighted."""
    n = len(look.classes)
    fig = Figure(figsize=(8, 0.3 * n + 1.2), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    y = np.arange(n)
    top = int(np.argmax(look.probs))
    colours = ["#f97316" if i == top else "#94a3b8" for i in range(n)]
    ax1.barh(y, look.logits, color=colours)
    ax1.axvline(0, color="0.3", lw=0.8)
    ax1.set_title("logits (the last layer's outputs)")
    ax2.barh(y, look.probs, color=colours)
    ax2.set_xlim(0, 1)
    ax2.set_title("softmax (probabilities, sum to 1)")
    ax1.set_yticks(y, look.classes)
    ax1.invert_yaxis()
    for i, p in enumerate(look.probs):
        ax2.text(min(p + 0.02, 0.8), i, f"{p:.0%}", va="center", fontsize=8)
    return fig
