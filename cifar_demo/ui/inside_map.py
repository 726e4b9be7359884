"""The embedding-map part of the Inside-the-network tab: two models' maps of a test slice side by
side, hover thumbnails, and a clicked point opened with its nearest neighbours and every model's answer.

Wiring and presentation only (analysis.embedding computes, reporting.inside_map draws). Part of
ui/inside_tab.py's tab (its build() calls build() here inside the tab), so it imports nothing of it.
"""

from __future__ import annotations

import functools
import time

import gradio as gr
import numpy as np

from .. import data, train, weights
from ..analysis import embedding, evalcache, predict
from ..common import CLASSES
from ..reporting import inside_draw, inside_map
from .common import owner_of, run_target
from .context import HEAVY, MODELS, AppContext

SIZES = [("100 (quick)", 100), ("1,000 (100 a class)", 1000), ("2,000", 2000)]
METHODS = [("t-SNE (clusters)", "tsne"), ("PCA (linear)", "pca")]
NEIGHBOURS = 8
ANY = "any"
# A first map of all ten shipped models on 1,000 pictures: see README / docs/app.md for the measurement.
INTRO = """### Where the pictures land
The last layer before the answer turns each picture into a list of numbers (its *features*: 64 to
12,544 of them, depending on the model). Here every picture of a test slice is one point, placed so
that pictures with similar features sit close together (**t-SNE** keeps neighbours together; **PCA**
is the best flat view). Colour is the true class; a dark ring marks a picture the model gets wrong.
Hover a point to see the picture, click it to open it below."""

LOOK_FOR = """**What to look for:** a good network pulls each class into its own island, far from the
others; a weak one leaves them smeared into each other. The rings sit where two colours meet: a
cat in the dog island is a mistake the features make, not only the last layer. Compare the two
models on the same pictures: the better one has fewer, tighter islands. (Where islands sit on a
t-SNE map means little: only who is near whom.)"""


def model_choices(ctx: AppContext, token=None) -> list[tuple[str, str]]:
    """Shipped weights ("weights:<model>") and the owner's runs with best weights ("run:<run id>")."""
    out = [(f"{n} (shipped weights)", f"weights:{n}") for n in weights.available()]
    owner = owner_of(ctx, token)
    for r in (train.list_runs(ctx.runs_dir_for(owner)) if owner else []):
        if r["has_best"]:
            state = (r["summary"] or {}).get("status", "training")
            out.append((f"run {r['run_id']} ({state})", f"run:{r['run_id']}"))
    return out


def target_of(ctx: AppContext, choice, token=None) -> evalcache.Target:
    """The weights a page's choice names: shipped weights of this app or a run of the page's owner.
    gr.Error for anything else (the same message whatever the value is)."""
    kind, _, name = choice.partition(":") if isinstance(choice, str) else ("", "", "")
    try:
        if kind == "weights" and name in weights.available():
            return evalcache.shipped(name)
        if kind == "run" and owner_of(ctx, token) is not None:
            return run_target(ctx, name, token)
    except (ValueError, FileNotFoundError, weights.WeightsError):
        pass
    raise gr.Error("Pick shipped weights or one of your runs with saved weights from the list.")


def refresh_pair(ctx: AppContext, a=None, b=None, token=None):
    """Both map dropdowns with the current choices; simple_cnn against airnet by default."""
    choices = model_choices(ctx, token)
    values = [v for _, v in choices]
    defaults = [v for v in ("weights:simple_cnn", "weights:airnet") if v in values] or values[:2]
    defaults += defaults[-1:] * (2 - len(defaults)) if defaults else [None, None]
    return (gr.Dropdown(choices=choices, value=a if a in values else defaults[0]),
            gr.Dropdown(choices=choices, value=b if b in values else defaults[1]))


def cache_for(target: evalcache.Target):
    """Where a target's arrays are cached: the shared cache for shipped weights; a run's own folder for
    a run, so they go with it (public mode: nothing a visitor causes outlives the visitor's folder)."""
    return None if target.kind == "weights" else target.path.parent / "cache"


