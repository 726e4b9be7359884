"""Evaluate tab: score shipped weights or a finished run on the whole test set.

Accuracy, confusion matrices, per-class bars and table, the most confident mistakes and a
reliability diagram. Results are cached on disk by evalcache (weights hash + TTA + dataset),
so a second look, even after a restart, is instant.

The drill-down: a click on a cell of the confusion heat map shows that cell's test images
(paged), and a click on one of them every model's top 3 and Grad-CAM for it. Those handlers
read the EvalResult held in a gr.State and the decoded test split: nothing is re-scored.
"""

from __future__ import annotations

import base64
import html
import io
import threading
import time

import gradio as gr
import numpy as np
from PIL import Image

from .. import augment, data, weights
from ..analysis import evalcache, evaluate, gradcam, predict
from ..common import CLASSES
from ..reporting import plots
from . import label_review
from .common import data_status, keep_choice, owner_of, owner_runs, run_label, run_model, run_target
from .confusion import heatmap
from .context import FREE, HEAVY, MODELS, AppContext

GALLERY_SIZE = 32     # most confident mistakes shown
GALLERY_SCALE = 6     # 32x32 -> 192x192, each pixel a crisp 6x6 block
ECE_HELP = ("**Reliability diagram**: the test pictures are sorted into bins by how sure the model was "
            "(its top probability); each bar is how often it was right within a bin. Bars on the diagonal "
            "mean: when the model says 80 %, it is right 80 % of the time. Bars below it: over-confident. "
            "**ECE** (expected calibration error) is the average gap between bar and diagonal, weighted by "
            "the pictures in each bin: 0 % is a perfectly honest model, 5 % means it is typically 5 points "
            "more (or less) sure than it is right.")
TABLE_HEADERS = ["class", "test images", "precision (%)", "recall = accuracy (%)", "F1 (%)"]
CELL_PAGE = 40       # drill-down images per page
CELL_SCALE = 3       # 32x32 -> 96x96 thumbnails
CAM_SCALE = 5        # 32x32 -> 160x160 Grad-CAM overlays in the comparison
TTA_HELP = ("Test-time augmentation averages the predictions over several views of each image: "
            "none; flip (the image and its mirror); flip_translate (also shifted 1 pixel, 6 views).")


# ----------------------------------------------------------------------------- choices

def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def _runs_dir(ctx: AppContext, token=None):
    """The page owner's runs (ui.common.owner_of): all of runs/ locally, a visitor's own in public mode."""
    owner = owner_of(ctx, token)
    if owner is None:
        raise ValueError("This page has no visitor token yet: reload it.")
    return ctx.runs_dir_for(owner)


def model_choices(ctx: AppContext, token=None) -> list[tuple[str, str]]:
    """Shipped weights ("weights:<model>") and the owner's runs with best weights ("run:<run id>")."""
    out = []
    for name in weights.available():
        try:
            acc = f", card: {_pct(weights.card_for(name).test_accuracy)}"
        except weights.WeightsError:
            acc = ""
        out.append((f"{name} (shipped weights{acc})", f"weights:{name}"))
    # Only finished runs: one still going, or dead before its first epoch, has no best weights.
    for r, study in (owner_runs(_runs_dir(ctx, token), finished=True) if owner_of(ctx, token) else []):
        out.append((f"your run: {run_label(r, study)}", f"run:{r['run_id']}"))
    return out


def refresh_choices(ctx: AppContext, current: str | None = None, token=None):
    choices = model_choices(ctx, token)
    return keep_choice(choices, current, choices[0][1] if choices else None)


def target_of(ctx: AppContext, choice: str, token=None) -> evalcache.Target:
    kind, _, name = (choice or "").partition(":")
    if kind == "weights":
        return evalcache.shipped(name)
    if kind == "run":
        return run_target(ctx, name, token)
    raise ValueError("Pick shipped weights or a finished run first.")


# ----------------------------------------------------------------------------- presenting a result

