"""Inside the network tab: what every layer of a model sees, a run's layers as it trains, and (in
ui/inside_map.py) where a test slice lands in the penultimate features.

Wiring and presentation only: the arrays come from analysis.inside / inside_topk / inside_runs /
embedding, the pictures from reporting.inside_draw / inside_map. Every value an event receives is
checked here or in the library (model choices against what exists for this page's owner, run ids
through train.Run.by_id in the owner's folder, uploads through data.uploads, numbers against their
ranges); a refusal says what is wrong with the value, never what exists on the server.
"""

from __future__ import annotations

import base64
import functools
import html
import io

import gradio as gr
import numpy as np
from PIL import Image

from .. import data, train, weights
from ..analysis import evalcache, inside, inside_runs, inside_topk
from ..common import CLASSES
from ..reporting import inside_draw
from . import inside_map
from .common import keep_choice, owner_of, upload_32x32
from .context import FREE, HEAVY, MODELS, AppContext

CHANNELS = (8, 16, 32)        # how many channels a grid shows, most active first
DEFAULT_CHANNELS = 16
DEFAULT_SAMPLE = 3            # "airplane 4" of the bundled sample: every shipped model names it
FOLLOW_S = 4                  # how often a followed run is checked for a new epoch
ARCH_HEADERS = inside.TABLE_HEADERS

INTRO = """What does a network *do* with a picture? Pick a model and a picture: each **stage** below is
the picture as that layer passes it on, one small map per channel (the most active channels first,
each labelled with its number). Early maps still look like the picture (edges, colours); deeper
ones are smaller and stranger: each unit there sees a larger part of the picture (its *receptive
field*, in the table) and answers "is my pattern here?". The last layer turns all of it into one
score per class (the **logits**), and the **softmax** turns the scores into probabilities."""

LOOK_FOR_LAYERS = """**What to look for:** the first grid keeps the picture's outline: its channels are
simple colour and edge detectors (the filters below). Each pooling halves the map, so by the last
stage a map is a few units wide, and one channel lights up for a whole object part. A channel that
is dark for this picture may be the one another class needs."""

LOOK_FOR_FAVOURITES = """**What to look for:** in the first layers a channel's favourite patches share a
colour or an edge direction; in deeper layers they share a texture, an object part or a whole class
(wheels, fur, sky). These are the test pictures (out of a fixed slice of 1,000) that make the
channel respond most, cut to the part of the picture the unit sees."""

LOOK_FOR_RUN = """**What to look for:** at epoch 1 the first-layer filters are close to random noise;
as training goes on they turn into smooth colour blobs and edge detectors, and the deeper maps go
from a blur to a few sharp channels. Move the slider back and forth over the saved epochs."""


# ----------------------------------------------------------------------------- choosing a model

def _owner(ctx: AppContext, token):
    owner = owner_of(ctx, token)
    if owner is None:
        raise gr.Error("This page has no visitor token yet: reload it.")
    return owner


def refresh_models(ctx: AppContext, current=None, token=None):
    choices = inside_map.model_choices(ctx, token)
    values = [v for _, v in choices]
    default = "weights:airnet" if "weights:airnet" in values else (values[0] if values else None)
    return keep_choice(choices, current, default)


target_of = inside_map.target_of


def load_target(target: evalcache.Target):
    try:
        return weights.load(target.ref)
    except (weights.WeightsError, FileNotFoundError) as e:
        raise gr.Error(str(e)) from None


# ----------------------------------------------------------------------------- choosing a picture

@functools.lru_cache(maxsize=1)
def _sample() -> tuple[np.ndarray, list[str]]:
    split = data.load_sample()
    names, count = [], {}
    for label in split.labels.tolist():
        count[label] = count.get(label, 0) + 1
        names.append(f"{CLASSES[label]} {count[label]}")
    return split.images.permute(0, 2, 3, 1).numpy(), names


def sample_gallery() -> list[tuple[np.ndarray, str]]:
    images, names = _sample()
    return [(inside_draw.upscale(im, 64), n) for im, n in zip(images, names)]


def sample_image(index) -> np.ndarray:
    images, _ = _sample()
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(images):
        raise gr.Error("There is no such sample picture.")
    return images[index]


