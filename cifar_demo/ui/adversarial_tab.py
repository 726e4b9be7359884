"""Adversarial tab: a change too small to see that fools a network (analysis.adversarial).

(a) One picture (a bundled CIFAR-10 test picture or an upload, through data.uploads) attacked on
one chosen model with FGSM or PGD at epsilon (1/255 steps): the original, the perturbation
amplified, the perturbed picture, and every shipped model's answer before and after (does the
attack made on one model fool the others?). (b) Each model's accuracy against epsilon on a
class-balanced test slice, computed on demand with progress and cached per weights file.
This module only wires and draws.
"""

from __future__ import annotations

import functools
import threading
import time

import gradio as gr
import numpy as np
from matplotlib.figure import Figure

from .. import augment, data, weights
from ..analysis import adversarial
from ..common import CLASSES
from ..reporting import plots_lessons
from .common import upload_32x32
from .context import FREE, HEAVY, MODELS, AppContext

SCALE = 8                 # 32 px -> 256 px
THUMB_SCALE = 2
DEFAULT_IMAGE = 15        # "cat 1" of the bundled sample
ANSWER_HEADERS = ["model", "original", "perturbed", "fooled?"]
SLICE_SIZES = [("200 (20 a class)", 200), ("100 (quick, about ±4 points)", 100)]
INTRO = """Change every pixel of a picture by at most a few levels of 255 (you will not see it), in exactly the
direction that hurts one network most, and that network changes its mind, often with more confidence than
before. **FGSM** (Goodfellow et al. 2015) takes one step along the sign of the loss's gradient with respect
to the pixels; **PGD** (Madry et al. 2018) takes ten smaller ones from a random start, each time projected back
into the allowed box. Epsilon is the box's half-width in 1/255 steps of each colour. The attack only needs the
network's gradient, which every trained network has: accuracy on clean pictures says nothing about it.

**What it teaches.** Networks read textures and faint patterns that people ignore; a picture has thousands of
pixels, so thousands of tiny nudges add up in the logit. An attack made on one model often fools others too
(the table's "transfer"), because they learn similar features from the same data. *Adversarial training*
(training on PGD pictures, Madry et al.) is the defence that has held up: Madry et al. report 45.8% accuracy
under a 20-step PGD attack at eps 8 for their adversarially trained CIFAR-10 network (87.3% on clean pictures),
where plain training gives close to 0%, at the price of clean accuracy and of one extra forward and backward pass
per attack step in every training batch. None of the shipped models was trained that way.
(Written here in a few lines of PyTorch, not with torchattacks: see analysis/adversarial.py.)"""


# ----------------------------------------------------------------------------- the picture

@functools.lru_cache(maxsize=1)
def _sample() -> tuple[np.ndarray, list[str]]:
    split = data.load_sample()
    names, count = [], {}
    for label in split.labels.tolist():
        count[CLASSES[label]] = count.get(CLASSES[label], 0) + 1
        names.append(f"{CLASSES[label]} {count[CLASSES[label]]}")
    return split.images.permute(0, 2, 3, 1).numpy(), names


def sample_gallery() -> list[tuple[np.ndarray, str]]:
    images, names = _sample()
    return [(augment.upscale_nearest(img, THUMB_SCALE), n) for img, n in zip(images, names)]


def choose_sample(evt: gr.SelectData) -> np.ndarray:
    images, _ = _sample()
    if not isinstance(evt.index, int) or not 0 <= evt.index < len(images):
        raise gr.Error("There is no such sample picture.")
    return images[evt.index]


choose_upload = upload_32x32   # the upload event: ui.common's guard and decoding


def show_attack(image32, model: str, method: str, eps: float, steps: int):
    """(original, perturbation, perturbed: each enlarged; caption; every model's answers)."""
    image = _sample()[0][DEFAULT_IMAGE] if image32 is None else np.asarray(image32, dtype=np.uint8)
    try:
        adversarial.check(method, eps, steps)   # before any model loads: a request may send any value
        target = adversarial.shipped_model(model)
        others = {n: weights.load(n).model for n in adversarial.shipped_models()}
        r = adversarial.attack_picture(image, target, model, method, eps, steps, others)
    except (ValueError, weights.WeightsError) as e:
        raise gr.Error(str(e)) from None
    rows = [[a["model"] + (" (attacked)" if a["model"] == r.model else ""), f"{a['before']} {a['p_before']:.0%}",
             f"{a['after']} {a['p_after']:.0%}", "yes" if a["before"] != a["after"] else ""] for a in r.answers]
    fooled = sum(a["before"] != a["after"] for a in r.answers[1:])
    what = "FGSM" if r.method == "fgsm" else f"PGD, {int(steps)} steps"
    caption = (f"**{what} at epsilon {r.eps:g}/255 on `{r.model}`**, pushing it away from its own answer "
               f"(*{r.label}*). The perturbation is shown **×{r.factor:.0f}** around grey (grey = no change). "
               + ("Epsilon 0: nothing changes." if r.eps == 0 else
                  f"It {'fooled' if r.answers[0]['after'] != r.label else 'did not fool'} `{r.model}` and changed "
                  f"the answer of {fooled} of the {len(r.answers) - 1} other models (transfer)."))
    big = functools.partial(augment.upscale_nearest, scale=SCALE)
    return big(r.original), big(r.perturbation), big(r.adversarial), caption, rows


