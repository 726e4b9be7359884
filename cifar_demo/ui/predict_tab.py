"""Predict tab: one picture, every zoo model side by side, an ensemble vote, Grad-CAM."""

from __future__ import annotations

import functools
import html
import threading
from pathlib import Path

import gradio as gr
import numpy as np
from gradio.data_classes import GradioModel, GradioRootModel

from .. import augment, data, weights, zoo
from ..analysis import evalcache, familiarity, gradcam, predict, serve
from ..common import CLASSES
from ..data import pictures, uploads
from .common import finished_runs, keep_choice, run_label, run_model, run_target
from .context import FREE, MODELS, SERVE, AppContext

TOP_K = 3
SCALE = 8  # the 32x32 input is shown 256x256, each pixel a sharp square

# /predict and /familiarity share batched passes (analysis.serve: one pass per model answers both,
# concurrent uploads share it). What runs a model outside them, Grad-CAM and a run of yours, one
# at a time: concurrent passes would only split the two cores between them (each slower, none sooner).
_LOCK = threading.Lock()

INTRO = ("Drop, paste or pick a picture. Every model in the zoo that has trained weights classifies "
         "it side by side. Like CIFAR-10's photos, your picture is centre-cropped to a square and "
         "shrunk to **32x32 pixels** first: that thumbnail is all the models see.")
FAMILIARITY_HELP = (
    "The models always answer with one of their ten classes, however foreign the picture. To warn "
    "you, each model also measures how far the picture lands from the CIFAR-10 photos it learnt "
    "from (the Mahalanobis distance of its features to the nearest class, Lee et al. 2018); the "
    "models' verdicts are combined and compared with a threshold set on real CIFAR-10 validation "
    "photos. `score` below `threshold` = unfamiliar; `false_alarm_test` is how often a real "
    "CIFAR-10 test photo is flagged.")
CAM_HELP = ("**Grad-CAM** heat maps: red marks the parts of the 32x32 image that pushed each model "
            "towards its top class, blue the parts that did not.")


# ------------------------------------------------------------------------------ the handler


def predict_image(path: str | dict | None, show_cam: bool = False):
    """Classify one uploaded image with every zoo model.

    path: a file Gradio uploaded, or Gradio's raw upload record (see build: the event skips
    gr.Image's preprocessing, so the file reaches pictures.load_image undecoded), or a base64
    data URL; data.uploads checks it first (any other path is refused).
    Returns (32x32 input upscaled, ensemble {class: prob} or None, results table HTML,
    Grad-CAM gallery [(image, caption)], {model: {class: prob}} for the models with weights).
    Raises gr.Error with a message for the user if the upload is not a usable image.
    """
    image32 = _picture(path)
    if image32 is None:
        return _nothing()
    # predict.predict_many's predictions, from a pass shared with others
    return _shown(image32, serve.answer(image32).predictions, show_cam)


def _nothing():
    """predict_image's outputs without an upload."""
    return None, None, _empty_table("Upload an image to see what the models make of it."), [], {}


def _shown(image32: np.ndarray, preds: list[predict.Prediction], show_cam: bool):
    """predict_image's five outputs from the zoo's predictions of the picture."""
    cams = []
    if show_cam:
        with _LOCK:
            cams = _cams(image32, preds)
    vote = predict.ensemble(preds)
    probs = {p.model: p.probs for p in preds if p.error is None}
    return (augment.upscale_nearest(image32, SCALE), vote or None, results_table(preds, vote),
            cams, probs)


def _unreadable(message: str):
    """predict_on_page's outputs for an upload that is not a usable picture."""
    return None, None, _error_table(f"Cannot read this image: {message}"), [], {}


def predict_on_page(path: str | dict | None, show_cam: bool = False):
    """predict_image for the page's own events: a picture it cannot read is said once, in place of
    the results (the page sends two change events for one upload, and each gr.Error was a toast:
    "Error (2)"), and the previous picture's answers are gone. API clients call /predict, which
    raises as before."""
    try:
        return predict_image(path, show_cam)
    except gr.Error as e:
        return _unreadable(e.message)