def on_sample(evt: gr.SelectData) -> np.ndarray:
    return sample_image(evt.index)


choose_upload = upload_32x32   # the upload event: ui.common's guard and decoding


def _picture(image) -> np.ndarray:
    return sample_image(DEFAULT_SAMPLE) if image is None else np.asarray(image, dtype=np.uint8)


def _channels(k) -> int:
    if k not in CHANNELS:
        raise gr.Error(f"Show {', '.join(map(str, CHANNELS))} channels.")
    return int(k)


# ----------------------------------------------------------------------------- the layers of one model

def _png_url(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _grids(look: inside.Look, k: int) -> str:
    """HTML: the input, then each map stage's grid under its caption, each at its own size (pixels sharp)."""
    parts = [(inside_draw.input_tile(look.image, 128), "<b>input</b>: the 32x32 picture the model sees (three colour "
              "channels; the model normalises them itself)")]
    for view in look.map_stages:
        picture, caption = inside_draw.stage_grid(view, k)
        name, _, rest = caption.partition(": ")
        parts.append((picture, f"<b>{html.escape(name)}</b>: {html.escape(rest)}"))
    return "".join(f'<div style="margin:10px 0"><div style="font-size:0.9em;margin-bottom:4px">{cap}</div>'
                   f'<img src="{_png_url(pic)}" alt="{html.escape(cap[:60])}" style="max-width:100%;'
                   f'image-rendering:pixelated"></div>' for pic, cap in parts)


def _answer_md(look: inside.Look, label: str) -> str:
    (c, p), *rest = look.top(3)
    others = ", ".join(f"{n} {q:.0%}" for n, q in rest)
    return f"**{label}** says **{c}** ({p:.0%}); then {others}."


def show_layers(ctx: AppContext, choice, image=None, k=DEFAULT_CHANNELS, token=None):
    """(architecture rows, stage grids, answer figure, answer text, filters picture, its caption,
    the favourites' stage list)."""
    k = _channels(k)
    target = target_of(ctx, choice, token)
    loaded = load_target(target)
    look = inside.look_inside(loaded.model, _picture(image), loaded.classes)
    rows = [r.cells() for r in inside.architecture(loaded.model)]
    name, filters = inside.first_filters(loaded.model)
    caption = (f"The first layer ({name}): {len(filters)} filters of {filters.shape[1]}x{filters.shape[2]} "
               "pixels, each scaled on its own around grey (grey = 0, brighter colour = more weight on that "
               "colour).")
    stages = [(v.name, i) for i, v in enumerate(look.map_stages)]
    fav = gr.Dropdown(choices=stages, value=stages[min(2, len(stages) - 1)][1] if stages else None)
    return (rows, _grids(look, k), inside_draw.answer_figure(look), _answer_md(look, target.label),
            inside_draw.filters_grid(filters), caption, fav)


def _favourites(ctx: AppContext, choice, image, stage, k, token, compute: bool):
    k = _channels(k)
    target = target_of(ctx, choice, token)
    loaded = load_target(target)
    look = inside.look_inside(loaded.model, _picture(image), loaded.classes)
    maps = look.map_stages
    if isinstance(stage, bool) or not isinstance(stage, int) or not 0 <= stage < len(maps):
        raise gr.Error("Pick one of the model's stages.")
    try:
        split = inside_map.slice_for(target, inside_topk.DEFAULT_N)
    except (data.DataSourceError, ValueError) as e:
        raise gr.Error(f"No test pictures to search: {e}") from None
    if compute:
        tops, _ = inside_topk.favourites(loaded.model, target.model, target.sha256, split,
                                         cache=inside_map.cache_for(target))
    else:
        tops = inside_topk.cached_favourites(target.model, target.sha256, split, cache=inside_map.cache_for(target))
        if tops is None:
            return None, ("Not computed for these weights yet: press **Find favourites** (one pass over "
                          "1,000 test pictures; then cached).")
    field = inside.stage_fields(loaded.model)[stage]
    top, view = tops[stage], maps[stage]
    picture = inside_draw.favourites_grid(split.images.permute(0, 2, 3, 1).numpy(), top.index, top.y, top.x,
                                          top.size, field, view.order[:k])
    return picture, (f"{view.name}: for each of the {min(k, len(view.order))} channels most active on your picture, "
                     f"the 9 test pictures that excite it most, cut to its receptive field ({field}x{field} px).")


def cached_favourites(ctx: AppContext, choice, image=None, stage=0, k=DEFAULT_CHANNELS, token=None):
    return _favourites(ctx, choice, image, stage, k, token, compute=False)


def compute_favourites(ctx: AppContext, choice, image=None, stage=0, k=DEFAULT_CHANNELS, token=None):
    return _favourites(ctx, choice, image, stage, k, token, compute=True)


# ----------------------------------------------------------------------------- a run as it trains

def _run(ctx: AppContext, run_id, token) -> train.Run:
    try:
        return train.Run.by_id(run_id, ctx.runs_dir_for(_owner(ctx, token)))
    except (ValueError, FileNotFoundError):
        raise gr.Error("Pick one of your runs from the list.") from None


def run_choices(ctx: AppContext, current=None, token=None):
    """The owner's runs that have saved at least one epoch, newest first."""
    owner = owner_of(ctx, token)
    runs = [r for r in (train.list_runs(ctx.runs_dir_for(owner)) if owner else [])
            if inside_runs.saved_epochs(train.Run(r["dir"]))]
    choices = [(f"{r['run_id']} ({(r['summary'] or {}).get('status', 'training')})", r["run_id"]) for r in runs]
    return keep_choice(choices, current, choices[0][1] if choices else None)


def epoch_slider(ctx: AppContext, run_id, current=None, follow=True, token=None):
    """The slider over the run's saved epochs: at the newest when following, else where it was."""
    if not run_id:
        return gr.Slider(minimum=0, maximum=1, value=0, interactive=False)
    saved = inside_runs.saved_epochs(_run(ctx, run_id, token))
    if not saved:
        return gr.Slider(minimum=0, maximum=1, value=0, interactive=False)
    value = saved[-1] if follow or not isinstance(current, (int, float)) else min(max(current, saved[0]), saved[-1])
    return gr.Slider(minimum=saved[0], maximum=max(saved[-1], saved[0] + 1), value=value, step=1, interactive=True)


def show_epoch(ctx: AppContext, run_id, epoch, image=None, k=DEFAULT_CHANNELS, token=None):
    """(filters, stage grids, answer figure, text) of the picture through the run's weights after `epoch`."""
    k = _channels(k)
    if not run_id:
        return None, "", None, "Pick a run (start one in the **Train** tab: each epoch's weights are kept)."
    run = _run(ctx, run_id, token)
    try:
        e = inside_runs.nearest_epoch(run, epoch)
        model = inside_runs.snapshot_model(run, e)
    except ValueError as err:
        raise gr.Error(str(err)) from None
    except weights.WeightsError as err:
        raise gr.Error(str(err)) from None
    look = inside.look_inside(model, _picture(image), run.classes())
    saved = inside_runs.saved_epochs(run)
    status = (run.summary() or {}).get("status", "training")
    text = (f"Run `{run.id}` ({status}), weights after **epoch {e}** (saved: {', '.join(map(str, saved))}). "
            + _answer_md(look, f"After epoch {e}, the model"))
    _, filters = inside.first_filters(model)
    return inside_draw.filters_grid(filters), _grids(look, k), inside_draw.answer_figure(look), text


def follow_timer(run_id, follow: bool):
    """The timer that looks for a new epoch ticks only while a run is picked and followed."""
    return gr.Timer(active=bool(run_id) and bool(follow))


# ----------------------------------------------------------------------------- layout

def build(ctx: AppContext, visitor: gr.BrowserState | None = None) -> None:
    token = [visitor] if visitor is not None else []
    with gr.Tab("Inside the network") as tab:
        gr.Markdown(INTRO)
        chosen = gr.State(None)     # the 32x32 picture; None: the default sample picture
        with gr.Row(equal_height=True):
            model = gr.Dropdown([], label="Model", scale=3, elem_id="inside-model",
                                info="Shipped weights, or one of your runs with saved weights.")
            k = gr.Radio(list(CHANNELS), value=DEFAULT_CHANNELS, label="Channels per stage", scale=2)
            refresh = gr.Button("Refresh the lists", size="sm", scale=1)
        with gr.Accordion("Pick a picture (default: airplane 4 of the sample)", open=False):
            gallery = gr.Gallery(label="CIFAR-10 sample (5 test pictures per class): click one", columns=10,
                                 height="fit-content", format="png", allow_preview=False, object_fit="contain",
                                 elem_id="inside-sample")
            upload = gr.UploadButton("Upload your own picture", file_types=["image"], type="filepath")
        answer_md = gr.Markdown()
        grids = gr.HTML("", elem_id="inside-grids")
        answer = gr.Plot(label="Logits and softmax", show_label=False)
        gr.Markdown(LOOK_FOR_LAYERS)
        with gr.Accordion("The layers, one row each", open=False):
            arch = gr.Dataframe(headers=ARCH_HEADERS, interactive=False, max_height=400, elem_id="inside-arch")
        gr.Markdown("### The first layer's filters")
        filters_md = gr.Markdown()
        filters = gr.Image(show_label=False, format="png", interactive=False, elem_id="inside-filters")
        gr.Markdown("### What each channel responds to most")
        with gr.Row(equal_height=True):
            stage = gr.Dropdown([], label="Stage", scale=3)
            fav_go = gr.Button("Find favourites", scale=1)
        fav_md = gr.Markdown()
        fav = gr.Image(show_label=False, format="png", interactive=False, elem_id="inside-favourites")
        gr.Markdown(LOOK_FOR_FAVOURITES)

        gr.Markdown("### A run as it trains\nEvery run started here keeps its weights after each epoch "
                    "(in fp16; every few epochs for a big model): pick one, and the same picture goes "
                    "through the weights of each saved epoch.")
        with gr.Row(equal_height=True):
            run = gr.Dropdown([], label="Run", scale=3, elem_id="inside-run")
            epoch = gr.Slider(0, 1, value=0, step=1, label="Epoch", scale=3, elem_id="inside-epoch")
            follow = gr.Checkbox(True, label="Follow the newest epoch", scale=1)
        run_md = gr.Markdown()
        run_filters = gr.Image(label="First-layer filters at this epoch", format="png", interactive=False,
                               elem_id="inside-run-filters")
        run_grids = gr.HTML("", elem_id="inside-run-grids")
        run_answer = gr.Plot(show_label=False)
        gr.Markdown(LOOK_FOR_RUN)
        timer = gr.Timer(FOLLOW_S, active=False)
        map_a, map_b = inside_map.build(ctx, token)

    layer_in = [model, chosen, k, *token]
    layer_out = [arch, grids, answer, answer_md, filters, filters_md, stage]
    fav_in = [model, chosen, stage, k, *token]
    models = ctx.bind(refresh_models)
    runs = ctx.bind(run_choices)
    gr.on(None, sample_gallery, outputs=gallery, show_progress="hidden", **FREE)
    gr.on([tab.select, refresh.click], models, [model, *token], model, **FREE)
    gr.on([tab.select, refresh.click], runs, [run, *token], run, **FREE)
    gr.on([tab.select, refresh.click], ctx.bind(inside_map.refresh_pair), [map_a, map_b, *token], [map_a, map_b],
          **FREE)
    gallery.select(on_sample, outputs=chosen, **FREE)
    upload.upload(choose_upload, inputs=upload, outputs=chosen, show_progress="hidden", **FREE)
    gr.on([model.change, chosen.change, k.change], ctx.bind(show_layers), layer_in, layer_out,
          trigger_mode="always_last", **MODELS)
    gr.on([stage.change, chosen.change, k.change], ctx.bind(cached_favourites), fav_in, [fav, fav_md],
          trigger_mode="always_last", show_progress="hidden", **MODELS)
    fav_go.click(ctx.bind(compute_favourites), fav_in, [fav, fav_md], **HEAVY)
    slider = ctx.bind(epoch_slider)
    gr.on([run.change, timer.tick], slider, [run, epoch, follow, *token], epoch, show_progress="hidden", **FREE)
    gr.on([run.change, follow.change], follow_timer, [run, follow], timer, show_progress="hidden", **FREE)
    gr.on([epoch.change, chosen.change, k.change], ctx.bind(show_epoch), [run, epoch, chosen, k, *token],
          [run_filters, run_grids, run_answer, run_md], trigger_mode="always_last", show_progress="hidden",
          **MODELS)
