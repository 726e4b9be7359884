"""Evaluate tab: score shipped weights or a finished run on the whole test set.

Accuracy, confusion matrices, per-class bars and table, the most confident mistakes and a
reliability diagram. Results are cached on disk by evalcache (weights hash + TTA + dataset),
so a second look, even after a restart, is instant.
"""

from __future__ import annotations

import time

import gradio as gr

from .. import augment, data, evalcache, evaluate, jobs, plots, train, weights
from ..common import CLASSES
from .common import data_status

GALLERY_SIZE = 32     # most confident mistakes shown
GALLERY_SCALE = 6     # 32x32 -> 192x192, each pixel a crisp 6x6 block
TABLE_HEADERS = ["class", "test images", "precision (%)", "recall = accuracy (%)", "F1 (%)"]
TTA_HELP = ("Test-time augmentation averages the predictions over several views of each image: "
            "none; flip (the image and its mirror); flip_translate (also shifted 1 pixel, 6 views).")


# ----------------------------------------------------------------------------- choices

def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def model_choices() -> list[tuple[str, str]]:
    """Shipped weights ("weights:<model>") and runs with best weights ("run:<run id>")."""
    out = []
    for name in weights.available():
        try:
            acc = f", card: {_pct(weights.card_for(name).test_accuracy)}"
        except weights.WeightsError:
            acc = ""
        out.append((f"{name} (shipped weights{acc})", f"weights:{name}"))
    for r in train.list_runs(jobs.manager().runs_dir):
        s = r["summary"]
        if s is None or not r["has_best"]:
            continue  # still going, or died before its first epoch: no finished weights
        out.append((f"run {r['run_id']} ({s['status']}, test {_pct(s.get('test_acc'))})", f"run:{r['run_id']}"))
    return out


def refresh_choices(current: str | None = None):
    choices = model_choices()
    values = [v for _, v in choices]
    return gr.Dropdown(choices=choices, value=current if current in values else (values[0] if values else None))


def target_of(choice: str) -> evalcache.Target:
    kind, _, name = (choice or "").partition(":")
    if kind == "weights":
        return evalcache.shipped(name)
    if kind == "run":
        return evalcache.from_run(name, jobs.manager().runs_dir)
    raise ValueError("Pick shipped weights or a finished run first.")


# ----------------------------------------------------------------------------- presenting a result

def class_table(res: evaluate.EvalResult) -> list[list]:
    """One row per class plus the macro average, percentages with two decimals."""
    rows = [[c, res.support[i], round(100 * res.precision[i], 2), round(100 * res.recall[i], 2),
             round(100 * res.f1[i], 2)] for i, c in enumerate(CLASSES)]
    rows.append(["macro average", res.n, round(100 * res.macro_precision, 2),
                 round(100 * res.macro_recall, 2), round(100 * res.macro_f1, 2)])
    return rows


def mistakes_gallery(res: evaluate.EvalResult, test: data.Split, n: int = GALLERY_SIZE) -> list[tuple]:
    """The n most confident mistakes as (upscaled HWC image, "true -> predicted (confidence)")."""
    out = []
    for i in res.misclassified[:n]:
        image = test.images[i].permute(1, 2, 0).numpy()
        conf = "" if res.confidences is None else f" ({res.confidences[i]:.0%})"
        caption = f"{CLASSES[res.labels[i]]} → {CLASSES[res.predictions[i]]}{conf}"
        out.append((augment.upscale_nearest(image, GALLERY_SCALE), caption))
    return out


def summary_markdown(target: evalcache.Target, res: evaluate.EvalResult, source: data.DataSource,
                     cached: bool, seconds: float) -> str:
    lines = [f"### {target.label}: test accuracy {_pct(res.accuracy)}",
             f"{res.n:,} test images of {source.label}, TTA `{res.tta}`. Top-5 accuracy "
             f"{_pct(res.topk.get('top5'))}, mean cross-entropy {res.loss:.3f}, calibration error (ECE) "
             f"{_pct(res.ece)}, macro F1 {_pct(res.macro_f1)}."]
    if target.kind == "weights":
        card = weights.card_for(target.name)
        note = "" if card.dataset_fingerprint == source.fingerprint else " (a different copy of the data)"
        lines.append(f"Model card: {_pct(card.test_accuracy)}, with TTA {_pct(card.test_accuracy_tta)}, "
                     f"on {card.dataset}{note}.")
    lines.append("Loaded from the evaluation cache." if cached else f"Scored in {seconds:.1f} s (now cached).")
    return "\n\n".join(lines)