def familiarity_check(path: str | dict | None) -> dict | None:
    """The /familiarity endpoint: how CIFAR-like the upload looks to the models.

    {"unfamiliar": bool, "score": float, "threshold": float, "false_alarm_test": float,
    "per_model": {model: percentile}, "classes": [...]}, or {"unfamiliar": None, "error": ...}
    where no calibration fits the shipped weights. None without an upload.
    """
    try:
        image32 = _picture(path)
    except gr.Error as exc:   # /predict says it to the page; an API client reads it here
        return {"unfamiliar": None, "error": exc.message}
    if image32 is None:
        return None
    return _familiarity(serve.answer(image32))   # familiarity.assess's, from /predict's pass when cached


def _familiarity(answer: serve.Answer) -> dict:
    try:
        verdict = answer.verdict()
    except (familiarity.FamiliarityError, weights.WeightsError) as exc:
        return {"unfamiliar": None, "error": str(exc)}
    return {**verdict.to_dict(), "classes": list(CLASSES)}


def familiarity_notice(result: dict | None) -> str:
    """HTML above the predictions: a notice when the picture is unlike CIFAR-10, else nothing."""
    if not result or not result.get("unfamiliar"):
        return ""
    classes = ", ".join(CLASSES[:-1]) + " and " + CLASSES[-1]
    return ('<div class="fam-notice" style="border-left:4px solid #f59e0b;background:#fffbeb;color:#78350f;'
            'padding:10px 14px;border-radius:4px;margin-bottom:8px">'
            "<b>None of the ten classes seems to fit.</b> This picture looks unlike the CIFAR-10 photos "
            f"the models were taught: they only know {classes}, so each still picks one of those. "
            "Read the predictions below with that in mind."
            f'<div style="font-size:0.85em;margin-top:4px">Familiarity {result["score"]:.1f}, below the '
            f'threshold {result["threshold"]:.1f} that flags {result["false_alarm_test"]:.0%} of real '
            "CIFAR-10 test pictures.</div></div>")


def page_answers(ctx: AppContext, path: str | dict | None, show_cam: bool, run_id: str | None, token=None):
    """Everything the page shows for a new picture, from one event: predict_on_page's five answers,
    the familiarity verdict (/familiarity's) and its notice, and the answer of the owner's run
    when one is chosen. The page sent three queued events and two direct calls per upload; one
    event is one join, one handler and one answer for the server (bench/load.py: a class
    uploading at once). The picture is decoded once and asked once (analysis.serve). Every
    output is replaced, with the answers or with what is wrong with the upload: nothing of the
    previous picture stays (until then it waits under the event's progress overlay; clearing it
    in the browser first left gr.HTML and gr.Label outputs that the answers never replaced)."""
    try:
        image32 = _picture(path)
    except gr.Error as exc:   # said once, where the answers would be; your run's line stays empty
        return (*_unreadable(exc.message), {"unfamiliar": None, "error": exc.message}, "",
                *_run_line(ctx, None, run_id, token))
    if image32 is None:
        return (*_nothing(), None, "", None, "")
    answer = serve.answer(image32)   # the zoo's predictions and the familiarity verdict: one request
    fam = _familiarity(answer)
    return (*_shown(image32, answer.predictions, show_cam), fam, familiarity_notice(fam),
            *_run_line(ctx, image32, run_id, token))


def _run_line(ctx: AppContext, image32: np.ndarray | None, run_id: str | None, token=None):
    """predict_run's outputs for the page's event: a run that is gone is said on its line."""
    if not run_id:
        return None, ""
    try:
        target = _run_target(ctx, run_id, token)
    except gr.Error as exc:
        return None, f"**{html.escape(exc.message)}**"
    return _run_answer(target, image32)


def as_sent(components: list, fn):
    """fn with its outputs made what the page receives, in fn's own thread (the event then runs
    with postprocess=False): Gradio postprocesses each output of an event in a thread of its
    own, one hop after the other on the event loop, and the nine of the page's event made the
    last of thirty answers wait ~0.2 s after their handlers were done (bench/burst.py). The
    same components' postprocess, so the page gets the same values."""
    @functools.wraps(fn)
    def run(*args):
        out = []
        for component, value in zip(components, fn(*args), strict=True):
            value = component.postprocess(value)
            out.append(value.model_dump() if isinstance(value, (GradioModel, GradioRootModel)) else value)
        return out
    return run