def class_table(res: evaluate.EvalResult, classes=CLASSES) -> list[list]:
    """One row per class plus the macro average, percentages with two decimals."""
    rows = [[c, res.support[i], round(100 * res.precision[i], 2), round(100 * res.recall[i], 2),
             round(100 * res.f1[i], 2)] for i, c in enumerate(classes)]
    rows.append(["macro average", res.n, round(100 * res.macro_precision, 2),
                 round(100 * res.macro_recall, 2), round(100 * res.macro_f1, 2)])
    return rows


def mistakes_gallery(res: evaluate.EvalResult, test: data.Split, n: int = GALLERY_SIZE,
                     classes=CLASSES) -> list[tuple]:
    """The n most confident mistakes as (upscaled HWC image, "true -> predicted (confidence)")."""
    out = []
    for i in res.misclassified[:n]:
        image = test.images[i].permute(1, 2, 0).numpy()
        conf = "" if res.confidences is None else f" ({res.confidences[i]:.0%})"
        caption = f"{classes[res.labels[i]]} → {classes[res.predictions[i]]}{conf}"
        out.append((augment.upscale_nearest(image, GALLERY_SCALE), caption))
    return out


def summary_markdown(target: evalcache.Target, res: evaluate.EvalResult, source: data.DataSource,
                     cached: bool, seconds: float) -> str:
    lines = [f"### {target.label}: test accuracy {_pct(res.accuracy)}",
             f"{res.n:,} test images of {source.label}, TTA `{res.tta}`"
             + (f" (without it {_pct(res.plain['accuracy'])}, from the same pass). " if res.plain else ". ")
             + (f"Top-5 accuracy {_pct(res.topk.get('top5'))}, " if len(target.class_names) > 5 else "")
             + f"mean cross-entropy {res.loss:.3f}, calibration error (ECE) "
             f"{_pct(res.ece)} (how far its confidence is from how often it is right; 0% is ideal), "
             f"macro F1 {_pct(res.macro_f1)}."]
    if target.kind == "weights":
        card = weights.card_for(target.name)
        note = "" if card.dataset_fingerprint == source.fingerprint else " (a different copy of the data)"
        lines.append(f"Model card: {_pct(card.test_accuracy)}, with TTA {_pct(card.test_accuracy_tta)}, "
                     f"on {card.dataset}{note}.")
    lines.append("Loaded from the evaluation cache." if cached else f"Scored in {seconds:.1f} s (now cached).")
    return "\n\n".join(lines)


_LOCK = threading.Lock()  # one comparison at a time: ten Grad-CAMs already fill both cores


