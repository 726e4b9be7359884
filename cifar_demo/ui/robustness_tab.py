"""Robustness tab: how each model's accuracy falls as pictures get noisier, blurrier, foggier.

The CIFAR-10-C idea (Hendrycks & Dietterich 2019) made interactive: pick a corruption and a
severity, see (a) one picture corrupted, with every model's answer before and after, and (b)
every model's accuracy against severity on a fixed slice of 1,000 test images, computed on
demand and cached per weights file (cifar_demo.analysis.robustness). A finished run of the
visitor's (CIFAR-10's classes) joins both, beside the shipped models; its entries are cached in
its owner's folder (evalcache.run_cache), so they go with the visitor. This module only wires and draws.
"""

from __future__ import annotations

import functools
import threading
import time

import gradio as gr
import numpy as np
from matplotlib.figure import Figure

from .. import augment, data, weights
from ..analysis import evalcache, predict, robustness
from ..augment import CORRUPTIONS, MAX_SEVERITY
from ..common import CLASSES
from ..data import pictures
from ..reporting import plots
from .common import data_status, finished_runs, keep_choice, run_label, run_model, run_target, upload_32x32
from .context import FREE, HEAVY, MODELS, AppContext

DEFAULT_CORRUPTION = "gaussian_noise"
DEFAULT_SEVERITY = robustness.DEFAULT_SEVERITY
# "horse 2", a horse's head a person names at a glance (deer 1, the default before, was a blue blur
# to people). Every shipped model names it right when clean; at severity 3 (as this tab corrupts it)
# Gaussian noise changes 3 of the ten answers, fog 3, contrast 4, Gaussian blur none: some models
# hold, some fall, which is the lesson. (Counted with show_picture on the ten shipped models.)
DEFAULT_IMAGE = 36
SCALE = 8                    # 32 px -> 256 px, each pixel a sharp square
THUMB_SCALE = 2              # 64 px thumbnails: fifty fit on one screen
PREDICT_HEADERS = ["model", "clean picture", "corrupted picture", "changed?"]
# How many test pictures the accuracy curves are scored on. 1,000 (100 a class) is the default
# and what docs/benchmarks.md reports; 100 takes a tenth of the time, for a slow laptop or a
# lesson in a hurry, at the price of noise: the standard error of an accuracy near 80% on 100
# pictures is sqrt(0.8 * 0.2 / 100) = 4 points. Each size has its own cache entries.
SLICE_SIZES = [("1,000 (100 a class)", robustness.DEFAULT_N), ("100 (quick, about ±4 points)", 100)]
NO_RUN = ""
YOUR_RUN = "your run"   # how a visitor's run is named in the table, the legend and the status line
# A first computation of one corruption for all ten shipped models, on 1,000 images: 5 passes of
# each model. Measured on this project's 2-core machine while it was shared (load average 4-6):
# one clean pass of all ten took 125 s (resnet50 33 s, simple_cnn 1.5 s), and airnet's full run
# (61 passes, every corruption) ran at 9.3 s a pass against 5.4 s for its clean pass alone:
# 10-17 minutes. The quick slice of 100 took 24.6 s for the ten (issue 36, a new user's try):
# seconds per model for one corruption, by slice size; other sizes scale the full slice's rate.
FIRST_RUN_SECONDS_PER_MODEL = {robustness.DEFAULT_N: 90.0, 100: 2.5}

# One computation at a time: two would only split the two cores, and the second finds the
# first one's entries in the cache when it gets its turn.
_COMPUTE = threading.Lock()

INTRO = """How well do the models cope with pictures that are noisy, blurred, foggy or badly compressed?
Pick a **corruption** and move the **severity** slider (0 = the clean picture; 1-5 are the strengths
of the CIFAR-10-C benchmark, Hendrycks & Dietterich 2019). Below, each model's accuracy on a fixed
set of 1,000 test pictures (100 per class) as the corruption gets stronger: a model whose line stays
high has learnt something that survives the damage. (On a slow machine, score a quick 100 pictures instead.)"""