# ----------------------------------------------------------------------------- the handler

def run_evaluation(choice: str, tta: str = "none", progress=gr.Progress(track_tqdm=True)):
    """(summary, confusion counts, confusion normalised, per-class bars, table, gallery, reliability)."""
    try:
        target = target_of(choice)
        source = data.resolve_source(target.data, download=False)
        t0 = time.perf_counter()
        res, cached = evalcache.evaluate_target(target, tta, source, progress=True)
        test = data.load_split("test", source)  # the decoded cache: well under a second
    except data.DataSourceError as e:
        raise gr.Error(f"No CIFAR-10 data to evaluate on. {e}") from None
    except (weights.WeightsError, FileNotFoundError, ValueError) as e:
        raise gr.Error(str(e)) from None
    seconds = time.perf_counter() - t0
    title = target.label
    return (
        summary_markdown(target, res, source, cached, seconds),
        plots.confusion_matrix(res.confusion, CLASSES, title=f"{title}: confusion matrix (counts)"),
        plots.confusion_matrix(res.confusion, CLASSES, normalize=True,
                               title=f"{title}: confusion matrix (share of each true class)"),
        plots.per_class_accuracy(res.recall, CLASSES, title=f"{title}: accuracy per class"),
        class_table(res),
        mistakes_gallery(res, test),
        plots.reliability_diagram(res.reliability, res.ece, title="Reliability diagram"),
    )


# ----------------------------------------------------------------------------- layout

def build() -> None:
    with gr.Tab("Evaluate") as tab:
        gr.Markdown("Score a model on the test set (10,000 images of CIFAR-10): where it is right, which classes it "
                    "confuses, and whether its confidence can be trusted. Results are cached, so a "
                    "second look is instant.")
        data_md = gr.HTML()
        with gr.Row(equal_height=True):
            choice = gr.Dropdown([], label="Weights", scale=3,
                                 info="Shipped weights (weights/), or a finished run of the Train tab.")
            tta = gr.Radio(list(evaluate.TTA_MODES), value="none", label="Test-time augmentation",
                           info=TTA_HELP, scale=3)
            with gr.Column(scale=1, min_width=160):
                go = gr.Button("Evaluate", variant="primary")
                refresh = gr.Button("Refresh the list", size="sm")
        summary = gr.Markdown("Pick weights and press **Evaluate**.")
        with gr.Row():
            cm_counts = gr.Plot(label="Confusion matrix (counts)", show_label=False)
            cm_norm = gr.Plot(label="Confusion matrix (normalised)", show_label=False)
        with gr.Row():
            with gr.Column(scale=3):
                per_class = gr.Plot(label="Accuracy per class", show_label=False)
                table = gr.Dataframe(headers=TABLE_HEADERS, label="Precision, recall and F1 per class",
                                     interactive=False)
            with gr.Column(scale=2):
                reliability = gr.Plot(label="Calibration", show_label=False)
                gr.Markdown("Bars on the diagonal mean: when the model says 80 %, it is right 80 % of "
                            "the time. ECE is the average gap, weighted by the images in each bin.")
        gallery = gr.Gallery(label="The most confident mistakes: true class → predicted (confidence)",
                             columns=6, height="auto", object_fit="contain", allow_preview=True)

    outputs = [summary, cm_counts, cm_norm, per_class, table, gallery, reliability]
    go.click(run_evaluation, [choice, tta], outputs)
    refresh.click(refresh_choices, choice, choice)
    # The list follows the Train tab: opening this tab picks up runs that finished meanwhile.
    tab.select(refresh_choices, choice, choice)
    gr.on(None, data_status, None, data_md)
    gr.on(None, refresh_choices, None, choice)

