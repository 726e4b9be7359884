"""Augmentations tab: what each transform of the training presets, and each batch mix, does to
a picture. Made for walking students through augmentation: pick an image, move a slider, see
eight random draws; mix two to four images and see the soft label the model is trained on.

Every picture is computed by cifar_demo.augment; this module only wires and draws.
"""

from __future__ import annotations

import functools

import gradio as gr
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from .. import augment, data
from ..augment import Param
from ..common import CLASSES
from ..data import pictures, uploads
from . import own_data
from .context import AUGMENT, AppContext

N_DRAWS = 8          # two rows of four: enough draws to see the spread of one transform
SCALE = 8            # 32 px -> 256 px, larger than a gallery cell: the browser shrinks (sharp), never blurs it up
MIX_SCALE = 8        # the mixed image is the tab's main picture: 256 px
SAMPLE_LABEL = "CIFAR-10 sample (5 test images per class): click one"
THUMB_SCALE = 4      # sample thumbnails: 128 px, so the browser shrinks (sharp) rather than blurs
DEFAULT_IMAGE = "horse 1"   # a horse in profile: flip, crop and rotation are easy to see on it
DEFAULT_PICKS = ["dog 2", "cat 2", "bird 4", "truck 3"]


# ----------------------------------------------------------------------------- the sample

@functools.lru_cache(maxsize=1)
def _sample() -> dict[str, np.ndarray]:
    """The 50 bundled test images by display name ("cat 1" .. "cat 5"), HxWx3 uint8."""
    split = data.load_sample()
    images = split.images.permute(0, 2, 3, 1).numpy()
    return dict(zip(sample_names(), images))


def sample_names() -> list[str]:
    """Display names of the bundled sample, in data.sample_paths() order (file names only: no decoding)."""
    names, count = [], {}
    for _, cls in data.sample_paths():
        count[cls] = count.get(cls, 0) + 1
        names.append(f"{cls} {count[cls]}")
    return names


def sample_image(name: str) -> np.ndarray:
    """One sample image (32x32x3 uint8) by display name."""
    try:
        return _sample()[name]
    except KeyError:
        raise gr.Error(f"{name!r} is not one of the sample images.") from None


def _class_of(name: str) -> str:
    return name.rsplit(" ", 1)[0]  # "cat 2" -> "cat"


def gallery_order() -> list[str]:
    """Sample names laid out for a 10-column gallery: one column per class, in CLASSES order."""
    def row_then_column(name: str) -> tuple[int, int]:
        return int(name.rsplit(" ", 1)[1]), CLASSES.index(_class_of(name))
    return sorted(sample_names(), key=row_then_column)


def sample_thumbnails() -> list[tuple[np.ndarray, str]]:
    """The sample gallery: (upscaled image, name) in gallery_order()."""
    return [(augment.upscale_nearest(sample_image(n), THUMB_SCALE), n) for n in gallery_order()]


# ----------------------------------------------------------------------------- choosing the image

def _caption(name: str) -> str:
    return f"**{_class_of(name)}**: CIFAR-10 test image ({name})"