@functools.lru_cache(maxsize=4)
def _slice(data_path: str | None, n: int) -> data.Split:
    source = data.resolve_source(data_path, download=False)
    return data.stratified_subset(data.load_split("test", source), n, embedding.SEED)


def slice_for(target: evalcache.Target, n: int) -> data.Split:
    """The class-balanced test slice of the target's data (a run of your own images: its test split)."""
    split = _slice(target.data, embedding.check_size(n))
    source = data.resolve_source(target.data, download=False)
    if tuple(source.classes) != target.class_names:
        raise ValueError(f"{target.label} predicts other classes than the test pictures found ({source.label})")
    return split


def _images(split: data.Split) -> np.ndarray:
    return split.images.permute(0, 2, 3, 1).numpy()


def _highlight(classes, true_cls, pred_cls) -> tuple[int | None, int | None]:
    def one(v):
        if v in (None, "", ANY):
            return None
        if v not in classes:
            raise gr.Error("Pick a class from the list.")
        return list(classes).index(v)
    return one(true_cls), one(pred_cls)


def _draw(ctx, choice, method, n, true_cls, pred_cls, token, compute: bool) -> tuple[str, bool, float]:
    """(the map's HTML or a note, whether it was computed now, seconds)."""
    if method not in embedding.METHODS:
        raise gr.Error("Pick t-SNE or PCA.")
    try:
        n = embedding.check_size(n)
        target = target_of(ctx, choice, token)
        split = slice_for(target, n)
    except (ValueError, data.DataSourceError) as e:
        raise gr.Error(str(e)) from None
    t0 = time.perf_counter()
    m = embedding.cached_embedding(target.model, target.sha256, split, cache=cache_for(target))
    computed = False
    if m is None:
        if not compute:
            return (f"<p><b>{target.label}</b>: not mapped on {n:,} pictures yet; press <b>Draw the maps</b>.</p>",
                    False, 0.0)
        model = weights.load(target.ref).model
        m, cached = embedding.embedding(model, target.model, target.sha256, split, cache=cache_for(target))
        computed = not cached
    html = inside_map.map_html(m, method, target.class_names, _images(split), target.label,
                               _highlight(target.class_names, true_cls, pred_cls))
    return html, computed, time.perf_counter() - t0


def _maps(ctx, a, b, method, n, true_cls, pred_cls, token, compute):
    out, note = [], []
    for choice in (a, b):
        html, computed, seconds = _draw(ctx, choice, method, n, true_cls, pred_cls, token, compute)
        out.append(html)
        if computed:
            note.append(f"{choice.partition(':')[2]} computed in {seconds:.0f} s (now cached)")
    drawn = {"a": a, "b": b, "n": int(n)}
    return out[0], out[1], drawn, ("; ".join(note) + ".") if note else ""


def cached_maps(ctx: AppContext, a, b, method="tsne", n=100, true_cls=ANY, pred_cls=ANY, token=None):
    """Both maps if the cache holds them (nothing is computed): (html A, html B, drawn, note)."""
    return _maps(ctx, a, b, method, n, true_cls, pred_cls, token, compute=False)


def compute_maps(ctx: AppContext, a, b, method="tsne", n=100, true_cls=ANY, pred_cls=ANY, token=None):
    return _maps(ctx, a, b, method, n, true_cls, pred_cls, token, compute=True)


def _answers(image32: np.ndarray) -> list[list[str]]:
    rows = []
    for p in predict.predict_many(image32, weights.available()):
        if p.error:
            rows.append([p.model, p.error])
        else:
            (c, q), *_ = p.top(1)
            rows.append([p.model, f"{c} {q:.0%}"])
    return rows