def _picture(value: str | dict | None) -> np.ndarray | None:
    """The upload as the models see it (32x32), or None when nothing was sent. Only a file Gradio
    uploaded, or a base64 data URL (API clients), is read (data.uploads: any request may send any
    path); gr.Error with the message for the user otherwise."""
    try:
        source = uploads.picture_source(value)
        if source is None:
            return None
        # An upload: decoded once for /predict and /familiarity (an API client asks both at once).
        return (pictures.thumbnail_of_file(source) if isinstance(source, Path)
                else pictures.thumbnail(source))
    except pictures.ImageError as exc:   # uploads.UploadError included
        raise gr.Error(str(exc), title="Cannot read this image") from None


def _cams(image32: np.ndarray, preds: list[predict.Prediction]) -> list[tuple[np.ndarray, str]]:
    """One overlay per model with weights, explaining that model's own top class."""
    out = []
    for e in gradcam.explain_predictions(image32, preds):
        cls, prob = e.top(1)[0]
        # Where nothing argued for the class, the map is the either-way one: say so.
        note = {"either way": " (where it counted, for or against)", "none": " (flat: no region counted)"}.get(
            e.evidence, "")
        out.append((gradcam.overlay(image32, e.cam, SCALE), f"{e.model}: {cls} {prob:.0%}{note}"))
    return out


# ------------------------------------------------------------------------------ a run of yours

NO_RUN = ""


def run_choices(ctx: AppContext, token=None) -> list[tuple[str, str]]:
    """("No run: the zoo only", ""), then the owner's finished runs, each with its classes."""
    out = [("None: the zoo's models only", NO_RUN)]
    for r, study, classes in finished_runs(ctx, token):
        names = ", ".join(classes[:4]) + (f" +{len(classes) - 4}" if len(classes) > 4 else "")
        own = "" if list(classes) == list(CLASSES) else f" ({names})"   # your own images' classes
        out.append((run_label(r, study) + own, r["run_id"]))
    return out


def refresh_runs(ctx: AppContext, current: str | None = None, token=None) -> gr.Dropdown:
    return keep_choice(run_choices(ctx, token), current, NO_RUN)


def _run_target(ctx: AppContext, run_id: str, token=None) -> evalcache.Target:
    try:
        return run_target(ctx, run_id, token)
    except (FileNotFoundError, ValueError) as e:
        raise gr.Error(str(e)) from None


def predict_run(ctx: AppContext, path: str | dict | None, run_id: str | None, token=None):
    """The picture through a finished run of the page's owner, with the run's own class names:
    ({class: probability} or None, a line saying what answered)."""
    if not run_id or not path:
        return None, ""
    target = _run_target(ctx, run_id, token)
    try:
        image32 = _picture(path)
    except gr.Error:   # not a picture: /predict, on the same upload, says so (one message, not one per event)
        return None, ""
    return _run_answer(target, image32)


def _run_answer(target: evalcache.Target, image32: np.ndarray | None):
    if image32 is None:
        return None, ""
    with _LOCK:
        probs, ms = predict.predict_one(run_model(target), image32, target.class_names)
    classes = ", ".join(target.class_names)
    return probs, (f"**{html.escape(target.label)}** (`{target.model}`, {ms:.1f} ms), "
                   f"trained on its own classes: {html.escape(classes)}.")


# ------------------------------------------------------------------------------ the table

_CSS = """
table.preds {width: 100%; border-collapse: collapse; font-size: var(--text-md);
             color: var(--body-text-color);}
.preds th {text-align: left; font-weight: 600; padding: 6px 10px;
           border-bottom: 2px solid var(--border-color-primary);}
.preds td {padding: 6px 10px; border-bottom: 1px solid var(--border-color-primary); vertical-align: middle;}
.preds td.num, .preds th.num {text-align: right; white-space: nowrap;}
.preds .sub {color: var(--body-text-color-subdued); font-size: var(--text-sm);}
.preds tr.none td {color: var(--body-text-color-subdued);}
.preds .bars {display: flex; gap: 6px; flex-wrap: wrap;}
.preds .bar {min-width: 9em; padding: 2px 6px; border-radius: 4px; white-space: nowrap;
             border: 1px solid var(--border-color-primary);}
.preds .bar.first {font-weight: 600;}
.preds .err {color: var(--error-text-color, #b91c1c);}
.preds caption {caption-side: bottom; text-align: left; padding-top: 6px;
                color: var(--body-text-color-subdued); font-size: var(--text-sm);}
"""