def choose_sample(name: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(32x32 image, its large view, caption) for a sample image."""
    image = sample_image(name)
    return image, augment.upscale_nearest(image, MIX_SCALE), _caption(name)


def choose_upload(path: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    """An uploaded picture, cropped and shrunk to 32x32 as a model would see it."""
    if not path:
        raise gr.Error("No file arrived; please upload a picture again.")
    try:
        image = pictures.thumbnail(uploads.uploaded_path(path))
    except pictures.ImageError as e:
        raise gr.Error(str(e)) from None
    return image, augment.upscale_nearest(image, MIX_SCALE), "**your picture**, centre-cropped and shrunk to 32x32"


def _on_gallery_select(evt: gr.SelectData) -> tuple[np.ndarray, np.ndarray, str]:
    return choose_sample(gallery_order()[evt.index])


def refresh_sources(ctx: AppContext, current: str | None = None, token=None) -> gr.Dropdown:
    """Where the gallery's pictures come from: the CIFAR-10 sample, or a dataset you uploaded (Train tab)."""
    return own_data.refresh(ctx, current, token)


def show_source(ctx: AppContext, choice: str | None, token=None) -> gr.Gallery:
    """The gallery for a source: the sample (default image marked), or a few of your images per class."""
    if not choice or choice == own_data.CIFAR:
        return _load_gallery()
    try:
        images = own_data.preview_images(ctx, choice, token)
    except (ValueError, data.DataSourceError) as e:
        raise gr.Error(str(e)) from None
    return gr.Gallery([(augment.upscale_nearest(im, THUMB_SCALE), cap) for im, cap in images],
                      selected_index=None, format="png", label="Your images (a few per class): click one")


def choose_from_source(ctx: AppContext, choice: str | None, evt: gr.SelectData,
                       token=None) -> tuple[np.ndarray, np.ndarray, str]:
    """A click on the gallery: a sample image, or one of your images (centre-cropped to 32x32 when loaded)."""
    if not choice or choice == own_data.CIFAR:
        return _on_gallery_select(evt)
    try:
        image, caption = own_data.preview_images(ctx, choice, token)[evt.index]
    except (ValueError, IndexError, data.DataSourceError) as e:
        raise gr.Error(str(e)) from None
    text = f"**{caption.rsplit(' ', 1)[0]}**: one of your images ({caption})"
    return image, augment.upscale_nearest(image, MIX_SCALE), text


def _clear_selection() -> gr.Gallery:
    return gr.Gallery(selected_index=None)  # an upload replaces the sample image: unmark it


def _load_gallery() -> gr.Gallery:
    """The sample gallery as a page loads, with the default image marked as chosen."""
    return gr.Gallery(sample_thumbnails(), selected_index=gallery_order().index(DEFAULT_IMAGE), label=SAMPLE_LABEL)


def _default_view() -> np.ndarray:
    return choose_sample(DEFAULT_IMAGE)[1]


# ----------------------------------------------------------------------------- one transform

def transform_preview(image: np.ndarray | None, name: str, seed: int, *values: float) -> list[np.ndarray]:
    """N_DRAWS random draws of one transform, each upscaled SCALE times.

    `image` None means the default sample image (the tab starts with nothing chosen);
    `values` are the transform's slider values, in TRANSFORMS[name].params order.
    """
    image = sample_image(DEFAULT_IMAGE) if image is None else image
    params = dict(zip(augment.TRANSFORMS[name].params, values))
    draws = augment.preview_transform(image, name, N_DRAWS, int(seed), **params)
    return [augment.upscale_nearest(d, SCALE) for d in draws]


def next_seed(seed: int) -> int:
    """The seed of the next set of random draws."""
    return int(seed) + 1


def default_values(name: str) -> list[float]:
    """A transform's default slider values (for its "Defaults" button)."""
    return list(augment.TRANSFORMS[name].defaults().values())


def _where_used(info: augment.TransformInfo) -> str:
    if not info.presets:
        return "Not part of a named training preset; shown to compare with coarse dropout."
    presets = ", ".join(f"`{p}`" for p in info.presets)
    return f"Used by the training preset{'s' if len(info.presets) > 1 else ''} {presets}."


def _slider(p: Param, interactive: bool = True) -> gr.Slider:
    return gr.Slider(p.min, p.max, value=p.default, step=p.step, label=p.label, interactive=interactive)


# ----------------------------------------------------------------------------- batch mixes

# Slider specs for the mixes, in preview_mix's parameter names. lam and the boundary are what
# a teacher wants to set by hand; alpha only matters when the draw is random, as in training.
MIX_TITLES = {"mixup": "MixUp", "cutmix": "CutMix", "ricap": "RICAP"}
MIX_TEACHES = {
    "mixup": "Blending two pictures, and their labels by the same share, teaches the model to be "
             "less sure between classes, which smooths its decisions and its confidence.",
    "cutmix": "Pasting a box of image 2 into image 1 teaches the model to recognise objects from "
              "parts; the label is shared by the area each image covers.",
    "ricap": "Tiling crops of four images (2 or 3 picks are reused in turn) teaches the model to "
             "find each object in a crowded picture; the label is shared by area.",
}
MIX_RANDOM_LABEL = {
    "mixup": "draw λ at random from Beta(α, α), as in training",
    "cutmix": "draw λ at random from Beta(α, α), as in training",
    "ricap": "draw the boundary at random from Beta(α, α), as in training",
}
MIX_PARAMS: dict[str, dict[str, Param]] = {
    "mixup": {"lam": Param(0.0, 1.0, 0.7, 0.05, "λ: share of image 1 (the rest is image 2)"),
              "alpha": Param(0.1, 2.0, augment.DEFAULT_ALPHA["mixup"], 0.1, "α of Beta(α, α)")},
    "cutmix": {"lam": Param(0.0, 1.0, 0.7, 0.05, "λ: share of image 1 kept (a box of image 2 covers the rest)"),
               "alpha": Param(0.1, 2.0, augment.DEFAULT_ALPHA["cutmix"], 0.1, "α of Beta(α, α)")},
    "ricap": {"boundary_y": Param(0.0, 1.0, 0.4, 0.05, "boundary: fraction of the height"),
              "boundary_x": Param(0.0, 1.0, 0.6, 0.05, "boundary: fraction of the width"),
              "alpha": Param(0.1, 2.0, augment.DEFAULT_ALPHA["ricap"], 0.05, "α of Beta(α, α)")},
}


def mix_preview(picks: list[str], method: str, random_draw: bool, seed: int,
                *values: float) -> tuple[np.ndarray, dict[str, float]]:
    """Mix the picked sample images: (mixed image upscaled MIX_SCALE times, {class: weight}).

    `values` are the method's sliders in MIX_PARAMS order. With `random_draw`, lambda (or
    the RICAP boundary) comes from Beta(alpha, alpha) as in training and the hand-set
    sliders are ignored; otherwise alpha is.
    """
    picks = list(picks or [])
    if not 2 <= len(picks) <= 4:
        raise gr.Error(f"Pick 2 to 4 sample images to mix ({len(picks)} picked).")
    params = dict(zip(MIX_PARAMS[method], values))
    if random_draw:
        params = {"alpha": params["alpha"]}
    else:
        params.pop("alpha")
    images = [sample_image(p) for p in picks]
    labels = [CLASSES.index(_class_of(p)) for p in picks]
    mixed, weights = augment.preview_mix(images, labels, method, int(seed), **params)
    return augment.upscale_nearest(mixed, MIX_SCALE), weights


def soft_label_figure(weights: dict[str, float]) -> Figure:
    """The mixed image's training target as bars over all ten classes, so the zeros show too."""
    fig = Figure(figsize=(5.2, 3.6), layout="constrained")
    ax = fig.add_subplot()
    values = [weights.get(c, 0.0) for c in CLASSES]
    bars = ax.barh(CLASSES, values, color=["C0" if v > 0 else "0.8" for v in values])
    for bar, v in zip(bars, values):
        if v > 0:
            ax.text(min(v + 0.02, 0.86), bar.get_y() + bar.get_height() / 2, f"{v:.0%}",
                    va="center", fontsize=10)
    ax.invert_yaxis()  # airplane on top, as CLASSES reads
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Training target (soft label)", fontsize=12)
    ax.tick_params(labelsize=10)
    return fig


def mix_outputs(picks: list[str], method: str, random_draw: bool, seed: int,
                *values: float) -> tuple[np.ndarray, Figure]:
    """What the mix sub-tab shows: the mixed image and its soft-label chart."""
    image, weights = mix_preview(picks, method, random_draw, seed, *values)
    return image, soft_label_figure(weights)


def picked_thumbnails(picks: list[str]) -> list[tuple[np.ndarray, str]]:
    """The picked images in mixing order, captioned "image 1: dog 2" and so on."""
    return [(augment.upscale_nearest(sample_image(p), THUMB_SCALE), f"image {i}: {p}")
            for i, p in enumerate(picks or [], 1)]


def random_toggle(random_draw: bool, method: str) -> list[gr.Slider]:
    """Grey out the sliders that the chosen mode ignores (hand-set values vs alpha)."""
    return [gr.Slider(interactive=(k == "alpha") == bool(random_draw)) for k in MIX_PARAMS[method]]


# ----------------------------------------------------------------------------- layout

INTRO = """Augmentation shows the model a slightly different version of each training image every
epoch, so it learns what does **not** change a picture's class. Pick an image, then look at
what each transform of the training presets does to it: every tile below is one random draw,
as the training loop would make it. **New random draws** rolls the dice again."""

MIX_INTRO = """Batch mixes combine whole images **and their labels**: the model is trained to answer
with the mixed label (the bars), not with one class. Pick 2 to 4 images from the sample, in order."""


def _transform_subtab(info: augment.TransformInfo, chosen: gr.State) -> None:
    with gr.Tab(info.title):
        gr.Markdown(f"**What it teaches:** {info.teaches}  \n{_where_used(info)}")
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                sliders = [_slider(p) for p in info.params.values()]
                if not sliders:
                    gr.Markdown("No sliders: the policy (which operations, how strong) is the one "
                                "learned on CIFAR-10 by Cubuk et al. 2019. Shown alone here; the "
                                "preset applies it after the random crop and flip.")
                with gr.Row():
                    redraw = gr.Button("New random draws", variant="primary")
                    if sliders:
                        reset = gr.Button("Defaults")
                        reset.click(functools.partial(default_values, info.name), outputs=sliders, **AUGMENT)
            with gr.Column(scale=3):
                draws = gr.Gallery(label=f"{N_DRAWS} random draws (32x32, shown {SCALE}x)", columns=4,
                                   rows=2, height="fit-content", format="png", allow_preview=True,
                                   object_fit="contain")
        seed = gr.State(0)
        redraw.click(next_seed, inputs=seed, outputs=seed, **AUGMENT)
        name = gr.State(info.name)
        # No triggers: runs when the app loads and whenever the image, seed or a slider changes.
        gr.on(None, transform_preview, inputs=[chosen, name, seed, *sliders], outputs=draws,
              trigger_mode="always_last", show_progress="hidden", **AUGMENT)


def _mix_subtab(method: str, picks: gr.Dropdown) -> None:
    with gr.Tab(MIX_TITLES[method]):
        gr.Markdown(f"**What it teaches:** {MIX_TEACHES[method]}")
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                random_draw = gr.Checkbox(False, label=MIX_RANDOM_LABEL[method])
                # alpha only matters for random draws, which start switched off: greyed out.
                sliders = [_slider(p, interactive=k != "alpha") for k, p in MIX_PARAMS[method].items()]
                redraw = gr.Button("New random draw", variant="primary")
            mixed = gr.Image(label=f"Mixed image (32x32, shown {MIX_SCALE}x)", format="png",
                             interactive=False, height=300, scale=1, min_width=260)
            chart = gr.Plot(label="Soft label", scale=1, min_width=300)
        seed, name = gr.State(0), gr.State(method)
        redraw.click(next_seed, inputs=seed, outputs=seed, **AUGMENT)
        random_draw.change(random_toggle, inputs=[random_draw, name], outputs=sliders, **AUGMENT)
        gr.on(None, mix_outputs, inputs=[picks, name, random_draw, seed, *sliders],
              outputs=[mixed, chart], trigger_mode="always_last", show_progress="hidden", **AUGMENT)


def build(ctx: AppContext, visitor: gr.BrowserState | None = None) -> None:
    """The tab; `visitor` is the page's token (its uploaded datasets can be previewed). Every
    event here is a preview (numpy on a few 32x32 pictures): the "augment" lane."""
    token = [visitor] if visitor is not None else []
    with gr.Tab("Augmentations") as tab:
        gr.Markdown(INTRO)
        chosen = gr.State(None)  # the 32x32 image; None until one is picked (the default image)
        source = gr.Dropdown(own_data.choices(ctx), value=own_data.CIFAR, label="Pictures from",
                             elem_id="augment-source",
                             info="The CIFAR-10 sample, or a dataset of your own images uploaded in the Train tab.")
        # Full width: Gradio's gallery gives each column at least 100 px, so 10 need ~1100 px.
        gallery = gr.Gallery(label=SAMPLE_LABEL, columns=10, height="fit-content", format="png",
                             allow_preview=False, object_fit="contain")
        with gr.Row(equal_height=False):
            view = gr.Image(label=f"Chosen image (32x32, shown {MIX_SCALE}x)",
                            format="png", interactive=False, height=240, scale=1, min_width=220)
            with gr.Column(scale=3):
                caption = gr.Markdown(_caption(DEFAULT_IMAGE))
                gr.Markdown("Or try a picture of your own: it is centre-cropped and shrunk to "
                            "32x32 pixels, the size every CIFAR-10 model sees.")
                upload = gr.UploadButton("Upload your own picture", file_types=["image"],
                                         type="filepath")
        # Filled when a page loads, not at build time: Gradio calls a callable `value` right away.
        gr.on(None, _load_gallery, outputs=gallery, show_progress="hidden", **AUGMENT)
        gr.on(None, _default_view, outputs=view, show_progress="hidden", **AUGMENT)
        gallery.select(ctx.bind(choose_from_source), inputs=[source, *token], outputs=[chosen, view, caption],
                       **AUGMENT)
        source.input(ctx.bind(show_source), inputs=[source, *token], outputs=gallery, show_progress="hidden",
                     **AUGMENT)
        tab.select(ctx.bind(refresh_sources), inputs=[source, *token], outputs=source, show_progress="hidden",
                   **AUGMENT)
        # Errors (a bad upload) show as a message; hidden progress keeps the old image on screen.
        upload.upload(choose_upload, inputs=upload, outputs=[chosen, view, caption],
                      show_progress="hidden", **AUGMENT).success(_clear_selection, outputs=gallery, **AUGMENT)

        gr.Markdown("### One image, one transform")
        with gr.Tabs():
            for info in augment.TRANSFORMS.values():
                _transform_subtab(info, chosen)

        gr.Markdown(f"### Mixing images: MixUp, CutMix, RICAP\n{MIX_INTRO}")
        with gr.Row(equal_height=False):
            picks = gr.Dropdown(sample_names(), value=DEFAULT_PICKS, multiselect=True, max_choices=4,
                                label="Images to mix (MixUp and CutMix use the first two)", scale=1)
            picked = gr.Gallery(label="In mixing order",
                                columns=4, height="fit-content", format="png", allow_preview=False,
                                object_fit="contain", scale=1)
        gr.on(None, picked_thumbnails, inputs=picks, outputs=picked, show_progress="hidden", **AUGMENT)
        with gr.Tabs():
            for method in MIX_TITLES:
                _mix_subtab(method, picks)