# ----------------------------------------------------------------------------- the picture

@functools.lru_cache(maxsize=1)
def _sample() -> tuple[np.ndarray, list[str]]:
    """The 50 bundled test images (HxWx3 uint8) and their captions ("frog 1")."""
    split = data.load_sample()
    names, count = [], {}
    for label in split.labels.tolist():
        cls = CLASSES[label]
        count[cls] = count.get(cls, 0) + 1
        names.append(f"{cls} {count[cls]}")
    return split.images.permute(0, 2, 3, 1).numpy(), names


def sample_gallery() -> list[tuple[np.ndarray, str]]:
    images, names = _sample()
    return [(augment.upscale_nearest(img, THUMB_SCALE), n) for img, n in zip(images, names)]


def sample_image(index: int) -> np.ndarray:
    images, _ = _sample()
    if not 0 <= int(index) < len(images):
        raise gr.Error(f"There is no sample image number {index}.")
    return images[int(index)]


choose_upload = upload_32x32   # the upload event: ui.common's guard and decoding


def teaching(name: str) -> str:
    c = augment.get_corruption(name)
    strengths = ", ".join(str(p) for p in c.params)
    return (f"**What it teaches:** {c.teaches}  \n"
            f"<small>{c.family.capitalize()}. Severities 1-5 are CIFAR-10-C's published strengths: "
            f"{strengths}.</small>")


def corrupted(image32: np.ndarray, name: str, severity: int) -> np.ndarray:
    """One 32x32 picture corrupted, with the draws the accuracy slice uses (seed 0)."""
    batch = augment.corrupt(pictures.to_tensor(image32), name, int(severity))
    return batch[0].permute(1, 2, 0).numpy()


def _top(p: predict.Prediction) -> str:
    cls, prob = p.top(1)[0]
    return f"{cls} {prob:.0%}"


def _row(model: str, before: predict.Prediction, after: predict.Prediction) -> list[str]:
    """One model's row: its top class on the clean and on the corrupted picture, and whether it changed."""
    if before.error or after.error:
        return [model, before.error or after.error, "", ""]
    changed = before.top(1)[0][0] != after.top(1)[0][0]
    return [model, _top(before), _top(after), "yes" if changed else ""]


def prediction_rows(clean: np.ndarray, damaged: np.ndarray) -> list[list[str]]:
    """Every shipped model's top class on the clean and on the corrupted picture."""
    names = weights.available()
    return [_row(before.model, before, after)
            for before, after in zip(predict.predict_many(clean, names), predict.predict_many(damaged, names))]


def _pictures(image32: np.ndarray | None, name: str, severity: int) -> tuple[np.ndarray, np.ndarray]:
    """(the picture, corrupted); None means the default sample image."""
    image = sample_image(DEFAULT_IMAGE) if image32 is None else np.asarray(image32, dtype=np.uint8)
    return image, corrupted(image, name, severity)


def _views(image: np.ndarray, damaged: np.ndarray, rows: list[list[str]]):
    return augment.upscale_nearest(image, SCALE), augment.upscale_nearest(damaged, SCALE), rows


def show_picture(image32: np.ndarray | None, name: str, severity: int):
    """(clean view, corrupted view, prediction rows); None means the default sample image."""
    image, damaged = _pictures(image32, name, severity)
    return _views(image, damaged, prediction_rows(image, damaged))


# ----------------------------------------------------------------------------- a run of the visitor's

def run_choices(ctx: AppContext, token=None) -> list[tuple[str, str]]:
    """("None", ""), then the owner's finished runs that predict CIFAR-10's ten classes (a run on
    its own images has other classes: the test slice cannot score it)."""
    return [("None: the shipped models only", NO_RUN)] + [
        (run_label(r, study), r["run_id"]) for r, study, classes in finished_runs(ctx, token) if classes == CLASSES]


def refresh_runs(ctx: AppContext, current: str | None = None, token=None) -> gr.Dropdown:
    return keep_choice(run_choices(ctx, token), current, NO_RUN)