def _bar(cls: str, prob: float, first: bool) -> str:
    # The cell's background fills left to right in proportion to the probability.
    fill = f"linear-gradient(90deg, var(--color-accent-soft) {prob:.1%}, transparent {prob:.1%})"
    return (f'<span class="bar{" first" if first else ""}" style="background: {fill}">'
            f"{html.escape(cls)} {prob:.0%}</span>")


def _accuracy_cell(card) -> str:
    dataset = html.escape(card.dataset)
    return f'{card.test_accuracy:.1%}<div class="sub">{dataset}</div>'


def results_table(preds: list[predict.Prediction], vote: dict[str, float]) -> str:
    """HTML table: one row per model (models with weights first, in zoo order)."""
    have = set(weights.available())
    rows = []
    for p in sorted(preds, key=lambda p: p.error is not None):  # stable: zoo order within groups
        spec = zoo.get_spec(p.model)
        params = f"{spec.params / 1e6:.2f} M"
        name = f"<b>{html.escape(p.model)}</b><div class='sub'>{html.escape(spec.source)}</div>"
        if p.error is None:
            card = weights.load(p.model).card
            bars = "".join(_bar(c, pr, i == 0) for i, (c, pr) in enumerate(p.top(TOP_K)))
            rows.append(f"<tr><td>{name}</td><td><div class='bars'>{bars}</div></td>"
                        f"<td class='num'>{_accuracy_cell(card)}</td><td class='num'>{params}</td>"
                        f"<td class='num'>{p.latency_ms:.1f} ms</td></tr>")
        else:
            why = ("no weights yet" if p.model not in have
                   else f"<span class='err'>weights could not be loaded: {html.escape(p.error)}</span>")
            rows.append(f"<tr class='none'><td>{name}</td><td>{why}</td><td class='num'>-</td>"
                        f"<td class='num'>{params}</td><td class='num'>-</td></tr>")
    ok = [p for p in preds if p.error is None]
    if ok:
        total = sum(p.latency_ms for p in ok)
        top = max(vote, key=vote.get)
        agree = sum(p.top(1)[0][0] == top for p in ok)
        batch = max(p.batch for p in ok)
        how = ("one forward pass of one image" if batch == 1 else
               f"each model's pass over {batch} pictures sent at once, divided by {batch}")
        caption = (f"{agree} of {len(ok)} models put <b>{top}</b> first. Latency per image: {how}, "
                   f"on this server's CPU ({total:.0f} ms for all {len(ok)}).")
    else:
        caption = ("No model has trained weights yet: train one in the Train tab and export it, "
                   "or add weights/&lt;model&gt;.safetensors with its card.")
    head = ("<tr><th>model</th><th>top 3 classes</th><th class='num'>test accuracy</th>"
            "<th class='num'>parameters</th><th class='num'>latency</th></tr>")
    return (f"<table class='preds'><caption>{caption}</caption><thead>{head}</thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _empty_table(message: str) -> str:
    return f"<p style='color: var(--body-text-color-subdued)'>{html.escape(message)}</p>"


def _error_table(message: str) -> str:
    return f"<p class='predict-error' style='color: var(--error-text-color)'><b>{html.escape(message)}</b></p>"


# ------------------------------------------------------------------------------ layout


def _examples() -> tuple[list[list[str]], list[str]]:
    """The first bundled sample image of each class."""
    first: dict[str, str] = {}
    for path, cls in data.sample_paths():
        first.setdefault(cls, str(path))
    return [[p] for p in first.values()], list(first)


def build(ctx: AppContext, visitor: gr.BrowserState | None = None) -> None:
    """The tab; `visitor` is the page's token (its runs are offered beside the zoo)."""
    token = [visitor] if visitor is not None else []
    with gr.Tab("Predict") as tab:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=3):
                image = gr.Image(label="Your image", type="filepath", image_mode=None,
                                 sources=["upload", "webcam", "clipboard"], height=300, elem_id="predict-input",
                                 # A snapshot from the camera comes as an upload (data.uploads checks it).
                                 webcam_options=gr.WebcamOptions(mirror=False))
                show_cam = gr.Checkbox(label="Show Grad-CAM", value=False,
                                       info="Heat maps of where each model looked (slower).")
                paths, labels = _examples()
                gr.Examples(paths, inputs=[image], example_labels=labels, examples_per_page=10,
                            label="Or try a CIFAR-10 test image", cache_examples=False)
            with gr.Column(scale=2):
                notice = gr.HTML("", elem_id="familiarity-notice")
                seen = gr.Image(label="What the models see: 32x32 pixels, enlarged", format="png",
                                interactive=False, height=272, buttons=["download"])
                vote = gr.Label(label="Ensemble vote (average of the models' probabilities)",
                                num_top_classes=TOP_K)
        # Our own table style, not Gradio's prose one (a dark grid around every cell).
        table = gr.HTML(_empty_table("Upload an image to see what the models make of it."),
                        css_template=_CSS, apply_default_css=False)
        with gr.Row(equal_height=True):
            run_choice = gr.Dropdown(run_choices(ctx), value=NO_RUN, scale=2, elem_id="predict-run",
                                     label="Also ask a model you trained (Train tab)",
                                     info="A finished run of yours, with its own classes (your own images too).")
            with gr.Column(scale=3):
                run_md = gr.Markdown(elem_id="predict-run-info")
                run_label = gr.Label(label="Your run's answer", num_top_classes=TOP_K, elem_id="predict-run-label")
        cam_note = gr.Markdown(CAM_HELP, visible=False)
        cams = gr.Gallery(label="Grad-CAM", columns=5, format="png", object_fit="contain",
                          height="auto", visible=False, allow_preview=True)
        with gr.Accordion("JSON: what the API endpoint /predict returns per model", open=False):
            probs = gr.JSON(label="{model: {class: probability}}")
        with gr.Accordion("Is this a CIFAR-10-like picture? What /familiarity returns", open=False):
            gr.Markdown(FAMILIARITY_HELP)
            fam = gr.JSON(label="familiarity")

        outputs = [seen, vote, table, cams, probs]
        # preprocess=False: gr.Image would open the upload with PIL before the handler runs, so a
        # non-image or a decompression bomb would end in Gradio's anonymous "Error". Raw, the
        # upload record goes to load_image, whose messages say what is wrong. Gradio checks that
        # a record is in its upload folder only when it carries FileData's "meta", and a request
        # may leave it out: _picture checks every value itself (data.uploads). (A gr.Image
        # subclass would do too, but Gradio writes a .pyi stub beside the module of every
        # component subclass.)
        # Every model of the zoo on the picture: the "serve" lane, wide, so that concurrent uploads
        # wait together in analysis.serve's batcher and share its passes.
        # One event brings every answer (page_answers). A picture it cannot read is said once, where
        # the answers would be (predict_on_page), never as a toast.
        page_outputs = [*outputs, fam, notice, run_label, run_md]
        image.change(as_sent(page_outputs, ctx.bind(page_answers)), [image, show_cam, run_choice, *token],
                     page_outputs, api_name="page_answers", api_visibility="private", preprocess=False,
                     postprocess=False, **SERVE)
        # The public /predict and /familiarity (API clients, tests/test_attacks_http.py): the same
        # answers, errors raised. A button never shown carries them.
        api_only = gr.Button(visible=False)
        api_only.click(predict_image, [image, show_cam], outputs, api_name="predict", preprocess=False, **SERVE)
        api_only.click(familiarity_check, image, fam, api_name="familiarity", preprocess=False, **SERVE)
        # Choosing a run asks it alone.
        run_choice.input(ctx.bind(predict_run), [image, run_choice, *token], [run_label, run_md],
                         preprocess=False, api_visibility="private", **MODELS)
        runs = ctx.bind(refresh_runs)
        tab.select(runs, [run_choice, *token], run_choice, **FREE)
        gr.on(None, runs, [run_choice, *token], run_choice, **FREE)
        show_cam.change(lambda on: (gr.update(visible=on), gr.update(visible=on)), show_cam,
                        [cams, cam_note], api_visibility="private", queue=False, **FREE).then(
            predict_on_page, [image, show_cam], outputs, api_visibility="private", preprocess=False, **SERVE)