# ----------------------------------------------------------------------------- accuracy against epsilon

_COMPUTE = threading.Lock()


def _figure(result: dict) -> Figure:
    what = "FGSM" if result["method"] == "fgsm" else f"PGD ({result['steps']} steps)"
    curves = {n: m["accuracy"] for n, m in result["models"].items()}
    return plots_lessons.accuracy_vs_epsilon(curves, result["eps"],
                                             title=f"{what}: accuracy on {result['slice']['n']} test images")


def _status(result: dict, seconds: float | None = None) -> str:
    todo = sum(a is None for m in result["models"].values() for a in m["accuracy"])
    if todo:
        return (f"**{todo}** (model, epsilon) pairs not computed yet: press **Compute** (PGD makes 10 forward and "
                "backward passes per picture: minutes per model on a 2-core CPU, see docs/lessons.md; then cached "
                "for good).")
    done = (f"Computed in {seconds:.0f} s; now cached." if seconds is not None and result["computed"]
            else "From the cache.")
    return f"All models, on {result['slice']['n']} test images of {result['slice']['dataset']}. {done}"


def cached_curves(method: str, n: int):
    try:
        result = adversarial.compute_shipped(adversarial.shipped_models(), method, n=int(n), cached_only=True)
    except data.DataSourceError:
        return None, "No CIFAR-10 test set found, so no accuracies (see the Train tab for how to add one)."
    except ValueError as e:
        raise gr.Error(str(e)) from None
    return _figure(result), _status(result)


def compute_curves(method: str, n: int, progress=gr.Progress()):
    def report(done: int, total: int) -> None:
        progress((done, total), desc="attacks (model x epsilon)")

    if int(n) not in dict((v, k) for k, v in SLICE_SIZES):
        raise gr.Error("Pick one of the offered slice sizes.")
    t0 = time.perf_counter()
    try:
        with _COMPUTE:
            result = adversarial.compute_shipped(adversarial.shipped_models(), method, n=int(n), progress=report)
    except data.DataSourceError as e:
        raise gr.Error(f"No CIFAR-10 test set to attack. {e}") from None
    except (ValueError, weights.WeightsError) as e:
        raise gr.Error(str(e)) from None
    return _figure(result), _status(result, time.perf_counter() - t0)


# ----------------------------------------------------------------------------- layout

def build(ctx: AppContext) -> None:
    """The tab; it keeps nothing per visitor, so reads nothing of `ctx`."""
    models = adversarial.shipped_models()
    with gr.Tab("Adversarial"):
        gr.Markdown(INTRO)
        with gr.Row(equal_height=True):
            model = gr.Dropdown(models, value="airnet" if "airnet" in models else (models or [None])[0],
                                label="Attacked model", scale=1)
            method = gr.Radio([("FGSM (one step)", "fgsm"), ("PGD (iterated)", "pgd")], value="pgd",
                              label="Attack", scale=1)
            eps = gr.Slider(0, 16, value=2, step=1, label="Epsilon (in 1/255 steps)", scale=2,
                            elem_id="adv-eps")
            steps = gr.Slider(1, 20, value=adversarial.PGD_STEPS, step=1, label="PGD steps", scale=1)
        chosen = gr.State(None)
        with gr.Row(equal_height=False):
            original = gr.Image(label="Original (32x32, shown 8x)", format="png", interactive=False, height=256,
                                min_width=180)
            noise = gr.Image(label="Perturbation (amplified)", format="png", interactive=False, height=256,
                             min_width=180)
            perturbed = gr.Image(label="Perturbed", format="png", interactive=False, height=256, min_width=180)
        caption = gr.Markdown(elem_id="adv-caption")
        table = gr.Dataframe(headers=ANSWER_HEADERS, label="Every model's answer", interactive=False,
                             elem_id="adv-answers")
        with gr.Accordion("Pick another picture", open=False):
            gallery = gr.Gallery(label="CIFAR-10 sample (5 test images per class): click one", columns=10,
                                 height="fit-content", format="png", allow_preview=False, object_fit="contain")
            upload = gr.UploadButton("Upload your own picture", file_types=["image"], type="filepath")

        gr.Markdown("### Accuracy against epsilon\nEvery shipped model on a fixed, class-balanced slice of the test "
                    "set, each picture attacked against its true label on that model (white-box).")
        status = gr.Markdown()
        with gr.Row(equal_height=True):
            size = gr.Radio(SLICE_SIZES, value=200, label="Test pictures", scale=2)
            go = gr.Button("Compute", variant="primary")
        plot = gr.Plot(label="Accuracy vs. epsilon", show_label=False)

    gr.on(None, sample_gallery, outputs=gallery, show_progress="hidden", **FREE)
    gallery.select(choose_sample, outputs=chosen, **FREE)
    upload.upload(choose_upload, inputs=upload, outputs=chosen, show_progress="hidden", **FREE)
    # On load and whenever an input changes: the attack and every model's two answers (the models lane).
    gr.on(None, show_attack, inputs=[chosen, model, method, eps, steps],
          outputs=[original, noise, perturbed, caption, table], trigger_mode="always_last", **MODELS)
    gr.on(None, cached_curves, inputs=[method, size], outputs=[plot, status], trigger_mode="always_last",
          show_progress="hidden", **FREE)
    go.click(compute_curves, inputs=[method, size], outputs=[plot, status], **HEAVY)