def your_target(ctx: AppContext, run_id: str | None, token=None) -> evalcache.Target | None:
    """The page owner's finished run by id (None for none); gr.Error for people otherwise."""
    if not run_id:
        return None
    try:
        target = run_target(ctx, run_id, token)   # only a run of the owner's folder is read
    except (FileNotFoundError, ValueError) as e:
        raise gr.Error(str(e)) from None
    if tuple(target.class_names) != tuple(CLASSES):
        raise gr.Error("This run learnt its own classes, not CIFAR-10's: the test pictures cannot score it.")
    return target


def your_name(target: evalcache.Target) -> str:
    """The run's name in the table and the plot's legend."""
    return f"{YOUR_RUN} ({target.model})"


def _is_yours(name: str) -> bool:
    return name.startswith(YOUR_RUN)


def show_picture_with_run(ctx: AppContext, image32: np.ndarray | None, name: str, severity: int,
                          run_id: str | None = NO_RUN, token=None):
    """show_picture, with a row for the owner's run `run_id` (if any) first."""
    target = your_target(ctx, run_id, token)
    image, damaged = _pictures(image32, name, severity)
    rows = prediction_rows(image, damaged)
    if target is not None:
        model = run_model(target)   # two passes of one model: the "models" lane, as the shipped models' rows
        before, after = (predict.Prediction(your_name(target), predict.predict_one(model, im, target.class_names)[0])
                         for im in (image, damaged))
        rows.insert(0, _row(your_name(target), before, after))
    return _views(image, damaged, rows)


# ----------------------------------------------------------------------------- the accuracy curves

def curves_figure(result: dict, name: str, severity: int) -> Figure:
    title = f"{CORRUPTIONS[name].title}: accuracy on {result['slice']['n']:,} test images"
    mine = [m for m in result["models"] if _is_yours(m)]
    fig = plots.accuracy_vs_severity(robustness.curves(result, name), title=title, emphasis=mine)
    fig.axes[0].axvline(int(severity), color="0.3", lw=1, ls="--", zorder=0)   # the picture's severity
    return fig


def first_run_estimate(todo: int, n: int) -> str:
    """How long scoring `todo` models on a slice of `n` pictures takes the first time: "about 25 s"."""
    full = FIRST_RUN_SECONDS_PER_MODEL[robustness.DEFAULT_N]
    rate = FIRST_RUN_SECONDS_PER_MODEL.get(n, full * n / robustness.DEFAULT_N)
    seconds = rate * todo
    return f"about {max(5, round(seconds / 5) * 5):.0f} s" if seconds < 90 else f"about {round(seconds / 60)} min"


def _status(result: dict, name: str, seconds: float | None = None) -> str:
    models = len(result["models"])
    yours = f" ({YOUR_RUN} among them)" if any(_is_yours(m) for m in result["models"]) else ""
    todo = sum(any(a is None for a in m["accuracy"][name]) for m in result["models"].values())
    if not models:
        return "No shipped weights found: nothing to score."
    if todo:
        estimate = first_run_estimate(todo, int(result["slice"]["n"]))
        return (f"**{todo} of {models} models** not scored under {CORRUPTIONS[name].title.lower()} yet. "
                f"Press **Compute** ({estimate} on a 2-core machine; then cached for good).")
    done = (f"Computed in {seconds:.0f} s ({result['computed']} evaluations); now cached."
            if seconds is not None and result["computed"] else "From the cache.")
    return (f"All {models} models{yours}, on {result['slice']['n']:,} test images of "
            f"{result['slice']['dataset']}. {done}")


def slice_size(n) -> int:
    """`n` if it is one of the tab's slice sizes; gr.Error otherwise (a request may send any number,
    and the whole test set under every corruption would hold the heavy lane for hours)."""
    sizes = {v for _, v in SLICE_SIZES}
    try:
        if int(n) in sizes and float(n) == int(n):
            return int(n)
    except (TypeError, ValueError):
        pass
    raise gr.Error(f"The slice is {' or '.join(f'{v:,}' for v in sorted(sizes))} test pictures.")