def point(ctx: AppContext, drawn: dict | None, side: str, index, token=None):
    """(picture, text, neighbours gallery, every model's answer) of point `index` of map `side`."""
    if not drawn or side not in ("a", "b"):
        raise gr.Error("Draw the maps first.")
    target = target_of(ctx, drawn[side], token)
    try:
        split = slice_for(target, drawn["n"])
    except (ValueError, data.DataSourceError) as e:
        raise gr.Error(str(e)) from None
    m = embedding.cached_embedding(target.model, target.sha256, split, cache=cache_for(target))
    if m is None:
        raise gr.Error("Draw the maps first.")
    try:
        i = m.check_index(index)
    except ValueError as e:
        raise gr.Error(str(e)) from None
    names = target.class_names
    images = _images(split)
    text = (f"**Picture {i} of the slice** on {target.label}'s map: true **{names[m.labels[i]]}**, predicted "
            f"**{names[m.preds[i]]}** ({m.confidence[i]:.0%})" + (" (a mistake)." if m.wrong[i] else "."))
    near = [(inside_draw.upscale(images[j], 64), f"{names[m.labels[j]]} → {names[m.preds[j]]}")
            for j in m.neighbours(i, NEIGHBOURS)]
    return inside_draw.upscale(images[i], 192), text, near, _answers(images[i])


def point_a(ctx: AppContext, drawn, evt: gr.SelectData, token=None):
    return point(ctx, drawn, "a", evt.index, token)


def point_b(ctx: AppContext, drawn, evt: gr.SelectData, token=None):
    return point(ctx, drawn, "b", evt.index, token)


def build(ctx: AppContext, token: list) -> tuple[gr.Dropdown, gr.Dropdown]:
    """The map's part of the tab (called inside the tab's context); returns its two model dropdowns,
    which the tab refreshes with its own."""
    gr.Markdown(INTRO)
    drawn = gr.State(None)
    with gr.Row(equal_height=True):
        a = gr.Dropdown([], label="Left map", scale=2, elem_id="map-a")
        b = gr.Dropdown([], label="Right map", scale=2, elem_id="map-b")
        method = gr.Radio(METHODS, value="tsne", label="Projection", scale=2)
        size = gr.Radio(SIZES, value=100, label="Test pictures", scale=2)
    with gr.Row(equal_height=True):
        true_cls = gr.Dropdown([ANY, *CLASSES], value=ANY, label="Highlight: true class", scale=1,
                               info="With the predicted class: one cell of the confusion matrix.")
        pred_cls = gr.Dropdown([ANY, *CLASSES], value=ANY, label="Highlight: predicted class", scale=1)
        go = gr.Button("Draw the maps", variant="primary", scale=1, elem_id="map-go")
    note = gr.Markdown()
    with gr.Row(equal_height=False):
        map_a = gr.HTML("", js_on_load=inside_map.MAP_JS, elem_id="map-left")
        map_b = gr.HTML("", js_on_load=inside_map.MAP_JS, elem_id="map-right")
    gr.Markdown(LOOK_FOR)
    with gr.Row(equal_height=False):
        pic = gr.Image(label="The picture", format="png", interactive=False, height=200, scale=1,
                       elem_id="map-picture")
        with gr.Column(scale=3):
            pic_md = gr.Markdown(elem_id="map-point")
            near = gr.Gallery(label=f"Its {NEIGHBOURS} nearest neighbours in feature space (true → predicted)",
                              columns=4, height="auto", format="png", allow_preview=False,
                              object_fit="contain", elem_id="map-neighbours")
        answers = gr.Dataframe(headers=["model", "answer"], label="Every model's answer", interactive=False,
                               scale=2)

    map_in = [a, b, method, size, true_cls, pred_cls, *token]
    map_out = [map_a, map_b, drawn, note]
    gr.on([method.change, size.change, true_cls.change, pred_cls.change, a.change, b.change],
          ctx.bind(cached_maps), map_in, map_out, trigger_mode="always_last", show_progress="hidden", **MODELS)
    go.click(ctx.bind(compute_maps), map_in, map_out, **HEAVY)
    point_out = [pic, pic_md, near, answers]
    map_a.select(ctx.bind(point_a), [drawn, *token], point_out, **MODELS)
    map_b.select(ctx.bind(point_b), [drawn, *token], point_out, **MODELS)
    return a, b