def _data_url(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def explanations(state: dict, index: int) -> tuple[np.ndarray, list[tuple[gradcam.Explanation, bool]]]:
    """(test image `index` as HxWx3, [(explanation, is the evaluated model)]): the evaluated
    model first, then every other shipped model in zoo order."""
    target = state["target"]
    image32 = data.load_split("test", state["source"]).images[index].permute(1, 2, 0).numpy()
    with _LOCK:
        # The shipped models know CIFAR-10's classes: beside a run of other classes they have nothing to say.
        shipped = gradcam.explain_shipped(image32) if target.class_names == CLASSES else []
        if target.kind == "run":
            probs, _ = predict.predict_one(run_model(target), image32, target.class_names)
            own = gradcam.explain(run_model(target), image32, target.label,
                                  probs=probs)
            return image32, [(own, True)] + [(e, False) for e in shipped]
    mine = [(e, True) for e in shipped if e.model == target.name]
    return image32, mine + [(e, False) for e in shipped if e.model != target.name]


def comparison(state: dict, index: int) -> str:
    """HTML: test image `index`, then one card per model (Grad-CAM overlay and top-3 bars)."""
    res = state["result"]
    image32, rows = explanations(state, index)
    classes = _classes(state)
    true_cls, pred_cls = classes[res.labels[index]], classes[res.predictions[index]]
    conf = "" if res.confidences is None else f" ({res.confidences[index]:.0%})"
    cards = []
    for e, own in rows:
        bars = "".join(
            f'<div class="bar{" hit" if c == true_cls else ""}" style="background:linear-gradient(90deg,'
            f'var(--color-accent-soft) {pr:.1%},transparent {pr:.1%})">{html.escape(c)} {pr:.0%}</div>'
            for c, pr in e.top(3))
        note = f'<div class="sub">{html.escape(gradcam.caption(e))}</div>' if gradcam.caption(e) else ""
        cards.append(f'<div class="card{" own" if own else ""}"><b>{html.escape(e.model)}</b>'
                     f'{" (evaluated)" if own else ""}'
                     f'<img src="{_data_url(gradcam.overlay(image32, e.cam, CAM_SCALE))}" '
                     f'alt="Grad-CAM of {html.escape(e.model)}">{bars}{note}</div>')
    head = (f'<div class="head"><img src="{_data_url(augment.upscale_nearest(image32, CAM_SCALE))}" '
            f'alt="test image {index}"><div><b>Test image #{index}</b>: true class <b>{true_cls}</b>; '
            f"{html.escape(state['target'].label)} said <b>{pred_cls}</b>{conf}.<br>Below, each model on "
            "this image alone (no TTA): its top 3 (the true class in green) and its Grad-CAM, red where "
            "the picture pushed it towards its first answer.</div></div>")
    head += label_review.note_html(state, index)
    return f'<div class="compare">{head}<div class="cards">{"".join(cards)}</div></div>'


_CSS = """
.compare {color: var(--body-text-color);}
.compare .head {display: flex; gap: 14px; align-items: center; margin-bottom: 10px;}
.compare .cards {display: flex; flex-wrap: wrap; gap: 10px;}
.compare .card {width: 172px; padding: 6px; border: 1px solid var(--border-color-primary); border-radius: 6px;}
.compare .card.own {border: 2px solid var(--color-accent);}
.compare img {display: block; width: 160px; height: 160px; image-rendering: pixelated; margin: 4px 0;}
.compare .bar {padding: 1px 6px; margin-top: 3px; border-radius: 4px; white-space: nowrap;
               border: 1px solid var(--border-color-primary);}
.compare .bar.hit {border-color: #16a34a; color: #15803d; font-weight: 600;}
.compare .sub {color: var(--body-text-color-subdued); font-size: var(--text-sm);}
"""


# ----------------------------------------------------------------------------- the handlers

def _score(ctx: AppContext, choice: str, tta: str, token=None):
    """(target, source, result, from the cache?, seconds): scored once, then from evalcache."""
    try:
        target = target_of(ctx, choice, token)
        source = data.resolve_source(target.data, download=False)
        t0 = time.perf_counter()
        res, cached = evalcache.evaluate_target(target, tta, source, progress=True)
    except data.DataSourceError as e:
        raise gr.Error(f"No test data to evaluate on. {e}") from None
    except (weights.WeightsError, FileNotFoundError, ValueError) as e:
        raise gr.Error(str(e)) from None
    return target, source, res, cached, time.perf_counter() - t0


def _classes(state: dict) -> tuple[str, ...]:
    """The class names of an evaluation: the target's (a run of your own images has its own)."""
    return state["target"].class_names


def _present(target, source, res, cached, seconds) -> tuple:
    test = data.load_split("test", source)  # the decoded cache: well under a second
    title, classes = target.label, target.class_names
    return (
        summary_markdown(target, res, source, cached, seconds) + label_review.summary_note(res, source),
        plots.confusion_matrix(res.confusion, classes, title=f"{title}: confusion matrix (counts)"),
        plots.confusion_matrix(res.confusion, classes, normalize=True,
                               title=f"{title}: confusion matrix (share of each true class)"),
        plots.per_class_accuracy(res.recall, classes, title=f"{title}: accuracy per class"),
        class_table(res, classes),
        label_review.mark(mistakes_gallery(res, test, classes=classes), res.misclassified, source),
        plots.reliability_diagram(res.reliability, res.ece, title="Reliability diagram"),
    )


def run_evaluation(ctx: AppContext, choice: str, tta: str = "none", token=None,
                   progress=gr.Progress(track_tqdm=True)):
    """(summary, confusion counts, confusion normalised, per-class bars, table, gallery, reliability)."""
    return _present(*_score(ctx, choice, tta, token))


def evaluate_with_drilldown(ctx: AppContext, choice: str, tta: str = "none", token=None,
                            progress=gr.Progress(track_tqdm=True)):
    """run_evaluation's outputs, then the drill-down's: (state, heat map, true class, predicted
    class, page, heading, cell gallery, shown indices, comparison), opened on the most frequent
    confusion (or the first class's diagonal if there is none)."""
    scored = _score(ctx, choice, tta, token)
    target, source, res = scored[:3]
    state = {"target": target, "source": source, "result": res}
    i, j = evaluate.most_confused(res.confusion) or (0, 0)
    classes = list(target.class_names)
    return (*_present(*scored), state, heatmap(res.confusion, classes),
            gr.Dropdown(choices=classes, value=classes[i]), gr.Dropdown(choices=classes, value=classes[j]),
            *show_cell(state, classes[i], classes[j], 1))


def _plural(cls: str) -> str:
    return cls if cls == "deer" else cls + "s"


def cell_heading(res: evaluate.EvalResult, t: int, p: int, pg: evaluate.Page, classes=CLASSES) -> str:
    """What the cell means, and which of its images this page shows."""
    cls = _plural(classes[t])
    what = (f"**{cls} it gets right**" if t == p else f"**{cls} it takes for {_plural(classes[p])}**")
    share = f"{pg.total:,} of the {res.support[t]:,} test {cls}"
    if pg.total == 0:
        return f"{what}: none ({share}). Pick another cell."
    shown = (f"images {pg.start + 1}-{pg.start + len(pg.items)} of {pg.total:,} in "
             f"{classes[t]} → {classes[p]}, most confident first")
    if pg.pages > 1:
        shown = f"page {pg.number + 1} of {pg.pages}: {shown}"
    return f"{what}: {share}. Showing {shown}. Click one to compare every model."


def show_cell(state: dict | None, true_cls: str | None, pred_cls: str | None, page_number=1):
    """(page number, heading, gallery [(image, caption)], the gallery's test indices, comparison)."""
    classes = _classes(state) if state else CLASSES
    if not state or true_cls not in classes or pred_cls not in classes:
        return 1, "Press **Evaluate** first, then click a cell of the matrix.", [], [], ""
    res, t, p = state["result"], classes.index(true_cls), classes.index(pred_cls)
    pg = evaluate.page(evaluate.cell_indices(res, t, p), int(page_number or 1) - 1, CELL_PAGE)
    test = data.load_split("test", state["source"])
    items = []
    for i in pg.items:
        conf = "" if res.confidences is None else f"{res.confidences[i]:.0%} "
        items.append((augment.upscale_nearest(test.images[i].permute(1, 2, 0).numpy(), CELL_SCALE),
                      f"{conf}#{i}"))
    items = label_review.mark(items, pg.items, state["source"]) if classes == CLASSES else items
    return pg.number + 1, cell_heading(res, t, p, pg, classes), items, pg.items, ""


def cell_clicked(state: dict | None, true_cls, pred_cls, evt: gr.SelectData):
    """A click on the heat map at [row, column]: row = true class, column 1 + predicted class
    (column 0 names the rows; a click there keeps the predicted class)."""
    row, col = evt.index
    classes = _classes(state) if state else CLASSES
    if not 0 <= row < len(classes) or col > len(classes):
        return (true_cls, pred_cls, *show_cell(state, true_cls, pred_cls, 1))
    true_cls = classes[row]
    pred_cls = classes[col - 1] if col >= 1 else pred_cls
    return (true_cls, pred_cls, *show_cell(state, true_cls, pred_cls, 1))


def previous_page(state, true_cls, pred_cls, page_number):
    return show_cell(state, true_cls, pred_cls, int(page_number or 1) - 1)


def next_page(state, true_cls, pred_cls, page_number):
    return show_cell(state, true_cls, pred_cls, int(page_number or 1) + 1)


def image_clicked(state: dict | None, shown: list[int], evt: gr.SelectData) -> str:
    if not state or not shown or not 0 <= evt.index < len(shown):
        return ""
    return comparison(state, shown[evt.index])
# ----------------------------------------------------------------------------- layout

def build(ctx: AppContext, visitor: gr.BrowserState | None = None) -> None:
    with gr.Tab("Evaluate") as tab:
        gr.Markdown("Score a model on the test set (CIFAR-10's 10,000 images, or the test images of the dataset a "
                    "run of your own images trained on): where it is right, which classes it "
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
                gr.Markdown(ECE_HELP)
        gallery = gr.Gallery(label="The most confident mistakes: true class → predicted (confidence)",
                             columns=6, height="auto", object_fit="contain", allow_preview=True,
                             fit_columns=False)   # one or two mistakes keep their size (not the row's width)

        gr.Markdown("### Look inside the confusion matrix\nClick a cell (or pick its two classes) to see "
                    "its test images, each captioned with the model's confidence and its index in the test "
                    "set; click one of those to see what every model makes of it. The diagonal shows what "
                    "the model gets right.")
        drill, shown = gr.State(None), gr.State([])
        with gr.Row():
            heat = gr.Dataframe(label="Test images per cell: rows the true class, columns the predicted one",
                                interactive=False, max_height=520, scale=4, elem_id="eval-heatmap")
            with gr.Column(scale=1, min_width=200):
                true_cls = gr.Dropdown(list(CLASSES), value=None, label="True class")
                pred_cls = gr.Dropdown(list(CLASSES), value=None, label="Predicted class")
                page_no = gr.Number(1, label="Page", precision=0, minimum=1)
                with gr.Row():
                    prev = gr.Button("◀ Previous", size="sm")
                    nxt = gr.Button("Next ▶", size="sm")
        cell_md = gr.Markdown("Press **Evaluate** first, then click a cell of the matrix.")
        # height "max-content": Gradio's "auto" keeps a 450 px minimum, mostly empty for a small cell.
        # No floating label: it would cover the first row of thumbnails (the heading above says it all).
        cell_gallery = gr.Gallery(label="The cell's test images", show_label=False, columns=10,
                                  height="max-content", object_fit="contain", allow_preview=False,
                                  fit_columns=False, format="png", elem_id="cell-gallery")
        compare = gr.HTML("", css_template=_CSS, apply_default_css=False, elem_id="cell-compare")
        label_review.build(drill)

    outputs = [summary, cm_counts, cm_norm, per_class, table, gallery, reliability]
    cell_out = [page_no, cell_md, cell_gallery, shown, compare]
    token = [visitor] if visitor is not None else []
    go.click(ctx.bind(evaluate_with_drilldown), [choice, tta, *token],
             outputs + [drill, heat, true_cls, pred_cls] + cell_out, **HEAVY)
    heat.select(cell_clicked, [drill, true_cls, pred_cls], [true_cls, pred_cls] + cell_out, **FREE)
    cell_in = [drill, true_cls, pred_cls]
    true_cls.input(show_cell, cell_in, cell_out, **FREE)
    pred_cls.input(show_cell, cell_in, cell_out, **FREE)
    page_no.submit(show_cell, cell_in + [page_no], cell_out, **FREE)
    prev.click(previous_page, cell_in + [page_no], cell_out, **FREE)
    nxt.click(next_page, cell_in + [page_no], cell_out, **FREE)
    # Grad-CAM of every model of the zoo on the clicked image.
    cell_gallery.select(image_clicked, [drill, shown], compare, **MODELS)
    choices = ctx.bind(refresh_choices)
    refresh.click(choices, [choice, *token], choice, **FREE)
    # The list follows the Train tab: opening this tab picks up runs that finished meanwhile.
    tab.select(choices, [choice, *token], choice, **FREE)
    gr.on(None, data_status, None, data_md, **FREE)
    gr.on(None, choices, [choice, *token], choice, **FREE)