def _scores(which: list[str], n: int, target: evalcache.Target | None, cached_only: bool, progress=None) -> dict:
    """robustness.compute_shipped's result (the shipped weights on the slice of the usual test set),
    with `target` (a visitor's run) first as "your run (model)": its entries cached in its own
    folder (evalcache.run_cache), so they go with it."""
    if target is None:
        return robustness.compute_shipped(None, which, progress=progress, n=n, cached_only=cached_only)
    source = data.resolve_source(None, download=False)
    result = robustness.compute([target, *robustness.shipped_targets()], which,
                                split=robustness.test_slice(source, n), dataset=source.label,
                                cache=evalcache.run_cache, progress=progress, cached_only=cached_only)
    result["models"] = {your_name(target) if k == target.name else k: v for k, v in result["models"].items()}
    return result


def cached_curves(name: str, severity: int = DEFAULT_SEVERITY, n: int = robustness.DEFAULT_N,
                  target: evalcache.Target | None = None) -> tuple[Figure | None, str]:
    """What the cache holds for one corruption on `n` test pictures: nothing is computed here."""
    try:
        result = _scores([name], int(n), target, cached_only=True)
    except data.DataSourceError:
        return None, "No CIFAR-10 test set found, so no accuracies (see the Train tab for how to add one)."
    return curves_figure(result, name, severity), _status(result, name)


def compute_curves(name: str, severity: int = DEFAULT_SEVERITY, n: int = robustness.DEFAULT_N,
                   progress=gr.Progress(), target: evalcache.Target | None = None) -> tuple[Figure, str]:
    """Score every shipped model on the slice under `name`, showing progress; then show the curves."""
    return _compute([name], name, severity, n, progress, target)


def compute_all(name: str, severity: int = DEFAULT_SEVERITY, n: int = robustness.DEFAULT_N,
                progress=gr.Progress(), target: evalcache.Target | None = None) -> tuple[Figure, str]:
    """The same for every corruption (what the "Compute all" button does); shows `name`'s curves."""
    return _compute(list(CORRUPTIONS), name, severity, n, progress, target)


def _compute(which: list[str], name: str, severity: int, n: int, progress,
             target: evalcache.Target | None = None) -> tuple[Figure, str]:

    def report(done: int, total: int) -> None:
        progress((done, total), desc="evaluations (model x severity)")

    t0 = time.perf_counter()
    try:
        with _COMPUTE:
            result = _scores(which, int(n), target, cached_only=False, progress=report)
    except data.DataSourceError as e:
        raise gr.Error(f"No CIFAR-10 test set to score on. {e}") from None
    except weights.WeightsError as e:
        raise gr.Error(str(e)) from None
    return curves_figure(result, name, severity), _status(result, name, time.perf_counter() - t0)


# The page's events (their API names are the functions' above): the same, on one of the tab's
# slice sizes only, with the page owner's run (the "Your run" list) among the models.

def cached_curves_for(ctx: AppContext, name: str, severity: int, n: int, run_id: str | None = NO_RUN, token=None):
    return cached_curves(name, severity, slice_size(n), your_target(ctx, run_id, token))


def compute_curves_for(ctx: AppContext, name: str, severity: int, n: int, run_id: str | None = NO_RUN,
                       token=None, progress=gr.Progress()):
    return compute_curves(name, severity, slice_size(n), progress, your_target(ctx, run_id, token))


def compute_all_for(ctx: AppContext, name: str, severity: int, n: int, run_id: str | None = NO_RUN,
                    token=None, progress=gr.Progress()):
    return compute_all(name, severity, slice_size(n), progress, your_target(ctx, run_id, token))


# ----------------------------------------------------------------------------- layout

def _on_gallery_select(evt: gr.SelectData) -> np.ndarray:
    return sample_image(evt.index)


def build(ctx: AppContext, visitor: gr.BrowserState | None = None) -> None:
    """The tab; `visitor` is the page's token (its finished runs can join the shipped models)."""
    token = [visitor] if visitor is not None else []
    with gr.Tab("Robustness") as tab:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=True):
            corruption = gr.Dropdown([(c.title, n) for n, c in CORRUPTIONS.items()], value=DEFAULT_CORRUPTION,
                                     label="Corruption", scale=1)
            severity = gr.Slider(0, MAX_SEVERITY, value=DEFAULT_SEVERITY, step=1, scale=2,
                                 label="Severity (0 = the clean picture)")
        lesson = gr.Markdown(teaching(DEFAULT_CORRUPTION))
        run_choice = gr.Dropdown(run_choices(ctx), value=NO_RUN, elem_id="robustness-run",
                                 label="Also test a model you trained (Train tab)",
                                 info="A finished run of yours joins the table and the curves, beside the "
                                      "shipped models.")
        chosen = gr.State(None)   # the 32x32 picture; None until one is picked (the default)

        gr.Markdown("### One picture")
        with gr.Row(equal_height=False):
            clean_view = gr.Image(label="Clean (32x32, shown 8x)", format="png", interactive=False,
                                  height=256, scale=1, min_width=200)
            damaged_view = gr.Image(label="Corrupted", format="png", interactive=False, height=256,
                                    scale=1, min_width=200)
            table = gr.Dataframe(headers=PREDICT_HEADERS, label="Each model's answer", interactive=False,
                                 scale=2, elem_id="robustness-table")
        with gr.Accordion("Pick another picture", open=False):
            gallery = gr.Gallery(label="CIFAR-10 sample (5 test images per class): click one", columns=10,
                                 height="fit-content", format="png", allow_preview=False, object_fit="contain")
            upload = gr.UploadButton("Upload your own picture", file_types=["image"], type="filepath")

        gr.Markdown("### Accuracy against severity")
        data_md = gr.HTML()
        status = gr.Markdown()
        with gr.Row(equal_height=True):
            size = gr.Radio(SLICE_SIZES, value=robustness.DEFAULT_N, label="Test pictures", scale=2)
            go = gr.Button("Compute for this corruption", variant="primary")
            go_all = gr.Button("Compute all corruptions")
        plot = gr.Plot(label="Accuracy vs. severity", show_label=False)

    gr.on(None, sample_gallery, outputs=gallery, show_progress="hidden", **FREE)
    gr.on(None, data_status, outputs=data_md, show_progress="hidden", **FREE)
    gallery.select(_on_gallery_select, outputs=chosen, **FREE)
    upload.upload(choose_upload, inputs=upload, outputs=chosen, show_progress="hidden", **FREE)
    corruption.change(teaching, inputs=corruption, outputs=lesson, show_progress="hidden", **FREE)
    runs = ctx.bind(refresh_runs)
    tab.select(runs, [run_choice, *token], run_choice, **FREE)
    gr.on(None, runs, [run_choice, *token], run_choice, **FREE)
    # No triggers: on page load, and whenever one of the inputs changes (picture, corruption, severity,
    # size, your run). Every model on the two pictures: the "models" lane; the curves' cache is only read.
    gr.on(None, ctx.bind(show_picture_with_run), inputs=[chosen, corruption, severity, run_choice, *token],
          outputs=[clean_view, damaged_view, table], api_name="show_picture",
          trigger_mode="always_last", show_progress="hidden", **MODELS)
    gr.on(None, ctx.bind(cached_curves_for), inputs=[corruption, severity, size, run_choice, *token],
          outputs=[plot, status], api_name="cached_curves", trigger_mode="always_last", show_progress="hidden",
          **FREE)
    # Scoring test slices: heavy.
    curve_in = [corruption, severity, size, run_choice, *token]
    go.click(ctx.bind(compute_curves_for), curve_in, [plot, status], api_name="compute_curves", **HEAVY)
    go_all.click(ctx.bind(compute_all_for), curve_in, [plot, status], api_name="compute_all", **HEAVY)
